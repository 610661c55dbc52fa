//! Relay an upstream response to the agent: filter `tools/list` results, seal session ids, scrub any
//! echoed secret, merge the hub's own answers for hidden tools, and audit each tool call's outcome.
//!
//! JSON bodies are read (bounded), rewritten and sent whole. SSE bodies are relayed event by event as
//! they arrive, never buffered beyond one event; untouched events pass byte for byte.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::upstream::pool::UpstreamBody;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use smallvec::SmallVec;

use super::body::{ReadError, read_bounded};
use super::headers as mcp_headers;
use super::jsonrpc::{self, code};
use super::respond::{self, Body, BoxError};
use super::session;
use crate::runtime::pins::Via;
use crate::runtime::snapshot::Binding;
use crate::sse::{self, EventSplitter};
use crate::telemetry::audit::{self, Verdict, Who};

/// Whether an upstream response header is copied to the agent (matched by text, like the request
/// allowlist). The session id is not: it is sealed for the agent's token instead.
fn forwarded_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "cache-control"
            | "x-accel-buffering"
            | "mcp-protocol-version"
            | "retry-after"
            | "allow"
    )
}

/// Forwarded `tools/call` requests awaiting their responses: (id, tool).
pub type Calls = SmallVec<[(Value, String); 1]>;

/// What the hub answered itself, and what it must remember about the forwarded part.
#[derive(Debug)]
pub struct Local {
    /// Responses for hidden or malformed tool calls.
    pub responses: Vec<Value>,
    /// Whether the client sent a batch (answers must be an array).
    pub batch: bool,
    /// Id of the single forwarded request, for error responses.
    pub single_id: Value,
    /// Forwarded `tools/call` requests: (id, tool), for audit. Usually one: kept inline.
    pub calls: Calls,
    /// Pinned configs only: ids of forwarded `tools/list` requests for a first page (no cursor).
    pub full_lists: SmallVec<[Value; 1]>,
    /// The response is a stream the server sends notifications on (a GET stream, or
    /// `subscriptions/listen`): pinned configs tell it when the callable tools change.
    pub listen: bool,
}

impl Local {
    /// Nothing local.
    pub fn none() -> Self {
        Self {
            responses: Vec::new(),
            batch: false,
            single_id: Value::Null,
            calls: Calls::new(),
            full_lists: SmallVec::new(),
            listen: false,
        }
    }
}

/// What the relay needs to know about the request.
pub struct RelayCtx {
    /// The authenticated binding.
    pub binding: Arc<Binding>,
    /// Key for sealing session ids.
    pub session_key: [u8; 32],
    /// Client speaks 2026-07-28: filtered lists are marked `cacheScope: "private"`.
    pub modern: bool,
    /// Bound for buffered JSON bodies and single SSE events.
    pub max_response_bytes: usize,
    /// For audit lines.
    pub who: Who,
    /// Request start, for latency.
    pub started: Instant,
    /// The live snapshot: streams end when a reload revokes their token.
    pub state: Arc<crate::runtime::Live>,
    /// See [`Local::full_lists`].
    pub full_lists: SmallVec<[Value; 1]>,
    /// See [`Local::listen`].
    pub listen: bool,
}

type Rearm = std::pin::Pin<
    Box<dyn std::future::Future<Output = (bool, tokio::sync::watch::Receiver<u64>)> + Send>,
>;

/// Wait for the next reload, handing the receiver back so the wait can be re-armed.
fn next_reload(mut rx: tokio::sync::watch::Receiver<u64>) -> Rearm {
    Box::pin(async move {
        let ok = rx.changed().await.is_ok();
        (ok, rx)
    })
}

/// Answer entirely from the hub (every tool call in the request was hidden or malformed).
pub fn local_only(local: Local, batch: bool) -> Response<Body> {
    let v = if batch {
        Value::Array(local.responses)
    } else {
        local.responses.into_iter().next().unwrap_or(Value::Null)
    };
    respond::json(StatusCode::OK, &v)
}

