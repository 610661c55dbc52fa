//! The gateway service: one HTTPS endpoint, many upstream MCP servers.
//!
//! Pipeline per request (each stage a function, in this order):
//! `authenticate -> authority_matches -> check_origin -> (path, method) -> is_json -> read_body ->
//!  jsonrpc::parse_messages -> check_metadata_headers -> screen_tool_calls -> session::open ->
//!  build_upstream_request -> upstream.send -> relay::respond`.
//! Nothing reaches an upstream before the token, origin and tool checks have passed, and the agent's
//! token is never forwarded: the bound credential is injected in its place.
//!
//! Every stage that can refuse returns `Result<_, Refused>`; `Gateway::refuse` is the one exit that
//! audits, counts and answers a refusal (`denial::Denial` holds status, code and reason together).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use smallvec::SmallVec;

use super::body::{self, ReadError};
use super::denial::{Denial, Refused};
use super::headers as mcp_headers;
use super::jsonrpc::{self, BodyError, Message, Messages, code};
use super::relay::{self, RelayCtx};
use super::respond::{self, Body};
use super::session;
use crate::config::GatewaySettings;
use crate::runtime::conn_auth::ConnAuth;
use crate::runtime::snapshot::{AuthFailure, Binding};
use crate::runtime::{Live, Snapshot};
use crate::telemetry::audit::{self, Verdict, Who};
use crate::upstream::{ClientKey, Upstream, UpstreamError};

/// How long a refused request's unread body is read and discarded before the answer goes out.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

mod client_headers;
use client_headers::ClientHeaders;

/// First protocol revision with mandatory `Mcp-Method`/`Mcp-Name` headers and no sessions.
pub const MODERN_PROTOCOL: &str = "2026-07-28";

/// Whether a client request header is copied to the upstream. Everything else (Authorization, Cookie,
/// Origin, Host, forwarding headers) is dropped. A match on the name's text: one length dispatch per
/// header instead of comparing it with each allowed name in turn.
fn forwarded_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type"
            | "mcp-protocol-version"
            | "last-event-id"
            | "mcp-method"
            | "mcp-name"
            | "user-agent"
    ) || n.starts_with("mcp-param-")
}

/// The gateway's shared state.
pub struct Gateway {
    state: Arc<Live>,
    upstream: Mutex<Option<(ClientKey, Arc<Upstream>)>>,
}

/// What a POST's stages decided: forward upstream, or the hub has answered.
// Moved once per request; boxing the larger variant would cost an allocation instead.
#[allow(clippy::large_enum_variant)]
enum Step<'r> {
    Forward(Forward<'r>),
    Answered(Response<Body>),
}

/// A request that passed every check, ready to go upstream. The request head stays where `handle`
/// keeps it; only references travel with the stages.
struct Forward<'r> {
    ctx: Ctx,
    parts: &'r Parts,
    seen: ClientHeaders<'r>,
    body: Bytes,
    local: relay::Local,
}

/// Per-request context accumulated by the stages.
struct Ctx {
    snap: Arc<Snapshot>,
    binding: Arc<Binding>,
    started: Instant,
    who: Who,
    /// The client speaks 2026-07-28 or later (read once; several stages ask).
    modern: bool,
}

impl Gateway {
    /// A gateway serving whatever snapshot `state` holds at each request.
    pub fn new(state: Arc<Live>) -> Self {
        Self {
            state,
            upstream: Mutex::new(None),
        }
    }

    /// Serve one request from `peer` with `snap` (the live snapshot, loaded once by the front door),
    /// on a connection whose verified token `auth` remembers.
    pub async fn handle<B>(
        &self,
        snap: Arc<Snapshot>,
        req: Request<B>,
        peer: SocketAddr,
        auth: &ConnAuth<Binding>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        // Taken by the stage that reads it; a refusal before then lingers on what is left.
        let mut body = Some(body);
        let seen = ClientHeaders::of(&parts.headers);
        let binding = match authenticate(&snap, &parts.uri, &seen, peer, auth) {
            Ok(b) => b,
            Err(f) => {
                let gw = &snap.config.gateway;
                return refuse(peer, None, gw, Denial::Auth(f).into(), body).await;
            }
        };
        let who = Who {
            peer,
            binding: binding.clone(),
        };
        let ctx = Ctx {
            snap: snap.clone(),
            binding,
            started: Instant::now(),
            who: who.clone(),
            modern: is_modern(&seen),
        };
        match self.serve(ctx, &parts, seen, &mut body).await {
            Ok(r) => r,
            Err(r) => refuse(peer, Some(&who), &snap.config.gateway, r, body).await,
        }
    }

