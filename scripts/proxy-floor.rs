//! The floor of any MCP gateway built on the project's required stack: a TLS-terminating HTTP/1.1 reverse
//! proxy made of nothing but tokio, rustls (ring), hyper's server and hyper's client connection, with the
//! same worker layout as mcp-hub (one current-thread runtime per core, sharing one listener) and the same
//! allocator. It swaps the `Authorization` header and streams the response back, and does nothing else:
//! no token lookup, no JSON, no filtering, no pool (one upstream connection per client connection).
//!
//! `scripts/bench-mcp` runs it next to mcp-hub and nginx so the gap between the hub and nginx can be
//! split into what the stack costs (this floor against nginx) and what the hub's own work costs (the hub
//! against this floor). It is a measuring instrument, not part of the product.
//!
//! Usage: `cargo run --release --example proxy-floor -- LISTEN UPSTREAM CREDENTIAL`

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, credential] = args.as_slice() else {
        anyhow::bail!("usage: proxy-floor LISTEN UPSTREAM CREDENTIAL");
    };
    let upstream: SocketAddr = upstream.parse().context("UPSTREAM must be ip:port")?;
    let credential =
        HeaderValue::from_str(credential).context("CREDENTIAL is not a header value")?;
    let tls = Arc::new(tls_config()?);
    let listener = std::net::TcpListener::bind(listen).context("cannot bind LISTEN")?;
    listener.set_nonblocking(true)?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut threads = Vec::new();
    for _ in 0..workers {
        let (l, tls, credential) = (listener.try_clone()?, tls.clone(), credential.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                accept_loop(TcpListener::from_std(l)?, tls, upstream, credential).await
            })
        }));
    }
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    upstream: SocketAddr,
    credential: HeaderValue,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, credential) = (acceptor.clone(), credential.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(acceptor, tcp, upstream, credential).await {
                eprintln!("proxy-floor: connection ended: {e:#}");
            }
        });
    }
}

/// One client connection: TLS, then every request forwarded over one upstream connection.
async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    upstream: SocketAddr,
    credential: HeaderValue,
) -> Result<()> {
    tcp.set_nodelay(true)?;
    let client = acceptor.accept(tcp).await?;
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await?;
    tokio::spawn(conn);
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |mut req: Request<Incoming>| {
        let (sender, credential) = (sender.clone(), credential.clone());
        async move {
            req.headers_mut().insert(header::AUTHORIZATION, credential);
            let mut sender = sender.lock().await;
            sender.ready().await?;
            sender.send_request(req).await
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await?;
    Ok(())
}

/// A self-signed P-256 certificate for 127.0.0.1, like the hub's leaf; HTTP/1.1 only.
fn tls_config() -> Result<rustls::ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
