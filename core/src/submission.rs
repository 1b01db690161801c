//! Rules for mail that an authenticated user sends, shared by SMTP
//! submission and the webmail so both enforce the same policy:
//! every `From:` address must be one the account owns (RFC 6409 §8.1
//! lets a submission server enforce this), and a message without
//! `Message-ID` or `Date` gets them (RFC 6409 §8.2, §8.3).

use crate::ids::Uid;
use mail_parser::{HeaderName, MessageParser};
use rand::RngCore;

use crate::Core;
use crate::directory::AccountRef;
use crate::error::CoreError;

#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("From: address {0} is not yours")]
    NotYourAddress(String),
    #[error("the message has no From: header")]
    NoFrom,
    #[error("the message has more than one {0}: header")]
    DuplicateHeader(&'static str),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl Core {
    /// Checks the headers of a submitted message and returns it with any
    /// missing `Message-ID` and `Date` added at the top.
    pub async fn complete_submission(
        &self,
        account: &AccountRef,
        raw: &[u8],
        hostname: &str,
    ) -> Result<Vec<u8>, SubmissionError> {
        let parsed = MessageParser::default().parse_headers(raw);
        let Some(msg) = parsed else {
            return Err(SubmissionError::NoFrom);
        };
        // RFC 5322 §3.6: at most one From: and one Sender:. Readers differ
        // on which of two they show, so a second one is how a sender would
        // hide behind someone else's address: refuse it outright.
        let mut from_headers = 0;
        let mut sender_headers = 0;
        // Every address a reader may show as the author: From:, Sender:,
        // and the Resent- forms (RFC 5322 §3.6.6), which may repeat.
        let mut claimed: Vec<String> = Vec::new();
        for h in msg.headers() {
            match h.name {
                HeaderName::From => from_headers += 1,
                HeaderName::Sender => sender_headers += 1,
                HeaderName::ResentFrom | HeaderName::ResentSender => {}
                _ => continue,
            }
            if let Some(list) = h.value.as_address() {
                claimed.extend(list.iter().filter_map(|a| a.address()).map(str::to_owned));
            }
        }
        if from_headers > 1 {
            return Err(SubmissionError::DuplicateHeader("From"));
        }
        if sender_headers > 1 {
            return Err(SubmissionError::DuplicateHeader("Sender"));
        }
        let has_from = msg
            .from()
            .is_some_and(|a| a.iter().any(|x| x.address().is_some()));
        if !has_from {
            return Err(SubmissionError::NoFrom);
        }
        for f in &claimed {
            if !self.may_send_as(account, f).await? {
                return Err(SubmissionError::NotYourAddress(f.clone()));
            }
        }
        let mut extra = String::new();
        if msg.message_id().is_none() {
            let mut b = [0u8; 12];
            rand::rngs::OsRng.fill_bytes(&mut b);
            extra.push_str(&format!("Message-ID: <{}@{hostname}>\r\n", hex::encode(b)));
        }
        if msg.date().is_none() {
            extra.push_str(&format!("Date: {}\r\n", rfc5322_date(self.now())));
        }
        let mut out = Vec::with_capacity(extra.len() + raw.len());
        out.extend_from_slice(extra.as_bytes());
        out.extend_from_slice(raw);
        // DKIM (RFC 6376) for the From: domain, checked above to be one the
        // account may send as, over the message as it will leave.
        let from_domain = msg
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        if let Some(d) = from_domain {
            match self.dkim_sign(&d, &out).await {
                Ok(sigs) if !sigs.is_empty() => {
                    let mut signed = sigs;
                    signed.extend_from_slice(&out);
                    return Ok(signed);
                }
                Ok(_) => {}
                // Mail still goes, unsigned, rather than not at all; the
                // log says why (a node without the shared secrets key).
                Err(e) => {
                    metrics::counter!("tern_dkim_failures_total").increment(1);
                    tracing::error!(error = %e, domain = %d, "could not DKIM-sign a submitted message");
                }
            }
        }
        Ok(out)
    }
}

/// The Date header value for now, in RFC 5322 form.
pub fn rfc5322_date(unix: i64) -> String {
    mail_parser::DateTime::from_timestamp(unix).to_rfc822()
}

/// Why a webmail send was refused, per recipient where it applies, so the
/// page can say which address is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no recipients")]
    NoRecipients,
    #[error("too many recipients (limit {0})")]
    TooManyRecipients(usize),
    #[error("{0}: {1}")]
    Recipient(String, String),
    #[error("the message is too big (limit {0} bytes)")]
    TooBig(usize),
    #[error("mailbox full: quota exceeded")]
    OverQuota,
    #[error(transparent)]
    Submission(#[from] SubmissionError),
}

