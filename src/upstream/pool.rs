//! Keep-alive connections to upstreams (MCP servers, the agent gateway's APIs), one pool per gateway
//! worker and request body type.
//!
//! An HTTP/1.1 connection is not a task of its own: whoever holds it drives it. A request drives it
//! while waiting for the response head, then the response body ([`UpstreamBody`]) drives it while the
//! agent's connection reads that body, and at the body's end it goes back to the pool idle. So a proxied
//! exchange runs in the agent connection's task alone: no channel hop to a connection task, no task
//! spawned per request, no lock shared between workers. (hyper-util's pooled client did all three; they
//! were most of the gateway's own CPU time per call.) HTTP/2 upstreams multiplex on one connection
//! per host, which does run as its own task.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use tokio::time::Sleep;

use super::io::Io;
use crate::body::BoxError;
use crate::config::origin::Origin;

/// How long an idle connection is kept. Servers commonly close idle keep-alive connections after 5 to
/// 120 s; a connection found closed at checkout is simply skipped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream host and worker.
pub const MAX_IDLE_PER_HOST: usize = 256;
/// How often idle connections are checked for closure and age, so none lingers half-closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// hyper's HTTP/1.1 client connection state machine over an upstream stream.
type H1Connection<B> = http1::Connection<TokioIo<Io>, B>;

/// What a request body must be to be sent upstream: the MCP gateway's complete bodies
/// (`Full<Bytes>`), or the agent gateway's streamed ones. Each gateway's pool is monomorphic.
pub trait SendBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<B> SendBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

/// An HTTP/1.1 connection and the handle that sends on it.
pub struct H1<B: SendBody = Full<Bytes>> {
    /// Sends requests on the connection.
    pub tx: http1::SendRequest<B>,
    /// The connection itself; `None` once it has closed.
    conn: Option<Pin<Box<H1Connection<B>>>>,
    /// The response deadline of the exchange in progress: one timer for the connection's life, moved
    /// to each exchange's deadline. A later deadline only updates the armed entry (tokio files it anew
    /// when the old time comes due), where a timeout per call added a timer-wheel entry and removed it
    /// again every time.
    deadline: Pin<Box<Sleep>>,
}

impl<B: SendBody> H1<B> {
    /// A freshly handshaken connection.
    pub fn new(tx: http1::SendRequest<B>, conn: H1Connection<B>) -> Self {
        Self {
            tx,
            conn: Some(Box::pin(conn)),
            deadline: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
        }
    }

    /// Set the response deadline of the next exchange.
    pub fn arm(&mut self, at: tokio::time::Instant) {
        self.deadline.as_mut().reset(at);
    }

    /// Whether the armed deadline has passed; if not, `cx` is woken when it does.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    /// Let the connection make progress (write the request, read the response). Once it has closed it
    /// is dropped, which fails any request still waiting on it.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(c) = self.conn.as_mut() {
            if c.as_mut().poll(cx).is_ready() {
                self.conn = None;
            }
        }
    }

    /// Whether the connection is open.
    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// Whether a pooled connection can take a request now: still open (a close by the server is seen
    /// here, not by the request) and idle.
    fn usable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.is_open() && self.tx.is_ready()
    }
}

/// A connection taken from the pool.
pub enum Checkout<B: SendBody = Full<Bytes>> {
    /// Exclusive use until the response body ends.
    H1(H1<B>),
    /// A handle on the shared connection.
    H2(http2::SendRequest<B>),
}

struct Idle<B: SendBody> {
    h1: H1<B>,
    since: Instant,
}

struct Host<B: SendBody> {
    /// Most recently used last: reuse the warmest connection, expire from the front.
    idle: VecDeque<Idle<B>>,
    h2: Option<http2::SendRequest<B>>,
}

impl<B: SendBody> Default for Host<B> {
    fn default() -> Self {
        Self {
            idle: VecDeque::new(),
            h2: None,
        }
    }
}

/// The pool.
pub struct Pool<B: SendBody = Full<Bytes>> {
    /// Looked up twice per call (checkout, return) by configured endpoints: a fast hash.
    hosts: Mutex<Hosts<B>>,
}

impl<B: SendBody> Default for Pool<B> {
    fn default() -> Self {
        Self {
            hosts: Mutex::new(HashMap::default()),
        }
    }
}

type Hosts<B> = HashMap<Arc<Origin>, Host<B>, foldhash::fast::RandomState>;

