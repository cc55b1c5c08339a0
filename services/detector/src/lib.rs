//! Flywheel detector core.

pub mod alert;
pub mod burn;
pub mod cost;
pub mod slo;
pub mod window;

/// The dimensions an SLI is computed per.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliKey {
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
}
