//! Stage authenticate's input: the token, wherever the client's SDK puts an API key.
//!
//! Anthropic's SDKs and Claude Code send `x-api-key` (or `Authorization: Bearer` for an auth token),
//! OpenAI's and most others `Authorization: Bearer`, Azure OpenAI `api-key`, Gemini `x-goog-api-key`.
//! The devbox's token is the only key it has, so whichever header carries it is the one read; the
//! header also tells which provider's error shape the client expects.

use http::{HeaderMap, HeaderName, Uri};

use super::refusal::Dialect;
use crate::runtime::snapshot::AuthFailure;
use crate::state::token::AGENT_TOKEN_PREFIX;

/// Headers that may carry the token, and the dialect of the client that uses each.
const KEY_HEADERS: [(HeaderName, Dialect); 3] = [
    (HeaderName::from_static("x-api-key"), Dialect::Anthropic),
    (HeaderName::from_static("api-key"), Dialect::OpenAi),
    (HeaderName::from_static("x-goog-api-key"), Dialect::Google),
];

/// The token a request presents, and the dialect its client speaks.
///
/// SECURITY: every place holding a value must agree: two different keys (say a bearer token and an
/// `x-api-key`), or one header given twice, are refused as malformed, so no stage can read one token
/// while another stage (or the upstream) reads the other. Tokens in the query string are refused
/// outright: URLs end up in logs and shell histories.
///
/// # Errors
/// Why no single token could be read, with the dialect to answer in.
pub fn presented<'h>(
    headers: &'h HeaderMap,
    uri: &Uri,
) -> Result<(&'h str, Dialect), (AuthFailure, Dialect)> {
    // Needed only to answer a refusal: computed then, not for every request.
    let guess = || guess_dialect(headers, uri);
    if let Some(q) = uri.query() {
        let lower = q.to_ascii_lowercase();
        if lower.contains(AGENT_TOKEN_PREFIX)
            || lower.split('&').any(|kv| {
                let k = kv.split('=').next().unwrap_or("");
                matches!(k, "key" | "api_key" | "api-key" | "access_token" | "token")
            })
        {
            return Err((AuthFailure::InQuery, guess()));
        }
    }
    let mut found: Option<(&str, Dialect)> = None;
    let mut take = |v: &'h str, d: Dialect| -> Result<(), AuthFailure> {
        match found {
            Some((t, _)) if t != v => Err(AuthFailure::Malformed),
            Some(_) => Ok(()),
            None => {
                found = Some((v, d));
                Ok(())
            }
        }
    };
    let auth = headers.get_all(http::header::AUTHORIZATION);
    let mut n = 0;
    for v in auth {
        n += 1;
        let s = v.to_str().map_err(|_| (AuthFailure::Malformed, guess()))?;
        let t = s
            .strip_prefix("Bearer ")
            .or_else(|| s.strip_prefix("bearer "))
            .ok_or_else(|| (AuthFailure::Malformed, guess()))?;
        take(t.trim(), Dialect::OpenAi).map_err(|f| (f, guess()))?;
    }
    if n > 1 {
        return Err((AuthFailure::Malformed, guess()));
    }
    for (h, d) in &KEY_HEADERS {
        let mut all = headers.get_all(h).iter();
        let Some(v) = all.next() else { continue };
        if all.next().is_some() {
            return Err((AuthFailure::Malformed, guess()));
        }
        let s = v.to_str().map_err(|_| (AuthFailure::Malformed, guess()))?;
        take(s.trim(), *d).map_err(|f| (f, guess()))?;
    }
    found.ok_or_else(|| (AuthFailure::Missing, guess()))
}

/// The dialect of a request that carries no usable key: Anthropic's clients send `anthropic-version`
/// and call `/v1/messages`; Gemini's paths name `:generateContent`; everything else reads OpenAI's shape.
fn guess_dialect(headers: &HeaderMap, uri: &Uri) -> Dialect {
    let path = uri.path();
    if headers.contains_key("anthropic-version")
        || headers.contains_key("x-api-key")
        || path.starts_with("/v1/messages")
        || path.starts_with("/v1/complete")
    {
        Dialect::Anthropic
    } else if headers.contains_key("x-goog-api-key") || path.contains(":generateContent") {
        Dialect::Google
    } else {
        Dialect::OpenAi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn every_sdk_placement_is_read() {
        let u: Uri = "/v1/messages".parse().unwrap();
        for (k, v, d) in [
            ("x-api-key", "gwh_a", Dialect::Anthropic),
            ("authorization", "Bearer gwh_a", Dialect::OpenAi),
            ("api-key", "gwh_a", Dialect::OpenAi),
            ("x-goog-api-key", "gwh_a", Dialect::Google),
        ] {
            assert_eq!(presented(&h(&[(k, v)]), &u), Ok(("gwh_a", d)), "{k}");
        }
        // The same token twice (an SDK sending both headers) is one token.
        let both = h(&[("x-api-key", "gwh_a"), ("authorization", "Bearer gwh_a")]);
        assert!(presented(&both, &u).is_ok());
    }

    #[test]
    fn ambiguous_missing_and_query_tokens_are_refused() {
        let u: Uri = "/v1/messages".parse().unwrap();
        // SECURITY: two different keys, or one header twice: which one counts would be ambiguous.
        let two = h(&[("x-api-key", "gwh_a"), ("authorization", "Bearer gwh_b")]);
        assert_eq!(presented(&two, &u).unwrap_err().0, AuthFailure::Malformed);
        let twice = h(&[("x-api-key", "gwh_a"), ("x-api-key", "gwh_a")]);
        assert_eq!(presented(&twice, &u).unwrap_err().0, AuthFailure::Malformed);
        assert_eq!(
            presented(&h(&[]), &u).unwrap_err(),
            (AuthFailure::Missing, Dialect::Anthropic)
        );
        let q: Uri = "/v1beta/models/x:generateContent?key=gwh_a"
            .parse()
            .unwrap();
        assert_eq!(
            presented(&h(&[]), &q).unwrap_err(),
            (AuthFailure::InQuery, Dialect::Google)
        );
        let fine: Uri = "/v1/models?limit=5".parse().unwrap();
        assert_eq!(
            presented(&h(&[]), &fine).unwrap_err(),
            (AuthFailure::Missing, Dialect::OpenAi)
        );
    }
}
