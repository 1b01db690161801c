//! What the public status page says (issue 22): each service's state,
//! derived from live signals, and a timeline of incidents opened and
//! closed by those states, with an admin's notes.
//!
//! The monitor ([`Core::start_status`]) reads the signals every few
//! seconds, turns them into states and plain words ([`assess`], pure), and
//! keeps the result as a [`Board`] in memory: the page renders from it
//! without touching the database, so it still answers, and says why, while
//! the store is down. Incidents are written to the store when it answers;
//! one opened during an outage of the store is written once it is back.
//!
//! On a cluster every node runs a monitor. A node opening an incident
//! adopts one already open for the same service, so one outage is one
//! incident; listener states are this node's own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::Core;
use crate::entities::{delivery_log, queue_entry, status_incident, status_note};
use crate::error::{CoreError, CoreResult};
use crate::queue::{Lane, QueueStatus, stored_as_text};

/// How far back the timeline and the feed go.
pub const TIMELINE_SECS: i64 = 7 * 24 * 3600;
/// The window for delivery outcomes.
pub const DELIVERY_WINDOW_SECS: i64 = 15 * 60;
/// The longest note an admin may add.
pub const MAX_NOTE_CHARS: usize = 2000;

stored_as_text! {
    /// What a user of the server relies on, in the order the page lists it.
    Service {
        Inbound => "inbound",
        Submission => "submission",
        Outbound => "outbound",
        Imap => "imap",
        Pop3 => "pop3",
        Webmail => "webmail",
        Storage => "storage",
    }
}

impl Service {
    /// The name the page shows.
    pub fn title(self) -> &'static str {
        match self {
            Service::Inbound => "Incoming mail (SMTP, port 25)",
            Service::Submission => "Sending from mail apps (submission)",
            Service::Outbound => "Outgoing delivery",
            Service::Imap => "IMAP",
            Service::Pop3 => "POP3",
            Service::Webmail => "Webmail",
            Service::Storage => "Mail store",
        }
    }
}

stored_as_text! {
    /// A service's state; later is worse.
    State {
        Operating => "operating",
        Degraded => "degraded",
        Down => "down",
    }
}

impl State {
    pub fn title(self) -> &'static str {
        match self {
            State::Operating => "Operating",
            State::Degraded => "Degraded",
            State::Down => "Down",
        }
    }
}

/// A listener as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerState {
    Up,
    /// Configured but its accept loop has ended.
    Down,
}

/// One destination whose latest attempts were deferred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Troubled {
    pub domain: String,
    /// Deferred attempts in the window.
    pub deferred: u64,
    /// The reply's code and enhanced code ("421 4.7.0"), or empty when no
    /// host answered. Never its text, which may name a person.
    pub code: String,
}

/// Delivery outcomes over the last [`DELIVERY_WINDOW_SECS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryWindow {
    pub delivered: u64,
    pub deferred: u64,
    pub failed: u64,
    /// Largest first, at most five.
    pub troubled: Vec<Troubled>,
    /// How many destinations are troubled in all.
    pub troubled_total: usize,
}

impl DeliveryWindow {
    /// Delivered out of all attempts, if there were any.
    pub fn success_ratio(&self) -> Option<f64> {
        let all = self.delivered + self.deferred + self.failed;
        (all > 0).then(|| self.delivered as f64 / all as f64)
    }
}

/// What the monitor read, at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Signals {
    /// Configured listeners only: a service with none is not offered here.
    pub listeners: Vec<(Service, ListenerState)>,
    /// The storage probe: how long it took, or that it failed.
    pub storage: Result<Duration, ()>,
    /// Age of the oldest spooled message not yet in the store.
    pub spool_oldest_secs: Option<i64>,
    pub spool_records: u64,
    /// Whether this node delivers outbound mail.
    pub relay_enabled: bool,
    /// Per lane, how long its most overdue entry has waited past its due
    /// time (None: the queue could not be read).
    pub overdue: Option<Vec<(Lane, i64)>>,
    pub deliveries: Option<DeliveryWindow>,
}

/// When a signal turns a service degraded.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Spooled mail older than this means delivery to mailboxes is late.
    pub inbound_delay_secs: i64,
    /// Queue entries overdue by more than this mean outbound is late.
    pub outbound_delay_secs: i64,
    /// A storage probe slower than this is degraded.
    pub slow_storage: Duration,
    /// Below this success ratio (with at least `min_attempts`), outbound
    /// is degraded.
    pub min_success: f64,
    pub min_attempts: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            inbound_delay_secs: 120,
            outbound_delay_secs: 600,
            slow_storage: Duration::from_secs(2),
            min_success: 0.5,
            min_attempts: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    pub service: Service,
    pub state: State,
    /// Plain words for a customer.
    pub summary: String,
}

