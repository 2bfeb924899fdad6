//! IP restrictions: lists of addresses and CIDR blocks.
//!
//! Length: the type is the first ~145 lines; the rest are its tests and containment properties.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// What an address means (IPv4-mapped as IPv4), for the server and every offline verifier alike.
pub use tokenmint_jwt::ip::canonical;
use tokenmint_jwt::ip::{Networks, parse_net};

use crate::domain::unique::Unique;
use crate::error::{Error, Result, reason};

/// A normalised, de-duplicated list of networks a token may be used from. Empty means "anywhere".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpRestriction {
    /// The networks, matched as every verifier matches them (`tokenmint-jwt`); unreadable
    /// stored or claimed entries make them allow nothing (fail closed, never "anywhere").
    networks: Networks,
    /// The networks as normalised CIDR strings, rendered once: a CreateToken writes them three
    /// times (claim, row, response), and formatting addresses is not cheap.
    rendered: Vec<String>,
}

impl IpRestriction {
    /// Parses addresses (`10.0.0.1` becomes `10.0.0.1/32`) and CIDR blocks (host bits are cleared:
    /// `10.0.0.7/24` becomes `10.0.0.0/24`), keeping the first of equal networks, in time linear
    /// in the number of entries. Every bad entry is reported under `field[i]`.
    pub fn parse(entries: &[String], field: &str) -> Result<Self> {
        let mut nets = Unique::with_capacity(entries.len());
        let mut error: Option<Error> = None;
        for (i, raw) in entries.iter().enumerate() {
            match parse_net(raw.trim()) {
                Some(net) => {
                    nets.push(net);
                }
                None => {
                    let shown = crate::error::truncate(raw, 64);
                    let message = format!("{shown:?} is not an IPv4/IPv6 address or CIDR block");
                    error = Some(match error {
                        None => Error::invalid(
                            format!("{field}[{i}]"),
                            reason::INVALID_IP_ADDRESS,
                            message,
                        )
                        .with_meta("ip", shown),
                        Some(e) => e.with_violation(format!("{field}[{i}]"), message),
                    });
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(Self::of(Networks::new(nets.into_vec()))),
        }
    }

    /// Networks read back from the store or a claim. An entry that does not parse makes the
    /// whole restriction allow nothing (fail closed), never "anywhere".
    pub fn from_trusted<S: AsRef<str>>(entries: &[S]) -> Self {
        let networks = Networks::from_entries(entries);
        if !networks.is_readable() {
            tracing::error!("an IP restriction holds unreadable entries; it allows no address");
        }
        Self::of(networks)
    }

    fn of(networks: Networks) -> Self {
        let rendered = networks.nets().iter().map(ToString::to_string).collect();
        Self { networks, rendered }
    }

    /// Whether no restriction applies.
    pub fn is_unrestricted(&self) -> bool {
        self.networks.is_unrestricted()
    }

    /// Whether the restriction lets in every IPv4 or every IPv6 client: it holds `0.0.0.0/0`,
    /// `::/0`, or an IPv6 network that covers all of `::ffff:0:0/96` (every IPv4 client on a
    /// dual-stack socket). Such a restriction restricts nothing where it matters.
    pub fn is_catch_all(&self) -> bool {
        const MAPPED: ipnet::Ipv6Net =
            ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
        let mapped = MAPPED;
        // Merged first: `0.0.0.0/1` and `128.0.0.0/1` together are `0.0.0.0/0`.
        IpNet::aggregate(&self.networks.nets().to_vec())
            .iter()
            .any(|net| match net {
                IpNet::V4(v4) => v4.prefix_len() == 0,
                IpNet::V6(v6) => v6.prefix_len() == 0 || v6.contains(&mapped),
            })
    }

    /// Whether every stored or claimed entry could be read (always, for a parsed request).
    pub fn is_readable(&self) -> bool {
        self.networks.is_readable()
    }

    /// Whether `addr` is allowed (always, when unrestricted).
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.networks.allows(addr)
    }

    /// Whether every network of `self` lies inside one of `outer`'s.
    ///
    /// Each network is looked up, at each prefix length `outer` uses, among `outer`'s networks
    /// in a hash set: at most 129 lookups per network whatever the sizes, never one comparison
    /// per pair of networks.
    pub fn is_within(&self, outer: &IpRestriction) -> bool {
        if !self.is_readable() {
            return false;
        }
        let outer_nets: HashSet<IpNet> = outer.networks.nets().iter().copied().collect();
        let mut lengths: Vec<(bool, u8)> = outer
            .networks
            .nets()
            .iter()
            .map(|n| (n.addr().is_ipv4(), n.prefix_len()))
            .collect();
        lengths.sort_unstable();
        lengths.dedup();
        self.networks.nets().iter().all(|net| {
            lengths
                .iter()
                .filter(|&&(v4, len)| v4 == net.addr().is_ipv4() && len <= net.prefix_len())
                .any(|&(_, len)| {
                    IpNet::new(net.addr(), len)
                        .is_ok_and(|supernet| outer_nets.contains(&supernet.trunc()))
                })
        })
    }

    /// The normalised CIDR strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.rendered.clone()
    }

