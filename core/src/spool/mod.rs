//! The node's inbound spool: an append-only journal on the node's own disk,
//! where an accepted message is made durable before its `250` (DESIGN.md
//! rule 1), whatever state the mail store is in (rule 2).
//!
//! - Segment files `<number>.seg` in `spool.dir`, numbered upwards; a
//!   segment is written by one writer task and never reopened for writing
//!   after a restart (a scan may have cut its tail).
//! - **Group commit**: sessions hand their records to the writer task
//!   through a channel. The writer takes everything waiting (one record when
//!   the node is quiet, up to [`MAX_BATCH`] under load), writes it with one
//!   `write`, calls one `fdatasync`, and only then tells each session its
//!   record is on disk. There is no deliberate delay: the batch grows only
//!   because records arrive while the previous fsync runs.
//! - The [ingest worker](crate::spool::ingest) moves records into the mail
//!   store; a segment whose records are all stored is deleted.
//! - A record is named by (node, segment, offset). The node id is made once
//!   per spool directory and kept in it, so two nodes on one PostgreSQL
//!   never confuse their records.

pub mod ingest;
pub(crate) mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::delivery::Envelope;
use crate::ids::AccountId;
pub use record::SpoolRecord;

/// The most records one fsync covers; a bound on the latency one batch adds.
pub const MAX_BATCH: usize = 256;
/// ... and the most bytes.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Pending bytes at which new mail is refused (`452 4.3.1`).
    pub max_bytes: u64,
    /// A segment is closed and a new one begun past this size.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
        }
    }
}

/// Where a record lives: its name in the idempotence table and in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolId {
    pub segment: u64,
    pub offset: u64,
}

impl std::fmt::Display for SpoolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{:x}", self.segment, self.offset)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// `452 4.3.1`: the spool holds `max_bytes` already.
    #[error("spool full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    /// The journal could not be written or synced: nothing was accepted.
    #[error("spool write failed: {0}")]
    Io(String),
}

/// A snapshot for `/metrics`, `/admin` and `tern spool stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpoolStats {
    /// Records on disk not yet in the mail store.
    pub records: u64,
    pub bytes: u64,
    /// `received_at` of the oldest pending record.
    pub oldest: Option<i64>,
    pub segments: u64,
    pub ingested_total: u64,
    pub appended_total: u64,
    /// fsyncs of the journal, and the largest batch one covered.
    pub syncs_total: u64,
    pub largest_batch: u64,
    /// Records stored in the last minute (the ingest rate).
    pub ingested_last_minute: u64,
}

/// One pending record as the ingest worker needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub id: SpoolId,
    pub len: u64,
    pub received_at: i64,
}

#[derive(Default)]
struct SegInfo {
    /// Records written (or being written) and not yet ingested.
    live: u64,
}

#[derive(Default)]
struct State {
    /// Synced records waiting for ingest, oldest first.
    pending: BTreeMap<SpoolId, Pending>,
    /// Taken by the ingest worker, not yet stored.
    in_flight: BTreeMap<SpoolId, Pending>,
    segs: BTreeMap<u64, SegInfo>,
    /// The segment the writer appends to; `None`: open a new one.
    current: Option<u64>,
    /// Bytes of records not yet ingested (pending, in flight, being written).
    bytes: u64,
    /// The highest segment number this process has seen or made.
    max_seg: u64,
    /// Whose mail each record not yet stored holds, and per account its
    /// records by arrival: what the webmail's "mail held for you" reads.
    held_by: std::collections::HashMap<SpoolId, Vec<AccountId>>,
    held: std::collections::HashMap<AccountId, std::collections::BTreeSet<(i64, SpoolId)>>,
}

impl State {
    fn hold(&mut self, id: SpoolId, received_at: i64, accounts: Vec<AccountId>) {
        for a in &accounts {
            self.held.entry(*a).or_default().insert((received_at, id));
        }
        if !accounts.is_empty() {
            self.held_by.insert(id, accounts);
        }
    }

    fn release(&mut self, p: &Pending) {
        if let Some(accounts) = self.held_by.remove(&p.id) {
            for a in accounts {
                if let Some(set) = self.held.get_mut(&a) {
                    set.remove(&(p.received_at, p.id));
                    if set.is_empty() {
                        self.held.remove(&a);
                    }
                }
            }
        }
    }
}

pub(crate) struct Shared {
    dir: PathBuf,
    node: String,
    max_bytes: u64,
    state: Mutex<State>,
    /// Woken when records become pending.
    pub(crate) ingest_wake: Notify,
    appended: AtomicU64,
    ingested: AtomicU64,
    syncs: AtomicU64,
    largest_batch: AtomicU64,
    /// (when, how many) per stored batch of the last minute.
    recent: Mutex<std::collections::VecDeque<(std::time::Instant, u64)>>,
}

