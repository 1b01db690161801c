//! Full-text search over from, to, subject and body, served from an index
//! (SQLite FTS5, PostgreSQL tsvector + GIN; see migration 000004), never
//! from a scan of the messages.
//!
//! Both backends get text that this module has already split into words,
//! and queries that it builds from the same kind of words, so a user's
//! input never reaches either query language: `"`, `*`, `:`, `&`, `NEAR`
//! and friends are word separators here, not syntax.

use crate::ids::{AccountId, BlobId, MailboxId, Uid};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};

use crate::Core;
use crate::entities::message;
use crate::error::CoreResult;
use crate::messages::MessageSummary;
use crate::meta::MessageMeta;

/// Words longer than this are not words (base64 runs, hashes).
const MAX_WORD: usize = 48;
/// At most this many query words; more narrows nothing in practice.
const MAX_QUERY_WORDS: usize = 8;
/// Hits are counted up to this many and shown as "N+" beyond: counting a
/// word that is in every message would cost as much as the search itself.
pub const COUNT_CAP: u64 = 1000;

/// Lower-cased alphanumeric runs of `text`.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD)
        .map(str::to_lowercase)
}

/// True when [`words`] keeps every word of `text` (none over the length
/// limit).
pub(crate) fn all_indexable(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .all(|w| w.chars().count() <= MAX_WORD)
}

/// The document indexed for one message.
pub(crate) fn document(meta: &MessageMeta) -> String {
    let mut out = String::new();
    for field in [&meta.from, &meta.to, &meta.subject, &meta.search_text] {
        for w in words(field) {
            out.push_str(&w);
            out.push(' ');
        }
    }
    out
}

/// Adds a blob's words to the index. Called once, when the blob is new.
pub(crate) async fn index_blob<C: ConnectionTrait>(
    db: &C,
    blob_id: BlobId,
    meta: &MessageMeta,
) -> CoreResult<()> {
    let backend = db.get_database_backend();
    let doc = document(meta);
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO blob_search (blob_id, doc) VALUES ($1, to_tsvector('simple', $2)) \
             ON CONFLICT (blob_id) DO NOTHING"
        }
        _ => "INSERT INTO blob_search (rowid, words) VALUES ($1, $2)",
    };
    db.execute(Statement::from_sql_and_values(
        backend,
        sql,
        [blob_id.into(), doc.into()],
    ))
    .await?;
    Ok(())
}

