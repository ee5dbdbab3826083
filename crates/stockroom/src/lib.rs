//! The `stockroom` command and the launcher it shares with the tests.
//!
//! [`system::start`] runs all four services in one process, each on its own
//! port and talking real HTTP to the others; `stockroom up` and the end-to-end
//! tests both use it, so what the tests prove is what users run.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod stock;
pub mod system;
pub mod telemetry;
