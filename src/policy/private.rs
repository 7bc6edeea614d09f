//! Which addresses count as private for the DNS-rebinding defence (SPEC §5).
//!
//! "Private" here means "not the public internet": an allowed name must not resolve to
//! something on the user's own machine or network, nor into a reserved or non-routable
//! block that a local network could be using. The blocks come from IANA's IPv4 and IPv6
//! Special-Purpose Address Registries (RFC 6890) and the IPv6 Address Space registry;
//! each one says where it comes from and why it is in or out. An IP/CIDR pattern in
//! `allow` reopens any of them (see [`super::Policy::check_address`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for every address that may reach the user's own machine or network, or a
/// reserved block, rather than the internet: the IPv4 blocks in `PRIVATE_V4`, every
/// IPv6 address outside global unicast 2000::/3 (loopback, unique-local, link-local,
/// multicast, IPv4-compatible, local-use NAT64, …), the IPv6 blocks in `PRIVATE_V6`
/// (Teredo and the other IETF protocol assignments, documentation), and the
/// IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 forms of private IPv4 addresses.
pub fn is_private(ip: IpAddr) -> bool {
    // IPv4-mapped ::ffff:a.b.c.d (RFC 4291 §2.5.5.2) becomes a.b.c.d here, so it is
    // judged exactly as the IPv4 address it reaches.
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

/// IPv4 blocks that are not the public internet (IANA IPv4 Special-Purpose Address
/// Registry unless said otherwise).
///
/// Out, because IANA marks them globally reachable and they are real internet services
/// with nothing local about them: 192.31.196.0/24 AS112-v4 (RFC 7535), 192.52.193.0/24
/// AMT (RFC 7450), 192.175.48.0/24 AS112 direct delegation (RFC 7534).
const PRIVATE_V4: &[(Ipv4Addr, u8)] = &[
    // "This network" (RFC 791 §3.2; 0.0.0.0/32 "this host", RFC 1122): Linux and macOS
    // connect 0.0.0.0 to the local host.
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    // Private-use (RFC 1918).
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // Shared address space (RFC 6598, "CGNAT"): the ISP's side of the user's NAT, and
    // what Tailscale and similar overlays number the user's own devices with.
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    // Loopback (RFC 1122 §3.2.1.3).
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local (RFC 3927), including cloud metadata at 169.254.169.254.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // Private-use (RFC 1918).
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (RFC 6890 §2.1): DS-Lite 192.0.0.0/29 (RFC 7335), the
    // dummy address 192.0.0.8 (RFC 7600), NAT64 discovery 192.0.0.170-171 (RFC 7050),
    // all not globally reachable. The whole /24 is refused, including the two entries
    // IANA marks globally reachable: PCP anycast 192.0.0.9 (RFC 7723) is answered by the
    // user's own router, and TURN anycast 192.0.0.10 (RFC 8155) by whatever relay the
    // local network provides; no web service lives in this block.
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // Documentation TEST-NET-1 (RFC 5737): never routed, free for a LAN to squat on.
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    // Deprecated 6to4 relay anycast (RFC 7526; 192.88.99.2 is 6a44, RFC 6751): reaches
    // whichever relay is nearest, often the user's ISP or own router; no web service.
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    // Private-use (RFC 1918).
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Benchmarking (RFC 2544): not globally reachable; used by labs, and handed out by
    // the fake-IP DNS of local proxy tools for connections to a program on this machine.
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // Documentation TEST-NET-2 (RFC 5737).
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    // Documentation TEST-NET-3 (RFC 5737).
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    // Multicast (RFC 5771, IANA Multicast Address Space registry): never a unicast host.
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved for future use (RFC 1112 §4), including the limited broadcast address
    // 255.255.255.255 (RFC 919, RFC 8190): not routed, so only a local network uses it.
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Global unicast 2000::/3 (RFC 4291 §2.4, IANA IPv6 Address Space registry): the only
/// block IANA allocates to the regional registries, so every public host is in it.
///
/// Everything outside it is private here (one rule rather than a list that misses the
/// next assignment): unspecified ::/128 and loopback ::1/128 (RFC 4291); the deprecated
/// IPv4-compatible ::/96 (RFC 4291 §2.5.5.1, see [`is_private_v6`]); local-use NAT64
/// 64:ff9b:1::/48 (RFC 8215: it translates to whatever IPv4 block the local operator
/// chose, so keygate cannot know where it leads); discard-only 100::/64 (RFC 6666);
/// SRv6 SIDs 5f00::/16 (RFC 9602: segment routing inside one operator's network);
/// unique-local fc00::/7 (RFC 4193); link-local fe80::/10 (RFC 4291); site-local
/// fec0::/10 (deprecated by RFC 3879, still routed locally by some networks); multicast
/// ff00::/8 (RFC 4291); and the rest, reserved by the IETF and unallocated, which a
/// local network could be using. The one exception is the well-known NAT64 prefix
/// 64:ff9b::/96 (RFC 6052), judged by its embedded IPv4 address (see [`embedded_v4`]).
const GLOBAL_UNICAST: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// IPv6 blocks inside global unicast that are not the public internet (IANA IPv6
/// Special-Purpose Address Registry).
///
/// Out: 2002::/16 6to4 (RFC 3056) is judged by its embedded IPv4 address, as NAT64 is
/// (see [`embedded_v4`]); 2620:4f:8000::/48 AS112 direct delegation (RFC 7534) is a
/// globally reachable internet service.
const PRIVATE_V6: &[(Ipv6Addr, u8)] = &[
    // IETF protocol assignments 2001::/23 (RFC 2928), refused whole. It holds Teredo
    // 2001::/32 (RFC 4380), benchmarking 2001:2::/48 (RFC 5180), ORCHID 2001:10::/28
    // (RFC 4843, deprecated), and a few entries IANA marks globally reachable: PCP and
    // TURN anycast 2001:1::1 and 2001:1::2 (RFC 7723, RFC 8155: answered by the local
    // router or relay), AMT 2001:3::/32 (RFC 7450), AS112-v6 2001:4:112::/48 (RFC 7535),
    // ORCHIDv2 2001:20::/28 (RFC 7343) and DETs 2001:30::/28 (RFC 9374), which are
    // overlay identifiers. None of them is where a web service lives.
    // Teredo in particular is refused rather than judged by its embedded addresses (the
    // server's IPv4 in bits 32-63, the client's XOR 0xffffffff in the last 32 bits): it
    // is obsolete, IANA gives it no global reachability, and a connection to it is
    // tunnelled in UDP through a relay to a host behind the client's NAT, where neither
    // embedded address says what is finally reached.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    // Documentation (RFC 3849): never routed, free for a LAN to squat on.
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    // Documentation (RFC 9637), the larger 2024 block: likewise.
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
];

fn is_private_v4(ip: Ipv4Addr) -> bool {
    PRIVATE_V4
        .iter()
        .any(|&(net, len)| in_block(ip.to_bits().into(), net.to_bits().into(), len, 32))
}

/// IPv4-compatible addresses ::a.b.c.d (the rest of ::/96 besides :: and ::1) are
/// refused whole rather than judged by the IPv4 inside: RFC 4291 deprecated them, no
/// public name should resolve to one, and stacks disagree on what they reach (some send
/// them into an automatic IPv4 tunnel, most nowhere). They fall outside 2000::/3.
fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_private_v4(v4);
    }
    let (global, global_len) = GLOBAL_UNICAST;
    !in_block(ip.to_bits(), global.to_bits(), global_len, 128)
        || PRIVATE_V6
            .iter()
            .any(|&(net, len)| in_block(ip.to_bits(), net.to_bits(), len, 128))
}

