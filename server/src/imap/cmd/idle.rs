//! IDLE (RFC 2177, RFC 9051 §6.3.13): changes are reported as they
//! happen until DONE.

use super::prelude::*;

impl Session {
    /// RFC 2177 IDLE: report changes as they happen until DONE.
    pub(in crate::imap) async fn idle(&mut self, tag: &str) -> Res {
        let mut feed = self.core.subscribe();
        let mut resyncs = self.core.feed_resyncs();
        resyncs.mark_unchanged();
        self.reply(Response::Continue("idling".into())).await?;
        let account = self.mail()?.account();
        let selected = match &self.state {
            State::Selected(s) => Some(s.mailbox.id()),
            _ => None,
        };
        // Changes between SELECT and IDLE.
        self.sync(true).await?;
        let deadline = tokio::time::Instant::now() + self.settings.autologout;
        // With several nodes on one PostgreSQL, the other nodes' changes
        // come through the same feed (LISTEN/NOTIFY, `mailcore::cluster`);
        // when this node's listening connection was lost, `resyncs` ticks
        // once it is back, and the session reads the store.
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        poll.tick().await;
        loop {
            self.flush_out().await?;
            let io = live(&mut self.io)?;
            tokio::select! {
                line = read_line(io, self.settings.max_line) => {
                    match line? {
                        Line::Ok(l) if l.trim_ascii().eq_ignore_ascii_case(b"DONE") => {
                            return self.ok(tag, "IDLE terminated").await;
                        }
                        Line::Ok(_) | Line::TooLong(_) => {
                            self.reply(Response::bad(tag, "Expected DONE")).await?;
                            return Ok(Flow::Continue);
                        }
                        Line::Eof => return Ok(Flow::Close),
                    }
                }
                ev = feed.recv() => {
                    match ev {
                        Ok(ev) if ev.account_id == account && ev.kind == ChangeKind::SessionsEnded => {
                            if self.sessions_ended().await {
                                self.bye_sessions_ended().await?;
                                return Ok(Flow::Close);
                            }
                        }
                        Ok(ev) if ev.account_id == account
                            && (ev.mailbox_id.is_none() || ev.mailbox_id == selected) =>
                        {
                            if !matches!(ev.kind, ChangeKind::MailboxesChanged) {
                                self.sync(true).await?;
                            }
                        }
                        Ok(_) => {}
                        // Fell behind the feed: look at the store instead.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.sync(true).await?,
                        Err(_) => return Ok(Flow::Close),
                    }
                }
                Ok(()) = resyncs.changed() => self.sync(true).await?,
                _ = poll.tick() => {
                    // Sessions ended by the CLI or another node reach an
                    // idling client within a couple of seconds.
                    if self.sessions_ended().await {
                        self.bye_sessions_ended().await?;
                        return Ok(Flow::Close);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.reply(Response::untagged(Status::Bye, None, "Autologout; idle for too long")).await?;
                    return Ok(Flow::Close);
                }
            }
        }
    }
}
