//! Authority only flows downward: the one rule that bounds every token a request, a template or an
//! activation can produce.
//!
//! A [`Ceiling`] is the most a new token may be given, set by a template or by the token that asks
//! (its minter). [`narrow`] takes what a request asks for ([`Grant`]) and, dimension by dimension,
//! fills what the request left unset from the ceiling and refuses what lies beyond it:
//!
//! | dimension  | unset in the request          | set                                          |
//! |------------|-------------------------------|----------------------------------------------|
//! | scopes     | the template's (callers: none)| each granted by the ceiling (`all` grants all)|
//! | admin      | not admin                     | only under an admin ceiling                  |
//! | expiry     | the default, lowered to the ceiling's expiry | no later than the ceiling's    |
//! | networks   | the ceiling's                 | each inside one of the ceiling's             |
//! | limits     | the ceiling's, coin by coin   | listed by the ceiling, each at most its limit|
//! | enterprise | the ceiling's                 | the ceiling's (an unbound caller: any, if a member) |
//!
//! CreateToken narrows twice, in this order: by the template (if any), then by the caller; the
//! environment's rules are checked on the result, so production's IP requirement can be met by
//! a restriction inherited from the caller. ActivateToken asks whether the caller's ceiling
//! [`admits`] the token as it stands. Property tests below check that no narrowing ever widens.
//!
//! (Length: about half of this file is those property tests and their generators; the rule is
//! the service's security boundary, so its tests stay beside it.)
//!
//! Length: the rule is the first ~420 lines; the rest are its property and example tests, kept
//! beside it so that what the rule promises reads next to the rule.

use crate::domain::{
    Amount, EnterpriseId, IpRestriction, ScopeSet, SpendingLimit, TemplateId, Timestamp,
    TokenLimits, TokenRecord,
};
use crate::error::{Error, ErrorCode, Result, Violations, reason};

/// Who set a ceiling; decides how a refusal is reported.
#[derive(Debug, Clone, Copy)]
pub enum Bounder<'a> {
    /// A template: a refusal is INVALID_ARGUMENT `EXCEEDS_TEMPLATE` (the request asks too much of
    /// the template it names).
    Template(&'a TemplateId),
    /// The calling token: a refusal is PERMISSION_DENIED `EXCEEDS_CALLER` (or `SCOPE_NOT_HELD`,
    /// `ADMIN_REQUIRED`), naming the field in the metadata.
    Caller,
}

/// The most a new token may be given. `None` in a dimension means the ceiling sets no bound there.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling<'a> {
    /// Who set it.
    pub by: Bounder<'a>,
    /// Scopes that may be granted (`all` grants any).
    pub scopes: &'a ScopeSet,
    /// Whether admin may be granted.
    pub admin: bool,
    /// Latest expiry.
    pub expires_at: Option<Timestamp>,
    /// Networks the token must stay inside; `None` or unrestricted: anywhere.
    pub ips: Option<&'a IpRestriction>,
    /// Spending limits; `None` or empty: no bound.
    pub limits: Option<&'a TokenLimits>,
    /// Which enterprise binding the token may have.
    pub enterprise: EnterpriseBound<'a>,
    /// Whether a request without scopes takes the ceiling's (a template's) or stays empty (a
    /// caller's: a token's scopes are always named, never inherited wholesale).
    pub inherit_scopes: bool,
}

/// Which enterprise a token under a ceiling may be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterpriseBound<'a> {
    /// Any (or none): an unbound caller may bind a token to an enterprise its user belongs to
    /// (membership is checked apart, by `rules::require_member`).
    Any,
    /// Exactly this binding: a bound caller's enterprise, or a template's (none for a template
    /// without one).
    Only(Option<&'a EnterpriseId>),
}

/// When a token expires, and whether the request asked for that time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Asked for through `field` (`duration_seconds` or `expires_at`): a ceiling refuses a later one.
    Asked {
        /// The expiry asked for.
        at: Timestamp,
        /// The request field it came from.
        field: &'static str,
    },
    /// Not asked for: the default, which a ceiling lowers to its own expiry.
    Default(Timestamp),
}

