//! The first schema: domains, accounts, aliases, mailboxes, content-addressed
//! blobs, messages, queue entries and web sessions.
//!
//! Times are Unix seconds in BIGINT columns so both backends store them the
//! same way. UIDs, modseqs and sizes are BIGINT because IMAP gives them 32 and
//! 63 bits (RFC 9051 §2.3.1.1, RFC 7162 §3.1.1).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000001_initial"
    }
}

#[derive(DeriveIden)]
enum Domains {
    Table,
    Id,
    Name,
    CatchallLocalPart,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    DomainId,
    LocalPart,
    Address,
    PasswordHash,
    Role,
    QuotaBytes,
    UsedBytes,
    Disabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Aliases {
    Table,
    Id,
    DomainId,
    LocalPart,
    Address,
    Target,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Mailboxes {
    Table,
    Id,
    AccountId,
    Name,
    SpecialUse,
    Uidvalidity,
    Uidnext,
    HighestModseq,
    Subscribed,
}

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Id,
    Sha256,
    Size,
    Bytes,
    Refcount,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    MailboxId,
    Uid,
    BlobId,
    Flags,
    Keywords,
    Modseq,
    InternalDate,
    Size,
    FromAddr,
    ToAddr,
    Subject,
    SentDate,
    MessageIdHeader,
    InReplyTo,
    ThreadId,
    Snippet,
    HasAttachments,
}

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    Id,
    BlobId,
    MailFrom,
    RcptTo,
    Domain,
    Lane,
    Status,
    Attempts,
    NextAttemptAt,
    LockOwner,
    LeaseUntil,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebSessions {
    Table,
    Id,
    AccountId,
    CsrfToken,
    ClientIp,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Domains::Table)
                .col(pk_auto(Domains::Id))
                .col(string_uniq(Domains::Name))
                .col(string_null(Domains::CatchallLocalPart))
                .col(big_integer(Domains::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .col(pk_auto(Accounts::Id))
                .col(integer(Accounts::DomainId))
                .col(string(Accounts::LocalPart))
                .col(string_uniq(Accounts::Address))
                .col(string(Accounts::PasswordHash))
                .col(string(Accounts::Role))
                .col(big_integer(Accounts::QuotaBytes))
                .col(big_integer(Accounts::UsedBytes))
                .col(boolean(Accounts::Disabled))
                .col(big_integer(Accounts::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Accounts::Table, Accounts::DomainId)
                        .to(Domains::Table, Domains::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Aliases::Table)
                .col(pk_auto(Aliases::Id))
                .col(integer(Aliases::DomainId))
                .col(string(Aliases::LocalPart))
                .col(string(Aliases::Address))
                .col(string(Aliases::Target))
                .col(big_integer(Aliases::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Aliases::Table, Aliases::DomainId)
                        .to(Domains::Table, Domains::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("aliases_address_target")
                .table(Aliases::Table)
                .col(Aliases::Address)
                .col(Aliases::Target)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Mailboxes::Table)
                .col(pk_auto(Mailboxes::Id))
                .col(integer(Mailboxes::AccountId))
                .col(string(Mailboxes::Name))
                .col(string_null(Mailboxes::SpecialUse))
                .col(big_integer(Mailboxes::Uidvalidity))
                .col(big_integer(Mailboxes::Uidnext))
                .col(big_integer(Mailboxes::HighestModseq))
                .col(boolean(Mailboxes::Subscribed))
                .foreign_key(
                    ForeignKey::create()
                        .from(Mailboxes::Table, Mailboxes::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("mailboxes_account_name")
                .table(Mailboxes::Table)
                .col(Mailboxes::AccountId)
                .col(Mailboxes::Name)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Blobs::Table)
                .col(pk_auto(Blobs::Id))
                .col(string_uniq(Blobs::Sha256))
                .col(big_integer(Blobs::Size))
                .col(binary(Blobs::Bytes))
                .col(big_integer(Blobs::Refcount))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(pk_auto(Messages::Id))
                .col(integer(Messages::MailboxId))
                .col(big_integer(Messages::Uid))
                .col(integer(Messages::BlobId))
                .col(integer(Messages::Flags))
                .col(string(Messages::Keywords))
                .col(big_integer(Messages::Modseq))
                .col(big_integer(Messages::InternalDate))
                .col(big_integer(Messages::Size))
                .col(string(Messages::FromAddr))
                .col(string(Messages::ToAddr))
                .col(string(Messages::Subject))
                .col(big_integer_null(Messages::SentDate))
                .col(string(Messages::MessageIdHeader))
                .col(string(Messages::InReplyTo))
                .col(big_integer(Messages::ThreadId))
                .col(string(Messages::Snippet))
                .col(boolean(Messages::HasAttachments))
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::MailboxId)
                        .to(Mailboxes::Table, Mailboxes::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::BlobId)
                        .to(Blobs::Table, Blobs::Id),
                )
                .to_owned(),
        )
        .await?;
        // One index per access path a listing or lookup needs, so no listing
        // scans a mailbox: by UID (IMAP), by date (webmail), by modseq
        // (CONDSTORE), by Message-ID and thread (conversation view).
        for (name, cols) in [
            (
                "messages_mailbox_uid",
                vec![Messages::MailboxId, Messages::Uid],
            ),
            (
                "messages_mailbox_date",
                vec![Messages::MailboxId, Messages::InternalDate],
            ),
            (
                "messages_mailbox_modseq",
                vec![Messages::MailboxId, Messages::Modseq],
            ),
            ("messages_message_id", vec![Messages::MessageIdHeader]),
            ("messages_thread", vec![Messages::ThreadId]),
            ("messages_blob", vec![Messages::BlobId]),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Messages::Table);
            for c in cols {
                idx.col(c);
            }
            if name == "messages_mailbox_uid" {
                idx.unique();
            }
            m.create_index(idx.to_owned()).await?;
        }

        m.create_table(
            Table::create()
                .table(QueueEntries::Table)
                .col(pk_auto(QueueEntries::Id))
                .col(integer(QueueEntries::BlobId))
                .col(string(QueueEntries::MailFrom))
                .col(string(QueueEntries::RcptTo))
                .col(string(QueueEntries::Domain))
                .col(string(QueueEntries::Lane))
                .col(string(QueueEntries::Status))
                .col(integer(QueueEntries::Attempts))
                .col(big_integer(QueueEntries::NextAttemptAt))
                .col(string_null(QueueEntries::LockOwner))
                .col(big_integer_null(QueueEntries::LeaseUntil))
                .col(string_null(QueueEntries::LastError))
                .col(big_integer(QueueEntries::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(QueueEntries::Table, QueueEntries::BlobId)
                        .to(Blobs::Table, Blobs::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("queue_due")
                .table(QueueEntries::Table)
                .col(QueueEntries::Status)
                .col(QueueEntries::Lane)
                .col(QueueEntries::NextAttemptAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WebSessions::Table)
                .col(string(WebSessions::Id).primary_key())
                .col(integer(WebSessions::AccountId))
                .col(string(WebSessions::CsrfToken))
                .col(string(WebSessions::ClientIp))
                .col(big_integer(WebSessions::CreatedAt))
                .col(big_integer(WebSessions::ExpiresAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebSessions::Table, WebSessions::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            WebSessions::Table.into_iden(),
            QueueEntries::Table.into_iden(),
            Messages::Table.into_iden(),
            Blobs::Table.into_iden(),
            Mailboxes::Table.into_iden(),
            Aliases::Table.into_iden(),
            Accounts::Table.into_iden(),
            Domains::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
