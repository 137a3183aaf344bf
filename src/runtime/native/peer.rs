//! Who a request came from: the TCP peer, or — only when that peer is a trusted reverse proxy
//! (`--trusted-proxy`) — the client address the proxy forwarded.
//!
//! `X-Forwarded-For` is a list each proxy appends its own peer to, so only its right end can be
//! believed: the address is the rightmost entry that is not itself a trusted proxy. Anything a
//! client wrote further left is its own claim. Without trusted proxies (the default) forwarded
//! headers are ignored altogether: a client could otherwise name itself any address.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Parses `--trusted-proxy`: a CIDR (`10.0.0.0/8`) or a single address.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("not an IP address or CIDR: {s:?}"))
}

/// The trusted reverse proxies.
#[derive(Debug, Clone, Default)]
pub struct Proxies(Vec<IpNet>);

impl Proxies {
    /// Trusts `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Proxies(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !hops.is_empty() {
            let mut client = peer;
            for hop in hops.iter().rev() {
                // A hop a trusted proxy wrote that is not an address: believe nothing beyond it.
                let Some(ip) = parse_hop(hop) else {
                    return client;
                };
                client = ip;
                if !self.trusts(ip) {
                    break;
                }
            }
            return client;
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_hop)
            .unwrap_or(peer)
    }
}

/// One forwarded address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let proxies = Proxies::new(vec![parse_cidr("10.0.0.0/8").expect("cidr")]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(proxies.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        assert_eq!(proxies.client(ip("10.1.2.3"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = Proxies::new(vec![parse_cidr("10.0.0.1").expect("cidr")]);
        // The client wrote 1.1.1.1 itself; the proxy appended the address it saw.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7:4444")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        let h = headers(&[("x-real-ip", "203.0.113.8")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h), ip("203.0.113.8"));
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        assert!(parse_cidr("nope").is_err());
    }
}
