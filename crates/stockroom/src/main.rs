//! `stockroom`: run the system, or one of its services, and the race lab,
//! fault campaign and benchmarks around it.
//!
//! This crate parses the command line and wires each command to the crates
//! that do the work (the services, `stockroom-launcher`, `stockroom-lab`,
//! `stockroom-chaos`, `stockroom-bench`, `stockroom-model`), and installs
//! the logs and traces of `stockroom-telemetry`; nothing else.

mod cli;

// Every request allocates and frees many small buffers (JSON, headers,
// futures) across threads; mimalloc does that markedly faster than the
// system allocator, which the flash-sale benchmark showed as ~10 % of CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
