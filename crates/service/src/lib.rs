//! Musubi's application layer: every read and write of clinical data, by any route.
//!
//! The FHIR API, the command-line import, the collectors and the viewer all call a
//! [`Service`]; none of them touches the store directly. Each operation here:
//!
//! - validates input at the edge (JP Core / JP-CLINS, [`musubi_validate`]) and never stores a
//!   resource that breaks a rule;
//! - classifies it (class, clinical date, flags, facility, patient), computes its retention end
//!   and search-index entries outside the store's write lock;
//! - asks the gate ([`musubi_gate::decide`]) about every record it writes or returns; searches
//!   run in the scope the gate derives, so totals and pages never count a hidden record;
//! - writes one audit record per access, allowed or denied, in the same transaction as a write,
//!   before the response of a read (if the audit cannot be written, the read fails: fail closed).
//!
//! All calls block (the store is blocking); the server runs them off the async runtime.

#![deny(missing_docs)]

mod access;
pub mod anchors;
mod audit_event;
mod bundle;
mod cache;
mod capability;
pub mod collect;
mod credentials;
pub mod directory;
mod error;
pub mod evidence;
pub mod failed_auth;
pub mod ids;
pub mod import;
pub mod login;
pub mod mpi;
mod paging;
mod params;
pub mod people;
mod prepare;
mod read;
pub mod record;
pub mod referral;
pub mod retention;
mod search;
pub mod secrets;
pub mod settings;
pub mod signature;
pub mod summary;
pub mod tokens;
mod write;

use musubi_domain::audit::{AuditAction, AuditOutcome, AuditRecord};
use musubi_fhir::classify::LabSet;
use musubi_gate::Actor;
use musubi_store::Store;

pub use bundle::{SubmitOutcome, SubmitStatus};
pub use cache::DEFAULT_CACHE_BYTES as DEFAULT_RECORD_CACHE_BYTES;
pub use capability::{capability_statement, smart_configuration};
pub use error::{ApiError, ErrorKind};
pub use musubi_record::Derived;
pub use read::ReadOutcome;
pub use search::{SearchRequest, SearchResult, parse_search};
pub use write::WriteOutcome;

/// Who is calling and from where, for one request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The authenticated actor.
    pub actor: Actor,
    /// The client's address, for the audit record.
    pub address: Option<String>,
    /// The FHIR base URL as the client reached it (for links and `fullUrl`).
    pub base_url: String,
}

impl Ctx {
    /// A network operator working from the command line (no address, no base URL).
    pub fn operator(name: &str) -> Ctx {
        Ctx { actor: Actor::Operator { name: name.to_owned() }, address: None, base_url: String::new() }
    }
}

/// The application layer over one store.
#[derive(Clone)]
pub struct Service {
    store: Store,
    node: String,
    mpi: mpi::MpiState,
    referral: referral::ReferralState,
    cache: cache::ResourceCache,
    failed_auth: failed_auth::FailedAuth,
    secrets: Option<std::sync::Arc<secrets::SecretsKey>>,
    /// The network's secret for collected resource ids (see [`ids`]); None keeps the
    /// deterministic ids.
    id_key: Option<std::sync::Arc<ids::IdKey>>,
    guard: login::LoginGuard,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Service({:?}, {})", self.store, self.node)
    }
}

/// The lab-set lookup from the JP-CLINS code tables (43 core items, 5 infection items).
pub fn lab_set(system: &str, code: &str) -> Option<LabSet> {
    if musubi_validate::terminology::is_infection_lab_code(system, code).is_some() {
        Some(LabSet::Infection)
    } else if musubi_validate::terminology::is_core_lab_code(system, code).is_some() {
        Some(LabSet::Core)
    } else {
        None
    }
}

impl Service {
    /// A service over `store`; `node` names this server in audit records.
    pub fn new(store: Store, node: impl Into<String>) -> Service {
        // Compile the validator now rather than on the first request.
        let _ = musubi_validate::Validator::shared();
        Service {
            store,
            node: node.into(),
            mpi: mpi::MpiState::default(),
            referral: referral::ReferralState::default(),
            cache: cache::ResourceCache::new(cache::DEFAULT_CACHE_BYTES),
            failed_auth: failed_auth::FailedAuth::default(),
            secrets: None,
            id_key: None,
            guard: login::LoginGuard::default(),
        }
    }

    /// Bounds the memory kept for parsed records (the whole-record pages' cache) to `bytes`;
    /// 0 turns the cache off. The default is [`DEFAULT_RECORD_CACHE_BYTES`].
    pub fn with_record_cache(mut self, bytes: u64) -> Service {
        self.cache = cache::ResourceCache::new(bytes);
        self
    }

    /// Seals TOTP secrets with `key` from now on ([`secrets`]); without a key they are stored
    /// in clear (tests, tools that create no account).
    pub fn with_secrets_key(mut self, key: secrets::SecretsKey) -> Service {
        self.secrets = Some(std::sync::Arc::new(key));
        self
    }

    /// A TOTP secret as it is stored: sealed when the service has a key.
    pub(crate) fn seal_secret(&self, clear: &str) -> Result<String, ApiError> {
        match &self.secrets {
            Some(k) => k.seal(clear),
            None => Ok(clear.to_owned()),
        }
    }

    /// A stored TOTP secret in clear (a sealed one needs the key).
    pub(crate) fn open_secret(&self, stored: &str) -> Result<String, ApiError> {
        match &self.secrets {
            Some(k) => k.open(stored),
            None if secrets::is_sealed(stored) => {
                Err(ApiError::internal("a sealed TOTP secret, but the service has no secrets key"))
            }
            None => Ok(stored.to_owned()),
        }
    }

