//! What N nodes on one PostgreSQL share, so that a second node changes
//! nothing a user or a remote server sees (DESIGN.md, "Scale-out"):
//! - the change feed and the queue's wake-up cross nodes by LISTEN/NOTIFY
//!   (SQLite keeps the in-process broadcast alone: one node);
//! - each node writes a heartbeat row (`tern cluster status`, `/admin`);
//! - the POP3 maildrop lock is a lease row that a dead node's lease lets go;
//! - failed logins are counted by all nodes together (PostgreSQL).
//!
//! A NOTIFY is sent after the change's commit, like the local broadcast,
//! and carries no more than whom it concerns: a listener that hears it
//! reads the store, as it does for a local change. A node whose listening
//! connection drops reconnects and tells every subscriber to look at the
//! store once (`feed_resyncs`): IMAP sessions resynchronise from their
//! MODSEQ, so a change said while nobody listened is not lost.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use tokio::sync::{mpsc, watch};

use crate::auth::{Strikes, ThrottleConfig};
use crate::db::Backend;
use crate::entities::{cluster_node, login_strike, maildrop_lock, session_lease};
use crate::events::{ChangeEvent, ChangeKind};
use crate::ids::{AccountId, MailboxId};
use crate::{Core, CoreResult};

const CHANGES: &str = "tern_changes";
const QUEUE: &str = "tern_queue";
/// Application name of the listening connection (it shows in
/// `pg_stat_activity`; the failover test finds it there).
pub const LISTEN_APPLICATION_NAME: &str = "tern-listen";

/// A node's state the cluster shares; see the module doc.
pub(crate) struct ClusterState {
    /// The operator's name for the node (`CoreOptions::node_name`).
    name: String,
    /// Unique per process: `name:pid:random`.
    node_id: String,
    /// The heartbeat's period, once `start_cluster` ran.
    heartbeat: OnceLock<Duration>,
    next_lease: std::sync::atomic::AtomicU64,
    notices: OnceLock<mpsc::UnboundedSender<Notice>>,
    resync: watch::Sender<u64>,
}

impl ClusterState {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            node_id: format!(
                "{name}:{}:{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            notices: OnceLock::new(),
            resync: watch::channel(0).0,
            heartbeat: OnceLock::new(),
            next_lease: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

enum Notice {
    Change(ChangeEvent),
    Queue,
}

/// What a node says about itself in its heartbeat.
pub struct NodeInfo {
    pub version: String,
    /// How often the heartbeat row is written.
    pub heartbeat: Duration,
    /// Queue transactions this node has in flight now.
    pub queue_in_flight: Box<dyn Fn() -> i64 + Send + Sync>,
    /// Whether the node runs a queue runner: the runners share each
    /// destination's connection limit among themselves.
    pub runs_queue: bool,
}

/// One node's heartbeat row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: String,
    pub name: String,
    pub version: String,
    pub started_at: i64,
    pub last_seen: i64,
    pub heartbeat_secs: i64,
    /// Messages accepted into the node's spool, not yet in the store.
    pub spool_depth: i64,
    pub queue_in_flight: i64,
    pub runs_queue: bool,
}

impl NodeStatus {
    /// Up while its heartbeat is at most three beats old.
    pub fn is_up(&self, now: i64) -> bool {
        now - self.last_seen <= 3 * self.heartbeat_secs.max(1)
    }
}

impl From<cluster_node::Model> for NodeStatus {
    fn from(m: cluster_node::Model) -> Self {
        NodeStatus {
            id: m.id,
            name: m.name,
            version: m.version,
            started_at: m.started_at,
            last_seen: m.last_seen,
            heartbeat_secs: m.heartbeat_secs,
            spool_depth: m.spool_depth,
            queue_in_flight: m.queue_in_flight,
            runs_queue: m.runs_queue,
        }
    }
}

fn kind_word(k: &ChangeKind) -> &'static str {
    match k {
        ChangeKind::NewMessages { .. } => "new",
        ChangeKind::FlagsChanged { .. } => "flags",
        ChangeKind::Expunged { .. } => "expunged",
        ChangeKind::MailboxesChanged => "mailboxes",
        ChangeKind::SessionsEnded => "ended",
    }
}

