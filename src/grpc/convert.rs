//! Conversions between protobuf messages and domain types: records to messages, times, reasons
//! and statuses. Requests become typed commands in [`super::requests`].

use crate::domain::{
    LimitsInput, StoredStatus, TemplateRecord, Timestamp, TokenLimits, TokenRecord,
    TokenStateChange, TokenStatus,
};
use crate::issuance::InactiveReason;
use crate::issuance::change_stream::WatchItem;
use crate::issuance::lifecycle::available_actions;
use crate::proto::v1 as pb;

/// Times to and from `google.protobuf.Timestamp`.
pub trait ProtoTime {
    /// As a protobuf timestamp.
    fn into_proto(self) -> prost_types::Timestamp;
}

impl ProtoTime for Timestamp {
    fn into_proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.div_euclid(1_000_000),
            nanos: i32::try_from(self.0.rem_euclid(1_000_000) * 1000).unwrap_or(0),
        }
    }
}

/// A time from a protobuf timestamp (sub-microsecond precision is dropped).
pub fn timestamp_from_proto(ts: &prost_types::Timestamp) -> Timestamp {
    Timestamp(
        ts.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(ts.nanos) / 1000),
    )
}

/// Most bytes the items of one list response may take encoded: a page ends early (with a
/// `next_page_token`) rather than outgrow the 4 MiB a default gRPC client accepts. The half MiB
/// left is room for the page token and the message framing.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

/// The items of one list response: `records` converted by `to_proto` for as long as their
/// encoded size (as repeated field 1 of the response) stays within `budget`, and the page token
/// that follows them — `next_page_token` when all fit, else `resume_after(last included record)`.
/// The first record is always included, so paging always progresses.
pub fn fit_page<R, M: prost::Message>(
    records: &[R],
    budget: usize,
    next_page_token: String,
    mut to_proto: impl FnMut(&R) -> M,
    resume_after: impl Fn(&R) -> String,
) -> (Vec<M>, String) {
    let mut items = Vec::with_capacity(records.len());
    let mut used = 0;
    for record in records {
        let item = to_proto(record);
        let size = prost::encoding::message::encoded_len(1, &item);
        if !items.is_empty() && used + size > budget {
            let next = resume_after(&records[items.len() - 1]);
            return (items, next);
        }
        used += size;
        items.push(item);
    }
    (items, next_page_token)
}

