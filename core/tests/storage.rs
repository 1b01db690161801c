//! Storage tests for the mail core, run on SQLite and on PostgreSQL.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{for_each_backend, for_each_url};
use mailcore::delivery::{Envelope, LocalCopy};
use mailcore::messages::FlagOp;
use mailcore::{
    AccountId, Address, AuthError, Core, CoreError, CoreOptions, FlagSet, Flags, Keyword,
    OwnedMailbox, Rejection, Role, Route, SortOrder, Uid,
};

const PW: &str = "correct horse battery";

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.example>\r\nTo: someone@example.test\r\n\
Subject: {subject}\r\nMessage-ID: <{subject}@remote.example>\r\n\r\n{body}\r\n"
    )
    .replace(' ', " ")
    .into_bytes()
}

async fn setup(core: &Core, users: &[&str]) -> Vec<AccountId> {
    core.add_domain("example.test").await.unwrap();
    let mut ids = Vec::new();
    for u in users {
        let a = core
            .add_account(&format!("{u}@example.test"), PW, Role::User)
            .await
            .unwrap();
        ids.push(a.id);
    }
    ids
}

async fn inbox(core: &Core, account: AccountId) -> mailcore::Mailbox {
    core.mail(account)
        .mailbox_status("INBOX")
        .await
        .unwrap()
        .unwrap()
}

/// A mailbox (as any of the core's mailbox values names it), opened
/// through its account's `Mail`.
async fn owned(core: &Core, account: AccountId, mailbox: &impl Named) -> OwnedMailbox {
    core.mail(account)
        .mailbox(mailbox.box_name())
        .await
        .unwrap()
        .unwrap()
}

/// A mailbox's row without counts, by name.
async fn mailbox_head(
    core: &Core,
    account: AccountId,
    name: &str,
) -> Result<Option<mailcore::MailboxHead>, CoreError> {
    Ok(core
        .mail(account)
        .mailbox(name)
        .await?
        .map(|m| m.head().clone()))
}

trait Named {
    fn box_name(&self) -> &str;
}

impl Named for mailcore::Mailbox {
    fn box_name(&self) -> &str {
        &self.name
    }
}

impl Named for mailcore::MailboxHead {
    fn box_name(&self) -> &str {
        &self.name
    }
}

impl Named for OwnedMailbox {
    fn box_name(&self) -> &str {
        self.name()
    }
}

fn uids(ns: &[i64]) -> Vec<Uid> {
    ns.iter().map(|&n| Uid(n)).collect()
}

#[tokio::test]
async fn one_message_to_three_recipients_stores_one_blob() {
    for_each_backend("one_blob_three_rows", |core| async move {
        let ids = setup(&core, &["a", "b", "c"]).await;
        let raw = msg("hello", "one body, three readers");
        // c gets it as a catchall would: for an address that is not its own.
        let names = ["a@example.test", "b@example.test", "anything@example.test"];
        let env = Envelope {
            require_tls: false,
            mail_from: "sender@remote.example".into(),
            local: ids
                .iter()
                .zip(names)
                .map(|(id, n)| LocalCopy::new(*id, n))
                .collect(),
            remote: vec![],
        };
        let receipt = core.deliver(&env, &raw).await.unwrap();
        assert_eq!(receipt.delivered.len(), 3);
        // Each copy names its own recipient, and the bytes are still stored once.
        assert_eq!(core.storage_counts().await.unwrap(), (1, 3));
        for (id, name) in ids.iter().zip(names) {
            let ib = inbox(&core, *id).await;
            assert_eq!(ib.total, 1);
            assert_eq!(ib.unseen, 1);
            let mut want = format!("Delivered-To: {name}\r\n").into_bytes();
            want.extend_from_slice(&raw);
            assert_eq!(
                owned(&core, *id, &ib).await.raw(Uid(1)).await.unwrap(),
                want
            );
            let acct = core.account_by_id(*id).await.unwrap().unwrap();
            assert_eq!(acct.used_bytes, want.len() as i64, "quota accounting");
            let (rows, _) = owned(&core, *id, &ib)
                .await
                .list(0, 10, SortOrder::UidAsc)
                .await
                .unwrap();
            assert_eq!(
                rows[0].size,
                want.len() as i64,
                "RFC822.SIZE counts the line"
            );
        }
        // The same bytes again reuse the blob.
        core.deliver(&env, &raw).await.unwrap();
        assert_eq!(core.storage_counts().await.unwrap(), (1, 6));
    })
    .await;
}

/// A current routing copy answers RCPT without the database (issue 14:
/// the acceptance path's queries), and says only yes: a change made in
/// this process stops it at once, one made elsewhere (another node, the
/// CLI) reaches it within the poll.
#[tokio::test]
async fn routing_copy_answers_yes_and_this_process_never_sees_it_stale() {
    for_each_url("routing_copy", |url| async move {
        let core = Core::open(CoreOptions::new(url.clone())).await.unwrap();
        let other = Core::open(CoreOptions::new(url)).await.unwrap();
        let ids = setup(&core, &["a", "b", "c"]).await;
        let dir = tempfile::tempdir().unwrap();
        let cache = core.start_directory_cache(dir.path().join("directory.json"));
        let until_current = async || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !core.routing_copy_is_current() {
                assert!(Instant::now() < deadline, "copy never current");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        until_current().await;
        let is_account = |r: &Route, id: AccountId| matches!(r, Route::Account(a) if a.id == id);
        assert!(is_account(
            &core.route("a@example.test").await.unwrap(),
            ids[0]
        ));

        // Removed by another node: this node's copy still says yes (no
        // query was made) until its next poll, then the database's no.
        other.remove_account("a@example.test").await.unwrap();
        assert!(
            is_account(&core.route("a@example.test").await.unwrap(), ids[0]),
            "answered from the copy, not the database"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = core.route("a@example.test").await.unwrap();
            if r == Route::Rejected(Rejection::NoSuchUser) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the removal never arrived: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Changed here: seen at once, with no poll in between.
        until_current().await;
        core.set_disabled("b@example.test", true).await.unwrap();
        assert_eq!(
            core.route("b@example.test").await.unwrap(),
            Route::Rejected(Rejection::Disabled)
        );
        until_current().await;
        core.remove_account("c@example.test").await.unwrap();
        assert_eq!(
            core.route("c@example.test").await.unwrap(),
            Route::Rejected(Rejection::NoSuchUser)
        );
        // A new account is never refused for being new: a "no" from the
        // copy is always asked of the database.
        until_current().await;
        let d = other
            .add_account("d@example.test", PW, Role::User)
            .await
            .unwrap();
        assert!(is_account(
            &core.route("d@example.test").await.unwrap(),
            d.id
        ));
        cache.stop();
        other.close().await;
        core.close().await;
    })
    .await;
}

#[tokio::test]
async fn uids_strictly_increase_under_concurrency() {
    for_each_backend("uids_increase", |core| async move {
        let ids = setup(&core, &["a"]).await;
        let mut tasks = Vec::new();
        for n in 0..12 {
            let core = core.clone();
            let id = ids[0];
            tasks.push(tokio::spawn(async move {
                let env = Envelope {
                    require_tls: false,
                    mail_from: String::new(),
                    local: vec![LocalCopy::new(id, "")],
                    remote: vec![],
                };
                core.deliver(&env, &msg(&format!("m{n}"), "x"))
                    .await
                    .unwrap()
            }));
        }
        let mut got: Vec<Uid> = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().delivered[0].uid);
        }
        got.sort_unstable();
        assert_eq!(got, (1..=12).map(Uid).collect::<Vec<Uid>>());
        let ib = inbox(&core, ids[0]).await;
        assert_eq!(ib.uidnext, Uid(13));
        // Expunge then deliver: UIDs are never reused.
        owned(&core, ids[0], &ib)
            .await
            .set_flags(&uids(&[12]), FlagOp::Add, Flags::DELETED)
            .await
            .unwrap();
        assert_eq!(
            owned(&core, ids[0], &ib).await.expunge(None).await.unwrap(),
            uids(&[12])
        );
        let env = Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![LocalCopy::new(ids[0], "")],
            remote: vec![],
        };
        let r = core.deliver(&env, &msg("after", "x")).await.unwrap();
        assert_eq!(r.delivered[0].uid, Uid(13));
    })
    .await;
}

