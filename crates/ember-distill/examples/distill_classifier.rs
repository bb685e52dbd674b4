//! Distil a wide teacher MLP into a small student on a synthetic classification task, over
//! several seeds, and compare with the same student trained on hard labels only.
//!
//! `cargo run --release -p ember-distill --example distill_classifier [-- --json --seeds 5
//!  --device flex|ndarray --temperature 4 --alpha 0.9]`
//!
//! The task (fixed across seeds): inputs `x ~ N(0, I₁₆)`; a random `16 → 32 → 10` tanh network
//! `f` gives class scores and each label is *sampled* from `softmax(f(x))`, so labels are noisy
//! (as real annotations are) and the best possible accuracy is well below 100 %.
//!
//! The setting is the usual one for compressing a model: the teacher (`16 → 256 → 256 → 10`)
//! was trained on a large labelled pool (20 000 examples, 10 epochs); the task's own training
//! set is the first 2 000 of them. Both students (`16 → 64 → 10`, 42× fewer parameters) train
//! on those 2 000 examples for the same number of steps (60 epochs) with the same optimizer and
//! initialization: one on the hard labels, the other through [`Distiller`] on
//! `α·T²·KL(teacher ‖ student) + (1 − α)·CE(labels)` (T = 4, α = 0.9), the teacher's outputs
//! computed on the same 2 000 inputs. Each seed draws new examples, initializations and batch
//! orders. Accuracies are on 4 000 held-out examples with their own sampled labels.

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_distill::{DistillConfig, Distiller, ModelOutputs, ModelShape, OutputRequest, Schedule, hard_label_loss};

const D_IN: usize = 16;
const CLASSES: usize = 10;
/// Scale of the task network's class scores: higher means less label noise.
const LABEL_SHARPNESS: f64 = 6.0;

struct Args {
    json: bool,
    seeds: u64,
    device: Device,
    temperature: f64,
    alpha: f64,
    train: usize,
    teacher_train: usize,
    epochs: usize,
    teacher_epochs: usize,
    teacher_hidden: usize,
    student_hidden: usize,
}

/// A bad flag: one line on stderr, exit status 2.
fn fail(msg: &str) -> ! {
    eprintln!("distill_classifier: {msg}");
    std::process::exit(2)
}

/// A flag's number, or [`fail`] naming the flag's form (`--seeds N`).
fn number<T: std::str::FromStr>(text: &str, form: &str) -> T {
    text.parse().unwrap_or_else(|_| fail(&format!("{form}: {text:?} is not a valid number")))
}

fn parse_args() -> Args {
    let mut a = Args {
        json: false,
        seeds: 5,
        device: Device::flex(),
        temperature: 4.0,
        alpha: 0.9,
        train: 2000,
        teacher_train: 20000,
        epochs: 60,
        teacher_epochs: 10,
        teacher_hidden: 256,
        student_hidden: 64,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: usize| args.get(i + 1).cloned().unwrap_or_else(|| fail(&format!("{} needs a value", args[i])));
    while i < args.len() {
        match args[i].as_str() {
            "--json" => a.json = true,
            "--seeds" => a.seeds = number(&value(i), "--seeds N"),
            "--temperature" => a.temperature = number(&value(i), "--temperature T"),
            "--alpha" => a.alpha = number(&value(i), "--alpha A"),
            "--train" => a.train = number(&value(i), "--train N"),
            "--teacher-train" => a.teacher_train = number(&value(i), "--teacher-train N"),
            "--epochs" => a.epochs = number(&value(i), "--epochs N"),
            "--teacher-epochs" => a.teacher_epochs = number(&value(i), "--teacher-epochs N"),
            "--teacher-hidden" => a.teacher_hidden = number(&value(i), "--teacher-hidden N"),
            "--student-hidden" => a.student_hidden = number(&value(i), "--student-hidden N"),
            "--device" => {
                a.device = match value(i).as_str() {
                    "flex" => Device::flex(),
                    #[cfg(feature = "ndarray")]
                    #[allow(deprecated)] // NdArray is deprecated upstream; Ember still supports it.
                    "ndarray" => Device::ndarray(),
                    other => {
                        fail(&format!("--device {other}: expected flex or ndarray (ndarray needs --features ndarray)"))
                    }
                }
            }
            other => fail(&format!("unknown argument {other}")),
        }
        i += if args[i] == "--json" { 1 } else { 2 };
    }
    a
}

/// SplitMix64 with Box–Muller normals (the example needs no RNG crate).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Examples and labels on the host.
struct Split {
    x: Vec<f32>,
    y: Vec<i64>,
}

/// The task: a random `16 → 32 → 10` tanh network gives class scores; labels are sampled from
/// their softmax.
fn make_task(task_seed: u64, data_seed: u64, train: usize, test: usize) -> (Split, Split) {
    let mut rng = Rng(task_seed.wrapping_mul(7919).wrapping_add(17));
    let hidden = 32;
    let w1: Vec<f64> = (0..D_IN * hidden).map(|_| rng.normal() / (D_IN as f64).sqrt() * 2.0).collect();
    let w2: Vec<f64> = (0..hidden * CLASSES).map(|_| rng.normal() / (hidden as f64).sqrt() * LABEL_SHARPNESS).collect();
    let mut rng = Rng(data_seed.wrapping_mul(104_729).wrapping_add(3));
    let mut sample = |n: usize| {
        let mut x = Vec::with_capacity(n * D_IN);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let xi: Vec<f64> = (0..D_IN).map(|_| rng.normal()).collect();
            let h: Vec<f64> =
                (0..hidden).map(|j| (0..D_IN).map(|i| xi[i] * w1[i * hidden + j]).sum::<f64>().tanh()).collect();
            let z: Vec<f64> =
                (0..CLASSES).map(|c| (0..hidden).map(|j| h[j] * w2[j * CLASSES + c]).sum::<f64>()).collect();
            let max = z.iter().cloned().fold(f64::MIN, f64::max);
            let p: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
            let total: f64 = p.iter().sum();
            let mut u = rng.uniform() * total;
            let mut label = CLASSES - 1;
            for (c, pc) in p.iter().enumerate() {
                if u < *pc {
                    label = c;
                    break;
                }
                u -= pc;
            }
            x.extend(xi.iter().map(|v| *v as f32));
            y.push(label as i64);
        }
        Split { x, y }
    };
    (sample(train), sample(test))
}

