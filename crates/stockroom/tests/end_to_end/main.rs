//! End-to-end tests of the fixed system: real HTTP between the four services,
//! real SQLite files, real concurrency. One test binary for the crate; each
//! module covers one guarantee.

mod bad_input;
mod bench_smoke;
mod browser;
mod bus;
mod crash;
mod dashboard;
mod data_dir;
mod faults;
mod flow;
mod harness;
mod hoarding_clients;
mod hostile_pages;
mod idempotency;
mod internal_routes;
mod metrics;
mod naive_fence;
mod redelivery;
mod reservations;
mod scale_out;
mod secrets;
mod shop;
mod slow_clients;
mod traces;
mod webhooks;
