//! The addresses a user sends as, each with a display name and a
//! signature: their own address first, then each alias that delivers to
//! them (the same rule submission enforces, [`Core::may_send_as`]).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::directory::AccountRef;
use crate::entities::{alias, identity};
use crate::{Core, CoreError, CoreResult};

/// A display name longer than this is refused.
pub const MAX_NAME_CHARS: usize = 200;
/// And a signature longer than this.
pub const MAX_SIGNATURE_CHARS: usize = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub address: String,
    pub name: String,
    pub signature: String,
}

impl Identity {
    /// `Name <address>`, or the bare address; the name quoted when it
    /// needs to be (RFC 5322 §3.2.4).
    pub fn mailbox(&self) -> String {
        if self.name.is_empty() {
            return self.address.clone();
        }
        let plain = self
            .name
            .chars()
            .all(|c| c.is_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c));
        if plain {
            format!("{} <{}>", self.name, self.address)
        } else {
            let q = self.name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{q}\" <{}>", self.address)
        }
    }
}

impl Core {
    /// The account's identities: its own address, then the aliases that
    /// deliver to it, with the names and signatures set for them.
    pub async fn identities(&self, account: &AccountRef) -> CoreResult<Vec<Identity>> {
        let mut addrs = vec![account.address.clone()];
        for a in alias::Entity::find()
            .filter(alias::Column::Target.eq(account.address.clone()))
            .order_by_asc(alias::Column::Address)
            .all(self.db())
            .await?
        {
            if !addrs.contains(&a.address) {
                addrs.push(a.address);
            }
        }
        let set = identity::Entity::find()
            .filter(identity::Column::AccountId.eq(account.id))
            .all(self.db())
            .await?;
        Ok(addrs
            .into_iter()
            .map(|address| {
                let row = set.iter().find(|r| r.address == address);
                Identity {
                    name: row.map(|r| r.display_name.clone()).unwrap_or_default(),
                    signature: row.map(|r| r.signature.clone()).unwrap_or_default(),
                    address,
                }
            })
            .collect())
    }

    /// Sets the name and signature of one of the account's addresses.
    pub async fn set_identity(
        &self,
        account: &AccountRef,
        address: &str,
        name: &str,
        signature: &str,
    ) -> CoreResult<()> {
        let address = address.trim().to_ascii_lowercase();
        if !self.may_send_as(account, &address).await? {
            return Err(CoreError::Forbidden);
        }
        // A name goes into a header: one line, printable.
        let name: String = name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_owned();
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(CoreError::Invalid(format!(
                "the name is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        let signature = signature.replace("\r\n", "\n");
        if signature.chars().count() > MAX_SIGNATURE_CHARS {
            return Err(CoreError::Invalid(format!(
                "the signature is longer than {MAX_SIGNATURE_CHARS} characters"
            )));
        }
        let row = identity::ActiveModel {
            account_id: Set(account.id),
            address: Set(address),
            display_name: Set(name),
            signature: Set(signature.trim_end().to_owned()),
            ..Default::default()
        };
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        identity::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([identity::Column::AccountId, identity::Column::Address])
                    .update_columns([identity::Column::DisplayName, identity::Column::Signature])
                    .to_owned(),
            )
            .exec_without_returning(self.wdb())
            .await?;
        Ok(())
    }
}

impl Core {
    /// The time zone the user chose (minutes from UTC), or None to follow
    /// the browser.
    pub async fn zone_pref(&self, account: crate::AccountId) -> CoreResult<Option<i32>> {
        Ok(crate::entities::user_pref::Entity::find_by_id(account)
            .one(self.db())
            .await?
            .and_then(|p| p.tz_offset_min))
    }

    pub async fn set_zone_pref(
        &self,
        account: crate::AccountId,
        offset_min: Option<i32>,
    ) -> CoreResult<()> {
        use crate::entities::user_pref;
        if let Some(m) = offset_min
            && crate::view::Zone::from_offset(m).is_none()
        {
            return Err(CoreError::Invalid(format!(
                "{m} minutes is not a UTC offset"
            )));
        }
        let row = user_pref::ActiveModel {
            account_id: Set(account),
            tz_offset_min: Set(offset_min),
        };
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        user_pref::Entity::insert(row)
            .on_conflict(
                OnConflict::column(user_pref::Column::AccountId)
                    .update_column(user_pref::Column::TzOffsetMin)
                    .to_owned(),
            )
            .exec_without_returning(self.wdb())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_when_needed() {
        let i = |name: &str| Identity {
            address: "a@b.test".into(),
            name: name.into(),
            signature: String::new(),
        };
        assert_eq!(i("").mailbox(), "a@b.test");
        assert_eq!(i("Ann Lee").mailbox(), "Ann Lee <a@b.test>");
        assert_eq!(i("Lee, Ann").mailbox(), "\"Lee, Ann\" <a@b.test>");
        assert_eq!(
            i("Ann \"A\" Lee").mailbox(),
            "\"Ann \\\"A\\\" Lee\" <a@b.test>"
        );
    }
}
