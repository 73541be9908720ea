//! The SSRF guard of webhook deliveries: which addresses the host connects
//! to. By default only public unicast addresses; the operator may allow
//! private ones (`--webhook-allow-private`) or some ranges
//! (`--webhook-allow-cidr`).
//!
//! Refused unless allowed: IPv4 private (10/8, 172.16/12, 192.168/16),
//! loopback (127/8), link-local (169.254/16), shared address space
//! (100.64/10), unspecified and "this network" (0/8), multicast (224/4),
//! reserved and broadcast (240/4), the benchmarking (198.18/15) and
//! documentation ranges; IPv6 loopback, unspecified, unique-local
//! (fc00::/7), link-local (fe80::/10), site-local (fec0::/10), multicast
//! (ff00::/8), documentation (2001:db8::/32), and every address that embeds
//! an IPv4 one (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`), which could
//! otherwise reach a private IPv4 host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range of addresses, e.g. `10.1.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix` (a bare address is a single-host range).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Cidr::parse(text)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Which addresses and schemes webhook deliveries may use.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Every address is allowed, private and loopback included.
    pub allow_private: bool,
    /// These ranges are allowed even though they are not public.
    pub allow_cidrs: Vec<Cidr>,
    /// `http://` URLs are accepted (otherwise only `https://`).
    pub allow_http: bool,
}

impl NetworkPolicy {
    /// Whether the host may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.allow_cidrs.iter().any(|c| c.contains(ip))
    }
}

/// Whether `ip` is a public unicast address (see the module comment for
/// what is not).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0);
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let refused = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
        || s[..5] == [0, 0, 0, 0, 0]
        // NAT64, 6to4 and Teredo embed IPv4 addresses.
        || (s[0] == 0x0064 && s[1] == 0xff9b)
        || s[0] == 0x2002
        || (s[0] == 0x2001 && s[1] == 0);
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_loopback_and_special_addresses_are_not_public() {
        for refused in [
            "127.0.0.1",
            "127.255.1.2",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(refused)), "{refused} counted as public");
            assert!(!NetworkPolicy::default().allows(ip(refused)), "{refused}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(is_public(ip(public)), "{public} refused");
        }
    }

    #[test]
    fn the_operator_can_allow_private_addresses_or_ranges() {
        let all = NetworkPolicy {
            allow_private: true,
            ..NetworkPolicy::default()
        };
        assert!(all.allows(ip("127.0.0.1")));
        let some = NetworkPolicy {
            allow_cidrs: vec![
                Cidr::parse("10.1.0.0/16").unwrap(),
                Cidr::parse("::1").unwrap(),
            ],
            ..NetworkPolicy::default()
        };
        assert!(some.allows(ip("10.1.200.3")));
        assert!(!some.allows(ip("10.2.0.1")));
        assert!(some.allows(ip("::1")));
        assert!(!some.allows(ip("127.0.0.1")));
    }

    #[test]
    fn cidrs_parse_and_match_partial_bytes() {
        let c = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(c.contains(ip("172.31.1.1")));
        assert!(!c.contains(ip("172.32.0.0")));
        assert!(!c.contains(ip("::ffff:172.16.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("9.9.9.9")));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "banana", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
