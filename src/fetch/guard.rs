//! Which addresses an upstream fetch may connect to.
//!
//! The check runs on the resolved address right before connecting, so DNS answers, literal IPs in
//! URLs and redirect targets all go through the same test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when `ip` is not a public unicast address: connecting there could reach the proxy's own
/// host, its network or cloud metadata services.
pub(crate) fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || a == 0 // 0.0.0.0/8 "this network"
        || ip.is_loopback()
        || ip.is_private()
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || ip.is_link_local() // 169.254.0.0/16, incl. 169.254.169.254 metadata
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || ip.is_multicast()
        || a >= 240 // 240.0.0.0/4 reserved, incl. 255.255.255.255 broadcast
}

/// IPv6 is checked against an allow-list: only global unicast (2000::/3) is public, minus its
/// special-purpose blocks. Anything new or odd (IPv4-compatible ::/96, discard 100::/64, ULA,
/// link-local, multicast, unassigned space) is refused without having to be named.
fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    match embedded_v4(&seg) {
        Embedded::V4(v4) => return is_forbidden_v4(v4),
        Embedded::Refused => return true,
        Embedded::None => {}
    }
    (seg[0] & 0xe000) != 0x2000 // outside 2000::/3 global unicast
        || (seg[0] == 0x2001 && seg[1] < 0x0200) // 2001::/23 IETF assignments (Teredo, ORCHID…)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32 documentation
        || (seg[0] == 0x3fff && seg[1] < 0x1000) // 3fff::/20 documentation
}

/// What an IPv6 address says about an IPv4 address inside it.
enum Embedded {
    /// The address reaches this IPv4 address, which decides.
    V4(Ipv4Addr),
    /// A translation prefix whose IPv4 part cannot be located: refused whatever it holds.
    Refused,
    None,
}

/// IPv4 addresses carried in IPv6: IPv4-mapped ::ffff:0:0/96, IPv4-translated ::ffff:0:0:0/96,
/// NAT64 64:ff9b::/96 and 6to4 2002::/16. The local-use NAT64 prefix 64:ff9b:1::/48 may hold the
/// IPv4 address at several offsets, so it is refused.
fn embedded_v4(seg: &[u16; 8]) -> Embedded {
    let from = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match seg {
        // `Ipv6Addr::to_ipv4` would also turn ::1 into 0.0.0.1; only these prefixes embed.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            Embedded::V4(from(*hi, *lo))
        }
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Embedded::V4(from(*hi, *lo)),
        [0x0064, 0xff9b, 1, ..] => Embedded::Refused,
        [0x2002, hi, lo, ..] => Embedded::V4(from(*hi, *lo)),
        _ => Embedded::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden(s.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "192.0.0.8",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:db8::1",
            "2001::1",
            // IPv4-translated ::ffff:0:0:0/96
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "::ffff:0:a9fe:a9fe",
            // outside global unicast
            "100::1",
            "4000::1",
            "e000::1",
            "::2",
            "3fff::1",
        ] {
            assert!(forbidden(s), "{s} must be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:0:808:808",
            "2001:4860:4860::8888",
        ] {
            assert!(!forbidden(s), "{s} must be allowed");
        }
    }
}
