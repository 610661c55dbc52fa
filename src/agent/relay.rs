//! Stage relay: the upstream's response body to the client, piece by piece as it arrives.
//!
//! SSE (`text/event-stream`, streamed completions) is cut into events and each complete event is
//! redacted, metered and sent on at once; any other body is redacted as a stream (holding back only
//! the bytes a secret split across two pieces could start in), and a JSON body's copy (up to
//! [`METER_JSON_MAX`]) is metered at the end. There is no deadline on a whole response, only on
//! silence: a stream that sends nothing for `idle_timeout` ends.
//!
//! The relay writes the request's one audit line when it ends, however it ends: completely, by an
//! upstream error or the idle timeout, or because the client went away (the body is dropped, and with
//! it the upstream response, which cancels the upstream request).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::usage::Usage;
use crate::body::BoxError;
use crate::runtime::Live;
use crate::runtime::snapshot::AgentBinding;
use crate::sse::{self, EventSplitter};
use crate::upstream::pool::UpstreamBody;

/// Largest JSON response copied for metering; bigger ones are relayed unmetered.
pub const METER_JSON_MAX: usize = 4 << 20;
/// Largest single SSE event (a completion's events are small; a stuck stream is not).
pub const MAX_EVENT: usize = 8 << 20;

/// What the audit line needs besides what the body sees.
pub struct Exchange {
    /// Live state (for the ledger).
    pub state: Arc<Live>,
    /// The binding.
    pub binding: Arc<AgentBinding>,
    /// Client address.
    pub peer: SocketAddr,
    /// Method.
    pub method: http::Method,
    /// Path as the devbox sent it.
    pub path: String,
    /// Upstream status.
    pub status: u16,
    /// When the request arrived.
    pub started: Instant,
    /// The upload (request body bytes forwarded).
    pub upload: Arc<super::UploadState>,
    /// The model the request named, when it was read.
    pub model: Option<String>,
}

enum Shape {
    Sse(EventSplitter),
    Raw { carry: BytesMut, json: Option<Kept> },
}

/// The copy of a JSON body kept for metering: most arrive in one piece, which is kept without copying.
enum Kept {
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

impl Kept {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(v) => v.len(),
        }
    }

    fn push(&mut self, data: &Bytes) {
        *self = match std::mem::replace(self, Self::Empty) {
            Self::Empty => Self::One(data.clone()),
            Self::One(first) => {
                let mut v = Vec::with_capacity(first.len() + data.len());
                v.extend_from_slice(&first);
                v.extend_from_slice(data);
                Self::Many(v)
            }
            Self::Many(mut v) => {
                v.extend_from_slice(data);
                Self::Many(v)
            }
        };
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::One(b) => b,
            Self::Many(v) => v,
        }
    }
}

/// The response body the client reads.
pub struct Relay {
    inner: UpstreamBody<super::UpBody>,
    shape: Shape,
    ready: VecDeque<Bytes>,
    idle: Duration,
    /// Armed the first time the upstream makes the client wait (most JSON bodies never do).
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
    usage: Usage,
    bytes_out: u64,
    /// How the upstream body ended, once it has.
    end: Option<&'static str>,
    /// The error to end the client's body with, after what is queued.
    error: Option<BoxError>,
    exchange: Option<Exchange>,
}

impl Relay {
    /// Relay `inner` (with `content_type`) for `exchange`.
    pub fn new(
        inner: UpstreamBody<super::UpBody>,
        content_type: Option<&str>,
        idle: Duration,
        exchange: Exchange,
    ) -> Self {
        let ct = content_type.unwrap_or("").as_bytes();
        let shape = if ct.len() >= 17 && ct[..17].eq_ignore_ascii_case(b"text/event-stream") {
            Shape::Sse(EventSplitter::default())
        } else {
            let json = ct.windows(4).any(|w| w.eq_ignore_ascii_case(b"json"));
            Shape::Raw {
                carry: BytesMut::new(),
                json: json.then_some(Kept::Empty),
            }
        };
        Self {
            inner,
            shape,
            ready: VecDeque::new(),
            idle,
            silence: None,
            usage: Usage {
                model: exchange.model.clone(),
                ..Usage::default()
            },
            bytes_out: 0,
            end: None,
            error: None,
            exchange: Some(exchange),
        }
    }