/// Issue 14: on SQLite, write transactions that queue for the one writer
/// connection share one COMMIT (each in its own savepoint), and one that
/// fails inside its transaction takes nothing of the others with it. On
/// PostgreSQL they are transactions of their own; the same holds.
#[tokio::test]
async fn concurrent_writers_share_commits_and_failures_stay_their_own() {
    for_each_backend("group_commit", |core| async move {
        let ids = setup(&core, &["a"]).await;
        let ib = inbox(&core, ids[0]).await;
        let first = owned(&core, ids[0], &ib)
            .await
            .append(&msg("first", "x"), Flags::empty(), None)
            .await
            .unwrap();
        let before = core.write_group_stats();
        // 64 keywords on `first` already: one more is refused inside the
        // STORE's transaction, after it has read the row.
        let full: Vec<Keyword> = (0..64)
            .map(|i| Keyword::parse(&format!("k{i}")).unwrap())
            .collect();
        owned(&core, ids[0], &ib)
            .await
            .store_flags(
                &[first],
                FlagOp::Add,
                &FlagSet {
                    system: Flags::empty(),
                    keywords: full,
                },
            )
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for n in 0..40 {
            let core = core.clone();
            let mailbox = owned(&core, ids[0], &ib).await;
            tasks.push(tokio::spawn(async move {
                if n % 4 == 3 {
                    let one_more = FlagSet {
                        system: Flags::FLAGGED,
                        keywords: vec![Keyword::parse(&format!("extra{n}")).unwrap()],
                    };
                    let r = mailbox.store_flags(&[first], FlagOp::Add, &one_more).await;
                    assert!(matches!(r, Err(CoreError::Limit(_))), "{r:?}");
                    None
                } else {
                    let raw = msg(&format!("m{n}"), "concurrent");
                    Some(mailbox.append(&raw, Flags::SEEN, None).await.unwrap())
                }
            }));
        }
        let mut uids = Vec::new();
        for t in tasks {
            uids.extend(t.await.unwrap());
        }
        assert_eq!(uids.len(), 30);
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 30, "each append got its own UID");
        // Every append that was told "done" is there, read through another
        // connection; the refused STOREs changed nothing.
        let (rows, total) = owned(&core, ids[0], &ib)
            .await
            .list(0, 100, SortOrder::UidAsc)
            .await
            .unwrap();
        assert_eq!(total, 31);
        for uid in &uids {
            let row = rows.iter().find(|r| r.uid == *uid).expect("appended row");
            assert!(row.flags.contains(Flags::SEEN));
        }
        let first_row = rows.iter().find(|r| r.uid == first).unwrap();
        assert!(!first_row.flags.contains(Flags::FLAGGED));
        assert_eq!(first_row.keywords.len(), 64);
        let after = core.write_group_stats();
        if core.backend() == mailcore::db::Backend::Sqlite {
            let txns = after.transactions - before.transactions;
            let commits = after.commits - before.commits;
            // 30 appends and the first STORE committed; the refused
            // STOREs rolled back to their savepoints.
            assert_eq!(txns, 31, "grouped transactions that committed");
            assert!(
                commits < txns,
                "{txns} write transactions took {commits} commits: none shared"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn catchall_and_rejection() {
    for_each_backend("catchall", |core| async move {
        let ids = setup(&core, &["alice", "catch"]).await;
        core.add_domain("other.test").await.unwrap();
        core.add_account("bob@other.test", PW, Role::User)
            .await
            .unwrap();

        // No catchall: unknown local part is rejected.
        assert_eq!(
            core.route("nobody@example.test").await.unwrap(),
            Route::Rejected(Rejection::NoSuchUser)
        );
        core.set_catchall("example.test", Some("catch"))
            .await
            .unwrap();
        match core.route("Nobody@Example.test").await.unwrap() {
            Route::Catchall { address, account } => {
                assert_eq!(address, "nobody@example.test");
                assert_eq!(account.id, ids[1]);
            }
            other => panic!("expected catchall, got {other:?}"),
        }
        // Known addresses still win over the catchall.
        assert!(matches!(
            core.route("alice@example.test").await.unwrap(),
            Route::Account(a) if a.id == ids[0]
        ));
        // Subaddress goes to the base account, not the catchall.
        assert!(matches!(
            core.route("alice+lists@example.test").await.unwrap(),
            Route::Account(a) if a.id == ids[0]
        ));
        // The other domain has no catchall.
        assert_eq!(
            core.route("nobody@other.test").await.unwrap(),
            Route::Rejected(Rejection::NoSuchUser)
        );
        // Catchall never covers remote domains or relay tricks.
        assert_eq!(
            core.route("x@remote.example").await.unwrap(),
            Route::Remote(Address::parse("x@remote.example").unwrap())
        );
        for trick in [
            "u%remote.example@example.test",
            "remote.example!u@example.test",
            "\"u@remote.example\"@example.test",
            "<@example.test:u@remote.example>",
        ] {
            assert_eq!(
                core.route(trick).await.unwrap(),
                Route::Rejected(Rejection::RelaySyntax),
                "{trick}"
            );
        }
        // Clearing it restores rejection; an unknown catchall target is refused.
        assert!(matches!(
            core.set_catchall("example.test", Some("ghost")).await,
            Err(CoreError::NotFound(_))
        ));
        core.set_catchall("example.test", None).await.unwrap();
        assert_eq!(
            core.route("nobody@example.test").await.unwrap(),
            Route::Rejected(Rejection::NoSuchUser)
        );
        // Removing the catchall account clears the catchall.
        core.set_catchall("example.test", Some("catch"))
            .await
            .unwrap();
        core.remove_account("catch@example.test").await.unwrap();
        assert_eq!(
            core.domain("example.test").await.unwrap().unwrap().catchall,
            None
        );
    })
    .await;
}

#[tokio::test]
async fn alias_fans_out() {
    for_each_backend("alias_fan_out", |core| async move {
        let ids = setup(&core, &["a", "b"]).await;
        core.add_alias(
            "team@example.test",
            &[
                "a@example.test".into(),
                "b@example.test".into(),
                "ext@remote.example".into(),
            ],
        )
        .await
        .unwrap();
        // Alias of alias, with a loop back to itself.
        core.add_alias(
            "all@example.test",
            &["team@example.test".into(), "all2@example.test".into()],
        )
        .await
        .unwrap();
        core.add_alias("all2@example.test", &["all@example.test".into()])
            .await
            .unwrap();
        let route = core.route("all@example.test").await.unwrap();
        let Route::Alias {
            accounts, forwards, ..
        } = &route
        else {
            panic!("expected alias, got {route:?}");
        };
        assert_eq!(accounts.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
        assert_eq!(
            forwards,
            &vec![Address::parse("ext@remote.example").unwrap()]
        );

        let env = Envelope {
            require_tls: false,
            mail_from: "s@remote.example".into(),
            local: route
                .local_accounts()
                .iter()
                .map(|a| LocalCopy::new(a.id, ""))
                .collect(),
            remote: forwards.clone(),
        };
        let r = core.deliver(&env, &msg("team", "hi all")).await.unwrap();
        assert_eq!(r.delivered.len(), 2);
        assert_eq!(r.queued.len(), 1);
        assert_eq!(core.queue().len().await.unwrap(), 1);
        assert_eq!(core.storage_counts().await.unwrap(), (1, 2));

        let aliases = core.list_aliases(Some("example.test")).await.unwrap();
        assert_eq!(aliases.len(), 3);
        assert_eq!(aliases[2].address, "team@example.test");
        assert_eq!(aliases[2].targets.len(), 3);
        core.remove_alias("team@example.test", Some("ext@remote.example"))
            .await
            .unwrap();
        assert_eq!(
            core.alias_targets("team@example.test").await.unwrap().len(),
            2
        );
        // An alias cannot shadow an account, nor an account an alias.
        assert!(matches!(
            core.add_alias("a@example.test", &["b@example.test".into()])
                .await,
            Err(CoreError::Conflict(_))
        ));
        assert!(matches!(
            core.add_account("team@example.test", PW, Role::User).await,
            Err(CoreError::Conflict(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn mailboxes_lifecycle() {
    for_each_backend("mailboxes", |core| async move {
        let ids = setup(&core, &["a"]).await;
        let a = ids[0];
        let names: Vec<String> = core
            .mail(a)
            .mailboxes()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]
        );
        let sent = core.mail(a).mailbox_status("Sent").await.unwrap().unwrap();
        assert_eq!(sent.special_use.as_deref(), Some("\\Sent"));

        let work = core
            .mail(a)
            .create_mailbox("Work", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        // The head by name (no counts), INBOX in any case.
        let head = mailbox_head(&core, a, "Work").await.unwrap().unwrap();
        assert_eq!((head.id, head.uidvalidity), (work.id, work.uidvalidity));
        let inbox_head = mailbox_head(&core, a, "inbox").await.unwrap().unwrap();
        assert_eq!(inbox_head.name, "INBOX");
        assert!(mailbox_head(&core, a, "Nope").await.unwrap().is_none());
        // Another account's mail has no "Work": names are per account.
        let z = core
            .add_account("z@example.test", PW, Role::User)
            .await
            .unwrap()
            .id;
        assert!(mailbox_head(&core, z, "Work").await.unwrap().is_none());
        core.mail(a)
            .create_mailbox("Work/2026", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        assert!(matches!(
            core.mail(a)
                .create_mailbox("Work", mailcore::NewMailbox::Subscribed)
                .await,
            Err(CoreError::Conflict(_))
        ));
        assert!(matches!(
            core.mail(a)
                .create_mailbox("bad//name", mailcore::NewMailbox::Subscribed)
                .await,
            Err(CoreError::Invalid(_))
        ));
        core.mail(a).rename_mailbox("Work", "Jobs").await.unwrap();
        assert!(
            core.mail(a)
                .mailbox_status("Jobs/2026")
                .await
                .unwrap()
                .is_some()
        );
        assert!(core.mail(a).mailbox_status("Work").await.unwrap().is_none());
        assert!(core.mail(a).rename_mailbox("INBOX", "x").await.is_err());
        assert!(core.mail(a).delete_mailbox("inbox").await.is_err());

        let uid = core
            .mail(a)
            .open("Jobs")
            .await
            .unwrap()
            .append(&msg("kept", "x"), Flags::SEEN, Some(1_700_000_000))
            .await
            .unwrap();
        assert_eq!(uid, Uid(1));
        core.mail(a).delete_mailbox("Jobs").await.unwrap();
        assert_eq!(
            core.storage_counts().await.unwrap(),
            (0, 0),
            "blob released"
        );
        // Reusing the name gives a new UIDVALIDITY.
        let again = core
            .mail(a)
            .create_mailbox("Jobs", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        assert_ne!(again.uidvalidity, work.uidvalidity);
        core.mail(a).set_subscribed("Jobs", false).await.unwrap();
        assert!(
            !core
                .mail(a)
                .mailbox_status("Jobs")
                .await
                .unwrap()
                .unwrap()
                .subscribed
        );
    })
    .await;
}

#[tokio::test]
async fn messages_list_flags_copy_move_expunge() {
    for_each_backend("messages", |core| async move {
        let ids = setup(&core, &["a", "b"]).await;
        let a = ids[0];
        let ib = inbox(&core, a).await;
        for n in 0..5 {
            owned(&core, a, &ib)
                .await
                .append(
                    &msg(&format!("m{n}"), "body"),
                    Flags::empty(),
                    Some(1_000 + n),
                )
                .await
                .unwrap();
        }
        let (page, total) = owned(&core, a, &ib)
            .await
            .list(0, 2, SortOrder::DateDesc)
            .await
            .unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            page.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(),
            ["m4", "m3"]
        );
        let (page2, _) = owned(&core, a, &ib)
            .await
            .list(2, 2, SortOrder::DateDesc)
            .await
            .unwrap();
        assert_eq!(page2[0].subject, "m2");
        assert_eq!(page[0].from, "Sender <sender@remote.example>");
        assert_eq!(page[0].snippet, "body");

        let changed = owned(&core, a, &ib)
            .await
            .set_flags(
                &uids(&[1, 2]),
                FlagOp::Add,
                Flags::SEEN.union(Flags::FLAGGED),
            )
            .await
            .unwrap();
        assert_eq!(changed.len(), 2);
        let modseq = changed[0].2;
        assert!(modseq > ib.highest_modseq);
        let m1 = owned(&core, a, &ib).await.message(Uid(1)).await.unwrap();
        assert_eq!(m1.flags.names(), ["\\Seen", "\\Flagged"]);
        assert_eq!(m1.modseq, modseq);
        // No-op change touches nothing.
        assert!(
            owned(&core, a, &ib)
                .await
                .set_flags(&uids(&[1]), FlagOp::Add, Flags::SEEN)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(inbox(&core, a).await.unseen, 3);

        let archive = core
            .mail(a)
            .mailbox_status("Archive")
            .await
            .unwrap()
            .unwrap();
        let pairs = owned(&core, a, &ib)
            .await
            .copy_to(&uids(&[2, 3]), &owned(&core, a, &archive).await)
            .await
            .unwrap();
        assert_eq!(pairs, vec![(Uid(2), Uid(1)), (Uid(3), Uid(2))]);
        let moved = owned(&core, a, &ib)
            .await
            .move_to(&uids(&[4]), &owned(&core, a, &archive).await)
            .await
            .unwrap();
        assert_eq!(moved, vec![(Uid(4), Uid(3))]);
        assert_eq!(inbox(&core, a).await.total, 4);
        assert_eq!(
            core.mail(a)
                .mailbox_status("Archive")
                .await
                .unwrap()
                .unwrap()
                .total,
            3
        );
        assert_eq!(core.storage_counts().await.unwrap(), (5, 7));

        // Another account's INBOX by the same name is its own, and a copy
        // across accounts is refused.
        assert!(matches!(
            owned(&core, ids[1], &ib).await.raw(Uid(1)).await,
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            owned(&core, a, &ib)
                .await
                .copy_to(&uids(&[1]), &owned(&core, ids[1], &archive).await)
                .await,
            Err(CoreError::NotFound(_))
        ));

        // Expunge removes only \Deleted; the blob stays while a copy remains.
        owned(&core, a, &ib)
            .await
            .set_flags(&uids(&[2, 5]), FlagOp::Add, Flags::DELETED)
            .await
            .unwrap();
        assert_eq!(
            owned(&core, a, &ib)
                .await
                .expunge(Some(&uids(&[5])))
                .await
                .unwrap(),
            uids(&[5])
        );
        assert_eq!(
            owned(&core, a, &ib).await.expunge(None).await.unwrap(),
            uids(&[2])
        );
        assert_eq!(core.storage_counts().await.unwrap(), (4, 5));
        let used = core.account_by_id(a).await.unwrap().unwrap().used_bytes;
        let expect: i64 = [1, 3]
            .iter()
            .map(|n| msg(&format!("m{n}"), "body").len() as i64)
            .sum::<i64>()
            + [2, 3, 4]
                .iter()
                .map(|n| msg(&format!("m{n}"), "body").len() as i64)
                .sum::<i64>();
        assert_eq!(used, expect);

        // Neighbours by UID skip expunged ones; destroy removes for good.
        assert_eq!(
            owned(&core, a, &ib).await.neighbours(Uid(3)).await.unwrap(),
            (Some(Uid(1)), None)
        );
        assert_eq!(
            owned(&core, a, &ib).await.neighbours(Uid(1)).await.unwrap(),
            (None, Some(Uid(3)))
        );
        assert_eq!(
            owned(&core, a, &ib)
                .await
                .destroy(&uids(&[3]))
                .await
                .unwrap(),
            uids(&[3])
        );
        assert_eq!(inbox(&core, a).await.total, 1);
    })
    .await;
}

/// The mailbox index kept between readers (IMAP SELECT) is never stale:
/// after every kind of change, made here or by another node on the same
/// database, it equals a fresh read of the rows.
#[tokio::test]
async fn the_kept_mailbox_index_follows_every_change() {
    for_each_url("mailbox_index", |url| async move {
        let core = Core::open(CoreOptions::new(url.clone())).await.unwrap();
        let other = Core::open(CoreOptions::new(url)).await.unwrap();
        let ids = setup(&core, &["a"]).await;
        let a = ids[0];
        let ib = inbox(&core, a).await;
        let fresh = async |mb: &OwnedMailbox| {
            let (rows, _) = mb.list(0, 1 << 40, SortOrder::UidAsc).await.unwrap();
            rows
        };
        let check = async |what: &str, name: &str| {
            let mb = core.mail(a).open(name).await.unwrap();
            let idx = mb.index().await.unwrap();
            let kept: Vec<_> = idx.messages.iter().map(|m| (**m).clone()).collect();
            assert_eq!(kept, fresh(&mb).await, "after {what}");
        };
        for n in 0..6 {
            owned(&core, a, &ib)
                .await
                .append(&msg(&format!("k{n}"), "b"), Flags::empty(), None)
                .await
                .unwrap();
        }
        check("append", "INBOX").await;
        assert_eq!(core.mailbox_index_cache_size().0, 1);
        // Changes by the other node.
        owned(&other, a, &ib)
            .await
            .set_flags(&uids(&[2, 3]), FlagOp::Add, Flags::SEEN)
            .await
            .unwrap();
        check("flags set elsewhere", "INBOX").await;
        owned(&other, a, &ib)
            .await
            .append(&msg("k6", "b"), Flags::empty(), None)
            .await
            .unwrap();
        check("append elsewhere", "INBOX").await;
        owned(&other, a, &ib)
            .await
            .set_flags(&uids(&[4]), FlagOp::Add, Flags::DELETED)
            .await
            .unwrap();
        owned(&other, a, &ib).await.expunge(None).await.unwrap();
        check("expunge elsewhere", "INBOX").await;
        // One gone and one new: the count alone is unchanged.
        owned(&other, a, &ib)
            .await
            .set_flags(&uids(&[5]), FlagOp::Add, Flags::DELETED)
            .await
            .unwrap();
        owned(&other, a, &ib).await.expunge(None).await.unwrap();
        owned(&other, a, &ib)
            .await
            .append(&msg("k7", "b"), Flags::empty(), None)
            .await
            .unwrap();
        check("expunge and append", "INBOX").await;
        let kept: Vec<Uid> = owned(&core, a, &ib)
            .await
            .index()
            .await
            .unwrap()
            .messages
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(kept, uids(&[1, 2, 3, 6, 7, 8]));
        // A mailbox deleted and made again is read afresh.
        let f = core
            .mail(a)
            .create_mailbox("Folder", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        owned(&core, a, &f)
            .await
            .append(&msg("f1", "b"), Flags::empty(), None)
            .await
            .unwrap();
        check("a new folder", "Folder").await;
        let stale = owned(&core, a, &f).await;
        other.mail(a).delete_mailbox("Folder").await.unwrap();
        let f2 = other
            .mail(a)
            .create_mailbox("Folder", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        owned(&other, a, &f2)
            .await
            .append(&msg("f2", "other"), Flags::empty(), None)
            .await
            .unwrap();
        check("delete and create again", "Folder").await;
        // Opened before the delete: the handle names the old mailbox,
        // which is gone, not the new one under the same name.
        assert!(matches!(stale.index().await, Err(CoreError::NotFound(_))));
        other.close().await;
        core.close().await;
    })
    .await;
}

/// A run of raw messages in one read (IMAP FETCH of bodies, SEARCH TEXT):
/// in the order asked, each with its own Delivered-To over a shared blob,
/// missing UIDs left out, and nothing from another account's mailbox.
#[tokio::test]
async fn many_raw_messages_in_one_read() {
    for_each_backend("messages_raw", |core| async move {
        let ids = setup(&core, &["a", "b"]).await;
        let a = ids[0];
        let ib = inbox(&core, a).await;
        // UIDs 1 and 2: one body delivered twice, for two names.
        let same = msg("same", "one blob, two rows");
        for name in ["a@example.test", "alias@example.test"] {
            let env = Envelope {
                require_tls: false,
                mail_from: "sender@remote.example".into(),
                local: vec![LocalCopy::new(a, name)],
                remote: vec![],
            };
            core.deliver(&env, &same).await.unwrap();
        }
        // UIDs 3..=5 appended (no Delivered-To).
        for n in 3..=5 {
            owned(&core, a, &ib)
                .await
                .append(&msg(&format!("m{n}"), "b"), Flags::empty(), None)
                .await
                .unwrap();
        }
        let got = owned(&core, a, &ib)
            .await
            .raws(&uids(&[5, 2, 99, 1, 3]))
            .await
            .unwrap();
        let order: Vec<Uid> = got.iter().map(|(u, _)| *u).collect();
        assert_eq!(
            order,
            uids(&[5, 2, 1, 3]),
            "asked order, the missing UID left out"
        );
        for (uid, raw) in &got {
            assert_eq!(
                raw,
                &owned(&core, a, &ib).await.raw(*uid).await.unwrap(),
                "uid {uid} as one message_raw reads it"
            );
        }
        assert!(
            got[1]
                .1
                .starts_with(b"Delivered-To: alias@example.test\r\n")
        );
        assert!(got[2].1.starts_with(b"Delivered-To: a@example.test\r\n"));
        assert!(
            owned(&core, a, &ib)
                .await
                .raws(&[])
                .await
                .unwrap()
                .is_empty()
        );
        // The other account's INBOX of the same name holds none of it.
        assert!(
            owned(&core, ids[1], &ib)
                .await
                .raws(&uids(&[1]))
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

/// What FETCH keeps of a message at delivery: the header alone can be
/// read (with the copy's own Delivered-To), and the digest the IMAP
/// server made from the parse comes back as it was made, by delivery and
/// by APPEND alike, in one read for many messages.
#[tokio::test]
async fn headers_and_fetch_digests_are_kept_with_the_bytes() {
    for_each_backend("fetch_cache", |core| async move {
        fn digest(raw: &[u8], msg: &mail_parser::Message<'_>) -> Vec<u8> {
            format!("{}|{}", raw.len(), msg.subject().unwrap_or("-")).into_bytes()
        }
        let ids = setup(&core, &["a"]).await;
        let a = ids[0];
        let ib = inbox(&core, a).await;
        // Stored before a digest maker was set: a header length, no digest.
        owned(&core, a, &ib)
            .await
            .append(&msg("before", "b0"), Flags::empty(), None)
            .await
            .unwrap();
        core.set_fetch_digest(digest);
        let delivered = msg("delivered", "the body, which a header read leaves out");
        let env = Envelope {
            require_tls: false,
            mail_from: "sender@remote.example".into(),
            local: vec![LocalCopy::new(a, "a@example.test")],
            remote: vec![],
        };
        core.deliver(&env, &delivered).await.unwrap();
        let appended = msg("appended", "b2");
        owned(&core, a, &ib)
            .await
            .append(&appended, Flags::empty(), None)
            .await
            .unwrap();

        let headers: std::collections::HashMap<Uid, Vec<u8>> = owned(&core, a, &ib)
            .await
            .headers(&uids(&[1, 2, 3]))
            .await
            .unwrap()
            .into_iter()
            .collect();
        let end = |m: &[u8]| m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut want = b"Delivered-To: a@example.test\r\n".to_vec();
        want.extend_from_slice(&delivered[..end(&delivered)]);
        assert_eq!(
            String::from_utf8_lossy(&headers[&Uid(2)]),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(headers[&Uid(3)], appended[..end(&appended)]);
        let before = msg("before", "b0");
        assert_eq!(headers[&Uid(1)], before[..end(&before)]);

        let digests = owned(&core, a, &ib)
            .await
            .fetch_cache(&uids(&[1, 2, 3, 9]))
            .await
            .unwrap();
        assert_eq!(digests.len(), 2, "{digests:?}");
        assert_eq!(
            digests[&Uid(2)],
            format!("{}|delivered", delivered.len()).into_bytes()
        );
        assert_eq!(
            digests[&Uid(3)],
            format!("{}|appended", appended.len()).into_bytes()
        );
        // Copies share the blob, so they share its digest.
        let arch = core
            .mail(a)
            .mailbox_status("Archive")
            .await
            .unwrap()
            .unwrap();
        owned(&core, a, &ib)
            .await
            .copy_to(&uids(&[2]), &owned(&core, a, &arch).await)
            .await
            .unwrap();
        let copied = owned(&core, a, &arch)
            .await
            .fetch_cache(&uids(&[1]))
            .await
            .unwrap();
        assert_eq!(copied[&Uid(1)], digests[&Uid(2)]);
    })
    .await;
}

/// IMAP SEARCH BODY's candidates from the full-text index: the messages
/// with a word starting so, and those whose text the index does not hold
/// whole (a word over its length limit), which must always be read.
#[tokio::test]
async fn body_search_candidates_come_from_the_index() {
    for_each_backend("body_candidates", |core| async move {
        let ids = setup(&core, &["a"]).await;
        let a = ids[0];
        let ib = inbox(&core, a).await;
        let long = "y".repeat(60);
        for body in [
            "the quarterly invoice".to_owned(),
            "nothing to see".to_owned(),
            format!("too long: {long}"),
        ] {
            owned(&core, a, &ib)
                .await
                .append(&msg("s", &body), Flags::empty(), None)
                .await
                .unwrap();
        }
        let got = owned(&core, a, &ib)
            .await
            .body_search_candidates(&["invo".into()])
            .await
            .unwrap()
            .unwrap();
        let mut got: Vec<Uid> = got.into_iter().collect();
        got.sort();
        assert_eq!(got, uids(&[1, 3]));
        assert!(
            owned(&core, a, &ib)
                .await
                .body_search_candidates(&[])
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn threads_follow_references() {
    for_each_backend("threads", |core| async move {
        let ids = setup(&core, &["a"]).await;
        let env = Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![LocalCopy::new(ids[0], "")],
            remote: vec![],
        };
        core.deliver(
            &env,
            b"Message-ID: <root@x>\r\nSubject: start\r\n\r\nhi\r\n",
        )
        .await
        .unwrap();
        core.deliver(
            &env,
            b"Message-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\nSubject: Re: start\r\n\r\nyo\r\n",
        )
        .await
        .unwrap();
        core.deliver(
            &env,
            b"Message-ID: <other@x>\r\nSubject: other\r\n\r\nz\r\n",
        )
        .await
        .unwrap();
        let ib = inbox(&core, ids[0]).await;
        let (all, _) = owned(&core, ids[0], &ib)
            .await
            .list(0, 10, SortOrder::UidAsc)
            .await
            .unwrap();
        assert_eq!(all[0].thread_id, all[1].thread_id);
        assert_ne!(all[0].thread_id, all[2].thread_id);
    })
    .await;
}

#[tokio::test]
async fn quota_refuses_and_stores_nothing() {
    for_each_backend("quota", |core| async move {
        let ids = setup(&core, &["a", "b"]).await;
        core.set_quota("a@example.test", 100).await.unwrap();
        let env = Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: ids.iter().map(|id| LocalCopy::new(*id, "")).collect(),
            remote: vec![],
        };
        let big = msg("big", &"x".repeat(200));
        assert!(matches!(
            core.deliver(&env, &big).await,
            Err(CoreError::OverQuota)
        ));
        assert_eq!(
            core.storage_counts().await.unwrap(),
            (0, 0),
            "rolled back whole"
        );
        assert_eq!(
            core.account_by_id(ids[1])
                .await
                .unwrap()
                .unwrap()
                .used_bytes,
            0
        );
    })
    .await;
}

#[tokio::test]
async fn authentication_and_throttle() {
    for_each_backend("auth", |core| async move {
        setup(&core, &["a"]).await;
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let who = core.authenticate("A@example.test", PW, ip).await.unwrap();
        assert_eq!(who.address, "a@example.test");
        assert!(matches!(
            core.authenticate("a@example.test", "wrong password", ip)
                .await,
            Err(AuthError::InvalidCredentials)
        ));
        assert!(matches!(
            core.authenticate("ghost@example.test", PW, ip).await,
            Err(AuthError::InvalidCredentials)
        ));
        for _ in 0..4 {
            let _ = core
                .authenticate("a@example.test", "wrong password", ip)
                .await;
        }
        // Locked now, even with the right password.
        assert!(matches!(
            core.authenticate("a@example.test", PW, ip).await,
            Err(AuthError::Throttled { .. })
        ));
        // Another IP is unaffected.
        let other: IpAddr = "192.0.2.11".parse().unwrap();
        core.authenticate("a@example.test", PW, other)
            .await
            .unwrap();
        // Disabled accounts cannot log in and get no mail.
        core.set_disabled("a@example.test", true).await.unwrap();
        assert!(matches!(
            core.authenticate("a@example.test", PW, other).await,
            Err(AuthError::InvalidCredentials)
        ));
        assert_eq!(
            core.route("a@example.test").await.unwrap(),
            Route::Rejected(Rejection::Disabled)
        );
        // Password change takes effect.
        core.set_disabled("a@example.test", false).await.unwrap();
        core.set_password("a@example.test", "a brand new secret")
            .await
            .unwrap();
        let third: IpAddr = "192.0.2.12".parse().unwrap();
        core.authenticate("a@example.test", "a brand new secret", third)
            .await
            .unwrap();
        assert!(matches!(
            core.set_password("a@example.test", "short").await,
            Err(CoreError::Invalid(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn directory_errors_and_sessions() {
    for_each_backend("directory", |core| async move {
        setup(&core, &["a"]).await;
        assert!(matches!(
            core.add_domain("example.test").await,
            Err(CoreError::Conflict(_))
        ));
        assert!(matches!(
            core.add_domain("not a domain").await,
            Err(CoreError::Invalid(_))
        ));
        assert!(matches!(
            core.add_account("a@example.test", PW, Role::User).await,
            Err(CoreError::Conflict(_))
        ));
        assert!(matches!(
            core.add_account("x@unknown.test", PW, Role::User).await,
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            core.add_account("bad address", PW, Role::User).await,
            Err(CoreError::Invalid(_))
        ));
        core.set_role("a@example.test", Role::DomainAdmin)
            .await
            .unwrap();
        let acct = core.account("a@example.test").await.unwrap().unwrap();
        assert_eq!(acct.role, Role::DomainAdmin);
        assert_eq!(
            core.list_accounts(Some("example.test"))
                .await
                .unwrap()
                .len(),
            1
        );

        let token = core.create_session(acct.id, "127.0.0.1").await.unwrap();
        let s = core.session(&token).await.unwrap().unwrap();
        assert_eq!(s.account.address, "a@example.test");
        assert_eq!(s.csrf_token.len(), 64);
        assert!(core.session(&"0".repeat(64)).await.unwrap().is_none());
        core.end_session(&token).await.unwrap();
        assert!(core.session(&token).await.unwrap().is_none());

        // Removing a domain removes its accounts and their mail.
        let env = Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![LocalCopy::new(acct.id, "")],
            remote: vec![],
        };
        core.deliver(&env, &msg("x", "y")).await.unwrap();
        core.remove_domain("example.test").await.unwrap();
        assert!(core.account("a@example.test").await.unwrap().is_none());
        assert_eq!(core.storage_counts().await.unwrap(), (0, 0));
    })
    .await;
}

#[tokio::test]
async fn unreachable_database_is_a_temporary_failure() {
    let err = Core::open(mailcore::CoreOptions::new(
        "postgres://tern@127.0.0.1:9/none",
    ))
    .await
    .err()
    .expect("must fail");
    assert!(err.is_temporary(), "{err:?}");
}

#[tokio::test]
async fn search_uses_the_index_and_follows_moves_and_expunges() {
    for_each_backend("search", |core| async move {
        let ids = setup(&core, &["a", "b"]).await;
        let (a, b) = (ids[0], ids[1]);
        let ib = inbox(&core, a).await;
        let raw = |subject: &str, from: &str, body: &str| {
            format!(
                "From: {from}\r\nTo: a@example.test\r\nSubject: {subject}\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p>{body}</p>\r\n"
            )
            .into_bytes()
        };
        owned(&core, a, &ib)
            .await
            .append(
                &raw(
                    "Invoice 42",
                    "Billing <bill@shop.example>",
                    "Total due: 12 EUR",
                ),
                Flags::empty(),
                Some(10),
            )
            .await
            .unwrap();
        owned(&core, a, &ib)
            .await
            .append(
                &raw(
                    "Café plans",
                    "Zoë <zoe@friends.example>",
                    "See you at the <b>harbour</b>",
                ),
                Flags::empty(),
                Some(20),
            )
            .await
            .unwrap();
        // The same words in another account's mailbox must never show.
        let bib = inbox(&core, b).await;
        owned(&core, b, &bib)
            .await
            .append(
                &raw("Invoice 43", "Billing <bill@shop.example>", "harbour"),
                Flags::empty(),
                Some(30),
            )
            .await
            .unwrap();

        let subjects =
            |v: Vec<mailcore::MessageSummary>| v.into_iter().map(|m| m.subject).collect::<Vec<_>>();
        // Subject word, a prefix, a sender's domain, an HTML body word, a
        // phrase across fields (every word must match).
        let (hits, n) = core
            .mail(a)
            .search(Some(&owned(&core, a, &ib).await), "invoice", 0, 50)
            .await
            .unwrap();
        assert_eq!((subjects(hits), n), (vec!["Invoice 42".to_owned()], 1));
        let (hits, _) = core.mail(a).search(None, "harb", 0, 50).await.unwrap();
        assert_eq!(subjects(hits), ["Café plans"]);
        let (hits, _) = core
            .mail(a)
            .search(None, "shop.example", 0, 50)
            .await
            .unwrap();
        assert_eq!(subjects(hits), ["Invoice 42"]);
        let (hits, _) = core
            .mail(a)
            .search(None, "zoë harbour", 0, 50)
            .await
            .unwrap();
        assert_eq!(subjects(hits), ["Café plans"]);
        let (hits, _) = core
            .mail(a)
            .search(None, "zoë invoice", 0, 50)
            .await
            .unwrap();
        assert!(hits.is_empty());
        // Query-language syntax is just separators.
        let (hits, _) = core
            .mail(a)
            .search(None, "\"total\"* :", 0, 50)
            .await
            .unwrap();
        assert_eq!(subjects(hits), ["Invoice 42"]);

        // A moved message is found in its new folder, not the old one.
        let archive = core
            .mail(a)
            .mailbox_status("Archive")
            .await
            .unwrap()
            .unwrap();
        owned(&core, a, &ib)
            .await
            .move_to(&uids(&[1]), &owned(&core, a, &archive).await)
            .await
            .unwrap();
        assert_eq!(
            core.mail(a)
                .search(Some(&owned(&core, a, &ib).await), "invoice", 0, 50)
                .await
                .unwrap()
                .1,
            0
        );
        assert_eq!(
            core.mail(a)
                .search(Some(&owned(&core, a, &archive).await), "invoice", 0, 50)
                .await
                .unwrap()
                .1,
            1
        );
        // Expunged and gone: no hit, and b's copy of similar words is still b's.
        owned(&core, a, &archive)
            .await
            .set_flags(&uids(&[1]), FlagOp::Add, Flags::DELETED)
            .await
            .unwrap();
        owned(&core, a, &archive).await.expunge(None).await.unwrap();
        assert_eq!(
            core.mail(a).search(None, "invoice", 0, 50).await.unwrap().1,
            0
        );
        assert_eq!(
            core.mail(b).search(None, "invoice", 0, 50).await.unwrap().1,
            1
        );
        // Counts stop at the cap (a word in every message costs no more).
        let lots = core.mail(a).mailbox_status("Junk").await.unwrap().unwrap();
        for i in 0..(mailcore::search::COUNT_CAP + 5) {
            let raw = format!("From: x@y.example\r\nSubject: spam {i}\r\n\r\nbuy now\r\n");
            owned(&core, a, &lots)
                .await
                .append(raw.as_bytes(), Flags::empty(), None)
                .await
                .unwrap();
        }
        let (page, n) = core
            .mail(a)
            .search(Some(&owned(&core, a, &lots).await), "buy", 0, 50)
            .await
            .unwrap();
        assert_eq!((page.len(), n), (50, mailcore::search::COUNT_CAP + 1));
        // Another account's mailbox is refused, not searched.
        assert!(matches!(
            core.mail(b)
                .search(Some(&owned(&core, a, &ib).await), "harbour", 0, 50)
                .await,
            Err(CoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn admin_roles_are_enforced_by_the_core_and_audited() {
    use mailcore::admin::{Actor, Catchall};
    for_each_backend("admin_roles", |core| async move {
        let op = Actor::operator("root");
        core.admin(&op).add_domain("a.test").await.unwrap();
        core.admin(&op).add_domain("b.test").await.unwrap();
        let da = core
            .admin(&op)
            .add_account("boss@a.test", PW, Role::DomainAdmin)
            .await
            .unwrap();
        core.admin(&op)
            .add_account("info@a.test", PW, Role::User)
            .await
            .unwrap();
        core.admin(&op)
            .add_account("info@b.test", PW, Role::User)
            .await
            .unwrap();
        let web = Actor::web(
            &mailcore::AccountRef {
                id: da.id,
                address: da.address.clone(),
                role: Role::DomainAdmin,
            },
            "192.0.2.7",
        );
        // Sees and changes its own domain only.
        let names: Vec<String> = core
            .admin(&web)
            .domains()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.domain.name)
            .collect();
        assert_eq!(names, ["a.test"]);
        for r in [
            core.admin(&web)
                .set_catchall("b.test", Catchall::Account("info".into()))
                .await,
            core.admin(&web)
                .add_account("x@b.test", PW, Role::User)
                .await
                .map(|_| ()),
            core.admin(&web)
                .set_password("info@b.test", "another password")
                .await,
            core.admin(&web)
                .add_alias("sales@b.test", &["info@b.test".into()])
                .await
                .map(|_| ()),
            core.admin(&web).add_domain("c.test").await.map(|_| ()),
            core.admin(&web).remove_domain("a.test", true).await,
            core.admin(&web)
                .add_account("root@a.test", PW, Role::Admin)
                .await
                .map(|_| ()),
        ] {
            assert!(matches!(r, Err(CoreError::Forbidden)), "{r:?}");
        }
        assert!(matches!(
            core.admin(&web).accounts("b.test").await,
            Err(CoreError::Forbidden)
        ));

        // Catchall: an account, then reject with the admin's words.
        core.admin(&web)
            .set_catchall("a.test", Catchall::Account("info".into()))
            .await
            .unwrap();
        assert!(matches!(
            core.route("nobody@a.test").await.unwrap(),
            Route::Catchall { .. }
        ));
        core.admin(&web)
            .set_catchall(
                "a.test",
                Catchall::Reject("Gone.\r\nWrite to info@a.test".into()),
            )
            .await
            .unwrap();
        assert_eq!(
            core.route("nobody@a.test").await.unwrap(),
            Route::Rejected(Rejection::Policy("Gone.Write to info@a.test".into()))
        );
        assert!(
            core.admin(&web)
                .set_catchall("a.test", Catchall::Reject("naïve".into()))
                .await
                .is_err()
        );
        // Known addresses are unaffected.
        assert!(matches!(
            core.route("info@a.test").await.unwrap(),
            Route::Account(_)
        ));
        core.admin(&web)
            .set_catchall("a.test", Catchall::None)
            .await
            .unwrap();
        assert_eq!(
            core.route("nobody@a.test").await.unwrap(),
            Route::Rejected(Rejection::NoSuchUser)
        );

        // Removing a domain with mail asks for confirmation first.
        let info = core.account("info@b.test").await.unwrap().unwrap().id;
        core.mail(info)
            .open("INBOX")
            .await
            .unwrap()
            .append(&msg("keep", "me"), Flags::empty(), None)
            .await
            .unwrap();
        let err = core
            .admin(&op)
            .remove_domain("b.test", false)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("still has 1 accounts holding 1 messages"),
            "{err}"
        );
        core.admin(&op).remove_domain("b.test", true).await.unwrap();

        // The audit log: everything for the operator, a.test's for the boss.
        let all = core.admin(&op).audit_log(100).await.unwrap();
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions.first(), Some(&"domain.remove"));
        assert!(actions.contains(&"catchall.set") && actions.contains(&"account.add"));
        let mine = core.admin(&web).audit_log(100).await.unwrap();
        assert!(mine.iter().all(|e| e.domain == "a.test"), "{mine:?}");
        let cs: Vec<_> = mine.iter().filter(|e| e.action == "catchall.set").collect();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].detail, "none");
        assert_eq!(cs[1].detail, "reject: Gone.Write to info@a.test");
        assert_eq!(
            (cs[2].actor.as_str(), cs[2].ip.as_str()),
            ("boss@a.test", "192.0.2.7")
        );
    })
    .await;
}

async fn drained(spool: &mailcore::spool::Spool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while spool.stats().records > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "spool not drained: {:?}",
            spool.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn ingest_cfg() -> mailcore::spool::ingest::IngestConfig {
    mailcore::spool::ingest::IngestConfig {
        hostname: "mx.example.test".into(),
    }
}

#[tokio::test]
async fn spooled_mail_is_stored_once_across_a_restart() {
    common::for_each_url("spool_ingest_once", |url| async move {
        use mailcore::delivery::Accepted;
        use mailcore::spool::{Spool, SpoolConfig};
        let spool_dir = tempfile::tempdir().unwrap();
        let core = Core::open(mailcore::CoreOptions::new(url.clone()))
            .await
            .unwrap();
        let ids = setup(&core, &["a", "b"]).await;
        let mut feed = core.subscribe();
        let spool = Spool::open(&SpoolConfig::new(spool_dir.path())).unwrap();
        let ingest = core.start_ingest(spool.clone(), ingest_cfg());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let core = core.clone();
            let local = if i % 4 == 0 {
                ids.iter().map(|id| LocalCopy::new(*id, "")).collect()
            } else {
                vec![LocalCopy::new(ids[0], "")]
            };
            tasks.push(tokio::spawn(async move {
                let env = Envelope {
                    require_tls: false,
                    mail_from: "sender@remote.example".into(),
                    local,
                    remote: if i == 0 {
                        vec![Address::parse("far@remote.example").unwrap()]
                    } else {
                        vec![]
                    },
                };
                core.accept(&env, &msg(&format!("m{i}"), "spooled"))
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Accepted::Spooled(_)));
        }
        drained(&spool).await;
        // IDLE and the web learn of spooled mail as of any other.
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
            .await
            .expect("a change event")
            .unwrap();
        assert!(matches!(ev.kind, mailcore::ChangeKind::NewMessages { .. }));
        let count = |core: Core, id: AccountId| async move {
            let ib = inbox(&core, id).await;
            owned(&core, id, &ib)
                .await
                .list(0, 1000, SortOrder::UidAsc)
                .await
                .unwrap()
                .0
                .len()
        };
        assert_eq!(count(core.clone(), ids[0]).await, 40);
        assert_eq!(count(core.clone(), ids[1]).await, 10);
        assert_eq!(core.queue().len().await.unwrap(), 1);
        ingest.stop().await;
        drop(spool);

        // A restart: the spool's segment is still on disk (its records
        // were stored but the crash came before tidying); a new node
        // process finds them and recognises every one as stored.
        let again = Core::open(mailcore::CoreOptions::new(url.clone()))
            .await
            .unwrap();
        let spool = Spool::open(&SpoolConfig::new(spool_dir.path())).unwrap();
        assert_eq!(spool.stats().records, 40, "found again on disk");
        let ingest = again.start_ingest(spool.clone(), ingest_cfg());
        drained(&spool).await;
        assert_eq!(count(again.clone(), ids[0]).await, 40, "no duplicates");
        assert_eq!(count(again.clone(), ids[1]).await, 10);
        assert_eq!(again.queue().len().await.unwrap(), 1);
        ingest.stop().await;
        again.close().await;
        core.close().await;
    })
    .await;
}

#[tokio::test]
async fn over_quota_at_ingest_delivers_the_rest_and_bounces() {
    for_each_backend("spool_quota_dsn", |core| async move {
        use mailcore::spool::{Spool, SpoolConfig};
        let ids = setup(&core, &["a", "b", "sender"]).await;
        let spool_dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&SpoolConfig::new(spool_dir.path())).unwrap();
        // Accepted while a has room ...
        let env = Envelope {
            require_tls: false,
            mail_from: "sender@example.test".into(),
            local: vec![LocalCopy::new(ids[0], ""), LocalCopy::new(ids[1], "")],
            remote: vec![],
        };
        let big = msg("big", &"x".repeat(400));
        // ... but a's quota drops before the store sees it (the ingest
        // worker is not running yet).
        core.attach_spool(spool.clone());
        let _ = core.accept(&env, &big).await.unwrap();
        core.set_quota("a@example.test", 100).await.unwrap();
        let spool2 = spool.clone();
        let h = core.start_ingest(spool2, ingest_cfg());
        drained(&spool).await;
        h.stop().await;
        let list = |id: AccountId| {
            let core = core.clone();
            async move {
                let ib = inbox(&core, id).await;
                let (m, _) = owned(&core, id, &ib)
                    .await
                    .list(0, 10, SortOrder::UidAsc)
                    .await
                    .unwrap();
                let mut raws = Vec::new();
                for s in m {
                    raws.push(
                        String::from_utf8(owned(&core, id, &ib).await.raw(s.uid).await.unwrap())
                            .unwrap(),
                    );
                }
                raws
            }
        };
        assert!(list(ids[0]).await.is_empty(), "a is over quota");
        assert_eq!(list(ids[1]).await.len(), 1, "b still gets it");
        let dsn = list(ids[2]).await;
        assert_eq!(dsn.len(), 1, "the sender gets a DSN");
        assert!(dsn[0].contains("report-type=delivery-status"), "{}", dsn[0]);
        assert!(
            dsn[0].contains("Final-Recipient: rfc822; a@example.test"),
            "{}",
            dsn[0]
        );
        assert!(dsn[0].contains("Status: 5.2.2"), "{}", dsn[0]);
    })
    .await;
}

/// One ingest batch does the per-account work once (quota, UIDs, usage,
/// new threads) for all its records: check that it still counts as if
/// each record were stored alone, in arrival order.
#[tokio::test]
async fn one_ingest_batch_counts_quota_uids_usage_and_threads_in_order() {
    for_each_backend("spool_batch_bookkeeping", |core| async move {
        use mailcore::spool::{Spool, SpoolConfig};
        let ids = setup(&core, &["a", "b", "sender"]).await;
        let (a, b, sender) = (ids[0], ids[1], ids[2]);
        let spool_dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&SpoolConfig::new(spool_dir.path())).unwrap();
        core.attach_spool(spool.clone());
        let first = msg("first", &"1".repeat(200));
        let mut reply = b"In-Reply-To: <first@remote.example>\r\n".to_vec();
        reply.extend_from_slice(&msg("reply", &"2".repeat(200)));
        let third = msg("third", &"3".repeat(200));
        let fourth = msg("fourth", &"4".repeat(200));
        let fifth = msg("fifth", &"5".repeat(200));
        // a has room for the first three, not the fourth.
        // Each copy also counts its Delivered-To line.
        let trace = |raw: &[u8], id: AccountId| {
            (raw.len() + format!("Delivered-To: to-{id}@example.test\r\n").len()) as i64
        };
        let quota = trace(&first, a) + trace(&reply, a) + trace(&third, a) + 10;
        core.set_quota("a@example.test", quota).await.unwrap();
        let to = |accounts: &[AccountId]| Envelope {
            require_tls: false,
            mail_from: "sender@example.test".into(),
            local: accounts
                .iter()
                .map(|id| LocalCopy::new(*id, format!("to-{id}@example.test")))
                .collect(),
            remote: vec![],
        };
        // All five wait in the spool before the worker starts: one batch.
        for (env, raw) in [
            (to(&[a, b]), &first),
            (to(&[a]), &reply),
            (to(&[a]), &third),
            (to(&[a]), &fourth),
            (to(&[b]), &fifth),
        ] {
            core.accept(&env, raw).await.unwrap();
        }
        let h = core.start_ingest(spool.clone(), ingest_cfg());
        drained(&spool).await;
        h.stop().await;

        let list = |id: AccountId| {
            let core = core.clone();
            async move {
                let ib = inbox(&core, id).await;
                owned(&core, id, &ib)
                    .await
                    .list(0, 10, SortOrder::UidAsc)
                    .await
                    .unwrap()
                    .0
            }
        };
        let in_a = list(a).await;
        let subjects: Vec<&str> = in_a.iter().map(|m| m.subject.as_str()).collect();
        assert_eq!(subjects, ["first", "reply", "third"], "arrival order");
        let got: Vec<Uid> = in_a.iter().map(|m| m.uid).collect();
        assert_eq!(got, uids(&[1, 2, 3]));
        assert_eq!(
            in_a[0].thread_id, in_a[0].id as i64,
            "a new conversation is its own thread root"
        );
        assert_eq!(
            in_a[1].thread_id, in_a[0].thread_id,
            "a reply stored in the same batch as the message it answers joins its thread"
        );
        assert_ne!(in_a[2].thread_id, in_a[0].thread_id);
        let sizes: Vec<i64> = in_a.iter().map(|m| m.size).collect();
        assert_eq!(
            sizes,
            [trace(&first, a), trace(&reply, a), trace(&third, a)]
        );
        let used = core
            .account("a@example.test")
            .await
            .unwrap()
            .unwrap()
            .used_bytes;
        assert_eq!(
            used,
            sizes.iter().sum::<i64>(),
            "usage counts each stored copy"
        );

        let in_b: Vec<String> = list(b).await.into_iter().map(|m| m.subject).collect();
        assert_eq!(
            in_b,
            ["first", "fifth"],
            "a refusal does not hold the rest back"
        );
        let used_b = core
            .account("b@example.test")
            .await
            .unwrap()
            .unwrap()
            .used_bytes;
        assert_eq!(used_b, trace(&first, b) + trace(&fifth, b));

        let dsn = list(sender).await;
        assert_eq!(dsn.len(), 1, "the fourth message is reported to its sender");
        let ib = inbox(&core, sender).await;
        let raw = String::from_utf8(
            owned(&core, sender, &ib)
                .await
                .raw(dsn[0].uid)
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(raw.contains("Status: 5.2.2"), "{raw}");
        assert!(raw.contains("Subject: fourth"), "{raw}");
    })
    .await;
}

#[tokio::test]
async fn keywords_are_stored_copied_and_limited() {
    for_each_backend("keywords", |core| async move {
        let ids = setup(&core, &["k"]).await;
        let ib = inbox(&core, ids[0]).await;
        let kw =
            |n: &[&str]| -> Vec<Keyword> { n.iter().map(|x| Keyword::parse(x).unwrap()).collect() };
        // A change of keywords only.
        let only = |n: &[&str]| FlagSet {
            system: Flags::empty(),
            keywords: kw(n),
        };
        let uid = owned(&core, ids[0], &ib)
            .await
            .append_flagged(
                &msg("kw", "x"),
                &FlagSet {
                    system: Flags::SEEN,
                    keywords: kw(&["$Forwarded"]),
                },
                None,
            )
            .await
            .unwrap();
        let before = owned(&core, ids[0], &ib).await.modseq().await.unwrap();
        let ch = owned(&core, ids[0], &ib)
            .await
            .store_flags(&[uid], FlagOp::Add, &only(&["$Junk"]))
            .await
            .unwrap();
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].flags.keywords, kw(&["$Forwarded", "$Junk"]));
        assert!(
            ch[0].modseq > before,
            "a keyword change is a change (RFC 7162)"
        );
        // The same keyword in another case changes nothing and bumps nothing.
        let ch = owned(&core, ids[0], &ib)
            .await
            .store_flags(&[uid], FlagOp::Add, &only(&["$JUNK"]))
            .await
            .unwrap();
        assert!(ch.is_empty());
        let m = owned(&core, ids[0], &ib).await.message(uid).await.unwrap();
        assert_eq!(m.keywords, kw(&["$Forwarded", "$Junk"]));
        assert_eq!(m.flags, Flags::SEEN);
        // Past the per-message limit: refused, and the row is as it was.
        let many: Vec<String> = (0..mailcore::messages::MAX_KEYWORDS_PER_MESSAGE)
            .map(|i| format!("k{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let r = owned(&core, ids[0], &ib)
            .await
            .store_flags(&[uid], FlagOp::Add, &only(&many))
            .await;
        assert!(matches!(r, Err(CoreError::Limit(_))), "{r:?}");
        assert_eq!(
            owned(&core, ids[0], &ib)
                .await
                .message(uid)
                .await
                .unwrap()
                .keywords
                .len(),
            2
        );
        // COPY keeps keywords; -FLAGS removes them.
        let dest = core
            .mail(ids[0])
            .create_mailbox("Kept", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        let pairs = owned(&core, ids[0], &ib)
            .await
            .copy_to(&[uid], &owned(&core, ids[0], &dest).await)
            .await
            .unwrap();
        let copy = owned(&core, ids[0], &dest)
            .await
            .message(pairs[0].1)
            .await
            .unwrap();
        assert_eq!(copy.keywords, kw(&["$Forwarded", "$Junk"]));
        owned(&core, ids[0], &dest)
            .await
            .store_flags(
                &[pairs[0].1],
                FlagOp::Remove,
                &FlagSet {
                    system: Flags::SEEN,
                    keywords: kw(&["$forwarded"]),
                },
            )
            .await
            .unwrap();
        let copy = owned(&core, ids[0], &dest)
            .await
            .message(pairs[0].1)
            .await
            .unwrap();
        assert_eq!(
            (copy.flags, copy.keywords),
            (Flags::empty(), kw(&["$Junk"]))
        );
    })
    .await;
}

#[tokio::test]
async fn outside_accounts_seal_fetch_once_and_go_with_their_owner() {
    use mailcore::outside::{Endpoint, NewOutside, OutsideSettings, Protocol, Security};
    use mailcore::outside_fetch::FetchMode;
    for_each_backend("outside", |core| async move {
        let ids = setup(&core, &["o", "p"]).await;
        let dir = tempfile::tempdir().unwrap();
        core.set_outside_key_file(dir.path().join("outside.key"));
        let settings = OutsideSettings {
            address: "jo@far.test".into(),
            username: "jo".into(),
            protocol: Protocol::Pop3,
            incoming: Endpoint::new("pop.far.test", 995, Security::Tls),
            outgoing: None,
        };
        let id = core
            .add_outside_account(
                ids[0],
                &NewOutside {
                    settings: &settings,
                    password: "s3cret",
                    remember: true,
                    session: "sess",
                    pinned_cert: None,
                    smtp: Some(("jo-smtp", "app-pw")),
                },
            )
            .await
            .unwrap();
        // Another owner cannot see or use it.
        assert!(core.outside_account(ids[1], id).await.is_err());
        assert!(core.outside_login(ids[1], id, "sess").await.is_err());
        let login = core.outside_login(ids[0], id, "").await.unwrap().unwrap();
        assert_eq!(login.password, "s3cret");
        assert_eq!(login.smtp_login(), ("jo-smtp", "app-pw"));
        // Session-only: held in memory for that session, gone at sign-out.
        let mut other = settings.clone();
        other.address = "kim@far.test".into();
        let held = core
            .add_outside_account(
                ids[0],
                &NewOutside {
                    settings: &other,
                    password: "pw2",
                    remember: false,
                    session: "sess",
                    pinned_cert: None,
                    smtp: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            core.outside_login(ids[0], held, "sess")
                .await
                .unwrap()
                .unwrap()
                .password,
            "pw2"
        );
        assert!(
            core.outside_login(ids[0], held, "other")
                .await
                .unwrap()
                .is_none()
        );
        core.forget_outside_passwords("sess");
        assert!(
            core.outside_login(ids[0], held, "sess")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            core.set_outside_fetch(ids[0], held, FetchMode::Keep)
                .await
                .is_err()
        );

        core.set_outside_fetch(ids[0], id, FetchMode::Delete)
            .await
            .unwrap();
        let jobs = core.outside_fetch_due(core.clock().now()).await.unwrap();
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert!(
            core.store_fetched(job, "pop3:a1", &msg("f1", "x"))
                .await
                .unwrap()
        );
        assert!(
            !core
                .store_fetched(job, "pop3:a1", &msg("f1", "x"))
                .await
                .unwrap()
        );
        assert!(
            core.store_fetched(job, "pop3:a2", &msg("f2", "y"))
                .await
                .unwrap()
        );
        assert_eq!(inbox(&core, ids[0]).await.total, 2);
        let done = core
            .outside_fetched_keys(id, &["pop3:a1".into(), "pop3:zz".into()])
            .await
            .unwrap();
        assert!(done.contains("pop3:a1") && !done.contains("pop3:zz"));
        let acct = core.outside_account(ids[0], id).await.unwrap();
        assert_eq!(acct.fetch.fetched_total, 2);
        // A failed run backs off and says why.
        let now = core.clock().now();
        core.finish_outside_fetch(id, Err("cannot reach pop.far.test".into()), now, 60)
            .await
            .unwrap();
        let acct = core.outside_account(ids[0], id).await.unwrap();
        assert_eq!(
            acct.fetch.status.as_deref(),
            Some("cannot reach pop.far.test")
        );
        assert_eq!(acct.fetch.next_at, now + 120);
        assert!(core.outside_fetch_due(now).await.unwrap().is_empty());

        // The unified inbox: local INBOX (two fetched messages) and the
        // header cache, newest first; search is case-insensitive.
        use mailcore::outside_cache::{CachedHeader, UnifiedSource};
        let h = |key: &str, date: i64, subject: &str| CachedHeader {
            key: key.into(),
            date,
            from: "Kay".into(),
            subject: subject.into(),
            size: 10,
            seen: false,
            flagged: false,
        };
        core.update_outside_cache(
            id,
            0,
            &[
                h("u1", 4_000_000_000, "Future Plans"),
                h("u2", 1, "Ancient"),
            ],
            &[],
        )
        .await
        .unwrap();
        use mailcore::outside_cache::UnifiedAt;
        let unified = |owner: AccountId, size: u64, q: &'static str| {
            let core = core.clone();
            async move {
                core.mail(owner)
                    .unified_inbox(&UnifiedAt::Newest, size, q)
                    .await
                    .unwrap()
            }
        };
        let page = unified(ids[0], 50, "").await;
        assert_eq!(page.total, 4);
        let rows = &page.rows;
        assert_eq!(rows.first().unwrap().subject, "Future Plans");
        assert_eq!(rows.last().unwrap().subject, "Ancient");
        assert!(matches!(rows[1].source, UnifiedSource::Local { .. }));
        assert!(!page.has_newer && !page.has_older);
        let page = unified(ids[0], 50, "future").await;
        assert_eq!((page.rows.len(), page.total), (1, 1), "{page:?}");
        let first = unified(ids[0], 3, "").await;
        assert!(first.has_older);
        let last = first.rows.last().unwrap().key();
        let page = core
            .mail(ids[0])
            .unified_inbox(&UnifiedAt::Older(last), 3, "")
            .await
            .unwrap();
        assert_eq!(page.rows.len(), 1, "the second page holds the rest");
        assert!(page.has_newer && !page.has_older);
        core.update_outside_cache(id, 0, &[], &["u1".into()])
            .await
            .unwrap();
        assert_eq!(unified(ids[0], 50, "").await.total, 3);
        // Nobody else sees the cache.
        assert_eq!(unified(ids[1], 50, "").await.total, 0);

        core.remove_account("o@example.test").await.unwrap();
        assert!(core.outside_account(ids[0], id).await.is_err());
        assert!(
            core.outside_fetched_keys(id, &["pop3:a1".into()])
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

/// The unified inbox pages by key: walking Older from the newest page to
/// the end, and Newer back, shows every row once, in order, including
/// runs of rows with the same date across local and outside sources; a
/// row deleted between two pages moves no other row off the list.
#[tokio::test]
async fn unified_inbox_pages_by_key_without_gaps_or_repeats() {
    use mailcore::outside::{Endpoint, NewOutside, OutsideSettings, Protocol, Security};
    use mailcore::outside_cache::{CachedHeader, UnifiedAt, UnifiedKey};
    use std::sync::Arc;
    for_each_url("unified_keyset", |url| async move {
        let clock = Arc::new(mailcore::ManualClock::new(1_800_000_000));
        let core = Core::open_with_clock(CoreOptions::new(&url), clock.clone())
            .await
            .unwrap();
        let ids = setup(&core, &["u"]).await;
        if url.starts_with("postgres") {
            // A production database may sort text by a language's rules
            // (which skip punctuation); the paging must not depend on it.
            use sea_orm::ConnectionTrait;
            let db = sea_orm::Database::connect(&url).await.unwrap();
            db.execute_unprepared(
                    r#"ALTER TABLE outside_headers ALTER COLUMN msg_key TYPE varchar COLLATE "en-x-icu""#,
            )
            .await
            .unwrap();
            db.close().await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        core.set_outside_key_file(dir.path().join("outside.key"));
        let mut accounts = Vec::new();
        for name in ["jo", "kim"] {
            let settings = OutsideSettings {
                address: format!("{name}@far.test"),
                username: name.into(),
                protocol: Protocol::Imap,
                incoming: Endpoint::new("imap.far.test", 993, Security::Tls),
                outgoing: None,
            };
            let id = core
                .add_outside_account(
                    ids[0],
                    &NewOutside {
                        settings: &settings,
                        password: "pw",
                        remember: true,
                        session: "s",
                        pinned_cert: None,
                        smtp: None,
                    },
                )
                .await
                .unwrap();
            accounts.push(id);
        }
        // Local: 3 dates with 4 messages each. Outside: 20 rows per
        // account, dates colliding with the local ones and each other.
        let env = Envelope {
            require_tls: false,
            mail_from: String::new(),
            local: vec![LocalCopy::new(ids[0], "")],
            remote: vec![],
        };
        for i in 0..12 {
            if i % 4 == 0 {
                clock.advance(10);
            }
            core.deliver(&env, &msg(&format!("local{i}"), "x"))
                .await
                .unwrap();
        }
        for (n, id) in accounts.iter().enumerate() {
            let rows: Vec<CachedHeader> = (0..20)
                .map(|i| CachedHeader {
                    // UIDL-like keys: case and punctuation, which a language's
                    // collation orders unlike bytes.
                    key: format!("{}{i}", ["a-", "B_", "c.", "", "D"][i % 5]),
                    date: 1_800_000_000 + 10 * (i % 3) as i64,
                    from: "x".into(),
                    subject: format!("out{n}-{i}"),
                    size: 1,
                    seen: false,
                    flagged: false,
                })
                .collect();
            core.update_outside_cache(*id, 7, &rows, &[]).await.unwrap();
        }
        let total = 12 + 40;
        let me = ids[0];
        let walk = |size: u64| {
            let core = core.clone();
            async move {
                let mut seen: Vec<UnifiedKey> = Vec::new();
                let mut at = UnifiedAt::Newest;
                loop {
                    let page = core.mail(me).unified_inbox(&at, size, "").await.unwrap();
                    assert_eq!(page.total, total as u64);
                    seen.extend(page.rows.iter().map(|r| r.key()));
                    if !page.has_older {
                        break;
                    }
                    at = UnifiedAt::Older(page.rows.last().unwrap().key());
                }
                // And back up by Newer from the oldest page.
                let mut back: Vec<UnifiedKey> = Vec::new();
                let mut at = UnifiedAt::Newer(seen.last().unwrap().clone());
                loop {
                    let page = core.mail(me).unified_inbox(&at, size, "").await.unwrap();
                    back.splice(0..0, page.rows.iter().map(|r| r.key()));
                    if !page.has_newer {
                        break;
                    }
                    at = UnifiedAt::Newer(page.rows.first().unwrap().key());
                }
                (seen, back)
            }
        };
        for size in [1, 5, 7, 50] {
            let (seen, back) = walk(size).await;
            assert_eq!(seen.len(), total, "page size {size}: {seen:?}");
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.reverse();
            sorted.dedup();
            assert_eq!(sorted, seen, "page size {size}: newest first, each once");
            assert_eq!(&back[..], &seen[..total - 1], "page size {size}: back up");
            // The key survives a page link.
            for k in &seen {
                assert_eq!(UnifiedKey::parse(&k.encode()).as_ref(), Some(k));
            }
        }
        // A row on the first page goes before the second page is read:
        // the second page is the same rows as before.
        let first = core.mail(ids[0]).unified_inbox(&UnifiedAt::Newest, 10, "")
            .await
            .unwrap();
        let second = core.mail(ids[0]).unified_inbox(&UnifiedAt::Older(first.rows[9].key()), 10, "")
            .await
            .unwrap();
        let gone = first
            .rows
            .iter()
            .find_map(|r| match &r.source {
                mailcore::outside_cache::UnifiedSource::Outside { account, key, .. } => {
                    Some((*account, key.clone()))
                }
                _ => None,
            })
            .expect("an outside row on the first page");
        core.update_outside_cache(gone.0, 7, &[], &[gone.1]).await.unwrap();
        let again = core.mail(ids[0]).unified_inbox(&UnifiedAt::Older(first.rows[9].key()), 10, "")
            .await
            .unwrap();
        assert_eq!(again.rows, second.rows);
        assert!(UnifiedKey::parse("12.x9").is_none() && UnifiedKey::parse("a.l1").is_none());
        core.close().await;
    })
    .await;
}

#[tokio::test]
async fn subscriptions_outlive_their_mailbox() {
    for_each_backend("lone_subscriptions", |core| async move {
        let ids = setup(&core, &["s"]).await;
        core.mail(ids[0])
            .create_mailbox("Lists", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        core.mail(ids[0])
            .set_subscribed("Lists", true)
            .await
            .unwrap();
        core.mail(ids[0]).delete_mailbox("Lists").await.unwrap();
        assert_eq!(
            core.mail(ids[0]).lone_subscriptions().await.unwrap(),
            ["Lists"]
        );
        // Twice is fine; a name with no mailbox may be subscribed.
        core.mail(ids[0])
            .set_subscribed("Lists", true)
            .await
            .unwrap();
        core.mail(ids[0])
            .set_subscribed("Later", true)
            .await
            .unwrap();
        assert_eq!(
            core.mail(ids[0]).lone_subscriptions().await.unwrap(),
            ["Later", "Lists"]
        );
        // A mailbox made under the name holds the subscription.
        let m = core
            .mail(ids[0])
            .create_mailbox("Later", mailcore::NewMailbox::Subscribed)
            .await
            .unwrap();
        assert!(m.subscribed);
        assert_eq!(
            core.mail(ids[0]).lone_subscriptions().await.unwrap(),
            ["Lists"]
        );
        core.mail(ids[0])
            .set_subscribed("Lists", false)
            .await
            .unwrap();
        assert!(
            core.mail(ids[0])
                .lone_subscriptions()
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            core.mail(ids[0])
                .set_subscribed("Lists", false)
                .await
                .is_err()
        );
    })
    .await;
}

/// Sieve rules at delivery on both backends: the rule builder's script
/// files a message and answers once per sender (the vacation key is
/// kept in `sieve_seen`), a hand-written one is checked when stored, and
/// `discard` keeps nothing, not even the bytes.
#[tokio::test]
async fn sieve_rules_file_reply_once_and_discard() {
    use mailcore::rules::form::{Action, Field, Op, Rule, RuleForm, Vacation};
    for_each_backend("sieve", |core| async move {
        let ids = setup(&core, &["a", "b"]).await;
        let (a, b) = (ids[0], ids[1]);
        let form = RuleForm {
            rules: vec![Rule {
                field: Field::Subject,
                header: String::new(),
                op: Op::Contains,
                value: "invoice".into(),
                action: Action::Move,
                arg: "Archive".into(),
                stop: false,
            }],
            vacation: Some(Vacation {
                subject: "Away".into(),
                body: "Back soon.".into(),
                days: 3,
            }),
            forward: None,
        };
        core.save_rule_form(a, &form).await.unwrap();
        let scripts = core.sieve_scripts(a).await.unwrap();
        assert_eq!(scripts.len(), 1);
        assert!(scripts[0].active && scripts[0].form.as_ref() == Some(&form));
        let to_a = |subject: &str| {
            format!(
                "From: b@example.test\r\nTo: a@example.test\r\nSubject: {subject}\r\n\
                 Message-ID: <{subject}@example.test>\r\n\r\nHello.\r\n"
            )
            .into_bytes()
        };
        let env = Envelope {
            require_tls: false,
            mail_from: "b@example.test".into(),
            local: vec![LocalCopy::new(a, "a@example.test")],
            remote: vec![],
        };
        core.deliver(&env, &to_a("Invoice")).await.unwrap();
        core.deliver(&env, &to_a("Lunch")).await.unwrap();
        let archive = core.mail(a).mailbox("Archive").await.unwrap().unwrap();
        assert_eq!(
            archive
                .list(0, 10, SortOrder::UidAsc)
                .await
                .unwrap()
                .0
                .len(),
            1
        );
        assert_eq!(inbox(&core, a).await.total, 1);
        let b_inbox = core.mail(b).mailbox("INBOX").await.unwrap().unwrap();
        let (replies, _) = b_inbox.list(0, 10, SortOrder::UidAsc).await.unwrap();
        assert_eq!(replies.len(), 1, "one reply for two messages");
        assert_eq!(replies[0].subject, "Away");

        assert!(matches!(
            core.put_sieve_script(a, "bad", "fileinto \"x\"", true)
                .await,
            Err(CoreError::Invalid(_))
        ));
        core.put_sieve_script(a, "drop", "discard;\r\n", true)
            .await
            .unwrap();
        let before = core.storage_counts().await.unwrap();
        let r = core.deliver(&env, &to_a("Dropped")).await.unwrap();
        assert_eq!(r.blob_id, None);
        assert!(r.delivered.is_empty());
        assert_eq!(core.storage_counts().await.unwrap(), before);
        core.activate_sieve_script(a, None).await.unwrap();
        core.deliver(&env, &to_a("Plain")).await.unwrap();
        assert_eq!(inbox(&core, a).await.total, 2);
        assert!(matches!(
            core.delete_sieve_script(a, "nope").await,
            Err(CoreError::NotFound(_))
        ));
    })
    .await;
}

/// The status monitor on each backend: a listener going down opens an
/// incident that is written to the store, an operator's note attaches to
/// it (a user's is refused), and the listener coming back closes it; the
/// timeline keeps it, closed.
#[tokio::test(flavor = "multi_thread")]
async fn status_incidents_open_take_notes_and_close() {
    use mailcore::admin::Actor;
    use mailcore::status::{ListenerState, Service, State, StatusConfig};
    for_each_backend("status", |core| async move {
        let ids = setup(&core, &["a"]).await;
        let inbound = std::sync::Arc::new(std::sync::Mutex::new(ListenerState::Up));
        let seen = inbound.clone();
        let monitor = core.start_status(StatusConfig {
            every: Duration::from_millis(50),
            relay_enabled: true,
            thresholds: Default::default(),
            listeners: Box::new(move || vec![(Service::Inbound, *seen.lock().unwrap())]),
        });
        let wait = async |what: &str, cond: &dyn Fn(&mailcore::status::Board) -> bool| {
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                let b = core.status_board();
                if cond(&b) {
                    return b;
                }
                assert!(Instant::now() < end, "{what}: {b:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        wait("all operating", &|b| {
            b.checked_at > 0 && b.worst() == State::Operating
        })
        .await;
        assert_eq!(
            core.delivery_window(core.clock().now())
                .await
                .unwrap()
                .success_ratio(),
            None
        );
        assert!(
            core.queue_overdue(core.clock().now())
                .await
                .unwrap()
                .iter()
                .all(|(_, late)| *late == 0)
        );

        *inbound.lock().unwrap() = ListenerState::Down;
        wait("inbound down", &|b| {
            b.services
                .iter()
                .any(|s| s.service == Service::Inbound && s.state == State::Down)
                && b.incidents.first().is_some_and(|i| i.id.is_some())
        })
        .await;
        let (incidents, _) = core.status_timeline(core.clock().now()).await.unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(
            (
                incidents[0].service,
                incidents[0].state,
                incidents[0].closed_at
            ),
            (Service::Inbound, State::Down, None)
        );
        let note = core
            .status_add_note(&Actor::operator("ops"), "  Port 25 is being looked at.  ")
            .await
            .unwrap();
        assert_eq!(note.incident_id, incidents[0].id);
        assert_eq!(note.body, "Port 25 is being looked at.");
        let user = core.account("a@example.test").await.unwrap().unwrap();
        assert_eq!(user.id, ids[0]);
        assert!(matches!(
            core.status_add_note(&Actor::web(&user.as_ref(), "192.0.2.1"), "mine")
                .await,
            Err(mailcore::CoreError::Forbidden)
        ));
        assert!(
            core.status_add_note(&Actor::operator("ops"), "  ")
                .await
                .is_err()
        );

        *inbound.lock().unwrap() = ListenerState::Up;
        let b = wait("closed", &|b| {
            b.worst() == State::Operating
                && b.incidents.first().is_some_and(|i| i.closed_at.is_some())
        })
        .await;
        assert_eq!(b.incidents[0].notes.len(), 1, "{b:?}");
        monitor.abort();
        let (incidents, loose) = core.status_timeline(core.clock().now()).await.unwrap();
        assert_eq!(incidents.len(), 1);
        assert!(incidents[0].closed_at.is_some());
        assert_eq!(incidents[0].notes[0].author, "cli:ops");
        assert!(loose.is_empty());
    })
    .await;
}
