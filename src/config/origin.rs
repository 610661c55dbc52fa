//! An upstream endpoint's origin (scheme, host, port), parsed once when the config is validated: the key
//! of the MCP gateway's connection pool and what its dialer connects to.

/// Where an upstream's connections go: scheme and authority, the pool's key. Built once per configured
/// endpoint (at validation) and shared, so a request neither parses nor hashes an `Authority` byte by
/// byte: the key is one lowercased string.
#[derive(Debug)]
pub struct Origin {
    /// TLS or not.
    pub https: bool,
    /// Lowercased `host[:port]`: what equality uses.
    key: Box<str>,
    /// A digest of scheme and key, computed once: the pool's map hashes these eight bytes on each
    /// checkout and return instead of the whole key. Equality still compares the key itself.
    digest: u64,
    /// Host name or IP literal (no brackets), to connect to and to verify the certificate for.
    pub host: Box<str>,
    /// Port, the scheme's default if the endpoint names none.
    pub port: u16,
    /// `Host` for HTTP/1.1 requests: the endpoint's authority as written.
    pub host_header: http::HeaderValue,
}

impl Origin {
    /// The origin of an absolute http(s) URI; `None` for anything else.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let a = uri.authority()?;
        let host = a.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return None;
        }
        let key: Box<str> = a.as_str().to_ascii_lowercase().into();
        let digest = {
            use std::hash::{BuildHasher, Hash, Hasher};
            let mut h = foldhash::fast::FixedState::default().build_hasher();
            https.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        Some(Self {
            https,
            key,
            digest,
            host: host.into(),
            port: a.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host_header: http::HeaderValue::from_str(a.as_str()).ok()?,
        })
    }
}

impl PartialEq for Origin {
    fn eq(&self, o: &Self) -> bool {
        self.https == o.https && self.key == o.key
    }
}

impl Eq for Origin {}

impl std::hash::Hash for Origin {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Consistent with `eq`: equal origins have equal scheme and key, so equal digests.
        h.write_u64(self.digest);
    }
}
