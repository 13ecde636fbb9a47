//! The `airlock` binary: a thin wrapper over [`airlock_host::cli`].
#![forbid(unsafe_code)]

/// mimalloc: the host allocates and frees many small buffers per request
/// (HTTP, JSON, MCP messages) across threads, where it is faster than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    airlock_host::cli::main()
}