/// Audits each forwarded tool call once, when its response is seen (or when the stream ends without it).
struct CallTracker {
    who: Who,
    started: Instant,
    pending: Calls,
}

impl CallTracker {
    fn observe(&mut self, msgs: &[Peek]) {
        if self.pending.is_empty() {
            return;
        }
        for m in msgs {
            // A server-to-client request may reuse an id: only responses complete a call.
            let (Some(id), None) = (&m.id, &m.method) else {
                continue;
            };
            if let Some(pos) = self.pending.iter().position(|(pid, _)| pid == id) {
                let (_, tool) = self.pending.swap_remove(pos);
                let outcome = if m.error.is_some() {
                    "error"
                } else if m.result.as_ref().and_then(|r| r.is_error) == Some(true) {
                    "tool_error"
                } else {
                    "ok"
                };
                self.audit(&tool, outcome);
            }
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        for (_, tool) in std::mem::take(&mut self.pending) {
            self.audit(&tool, outcome);
        }
    }

    /// The one audit line of a forwarded call.
    fn audit(&self, tool: &str, outcome: &'static str) {
        audit::tool_call(
            &self.who,
            tool,
            Verdict::Allow,
            "allowed_tools",
            outcome,
            self.started,
        );
    }
}

/// What the relay needs from an upstream message, read without building a JSON tree: the full `Value`
/// is built only for messages that carry a `tools` list to filter.
#[derive(Deserialize)]
struct Peek {
    id: Option<Value>,
    method: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
    result: Option<PeekResult>,
}

#[derive(Deserialize)]
struct PeekResult {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
    tools: Option<IgnoredAny>,
    /// An `initialize` result's capabilities (pinned configs announce `tools.listChanged`).
    capabilities: Option<IgnoredAny>,
}

/// The peeked messages of one body: one (the common case, kept off the heap) or a batch.
enum Peeks {
    One(Peek),
    Batch(Vec<Peek>),
}

impl std::ops::Deref for Peeks {
    type Target = [Peek];

    fn deref(&self) -> &[Peek] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::Batch(v) => v,
        }
    }
}

/// What a JSON text from the upstream turned out to be.
enum Peeked<'t> {
    /// Not an object or array: no message the filter could apply to (an empty body, `null`).
    NotMessages,
    /// An object or array the hub cannot read unambiguously; see [`peek`].
    Unreadable,
    /// A message or batch, with its text (checked UTF-8).
    Read(&'t str, Peeks),
}

/// Why the hub refused to relay an upstream message it could not read, without serde's text (which
/// may quote the upstream's values).
const UNREADABLE: &str = "sent a JSON message the hub could not read (invalid UTF-8, a duplicate member, a number out of range or nesting deeper than 128)";

/// Peek at a JSON message or batch.
///
/// SECURITY: an object or array the peek cannot read is [`Peeked::Unreadable`], never passed through as
/// it came: it could carry a tools list that a client reads one way (duplicate members, invalid UTF-8
/// in a skipped string, nesting beyond serde's limit) while the hub could not filter it. The body is
/// checked for UTF-8 as a whole first (so serde need not check each member name) and then read as text.
fn peek(b: &[u8]) -> Peeked<'_> {
    let batch = match b.iter().find(|c| !c.is_ascii_whitespace()) {
        Some(b'{') => false,
        Some(b'[') => true,
        _ => return Peeked::NotMessages,
    };
    let Ok(text) = std::str::from_utf8(b) else {
        return Peeked::Unreadable;
    };
    let read = if batch {
        serde_json::from_str(text).ok().map(Peeks::Batch)
    } else {
        serde_json::from_str(text).ok().map(Peeks::One)
    };
    read.map_or(Peeked::Unreadable, |p| Peeked::Read(text, p))
}

/// What the relay passes on for one upstream JSON text (a JSON body, or an SSE event's data).
enum Screened {
    /// Not an object or array: nothing to filter or audit.
    NotMessages,
    /// Messages: as they came (`None`), or as the tools filter rewrote them.
    Messages(Option<Vec<u8>>),
}

