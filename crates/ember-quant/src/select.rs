//! Which layers a whole-model pass covers.
//!
//! Quantization ([`crate::QuantizeConfig`], [`crate::qat::QatConfig`]) and ember-prune's
//! `PruneConfig` select layers the same way, with Burn's own matcher: `include` and `exclude`
//! are regular expressions searched in each layer's **weight parameter path**
//! (`encoder.attention.0.query.weight`), combined as
//! `ParamGroup::from_any_regexes(include).exclude(ParamGroup::from_any_regexes(exclude))`; an
//! empty `include` selects every layer. `attention` therefore matches every path containing
//! it; anchor with `^` / `$` and escape dots (`^head\.`) to be exact.

use crate::error::{QuantError, Result};
use burn::module::{ParamGroup, ParamId};

/// The [`ParamGroup`] of `include` minus `exclude` (see the [module docs](self)).
///
/// # Errors
/// [`QuantError::InvalidConfig`] naming the first pattern that is not a valid regular
/// expression.
pub fn selection(include: &[String], exclude: &[String]) -> Result<ParamGroup> {
    let group = |what: &'static str, patterns: &[String]| -> Result<ParamGroup> {
        for p in patterns {
            ParamGroup::from_regex(p).map_err(|e| QuantError::InvalidConfig {
                what,
                value: format!("{p:?}"),
                expected: format!(
                    "a regular expression searched in weight paths such as `encoder.attention.0.query.weight` \
                     ({e:?}); `*` alone is not a pattern, `.*` or an empty list selects everything"
                ),
            })?;
        }
        ParamGroup::from_any_regexes(patterns.to_vec()).map_err(|e| QuantError::InvalidConfig {
            what,
            value: format!("{patterns:?}"),
            expected: format!("{e:?}"),
        })
    };
    let base = if include.is_empty() { ParamGroup::all() } else { group("include", include)? };
    Ok(if exclude.is_empty() { base } else { base.exclude(group("exclude", exclude)?) })
}

/// Whether the layer at `layer` (its weight `id`) is in `group`, matched by its weight path.
pub(crate) fn selects(group: &ParamGroup, layer: &str, id: &ParamId) -> bool {
    let wpath = if layer.is_empty() { "weight".to_string() } else { format!("{layer}.weight") };
    group.matches(id, Some(&wpath))
}
