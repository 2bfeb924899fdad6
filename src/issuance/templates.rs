//! The template core: creating, reading, listing, updating (FieldMask, versioned) and deleting
//! templates, and the [`ceiling`] a template sets on the tokens minted from it.
//!
//! Updating or deleting a template never touches tokens already minted from it.

use std::sync::Arc;

use crate::domain::Environment;
use crate::domain::{
    Description, EnterpriseId, IpRestriction, ScopeCatalog, ScopeSet, TemplateId, TemplateName,
    TemplateRecord, Timestamp, TokenLimits,
};
use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::Caller;
use crate::issuance::authority::{Bounder, Ceiling, EnterpriseBound};
use crate::issuance::paging::{Page, Resume};
use crate::issuance::rules;
use crate::store::Store;
use crate::store::templates::TemplateWriteError;

/// Fields a template update may name.
pub const UPDATABLE_FIELDS: &[&str] = &[
    "name",
    "description",
    "enterprise_id",
    "token_scopes",
    "allowed_ips",
    "token_limits",
    "default_duration_seconds",
];

/// A template's caller-settable fields, each parsed (CreateTemplate; parsed at the edge by
/// `grpc::requests::template_fields`).
#[derive(Debug, Clone)]
pub struct TemplateFields {
    /// The name, unique among the user's templates.
    pub name: TemplateName,
    /// The enterprise the template (and every token minted from it) is bound to, if any.
    pub enterprise: Option<EnterpriseId>,
    /// The description.
    pub description: Description,
    /// The scopes tokens minted from it may hold.
    pub scopes: ScopeSet,
    /// The networks tokens minted from it are restricted to (unrestricted: none).
    pub ips: IpRestriction,
    /// The spending limits of tokens minted from it.
    pub limits: TokenLimits,
    /// The lifetime of tokens minted from it when they ask none, in seconds (0: the service's).
    pub default_duration_secs: i64,
}

/// The fields an UpdateTemplate changes, each parsed; `None` leaves a field as stored.
#[derive(Debug, Clone, Default)]
pub struct TemplatePatch {
    /// A new name.
    pub name: Option<TemplateName>,
    /// A new enterprise binding (`Some(None)`: none).
    pub enterprise: Option<Option<EnterpriseId>>,
    /// A new description.
    pub description: Option<Description>,
    /// New scopes.
    pub scopes: Option<ScopeSet>,
    /// New networks.
    pub ips: Option<IpRestriction>,
    /// New spending limits.
    pub limits: Option<TokenLimits>,
    /// A new default lifetime in seconds.
    pub default_duration_secs: Option<i64>,
}

/// A created or updated template and the deprecated scopes it holds.
#[derive(Debug)]
pub struct SavedTemplate {
    /// The stored template.
    pub record: TemplateRecord,
    /// Deprecated scopes among its scopes.
    pub deprecated_scopes: Vec<String>,
}

/// One page of ListTemplates.
#[derive(Debug)]
pub struct TemplatePage {
    /// Templates, newest first.
    pub templates: Vec<TemplateRecord>,
    /// Token of the next page; empty when this is the last.
    pub next_page_token: String,
    /// The next page's token should the page end early, after any of `templates`.
    pub resume: Resume,
}

/// The ceiling a template sets on the tokens minted from it (see [`crate::issuance::authority`]):
/// its scopes, networks, limits and enterprise; it does not bound lifetime or admin.
pub fn ceiling(template: &TemplateRecord) -> Ceiling<'_> {
    Ceiling {
        by: Bounder::Template(&template.id),
        scopes: &template.scopes,
        admin: true,
        expires_at: None,
        ips: Some(&template.allowed_ips),
        limits: Some(&template.limits),
        enterprise: EnterpriseBound::Only(template.enterprise_id.as_ref()),
        inherit_scopes: true,
    }
}

/// The template core, shared by the TemplateService handlers and CreateToken.
pub struct TemplateManager {
    store: Store,
    catalog: Arc<ScopeCatalog>,
    environment: Environment,
    max_lifetime_secs: i64,
}

impl TemplateManager {
    /// Assembles the template core.
    pub fn new(
        store: Store,
        catalog: Arc<ScopeCatalog>,
        environment: Environment,
        max_lifetime_secs: i64,
    ) -> Self {
        Self {
            store,
            catalog,
            environment,
            max_lifetime_secs,
        }
    }

