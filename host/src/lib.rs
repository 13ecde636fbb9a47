//! airlock: a multi-tenant MCP host that runs untrusted tools in WebAssembly
//! sandboxes. See ARCHITECTURE.md for the module map and invariants.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod config;
pub mod connect;
pub mod delegate;
pub mod dev;
pub mod edge;
pub mod envelope;
pub mod invoke;
pub mod mcp;
pub mod metrics;
pub mod registry;
pub mod rounds;
pub mod sandbox;
pub mod server;
pub mod storage;
pub mod vault;