    /// The stages after authentication, up to the response.
    async fn serve<B>(
        &self,
        ctx: Ctx,
        parts: &Parts,
        seen: ClientHeaders<'_>,
        body: &mut Option<B>,
    ) -> Result<Response<Body>, Refused>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let gw = &ctx.snap.config.gateway;
        // SECURITY: a TLS session for the gateway cannot be used to address any other host.
        if !authority_matches(gw, &parts.uri, &seen) {
            return Err(Denial::HostMismatch.into());
        }
        check_origin(gw, &seen)?;
        if parts.uri.path() != gw.path {
            return Err(Denial::WrongPath.into());
        }
        // Both branches end in the one `forward` below: a single await site keeps this future small
        // (each await of a sub-future reserves its own room, and hyper moves this future per request).
        let fwd = match parts.method {
            Method::POST => match self.post(ctx, parts, seen, body).await? {
                Step::Forward(f) => f,
                Step::Answered(r) => return Ok(r),
            },
            Method::GET | Method::DELETE => {
                // Nothing of a GET's or DELETE's body goes upstream; it is not kept for the
                // (possibly long) stream either.
                drop(body.take());
                let mut local = relay::Local::none();
                // The GET stream is where legacy servers send notifications.
                local.listen = parts.method == Method::GET;
                Forward {
                    ctx,
                    parts,
                    seen,
                    body: Bytes::new(),
                    local,
                }
            }
            _ => return Err(Denial::MethodNotAllowed.into()),
        };
        self.forward(fwd).await
    }

    /// Stages of a POST up to what goes upstream: content type, body, parse, metadata headers, tool
    /// screening.
    async fn post<'r, B>(
        &self,
        ctx: Ctx,
        parts: &'r Parts,
        seen: ClientHeaders<'r>,
        body: &mut Option<B>,
    ) -> Result<Step<'r>, Refused>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let gw = &ctx.snap.config.gateway;
        if !is_json(&seen) {
            return Err(Denial::UnsupportedMediaType.into());
        }
        let raw = read_body(body, gw).await?;
        let msgs = jsonrpc::parse_messages(&raw).map_err(|e| match e {
            BodyError::Parse(m) => Denial::ParseError(m),
            BodyError::Invalid(m) => Denial::InvalidRequest(m),
        })?;
        let batch = msgs.batch;
        if let Err(m) = check_metadata_headers(&seen, ctx.modern, &msgs) {
            let id = if batch {
                Value::Null
            } else {
                msgs.items[0].id.clone()
            };
            return Err(Denial::HeaderMismatch(m).to(id));
        }
        let (forward, mut local) = screen_tool_calls(&ctx, &msgs, &self.state.pins);
        if forward.is_empty() {
            // Everything was answered by the hub itself.
            return Ok(Step::Answered(relay::local_only(local, batch)));
        }
        // Nothing screened out: forward the client's bytes as they came; otherwise the remaining
        // messages' own texts.
        let body = if local.responses.is_empty() {
            raw.clone()
        } else {
            Bytes::from(jsonrpc::join(&forward, batch))
        };
        local.batch = batch;
        local.single_id = if batch {
            Value::Null
        } else {
            forward[0].id.clone()
        };
        local.calls = forward
            .iter()
            .filter(|m| m.method() == Some("tools/call") && !m.id.is_null())
            .filter_map(|m| Some((m.id.clone(), m.name()?.to_string())))
            .collect();
        if ctx.binding.config.pin_tools {
            // A first page answered without a next one is the whole list: what it lacks is removed.
            local.full_lists = forward
                .iter()
                .filter(|m| m.method() == Some("tools/list") && !m.has_cursor && !m.id.is_null())
                .map(|m| m.id.clone())
                .collect();
            local.listen = !batch && forward[0].method() == Some("subscriptions/listen");
        }
        // The parsed views are done with: not kept in this future's state across the upstream exchange.
        drop(forward);
        drop(msgs);
        Ok(Step::Forward(Forward {
            ctx,
            parts,
            seen,
            body,
            local,
        }))
    }

    fn client(&self, gw: &GatewaySettings) -> Result<Arc<Upstream>, String> {
        let mut g = self
            .upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, c)) = g.as_ref() {
            if k.fits(gw) {
                return Ok(c.clone());
            }
        }
        let key = ClientKey::of(gw);
        let c = Arc::new(Upstream::new(&key).map_err(|e| e.to_string())?);
        *g = Some((key, c.clone()));
        Ok(c)
    }

    /// Stages after screening: session, upstream request, send, relay.
    async fn forward(&self, f: Forward<'_>) -> Result<Response<Body>, Refused> {
        let Forward {
            ctx,
            parts,
            seen,
            body,
            mut local,
        } = f;
        let gw = &ctx.snap.config.gateway;
        let binding = ctx.binding.clone();
        let server = binding.config.name.as_str();
        let session = match seen.session_id {
            None => None,
            Some(v) => {
                let opened = v
                    .to_str()
                    .ok()
                    .and_then(|s| session::open(ctx.snap.session_key(), &ctx.binding.token_id, s));
                // SECURITY: a session id not sealed for this token (another token's, forged, or from
                // before a key change) is "not found", exactly as an expired session.
                let Some(s) = opened else {
                    return Err(Denial::SessionNotFound.to(local.single_id.clone()));
                };
                Some(s)
            }
        };
        let req = build_upstream_request(
            &ctx.binding,
            &parts.method,
            &parts.headers,
            session.as_deref(),
            body,
        )
        .map_err(|m| Denial::BadHeader(m).to(local.single_id.clone()))?;
        let client = match self.client(gw) {
            Ok(c) => c,
            Err(m) => {
                tracing::error!(error = %m, "Upstream client setup failed");
                return Ok(upstream_failure(
                    &ctx,
                    &local,
                    &UpstreamError::Tls("hub trust store is misconfigured".into()),
                    server,
                ));
            }
        };
        match client
            .send(req, &binding.config.origin, gw.upstream_response_timeout)
            .await
        {
            Err(e) => Ok(upstream_failure(&ctx, &local, &e, server)),
            Ok(resp) => {
                binding.metrics.upstream_latency(ctx.started.elapsed());
                let rc = RelayCtx {
                    binding: ctx.binding.clone(),
                    session_key: *ctx.snap.session_key(),
                    modern: ctx.modern,
                    max_response_bytes: gw.max_response_bytes,
                    who: ctx.who.clone(),
                    started: ctx.started,
                    state: self.state.clone(),
                    full_lists: std::mem::take(&mut local.full_lists),
                    listen: local.listen,
                };
                Ok(relay::respond(rc, resp, local).await)
            }
        }
    }
}

