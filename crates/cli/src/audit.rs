//! `musubi audit …` (keys, anchors, pruning, verification) and the server's anchoring of the
//! audit chain (at start, every interval, at shutdown). The rules are in
//! `musubi_service::anchors`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use musubi_service::anchors::{self, AnchorError, AnchorKind, Anchorer, Policy, Sink};
use musubi_store::Store;

use crate::StoreArgs;

/// Where the audit anchors are signed and written.
#[derive(Args, Clone, Debug)]
pub struct AnchorArgs {
    /// The key that signs the audit anchors: a file outside the data directory (create it with
    /// `musubi audit keygen --out FILE`).
    #[arg(long, env = "MUSUBI_AUDIT_KEY")]
    pub audit_key: Option<PathBuf>,
    /// The append-only anchor log (default: audit-anchors.log beside the key); keep it on
    /// another volume than the database.
    #[arg(long, env = "MUSUBI_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Also send every anchor to the local syslog (/dev/log).
    #[arg(long)]
    pub audit_syslog: bool,
    /// Seconds between the server's anchors (verify: how stale the newest anchor may be).
    #[arg(long, default_value_t = 60, env = "MUSUBI_AUDIT_ANCHOR_SECS")]
    pub audit_anchor_secs: u64,
}

impl AnchorArgs {
    fn interval(&self) -> Duration {
        Duration::from_secs(self.audit_anchor_secs.max(1))
    }

    fn key_path(&self) -> Result<&Path> {
        self.audit_key.as_deref().context(
            "an audit key is needed: create one outside the data directory with `musubi audit keygen --out FILE` and pass --audit-key FILE (or MUSUBI_AUDIT_KEY)",
        )
    }

    /// The anchorer these arguments describe.
    pub fn anchorer(&self, store: &Store, data: &Path) -> Result<Anchorer> {
        let key_path = self.key_path()?;
        let key = anchors::load_key(key_path, data)?;
        let sink = Sink {
            log: log_path(self.audit_log.as_deref(), key_path),
            syslog: self.audit_syslog.then(|| anchors::SYSLOG_SOCKET.into()),
        };
        Ok(Anchorer::new(store.clone(), key, sink, data)?)
    }
}

/// The log beside the key unless one was named.
fn log_path(named: Option<&Path>, key: &Path) -> PathBuf {
    named.map(Path::to_owned).unwrap_or_else(|| {
        key.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(anchors::LOG_FILE)
    })
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Create the key that signs audit anchors (mode 0600, outside the data directory) and its
    /// public key (FILE.pub, all a verifier needs).
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// The data directory it must stay out of.
        #[arg(long, default_value = "./musubi-data", env = "MUSUBI_DATA")]
        data: PathBuf,
    },
    /// Verify the hash chain of the audit log against the signed anchors kept outside the
    /// database; exits with status 2 if any record was changed, deleted or reordered, or the
    /// anchor log is missing, cut, reordered or stale.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        anchor: AnchorArgs,
        /// The public key (FILE.pub from keygen) instead of --audit-key: a verifier needs no
        /// secret.
        #[arg(long, env = "MUSUBI_AUDIT_PUBKEY")]
        audit_pubkey: Option<PathBuf>,
    },
    /// Write a signed anchor of the chain head now (the server also anchors at start, every
    /// minute and at shutdown).
    Anchor {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        anchor: AnchorArgs,
    },
    /// Delete audit records older than the retention period (the boundary is recorded in the
    /// anchor log first).
    Prune {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        anchor: AnchorArgs,
        /// Keep this many days.
        #[arg(long)]
        keep_days: i64,
        /// PostgreSQL: the URL of the role that may delete audit rows (the tables' owner), when
        /// the application's role may not (see `restrict-app-role`).
        #[arg(long, env = "MUSUBI_PRUNE_DATABASE_URL")]
        prune_database_url: Option<String>,
    },
    /// PostgreSQL, as the tables' owner: let the application's role use every table but never
    /// change or delete audit rows (pruning then needs --prune-database-url).
    RestrictAppRole {
        #[command(flatten)]
        store: StoreArgs,
        /// The role the server connects as.
        #[arg(long)]
        app_role: String,
    },
}

