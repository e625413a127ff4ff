//! The sluice command line, unchanged, for the end-to-end tests to spawn.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
