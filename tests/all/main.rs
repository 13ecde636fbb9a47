//! airlock's integration tests: one binary, real components built from source,
//! real HTTP on loopback. See `tests/src/lib.rs` for the shared pieces.

mod cli;
mod concurrency;
mod examples;
mod hostile;
mod loading;
mod memory;
mod tidy;
