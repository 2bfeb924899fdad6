//! IP restrictions as tokens carry them (the `ips` claim): what an entry means and which client
//! addresses a list of entries lets in. One meaning for the server and every offline verifier,
//! IPv4-mapped IPv6 networks included.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses one entry as a network: an address is its host route (`10.0.0.1` is `10.0.0.1/32`),
/// a CIDR block loses its host bits (`10.0.0.7/24` is `10.0.0.0/24`), and an IPv4-mapped IPv6
/// network is the IPv4 network it maps (`::ffff:10.0.0.0/104` is `10.0.0.0/8`): clients on
/// dual-stack sockets are matched as IPv4 (see [`canonical`]), so that is what such a network
/// means. `None` when the entry is neither an address nor a CIDR block.
pub fn parse_net(raw: &str) -> Option<IpNet> {
    if let Ok(net) = raw.parse::<IpNet>() {
        return Some(canonical_net(net.trunc()));
    }
    raw.parse::<IpAddr>()
        .ok()
        .map(|addr| IpNet::from(canonical(addr)))
}

/// An IPv6 network inside `::ffff:0:0/96` as the IPv4 network it maps; any other network as is.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as dual-stack sockets report IPv4 peers) as
/// its IPv4 address; any other address as is.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The networks of an `ips` claim (or a stored restriction), parsed for matching. No networks
/// means unrestricted; an entry that cannot be read makes the whole list allow nothing (fail
/// closed: a restriction must never turn into "anywhere" because part of it is unreadable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    nets: Vec<IpNet>,
    unreadable: bool,
}

impl Networks {
    /// Already-parsed networks (each as [`parse_net`] returns it).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self {
            nets,
            unreadable: false,
        }
    }

    /// Parses entries written by tokenmint (a claim, a stored row).
    pub fn from_entries<S: AsRef<str>>(entries: &[S]) -> Self {
        let nets: Vec<IpNet> = entries
            .iter()
            .filter_map(|entry| parse_net(entry.as_ref()))
            .collect();
        let unreadable = nets.len() != entries.len();
        Self { nets, unreadable }
    }

    /// The networks that could be read.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether every entry could be read.
    pub fn is_readable(&self) -> bool {
        !self.unreadable
    }

    /// Whether no restriction applies: no entries at all.
    pub fn is_unrestricted(&self) -> bool {
        self.nets.is_empty() && !self.unreadable
    }

    /// Whether a client at `addr` may use the token: always when unrestricted, never when an
    /// entry is unreadable, otherwise when `addr` (IPv4-mapped counted as IPv4) lies in one of
    /// the networks.
    pub fn allows(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        !self.unreadable && (self.nets.is_empty() || self.nets.iter().any(|n| n.contains(&addr)))
    }

    /// [`allows`](Self::allows) for a client whose address may be unknown: an unknown address
    /// passes only an unrestricted list.
    pub fn allows_client(&self, addr: Option<IpAddr>) -> bool {
        match addr {
            Some(addr) => self.allows(addr),
            None => self.is_unrestricted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_are_normalised() {
        for (entry, net) in [
            ("10.0.0.1", "10.0.0.1/32"),
            ("10.0.0.7/24", "10.0.0.0/24"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.0.2.7", "192.0.2.7/32"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ] {
            assert_eq!(
                parse_net(entry).map(|n| n.to_string()),
                Some(net.to_owned()),
                "{entry}"
            );
        }
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "",
            "::/129",
            "300.1.1.1",
        ] {
            assert_eq!(parse_net(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn allows_addresses_inside_the_networks_only() {
        let n = Networks::from_entries(&["10.0.0.0/8", "2001:db8::1/128"]);
        assert!(n.allows(ip("10.9.9.9")));
        assert!(n.allows(ip("::ffff:10.1.1.1")), "IPv4-mapped is IPv4");
        assert!(n.allows(ip("2001:db8::1")));
        assert!(!n.allows(ip("11.0.0.1")));
        assert!(!n.allows(ip("2001:db8::2")));
        assert!(
            !n.allows_client(None),
            "an unknown address never passes a restriction"
        );
    }

    #[test]
    fn unrestricted_allows_anything_and_unreadable_allows_nothing() {
        let none: [&str; 0] = [];
        for open in [
            Networks::from_entries(&none),
            Networks::new(vec![]),
            Networks::default(),
        ] {
            assert!(open.is_unrestricted() && open.allows(ip("8.8.8.8")));
            assert!(open.allows_client(None));
        }
        for entries in [&["garbage"][..], &["10.0.0.0/8", "garbage"][..]] {
            let n = Networks::from_entries(entries);
            assert!(!n.is_unrestricted() && !n.is_readable());
            assert!(!n.allows(ip("10.0.0.1")), "{entries:?}");
        }
    }

    proptest! {
        /// Containment against a reference: the address's top `prefix` bits equal the network's.
        #[test]
        fn v4_containment_matches_the_bits(net in any::<u32>(), prefix in 0u8..=32, addr in any::<u32>()) {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let entry = format!("{}/{prefix}", std::net::Ipv4Addr::from(net));
            let n = Networks::from_entries(&[entry]);
            let a = IpAddr::V4(addr.into());
            prop_assert_eq!(n.allows(a), addr & mask == net & mask);
            let mapped = IpAddr::V6(std::net::Ipv4Addr::from(addr).to_ipv6_mapped());
            prop_assert_eq!(n.allows(mapped), addr & mask == net & mask);
        }

        /// The same for IPv6 networks outside the IPv4-mapped range.
        #[test]
        fn v6_containment_matches_the_bits(net in any::<u128>(), prefix in 0u8..=128, addr in any::<u128>()) {
            let net_addr = std::net::Ipv6Addr::from(net);
            prop_assume!(net_addr.to_ipv4_mapped().is_none());
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let a = std::net::Ipv6Addr::from(addr);
            prop_assume!(a.to_ipv4_mapped().is_none());
            let n = Networks::from_entries(&[format!("{net_addr}/{prefix}")]);
            prop_assert_eq!(n.allows(IpAddr::V6(a)), addr & mask == net & mask);
        }
    }
}
