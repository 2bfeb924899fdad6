//! The claims of a verified tokenmint access token, the JWT wire form they are read from, and the
//! use checks (client address, scopes) shared by offline and online verification.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::VerifyError;

/// The scope that stands for every scope.
pub const ALL_SCOPES: &str = "all";

/// What a verified tokenmint token says. Put into request extensions by
/// [`crate::RequireToken`]; read it with `request.extensions().get::<Claims>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user the token acts for (`sub`).
    pub sub: String,
    /// The token id (`jti`); tokenmint's `Token.id`.
    pub jti: String,
    /// The token id again, as RFC 9068 `client_id`.
    pub client_id: String,
    /// Granted scopes (the space-separated `scope` claim, split). `all` grants every scope.
    pub scope: Vec<String>,
    /// Enterprise the token is bound to (`ent`), if any.
    pub ent: Option<String>,
    /// Admin rights (`adm`).
    pub adm: bool,
    /// Template the token was minted from (`tpl`), if any.
    pub tpl: Option<String>,
    /// Networks the token may be used from, as CIDR blocks (`ips`, e.g. `10.0.0.0/8`,
    /// `2001:db8::1/128`); empty means anywhere. See [`allows_ip`](Self::allows_ip).
    pub ips: Vec<String>,
    /// Issued at, in seconds since the Unix epoch (`iat`).
    pub iat: i64,
    /// Not valid before, in seconds since the Unix epoch (`nbf`).
    pub nbf: i64,
    /// Expiry, in seconds since the Unix epoch (`exp`).
    pub exp: i64,
}

impl Claims {
    /// Whether the token grants `scope`: it holds it, or it holds `all`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope || s == ALL_SCOPES)
    }

    /// Whether the token may be used by a client at `addr`: always when it is not IP-restricted,
    /// otherwise when `addr` lies in one of its networks. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, as dual-stack sockets report IPv4 peers) count as their IPv4 address.
    /// An entry that cannot be parsed matches nothing (it never widens the restriction).
    pub fn allows_ip(&self, addr: IpAddr) -> bool {
        if self.ips.is_empty() {
            return true;
        }
        let addr = canonical(addr);
        self.ips
            .iter()
            .filter_map(|net| parse_cidr(net))
            .any(|(network, prefix)| contains(network, prefix, addr))
    }

    /// Whether the token is IP-restricted.
    pub fn is_ip_restricted(&self) -> bool {
        !self.ips.is_empty()
    }

    /// Checks the use of a token, in tokenmint's order: the client address (an unknown address
    /// never passes a restricted token), then the required scopes.
    pub(crate) fn check_use(
        &self,
        required_scopes: &[&str],
        client_ip: Option<IpAddr>,
    ) -> Result<(), VerifyError> {
        let ip_ok = match client_ip {
            Some(addr) => self.allows_ip(addr),
            None => !self.is_ip_restricted(),
        };
        if !ip_ok {
            return Err(VerifyError::IpNotAllowed);
        }
        if !required_scopes.iter().all(|s| self.has_scope(s)) {
            return Err(VerifyError::InsufficientScope);
        }
        Ok(())
    }
}

/// The `aud` claim: one audience or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` is among the audiences.
    pub(crate) fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(a) => a == aud,
            Self::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// The claims as tokenmint writes them into the JWT payload. Every registered claim tokenmint
/// always sets is required; a token without one is malformed.
#[derive(Debug, Deserialize)]
pub(crate) struct WireClaims {
    /// Issuer.
    pub(crate) iss: String,
    /// Audience.
    pub(crate) aud: Audience,
    sub: String,
    client_id: String,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    scope: String,
    #[serde(default)]
    ent: Option<String>,
    #[serde(default)]
    adm: bool,
    #[serde(default)]
    tpl: Option<String>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

impl WireClaims {
    /// Parses a JWT payload (JSON bytes).
    pub(crate) fn parse(payload: &[u8]) -> Result<Self, VerifyError> {
        serde_json::from_slice(payload).map_err(|_| VerifyError::Malformed)
    }

    /// Decodes the payload of a compact JWT *without verifying it*. Only for a token whose
    /// signature someone trustworthy has just checked (tokenmint's VerifyToken said active).
    pub(crate) fn from_verified_token(token: &str) -> Result<Self, VerifyError> {
        let payload = token.split('.').nth(1).ok_or(VerifyError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| VerifyError::Malformed)?;
        Self::parse(&payload)
    }