/// `node account mailbox|- kind`: whom a change concerns, not what it is
/// (a NOTIFY payload is at most 8,000 bytes; a listener reads the store).
fn encode(node: &str, ev: &ChangeEvent) -> String {
    let mailbox = ev
        .mailbox_id
        .map_or_else(|| "-".to_owned(), |m| m.get().to_string());
    format!(
        "{node} {} {mailbox} {}",
        ev.account_id.get(),
        kind_word(&ev.kind)
    )
}

/// The change in a payload from another node; `None` for one of ours or
/// one this version does not know.
fn decode(own: &str, payload: &str) -> Option<ChangeEvent> {
    let mut it = payload.split(' ');
    let (node, account, mailbox, kind) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if node == own || it.next().is_some() {
        return None;
    }
    let account_id = AccountId::from_row(account.parse().ok()?);
    let mailbox_id = match mailbox {
        "-" => None,
        m => Some(MailboxId::from_row(m.parse().ok()?)),
    };
    // The other node's uids stay there: a subscriber reads the store.
    let kind = match kind {
        "new" => ChangeKind::NewMessages { uids: vec![] },
        "flags" => ChangeKind::FlagsChanged { uids: vec![] },
        "expunged" => ChangeKind::Expunged { uids: vec![] },
        "mailboxes" => ChangeKind::MailboxesChanged,
        "ended" => ChangeKind::SessionsEnded,
        _ => return None,
    };
    Some(ChangeEvent {
        account_id,
        mailbox_id,
        kind,
    })
}

impl Core {
    /// This process's id in the cluster (heartbeat row, lock holder).
    pub fn node_id(&self) -> &str {
        &self.inner.cluster.node_id
    }

    /// Ticks when a subscriber may have missed changes from other nodes
    /// (the listening connection was lost and is back): look at the store.
    pub fn feed_resyncs(&self) -> watch::Receiver<u64> {
        self.inner.cluster.resync.subscribe()
    }

    /// Hands a committed change to the other nodes (PostgreSQL, once
    /// `start_cluster` ran; nothing otherwise).
    pub(crate) fn tell_cluster_change(&self, ev: &ChangeEvent) {
        if let Some(tx) = self.inner.cluster.notices.get() {
            let _ = tx.send(Notice::Change(ev.clone()));
        }
    }

    pub(crate) fn tell_cluster_queue(&self) {
        if let Some(tx) = self.inner.cluster.notices.get() {
            let _ = tx.send(Notice::Queue);
        }
    }

    /// Starts this node's part in the cluster: the heartbeat, and on
    /// PostgreSQL the NOTIFY sender and the listener. `tern serve` calls
    /// it once; the CLI does not (its queue commands notify directly).
    pub fn start_cluster(&self, info: NodeInfo) {
        let _ = self.inner.cluster.heartbeat.set(info.heartbeat);
        tokio::spawn(heartbeat(self.clone(), info));
        if self.backend() != Backend::Postgres {
            return;
        }
        let Some(pool) = self.pg_pool() else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        if self.inner.cluster.notices.set(tx).is_err() {
            return;
        }
        tokio::spawn(notifier(pool.clone(), self.node_id().to_owned(), rx));
        tokio::spawn(listener(self.clone(), pool.clone()));
    }

    /// [`Core::queue_wake`] for an operator's command, which may come from
    /// the CLI: that process runs no cluster tasks, so it notifies itself.
    pub(crate) async fn queue_wake_everywhere(&self) {
        if self.inner.cluster.notices.get().is_some() {
            self.queue_wake();
        } else {
            self.queue_wake_local();
            self.notify_queue_now().await;
        }
    }

    /// Wakes the queue runners of every node now.
    async fn notify_queue_now(&self) {
        if let Some(pool) = self.pg_pool()
            && let Err(e) = sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
                .bind(QUEUE)
                .bind(self.node_id())
                .execute(pool)
                .await
        {
            tracing::warn!(error = %e, "could not wake the other nodes' queue runners");
        }
    }