impl Expiry {
    /// The expiry time.
    pub fn at(self) -> Timestamp {
        match self {
            Self::Asked { at, .. } | Self::Default(at) => at,
        }
    }
}

/// What a token gets (or, before narrowing, asks for). Unset dimensions: empty scopes, an
/// unrestricted `ips`, empty `limits`, no `enterprise`, a default expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Scopes.
    pub scopes: ScopeSet,
    /// Admin rights.
    pub admin: bool,
    /// Expiry.
    pub expiry: Expiry,
    /// Allowed networks.
    pub ips: IpRestriction,
    /// Spending limits.
    pub limits: TokenLimits,
    /// Whether `limits` is a complete set (from a template or a token) rather than a request's
    /// list: a coin a complete set omits may not be spent, so nothing is inherited into it.
    pub limits_complete: bool,
    /// Bound enterprise.
    pub enterprise: Option<EnterpriseId>,
}

impl Grant {
    /// An existing token's authority, every dimension as it stands (its expiry counts as asked).
    pub fn of_record(record: &TokenRecord) -> Self {
        Self {
            scopes: record.scopes.clone(),
            admin: record.admin,
            expiry: Expiry::Asked {
                at: record.expires_at,
                field: "expires_at",
            },
            ips: record.ip_restrict.clone(),
            limits: record.limits.clone(),
            limits_complete: true,
            enterprise: record.enterprise_id.clone(),
        }
    }
}

/// Narrows `asked` to within `ceiling`: unset dimensions take the ceiling's value, set ones must lie
/// inside it. Every dimension beyond the ceiling is reported (one error, several field violations
/// for a template; the first one for a caller).
pub fn narrow(ceiling: &Ceiling<'_>, asked: Grant) -> Result<Grant> {
    let mut v = Violations::default();

    let scopes = if asked.scopes.is_empty() && ceiling.inherit_scopes {
        ceiling.scopes.clone()
    } else {
        let missing = ceiling.scopes.missing_from(&asked.scopes);
        if !missing.is_empty() {
            v.check::<()>(Err(scopes_refused(ceiling, &missing)));
        }
        asked.scopes
    };

    if asked.admin && !ceiling.admin {
        v.check::<()>(Err(Error::denied(
            reason::ADMIN_REQUIRED,
            "only an admin token may grant or re-enable admin rights",
        )));
    }

    let expiry = match (asked.expiry, ceiling.expires_at) {
        (Expiry::Asked { at, field }, Some(bound)) if at > bound => {
            v.check::<()>(Err(exceeds(
                ceiling,
                field,
                format!(
                    "the token would expire after the calling token does ({})",
                    bound.to_rfc3339()
                ),
            )
            .with_meta("max_expires_at", bound.to_rfc3339())));
            asked.expiry
        }
        (Expiry::Default(at), Some(bound)) if at > bound => Expiry::Default(bound),
        (expiry, _) => expiry,
    };

    let bound_ips = ceiling.ips.filter(|ips| !ips.is_unrestricted());
    let ips = match bound_ips {
        Some(bound) if !bound.is_readable() => {
            v.check::<()>(Err(unreadable(ceiling, "ip_restrict")));
            asked.ips
        }
        Some(bound) if asked.ips.is_unrestricted() => bound.clone(),
        Some(bound) if !asked.ips.is_within(bound) => {
            v.check::<()>(Err(exceeds(
                ceiling,
                "ip_restrict",
                format!(
                    "ip_restrict must lie inside the {}'s networks ({})",
                    ceiling.noun(),
                    bound.as_strings().join(", ")
                ),
            )));
            asked.ips
        }
        _ => asked.ips,
    };

    let (limits, limits_complete) = match ceiling.limits.filter(|l| !l.is_empty()) {
        None => (asked.limits, asked.limits_complete),
        // A token without any limits may spend anything: never inside a bound that has some.
        Some(bound) if asked.limits.is_empty() => (bound.clone(), true),
        Some(bound) => (
            narrow_limits(ceiling, bound, asked.limits, asked.limits_complete, &mut v),
            true,
        ),
    };

    let enterprise = match (asked.enterprise, ceiling.enterprise) {
        (None, EnterpriseBound::Only(bound)) => bound.cloned(),
        (Some(asked), EnterpriseBound::Only(bound)) if Some(&asked) != bound => {
            let (message, error) = match bound {
                Some(bound) => (
                    format!(
                        "the token must be bound to the {}'s enterprise {bound}",
                        ceiling.noun()
                    ),
                    Some(bound.to_string()),
                ),
                None => (
                    format!("the {} is not bound to an enterprise", ceiling.noun()),
                    None,
                ),
            };
            let refusal = exceeds(ceiling, "enterprise_id", message);
            v.check::<()>(Err(match error {
                Some(bound) => refusal.with_meta("enterprise_id", bound),
                None => refusal,
            }));
            Some(asked)
        }
        (asked, _) => asked,
    };

    v.finish()?;
    Ok(Grant {
        scopes,
        admin: asked.admin,
        expiry,
        ips,
        limits,
        limits_complete,
        enterprise,
    })
}

