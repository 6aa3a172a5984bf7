//! The client's address, for limits per address: the socket's peer, or, when that peer is a
//! trusted proxy (`KILN_TRUSTED_PROXIES`: nginx in the compose file), the address it forwarded.
//! `X-Forwarded-For` from anyone else is ignored, since a client can write whatever it likes.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use ipnet::IpNet;

use crate::state::AppState;

/// The client's address; `None` when the connection's peer is unknown (in-process tests).
pub fn address(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()?
        .0
        .ip()
        .to_canonical();
    Some(forwarded_for(peer, &parts.headers, trusted))
}

/// Walks `X-Forwarded-For` from the right, past trusted proxies: each proxy appends the address
/// it received from, so the first untrusted address is the one no proxy of ours vouches past.
fn forwarded_for(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Garbage: trust nothing further left.
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// The client's address as an extractor, for handlers that authenticate by themselves.
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(address(parts, &state.config.limits.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn with_xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = kiln_core::config::parse_networks("10.0.0.0/8").expect("nets");
        let headers = with_xff(&["1.2.3.4"]);
        assert_eq!(
            forwarded_for(ip("5.6.7.8"), &headers, &trusted),
            ip("5.6.7.8")
        );
    }

    #[test]
    fn a_trusted_proxy_is_looked_past_to_the_first_untrusted_hop() {
        let trusted = kiln_core::config::parse_networks("10.0.0.0/8").expect("nets");
        // The client forged the first entry; nginx appended the real one.
        let headers = with_xff(&["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(
            forwarded_for(ip("10.0.0.1"), &headers, &trusted),
            ip("1.2.3.4")
        );
        let none = HeaderMap::new();
        assert_eq!(
            forwarded_for(ip("10.0.0.1"), &none, &trusted),
            ip("10.0.0.1")
        );
        let garbage = with_xff(&["nonsense"]);
        assert_eq!(
            forwarded_for(ip("10.0.0.1"), &garbage, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_plain_ipv4() {
        let headers = with_xff(&["::ffff:1.2.3.4"]);
        let trusted = kiln_core::config::parse_networks("127.0.0.1").expect("nets");
        assert_eq!(
            forwarded_for(ip("127.0.0.1"), &headers, &trusted),
            ip("1.2.3.4")
        );
    }
}
