//! COPY (RFC 9051 §6.4.7) and MOVE (RFC 6851), answering COPYUID
//! (RFC 4315 §3).

use super::prelude::*;

impl Session {
    pub(in crate::imap) async fn copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        dest: &str,
        mv: bool,
    ) -> Res {
        self.sync(false).await?;
        let Some((mailbox, read_only)) = self.selected() else {
            return Ok(Flow::Continue);
        };
        if mv && read_only {
            return self.refuse_read_only(tag).await;
        }
        let Some(targets) = self.targets(tag, uid, set).await? else {
            return Ok(Flow::Continue);
        };
        let Some(to) = self.mail()?.mailbox(dest).await? else {
            return self.no(tag, Code::TryCreate, "No such mailbox").await;
        };
        let uids: Vec<Uid> = targets.iter().map(|(_, u)| *u).collect();
        let pairs = if mv {
            mailbox.move_to(&uids, &to).await?
        } else {
            mailbox.copy_to(&uids, &to).await?
        };
        // RFC 4315 §3: COPYUID names the new UIDs, when there are any.
        let code = (!pairs.is_empty()).then(|| {
            let src: Vec<u64> = pairs.iter().map(|p| p.0.get() as u64).collect();
            let dst: Vec<u64> = pairs.iter().map(|p| p.1.get() as u64).collect();
            Code::CopyUid {
                uidvalidity: to.head().uidvalidity,
                from: fetch::compress(&src),
                to: fetch::compress(&dst),
            }
        });
        if mv {
            // RFC 6851 §4.3: COPYUID in an untagged OK, then the EXPUNGEs.
            if code.is_some() {
                self.reply(Response::untagged(Status::Ok, code, "Moved"))
                    .await?;
            }
            self.sync(true).await?;
            self.ok(tag, "MOVE completed").await
        } else {
            self.reply(Response::tagged(tag, Status::Ok, code, "COPY completed"))
                .await?;
            Ok(Flow::Continue)
        }
    }
}
