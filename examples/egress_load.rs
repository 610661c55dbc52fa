//! Load generator for `scripts/bench-egress`: bulk throughput over one connection, or new connections
//! per second, either straight to an address (direct, or redirected by the transparent path) or through
//! an HTTP CONNECT proxy (mcp-hub's explicit listener, squid).
//!
//! ```text
//! egress_load bulk  --addr IP:PORT [--proxy IP:PORT] --host NAME --path /blob
//! egress_load conns --addr IP:PORT [--proxy IP:PORT] --host NAME --path /small --concurrency 32 --seconds 5
//! ```
//!
//! `--tls CA.pem` speaks HTTPS to the origin (SNI `--host`, verified against that CA): what agents mostly
//! open, and the path on which the hub only reads the ClientHello and then relays bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: fail loudly

use std::time::{Duration, Instant};

use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type Stream = BufReader<Pin<Box<dyn Io>>>;

struct Args {
    mode: String,
    addr: String,
    proxy: Option<String>,
    host: String,
    path: String,
    concurrency: usize,
    seconds: u64,
    tls: Option<tokio_rustls::TlsConnector>,
}

fn tls_connector(ca: &str) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(ca).expect("read --tls CA file");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(c.expect("CA PEM")).expect("CA certificate");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().expect("bulk or conns");
    let mut a = Args {
        mode,
        addr: String::new(),
        proxy: None,
        host: String::new(),
        path: "/".into(),
        concurrency: 32,
        seconds: 5,
        tls: None,
    };
    while let Some(k) = it.next() {
        let v = it.next().expect("value");
        match k.as_str() {
            "--addr" => a.addr = v,
            "--proxy" => a.proxy = Some(v),
            "--host" => a.host = v,
            "--path" => a.path = v,
            "--concurrency" => a.concurrency = v.parse().unwrap(),
            "--seconds" => a.seconds = v.parse().unwrap(),
            "--tls" => a.tls = Some(tls_connector(&v)),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Open a connection to the origin (through the proxy when given, then TLS when asked).
async fn open(a: &Args) -> std::io::Result<Stream> {
    let tcp = connect(a).await?;
    let io: Pin<Box<dyn Io>> = match &a.tls {
        None => Box::pin(tcp),
        Some(tls) => {
            let name = rustls_pki_types::ServerName::try_from(a.host.clone())
                .map_err(std::io::Error::other)?;
            Box::pin(tls.connect(name, tcp).await?)
        }
    };
    Ok(BufReader::new(io))
}

/// A TCP connection to the origin, through the proxy when given (CONNECT answered).
async fn connect(a: &Args) -> std::io::Result<TcpStream> {
    match &a.proxy {
        None => TcpStream::connect(&a.addr).await,
        Some(p) => {
            let s = TcpStream::connect(p).await?;
            let mut s = BufReader::new(s);
            let port = a.addr.rsplit(':').next().unwrap_or("80");
            s.get_mut()
                .write_all(
                    format!(
                        "CONNECT {}:{port} HTTP/1.1\r\nHost: {}:{port}\r\n\r\n",
                        a.host, a.host
                    )
                    .as_bytes(),
                )
                .await?;
            let mut line = String::new();
            s.read_line(&mut line).await?;
            if !line.contains(" 200") {
                return Err(std::io::Error::other(format!("proxy said {line:?}")));
            }
            loop {
                line.clear();
                s.read_line(&mut line).await?;
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            // The proxy sends nothing after its answer until the client speaks.
            Ok(s.into_inner())
        }
    }
}

/// GET `path` with Connection: close and read to EOF; returns bytes read.
async fn fetch(a: &Args) -> std::io::Result<u64> {
    let mut s = open(a).await?;
    s.get_mut()
        .write_all(
            format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                a.path, a.host
            )
            .as_bytes(),
        )
        .await?;
    let mut status = String::new();
    s.read_line(&mut status).await?;
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(format!("origin said {status:?}")));
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = status.len() as u64;
    loop {
        let k = s.read(&mut buf).await?;
        if k == 0 {
            return Ok(n);
        }
        n += k as u64;
    }
}

#[tokio::main]
async fn main() {
    let a = std::sync::Arc::new(args());
    match a.mode.as_str() {
        "bulk" => {
            let t = Instant::now();
            let n = fetch(&a).await.expect("bulk fetch");
            let secs = t.elapsed().as_secs_f64();
            println!(
                "bytes={n} seconds={secs:.3} MiB_per_s={:.0}",
                n as f64 / secs / 1048576.0
            );
        }
        "conns" => {
            let deadline = Instant::now() + Duration::from_secs(a.seconds);
            let mut tasks = Vec::new();
            for _ in 0..a.concurrency {
                let a = a.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut ok, mut err) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match fetch(&a).await {
                            Ok(n) if n > 0 => ok += 1,
                            r => {
                                if err == 0 {
                                    eprintln!("first failure: {r:?}");
                                }
                                err += 1
                            }
                        }
                    }
                    (ok, err)
                }));
            }
            let (mut ok, mut err) = (0, 0);
            for t in tasks {
                let (o, e) = t.await.unwrap();
                ok += o;
                err += e;
            }
            println!(
                "connections={ok} errors={err} per_s={:.0}",
                ok as f64 / a.seconds as f64
            );
        }
        m => panic!("unknown mode {m}"),
    }
}