    /// The normalised CIDR strings, borrowed.
    pub fn as_strings(&self) -> &[String] {
        &self.rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<IpRestriction> {
        IpRestriction::parse(
            &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "ip_restrict",
        )
    }

    #[test]
    fn normalises_addresses_and_blocks() {
        let r = parse(&["10.0.0.1", "10.1.2.3/16", "2001:db8::1", "10.0.0.1/32"]).unwrap();
        assert_eq!(
            r.to_strings(),
            vec!["10.0.0.1/32", "10.1.0.0/16", "2001:db8::1/128"]
        );
    }

    #[test]
    fn reports_each_bad_entry() {
        let err = parse(&["10.0.0.1", "300.1.1.1", "x"]).unwrap_err();
        assert_eq!(err.reason, reason::INVALID_IP_ADDRESS);
        assert_eq!(err.violations.len(), 2);
        assert_eq!(err.violations[1].field, "ip_restrict[2]");
    }

    #[test]
    fn unreadable_stored_entries_fail_closed() {
        let r = IpRestriction::from_trusted(&["not-an-ip"]);
        assert!(!r.is_unrestricted());
        assert!(!r.allows("10.0.0.1".parse().unwrap()));
        let mixed = IpRestriction::from_trusted(&["10.0.0.0/8", "garbage"]);
        assert!(!mixed.allows("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_networks_are_the_ipv4_networks_they_map() {
        let r = parse(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.7"]).unwrap();
        assert_eq!(r.to_strings(), vec!["10.0.0.0/8", "192.0.2.7/32"]);
        assert!(r.allows("10.1.2.3".parse().unwrap()));
        assert!(r.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!r.allows("11.0.0.1".parse().unwrap()));
        assert!(parse(&["10.1.0.0/16"]).unwrap().is_within(&r));
    }

    #[test]
    fn catch_alls_are_recognised_in_every_spelling() {
        for all in [
            "0.0.0.0/0",
            "::/0",
            "::ffff:0:0/96",
            "::/64",
            "10.0.0.0/8, ::/0",
        ] {
            let entries: Vec<&str> = all.split(", ").collect();
            assert!(parse(&entries).unwrap().is_catch_all(), "{all}");
        }
        for halves in [
            ["0.0.0.0/1", "128.0.0.0/1"],
            ["::ffff:0:0/97", "::ffff:128.0.0.0/97"],
            ["::/1", "8000::/1"],
        ] {
            assert!(parse(&halves).unwrap().is_catch_all(), "{halves:?}");
        }
        for narrow in [
            "0.0.0.0/1",
            "10.0.0.0/8",
            "2001:db8::/32",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(!parse(&[narrow]).unwrap().is_catch_all(), "{narrow}");
        }
    }

    #[test]
    fn allows_and_containment() {
        let r = parse(&["10.0.0.0/8"]).unwrap();
        assert!(r.allows("10.9.9.9".parse().unwrap()));
        assert!(r.allows("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!r.allows("11.0.0.1".parse().unwrap()));
        assert!(parse(&["10.1.0.0/16"]).unwrap().is_within(&r));
        assert!(!parse(&["11.0.0.0/16"]).unwrap().is_within(&r));
    }

    #[test]
    fn containment_matches_the_pairwise_definition() {
        let outer = parse(&[
            "10.0.0.0/8",
            "192.0.2.0/24",
            "2001:db8::/32",
            "198.51.100.7",
        ])
        .unwrap();
        let cases = [
            ("10.1.2.3", true),
            ("10.0.0.0/8", true),
            ("10.0.0.0/7", false),
            ("192.0.2.128/25", true),
            ("192.0.3.0/24", false),
            ("198.51.100.7/32", true),
            ("198.51.100.6", false),
            ("2001:db8:1::/48", true),
            ("2001:db9::/32", false),
            ("::ffff:10.9.9.9", true),
            ("::/0", false),
            ("0.0.0.0/0", false),
        ];
        for (inner, expected) in cases {
            let inner = parse(&[inner]).unwrap();
            let pairwise = inner
                .networks
                .nets()
                .iter()
                .all(|n| outer.networks.nets().iter().any(|o| o.contains(n)));
            assert_eq!(pairwise, expected, "{inner:?}");
            assert_eq!(inner.is_within(&outer), expected, "{inner:?}");
        }
        assert!(
            IpRestriction::default().is_within(&outer),
            "nothing lies anywhere"
        );
        assert!(
            !parse(&["10.0.0.1"])
                .unwrap()
                .is_within(&IpRestriction::default())
        );
    }

    /// De-duplication keeps the first of equal networks (after normalisation) in request order,
    /// and still reports every bad entry at its own index.
    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        let r = parse(&[
            "192.0.2.9/24",
            "10.0.0.1",
            "192.0.2.0/24",
            "10.0.0.1/32",
            "::1",
        ])
        .unwrap();
        assert_eq!(r.to_strings(), ["192.0.2.0/24", "10.0.0.1/32", "::1/128"]);
        let err = parse(&["10.0.0.1", "10.0.0.1", "bad", "10.0.0.1", "worse"]).unwrap_err();
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["ip_restrict[2]", "ip_restrict[4]"]);
    }

    /// Called without the request cap, 100k distinct /32s (and a repeat of each) parse to the
    /// 100k networks in order: the de-duplication is a hash set (`Unique`, whose own test counts
    /// its comparisons), not a scan of the networks kept so far.
    #[test]
    fn a_hundred_thousand_distinct_hosts_parse_in_order() {
        let hosts: Vec<String> = (0..100_000u32)
            .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string())
            .collect();
        let mut entries = hosts.clone();
        entries.extend(hosts.iter().rev().cloned());
        let r = IpRestriction::parse(&entries, "ip_restrict").unwrap();
        assert_eq!(r.as_strings().len(), hosts.len());
        assert_eq!(r.as_strings()[0], "10.0.0.0/32");
        assert_eq!(r.as_strings()[99_999], format!("{}/32", hosts[99_999]));
        assert!(r.is_within(&parse(&["10.0.0.0/8"]).unwrap()));
        assert!(r.is_within(&r), "a large set lies within itself");
    }
}

/// Containment checked against a naive reference: every address and network as a `u128` with a
/// prefix length, compared bit by bit under a mask.
#[cfg(test)]
mod properties {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// A network as the reference sees it: IPv4 (32 bits) or IPv6 (128), address and prefix.
    #[derive(Debug, Clone, Copy)]
    struct RefNet {
        v4: bool,
        addr: u128,
        prefix: u32,
    }

    /// An address or network as written in a request, and its reference meaning. IPv4-mapped
    /// IPv6 networks (`::ffff:a.b.c.d/n`, n ≥ 96) mean the IPv4 network `a.b.c.d/(n-96)`, as
    /// IPv4-mapped addresses mean their IPv4 address (issue 20, item 6).
    fn reference(text: &str) -> RefNet {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().unwrap(),
                Some(p.parse::<u32>().unwrap()),
            ),
            None => (text.parse::<IpAddr>().unwrap(), None),
        };
        match addr {
            IpAddr::V4(v4) => RefNet {
                v4: true,
                addr: u128::from(u32::from(v4)),
                prefix: prefix.unwrap_or(32),
            },
            IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                match v6.to_ipv4_mapped() {
                    Some(v4) if prefix >= 96 => RefNet {
                        v4: true,
                        addr: u128::from(u32::from(v4)),
                        prefix: prefix - 96,
                    },
                    _ => RefNet {
                        v4: false,
                        addr: u128::from(v6),
                        prefix,
                    },
                }
            }
        }
    }

