//! Prometheus metrics, rendered as text on the admin listener's `/metrics`.
//!
//! A small registry (families of labelled series; updates are a map lookup and an add) fed from the same
//! events as the audit log, so every audited decision is also counted. Updates sit on the request path,
//! so they allocate nothing once a series exists (a label set is found by its fingerprint and compared
//! part by part; it is rendered as text only by a scrape), and they share no memory between threads:
//! each thread counts into its own shard, whose lock only `/metrics` ever contends for, and a scrape
//! sums the shards. (One shared registry made the gateway workers take turns on one lock and one set of
//! cache lines twice per call.)
//! SECURITY/ops: label values never come from unbounded agent input. A tool name is a label only when the
//! upstream answered the call successfully (so the tool exists); denied calls and calls the upstream
//! refused (an agent can invent names under `allowed_tools = ["*"]`) count under `tool=""`. Each family
//! is also capped at `MAX_SERIES`, beyond which new label sets fold into one overflow series.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A series' label set as stored: names are literals, values owned.
type Labels = Box<[(&'static str, Box<str>)]>;

#[derive(Clone)]
struct Family {
    help: &'static str,
    kind: &'static str,
    /// Series by the fingerprint of their label set. A list holds more than one series only when two
    /// label sets share a fingerprint; labels are always compared in full.
    series: HashMap<u64, Vec<(Labels, Series)>, foldhash::fast::RandomState>,
    /// Number of series, the overflow series not counted.
    len: usize,
}

impl Family {
    fn new(help: &'static str, kind: &'static str) -> Self {
        Self {
            help,
            kind,
            series: HashMap::default(),
            len: 0,
        }
    }

    /// The series for `l`, created with `init` if new, or the overflow series once the family is full.
    /// Looked up by fingerprint and compared part by part: nothing is rendered or allocated once the
    /// series exists.
    fn series_mut(
        &mut self,
        l: &[(&'static str, &str)],
        init: impl FnOnce() -> Series,
    ) -> &mut Series {
        let mut fp = fingerprint(l);
        let mut l = l;
        if self.len >= MAX_SERIES && self.series.get(&fp).is_none_or(|v| find(v, l).is_none()) {
            (fp, l) = (fingerprint(OVERFLOW), OVERFLOW);
        }
        let list = self.series.entry(fp).or_default();
        let i = match find(list, l) {
            Some(i) => i,
            None => {
                let owned = l.iter().map(|(k, v)| (*k, Box::from(*v))).collect();
                list.push((owned, init()));
                // The overflow series is over and above the cap, however a merge meets it.
                if l != OVERFLOW {
                    self.len += 1;
                }
                list.len() - 1
            }
        };
        &mut list[i].1
    }
}

/// Position of the series labelled exactly `l` in a fingerprint's list.
fn find(list: &[(Labels, Series)], l: &[(&str, &str)]) -> Option<usize> {
    list.iter().position(|(stored, _)| {
        stored.len() == l.len()
            && stored
                .iter()
                .zip(l)
                .all(|((a, b), (c, d))| same_name(a, c) && **b == **d)
    })
}

/// Label names are literals: usually the very same one, found without comparing bytes.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

/// A label set's fingerprint, over its values (names are fixed per family, and compared by [`find`]).
/// The seed is fixed so every thread's shard agrees when a scrape merges them.
fn fingerprint(l: &[(&str, &str)]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x6d63_705f_6875_6221).build_hasher();
    for (_, v) in l {
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// One labelled series: a value (counter, gauge) or a histogram's buckets.
#[derive(Clone)]
enum Series {
    Value(f64),
    Histogram {
        buckets: [u64; LATENCY_BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

impl Series {
    fn histogram() -> Self {
        Series::Histogram {
            buckets: [0; LATENCY_BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// A zero series of the same kind.
    fn empty_like(&self) -> Self {
        match self {
            Series::Value(_) => Series::Value(0.0),
            Series::Histogram { .. } => Series::histogram(),
        }
    }

    /// Fold another shard's count of the same series into this one.
    fn merge(&mut self, other: &Series) {
        match (self, other) {
            (Series::Value(a), Series::Value(b)) => *a += b,
            (
                Series::Histogram {
                    buckets,
                    sum,
                    count,
                },
                Series::Histogram {
                    buckets: b,
                    sum: s,
                    count: c,
                },
            ) => {
                for (x, y) in buckets.iter_mut().zip(b) {
                    *x += y;
                }
                *sum += s;
                *count += c;
            }
            // A family's kind is fixed by its name; mismatches cannot arise.
            _ => {}
        }
    }
}

/// Families by name.
type Registry = HashMap<&'static str, Family, foldhash::fast::RandomState>;

/// Series per family before new label sets fold into [`OVERFLOW`].
const MAX_SERIES: usize = 2_000;
/// The label set that absorbs updates once a family is full.
const OVERFLOW: &[(&str, &str)] = &[("overflow", "true")];

/// Every thread's shard, and the counts of threads that have ended (counters never go back).
#[derive(Default)]
struct Shards {
    live: Vec<Arc<Mutex<Registry>>>,
    retired: Registry,
}

static SHARDS: LazyLock<Mutex<Shards>> = LazyLock::new(Mutex::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's shard; when the thread ends, its counts move to [`Shards::retired`].
struct Shard(Arc<Mutex<Registry>>);

impl Shard {
    fn register() -> Self {
        let s = Arc::new(Mutex::new(Registry::default()));
        lock(&SHARDS).live.push(s.clone());
        Self(s)
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        // Under the global lock (taken before the shard's, as `render` does), so a scrape finds these
        // counts in exactly one place: this shard or the retired totals.
        let mut all = lock(&SHARDS);
        let mine = std::mem::take(&mut *lock(&self.0));
        all.live.retain(|s| !Arc::ptr_eq(s, &self.0));
        merge_into(&mut all.retired, &mine);
    }
}

thread_local! {
    /// This thread's counts.
    static SHARD: Shard = Shard::register();
}

/// Add every series of `from` into `into`.
fn merge_into(into: &mut Registry, from: &Registry) {
    for (name, f) in from {
        let family = into
            .entry(name)
            .or_insert_with(|| Family::new(f.help, f.kind));
        for (labels, s) in f.series.values().flatten() {
            let l: Vec<(&'static str, &str)> = labels.iter().map(|(k, v)| (*k, &**v)).collect();
            family.series_mut(&l, || s.empty_like()).merge(s);
        }
    }
}

/// Append `v` escaped for a label value.
fn push_escaped(o: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        o.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
}

/// Render `{k="v",...}` (empty without labels).
fn render_labels(l: &Labels) -> String {
    let mut o = String::new();
    if l.is_empty() {
        return o;
    }
    o.push('{');
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(k);
        o.push_str("=\"");
        push_escaped(&mut o, v);
        o.push('"');
    }
    o.push('}');
    o
}

/// Run `f` on the series for `l` in family `name` in this thread's shard, creating both with `init` as
/// needed.
fn with_series(
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    l: &[(&'static str, &str)],
    init: fn() -> Series,
    f: impl FnOnce(&mut Series),
) {
    let update = |r: &mut Registry| {
        let family = r.entry(name).or_insert_with(|| Family::new(help, kind));
        f(family.series_mut(l, init));
    };
    let mut update = Some(update);
    let _ = SHARD.try_with(|s| {
        if let Some(u) = update.take() {
            u(&mut lock(&s.0));
        }
    });
    // A thread that is ending (its shard already gone) counts straight into the retired totals.
    if let Some(u) = update {
        u(&mut lock(&SHARDS).retired);
    }
}

/// Add `v` to a counter or gauge series.
pub fn add(
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    l: &[(&'static str, &str)],
    v: f64,
) {
    with_series(
        name,
        help,
        kind,
        l,
        || Series::Value(0.0),
        |s| {
            if let Series::Value(x) = s {
                *x += v;
            }
        },
    );
}

/// Record a latency observation in a histogram.
pub fn observe(name: &'static str, help: &'static str, l: &[(&'static str, &str)], d: Duration) {
    let secs = d.as_secs_f64();
    with_series(name, help, "histogram", l, Series::histogram, |e| {
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
    let r = {
        let all = lock(&SHARDS);
        let mut r = all.retired.clone();
        for shard in &all.live {
            merge_into(&mut r, &lock(shard));
        }
        r
    };
    let mut families: Vec<_> = r.iter().collect();
    families.sort_unstable_by_key(|(name, _)| **name);
    let mut o = String::new();
    for (name, f) in families {
        let _ = writeln!(o, "# HELP {name} {}", f.help);
        let _ = writeln!(o, "# TYPE {name} {}", f.kind);
        let mut series: Vec<(String, &Series)> = f
            .series
            .values()
            .flatten()
            .map(|(l, s)| (render_labels(l), s))
            .collect();
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, s) in &series {
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
    // SECURITY/ops: only a tool the upstream answered for is a label (see the module doc).
    let tool = if verdict == "allow" && matches!(outcome, "ok" | "tool_error") {
        tool
    } else {
        ""
    };
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
    fn a_family_stops_growing_at_its_cap() {
        for i in 0..super::MAX_SERIES + 50 {
            super::add(
                "mcp_hub_test_cap_total",
                "test",
                "counter",
                &[("k", &format!("v{i}\"\n"))],
                1.0,
            );
        }
        let t = super::render();
        let n = t
            .lines()
            .filter(|l| l.starts_with("mcp_hub_test_cap_total{"))
            .count();
        assert_eq!(n, super::MAX_SERIES + 1, "the cap plus the overflow series");
        assert!(t.contains("mcp_hub_test_cap_total{overflow=\"true\"} 50"));
        assert!(t.contains("mcp_hub_test_cap_total{k=\"v0\\\"\\n\"} 1"));
    }

    #[test]
    fn every_threads_counts_are_summed_including_threads_that_ended() {
        let count = |n: f64| super::add("mcp_hub_test_threads_total", "test", "counter", &[], n);
        let observe = || {
            super::observe(
                "mcp_hub_test_threads_seconds",
                "test",
                &[("k", "v")],
                std::time::Duration::from_millis(2),
            );
        };
        for _ in 0..3 {
            std::thread::spawn(move || {
                count(2.0);
                observe();
            })
            .join()
            .unwrap();
        }
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let (ready, counted) = std::sync::mpsc::channel();
        let live = std::thread::spawn(move || {
            count(5.0);
            ready.send(()).unwrap();
            let _ = wait.recv();
        });
        counted.recv().unwrap();
        count(1.0);
        let t = super::render();
        assert!(t.contains("mcp_hub_test_threads_total 12\n"), "{t}");
        assert!(
            t.contains("mcp_hub_test_threads_seconds_bucket{k=\"v\",le=\"0.0025\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("mcp_hub_test_threads_seconds_count{k=\"v\"} 3\n"),
            "{t}"
        );
        drop(stop);
        live.join().unwrap();
        assert!(super::render().contains("mcp_hub_test_threads_total 12\n"));
    }

    #[test]
    fn renders_prometheus_text() {
        super::tool_call("github", "github.get_issue", "allow", "ok");
        super::tool_call("github", "anything-an-agent-invents", "deny", "rejected");
        // Allowed by a glob but refused by the upstream: the name is the agent's, not a label.
        super::tool_call("github", "invented-under-a-star", "allow", "error");
        super::upstream_latency("github", std::time::Duration::from_millis(3));
        let t = super::render();
        assert!(t.contains("# TYPE mcp_hub_tool_calls_total counter"), "{t}");
        assert!(t.contains("mcp_hub_tool_calls_total{config=\"github\",tool=\"github.get_issue\",verdict=\"allow\",outcome=\"ok\"} 1"), "{t}");
        assert!(
            !t.contains("anything-an-agent-invents") && !t.contains("invented-under-a-star"),
            "only tools the upstream answered for are labels: {t}"
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
