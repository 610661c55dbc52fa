//! What the hub tells its operator: one audit line per decision, and Prometheus metrics.

pub mod audit;
pub mod metrics;
