//! The server and this crate agree on what a token's IP restriction allows: the networks the
//! server signs into `ips` allow, offline, exactly the addresses the server allows itself.
//! Pure property tests (no server): `tokenmint::domain::IpRestriction` against [`Claims`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use tokenmint::domain::IpRestriction;
use tokenmint_verify::Claims;

/// Claims carrying `ips` and nothing else of interest.
fn claims(ips: Vec<String>) -> Claims {
    // Non-exhaustive outside the crate: built from the default, as a user's tests would.
    let mut claims = Claims::default();
    claims.sub = "alice".into();
    claims.scope = vec!["wallet_view".into()];
    claims.ips = ips;
    claims
}

/// IPv4 addresses near a few bases, so that networks and addresses often meet.
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    let bases = prop_oneof![Just(0x0a00_0000u32), Just(0xc0a8_0000), Just(0)];
    (bases, any::<u16>()).prop_map(|(base, low)| Ipv4Addr::from(base ^ u32::from(low)))
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    (any::<u32>(), 0..4u32).prop_map(|(low, spread)| {
        Ipv6Addr::from((0x2001_0db8u128 << 96) ^ (u128::from(low) << (spread * 24)))
    })
}

fn prefixed(addr: impl ToString, prefix: Option<u8>) -> String {
    match prefix {
        Some(p) => format!("{}/{p}", addr.to_string()),
        None => addr.to_string(),
    }
}

/// An entry of a request's `ip_restrict`; IPv4-mapped IPv6 networks only when `mapped`.
fn entry(mapped: bool) -> BoxedStrategy<String> {
    let v4_entry = (v4(), proptest::option::of(0..=32u8)).prop_map(|(a, p)| prefixed(a, p));
    let v6_entry = (v6(), proptest::option::of(0..=128u8)).prop_map(|(a, p)| prefixed(a, p));
    if !mapped {
        return prop_oneof![v4_entry, v6_entry].boxed();
    }
    let mapped =
        (v4(), proptest::option::of(96..=128u8)).prop_map(|(a, p)| prefixed(a.to_ipv6_mapped(), p));
    prop_oneof![v4_entry, v6_entry, mapped].boxed()
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4().prop_map(IpAddr::V4),
        v6().prop_map(IpAddr::V6),
        v4().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
    ]
}

/// What the server allows (at mint time and, from the claim, at VerifyToken) and what this
/// crate allows from the signed claim.
fn decisions(entries: &[String], addr: IpAddr) -> (bool, bool, bool) {
    let server = IpRestriction::parse(entries, "ip_restrict").expect("valid entries");
    let signed = server.to_strings();
    let from_claim = IpRestriction::from_trusted(&signed);
    (
        server.allows(addr),
        from_claim.allows(addr),
        claims(signed).allows_ip(addr),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn server_and_offline_verifiers_allow_the_same_addresses(
        entries in vec(entry(false), 0..5),
        addr in address(),
    ) {
        let (server, from_claim, offline) = decisions(&entries, addr);
        prop_assert_eq!(server, from_claim, "{:?} from {}", entries, addr);
        prop_assert_eq!(server, offline, "{:?} from {}", entries, addr);
    }

    #[test]
    fn server_and_offline_verifiers_agree_on_ipv4_mapped_networks(
        entries in vec(entry(true), 0..5),
        addr in address(),
    ) {
        let (server, from_claim, offline) = decisions(&entries, addr);
        prop_assert_eq!(server, from_claim, "{:?} from {}", entries, addr);
        prop_assert_eq!(server, offline, "{:?} from {}", entries, addr);
    }
}
