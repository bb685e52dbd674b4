//! MobileBERT against an independent numpy forward of Hugging Face's MobileBertModel
//! (`scripts/mobilebert_reference.py`, small random weights): every layer's hidden state and
//! attention probabilities, on a padded batch with token types, for the released structure
//! (NoNorm, trigram input, shared query/key bottleneck) and its other options (LayerNorm, no
//! trigram, attention over the input bottleneck); on every test device.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use ember_layers::{MobileBertSpec, Normalization};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

const REFERENCE: &str = include_str!("data/mobilebert_reference.json");

/// Sets every float parameter whose path the reference names; records the paths it set.
struct Set {
    path: Vec<String>,
    values: HashMap<String, (Vec<usize>, Vec<f32>)>,
    used: BTreeSet<String>,
}

impl ModuleMapper for Set {
    fn enter_module(&mut self, n: &str, _: &str) {
        self.path.push(n.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.join(".");
        let Some((shape, data)) = self.values.get(&key) else { return p };
        let dims = p.val().dims();
        assert_eq!(&dims[..], &shape[..], "{key}: module shape vs reference");
        self.used.insert(key);
        let t = Tensor::from_data(TensorData::new(data.clone(), shape.clone()), &p.device());
        Param::initialized(p.id, t)
    }
}

fn spec_of(c: &Value) -> (MobileBertSpec, usize, Normalization) {
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let mut spec = MobileBertSpec::mobilebert();
    spec.vocab_size = n("vocab_size");
    spec.embedding_size = n("embedding_size");
    spec.hidden_size = n("hidden_size");
    spec.intra_bottleneck_size = n("intra_bottleneck_size");
    spec.intermediate_size = n("intermediate_size");
    spec.num_hidden_layers = n("num_hidden_layers");
    spec.num_feedforward_networks = n("num_feedforward_networks");
    spec.max_position_embeddings = n("max_position_embeddings");
    spec.type_vocab_size = n("type_vocab_size");
    spec.trigram_input = c["trigram_input"].as_bool().unwrap();
    spec.use_bottleneck_attention = c["use_bottleneck_attention"].as_bool().unwrap();
    let norm = match c["normalization"].as_str().unwrap() {
        "no_norm" => Normalization::NoNorm,
        _ => Normalization::LayerNorm,
    };
    (spec, n("num_attention_heads"), norm)
}

fn flat(v: &Value, out: &mut Vec<f32>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        x => out.push(x.as_f64().unwrap() as f32),
    }
}

fn ints(v: &Value) -> Vec<Vec<i64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()).collect()
}

fn worst(t: Vec<f32>, reference: &Value) -> f32 {
    let mut want = Vec::new();
    flat(reference, &mut want);
    assert_eq!(t.len(), want.len());
    t.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn mobilebert_matches_the_numpy_reference_layer_by_layer() {
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    for device in ember_testkit::device_list() {
        for case in reference["cases"].as_array().unwrap() {
            let name = case["config"]["name"].as_str().unwrap();
            let (spec, heads, norm) = spec_of(&case["config"]);
            let model = spec.init(heads, norm, &device).unwrap();
            let values: HashMap<String, (Vec<usize>, Vec<f32>)> = case["params"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                    let mut data = Vec::new();
                    flat(&v["data"], &mut data);
                    (k.clone(), (shape, data))
                })
                .collect();
            let mut set = Set { path: Vec::new(), values, used: BTreeSet::new() };
            let model = model.map(&mut set);
            let unused: Vec<&String> = set.values.keys().filter(|k| !set.used.contains(*k)).collect();
            assert!(unused.is_empty(), "{name}: reference weights the module has no place for: {unused:?}");

            let ids = ints(&case["ids"]);
            let (b, t) = (ids.len(), ids[0].len());
            let to_int =
                |rows: Vec<Vec<i64>>| Tensor::<2, Int>::from_data(TensorData::new(rows.concat(), [b, t]), &device);
            let pad: Vec<bool> = ints(&case["attention_mask"]).concat().iter().map(|&m| m == 0).collect();
            let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, t]), &device);
            let out =
                model.try_forward(to_int(ids), Some(to_int(ints(&case["token_types"]))), Some(pad), true).unwrap();
            let want_h = case["hidden_states"].as_array().unwrap();
            let want_a = case["attentions"].as_array().unwrap();
            assert_eq!(out.hidden_states.len(), want_h.len(), "{name}: hidden states");
            assert_eq!(out.attentions.len(), want_a.len(), "{name}: attention maps");
            for (i, (h, w)) in out.hidden_states.iter().zip(want_h).enumerate() {
                let err = worst(h.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), w);
                assert!(err < 1e-4, "{name} {device:?}: hidden state {i} worst error {err}");
            }
            for (i, (a, w)) in out.attentions.iter().zip(want_a).enumerate() {
                let err = worst(a.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), w);
                assert!(err < 1e-4, "{name} {device:?}: attention {i} worst error {err}");
            }
            let last = out.last_hidden.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            assert!(worst(last, want_h.last().unwrap()) < 1e-4, "{name}: last hidden");
        }
    }
}

#[test]
fn mobilebert_without_collect_keeps_nothing_and_refuses_empty_batches() {
    let device = Device::flex();
    let mut spec = MobileBertSpec::mobilebert();
    (spec.vocab_size, spec.embedding_size, spec.hidden_size) = (20, 4, 16);
    (spec.intra_bottleneck_size, spec.intermediate_size, spec.num_hidden_layers) = (8, 12, 2);
    spec.max_position_embeddings = 8;
    let model = spec.init(2, Normalization::NoNorm, &device).unwrap();
    let ids = Tensor::<2, Int>::from_ints([[1, 2, 3]], &device);
    let out = model.try_forward(ids.clone(), None, None, false).unwrap();
    assert!(out.hidden_states.is_empty() && out.attentions.is_empty());
    let full = model.try_forward(ids, None, None, true).unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (
        out.last_hidden.into_data().try_to_vec::<f32>().unwrap(),
        full.last_hidden.into_data().try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a, b);
    let empty = Tensor::<2, Int>::from_data(TensorData::new(Vec::<i64>::new(), [0, 3]), &device);
    let e = model.try_forward(empty, None, None, false).unwrap_err();
    assert!(e.to_string().contains("at least one sequence"), "{e}");
    let empty = Tensor::<2, Int>::from_data(TensorData::new(Vec::<i64>::new(), [2, 0]), &device);
    assert!(model.try_forward(empty, None, None, false).is_err());
}
