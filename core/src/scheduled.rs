//! Mail sent later, kept on the server: the webmail's undo window and its
//! "send later", and FUTURERELEASE (RFC 4865) on submission. Each is a row
//! of `scheduled_sends` until its time comes; then the scheduler (every
//! node runs one; a row is taken under a lease, so only one sends it)
//! sends it the way the webmail or submission would have at that moment,
//! and deletes it (and brings back snoozed messages, `crate::snooze`).
//! Until then it can be cancelled (the undo, which gives
//! the message back as a draft), sent at once, or listed.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use tokio::sync::watch;

use crate::delivery::Envelope;
use crate::entities::scheduled_send;
use crate::ids::AccountId;
use crate::routing::Route;
use crate::submission::{SendError, SendLimits, SubmissionError};
use crate::{Core, CoreError, CoreResult, Flags};

/// How a scheduled message came, which decides how it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// The webmail's undo window: sent when it closes.
    Undo,
    /// The webmail's "send later".
    Later,
    /// Submission with FUTURERELEASE (RFC 4865): the envelope and the
    /// message as they were accepted.
    Smtp,
}

impl ScheduleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Undo => "undo",
            ScheduleKind::Later => "later",
            ScheduleKind::Smtp => "smtp",
        }
    }

    pub fn parse(s: &str) -> Option<ScheduleKind> {
        match s {
            "undo" => Some(ScheduleKind::Undo),
            "later" => Some(ScheduleKind::Later),
            "smtp" => Some(ScheduleKind::Smtp),
            _ => None,
        }
    }
}

/// A message to send later.
#[derive(Clone, Debug)]
pub struct NewScheduled {
    pub kind: ScheduleKind,
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// The trace header it is sent with (RFC 5321 §4.4).
    pub received: String,
    /// What is sent (for the webmail: before submission's completion and
    /// signing, which happen when it is sent).
    pub raw: Vec<u8>,
    /// The message as a draft (Bcc kept), given back by an undo.
    pub draft: Option<Vec<u8>>,
    pub send_at: i64,
    pub require_tls: bool,
}

/// A scheduled message, as the webmail lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub id: i32,
    pub kind: ScheduleKind,
    pub subject: String,
    pub recipients: Vec<String>,
    pub send_at: i64,
    pub created_at: i64,
}

fn subject_of(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

fn listed(m: scheduled_send::Model) -> Scheduled {
    Scheduled {
        id: m.id,
        kind: ScheduleKind::parse(&m.kind).unwrap_or(ScheduleKind::Later),
        subject: m.subject,
        recipients: m.recipients.lines().map(str::to_owned).collect(),
        send_at: m.send_at,
        created_at: m.created_at,
    }
}

/// `2026-12-06T18:30` (a datetime-local field, read as UTC) as Unix time.
pub fn parse_utc_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min) = (t.next()??, t.next()??);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || min > 59
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + min * 60)
}

/// How the scheduler sends the webmail's messages.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub hostname: String,
    pub limits: SendLimits,
    /// How often due rows are looked for.
    pub poll: Duration,
}

pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SchedulerHandle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A row is someone's for this long once taken; a node that dies while
/// sending leaves it to another after that.
const LEASE_SECS: i64 = 120;
/// After a failure that may pass (the store unavailable), try again in.
const RETRY_SECS: i64 = 30;

impl Core {
    /// Keeps `n` to send at `n.send_at`; the id it is known by.
    pub async fn schedule(&self, account: AccountId, n: NewScheduled) -> CoreResult<i32> {
        let row = scheduled_send::ActiveModel {
            account_id: Set(account),
            kind: Set(n.kind.as_str().to_owned()),
            mail_from: Set(n.mail_from),
            recipients: Set(n.recipients.join("\n")),
            received: Set(n.received),
            subject: Set(subject_of(&n.raw)),
            raw: Set(n.raw),
            draft: Set(n.draft),
            send_at: Set(n.send_at),
            created_at: Set(self.now()),
            lease_until: Set(None),
            require_tls: Set(n.require_tls),
            ..Default::default()
        };
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let r = scheduled_send::Entity::insert(row).exec(self.wdb()).await?;
        self.inner.scheduler_wake.notify_one();
        Ok(r.last_insert_id)
    }

