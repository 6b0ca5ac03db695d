//! Signed anchors of the audit chain, kept outside the database, and audit retention.
//!
//! Someone with write access to the database can rewrite the chain consistently (recompute
//! every hash, rewrite `audit_head`), or simply cut its newest records. An anchor makes that
//! detectable: the chain head (sequence number and hash) is signed (ECDSA P-256, RFC 6979) with
//! a key kept outside the data directory and appended to a log outside the database (a file,
//! possibly on another volume, and optionally syslog). The server anchors at start, every
//! interval (a minute by default), at shutdown and on demand (`musubi audit anchor`).
//!
//! The log is itself a chain: every line carries its number and the hash of the line before,
//! so a removed, reordered or inserted line shows. The database keeps a copy of every line it
//! was told about, so lines cut from the end of the log show too. [`verify`] (what `musubi audit
//! verify` runs) holds only the public key and fails when the log is missing or empty, broken,
//! stale against the database (records newer than the newest anchor by more than the interval
//! and a margin), when an anchored record is missing or changed, or when the database says
//! records were pruned and the log records no such prune.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use musubi_domain::audit::GENESIS_HASH;
use musubi_store::{AnchorLogRow, Store};
use p256::ecdsa::signature::{Signer, Verifier};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The anchor log's default file name, beside the key.
pub const LOG_FILE: &str = "audit-anchors.log";
/// The setting that records where pruning stopped (`seq:hash` of the last pruned record).
pub const PRUNED_SETTING: &str = "audit.pruned_through";
/// How often the server anchors by default.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// What every signed message starts with (a signature of this key over anything else is
/// never mistaken for an anchor).
const DOMAIN: &str = "musubi-audit-anchor-v2";

/// Why anchoring or verification could not be done, or what verification found.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store.
    #[error("store: {0}")]
    Store(#[from] musubi_store::StoreError),
    /// The key or log is unusable or badly placed.
    #[error("{path}: {reason}")]
    Config {
        /// Which file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The audit trail was tampered with (or its witness lost).
    #[error("{0}")]
    Tampered(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io { path: path.to_owned(), source }
}

fn config(path: &Path, reason: impl Into<String>) -> AnchorError {
    AnchorError::Config { path: path.to_owned(), reason: reason.into() }
}

/// The private key that signs anchors.
pub struct SigningKey(p256::ecdsa::SigningKey);

/// The public key that checks them (all a verifier needs).
#[derive(Clone)]
pub struct PublicKey(p256::ecdsa::VerifyingKey);

impl SigningKey {
    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }
}

impl PublicKey {
    /// The compressed SEC1 encoding, in hex (what the `.pub` file holds).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_sec1_bytes())
    }
}

/// `path` made absolute, `.` and `..` folded, and the symbolic links of its longest existing
/// prefix resolved (the file itself may not exist yet).
fn resolve(path: &Path) -> Option<PathBuf> {
    let mut norm = PathBuf::new();
    for c in std::path::absolute(path).ok()?.components() {
        match c {
            std::path::Component::ParentDir => {
                norm.pop();
            }
            std::path::Component::CurDir => {}
            other => norm.push(other),
        }
    }
    let mut rest = Vec::new();
    while !norm.exists() {
        rest.push(norm.file_name()?.to_owned());
        if !norm.pop() {
            return None;
        }
    }
    let mut out = norm.canonicalize().ok()?;
    out.extend(rest.iter().rev());
    Some(out)
}

/// Whether `path` lies inside `dir`.
fn is_inside(path: &Path, dir: &Path) -> bool {
    match (resolve(path), resolve(dir)) {
        (Some(p), Some(d)) => p.starts_with(d),
        _ => false,
    }
}

