//! Flywheel detector core.

pub mod slo;
pub mod window;
pub mod burn;
pub mod cost;

/// The dimensions an SLI is computed per.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliKey {
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
}