    /// The scope catalog requests are parsed against.
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// The longest default lifetime a template may set, in seconds.
    pub fn max_lifetime_secs(&self) -> i64 {
        self.max_lifetime_secs
    }

    /// `caller`'s template `id`, or NOT_FOUND.
    pub async fn owned(&self, caller: &Caller, id: TemplateId) -> Result<TemplateRecord> {
        self.store
            .find_template(id, &caller.user_id)
            .await?
            .ok_or_else(|| Error::template_not_found(id))
    }

    /// Rules on the final values: scopes present, production rules, the caller may grant the
    /// scopes (checked when they are new or changed) and belongs to the enterprise.
    async fn check_rules(
        &self,
        caller: &Caller,
        fields: &TemplateFields,
        scopes_changed: bool,
        enterprise_changed: bool,
    ) -> Result<()> {
        rules::require_scopes(&fields.scopes, "token_scopes")?;
        rules::check_environment(
            self.environment,
            &fields.scopes,
            &fields.ips,
            "token_scopes",
            "allowed_ips",
        )?;
        if scopes_changed {
            caller.require_can_grant(&fields.scopes, false)?;
        }
        if enterprise_changed && let Some(enterprise) = &fields.enterprise {
            rules::require_member(&self.store, enterprise, &caller.user_id).await?;
        }
        Ok(())
    }

    /// Creates a template for `caller`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.template_id))]
    pub async fn create(&self, caller: &Caller, fields: TemplateFields) -> Result<SavedTemplate> {
        self.check_rules(caller, &fields, true, true).await?;
        let now = Timestamp::now();
        let record = TemplateRecord {
            id: TemplateId::generate(),
            user_id: caller.user_id.clone(),
            name: fields.name,
            enterprise_id: fields.enterprise,
            description: fields.description,
            scopes: fields.scopes,
            allowed_ips: fields.ips,
            limits: fields.limits,
            default_duration_secs: fields.default_duration_secs,
            version: 1,
            created_at: now,
            updated_at: now,
            created_by: caller.user_id.clone(),
            updated_by: caller.user_id.clone(),
        };
        tracing::Span::current()
            .record("tokenmint.template_id", tracing::field::display(record.id));
        self.store
            .insert_template(&record)
            .await
            .map_err(|e| write_error(e, &record, None))?;
        tracing::info!(template_id = %record.id, "template created");
        let deprecated_scopes = self.catalog.deprecated_in(&record.scopes);
        Ok(SavedTemplate {
            record,
            deprecated_scopes,
        })
    }

