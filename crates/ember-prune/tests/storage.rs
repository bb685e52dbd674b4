//! Compressed storage: exact round trips, byte counts that match the report, file save/load,
//! and corrupt input.

use std::collections::BTreeMap;

use burn::nn::{Linear, LinearConfig};
use burn::tensor::Device;
use ember_prune::mask::{self, is_n_m};
use ember_prune::*;

fn weight(d_in: usize, d_out: usize, seed: u64) -> Vec<f32> {
    (0..d_in * d_out).map(|i| (((i as u64 + 1) * 2654435761 + seed) % 2001) as f32 / 1000.0 - 1.0).collect()
}

fn pruned(values: &[f32], keep: &[bool]) -> Vec<f32> {
    values.iter().zip(keep).map(|(v, k)| if *k { *v } else { 0.0 }).collect()
}

#[test]
fn every_format_round_trips_exactly_with_the_stated_size() {
    let (d_in, d_out) = (24, 10);
    let w = weight(d_in, d_out, 1);
    let scores: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let sparse = pruned(&w, &mask::unstructured(&scores, 0.7).unwrap());
    let z = sparse.iter().filter(|v| **v != 0.0).count();
    let n_all = d_in * d_out;
    for (format, want_bytes) in
        [(SparseFormat::Bitmask, n_all.div_ceil(8) + 4 * z), (SparseFormat::Csr, 4 * (d_in + 1) + 8 * z)]
    {
        let enc = SparseWeight::encode(&sparse, [d_in, d_out], format).unwrap();
        assert_eq!(enc.decode().unwrap(), sparse, "{format:?}");
        assert_eq!(enc.bytes(), want_bytes, "{format:?}");
    }
    for (n, m) in [(2, 4), (4, 8), (1, 4), (3, 8), (1, 2)] {
        let nm = pruned(&w, &mask::n_m(&scores, d_in, d_out, n, m).unwrap());
        assert!(is_n_m(&nm, d_in, d_out, n, m));
        let enc = SparseWeight::encode(&nm, [d_in, d_out], SparseFormat::NM { n, m }).unwrap();
        assert_eq!(enc.decode().unwrap(), nm, "{n}:{m}");
        let kept = n_all / m * n;
        let bits = (m as f64).log2().ceil() as usize;
        assert_eq!(enc.bytes(), 4 * kept + (kept * bits).div_ceil(8), "{n}:{m}");
    }
    // 2:4 of a 16 × 8 weight: 17/32 of the dense bytes.
    let w16 = weight(16, 8, 2);
    let s16: Vec<f32> = w16.iter().map(|v| v.abs()).collect();
    let nm = pruned(&w16, &mask::n_m(&s16, 16, 8, 2, 4).unwrap());
    assert_eq!(SparseWeight::encode(&nm, [16, 8], SparseFormat::NM { n: 2, m: 4 }).unwrap().bytes() * 32, 4 * 128 * 17);
    // A group with fewer than n nonzeros still round-trips (zero-valued slots are stored).
    let mut thin = nm.clone();
    thin.iter_mut().take(8).for_each(|v| *v = 0.0);
    assert_eq!(SparseWeight::encode(&thin, [16, 8], SparseFormat::NM { n: 2, m: 4 }).unwrap().decode().unwrap(), thin);
}

#[test]
fn report_bytes_are_the_real_encoded_sizes() {
    let d = Device::flex();
    let layer: Linear = LinearConfig::new(32, 16).init(&d);
    let (layer, report) = Pruner::new(PruneConfig::new(0.6)).unwrap().prune(layer).unwrap();
    let values = layer.weight.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let l = &report.layers[0];
    assert_eq!(SparseWeight::encode(&values, [32, 16], SparseFormat::Bitmask).unwrap().bytes(), l.bitmask_bytes);
    assert_eq!(SparseWeight::encode(&values, [32, 16], SparseFormat::Csr).unwrap().bytes(), l.csr_bytes);
    assert_eq!(l.dense_bytes, 4 * 512);
}

#[test]
fn files_round_trip_and_corruption_is_an_error() {
    let w = weight(8, 4, 3);
    let keep = mask::unstructured(&w.iter().map(|v| v.abs()).collect::<Vec<_>>(), 0.5).unwrap();
    let sparse = pruned(&w, &keep);
    let mut map = BTreeMap::new();
    map.insert("fc1.weight".to_string(), SparseWeight::encode(&sparse, [8, 4], SparseFormat::Bitmask).unwrap());
    map.insert("fc2.weight".to_string(), SparseWeight::encode(&sparse, [8, 4], SparseFormat::Csr).unwrap());
    let path = std::env::temp_dir().join(format!("ember-prune-{}.sparse", std::process::id()));
    let written = save_sparse(&path, &map).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, written);
    let back = load_sparse(&path).unwrap();
    assert_eq!(back, map);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    assert!(load_sparse(&path).is_err());
    let _ = std::fs::remove_file(&path);

    assert!(matches!(SparseWeight::encode(&w, [8, 4], SparseFormat::NM { n: 2, m: 4 }), Err(PruneError::NM { .. })));
    assert!(matches!(SparseWeight::encode(&w, [8, 5], SparseFormat::Csr), Err(PruneError::Shape { .. })));
    assert!(SparseWeight::from_bytes(b"not a sparse weight at all, really no").is_err());
}

#[test]
fn corrupt_headers_are_errors_not_aborts() {
    let w = SparseWeight::encode(&[0.0, 1.0, 0.0, 2.0], [2, 2], SparseFormat::Bitmask).unwrap();
    let mut b = w.to_bytes();
    // Claim a 2^31 × 2^31 weight with the same tiny payload.
    b[5..9].copy_from_slice(&(1u32 << 31).to_le_bytes());
    b[9..13].copy_from_slice(&(1u32 << 31).to_le_bytes());
    assert!(SparseWeight::from_bytes(&b).is_err());
    // CSR with no output columns round-trips.
    let empty = SparseWeight::encode(&[], [3, 0], SparseFormat::Csr).unwrap();
    assert_eq!(empty.decode().unwrap(), Vec::<f32>::new());
}
