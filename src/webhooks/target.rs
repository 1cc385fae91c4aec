//! Which URLs a webhook may point at. Only `http` and `https`, no user info, at most
//! [`URL_CHARS_MAX`] characters. Every address that is not public unicast (loopback,
//! private, link-local, carrier-grade NAT, benchmarking, documentation, multicast,
//! reserved, unspecified — [`V4_REFUSED`], [`V6_REFUSED`]) is refused, and so is an
//! IPv6 address carrying such an IPv4 address (mapped, NAT64, 6to4; Teredo always): a
//! webhook must not become a way to reach the platform's internal network. An operator
//! can allow them with `--webhook-allow-private` (tests, and deployments whose
//! receivers are internal).
//!
//! The check runs twice: on registration for a literal address or `localhost`, and on
//! every delivery attempt on the addresses the host name resolves to; the attempt then
//! connects to the checked address itself, so a DNS answer cannot switch the target
//! between the check and the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use awc::http::Uri;

/// Longest webhook URL.
pub const URL_CHARS_MAX: usize = 2048;

/// A parsed, checked webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub uri: Uri,
    pub host: String,
    pub port: u16,
}

/// Parses a URL as a webhook target; the error says what is wrong.
pub fn parse(url: &str) -> Result<Target, String> {
    if url.is_empty() || url.len() > URL_CHARS_MAX {
        return Err(format!("must be 1..={URL_CHARS_MAX} characters"));
    }
    let uri: Uri = url.parse().map_err(|e| format!("is not a valid URL: {e}"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err("must be an http:// or https:// URL".into()),
    };
    let authority = uri.authority().ok_or("must name a host")?;
    if authority.as_str().contains('@') {
        return Err("must not contain user info (user:password@); authenticate with the signature".into());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if host.is_empty() {
        return Err("must name a host".into());
    }
    let port = authority.port_u16().unwrap_or(default_port);
    Ok(Target { uri, host, port })
}

/// IPv4 blocks that are not public unicast (IANA special-purpose registry, RFC 6890
/// and successors): refused as webhook targets.
const V4_REFUSED: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, broadcast
];

/// IPv6 blocks that are not public unicast. IPv4-mapped, NAT64 (64:ff9b::/96) and
/// 6to4 (2002::/16) addresses are judged by the IPv4 address inside them instead.
const V6_REFUSED: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, IPv4-compatible (deprecated)
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use IPv4/IPv6 translation
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32), // Teredo (carries an IPv4 address, obscured)
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48), // benchmarking
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28), // ORCHID
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28), // ORCHIDv2
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The IPv4 address an IPv6 address reaches: IPv4-mapped (`::ffff:a.b.c.d`), NAT64
/// well-known prefix (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(ip, (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)) {
        return Some(Ipv4Addr::from(bits as u32));
    }
    if in_v6(ip, (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16)) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// Whether an address may receive webhooks without `--webhook-allow-private`: a public
/// unicast address, and for an IPv6 address that carries an IPv4 one, a public IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => !V6_REFUSED.iter().any(|b| in_v6(v6, *b)),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !V4_REFUSED.iter().any(|b| in_v4(ip, *b))
}

/// The registration check: literal addresses and `localhost` are judged at once (a
/// host name is judged on each delivery, when it is resolved).
pub fn check_registration(url: &str, allow_private: bool) -> Result<Target, String> {
    let t = parse(url)?;
    if allow_private {
        return Ok(t);
    }
    let refused = match t.host.parse::<IpAddr>() {
        Ok(ip) => !is_public(ip),
        Err(_) => t.host == "localhost" || t.host.ends_with(".localhost"),
    };
    if refused {
        return Err(
            "points at a loopback or private address, which this server refuses (an operator can allow it with --webhook-allow-private)"
                .into(),
        );
    }
    Ok(t)
}

