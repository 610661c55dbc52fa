//! # mcp-hub
//!
//! One HTTPS endpoint in front of many upstream MCP servers, for agents in sandboxed devboxes: per-server
//! opaque tokens, credential injection, and glob tool filtering.
//!
//! # Layout
//! - [`config`]: `hub.toml` (raw serde -> validated domain types) and the runtime [`config::Snapshot`].
//! - [`state`]: devboxes, issued tokens, secrets, the token key; atomic file writes.
//! - [`tls`]: the hub CA (rcgen, name-constrained) and upstream trust.
//! - [`mcp`]: the gateway service: authenticate, filter, inject, relay (JSON and SSE).
//! - [`server`]: listener, TLS handshake, HTTP/1.1 + h2, graceful drain.
//! - [`reload`]: live reload of every file within a second.
//! - [`manage`]: operator edits behind the CLI, validated before they are written.
//! - [`app`]: start-up wiring. [`demo`]: the newcomer's `mcp-hub demo`. [`audit`]: audit lines.

pub mod admin;
pub mod app;
pub mod audit;
pub mod config;
pub mod control;
pub mod demo;
pub mod dns;
pub mod firewall;
pub mod manage;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod state;
pub mod systemd;
pub mod tls;