/// Refuses a key or anchor log inside the data directory: whoever can change the database
/// there could then also re-sign or replace its witness.
pub fn refuse_inside_data(path: &Path, data_dir: &Path, what: &str) -> Result<(), AnchorError> {
    if is_inside(path, data_dir) {
        return Err(config(
            path,
            format!(
                "the {what} must not be inside the data directory {}: keep it on another volume or at least outside it",
                data_dir.display()
            ),
        ));
    }
    Ok(())
}

fn open_new_private(path: &Path) -> Result<std::fs::File, AnchorError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io(path))
}

/// Creates a new key at `path` (mode 0600; an existing file is never overwritten) and its
/// public key at `path.pub`. Returns the public key.
pub fn keygen(path: &Path) -> Result<PublicKey, AnchorError> {
    let key = loop {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| config(path, format!("no randomness: {e}")))?;
        // A value outside the curve's order is astronomically rare; draw again.
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&k) {
            break SigningKey(key);
        }
    };
    let mut f = open_new_private(path)?;
    writeln!(f, "{}", hex::encode(key.0.to_bytes())).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    let public = key.public();
    let pub_path = public_key_path(path);
    std::fs::write(&pub_path, format!("{}\n", public.to_hex())).map_err(io(&pub_path))?;
    Ok(public)
}

/// Where `keygen` puts the public key of the key at `path`.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn read_hex(path: &Path) -> Result<Vec<u8>, AnchorError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    hex::decode(text.trim()).map_err(|e| config(path, format!("not a hex key: {e}")))
}

/// Loads the signing key, refusing one inside the data directory or readable by others.
pub fn load_key(path: &Path, data_dir: &Path) -> Result<SigningKey, AnchorError> {
    refuse_inside_data(path, data_dir, "audit key")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(config(
                path,
                format!("the audit key is readable by others (mode {:o}); chmod 600 it", mode & 0o777),
            ));
        }
    }
    let bytes = read_hex(path)?;
    p256::ecdsa::SigningKey::from_slice(&bytes)
        .map(SigningKey)
        .map_err(|_| config(path, "not an audit signing key (32 bytes, hex)"))
}

/// Loads the key at `path`, creating it first if it does not exist (the demo's first start).
pub fn load_or_create_key(path: &Path, data_dir: &Path) -> Result<(SigningKey, bool), AnchorError> {
    refuse_inside_data(path, data_dir, "audit key")?;
    let created = !path.exists();
    if created {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        keygen(path)?;
    }
    Ok((load_key(path, data_dir)?, created))
}

/// Loads a public key: a `.pub` file, or the private key file itself (its public half).
pub fn load_public_key(path: &Path) -> Result<PublicKey, AnchorError> {
    let bytes = read_hex(path)?;
    if bytes.len() == 32 {
        return p256::ecdsa::SigningKey::from_slice(&bytes)
            .map(|k| PublicKey(*k.verifying_key()))
            .map_err(|_| config(path, "not an audit key"));
    }
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
        .map(PublicKey)
        .map_err(|_| config(path, "not an audit public key (SEC1, hex)"))
}

/// Why an anchor was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorKind {
    /// The server started.
    Start,
    /// The periodic anchor.
    Periodic,
    /// The server stopped.
    Shutdown,
    /// Asked for (`musubi audit anchor`).
    Demand,
    /// The boundary of a prune: records up to `seq` were deleted.
    Prune,
}

impl AnchorKind {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorKind::Start => "start",
            AnchorKind::Periodic => "periodic",
            AnchorKind::Shutdown => "shutdown",
            AnchorKind::Demand => "demand",
            AnchorKind::Prune => "prune",
        }
    }

    fn parse(s: &str) -> Option<AnchorKind> {
        Some(match s {
            "start" => AnchorKind::Start,
            "periodic" => AnchorKind::Periodic,
            "shutdown" => AnchorKind::Shutdown,
            "demand" => AnchorKind::Demand,
            "prune" => AnchorKind::Prune,
            _ => return None,
        })
    }
}

