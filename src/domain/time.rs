//! Time as stored: microseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// From whole seconds since the epoch.
    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// Whole seconds since the epoch (rounded down).
    pub fn as_secs(&self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Whole seconds since the epoch, rounded up.
    pub fn ceil_secs(&self) -> i64 {
        self.0.div_euclid(1_000_000) + i64::from(self.0.rem_euclid(1_000_000) != 0)
    }

    /// This time plus `secs` seconds.
    pub fn plus_secs(&self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// RFC 3339 in UTC, to the second (for messages).
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp(self.as_secs(), 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| format!("{} s after the epoch", self.as_secs()))
    }
}
