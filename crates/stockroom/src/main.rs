//! `stockroom`: run the system, or one of its services.

fn main() -> std::process::ExitCode {
    stockroom::cli::main()
}
