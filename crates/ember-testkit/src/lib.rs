//! Ember's test support (not published): the devices every tensor-level test runs on.
//!
//! [`devices`] returns Flex and NdArray, plus Burn's wgpu device when the `wgpu` feature is on
//! and an adapter answers. Environment variables:
//!
//! - `EMBER_TEST_DEVICES=flex,wgpu` keeps only the named devices (all enabled ones by default);
//! - `EMBER_REQUIRE_WGPU=1` turns a missing wgpu adapter into a test failure instead of a
//!   printed skip (CI sets it after checking that a Vulkan adapter is installed);
//! - `EMBER_DEVICE_LOG=path` appends one `device<TAB>test` line for every test that ran on a
//!   device, so CI can print how many tests ran on each (`scripts/device-tally.sh`).

use burn::tensor::Device;
#[cfg(feature = "wgpu")]
use burn::tensor::Tensor;
use std::io::Write;
#[cfg(feature = "wgpu")]
use std::sync::OnceLock;

/// Every enabled device, named, for a test to loop over. Records the calling test against each
/// device in `EMBER_DEVICE_LOG` (when set).
///
/// # Panics
/// When `EMBER_REQUIRE_WGPU=1` is set, the `wgpu` feature is on and no wgpu adapter works; when
/// `EMBER_TEST_DEVICES` names an unknown device or leaves none.
pub fn devices() -> Vec<(&'static str, Device)> {
    let all = enabled();
    for (name, _) in &all {
        record(name);
    }
    all
}

/// The first enabled device (Flex by default), for checks that need one device only; recorded
/// in `EMBER_DEVICE_LOG` for that device alone.
///
/// # Panics
/// As [`devices`].
pub fn first_device() -> (&'static str, Device) {
    let first = enabled().swap_remove(0);
    record(first.0);
    first
}

/// The enabled CPU devices (Flex, NdArray) after the `EMBER_TEST_DEVICES` filter, for checks
/// of Ember's own CPU kernels (thread counts, for example); recorded like [`devices`]. Empty when
/// the filter keeps only wgpu.
///
/// # Panics
/// As [`devices`].
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    let cpu: Vec<_> = enabled().into_iter().filter(|(name, _)| *name != "wgpu").collect();
    for (name, _) in &cpu {
        record(name);
    }
    cpu
}

/// Every enabled device after the `EMBER_TEST_DEVICES` filter (never empty).
fn enabled() -> Vec<(&'static str, Device)> {
    let keep: Option<Vec<String>> = std::env::var("EMBER_TEST_DEVICES")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| k.split(',').map(|n| n.trim().to_string()).collect());
    let wanted = |name: &str| keep.as_ref().is_none_or(|k| k.iter().any(|n| n == name));
    if let Some(k) = &keep
        && let Some(bad) = k.iter().find(|n| !["flex", "ndarray", "wgpu"].contains(&n.as_str()))
    {
        panic!("EMBER_TEST_DEVICES: unknown device {bad:?} (expected a comma-separated list of flex, ndarray, wgpu)");
    }
    let mut all: Vec<(&'static str, Device)> = Vec::new();
    #[cfg(feature = "flex")]
    if wanted("flex") {
        all.push(("flex", Device::flex()));
    }
    #[cfg(feature = "ndarray")]
    if wanted("ndarray") {
        #[allow(deprecated)]
        let nd = Device::ndarray();
        all.push(("ndarray", nd));
    }
    // The wgpu probe (and EMBER_REQUIRE_WGPU) only when wgpu is wanted.
    #[cfg(feature = "wgpu")]
    if wanted("wgpu")
        && let Some(d) = wgpu()
    {
        all.push(("wgpu", d));
    }
    if all.is_empty() {
        panic!(
            "no test device left: EMBER_TEST_DEVICES={:?} names none of the enabled devices (wgpu needs --features wgpu and an adapter)",
            keep.unwrap_or_default().join(",")
        );
    }
    all
}

/// The devices of [`devices`] without their names.
pub fn device_list() -> Vec<Device> {
    devices().into_iter().map(|(_, d)| d).collect()
}

/// The wgpu device, if the `wgpu` feature is on and an adapter runs a tiny kernel (checked once
/// per process); `None` otherwise, with the reason printed once.
///
/// # Panics
/// When `EMBER_REQUIRE_WGPU=1` is set and the feature is on but no adapter works.
pub fn wgpu() -> Option<Device> {
    #[cfg(feature = "wgpu")]
    {
        static PROBE: OnceLock<Result<Device, String>> = OnceLock::new();
        let probe = PROBE.get_or_init(|| {
            let outcome = std::panic::catch_unwind(|| {
                let d = Device::wgpu(Default::default());
                let t = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &d);
                let v = t.mul_scalar(2.0).into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
                if v == [2.0, 4.0, 6.0] { Ok(d) } else { Err(format!("probe kernel returned {v:?}")) }
            });
            let result = outcome.unwrap_or_else(|p| {
                Err(p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic while creating the wgpu device".into()))
            });
            if let Err(e) = &result {
                eprintln!("ember-testkit: wgpu device unavailable, wgpu cases SKIPPED: {e}");
            }
            result
        });
        match probe {
            Ok(d) => Some(d.clone()),
            Err(e) if require_wgpu() => panic!("EMBER_REQUIRE_WGPU=1 but no wgpu adapter works: {e}"),
            Err(_) => None,
        }
    }
    #[cfg(not(feature = "wgpu"))]
    {
        None
    }
}

#[cfg(feature = "wgpu")]
fn require_wgpu() -> bool {
    std::env::var("EMBER_REQUIRE_WGPU").is_ok_and(|v| v == "1")
}

/// Appends `device<TAB>test` to `EMBER_DEVICE_LOG` for the current test (its thread name).
pub fn record(device: &str) {
    let Ok(path) = std::env::var("EMBER_DEVICE_LOG") else { return };
    let test = std::thread::current().name().unwrap_or("main").to_string();
    // The test binary's name without Cargo's hash suffix (e.g. `drop_in`).
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or("?");
    let crate_name = stem.rsplit_once('-').map_or(stem, |(name, _)| name);
    // One write per line: appends of a single small write do not interleave between threads.
    let line = format!("{device}\t{crate_name}::{test}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}
