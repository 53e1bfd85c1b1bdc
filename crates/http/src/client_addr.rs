//! The client's address, behind the balancers listed in `TRUSTED_PROXIES`.
//!
//! The address is the connection's peer, unless the peer is a trusted proxy:
//! then each trusted proxy has appended the address it saw to
//! `X-Forwarded-For`, and the client is the rightmost entry that is not
//! itself a trusted proxy. Entries to the left of that one were written by
//! the client (or proxies nobody vouches for) and are never believed, so a
//! forged header from an untrusted peer changes nothing.

use std::net::{IpAddr, SocketAddr};

use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpRequest, web};
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs (`10.0.0.0/8`) or addresses
    /// (`192.0.2.7`); empty means no proxy is trusted.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is neither an address nor a CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with these headers.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An entry a trusted proxy wrote is an address; anything else was
            // written further left, by someone nobody vouches for.
            let Some(ip) = parse_hop(hop) else { return client };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443` or `192.0.2.1:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The request's client address ([`client_of`]), for the handlers that
/// need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The client's address of `request`: its peer, or behind the
/// [`TrustedProxies`] of the application's state the address they vouch
/// for (`None` without a peer address, as in some tests). Worked out where
/// it is needed, not for every request.
pub(crate) fn client_of(request: &HttpRequest) -> Option<IpAddr> {
    request.peer_addr().map(|peer| {
        request
            .app_data::<web::Data<crate::state::AppState>>()
            .map_or(peer.ip(), |state| {
                state.trusted_proxies.client_address(peer.ip(), request.headers())
            })
    })
}

impl FromRequest for ClientAddr {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(ClientAddr(client_of(req))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in forwarded {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).expect("header"),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("198.51.100.9"), &headers(&["203.0.113.5"])),
            ip("198.51.100.9")
        );
        let lb = TrustedProxies::parse("10.0.0.0/8").expect("list");
        assert_eq!(
            lb.client_address(ip("198.51.100.9"), &headers(&["203.0.113.5"])),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let lbs = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").expect("list");
        // The client forged "1.1.1.1"; the first balancer appended what it saw.
        let forwarded = headers(&["1.1.1.1, 203.0.113.5", "192.0.2.7"]);
        assert_eq!(lbs.client_address(ip("10.1.2.3"), &forwarded), ip("203.0.113.5"));
        // Only trusted hops: the leftmost is the best we know.
        assert_eq!(
            lbs.client_address(ip("10.1.2.3"), &headers(&["10.9.9.9"])),
            ip("10.9.9.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(lbs.client_address(ip("10.1.2.3"), &headers(&[])), ip("10.1.2.3"));
        // Garbage left of a trusted hop is not believed.
        assert_eq!(
            lbs.client_address(ip("10.1.2.3"), &headers(&["nonsense, 10.4.4.4"])),
            ip("10.4.4.4")
        );
        assert_eq!(
            lbs.client_address(ip("10.1.2.3"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            lbs.client_address("::ffff:10.1.2.3".parse().expect("mapped"), &headers(&["203.0.113.5"])),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn bad_lists_are_refused_with_the_entry() {
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::default()));
        let err = TrustedProxies::parse("10.0.0.0/8, lb.internal").expect_err("not an address");
        assert!(err.contains("lb.internal"), "{err}");
    }
}