/// "about 40 minutes", for a delay in seconds.
pub fn about(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 90 {
        return "about a minute".into();
    }
    let mins = (secs + 30) / 60;
    if mins < 90 {
        return format!("about {mins} minutes");
    }
    let hours = (secs + 1800) / 3600;
    if hours < 48 {
        return format!("about {hours} hours");
    }
    format!("about {} days", (secs + 43_200) / 86_400)
}

/// "a.test", "a.test and b.test", "a.test, b.test and 3 other destinations".
fn domains_in_words(w: &DeliveryWindow) -> String {
    let names: Vec<&str> = w
        .troubled
        .iter()
        .take(2)
        .map(|t| t.domain.as_str())
        .collect();
    let rest = w.troubled_total.saturating_sub(names.len());
    match (names.as_slice(), rest) {
        ([one], 0) => (*one).to_owned(),
        ([a, b], 0) => format!("{a} and {b}"),
        ([a, b], n) => format!(
            "{a}, {b} and {n} other destination{}",
            if n == 1 { "" } else { "s" }
        ),
        _ => format!("{} destinations", w.troubled_total),
    }
}

/// Signals to states and words, for every service offered here. Pure: the
/// monitor and the tests call it alike.
pub fn assess(s: &Signals, t: &Thresholds) -> Vec<ServiceStatus> {
    let store_ok = s.storage.is_ok();
    let listener = |svc: Service| -> Option<ListenerState> {
        let mine: Vec<ListenerState> = s
            .listeners
            .iter()
            .filter(|(x, _)| *x == svc)
            .map(|(_, l)| *l)
            .collect();
        if mine.is_empty() {
            None
        } else if mine.contains(&ListenerState::Down) {
            Some(ListenerState::Down)
        } else {
            Some(ListenerState::Up)
        }
    };
    let mut out = Vec::new();
    let mut push = |service, state, summary: String| {
        out.push(ServiceStatus {
            service,
            state,
            summary,
        })
    };
    let spool_late = s
        .spool_oldest_secs
        .filter(|&a| s.spool_records > 0 && a > t.inbound_delay_secs);

    if let Some(l) = listener(Service::Inbound) {
        match l {
            ListenerState::Down => push(
                Service::Inbound,
                State::Down,
                "Port 25 is not accepting connections on this server; sending servers keep the mail and try again.".into(),
            ),
            ListenerState::Up if !store_ok => push(
                Service::Inbound,
                State::Degraded,
                format!(
                    "Incoming mail is being accepted and stored safely; delivery to mailboxes is delayed{} because the mail store is recovering.",
                    s.spool_oldest_secs
                        .filter(|_| s.spool_records > 0)
                        .map(|a| format!(" by {}", about(a)))
                        .unwrap_or_default()
                ),
            ),
            ListenerState::Up => match spool_late {
                Some(a) => push(
                    Service::Inbound,
                    State::Degraded,
                    format!(
                        "Incoming mail is being accepted and stored safely; delivery to mailboxes is delayed by {}.",
                        about(a)
                    ),
                ),
                None => push(
                    Service::Inbound,
                    State::Operating,
                    "Incoming mail is being accepted and delivered to mailboxes.".into(),
                ),
            },
        }
    }

    if let Some(l) = listener(Service::Submission) {
        let (state, words) = match l {
            ListenerState::Down => (
                State::Down,
                "The submission ports are not accepting connections on this server.",
            ),
            ListenerState::Up if !store_ok => (
                State::Down,
                "Mail apps cannot sign in to send until the mail store recovers; nothing already sent is lost.",
            ),
            ListenerState::Up => (State::Operating, "Mail apps can sign in and send."),
        };
        push(Service::Submission, state, words.into());
    }

    if s.relay_enabled {
        let late = s
            .overdue
            .as_ref()
            .and_then(|o| o.iter().map(|(_, a)| *a).max())
            .filter(|&a| a > t.outbound_delay_secs);
        let w = s.deliveries.as_ref();
        let troubled = w.filter(|w| w.troubled_total > 0);
        let poor = w.and_then(|w| {
            let all = w.delivered + w.deferred + w.failed;
            w.success_ratio()
                .filter(|&r| all >= t.min_attempts && r < t.min_success)
        });
        if !store_ok || s.overdue.is_none() {
            push(
                Service::Outbound,
                State::Down,
                "Outgoing mail is not being delivered while the mail store recovers; messages already sent are kept and leave once it is back.".into(),
            );
        } else if late.is_some() || troubled.is_some() || poor.is_some() {
            let mut words = Vec::new();
            if let Some(a) = late {
                words.push(format!("Outgoing mail is delayed by {}.", about(a)));
            }
            if let Some(w) = troubled {
                // Tern's own `451 4.4.x` means no host answered at all.
                let answered: Vec<&str> = w
                    .troubled
                    .iter()
                    .map(|t| t.code.as_str())
                    .filter(|c| !unreachable(c))
                    .collect();
                let why = match answered.first() {
                    None => "the receiving server cannot be reached".to_owned(),
                    Some(c)
                        if answered.len() == w.troubled.len()
                            && answered.iter().all(|x| x == c) =>
                    {
                        format!("the receiving server answers {c}")
                    }
                    Some(_) => {
                        "the receiving servers ask us to try later or cannot be reached".into()
                    }
                };
                words.push(format!(
                    "Mail to {} is being retried: {why}. Tern keeps it and tries again; nothing is lost.",
                    domains_in_words(w)
                ));
            }
            if let Some(r) = poor {
                words.push(format!(
                    "Only {:.0}% of delivery attempts in the last 15 minutes succeeded; the rest are retried.",
                    r * 100.0
                ));
            }
            push(Service::Outbound, State::Degraded, words.join(" "));
        } else {
            push(
                Service::Outbound,
                State::Operating,
                "Outgoing mail is being delivered.".into(),
            );
        }
    }

    for (svc, what) in [(Service::Imap, "IMAP"), (Service::Pop3, "POP3")] {
        if let Some(l) = listener(svc) {
            let (state, words) = match l {
                ListenerState::Down => (
                    State::Down,
                    format!("{what} is not accepting connections on this server."),
                ),
                ListenerState::Up if !store_ok => (
                    State::Down,
                    "Mail apps cannot read mail until the mail store recovers. Your mail is safe."
                        .into(),
                ),
                ListenerState::Up => (
                    State::Operating,
                    format!("Mail apps can read mail over {what}."),
                ),
            };
            push(svc, state, words);
        }
    }

    if store_ok {
        push(
            Service::Webmail,
            State::Operating,
            "The webmail is working.".into(),
        );
    } else {
        push(
            Service::Webmail,
            State::Down,
            "The webmail cannot show mail until the mail store recovers. Your mail is safe.".into(),
        );
    }

    match s.storage {
        Err(()) => push(
            Service::Storage,
            State::Down,
            "The mail store is not answering. Incoming mail is kept safely until it is back."
                .into(),
        ),
        Ok(took) if took > t.slow_storage => push(
            Service::Storage,
            State::Degraded,
            format!(
                "The mail store is slow to answer ({:.1} s); everything works, more slowly.",
                took.as_secs_f64()
            ),
        ),
        Ok(_) => push(
            Service::Storage,
            State::Operating,
            "The mail store is answering.".into(),
        ),
    }
    out
}

