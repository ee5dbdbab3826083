//! The `stockroom` command: argument parsing and each command's wiring.

pub mod cli;
pub mod telemetry;