pub fn run(command: AuditCommand) -> Result<()> {
    let now = musubi_fhir::datetime::now_ms();
    match command {
        AuditCommand::Keygen { out, data } => {
            anchors::refuse_inside_data(&out, &data, "audit key")?;
            let public = anchors::keygen(&out)?;
            let pub_path = anchors::public_key_path(&out);
            println!("wrote the audit key {} (0600) and its public key {}", out.display(), pub_path.display());
            println!("public key: {}", public.to_hex());
            Ok(())
        }
        AuditCommand::RestrictAppRole { store, app_role } => {
            anyhow::ensure!(
                store.database.is_some(),
                "restrict-app-role needs --database (the owner's PostgreSQL URL)"
            );
            store.open()?.restrict_app_role(app_role.clone())?;
            println!("{app_role} may no longer change or delete audit rows; prune with --prune-database-url");
            Ok(())
        }
        AuditCommand::Anchor { store, anchor } => {
            let s = store.open()?;
            let a = anchor.anchorer(&s, &store.data)?.anchor(AnchorKind::Demand, now)?;
            println!("anchored record {} ({}) as line {}", a.seq, a.hash, a.n);
            Ok(())
        }
        AuditCommand::Prune { store, anchor, keep_days, prune_database_url } => {
            anyhow::ensure!(
                keep_days >= 365,
                "keep at least 365 days of audit records (the safety guideline asks for years)"
            );
            let s = match prune_database_url {
                Some(url) => StoreArgs { database: Some(url), ..store.clone() }.open()?,
                None => store.open()?,
            };
            let before = now - keep_days * 86_400_000;
            let n = anchor.anchorer(&s, &store.data)?.prune(before, now)?;
            println!("pruned {n} audit records older than {keep_days} days");
            Ok(())
        }
        AuditCommand::Verify { store, anchor, audit_pubkey } => {
            let key_path = match (&audit_pubkey, &anchor.audit_key) {
                (Some(p), _) | (None, Some(p)) => p.clone(),
                (None, None) => bail!(
                    "verification needs the anchors' public key: --audit-pubkey FILE.pub (or --audit-key FILE), and --audit-log if the log is not beside it"
                ),
            };
            let key = anchors::load_public_key(&key_path)?;
            let log = log_path(anchor.audit_log.as_deref(), &key_path);
            let s = store.open()?;
            let bar = indicatif::ProgressBar::new_spinner();
            let start = std::time::Instant::now();
            let result = anchors::verify(&s, &key, &log, Policy::every(anchor.interval()), |n| {
                bar.set_message(format!("{n} records verified"))
            });
            bar.finish_and_clear();
            match result {
                Ok(r) => {
                    let secs = start.elapsed().as_secs_f64();
                    println!(
                        "OK: {} audit records, chain intact ({:.0} records/s); {} signed anchors in {} match",
                        r.records,
                        r.records as f64 / secs.max(1e-9),
                        r.anchors,
                        log.display()
                    );
                    Ok(())
                }
                Err(AnchorError::Tampered(why)) => {
                    eprintln!("監査ログの改ざんを検出しました: {why}");
                    println!("TAMPERED: {why}");
                    std::process::exit(2);
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The server's anchoring: one anchorer and its period.
pub struct Anchoring {
    pub anchorer: Arc<Anchorer>,
    pub interval: Duration,
}

impl Anchoring {
    /// From `musubi serve`'s arguments (the key is required).
    pub fn from_args(store: &Store, data: &Path, args: &AnchorArgs) -> Result<Anchoring> {
        Ok(Anchoring { anchorer: Arc::new(args.anchorer(store, data)?), interval: args.interval() })
    }

    /// The demo's: a key created on first start in `DATA-audit/` beside (not inside) the data
    /// directory, the log beside it.
    pub fn demo(store: &Store, data: &Path) -> Result<Anchoring> {
        let dir = demo_audit_dir(data)?;
        let key_path = dir.join("anchor.key");
        let (key, created) = anchors::load_or_create_key(&key_path, data)?;
        if created {
            eprintln!("監査アンカーの署名鍵を {} に作成しました（データディレクトリの外）。", key_path.display());
        }
        let sink = Sink { log: dir.join(anchors::LOG_FILE), syslog: None };
        Ok(Anchoring {
            anchorer: Arc::new(Anchorer::new(store.clone(), key, sink, data)?),
            interval: anchors::DEFAULT_INTERVAL,
        })
    }

    /// Anchors now (blocking work off the async runtime).
    async fn anchor(&self, kind: AnchorKind) -> Result<()> {
        let a = self.anchorer.clone();
        tokio::task::spawn_blocking(move || a.anchor(kind, musubi_fhir::datetime::now_ms())).await??;
        Ok(())
    }

    /// The start anchor; then a task that anchors every interval while the head moves.
    /// Failing to write the start anchor stops the server: it would run without a witness.
    pub async fn start(&self) -> Result<()> {
        self.anchor(AnchorKind::Start).await.context("cannot write the audit anchor at start")?;
        let anchorer = self.anchorer.clone();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(async move {
            // The first tick is immediate; the start anchor covers it.
            tick.tick().await;
            loop {
                tick.tick().await;
                let a = anchorer.clone();
                match tokio::task::spawn_blocking(move || a.anchor_if_moved(musubi_fhir::datetime::now_ms())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "audit anchor failed"),
                    Err(e) => tracing::error!(error = %e, "audit anchor task failed"),
                }
            }
        });
        tracing::info!(log = %self.anchorer.log_path().display(), every_secs = self.interval.as_secs(), "anchoring the audit chain");
        Ok(())
    }

    /// The shutdown anchor: covers every record written until the server stopped.
    pub async fn stop(&self) -> Result<()> {
        self.anchor(AnchorKind::Shutdown).await.context("cannot write the audit anchor at shutdown")
    }
}

/// After a one-shot command (import, collect, mpi, user, …) that wrote audit records: anchors
/// them when `MUSUBI_AUDIT_KEY` is set, so they do not wait for the server's next anchor (with
/// the server stopped they would make the log look stale). Failing to anchor only warns: the
/// command's own work is done.
pub fn anchor_after_command() {
    let Some((store, before)) = crate::OPENED.lock().ok().and_then(|mut o| o.take()) else { return };
    let Some(key) = std::env::var_os("MUSUBI_AUDIT_KEY") else { return };
    let args = AnchorArgs {
        audit_key: Some(key.into()),
        audit_log: std::env::var_os("MUSUBI_AUDIT_LOG").map(Into::into),
        audit_syslog: false,
        audit_anchor_secs: anchors::DEFAULT_INTERVAL.as_secs(),
    };
    let run = || -> Result<()> {
        let s = store.open()?;
        if s.audit_head()?.0 != before {
            args.anchorer(&s, &store.data)?.anchor(AnchorKind::Demand, musubi_fhir::datetime::now_ms())?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("警告: 監査ログのアンカーを書けませんでした（musubi audit anchor で書いてください）: {e:#}");
    }
}

/// Warns when the server's PostgreSQL role could change or delete audit rows.
pub fn warn_if_audit_mutable(store: &Store) -> Result<()> {
    if store.read(|r| r.audit_rows_mutable())? == Some(true) {
        tracing::warn!(
            "the database role can change or delete audit rows; connect as a restricted role (musubi audit restrict-app-role)"
        );
    }
    Ok(())
}

/// `DATA-audit`, beside the data directory.
pub fn demo_audit_dir(data: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(data).with_context(|| format!("cannot resolve {}", data.display()))?;
    let name = abs.file_name().with_context(|| format!("{}: the demo needs a named data directory", data.display()))?;
    let mut sibling = name.to_owned();
    sibling.push("-audit");
    Ok(abs.with_file_name(sibling))
}
