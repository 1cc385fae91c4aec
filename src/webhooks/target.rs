//! Which URLs a webhook may point at. Only `http` and `https`, no user info, at most
//! [`URL_CHARS_MAX`] characters. Loopback, private, link-local, carrier-grade NAT,
//! multicast and unspecified addresses are refused (a webhook must not become a way
//! to reach the platform's internal network) unless the server runs with
//! `--webhook-allow-private` (tests, and deployments whose receivers are internal).
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

/// Whether an address may receive webhooks without `--webhook-allow-private`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let cgnat = a == 100 && (64..128).contains(&b);
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || cgnat
        || a == 0)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local)
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
}
