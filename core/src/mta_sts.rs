//! The MTA-STS policies this host fetched for destinations (RFC 8461
//! §5.1), kept in the database so a restart does not forget them; the
//! relay's cache sits in front (`tern::relay::mta_sts`).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait};

use crate::entities::mta_sts_policy;
use crate::{Core, CoreResult};

/// A policy as fetched: its TXT id, its text and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    pub policy_id: String,
    pub policy: String,
    pub expires_at: i64,
}

impl Core {
    pub async fn mta_sts_policy(&self, domain: &str) -> CoreResult<Option<StoredPolicy>> {
        Ok(
            mta_sts_policy::Entity::find_by_id(domain.to_ascii_lowercase())
                .one(self.db())
                .await?
                .map(|m| StoredPolicy {
                    policy_id: m.policy_id,
                    policy: m.policy,
                    expires_at: m.expires_at,
                }),
        )
    }

    pub async fn save_mta_sts_policy(
        &self,
        domain: &str,
        policy_id: &str,
        policy: &str,
        expires_at: i64,
    ) -> CoreResult<()> {
        let row = mta_sts_policy::ActiveModel {
            domain: Set(domain.to_ascii_lowercase()),
            policy_id: Set(policy_id.to_owned()),
            policy: Set(policy.to_owned()),
            fetched_at: Set(self.now()),
            expires_at: Set(expires_at),
        };
        let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
        mta_sts_policy::Entity::insert(row)
            .on_conflict(
                OnConflict::column(mta_sts_policy::Column::Domain)
                    .update_columns([
                        mta_sts_policy::Column::PolicyId,
                        mta_sts_policy::Column::Policy,
                        mta_sts_policy::Column::FetchedAt,
                        mta_sts_policy::Column::ExpiresAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.wdb())
            .await?;
        Ok(())
    }
}