/// The one exit for a refused request: audited and counted under the reason the client is told,
/// then answered. Whatever is left of the request body is first read and discarded (bounded in bytes
/// and time, as nginx lingers): over HTTP/2 an answer sent while the body is still arriving ends
/// with a stream reset, and some clients (curl 7.88) then report a framing error instead of the
/// 401, 403 or 413 they were sent.
async fn refuse<B>(
    peer: SocketAddr,
    who: Option<&Who>,
    gw: &GatewaySettings,
    r: Refused,
    body: Option<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let Refused { denial, id } = r;
    audit::denial(peer, who, denial.reason(), denial.status().as_u16());
    if let Some(mut b) = body {
        body::discard(&mut b, gw.max_body_bytes, LINGER).await;
    }
    denial.render(id, gw)
}

fn upstream_failure(
    ctx: &Ctx,
    local: &relay::Local,
    e: &UpstreamError,
    server: &str,
) -> Response<Body> {
    tracing::warn!(mcp_config = %server, reason = e.as_str(), "Upstream request failed");
    for (_, tool) in &local.calls {
        audit::tool_call(
            &ctx.who,
            tool,
            Verdict::Allow,
            e.as_str(),
            "upstream_error",
            ctx.started,
        );
    }
    let status = if *e == UpstreamError::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    respond::error(
        status,
        local.single_id.clone(),
        code::INTERNAL_ERROR,
        e.describe(server),
        e.as_str(),
    )
}

/// Stage: map the bearer token to a binding.
fn authenticate(
    snap: &Arc<Snapshot>,
    uri: &http::Uri,
    seen: &ClientHeaders<'_>,
    peer: SocketAddr,
    auth: &ConnAuth<Binding>,
) -> Result<Arc<Binding>, AuthFailure> {
    // SECURITY: tokens in the URL end up in logs and histories; refuse them outright.
    if let Some(q) = uri.query() {
        let lower = q.to_ascii_lowercase();
        if lower.contains(crate::state::token::TOKEN_PREFIX)
            || lower.contains("access_token")
            || lower.contains("token=")
        {
            return Err(AuthFailure::InQuery);
        }
    }
    // SECURITY: exactly one Authorization header; with several, which one counts would be ambiguous.
    let v = match (seen.authorization, seen.authorizations) {
        (Some(v), 1) => v,
        (None, _) => return Err(AuthFailure::Missing),
        _ => return Err(AuthFailure::Malformed),
    };
    if let Some(b) = auth.hit(snap, v.as_bytes()) {
        return Ok(b);
    }
    let text = v.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let b = snap.authenticate(token.trim(), peer.ip())?;
    auth.remember(snap, v.as_bytes(), &b);
    Ok(b)
}

