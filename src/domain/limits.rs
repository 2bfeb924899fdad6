//! Spending limits: per-coin and all-ERC-20 caps, as exact decimal integers in base units.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, reason};

/// Spending limits as they arrive in a request, before validation ([`TokenLimits::parse`]).
#[derive(Debug, Clone, Default)]
pub struct LimitsInput {
    /// (coin, tx_value_limit) pairs.
    pub spending: Vec<(String, String)>,
    /// The all-ERC-20 limit, when given.
    pub all_erc20: Option<String>,
}

/// Most digits an amount may have (enough for any 256-bit value).
pub const MAX_AMOUNT_DIGITS: usize = 78;

/// A non-negative decimal integer amount in base units, without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(String);

impl Amount {
    /// Parses a decimal integer string of 1-78 digits; leading zeros are dropped.
    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_AMOUNT_DIGITS
            && raw.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            let shown = crate::error::truncate(raw, 90);
            return Err(Error::invalid(
                field,
                reason::INVALID_LIMIT,
                format!("{shown:?} is not a non-negative decimal integer of at most {MAX_AMOUNT_DIGITS} digits"),
            )
            .with_meta("value", shown));
        }
        let trimmed = raw.trim_start_matches('0');
        Ok(Self(if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        }))
    }

    /// The amount as a decimal string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Amount {
    /// Numeric order: without leading zeros, a longer string is a larger number.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

/// A limit for one coin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendingLimit {
    /// Lowercase ticker.
    pub coin: String,
    /// Most one transaction may move.
    pub tx_value_limit: Amount,
}

/// The limits attached to a token or template.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenLimits {
    /// Per-coin limits, each coin once.
    #[serde(default)]
    pub spending_limits: Vec<SpendingLimit>,
    /// Cap for any ERC-20 token transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_erc20_tokens_limit: Option<Amount>,
}

impl TokenLimits {
    /// Validates limits given as (coin, amount) pairs plus an optional ERC-20 cap. Field paths are
    /// reported under `field` (e.g. `token_limits.spending_limits[1].coin`). A coin given again
    /// is reported at each repeat (the first stays); the check is a hash lookup, linear overall.
    pub fn parse(spending: &[(String, String)], erc20: Option<&str>, field: &str) -> Result<Self> {
        let mut violations = crate::error::Violations::default();
        let mut limits = Vec::with_capacity(spending.len());
        let mut coins: HashSet<String> = HashSet::with_capacity(spending.len());
        for (i, (coin, amount)) in spending.iter().enumerate() {
            let prefix = format!("{field}.spending_limits[{i}]");
            let coin = violations.check(parse_coin(coin, &format!("{prefix}.coin")));
            let amount =
                violations.check(Amount::parse(amount, &format!("{prefix}.tx_value_limit")));
            if let (Some(coin), Some(amount)) = (coin, amount) {
                if !coins.insert(coin.clone()) {
                    violations.check::<()>(Err(Error::invalid(
                        format!("{prefix}.coin"),
                        reason::DUPLICATE_COIN,
                        format!("coin {coin:?} has more than one spending limit"),
                    )
                    .with_meta("coin", coin.clone())));
                } else {
                    limits.push(SpendingLimit {
                        coin,
                        tx_value_limit: amount,
                    });
                }
            }
        }
        let erc20 = match erc20 {
            Some(raw) => violations.check(Amount::parse(
                raw,
                &format!("{field}.all_erc20_tokens_limit.tx_value_limit"),
            )),
            None => None,
        };
        violations.finish()?;
        Ok(Self {
            spending_limits: limits,
            all_erc20_tokens_limit: erc20,
        })
    }

    /// Whether there are no limits at all.
    pub fn is_empty(&self) -> bool {
        self.spending_limits.is_empty() && self.all_erc20_tokens_limit.is_none()
    }

