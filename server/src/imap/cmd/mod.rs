//! The IMAP command handlers, one file per group, as mox and Stalwart
//! split theirs. Each handler is an `impl Session` method headed by the
//! RFC section it implements, shaped parse (done by `proto`) -> check
//! state and arguments -> core -> reply through `response`. The session
//! (`session.rs`) owns the connection, the state table and the dispatch.

pub(in crate::imap) mod any;
pub(in crate::imap) mod auth;
pub(in crate::imap) mod copy_move;
pub(in crate::imap) mod fetch;
pub(in crate::imap) mod idle;
pub(in crate::imap) mod mailbox;
pub(in crate::imap) mod search;
pub(in crate::imap) mod select;
pub(in crate::imap) mod store;

/// What the handlers share.
mod prelude {
    pub(super) use std::collections::{HashMap, HashSet};
    pub(super) use std::sync::Arc;
    pub(super) use std::time::Duration;

    pub(super) use mailcore::messages::FlagOp;
    pub(super) use mailcore::{
        AuthError, ChangeKind, CoreError, FlagSet, Flags, Mail, MessageSummary, ModSeq, NewMailbox,
        SortOrder, Uid,
    };

    pub(super) use crate::imap::fetch;
    pub(super) use crate::imap::proto::{
        IString, ListArgs, Qresync, SearchKey, SeqSet, StatusItem, StoreOp,
    };
    pub(super) use crate::imap::response::{Code, Response, Status};
    pub(super) use crate::imap::session::{Fail, Flow, Res, Selected, Session, State, parse_flags};
    pub(super) use crate::netio::{Line, live, read_line};
}