/// Whether `ceiling` could grant `record` as it stands today: narrowing its authority changes
/// nothing and refuses nothing. A token unrestricted in a dimension the ceiling bounds is refused
/// for that dimension.
pub fn admits(ceiling: &Ceiling<'_>, record: &TokenRecord) -> Result<()> {
    let asked = Grant::of_record(record);
    let granted = narrow(ceiling, asked.clone())?;
    let widened = if granted.ips != asked.ips {
        Some("ip_restrict")
    } else if asked.limits.is_empty() && !granted.limits.is_empty() {
        // A token with limits is never wider than its ceiling after narrowing (coins it omits
        // may not be spent with it); only a token without any is.
        Some("token_limits")
    } else if granted.enterprise != asked.enterprise {
        Some("enterprise_id")
    } else if granted.scopes != asked.scopes {
        Some("scopes")
    } else {
        None
    };
    match widened {
        Some(field) => Err(exceeds(
            ceiling,
            field,
            format!(
                "the token is less restricted in {field} than the {} is",
                ceiling.noun()
            ),
        )),
        None => Ok(()),
    }
}

/// The limits of a token under `bound`: each coin asked for must be one the bound lists, at most
/// at its limit, and likewise the all-ERC-20 cap. A request's partial list (`complete` false)
/// keeps the bound's limit for every coin it omits and the bound's ERC-20 cap if it gives none;
/// a complete set (a template's or a token's, after narrowing) takes nothing from the bound: a
/// coin it omits may not be spent with it.
fn narrow_limits(
    ceiling: &Ceiling<'_>,
    bound: &TokenLimits,
    asked: TokenLimits,
    complete: bool,
    v: &mut Violations,
) -> TokenLimits {
    let field = "token_limits";
    let mut spending: Vec<SpendingLimit> = if complete {
        asked.spending_limits.clone()
    } else {
        bound.spending_limits.clone()
    };
    for (i, limit) in asked.spending_limits.into_iter().enumerate() {
        let at = format!("{field}.spending_limits[{i}]");
        match bound.limit_for(&limit.coin) {
            None => {
                v.check::<()>(Err(exceeds(
                    ceiling,
                    &format!("{at}.coin"),
                    format!(
                        "the {} allows no spending of coin {:?}",
                        ceiling.noun(),
                        limit.coin
                    ),
                )
                .with_meta("coin", limit.coin.clone())));
            }
            Some(max) if &limit.tx_value_limit > max => {
                v.check::<()>(Err(exceeds(
                    ceiling,
                    &format!("{at}.tx_value_limit"),
                    format!(
                        "the limit for {} exceeds the {}'s {}",
                        limit.coin,
                        ceiling.noun(),
                        max.as_str()
                    ),
                )
                .with_meta("coin", limit.coin.clone())));
            }
            Some(_) if complete => {}
            Some(_) => {
                if let Some(kept) = spending.iter_mut().find(|l| l.coin == limit.coin) {
                    kept.tx_value_limit = limit.tx_value_limit;
                }
            }
        }
    }
    let erc20_field = "token_limits.all_erc20_tokens_limit";
    let all_erc20_tokens_limit: Option<Amount> =
        match (asked.all_erc20_tokens_limit, &bound.all_erc20_tokens_limit) {
            (None, _) if complete => None,
            (None, inherited) => inherited.clone(),
            (Some(_), None) => {
                v.check::<()>(Err(exceeds(
                    ceiling,
                    erc20_field,
                    format!("the {} allows no ERC-20 spending", ceiling.noun()),
                )));
                None
            }
            (Some(asked), Some(max)) if &asked > max => {
                v.check::<()>(Err(exceeds(
                    ceiling,
                    erc20_field,
                    format!(
                        "the all-ERC-20 limit exceeds the {}'s {}",
                        ceiling.noun(),
                        max.as_str()
                    ),
                )));
                None
            }
            (Some(asked), Some(_)) => Some(asked),
        };
    TokenLimits {
        spending_limits: spending,
        all_erc20_tokens_limit,
    }
}