    /// Redact, meter and queue one piece of the upstream body; `last` when the body ends with it (then
    /// nothing is held back, and a one-piece body goes out as one piece).
    fn take(&mut self, data: Bytes, last: bool) -> Result<(), BoxError> {
        let Some(x) = &self.exchange else {
            return Ok(());
        };
        let redactor = &x.binding.redactor;
        match &mut self.shape {
            Shape::Sse(split) => {
                for ev in split.push(&data, MAX_EVENT)? {
                    if let Some(d) = sse::data(&ev) {
                        self.usage.read_event(&d);
                    }
                    self.ready.push_back(redactor.redact(ev));
                }
            }
            Shape::Raw { carry, json } => {
                if let Some(j) = json {
                    if j.len() + data.len() <= METER_JSON_MAX {
                        j.push(&data);
                    } else {
                        *json = None;
                    }
                }
                let hold = if last {
                    0
                } else {
                    redactor.longest().saturating_sub(1)
                };
                let whole = if carry.is_empty() {
                    data
                } else {
                    carry.extend_from_slice(&data);
                    carry.split().freeze()
                };
                let clean = redactor.redact(whole);
                let cut = clean.len().saturating_sub(hold);
                if cut > 0 {
                    self.ready.push_back(clean.slice(..cut));
                }
                carry.extend_from_slice(&clean[cut..]);
            }
        }
        Ok(())
    }

    /// The upstream body ended: send what is held back.
    fn flush(&mut self) {
        match &mut self.shape {
            Shape::Sse(split) => {
                if let (Some(ev), Some(x)) = (split.finish(), &self.exchange) {
                    if let Some(d) = sse::data(&ev) {
                        self.usage.read_event(&d);
                    }
                    self.ready.push_back(x.binding.redactor.redact(ev));
                }
            }
            Shape::Raw { carry, json } => {
                if !carry.is_empty() {
                    self.ready.push_back(carry.split().freeze());
                }
                if let Some(j) = json.take() {
                    self.usage.read_json(j.bytes());
                }
            }
        }
    }

    /// Write the audit line, count the metrics and spend the tokens, once.
    fn finish(&mut self, outcome: &'static str) {
        let Some(x) = self.exchange.take() else {
            return;
        };
        let b = &x.binding;
        if b.max_tokens_per_day.is_some() {
            x.state
                .ledger
                .spend(&b.devbox, &b.env_var, self.usage.total());
        }
        crate::telemetry::audit::agent_request(&crate::telemetry::audit::AgentRequest {
            peer: x.peer,
            binding: b,
            method: x.method.as_str(),
            path: &x.path,
            status: x.status,
            bytes_in: x.upload.seen.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
            started: x.started,
            usage: &self.usage,
            outcome,
        });
    }

    fn pop(&mut self) -> Option<Bytes> {
        let b = self.ready.pop_front()?;
        self.bytes_out += b.len() as u64;
        Some(b)
    }
}

impl HttpBody for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.pop() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if let Some(outcome) = this.end {
                this.finish(outcome);
                // An error after the last bytes tells hyper the body is cut short, so the client sees a
                // broken stream rather than a complete one.
                return Poll::Ready(this.error.take().map(Err));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(s) = this.silence.as_mut() {
                        s.as_mut().reset(tokio::time::Instant::now() + this.idle);
                    }
                    // Trailers are dropped: no LLM API sends them, and they would bypass redaction.
                    if let Ok(data) = frame.into_data() {
                        let last = this.inner.is_end_stream();
                        if let Err(e) = this.take(data, last) {
                            this.end = Some("event_too_large");
                            this.error = Some(e);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.flush();
                    this.end = Some("upstream_error");
                    this.error = Some(Box::new(e));
                }
                Poll::Ready(None) => {
                    this.flush();
                    this.end = Some("ok");
                }
                Poll::Pending => {
                    let idle = this.idle;
                    let silence = this
                        .silence
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if silence.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.end = Some("idle_timeout");
                    this.error = Some("upstream idle timeout".into());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end.is_some() && self.ready.is_empty() && self.exchange.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Finished already, unless the client went away first: then this is the line, and dropping the
        // upstream body cancels the upstream request.
        self.finish("client_cancelled");
    }
}