    /// The public form.
    pub(crate) fn into_claims(self) -> Claims {
        Claims {
            sub: self.sub,
            jti: self.jti,
            client_id: self.client_id,
            scope: self.scope.split_whitespace().map(str::to_owned).collect(),
            ent: self.ent.filter(|e| !e.is_empty()),
            adm: self.adm,
            tpl: self.tpl.filter(|t| !t.is_empty()),
            ips: self.ips.unwrap_or_default(),
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Maps IPv4-mapped IPv6 addresses to IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a host route) into the network address and
/// prefix length. IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) become IPv4 networks.
fn parse_cidr(raw: &str) -> Option<(IpAddr, u8)> {
    let raw = raw.trim();
    let (addr, prefix) = match raw.split_once('/') {
        Some((addr, prefix)) => {
            let addr: IpAddr = addr.parse().ok()?;
            // Decimal digits only: `u8::from_str` would also accept a leading `+`.
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (addr, prefix.parse::<u8>().ok()?)
        }
        None => {
            let addr: IpAddr = raw.parse().ok()?;
            (addr, max_prefix(addr))
        }
    };
    if prefix > max_prefix(addr) {
        return None;
    }
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => Some((IpAddr::V4(v4), prefix - 96)),
            _ => Some((addr, prefix)),
        },
        IpAddr::V4(_) => Some((addr, prefix)),
    }
}

/// 32 for IPv4, 128 for IPv6.
fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Whether `addr` lies in `network/prefix` (same family only; host bits of `network` ignored).
fn contains(network: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (network, addr) {
        (IpAddr::V4(net), IpAddr::V4(addr)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(addr) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(addr)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(net) & mask == u128::from(addr) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(ips: &[&str], scopes: &[&str]) -> Claims {
        Claims {
            sub: "alice".into(),
            jti: "t".into(),
            client_id: "t".into(),
            scope: scopes.iter().map(|s| s.to_string()).collect(),
            ent: None,
            adm: false,
            tpl: None,
            ips: ips.iter().map(|s| s.to_string()).collect(),
            iat: 0,
            nbf: 0,
            exp: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_blocks_and_addresses() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Some((ip("10.0.0.0"), 8)));
        assert_eq!(parse_cidr("10.0.0.1"), Some((ip("10.0.0.1"), 32)));
        assert_eq!(parse_cidr("2001:db8::/32"), Some((ip("2001:db8::"), 32)));
        assert_eq!(parse_cidr("::ffff:10.0.0.0/104"), Some((ip("10.0.0.0"), 8)));
        assert_eq!(parse_cidr("0.0.0.0/0"), Some((ip("0.0.0.0"), 0)));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "",
            "::/129",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn allows_addresses_inside_the_networks_only() {
        let c = claims(&["10.0.0.0/8", "2001:db8::1/128", "192.168.1.7/24"], &[]);
        assert!(c.allows_ip(ip("10.9.9.9")));
        assert!(c.allows_ip(ip("192.168.1.200")), "host bits are ignored");
        assert!(c.allows_ip(ip("2001:db8::1")));
        assert!(!c.allows_ip(ip("11.0.0.1")));
        assert!(!c.allows_ip(ip("2001:db8::2")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let c = claims(&["10.0.0.0/8"], &[]);
        assert!(c.allows_ip(ip("::ffff:10.1.1.1")));
        assert!(!c.allows_ip(ip("::ffff:11.1.1.1")));
        let mapped = claims(&["::ffff:10.0.0.0/104"], &[]);
        assert!(mapped.allows_ip(ip("10.2.3.4")));
    }

    #[test]
    fn unrestricted_allows_anything_and_garbage_allows_nothing() {
        assert!(claims(&[], &[]).allows_ip(ip("8.8.8.8")));
        let garbage = claims(&["not a network"], &[]);
        assert!(!garbage.allows_ip(ip("8.8.8.8")));
        assert!(garbage.is_ip_restricted());
    }

    #[test]
    fn all_grants_every_scope() {
        assert!(claims(&[], &["all"]).has_scope("wallet_view"));
        assert!(claims(&[], &["wallet_view"]).has_scope("wallet_view"));
        assert!(!claims(&[], &["wallet_view"]).has_scope("wallet_spend"));
    }

    #[test]
    fn use_checks_the_address_before_the_scopes() {
        let c = claims(&["10.0.0.0/8"], &["wallet_view"]);
        assert_eq!(
            c.check_use(&["trade_view"], Some(ip("11.0.0.1"))),
            Err(VerifyError::IpNotAllowed)
        );
        assert_eq!(
            c.check_use(&["wallet_view"], None),
            Err(VerifyError::IpNotAllowed)
        );
        assert_eq!(
            c.check_use(&["trade_view"], Some(ip("10.0.0.1"))),
            Err(VerifyError::InsufficientScope)
        );
        assert_eq!(c.check_use(&["wallet_view"], Some(ip("10.0.0.1"))), Ok(()));
        assert_eq!(claims(&[], &[]).check_use(&[], None), Ok(()));
    }
}
