//! Which addresses a delivery may connect to. An app's webhook URL is the tenant's input, so a
//! delivery must never become a way into Kiln's own network (SSRF): loopback, private,
//! link-local, CGNAT, unique-local, IPv4-mapped and other non-public ranges are refused unless
//! `KILN_WEBHOOK_ALLOW_NETS` lets them back in.
//!
//! The check is made on the addresses actually dialled: names go through [`FilteringResolver`],
//! so a name that resolves (or re-resolves, between a check and the connect) to 127.0.0.1 is
//! refused too; literal IPs, which reqwest never resolves, are checked by [`check_url`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address on the public internet (not any of the ranges above).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))    // CGNAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0)          // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))      // benchmarking, 198.18.0.0/15
        || (a == 192 && b == 88 && c == 99)        // 6to4 relay anycast (deprecated)
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00                  // unique local, fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80                  // link-local, fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0                  // site-local (deprecated)
        || ip.to_ipv4_mapped().is_some()                     // ::ffff:a.b.c.d
        || segments[..6] == [0, 0, 0, 0, 0, 0]               // IPv4-compatible (deprecated)
        || (segments[0] == 0x64 && segments[1] == 0xff9b)    // NAT64, maps to IPv4
        || segments[0] == 0x2002                             // 6to4, maps to IPv4
        || (segments[0] == 0x2001 && segments[1] == 0)       // Teredo, maps to IPv4
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

/// Whether a delivery may connect to `ip`: public, or inside an allowed network.
pub fn may_reach(ip: IpAddr, allow: &[IpNet]) -> bool {
    is_public(ip) || allow.iter().any(|net| net.contains(&ip))
}

/// Checks a webhook URL before anything is sent: `http` or `https`, a host, and (for a literal
/// IP, which no resolver sees) an address a delivery may reach. Says what is wrong.
pub fn check_url(url: &url::Url, allow: &[IpNet]) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the URL's scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    let ip = match url.host() {
        None => return Err("the URL has no host".into()),
        Some(url::Host::Domain(_)) => return Ok(()),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if may_reach(ip, allow) {
        Ok(())
    } else {
        Err(format!(
            "{ip} is not a public address (allow it with KILN_WEBHOOK_ALLOW_NETS)"
        ))
    }
}

/// The system resolver, keeping only the addresses a delivery may reach; a name left with none
/// fails to resolve, with a message that says why.
#[derive(Debug, Clone)]
pub struct FilteringResolver {
    pub allow: Vec<IpNet>,
}

/// A name that resolved only to addresses a delivery may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to addresses a delivery may not reach: {addresses}")]
pub struct Unreachable {
    pub name: String,
    pub addresses: String,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let (kept, refused): (Vec<_>, Vec<_>) =
                found.into_iter().partition(|a| may_reach(a.ip(), &allow));
            if kept.is_empty() {
                let addresses = refused
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(Unreachable { name, addresses }) as _);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused_and_public_ones_kept() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "192.88.99.1",
        ] {
            let ip: IpAddr = internal.parse().expect(internal);
            assert!(!is_public(ip), "{internal} must be refused");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "100.128.0.1"] {
            let ip: IpAddr = public.parse().expect(public);
            assert!(is_public(ip), "{public} must be allowed");
        }
    }

    #[test]
    fn allowed_networks_let_internal_addresses_back_in() {
        let allow = vec!["127.0.0.0/8".parse().expect("net")];
        assert!(may_reach("127.0.0.1".parse().expect("ip"), &allow));
        assert!(!may_reach("10.0.0.1".parse().expect("ip"), &allow));
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        let check = |url: &str| check_url(&url.parse().expect(url), &[]);
        assert!(check("https://example.com/hook").is_ok());
        assert!(check("http://127.0.0.1:8080/hook").is_err());
        assert!(check("http://[::1]/hook").is_err());
        assert!(check("http://[::ffff:7f00:1]/hook").is_err());
        assert!(check("ftp://example.com/").is_err());
        assert!(check("http://8.8.8.8/").is_ok());
    }

    #[tokio::test]
    async fn a_name_of_loopback_resolves_to_nothing_unless_allowed() {
        let name = || "localhost".parse::<Name>().expect("name");
        let refused = FilteringResolver { allow: vec![] }.resolve(name()).await;
        let error = refused.err().expect("refused").to_string();
        assert!(error.contains("may not reach"), "{error}");
        let allowed = FilteringResolver {
            allow: vec![
                "127.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
        };
        assert!(allowed.resolve(name()).await.is_ok());
    }
}
