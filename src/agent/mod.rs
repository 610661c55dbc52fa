//! The agent gateway: HTTP REST APIs (above all the LLM provider) with the key kept on the host.
//!
//! A devbox bound to a gateway config holds `$NAME_URL` (this gateway) and an opaque `$NAME` token. A
//! request to `$NAME_URL/<path>` goes through, in this order:
//! `credential::presented -> authenticate -> policy -> check_path -> allowed_paths -> limits ->
//!  body (streamed, or read when allowed_models must see its model) -> headers::request + credential ->
//!  upstream -> relay`.
//! Nothing reaches the upstream before every check has passed, and the devbox's token never does: the
//! bound secret is put where the config says, and echoes of it are scrubbed from what comes back.
//!
//! Every refusal goes through `refuse`, the one exit that audits, counts and answers it in the
//! client's provider's error shape ([`refusal`]). A forwarded request is audited once, by the relay, when
//! its response ends.

pub mod credential;
pub mod headers;
pub mod refusal;
pub mod relay;
pub mod usage;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{Body, BoxError};
use crate::runtime::Live;
use crate::runtime::conn_auth::ConnAuth;
use crate::runtime::ledger::Exceeded;
use crate::runtime::snapshot::AgentBinding;
use crate::tls::client::ClientKey;
use crate::upstream::{Upstream, UpstreamError};
use refusal::{Dialect, Refusal};

