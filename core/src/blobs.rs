//! Message bytes, stored once however many copies name them: a blob per
//! distinct SHA-256 with a reference count, its search-index row made in
//! the transaction that makes it and dropped with it. Every copy (a
//! mailbox row, a queue entry) holds one reference; the last one to go
//! deletes the bytes.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::entities::blob;
use crate::error::{CoreError, CoreResult};
use crate::ids::BlobId;
use crate::meta::MessageMeta;

pub(crate) fn sha256_hex(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Stores the bytes once (or finds them) and adds `refs` references. A new
/// blob also gets its search index row, in the same transaction.
pub(crate) async fn put_blob<C: ConnectionTrait>(
    db: &C,
    raw: &[u8],
    refs: i64,
    meta: &MessageMeta,
) -> CoreResult<BlobId> {
    let sha = sha256_hex(raw);
    // One statement for insert-or-add-references and reading the id back
    // (SQLite >= 3.35 and PostgreSQL both return the row an upsert wrote):
    // on the ingest path every statement is a round trip to the driver.
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO blobs (sha256, size, bytes, refcount, header_len, fetch_cache, \
             search_complete) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (sha256) DO UPDATE SET refcount = blobs.refcount + excluded.refcount \
             RETURNING id, refcount"
        }
        _ => {
            "INSERT INTO blobs (sha256, size, bytes, refcount, header_len, fetch_cache, \
             search_complete) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (sha256) DO UPDATE SET refcount = blobs.refcount + excluded.refcount \
             RETURNING id, refcount"
        }
    };
    let row = db
        .query_one(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [
                sha.into(),
                (raw.len() as i64).into(),
                raw.to_vec().into(),
                refs.into(),
                meta.header_len.into(),
                meta.fetch_cache.clone().into(),
                meta.search_complete.into(),
            ],
        ))
        .await?
        .ok_or_else(|| CoreError::Unavailable("blob upsert returned no row".into()))?;
    let id: BlobId = row.try_get_by_index(0)?;
    let refcount: i64 = row.try_get_by_index(1)?;
    // Only our own references: the row was just inserted, so index it.
    if refcount == refs {
        crate::search::index_blob(db, id, meta).await?;
    }
    Ok(id)
}

/// Adds `sign` (+1 or -1) references per entry in `blob_ids` (duplicates
/// count), one UPDATE per distinct blob. Returns the distinct ids.
pub(crate) async fn adjust_refcounts<C: ConnectionTrait>(
    db: &C,
    blob_ids: &[BlobId],
    sign: i64,
) -> CoreResult<std::collections::BTreeMap<BlobId, i64>> {
    let mut counts: std::collections::BTreeMap<BlobId, i64> = Default::default();
    for id in blob_ids {
        *counts.entry(*id).or_default() += 1;
    }
    for (id, n) in &counts {
        blob::Entity::update_many()
            .col_expr(
                blob::Column::Refcount,
                Expr::col(blob::Column::Refcount).add(sign * n),
            )
            .filter(blob::Column::Id.eq(*id))
            .exec(db)
            .await?;
    }
    Ok(counts)
}

/// Drops one reference per entry in `blob_ids` (duplicates count) and
/// deletes blobs nobody references any more.
pub(crate) async fn release_blobs<C: ConnectionTrait>(
    db: &C,
    blob_ids: &[BlobId],
) -> CoreResult<()> {
    let counts = adjust_refcounts(db, blob_ids, -1).await?;
    if !counts.is_empty() {
        blob::Entity::delete_many()
            .filter(blob::Column::Id.is_in(counts.keys().copied()))
            .filter(blob::Column::Refcount.lte(0))
            .exec(db)
            .await?;
        let ids: Vec<BlobId> = counts.keys().copied().collect();
        crate::search::unindex_gone(db, &ids).await?;
    }
    Ok(())
}
