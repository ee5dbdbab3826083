//! The `stockroom` command: argument parsing and each command's wiring, with
//! the benchmarks it runs.

pub mod bench;
pub mod cli;
pub mod telemetry;
