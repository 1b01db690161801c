use sea_orm::entity::prelude::*;

use crate::ids::BlobId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: BlobId,
    #[sea_orm(unique)]
    pub sha256: String,
    pub size: i64,
    pub bytes: Vec<u8>,
    pub refcount: i64,
    /// Where the body starts (NULL for messages stored before 2026-12-06).
    pub header_len: Option<i64>,
    /// What the IMAP server made of the parsed message at delivery
    /// ([`crate::FetchDigest`]); NULL when it made nothing.
    pub fetch_cache: Option<Vec<u8>>,
    /// The search index holds every word of the body text.
    pub search_complete: Option<bool>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
