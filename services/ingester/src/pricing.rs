//! The price table, from `flywheel-pricing` (shared with the detector; the built-in table is
//! `prices.toml` beside this crate).

pub use flywheel_pricing::{normalize_model, Price, PriceTable, Usage};
