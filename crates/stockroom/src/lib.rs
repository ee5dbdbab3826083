//! The `stockroom` command: argument parsing and each command's wiring, with
//! the fault campaign and the benchmarks it runs.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod telemetry;