/// The one screening of upstream messages, for JSON bodies and SSE events alike: peek, filter any
/// tools list, and note the calls the messages complete (only once they are sure to be relayed).
///
/// # Errors
/// SECURITY: the text cannot be read unambiguously (see [`peek`]) and must not be relayed.
fn screen(b: &[u8], rc: &RelayCtx, tracker: &mut CallTracker) -> Result<Screened, ()> {
    let (text, peeks) = match peek(b) {
        Peeked::NotMessages => return Ok(Screened::NotMessages),
        Peeked::Unreadable => return Err(()),
        Peeked::Read(text, peeks) => (text, peeks),
    };
    let announce = rc.binding.config.pin_tools && any_result(&peeks, |r| r.capabilities.is_some());
    let filtered = if any_result(&peeks, |r| r.tools.is_some()) || announce {
        filter_json(text, rc)?
    } else {
        None
    };
    tracker.observe(&peeks);
    Ok(Screened::Messages(filtered))
}

/// Pinned configs: an `initialize` result says the server sends `notifications/tools/list_changed`,
/// since the hub does when the approved set changes (clients that honour the capability only then
/// listen for it). Returns whether anything was rewritten.
fn announce_list_changed(v: &mut Value) -> bool {
    let msgs: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        one => vec![one],
    };
    let mut changed = false;
    for m in msgs {
        let Some(caps) = m
            .get_mut("result")
            .and_then(|r| r.get_mut("capabilities"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        // Only a server that offers tools: the hub adds no capability of its own.
        if let Some(t) = caps.get_mut("tools").and_then(Value::as_object_mut) {
            if t.get("listChanged") != Some(&Value::Bool(true)) {
                t.insert("listChanged".into(), Value::Bool(true));
                changed = true;
            }
        }
    }
    changed
}

/// Whether some message's `result` has what `has` looks for (a tools list, capabilities).
fn any_result(peeks: &[Peek], has: impl Fn(&PeekResult) -> bool) -> bool {
    peeks.iter().any(|p| p.result.as_ref().is_some_and(&has))
}

/// The upstream's message or batch followed by the hub's own answers, as one batch. Spliced as text:
/// the upstream's messages (already read by the peek) pass byte for byte, so nothing that a tree parse
/// would refuse or alter (a number beyond `f64`, say) is lost on the way.
fn merge_batch(upstream: &[u8], local: &[Value]) -> Vec<u8> {
    let t = upstream.trim_ascii();
    let inner = match t {
        [b'[', inner @ .., b']'] => inner.trim_ascii(),
        one => one,
    };
    let mut out = Vec::with_capacity(inner.len() + 128 * local.len() + 2);
    out.push(b'[');
    out.extend_from_slice(inner);
    for v in local {
        if out.len() > 1 {
            out.push(b',');
        }
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, v);
    }
    out.push(b']');
    out
}

/// Filter the tools lists in a JSON message: `Ok(None)` when it needed no change.
///
/// # Errors
/// The message cannot be read as a tree (e.g. a number beyond `f64`, which the peek skips over).
/// SECURITY: the caller must then not pass the message on.
fn filter_json(text: &str, rc: &RelayCtx) -> Result<Option<Vec<u8>>, ()> {
    let mut v: Value = serde_json::from_str(text).map_err(|_| ())?;
    let cfg = &rc.binding.config;
    let listed = if cfg.pin_tools {
        let announced = announce_list_changed(&mut v);
        let pins = &rc.state.pins;
        let via = Via {
            devbox: &rc.binding.devbox,
            env_var: &rc.binding.env_var,
        };
        let mut out = crate::runtime::pins::Screened::default();
        let listed = jsonrpc::filter_tools_any(
            &mut v,
            &mut |p| {
                let complete = !p.has_next && rc.full_lists.contains(p.id);
                let s = pins.screen(cfg, p.tools, complete, via);
                out.callable_changed |= s.callable_changed;
                out.dirty |= s.dirty;
            },
            rc.modern,
        );
        if out.callable_changed {
            // Open streams tell their clients to list again.
            rc.state.touch();
        }
        if out.dirty {
            let live = rc.state.clone();
            tokio::task::spawn_blocking(move || live.pins.flush_logged());
        }
        listed || announced
    } else {
        jsonrpc::filter_tools_any(
            &mut v,
            &mut |p| jsonrpc::retain_allowed(p.tools, &cfg.allowed_tools),
            rc.modern,
        )
    };
    if !listed {
        return Ok(None);
    }
    serde_json::to_vec(&v).map(Some).map_err(|_| ())
}