const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Shared {
    fn note_ingested(&self, n: u64) {
        let now = std::time::Instant::now();
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.push_back((now, n));
        while r
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            r.pop_front();
        }
    }

    fn ingested_last_minute(&self) -> u64 {
        let now = std::time::Instant::now();
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter()
            .filter(|(t, _)| now.duration_since(*t) <= RATE_WINDOW)
            .map(|(_, n)| n)
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct WriteReq {
    bytes: Vec<u8>,
    received_at: i64,
    /// The accounts it has local copies for.
    accounts: Vec<AccountId>,
    done: oneshot::Sender<Result<SpoolId, SpoolError>>,
}

/// The handle sessions use. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: mpsc::Sender<WriteReq>,
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.seg"))
}

/// Segment numbers in `dir`, ascending.
fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name.strip_suffix(".seg")
            && let Ok(n) = u64::from_str_radix(hex, 16)
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The node id kept in the spool directory, made on first use.
fn node_id(dir: &Path) -> std::io::Result<String> {
    let p = dir.join("node-id");
    match std::fs::read_to_string(&p) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    use rand::Rng;
    let id = hex::encode(rand::thread_rng().r#gen::<[u8; 12]>());
    let tmp = dir.join("node-id.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p)?;
    sync_dir(dir)?;
    Ok(id)
}

/// What a scan of one segment found.
pub(crate) struct Scanned {
    pub records: Vec<Pending>,
    /// Per record, the accounts it holds mail for.
    pub held: Vec<Vec<AccountId>>,
    /// Bytes cut from a torn tail.
    pub cut: Option<(u64, &'static str)>,
}

/// Reads a segment's records and cuts a torn tail off the file (logged),
/// so the damage is seen once and the records before it are kept.
fn scan_segment(dir: &Path, n: u64, repair: bool) -> std::io::Result<Scanned> {
    let p = seg_path(dir, n);
    let mut f = OpenOptions::new().read(true).write(repair).open(&p)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let mut off = 0usize;
    let mut records = Vec::new();
    let mut held = Vec::new();
    let mut cut = None;
    loop {
        match record::frame(&buf[off..]) {
            record::Frame::End => break,
            record::Frame::Whole { len } => {
                let whole = &buf[off..off + len];
                let received_at = record::received_at(whole).unwrap_or(0);
                held.push(record::accounts(whole));
                records.push(Pending {
                    id: SpoolId {
                        segment: n,
                        offset: off as u64,
                    },
                    len: len as u64,
                    received_at,
                });
                off += len;
            }
            record::Frame::Torn(why) => {
                cut = Some(((buf.len() - off) as u64, why));
                if repair {
                    tracing::warn!(
                        segment = %p.display(),
                        offset = off,
                        bytes = buf.len() - off,
                        why,
                        "spool: torn record at the end of a segment, cut off"
                    );
                    metrics::counter!("tern_spool_torn_total").increment(1);
                    f.set_len(off as u64)?;
                    f.sync_all()?;
                }
                break;
            }
        }
    }
    Ok(Scanned { records, held, cut })
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, cuts torn tails, and
    /// starts the writer task. Every record found is pending until the
    /// ingest worker has checked it against the store (records stored just
    /// before a crash are recognised there and not delivered twice).
    pub fn open(cfg: &SpoolConfig) -> std::io::Result<Spool> {
        std::fs::create_dir_all(&cfg.dir)?;
        let node = node_id(&cfg.dir)?;
        let mut st = State::default();
        for n in list_segments(&cfg.dir)? {
            let s = scan_segment(&cfg.dir, n, true)?;
            if s.records.is_empty() {
                std::fs::remove_file(seg_path(&cfg.dir, n))?;
                continue;
            }
            st.max_seg = st.max_seg.max(n);
            let held = s.held;
            for (r, accounts) in s.records.into_iter().zip(held) {
                st.segs.entry(n).or_default().live += 1;
                st.bytes += r.len;
                st.pending.insert(r.id, r);
                st.hold(r.id, r.received_at, accounts);
            }
        }
        sync_dir(&cfg.dir)?;
        let shared = Arc::new(Shared {
            dir: cfg.dir.clone(),
            node,
            max_bytes: cfg.max_bytes,
            state: Mutex::new(st),
            ingest_wake: Notify::new(),
            appended: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            recent: Default::default(),
        });
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(shared.clone(), rx, cfg.segment_bytes));
        Ok(Spool { shared, tx })
    }

    pub fn node(&self) -> &str {
        &self.shared.node
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Appends one message and returns once it is on disk (fdatasync'd with
    /// whatever other records were waiting). Refuses with `Full` past
    /// `max_bytes`, before anything is written.
    pub async fn append(
        &self,
        env: &Envelope,
        raw: &[u8],
        received_at: i64,
    ) -> Result<SpoolId, SpoolError> {
        let bytes = record::encode(env, raw, received_at);
        if bytes.len() - record::HEADER_LEN > record::MAX_PAYLOAD {
            return Err(SpoolError::Io("record too large for the spool".into()));
        }
        {
            let mut st = self.shared.lock();
            let used = st.bytes;
            if used.saturating_add(bytes.len() as u64) > self.shared.max_bytes {
                return Err(SpoolError::Full {
                    used,
                    max: self.shared.max_bytes,
                });
            }
            // Counted from now, so concurrent sessions cannot overshoot.
            st.bytes += bytes.len() as u64;
        }
        let len = bytes.len() as u64;
        let (done, wait) = oneshot::channel();
        let sent = self
            .tx
            .send(WriteReq {
                bytes,
                received_at,
                accounts: env.local_copies().iter().map(|c| c.account_id).collect(),
                done,
            })
            .await;
        let res = match sent {
            Ok(()) => wait
                .await
                .unwrap_or_else(|_| Err(SpoolError::Io("the spool writer stopped".into()))),
            Err(_) => Err(SpoolError::Io("the spool writer stopped".into())),
        };
        if res.is_err() {
            let mut st = self.shared.lock();
            st.bytes = st.bytes.saturating_sub(len);
        }
        res
    }

    /// How many records not yet stored hold mail for `account`, and the
    /// arrival of the oldest.
    pub fn held_for(&self, account: AccountId) -> Option<(u64, i64)> {
        let st = self.shared.lock();
        let set = st.held.get(&account)?;
        Some((set.len() as u64, set.first()?.0))
    }

    pub fn stats(&self) -> SpoolStats {
        let st = self.shared.lock();
        // Ids grow with time, so the oldest record is first in either map
        // (no walk over a backlog of 100,000s on every scrape).
        let oldest = st
            .pending
            .values()
            .next()
            .into_iter()
            .chain(st.in_flight.values().next())
            .map(|p| p.received_at)
            .min();
        SpoolStats {
            records: (st.pending.len() + st.in_flight.len()) as u64,
            bytes: st.bytes,
            oldest,
            segments: st.segs.len() as u64,
            ingested_total: self.shared.ingested.load(Ordering::Relaxed),
            appended_total: self.shared.appended.load(Ordering::Relaxed),
            syncs_total: self.shared.syncs.load(Ordering::Relaxed),
            largest_batch: self.shared.largest_batch.load(Ordering::Relaxed),
            ingested_last_minute: self.shared.ingested_last_minute(),
        }
    }
}

impl Shared {
    /// Takes up to `max` records for ingest, picked alternately from the
    /// newest and the oldest, so fresh mail never waits behind a backlog
    /// (DESIGN.md rule 3) and the backlog still drains.
    pub(crate) fn take_batch(&self, max: usize, max_bytes: u64) -> Vec<Pending> {
        let mut st = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut newest = true;
        while out.len() < max && bytes < max_bytes {
            let next = if newest {
                st.pending.pop_last()
            } else {
                st.pending.pop_first()
            };
            let Some((id, p)) = next else { break };
            newest = !newest;
            bytes += p.len;
            st.in_flight.insert(id, p);
            out.push(p);
        }
        // Stored in the order they arrived, so UIDs follow arrival.
        out.sort_by_key(|p| p.id);
        out
    }

    /// Gives records back after a failed ingest attempt.
    pub(crate) fn untake(&self, batch: &[Pending]) {
        let mut st = self.lock();
        for p in batch {
            st.in_flight.remove(&p.id);
            st.pending.insert(p.id, *p);
        }
    }

    /// Records stored in the mail store: forget them, and delete the
    /// segments left with none.
    pub(crate) fn done(&self, batch: &[Pending]) {
        {
            let mut st = self.lock();
            for p in batch {
                st.in_flight.remove(&p.id);
                st.release(p);
                st.bytes = st.bytes.saturating_sub(p.len);
                if let Some(info) = st.segs.get_mut(&p.id.segment) {
                    info.live = info.live.saturating_sub(1);
                }
            }
        }
        self.ingested
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.note_ingested(batch.len() as u64);
        self.sweep();
    }

    /// Deletes every segment with no record left to store, except the
    /// writer's current one and the highest-numbered one: the highest
    /// stays so that after a restart new segment numbers continue above
    /// it (a reused number would collide with its idempotence rows).
    pub(crate) fn sweep(&self) {
        let dead: Vec<u64> = {
            let mut st = self.lock();
            let keep = (st.current, st.max_seg);
            let dead: Vec<u64> = st
                .segs
                .iter()
                .filter(|(n, i)| i.live == 0 && Some(**n) != keep.0 && **n != keep.1)
                .map(|(n, _)| *n)
                .collect();
            for n in &dead {
                st.segs.remove(n);
            }
            dead
        };
        if dead.is_empty() {
            return;
        }
        for n in &dead {
            // If deleting fails, the records are found again at the next
            // start and recognised there as stored.
            if let Err(e) = std::fs::remove_file(seg_path(&self.dir, *n)) {
                tracing::warn!(segment = n, error = %e, "spool: could not delete a stored segment");
            }
        }
        // The idempotence rows of a deleted segment are pruned later; the
        // deletion must be durable first, or a crash could bring the
        // segment back without its rows.
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(error = %e, "spool: could not sync the spool directory");
        }
    }

    /// Every segment below this number is deleted (none of its records
    /// can come back): the lowest one still on disk, or past all.
    pub(crate) fn oldest_live_segment(&self) -> u64 {
        let st = self.lock();
        st.segs
            .keys()
            .next()
            .copied()
            .unwrap_or(st.max_seg.saturating_add(1))
    }

    /// Copies a damaged record's bytes to `damaged/` for an operator.
    pub(crate) fn quarantine(&self, p: &Pending) {
        let save = || -> std::io::Result<()> {
            let f = File::open(seg_path(&self.dir, p.id.segment))?;
            let mut buf = vec![0u8; p.len as usize];
            f.read_exact_at(&mut buf, p.id.offset)?;
            let d = self.dir.join("damaged");
            std::fs::create_dir_all(&d)?;
            let mut out = File::create(d.join(format!("{}.rec", p.id)))?;
            out.write_all(&buf)?;
            out.sync_all()
        };
        if let Err(e) = save() {
            tracing::error!(record = %p.id, error = %e, "spool: could not copy a damaged record aside");
        }
        metrics::counter!("tern_spool_damaged_total").increment(1);
    }

    /// Reads one record back from its segment.
    pub(crate) fn read(&self, p: &Pending) -> std::io::Result<SpoolRecord> {
        let f = File::open(seg_path(&self.dir, p.id.segment))?;
        let mut buf = vec![0u8; p.len as usize];
        f.read_exact_at(&mut buf, p.id.offset)?;
        match record::frame(&buf) {
            record::Frame::Whole { .. } => {}
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("spool record {} is damaged", p.id),
                ));
            }
        }
        record::decode(&buf).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("spool record {} does not parse", p.id),
            )
        })
    }
}

