//! `stockroom`: run the system, or one of its services.

// Every request allocates and frees many small buffers (JSON, headers,
// futures) across threads; mimalloc does that markedly faster than the
// system allocator, which the flash-sale benchmark showed as ~10 % of CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stockroom::cli::main()
}
