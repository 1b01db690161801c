//! Web sessions, stored in the database so any node can serve any request.
//!
//! The cookie carries a random 256-bit token; the table keeps only its
//! SHA-256, so a leaked backup does not hand out live sessions. Each session
//! also has its own CSRF token for the web layer to check.
//!
//! Ending every session of an account (a new password, a disabled account,
//! "sign out everywhere") deletes its web sessions and moves the account's
//! login epoch on, in one transaction. An IMAP or POP3 session remembers the
//! epoch its password check read and closes at its next command (at once
//! while idling in this process) when the epoch has moved; a change made
//! by the CLI or another node is seen within `LOGIN_EPOCH_CACHE`.

use crate::db::InsertCommitted;
use crate::ids::AccountId;
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use crate::Core;
use crate::blobs::sha256_hex;
use crate::directory::{AccountRef, Role};
use crate::entities::{account, web_session};
use crate::error::CoreResult;
use crate::events::{ChangeEvent, ChangeKind};

pub const SESSION_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    pub account: AccountRef,
    pub csrf_token: String,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Core {
    /// Starts a session; returns the cookie token. A fresh token at every
    /// login is what defeats session fixation.
    pub async fn create_session(
        &self,
        account_id: AccountId,
        client_ip: &str,
    ) -> CoreResult<String> {
        let token = random_token();
        let now = self.now();
        web_session::ActiveModel {
            id: Set(sha256_hex(token.as_bytes())),
            account_id: Set(account_id),
            csrf_token: Set(random_token()),
            client_ip: Set(client_ip.chars().take(64).collect()),
            created_at: Set(now),
            expires_at: Set(now + SESSION_TTL_SECS),
        }
        .insert_committed(self.wdb())
        .await?;
        Ok(token)
    }

    /// The live session for a cookie token, if any. Disabled accounts have
    /// none.
    pub async fn session(&self, token: &str) -> CoreResult<Option<WebSession>> {
        if token.len() != 64 {
            return Ok(None);
        }
        let Some(s) = web_session::Entity::find_by_id(sha256_hex(token.as_bytes()))
            .one(self.db())
            .await?
        else {
            return Ok(None);
        };
        if s.expires_at <= self.now() {
            web_session::Entity::delete_by_id(s.id)
                .exec(self.wdb())
                .await?;
            return Ok(None);
        }
        let Some(a) = account::Entity::find_by_id(s.account_id)
            .one(self.db())
            .await?
        else {
            return Ok(None);
        };
        if a.disabled {
            return Ok(None);
        }
        Ok(Some(WebSession {
            account: AccountRef {
                id: a.id,
                address: a.address,
                role: Role::parse(&a.role).unwrap_or(Role::User),
            },
            csrf_token: s.csrf_token,
        }))
    }

    /// Ends every session of the account: its web sessions now, and its
    /// IMAP and POP3 sessions at their next command (see the module notes).
    pub async fn end_all_sessions(&self, account: &AccountRef) -> CoreResult<()> {
        let account_id = account.id;
        let txn = self.write_txn().await?;
        account::Entity::update_many()
            .col_expr(
                account::Column::LoginEpoch,
                Expr::col(account::Column::LoginEpoch).add(1),
            )
            .filter(account::Column::Id.eq(account_id))
            .exec(&txn)
            .await?;
        web_session::Entity::delete_many()
            .filter(web_session::Column::AccountId.eq(account_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.forget_login_epoch(account_id);
        self.publish(ChangeEvent {
            account_id,
            mailbox_id: None,
            kind: ChangeKind::SessionsEnded,
        });
        Ok(())
    }

    pub async fn end_session(&self, token: &str) -> CoreResult<()> {
        web_session::Entity::delete_many()
            .filter(web_session::Column::Id.eq(sha256_hex(token.as_bytes())))
            .exec(self.wdb())
            .await?;
        Ok(())
    }
}