impl Ceiling<'_> {
    /// How errors name the bounder.
    fn noun(&self) -> &'static str {
        match self.by {
            Bounder::Template(_) => "template",
            Bounder::Caller => "calling token",
        }
    }
}

/// A refusal of `field` by `ceiling`.
fn exceeds(ceiling: &Ceiling<'_>, field: &str, message: String) -> Error {
    match ceiling.by {
        Bounder::Template(id) => Error::invalid(field, reason::EXCEEDS_TEMPLATE, message)
            .with_meta("template_id", id.to_string()),
        Bounder::Caller => Error::denied(reason::EXCEEDS_CALLER, message)
            .with_meta("field", field)
            .with_violation(field, "beyond what the calling token holds"),
    }
}

/// Scopes the ceiling does not grant.
fn scopes_refused(ceiling: &Ceiling<'_>, missing: &[String]) -> Error {
    match ceiling.by {
        Bounder::Template(_) => exceeds(
            ceiling,
            "scopes",
            format!("scope(s) {} are not in the template", missing.join(", ")),
        ),
        Bounder::Caller => Error::denied(
            reason::SCOPE_NOT_HELD,
            format!(
                "the calling token does not hold scope(s) {}",
                missing.join(", ")
            ),
        )
        .with_meta("missing_scopes", missing.join(" ")),
    }
}

