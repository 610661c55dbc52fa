//! Credential injection and echo redaction.
//!
//! The bound secret is rendered into its header once per snapshot (marked sensitive so hyper's and our
//! logs never print it). The `Redactor` replaces the secret (raw, JSON-escaped, and as the whole header
//! value) in anything an upstream sends back, so an upstream that echoes the credential cannot leak it
//! into the devbox.

use bytes::Bytes;
use http::HeaderValue;
use memchr::memmem;
use secrecy::{ExposeSecret, SecretString};

use crate::config::CredentialPlacement;
use crate::config::validate::SECRET_PLACEHOLDER;

/// What replaces an echoed secret.
pub const REDACTED: &str = "[REDACTED]";

/// Render the header value for a secret.
///
/// # Errors
/// If the rendered value is not a valid header value (the message never includes the value).
pub fn render(
    placement: &CredentialPlacement,
    secret: &SecretString,
) -> Result<HeaderValue, String> {
    let v = placement
        .template
        .replacen(SECRET_PLACEHOLDER, secret.expose_secret(), 1);
    let mut hv = HeaderValue::from_str(&v)
        .map_err(|_| "the secret contains characters not allowed in an HTTP header".to_string())?;
    // SECURITY: sensitive header values are never printed by hyper/http Debug and are not HPACK-indexed.
    hv.set_sensitive(true);
    Ok(hv)
}

/// Finds and replaces every form of one secret in upstream bytes.
pub struct Redactor {
    needles: Vec<memmem::Finder<'static>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor([REDACTED])")
    }
}

impl Redactor {
    /// Build for a secret and its rendered header value.
    pub fn new(secret: &SecretString, header: &HeaderValue) -> Self {
        let raw = secret.expose_secret().as_bytes().to_vec();
        let mut forms: Vec<Vec<u8>> = vec![header.as_bytes().to_vec(), raw.clone()];
        if let Ok(j) = serde_json::to_string(secret.expose_secret()) {
            let inner = j.as_bytes()[1..j.len() - 1].to_vec();
            if inner != raw {
                forms.push(inner);
            }
        }
        // Longest first, so the whole header value is replaced before its secret part.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        let needles = forms
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(|f| memmem::Finder::new(&f).into_owned())
            .collect();
        Self { needles }
    }

    /// Length of the longest form: a stream redacted piece by piece holds back one byte less than this,
    /// so a secret split across two pieces is still found whole.
    pub fn longest(&self) -> usize {
        self.needles
            .iter()
            .map(|n| n.needle().len())
            .max()
            .unwrap_or(0)
    }

    /// Whether `b` contains the secret in any form.
    pub fn contains(&self, b: &[u8]) -> bool {
        self.needles.iter().any(|n| n.find(b).is_some())
    }

    /// `b` with every occurrence replaced; returns the input unchanged (no copy) when clean.
    pub fn redact(&self, b: Bytes) -> Bytes {
        if !self.contains(&b) {
            return b;
        }
        let mut cur = b.to_vec();
        for n in &self.needles {
            let mut out = Vec::with_capacity(cur.len());
            let mut last = 0;
            for i in n.find_iter(&cur) {
                if i < last {
                    continue;
                }
                out.extend_from_slice(&cur[last..i]);
                out.extend_from_slice(REDACTED.as_bytes());
                last = i + n.needle().len();
            }
            out.extend_from_slice(&cur[last..]);
            cur = out;
        }
        Bytes::from(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sensitive_header() {
        let p = CredentialPlacement::default();
        let v = render(&p, &SecretString::from("s3cr3t-value")).unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer s3cr3t-value");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("s3cr3t"));
        assert!(render(&p, &SecretString::from("a\nb")).is_err());
    }

    #[test]
    fn redacts_every_form() {
        let secret = SecretString::from(r#"ab"cd\ef-0123"#);
        let h = HeaderValue::from_static("Bearer ab\"cd\\ef-0123");
        let r = Redactor::new(&secret, &h);
        let json = serde_json::json!({"error": format!("bad token {}", secret.expose_secret())})
            .to_string();
        let out = r.redact(Bytes::from(json));
        let s = std::str::from_utf8(&out).unwrap();
        assert!(!s.contains("cd\\\\ef-0123"), "{s}");
        assert!(s.contains(REDACTED), "{s}");
        // Still valid JSON after redaction.
        serde_json::from_str::<serde_json::Value>(s).unwrap();
        let out = r.redact(Bytes::from_static(b"auth=Bearer ab\"cd\\ef-0123;"));
        assert_eq!(&out[..], b"auth=[REDACTED];");
        let clean = Bytes::from_static(b"nothing here");
        assert_eq!(r.redact(clean.clone()), clean);
    }
}