/// The open segment the writer appends to.
struct Segment {
    n: u64,
    file: File,
    len: u64,
}

fn open_segment(shared: &Shared, after: u64) -> std::io::Result<Segment> {
    // Numbers only grow: past every segment on disk and past the last one
    // this process used, so a record id is never reused by this node.
    // The clock is a floor too (microseconds), for a spool directory
    // emptied by hand.
    let on_disk = list_segments(&shared.dir)?.last().copied().unwrap_or(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let n = (on_disk.max(after) + 1).max(micros);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(seg_path(&shared.dir, n))?;
    sync_dir(&shared.dir)?;
    Ok(Segment { n, file, len: 0 })
}

async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<WriteReq>, segment_bytes: u64) {
    let mut seg: Option<Segment> = None;
    let mut last_n = shared.lock().segs.keys().last().copied().unwrap_or(0);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].bytes.len();
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.bytes.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let n_batch = batch.len();
        // Register the batch with its segment before writing, so the
        // ingest worker never deletes a segment with records on the way.
        let reuse = {
            let mut st = shared.lock();
            let ok = matches!((&seg, st.current), (Some(s), Some(c)) if s.n == c && s.len < segment_bytes);
            if ok && let Some(s) = &seg {
                st.segs.entry(s.n).or_default().live += n_batch as u64;
            }
            ok
        };
        if !reuse {
            let opened = {
                let shared = shared.clone();
                tokio::task::spawn_blocking(move || open_segment(&shared, last_n)).await
            };
            match opened {
                Ok(Ok(s)) => {
                    last_n = s.n;
                    let mut st = shared.lock();
                    st.current = Some(s.n);
                    st.max_seg = st.max_seg.max(s.n);
                    st.segs.entry(s.n).or_default().live += n_batch as u64;
                    drop(st);
                    seg = Some(s);
                    shared.sweep();
                }
                Ok(Err(e)) => {
                    fail(&shared, batch, None, &e.to_string());
                    continue;
                }
                Err(join) => {
                    fail(&shared, batch, None, &join.to_string());
                    continue;
                }
            }
        }
        let Some(mut s) = seg.take() else { continue };
        let mut buf = Vec::with_capacity(bytes);
        let mut offsets = Vec::with_capacity(n_batch);
        for r in &batch {
            offsets.push(s.len + buf.len() as u64);
            buf.extend_from_slice(&r.bytes);
        }
        let start = s.len;
        let res = tokio::task::spawn_blocking(move || {
            let r = s.file.write_all(&buf).and_then(|()| s.file.sync_data());
            (s, r)
        })
        .await;
        match res {
            Ok((mut s, Ok(()))) => {
                s.len = start + bytes as u64;
                shared.syncs.fetch_add(1, Ordering::Relaxed);
                shared
                    .largest_batch
                    .fetch_max(n_batch as u64, Ordering::Relaxed);
                shared.appended.fetch_add(n_batch as u64, Ordering::Relaxed);
                metrics::histogram!("tern_spool_batch_records").record(n_batch as f64);
                {
                    let mut st = shared.lock();
                    for (r, off) in batch.iter().zip(&offsets) {
                        let id = SpoolId {
                            segment: s.n,
                            offset: *off,
                        };
                        st.pending.insert(
                            id,
                            Pending {
                                id,
                                len: r.bytes.len() as u64,
                                received_at: r.received_at,
                            },
                        );
                        st.hold(id, r.received_at, r.accounts.clone());
                    }
                }
                shared.ingest_wake.notify_one();
                for (r, off) in batch.into_iter().zip(offsets) {
                    let _ = r.done.send(Ok(SpoolId {
                        segment: s.n,
                        offset: off,
                    }));
                }
                seg = Some(s);
            }
            Ok((s, Err(e))) => {
                // Nothing of this batch is answered as accepted. Cut what
                // may have been written and leave the segment: the next
                // batch starts a new one, so a half-written record can only
                // ever be a segment's tail.
                let _ = s.file.set_len(start);
                let _ = s.file.sync_all();
                fail(&shared, batch, Some(s.n), &e.to_string());
            }
            Err(e) => fail(&shared, batch, None, &e.to_string()),
        }
    }
}