/// Body of upstream requests: the devbox's body as it arrives, or the bytes read to check its model.
pub type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The agent gateway of one worker. Its upstream client is the one the MCP gateway uses (one pool per
/// worker, each connection driven by the request that holds it), for streamed bodies.
pub struct Gateway {
    state: Arc<Live>,
    client: Mutex<Option<(ClientKey, Arc<Upstream<UpBody>>)>>,
}

/// Who is asking, once authenticated.
struct Ctx {
    binding: Arc<AgentBinding>,
    dialect: Dialect,
    started: Instant,
}

impl Gateway {
    /// A gateway serving whatever snapshot `state` holds at each request.
    pub fn new(state: Arc<Live>) -> Self {
        Self {
            state,
            client: Mutex::new(None),
        }
    }

    /// Serve one request from `peer` with `snap` (the live snapshot, loaded once by the front door),
    /// on a connection whose verified token `auth` remembers.
    pub async fn handle(
        &self,
        snap: Arc<crate::runtime::Snapshot>,
        req: Request<Incoming>,
        peer: SocketAddr,
        auth: &ConnAuth<AgentBinding>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let started = Instant::now();
        let (token, dialect) = match credential::presented(&parts.headers, &parts.uri) {
            Ok(t) => t,
            Err((f, d)) => return refuse(peer, None, d, &parts, Refusal::Auth(f)),
        };
        let binding = match auth.hit(&snap, token.as_bytes()) {
            Some(b) => b,
            None => match snap.authenticate_agent(token, peer.ip()) {
                Ok(b) => {
                    auth.remember(&snap, token.as_bytes(), &b);
                    b
                }
                Err(f) => return refuse(peer, None, dialect, &parts, Refusal::Auth(f)),
            },
        };
        let ctx = Ctx {
            binding,
            dialect,
            started,
        };
        match self.serve(&ctx, &snap, &parts, body, peer).await {
            Ok(r) => r,
            Err(r) => refuse(peer, Some(&ctx.binding), ctx.dialect, &parts, r),
        }
    }

    /// The stages after authentication; `Err` is a refusal for [`refuse`] to answer.
    async fn serve(
        &self,
        ctx: &Ctx,
        snap: &crate::runtime::Snapshot,
        parts: &Parts,
        body: Incoming,
        peer: SocketAddr,
    ) -> Result<Response<Body>, Refusal> {
        let b = &ctx.binding;
        // SECURITY: the gateway decides by the devbox's own policy on every request, so reaching the
        // listener some other way than through the egress proxy's interception changes nothing.
        if !b.policy.as_ref().is_some_and(|p| p.allow_agent_gateway) {
            return Err(Refusal::PolicyForbids);
        }
        // Bindings exist only with an [agent_gateway] (the snapshot refuses them otherwise).
        let Some(settings) = snap.config.agent_gateway.as_ref() else {
            return Err(Refusal::PolicyForbids);
        };
        let path = check_path(parts.uri.path(), &settings.path_prefix)?;
        if let Some(routes) = &b.config.allowed_paths {
            if !routes.allows(&parts.method, path) {
                return Err(Refusal::PathNotAllowed);
            }
        }
        match self.state.ledger.admit(
            &b.devbox,
            &b.env_var,
            b.max_requests_per_minute,
            b.max_tokens_per_day,
        ) {
            Ok(()) => {}
            Err(Exceeded::Rate(s)) => return Err(Refusal::RateLimited { retry_after: s }),
            Err(Exceeded::Tokens(s)) => return Err(Refusal::TokenBudget { retry_after: s }),
        }
        let limit = settings.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(Refusal::BodyTooLarge(limit));
        }
        let upload = Arc::new(UploadState::default());
        let (up_body, model) = match &b.config.allowed_models {
            None => {
                let up = Upload {
                    inner: body,
                    limit: limit as u64,
                    state: upload.clone(),
                };
                (up.boxed_unsync(), None)
            }
            Some(models) => {
                let client_timeout = snap.config.gateway.client_timeout;
                let read = read_model_body(body, limit, client_timeout).await?;
                upload.seen.store(read.0.len() as u64, Ordering::Relaxed);
                let model = read.1;
                if let Some(m) = &model {
                    if !models.allows(m) {
                        return Err(Refusal::ModelNotAllowed(m.clone()));
                    }
                }
                let full = http_body_util::Full::new(read.0)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                (full, model)
            }
        };
        let uri = upstream_uri(b, path, parts.uri.query())?;
        let mut req = Request::new(up_body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        let mut h = headers::request(&parts.headers);
        let key = match &b.config.auth {
            crate::config::agent::AuthMechanism::Bearer => header::AUTHORIZATION,
            crate::config::agent::AuthMechanism::Header(k) => k.clone(),
        };
        h.insert(key, b.credential.clone());
        if let Some(n) = declared {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        *req.headers_mut() = h;
        let client = self.client(&snap.config.gateway)?;
        let sent = client
            .send(req, &b.config.origin, settings.idle_timeout)
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(_) if upload.ended.load(Ordering::Relaxed) == OVER_LIMIT => {
                return Err(Refusal::BodyTooLarge(limit));
            }
            Err(_) if upload.ended.load(Ordering::Relaxed) == CLIENT_FAILED => {
                return Err(Refusal::BodyFailed);
            }
            Err(UpstreamError::Timeout) => return Err(Refusal::UpstreamTimeout),
            Err(e) => {
                tracing::debug!(error = ?e, config = %b.config.name, "Agent gateway upstream failed");
                return Err(Refusal::UpstreamFailed(e.as_str()));
            }
        };
        let (up_parts, up_body) = resp.into_parts();
        let content_type = up_parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let relay = relay::Relay::new(
            up_body,
            content_type.as_deref(),
            settings.idle_timeout,
            relay::Exchange {
                state: self.state.clone(),
                binding: b.clone(),
                peer,
                method: parts.method.clone(),
                path: path.to_string(),
                status: up_parts.status.as_u16(),
                started: ctx.started,
                upload,
                model,
            },
        );
        let mut out = Response::new(relay.boxed_unsync());
        *out.status_mut() = up_parts.status;
        *out.headers_mut() = headers::response(&up_parts.headers, &b.redactor);
        Ok(out)
    }

    /// This worker's upstream client, rebuilt when the `[gateway]` upstream settings (connect timeout,
    /// extra CA), which both gateways share, change.
    fn client(&self, s: &crate::config::GatewaySettings) -> Result<Arc<Upstream<UpBody>>, Refusal> {
        let mut g = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = g.as_ref().filter(|(k, _)| k.fits(s)) {
            return Ok(c.clone());
        }
        let key = ClientKey::of(s);
        let c = Arc::new(Upstream::new(&key).map_err(|e| {
            tracing::error!(error = %e, "Cannot build the agent gateway's upstream client");
            Refusal::UpstreamFailed("upstream_tls_error")
        })?);
        *g = Some((key, c.clone()));
        Ok(c)
    }
}

/// The one exit for refusals: audited, counted and answered alike.
fn refuse(
    peer: SocketAddr,
    binding: Option<&Arc<AgentBinding>>,
    dialect: Dialect,
    parts: &Parts,
    r: Refusal,
) -> Response<Body> {
    crate::telemetry::audit::agent_denial(
        peer,
        binding.map(|b| &**b),
        parts.method.as_str(),
        parts.uri.path(),
        r.reason(),
        r.status().as_u16(),
    );
    r.respond(dialect, binding.map(|b| b.config.name.as_str()))
}

/// Stage check_path: the path as the devbox sent it (below the agent gateway's own path prefix, if it
/// has one), if the upstream can only read it one way.
///
/// SECURITY: the path is appended to the config's base path (`/v1` of `https://api.openai.com/v1`) and
/// matched against `allowed_paths`. A dot segment (`/../admin`), or a dot or slash spelled in percent
/// encoding, or a backslash, could be resolved by the upstream to a path outside both; such paths are
/// refused instead of normalised, because the upstream's normalisation is not the hub's to guess.
///
/// # Errors
/// `InvalidPath`.
fn check_path<'p>(path: &'p str, prefix: &str) -> Result<&'p str, Refusal> {
    let p = match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) => rest,
        None => return Err(Refusal::InvalidPath),
    };
    if !p.starts_with('/') {
        return Err(Refusal::InvalidPath);
    }
    let lower = p.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") || p.contains('\\') {
        return Err(Refusal::InvalidPath);
    }
    if p.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(Refusal::InvalidPath);
    }
    Ok(p)
}