/// Drops the index rows of blobs that no longer exist.
pub(crate) async fn unindex_gone<C: ConnectionTrait>(
    db: &C,
    blob_ids: &[BlobId],
) -> CoreResult<()> {
    if blob_ids.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let key = match backend {
        DbBackend::Postgres => "blob_id",
        _ => "rowid",
    };
    // The ids are integers from our own rows, so listing them inline is safe
    // and keeps one statement for any count.
    let list = blob_ids
        .iter()
        .map(BlobId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    db.execute(Statement::from_string(
        backend,
        format!(
            "DELETE FROM blob_search WHERE {key} IN ({list}) \
             AND {key} NOT IN (SELECT id FROM blobs WHERE id IN ({list}))"
        ),
    ))
    .await?;
    Ok(())
}

/// The index query for the user's words: every word must match, each as a
/// prefix ("inv" finds "invoice"). `None` when the input has no words.
fn match_expr(backend: DbBackend, query: &str) -> Option<String> {
    prefixes_expr(backend, words(query))
}

/// The index query for words that must all start a word of the document,
/// in the backend's language; None for no words.
fn prefixes_expr(backend: DbBackend, ws: impl Iterator<Item = String>) -> Option<String> {
    let ws: Vec<String> = ws.take(MAX_QUERY_WORDS).collect();
    if ws.is_empty() {
        return None;
    }
    Some(match backend {
        DbBackend::Postgres => ws
            .iter()
            .map(|w| format!("{w}:*"))
            .collect::<Vec<_>>()
            .join(" & "),
        _ => ws
            .iter()
            .map(|w| format!("\"{w}\"*"))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

impl Core {
    /// For IMAP SEARCH BODY: the UIDs of the mailbox's messages that may
    /// contain text with a word starting with each of `starts` (lower
    /// case): those the index finds, and those whose text the index does
    /// not hold whole. The caller confirms the substring on these; the
    /// others cannot match and are not read. None when `starts` has no
    /// word the index keeps.
    pub(crate) async fn body_search_candidates(
        &self,
        account_id: AccountId,
        mailbox_id: MailboxId,
        starts: &[String],
    ) -> CoreResult<Option<std::collections::HashSet<Uid>>> {
        self.mailbox_row(account_id, mailbox_id).await?;
        let backend = self.db().get_database_backend();
        let ws = starts.iter().flat_map(|s| words(s).collect::<Vec<_>>());
        // Nothing the index can look for: every message may match.
        let Some(expr) = prefixes_expr(backend, ws) else {
            return Ok(None);
        };
        let sql = match backend {
            DbBackend::Postgres => {
                "SELECT m.uid FROM messages m JOIN blobs b ON b.id = m.blob_id \
                 WHERE m.mailbox_id = $1 AND (b.search_complete IS NOT TRUE OR m.blob_id IN \
                 (SELECT blob_id FROM blob_search WHERE doc @@ to_tsquery('simple', $2)))"
            }
            _ => {
                "SELECT m.uid FROM messages m JOIN blobs b ON b.id = m.blob_id \
                 WHERE m.mailbox_id = ? AND (b.search_complete IS NOT 1 OR m.blob_id IN \
                 (SELECT rowid FROM blob_search WHERE blob_search MATCH ?))"
            }
        };
        let rows = self
            .db()
            .query_all(Statement::from_sql_and_values(
                backend,
                sql,
                [mailbox_id.into(), expr.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get_by_index::<Uid>(0)?))
            .collect::<CoreResult<_>>()
            .map(Some)
    }

    /// Messages of the account (in one mailbox, or all of them) that match
    /// `query`, newest first, with the number of hits up to [`COUNT_CAP`]
    /// (a count above the cap means "more than the cap").
    pub(crate) async fn search(
        &self,
        account_id: AccountId,
        mailbox_id: Option<MailboxId>,
        query: &str,
        offset: u64,
        limit: u64,
    ) -> CoreResult<(Vec<MessageSummary>, u64)> {
        let Some(q) = self.search_select(account_id, mailbox_id, query).await? else {
            return Ok((Vec::new(), 0));
        };

        let total = self.count_capped(q.clone()).await?;
        let rows = q
            .order_by_desc(message::Column::InternalDate)
            .order_by_desc(message::Column::Uid)
            .offset(offset)
            .limit(limit)
            .all(self.db())
            .await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// How many messages `q` selects, up to [`COUNT_CAP`] + 1. sea-orm's
    /// count() drops a LIMIT, so this fetches at most that many ids.
    pub(crate) async fn count_capped(
        &self,
        q: sea_orm::Select<message::Entity>,
    ) -> CoreResult<u64> {
        Ok(q.select_only()
            .column(message::Column::Id)
            .limit(COUNT_CAP + 1)
            .into_tuple::<i32>()
            .all(self.db())
            .await?
            .len() as u64)
    }

    /// The messages of `mailbox_id` (or of every mailbox of the account)
    /// that match `query`, unordered: [`Core::search`] pages it, and the
    /// unified inbox pages it by key. None when the query has no words.
    pub(crate) async fn search_select(
        &self,
        account_id: AccountId,
        mailbox_id: Option<MailboxId>,
        query: &str,
    ) -> CoreResult<Option<sea_orm::Select<message::Entity>>> {
        let backend = self.db().get_database_backend();
        let Some(expr) = match_expr(backend, query) else {
            return Ok(None);
        };
        // sea-query renumbers `$1` for PostgreSQL but passes it through
        // verbatim for SQLite, where sqlx then binds by position; so each
        // backend gets its own placeholder.
        let p = match backend {
            DbBackend::Postgres => "$1",
            _ => "?",
        };
        let hits = match backend {
            DbBackend::Postgres => Expr::cust_with_values(
                "blob_id IN (SELECT blob_id FROM blob_search WHERE doc @@ to_tsquery('simple', $1))",
                [expr],
            ),
            _ => Expr::cust_with_values(
                "blob_id IN (SELECT rowid FROM blob_search WHERE blob_search MATCH ?)",
                [expr],
            ),
        };
        let mut q = message::Entity::find().filter(hits);
        q = match mailbox_id {
            Some(id) => {
                self.mailbox_row(account_id, id).await?;
                q.filter(Expr::col(message::Column::MailboxId).eq(id))
            }
            None => q.filter(Expr::cust_with_values(
                format!("mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = {p})"),
                [account_id],
            )),
        };

        Ok(Some(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_syntax_never_reaches_the_backend() {
        let q = r#"inv" OR NEAR(x*) :* & !bob@example.org"#;
        assert_eq!(
            match_expr(DbBackend::Sqlite, q).as_deref(),
            Some(r#""inv"* "or"* "near"* "x"* "bob"* "example"* "org"*"#)
        );
        assert_eq!(
            match_expr(DbBackend::Postgres, "Café 2026").as_deref(),
            Some("café:* & 2026:*")
        );
        assert_eq!(match_expr(DbBackend::Sqlite, " *&: "), None);
    }
}
