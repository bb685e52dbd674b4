//! User story 4: save the quantized model; a fresh process loads it from the config and the
//! file alone; the file is about 4× smaller than f32, embeddings included.
//!
//! `cargo run --release -p ember-quant --example save_load -- [DIR]`

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_quant::{
    Embedding, EmbeddingConfig, Linear, LinearConfig, QuantizeConfig, Quantizer, load_quantized, save_quantized,
};

/// A tiny language model: embedding, one feed-forward layer, tied output head.
#[derive(Module, Debug)]
struct TinyLm {
    emb: Embedding,
    ffn: Linear,
}

impl TinyLm {
    fn new(device: &Device) -> Self {
        TinyLm { emb: EmbeddingConfig::new(8000, 256).init(device), ffn: LinearConfig::new(256, 256).init(device) }
    }
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.emb.tied_logits(self.ffn.forward(self.emb.forward(ids)))
    }
}

fn main() {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let device = Device::flex();
    let model = TinyLm::new(&device);
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let f32_size = save_quantized(&model, dir.join("tiny_lm.f32.safetensors")).unwrap();
    let int8_size = save_quantized(&int8, dir.join("tiny_lm.int8.safetensors")).unwrap();
    println!("f32 {f32_size} bytes, int8 {int8_size} bytes ({:.3}×)", int8_size as f64 / f32_size as f64);

    // What a fresh process does: the config gives the structure, the file the weights.
    let loaded = load_quantized(TinyLm::new(&device), dir.join("tiny_lm.int8.safetensors")).unwrap();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i32, 5, 42, 7999], [1, 4]), &device);
    let same = int8.forward(ids.clone()).into_data() == loaded.forward(ids).into_data();
    println!("outputs identical after loading: {same}");
}
