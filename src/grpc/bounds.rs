//! Caps on the repeated fields of a request, checked first: a request over a cap is refused
//! with INVALID_ARGUMENT (reason `TOO_MANY_ITEMS`) before it is authenticated or any element is
//! parsed, so the work one request can cause stays bounded by configuration, not by its size.

use std::num::NonZeroUsize;

use crate::config::RequestSettings;
use crate::error::{Error, Result, Violations, reason};
use crate::proto::v1 as pb;

/// The configured caps, and the checks of each RPC's request against them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestBounds(RequestSettings);

impl From<RequestSettings> for RequestBounds {
    fn from(settings: RequestSettings) -> Self {
        Self(settings)
    }
}

impl RequestBounds {
    /// Checks a CreateToken request.
    pub fn create_token(&self, req: &pb::CreateTokenRequest) -> Result<()> {
        let mut v = Violations::default();
        v.check(cap("scopes", req.scopes.len(), self.0.max_scopes));
        v.check(cap(
            "ip_restrict",
            req.ip_restrict.len(),
            self.0.max_ip_entries,
        ));
        self.limits(&mut v, "token_limits", req.token_limits.as_ref());
        v.finish()
    }

    /// Checks an UpdateToken request.
    pub fn update_token(&self, req: &pb::UpdateTokenRequest) -> Result<()> {
        self.mask(req.update_mask.as_ref())
    }

    /// Checks a VerifyToken request.
    pub fn verify_token(&self, req: &pb::VerifyTokenRequest) -> Result<()> {
        cap(
            "required_scopes",
            req.required_scopes.len(),
            self.0.max_scopes,
        )
    }

    /// Checks a CreateTemplate request.
    pub fn create_template(&self, req: &pb::CreateTemplateRequest) -> Result<()> {
        let mut v = Violations::default();
        v.check(cap(
            "token_scopes",
            req.token_scopes.len(),
            self.0.max_scopes,
        ));
        v.check(cap(
            "allowed_ips",
            req.allowed_ips.len(),
            self.0.max_ip_entries,
        ));
        self.limits(&mut v, "token_limits", req.token_limits.as_ref());
        v.finish()
    }

    /// Checks an UpdateTemplate request.
    pub fn update_template(&self, req: &pb::UpdateTemplateRequest) -> Result<()> {
        let mut v = Violations::default();
        if let Some(template) = &req.template {
            v.check(cap(
                "template.token_scopes",
                template.token_scopes.len(),
                self.0.max_scopes,
            ));
            v.check(cap(
                "template.allowed_ips",
                template.allowed_ips.len(),
                self.0.max_ip_entries,
            ));
            self.limits(
                &mut v,
                "template.token_limits",
                template.token_limits.as_ref(),
            );
        }
        v.check(self.mask(req.update_mask.as_ref()));
        v.finish()
    }

    fn limits(&self, v: &mut Violations, field: &str, limits: Option<&pb::TokenLimits>) {
        if let Some(limits) = limits {
            v.check(cap(
                &format!("{field}.spending_limits"),
                limits.spending_limits.len(),
                self.0.max_spending_limits,
            ));
        }
    }

    fn mask(&self, mask: Option<&prost_types::FieldMask>) -> Result<()> {
        mask.map_or(Ok(()), |m| {
            cap("update_mask.paths", m.paths.len(), self.0.max_mask_paths)
        })
    }
}

/// Refuses `count` entries in `field` when they are more than `max`.
fn cap(field: &str, count: usize, max: NonZeroUsize) -> Result<()> {
    if count <= max.get() {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        reason::TOO_MANY_ITEMS,
        format!("{field} has {count} entries; at most {max} are allowed"),
    )
    .with_meta("field", field)
    .with_meta("max", max.to_string())
    .with_meta("count", count.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> RequestBounds {
        let n = |n| NonZeroUsize::new(n).expect("nonzero");
        RequestBounds(RequestSettings {
            max_ip_entries: n(2),
            max_spending_limits: n(1),
            max_scopes: n(3),
            max_mask_paths: n(1),
        })
    }

    fn strings(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn the_cap_is_accepted_and_one_more_is_refused_with_field_max_and_count() {
        let at_cap = pb::CreateTokenRequest {
            scopes: strings(3),
            ip_restrict: strings(2),
            ..Default::default()
        };
        bounds().create_token(&at_cap).unwrap();
        let over = pb::CreateTokenRequest {
            ip_restrict: strings(3),
            ..at_cap
        };
        let err = bounds().create_token(&over).unwrap_err();
        assert_eq!(err.reason, reason::TOO_MANY_ITEMS);
        assert_eq!(err.violations[0].field, "ip_restrict");
        let meta = |k: &str| {
            err.metadata
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(meta("field").as_deref(), Some("ip_restrict"));
        assert_eq!(meta("max").as_deref(), Some("2"));
        assert_eq!(meta("count").as_deref(), Some("3"));
    }

    #[test]
    fn every_field_over_its_cap_is_named() {
        let limit = pb::SpendingLimit::default();
        let template = pb::Template {
            token_scopes: strings(4),
            allowed_ips: strings(3),
            token_limits: Some(pb::TokenLimits {
                spending_limits: vec![limit.clone(), limit],
                all_erc20_tokens_limit: None,
            }),
            ..Default::default()
        };
        let req = pb::UpdateTemplateRequest {
            template: Some(template),
            update_mask: Some(prost_types::FieldMask { paths: strings(2) }),
        };
        let err = bounds().update_template(&req).unwrap_err();
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "template.token_scopes",
                "template.allowed_ips",
                "template.token_limits.spending_limits",
                "update_mask.paths"
            ]
        );
    }
}