/// The notification a pinned config's open streams get when its callable tools change.
const TOOLS_CHANGED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;

impl Drop for CallTracker {
    fn drop(&mut self) {
        self.finish("no_response");
    }
}

/// How a client could read an upstream body, judged by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    EventStream,
    Other,
}

impl Media {
    /// SECURITY: a superset of what MCP clients read as messages: the Python SDK lowercases the header
    /// and tests its start, the TypeScript SDK parses the media type case-insensitively (earlier
    /// versions looked for it anywhere in the header, event stream first). A narrower test
    /// (`starts_with`, case-sensitive) let an upstream label a tools list `Application/JSON` and have
    /// it relayed unfiltered to a client that reads it all the same.
    fn of(content_type: &str) -> Self {
        // The common case, without scanning.
        if content_type == "application/json" {
            return Self::Json;
        }
        let has = |needle: &str| {
            content_type
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        if has("text/event-stream") {
            Self::EventStream
        } else if has("application/json") {
            Self::Json
        } else {
            Self::Other
        }
    }
}

/// Copy allowlisted headers, sealing the session id and scrubbing the secret; also the content type
/// (empty if none), found in the same pass.
fn response_headers<'u>(rc: &RelayCtx, up: &'u HeaderMap) -> (HeaderMap, &'u str) {
    let mut h = HeaderMap::with_capacity(up.len() + 1);
    let mut content_type = None;
    let mut session = None;
    for (name, v) in up {
        if name == header::CONTENT_TYPE && content_type.is_none() {
            content_type = Some(v.to_str().unwrap_or(""));
        } else if name == mcp_headers::SESSION_ID {
            // The first, as a lookup would find; the session id is sealed, never copied.
            session = session.or(Some(v));
            continue;
        }
        if forwarded_response_header(name) {
            h.append(name.clone(), scrub_header(rc, v));
        }
    }
    if let Some(sid) = session.and_then(|v| v.to_str().ok()) {
        let sealed = session::seal(&rc.session_key, &rc.binding.token_id, sid);
        if let Ok(v) = HeaderValue::from_str(&sealed) {
            h.insert(mcp_headers::SESSION_ID, v);
        }
    }
    (h, content_type.unwrap_or(""))
}

fn scrub_header(rc: &RelayCtx, v: &HeaderValue) -> HeaderValue {
    if rc.binding.redactor.contains(v.as_bytes()) {
        HeaderValue::from_static(crate::runtime::credentials::REDACTED)
    } else {
        v.clone()
    }
}

