//! Rules for mail that an authenticated user sends, shared by SMTP
//! submission and the webmail so both enforce the same policy:
//! every `From:` address must be one the account owns (RFC 6409 §8.1
//! lets a submission server enforce this), and a message without
//! `Message-ID` or `Date` gets them (RFC 6409 §8.2, §8.3).

use mail_parser::MessageParser;
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
        let froms: Vec<String> = msg
            .from()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.address())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if froms.is_empty() {
            return Err(SubmissionError::NoFrom);
        }
        for f in &froms {
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
        Ok(out)
    }
}

/// The Date header value for now, in RFC 5322 form.
pub fn rfc5322_date(unix: i64) -> String {
    mail_parser::DateTime::from_timestamp(unix).to_rfc822()
}
