//! Prometheus metrics, rendered as text on the admin listener's `/metrics`.
//!
//! A small registry (families of labelled series behind one mutex; updates are a map lookup and an add)
//! fed from the same events as the audit log, so every audited decision is also counted.
//! SECURITY/ops: label values never come from unbounded agent input; a denied tool's name (which an agent
//! chooses freely) is not a label, so a hostile agent cannot blow up the series count.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<String, f64>,
}

static REGISTRY: LazyLock<Mutex<BTreeMap<&'static str, Family>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn with<F: FnOnce(&mut Family)>(name: &'static str, help: &'static str, kind: &'static str, f: F) {
    let mut r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fam = r.entry(name).or_insert_with(|| Family {
        help,
        kind,
        series: BTreeMap::new(),
    });
    f(fam);
}

/// Add `v` to a counter or gauge series.
pub fn add(name: &'static str, help: &'static str, kind: &'static str, l: &[(&str, &str)], v: f64) {
    let key = labels(l);
    with(name, help, kind, |f| {
        *f.series.entry(key).or_insert(0.0) += v
    });
}

/// Record a latency observation in a histogram.
pub fn observe(name: &'static str, help: &'static str, l: &[(&str, &str)], d: Duration) {
    let secs = d.as_secs_f64();
    with(name, help, "histogram", |f| {
        for b in LATENCY_BUCKETS {
            if secs <= *b {
                let mut ll = l.to_vec();
                let le = b.to_string();
                ll.push(("le", &le));
                *f.series
                    .entry(format!("_bucket{}", labels(&ll)))
                    .or_insert(0.0) += 1.0;
            }
        }
        let mut ll = l.to_vec();
        ll.push(("le", "+Inf"));
        *f.series
            .entry(format!("_bucket{}", labels(&ll)))
            .or_insert(0.0) += 1.0;
        *f.series.entry(format!("_sum{}", labels(l))).or_insert(0.0) += secs;
        *f.series
            .entry(format!("_count{}", labels(l)))
            .or_insert(0.0) += 1.0;
    });
}

/// The text exposition format.
pub fn render() -> String {
    let r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut o = String::new();
    for (name, f) in r.iter() {
        let _ = writeln!(o, "# HELP {name} {}", f.help);
        let _ = writeln!(o, "# TYPE {name} {}", f.kind);
        for (k, v) in &f.series {
            let _ = writeln!(o, "{name}{k} {v}");
        }
    }
    o
}

/// A tool call (allowed or denied).
pub fn tool_call(config: &str, tool: &str, verdict: &str, outcome: &str) {
    let tool = if verdict == "allow" { tool } else { "" };
    add(
        "mcp_hub_tool_calls_total",
        "Tool calls by MCP config, tool (allowed calls only), verdict and outcome.",
        "counter",
        &[
            ("config", config),
            ("tool", tool),
            ("verdict", verdict),
            ("outcome", outcome),
        ],
        1.0,
    );
}

/// A gateway request refused before any upstream.
pub fn request_denied(reason: &str) {
    add(
        "mcp_hub_gateway_denials_total",
        "Gateway requests refused by the hub, by reason.",
        "counter",
        &[("reason", reason)],
        1.0,
    );
    if reason.starts_with("token_") {
        add(
            "mcp_hub_token_failures_total",
            "Refused bearer tokens, by reason.",
            "counter",
            &[("reason", reason)],
            1.0,
        );
    }
}

/// Upstream response time (to headers) per MCP config.
pub fn upstream_latency(config: &str, d: Duration) {
    observe(
        "mcp_hub_upstream_latency_seconds",
        "Time to upstream MCP response headers.",
        &[("config", config)],
        d,
    );
}

/// An egress connection's verdict.
pub fn connection(mode: &str, verdict: &str, reason: &str) {
    add(
        "mcp_hub_egress_connections_total",
        "Egress connections by listener, verdict and reason.",
        "counter",
        &[("mode", mode), ("verdict", verdict), ("reason", reason)],
        1.0,
    );
}

/// A DNS query's verdict.
pub fn dns(verdict: &str, reason: &str) {
    add(
        "mcp_hub_dns_queries_total",
        "DNS queries by verdict and reason.",
        "counter",
        &[("verdict", verdict), ("reason", reason)],
        1.0,
    );
}

/// A reload attempt.
pub fn reload(ok: bool) {
    add(
        "mcp_hub_reloads_total",
        "Configuration reloads by result.",
        "counter",
        &[("result", if ok { "ok" } else { "failed" })],
        1.0,
    );
}

/// Open tunnels (+1 when one opens, -1 when it ends).
pub fn tunnels(delta: f64) {
    add(
        "mcp_hub_active_tunnels",
        "Egress tunnels currently open.",
        "gauge",
        &[],
        delta,
    );
}

/// Open client connections to the gateway (+1/-1).
pub fn gateway_connections(delta: f64) {
    add(
        "mcp_hub_active_gateway_connections",
        "Client connections to the MCP gateway currently open.",
        "gauge",
        &[],
        delta,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        super::tool_call("github", "github.get_issue", "allow", "ok");
        super::tool_call("github", "anything-an-agent-invents", "deny", "rejected");
        super::upstream_latency("github", std::time::Duration::from_millis(3));
        let t = super::render();
        assert!(t.contains("# TYPE mcp_hub_tool_calls_total counter"), "{t}");
        assert!(t.contains("mcp_hub_tool_calls_total{config=\"github\",tool=\"github.get_issue\",verdict=\"allow\",outcome=\"ok\"} 1"), "{t}");
        assert!(
            !t.contains("anything-an-agent-invents"),
            "denied tool names are not labels"
        );
        assert!(
            t.contains("mcp_hub_upstream_latency_seconds_bucket{config=\"github\",le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("mcp_hub_upstream_latency_seconds_count{config=\"github\"} 1"),
            "{t}"
        );
    }
}
