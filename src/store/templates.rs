//! The template repository. Name uniqueness per user is the `uq_templates_user_name` index;
//! its violation is reported as [`TemplateWriteError::NameTaken`] with the existing template's id.

use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::entities::templates::{self, Column, Entity as Templates};
use super::{Store, db_error, is_unique_violation, newest_first_page};
use crate::domain::ListCursor;
use crate::domain::{
    Description, EnterpriseId, IpRestriction, ScopeSet, TemplateId, TemplateName, TemplateRecord,
    Timestamp, TokenLimits, UserId,
};
use crate::error::{Error, Result};

/// Why a template write did not happen.
#[derive(Debug)]
pub enum TemplateWriteError {
    /// The owner already has a template with this name (its id).
    NameTaken(String),
    /// The row changed since it was read (version compare-and-set failed) or is gone.
    Conflict,
    /// Anything else.
    Failed(Error),
}

impl Store {
    /// Inserts a new template.
    #[tracing::instrument(level = "debug", name = "db.insert_template", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn insert_template(&self, record: &TemplateRecord) -> Result<(), TemplateWriteError> {
        let _turn = self.write_turn().await;
        match Templates::insert(to_active_model(record))
            .exec(self.db())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => Err(self.classify(err, record).await),
        }
    }

    /// Replaces `record`'s row if its stored version is still `record.version - 1`.
    #[tracing::instrument(level = "debug", name = "db.update_template", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn update_template(&self, record: &TemplateRecord) -> Result<(), TemplateWriteError> {
        let _turn = self.write_turn().await;
        let result = Templates::update_many()
            .set(to_active_model(record))
            .filter(Column::Id.eq(record.id.to_string()))
            .filter(Column::UserId.eq(record.user_id.as_str()))
            .filter(Column::Version.eq(record.version - 1))
            .exec(self.db())
            .await;
        match result {
            Ok(r) if r.rows_affected == 1 => Ok(()),
            Ok(_) => Err(TemplateWriteError::Conflict),
            Err(err) => Err(self.classify(err, record).await),
        }
    }

    /// Turns a failed write into NameTaken (with the holder's id) or Failed.
    async fn classify(&self, err: DbErr, record: &TemplateRecord) -> TemplateWriteError {
        if !is_unique_violation(&err) {
            return TemplateWriteError::Failed(db_error(err));
        }
        match self
            .template_id_by_name(&record.user_id, &record.name)
            .await
        {
            Ok(Some(id)) => TemplateWriteError::NameTaken(id),
            Ok(None) => TemplateWriteError::Conflict,
            Err(e) => TemplateWriteError::Failed(e),
        }
    }

    async fn template_id_by_name(
        &self,
        user: &UserId,
        name: &TemplateName,
    ) -> Result<Option<String>> {
        Templates::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::UserId.eq(user.as_str()))
            .filter(Column::Name.eq(name.as_str()))
            .into_tuple::<String>()
            .one(self.db())
            .await
            .map_err(db_error)
    }

    /// The template `id` owned by `user`, if any.
    #[tracing::instrument(level = "debug", name = "db.find_template", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn find_template(
        &self,
        id: TemplateId,
        user: &UserId,
    ) -> Result<Option<TemplateRecord>> {
        let model = Templates::find_by_id(id.to_string())
            .filter(Column::UserId.eq(user.as_str()))
            .one(self.db())
            .await
            .map_err(db_error)?;
        model.map(from_model).transpose()
    }

    /// `user`'s templates (optionally of one enterprise), newest first (ties by id), after `cursor`.
    #[tracing::instrument(level = "debug", name = "db.list_templates", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn list_templates(
        &self,
        user: &UserId,
        enterprise: Option<&EnterpriseId>,
        cursor: Option<ListCursor>,
        limit: u64,
    ) -> Result<Vec<TemplateRecord>> {
        let mut query = Templates::find().filter(Column::UserId.eq(user.as_str()));
        if let Some(enterprise) = enterprise {
            query = query.filter(Column::EnterpriseId.eq(enterprise.as_str()));
        }
        let models = newest_first_page(query, Column::CreatedAt, Column::Id, cursor, limit)
            .all(self.db())
            .await
            .map_err(db_error)?;
        models.into_iter().map(from_model).collect()
    }

    /// Deletes `user`'s template `id`; false if there was none.
    #[tracing::instrument(level = "debug", name = "db.delete_template", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn delete_template(&self, id: TemplateId, user: &UserId) -> Result<bool> {
        let _turn = self.write_turn().await;
        let result = Templates::delete_many()
            .filter(Column::Id.eq(id.to_string()))
            .filter(Column::UserId.eq(user.as_str()))
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }
}

fn to_active_model(r: &TemplateRecord) -> templates::ActiveModel {
    templates::ActiveModel {
        id: Set(r.id.to_string()),
        user_id: Set(r.user_id.to_string()),
        name: Set(r.name.as_str().to_owned()),
        enterprise_id: Set(r.enterprise_id.as_ref().map(ToString::to_string)),
        description: Set(r.description.as_str().to_owned()),
        token_scopes: Set(r.scopes.to_claim()),
        allowed_ips: Set(
            serde_json::to_string(&r.allowed_ips.to_strings()).unwrap_or_else(|_| "[]".into())
        ),
        token_limits: Set(serde_json::to_string(&r.limits).unwrap_or_else(|_| "{}".into())),
        default_duration_seconds: Set(r.default_duration_secs),
        version: Set(r.version),
        created_at: Set(r.created_at.0),
        updated_at: Set(r.updated_at.0),
        created_by: Set(r.created_by.to_string()),
        updated_by: Set(r.updated_by.to_string()),
    }
}

fn from_model(m: templates::Model) -> Result<TemplateRecord> {
    let corrupt =
        |what: &str| Error::internal(format!("template {} has an unreadable {what} column", m.id));
    let ips: Vec<String> =
        serde_json::from_str(&m.allowed_ips).map_err(|_| corrupt("allowed_ips"))?;
    let limits: TokenLimits =
        serde_json::from_str(&m.token_limits).map_err(|_| corrupt("token_limits"))?;
    Ok(TemplateRecord {
        id: TemplateId::parse(&m.id, "id").map_err(|_| corrupt("id"))?,
        user_id: UserId::parse(&m.user_id).map_err(|_| corrupt("user_id"))?,
        name: TemplateName::from_stored(m.name.clone()),
        enterprise_id: m
            .enterprise_id
            .as_deref()
            .map(|e| EnterpriseId::parse(e, "enterprise_id"))
            .transpose()
            .map_err(|_| corrupt("enterprise_id"))?,
        description: Description::from_stored(m.description.clone()),
        scopes: ScopeSet::from_claim(&m.token_scopes),
        allowed_ips: IpRestriction::from_trusted(&ips),
        limits,
        default_duration_secs: m.default_duration_seconds,
        version: m.version,
        created_at: Timestamp(m.created_at),
        updated_at: Timestamp(m.updated_at),
        created_by: UserId::parse(&m.created_by).map_err(|_| corrupt("created_by"))?,
        updated_by: UserId::parse(&m.updated_by).map_err(|_| corrupt("updated_by"))?,
    })
}