impl<B: SendBody> Pool<B> {
    /// A pool whose idle connections are swept in the background while it lives.
    pub fn new() -> Arc<Self> {
        let pool = Arc::new(Self::default());
        let weak = Arc::downgrade(&pool);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep_while_alive(weak));
        }
        pool
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, Hosts<B>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection to `key` that can take a request now: the shared h2 one if open, else the most
    /// recently used idle HTTP/1.1 one that is still usable.
    pub fn checkout(&self, key: &Origin) -> Option<Checkout<B>> {
        let mut hosts = self.hosts();
        let host = hosts.get_mut(key)?;
        if let Some(tx) = &host.h2 {
            if !tx.is_closed() {
                return Some(Checkout::H2(tx.clone()));
            }
            host.h2 = None;
        }
        while let Some(mut i) = host.idle.pop_back() {
            if i.since.elapsed() < IDLE_TIMEOUT && i.h1.usable() {
                return Some(Checkout::H1(i.h1));
            }
        }
        None
    }

    /// Return an idle HTTP/1.1 connection.
    pub fn put_h1(&self, key: Arc<Origin>, h1: H1<B>) {
        let now = Instant::now();
        let mut hosts = self.hosts();
        let host = hosts.entry(key).or_default();
        while host
            .idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
        {
            host.idle.pop_front();
        }
        if host.idle.len() < MAX_IDLE_PER_HOST {
            host.idle.push_back(Idle { h1, since: now });
        }
    }

    /// Share a new HTTP/2 connection.
    pub fn put_h2(&self, key: Arc<Origin>, tx: http2::SendRequest<B>) {
        self.hosts().entry(key).or_default().h2 = Some(tx);
    }

    /// Close idle connections that expired or that the server closed.
    fn sweep(&self) {
        let mut hosts = self.hosts();
        for host in hosts.values_mut() {
            host.idle
                .retain_mut(|i| i.since.elapsed() < IDLE_TIMEOUT && i.h1.usable());
            if host.h2.as_ref().is_some_and(http2::SendRequest::is_closed) {
                host.h2 = None;
            }
        }
        hosts.retain(|_, h| !h.idle.is_empty() || h.h2.is_some());
    }
}

async fn sweep_while_alive<B: SendBody>(pool: Weak<Pool<B>>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(p) => p.sweep(),
            None => return,
        }
    }
}

/// An upstream response body. For HTTP/1.1 it drives its connection and hands it back to the pool
/// once the body has been read to the end; a body dropped early closes the connection (its unread
/// remainder would corrupt the next exchange).
pub struct UpstreamBody<B: SendBody = Full<Bytes>> {
    inner: Incoming,
    conn: Option<Held<B>>,
}

/// The connection a body drives, the pool it goes back to, and under which origin.
type Held<B> = (H1<B>, Arc<Pool<B>>, Arc<Origin>);

impl<B: SendBody> UpstreamBody<B> {
    /// A body read from a multiplexed (HTTP/2) connection, which its own task drives.
    pub fn shared(inner: Incoming) -> Self {
        Self { inner, conn: None }
    }

    /// A body that drives `h1` and returns it to `pool` at its end.
    pub fn pooled(inner: Incoming, h1: H1<B>, pool: Arc<Pool<B>>, key: Arc<Origin>) -> Self {
        Self {
            inner,
            conn: Some((h1, pool, key)),
        }
    }

    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some((h1, _, _)) = self.conn.as_mut() {
            h1.drive(cx);
        }
    }

    /// The body is complete: the connection goes back to the pool once it is idle again.
    fn release(&mut self, cx: &mut Context<'_>) {
        let Some((mut h1, pool, key)) = self.conn.take() else {
            return;
        };
        h1.drive(cx);
        if !h1.is_open() {
            return;
        }
        if h1.tx.is_ready() {
            pool.put_h1(key, h1);
            return;
        }
        // Not idle yet (the server's framing finishes after the body): wait for it off the request path.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let ready = poll_fn(|cx| {
                    h1.drive(cx);
                    if !h1.is_open() {
                        return Poll::Ready(false);
                    }
                    h1.tx.poll_ready(cx).map(|r| r.is_ok())
                })
                .await;
                if ready {
                    pool.put_h1(key, h1);
                }
            });
        }
    }
}

impl<B: SendBody> Body for UpstreamBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The body first: what the connection already read is handed over without driving it. Only
        // when the body has nothing yet is the connection driven (it reads, and sees the body now wants
        // data), and the body asked once more.
        for attempt in 0..2 {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending if attempt == 0 => this.drive(cx),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.release(cx);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if this.inner.is_end_stream() {
                        this.release(cx);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
