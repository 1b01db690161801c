//! The envelope of one accepted message: who sent it (the reverse path)
//! and who gets it, as local copies (account and the address each copy
//! is delivered for) and outside recipients to relay to. Delivery stores
//! the local copies and queues the rest; the queue and its runner read it
//! back. It depends on neither, so neither depends on the other through
//! it.

use crate::address::Address;
use crate::ids::AccountId;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; empty for bounces (`MAIL FROM:<>`).
    pub mail_from: String,
    /// Local copies; a second copy for the same account is dropped (the
    /// first recipient that reached it names it).
    pub local: Vec<LocalCopy>,
    /// Outside recipients, queued for relay.
    pub remote: Vec<Address>,
    /// The sender asked for REQUIRETLS (RFC 8689): every hop onward must
    /// be TLS with an authenticated certificate, or the message is not
    /// relayed.
    pub require_tls: bool,
}

/// One local copy: the account that gets it and the recipient address it
/// was delivered for, which the copy names in a `Delivered-To:` header
/// (the way Postfix's and Dovecot's local delivery do). For an alias or a
/// catchall that is the address the sender used, not the account's own:
/// it is how the owner of a catchall tells which address a message came
/// to, and how filters and loop checks see the final recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCopy {
    pub account_id: AccountId,
    /// Empty only for records a version without this field spooled: such
    /// a copy gets no header.
    pub delivered_to: String,
    /// Goes to the account's Junk folder (special-use `\Junk`, RFC 6154)
    /// instead of INBOX: the sender's domain asked for quarantine (DMARC
    /// `p=quarantine`) and the message failed its checks.
    pub junk: bool,
}

impl LocalCopy {
    pub fn new(account_id: AccountId, delivered_to: impl Into<String>) -> LocalCopy {
        LocalCopy {
            account_id,
            delivered_to: delivered_to.into(),
            junk: false,
        }
    }
}

impl Envelope {
    /// Adds the copies a local route (account, alias, catchall) delivers
    /// for `rcpt`, with an alias's outside targets; false, adding nothing,
    /// for a remote or rejected route, whose handling is the caller's
    /// policy (relay rules, reply codes).
    pub fn add_local_route(&mut self, rcpt: &str, route: &crate::routing::Route) -> bool {
        use crate::routing::Route;
        if !matches!(
            route,
            Route::Account(_) | Route::Alias { .. } | Route::Catchall { .. }
        ) {
            return false;
        }
        // The canonical form, lower-cased as the directory matches it; the
        // RCPT text itself when it does not parse, which routing would
        // have refused already.
        let delivered_to = Address::parse(rcpt)
            .map_or_else(|_| rcpt.to_owned(), |a| a.to_string())
            .to_lowercase();
        for a in route.local_accounts() {
            self.local.push(LocalCopy::new(a.id, delivered_to.clone()));
        }
        if let Route::Alias { forwards, .. } = route {
            self.remote.extend(forwards.iter().cloned());
        }
        true
    }

    /// The local copies to make: one per account, the first recipient
    /// that reached the account naming it.
    pub(crate) fn local_copies(&self) -> Vec<LocalCopy> {
        let mut seen = std::collections::HashSet::new();
        self.local
            .iter()
            .filter(|c| seen.insert(c.account_id))
            .cloned()
            .collect()
    }
}