/// One line of the anchor log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The line number (1, 2, 3, …).
    pub n: i64,
    /// Why it was written.
    pub kind: AnchorKind,
    /// The audit sequence number anchored (the head, or a prune's boundary).
    pub seq: i64,
    /// Its chain hash.
    pub hash: String,
    /// When (epoch ms).
    pub created: i64,
    /// The hash of the previous line ([`GENESIS_HASH`] for the first).
    pub prev: String,
    /// The signature (hex, r‖s).
    pub sig: String,
}

impl Anchor {
    fn message(n: i64, kind: AnchorKind, seq: i64, hash: &str, created: i64, prev: &str) -> String {
        format!("{DOMAIN}\n{n}\n{}\n{seq}\n{hash}\n{created}\n{prev}", kind.as_str())
    }

    fn signed_message(&self) -> String {
        Anchor::message(self.n, self.kind, self.seq, &self.hash, self.created, &self.prev)
    }

    /// The hash of this line, which the next line carries as `prev`.
    pub fn line_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.signed_message().as_bytes());
        h.update(b"\n");
        h.update(self.sig.as_bytes());
        hex::encode(h.finalize())
    }

    fn to_line(&self) -> String {
        json!({
            "n": self.n,
            "kind": self.kind.as_str(),
            "seq": self.seq,
            "hash": self.hash,
            "created": self.created,
            "prev": self.prev,
            "sig": self.sig,
        })
        .to_string()
    }

    fn parse(line: &str) -> Option<Anchor> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Anchor {
            n: v["n"].as_i64()?,
            kind: AnchorKind::parse(v["kind"].as_str()?)?,
            seq: v["seq"].as_i64()?,
            hash: v["hash"].as_str()?.to_owned(),
            created: v["created"].as_i64()?,
            prev: v["prev"].as_str()?.to_owned(),
            sig: v["sig"].as_str()?.to_owned(),
        })
    }

    fn signature_holds(&self, key: &PublicKey) -> bool {
        let Ok(bytes) = hex::decode(&self.sig) else { return false };
        let Ok(sig) = p256::ecdsa::Signature::from_slice(&bytes) else { return false };
        key.0.verify(self.signed_message().as_bytes(), &sig).is_ok()
    }
}

/// Where anchors go besides the database's copy.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The anchor log file (append-only; ideally on another volume).
    pub log: PathBuf,
    /// Also send every anchor line to this syslog socket ([`SYSLOG_SOCKET`] for the local
    /// daemon, which may forward it to another machine).
    pub syslog: Option<PathBuf>,
}

/// Writes anchors: the server holds one, `musubi audit anchor` and `prune` make one.
pub struct Anchorer {
    store: Store,
    key: SigningKey,
    sink: Sink,
    /// The head this process anchored last (a periodic anchor of an unchanged head is skipped).
    last: Mutex<Option<(i64, String)>>,
}

impl Anchorer {
    /// An anchorer writing to `sink`; the log must not be inside the data directory.
    pub fn new(store: Store, key: SigningKey, sink: Sink, data_dir: &Path) -> Result<Anchorer, AnchorError> {
        refuse_inside_data(&sink.log, data_dir, "audit anchor log")?;
        Ok(Anchorer { store, key, sink, last: Mutex::new(None) })
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.sink.log
    }

