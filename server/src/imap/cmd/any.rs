//! Commands valid in any state (RFC 9051 §6.1: CAPABILITY, NOOP, LOGOUT;
//! ID, RFC 2971) and the authenticated state's session settings: ENABLE
//! (RFC 5161, §6.3.1) and NAMESPACE (RFC 2342, §6.3.10).

use super::prelude::*;

impl Session {
    /// CAPABILITY (RFC 9051 §6.1.1): what this state offers.
    pub(in crate::imap) async fn capability(&mut self, tag: &str) -> Res {
        let c = format!("CAPABILITY {}", self.capabilities());
        self.reply(Response::data(c)).await?;
        self.ok(tag, "CAPABILITY completed").await
    }

    /// NOOP and CHECK (RFC 9051 §6.1.2; CHECK is RFC 3501 §6.4.1): a
    /// chance to report what changed, expunges included.
    pub(in crate::imap) async fn noop(&mut self, tag: &str) -> Res {
        self.sync(true).await?;
        self.ok(tag, "NOOP completed").await
    }

    /// ID (RFC 2971): the client's parameters are ignored.
    pub(in crate::imap) async fn id(&mut self, tag: &str) -> Res {
        self.reply(Response::data("ID (\"name\" \"Tern\")")).await?;
        self.ok(tag, "ID completed").await
    }

    /// LOGOUT (RFC 9051 §6.1.3): BYE, then the tagged OK, then the close.
    pub(in crate::imap) async fn logout(&mut self, tag: &str) -> Res {
        self.state = State::Logout;
        self.reply(Response::bye(None, "Tern IMAP signing off"))
            .await?;
        self.ok(tag, "LOGOUT completed").await?;
        Ok(Flow::Close)
    }

    /// ENABLE (RFC 5161 §3.1): CONDSTORE, IMAP4rev2 and QRESYNC (which
    /// implies CONDSTORE, RFC 7162 §3.2.3); others are ignored.
    pub(in crate::imap) async fn enable(&mut self, tag: &str, caps: Vec<String>) -> Res {
        let mut on = Vec::new();
        for c in caps {
            match c.as_str() {
                "CONDSTORE" => self.condstore = true,
                "IMAP4REV2" => self.rev2 = true,
                "QRESYNC" => {
                    self.qresync = true;
                    self.condstore = true;
                }
                _ => continue,
            }
            on.push(c);
        }
        self.reply(Response::data(format!("ENABLED {}", on.join(" "))))
            .await?;
        self.ok(tag, "ENABLE completed").await
    }

    /// NAMESPACE (RFC 2342, RFC 9051 §6.3.10): one personal namespace.
    pub(in crate::imap) async fn namespace(&mut self, tag: &str) -> Res {
        self.reply(Response::data("NAMESPACE ((\"\" \"/\")) NIL NIL"))
            .await?;
        self.ok(tag, "NAMESPACE completed").await
    }
}
