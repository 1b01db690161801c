//! The command line. Admin commands print one line per row on success and a
//! one-line `error: ...` with a non-zero exit on failure. Each command is a
//! single core call, and each core call one transaction, so a failure
//! leaves nothing half-written. Passwords come from a prompt or stdin,
//! never from argv, where `ps` and shell history would show them.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mailcore::admin::{Actor, Catchall, QueueOp};
use mailcore::queue::{Lane, LogQuery, QueueFilter, Target};
use mailcore::{Core, CoreOptions, QueueId, Role};

use crate::config::Config;

/// `println!` that ends the program quietly when the reader has gone away
/// (`tern queue list | head`), as Unix tools do, instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, $($t)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    about = "Tern: webmail and mail server in one binary"
)]
pub struct Cli {
    /// Config file (default: ./tern.toml if it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Set Tern up for a real domain: write the config (`--config`, or
    /// ./tern.toml) with the standard ports, create the domain and its
    /// admin (password from a prompt or stdin), print the DNS records to
    /// publish and write a systemd unit. Every answer is a flag, so it can
    /// be scripted.
    Setup(SetupArgs),
    /// Manage mail domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Inspect and steer the outbound queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// The node's inbound spool: mail accepted and not yet in the store.
    #[command(subcommand)]
    Spool(SpoolCmd),
    /// The nodes of this cluster (one row per `tern serve`).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Write an account's mail as mbox files (mboxrd): one folder to FILE,
    /// or every folder into DIR as `<folder>.mbox`.
    Export {
        account: String,
        /// The file (with --folder or --maildir) or directory to write.
        out: std::path::PathBuf,
        #[arg(long)]
        folder: Option<String>,
        /// Write one zip of maildirs (Maildir++ for the whole account)
        /// instead of mbox files.
        #[arg(long)]
        maildir: bool,
    },
    /// Add the messages of an mbox file to an account's folder (INBOX
    /// unless --folder, made if missing); ones already there, by
    /// Message-ID, are skipped, so it can be run again.
    Import {
        account: String,
        file: std::path::PathBuf,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
    /// A consistent copy of the store and its keys, taken while Tern runs,
    /// into DIR (new or empty): the SQLite database (or, on PostgreSQL,
    /// the pg_dump command to run), the secrets key, the TLS files.
    Backup { dir: std::path::PathBuf },
    /// Puts a backup made by `tern backup` into this (fresh) data dir;
    /// refuses a data dir that already has a store.
    Restore { dir: std::path::PathBuf },
    /// Follow one outbound message through the queue, by its queue id or
    /// Message-ID: each recipient's attempts in order (host, TLS, reply,
    /// outcome) and what still waits, from the delivery log.
    Trace { id: String },
    /// The status page's incidents of the last 7 days and their notes
    /// (what `/status` shows); `tern status note TEXT` adds a note.
    Status {
        #[command(subcommand)]
        cmd: Option<StatusCmd>,
    },
    /// Show the audit log: who did what, when, from where.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

/// One queue entry by id, or every entry for a destination domain.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Queue entry id (from `tern queue list`).
    id: Option<i32>,
    /// Every entry for this destination domain.
    #[arg(long)]
    domain: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> Target {
        match (&self.id, &self.domain) {
            (Some(id), _) => Target::Entry(QueueId(*id)),
            (None, Some(d)) => Target::Domain(d.clone()),
            // clap's group makes exactly one of them present.
            (None, None) => Target::Entry(QueueId(0)),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Entries, oldest first: id, lane, status, attempts, age, next attempt,
    /// sender, recipient, last error.
    List {
        #[arg(long)]
        domain: Option<String>,
        /// fresh, retry or bounce
        #[arg(long)]
        lane: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// One entry in full, with every attempt from the delivery log.
    Show {
        id: i32,
    },
    /// Make entries due now (for a domain, also forget it was unreachable).
    Retry(TargetArgs),
    /// Stop delivering entries until released.
    Hold(TargetArgs),
    Release(TargetArgs),
    /// Remove entries without telling the sender.
    Delete(TargetArgs),
    /// Counts by lane and destination, the oldest entry's age, and each
    /// destination's concurrency, last reply and next attempt.
    Stats,
    /// Search the delivery log by message-id, sender or recipient.
    Log {
        query: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    domain: String,
    /// This host's name, the domain's MX: mail.DOMAIN unless given.
    #[arg(long)]
    hostname: Option<String>,
    /// The admin account: postmaster@DOMAIN unless given.
    #[arg(long)]
    admin: Option<String>,
    #[arg(long, default_value = "/var/lib/tern")]
    data_dir: PathBuf,
    /// Where to write the systemd unit.
    #[arg(long, default_value = "tern.service")]
    unit: PathBuf,
    /// The system user the service runs as.
    #[arg(long, default_value = "tern")]
    service_user: String,
    /// Replace an existing config file.
    #[arg(long)]
    force: bool,
    /// Get the certificate from Let's Encrypt (ACME, HTTP-01 on port
    /// 80) and renew it, with the admin address as the contact.
    #[arg(long)]
    acme: bool,
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    Add {
        domain: String,
    },
    List,
    /// Remove a domain with its accounts, their mail and its aliases. A
    /// domain that still holds mail needs --yes.
    Remove {
        domain: String,
        #[arg(long)]
        yes: bool,
    },
    /// Send mail for unknown addresses to an account, or `none` to refuse it
    /// (`550 5.1.1 No such user here`), or --reject TEXT to refuse it with
    /// your own reply text.
    SetCatchall {
        domain: String,
        #[arg(required_unless_present = "reject")]
        local_part: Option<String>,
        #[arg(long, conflicts_with = "local_part")]
        reject: Option<String>,
    },
    /// Let a domain admin manage this domain too.
    Grant {
        domain: String,
        address: String,
    },
    /// The domain's DKIM keys, or `rotate` to make new ones (the old ones
    /// stop signing and stay published for 7 days).
    Dkim {
        domain: String,
        #[arg(value_parser = ["show", "rotate"], default_value = "show")]
        action: String,
    },
    /// Every DNS record the domain needs: MX, SPF, DKIM, DMARC, client SRV.
    /// With --check, each is looked up (`smtp.nameserver`, or the system's
    /// resolver) and marked ok, missing or differs.
    Dns {
        domain: String,
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add an account; the password is read from a prompt or stdin.
    Add {
        address: String,
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Change a password, read from a prompt or stdin.
    Passwd {
        address: String,
    },
    List {
        domain: Option<String>,
    },
    Remove {
        address: String,
    },
    SetRole {
        address: String,
        role: String,
    },
    /// Refuse logins and mail for the account (mail is kept).
    Disable {
        address: String,
    },
    Enable {
        address: String,
    },
    /// Set the quota in MB (0 for none).
    Quota {
        address: String,
        mb: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Every node seen in the last day: name, state, version, uptime,
    /// spool depth and queue work in flight, from its heartbeat.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum StatusCmd {
    /// Add a note to the status page: to the incident open now, if any,
    /// otherwise on its own (planned work). Signed "operator" unless --by.
    Note {
        text: String,
        #[arg(long, default_value = "operator")]
        by: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SpoolCmd {
    /// Records, bytes, oldest age and the ingest rate of this node's spool.
    Stats,
}

#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add an alias: mail to ADDRESS goes to every TARGET.
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    List {
        domain: Option<String>,
    },
    /// Remove an alias, or only one of its targets.
    Remove {
        address: String,
        target: Option<String>,
    },
}

pub async fn run(cli: Cli) -> Result<(), String> {
    // Setup writes the config the other commands read.
    if let Some(Command::Setup(args)) = cli.command {
        return setup(cli.config, args).await;
    }
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::serve::serve(cfg).await,
        Command::Setup(_) => Err("setup runs on its own".into()),
        Command::Domain(c) => domain(&open(&cfg).await?, &cfg, c).await,
        Command::User(c) => user(&open(&cfg).await?, c).await,
        Command::Alias(c) => alias(&open(&cfg).await?, c).await,
        Command::Queue(c) => queue(&open(&cfg).await?, c).await,
        Command::Audit { limit } => audit(&open(&cfg).await?, limit).await,
        Command::Trace { id } => trace(&open(&cfg).await?, &id).await,
        Command::Backup { dir } => backup(&cfg, &dir).await,
        Command::Restore { dir } => restore(&cfg, &dir),
        Command::Export {
            account,
            out,
            folder,
            maildir,
        } => {
            let core = open(&cfg).await?;
            if maildir {
                export_maildir(&core, &account, &out, folder.as_deref()).await
            } else {
                export(&core, &account, &out, folder.as_deref()).await
            }
        }
        Command::Import {
            account,
            file,
            folder,
        } => import(&open(&cfg).await?, &account, &file, &folder).await,
        Command::Spool(SpoolCmd::Stats) => spool_stats(&cfg).await,
        Command::Status { cmd: None } => status_list(&open(&cfg).await?).await,
        Command::Status {
            cmd: Some(StatusCmd::Note { text, by }),
        } => {
            let n = open(&cfg)
                .await?
                .status_add_note(&mailcore::admin::Actor::operator(&by), &text)
                .await
                .map_err(e)?;
            match n.incident_id {
                Some(i) => out!("note {} added to incident {i}", n.id),
                None => out!("note {} added", n.id),
            }
            Ok(())
        }
        Command::Cluster(ClusterCmd::Status) => cluster_status(&cfg).await,
    }
}

pub async fn open(cfg: &Config) -> Result<Core, String> {
    open_with(cfg, false).await
}

/// `start_without_store`: for `tern serve`, which starts during a
/// database outage (mail goes to the spool); CLI commands fail at once.
pub async fn open_with(cfg: &Config, start_without_store: bool) -> Result<Core, String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    let mut opts = CoreOptions::new(cfg.database_url());
    let secrets = cfg.data_dir.join("outside.key");
    opts.start_without_store = start_without_store;
    opts.auth.verified_cache_secs = cfg.auth.verified_cache_secs;
    opts.throttle = mailcore::ThrottleConfig {
        per_account_ip: cfg.auth.max_failures_per_account_ip.max(1),
        per_ip: cfg.auth.max_failures_per_ip.max(1),
        window_secs: cfg.auth.failure_window_secs.max(1),
        base_lockout_secs: cfg.auth.lockout_secs.max(1),
    };
    opts.node_name = cfg.cluster.node_name.clone();
    let core = Core::open(opts).await.map_err(|e| e.to_string())?;
    // What IMAP FETCH keeps of each new message (ENVELOPE, BODYSTRUCTURE).
    core.set_fetch_digest(crate::imap::fetch::digest);
    // The secrets key (outside passwords, DKIM private keys), made on
    // first use; every node of a cluster needs the same file.
    core.set_outside_key_file(secrets);
    Ok(core)
}

fn e(err: mailcore::CoreError) -> String {
    err.to_string()
}

/// The CLI acts as the operator (full rights), named after the Unix user,
/// and is audited like the web admin.
fn operator() -> Actor {
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Actor::operator(&who)
}

async fn domain(core: &Core, cfg: &Config, cmd: DomainCmd) -> Result<(), String> {
    let op = operator();
    match cmd {
        DomainCmd::Add { domain } => {
            let d = core.admin(&op).add_domain(&domain).await.map_err(e)?;
            out!("added domain {}", d.name);
        }
        DomainCmd::Dkim { domain, action } => {
            let keys = if action == "rotate" {
                core.admin(&op).dkim_rotate(&domain).await.map_err(e)?
            } else {
                core.admin(&op).dkim_keys(&domain).await.map_err(e)?
            };
            let now = core.clock().now();
            for k in keys {
                let state = match k.publish_until() {
                    None => "signing".to_owned(),
                    Some(t) => format!("retired, keep published {}", when(now, t)),
                };
                out!("{}\t{}\t{state}", k.selector, k.algorithm.as_str());
                out!("  {} TXT \"{}\"", k.record_name(), k.record_value());
            }
        }
        DomainCmd::Dns { domain, check } => {
            let keys = core.admin(&op).dkim_keys(&domain).await.map_err(e)?;
            let resolver = if check {
                let ns = match cfg.smtp.nameserver.trim() {
                    "" => None,
                    n => Some(
                        n.parse()
                            .map_err(|_| format!("smtp.nameserver {n:?} is not ip:port"))?,
                    ),
                };
                Some(crate::resolver::resolver(ns)?)
            } else {
                None
            };
            let publish = crate::tls::publish(cfg);
            for r in mailcore::dns_records::records(&cfg.hostname, &domain, &keys, &publish) {
                out!("{}", r.zone_line());
                match &resolver {
                    Some(res) => {
                        let state = crate::dns_check::check(res, &r).await;
                        out!("  ; {}: {state}", r.why);
                    }
                    None => out!("  ; {}", r.why),
                }
            }
        }
        DomainCmd::List => {
            for d in core.list_domains().await.map_err(e)? {
                match Catchall::of(&d) {
                    Catchall::Account(c) => out!("{}\tcatchall={c}@{}", d.name, d.name),
                    Catchall::Reject(t) => out!("{}\tcatchall=reject: {t}", d.name),
                    Catchall::None => out!("{}", d.name),
                }
            }
        }
        DomainCmd::Remove { domain, yes } => {
            core.admin(&op)
                .remove_domain(&domain, yes)
                .await
                .map_err(|err| match err {
                    mailcore::CoreError::Invalid(m) => {
                        m.replace("Confirm to go ahead.", "Add --yes to go ahead.")
                    }
                    other => e(other),
                })?;
            out!("removed domain {domain}");
        }
        DomainCmd::SetCatchall {
            domain,
            local_part,
            reject,
        } => {
            let mode = match (local_part, reject) {
                (_, Some(text)) => Catchall::Reject(text),
                (Some(lp), None) if lp.eq_ignore_ascii_case("none") => Catchall::None,
                (Some(lp), None) => Catchall::Account(lp),
                (None, None) => Catchall::None,
            };
            core.admin(&op)
                .set_catchall(&domain, mode.clone())
                .await
                .map_err(e)?;
            match mode {
                Catchall::Account(lp) => out!("catchall for {domain} is now {lp}@{domain}"),
                Catchall::None => out!("catchall for {domain} removed"),
                Catchall::Reject(_) => {
                    out!("unknown addresses of {domain} are now refused with your text")
                }
            }
        }
        DomainCmd::Grant { domain, address } => {
            core.admin(&op)
                .grant_domain(&domain, &address)
                .await
                .map_err(e)?;
            out!("{address} now manages {domain}");
        }
    }
    Ok(())
}

/// Works with the store down too: then every record on disk is counted
/// as waiting, and the output says so.
async fn cluster_status(cfg: &Config) -> Result<(), String> {
    let core = open(cfg).await?;
    let now = core.clock().now();
    let nodes = core.cluster_nodes().await.map_err(e)?;
    let up = nodes.iter().filter(|n| n.is_up(now)).count();
    out!("backend: {}", core.backend().name());
    out!("nodes up: {up} of {} seen in the last day", nodes.len());
    out!("name\tstate\tversion\tuptime\tlast seen\tspool\tqueue in flight\tid");
    for n in nodes {
        let state = if n.is_up(now) { "up" } else { "gone" };
        out!(
            "{}\t{state}\t{}\t{}\t{} ago\t{}\t{}\t{}",
            n.name,
            n.version,
            age(n.last_seen - n.started_at),
            age(now - n.last_seen),
            n.spool_depth,
            n.queue_in_flight,
            n.id
        );
    }
    Ok(())
}

async fn spool_stats(cfg: &Config) -> Result<(), String> {
    let dir = cfg.spool_dir();
    let report = match open(cfg).await {
        Ok(core) => core.spool_report(&dir).await,
        Err(why) => {
            out!("store: unreachable ({why}); counting every record on disk");
            mailcore::spool::ingest::SpoolReport::from_disk(&dir)
        }
    }
    .map_err(|e| format!("spool {}: {e}", dir.display()))?;
    let now = mailcore::Clock::now(&mailcore::SystemClock);
    out!("dir: {}", dir.display());
    out!("node: {}", report.node.as_deref().unwrap_or("-"));
    out!("records: {}", report.records);
    out!("bytes: {}", report.bytes);
    out!("segments: {}", report.segments);
    match report.oldest {
        Some(t) => out!("oldest: {} s", now.saturating_sub(t).max(0)),
        None => out!("oldest: -"),
    }
    match report.ingested_last_window {
        Some(n) => out!(
            "ingest rate: {:.1}/s over the last {} s",
            n as f64 / mailcore::spool::ingest::RATE_WINDOW_SECS as f64,
            mailcore::spool::ingest::RATE_WINDOW_SECS
        ),
        None => out!("ingest rate: -"),
    }
    for t in &report.torn {
        out!("torn: {t}");
    }
    Ok(())
}

/// The files a backup carries beside the store: the secrets key (sealed
/// DKIM keys and outside passwords are useless without it) and the TLS
/// certificate Tern made, if it made one.
const BESIDE_THE_STORE: [&str; 3] = ["outside.key", "tls/cert.pem", "tls/key.pem"];

fn copy_private(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    }
    std::fs::copy(from, to).map_err(|x| format!("{} -> {}: {x}", from.display(), to.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

async fn backup(cfg: &Config, dir: &std::path::Path) -> Result<(), String> {
    let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    if !empty {
        return Err(format!(
            "{} is not empty: a backup goes into a new directory",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    let core = open(cfg).await?;
    let db = dir.join("tern.db");
    match core.backup_sqlite(&db).await {
        Ok(()) => out!("store\t{}", db.display()),
        Err(mailcore::CoreError::Invalid(_)) => {
            out!(
                "store\tPostgreSQL: run  pg_dump --format=custom --file {}  \"$DATABASE_URL\"",
                dir.join("tern.pgdump").display()
            );
        }
        Err(x) => return Err(e(x)),
    }
    for f in BESIDE_THE_STORE {
        let from = cfg.data_dir.join(f);
        if from.is_file() {
            copy_private(&from, &dir.join(f))?;
            out!("copied\t{f}");
        }
    }
    out!(
        "note\tmail accepted in the last moments may still be in the spool ({}); it is stored within seconds, so a backup a minute later has it",
        cfg.spool_dir().display()
    );
    Ok(())
}

fn restore(cfg: &Config, dir: &std::path::Path) -> Result<(), String> {
    if cfg.database.url.is_some() {
        return Err(format!(
            "the store is PostgreSQL: restore it with  pg_restore --dbname \"$DATABASE_URL\" {}  and copy outside.key into the data dir",
            dir.join("tern.pgdump").display()
        ));
    }
    let db = dir.join("tern.db");
    if !db.is_file() {
        return Err(format!(
            "{}: no tern.db: not a backup made by tern backup",
            dir.display()
        ));
    }
    let target = cfg.data_dir.join("tern.db");
    if target.exists() {
        return Err(format!(
            "{} already has a store: restore into a fresh data dir (or move it away first)",
            cfg.data_dir.display()
        ));
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|x| format!("{}: {x}", cfg.data_dir.display()))?;
    copy_private(&db, &target)?;
    out!("restored\ttern.db");
    for f in BESIDE_THE_STORE {
        let from = dir.join(f);
        if from.is_file() {
            copy_private(&from, &cfg.data_dir.join(f))?;
            out!("restored\t{f}");
        }
    }
    Ok(())
}

async fn mail_of(core: &Core, address: &str) -> Result<mailcore::Mail, String> {
    let a = core
        .account(address)
        .await
        .map_err(e)?
        .ok_or_else(|| format!("no account {address}"))?;
    Ok(core.mail(a.id))
}

async fn export(
    core: &Core,
    account: &str,
    out: &std::path::Path,
    folder: Option<&str>,
) -> Result<(), String> {
    let mail = mail_of(core, account).await?;
    let folders: Vec<(String, std::path::PathBuf)> = match folder {
        Some(f) => vec![(f.to_owned(), out.to_path_buf())],
        None => {
            std::fs::create_dir_all(out).map_err(|x| format!("{}: {x}", out.display()))?;
            mail.mailboxes()
                .await
                .map_err(e)?
                .into_iter()
                .map(|m| {
                    // A folder name is not a path: `/` and friends become `_`.
                    let file: String = m
                        .name
                        .chars()
                        .map(|c| {
                            if c.is_alphanumeric() || "-_. ".contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    (m.name, out.join(format!("{file}.mbox")))
                })
                .collect()
        }
    };
    for (name, path) in folders {
        let mbox = mail.open(&name).await.map_err(e)?;
        let mut sink = FileSink::create(&path)?;
        let n = mbox
            .export_mbox(|chunk| sink.write(&chunk))
            .await
            .map_err(e)?;
        sink.finish()?;
        out!("{name}\t{n} messages\t{}", path.display());
    }
    Ok(())
}

/// A file an export streams into: the first write error stops the export
/// (the sink answers false) and is what `finish` reports.
struct FileSink {
    w: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    failed: Option<String>,
}

impl FileSink {
    fn create(path: &std::path::Path) -> Result<FileSink, String> {
        let f = std::fs::File::create(path).map_err(|x| format!("{}: {x}", path.display()))?;
        Ok(FileSink {
            w: std::io::BufWriter::new(f),
            path: path.to_path_buf(),
            failed: None,
        })
    }

    fn write(&mut self, chunk: &[u8]) -> std::future::Ready<bool> {
        use std::io::Write as _;
        let r = self.w.write_all(chunk);
        if let Err(x) = &r {
            self.failed = Some(x.to_string());
        }
        std::future::ready(r.is_ok())
    }

    fn finish(mut self) -> Result<(), String> {
        use std::io::Write as _;
        if let Some(x) = self.failed.take() {
            return Err(format!("{}: {x}", self.path.display()));
        }
        self.w
            .flush()
            .map_err(|x| format!("{}: {x}", self.path.display()))
    }
}

async fn export_maildir(
    core: &Core,
    account: &str,
    out: &std::path::Path,
    folder: Option<&str>,
) -> Result<(), String> {
    let mail = mail_of(core, account).await?;
    let mut sink = FileSink::create(out)?;
    let n = mail
        .export_maildir_zip(folder, |chunk| sink.write(&chunk))
        .await
        .map_err(e)?;
    sink.finish()?;
    out!("{}\t{} messages", out.display(), n.unwrap_or(0));
    Ok(())
}

async fn import(
    core: &Core,
    account: &str,
    file: &std::path::Path,
    folder: &str,
) -> Result<(), String> {
    let mail = mail_of(core, account).await?;
    let data = std::fs::read(file).map_err(|x| format!("{}: {x}", file.display()))?;
    let mbox = match mail.mailbox(folder).await.map_err(e)? {
        Some(m) => m,
        None => {
            mail.create_mailbox(folder, mailcore::mailboxes::NewMailbox::Subscribed)
                .await
                .map_err(e)?;
            mail.open(folder).await.map_err(e)?
        }
    };
    let r = mbox
        .import_mbox(&data, |n, total| {
            if n > 0 && n % 500 == 0 {
                eprintln!("{n} of {total} messages read");
            }
        })
        .await
        .map_err(e)?;
    out!("{folder}\t{} added\t{} already there", r.added, r.skipped);
    Ok(())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// What `tern setup` writes as `tern.toml`: the production ports, outbound
/// delivery on, the data directory, and the TLS settings to fill in.
fn setup_config(
    hostname: &str,
    data_dir: &std::path::Path,
    site_root: Option<&std::path::Path>,
    acme_email: Option<&str>,
) -> String {
    let site = match site_root {
        Some(p) => format!("site_root = {}", toml_str(&p.display().to_string())),
        None => "# The web files are compiled into this binary: no site_root.".to_owned(),
    };
    let tls = match acme_email {
        Some(mail) => format!(
            "# The certificate for {hostname} (and mta-sts./autoconfig. of each\n\
             # domain) comes from Let's Encrypt and is renewed by Tern itself;\n\
             # its HTTP-01 challenge is answered on [web] listen (port 80).\n\
             acme = true\nacme_email = {}\n",
            toml_str(mail)
        ),
        None => format!(
            "# Without cert and key a self-signed certificate is made in\n\
             # data_dir/tls: mail clients and other servers will not trust it.\n\
             # Set acme = true for one from Let's Encrypt, or point these at a\n\
             # CA-issued certificate for {hostname} (renewals are picked up):\n\
             # cert = \"/etc/letsencrypt/live/{hostname}/fullchain.pem\"\n\
             # key = \"/etc/letsencrypt/live/{hostname}/privkey.pem\"\n"
        ),
    };
    format!(
        r#"# Written by `tern setup`. Environment variables (TERN_SECTION__KEY)
# override anything here; the README lists every setting.
hostname = {host}
data_dir = {data}

[listeners]
smtp = "0.0.0.0:25"
submission = "0.0.0.0:587"
smtps = "0.0.0.0:465"
imap = "0.0.0.0:143"
imaps = "0.0.0.0:993"
pop3 = "0.0.0.0:110"
pop3s = "0.0.0.0:995"
managesieve = "0.0.0.0:4190"

[web]
# Plain HTTP (redirect it, or keep it for ACME's HTTP-01 challenge) and
# HTTPS with the [tls] certificate, which also serves MTA-STS policies.
listen = "0.0.0.0:80"
listen_tls = "0.0.0.0:443"
{site}

[relay]
# Deliver outbound mail to other domains' MX hosts.
enabled = true

[tls]
{tls}mta_sts_mode = "testing"
"#,
        host = toml_str(hostname),
        data = toml_str(&data_dir.display().to_string()),
    )
}

/// The systemd unit: Tern as its own user, allowed the low ports and
/// nothing else, the file system read-only but for the data directory.
fn setup_unit(
    exe: &std::path::Path,
    config: &std::path::Path,
    data_dir: &std::path::Path,
    user: &str,
) -> String {
    format!(
        "[Unit]
Description=Tern mail server and webmail
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={exe} --config {config} serve
WorkingDirectory={data}
Restart=on-failure
RestartSec=2
# Ports below 1024 without root, and no other privilege.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
# Everything read-only but the data directory.
ProtectSystem=strict
ReadWritePaths={data}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictNamespaces=yes
LockPersonality=yes
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
",
        exe = exe.display(),
        config = config.display(),
        data = data_dir.display(),
    )
}

fn absolute(p: &std::path::Path) -> Result<PathBuf, String> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(|x| format!("the current directory: {x}"))
    }
}

async fn setup(config: Option<PathBuf>, s: SetupArgs) -> Result<(), String> {
    let domain = mailcore::address::parse_domain(&s.domain)
        .map_err(|x| format!("{}: {x}", s.domain))?
        .to_lowercase();
    let hostname = s.hostname.unwrap_or_else(|| format!("mail.{domain}"));
    mailcore::address::parse_domain(&hostname)
        .map_err(|x| format!("--hostname {hostname}: {x}"))?;
    let admin = s.admin.unwrap_or_else(|| format!("postmaster@{domain}"));
    let a = mailcore::Address::parse(&admin).map_err(|x| format!("--admin {admin}: {x}"))?;
    if !a.domain().eq_ignore_ascii_case(&domain) {
        return Err(format!("--admin {admin} is not an address at {domain}"));
    }
    if s.service_user.is_empty()
        || !s
            .service_user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "--service-user {:?} is not a user name",
            s.service_user
        ));
    }
    let config_path = absolute(
        config
            .as_deref()
            .unwrap_or(std::path::Path::new("tern.toml")),
    )?;
    let data_dir = absolute(&s.data_dir)?;
    let unit = absolute(&s.unit)?;
    if config_path.exists() && !s.force {
        return Err(format!(
            "{} exists; add --force to replace it",
            config_path.display()
        ));
    }
    // A release binary carries its web files; a dev build reads them from
    // target/site, wherever `tern serve` is started from.
    let site_root = if crate::web::assets::EMBEDDED {
        None
    } else {
        Some(absolute(&Config::default().web.site_root)?)
    };
    if let Some(dir) = config_path.parent() {
        std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    }
    std::fs::write(
        &config_path,
        setup_config(
            &hostname,
            &data_dir,
            site_root.as_deref(),
            s.acme.then_some(admin.as_str()),
        ),
    )
    .map_err(|x| format!("{}: {x}", config_path.display()))?;
    // Read back through the same loader `tern serve` uses: what was
    // written is what will run.
    let cfg = Config::load(Some(&config_path))?;
    let pw = read_password(&admin)?;
    let core = open(&cfg).await?;
    let op = operator();
    match core.admin(&op).add_domain(&domain).await {
        Ok(d) => out!("added domain {}", d.name),
        Err(mailcore::CoreError::Conflict(_)) => out!("domain {domain} is already set up"),
        Err(x) => return Err(e(x)),
    }
    match core.admin(&op).add_account(&admin, &pw, Role::Admin).await {
        Ok(a) => out!("added {} (admin)", a.address),
        // Setup run again (--force, to rewrite the config): the account
        // stays as it is.
        Err(mailcore::CoreError::Conflict(_)) => out!(
            "{admin} exists: its password and role are left as they were (`tern user passwd {admin}` sets the password)"
        ),
        Err(x) => return Err(e(x)),
    }
    out!("");
    out!("Publish these DNS records (`tern domain dns {domain} --check` checks them):");
    let keys = core.admin(&op).dkim_keys(&domain).await.map_err(e)?;
    for r in
        mailcore::dns_records::records(&cfg.hostname, &domain, &keys, &crate::tls::publish(&cfg))
    {
        out!("{}", r.zone_line());
        out!("  ; {}", r.why);
    }
    core.close().await;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|x| format!("this program's path: {x}"))?;
    if let Some(dir) = unit.parent() {
        std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    }
    std::fs::write(
        &unit,
        setup_unit(&exe, &config_path, &data_dir, &s.service_user),
    )
    .map_err(|x| format!("{}: {x}", unit.display()))?;
    let (d, u) = (data_dir.display(), &s.service_user);
    out!("");
    out!("Wrote {} and {}.", config_path.display(), unit.display());
    out!("Next, as root:");
    out!("  useradd --system --home-dir {d} --shell /usr/sbin/nologin {u}");
    out!("  chown -R {u}: {d}");
    out!(
        "  cp {} /etc/systemd/system/tern.service && systemctl daemon-reload && systemctl enable --now tern",
        unit.display()
    );
    out!("Then sign in at https://{hostname}/login as {admin}.");
    Ok(())
}

/// `tern trace`: one line per attempt, grouped by recipient, oldest
/// first, then what is still queued. Times are UTC.
async fn status_list(core: &Core) -> Result<(), String> {
    let d = mailcore::view::short_date;
    let (incidents, notes) = core.status_timeline(core.clock().now()).await.map_err(e)?;
    if incidents.is_empty() {
        out!("no incidents in the last 7 days");
    }
    for i in &incidents {
        let until = i.closed_at.map_or("ongoing".to_owned(), d);
        out!(
            "incident {}\t{}\t{}\t{} .. {}\t{}",
            i.id.unwrap_or(0),
            i.service.as_str(),
            i.state.as_str(),
            d(i.opened_at),
            until,
            i.summary
        );
        for n in &i.notes {
            out!(
                "  note {}\t{}\t{}\t{}",
                n.id,
                d(n.created_at),
                n.author,
                n.body
            );
        }
    }
    for n in &notes {
        out!(
            "note {}\t{}\t{}\t{}",
            n.id,
            d(n.created_at),
            n.author,
            n.body
        );
    }
    Ok(())
}

async fn trace(core: &Core, id: &str) -> Result<(), String> {
    let t = core.queue().trace(id).await.map_err(e)?;
    if t.attempts.is_empty() && t.waiting.is_empty() {
        return Err(format!("nothing in the queue or the delivery log for {id}"));
    }
    let d = mailcore::view::short_date;
    out!("message <{}>", t.message_id);
    if let Some(first) = t.attempts.first() {
        out!("  from <{}>", first.mail_from);
    } else if let Some(w) = t.waiting.first() {
        out!("  from <{}>", w.mail_from);
    }
    let mut rcpts: Vec<&str> = Vec::new();
    for r in t
        .attempts
        .iter()
        .map(|a| a.rcpt_to.as_str())
        .chain(t.waiting.iter().map(|w| w.rcpt_to.as_str()))
    {
        if !rcpts.contains(&r) {
            rcpts.push(r);
        }
    }
    for rcpt in rcpts {
        out!("  to <{rcpt}>");
        if let Some(w) = t.waiting.iter().find(|w| w.rcpt_to == rcpt) {
            out!("    {}\tqueued\tqueue={}", d(w.created_at), w.id);
        }
        for (n, a) in t.attempts.iter().filter(|a| a.rcpt_to == rcpt).enumerate() {
            out!(
                "    {}\tattempt {}\t{}\tqueue={}\thost={}\ttls={}\t{}ms\t{}",
                d(a.created_at),
                n + 1,
                a.outcome.as_str(),
                a.queue_id,
                a.remote_host.as_deref().unwrap_or("-"),
                if a.tls { "yes" } else { "no" },
                a.duration_ms,
                a.reply
            );
        }
        if let Some(w) = t.waiting.iter().find(|w| w.rcpt_to == rcpt) {
            out!(
                "    {}\tnext attempt\t{}\tattempts={}",
                d(w.next_attempt_at),
                w.status.as_str(),
                w.attempts
            );
        }
    }
    Ok(())
}

async fn audit(core: &Core, limit: u64) -> Result<(), String> {
    for a in core.admin(&operator()).audit_log(limit).await.map_err(e)? {
        out!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            mailcore::view::short_date(a.at),
            a.actor,
            a.ip,
            a.action,
            a.domain,
            a.target,
            a.detail
        );
    }
    Ok(())
}

async fn user(core: &Core, cmd: UserCmd) -> Result<(), String> {
    match cmd {
        UserCmd::Add { address, role } => {
            let role = Role::parse(&role).map_err(e)?;
            let pw = read_password(&address)?;
            let a = core
                .admin(&operator())
                .add_account(&address, &pw, role)
                .await
                .map_err(e)?;
            out!("added {} ({})", a.address, a.role.as_str());
        }
        UserCmd::Passwd { address } => {
            if core.account(&address).await.map_err(e)?.is_none() {
                return Err(format!("account {address} not found"));
            }
            let pw = read_password(&address)?;
            core.admin(&operator())
                .set_password(&address, &pw)
                .await
                .map_err(e)?;
            out!("password changed for {address}");
        }
        UserCmd::List { domain } => {
            for a in core.list_accounts(domain.as_deref()).await.map_err(e)? {
                let quota = if a.quota_bytes > 0 {
                    format!("{}/{}", a.used_bytes, a.quota_bytes)
                } else {
                    format!("{}/unlimited", a.used_bytes)
                };
                let state = if a.disabled { "\tdisabled" } else { "" };
                out!("{}\t{}\t{quota}{state}", a.address, a.role.as_str());
            }
        }
        UserCmd::Remove { address } => {
            core.admin(&operator())
                .remove_account(&address)
                .await
                .map_err(e)?;
            out!("removed {address}");
        }
        UserCmd::SetRole { address, role } => {
            let role = Role::parse(&role).map_err(e)?;
            core.admin(&operator())
                .set_role(&address, role)
                .await
                .map_err(e)?;
            out!("{address} is now {}", role.as_str());
        }
        UserCmd::Disable { address } => {
            core.admin(&operator())
                .set_disabled(&address, true)
                .await
                .map_err(e)?;
            out!("{address} disabled");
        }
        UserCmd::Enable { address } => {
            core.admin(&operator())
                .set_disabled(&address, false)
                .await
                .map_err(e)?;
            out!("{address} enabled");
        }
        UserCmd::Quota { address, mb } => {
            core.admin(&operator())
                .set_quota(&address, mb.saturating_mul(1024 * 1024))
                .await
                .map_err(e)?;
            out!("quota of {address} is now {mb} MB");
        }
    }
    Ok(())
}

async fn alias(core: &Core, cmd: AliasCmd) -> Result<(), String> {
    match cmd {
        AliasCmd::Add { address, targets } => {
            let a = core
                .admin(&operator())
                .add_alias(&address, &targets)
                .await
                .map_err(e)?;
            out!("{} -> {}", a.address, a.targets.join(", "));
        }
        AliasCmd::List { domain } => {
            for a in core.list_aliases(domain.as_deref()).await.map_err(e)? {
                out!("{}\t{}", a.address, a.targets.join(", "));
            }
        }
        AliasCmd::Remove { address, target } => {
            core.admin(&operator())
                .remove_alias(&address, target.as_deref())
                .await
                .map_err(e)?;
            out!("removed alias {address}");
        }
    }
    Ok(())
}

/// Reads a password: twice at a terminal prompt, or the first line of stdin
/// when piped (`printf '%s\n' "$pw" | tern user add ...`).
fn read_password(address: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("Password for {address}: "))
            .map_err(|e| e.to_string())?;
        let b = rpassword::prompt_password("Repeat it: ").map_err(|e| e.to_string())?;
        if a != b {
            return Err("the passwords differ".into());
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading password from stdin: {e}"))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        if pw.is_empty() {
            return Err("no password on stdin".into());
        }
        Ok(pw)
    }
}

/// "3d 4h", "2h 5m", "40s": ages an operator reads at a glance.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn when(now: i64, t: i64) -> String {
    if t <= now {
        "now".into()
    } else {
        format!("in {}", age(t - now))
    }
}

async fn queue(core: &Core, cmd: QueueCmd) -> Result<(), String> {
    let now = core.clock().now();
    match cmd {
        QueueCmd::List {
            domain,
            lane,
            limit,
        } => {
            let lane = match lane.as_deref() {
                None => None,
                Some(l) => Some(
                    Lane::parse(l)
                        .ok_or_else(|| format!("unknown lane {l}: use fresh, retry or bounce"))?,
                ),
            };
            let rows = core
                .queue()
                .list(&QueueFilter {
                    domain,
                    lane,
                    limit,
                    offset: 0,
                })
                .await
                .map_err(e)?;
            for r in rows {
                out!(
                    "{}\t{}\t{}\tattempts={}\tage={}\tnext={}\t<{}>\t<{}>\t{}",
                    r.id,
                    r.lane,
                    r.status,
                    r.attempts,
                    age(now - r.created_at),
                    when(now, r.next_attempt_at),
                    r.mail_from,
                    r.rcpt_to,
                    r.last_error.unwrap_or_default()
                );
            }
        }
        QueueCmd::Show { id } => {
            let r = core
                .queue()
                .entry(QueueId(id))
                .await
                .map_err(e)?
                .ok_or_else(|| format!("queue entry {id} not found"))?;
            out!("id: {}", r.id);
            out!("message-id: <{}>", r.message_id);
            out!("from: <{}>", r.mail_from);
            out!("to: <{}>", r.rcpt_to);
            out!("destination: {}", r.domain);
            out!("lane: {}", r.lane);
            out!("status: {}", r.status);
            out!("attempts: {}", r.attempts);
            out!("queued: {} ago", age(now - r.created_at));
            out!("next attempt: {}", when(now, r.next_attempt_at));
            if let Some(err) = &r.last_error {
                out!("last error: {err}");
            }
            if let (Some(o), Some(l)) = (&r.lock_owner, r.lease_until)
                && l > now
            {
                out!("being delivered by: {o} (lease {})", when(now, l));
            }
            let log = core
                .queue()
                .log(&LogQuery {
                    queue_id: Some(QueueId(id)),
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .map_err(e)?;
            for l in log.iter().rev() {
                out!(
                    "attempt: {} ago\t{}\thost={}\tip={}\ttls={}\t{}ms\t{}",
                    age(now - l.created_at),
                    l.outcome,
                    l.remote_host.as_deref().unwrap_or("-"),
                    l.remote_ip.as_deref().unwrap_or("-"),
                    if l.tls { "yes" } else { "no" },
                    l.duration_ms,
                    l.reply
                );
            }
        }
        QueueCmd::Retry(t) => {
            let n = core
                .admin(&operator())
                .queue_op(QueueOp::Retry, &t.target())
                .await
                .map_err(e)?;
            out!("{n} entries due now");
        }
        QueueCmd::Hold(t) => {
            let n = core
                .admin(&operator())
                .queue_op(QueueOp::Hold, &t.target())
                .await
                .map_err(e)?;
            out!("{n} entries held");
        }
        QueueCmd::Release(t) => {
            let n = core
                .admin(&operator())
                .queue_op(QueueOp::Release, &t.target())
                .await
                .map_err(e)?;
            out!("{n} entries released");
        }
        QueueCmd::Delete(t) => {
            let n = core
                .admin(&operator())
                .queue_op(QueueOp::Delete, &t.target())
                .await
                .map_err(e)?;
            out!("{n} entries deleted");
        }
        QueueCmd::Stats => {
            let st = core.queue().stats().await.map_err(e)?;
            out!("total\t{}", st.total);
            out!("held\t{}", st.held);
            for (lane, n) in &st.by_lane {
                out!("lane {lane}\t{n}");
            }
            match st.oldest_created_at {
                Some(t) => out!("oldest\t{}", age(now - t)),
                None => out!("oldest\t-"),
            }
            let dests = core.queue().destinations().await.map_err(e)?;
            for (domain, n) in &st.by_domain {
                let d = dests.iter().find(|d| &d.domain == domain);
                out!(
                    "destination {domain}\t{n}\tconcurrency={}\theld={}\tnext={}\tlast={}",
                    d.map(|d| d.concurrency.to_string())
                        .unwrap_or_else(|| "-".into()),
                    d.map(|d| d.held).unwrap_or(false),
                    d.map(|d| when(now, d.next_attempt_at))
                        .unwrap_or_else(|| "now".into()),
                    d.and_then(|d| d.last_reply.clone())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        QueueCmd::Log { query, limit } => {
            let rows = core
                .queue()
                .log(&LogQuery {
                    text: query,
                    limit,
                    ..Default::default()
                })
                .await
                .map_err(e)?;
            for l in rows {
                out!(
                    "{} ago\tqueue={}\t<{}>\t<{}>\t<{}>\t{}\thost={}\ttls={}\t{}",
                    age(now - l.created_at),
                    l.queue_id,
                    l.message_id,
                    l.mail_from,
                    l.rcpt_to,
                    l.outcome,
                    l.remote_host.as_deref().unwrap_or("-"),
                    if l.tls { "yes" } else { "no" },
                    l.reply
                );
            }
        }
    }
    Ok(())
}