/// The IPv4 address inside NAT64 (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16, RFC
/// 3056) addresses: both reach that IPv4 host, so they are exactly as private as it is,
/// and a private one would otherwise be smuggled past the check.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Whether `addr` lies in the block `net`/`len` of a `bits`-wide address family.
fn in_block(addr: u128, net: u128, len: u8, bits: u32) -> bool {
    let host_bits = bits - u32::from(len);
    addr.checked_shr(host_bits).unwrap_or(0) == net.checked_shr(host_bits).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts each address in `private` is private and each in `public` is not.
    fn check(private: &[&str], public: &[&str]) {
        for ip in private {
            assert!(is_private(ip.parse().unwrap()), "{ip} should be private");
        }
        for ip in public {
            assert!(!is_private(ip.parse().unwrap()), "{ip} should be public");
        }
    }

    #[test]
    fn classifies_addresses() {
        let private = [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "ff02::1",
        ];
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ];
        check(&private, &public);
    }

    #[test]
    fn ietf_protocol_assignments_v4_192_0_0_0_24() {
        check(
            &[
                "192.0.0.0",
                "192.0.0.8",
                "192.0.0.9",
                "192.0.0.170",
                "192.0.0.255",
            ],
            &["191.255.255.255", "192.0.1.0"],
        );
    }

    #[test]
    fn documentation_v4_test_nets() {
        check(
            &["192.0.2.1", "198.51.100.0", "198.51.100.255", "203.0.113.7"],
            &[
                "192.0.3.0",
                "198.51.99.255",
                "198.51.101.0",
                "203.0.112.255",
                "203.0.114.0",
            ],
        );
    }

    #[test]
    fn deprecated_6to4_relay_anycast_192_88_99_0_24() {
        check(
            &["192.88.99.1", "192.88.99.2"],
            &["192.88.98.255", "192.88.100.0"],
        );
    }

    #[test]
    fn benchmarking_v4_198_18_0_0_15() {
        check(
            &["198.18.0.1", "198.19.255.255"],
            &["198.17.255.255", "198.20.0.0"],
        );
    }

    #[test]
    fn reserved_v4_240_0_0_0_4() {
        // 239.255.255.255 below is multicast, private too; the next unicast block is public.
        check(
            &["240.0.0.1", "254.1.2.3", "239.255.255.255"],
            &["223.255.255.255"],
        );
    }

    #[test]
    fn globally_reachable_special_v4_blocks_stay_public() {
        check(&[], &["192.31.196.1", "192.52.193.1", "192.175.48.1"]);
    }

    #[test]
    fn ipv4_compatible_block_is_refused_whole() {
        // Even with a public IPv4 inside. The addresses next to ::/96 are outside 2000::/3,
        // so private too; the IPv4-mapped block is judged by its IPv4 address.
        check(
            &[
                "::8.8.8.8",
                "::10.0.0.1",
                "::0.0.0.2",
                "::255.255.255.255",
                "::1:0:0",
            ],
            &["::ffff:8.8.8.8"],
        );
    }

    #[test]
    fn local_use_nat64_is_refused_whole() {
        // Just below is the well-known prefix 64:ff9b::/96, judged by its IPv4 address.
        check(
            &[
                "64:ff9b:1::808:808",
                "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
                "64:ff9b:2::",
            ],
            &["64:ff9b::808:808"],
        );
    }

    #[test]
    fn teredo_is_refused_whole() {
        // RFC 4380's example (server 65.54.227.120, client 192.0.2.45), and a Teredo address
        // whose server 8.8.8.8 and deobfuscated client 1.1.1.1 are both public.
        check(
            &[
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "2001:0:808:808::fefe:fefe",
                "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        );
    }

    #[test]
    fn ietf_protocol_assignments_v6_2001_23() {
        check(
            &[
                "2001:1::1",
                "2001:2::1",
                "2001:3::1",
                "2001:4:112::1",
                "2001:10::1",
                "2001:20::1",
                "2001:30::1",
                "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            &["2001:200::1", "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        );
    }

    #[test]
    fn documentation_v6_2001_db8_32() {
        check(
            &["2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"],
            &["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"],
        );
    }

    #[test]
    fn documentation_v6_3fff_20() {
        check(
            &["3fff::1", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"],
            &["3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "3fff:1000::"],
        );
    }

    #[test]
    fn globally_reachable_special_v6_block_stays_public() {
        check(&[], &["2620:4f:8000::1"]);
    }

    #[test]
    fn discard_only_100_64() {
        // Its neighbours are outside 2000::/3, so private too.
        check(&["100::", "100::ffff:ffff:ffff:ffff", "100:0:0:1::1"], &[]);
    }

    #[test]
    fn srv6_sids_5f00_16() {
        check(&["5f00::1", "5f00:ffff::1"], &[]);
    }

    #[test]
    fn everything_outside_global_unicast_2000_3_is_private() {
        check(
            &[
                "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "4000::",
                "8000::1",
                "e000::1",
                "fe00::1",
            ],
            &["2000::", "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        );
    }
}