    /// A page of `caller`'s templates, optionally of one enterprise.
    pub async fn list(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
        enterprise: Option<EnterpriseId>,
    ) -> Result<TemplatePage> {
        let query = format!(
            "templates:{}",
            enterprise
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        let page = Page::parse(page_size, page_token, query)?;
        let mut templates = self
            .store
            .list_templates(
                &caller.user_id,
                enterprise.as_ref(),
                page.cursor.clone(),
                page.fetch_limit(),
            )
            .await?;
        let next_page_token = page.finish(&mut templates, |t| (t.created_at, t.id.to_string()));
        Ok(TemplatePage {
            templates,
            next_page_token,
            resume: page.resume(),
        })
    }

    /// Applies `patch` to `caller`'s template `id`. A non-zero `expected_version` must match the
    /// stored one.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.template_id = %id))]
    pub async fn update(
        &self,
        caller: &Caller,
        id: TemplateId,
        patch: TemplatePatch,
        expected_version: i64,
    ) -> Result<SavedTemplate> {
        for attempt in 1.. {
            let current = self.owned(caller, id).await?;
            if expected_version != 0 && expected_version != current.version {
                return Err(version_mismatch(&current, expected_version));
            }
            let patch = patch.clone();
            let fields = TemplateFields {
                name: patch.name.unwrap_or_else(|| current.name.clone()),
                enterprise: patch
                    .enterprise
                    .unwrap_or_else(|| current.enterprise_id.clone()),
                description: patch
                    .description
                    .unwrap_or_else(|| current.description.clone()),
                scopes: patch.scopes.unwrap_or_else(|| current.scopes.clone()),
                ips: patch.ips.unwrap_or_else(|| current.allowed_ips.clone()),
                limits: patch.limits.unwrap_or_else(|| current.limits.clone()),
                default_duration_secs: patch
                    .default_duration_secs
                    .unwrap_or(current.default_duration_secs),
            };
            let scopes_changed = fields.scopes != current.scopes;
            let enterprise_changed = fields.enterprise != current.enterprise_id;
            self.check_rules(caller, &fields, scopes_changed, enterprise_changed)
                .await?;
            let record = TemplateRecord {
                name: fields.name,
                enterprise_id: fields.enterprise,
                description: fields.description,
                scopes: fields.scopes,
                allowed_ips: fields.ips,
                limits: fields.limits,
                default_duration_secs: fields.default_duration_secs,
                version: current.version + 1,
                updated_at: Timestamp::now(),
                updated_by: caller.user_id.clone(),
                ..current.clone()
            };
            match self.store.update_template(&record).await {
                Ok(()) => {
                    tracing::info!(template_id = %id, version = record.version, "template updated");
                    let deprecated_scopes = self.catalog.deprecated_in(&record.scopes);
                    return Ok(SavedTemplate {
                        record,
                        deprecated_scopes,
                    });
                }
                Err(TemplateWriteError::Conflict) if expected_version == 0 && attempt < 3 => {
                    continue;
                }
                Err(e) => return Err(write_error(e, &record, Some(expected_version))),
            }
        }
        Err(Error::internal("unreachable: update loop ended"))
    }

    /// Deletes `caller`'s template `id`. Tokens minted from it are not touched.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.template_id = %id))]
    pub async fn delete(&self, caller: &Caller, id: TemplateId) -> Result<()> {
        if self.store.delete_template(id, &caller.user_id).await? {
            tracing::info!(template_id = %id, "template deleted");
            Ok(())
        } else {
            Err(Error::template_not_found(id))
        }
    }
}

/// Parses a template's `default_duration_seconds`: not negative (0: the service's default), at
/// most `max_lifetime_secs`.
pub fn parse_default_duration(secs: i64, max_lifetime_secs: i64) -> Result<i64> {
    let field = "default_duration_seconds";
    if secs < 0 {
        return Err(Error::invalid(
            field,
            reason::INVALID_LIFETIME,
            format!("{field} must not be negative"),
        ));
    }
    if secs > max_lifetime_secs {
        return Err(Error::invalid(
            field,
            reason::LIFETIME_TOO_LONG,
            format!("{field} may be at most {max_lifetime_secs} seconds"),
        )
        .with_meta("max_lifetime_seconds", max_lifetime_secs.to_string()));
    }
    Ok(secs)
}

fn version_mismatch(current: &TemplateRecord, expected: i64) -> Error {
    Error::new(
        ErrorCode::FailedPrecondition,
        reason::TEMPLATE_VERSION_MISMATCH,
        format!(
            "template {} is at version {}, not {expected}; read it again",
            current.id, current.version
        ),
    )
    .with_meta("template_id", current.id.to_string())
    .with_meta("current_version", current.version.to_string())
}

fn write_error(
    error: TemplateWriteError,
    record: &TemplateRecord,
    expected_version: Option<i64>,
) -> Error {
    match error {
        TemplateWriteError::NameTaken(existing) => Error::new(
            ErrorCode::AlreadyExists,
            reason::TEMPLATE_NAME_TAKEN,
            format!(
                "you already have a template named {:?}",
                record.name.as_str()
            ),
        )
        .with_meta("template_id", existing)
        .with_meta("name", record.name.as_str()),
        TemplateWriteError::Conflict => match expected_version {
            Some(v) if v != 0 => Error::new(
                ErrorCode::FailedPrecondition,
                reason::TEMPLATE_VERSION_MISMATCH,
                format!("template {} changed concurrently; read it again", record.id),
            )
            .with_meta("template_id", record.id.to_string()),
            _ => Error::new(
                ErrorCode::Unavailable,
                reason::CONCURRENT_CHANGE,
                "the template kept changing concurrently; retry",
            )
            .with_meta("template_id", record.id.to_string()),
        },
        TemplateWriteError::Failed(error) => error,
    }
}
