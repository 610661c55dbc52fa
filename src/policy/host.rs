//! Destination hosts: parsing (name or raw IP, whatever the spelling), normalisation (case, trailing
//! dot, IDNA) and the `allowed_hostnames` patterns (`example.org`, or `*.example.org` for every subdomain
//! but not the apex).

use std::fmt;
use std::net::IpAddr;

use super::ip::parse_ipv4_lenient;

/// A destination as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A normalised DNS name (lowercase ASCII, no trailing dot).
    Name(String),
    /// A raw IP, however it was spelled.
    Ip(IpAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a host string is not a usable destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty.
    #[error("empty host")]
    Empty,
    /// Not a valid DNS name after IDNA processing.
    #[error("not a valid host name")]
    Invalid,
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Parse a host (from SNI, `Host`, a CONNECT authority or a request target, without port).
///
/// SECURITY: numeric spellings that resolvers would treat as IPv4 (`2130706433`, `0x7f.1`) are raw IPs,
/// never names, so they cannot slip past raw-IP denial.
///
/// # Errors
/// Empty or invalid names.
pub fn parse_host(s: &str) -> Result<Target, HostError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Target::Ip(ip));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    if let Some(v4) = parse_ipv4_lenient(name) {
        return Ok(Target::Ip(IpAddr::V4(v4)));
    }
    let ascii = idna::domain_to_ascii(name).map_err(|_| HostError::Invalid)?;
    if ascii.is_empty() || ascii.len() > 253 || !ascii.split('.').all(valid_label) {
        return Err(HostError::Invalid);
    }
    // A last label that is all digits would be read as an IPv4 part by some resolvers.
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(HostError::Invalid);
    }
    Ok(Target::Name(ascii))
}

/// Split `host:port` (or `[v6]:port`); `default_port` when absent.
pub fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((&authority[..h.len() + 2], port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p.parse().ok()?)),
        Some(_) => None, // bare IPv6 without brackets is ambiguous
        None => Some((authority, default_port)),
    }
}

/// One `allowed_hostnames` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any strict subdomain of this name (`*.example.org`).
    Subdomains(String),
    /// This raw IP (raw-IP destinations are otherwise denied).
    Ip(IpAddr),
}

impl HostPattern {
    /// Parse and normalise a pattern.
    ///
    /// # Errors
    /// A message for the operator.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("*.") {
            return match parse_host(rest) {
                Ok(Target::Name(n)) if n.contains('.') => Ok(Self::Subdomains(n)),
                Ok(Target::Name(_)) => Err("a wildcard must cover a domain with at least two labels, e.g. \"*.example.org\"".into()),
                _ => Err("not a valid host name after \"*.\"".into()),
            };
        }
        if s.contains('*') {
            return Err(
                "a wildcard is allowed only as the whole first label, e.g. \"*.example.org\""
                    .into(),
            );
        }
        match parse_host(s) {
            Ok(Target::Name(n)) => Ok(Self::Exact(n)),
            Ok(Target::Ip(ip)) => Ok(Self::Ip(ip)),
            Err(_) => Err("not a valid host name".into()),
        }
    }

    /// Whether `target` matches.
    pub fn matches(&self, target: &Target) -> bool {
        match (self, target) {
            (Self::Exact(p), Target::Name(n)) => p == n,
            (Self::Subdomains(p), Target::Name(n)) => {
                n.len() > p.len() + 1
                    && n.ends_with(p.as_str())
                    && n.as_bytes()[n.len() - p.len() - 1] == b'.'
            }
            (Self::Ip(p), Target::Ip(ip)) => {
                super::ip::canonical_ip(*p) == super::ip::canonical_ip(*ip)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Target {
        Target::Name(s.into())
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<Target, HostError>)] = &[
            ("GitHub.COM", Ok(name("github.com"))),
            ("github.com.", Ok(name("github.com"))),
            ("bücher.example", Ok(name("xn--bcher-kva.example"))),
            ("127.0.0.1", Ok(Target::Ip("127.0.0.1".parse().unwrap()))),
            ("2130706433", Ok(Target::Ip("127.0.0.1".parse().unwrap()))),
            ("0x7f.1", Ok(Target::Ip("127.0.0.1".parse().unwrap()))),
            ("0177.0.0.1", Ok(Target::Ip("127.0.0.1".parse().unwrap()))),
            (
                "[::ffff:169.254.169.254]",
                Ok(Target::Ip("::ffff:169.254.169.254".parse().unwrap())),
            ),
            ("::1", Ok(Target::Ip("::1".parse().unwrap()))),
            ("", Err(HostError::Empty)),
            ("exa mple.com", Err(HostError::Invalid)),
            ("-bad.com", Err(HostError::Invalid)),
            ("a..b", Err(HostError::Invalid)),
            ("1.2.3.4.5", Err(HostError::Invalid)),
        ];
        for (s, want) in cases {
            assert_eq!(&parse_host(s), want, "{s}");
        }
    }

    #[test]
    fn pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("github.com", "github.com", true),
            ("github.com", "GITHUB.com.", true),
            ("github.com", "api.github.com", false),
            ("*.github.com", "api.github.com", true),
            ("*.github.com", "a.b.github.com", true),
            ("*.github.com", "github.com", false),
            ("*.github.com", "evilgithub.com", false),
            ("*.github.com", "github.com.evil.org", false),
            ("pypi.org", "pypi.org.evil.org", false),
            ("203.0.113.5", "203.0.113.5", true),
            ("203.0.113.5", "0xcb.0.113.5", true),
            ("github.com", "140.82.112.3", false),
        ];
        for (p, h, want) in cases {
            let pat = HostPattern::parse(p).unwrap();
            assert_eq!(pat.matches(&parse_host(h).unwrap()), *want, "{p} vs {h}");
        }
        for bad in [
            "*",
            "*.com",
            "foo.*.com",
            "a*.example.org",
            "*example.org",
            "bad host",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_host_port("example.com:443", 80),
            Some(("example.com", 443))
        );
        assert_eq!(
            split_host_port("example.com", 80),
            Some(("example.com", 80))
        );
        assert_eq!(split_host_port("[::1]:8443", 80), Some(("[::1]", 8443)));
        assert_eq!(split_host_port("[::1]", 80), Some(("[::1]", 80)));
        assert_eq!(split_host_port("::1", 80), None);
        assert_eq!(split_host_port("example.com:x", 80), None);
    }
}
