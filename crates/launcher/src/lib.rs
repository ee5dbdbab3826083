//! Starting Stockroom, in every shape it runs in.
//!
//! [`system::start`] runs all four services in one process, each on its own
//! port and talking real HTTP to the others; `stockroom up`, the benchmarks
//! and the end-to-end tests all use it, so what the tests prove is what users
//! run. [`cluster::start`] runs N processes of every service over one
//! PostgreSQL database and one RabbitMQ broker (`stockroom cluster`, and the
//! fault campaign's stage). [`InProcessLauncher`] starts the fixed system for
//! the race lab and the dashboard's lab control. [`stock`] is the initial
//! stock every system loads on its first start.

pub mod cluster;
mod lab;
pub mod stock;
pub mod system;

pub use self::lab::InProcessLauncher;
