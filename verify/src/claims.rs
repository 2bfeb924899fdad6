//! The claims of a verified tokenmint access token as a consuming service reads them, and the
//! use checks (client address, scopes) shared by offline and online verification. The wire form
//! and what an IP entry means are `tokenmint-jwt`'s, shared with the server.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenmint_jwt::ip::Networks;

use crate::error::VerifyError;

/// The scope that stands for every scope.
pub const ALL_SCOPES: &str = "all";

/// What a verified tokenmint token says. Put into request extensions by
/// [`crate::RequireToken`]; read it with `request.extensions().get::<Claims>()`.
///
/// Non-exhaustive: tokenmint may add claims (a new field is not a breaking change). Outside this
/// crate, build one from [`Claims::default`] and set the fields (tests of code that reads
/// claims).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The token's entry in a Token Status List (`status.status_list`), if it has one (tokens
    /// minted before tokenmint published lists have none).
    pub status_list: Option<StatusListEntry>,
}

/// Where a token's status is published: its entry in a Token Status List (IETF
/// draft-ietf-oauth-status-list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListEntry {
    /// The list's URI; the list's `sub` is exactly this string.
    pub uri: String,
    /// The token's index in the list.
    pub idx: u64,
}

impl Claims {
    /// Whether the token grants `scope`: it holds it, or it holds `all`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope || s == ALL_SCOPES)
    }

    /// Whether the token may be used by a client at `addr`: always when it is not IP-restricted,
    /// otherwise when `addr` lies in one of its networks. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, as dual-stack sockets report IPv4 peers) count as their IPv4 address.
    /// An entry that cannot be parsed makes the token usable from nowhere (it never widens the
    /// restriction), exactly as the server treats it.
    pub fn allows_ip(&self, addr: IpAddr) -> bool {
        Networks::from_entries(&self.ips).allows(addr)
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

impl From<tokenmint_jwt::Claims<'_>> for Claims {
    fn from(wire: tokenmint_jwt::Claims<'_>) -> Self {
        Self {
            sub: wire.sub.into_owned(),
            jti: wire.jti.into_owned(),
            client_id: wire.client_id.into_owned(),
            scope: wire.scope.split_whitespace().map(str::to_owned).collect(),
            ent: wire.ent.map(|e| e.into_owned()),
            adm: wire.adm,
            tpl: wire.tpl.map(|t| t.into_owned()),
            ips: wire.ips.unwrap_or_default(),
            iat: wire.iat,
            nbf: wire.nbf,
            exp: wire.exp,
            status_list: wire.status.map(|status| StatusListEntry {
                uri: status.status_list.uri.into_owned(),
                idx: status.status_list.idx,
            }),
        }
    }
}

/// Reads the claims of a compact JWT *without verifying it*. Only for a token whose signature
/// someone trustworthy has just checked (tokenmint's VerifyToken said active).
pub(crate) fn from_verified_token(token: &str) -> Result<Claims, VerifyError> {
    let payload = token.split('.').nth(1).ok_or(VerifyError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| VerifyError::Malformed)?;
    Ok(tokenmint_jwt::Claims::from_payload(&payload)?.into())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
impl Claims {
    /// A token of user `alice` with id `t` and nothing else set (unit tests).
    pub(crate) fn of_alice() -> Self {
        Self {
            sub: "alice".into(),
            jti: "t".into(),
            client_id: "t".into(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(ips: &[&str], scopes: &[&str]) -> Claims {
        Claims {
            scope: scopes.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ..Claims::of_alice()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
        let partly = claims(&["10.0.0.0/8", "not a network"], &[]);
        assert!(
            !partly.allows_ip(ip("10.0.0.1")),
            "as the server: unreadable is nowhere"
        );
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