/// Stage: the request's authority (h2 `:authority`, an absolute-form target, or `Host`) names the
/// gateway host. Absent authority is accepted (HTTP/1.0 clients).
fn authority_matches(gw: &GatewaySettings, uri: &http::Uri, seen: &ClientHeaders<'_>) -> bool {
    let same = |a: &str| {
        // Usually exactly the authority of `RL_MCP_URL`; otherwise the host part decides.
        gw.url
            .authority()
            .is_some_and(|u| u.as_str().eq_ignore_ascii_case(a))
            || crate::policy::host::split_host_port(a, 0).is_some_and(|(h, _)| {
                let h = h
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim_end_matches('.');
                h.eq_ignore_ascii_case(&gw.host)
            })
    };
    let uri_ok = uri.host().is_none_or(same);
    let host_ok = seen.host.is_none_or(|h| h.to_str().is_ok_and(same));
    uri_ok && host_ok
}

/// Stage: browsers must not drive the gateway from arbitrary pages (DNS rebinding). Agents send no Origin.
fn check_origin(gw: &GatewaySettings, seen: &ClientHeaders<'_>) -> Result<(), Refused> {
    let Some(o) = seen.origin else {
        return Ok(());
    };
    let ok = o
        .to_str()
        .map(|o| {
            gw.allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o.trim_end_matches('/')))
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Denial::OriginNotAllowed.into())
    }
}

/// The media type (parameters aside) is `application/json`, in any case. Read as bytes: a header value
/// need not be text, and a non-text one is simply not JSON.
fn is_json(seen: &ClientHeaders<'_>) -> bool {
    seen.content_type.is_some_and(|v| {
        let b = v.as_bytes();
        let media = b.split(|c| *c == b';').next().unwrap_or(b);
        media.trim_ascii().eq_ignore_ascii_case(b"application/json")
    })
}

fn is_modern(seen: &ClientHeaders<'_>) -> bool {
    seen.protocol_version
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= MODERN_PROTOCOL)
}

/// Stage: read the whole request body, bounded in size and time. The body is taken out of `body`
/// only once it has been read whole: on a refusal what is left stays for `refuse` to linger on.
async fn read_body<B>(body: &mut Option<B>, gw: &GatewaySettings) -> Result<Bytes, Refused>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(b) = body.as_mut() else {
        return Ok(Bytes::new());
    };
    let read = {
        let mut read = std::pin::pin!(body::read_bounded(b, gw.max_body_bytes));
        // The body usually came with the head: then no timer is set up (a clock read and a
        // timer-wheel entry per request) just to be cancelled.
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => tokio::time::timeout(gw.client_timeout, read).await,
        }
    };
    // Only a body refused for its size is left in place, for `refuse` to linger on; a client too slow
    // to send it, or one whose body broke off, gets no lingering.
    if !matches!(read, Ok(Err(ReadError::TooLarge))) {
        *body = None;
    }
    match read {
        Err(_) => Err(Denial::ClientTimeout.into()),
        Ok(Err(ReadError::TooLarge)) => Err(Denial::BodyTooLarge.into()),
        Ok(Err(ReadError::Body(_))) => Err(Denial::BodyReadError.into()),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Decode a `Mcp-Name` value, which may use the `=?base64?…?=` sentinel form.
fn decode_header_value(v: &str) -> Option<String> {
    use base64::Engine;
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok()),
        None => Some(v.to_string()),
    }
}