/// A note an admin added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub id: i32,
    pub incident_id: Option<i32>,
    pub author: String,
    pub body: String,
    pub created_at: i64,
}

/// One episode of a service not operating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    /// None until it is written to the store (it opened while the store
    /// was down).
    pub id: Option<i32>,
    pub service: Service,
    /// The worst state reached.
    pub state: State,
    pub summary: String,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub updated_at: i64,
    pub notes: Vec<Note>,
}

/// What the status page shows, as of `checked_at`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Board {
    /// 0 until the first check.
    pub checked_at: i64,
    pub services: Vec<ServiceStatus>,
    /// Newest first: every open incident and those closed in the last
    /// [`TIMELINE_SECS`].
    pub incidents: Vec<Incident>,
    /// Notes not tied to an incident, newest first.
    pub notes: Vec<Note>,
    pub delivery_success: Option<f64>,
}

impl Board {
    /// The worst state of any service.
    pub fn worst(&self) -> State {
        self.services
            .iter()
            .map(|s| s.state)
            .max()
            .unwrap_or(State::Operating)
    }

    /// Services not operating.
    pub fn troubles(&self) -> impl Iterator<Item = &ServiceStatus> {
        self.services.iter().filter(|s| s.state != State::Operating)
    }

    /// When anything on the board last changed (for feeds).
    pub fn updated_at(&self) -> i64 {
        let inc = self.incidents.iter().map(|i| {
            i.notes
                .iter()
                .map(|n| n.created_at)
                .max()
                .unwrap_or(0)
                .max(i.closed_at.unwrap_or(i.opened_at))
        });
        let notes = self.notes.iter().map(|n| n.created_at);
        inc.chain(notes).max().unwrap_or(self.checked_at)
    }
}

/// The board, shared between the monitor and the pages.
#[derive(Default)]
pub struct StatusState {
    board: std::sync::RwLock<Arc<Board>>,
}

/// How the monitor runs.
pub struct StatusConfig {
    pub every: Duration,
    pub relay_enabled: bool,
    pub thresholds: Thresholds,
    /// This node's configured listeners and whether each is up.
    pub listeners: Box<dyn Fn() -> Vec<(Service, ListenerState)> + Send + Sync>,
}

/// An incident as the monitor tracks it until the store has it.
#[derive(Clone, Debug)]
struct Tracked {
    inc: Incident,
    /// Not yet written as it is.
    dirty: bool,
}