/// Resolves the target and returns the address to connect to: the first one allowed.
pub async fn resolve(t: &Target, allow_private: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = match t.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, t.port)],
        Err(_) => {
            tokio::net::lookup_host((t.host.as_str(), t.port)).await.map_err(|e| format!("cannot resolve {}: {e}", t.host))?.collect()
        }
    };
    addrs
        .iter()
        .find(|a| allow_private || is_public(a.ip()))
        .copied()
        .ok_or_else(|| format!("{} resolves only to loopback or private addresses, which this server refuses", t.host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_without_user_info() {
        assert_eq!(parse("https://example.com/hook").unwrap().port, 443);
        assert_eq!(parse("http://example.com:8080/x?y=1").unwrap().port, 8080);
        for bad in ["ftp://example.com/", "example.com/hook", "http://user:pw@example.com/", "http:///x", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!("https://example.com/{}", "a".repeat(URL_CHARS_MAX))).is_err());
    }

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://localhost/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://[fd00::1]/",
        ] {
            assert!(check_registration(url, false).is_err(), "{url}");
            assert!(check_registration(url, true).is_ok(), "{url}");
        }
        assert!(check_registration("http://93.184.216.34/", false).is_ok());
        assert!(check_registration("https://hooks.example.com/", false).is_ok());
        assert!(!is_public("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
    }

    /// Every form of address that reaches a non-public IPv4 address, or that is not a
    /// public unicast address itself, beside public ones that must stay allowed.
    const ADDRESSES: &[(&str, bool)] = &[
        // IPv4
        ("93.184.216.34", true),
        ("8.8.8.8", true),
        ("0.1.2.3", false),
        ("10.0.0.1", false),
        ("100.64.0.1", false),
        ("100.127.255.255", false),
        ("100.128.0.1", true),
        ("127.0.0.1", false),
        ("169.254.169.254", false),
        ("172.16.0.1", false),
        ("192.0.0.8", false),
        ("192.0.2.1", false),
        ("192.88.99.1", false),
        ("192.168.1.1", false),
        ("198.18.0.1", false),
        ("198.19.255.255", false),
        ("198.20.0.1", true),
        ("198.51.100.7", false),
        ("203.0.113.9", false),
        ("224.0.0.1", false),
        ("240.0.0.1", false),
        ("255.255.255.255", false),
        // IPv6
        ("2606:4700::1111", true),
        ("2001:4860:4860::8888", true),
        ("::", false),
        ("::1", false),
        ("fe80::1", false),
        ("fc00::1", false),
        ("fd12:3456::1", false),
        ("fec0::1", false),
        ("ff02::1", false),
        ("2001:db8::1", false),
        ("100::1", false),
        ("2001:2::1", false),
        ("2001:20::1", false),
        // IPv4 inside IPv6: mapped, compatible, NAT64, 6to4, Teredo.
        ("::ffff:127.0.0.1", false),
        ("::ffff:169.254.169.254", false),
        ("::ffff:93.184.216.34", true),
        ("::127.0.0.1", false),
        ("::a9fe:a9fe", false),
        ("::93.184.216.34", false),
        ("64:ff9b::a9fe:a9fe", false),
        ("64:ff9b::7f00:1", false),
        ("64:ff9b::5db8:d822", true),
        ("64:ff9b:1::a9fe:a9fe", false),
        ("2002:7f00:1::", false),
        ("2002:a9fe:a9fe::1", false),
        ("2002:c0a8:101::1", false),
        ("2002:5db8:d822::1", true),
        ("2001::1", false),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", false),
    ];

    #[test]
    fn addresses_are_public_only_when_nothing_inside_them_is_private() {
        let wrong: Vec<String> = ADDRESSES
            .iter()
            .filter(|(a, public)| is_public(a.parse().unwrap()) != *public)
            .map(|(a, public)| format!("{a} should be {}", if *public { "public" } else { "refused" }))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
        for (a, public) in ADDRESSES {
            let url = if a.contains(':') { format!("http://[{a}]:8080/hook") } else { format!("http://{a}/hook") };
            assert_eq!(check_registration(&url, false).is_ok(), *public, "{url}");
        }
    }
}
