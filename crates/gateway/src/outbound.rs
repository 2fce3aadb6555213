//! Where webhooks may go: public addresses only, unless `LIPA_WEBHOOK_ALLOW_PRIVATE=true`.
//!
//! A merchant (or anyone holding an API key) names a payment's `webhook_url`, and the gateway
//! POSTs signed events there and records the start of the answer. Without this rule that is a
//! way into the gateway's own network: loopback services, the cloud's metadata address, the
//! database. So a URL whose host is such an address is refused when it is given, and every
//! delivery resolves the host through [`PublicOnly`], which drops every address that is not
//! public: the check is on the address actually connected to, so a name that resolves to
//! 127.0.0.1 is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is an address on the public internet: not loopback, unspecified, private,
/// shared (carrier-grade NAT), link-local, multicast, broadcast, reserved or documentation
/// space, in IPv4 or IPv6 (IPv4 inside IPv6 judged as IPv4).
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
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking, RFC 2544
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits, 6to4 (2002::/16) in
    // the 32 after its first 16.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64, RFC 8215
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// Refuses a webhook URL whose host is, by its text alone, not a public address: an IP
/// literal that is not public, or `localhost`. A name is judged when it is resolved, at each
/// delivery (see [`PublicOnly`]). `Ok` when private addresses are allowed.
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let refused = match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public_v4(ip),
        Some(url::Host::Ipv6(ip)) => !is_public_v6(ip),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => true,
    };
    if refused {
        return Err(format!("{} is not a public address: {PRIVATE_HINT}", url.host_str().unwrap_or("the host")));
    }
    Ok(())
}

/// What to do about a refused private address.
pub const PRIVATE_HINT: &str = "webhooks go to public addresses only (set LIPA_WEBHOOK_ALLOW_PRIVATE=true to allow private ones, for local development)";

/// A resolver for the webhook client that keeps only public addresses; a name with none
/// left fails to resolve, naming what it resolved to.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let seen: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!("{host} resolves to {} only: {PRIVATE_HINT}", seen.join(", ")).into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["196.201.214.200", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_naming_internal_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8000/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9000/",
            "http://api.localhost./",
            "http://0x7f000001/",
            "http://2130706433/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            let refused = check_url(&parsed, false).unwrap_err();
            assert!(refused.contains("LIPA_WEBHOOK_ALLOW_PRIVATE"), "{url}: {refused}");
            assert!(check_url(&parsed, true).is_ok(), "{url}");
        }
        assert!(check_url(&url::Url::parse("https://shop.example.com/hook").unwrap(), false).is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_to_internal_addresses_do_not_resolve() {
        use reqwest::dns::Resolve as _;
        let refused = PublicOnly.resolve("localhost".parse().unwrap()).await.err().unwrap().to_string();
        assert!(refused.contains("127.0.0.1") || refused.contains("::1"), "{refused}");
    }
}