fn fail(shared: &Shared, batch: Vec<WriteReq>, seg: Option<u64>, why: &str) {
    tracing::error!(error = why, records = batch.len(), "spool write failed");
    metrics::counter!("tern_spool_write_errors_total").increment(1);
    {
        let mut st = shared.lock();
        if let Some(n) = seg {
            if let Some(info) = st.segs.get_mut(&n) {
                info.live = info.live.saturating_sub(batch.len() as u64);
            }
            // The next batch starts a new segment.
            if st.current == Some(n) {
                st.current = None;
            }
        }
    }
    for r in batch {
        let _ = r.done.send(Err(SpoolError::Io(why.to_owned())));
    }
}

/// One whole record found on disk: (id, received_at, length).
pub type DiskRecord = (SpoolId, i64, u64);

/// What `tern spool stats` reads with no server running: the records on
/// disk, and the torn tails (reported, not cut).
pub fn scan_dir(dir: &Path) -> std::io::Result<(Vec<DiskRecord>, Vec<String>)> {
    let mut out = Vec::new();
    let mut torn = Vec::new();
    if !dir.exists() {
        return Ok((out, torn));
    }
    scan_listed(dir, &list_segments(dir)?, &mut out, &mut torn)?;
    Ok((out, torn))
}

/// Reads the segments `listed` (a listing of `dir` taken a moment ago).
fn scan_listed(
    dir: &Path,
    listed: &[u64],
    out: &mut Vec<DiskRecord>,
    torn: &mut Vec<String>,
) -> std::io::Result<()> {
    for &n in listed {
        // Ingest removes a segment once every record in it is stored; one
        // listed a moment ago may be gone now, and then it holds nothing.
        let s = match scan_segment(dir, n, false) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for r in s.records {
            out.push((r.id, r.received_at, r.len));
        }
        if let Some((bytes, why)) = s.cut {
            torn.push(format!("segment {n:016x}: {bytes} bytes torn ({why})"));
        }
    }
    Ok(())
}

/// The node id of a spool directory, if it has one.
pub fn read_node_id(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("node-id"))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests;