/// Relay an upstream response.
pub async fn respond(
    rc: RelayCtx,
    resp: Response<UpstreamBody>,
    mut local: Local,
) -> Response<Body> {
    let (parts, mut body) = resp.into_parts();
    let mut tracker = CallTracker {
        who: rc.who.clone(),
        started: rc.started,
        pending: std::mem::take(&mut local.calls),
    };
    let binding = rc.binding.clone();
    let server = binding.config.name.as_str();
    if matches!(
        parts.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        tracker.finish("upstream_auth_rejected");
        tracing::warn!(mcp_config = %server, status = parts.status.as_u16(), "Upstream rejected the injected credential");
        return respond::error(
            StatusCode::BAD_GATEWAY,
            local.single_id,
            code::INTERNAL_ERROR,
            format!(
                "upstream MCP server {server:?} rejected the hub's credential (HTTP {}); the operator must update secret {:?}",
                parts.status.as_u16(),
                rc.binding.secret_name
            ),
            "upstream_auth_rejected",
        );
    }
    let (headers, ct) = response_headers(&rc, &parts.headers);
    let media = Media::of(ct);
    if parts.status.is_success() && media == Media::EventStream {
        let mut prefix = VecDeque::new();
        for r in &local.responses {
            if let Ok(b) = serde_json::to_vec(r) {
                prefix.push_back(sse::event_from_json(&b));
            }
        }
        let reload = next_reload(rc.state.subscribe());
        let pinned = (rc.listen && rc.binding.config.pin_tools)
            .then(|| rc.state.pins.version(&rc.binding.config.id));
        let relay = SseRelay {
            pinned,
            inner: body,
            splitter: EventSplitter::default(),
            queue: prefix,
            rc: Arc::new(rc),
            tracker,
            done: false,
            reload: Some(reload),
        };
        let mut r = Response::new(relay.boxed_unsync());
        *r.status_mut() = parts.status;
        *r.headers_mut() = headers;
        return r;
    }
    let bytes = match read_bounded(&mut body, rc.max_response_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let (reason, msg) = if matches!(e, ReadError::TooLarge) {
                (
                    "upstream_response_too_large",
                    format!(
                        "upstream MCP server {server:?} sent a response larger than {} bytes",
                        rc.max_response_bytes
                    ),
                )
            } else {
                (
                    "upstream_protocol_error",
                    format!("upstream MCP server {server:?} broke off its response"),
                )
            };
            tracker.finish(reason);
            return respond::error(
                StatusCode::BAD_GATEWAY,
                local.single_id,
                code::INTERNAL_ERROR,
                msg,
                reason,
            );
        }
    };
    let mut status = parts.status;
    let mut headers = headers;
    let screened = if media == Media::Json {
        screen(&bytes, &rc, &mut tracker)
    } else {
        Ok(Screened::NotMessages)
    };
    let Ok(screened) = screened else {
        tracker.finish("upstream_protocol_error");
        tracing::warn!(mcp_config = %server, "Upstream sent a JSON message the hub could not read; not relayed");
        return respond::error(
            StatusCode::BAD_GATEWAY,
            local.single_id,
            code::INTERNAL_ERROR,
            format!("upstream MCP server {server:?} {UNREADABLE}"),
            "upstream_protocol_error",
        );
    };
    let body = match screened {
        Screened::Messages(filtered) => {
            let bytes = filtered.map(Bytes::from).unwrap_or(bytes);
            if local.responses.is_empty() {
                bytes
            } else {
                Bytes::from(merge_batch(&bytes, &local.responses))
            }
        }
        _ if status == StatusCode::ACCEPTED && !local.responses.is_empty() => {
            // Only notifications went upstream; the hub's own answers make this a 200.
            status = StatusCode::OK;
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Bytes::from(serde_json::to_vec(&Value::Array(local.responses)).unwrap_or_default())
        }
        _ => {
            if !status.is_success() {
                tracker.finish(http_outcome(status));
            }
            bytes
        }
    };
    // SECURITY: an upstream that echoes the credential must not leak it into the devbox.
    let body = rc.binding.redactor.redact(body);
    let mut r = Response::new(respond::full(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Streams an upstream SSE body, one event at a time.
struct SseRelay {
    inner: UpstreamBody,
    splitter: EventSplitter,
    queue: VecDeque<Bytes>,
    rc: Arc<RelayCtx>,
    tracker: CallTracker,
    done: bool,
    /// Fires on each reload; the stream ends if its token is no longer live.
    reload: Option<Rearm>,
    /// A pinned config's notification stream: the callable set's version it last told the client.
    pinned: Option<u64>,
}

impl SseRelay {
    fn transform(&mut self, ev: Bytes) -> Bytes {
        let rc = &self.rc;
        let mut ev = ev;
        if let Some(d) = sse::data(&ev).filter(|d| !d.is_empty()) {
            match screen(&d, rc, &mut self.tracker) {
                Ok(Screened::NotMessages | Screened::Messages(None)) => {}
                Ok(Screened::Messages(Some(j))) => ev = sse::replace_data(&ev, &j),
                // SECURITY: the unreadable message is replaced, never relayed (see `peek`).
                Err(()) => {
                    let server = &rc.binding.config.name;
                    tracing::warn!(mcp_config = %server, "Upstream sent an SSE message the hub could not read; replaced with an error");
                    let e = jsonrpc::error(
                        Value::Null,
                        code::INTERNAL_ERROR,
                        format!("upstream MCP server {server:?} {UNREADABLE}"),
                        Some(serde_json::json!({"reason": "upstream_protocol_error"})),
                    );
                    ev = sse::replace_data(&ev, e.to_string().as_bytes());
                }
            }
        }
        // SECURITY: scrub the credential from every event.
        rc.binding.redactor.redact(ev)
    }
}

impl HttpBody for SseRelay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(fut) = this.reload.as_mut() {
                if let Poll::Ready((ok, rx)) = fut.as_mut().poll(cx) {
                    // SECURITY: a revoked or rotated token ends its open streams too (GET streams,
                    // subscriptions/listen), not only its next request.
                    if ok && !this.rc.state.load().token_live(&this.rc.binding.token_id) {
                        this.done = true;
                        this.tracker.finish("token_revoked");
                        return Poll::Ready(None);
                    }
                    if let Some(v) = this.pinned {
                        let cfg = &this.rc.binding.config;
                        let now = this.rc.state.pins.version(&cfg.id);
                        if now != v {
                            this.pinned = Some(now);
                            this.queue.push_back(sse::event_from_json(TOOLS_CHANGED));
                        }
                    }
                    this.reload = ok.then(|| next_reload(rx));
                    continue;
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    if let Some(rest) = this.splitter.finish() {
                        let t = this.transform(rest);
                        this.queue.push_back(t);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.tracker.finish("upstream_stream_error");
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match this.splitter.push(&data, this.rc.max_response_bytes) {
                        Ok(events) => {
                            for ev in events {
                                let t = this.transform(ev);
                                this.queue.push_back(t);
                            }
                        }
                        Err(e) => {
                            this.done = true;
                            this.tracker.finish("upstream_event_too_large");
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                    }
                }
            }
        }
    }
}

/// `http_<status>`, the outcome of a call the upstream answered with a non-2xx status: one string per
/// status code, made once, so audit lines and metric labels borrow it.
fn http_outcome(status: StatusCode) -> &'static str {
    static CODES: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (100..1000).map(|c| format!("http_{c}")).collect());
    CODES
        .get(usize::from(status.as_u16()).saturating_sub(100))
        .map_or("http_other", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pinned_servers_announce_list_changed() {
        let mut v = json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": false}, "prompts": {}}}});
        assert!(announce_list_changed(&mut v));
        assert_eq!(v["result"]["capabilities"]["tools"]["listChanged"], true);
        assert!(!announce_list_changed(&mut v), "already said");
        let mut none = json!({"id": 1, "result": {"capabilities": {"prompts": {}}}});
        assert!(
            !announce_list_changed(&mut none),
            "no tools capability is added"
        );
        assert!(none["result"]["capabilities"].get("tools").is_none());
    }

    #[test]
    fn merged_batches_keep_the_upstream_bytes() {
        let local = [json!({"id": 9, "error": {"code": -32602}})];
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"id":1,"result":{"n":1e999}}"#,
                r#"[{"id":1,"result":{"n":1e999}},{"error":{"code":-32602},"id":9}]"#,
            ),
            (
                b" [ {\"id\":1} , {\"id\":2} ]\n",
                r#"[{"id":1} , {"id":2},{"error":{"code":-32602},"id":9}]"#,
            ),
            (b"[]", r#"[{"error":{"code":-32602},"id":9}]"#),
        ];
        for (up, want) in cases {
            let got = merge_batch(up, &local);
            assert_eq!(String::from_utf8_lossy(&got), *want);
        }
    }
}
