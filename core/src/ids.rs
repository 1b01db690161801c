//! The core's ids as types: an account id cannot be passed where a mailbox
//! id is wanted, nor a UID where a MODSEQ is.
//!
//! Each is a plain copy of the stored column (`i32` row ids, `i64` for UIDs
//! and MODSEQs, which the schema keeps as BIGINT). Only the core makes row
//! ids from numbers ([`AccountId::from_row`] is crate-private): callers get
//! them from rows the core returned, so an id in a protocol session or a page
//! always names a row that existed. UIDs, MODSEQs and queue ids come from
//! clients and operators (`UID FETCH 4:9`, `CHANGEDSINCE 12`, `tern queue
//! retry 42`), so those have public constructors.

use std::fmt;

/// One id type: the newtype, its `Display`, and (derived) its conversions to
/// and from query values, so `Column::AccountId.eq(id)` reads as it did with
/// bare numbers and a query result can carry the typed id. `pub` before the
/// inner type gives the type a public constructor (numbers clients name);
/// without it only the core makes one.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($vis:vis $inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            sea_orm::DeriveValueType,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name($vis $inner);

        impl $name {
            /// An id read from a stored row. (Most come typed straight out
            /// of a query; not every id type needs this.)
            #[allow(dead_code)]
            pub(crate) const fn from_row(v: $inner) -> Self {
                $name(v)
            }

            /// The number as stored, for logs, URLs and the wire.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        // An auto-increment key: what an INSERT hands back.
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(n: u64) -> Result<Self, sea_orm::DbErr> {
                <$inner>::try_from_u64(n).map($name)
            }
        }
    };
}

/// What a client or operator types (`4:9`, `42`) parses straight into one.
macro_rules! parsed_from_text {
    ($($name:ident),*) => {$(
        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    )*};
}

id_type! {
    /// An account (`accounts.id`).
    AccountId(i32)
}

id_type! {
    /// A mailbox (`mailboxes.id`). Knowing one is not owning it: message
    /// operations go through [`crate::mail::OwnedMailbox`].
    MailboxId(i32)
}

id_type! {
    /// A stored message body (`blobs.id`), shared by every copy of it.
    BlobId(i32)
}

id_type! {
    /// An outbound queue entry (`queue_entries.id`): one recipient of one
    /// message. Operators name entries by number (`tern queue retry 42`),
    /// so this one has a public constructor; naming one that does not
    /// exist finds nothing.
    QueueId(pub i32)
}

id_type! {
    /// A message's UID in its mailbox (RFC 9051 section 2.3.1.1): strictly
    /// ascending, never reused within one UIDVALIDITY.
    // 0 where "none yet" needs a value (the highest UID of an empty mailbox).
    #[derive(Default)]
    Uid(pub i64)
}

parsed_from_text!(QueueId, Uid, ModSeq);

impl Uid {
    /// The UID after this one (UIDs are handed out one by one).
    pub const fn next(self) -> Uid {
        Uid(self.0 + 1)
    }
}

id_type! {
    /// A modification sequence (RFC 7162 section 3.1.1): every change to a
    /// message's flags or presence takes the mailbox's next one.
    #[derive(Default)]
    ModSeq(pub i64)
}

impl ModSeq {
    /// The MODSEQ after this one.
    pub const fn next(self) -> ModSeq {
        ModSeq(self.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_query_as_their_numbers() {
        let a = AccountId::from_row(7);
        assert_eq!(a.to_string(), "7");
        assert_eq!(a.get(), 7);
        assert_eq!(sea_orm::Value::from(a), sea_orm::Value::from(7i32));

        assert!(Uid(3) < Uid(9));
        assert_eq!("42".parse::<QueueId>(), Ok(QueueId(42)));
        assert!("4x".parse::<Uid>().is_err());
        assert_eq!(Uid(7).next(), Uid(8));
        assert_eq!(ModSeq::default().next(), ModSeq(1));
        // Stored as the bare number, in JSON too (the routing copy).
        assert_eq!(serde_json::to_string(&a).unwrap(), "7");
    }
}