/// The protobuf form of a token whose status is judged at `now` (the core's expiry clock).
pub fn token_to_proto(record: &TokenRecord, now: Timestamp) -> pb::Token {
    let status = record.status_at(now);
    let actions = available_actions(status);
    pb::Token {
        id: record.id.to_string(),
        user_id: record.user_id.as_str().to_owned(),
        label: record.label.as_str().to_owned(),
        description: record.description.as_str().to_owned(),
        scopes: record.scopes.iter().map(str::to_owned).collect(),
        enterprise_id: record
            .enterprise_id
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default(),
        ip_restrict: record.ip_restrict.to_strings(),
        token_limits: (!record.limits.is_empty()).then(|| limits_to_proto(&record.limits)),
        admin: record.admin,
        template_id: record
            .template_id
            .map(|t| t.to_string())
            .unwrap_or_default(),
        status: status_to_proto(status) as i32,
        checksum: record.checksum.clone(),
        key_id: record.key_id.to_string(),
        created_by: record.created_by.as_str().to_owned(),
        updated_by: record.updated_by.as_str().to_owned(),
        created_at: Some(record.created_at.into_proto()),
        updated_at: Some(record.updated_at.into_proto()),
        expires_at: Some(record.expires_at.into_proto()),
        last_used_at: record.last_used_at.map(ProtoTime::into_proto),
        last_used_ip: record
            .last_used_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        available_actions: Some(pb::AvailableActions {
            activate: actions.activate,
            suspend: actions.suspend,
            revoke: actions.revoke,
            delete: actions.delete,
        }),
        template_version: record.template_version,
        parent_id: record
            .parent_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// The protobuf form of a template.
pub fn template_to_proto(record: &TemplateRecord) -> pb::Template {
    pb::Template {
        id: record.id.to_string(),
        name: record.name.as_str().to_owned(),
        user_id: record.user_id.to_string(),
        enterprise_id: record
            .enterprise_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        description: record.description.as_str().to_owned(),
        token_scopes: record.scopes.iter().map(str::to_owned).collect(),
        allowed_ips: record.allowed_ips.to_strings(),
        token_limits: (!record.limits.is_empty()).then(|| limits_to_proto(&record.limits)),
        default_duration_seconds: record.default_duration_secs,
        version: record.version,
        created_at: Some(record.created_at.into_proto()),
        updated_at: Some(record.updated_at.into_proto()),
        created_by: record.created_by.to_string(),
        updated_by: record.updated_by.to_string(),
    }
}

/// The protobuf form of limits.
pub fn limits_to_proto(limits: &TokenLimits) -> pb::TokenLimits {
    pb::TokenLimits {
        spending_limits: limits
            .spending_limits
            .iter()
            .map(|l| pb::SpendingLimit {
                coin: l.coin.clone(),
                tx_value_limit: l.tx_value_limit.as_str().to_owned(),
            })
            .collect(),
        all_erc20_tokens_limit: limits.all_erc20_tokens_limit.as_ref().map(|a| {
            pb::AllErc20TokensLimit {
                tx_value_limit: a.as_str().to_owned(),
            }
        }),
    }
}

/// Request limits, unvalidated, for the core to parse.
pub fn limits_from_proto(limits: Option<pb::TokenLimits>) -> Option<LimitsInput> {
    limits.map(|l| LimitsInput {
        spending: l
            .spending_limits
            .into_iter()
            .map(|s| (s.coin, s.tx_value_limit))
            .collect(),
        all_erc20: l.all_erc20_tokens_limit.map(|a| a.tx_value_limit),
    })
}

/// The protobuf status enum.
pub fn status_to_proto(status: TokenStatus) -> pb::TokenStatus {
    match status {
        TokenStatus::Active => pb::TokenStatus::Active,
        TokenStatus::Suspended => pb::TokenStatus::Suspended,
        TokenStatus::Revoked => pb::TokenStatus::Revoked,
        TokenStatus::Expired => pb::TokenStatus::Expired,
    }
}

/// A change stream message; `key_set_version` is this server's, sent on every message (a
/// lower bound: a catch-up read from the log can report a key change before this server's feed
/// reloaded it, and the feed announces it again, with the higher version, once it has).
pub fn watch_item_to_proto(item: WatchItem, key_set_version: u64) -> pb::WatchTokenChangesResponse {
    let (changes, keys_changed, cursor, now) = match item {
        WatchItem::Changes {
            changes,
            keys_changed,
            cursor,
        } => (changes, keys_changed, cursor, Timestamp::now()),
        WatchItem::Heartbeat { cursor, now } => (Vec::new(), false, Some(cursor), now),
    };
    pb::WatchTokenChangesResponse {
        cursor: cursor.map(|cursor| cursor.encode()).unwrap_or_default(),
        changes: changes.iter().map(state_change_to_proto).collect(),
        keys_changed,
        server_time: Some(now.into_proto()),
        key_set_version,
    }
}

/// One token's state in a change stream.
fn state_change_to_proto(change: &TokenStateChange) -> pb::TokenStateChange {
    let token = &change.token;
    let status = match token.status {
        StoredStatus::Active => pb::TokenStatus::Active,
        StoredStatus::Suspended => pb::TokenStatus::Suspended,
        StoredStatus::Revoked => pb::TokenStatus::Revoked,
    };
    pb::TokenStateChange {
        token_id: token.id.to_string(),
        status: status.into(),
        deleted: token.deleted,
        expires_at: Some(token.expires_at.into_proto()),
        position: change.position,
    }
}

/// A status filter from the protobuf enum: `None` for UNSPECIFIED (any), `Err` for unknown numbers.
pub fn status_filter_from_proto(value: i32) -> Result<Option<TokenStatus>, i32> {
    match pb::TokenStatus::try_from(value) {
        Ok(pb::TokenStatus::Unspecified) => Ok(None),
        Ok(pb::TokenStatus::Active) => Ok(Some(TokenStatus::Active)),
        Ok(pb::TokenStatus::Suspended) => Ok(Some(TokenStatus::Suspended)),
        Ok(pb::TokenStatus::Revoked) => Ok(Some(TokenStatus::Revoked)),
        Ok(pb::TokenStatus::Expired) => Ok(Some(TokenStatus::Expired)),
        Err(_) => Err(value),
    }
}

/// The protobuf inactive reason.
pub fn reason_to_proto(reason: InactiveReason) -> pb::InactiveReason {
    match reason {
        InactiveReason::Malformed => pb::InactiveReason::Malformed,
        InactiveReason::BadSignature => pb::InactiveReason::BadSignature,
        InactiveReason::UnknownKey => pb::InactiveReason::UnknownKey,
        InactiveReason::Expired => pb::InactiveReason::Expired,
        InactiveReason::NotYetValid => pb::InactiveReason::NotYetValid,
        InactiveReason::Revoked => pb::InactiveReason::Revoked,
        InactiveReason::Suspended => pb::InactiveReason::Suspended,
        InactiveReason::UnknownToken => pb::InactiveReason::UnknownToken,
        InactiveReason::IpNotAllowed => pb::InactiveReason::IpNotAllowed,
        InactiveReason::InsufficientScope => pb::InactiveReason::InsufficientScope,
        InactiveReason::InvalidClaims => pb::InactiveReason::InvalidClaims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_keeps_microseconds() {
        let t = Timestamp(1_764_590_000_123_456);
        assert_eq!(timestamp_from_proto(&t.into_proto()), t);
    }

    fn scope(n: usize) -> pb::Scope {
        pb::Scope {
            name: format!("s{n}"),
            description: "x".repeat(100),
            deprecated: false,
        }
    }

    #[test]
    fn a_page_ends_before_its_items_outgrow_the_budget() {
        let records: Vec<usize> = (0..10).collect();
        let one = prost::encoding::message::encoded_len(1, &scope(0));
        let (items, next) = fit_page(
            &records,
            3 * one,
            "end".into(),
            |&n| scope(n),
            |n| format!("after {n}"),
        );
        assert_eq!(items.len(), 3);
        assert_eq!(next, "after 2");
        let response = pb::ListScopesResponse { scopes: items };
        assert!(prost::Message::encoded_len(&response) <= 3 * one);

        let (all, next) = fit_page(
            &records,
            100 * one,
            "end".into(),
            |&n| scope(n),
            |_| unreachable!("everything fits"),
        );
        assert_eq!((all.len(), next.as_str()), (10, "end"));

        let (first, next) = fit_page(&records, 1, String::new(), |&n| scope(n), |n| n.to_string());
        assert_eq!(
            (first.len(), next.as_str()),
            (1, "0"),
            "one item always goes out"
        );
    }
}
