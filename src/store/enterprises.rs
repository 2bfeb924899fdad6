//! Enterprise membership.

use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};

use super::entities::enterprise_members::{self, Column, Entity as Members};
use super::{Store, db_error};
use crate::domain::{EnterpriseId, Timestamp, UserId};
use crate::error::Result;

impl Store {
    /// Whether `user` is a member of `enterprise`.
    #[tracing::instrument(level = "debug", name = "db.is_enterprise_member", skip_all, fields(db.system.name = self.backend().otel_name()))]
    pub async fn is_enterprise_member(
        &self,
        enterprise: &EnterpriseId,
        user: &UserId,
    ) -> Result<bool> {
        let found = Members::find_by_id((enterprise.to_string(), user.to_string()))
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(found.is_some())
    }

    /// Adds `user` to `enterprise` (no-op if already a member).
    pub async fn add_enterprise_member(
        &self,
        enterprise: &EnterpriseId,
        user: &UserId,
    ) -> Result<()> {
        let member = enterprise_members::ActiveModel {
            enterprise_id: Set(enterprise.to_string()),
            user_id: Set(user.to_string()),
            created_at: Set(Timestamp::now().0),
        };
        let _turn = self.write_turn().await;
        Members::insert(member)
            .on_conflict(
                OnConflict::columns([Column::EnterpriseId, Column::UserId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
