//! The in-process change feed. IMAP IDLE and live web views subscribe to it;
//! every committed change to a mailbox publishes one event after its commit,
//! never before, so a subscriber that reacts by reading sees the change.

use crate::ids::{AccountId, MailboxId, Uid};
use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    NewMessages {
        uids: Vec<Uid>,
    },
    FlagsChanged {
        uids: Vec<Uid>,
    },
    Expunged {
        uids: Vec<Uid>,
    },
    MailboxesChanged,
    /// Every session of the account must end (new password, disabled
    /// account, "sign out everywhere").
    SessionsEnded,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    pub account_id: AccountId,
    /// None for account-wide changes such as a mailbox rename.
    pub mailbox_id: Option<MailboxId>,
    pub kind: ChangeKind,
}

pub(crate) struct ChangeFeed {
    tx: broadcast::Sender<ChangeEvent>,
}

impl ChangeFeed {
    pub fn new() -> Self {
        // A subscriber that falls this far behind gets `Lagged` and must
        // resynchronise from the store, which IMAP does anyway on NOOP.
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.tx.subscribe()
    }

    pub fn publish(&self, ev: ChangeEvent) {
        // No subscribers is normal (no IMAP client idling).
        let _ = self.tx.send(ev);
    }
}
