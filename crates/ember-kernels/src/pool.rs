//! Ember's own small spinning thread pool for splitting one GEMM across cores.
//!
//! Why not rayon's pool: on the reference machine, handing work to a sleeping rayon worker cost
//! 12-25 µs per call, more than a whole small GEMM. Like ONNX Runtime's pool, these workers spin
//! for [`SPIN`] after each job before parking, so back-to-back calls (a model's layers) hand off
//! in well under a microsecond, and an idle process does not keep burning CPU.
//!
//! The pool is global and created on first multi-threaded use with one worker per extra core.
//! It runs one job at a time: a call that finds it busy (another thread's GEMM, or a GEMM
//! called from inside a job) runs its parts on the calling thread instead of waiting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a worker spins after a job before it parks.
const SPIN: Duration = Duration::from_micros(300);

type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    epoch: AtomicU64,
    /// Points at a `Job<'_>` on the caller's stack while a job runs.
    job: AtomicPtr<()>,
    /// Number of parts in the current job (part 0 runs on the caller).
    parts: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
    sleeping: Vec<AtomicBool>,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    busy: Mutex<()>,
    /// Process that spawned the workers.
    pid: u32,
}

/// Number of threads a call may use: the cores this process may run on.
pub(crate) fn max_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn global() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(max_threads().saturating_sub(1)))
}

/// Runs `f(0..parts)`, spreading the parts over the pool's workers and the caller. Returns once
/// every part has finished. Panics in a part are re-raised on the caller.
pub(crate) fn run(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        if parts == 1 {
            f(0);
        }
        return;
    }
    let pool = global();
    // After a fork() the child has the pool's bookkeeping but not its threads: run inline.
    if pool.pid != std::process::id() {
        return (0..parts).for_each(f);
    }
    match pool.busy.try_lock() {
        Ok(_guard) if parts <= pool.threads.len() + 1 => pool.run_locked(parts, f),
        _ => (0..parts).for_each(f),
    }
}

impl Pool {
    fn new(workers: usize) -> Pool {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            parts: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleeping: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        });
        let mut threads = Vec::new();
        for w in 0..workers {
            let sh = shared.clone();
            match std::thread::Builder::new().name(format!("ember-gemm-{w}")).spawn(move || worker(sh, w)) {
                Ok(h) => threads.push(h.thread().clone()),
                // Could not spawn: run with the workers we have (a worker that never started is
                // never waited for, since `threads` defines the count).
                Err(_) => break,
            }
        }
        Pool { shared, threads, busy: Mutex::new(()), pid: std::process::id() }
    }

    fn run_locked(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let sh = &*self.shared;
        let job: Job<'_> = f;
        sh.done.store(0, Ordering::Relaxed);
        sh.panicked.store(false, Ordering::Relaxed);
        sh.parts.store(parts, Ordering::Relaxed);
        sh.job.store(&job as *const Job<'_> as *mut (), Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        for (w, t) in self.threads.iter().enumerate() {
            if sh.sleeping[w].load(Ordering::SeqCst) {
                t.unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        // Every worker acknowledges every epoch, so the job outlives all reads of it.
        while sh.done.load(Ordering::Acquire) < self.threads.len() {
            std::hint::spin_loop();
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if sh.panicked.load(Ordering::Relaxed) {
            panic!("ember-kernels: a GEMM worker thread panicked");
        }
    }
}

fn worker(sh: Arc<Shared>, w: usize) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                let part = w + 1;
                if part < sh.parts.load(Ordering::Relaxed) {
                    let p = sh.job.load(Ordering::Relaxed) as *const Job<'static>;
                    // SAFETY: the caller keeps the job alive until `done` counts this worker.
                    let job = unsafe { *p };
                    if catch_unwind(AssertUnwindSafe(|| job(part))).is_err() {
                        sh.panicked.store(true, Ordering::Relaxed);
                    }
                }
                sh.done.fetch_add(1, Ordering::Release);
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                sh.sleeping[w].store(true, Ordering::SeqCst);
                if sh.epoch.load(Ordering::SeqCst) == seen {
                    std::thread::park_timeout(Duration::from_millis(100));
                }
                sh.sleeping[w].store(false, Ordering::SeqCst);
                break;
            }
            std::hint::spin_loop();
        }
    }
}
