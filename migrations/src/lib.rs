//! Schema migrations for Tern, one file per change. They run at start on
//! SQLite and PostgreSQL alike, so every statement goes through sea-query's
//! portable builders rather than raw SQL, except the search index, which
//! is backend-specific by nature (FTS5 and tsvector).

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_initial;
mod m20261129_000002_queue;
mod m20261129_000003_recent;
mod m20261129_000004_search;
mod m20261129_000005_admin;
mod m20261201_000006_health;
mod m20261202_000007_spool;
mod m20261202_000008_delivered_to;
mod m20261204_000009_outside;
mod m20261204_000010_outside_fetch;
mod m20261204_000011_outside_cache;
mod m20261204_000012_outside_smtp_login;
mod m20261204_000013_lone_subscriptions;
mod m20261206_000014_uidvalidity_floor;
mod m20261206_000015_fetch_cache;
mod m20261206_000016_keyset_indexes;
mod m20261206_000017_queue_siblings;
mod m20261206_000018_queue_due_order;
mod m20261206_000019_retry_requested;
mod m20261206_000020_cluster;
mod m20261206_000021_dkim;
mod m20261206_000022_mta_sts;
mod m20261206_000023_queue_require_tls;
mod m20261206_000024_queue_message_id;
mod m20261206_000025_scheduled_sends;
mod m20261206_000026_snoozes;
mod m20261206_000027_identities;
mod m20261206_000028_user_prefs;
mod m20261206_000029_sieve;
mod m20261206_000030_status;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_initial::Migration),
            Box::new(m20261129_000002_queue::Migration),
            Box::new(m20261129_000003_recent::Migration),
            Box::new(m20261129_000004_search::Migration),
            Box::new(m20261129_000005_admin::Migration),
            Box::new(m20261201_000006_health::Migration),
            Box::new(m20261202_000007_spool::Migration),
            Box::new(m20261202_000008_delivered_to::Migration),
            Box::new(m20261204_000009_outside::Migration),
            Box::new(m20261204_000010_outside_fetch::Migration),
            Box::new(m20261204_000011_outside_cache::Migration),
            Box::new(m20261204_000012_outside_smtp_login::Migration),
            Box::new(m20261204_000013_lone_subscriptions::Migration),
            Box::new(m20261206_000014_uidvalidity_floor::Migration),
            Box::new(m20261206_000015_fetch_cache::Migration),
            Box::new(m20261206_000016_keyset_indexes::Migration),
            Box::new(m20261206_000017_queue_siblings::Migration),
            Box::new(m20261206_000018_queue_due_order::Migration),
            Box::new(m20261206_000019_retry_requested::Migration),
            Box::new(m20261206_000020_cluster::Migration),
            Box::new(m20261206_000021_dkim::Migration),
            Box::new(m20261206_000022_mta_sts::Migration),
            Box::new(m20261206_000023_queue_require_tls::Migration),
            Box::new(m20261206_000024_queue_message_id::Migration),
            Box::new(m20261206_000025_scheduled_sends::Migration),
            Box::new(m20261206_000026_snoozes::Migration),
            Box::new(m20261206_000027_identities::Migration),
            Box::new(m20261206_000028_user_prefs::Migration),
            Box::new(m20261206_000029_sieve::Migration),
            Box::new(m20261206_000030_status::Migration),
        ]
    }
}