/// The limits a submission obeys: the same numbers as port 587.
#[derive(Clone, Copy, Debug)]
pub struct SendLimits {
    pub max_recipients: usize,
    pub max_message_size: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Local copies and remote recipients accepted (stored, or spooled
    /// for the ingest worker to store).
    pub local: usize,
    pub queued: usize,
    /// The UID of the copy in Sent.
    pub sent_uid: Uid,
}

impl Core {
    /// Whether [`Core::send`] would take this message now (the From: rules,
    /// the limits, every recipient routable), without sending it: what a
    /// send that waits (undo, send later) checks when it is asked for.
    pub async fn check_send(
        &self,
        account: &AccountRef,
        recipients: &[String],
        raw: &[u8],
        limits: SendLimits,
    ) -> Result<(), SendError> {
        self.prepare_send(account, recipients, raw, "localhost", "", limits)
            .await
            .map(|_| ())
    }

    /// The completed (signed) message and its envelope, or why not.
    async fn prepare_send(
        &self,
        account: &AccountRef,
        recipients: &[String],
        raw: &[u8],
        hostname: &str,
        received: &str,
        limits: SendLimits,
    ) -> Result<(Vec<u8>, crate::delivery::Envelope), SendError> {
        use crate::delivery::Envelope;
        use crate::routing::Route;
        if recipients.is_empty() {
            return Err(SendError::NoRecipients);
        }
        if recipients.len() > limits.max_recipients {
            return Err(SendError::TooManyRecipients(limits.max_recipients));
        }
        let body = self.complete_submission(account, raw, hostname).await?;
        if body.len() + received.len() > limits.max_message_size {
            return Err(SendError::TooBig(limits.max_message_size));
        }
        let mut env = Envelope {
            require_tls: false,
            mail_from: account.address.clone(),
            ..Default::default()
        };
        for rcpt in recipients {
            match self.route(rcpt).await.map_err(SubmissionError::Core)? {
                Route::Remote(a) => env.remote.push(a),
                Route::Rejected(why) => {
                    return Err(SendError::Recipient(rcpt.clone(), why.reason()));
                }
                route => {
                    env.add_local_route(rcpt, &route);
                }
            }
        }
        Ok((body, env))
    }

    /// Sends a message the way authenticated SMTP submission does: each
    /// recipient is routed (local, alias, catchall, or remote, which an
    /// authenticated sender may use), the From: rules of
    /// [`Core::complete_submission`] apply, the whole is accepted at once
    /// (into the spool when one is attached), and a copy goes to the
    /// sender's Sent folder.
    ///
    /// `received` is the trace header the caller adds (RFC 5321 §4.4).
    pub async fn send(
        &self,
        account: &AccountRef,
        recipients: &[String],
        raw: &[u8],
        hostname: &str,
        received: &str,
        limits: SendLimits,
    ) -> Result<Sent, SendError> {
        use crate::delivery::{AcceptError, Accepted};
        let (body, env) = self
            .prepare_send(account, recipients, raw, hostname, received, limits)
            .await?;
        let mut wire = Vec::with_capacity(received.len() + body.len());
        wire.extend_from_slice(received.as_bytes());
        wire.extend_from_slice(&body);
        // Through the node's spool like SMTP submission (issue 14): once
        // this returns the message is on disk, and the ingest worker
        // stores the local copies and queues the remote ones.
        let accepted = match self.accept(&env, &wire).await {
            Ok(a) => a,
            Err(AcceptError::OverQuota) => return Err(SendError::OverQuota),
            Err(e) => {
                return Err(SubmissionError::Core(CoreError::Unavailable(e.to_string())).into());
            }
        };
        let (local, queued) = match &accepted {
            Accepted::Delivered(r) => (r.delivered.len(), r.queued.len()),
            Accepted::Spooled(_) => {
                let mut remote = env.remote.clone();
                remote.dedup();
                (env.local_copies().len(), remote.len())
            }
        };
        // The Sent copy is what the user wrote, without the trace header,
        // as desktop clients store it.
        let sent = self
            .mailbox(account.id, "Sent")
            .await
            .map_err(SubmissionError::Core)?
            .ok_or_else(|| SubmissionError::Core(CoreError::NotFound("Sent".into())))?;
        let sent_uid = self
            .append(account.id, sent.id, &body, crate::Flags::SEEN, None)
            .await
            .map_err(SubmissionError::Core)?;
        Ok(Sent {
            local,
            queued,
            sent_uid,
        })
    }
}
