//! Recognising Ember's layers by their Rust type inside any Burn module.
//!
//! Burn's visitors and mappers see a module tree only as names and container strings
//! (`"Struct:Linear"` for both `burn::nn::Linear` and [`crate::Linear`], or for a user's own
//! struct called `Linear`). So every Ember layer holds a parameter-free [`LayerTag`] that, when
//! visited, announces the full Rust type path of the layer (`std::any::type_name`), which no
//! other type produces. [`is_linear`] and [`is_embedding`] test a visitor's `container_type`
//! against it; whole-model passes (conversion, calibration, QAT, loading) find Ember's layers
//! this way. (Burn's own `burn::nn::Linear` carries no tag; QAT, which also serves it, recognises
//! it as a `Struct:Linear` whose only fields are `weight` and `bias`.) The type path is that of
//! this build of ember-quant: two incompatible versions of the crate in one program do not
//! recognise each other's layers.
//!
//! ```
//! use burn::module::{Module, ModuleVisitor};
//! use burn::tensor::Device;
//! use ember_quant::LinearConfig;
//!
//! #[derive(Default)]
//! struct Count(usize);
//! impl ModuleVisitor for Count {
//!     fn enter_module(&mut self, _name: &str, container_type: &str) {
//!         if ember_quant::tag::is_linear(container_type) {
//!             self.0 += 1;
//!         }
//!     }
//! }
//! let layer = LinearConfig::new(4, 2).init(&Device::flex());
//! let mut count = Count::default();
//! layer.visit(&mut count);
//! assert_eq!(count.0, 1);
//! ```

use burn::module::{Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor};
use burn::tensor::Device;
use std::marker::PhantomData;

/// The name a [`LayerTag`] enters under when visited (its container type is the layer's type
/// path).
pub const TAG_NAME: &str = "ember_layer_type";

/// A parameter-free module that marks the module holding it as a `L` (see the
/// [module docs](self)). It holds no tensors, so it never appears in records, saved files or
/// parameter counts.
pub struct LayerTag<L: 'static> {
    _layer: PhantomData<fn() -> L>,
}

impl<L: 'static> LayerTag<L> {
    /// The tag of `L`.
    pub fn new() -> Self {
        LayerTag { _layer: PhantomData }
    }

    /// The container type a visitor sees for this tag: `L`'s full type path.
    pub fn container_type() -> &'static str {
        std::any::type_name::<L>()
    }
}

impl<L: 'static> Default for LayerTag<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: 'static> Clone for LayerTag<L> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<L: 'static> std::fmt::Debug for LayerTag<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LayerTag<{}>", Self::container_type())
    }
}

impl<L: 'static> Module for LayerTag<L> {
    fn collect_devices(&self, devices: Devices) -> Devices {
        devices
    }
    fn fork(self, _device: &Device) -> Self {
        self
    }
    fn to_device(self, _device: &Device) -> Self {
        self
    }
    fn train(self) -> Self {
        self
    }
    fn valid(&self) -> Self {
        self.clone()
    }
    fn materialize(self) -> Self {
        self
    }
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.enter_module(TAG_NAME, Self::container_type());
        visitor.exit_module(TAG_NAME, Self::container_type());
    }
    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        mapper.enter_module(TAG_NAME, Self::container_type());
        mapper.exit_module(TAG_NAME, Self::container_type());
        self
    }
}

impl<L: 'static> ModuleDisplayDefault for LayerTag<L> {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_formatted(&Self::container_type()).optional()
    }
}

impl<L: 'static> ModuleDisplay for LayerTag<L> {}

/// Whether a visitor's `container_type` is the tag of Ember's [`crate::Linear`].
pub fn is_linear(container_type: &str) -> bool {
    container_type == LayerTag::<crate::Linear>::container_type()
}

/// Whether a visitor's `container_type` is the tag of Ember's [`crate::Embedding`].
pub fn is_embedding(container_type: &str) -> bool {
    container_type == LayerTag::<crate::Embedding>::container_type()
}
