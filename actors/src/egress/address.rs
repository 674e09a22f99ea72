//! Classification of IP addresses: which ones an outbound request to a tenant URL may
//! reach. Everything that is not globally routable unicast is refused, including IPv4
//! addresses hidden inside IPv6 forms (mapped, compatible, translated, NAT64, 6to4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 networks that are not public: (network, prefix length).
const V4_BLOCKED: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // carrier-grade NAT
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata 169.254.169.254)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, including broadcast 255.255.255.255
];

/// IPv6 networks that are not public (after the embedded-IPv4 forms are handled):
/// (network, prefix length).
const V6_BLOCKED: &[(u128, u32)] = &[
    (0, 128),                                        // unspecified ::
    (1, 128),                                        // loopback ::1
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48), // local-use NAT64
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // discard-only
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32), // Teredo
    (0x2001_0002_0000_0000_0000_0000_0000_0000, 48), // benchmarking
    (0x2001_0010_0000_0000_0000_0000_0000_0000, 28), // ORCHID
    (0x2001_0020_0000_0000_0000_0000_0000_0000, 28), // ORCHIDv2
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // documentation
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // unique-local (incl. fd00:ec2::254)
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // link-local
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10), // site-local (deprecated)
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),  // multicast
];

/// Whether an outbound request may connect to `ip`: true only for globally routable
/// unicast addresses. Refuses loopback, private, CGNAT, link-local (with the cloud metadata
/// addresses), "this network", multicast, broadcast, documentation and benchmarking ranges,
/// IPv6 unspecified, unique-local, link-local, site-local and multicast, and IPv6 forms that
/// embed a non-public IPv4 address (`::ffff:0:0/96`, `::/96`, `::ffff:0:0:0/96`,
/// `64:ff9b::/96`, `2002::/16`).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    !V4_BLOCKED.iter().any(|(net, bits)| {
        let mask = u32::MAX << (32 - bits);
        n & mask == u32::from_be_bytes(*net) & mask
    })
}

fn v6_in(n: u128, net: u128, bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    n & mask == net & mask
}

fn v6_public(ip: Ipv6Addr) -> bool {
    let n = u128::from(ip);
    if n == 0 || n == 1 {
        return false;
    }
    if let Some(v4) = embedded_v4(n) {
        return v4_public(v4);
    }
    !V6_BLOCKED.iter().any(|(net, bits)| v6_in(n, *net, *bits))
}

/// The IPv4 address an IPv6 address stands for, in the forms a stack may route to it.
fn embedded_v4(n: u128) -> Option<Ipv4Addr> {
    let low32 = Ipv4Addr::from((n & 0xffff_ffff) as u32);
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (translated),
    // 64:ff9b::a.b.c.d (NAT64 well-known prefix).
    let is_mapped = v6_in(n, 0x0000_0000_0000_0000_0000_ffff_0000_0000, 96);
    let is_compatible = v6_in(n, 0, 96);
    let is_translated = v6_in(n, 0x0000_0000_0000_0000_ffff_0000_0000_0000, 96);
    let is_nat64 = v6_in(n, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96);
    if is_mapped || is_compatible || is_translated || is_nat64 {
        return Some(low32);
    }
    // 2002:AABB:CCDD::/48 (6to4) embeds AA.BB.CC.DD.
    if v6_in(n, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return Some(Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn classifies_every_special_range() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.168.255.255",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::ffff:0:192.168.1.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "3fff::1",
            "fc00::1",
            "fd00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ];
        for s in refused {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:81b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for s in allowed {
            assert!(is_public(ip(s)), "{s} must be allowed");
        }
    }

    proptest! {
        #[test]
        fn embedded_v4_agrees_with_v4(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            let expected = is_public(IpAddr::V4(v4));
            prop_assert_eq!(is_public(IpAddr::V6(v4.to_ipv6_mapped())), expected);
            let nat64 = Ipv6Addr::from(0x0064_ff9b_0000_0000_0000_0000_0000_0000u128 | u128::from(raw));
            prop_assert_eq!(is_public(IpAddr::V6(nat64)), expected);
            let six_to_four = Ipv6Addr::from(
                0x2002_0000_0000_0000_0000_0000_0000_0000u128 | (u128::from(raw) << 80),
            );
            prop_assert_eq!(is_public(IpAddr::V6(six_to_four)), expected);
            if raw > 1 {
                prop_assert_eq!(is_public(IpAddr::V6(v4.to_ipv6_compatible())), expected);
            }
        }
    }
}
