//! Per-destination state: held by an operator, the adaptive connection
//! limit, and the back-off of a destination no host of which answers.

use super::*;

impl Destination {
    pub fn new(domain: &str, concurrency: i32) -> Self {
        Destination {
            domain: domain.to_owned(),
            held: false,
            concurrency,
            ceiling: None,
            failures: 0,
            last_reply: None,
            last_attempt_at: None,
            next_attempt_at: 0,
            retry_requested_at: None,
        }
    }
}

impl Core {
    pub(super) async fn set_destination_held(&self, domain: &str, held: bool) -> CoreResult<()> {
        let mut d = self
            .queue_destination(domain)
            .await?
            .unwrap_or_else(|| Destination::new(&domain.to_ascii_lowercase(), 0));
        d.held = held;
        self.queue_save_destination(&d).await
    }

    pub(crate) async fn queue_destination(&self, domain: &str) -> CoreResult<Option<Destination>> {
        Ok(
            queue_destination::Entity::find_by_id(domain.to_ascii_lowercase())
                .one(self.db())
                .await?
                .map(Destination::from),
        )
    }

    /// Destinations that have state: every domain tried or held.
    pub(crate) async fn queue_destinations(&self) -> CoreResult<Vec<Destination>> {
        Ok(queue_destination::Entity::find()
            .order_by_asc(queue_destination::Column::Domain)
            .all(self.db())
            .await?
            .into_iter()
            .map(Destination::from)
            .collect())
    }

    /// Upserts a destination's state. The hold flag is an operator's and
    /// is written only by hold/release; the runner's writes leave it be.
    pub async fn queue_save_destination(&self, d: &Destination) -> CoreResult<()> {
        self.save_destination(d, true).await
    }

    pub(crate) async fn save_destination(
        &self,
        d: &Destination,
        with_hold: bool,
    ) -> CoreResult<()> {
        use sea_orm::sea_query::OnConflict;
        let mut cols = vec![
            queue_destination::Column::Concurrency,
            queue_destination::Column::Ceiling,
            queue_destination::Column::Failures,
            queue_destination::Column::LastReply,
            queue_destination::Column::LastAttemptAt,
            queue_destination::Column::NextAttemptAt,
            queue_destination::Column::UpdatedAt,
        ];
        if with_hold {
            cols.push(queue_destination::Column::Held);
        }
        let _w = self.sqlite_write_turn(Priority::Bulk).await;
        queue_destination::Entity::insert(queue_destination::ActiveModel {
            domain: Set(d.domain.to_ascii_lowercase()),
            held: Set(d.held),
            concurrency: Set(d.concurrency),
            ceiling: Set(d.ceiling),
            failures: Set(d.failures),
            last_reply: Set(d.last_reply.clone()),
            last_attempt_at: Set(d.last_attempt_at),
            next_attempt_at: Set(d.next_attempt_at),
            updated_at: Set(self.now()),
            // Only an operator's retry and the runner set it, each with
            // its own statement (see `queue_retry`).
            retry_requested_at: sea_orm::ActiveValue::NotSet,
        })
        .on_conflict(
            OnConflict::column(queue_destination::Column::Domain)
                .update_columns(cols)
                .to_owned(),
        )
        .exec_without_returning(self.db())
        .await?;
        Ok(())
    }
}
