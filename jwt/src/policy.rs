//! What a verifier requires of a token's header and claims: type, issuer, audience, time window.

use crate::claims::Claims;
use crate::compact::Header;
use crate::error::JwtError;

/// The `typ` RFC 9068 §2.1 requires of access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Whether `typ` says "access token": `at+jwt`, case-insensitively, with or without the
/// `application/` prefix (RFC 9068 §2.1, RFC 7515 §4.1.9).
pub fn is_access_token_typ(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == ACCESS_TOKEN_TYP || typ.strip_prefix("application/") == Some(ACCESS_TOKEN_TYP)
}

/// The verification policy: the issuer and audience a token must carry, and the clock leeway
/// for its time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The required `iss`.
    pub issuer: String,
    /// The audience `aud` must include.
    pub audience: String,
    /// Clock leeway for `nbf` and `exp`, in seconds.
    pub leeway_secs: i64,
}

impl Policy {
    /// Checks `typ`, `iss` and `aud`, in that order.
    pub fn check_claims(&self, header: &Header, claims: &Claims<'_>) -> Result<(), JwtError> {
        if !header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(JwtError::InvalidClaims);
        }
        if claims.iss != self.issuer || !claims.aud.contains(&self.audience) {
            return Err(JwtError::InvalidClaims);
        }
        Ok(())
    }

    /// Checks the window `nbf`..`exp` (seconds since the Unix epoch) against `now`, with the
    /// leeway on both sides: not valid before `nbf - leeway`, expired from `exp + leeway` on.
    pub fn check_time(&self, nbf: i64, exp: i64, now: i64) -> Result<(), JwtError> {
        if nbf > now.saturating_add(self.leeway_secs) {
            return Err(JwtError::NotYetValid);
        }
        if exp <= now.saturating_sub(self.leeway_secs) {
            return Err(JwtError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::claims::Audience;

    fn policy() -> Policy {
        Policy {
            issuer: "tokenmint".into(),
            audience: "tokenmint".into(),
            leeway_secs: 5,
        }
    }

    fn header(typ: Option<&str>) -> Header {
        Header {
            alg: "EdDSA".into(),
            kid: Some("k1".into()),
            typ: typ.map(str::to_owned),
        }
    }

    fn claims(iss: &'static str, aud: Audience) -> Claims<'static> {
        Claims {
            iss: Cow::Borrowed(iss),
            aud,
            sub: Cow::Borrowed("alice"),
            client_id: Cow::Borrowed("t1"),
            jti: Cow::Borrowed("t1"),
            iat: 0,
            nbf: 0,
            exp: 0,
            scope: Cow::Borrowed(""),
            ent: None,
            adm: false,
            tpl: None,
            ips: None,
            status: None,
        }
    }

    #[test]
    fn access_token_types() {
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(is_access_token_typ(ok), "{ok}");
        }
        for bad in ["JWT", "at+jwt ", "application/jwt", "text/at+jwt", ""] {
            assert!(!is_access_token_typ(bad), "{bad}");
        }
    }

    #[test]
    fn type_issuer_and_audience_are_required() {
        let ours = claims("tokenmint", Audience::One("tokenmint".into()));
        assert_eq!(
            policy().check_claims(&header(Some("at+jwt")), &ours),
            Ok(())
        );
        for typ in [None, Some("JWT")] {
            assert_eq!(
                policy().check_claims(&header(typ), &ours),
                Err(JwtError::InvalidClaims)
            );
        }
        let among = claims(
            "tokenmint",
            Audience::Many(vec!["a".into(), "tokenmint".into()]),
        );
        assert_eq!(
            policy().check_claims(&header(Some("at+jwt")), &among),
            Ok(())
        );
        for other in [
            claims("someone-else", Audience::One("tokenmint".into())),
            claims("tokenmint", Audience::Many(vec!["payments".into()])),
        ] {
            assert_eq!(
                policy().check_claims(&header(Some("at+jwt")), &other),
                Err(JwtError::InvalidClaims)
            );
        }
    }

    #[test]
    fn the_window_has_the_leeway_on_both_sides() {
        let p = policy();
        assert_eq!(p.check_time(105, 200, 100), Ok(()));
        assert_eq!(p.check_time(106, 200, 100), Err(JwtError::NotYetValid));
        assert_eq!(p.check_time(0, 96, 100), Ok(()));
        assert_eq!(p.check_time(0, 95, 100), Err(JwtError::Expired));
        assert_eq!(
            p.check_time(i64::MIN, i64::MAX, i64::MAX),
            Ok(()),
            "no overflow"
        );
    }
}
