//! Signed checkpoints of the audit chain, written outside the database, and audit retention.
//!
//! Someone with write access to the database could rewrite the whole chain consistently,
//! recomputing every hash. An anchor makes that detectable: every so often the chain head
//! (sequence number and hash) is signed with HMAC-SHA256 under a key kept in the data
//! directory and appended to a log file there (and to a table). `musubi audit verify` checks
//! that every anchor in the file still matches the chain. Old records can be pruned after the
//! retention period: the boundary is anchored first, so verification resumes there.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use musubi_store::{AccountWrite, AnchorRow, Store};
use serde_json::json;

/// The file name of the anchor key in the data directory.
pub const KEY_FILE: &str = "audit-anchor.key";
/// The file name of the anchor log in the data directory.
pub const LOG_FILE: &str = "audit-anchors.log";
/// The setting that records where pruning stopped (`seq:hash` of the last pruned record).
pub const PRUNED_SETTING: &str = "audit.pruned_through";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why anchoring or anchor verification failed.
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
    /// An anchor does not hold.
    #[error("anchor at record {seq}: {reason}")]
    Broken {
        /// The anchored sequence number.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io { path: path.to_owned(), source }
}

/// Reads (or creates, mode 0600) the anchor key of a data directory.
pub fn key(dir: &Path) -> Result<Vec<u8>, AnchorError> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim())
            .map_err(|e| AnchorError::Broken { seq: 0, reason: format!("{}: not a hex key: {e}", path.display()) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| AnchorError::Broken { seq: 0, reason: format!("random: {e}") })?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(io(&path))?;
            f.write_all(hex::encode(k).as_bytes()).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
            Ok(k.to_vec())
        }
        Err(e) => Err(io(&path)(e)),
    }
}

fn sign(key: &[u8], seq: i64, hash: &str, created: i64) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty signature would never verify.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else { return String::new() };
    mac.update(format!("musubi-audit-anchor\n{seq}\n{hash}\n{created}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Anchors the current chain head: signs it, stores it and appends it (synced) to the log in
/// `dir`. Returns None when the log is empty.
pub fn anchor(store: &Store, dir: &Path) -> Result<Option<AnchorRow>, AnchorError> {
    let key = key(dir)?;
    let (seq, hash) = store.audit_head()?;
    if seq == 0 {
        return Ok(None);
    }
    anchor_at(store, dir, &key, seq, &hash).map(Some)
}

fn anchor_at(store: &Store, dir: &Path, key: &[u8], seq: i64, hash: &str) -> Result<AnchorRow, AnchorError> {
    let created = musubi_fhir::datetime::now_ms();
    let row = AnchorRow { seq, hash: hash.to_owned(), created, signature: sign(key, seq, hash, created) };
    let path = dir.join(LOG_FILE);
    let mut f = musubi_store::private_append(&path).map_err(io(&path))?;
    let line = json!({"seq": seq, "hash": hash, "created": created, "signature": row.signature});
    writeln!(f, "{line}").map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    // The table copy may already hold this head (anchored twice without new records).
    if !store.read(|r| r.anchors())?.iter().any(|a| a.seq == seq) {
        store.write_accounts(vec![AccountWrite::Anchor(row.clone())], Vec::new())?;
    }
    Ok(row)
}

/// Checks every anchor of the log in `dir` against the chain: signature, and the stored hash
/// of the anchored record. Records pruned since are skipped. Returns how many were checked.
pub fn verify(store: &Store, dir: &Path) -> Result<usize, AnchorError> {
    let path = dir.join(LOG_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&path)(e)),
    };
    let key = key(dir)?;
    let pruned = pruned_through(store)?.map_or(0, |(s, _)| s);
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(&path))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| AnchorError::Broken { seq: 0, reason: format!("{} line {}: {e}", path.display(), i + 1) })?;
        let (Some(seq), Some(hash), Some(created), Some(sig)) =
            (v["seq"].as_i64(), v["hash"].as_str(), v["created"].as_i64(), v["signature"].as_str())
        else {
            return Err(AnchorError::Broken {
                seq: 0,
                reason: format!("{} line {}: incomplete anchor", path.display(), i + 1),
            });
        };
        if sign(&key, seq, hash, created) != sig {
            return Err(AnchorError::Broken {
                seq,
                reason: "the anchor's signature does not verify (the log or the key was changed)".into(),
            });
        }
        if seq <= pruned {
            continue;
        }
        match store.read(|r| r.audit_hash(seq))? {
            Some(h) if h == hash => n += 1,
            Some(_) => {
                return Err(AnchorError::Broken {
                    seq,
                    reason: "the audit chain no longer matches this anchor (records were rewritten)".into(),
                });
            }
            None => {
                return Err(AnchorError::Broken {
                    seq,
                    reason: "the anchored record is missing (records were deleted)".into(),
                });
            }
        }
    }
    Ok(n)
}

/// Where pruning stopped: (last pruned sequence number, its hash).
pub fn pruned_through(store: &Store) -> Result<Option<(i64, String)>, musubi_store::StoreError> {
    Ok(store.setting(PRUNED_SETTING)?.and_then(|s| {
        let (seq, hash) = s.split_once(':')?;
        Some((seq.parse().ok()?, hash.to_owned()))
    }))
}

/// Deletes audit records older than `before` (epoch ms), after anchoring the boundary in the
/// external log. Returns how many were deleted.
pub fn prune(store: &Store, dir: &Path, before: i64) -> Result<u64, AnchorError> {
    let key = key(dir)?;
    let Some((seq, hash)) = store.read(|r| r.last_audit_before(before))? else { return Ok(0) };
    anchor_at(store, dir, &key, seq, &hash)?;
    Ok(store.prune_audit(seq, hash)?)
}