    /// The limit for `coin`, if any.
    pub fn limit_for(&self, coin: &str) -> Option<&Amount> {
        self.spending_limits
            .iter()
            .find(|l| l.coin == coin)
            .map(|l| &l.tx_value_limit)
    }
}

/// Validates a coin ticker: 1-32 lowercase letters, digits, `.`, `_`, `-` or `:`; upper case is
/// folded to lower case.
fn parse_coin(raw: &str, field: &str) -> Result<String> {
    let coin = raw.trim().to_ascii_lowercase();
    let ok = !coin.is_empty()
        && coin.len() <= 32
        && coin.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | ':')
        });
    if ok {
        Ok(coin)
    } else {
        let shown = crate::error::truncate(raw, 40);
        Err(Error::invalid(
            field,
            reason::INVALID_COIN,
            format!("{shown:?} is not a coin ticker"),
        )
        .with_meta("coin", shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: &str, a: &str) -> (String, String) {
        (c.to_owned(), a.to_owned())
    }

    #[test]
    fn amounts_compare_numerically() {
        let a = Amount::parse("0099", "f").unwrap();
        let b = Amount::parse("100", "f").unwrap();
        assert_eq!(a.as_str(), "99");
        assert!(a < b);
        assert!(Amount::parse(&"9".repeat(78), "f").is_ok());
        assert_eq!(
            Amount::parse(&"9".repeat(79), "f").unwrap_err().reason,
            reason::INVALID_LIMIT
        );
        assert_eq!(
            Amount::parse("-1", "f").unwrap_err().reason,
            reason::INVALID_LIMIT
        );
        assert_eq!(
            Amount::parse("1.5", "f").unwrap_err().reason,
            reason::INVALID_LIMIT
        );
    }

    #[test]
    fn duplicate_coins_are_refused() {
        let err = TokenLimits::parse(&[pair("btc", "1"), pair("BTC", "2")], None, "token_limits")
            .unwrap_err();
        assert_eq!(err.reason, reason::DUPLICATE_COIN);
        assert_eq!(
            err.violations[0].field,
            "token_limits.spending_limits[1].coin"
        );
    }

    /// The first limit of a coin is kept, in request order; each repeat is reported at its own
    /// index.
    #[test]
    fn duplicates_keep_the_first_and_are_each_reported() {
        let ok = TokenLimits::parse(&[pair("eth", "5"), pair("btc", "1")], None, "l").unwrap();
        let coins: Vec<&str> = ok.spending_limits.iter().map(|l| l.coin.as_str()).collect();
        assert_eq!(coins, ["eth", "btc"]);
        let err = TokenLimits::parse(
            &[
                pair("eth", "5"),
                pair("btc", "1"),
                pair("ETH", "6"),
                pair("sol", "2"),
                pair("btc", "3"),
                pair("eth", "7"),
            ],
            None,
            "token_limits",
        )
        .unwrap_err();
        assert_eq!(err.reason, reason::DUPLICATE_COIN);
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "token_limits.spending_limits[2].coin",
                "token_limits.spending_limits[4].coin",
                "token_limits.spending_limits[5].coin"
            ]
        );
        assert_eq!(
            err.metadata,
            [("coin".to_owned(), "eth".to_owned())],
            "the first duplicate names its coin"
        );
    }

    /// Many distinct coins parse in order: the duplicate check is a hash set, not a scan of
    /// the limits kept so far.
    #[test]
    fn many_distinct_coins_parse_in_order() {
        let spending: Vec<(String, String)> =
            (0..50_000).map(|i| pair(&format!("c{i}"), "1")).collect();
        let limits = TokenLimits::parse(&spending, None, "l").unwrap();
        assert_eq!(limits.spending_limits.len(), 50_000);
        assert_eq!(limits.spending_limits[49_999].coin, "c49999");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let err = TokenLimits::parse(
            &[pair("btc", "x"), pair("", "1")],
            Some("y"),
            "token_limits",
        )
        .unwrap_err();
        assert_eq!(err.violations.len(), 3);
    }
}