    /// Whether `inner` lies inside `outer`: same family, no shorter prefix, equal leading bits.
    fn ref_contains(outer: RefNet, inner: RefNet) -> bool {
        let bits = if outer.v4 { 32 } else { 128 };
        let shift = bits - outer.prefix;
        outer.v4 == inner.v4
            && inner.prefix >= outer.prefix
            && (shift >= 128 || (outer.addr >> shift) == (inner.addr >> shift))
    }

    fn ref_allows(nets: &[RefNet], addr: IpAddr) -> bool {
        let host = reference(&addr.to_string());
        nets.is_empty() || nets.iter().any(|&n| ref_contains(n, host))
    }

    fn ref_within(inner: &[RefNet], outer: &[RefNet]) -> bool {
        inner
            .iter()
            .all(|&i| outer.iter().any(|&o| ref_contains(o, i)))
    }

    /// IPv4 addresses near a few bases, so that generated networks often overlap.
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        let bases = prop_oneof![
            Just(0x0a00_0000u32),
            Just(0xc0a8_0000),
            Just(0),
            Just(u32::MAX)
        ];
        (bases, any::<u16>(), 0..3u32)
            .prop_map(|(base, low, spread)| Ipv4Addr::from(base ^ (u32::from(low) << (spread * 8))))
    }

    fn v6() -> impl Strategy<Value = Ipv6Addr> {
        let bases = prop_oneof![
            Just(0x2001_0db8u128 << 96),
            Just(0u128),
            Just(u128::MAX),
            Just(0xfe80u128 << 112),
        ];
        (bases, any::<u32>(), 0..4u32)
            .prop_map(|(base, low, spread)| {
                Ipv6Addr::from(base ^ (u128::from(low) << (spread * 24)))
            })
            // IPv4-mapped ones are generated on purpose only (`entry(true)`).
            .prop_filter("not IPv4-mapped", |a| a.to_ipv4_mapped().is_none())
    }

    /// An address or CIDR block written as a request would: IPv4, IPv6, or (when `mapped`)
    /// IPv4-mapped IPv6, with or without a prefix.
    fn entry(mapped: bool) -> BoxedStrategy<String> {
        let v4_entry = (v4(), proptest::option::of(0..=32u8)).prop_map(|(a, p)| match p {
            Some(p) => format!("{a}/{p}"),
            None => a.to_string(),
        });
        let v6_entry = (v6(), proptest::option::of(0..=128u8)).prop_map(|(a, p)| match p {
            Some(p) => format!("{a}/{p}"),
            None => a.to_string(),
        });
        if !mapped {
            return prop_oneof![v4_entry, v6_entry].boxed();
        }
        let mapped = (v4(), proptest::option::of(96..=128u8)).prop_map(|(a, p)| {
            let a = a.to_ipv6_mapped();
            match p {
                Some(p) => format!("{a}/{p}"),
                None => a.to_string(),
            }
        });
        prop_oneof![v4_entry, v6_entry, mapped].boxed()
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            v4().prop_map(IpAddr::V4),
            v6().prop_map(IpAddr::V6),
            v4().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
        ]
    }

    fn restriction(entries: &[String]) -> IpRestriction {
        IpRestriction::parse(entries, "ip_restrict").expect("generated entries are valid")
    }

    fn references(entries: &[String]) -> Vec<RefNet> {
        entries.iter().map(|e| reference(e)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn allows_matches_the_reference(
            entries in vec(entry(false), 0..5),
            addr in address(),
        ) {
            prop_assert_eq!(
                restriction(&entries).allows(addr),
                ref_allows(&references(&entries), addr),
                "{:?} from {}", entries, addr
            );
        }

        #[test]
        fn is_within_matches_the_reference(
            inner in vec(entry(false), 0..4),
            outer in vec(entry(false), 0..4),
        ) {
            prop_assert_eq!(
                restriction(&inner).is_within(&restriction(&outer)),
                ref_within(&references(&inner), &references(&outer)),
                "{:?} within {:?}", inner, outer
            );
        }

        #[test]
        fn a_network_within_another_allows_no_address_the_other_refuses(
            inner in vec(entry(false), 1..4),
            outer in vec(entry(false), 1..4),
            addr in address(),
        ) {
            let (inner, outer) = (restriction(&inner), restriction(&outer));
            if inner.is_within(&outer) && inner.allows(addr) {
                prop_assert!(outer.allows(addr));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// IPv4-mapped IPv6 networks mean their IPv4 network, as in `tokenmint-verify`.
        #[test]
        fn mapped_networks_mean_their_ipv4_network(
            entries in vec(entry(true), 0..5),
            addr in address(),
            outer in vec(entry(true), 0..4),
        ) {
            prop_assert_eq!(
                restriction(&entries).allows(addr),
                ref_allows(&references(&entries), addr),
                "{:?} from {}", entries, addr
            );
            prop_assert_eq!(
                restriction(&entries).is_within(&restriction(&outer)),
                ref_within(&references(&entries), &references(&outer)),
                "{:?} within {:?}", entries, outer
            );
        }
    }
}
