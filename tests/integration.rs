//! Integration tests: the real hub on 127.0.0.1:0, real TLS, real HTTP/1.1 and h2 clients, in-process
//! upstream MCP servers, the real binary, and (in `interop`) the official Python SDK and
//! server-everything.

// Test helpers outside #[test] fns panic on purpose: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod cases;
mod support;
