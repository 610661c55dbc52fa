//! # mcp-hub
//!
//! A network appliance for sandboxed agent devboxes: one HTTPS endpoint in front of many upstream MCP
//! servers (per-server opaque tokens, credential injection, tool filtering), an agent gateway doing the
//! same for REST APIs such as the model provider, and an egress proxy every devbox connection goes
//! through (per-devbox network policy, default deny).
//!
//! # Layout
//!
//! Dependencies point one way: `config -> policy`; `state -> config`; `runtime -> config, state`;
//! the products (`egress`, `mcp`, `agent`) `-> runtime, policy, telemetry`; `front -> mcp, agent` (the
//! TLS front door both gateways share); `egress -> front` only to serve the gateway hosts it
//! intercepts; `ops` wires everything.
//!
//! Core
//! - [`policy`]: the pure decisions: network policy ([`policy::decide`], [`policy::admit`]), host and
//!   address parsing ([`policy::host`], [`policy::ip`]), tool globs ([`policy::tools`]), tool
//!   definitions' digests ([`policy::pins`]).
//! - [`config`]: `hub.toml`: raw serde ([`config`]`::raw`) -> validated domain types
//!   ([`config::validate`]; the agent gateway's in [`config::agent`]); upstream origins
//!   ([`config::origin`]).
//! - [`state`]: devboxes, issued tokens, secrets, the token key and token format ([`state::token`]);
//!   atomic file writes ([`state::fsutil`]).
//! - [`runtime`]: the joined [`runtime::Snapshot`] and the [`runtime::Live`] handle that swaps it;
//!   token authentication ([`runtime::snapshot`]), credential injection and redaction
//!   ([`runtime::credentials`]).
//! - [`tls`]: the hub CA (rcgen, name-constrained) and upstream trust.
//! - [`telemetry`]: audit lines ([`telemetry::audit`]) and Prometheus metrics ([`telemetry::metrics`]).
//! - [`listen`]: the one accept loop with backoff every listener uses. [`body`]: the gateways' response
//!   body type. [`sse`]: server-sent-event framing (both gateways' relays). [`upstream`]: the pooled
//!   upstream client both gateways (and `tools refresh`) use.
//!   [`runtime::ledger`]: per-binding usage behind the agent gateway's limits.
//!
//! Egress ([`egress`]): accept -> identify -> sniff -> decide -> resolve -> admit -> dial -> tunnel.
//! - [`egress::detect`]: ClientHello and request-head sniffing. [`egress::forward`]: plain-HTTP
//!   forwarding, one request per connection. [`egress::splice`]: tunnels. [`egress::resolve`]: names to
//!   addresses. [`egress::local`]: the host's own addresses (loop guard). [`egress::respond`]: refusals
//!   as HTTP. [`egress::io`]: replaying sniffed bytes. [`egress::dns`]: the devboxes' DNS responder.
//!   [`egress::firewall`]: the nftables ruleset.
//!
//! Front door ([`front`]): one TLS listener for both gateways, each request routed by host.
//! - [`front::listener`]: TLS, HTTP/1.1 and h2, workers, idle watchdog, drain. [`front::Front`]: the
//!   routing by host (and path, when the gateways share a host).
//!
//! MCP gateway ([`mcp`]): authenticate -> check -> filter -> inject -> relay.
//! - [`mcp::gateway`]: the request pipeline, one exit. [`mcp::denial`]: its typed refusals.
//!   [`mcp::body`]: bounded request bodies. [`mcp::jsonrpc`]: messages and tool filtering of results.
//!   [`mcp::relay`]: the response relay (JSON and SSE).
//!   [`mcp::session`]: session ids. [`mcp::respond`]: response bodies. [`mcp::refresh`]: the hub's own
//!   `tools/list` of an upstream (`tools refresh`).
//! - Tool pinning: the digest and states in [`policy::pins`], the live table in [`runtime::pins`]
//!   (asked by the gateway's call screening and the relay's list filter), the two state files in
//!   [`state::tools`], the operator's commands in [`ops::edit::tools`].
//!
//! Agent gateway ([`agent`]): credential -> authenticate -> policy -> path -> limits -> body -> inject
//! -> relay.
//! - [`agent`]: the request pipeline, one exit. [`agent::credential`]: the token from any SDK's key
//!   header. [`agent::refusal`]: typed refusals in each provider's error shape. [`agent::headers`]: the
//!   allowlists each way. [`agent::relay`]: streamed,
//!   redacted, metered responses and the audit line. [`agent::usage`]: model and token usage.
//!
//! Appliance ([`ops`])
//! - [`ops::start`]: start-up wiring and shutdown. [`ops::reload`]: live reload.
//!   [`ops::systemd`]: sd_notify. [`ops::admin`]: the `[admin] listen` HTTP listener (health,
//!   metrics). [`ops::socket`]: the `[admin] socket` the CLI talks to. [`ops::edit`]: the operator's
//!   edits, validated before they are written.
//! - [`demo`]: `mcp-hub demo`, the product on its embedded default, with its sample MCP server
//!   ([`demo::upstream`]) and sample model ([`demo::llm`]). `cli` (in the binary): the commands.

pub mod agent;
pub mod body;
pub mod config;
pub mod demo;
pub mod egress;
pub mod front;
pub mod listen;
pub mod mcp;
pub mod ops;
pub mod policy;
pub mod runtime;
pub mod sse;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