/// A stored bound that can no longer be read: nothing is minted under it (fail closed).
fn unreadable(ceiling: &Ceiling<'_>, field: &str) -> Error {
    let message = format!(
        "the {}'s stored {field} cannot be read; nothing can be minted under it until it is fixed",
        ceiling.noun()
    );
    let error = Error::new(
        ErrorCode::FailedPrecondition,
        reason::UNREADABLE_RESTRICTION,
        message,
    )
    .with_meta("field", field);
    match ceiling.by {
        Bounder::Template(id) => error.with_meta("template_id", id.to_string()),
        Bounder::Caller => error,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::{Description, TemplateName, TemplateRecord, UserId};
    use crate::issuance::Caller;
    use crate::issuance::verifier::VerifiedToken;

    const SCOPES: [&str; 4] = ["wallet_view", "wallet_spend", "trade_view", "all"];
    const NETS: [&str; 7] = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3",
        "192.168.0.0/16",
        "2001:db8::/32",
        "2001:db8::1",
        "0.0.0.0/0",
    ];
    const COINS: [&str; 3] = ["btc", "eth", "sol"];
    const ENTERPRISES: [&str; 2] = ["ent-1", "ent-2"];
    const TEMPLATE: &str = "01a23174-39ed-7634-95d9-31fce35eb30c";

    fn scopes() -> impl Strategy<Value = ScopeSet> {
        proptest::sample::subsequence(SCOPES.to_vec(), 0..=SCOPES.len())
            .prop_map(ScopeSet::from_trusted)
    }

    fn ips() -> impl Strategy<Value = IpRestriction> {
        proptest::sample::subsequence(NETS.to_vec(), 0..=3).prop_map(|nets| {
            let nets: Vec<String> = nets.into_iter().map(str::to_owned).collect();
            IpRestriction::parse(&nets, "ip_restrict").expect("valid networks")
        })
    }

    fn limits() -> impl Strategy<Value = TokenLimits> {
        (
            proptest::collection::btree_map(
                proptest::sample::select(COINS.to_vec()),
                0..2000u32,
                0..=3,
            ),
            proptest::option::of(0..2000u32),
        )
            .prop_map(|(coins, erc20)| {
                let pairs: Vec<(String, String)> = coins
                    .into_iter()
                    .map(|(c, v)| (c.to_owned(), v.to_string()))
                    .collect();
                let erc20 = erc20.map(|v| v.to_string());
                TokenLimits::parse(&pairs, erc20.as_deref(), "token_limits").expect("valid limits")
            })
    }

    fn enterprise() -> impl Strategy<Value = Option<EnterpriseId>> {
        proptest::option::of(
            proptest::sample::select(ENTERPRISES.to_vec())
                .prop_map(|e| EnterpriseId::parse(e, "enterprise_id").expect("valid id")),
        )
    }

    fn expiry() -> impl Strategy<Value = Expiry> {
        (1_000..2_000i64, any::<bool>()).prop_map(|(secs, asked)| {
            let at = Timestamp::from_secs(secs);
            if asked {
                Expiry::Asked {
                    at,
                    field: "duration_seconds",
                }
            } else {
                Expiry::Default(at)
            }
        })
    }

    fn grant() -> impl Strategy<Value = Grant> {
        (
            scopes(),
            any::<bool>(),
            expiry(),
            ips(),
            limits(),
            any::<bool>(),
            enterprise(),
        )
            .prop_map(
                |(scopes, admin, expiry, ips, limits, limits_complete, enterprise)| Grant {
                    scopes,
                    admin,
                    expiry,
                    ips,
                    limits,
                    limits_complete,
                    enterprise,
                },
            )
    }

    /// The owned parts of a ceiling, so that a strategy can produce one.
    #[derive(Debug, Clone)]
    struct Bounds {
        template: bool,
        scopes: ScopeSet,
        admin: bool,
        expires_at: Option<Timestamp>,
        ips: IpRestriction,
        limits: TokenLimits,
        enterprise: Option<EnterpriseId>,
    }

    fn bounds() -> impl Strategy<Value = Bounds> {
        (
            any::<bool>(),
            scopes(),
            any::<bool>(),
            proptest::option::of((1_000..2_000i64).prop_map(Timestamp::from_secs)),
            ips(),
            limits(),
            enterprise(),
        )
            .prop_map(
                |(template, scopes, admin, expires_at, ips, limits, enterprise)| Bounds {
                    template,
                    scopes,
                    admin,
                    expires_at,
                    ips,
                    limits,
                    enterprise,
                },
            )
    }

    /// The minter a [`Bounds`] describes, built as the server builds them: a template record
    /// for `templates::ceiling`, or a caller (signed claims + stored row) for `Caller::ceiling`.
    enum Minter {
        Template(Box<TemplateRecord>),
        Caller(Caller),
    }

    impl Minter {
        fn of(b: &Bounds) -> Self {
            let far = Timestamp::from_secs(1 << 40);
            let user = UserId::parse("alice").unwrap();
            if b.template {
                return Self::Template(Box::new(TemplateRecord {
                    id: TemplateId::parse(TEMPLATE, "id").unwrap(),
                    user_id: user.clone(),
                    name: TemplateName::parse("t").unwrap(),
                    enterprise_id: b.enterprise.clone(),
                    description: Description::parse("").unwrap(),
                    scopes: b.scopes.clone(),
                    allowed_ips: b.ips.clone(),
                    limits: b.limits.clone(),
                    default_duration_secs: 0,
                    version: 1,
                    created_at: Timestamp(0),
                    updated_at: Timestamp(0),
                    created_by: user.clone(),
                    updated_by: user,
                }));
            }
            let exp = b.expires_at.unwrap_or(far);
            let record = TokenRecord {
                scopes: b.scopes.clone(),
                admin: b.admin,
                expires_at: exp,
                ip_restrict: b.ips.clone(),
                limits: b.limits.clone(),
                enterprise_id: b.enterprise.clone(),
                ..TokenRecord::sample(0)
            };
            let token = VerifiedToken {
                id: record.id,
                user_id: user.clone(),
                scopes: Arc::new(b.scopes.clone()),
                ips: b.ips.clone(),
                admin: b.admin,
                enterprise: b.enterprise.clone(),
                nbf: Timestamp(0),
                exp,
                kid: "k1".into(),
            };
            Self::Caller(Caller {
                user_id: user,
                token_id: Some(record.id),
                scopes: token.scopes.clone(),
                admin: b.admin,
                token: Some(Arc::new(token)),
                record: Some(Arc::new(record)),
            })
        }

        fn ceiling(&self) -> Ceiling<'_> {
            match self {
                Self::Template(t) => crate::issuance::templates::ceiling(t),
                Self::Caller(c) => c.ceiling(),
            }
        }
    }

    /// A request drawn from inside `b` (scopes, networks, coins and amounts it holds; its
    /// enterprise or none; an expiry no later than its own): every one must be granted.
    fn grant_within(b: &Bounds) -> impl Strategy<Value = Grant> + use<> {
        let scopes: Vec<String> = if b.scopes.has_all() {
            SCOPES.iter().map(|s| s.to_string()).collect()
        } else {
            b.scopes.iter().map(str::to_owned).collect()
        };
        let nets = b.ips.to_strings();
        let coins: Vec<(String, u128)> = b
            .limits
            .spending_limits
            .iter()
            .map(|l| (l.coin.clone(), l.tx_value_limit.as_str().parse().unwrap()))
            .collect();
        let erc20: Option<u128> = b
            .limits
            .all_erc20_tokens_limit
            .as_ref()
            .map(|a| a.as_str().parse().unwrap());
        let (admin, enterprise) = (b.admin, b.enterprise.clone());
        let latest = b.expires_at.map_or(2_000, |t| t.as_secs());
        let n_scopes = scopes.len();
        let n_nets = nets.len();
        let n_coins = coins.len();
        (
            proptest::sample::subsequence(scopes, 0..=n_scopes),
            any::<bool>(),
            (1_000..=latest.max(1_000), any::<bool>()),
            proptest::sample::subsequence(nets, 0..=n_nets),
            proptest::sample::subsequence(coins, 0..=n_coins),
            proptest::option::of(0..=erc20.unwrap_or(0)),
            any::<bool>(),
        )
            .prop_map(
                move |(scopes, want_admin, (secs, asked), nets, coins, erc, bind)| {
                    let at = Timestamp::from_secs(secs);
                    let pairs: Vec<(String, String)> = coins
                        .into_iter()
                        .map(|(c, max)| (c, (max / 2).to_string()))
                        .collect();
                    let erc = erc.filter(|_| erc20.is_some()).map(|v| v.to_string());
                    Grant {
                        scopes: ScopeSet::from_trusted(scopes),
                        admin: admin && want_admin,
                        expiry: if asked {
                            Expiry::Asked {
                                at,
                                field: "expires_at",
                            }
                        } else {
                            Expiry::Default(at)
                        },
                        ips: IpRestriction::parse(&nets, "ip_restrict").unwrap(),
                        limits: TokenLimits::parse(&pairs, erc.as_deref(), "token_limits").unwrap(),
                        limits_complete: false,
                        enterprise: enterprise.clone().filter(|_| bind),
                    }
                },
            )
    }

    /// A bound and a request: half drawn from inside it, half arbitrary.
    fn bound_and_request() -> impl Strategy<Value = (Bounds, Grant)> {
        bounds().prop_flat_map(|b| {
            let within = grant_within(&b);
            (Just(b), prop_oneof![within, grant()])
        })
    }

    /// A template fixes the binding (or its absence); a caller only when it is bound (the
    /// meaning `Caller::ceiling` and `templates::ceiling` give it).
    fn enterprise_bound(b: &Bounds) -> EnterpriseBound<'_> {
        match (&b.enterprise, b.template) {
            (None, false) => EnterpriseBound::Any,
            (bound, _) => EnterpriseBound::Only(bound.as_ref()),
        }
    }

    /// Asserts that `g` grants nothing beyond `b` in any dimension `b` bounds (a template bounds
    /// neither lifetime nor admin, and "no enterprise" in a template is its shape, not a bound:
    /// a bound caller's children carry the caller's enterprise).
    fn assert_within(g: &Grant, b: &Bounds) -> Result<(), TestCaseError> {
        prop_assert!(b.scopes.missing_from(&g.scopes).is_empty(), "scopes");
        if !b.template {
            prop_assert!(!g.admin || b.admin, "admin");
            if let Some(bound) = b.expires_at {
                prop_assert!(g.expiry.at() <= bound, "expiry");
            }
        }
        if !b.ips.is_unrestricted() {
            prop_assert!(!g.ips.is_unrestricted(), "an unrestricted child");
            prop_assert!(g.ips.is_within(&b.ips), "networks");
        }
        if !b.limits.is_empty() {
            prop_assert!(!g.limits.is_empty(), "a child without limits");
            for limit in &g.limits.spending_limits {
                let max = b.limits.limit_for(&limit.coin);
                prop_assert!(max.is_some_and(|m| &limit.tx_value_limit <= m), "coin");
            }
            if let Some(erc20) = &g.limits.all_erc20_tokens_limit {
                let max = b.limits.all_erc20_tokens_limit.as_ref();
                prop_assert!(max.is_some_and(|m| erc20 <= m), "erc20");
            }
        }
        if let EnterpriseBound::Only(Some(e)) = enterprise_bound(b) {
            prop_assert_eq!(g.enterprise.as_ref(), Some(e), "enterprise");
        }
        Ok(())
    }

    fn record_of(g: &Grant) -> TokenRecord {
        TokenRecord {
            scopes: g.scopes.clone(),
            admin: g.admin,
            expires_at: g.expiry.at(),
            ip_restrict: g.ips.clone(),
            limits: g.limits.clone(),
            enterprise_id: g.enterprise.clone(),
            ..TokenRecord::sample(0)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever is asked, a granted token lies within the ceiling in every dimension.
        #[test]
        fn narrowing_never_widens((b, asked) in bound_and_request()) {
            if let Ok(granted) = narrow(&Minter::of(&b).ceiling(), asked) {
                assert_within(&granted, &b)?;
            }
        }

        /// Narrowing refuses nothing that lies inside the bound (so the property above is
        /// exercised, not passed by refusing everything).
        #[test]
        fn a_request_inside_the_bound_is_granted(
            (b, asked) in bounds().prop_flat_map(|b| (Just(b.clone()), grant_within(&b)))
        ) {
            let granted = narrow(&Minter::of(&b).ceiling(), asked.clone());
            prop_assert!(granted.is_ok(), "{asked:?} under {b:?}: {granted:?}");
            assert_within(&granted.unwrap(), &b)?;
        }

        /// Template then caller: the result lies within both.
        #[test]
        fn two_narrowings_stay_within_both((t, asked) in bound_and_request(), c in bounds()) {
            let t = Bounds { template: true, ..t };
            let c = Bounds { template: false, ..c };
            let granted = narrow(&Minter::of(&t).ceiling(), asked)
                .and_then(|g| narrow(&Minter::of(&c).ceiling(), g));
            if let Ok(granted) = granted {
                assert_within(&granted, &t)?;
                assert_within(&granted, &c)?;
            }
        }

        /// Narrowing what was granted changes nothing, and the ceiling admits the token it
        /// granted (an activation by the same minter succeeds).
        #[test]
        fn a_grant_is_a_fixed_point_and_is_admitted((b, asked) in bound_and_request()) {
            let b = Bounds { template: false, ..b };
            let minter = Minter::of(&b);
            let ceiling = minter.ceiling();
            if let Ok(granted) = narrow(&ceiling, asked) {
                let again = narrow(&ceiling, granted.clone()).expect("a grant narrows to itself");
                prop_assert_eq!(&again.scopes, &granted.scopes);
                prop_assert_eq!(&again.ips, &granted.ips);
                prop_assert_eq!(&again.limits, &granted.limits);
                prop_assert_eq!(&again.enterprise, &granted.enterprise);
                prop_assert_eq!(again.expiry.at(), granted.expiry.at());
                prop_assert!(admits(&ceiling, &record_of(&granted)).is_ok());
            }
        }

        /// A ceiling admits an existing token exactly when the token lies within it.
        #[test]
        fn admission_matches_containment((b, g) in bound_and_request()) {
            let b = Bounds { template: false, ..b };
            let record = record_of(&g);
            let within = assert_within(&Grant::of_record(&record), &b).is_ok();
            prop_assert_eq!(admits(&Minter::of(&b).ceiling(), &record).is_ok(), within);
        }
    }

    fn caller_bounds() -> Bounds {
        Bounds {
            template: false,
            scopes: ScopeSet::from_trusted(["wallet_view", "wallet_spend"]),
            admin: false,
            expires_at: Some(Timestamp::from_secs(1_500)),
            ips: IpRestriction::parse(&["10.0.0.0/8".to_owned()], "ip_restrict").unwrap(),
            limits: TokenLimits::parse(
                &[("btc".into(), "1000".into()), ("eth".into(), "50".into())],
                None,
                "token_limits",
            )
            .unwrap(),
            enterprise: Some(EnterpriseId::parse("ent-1", "enterprise_id").unwrap()),
        }
    }

    fn asked(scopes: &[&str]) -> Grant {
        Grant {
            scopes: ScopeSet::from_trusted(scopes.iter().copied()),
            admin: false,
            expiry: Expiry::Default(Timestamp::from_secs(1_900)),
            ips: IpRestriction::default(),
            limits: TokenLimits::default(),
            limits_complete: false,
            enterprise: None,
        }
    }

    #[test]
    fn unset_dimensions_are_inherited_and_the_default_lifetime_is_cut() {
        let b = caller_bounds();
        let g = narrow(&Minter::of(&b).ceiling(), asked(&["wallet_view"])).unwrap();
        assert_eq!(g.expiry, Expiry::Default(Timestamp::from_secs(1_500)));
        assert_eq!(g.ips, b.ips);
        assert_eq!(g.limits, b.limits);
        assert_eq!(g.enterprise, b.enterprise);
    }

    #[test]
    fn a_caller_refusal_names_the_field() {
        let b = caller_bounds();
        let mut late = asked(&["wallet_view"]);
        late.expiry = Expiry::Asked {
            at: Timestamp::from_secs(1_501),
            field: "expires_at",
        };
        let err = narrow(&Minter::of(&b).ceiling(), late).unwrap_err();
        assert_eq!(err.code, ErrorCode::PermissionDenied);
        assert_eq!(err.reason, reason::EXCEEDS_CALLER);
        assert!(
            err.metadata
                .contains(&("field".into(), "expires_at".into()))
        );
    }

    #[test]
    fn an_unreadable_bound_refuses_everything() {
        let mut b = caller_bounds();
        b.ips = IpRestriction::from_trusted(&["10.0.0.0/8", "garbage"]);
        let err = narrow(&Minter::of(&b).ceiling(), asked(&["wallet_view"])).unwrap_err();
        assert_eq!(err.reason, reason::UNREADABLE_RESTRICTION);
    }
}