    /// Seals every TOTP secret still stored in clear (written before secrets were sealed);
    /// returns how many. Run on start; does nothing without a key.
    pub fn seal_clear_totp_secrets(&self) -> Result<usize, ApiError> {
        let Some(k) = &self.secrets else { return Ok(0) };
        let clear = self.store.read(|r| r.clear_totp_secrets())?;
        let n = clear.len();
        let mut writes = Vec::with_capacity(n);
        for (portal, id, secret) in clear {
            writes.push(musubi_store::AccountWrite::Totp { portal, id, secret: Some(k.seal(&secret)?) });
        }
        if !writes.is_empty() {
            self.store.write_accounts(writes, Vec::new())?;
        }
        Ok(n)
    }

    /// The store, for the service's own unit tests. Nothing outside the service reaches the
    /// store through it: pages and routes read through the service's methods, and other
    /// crates' tests hold their own `Store` handle.
    #[cfg(test)]
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// A blank audit record for `ctx` (the caller fills in what was done).
    pub(crate) fn audit_record(
        &self,
        ctx: &Ctx,
        action: AuditAction,
        subtype: &str,
        outcome: AuditOutcome,
    ) -> AuditRecord {
        AuditRecord {
            recorded: musubi_fhir::datetime::now_ms(),
            action,
            subtype: subtype.to_owned(),
            outcome,
            outcome_text: None,
            agent: ctx.actor.audit_agent(ctx.address.clone()),
            purpose: ctx.actor.purpose(),
            patient: None,
            person: None,
            entities: Vec::new(),
            query: None,
            source: self.node.clone(),
        }
    }

    /// Commits a batch and links the Patients it wrote to persons (the MPI), after the commit.
    pub(crate) fn commit_and_link(
        &self,
        ctx: &Ctx,
        batch: musubi_store::WriteBatch,
    ) -> Result<musubi_store::Committed, ApiError> {
        let written = mpi::WrittenPatient::of(&batch.puts);
        let c = self.store.commit(batch)?;
        self.link_written(ctx, written);
        Ok(c)
    }

    /// Appends audit records for an access that wrote nothing else (reads, refusals).
    pub(crate) fn audit(&self, records: Vec<AuditRecord>) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.append_audit(records).map(|_| ()).map_err(|e| {
            // Fail closed: without its audit record the access does not happen.
            ApiError::internal(format!("audit append failed: {e}"))
        })
    }

    /// Counts a failed authentication (no actor: a missing, bad or revoked token, an invalid
    /// session, a wrong administrator token). It reaches the audit log as part of a summary per
    /// source, kind and period ([`failed_auth`]); nothing is written now, so this never waits
    /// for the store and may be called on the async runtime.
    pub fn audit_login_failure(&self, address: Option<String>, reason: &str) -> Result<(), ApiError> {
        self.note_failed_auth_at(musubi_fhir::datetime::now_ms(), address, "token", None, reason);
        Ok(())
    }

    /// Counts a failed authentication at `now` (epoch ms): `kind` is what was tried (`token`,
    /// `user`, `patient`), `login` the login name given, if any (kept capped).
    pub fn note_failed_auth_at(
        &self,
        now: i64,
        address: Option<String>,
        kind: &str,
        login: Option<&str>,
        reason: &str,
    ) {
        self.failed_auth.note(now, address, kind, login, reason);
    }

    /// Writes the summaries of failed authentications whose period ended by `now` (all of them
    /// with `i64::MAX`, at shutdown); returns how many records were written. The server calls
    /// it every few seconds; a failed write keeps the summaries for the next call.
    pub fn flush_failed_auth(&self, now: i64) -> Result<usize, ApiError> {
        let records = self.failed_auth.take_due(now, &self.node);
        if records.is_empty() {
            return Ok(0);
        }
        let n = records.len();
        if let Err(e) = self.store.append_audit(records.clone()) {
            self.failed_auth.restore(records);
            return Err(ApiError::internal(format!("audit append of failed-authentication summaries failed: {e}")));
        }
        Ok(n)
    }
}

/// The version in an ETag (`W/"3"` or `"3"`).
pub fn etag_version(etag: &str) -> Option<i64> {
    etag.trim().trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// The HTTP status line of an error kind, as a Bundle entry's `response.status` carries it.
pub fn status_line(kind: ErrorKind) -> String {
    let (code, text) = match kind {
        ErrorKind::BadRequest => (400, "Bad Request"),
        ErrorKind::Unauthorized => (401, "Unauthorized"),
        ErrorKind::Forbidden => (403, "Forbidden"),
        ErrorKind::NotFound => (404, "Not Found"),
        ErrorKind::MethodNotAllowed => (405, "Method Not Allowed"),
        ErrorKind::NotAcceptable => (406, "Not Acceptable"),
        ErrorKind::Conflict => (409, "Conflict"),
        ErrorKind::Gone => (410, "Gone"),
        ErrorKind::PreconditionFailed => (412, "Precondition Failed"),
        ErrorKind::PayloadTooLarge => (413, "Payload Too Large"),
        ErrorKind::UnsupportedMediaType => (415, "Unsupported Media Type"),
        ErrorKind::Unprocessable => (422, "Unprocessable Entity"),
        ErrorKind::Internal => (500, "Internal Server Error"),
        ErrorKind::Unavailable => (503, "Service Unavailable"),
        ErrorKind::TooManyRequests { .. } => (429, "Too Many Requests"),
    };
    format!("{code} {text}")
}

/// Decodes a query string into pairs (`+` is a space, `%XX` escapes).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}