/// Opens and closes incidents from successive assessments.
#[derive(Default)]
struct Tracker {
    items: Vec<Tracked>,
    /// Open incidents in the store were taken over (after a restart).
    adopted: bool,
}

impl Tracker {
    fn observe(&mut self, services: &[ServiceStatus], now: i64) {
        for t in self.items.iter_mut().filter(|t| t.inc.closed_at.is_none()) {
            // A service this node does not offer (outbound on a node that
            // does not relay) is left to the nodes that do.
            let Some(now_is) = services.iter().find(|s| s.service == t.inc.service) else {
                continue;
            };
            let still = Some(now_is).filter(|s| s.state != State::Operating);
            match still {
                None => {
                    t.inc.closed_at = Some(now);
                    t.inc.updated_at = now;
                    t.dirty = true;
                    tracing::info!(
                        service = t.inc.service.as_str(),
                        opened_at = t.inc.opened_at,
                        "status: operating again; incident closed"
                    );
                }
                Some(s) => {
                    if s.state > t.inc.state || s.summary != t.inc.summary {
                        t.inc.state = t.inc.state.max(s.state);
                        t.inc.summary = s.summary.clone();
                        t.inc.updated_at = now;
                        t.dirty = true;
                    }
                }
            }
        }
        for s in services.iter().filter(|s| s.state != State::Operating) {
            let open = self
                .items
                .iter()
                .any(|t| t.inc.service == s.service && t.inc.closed_at.is_none());
            if !open {
                tracing::warn!(
                    service = s.service.as_str(),
                    state = s.state.as_str(),
                    summary = %s.summary,
                    "status: incident opened"
                );
                self.items.push(Tracked {
                    inc: Incident {
                        id: None,
                        service: s.service,
                        state: s.state,
                        summary: s.summary.clone(),
                        opened_at: now,
                        closed_at: None,
                        updated_at: now,
                        notes: Vec::new(),
                    },
                    dirty: true,
                });
            }
        }
    }
}