/// Stage: the 2026-07-28 request metadata headers must agree with the body. Where they are present on an
/// older revision they must agree too; they are required only on the modern revision.
/// SECURITY: enforcement always uses the body; a mismatch means some component could be misled.
fn check_metadata_headers(
    seen: &ClientHeaders<'_>,
    modern: bool,
    msgs: &Messages<'_>,
) -> Result<(), String> {
    if modern && msgs.batch {
        return Err(
            "Header mismatch: JSON-RPC batches are not allowed in protocol 2026-07-28".into(),
        );
    }
    let ([msg], false) = (msgs.items.as_slice(), msgs.batch) else {
        return Ok(());
    };
    let Some(method) = msg.method() else {
        return Ok(());
    };
    let is_req = msg.is_request();
    match seen.mcp_method.map(|v| v.to_str()) {
        None if modern && is_req => {
            return Err("Header mismatch: Mcp-Method header is required".into());
        }
        None => {}
        Some(Err(_)) => return Err("Header mismatch: Mcp-Method header is not valid text".into()),
        Some(Ok(v)) if v != method => {
            return Err(format!(
                "Header mismatch: Mcp-Method header value '{v}' does not match body value '{method}'"
            ));
        }
        Some(Ok(_)) => {}
    }
    let body_name = match method {
        "tools/call" | "prompts/get" => msg.name(),
        "resources/read" => msg.uri.as_deref(),
        _ => return Ok(()),
    };
    match seen
        .mcp_name
        .map(|v| v.to_str().ok().and_then(decode_header_value))
    {
        None if modern => Err("Header mismatch: Mcp-Name header is required".into()),
        None => Ok(()),
        Some(None) => Err("Header mismatch: Mcp-Name header is malformed".into()),
        Some(Some(v)) if Some(v.as_str()) != body_name => Err(format!(
            "Header mismatch: Mcp-Name header value '{v}' does not match body value '{}'",
            body_name.unwrap_or("")
        )),
        Some(Some(_)) => Ok(()),
    }
}

/// Stage: answer `tools/call` of hidden tools locally; return what still goes upstream.
/// SECURITY: a hidden tool gets exactly the answer of a tool that does not exist, and never reaches the
/// upstream.
fn screen_tool_calls<'m, 'a>(
    ctx: &Ctx,
    msgs: &'m Messages<'a>,
    pins: &crate::runtime::pins::Pins,
) -> (SmallVec<[&'m Message<'a>; 1]>, relay::Local) {
    let cfg = &ctx.binding.config;
    let mut forward = SmallVec::with_capacity(msgs.items.len());
    let mut local = relay::Local::none();
    for m in &msgs.items {
        if m.method() != Some("tools/call") {
            forward.push(m);
            continue;
        }
        match m.name() {
            None => {
                audit::tool_call(
                    &ctx.who,
                    "",
                    Verdict::Deny,
                    "missing_tool_name",
                    "rejected",
                    ctx.started,
                );
                local.responses.push(jsonrpc::error(
                    m.id.clone(),
                    code::INVALID_PARAMS,
                    "Invalid params: tools/call requires a string params.name",
                    None,
                ));
            }
            Some(name)
                if !cfg.allowed_tools.allows(name)
                    || (cfg.pin_tools && !pins.callable(&cfg.id, name)) =>
            {
                // SECURITY: with pin_tools, a tool whose approved definition is not the one the
                // upstream last listed (new, changed, removed, never listed) is as unknown as a hidden one.
                let reason = if cfg.allowed_tools.allows(name) {
                    "tool_not_approved"
                } else {
                    "tool_not_allowed"
                };
                audit::tool_call(
                    &ctx.who,
                    name,
                    Verdict::Deny,
                    reason,
                    "rejected",
                    ctx.started,
                );
                local.responses.push(jsonrpc::error(
                    m.id.clone(),
                    code::INVALID_PARAMS,
                    format!("Unknown tool: {name}"),
                    None,
                ));
            }
            Some(_) => forward.push(m),
        }
    }
    (forward, local)
}

/// Stage: the upstream request. Allowlisted headers only, the credential injected, `Host` the upstream's.
fn build_upstream_request(
    b: &Binding,
    method: &Method,
    client: &HeaderMap,
    session: Option<&str>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method.clone();
    *req.uri_mut() = b.config.endpoint.clone();
    let h = req.headers_mut();
    h.reserve(client.len() + 3);
    // One pass over what the client sent (a handful of headers) instead of a lookup per allowed name.
    for (name, v) in client {
        if forwarded_request_header(name) {
            h.append(name.clone(), v.clone());
        }
    }
    let accept = if method == Method::GET {
        "text/event-stream"
    } else {
        "application/json, text/event-stream"
    };
    h.insert(header::ACCEPT, HeaderValue::from_static(accept));
    if let Some(s) = session {
        h.insert(
            mcp_headers::SESSION_ID,
            HeaderValue::from_str(s).map_err(|_| "session id is not valid")?,
        );
    }
    // SECURITY: the agent's token was never copied (Authorization is not in the allowlist); the bound
    // credential is the only one the upstream sees.
    h.insert(b.config.credential.header.clone(), b.credential.clone());
    Ok(req)
}

#[cfg(test)]
mod tests;
