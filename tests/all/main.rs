//! airlock's integration tests: one binary, real components built from source,
//! real HTTP on loopback. See `tests/src/lib.rs` for the shared pieces.

mod audit;
mod calendar;
mod cli;
mod concurrency;
mod connect;
mod delegation;
mod demo;
mod dev;
mod edge;
mod envelope;
mod examples;
mod hostile;
mod jwks;
mod leaks;
mod load;
mod loading;
mod logs;
mod mcp;
mod memory;
mod ops;
mod semantics;
mod serve;
mod sessions;
mod slow;
mod tidy;
mod vault;
mod wire;