impl Core {
    /// The latest board (an empty one before the first check).
    pub fn status_board(&self) -> Arc<Board> {
        self.inner
            .status
            .board
            .read()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    fn set_status_board(&self, b: Board) {
        if let Ok(mut g) = self.inner.status.board.write() {
            *g = Arc::new(b);
        }
    }

    /// Runs the monitor until the task is aborted.
    pub fn start_status(&self, cfg: StatusConfig) -> tokio::task::JoinHandle<()> {
        let core = self.clone();
        tokio::spawn(async move {
            let mut tracker = Tracker::default();
            let mut loaded: (Vec<Incident>, Vec<Note>) = Default::default();
            loop {
                core.status_tick(&cfg, &mut tracker, &mut loaded).await;
                tokio::time::sleep(cfg.every).await;
            }
        })
    }

    async fn status_tick(
        &self,
        cfg: &StatusConfig,
        tracker: &mut Tracker,
        loaded: &mut (Vec<Incident>, Vec<Note>),
    ) {
        let signals = self.status_signals(cfg).await;
        let store_ok = signals.storage.is_ok();
        let services = assess(&signals, &cfg.thresholds);
        let now = self.now();
        if store_ok && !tracker.adopted {
            match self.open_incidents().await {
                Ok(open) => {
                    for inc in open {
                        let offered = services.iter().any(|s| s.service == inc.service);
                        if offered && !tracker.items.iter().any(|t| t.inc.service == inc.service) {
                            tracker.items.push(Tracked { inc, dirty: false });
                        }
                    }
                    tracker.adopted = true;
                }
                Err(e) => tracing::debug!(error = %e, "status: open incidents not read"),
            }
        }
        tracker.observe(&services, now);
        if store_ok {
            for t in tracker.items.iter_mut().filter(|t| t.dirty) {
                match self.save_incident(&mut t.inc).await {
                    Ok(()) => t.dirty = false,
                    Err(e) => tracing::debug!(error = %e, "status: incident not saved yet"),
                }
            }
            tracker
                .items
                .retain(|t| t.inc.closed_at.is_none() || t.dirty);
            match self.status_timeline(now).await {
                Ok(l) => *loaded = l,
                Err(e) => tracing::debug!(error = %e, "status: timeline not read"),
            }
        }
        // The store's timeline, with what only this monitor knows on top.
        let mut incidents = loaded.0.clone();
        for t in &tracker.items {
            match incidents
                .iter_mut()
                .find(|i| i.id.is_some() && i.id == t.inc.id)
            {
                Some(i) => {
                    i.state = t.inc.state;
                    i.summary = t.inc.summary.clone();
                    i.closed_at = t.inc.closed_at;
                }
                None => incidents.push(t.inc.clone()),
            }
        }
        incidents.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
        let delivery_success = signals
            .deliveries
            .as_ref()
            .and_then(DeliveryWindow::success_ratio);
        self.set_status_board(Board {
            checked_at: now,
            services,
            incidents,
            notes: loaded.1.clone(),
            delivery_success,
        });
    }

    async fn status_signals(&self, cfg: &StatusConfig) -> Signals {
        let started = std::time::Instant::now();
        let probe = tokio::time::timeout(Duration::from_secs(5), self.health()).await;
        let storage = match probe {
            Ok(Ok(())) => Ok(started.elapsed()),
            _ => Err(()),
        };
        let now = self.now();
        let (spool_records, spool_oldest_secs) = match self.spool() {
            Some(sp) => {
                let st = sp.stats();
                (st.records, st.oldest.map(|t| now.saturating_sub(t).max(0)))
            }
            None => (0, None),
        };
        let (overdue, deliveries) = if storage.is_ok() && cfg.relay_enabled {
            let limit = Duration::from_secs(3);
            let overdue = tokio::time::timeout(limit, self.queue_overdue(now)).await;
            let window = tokio::time::timeout(limit, self.delivery_window(now)).await;
            (
                overdue.ok().and_then(Result::ok),
                window.ok().and_then(Result::ok),
            )
        } else {
            (None, None)
        };
        Signals {
            listeners: (cfg.listeners)(),
            storage,
            spool_oldest_secs,
            spool_records,
            relay_enabled: cfg.relay_enabled,
            overdue,
            deliveries,
        }
    }

    /// Per lane, how long its most overdue queued entry has waited past its
    /// due time: an index seek each on `(status, lane, next_attempt_at)`.
    pub async fn queue_overdue(&self, now: i64) -> CoreResult<Vec<(Lane, i64)>> {
        let mut out = Vec::new();
        for lane in Lane::ALL {
            let due: Option<Option<i64>> = queue_entry::Entity::find()
                .select_only()
                .column_as(queue_entry::Column::NextAttemptAt.min(), "due")
                .filter(queue_entry::Column::Status.eq(QueueStatus::Queued.as_str()))
                .filter(queue_entry::Column::Lane.eq(lane.as_str()))
                .into_tuple()
                .one(self.db())
                .await?;
            let late = due.flatten().map_or(0, |d| now.saturating_sub(d).max(0));
            out.push((lane, late));
        }
        Ok(out)
    }

    /// Delivery outcomes of the last 15 minutes, and the destinations whose
    /// latest attempt was deferred.
    pub async fn delivery_window(&self, now: i64) -> CoreResult<DeliveryWindow> {
        let rows: Vec<(String, String, i64, i32)> = delivery_log::Entity::find()
            .select_only()
            .column(delivery_log::Column::Domain)
            .column(delivery_log::Column::Outcome)
            .column_as(delivery_log::Column::Id.count(), "n")
            .column_as(delivery_log::Column::Id.max(), "last")
            .filter(delivery_log::Column::CreatedAt.gte(now - DELIVERY_WINDOW_SECS))
            .group_by(delivery_log::Column::Domain)
            .group_by(delivery_log::Column::Outcome)
            .into_tuple()
            .all(self.db())
            .await?;
        let mut w = DeliveryWindow::default();
        // domain -> (last delivered id, last deferred id, deferred count)
        let mut by_domain: HashMap<String, (i32, i32, u64)> = HashMap::new();
        for (domain, outcome, n, last) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            let d = by_domain.entry(domain).or_default();
            match outcome.as_str() {
                "delivered" => {
                    w.delivered += n;
                    d.0 = d.0.max(last);
                }
                "deferred" => {
                    w.deferred += n;
                    d.1 = d.1.max(last);
                    d.2 += n;
                }
                "failed" | "expired" => w.failed += n,
                _ => {}
            }
        }
        let mut troubled: Vec<(String, i32, u64)> = by_domain
            .into_iter()
            .filter(|(_, (ok, late, _))| late > ok)
            .map(|(d, (_, late, n))| (d, late, n))
            .collect();
        troubled.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        w.troubled_total = troubled.len();
        for (domain, last, deferred) in troubled.into_iter().take(5) {
            let reply = delivery_log::Entity::find_by_id(last)
                .one(self.db())
                .await?
                .map(|r| r.reply)
                .unwrap_or_default();
            w.troubled.push(Troubled {
                domain,
                deferred,
                code: reply_code(&reply),
            });
        }
        Ok(w)
    }

