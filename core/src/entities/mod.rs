//! sea-orm entities, one per table. Only the store modules of this crate use
//! them; nothing outside `mailcore` sees a row type.

pub mod account;
pub mod alias;
pub mod audit_log;
pub mod blob;
pub mod cluster_node;
pub mod delivery_log;
pub mod dkim_key;
pub mod domain;
pub mod domain_admin;
pub mod identity;
pub mod login_strike;
pub mod lone_subscription;
pub mod mailbox;
pub mod maildrop_lock;
pub mod message;
pub mod mta_sts_policy;
pub mod outside_account;
pub mod outside_fetched;
pub mod outside_header;
pub mod queue_destination;
pub mod queue_entry;
pub mod scheduled_send;
pub mod session_lease;
pub mod sieve_script;
pub mod sieve_seen;
pub mod snooze;
pub mod status_incident;
pub mod status_note;
pub mod user_pref;
pub mod web_session;
