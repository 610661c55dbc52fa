//! Address classification: which destinations are public, and why the others are not.
//!
//! Checked on every resolved address before dialling (never on strings), so odd spellings
//! (`0x7f.1`, `2130706433`) and IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4, Teredo) cannot
//! smuggle a private destination past the policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpClass {
    /// Globally routable.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, fec0::/10.
    Private,
    /// 100.64.0.0/10 (carrier-grade NAT).
    SharedCgnat,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Cloud metadata services (169.254.169.254, fd00:ec2::254).
    Metadata,
    /// fc00::/7.
    UniqueLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// Documentation and benchmarking ranges, 240.0.0.0/4, 192.0.0.0/24, 100::/64, Teredo.
    Reserved,
}

impl IpClass {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared_cgnat",
            Self::LinkLocal => "link_local",
            Self::Metadata => "metadata",
            Self::UniqueLocal => "unique_local",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> IpClass {
    use IpClass::*;
    const TABLE: &[([u8; 4], u32, IpClass)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Reserved),
        ([203, 0, 113, 0], 24, Reserved),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, p, _)| in_v4(ip, *net, *p))
        .map_or(Public, |(_, _, c)| *c)
}

/// The IPv4 address carried inside an IPv6 address, if it is one of the embedding forms.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks); not :: or ::1.
    if s[..6] == [0; 6] && u32::from(low) > 1 {
        return Some(low);
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]) || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) {
        return Some(low);
    }
    // 6to4 2002:AABB:CCDD::/48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    use IpClass::*;
    let s = ip.segments();
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        // SECURITY: an IPv6 spelling of an IPv4 address is whatever that IPv4 address is.
        return classify_v4(v4);
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Metadata;
    }
    match s[0] {
        x if x & 0xffc0 == 0xfe80 => LinkLocal,
        x if x & 0xffc0 == 0xfec0 => Private,
        x if x & 0xfe00 == 0xfc00 => UniqueLocal,
        x if x & 0xff00 == 0xff00 => Multicast,
        // Teredo 2001::/32 tunnels to an obfuscated IPv4 host: never a legitimate destination here.
        0x2001 if s[1] == 0 => Reserved,
        0x2001 if s[1] == 0xdb8 => Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => Reserved,
        _ => Public,
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 peers) compares as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Classify an address.
pub fn classify(ip: IpAddr) -> IpClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Parse IPv4 the way `inet_aton` and browsers do: 1-4 parts, each decimal, octal (leading 0) or hex
/// (0x). Used to recognise numeric hosts like `2130706433` or `0x7f.1` as raw IPs, not names.
pub fn parse_ipv4_lenient(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let n = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if h.is_empty() {
                0
            } else {
                u64::from_str_radix(h, 16).ok()?
            }
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else if p.is_empty() {
            return None;
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, &n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use IpClass::*;

    #[test]
    fn classification_table() {
        let cases: &[(&str, IpClass)] = &[
            ("93.184.216.34", Public),
            ("8.8.8.8", Public),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("169.254.169.254", Metadata),
            ("169.254.1.1", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("224.0.0.1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("198.18.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", Metadata),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("2606:4700::1111", Public),
            // IPv4 embedded in IPv6: classified as the IPv4 address.
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", Metadata),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b:1::a00:1", Private),
            ("2002:a9fe:a9fe::1", Metadata),
            ("2002:0a00:0001::1", Private),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Reserved),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(ip.parse().unwrap()), *want, "{ip}");
        }
    }

    #[test]
    fn lenient_ipv4_spellings() {
        let cases: &[(&str, Option<[u8; 4]>)] = &[
            ("127.0.0.1", Some([127, 0, 0, 1])),
            ("2130706433", Some([127, 0, 0, 1])),
            ("0x7f.1", Some([127, 0, 0, 1])),
            ("0177.0.0.1", Some([127, 0, 0, 1])),
            ("0x7f000001", Some([127, 0, 0, 1])),
            ("169.254.43518", Some([169, 254, 169, 254])),
            ("10.1", Some([10, 0, 0, 1])),
            ("256.1.1.1", None),
            ("1.2.3.4.5", None),
            ("example.com", None),
            ("1..2", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_ipv4_lenient(s), want.map(Ipv4Addr::from), "{s}");
        }
    }
}