    async fn open_incidents(&self) -> CoreResult<Vec<Incident>> {
        Ok(status_incident::Entity::find()
            .filter(status_incident::Column::ClosedAt.is_null())
            .order_by_asc(status_incident::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .filter_map(incident_from)
            .collect())
    }

    /// Writes an incident: a new one adopts an incident another node (or
    /// this one before a restart) has open for the same service.
    async fn save_incident(&self, i: &mut Incident) -> CoreResult<()> {
        if i.id.is_none() && i.closed_at.is_none() {
            let open = status_incident::Entity::find()
                .filter(status_incident::Column::Service.eq(i.service.as_str()))
                .filter(status_incident::Column::ClosedAt.is_null())
                .order_by_desc(status_incident::Column::Id)
                .one(self.db())
                .await?;
            if let Some(o) = open {
                i.id = Some(o.id);
                i.opened_at = i.opened_at.min(o.opened_at);
                if let Some(s) = State::parse(&o.state) {
                    i.state = i.state.max(s);
                }
            }
        }
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        match i.id {
            Some(id) => {
                status_incident::Entity::update_many()
                    .col_expr(
                        status_incident::Column::State,
                        Expr::value(i.state.as_str()),
                    )
                    .col_expr(
                        status_incident::Column::Summary,
                        Expr::value(i.summary.clone()),
                    )
                    .col_expr(status_incident::Column::OpenedAt, Expr::value(i.opened_at))
                    .col_expr(status_incident::Column::ClosedAt, Expr::value(i.closed_at))
                    .col_expr(
                        status_incident::Column::UpdatedAt,
                        Expr::value(i.updated_at),
                    )
                    .filter(status_incident::Column::Id.eq(id))
                    .exec(self.wdb())
                    .await?;
            }
            None => {
                let row = status_incident::ActiveModel {
                    service: Set(i.service.as_str().to_owned()),
                    state: Set(i.state.as_str().to_owned()),
                    summary: Set(i.summary.clone()),
                    opened_at: Set(i.opened_at),
                    closed_at: Set(i.closed_at),
                    updated_at: Set(i.updated_at),
                    ..Default::default()
                }
                .insert(self.wdb())
                .await?;
                i.id = Some(row.id);
            }
        }
        Ok(())
    }

    /// Incidents open or closed within the timeline, with their notes, and
    /// the notes of the same period tied to none.
    pub async fn status_timeline(&self, now: i64) -> CoreResult<(Vec<Incident>, Vec<Note>)> {
        let since = now - TIMELINE_SECS;
        let mut incidents: Vec<Incident> = status_incident::Entity::find()
            .filter(
                status_incident::Column::ClosedAt
                    .is_null()
                    .or(status_incident::Column::ClosedAt.gte(since)),
            )
            .order_by_desc(status_incident::Column::OpenedAt)
            .limit(200)
            .all(self.db())
            .await?
            .into_iter()
            .filter_map(incident_from)
            .collect();
        let notes: Vec<Note> = status_note::Entity::find()
            .filter(status_note::Column::CreatedAt.gte(since))
            .order_by_desc(status_note::Column::CreatedAt)
            .order_by_desc(status_note::Column::Id)
            .limit(200)
            .all(self.db())
            .await?
            .into_iter()
            .map(|n| Note {
                id: n.id,
                incident_id: n.incident_id,
                author: n.author,
                body: n.body,
                created_at: n.created_at,
            })
            .collect();
        let mut loose = Vec::new();
        for n in notes {
            match incidents
                .iter_mut()
                .find(|i| i.id.is_some() && i.id == n.incident_id)
            {
                Some(i) => i.notes.push(n),
                None => loose.push(n),
            }
        }
        Ok((incidents, loose))
    }

    /// An admin's note: on the newest open incident if there is one,
    /// otherwise on its own (planned work, an all-clear). It shows on the
    /// page at the monitor's next check.
    ///
    /// Only server admins (and the operator at the shell) may; the author
    /// is kept for the record (`tern status`) and never shown publicly.
    pub async fn status_add_note(
        &self,
        actor: &crate::admin::Actor,
        body: &str,
    ) -> CoreResult<Note> {
        if actor
            .account
            .as_ref()
            .is_some_and(|a| a.role != crate::Role::Admin)
        {
            return Err(CoreError::Forbidden);
        }
        let author = actor.name.as_str();
        let body = body.trim();
        if body.is_empty() {
            return Err(CoreError::Invalid("the note is empty".into()));
        }
        if body.chars().count() > MAX_NOTE_CHARS {
            return Err(CoreError::Invalid(format!(
                "a note is at most {MAX_NOTE_CHARS} characters"
            )));
        }
        let open = status_incident::Entity::find()
            .filter(status_incident::Column::ClosedAt.is_null())
            .order_by_desc(status_incident::Column::OpenedAt)
            .one(self.db())
            .await?;
        let now = self.now();
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let row = status_note::ActiveModel {
            incident_id: Set(open.map(|o| o.id)),
            author: Set(author.to_owned()),
            body: Set(body.to_owned()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(self.wdb())
        .await?;
        Ok(Note {
            id: row.id,
            incident_id: row.incident_id,
            author: row.author,
            body: row.body,
            created_at: row.created_at,
        })
    }

    /// Outbound mail from these addresses that has been deferred at least
    /// once and still waits: (how many, the latest reason, next attempt).
    pub async fn outbound_waiting(
        &self,
        from: &[String],
    ) -> CoreResult<Option<(u64, String, i64)>> {
        if from.is_empty() {
            return Ok(None);
        }
        // Every webmail page asks: one aggregate and one row, not the rows.
        let waiting = || {
            queue_entry::Entity::find()
                .filter(queue_entry::Column::MailFrom.is_in(from.iter().cloned()))
                .filter(queue_entry::Column::Lane.eq(Lane::Retry.as_str()))
        };
        let (count, next): (i64, Option<i64>) = waiting()
            .select_only()
            .column_as(queue_entry::Column::Id.count(), "n")
            .column_as(queue_entry::Column::NextAttemptAt.min(), "next")
            .into_tuple()
            .one(self.db())
            .await?
            .unwrap_or((0, None));
        let latest = waiting()
            .order_by_desc(queue_entry::Column::Id)
            .one(self.db())
            .await?;
        let (Some(latest), Some(next)) = (latest, next) else {
            return Ok(None);
        };
        let code = reply_code(latest.last_error.as_deref().unwrap_or(""));
        let reason = if unreachable(&code) {
            format!("{} cannot be reached", latest.domain)
        } else {
            format!("{} answers {code}", latest.domain)
        };
        Ok(Some((u64::try_from(count).unwrap_or(0), reason, next)))
    }
}

fn incident_from(m: status_incident::Model) -> Option<Incident> {
    Some(Incident {
        id: Some(m.id),
        service: Service::parse(&m.service)?,
        state: State::parse(&m.state)?,
        summary: m.summary,
        opened_at: m.opened_at,
        closed_at: m.closed_at,
        updated_at: m.updated_at,
        notes: Vec::new(),
    })
}

/// A reply code that says no server answered: none at all, or the
/// `451 4.4.x` (RFC 3463 §3.5, network and routing) the relay writes for a
/// connection that failed.
fn unreachable(code: &str) -> bool {
    code.is_empty()
        || code
            .split(' ')
            .nth(1)
            .is_some_and(|e| e.starts_with("4.4."))
}

/// "421 4.7.0" from "421 4.7.0 Try again later": the reply code and, if
/// present, the enhanced status code (RFC 3463); never the text.
pub fn reply_code(reply: &str) -> String {
    let mut words = reply.split([' ', '-']);
    let Some(code) = words
        .next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
    else {
        return String::new();
    };
    match words.next().filter(|e| {
        let parts: Vec<&str> = e.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    }) {
        Some(enh) => format!("{code} {enh}"),
        None => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Signals {
        Signals {
            listeners: vec![
                (Service::Inbound, ListenerState::Up),
                (Service::Submission, ListenerState::Up),
                (Service::Submission, ListenerState::Up),
                (Service::Imap, ListenerState::Up),
                (Service::Pop3, ListenerState::Up),
            ],
            storage: Ok(Duration::from_millis(3)),
            spool_oldest_secs: None,
            spool_records: 0,
            relay_enabled: true,
            overdue: Some(vec![(Lane::Fresh, 0), (Lane::Retry, 0), (Lane::Bounce, 0)]),
            deliveries: Some(DeliveryWindow::default()),
        }
    }

    fn state_of(v: &[ServiceStatus], s: Service) -> Option<&ServiceStatus> {
        v.iter().find(|x| x.service == s)
    }

    #[test]
    fn all_well_is_all_operating() {
        let v = assess(&healthy(), &Thresholds::default());
        assert_eq!(v.len(), 7);
        assert!(v.iter().all(|s| s.state == State::Operating), "{v:?}");
    }

    #[test]
    fn store_down_keeps_inbound_accepting_and_says_how_late() {
        let mut s = healthy();
        s.storage = Err(());
        s.spool_records = 12;
        s.spool_oldest_secs = Some(40 * 60);
        let v = assess(&s, &Thresholds::default());
        let inbound = state_of(&v, Service::Inbound).unwrap();
        assert_eq!(inbound.state, State::Degraded);
        assert_eq!(
            inbound.summary,
            "Incoming mail is being accepted and stored safely; delivery to mailboxes is delayed by about 40 minutes because the mail store is recovering."
        );
        for svc in [
            Service::Imap,
            Service::Webmail,
            Service::Storage,
            Service::Outbound,
        ] {
            assert_eq!(state_of(&v, svc).unwrap().state, State::Down, "{svc:?}");
        }
    }

    #[test]
    fn a_deferring_destination_degrades_outbound_by_name_and_code() {
        let mut s = healthy();
        s.deliveries = Some(DeliveryWindow {
            delivered: 50,
            deferred: 3,
            failed: 0,
            troubled: vec![Troubled {
                domain: "out.test".into(),
                deferred: 3,
                code: "421 4.7.0".into(),
            }],
            troubled_total: 1,
        });
        let v = assess(&s, &Thresholds::default());
        let o = state_of(&v, Service::Outbound).unwrap();
        assert_eq!(o.state, State::Degraded);
        assert_eq!(
            o.summary,
            "Mail to out.test is being retried: the receiving server answers 421 4.7.0. Tern keeps it and tries again; nothing is lost."
        );
    }

    #[test]
    fn a_destination_nobody_answers_for_is_unreachable_not_answering() {
        let mut s = healthy();
        s.deliveries = Some(DeliveryWindow {
            deferred: 2,
            troubled: vec![Troubled {
                domain: "down.test".into(),
                deferred: 2,
                code: "451 4.4.1".into(),
            }],
            troubled_total: 1,
            ..Default::default()
        });
        let v = assess(&s, &Thresholds::default());
        assert_eq!(
            state_of(&v, Service::Outbound).unwrap().summary,
            "Mail to down.test is being retried: the receiving server cannot be reached. Tern keeps it and tries again; nothing is lost."
        );
    }

    #[test]
    fn late_queue_and_poor_ratio_and_closed_ports() {
        let mut s = healthy();
        s.overdue = Some(vec![
            (Lane::Fresh, 3 * 3600),
            (Lane::Retry, 0),
            (Lane::Bounce, 0),
        ]);
        s.deliveries = Some(DeliveryWindow {
            delivered: 2,
            deferred: 18,
            ..Default::default()
        });
        s.listeners[0].1 = ListenerState::Down;
        s.relay_enabled = true;
        let v = assess(&s, &Thresholds::default());
        let o = state_of(&v, Service::Outbound).unwrap();
        assert_eq!(
            o.summary,
            "Outgoing mail is delayed by about 3 hours. Only 10% of delivery attempts in the last 15 minutes succeeded; the rest are retried."
        );
        assert_eq!(state_of(&v, Service::Inbound).unwrap().state, State::Down);
        // Not offered here: not listed.
        s.listeners.retain(|(x, _)| *x != Service::Pop3);
        s.relay_enabled = false;
        let v = assess(&s, &Thresholds::default());
        assert!(state_of(&v, Service::Pop3).is_none());
        assert!(state_of(&v, Service::Outbound).is_none());
    }

    #[test]
    fn incidents_open_worsen_and_close() {
        let mut t = Tracker::default();
        let mut s = healthy();
        t.observe(&assess(&s, &Thresholds::default()), 100);
        assert!(t.items.is_empty());
        s.storage = Ok(Duration::from_secs(3));
        t.observe(&assess(&s, &Thresholds::default()), 110);
        assert_eq!(t.items.len(), 1);
        assert_eq!(t.items[0].inc.state, State::Degraded);
        s.storage = Err(());
        t.observe(&assess(&s, &Thresholds::default()), 120);
        let storage: Vec<_> = t
            .items
            .iter()
            .filter(|x| x.inc.service == Service::Storage)
            .collect();
        assert_eq!(storage.len(), 1, "one episode is one incident");
        assert_eq!(storage[0].inc.state, State::Down);
        assert_eq!(storage[0].inc.opened_at, 110);
        // A node that does not relay leaves an outbound incident open.
        let mut deferring = healthy();
        deferring.deliveries = Some(DeliveryWindow {
            troubled: vec![Troubled {
                domain: "x.test".into(),
                deferred: 1,
                code: "421 4.7.0".into(),
            }],
            troubled_total: 1,
            ..Default::default()
        });
        t.observe(&assess(&deferring, &Thresholds::default()), 125);
        let mut no_relay = healthy();
        no_relay.relay_enabled = false;
        t.observe(&assess(&no_relay, &Thresholds::default()), 130);
        let open: Vec<Service> = t
            .items
            .iter()
            .filter(|x| x.inc.closed_at.is_none())
            .map(|x| x.inc.service)
            .collect();
        assert_eq!(open, vec![Service::Outbound]);
        t.observe(&assess(&healthy(), &Thresholds::default()), 140);
        assert!(t.items.iter().all(|x| x.inc.closed_at.is_some()));
    }

    #[test]
    fn reply_codes_never_carry_text() {
        assert_eq!(reply_code("421 4.7.0 Try again later"), "421 4.7.0");
        assert_eq!(
            reply_code("452-4.2.2 <bob@x.test> is over quota"),
            "452 4.2.2"
        );
        assert_eq!(reply_code("451 local problem"), "451");
        assert_eq!(reply_code("connection refused"), "");
        assert_eq!(about(30), "about a minute");
        assert_eq!(about(40 * 60), "about 40 minutes");
        assert_eq!(about(3 * 3600), "about 3 hours");
    }
}