#[derive(Module, Debug)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(widths: &[usize], device: &Device) -> Self {
        Mlp { layers: widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect() }
    }

    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// One minibatch on the host.
struct Batch {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

fn batches(split: &Split, batch: usize, epoch_seed: u64, device: &Device) -> Vec<Batch> {
    let n = split.y.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng(epoch_seed);
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order
        .chunks(batch)
        .map(|idx| {
            let x: Vec<f32> = idx.iter().flat_map(|&i| split.x[i * D_IN..(i + 1) * D_IN].iter().copied()).collect();
            let y: Vec<i64> = idx.iter().map(|&i| split.y[i]).collect();
            Batch {
                x: Tensor::from_data(TensorData::new(x, [idx.len(), D_IN]), device),
                y: Tensor::from_data(TensorData::new(y, [idx.len()]), device),
            }
        })
        .collect()
}

fn accuracy(model: &Mlp, split: &Split, device: &Device) -> f64 {
    let n = split.y.len();
    let x = Tensor::<2>::from_data(TensorData::new(split.x.clone(), [n, D_IN]), device);
    let pred = model.forward(x).argmax(1).reshape([n]).into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
    pred.iter().zip(&split.y).filter(|(p, y)| p == y).count() as f64 / n as f64
}

const BATCH: usize = 64;
const LR: f64 = 3e-3;

/// Trains on hard labels only.
fn train_hard(widths: &[usize], split: &Split, epochs: usize, seed: u64, device: &Device) -> Mlp {
    let ad = device.clone().autodiff();
    device.seed(seed);
    let mut model = Mlp::new(widths, &ad);
    let mut opt = AdamConfig::new().init();
    for epoch in 0..epochs {
        for b in batches(split, BATCH, seed * 1000 + epoch as u64, &ad) {
            let loss = hard_label_loss(model.forward(b.x), b.y).expect("valid batch");
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(LR, model, grads);
        }
    }
    model.valid().fork(device)
}

/// Trains with the Distiller: the teacher runs on the plain device, the student on autodiff.
fn train_distilled(widths: &[usize], teacher: &Mlp, split: &Split, args: &Args, seed: u64) -> Mlp {
    let device = &args.device;
    let ad = device.clone().autodiff();
    device.seed(seed);
    let mut student = Mlp::new(widths, &ad);
    let mut opt = AdamConfig::new().init();
    let config = DistillConfig::new()
        .with_temperature(Schedule::Constant(args.temperature))
        .with_soft_weight(Schedule::Constant(args.alpha))
        .with_hard_weight(Schedule::Constant(1.0 - args.alpha));
    let mut distiller =
        Distiller::new(config, ModelShape::logits_only(), ModelShape::logits_only(), &ad).expect("valid config");
    let teacher_fn = |b: &Batch, _: &OutputRequest| ModelOutputs::new().with_class_logits(teacher.forward(b.x.clone()));
    for epoch in 0..args.epochs {
        for b in batches(split, BATCH, seed * 1000 + epoch as u64, device) {
            let losses = {
                let s = &student;
                let student_fn = |b: &Batch, _: &OutputRequest| {
                    ModelOutputs::new()
                        .with_class_logits(s.forward(b.x.clone().to_device(&ad)))
                        .with_class_labels(b.y.clone().to_device(&ad))
                };
                distiller.step(&teacher_fn, &student_fn, &b, None).expect("distillation step")
            };
            let grads = GradientsParams::from_grads(losses.total.backward(), &student);
            student = opt.step(LR, student, grads);
        }
    }
    student.valid().fork(device)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn main() {
    let args = parse_args();
    let teacher_widths = [D_IN, args.teacher_hidden, args.teacher_hidden, CLASSES];
    let student_widths = [D_IN, args.student_hidden, CLASSES];
    let (mut t_acc, mut h_acc, mut d_acc) = (Vec::new(), Vec::new(), Vec::new());
    let (mut t_params, mut s_params) = (0, 0);
    if !args.json {
        println!(
            "task: {D_IN} inputs, {CLASSES} classes, labels sampled from a fixed random network's softmax; teacher trained on {} examples ({} epochs), students on the first {} ({} epochs); 4000 held-out examples",
            args.teacher_train.max(args.train),
            args.teacher_epochs,
            args.train,
            args.epochs
        );
        println!(
            "teacher {teacher_widths:?}, student {student_widths:?}, T = {}, α = {}\n",
            args.temperature, args.alpha
        );
        println!("| seed | teacher acc | hard-label student | distilled student | time (s) |");
        println!("|-----:|------------:|-------------------:|------------------:|---------:|");
    }
    for seed in 0..args.seeds {
        let start = Instant::now();
        let (pool, test) = make_task(0, seed, args.teacher_train.max(args.train), 4000);
        // The students see the first `train` examples of the teacher's pool.
        let train = Split { x: pool.x[..args.train * D_IN].to_vec(), y: pool.y[..args.train].to_vec() };
        let teacher = train_hard(&teacher_widths, &pool, args.teacher_epochs, 100 + seed, &args.device);
        let hard = train_hard(&student_widths, &train, args.epochs, 200 + seed, &args.device);
        let distilled = train_distilled(&student_widths, &teacher, &train, &args, 200 + seed);
        t_params = teacher.num_params();
        s_params = hard.num_params();
        let (t, h, d) = (
            accuracy(&teacher, &test, &args.device),
            accuracy(&hard, &test, &args.device),
            accuracy(&distilled, &test, &args.device),
        );
        t_acc.push(t);
        h_acc.push(h);
        d_acc.push(d);
        if !args.json {
            println!("| {seed} | {:.4} | {:.4} | {:.4} | {:.1} |", t, h, d, start.elapsed().as_secs_f64());
        }
    }
    let ((t, _), (h, hs), (d, ds)) = (mean_std(&t_acc), mean_std(&h_acc), mean_std(&d_acc));
    let n = args.seeds as f64;
    // Standard error of the difference of the two means.
    let se = (hs * hs / n + ds * ds / n).sqrt();
    if !args.json {
        println!("\nmeans over {} seeds (± sample standard deviation):", args.seeds);
        println!("teacher {t:.4} ({t_params} parameters)");
        println!("hard-label student {h:.4} ± {hs:.4} ({s_params} parameters)");
        println!("distilled student  {d:.4} ± {ds:.4}");
        println!(
            "distilled − hard = {:+.4}; {:.1} standard errors of the difference, {:.1} × the larger seed std",
            d - h,
            (d - h) / se.max(1e-12),
            (d - h) / hs.max(ds).max(1e-12)
        );
        let verdict = if d - h > hs.max(ds) { "yes" } else { "no" };
        println!("distilled student beats the hard-label student by more than one seed standard deviation: {verdict}");
    }
    // Keys in the documented order (serde_json's map would sort them).
    println!(
        "{{\"seeds\": {}, \"teacher_acc\": {t:.6}, \"hard_label_student_acc\": {h:.6}, \"hard_label_student_std\": {hs:.6}, \"distilled_student_acc\": {d:.6}, \"distilled_student_std\": {ds:.6}, \"teacher_params\": {t_params}, \"student_params\": {s_params}}}",
        args.seeds
    );
}