    /// Anchors the current chain head now.
    pub fn anchor(&self, kind: AnchorKind, now: i64) -> Result<Anchor, AnchorError> {
        let a = self.append(kind, None, now)?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((a.seq, a.hash.clone()));
        }
        Ok(a)
    }

    /// The periodic anchor: anchors the head unless this process already anchored it.
    pub fn anchor_if_moved(&self, now: i64) -> Result<Option<Anchor>, AnchorError> {
        let head = self.store.audit_head()?;
        if self.last.lock().ok().and_then(|l| l.clone()).as_ref() == Some(&head) {
            return Ok(None);
        }
        self.anchor(AnchorKind::Periodic, now).map(Some)
    }

    /// Deletes audit records recorded before `before` (epoch ms), after recording the boundary
    /// in the anchor log, so verification accepts the pruned chain. Returns how many were
    /// deleted.
    pub fn prune(&self, before: i64, now: i64) -> Result<u64, AnchorError> {
        let Some((seq, hash)) = self.store.read(|r| r.last_audit_before(before))? else { return Ok(0) };
        self.append(AnchorKind::Prune, Some((seq, hash.clone())), now)?;
        Ok(self.store.prune_audit(seq, hash)?)
    }

    /// The head to anchor: the database's, unless this process committed a later one (or the
    /// same sequence number with another hash): then the database lost records this process
    /// wrote, and anchoring what was written makes `verify` report them missing.
    fn head(&self) -> Result<(i64, String), AnchorError> {
        let db = self.store.audit_head()?;
        match self.store.committed_audit_head() {
            Some(mine) if mine.0 >= db.0 && mine != db => {
                tracing::error!(
                    committed = mine.0,
                    database = db.0,
                    "the audit chain in the database is behind what this server committed: records were cut"
                );
                Ok(mine)
            }
            _ => Ok(db),
        }
    }

    /// Appends an anchor of `target` (a prune's boundary), or of the chain head when None.
    fn append(&self, kind: AnchorKind, target: Option<(i64, String)>, now: i64) -> Result<Anchor, AnchorError> {
        let path = &self.sink.log;
        let mut f = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io(path))?;
        // The server and `musubi audit anchor` may append at once; the line numbers and
        // previous-line hashes need one writer at a time, and the head is read under the lock
        // so that the anchored heads never go backwards in the log.
        f.lock().map_err(io(path))?;
        let (seq, hash) = match target {
            Some(t) => t,
            None => self.head()?,
        };
        let hash = hash.as_str();
        let last = last_line(&mut f, path)?;
        let (n, prev) = match last {
            None => (1, GENESIS_HASH.to_owned()),
            Some(line) => {
                let a = Anchor::parse(&line)
                    .ok_or_else(|| config(path, "the anchor log's last line is damaged; refusing to extend it"))?;
                (a.n + 1, a.line_hash())
            }
        };
        let msg = Anchor::message(n, kind, seq, hash, now, &prev);
        let sig: p256::ecdsa::Signature = self.key.0.sign(msg.as_bytes());
        let a = Anchor { n, kind, seq, hash: hash.to_owned(), created: now, prev, sig: hex::encode(sig.to_bytes()) };
        let line = a.to_line();
        writeln!(f, "{line}").map_err(io(path))?;
        f.sync_data().map_err(io(path))?;
        drop(f);
        if let Some(socket) = &self.sink.syslog
            && let Err(e) = to_syslog(socket, &line)
        {
            tracing::error!(error = %e, "cannot send the audit anchor to syslog");
        }
        self.store.record_anchor_line(AnchorLogRow {
            n,
            kind: kind.as_str().into(),
            seq,
            hash: hash.to_owned(),
            created: now,
            line_hash: a.line_hash(),
        })?;
        Ok(a)
    }
}

/// The last non-empty line of the log (lines are a few hundred bytes).
fn last_line(f: &mut std::fs::File, path: &Path) -> Result<Option<String>, AnchorError> {
    let len = f.metadata().map_err(io(path))?.len();
    let from = len.saturating_sub(16 * 1024);
    f.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).map_err(io(path))?;
    Ok(tail.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned))
}

/// The local syslog daemon's socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Sends one line to a syslog socket (facility authpriv, severity notice).
fn to_syslog(socket: &Path, line: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let msg = format!("<85>musubi-audit[{}]: {line}", std::process::id());
        sock.send_to(msg.as_bytes(), socket).map(|_| ())
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, line);
        Err(std::io::Error::other("syslog needs a unix system"))
    }
}

