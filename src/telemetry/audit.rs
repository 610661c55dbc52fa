//! Audit events: one structured line per tool call, per agent-gateway request and per denial, under the
//! `audit` target.
//!
//! Fields are stable keys so log pipelines can index them. Arguments, results and secrets are never
//! logged; the token is identified only by its devbox and env var.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::runtime::snapshot::{AgentBinding, Binding};

/// Log target for audit lines (`RUST_LOG=audit=info`).
pub const TARGET: &str = "audit";

/// A tool call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forwarded to the upstream.
    Allow,
    /// Refused by the hub.
    Deny,
}

impl Verdict {
    /// Stable text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Who made a request, for audit lines: the client address and the binding its token maps to (devbox,
/// env var, MCP config). Cloning is two words and a reference count, so every stage may keep one.
#[derive(Debug, Clone)]
pub struct Who {
    /// Client socket address.
    pub peer: SocketAddr,
    /// The authenticated binding.
    pub binding: Arc<Binding>,
}

impl Who {
    fn devbox(&self) -> &str {
        &self.binding.devbox
    }

    fn env_var(&self) -> &str {
        &self.binding.env_var
    }

    fn config(&self) -> &str {
        &self.binding.config.name
    }
}

/// One tool call, allowed or denied.
pub fn tool_call(
    who: &Who,
    tool: &str,
    verdict: Verdict,
    reason: &'static str,
    outcome: &'static str,
    started: Instant,
) {
    who.binding
        .metrics
        .tool_call(tool, verdict.as_str(), outcome);
    tracing::info!(
        target: TARGET,
        event = "tool_call",
        client.addr = %who.peer,
        devbox = who.devbox(),
        env_var = who.env_var(),
        mcp_config = who.config(),
        tool = %tool,
        verdict = verdict.as_str(),
        reason = reason,
        outcome = outcome,
        // Read from the clock only when the line is written (tracing evaluates fields after its
        // level check): a clock read per call is saved when audit lines are filtered out.
        latency_ms = millis(started),
        "tool call"
    );
}

/// A pinned config's upstream listed a tool new, changed, returned or gone: once per change, when the
/// hub first sees it. `state` is where the tool stands after it (`approved` only when an upstream went
/// back to the approved definition).
pub fn tool_change(
    config: &str,
    tool: &str,
    change: crate::policy::pins::Change,
    state: crate::policy::pins::State,
    digest: &crate::policy::pins::Digest,
    via: crate::runtime::pins::Via<'_>,
) {
    crate::telemetry::metrics::tool_change(config, change.as_str());
    tracing::warn!(
        target: TARGET,
        event = "tool_change",
        mcp_config = config,
        tool = %tool,
        change = change.as_str(),
        state = state.as_str(),
        digest = %digest,
        devbox = via.devbox,
        env_var = via.env_var,
        "tool definition changed upstream"
    );
}

/// A request refused before reaching any upstream (authentication, origin, session, malformed input).
pub fn denial(peer: SocketAddr, who: Option<&Who>, reason: &'static str, status: u16) {
    crate::telemetry::metrics::request_denied(reason);
    tracing::info!(
        target: TARGET,
        event = "request_denied",
        client.addr = %peer,
        devbox = who.map_or("", Who::devbox),
        env_var = who.map_or("", Who::env_var),
        mcp_config = who.map_or("", Who::config),
        verdict = "deny",
        reason = reason,
        status = status,
        "request denied"
    );
}

/// One agent-gateway request that reached the upstream, written when its response ends (completely, by
/// an error, or by the client going away).
pub struct AgentRequest<'a> {
    /// Client socket address.
    pub peer: SocketAddr,
    /// The authenticated binding.
    pub binding: &'a AgentBinding,
    /// Request method.
    pub method: &'a str,
    /// Request path as the devbox sent it (no query: it may carry parameters, never keys).
    pub path: &'a str,
    /// Upstream status.
    pub status: u16,
    /// Request body bytes forwarded.
    pub bytes_in: u64,
    /// Response body bytes relayed.
    pub bytes_out: u64,
    /// When the request arrived.
    pub started: Instant,
    /// Model and token usage the response reported.
    pub usage: &'a crate::agent::usage::Usage,
    /// `ok`, `client_cancelled`, `upstream_error`, `idle_timeout`.
    pub outcome: &'static str,
}

/// Audit and count one agent-gateway request.
pub fn agent_request(r: &AgentRequest<'_>) {
    let b = r.binding;
    b.metrics.record(
        r.usage.model.as_deref(),
        r.status,
        r.outcome,
        r.usage.input_tokens,
        r.usage.output_tokens,
    );
    tracing::info!(
        target: TARGET,
        event = "agent_request",
        client.addr = %r.peer,
        devbox = &*b.devbox,
        env_var = &*b.env_var,
        gateway_config = b.config.name.as_str(),
        method = r.method,
        path = r.path,
        status = r.status,
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        duration_ms = millis(r.started),
        model = r.usage.model.as_deref().unwrap_or(""),
        input_tokens = r.usage.input_tokens,
        output_tokens = r.usage.output_tokens,
        outcome = r.outcome,
        verdict = "allow",
        "agent request"
    );
}

/// An agent-gateway request refused before reaching the upstream.
pub fn agent_denial(
    peer: SocketAddr,
    binding: Option<&AgentBinding>,
    method: &str,
    path: &str,
    reason: &'static str,
    status: u16,
) {
    crate::telemetry::metrics::agent_denied(reason);
    tracing::info!(
        target: TARGET,
        event = "agent_request_denied",
        client.addr = %peer,
        devbox = binding.map_or("", |b| &*b.devbox),
        env_var = binding.map_or("", |b| &*b.env_var),
        gateway_config = binding.map_or("", |b| b.config.name.as_str()),
        method = method,
        path = path,
        verdict = "deny",
        reason = reason,
        status = status,
        "agent request denied"
    );
}

/// Milliseconds since `started`, to the microsecond: `0.178`, not `0.17797200000000002` (a float's
/// shortest round-trip form of a whole number of microseconds over 1000 has at most three decimals).
pub fn millis(started: Instant) -> f64 {
    in_millis(started.elapsed())
}

fn in_millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn milliseconds_have_at_most_three_decimals() {
        // The figure the issue saw printed as 0.17797200000000002.
        let seen = super::in_millis(std::time::Duration::from_nanos(177_972));
        assert_eq!(seen.to_string(), "0.177");
        for us in [0u64, 1, 178, 17_797, 123_456_789, 999_999] {
            let text = super::in_millis(std::time::Duration::from_micros(us)).to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "{us} us printed as {text}");
        }
    }
}
