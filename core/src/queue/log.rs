//! Reading the delivery log: one row per recipient per attempt, written
//! by `finish` (and by an operator's delete).

use super::*;

impl Core {
    /// The delivery log, newest first.
    pub(crate) async fn delivery_log(&self, q: &LogQuery) -> CoreResult<Vec<LogEntry>> {
        let mut s = delivery_log::Entity::find();
        if let Some(t) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let t = t.trim_matches(|c| c == '<' || c == '>');
            s = s.filter(
                Condition::any()
                    .add(delivery_log::Column::MessageId.contains(t))
                    .add(delivery_log::Column::MailFrom.contains(t))
                    .add(delivery_log::Column::RcptTo.contains(t)),
            );
        }
        if let Some(id) = q.queue_id {
            s = s.filter(delivery_log::Column::QueueId.eq(id));
        }
        let limit = if q.limit == 0 { 100 } else { q.limit };
        Ok(s.order_by_desc(delivery_log::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(LogEntry::from)
            .collect())
    }
}

/// One message's way through the queue, for `tern trace`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub message_id: String,
    /// Every attempt for every recipient, oldest first.
    pub attempts: Vec<LogEntry>,
    /// Recipients still queued.
    pub waiting: Vec<QueueEntry>,
}

impl Core {
    /// The message a queue id or Message-ID names: its attempts from the
    /// delivery log and its entries still queued. A queue id finds the
    /// message, and then every recipient of it.
    pub(crate) async fn delivery_trace(&self, key: &str) -> CoreResult<Trace> {
        let key = key.trim().trim_matches(|c| c == '<' || c == '>');
        let mut message_id = key.to_owned();
        if let Ok(id) = key.parse::<i32>() {
            let id = QueueId::from_row(id);
            let logged = delivery_log::Entity::find()
                .filter(delivery_log::Column::QueueId.eq(id))
                .one(self.db())
                .await?
                .map(|r| r.message_id);
            let queued = match logged {
                Some(m) => Some(m),
                None => queue_entry::Entity::find_by_id(id)
                    .one(self.db())
                    .await?
                    .map(|r| r.message_id),
            };
            match queued {
                Some(m) => message_id = m,
                None => return Ok(Trace::default()),
            }
        }
        if message_id.is_empty() {
            return Ok(Trace::default());
        }
        let attempts = delivery_log::Entity::find()
            .filter(delivery_log::Column::MessageId.eq(message_id.clone()))
            .order_by_asc(delivery_log::Column::Id)
            .limit(10_000)
            .all(self.db())
            .await?
            .into_iter()
            .map(LogEntry::from)
            .collect();
        let waiting = queue_entry::Entity::find()
            .filter(queue_entry::Column::MessageId.eq(message_id.clone()))
            .order_by_asc(queue_entry::Column::Id)
            .limit(10_000)
            .all(self.db())
            .await?
            .into_iter()
            .map(QueueEntry::from)
            .collect();
        Ok(Trace {
            message_id,
            attempts,
            waiting,
        })
    }
}
