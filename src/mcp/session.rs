//! Session ids sealed to the token that created them.
//!
//! The client sees `base64url(upstream id) . base64url(HMAC(session key, token id, upstream id))`.
//! SECURITY: a session obtained with one token is refused with any other, without the hub keeping any
//! per-session state (so a flood of sessions costs the hub nothing and sessions survive restarts).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::state::token::TokenId;

const TAG_LEN: usize = 16;

fn tag(key: &[u8; 32], token: &TokenId, upstream: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    m.update(b"mcp-hub/session/v1");
    m.update(&token.0);
    m.update(upstream);
    m.finalize().into_bytes().into()
}

/// Seal an upstream session id for a token.
pub fn seal(key: &[u8; 32], token: &TokenId, upstream: &str) -> String {
    let t = tag(key, token, upstream.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(upstream),
        URL_SAFE_NO_PAD.encode(&t[..TAG_LEN])
    )
}

/// Open a presented session id; `None` if it was not sealed for this token.
pub fn open(key: &[u8; 32], token: &TokenId, presented: &str) -> Option<String> {
    let (id, t) = presented.split_once('.')?;
    let upstream = URL_SAFE_NO_PAD.decode(id).ok()?;
    let t = URL_SAFE_NO_PAD.decode(t).ok()?;
    let want = tag(key, token, &upstream);
    // SECURITY: constant time, so timing reveals nothing about the expected tag.
    if !bool::from(want[..TAG_LEN].ct_eq(&t)) {
        return None;
    }
    String::from_utf8(upstream).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_to_one_token() {
        let key = [7u8; 32];
        let a = TokenId([1; 16]);
        let b = TokenId([2; 16]);
        let s = seal(&key, &a, "upstream-session-1");
        assert_eq!(open(&key, &a, &s).as_deref(), Some("upstream-session-1"));
        assert_eq!(open(&key, &b, &s), None);
        assert_eq!(open(&[8u8; 32], &a, &s), None);
        assert_eq!(open(&key, &a, "upstream-session-1"), None);
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("other"),
            s.split_once('.').unwrap().1
        );
        assert_eq!(open(&key, &a, &forged), None);
    }
}
