//! Prometheus metrics on `prometheus-client`, rendered as OpenMetrics text on the admin listener's
//! `/metrics`.
//!
//! Fed from the same events as the audit log, so every audited decision is also counted. Each family has
//! a typed label set whose values are `&'static str` codes or names the operator configured, so a wrong
//! label or metric kind is a compile error. The per-call handles (an MCP config's name and its latency
//! histogram) are resolved once per config when the snapshot is built ([`ConfigMetrics`]), so a call
//! clones no string to find them.
//!
//! SECURITY/ops: label values never come from unbounded agent input. A tool name is a label only when the
//! upstream answered the call successfully (so the tool exists); denied calls and calls the upstream
//! refused (an agent can invent names under `allowed_tools = ["*"]`) count under `tool=""`. An upstream
//! could still invent names, so tool series are capped at [`MAX_TOOL_SERIES`]; later names count under
//! `tool="_other"`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Tool-call series (distinct config and tool pairs, all verdicts) before new tool names fold into
/// `tool="_other"`.
pub const MAX_TOOL_SERIES: usize = 2_000;

/// Tool-call series created so far.
static TOOL_SERIES: AtomicUsize = AtomicUsize::new(0);

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolCall {
    config: Arc<str>,
    tool: Box<str>,
    verdict: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabel {
    config: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolChange {
    config: Arc<str>,
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Connection {
    mode: &'static str,
    verdict: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Dns {
    verdict: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentRequest {
    config: Arc<str>,
    devbox: Arc<str>,
    binding: Arc<str>,
    model: Arc<str>,
    status: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentTokens {
    config: Arc<str>,
    devbox: Arc<str>,
    binding: Arc<str>,
    model: Arc<str>,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadResult {
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every family, and the registry that renders them.
struct Metrics {
    registry: Registry,
    tool_calls: Family<ToolCall, Counter>,
    gateway_denials: Family<Reason, Counter>,
    token_failures: Family<Reason, Counter>,
    upstream_latency: Family<ConfigLabel, Histogram, fn() -> Histogram>,
    egress_connections: Family<Connection, Counter>,
    dns_queries: Family<Dns, Counter>,
    reloads: Family<ReloadResult, Counter>,
    agent_requests: Family<AgentRequest, Counter>,
    agent_tokens: Family<AgentTokens, Counter>,
    agent_denials: Family<Reason, Counter>,
    tool_changes: Family<ToolChange, Counter>,
    active_tunnels: Gauge,
    active_gateway_connections: Gauge,
}

/// Register `metric` (a handle sharing its values) under `mcp_hub_<name>`.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: &M) {
    registry.register(name, help, metric.clone());
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut m = Metrics {
        registry: Registry::with_prefix("mcp_hub"),
        tool_calls: Family::default(),
        gateway_denials: Family::default(),
        token_failures: Family::default(),
        upstream_latency: Family::new_with_constructor(latency_histogram),
        egress_connections: Family::default(),
        dns_queries: Family::default(),
        reloads: Family::default(),
        agent_requests: Family::default(),
        agent_tokens: Family::default(),
        agent_denials: Family::default(),
        tool_changes: Family::default(),
        active_tunnels: Gauge::default(),
        active_gateway_connections: Gauge::default(),
    };
    add(
        &mut m.registry,
        "tool_calls",
        "Tool calls by MCP config, tool (allowed calls only), verdict and outcome",
        &m.tool_calls,
    );
    add(
        &mut m.registry,
        "gateway_denials",
        "Gateway requests refused by the hub, by reason",
        &m.gateway_denials,
    );
    add(
        &mut m.registry,
        "token_failures",
        "Refused bearer tokens, by reason",
        &m.token_failures,
    );
    add(
        &mut m.registry,
        "upstream_latency_seconds",
        "Time to upstream MCP response headers",
        &m.upstream_latency,
    );
    add(
        &mut m.registry,
        "egress_connections",
        "Egress connections by listener, verdict and reason",
        &m.egress_connections,
    );
    add(
        &mut m.registry,
        "dns_queries",
        "DNS queries by verdict and reason",
        &m.dns_queries,
    );
    add(
        &mut m.registry,
        "reloads",
        "Configuration reloads by result",
        &m.reloads,
    );
    add(
        &mut m.registry,
        "agent_requests",
        "Agent-gateway requests forwarded, by gateway config, devbox, binding, model, status class and outcome",
        &m.agent_requests,
    );
    add(
        &mut m.registry,
        "agent_tokens",
        "Tokens the upstream reported, by gateway config, devbox, binding, model and direction",
        &m.agent_tokens,
    );
    add(
        &mut m.registry,
        "agent_gateway_denials",
        "Agent-gateway requests refused by the hub, by reason",
        &m.agent_denials,
    );
    add(
        &mut m.registry,
        "tool_changes",
        "Tool definitions of pinned MCP configs that upstreams added, changed or removed, once per change",
        &m.tool_changes,
    );
    add(
        &mut m.registry,
        "active_tunnels",
        "Egress tunnels currently open",
        &m.active_tunnels,
    );
    add(
        &mut m.registry,
        "active_gateway_connections",
        "Client connections to the hub's TLS front door (MCP and agent gateway) currently open",
        &m.active_gateway_connections,
    );
    m
});

/// One MCP config's handles, resolved when the snapshot is built and shared by its bindings; a
/// reload that keeps the config's name finds the same series, so counts carry on.
#[derive(Debug)]
pub struct ConfigMetrics {
    name: Arc<str>,
    latency: Histogram,
}

impl ConfigMetrics {
    /// The handles of the config named `name`.
    pub fn new(name: &str) -> Self {
        let name: Arc<str> = name.into();
        let latency = METRICS.upstream_latency.get_or_create_owned(&ConfigLabel {
            config: name.clone(),
        });
        Self { name, latency }
    }

    /// Upstream response time (to headers).
    pub fn upstream_latency(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }

    /// A tool call (allowed or denied).
    pub fn tool_call(&self, tool: &str, verdict: &'static str, outcome: &'static str) {
        // SECURITY/ops: only a tool the upstream answered for is a label (see the module doc).
        let tool = if verdict == "allow" && matches!(outcome, "ok" | "tool_error") {
            tool
        } else {
            ""
        };
        let mut labels = ToolCall {
            config: self.name.clone(),
            tool: tool.into(),
            verdict,
            outcome,
        };
        let family = &METRICS.tool_calls;
        if let Some(c) = family.get(&labels) {
            c.inc();
            return;
        }
        // A new series. Counted here (prometheus-client's `Family` exposes no length outside tests); two
        // threads creating the same series at once count it twice, which only caps a little early.
        if TOOL_SERIES.fetch_add(1, Ordering::Relaxed) >= MAX_TOOL_SERIES {
            labels.tool = "_other".into();
        }
        family.get_or_create(&labels).inc();
    }
}

/// A gateway request refused before any upstream.
pub fn request_denied(reason: &'static str) {
    denied(&METRICS.gateway_denials, reason);
}

/// Count a refusal in `family`, and a token refusal also in `token_failures` (both gateways' tokens).
fn denied(family: &Family<Reason, Counter>, reason: &'static str) {
    family.get_or_create(&Reason { reason }).inc();
    if reason.starts_with("token_") {
        METRICS
            .token_failures
            .get_or_create(&Reason { reason })
            .inc();
    }
}

/// An egress connection's verdict.
pub fn connection(mode: &'static str, verdict: &'static str, reason: &'static str) {
    let l = Connection {
        mode,
        verdict,
        reason,
    };
    METRICS.egress_connections.get_or_create(&l).inc();
}

/// A DNS query's verdict.
pub fn dns(verdict: &'static str, reason: &'static str) {
    METRICS
        .dns_queries
        .get_or_create(&Dns { verdict, reason })
        .inc();
}

/// A pinned config's tool changed upstream (`change`: added, changed, removed). Config names are the
/// operator's, so the series are bounded by the configuration.
pub fn tool_change(config: &str, change: &'static str) {
    METRICS
        .tool_changes
        .get_or_create(&ToolChange {
            config: config.into(),
            change,
        })
        .inc();
}

/// A reload attempt.
pub fn reload(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    METRICS
        .reloads
        .get_or_create(&ReloadResult { result })
        .inc();
}

/// Distinct models named in agent-gateway series before further names count as `model="_other"`
/// (a model name is what the upstream, or the client, says).
pub const MAX_MODEL_SERIES: usize = 200;

static MODELS: LazyLock<std::sync::Mutex<std::collections::HashSet<Arc<str>>>> =
    LazyLock::new(Default::default);

fn model_label(model: Option<&str>) -> Arc<str> {
    let Some(m) = model else {
        return "".into();
    };
    let mut seen = MODELS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = seen.get(m) {
        return known.clone();
    }
    if seen.len() >= MAX_MODEL_SERIES {
        return "_other".into();
    }
    let m: Arc<str> = m.into();
    seen.insert(m.clone());
    m
}

/// One agent-gateway binding's handles: its label values, resolved when the snapshot is built, and the
/// series it has counted into, so a call neither allocates a label nor hashes six of them.
#[derive(Debug)]
pub struct AgentMetrics {
    config: Arc<str>,
    devbox: Arc<str>,
    binding: Arc<str>,
    series: std::sync::Mutex<Vec<AgentSeries>>,
}

/// The counters of one (model, status class, outcome) of a binding.
#[derive(Debug)]
struct AgentSeries {
    model: Option<Box<str>>,
    status: &'static str,
    outcome: &'static str,
    requests: Counter,
    input: Counter,
    output: Counter,
}

/// Series one binding keeps handles to; beyond, calls look their series up (still counted).
const CACHED_AGENT_SERIES: usize = 32;

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl AgentMetrics {
    /// The handles of binding `binding` of devbox `devbox`, through gateway config `config`.
    pub fn new(config: &str, devbox: &str, binding: &str) -> Self {
        Self {
            config: config.into(),
            devbox: devbox.into(),
            binding: binding.into(),
            series: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn resolve(
        &self,
        model: Option<&str>,
        status: &'static str,
        outcome: &'static str,
    ) -> AgentSeries {
        let model_label = model_label(model);
        let tokens = |direction| {
            METRICS.agent_tokens.get_or_create_owned(&AgentTokens {
                config: self.config.clone(),
                devbox: self.devbox.clone(),
                binding: self.binding.clone(),
                model: model_label.clone(),
                direction,
            })
        };
        AgentSeries {
            model: model.map(Into::into),
            status,
            outcome,
            requests: METRICS.agent_requests.get_or_create_owned(&AgentRequest {
                config: self.config.clone(),
                devbox: self.devbox.clone(),
                binding: self.binding.clone(),
                model: model_label.clone(),
                status,
                outcome,
            }),
            input: tokens("input"),
            output: tokens("output"),
        }
    }

    /// Count one forwarded request and the tokens the upstream reported for it.
    pub fn record(
        &self,
        model: Option<&str>,
        status: u16,
        outcome: &'static str,
        input_tokens: u64,
        output_tokens: u64,
    ) {
        let status = status_class(status);
        let count = |s: &AgentSeries| {
            s.requests.inc();
            if input_tokens > 0 {
                s.input.inc_by(input_tokens);
            }
            if output_tokens > 0 {
                s.output.inc_by(output_tokens);
            }
        };
        let mut cached = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cached
            .iter()
            .find(|s| s.status == status && s.outcome == outcome && s.model.as_deref() == model)
        {
            return count(s);
        }
        let s = self.resolve(model, status, outcome);
        count(&s);
        if cached.len() < CACHED_AGENT_SERIES {
            cached.push(s);
        }
    }
}

/// An agent-gateway request refused by the hub.
pub fn agent_denied(reason: &'static str) {
    denied(&METRICS.agent_denials, reason);
}

/// Open tunnels (+1 when one opens, -1 when it ends).
pub fn tunnels(delta: i64) {
    METRICS.active_tunnels.inc_by(delta);
}

/// Open client connections to the gateway (+1/-1).
pub fn gateway_connections(delta: i64) {
    METRICS.active_gateway_connections.inc_by(delta);
}

/// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
pub fn render() -> String {
    let mut o = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut o, &METRICS.registry) {
        tracing::warn!(error = %e, "Cannot render metrics");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_typed_families() {
        let github = ConfigMetrics::new("github");
        github.tool_call("github.get_issue", "allow", "ok");
        github.tool_call("anything-an-agent-invents", "deny", "rejected");
        // Allowed by a glob but refused by the upstream: the name is the agent's, not a label.
        github.tool_call("invented-under-a-star", "allow", "error");
        github.upstream_latency(Duration::from_millis(3));
        // The same config after a reload: the same series.
        ConfigMetrics::new("github").upstream_latency(Duration::from_millis(3));
        let t = render();
        assert!(t.contains("# TYPE mcp_hub_tool_calls counter"), "{t}");
        assert!(t.contains("mcp_hub_tool_calls_total{config=\"github\",tool=\"github.get_issue\",verdict=\"allow\",outcome=\"ok\"} 1"), "{t}");
        assert!(
            !t.contains("anything-an-agent-invents") && !t.contains("invented-under-a-star"),
            "only tools the upstream answered for are labels: {t}"
        );
        assert!(
            t.contains("mcp_hub_upstream_latency_seconds_bucket{le=\"0.005\",config=\"github\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("mcp_hub_upstream_latency_seconds_count{config=\"github\"} 2"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn tool_series_stop_growing_at_the_cap() {
        let c = ConfigMetrics::new("cap");
        for i in 0..MAX_TOOL_SERIES + 50 {
            c.tool_call(&format!("t{i}\"\n"), "allow", "ok");
        }
        let t = render();
        let n = t
            .lines()
            .filter(|l| l.starts_with("mcp_hub_tool_calls_total{"))
            .count();
        assert_eq!(n, MAX_TOOL_SERIES + 1, "the cap plus the _other series");
        let other: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("mcp_hub_tool_calls_total{config=\"cap\",tool=\"_other\",verdict=\"allow\",outcome=\"ok\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(other >= 50, "{t}");
        // Label values are escaped: a name cannot break the exposition.
        assert!(t.contains("tool=\"t0\\\"\\n\""), "{t}");
    }
}
