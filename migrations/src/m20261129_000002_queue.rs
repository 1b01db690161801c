//! The outbound queue grows what delivery needs: per-destination state
//! (hold, adaptive concurrency, the last reply), the delivery log every
//! attempt writes to, and a few columns on queue entries.
//!
//! Existing rows keep working: the new columns have defaults.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000002_queue"
    }
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    MessageId,
    DelayedDsnSent,
    LastAttemptAt,
    Lane,
    Status,
    Domain,
    NextAttemptAt,
    BlobId,
}

#[derive(DeriveIden)]
enum QueueDestinations {
    Table,
    Domain,
    Held,
    Concurrency,
    Ceiling,
    Failures,
    LastReply,
    LastAttemptAt,
    NextAttemptAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeliveryLog {
    Table,
    Id,
    QueueId,
    MessageId,
    MailFrom,
    RcptTo,
    Domain,
    RemoteHost,
    RemoteIp,
    Tls,
    Outcome,
    Reply,
    DurationMs,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(QueueEntries::Table)
                .add_column(string(QueueEntries::MessageId).default(""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(QueueEntries::Table)
                .add_column(boolean(QueueEntries::DelayedDsnSent).default(false))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(QueueEntries::Table)
                .add_column(big_integer_null(QueueEntries::LastAttemptAt))
                .to_owned(),
        )
        .await?;
        // The retry lane is served domain by domain (round-robin): it steps
        // from domain to domain and claims a domain's due entries in due
        // order, both straight off this index, without scanning or sorting
        // a backlog of 100,000s.
        m.create_index(
            Index::create()
                .name("queue_lane_domain")
                .table(QueueEntries::Table)
                .col(QueueEntries::Status)
                .col(QueueEntries::Lane)
                .col(QueueEntries::Domain)
                .col(QueueEntries::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        // A claim takes a message's other recipients at the same domain.
        m.create_index(
            Index::create()
                .name("queue_blob")
                .table(QueueEntries::Table)
                .col(QueueEntries::BlobId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(QueueDestinations::Table)
                .col(string(QueueDestinations::Domain).primary_key())
                .col(boolean(QueueDestinations::Held).default(false))
                .col(integer(QueueDestinations::Concurrency))
                .col(integer_null(QueueDestinations::Ceiling))
                .col(integer(QueueDestinations::Failures).default(0))
                .col(text_null(QueueDestinations::LastReply))
                .col(big_integer_null(QueueDestinations::LastAttemptAt))
                .col(big_integer(QueueDestinations::NextAttemptAt).default(0))
                .col(big_integer(QueueDestinations::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DeliveryLog::Table)
                .col(pk_auto(DeliveryLog::Id))
                .col(integer(DeliveryLog::QueueId))
                .col(string(DeliveryLog::MessageId))
                .col(string(DeliveryLog::MailFrom))
                .col(string(DeliveryLog::RcptTo))
                .col(string(DeliveryLog::Domain))
                .col(string_null(DeliveryLog::RemoteHost))
                .col(string_null(DeliveryLog::RemoteIp))
                .col(boolean(DeliveryLog::Tls))
                .col(string(DeliveryLog::Outcome))
                .col(text(DeliveryLog::Reply))
                .col(big_integer(DeliveryLog::DurationMs))
                .col(big_integer(DeliveryLog::CreatedAt))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("delivery_log_message_id", DeliveryLog::MessageId),
            ("delivery_log_rcpt_to", DeliveryLog::RcptTo),
            ("delivery_log_mail_from", DeliveryLog::MailFrom),
            ("delivery_log_queue_id", DeliveryLog::QueueId),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(DeliveryLog::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DeliveryLog::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(QueueDestinations::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("queue_lane_domain")
                .table(QueueEntries::Table)
                .to_owned(),
        )
        .await?;
        for c in [
            QueueEntries::LastAttemptAt,
            QueueEntries::DelayedDsnSent,
            QueueEntries::MessageId,
        ] {
            m.alter_table(
                Table::alter()
                    .table(QueueEntries::Table)
                    .drop_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