/// How fresh the newest anchor must be against the newest record.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The anchor interval (ms).
    pub interval_ms: i64,
    /// Slack on top of it (ms): a slow anchor write, clocks a little apart.
    pub margin_ms: i64,
}

impl Policy {
    /// The policy for anchors written every `interval`: the margin is half the interval, at
    /// least 30 seconds.
    pub fn every(interval: std::time::Duration) -> Policy {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX / 4);
        Policy { interval_ms, margin_ms: (interval_ms / 2).max(30_000) }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::every(DEFAULT_INTERVAL)
    }
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Audit records verified (after the pruning boundary).
    pub records: i64,
    /// Anchor lines verified.
    pub anchors: usize,
}

/// Where pruning stopped: (last pruned sequence number, its hash).
pub fn pruned_through(store: &Store) -> Result<Option<(i64, String)>, musubi_store::StoreError> {
    Ok(store.setting(PRUNED_SETTING)?.and_then(|s| {
        let (seq, hash) = s.split_once(':')?;
        Some((seq.parse().ok()?, hash.to_owned()))
    }))
}

/// Parses and checks the anchor log on its own: numbering, links, signatures, and that the
/// anchored head never goes backwards.
fn read_log(text: &str, key: &PublicKey) -> Result<Vec<Anchor>, AnchorError> {
    let mut anchors: Vec<Anchor> = Vec::new();
    let mut head = 0i64;
    for (i, line) in text.lines().enumerate() {
        let no = i + 1;
        let a = Anchor::parse(line).ok_or_else(|| {
            AnchorError::Tampered(format!("anchor log line {no}: not an anchor (damaged or altered)"))
        })?;
        let expected = anchors.len() as i64 + 1;
        if a.n != expected {
            return Err(AnchorError::Tampered(format!(
                "anchor log line {no}: carries number {} where {expected} was expected (lines were removed, reordered or inserted)",
                a.n
            )));
        }
        let prev = anchors.last().map_or_else(|| GENESIS_HASH.to_owned(), Anchor::line_hash);
        if a.prev != prev {
            return Err(AnchorError::Tampered(format!(
                "anchor log line {no}: does not follow the line before it (lines were replaced or reordered)"
            )));
        }
        if !a.signature_holds(key) {
            return Err(AnchorError::Tampered(format!(
                "anchor log line {no}: the signature does not verify (the line was changed, or signed with another key)"
            )));
        }
        if a.kind != AnchorKind::Prune {
            if a.seq < head {
                return Err(AnchorError::Tampered(format!(
                    "anchor log line {no}: anchors record {} after an earlier line anchored record {head} (the chain went backwards)",
                    a.seq
                )));
            }
            head = a.seq;
        }
        anchors.push(a);
    }
    Ok(anchors)
}

