//! The template core: creating, reading, listing, updating (FieldMask, versioned) and deleting
//! templates, and the [`ceiling`] a template sets on the tokens minted from it.
//!
//! Updating or deleting a template never touches tokens already minted from it.

use std::sync::Arc;

use crate::domain::Environment;
use crate::domain::{
    Description, EnterpriseId, IpRestriction, LimitsInput, ScopeCatalog, ScopeSet, TemplateId,
    TemplateName, TemplateRecord, Timestamp, TokenLimits, UpdatePaths,
};
use crate::error::{Error, ErrorCode, Result, Violations, reason};
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

/// A template as it arrives in a request, before validation.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput {
    /// Name.
    pub name: String,
    /// Enterprise id (empty: none).
    pub enterprise_id: String,
    /// Description.
    pub description: String,
    /// Scope names.
    pub token_scopes: Vec<String>,
    /// Addresses / CIDR blocks.
    pub allowed_ips: Vec<String>,
    /// Spending limits, when given.
    pub limits: Option<LimitsInput>,
    /// Default token lifetime in seconds (0: service default).
    pub default_duration_seconds: i64,
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

/// A template's validated, caller-settable fields.
struct Fields {
    name: TemplateName,
    enterprise: Option<EnterpriseId>,
    description: Description,
    scopes: ScopeSet,
    ips: IpRestriction,
    limits: TokenLimits,
    default_duration_secs: i64,
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

    /// `caller`'s template `id`, or NOT_FOUND.
    pub async fn owned(&self, caller: &Caller, id: TemplateId) -> Result<TemplateRecord> {
        self.store
            .find_template(id, &caller.user_id)
            .await?
            .ok_or_else(|| Error::template_not_found(id))
    }

    fn parse_duration(&self, secs: i64) -> Result<i64> {
        let field = "default_duration_seconds";
        if secs < 0 {
            return Err(Error::invalid(
                field,
                reason::INVALID_LIFETIME,
                format!("{field} must not be negative"),
            ));
        }
        if secs > self.max_lifetime_secs {
            return Err(Error::invalid(
                field,
                reason::LIFETIME_TOO_LONG,
                format!("{field} may be at most {} seconds", self.max_lifetime_secs),
            )
            .with_meta("max_lifetime_seconds", self.max_lifetime_secs.to_string()));
        }
        Ok(secs)
    }

    /// Validates every field of `input`.
    fn parse_all(&self, input: &TemplateInput) -> Result<Fields> {
        let mut v = Violations::default();
        let name = v.check(TemplateName::parse(&input.name));
        let enterprise = v.check(EnterpriseId::parse_optional(
            &input.enterprise_id,
            "enterprise_id",
        ));
        let description = v.check(Description::parse(&input.description));
        let scopes = v.check(
            self.catalog
                .parse_scopes(&input.token_scopes, "token_scopes"),
        );
        let ips = v.check(IpRestriction::parse(&input.allowed_ips, "allowed_ips"));
        let limits = v.check(parse_limits(input.limits.as_ref()));
        let duration = v.check(self.parse_duration(input.default_duration_seconds));
        v.finish()?;
        match (name, enterprise, description, scopes, ips, limits, duration) {
            (
                Some(name),
                Some(enterprise),
                Some(description),
                Some(scopes),
                Some(ips),
                Some(limits),
                Some(d),
            ) => Ok(Fields {
                name,
                enterprise,
                description,
                scopes,
                ips,
                limits,
                default_duration_secs: d,
            }),
            _ => Err(Error::internal("template validation passed without values")),
        }
    }

