//! A TLS client (HTTP/1.1 or h2 only) that trusts the hub's CA, like an agent with SSL_CERT_FILE set.

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

pub(crate) struct Client {
    inner: HClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub(crate) url: String,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub(crate) fn new(url: &str, ca: &Path, h2: bool) -> Self {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(cfg)
            .https_only();
        let conn = if h2 {
            b.enable_http2().build()
        } else {
            b.enable_http1().build()
        };
        let inner = HClient::builder(TokioExecutor::new())
            .http2_only(h2)
            .build(conn);
        Self {
            inner,
            url: url.to_string(),
        }
    }

    pub(crate) fn request(
        &self,
        method: Method,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(&self.url);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let has_ct = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !has_ct && !body.is_empty() {
            b = b.header("content-type", "application/json");
        }
        b = b.header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    }

    pub(crate) async fn send(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        self.inner.request(req).await.unwrap()
    }

    pub(crate) async fn exchange(&self, req: Request<Full<Bytes>>) -> Reply {
        let r = self.send(req).await;
        let (p, b) = r.into_parts();
        Reply {
            status: p.status,
            headers: p.headers,
            body: b.collect().await.unwrap().to_bytes(),
        }
    }

    /// POST a JSON-RPC body with a token.
    pub(crate) async fn post(&self, token: &str, body: &Value) -> Reply {
        self.exchange(self.request(Method::POST, Some(token), &[], &body.to_string()))
            .await
    }

    pub(crate) async fn post_with(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Reply {
        self.exchange(self.request(Method::POST, Some(token), headers, &body.to_string()))
            .await
    }

    /// All tool names across every page of tools/list (follows nextCursor).
    pub(crate) async fn list_all(&self, token: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        for i in 0..50 {
            let mut m =
                serde_json::json!({"jsonrpc":"2.0","id":i,"method":"tools/list","params":{}});
            if let Some(c) = &cursor {
                m["params"]["cursor"] = Value::from(c.clone());
            }
            let r = self.post(token, &m).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            let v = parse_any(&r);
            for t in v["result"]["tools"].as_array().unwrap() {
                names.push(t["name"].as_str().unwrap().to_string());
            }
            match v["result"]["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return names,
            }
        }
        panic!("pagination did not end");
    }
}

/// The JSON-RPC message in a reply, whether JSON or a single-response SSE stream.
pub(crate) fn parse_any(r: &Reply) -> Value {
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("text/event-stream") {
        let text = r.text();
        let data = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("no data in {text}"));
        serde_json::from_str(data).unwrap()
    } else {
        r.json()
    }
}
