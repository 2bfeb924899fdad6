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

    /// As a protobuf timestamp.
    pub fn to_proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.div_euclid(1_000_000),
            nanos: i32::try_from(self.0.rem_euclid(1_000_000) * 1000).unwrap_or(0),
        }
    }

    /// RFC 3339 in UTC, to the second (for messages).
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp(self.as_secs(), 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| format!("{} s after the epoch", self.as_secs()))
    }

    /// From a protobuf timestamp (sub-microsecond precision is dropped).
    pub fn from_proto(ts: &prost_types::Timestamp) -> Self {
        Self(
            ts.seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(ts.nanos) / 1000),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_keeps_microseconds() {
        let t = Timestamp(1_764_590_000_123_456);
        assert_eq!(Timestamp::from_proto(&t.to_proto()), t);
        assert_eq!(t.as_secs(), 1_764_590_000);
    }
}
