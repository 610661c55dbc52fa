//! Opaque per-binding bearer tokens.
//!
//! A token is `mcph_` + base64url(token id, 16 random bytes) + base64url(HMAC-SHA256(key, binding, id)).
//! The key (`token.key`, 0600) never leaves the host; the state file holds only token ids, which are
//! useless without the key. Because the MAC covers the devbox and env var, a token is valid only for its
//! own binding, and rotating one binding (new id) invalidates exactly that token.
//!
//! Agent-gateway tokens (`gwh_…`) have the same shape under another prefix and another MAC domain, so a
//! token of one kind can never verify as the other, and a secret scanner tells them apart.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Prefix of every MCP token, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "mcph_";
/// Prefix of every agent-gateway token.
pub const AGENT_TOKEN_PREFIX: &str = "gwh_";

/// Which gateway a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The MCP gateway (`RL_MCP_URL`).
    Mcp,
    /// The agent gateway (`ENV_URL`).
    Agent,
}

impl Kind {
    /// The token's visible prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Mcp => TOKEN_PREFIX,
            Self::Agent => AGENT_TOKEN_PREFIX,
        }
    }

    fn domain(self) -> &'static [u8] {
        match self {
            Self::Mcp => b"mcp-hub/token/v1",
            Self::Agent => b"mcp-hub/agent-token/v1",
        }
    }
}
const ID_LEN: usize = 16;
const MAC_LEN: usize = 32;
const ID_B64_LEN: usize = 22;
const MAC_B64_LEN: usize = 43;

/// The public half of a token: which binding it claims to be for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(pub [u8; ID_LEN]);

impl TokenId {
    /// A fresh random id (128 bits).
    ///
    /// # Errors
    /// If the OS random source fails.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut id = [0u8; ID_LEN];
        getrandom::fill(&mut id)?;
        Ok(Self(id))
    }

    /// Text form stored in `tokens.json`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parse the stored text form.
    pub fn decode(s: &str) -> Option<Self> {
        decode_exact(s).map(Self)
    }
}

impl std::fmt::Debug for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenId({})", self.encode())
    }
}

/// The host-only key tokens are derived from.
pub struct TokenKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([REDACTED])")
    }
}

/// A token's MAC, compared in constant time.
#[derive(Clone)]
pub struct TokenMac([u8; MAC_LEN]);

impl std::fmt::Debug for TokenMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMac([REDACTED])")
    }
}

impl TokenMac {
    /// SECURITY: constant-time comparison, so response timing reveals nothing about the expected MAC.
    pub fn verify(&self, presented: &[u8; MAC_LEN]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

impl TokenKey {
    /// Generate a new random key.
    ///
    /// # Errors
    /// If the OS random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)?;
        Ok(Self(SecretBox::new(Box::new(k))))
    }

    /// Load from the raw 32 bytes of `token.key`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let k: [u8; 32] = b.try_into().ok()?;
        Some(Self(SecretBox::new(Box::new(k))))
    }

    /// The raw bytes, for writing the key file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    fn hmac(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        m.update(domain);
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The MAC a binding's token must carry.
    pub fn mac(&self, kind: Kind, devbox: &str, env_var: &str, id: &TokenId) -> TokenMac {
        TokenMac(self.hmac(
            kind.domain(),
            &[devbox.as_bytes(), env_var.as_bytes(), &id.0],
        ))
    }

    /// A derived key for sealing session ids, so sessions survive restarts without another key file.
    pub fn session_key(&self) -> [u8; 32] {
        self.hmac(b"mcp-hub/session-key/v1", &[])
    }

    /// The full token string handed to the devbox.
    pub fn token(&self, kind: Kind, devbox: &str, env_var: &str, id: &TokenId) -> String {
        let mac = self.mac(kind, devbox, env_var, id);
        format!(
            "{}{}{}",
            kind.prefix(),
            URL_SAFE_NO_PAD.encode(id.0),
            URL_SAFE_NO_PAD.encode(mac.0)
        )
    }
}

/// Split a presented token into id and MAC; `None` if it is not shaped like a hub token of `kind`.
pub fn parse(kind: Kind, token: &str) -> Option<(TokenId, [u8; MAC_LEN])> {
    let body = token.strip_prefix(kind.prefix())?;
    if body.len() != ID_B64_LEN + MAC_B64_LEN || !body.is_ascii() {
        return None;
    }
    let (id, mac) = body.split_at(ID_B64_LEN);
    let id = TokenId::decode(id)?;
    let mac = decode_exact(mac)?;
    Some((id, mac))
}

/// Base64url text that decodes to exactly `N` bytes, decoded on the stack: every request's token passes
/// through here.
fn decode_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let n = URL_SAFE_NO_PAD.decode_slice(s, &mut out).ok()?;
    (n == N).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roundtrip_and_binding_scope() {
        let key = TokenKey::generate().unwrap();
        let id = TokenId::random().unwrap();
        let t = key.token(Kind::Mcp, "box1", "GITHUB_MCP_SECRET", &id);
        let (pid, mac) = parse(Kind::Mcp, &t).unwrap();
        assert_eq!(pid, id);
        assert!(
            key.mac(Kind::Mcp, "box1", "GITHUB_MCP_SECRET", &id)
                .verify(&mac)
        );
        // SECURITY: the same id under another binding does not verify.
        assert!(
            !key.mac(Kind::Mcp, "box2", "GITHUB_MCP_SECRET", &id)
                .verify(&mac)
        );
        assert!(
            !key.mac(Kind::Mcp, "box1", "SLACK_MCP_SECRET", &id)
                .verify(&mac)
        );
        // Another key does not verify.
        let other = TokenKey::generate().unwrap();
        assert!(
            !other
                .mac(Kind::Mcp, "box1", "GITHUB_MCP_SECRET", &id)
                .verify(&mac)
        );
        // SECURITY: nor does the other kind: an MCP token is no agent-gateway token, whatever its
        // prefix is rewritten to.
        assert!(
            !key.mac(Kind::Agent, "box1", "GITHUB_MCP_SECRET", &id)
                .verify(&mac)
        );
        assert!(parse(Kind::Agent, &t).is_none());
        let a = key.token(Kind::Agent, "box1", "GITHUB_MCP_SECRET", &id);
        assert!(a.starts_with("gwh_"));
        let relabelled = a.replacen("gwh_", "mcph_", 1);
        let (_, amac) = parse(Kind::Mcp, &relabelled).unwrap();
        assert!(
            !key.mac(Kind::Mcp, "box1", "GITHUB_MCP_SECRET", &id)
                .verify(&amac)
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for t in [
            "",
            "mcph_",
            "Bearer x",
            "mcph_tooshort",
            &format!("mcph_{}", "é".repeat(65)),
        ] {
            assert!(parse(Kind::Mcp, t).is_none(), "{t}");
        }
        // SECURITY: one token has one spelling. Base64 text whose unused trailing bits are set decodes
        // to the same id, so it is refused rather than accepted as a second spelling.
        let key = TokenKey::generate().unwrap();
        let t = key.token(Kind::Mcp, "b", "E", &TokenId([0; ID_LEN]));
        let id_end = TOKEN_PREFIX.len() + ID_B64_LEN - 1;
        assert_eq!(&t[id_end..=id_end], "A");
        let other = format!("{}B{}", &t[..id_end], &t[id_end + 1..]);
        assert!(parse(Kind::Mcp, &t).is_some());
        assert!(parse(Kind::Mcp, &other).is_none(), "{other}");
    }

    #[test]
    fn debug_is_redacted() {
        let key = TokenKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "TokenKey([REDACTED])");
    }
}
