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