/// The upstream URI: the config's scheme and authority, its base path, then the devbox's path and query.
fn upstream_uri(b: &AgentBinding, path: &str, query: Option<&str>) -> Result<Uri, Refusal> {
    let c = &b.config;
    let mut pq =
        String::with_capacity(c.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(&c.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = c.endpoint.scheme().cloned();
    parts.authority = c.endpoint.authority().cloned();
    parts.path_and_query = Some(pq.parse().map_err(|_| Refusal::InvalidPath)?);
    Uri::from_parts(parts).map_err(|_| Refusal::InvalidPath)
}

/// Why an upload stopped: nothing yet, over the limit, or the client broke it off.
const OVER_LIMIT: u8 = 1;
const CLIENT_FAILED: u8 = 2;

/// What the upload has seen, shared with the pipeline (why a send failed) and the relay (the audit's
/// `bytes_in`).
#[derive(Default)]
pub struct UploadState {
    /// Body bytes forwarded so far.
    pub seen: AtomicU64,
    /// `OVER_LIMIT`, `CLIENT_FAILED`, or 0.
    ended: AtomicU8,
}

/// The devbox's request body on its way upstream, counted and held to the size limit.
struct Upload {
    inner: Incoming,
    limit: u64,
    state: Arc<UploadState>,
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = this.state.seen.fetch_add(d.len() as u64, Ordering::Relaxed)
                        + d.len() as u64;
                    if n > this.limit {
                        this.state.ended.store(OVER_LIMIT, Ordering::Relaxed);
                        return Poll::Ready(Some(Err("request body over the limit".into())));
                    }
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.state.ended.store(CLIENT_FAILED, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            other => other.map(|o| o.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The top-level `model` of a JSON body, read strictly: serde refuses a duplicate field, so a body
/// naming two models (one for the hub's check, one for the upstream) is refused.
#[derive(serde::Deserialize)]
struct ModelField {
    model: Option<String>,
}

/// Read the whole body (within `limit` and `timeout`) to check its model.
async fn read_model_body(
    body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<(Bytes, Option<String>), Refusal> {
    let read = http_body_util::Limited::new(body, limit).collect();
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(Refusal::BodyTooLarge(limit));
        }
        _ => return Err(Refusal::BodyFailed),
    };
    if bytes.is_empty() {
        return Ok((bytes, None));
    }
    match serde_json::from_slice::<ModelField>(&bytes) {
        Ok(m) => Ok((bytes, m.model)),
        Err(_) => Err(Refusal::UnreadableModel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_an_upstream_could_read_otherwise_are_refused() {
        for ok in ["/v1/messages", "/", "/v1/models/claude-3.5", "/a/b..c"] {
            assert!(check_path(ok, "").is_ok(), "{ok}");
        }
        for bad in [
            "/v1/../admin",
            "/v1/./messages",
            "/..",
            "/v1/%2e%2e/admin",
            "/v1%2fmessages",
            "/v1/%2E./x",
            "/v1/%5cadmin",
        ] {
            assert_eq!(check_path(bad, ""), Err(Refusal::InvalidPath), "{bad}");
        }
        assert_eq!(
            check_path("/agents/v1/messages", "/agents"),
            Ok("/v1/messages")
        );
        assert_eq!(check_path("/agents", "/agents"), Ok("/"));
    }

    #[test]
    fn a_body_naming_two_models_is_unreadable() {
        assert!(serde_json::from_slice::<ModelField>(br#"{"model":"a","model":"b"}"#).is_err());
        let m: ModelField = serde_json::from_slice(br#"{"model":"a","x":{"model":"b"}}"#).unwrap();
        assert_eq!(m.model.as_deref(), Some("a"));
    }
}