/// Verifies the audit trail: the hash chain in the database, then the anchor log at `log`
/// against it. This is what `musubi audit verify` runs. `Err(Tampered)` says what was found;
/// other errors mean the check could not be made.
pub fn verify(
    store: &Store,
    key: &PublicKey,
    log: &Path,
    policy: Policy,
    progress: impl FnMut(i64),
) -> Result<Report, AnchorError> {
    let records = match musubi_store::verify_audit_chain(store, progress)? {
        Ok(n) => n,
        Err(b) => return Err(AnchorError::Tampered(format!("audit record {}: {}", b.seq, b.reason))),
    };
    let (head_seq, _) = store.audit_head()?;
    let pruned = pruned_through(store)?;
    // The chain check returns the last sequence number; count only what is still stored.
    let records = records - pruned.as_ref().map_or(0, |(s, _)| *s);
    let db_lines = store.read(|r| r.anchor_lines())?;
    let untouched = head_seq == 0 && pruned.is_none() && db_lines.is_empty();
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if untouched {
                return Ok(Report { records, anchors: 0 });
            }
            return Err(AnchorError::Tampered(format!(
                "the anchor log {} is missing (the audit trail's witness was deleted or moved)",
                log.display()
            )));
        }
        Err(e) => return Err(io(log)(e)),
    };
    let anchors = read_log(&text, key)?;
    if anchors.is_empty() {
        if untouched {
            return Ok(Report { records, anchors: 0 });
        }
        return Err(AnchorError::Tampered(format!("the anchor log {} is empty (it was truncated)", log.display())));
    }

    // Lines the database saw written that the log no longer has, or has differently.
    for row in &db_lines {
        let Some(a) = usize::try_from(row.n - 1).ok().and_then(|i| anchors.get(i)) else {
            return Err(AnchorError::Tampered(format!(
                "the database recorded anchor line {}, but the anchor log ends at line {} (lines were cut from the log)",
                row.n,
                anchors.len()
            )));
        };
        if a.line_hash() != row.line_hash {
            return Err(AnchorError::Tampered(format!(
                "anchor log line {}: differs from the line the database recorded (the log was replaced)",
                row.n
            )));
        }
    }

    // A prune is accepted only where the log recorded it.
    let pruned_seq = match &pruned {
        None => 0,
        Some((seq, hash)) => {
            let recorded = anchors.iter().rev().find(|a| a.kind == AnchorKind::Prune);
            if recorded.is_none_or(|a| a.seq != *seq || a.hash != *hash) {
                return Err(AnchorError::Tampered(format!(
                    "audit records up to {seq} were deleted as pruned, but the anchor log records no such prune (unrecorded deletion)"
                )));
            }
            *seq
        }
    };

    // Every anchored record still in the database must still have its anchored hash.
    let check: Vec<(usize, i64, String)> = anchors
        .iter()
        .enumerate()
        .filter(|(_, a)| a.seq > pruned_seq)
        .map(|(i, a)| (i + 1, a.seq, a.hash.clone()))
        .collect();
    let found = store.read(|r| {
        let mut out = Vec::with_capacity(check.len());
        for (_, seq, _) in &check {
            out.push(r.audit_hash(*seq)?);
        }
        Ok(out)
    })?;
    for ((line, seq, hash), stored) in check.iter().zip(found) {
        match stored {
            Some(h) if h == *hash => {}
            Some(_) => {
                return Err(AnchorError::Tampered(format!(
                    "audit record {seq}: its hash is not the one anchored on line {line} (records were rewritten)"
                )));
            }
            None => {
                return Err(AnchorError::Tampered(format!(
                    "audit record {seq}, anchored on line {line}, is missing (records were deleted; the chain now ends at {head_seq})"
                )));
            }
        }
    }

    // The newest anchor must be fresh against the newest record.
    let newest = anchors.iter().rev().find(|a| a.kind != AnchorKind::Prune);
    let covered = newest.map_or(pruned_seq, |a| a.seq.max(pruned_seq));
    if head_seq > covered {
        let record = store.read(|r| r.audit_record(head_seq))?.unwrap_or_default();
        let recorded = serde_json::from_str::<serde_json::Value>(&record)
            .ok()
            .and_then(|v| v["recorded"].as_i64())
            .ok_or_else(|| AnchorError::Tampered(format!("audit record {head_seq}: no recorded time")))?;
        let since = newest.map(|a| a.created);
        let limit = policy.interval_ms.saturating_add(policy.margin_ms);
        if since.is_none_or(|t| recorded.saturating_sub(t) > limit) {
            let after = since.map_or_else(
                || "no anchor covers them".to_owned(),
                |t| format!("the newest anchor is {} s older", (recorded - t) / 1000),
            );
            return Err(AnchorError::Tampered(format!(
                "audit records {}..{head_seq} are not anchored and {after}, while anchors are written every {} s (the anchor log is stale: its last lines were removed or anchoring stopped)",
                covered + 1,
                policy.interval_ms / 1000
            )));
        }
    }
    Ok(Report { records, anchors: anchors.len() })
}