    /// The account's messages waiting to be sent, soonest first.
    pub async fn scheduled(&self, account: AccountId) -> CoreResult<Vec<Scheduled>> {
        Ok(scheduled_send::Entity::find()
            .filter(scheduled_send::Column::AccountId.eq(account))
            .order_by_asc(scheduled_send::Column::SendAt)
            .order_by_asc(scheduled_send::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(listed)
            .collect())
    }

    /// One of the account's scheduled messages.
    pub async fn scheduled_one(
        &self,
        account: AccountId,
        id: i32,
    ) -> CoreResult<Option<Scheduled>> {
        Ok(scheduled_send::Entity::find_by_id(id)
            .filter(scheduled_send::Column::AccountId.eq(account))
            .one(self.db())
            .await?
            .map(listed))
    }

    /// Takes a scheduled message back before it is sent: gone from the
    /// schedule, and returned as a draft (Bcc and attachments kept) for
    /// the caller to put in Drafts. None when it is not the account's, or
    /// already being sent (too late to undo).
    pub async fn cancel_scheduled(
        &self,
        account: AccountId,
        id: i32,
    ) -> CoreResult<Option<Vec<u8>>> {
        let now = self.now();
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let gone = scheduled_send::Entity::delete_many()
            .filter(scheduled_send::Column::Id.eq(id))
            .filter(scheduled_send::Column::AccountId.eq(account))
            .filter(
                Condition::any()
                    .add(scheduled_send::Column::LeaseUntil.is_null())
                    .add(scheduled_send::Column::LeaseUntil.lt(now)),
            )
            .exec_with_returning(self.wdb())
            .await?;
        Ok(gone.into_iter().next().map(|m| m.draft.unwrap_or(m.raw)))
    }

    /// Sends a scheduled message at once (at the scheduler's next look,
    /// within a second). False when there is no such message.
    pub async fn send_scheduled_now(&self, account: AccountId, id: i32) -> CoreResult<bool> {
        let now = self.now();
        let _w = self.sqlite_write_turn(crate::Priority::Urgent).await;
        let r = scheduled_send::Entity::update_many()
            .col_expr(scheduled_send::Column::SendAt, Expr::value(now))
            .filter(scheduled_send::Column::Id.eq(id))
            .filter(scheduled_send::Column::AccountId.eq(account))
            .filter(scheduled_send::Column::SendAt.gt(now))
            .exec(self.wdb())
            .await?;
        self.inner.scheduler_wake.notify_one();
        Ok(r.rows_affected == 1)
    }

    /// Due rows, taken under a lease.
    async fn claim_scheduled(&self) -> CoreResult<Vec<scheduled_send::Model>> {
        let now = self.now();
        let due = scheduled_send::Entity::find()
            .select_only()
            .column(scheduled_send::Column::Id)
            .filter(scheduled_send::Column::SendAt.lte(now))
            .filter(
                Condition::any()
                    .add(scheduled_send::Column::LeaseUntil.is_null())
                    .add(scheduled_send::Column::LeaseUntil.lt(now)),
            )
            .order_by_asc(scheduled_send::Column::SendAt)
            .limit(32);
        // Every node looks every second; a read first, so a quiet second
        // costs no write turn on SQLite's one writer.
        if due
            .clone()
            .into_tuple::<i32>()
            .one(self.db())
            .await?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
        Ok(scheduled_send::Entity::update_many()
            .col_expr(
                scheduled_send::Column::LeaseUntil,
                Expr::value(now + LEASE_SECS),
            )
            .filter(scheduled_send::Column::Id.in_subquery(due.into_query()))
            .filter(
                Condition::any()
                    .add(scheduled_send::Column::LeaseUntil.is_null())
                    .add(scheduled_send::Column::LeaseUntil.lt(now)),
            )
            .exec_with_returning(self.wdb())
            .await?)
    }

    async fn finish_scheduled(&self, id: i32) -> CoreResult<()> {
        let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
        scheduled_send::Entity::delete_by_id(id)
            .exec(self.wdb())
            .await?;
        Ok(())
    }

    async fn retry_scheduled(&self, id: i32) -> CoreResult<()> {
        let _w = self.sqlite_write_turn(crate::Priority::Bulk).await;
        scheduled_send::Entity::update_many()
            .col_expr(
                scheduled_send::Column::LeaseUntil,
                Expr::value(self.now() + RETRY_SECS),
            )
            .filter(scheduled_send::Column::Id.eq(id))
            .exec(self.wdb())
            .await?;
        Ok(())
    }

    /// Sends one due row. Ok(true): done (sent, or refused for good and
    /// the sender told); Ok(false): try again later.
    async fn send_due(&self, cfg: &SchedulerConfig, m: &scheduled_send::Model) -> CoreResult<bool> {
        let Some(account) = self.account_by_id(m.account_id).await? else {
            // The account is gone, and its mail with it.
            return Ok(true);
        };
        let account = account.as_ref();
        let rcpts: Vec<String> = m.recipients.lines().map(str::to_owned).collect();
        let kind = ScheduleKind::parse(&m.kind).unwrap_or(ScheduleKind::Later);
        if kind == ScheduleKind::Smtp {
            // Accepted by submission already: only routed again now.
            let mut env = Envelope {
                require_tls: m.require_tls,
                mail_from: m.mail_from.clone(),
                ..Default::default()
            };
            let mut refused = Vec::new();
            for r in &rcpts {
                match self.route(r).await? {
                    Route::Remote(a) => env.remote.push(a),
                    Route::Rejected(why) => refused.push(format!("{r}: {}", why.reason())),
                    route => {
                        env.add_local_route(r, &route);
                    }
                }
            }
            if !env.local.is_empty() || !env.remote.is_empty() {
                let mut wire = m.received.as_bytes().to_vec();
                wire.extend_from_slice(&m.raw);
                if let Err(e) = self.accept(&env, &wire).await {
                    tracing::warn!(id = m.id, error = %e, "scheduled message: not accepted now; trying again");
                    return Ok(false);
                }
            }
            if !refused.is_empty() {
                self.tell_not_sent(&account, &m.subject, &refused.join("\n"), None)
                    .await?;
            }
            return Ok(true);
        }
        match self
            .send(
                &account,
                &rcpts,
                &m.raw,
                &cfg.hostname,
                &m.received,
                cfg.limits,
            )
            .await
        {
            Ok(sent) => {
                tracing::info!(id = m.id, user = %account.address, local = sent.local, queued = sent.queued, "scheduled message sent");
                Ok(true)
            }
            Err(SendError::Submission(SubmissionError::Core(e))) => {
                tracing::warn!(id = m.id, error = %e, "scheduled message: store unavailable; trying again");
                Ok(false)
            }
            Err(e) => {
                self.tell_not_sent(&account, &m.subject, &e.to_string(), m.draft.as_deref())
                    .await?;
                Ok(true)
            }
        }
    }

    /// A scheduled message could not be sent: the draft goes back to
    /// Drafts, and a note to the INBOX says why.
    async fn tell_not_sent(
        &self,
        account: &crate::AccountRef,
        subject: &str,
        why: &str,
        draft: Option<&[u8]>,
    ) -> CoreResult<()> {
        if let Some(d) = draft
            && let Some(drafts) = self.mailbox(account.id, "Drafts").await?
        {
            self.append(
                account.id,
                drafts.id,
                d,
                Flags::DRAFT.union(Flags::SEEN),
                None,
            )
            .await?;
        }
        let inbox = self
            .mailbox(account.id, "INBOX")
            .await?
            .ok_or_else(|| CoreError::NotFound("INBOX".into()))?;
        let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
        let note = format!(
            "From: Mail Delivery System <postmaster@{host}>\r\nTo: {to}\r\nSubject: Not sent: {subject}\r\n\
             Date: {date}\r\nAuto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Your message \"{subject}\" was due to be sent, but could not be:\r\n\r\n{why}\r\n\r\n{back}",
            host = account
                .address
                .rsplit_once('@')
                .map_or("localhost", |(_, d)| d),
            to = account.address,
            date = crate::submission::rfc5322_date(self.now()),
            back = if draft.is_some() {
                "It is back in your Drafts folder.\r\n"
            } else {
                ""
            },
        );
        self.append(account.id, inbox.id, note.as_bytes(), Flags::empty(), None)
            .await?;
        Ok(())
    }

    /// Starts this node's scheduler.
    pub fn start_scheduler(&self, cfg: SchedulerConfig) -> SchedulerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let core = self.clone();
        let wake = Arc::clone(&self.inner.scheduler_wake);
        let task = tokio::spawn(async move {
            loop {
                if *stopped.borrow() {
                    break;
                }
                match core.claim_scheduled().await {
                    Ok(rows) => {
                        for m in rows {
                            let done = match core.send_due(&cfg, &m).await {
                                Ok(d) => d,
                                Err(e) => {
                                    tracing::warn!(id = m.id, error = %e, "scheduled message: trying again");
                                    false
                                }
                            };
                            let r = if done {
                                core.finish_scheduled(m.id).await
                            } else {
                                core.retry_scheduled(m.id).await
                            };
                            if let Err(e) = r {
                                tracing::warn!(id = m.id, error = %e, "scheduled message: could not record the outcome");
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "scheduler: store unavailable"),
                }
                // Snoozed messages whose time has come go back too.
                if let Err(e) = core.wake_snoozed().await {
                    tracing::debug!(error = %e, "scheduler: snoozes not woken yet");
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(cfg.poll) => {}
                }
            }
        });
        SchedulerHandle { stop, task }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_at_is_read_as_utc() {
        assert_eq!(parse_utc_datetime("1970-01-01T00:00"), Some(0));
        assert_eq!(parse_utc_datetime("2026-12-06T18:30"), Some(1_796_581_800));
        assert_eq!(parse_utc_datetime("2024-02-29T12:00"), Some(1_709_208_000));
        assert_eq!(parse_utc_datetime(""), None);
        assert_eq!(parse_utc_datetime("2026-13-01T00:00"), None);
        assert_eq!(parse_utc_datetime("tomorrow"), None);
    }
}