    fn pg_pool(&self) -> Option<&sea_orm::sqlx::PgPool> {
        match self.backend() {
            Backend::Postgres => Some(self.wdb().get_postgres_connection_pool()),
            Backend::Sqlite => None,
        }
    }

    /// Every node that wrote a heartbeat in the last day, newest first.
    pub async fn cluster_nodes(&self) -> CoreResult<Vec<NodeStatus>> {
        Ok(cluster_node::Entity::find()
            .order_by_desc(cluster_node::Column::LastSeen)
            .all(self.db())
            .await?
            .into_iter()
            .map(NodeStatus::from)
            .collect())
    }

    async fn write_heartbeat(&self, info: &NodeInfo, started_at: i64) -> CoreResult<()> {
        let now = self.now();
        let spool_depth = self
            .spool()
            .map_or(0, |s| i64::try_from(s.stats().records).unwrap_or(i64::MAX));
        let row = cluster_node::ActiveModel {
            id: Set(self.node_id().to_owned()),
            name: Set(self.inner.cluster.name.clone()),
            version: Set(info.version.clone()),
            started_at: Set(started_at),
            last_seen: Set(now),
            heartbeat_secs: Set(i64::try_from(info.heartbeat.as_secs().max(1)).unwrap_or(i64::MAX)),
            spool_depth: Set(spool_depth),
            queue_in_flight: Set((info.queue_in_flight)()),
            runs_queue: Set(info.runs_queue),
        };
        let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
        cluster_node::Entity::insert(row)
            .on_conflict(
                OnConflict::column(cluster_node::Column::Id)
                    .update_columns([
                        cluster_node::Column::LastSeen,
                        cluster_node::Column::HeartbeatSecs,
                        cluster_node::Column::SpoolDepth,
                        cluster_node::Column::QueueInFlight,
                        cluster_node::Column::RunsQueue,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.wdb())
            .await?;
        // This node's sessions live on; a dead node's run out.
        if self.backend() == Backend::Postgres {
            session_lease::Entity::update_many()
                .col_expr(
                    session_lease::Column::ExpiresAt,
                    Expr::value(now + self.session_lease_secs()),
                )
                .filter(session_lease::Column::NodeId.eq(self.node_id()))
                .exec(self.wdb())
                .await?;
            session_lease::Entity::delete_many()
                .filter(session_lease::Column::ExpiresAt.lt(now))
                .exec(self.wdb())
                .await?;
            // Counts of failed logins past their window and lockout (only
            // PostgreSQL keeps them in the database).
            let window = self.throttle().config().window_secs;
            login_strike::Entity::delete_many()
                .filter(login_strike::Column::FirstAt.lt(now - window))
                .filter(login_strike::Column::LockedUntil.lt(now))
                .exec(self.wdb())
                .await?;
        }
        // A node gone for a day is forgotten.
        cluster_node::Entity::delete_many()
            .filter(cluster_node::Column::LastSeen.lt(now - 86_400))
            .exec(self.wdb())
            .await?;
        Ok(())
    }

    /// `Err(seconds)` while the cluster's shared count has this account+IP
    /// or this IP locked out (PostgreSQL; SQLite's one node counts in
    /// memory alone); otherwise whether this account+IP has failures on
    /// record, which a good password then clears (so a login with none,
    /// the usual case, costs this one query and no write). A database
    /// error is no verdict: the memory copy still applies.
    pub(crate) async fn shared_throttle_check(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<bool, u64> {
        if self.backend() != Backend::Postgres {
            return Ok(false);
        }
        let now = self.now();
        let [(pair, _), (by_ip, _)] = strike_keys(account, ip, self.throttle().config());
        let rows = login_strike::Entity::find()
            .filter(login_strike::Column::Key.is_in([pair.clone(), by_ip]))
            .all(self.db())
            .await
            .unwrap_or_default();
        let until = rows.iter().map(|r| r.locked_until).max().unwrap_or(0);
        if until > now {
            Err((until - now) as u64)
        } else {
            Ok(rows.iter().any(|r| r.key == pair))
        }
    }

    /// Counts a failed login in the cluster's shared count.
    pub(crate) async fn shared_throttle_failure(&self, account: &str, ip: IpAddr) {
        if self.backend() != Backend::Postgres {
            return;
        }
        let cfg = self.throttle().config().clone();
        for (key, limit) in strike_keys(account, ip, &cfg) {
            if let Err(e) = self.strike(&key, limit, &cfg).await {
                tracing::warn!(error = %e, "could not count a failed login for the cluster");
            }
        }
    }

    async fn strike(&self, key: &str, limit: u32, cfg: &ThrottleConfig) -> CoreResult<()> {
        let now = self.now();
        let txn = self.wdb().begin().await?;
        // The row exists before it is locked, so two nodes counting the
        // first failure at once both count.
        login_strike::Entity::insert(login_strike::ActiveModel {
            key: Set(key.to_owned()),
            count: Set(0),
            first_at: Set(now),
            locked_until: Set(0),
        })
        .on_conflict(
            OnConflict::column(login_strike::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let row = login_strike::Entity::find_by_id(key.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?;
        let mut s = row.map_or_else(Strikes::default, |r| Strikes {
            count: u32::try_from(r.count).unwrap_or(0),
            first_at: r.first_at,
            locked_until: r.locked_until,
        });
        s.bump(now, limit, cfg);
        login_strike::Entity::update_many()
            .col_expr(
                login_strike::Column::Count,
                Expr::value(i32::try_from(s.count).unwrap_or(i32::MAX)),
            )
            .col_expr(login_strike::Column::FirstAt, Expr::value(s.first_at))
            .col_expr(
                login_strike::Column::LockedUntil,
                Expr::value(s.locked_until),
            )
            .filter(login_strike::Column::Key.eq(key))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A good password clears the account+IP count (not the IP's), when
    /// [`Core::shared_throttle_check`] found one.
    pub(crate) async fn shared_throttle_success(&self, account: &str, ip: IpAddr) {
        let [(key, _), _] = strike_keys(account, ip, self.throttle().config());
        let _ = login_strike::Entity::delete_many()
            .filter(login_strike::Column::Key.eq(key))
            .exec(self.wdb())
            .await;
    }

    /// How long a session's row outlives its node's last heartbeat.
    fn session_lease_secs(&self) -> i64 {
        let beat = self
            .inner
            .cluster
            .heartbeat
            .get()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        i64::try_from(beat.as_secs().max(1) * 3).unwrap_or(i64::MAX)
    }

    /// A slot for one more logged-in session of `account` over `protocol`
    /// on the whole cluster, at most `limit` at once (PostgreSQL; on
    /// SQLite this node's own count is the whole count). A database error
    /// is no refusal: the node's own count still applies.
    pub async fn take_session_slot(
        &self,
        account: AccountId,
        protocol: &str,
        limit: usize,
    ) -> ClusterSlot {
        if self.backend() != Backend::Postgres {
            return ClusterSlot::NotShared;
        }
        match self.lease_session(account, protocol, limit).await {
            Ok(Some(id)) => ClusterSlot::Taken(SessionLease {
                core: self.clone(),
                id,
            }),
            Ok(None) => ClusterSlot::Full,
            Err(e) => {
                tracing::warn!(error = %e, "could not count the account's sessions on the cluster");
                ClusterSlot::NotShared
            }
        }
    }

    async fn lease_session(
        &self,
        account: AccountId,
        protocol: &str,
        limit: usize,
    ) -> CoreResult<Option<String>> {
        use crate::entities::account;
        let now = self.now();
        let txn = self.wdb().begin().await?;
        // The account's row is the lock: two nodes counting at once take
        // turns, so the limit is never passed.
        account::Entity::find_by_id(account)
            .lock_exclusive()
            .one(&txn)
            .await?;
        let open = session_lease::Entity::find()
            .filter(session_lease::Column::AccountId.eq(account))
            .filter(session_lease::Column::Protocol.eq(protocol))
            .filter(session_lease::Column::ExpiresAt.gte(now))
            .count(&txn)
            .await?;
        if open >= limit as u64 {
            return Ok(None);
        }
        let n = self
            .inner
            .cluster
            .next_lease
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}/{n}", self.node_id());
        session_lease::Entity::insert(session_lease::ActiveModel {
            id: Set(id.clone()),
            account_id: Set(account),
            protocol: Set(protocol.to_owned()),
            node_id: Set(self.node_id().to_owned()),
            expires_at: Set(now + self.session_lease_secs()),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(Some(id))
    }

    /// Takes the account's POP3 maildrop lock for `holder` until `lease`
    /// seconds from now, unless another holder's lease is still running.
    pub async fn lock_maildrop(
        &self,
        account: AccountId,
        holder: &str,
        lease: i64,
    ) -> CoreResult<bool> {
        let now = self.now();
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let n = maildrop_lock::Entity::insert(maildrop_lock::ActiveModel {
            account_id: Set(account),
            holder: Set(holder.to_owned()),
            expires_at: Set(now + lease),
        })
        .on_conflict(
            OnConflict::column(maildrop_lock::Column::AccountId)
                .update_columns([
                    maildrop_lock::Column::Holder,
                    maildrop_lock::Column::ExpiresAt,
                ])
                .action_and_where(
                    Expr::col((maildrop_lock::Entity, maildrop_lock::Column::ExpiresAt)).lte(now),
                )
                .to_owned(),
        )
        .exec_without_returning(self.wdb())
        .await?;
        Ok(n == 1)
    }

    /// Extends `holder`'s lease; false when it is no longer the holder
    /// (its lease ran out and another session took the maildrop).
    pub async fn renew_maildrop(
        &self,
        account: AccountId,
        holder: &str,
        lease: i64,
    ) -> CoreResult<bool> {
        let now = self.now();
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let n = maildrop_lock::Entity::update_many()
            .col_expr(maildrop_lock::Column::ExpiresAt, Expr::value(now + lease))
            .filter(maildrop_lock::Column::AccountId.eq(account))
            .filter(maildrop_lock::Column::Holder.eq(holder))
            .exec(self.wdb())
            .await?
            .rows_affected;
        Ok(n == 1)
    }

    pub async fn unlock_maildrop(&self, account: AccountId, holder: &str) -> CoreResult<()> {
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        maildrop_lock::Entity::delete_many()
            .filter(maildrop_lock::Column::AccountId.eq(account))
            .filter(maildrop_lock::Column::Holder.eq(holder))
            .exec(self.wdb())
            .await?;
        Ok(())
    }
}

/// See [`Core::take_session_slot`].
pub enum ClusterSlot {
    /// One node: its own count is the cluster's.
    NotShared,
    /// Held until dropped.
    Taken(SessionLease),
    /// The account has as many sessions as it may, counting every node.
    Full,
}

/// One logged-in session's row; dropping it deletes the row.
pub struct SessionLease {
    core: Core,
    id: String,
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        let (core, id) = (self.core.clone(), std::mem::take(&mut self.id));
        // If this fails the row runs out with the node's next heartbeats.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = session_lease::Entity::delete_by_id(id)
                    .exec(core.wdb())
                    .await;
            });
        }
    }
}

/// The shared counts' keys: account+IP, and IP, each with its budget.
fn strike_keys(account: &str, ip: IpAddr, cfg: &ThrottleConfig) -> [(String, u32); 2] {
    [
        (
            format!("a {} {ip}", account.to_ascii_lowercase()),
            cfg.per_account_ip,
        ),
        (format!("i {ip}"), cfg.per_ip),
    ]
}

async fn heartbeat(core: Core, info: NodeInfo) {
    let started_at = core.now();
    let mut tick = tokio::time::interval(info.heartbeat.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = core.write_heartbeat(&info, started_at).await {
            tracing::debug!(error = %e, "could not write the heartbeat");
        }
    }
}

/// Sends what this node's commits said to the other nodes, many notices
/// in one statement when they come in a burst; queue wake-ups in a burst
/// are one.
async fn notifier(
    pool: sea_orm::sqlx::PgPool,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Notice>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1_000
            && let Ok(n) = rx.try_recv()
        {
            batch.push(n);
        }
        let mut channels: Vec<&str> = Vec::new();
        let mut payloads: Vec<String> = Vec::new();
        let mut queue = false;
        for n in batch {
            match n {
                Notice::Change(ev) => {
                    let p = encode(&node, &ev);
                    if !payloads.contains(&p) {
                        channels.push(CHANGES);
                        payloads.push(p);
                    }
                }
                Notice::Queue if !queue => {
                    queue = true;
                    channels.push(QUEUE);
                    payloads.push(node.clone());
                }
                Notice::Queue => {}
            }
        }
        let sent = sea_orm::sqlx::query(
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)",
        )
        .bind(&channels)
        .bind(&payloads)
        .execute(&pool)
        .await;
        if let Err(e) = sent {
            // The database is down for the other nodes as well; each
            // resynchronises when its own listener reconnects.
            tracing::warn!(error = %e, notices = payloads.len(), "could not notify the other nodes");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Hears the other nodes (`pool` is the main pool, whose host it follows).
/// Each (re)connection LISTENs first and then tells
/// every subscriber to look at the store, so nothing said while this node
/// was not listening is lost.
async fn listener(core: Core, pool: sea_orm::sqlx::PgPool) {
    use sea_orm::sqlx::postgres::PgListener;
    let own = core.node_id().to_owned();
    let mut first = true;
    loop {
        // Made from the main pool's options each time: after a failover
        // (`pg_failover`) they lead to the new primary.
        let opts = (*pool.connect_options())
            .clone()
            .application_name(LISTEN_APPLICATION_NAME);
        let listen_pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(opts);
        let mut l = match PgListener::connect_with(&listen_pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen to the other nodes yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = l.listen_all([CHANGES, QUEUE]).await {
            tracing::debug!(error = %e, "LISTEN failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !first {
            tracing::info!("listening to the other nodes again; subscribers resynchronise");
        }
        first = false;
        core.inner
            .cluster
            .resync
            .send_modify(|n| *n = n.wrapping_add(1));
        core.queue_wake_local();
        loop {
            match l.try_recv().await {
                Ok(Some(n)) if n.channel() == QUEUE => {
                    if n.payload() != own {
                        core.queue_wake_local();
                    }
                }
                Ok(Some(n)) => {
                    if let Some(ev) = decode(&own, n.payload()) {
                        core.publish_local(ev);
                    }
                }
                // The connection dropped: LISTEN again on a new one.
                Ok(None) | Err(_) => break,
            }
        }
        tracing::warn!("lost the connection that listens to the other nodes; reconnecting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_whom_a_change_concerns_and_skip_our_own() {
        let ev = ChangeEvent {
            account_id: AccountId::from_row(7),
            mailbox_id: Some(MailboxId::from_row(42)),
            kind: ChangeKind::NewMessages {
                uids: vec![crate::Uid(1), crate::Uid(2)],
            },
        };
        let p = encode("a:1:ff", &ev);
        assert_eq!(p, "a:1:ff 7 42 new");
        assert_eq!(decode("a:1:ff", &p), None, "our own");
        let got = decode("b:2:00", &p).unwrap();
        assert_eq!(got.account_id, ev.account_id);
        assert_eq!(got.mailbox_id, ev.mailbox_id);
        assert_eq!(got.kind, ChangeKind::NewMessages { uids: vec![] });
        let ended = ChangeEvent {
            account_id: AccountId::from_row(7),
            mailbox_id: None,
            kind: ChangeKind::SessionsEnded,
        };
        assert_eq!(decode("x", &encode("a", &ended)), Some(ended));
        for bad in [
            "a 7 42",
            "a x 42 new",
            "a 7 42 new extra",
            "a 7 42 nonsense",
            "",
        ] {
            assert_eq!(decode("x", bad), None, "{bad:?}");
        }
    }
}
