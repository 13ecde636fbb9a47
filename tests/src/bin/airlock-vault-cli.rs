//! The `airlock` command line as its own executable inside this package, so
//! the vault tests can run it as a real process (stdin, exit code, a
//! database lock held by another process).

fn main() -> std::process::ExitCode {
    airlock_host::cli::main()
}
