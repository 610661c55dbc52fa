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
    series: BTreeMap<String, Series>,
}

/// One labelled series: a value (counter, gauge) or a histogram's buckets.
enum Series {
    Value(f64),
    Histogram {
        buckets: [u64; LATENCY_BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

static REGISTRY: LazyLock<Mutex<BTreeMap<&'static str, Family>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{k="v",...}` (empty without labels); one allocation per update, on the request path.
fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let mut o = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{k}=\"{}\"", escape(v));
    }
    o.push('}');
    o
}

fn with<F: FnOnce(&mut BTreeMap<String, Series>)>(
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    f: F,
) {
    let mut r = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut r
        .entry(name)
        .or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        })
        .series);
}

/// Add `v` to a counter or gauge series.
pub fn add(name: &'static str, help: &'static str, kind: &'static str, l: &[(&str, &str)], v: f64) {
    let key = labels(l);
    with(name, help, kind, |s| {
        if let Series::Value(x) = s.entry(key).or_insert(Series::Value(0.0)) {
            *x += v;
        }
    });
}

/// Record a latency observation in a histogram.
pub fn observe(name: &'static str, help: &'static str, l: &[(&str, &str)], d: Duration) {
    let secs = d.as_secs_f64();
    let key = labels(l);
    with(name, help, "histogram", |s| {
        let e = s.entry(key).or_insert(Series::Histogram {
            buckets: [0; LATENCY_BUCKETS.len()],
            sum: 0.0,
            count: 0,
        });
        if let Series::Histogram {
            buckets,
            sum,
            count,
        } = e
        {
            if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
                buckets[i] += 1;
            }
            *sum += secs;
            *count += 1;
        }
    });
}

/// Insert `le` into a rendered label set.
fn with_le(key: &str, le: &str) -> String {
    match key.strip_suffix('}') {
        Some(inner) => format!("{inner},le=\"{le}\"}}"),
        None => format!("{{le=\"{le}\"}}"),
    }
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
        for (k, s) in &f.series {
            match s {
                Series::Value(v) => {
                    let _ = writeln!(o, "{name}{k} {v}");
                }
                Series::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let mut cumulative = 0;
                    for (b, n) in LATENCY_BUCKETS.iter().zip(buckets) {
                        cumulative += n;
                        let _ = writeln!(
                            o,
                            "{name}_bucket{} {cumulative}",
                            with_le(k, &b.to_string())
                        );
                    }
                    let _ = writeln!(o, "{name}_bucket{} {count}", with_le(k, "+Inf"));
                    let _ = writeln!(o, "{name}_sum{k} {sum}");
                    let _ = writeln!(o, "{name}_count{k} {count}");
                }
            }
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