    /// Rules on the final values: scopes present, production rules, the caller may grant the
    /// scopes (checked when they are new or changed) and belongs to the enterprise.
    async fn check_rules(
        &self,
        caller: &Caller,
        fields: &Fields,
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
    pub async fn create(&self, caller: &Caller, input: TemplateInput) -> Result<SavedTemplate> {
        let fields = self.parse_all(&input)?;
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
        enterprise_id: &str,
    ) -> Result<TemplatePage> {
        let enterprise = EnterpriseId::parse_optional(enterprise_id, "enterprise_id")?;
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

    /// Applies `input` to the fields named by `paths` ([`update_paths`]). A non-zero
    /// `expected_version` must match the stored one.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.template_id = %id))]
    pub async fn update(
        &self,
        caller: &Caller,
        id: TemplateId,
        input: TemplateInput,
        expected_version: i64,
        paths: &UpdatePaths,
    ) -> Result<SavedTemplate> {
        let set = |field: &str| paths.contains(field);
        for attempt in 1.. {
            let current = self.owned(caller, id).await?;
            if expected_version != 0 && expected_version != current.version {
                return Err(version_mismatch(&current, expected_version));
            }
            let mut v = Violations::default();
            let fields = PartialFields {
                name: if set("name") {
                    v.check(TemplateName::parse(&input.name))
                } else {
                    Some(current.name.clone())
                },
                enterprise: if set("enterprise_id") {
                    v.check(EnterpriseId::parse_optional(
                        &input.enterprise_id,
                        "enterprise_id",
                    ))
                } else {
                    Some(current.enterprise_id.clone())
                },
                description: if set("description") {
                    v.check(Description::parse(&input.description))
                } else {
                    Some(current.description.clone())
                },
                scopes: if set("token_scopes") {
                    v.check(
                        self.catalog
                            .parse_scopes(&input.token_scopes, "token_scopes"),
                    )
                } else {
                    Some(current.scopes.clone())
                },
                ips: if set("allowed_ips") {
                    v.check(IpRestriction::parse(&input.allowed_ips, "allowed_ips"))
                } else {
                    Some(current.allowed_ips.clone())
                },
                limits: if set("token_limits") {
                    v.check(parse_limits(input.limits.as_ref()))
                } else {
                    Some(current.limits.clone())
                },
                default_duration_secs: if set("default_duration_seconds") {
                    v.check(self.parse_duration(input.default_duration_seconds))
                } else {
                    Some(current.default_duration_secs)
                },
            }
            .complete();
            v.finish().map_err(|e| e.nested_in("template"))?;
            let fields = fields
                .ok_or_else(|| Error::internal("template validation passed without values"))?;
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

/// Optional pieces of [`Fields`], completed once every check passed.
struct PartialFields {
    name: Option<TemplateName>,
    enterprise: Option<Option<EnterpriseId>>,
    description: Option<Description>,
    scopes: Option<ScopeSet>,
    ips: Option<IpRestriction>,
    limits: Option<TokenLimits>,
    default_duration_secs: Option<i64>,
}

impl PartialFields {
    fn complete(self) -> Option<Fields> {
        Some(Fields {
            name: self.name?,
            enterprise: self.enterprise?,
            description: self.description?,
            scopes: self.scopes?,
            ips: self.ips?,
            limits: self.limits?,
            default_duration_secs: self.default_duration_secs?,
        })
    }
}

/// The fields an UpdateTemplate changes: the paths of its `mask` (each one of
/// [`UPDATABLE_FIELDS`]), or without a mask those of `input` with a non-empty value; an update
/// that changes nothing is refused. Pure: no storage access.
pub fn update_paths(mask: Option<&[String]>, input: &TemplateInput) -> Result<UpdatePaths> {
    UpdatePaths::parse(
        mask,
        UPDATABLE_FIELDS,
        &[
            ("name", !input.name.trim().is_empty()),
            ("description", !input.description.trim().is_empty()),
            ("enterprise_id", !input.enterprise_id.is_empty()),
            ("token_scopes", !input.token_scopes.is_empty()),
            ("allowed_ips", !input.allowed_ips.is_empty()),
            ("token_limits", input.limits.is_some()),
            (
                "default_duration_seconds",
                input.default_duration_seconds != 0,
            ),
        ],
    )
}

fn parse_limits(limits: Option<&LimitsInput>) -> Result<TokenLimits> {
    match limits {
        Some(l) => TokenLimits::parse(&l.spending, l.all_erc20.as_deref(), "token_limits"),
        None => Ok(TokenLimits::default()),
    }
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
