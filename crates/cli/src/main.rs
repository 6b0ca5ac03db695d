//! `musubi`: the one binary of the network. Every command that touches the store takes
//! `--data DIR` (the embedded database, default `./musubi-data`) or `--database URL`
//! (PostgreSQL).

mod collect;
mod demo;
mod import;
mod mpi;
mod people;
mod synth;

use std::path::{Path, PathBuf};

// mimalloc: the ingest path allocates many small JSON nodes; glibc malloc spent about a fifth
// of the time in malloc/free (measured with callgrind).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use musubi_store::Store;

#[derive(Parser)]
#[command(name = "musubi", version, about = "Musubi: a health-record sharing service for Japanese regional networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives.
#[derive(Args, Clone)]
struct StoreArgs {
    /// Data directory (embedded database, admin token, quarantine).
    #[arg(long, default_value = "./musubi-data", env = "MUSUBI_DATA")]
    data: PathBuf,
    /// PostgreSQL URL (postgres://user@host/db) instead of the embedded database.
    #[arg(long, env = "MUSUBI_DATABASE_URL")]
    database: Option<String>,
}

impl StoreArgs {
    fn open(&self) -> Result<Store> {
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("cannot create data directory {}", self.data.display()))?;
        let store = Store::open(self.database.as_deref(), &self.data).context("cannot open the store")?;
        Ok(store)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "MUSUBI_LISTEN")]
        listen: String,
        /// Public base URL of the FHIR API (for links), e.g. https://musubi.example.jp/fhir.
        #[arg(long, env = "MUSUBI_BASE_URL")]
        base_url: Option<String>,
        /// Largest request body in MiB.
        #[arg(long, default_value_t = 64)]
        body_limit_mib: usize,
        /// PEM root certificates (files or directories) that signed referral letters are checked
        /// against (HPKI-style roots chosen by the operator). Without them every signature shows
        /// as untrusted.
        #[arg(long)]
        hpki_roots: Vec<PathBuf>,
        /// Delete what the retention rules say has expired, every hour (off by default: it really
        /// deletes clinical data; `musubi retention sweep` runs it once).
        #[arg(long)]
        retention_sweep: bool,
        /// Memory (MiB) for parsed records kept between requests: the patient page, the
        /// emergency summary and its PDF of a long history read them all (0 turns it off).
        #[arg(long, default_value_t = 256, env = "MUSUBI_RECORD_CACHE_MIB")]
        record_cache_mib: u64,
    },
    /// Retention of records by the national service's rules.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Serve a demo region on the embedded store (created on first run).
    Demo {
        /// Data directory of the demo.
        #[arg(long, default_value = "./musubi-demo")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Generate a synthetic Japanese region: people, facilities, each facility's FHIR, SS-MIX2
    /// and UKE data, and truth files (deterministic for a seed; synthetic data only).
    Synth {
        /// Number of people.
        #[arg(long, default_value_t = 1000)]
        persons: u64,
        /// Seed: the same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// First year of history.
        #[arg(long, default_value_t = 2023)]
        start_year: i32,
        /// Years of history.
        #[arg(long, default_value_t = 3)]
        years: u32,
        /// Outputs: fhir, ssmix2, uke, truth (comma-separated) or all.
        #[arg(long, default_value = "all")]
        formats: String,
        /// Worker threads (0 = all cores); the output does not depend on it.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the current one-time code of a TOTP secret (for trying the demo without an
    /// authenticator app).
    Totp {
        /// The base32 secret printed when the account was created.
        secret: String,
    },
    /// The network's facility registry.
    Facility {
        #[command(subcommand)]
        command: FacilityCommand,
    },
    /// Clinician and staff accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The master patient index.
    Mpi {
        #[command(subcommand)]
        command: MpiCommand,
    },
    /// API tokens for facility systems.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Collect SS-MIX2 storage and UKE receipt files; show the quarantine.
    Collect {
        #[command(subcommand)]
        command: collect::CollectCommand,
    },
    /// Import FHIR data: NDJSON (Bulk Data), JSON resources or Bundles, files or directories.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Files or directories to import.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write one line per committed chunk (the ids now durable) to this file.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for a facility's system; it is printed once and stored only as a hash.
    Issue {
        #[command(flatten)]
        store: StoreArgs,
        /// The facility's 10-digit 医療機関コード.
        #[arg(long)]
        facility: String,
        /// A name for the system (shown in the audit log), e.g. "tokyo-general-emr".
        #[arg(long)]
        name: String,
    },
    /// List tokens (names, facilities; never the tokens).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke every token with this name.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of the audit log and the signed anchors kept outside the
    /// database; exits non-zero if any record was changed, deleted or reordered.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a signed anchor of the chain head now (the server also does this periodically).
    Anchor {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete audit records older than the retention period (after anchoring the boundary).
    Prune {
        #[command(flatten)]
        store: StoreArgs,
        /// Keep this many days.
        #[arg(long)]
        keep_days: i64,
    },
}

#[derive(Subcommand)]
enum MpiCommand {
    /// Relink every source patient from scratch (training the model on the data).
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print `facility,local_id,person` for every source patient.
    Links {
        #[command(flatten)]
        store: StoreArgs,
        /// Output format.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// Pairwise precision, recall and F1 of the links against a truth file
    /// (`facility,local_id,person`).
    Evaluate {
        #[command(flatten)]
        store: StoreArgs,
        /// The truth file.
        #[arg(long)]
        truth: PathBuf,
    },
    /// The open review queue.
    Review {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete every record whose retention has ended and the referral letters received more than
    /// 7 days ago (or sent more than 6 months ago), now; prints what was deleted.
    Sweep {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum FacilityCommand {
    /// Register a facility in the network (or update it).
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// 10-digit 医療機関コード.
        #[arg(long)]
        code: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// hospital, clinic, dental, pharmacy or other.
        #[arg(long)]
        class: String,
        /// 二次医療圏 id (e.g. 1301).
        #[arg(long)]
        area: String,
        /// 二次医療圏 name.
        #[arg(long, default_value = "")]
        area_name: String,
        /// Cities (市区町村) of the 二次医療圏, for placing patients' addresses.
        #[arg(long)]
        city: Vec<String>,
    },
    /// List the registry.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a clinician or staff account; prints the TOTP secret for the authenticator app.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        #[arg(long)]
        login: String,
        /// Kanji name.
        #[arg(long)]
        name: String,
        /// Kana name.
        #[arg(long, default_value = "")]
        kana: String,
        /// doctor, dentist, pharmacist, nurse, other-licensed or clerk.
        #[arg(long)]
        profession: String,
        /// Facility (repeat for several).
        #[arg(long, required = true)]
        facility: Vec<String>,
        /// A file holding the initial password (not on the command line, where it would be
        /// visible to other users of the machine).
        #[arg(long)]
        password_file: PathBuf,
        /// The user enrols their own authenticator at the first login (no key is printed).
        #[arg(long)]
        self_enrol: bool,
    },
    /// List users.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user: every session of theirs ends at once and they cannot log in.
    Disable {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        login: String,
    },
    /// Create a named operator account (the network's operator, no facility). The first one
    /// ends the administrator token. The operator chooses their own password (replacing the
    /// initial one) and enrols their own authenticator at the first login.
    AddOperator {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        #[arg(long)]
        login: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// A file holding the initial password.
        #[arg(long)]
        password_file: PathBuf,
    },
    /// Enable a disabled user again.
    Enable {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        login: String,
    },
    /// Set a new password (read from a file); every session of the user ends.
    ResetPassword {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        login: String,
        /// A file holding the new password.
        #[arg(long)]
        password_file: PathBuf,
    },
    /// Forget the user's authenticator: they enrol a new one at their next login (the secret
    /// is shown to them only); every session ends.
    ResetSecondFactor {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        login: String,
    },
    /// End every session of the user.
    RevokeSessions {
        #[command(flatten)]
        store: StoreArgs,
        /// Login name.
        login: String,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSUBI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Writes the administrator token to `dir/admin-token` (mode 0600) when the store has none.
pub(crate) fn ensure_admin_token(store: &Store, dir: &Path) -> Result<Option<PathBuf>> {
    let has_admin = store.read(|r| r.tokens())?.iter().any(|t| t.kind == "admin" && !t.revoked)
        // Once a named operator exists there is no bootstrap token any more.
        || store.read(|r| r.users())?.iter().any(|u| u.profession == musubi_service::login::OPERATOR_PROFESSION);
    if has_admin {
        return Ok(None);
    }
    let token = musubi_server::auth::issue(store, "admin", None, "admin")?;
    let path = dir.join("admin-token");
    write_secret(&path, &token)?;
    Ok(Some(path))
}

pub(crate) fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// How `musubi serve` runs, beside where.
pub(crate) struct ServeOptions {
    pub base_url: Option<String>,
    pub body_limit_mib: usize,
    pub hpki_roots: Vec<PathBuf>,
    pub retention_sweep: bool,
    pub record_cache_mib: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            base_url: None,
            body_limit_mib: 64,
            hpki_roots: Vec::new(),
            retention_sweep: false,
            record_cache_mib: musubi_service::DEFAULT_RECORD_CACHE_BYTES >> 20,
        }
    }
}

pub(crate) async fn run_server(store: Store, data: &Path, listen: &str, opts: ServeOptions) -> Result<()> {
    let ServeOptions { base_url, body_limit_mib, hpki_roots, retention_sweep, record_cache_mib } = opts;
    if let Some(p) = ensure_admin_token(&store, data)? {
        tracing::info!(path = %p.display(), "wrote the administrator token (first start); keep it secret");
        eprintln!("管理者トークンを {} に書き出しました（初回起動）。厳重に保管してください。", p.display());
    }
    let node = hostname();
    let state_store = store.clone();
    let service = musubi_service::Service::new(store, node).with_record_cache(record_cache_mib.saturating_mul(1 << 20));
    if !hpki_roots.is_empty() {
        let roots = musubi_service::signature::TrustRoots::load(&hpki_roots)
            .map_err(|e| anyhow::anyhow!("cannot load the HPKI roots: {e}"))?;
        service.set_trust_roots(roots);
    }
    if retention_sweep {
        let svc = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(musubi_service::retention::SUGGESTED_INTERVAL);
            loop {
                tick.tick().await;
                let s = svc.clone();
                let run = tokio::task::spawn_blocking(move || {
                    s.retention_sweep(
                        &musubi_service::Ctx::operator("retention-sweep"),
                        musubi_fhir::datetime::now_ms(),
                    )
                });
                match run.await {
                    Ok(Ok(report)) => tracing::info!(deleted = report.records_total(), "retention sweep done"),
                    Ok(Err(e)) => {
                        tracing::error!(error = %musubi_service::import::describe(&e), "retention sweep failed")
                    }
                    Err(e) => tracing::error!(error = %e, "retention sweep task failed"),
                }
            }
        });
    }
    let config =
        musubi_server::ServerConfig { base_url, body_limit: body_limit_mib * 1024 * 1024, ..Default::default() };
    let state = musubi_server::AppState::new(service, config);
    // A signed anchor of the audit chain every ten minutes, outside the database.
    let anchor_store = state_store.clone();
    let anchor_dir = data.to_owned();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            let (s, d) = (anchor_store.clone(), anchor_dir.clone());
            match tokio::task::spawn_blocking(move || musubi_service::anchors::anchor(&s, &d)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "audit anchor failed"),
                Err(e) => tracing::error!(error = %e, "audit anchor task failed"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving the FHIR API at /fhir");
    eprintln!("Musubi FHIR API: http://{addr}/fhir");
    musubi_server::serve(listener, state).await?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "musubi".into())
}

/// The operator at the console (their login name goes into the audit record).
pub(crate) fn operator() -> musubi_service::Ctx {
    musubi_service::Ctx::operator(&std::env::var("USER").unwrap_or_else(|_| "operator".into()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve { store, listen, base_url, body_limit_mib, hpki_roots, retention_sweep, record_cache_mib } => {
            let s = store.open()?;
            let opts = ServeOptions { base_url, body_limit_mib, hpki_roots, retention_sweep, record_cache_mib };
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run_server(
                s,
                &store.data,
                &listen,
                opts,
            ))
        }
        Command::Retention { command: RetentionCommand::Sweep { store } } => {
            let svc = musubi_service::Service::new(store.open()?, "cli");
            let report = svc
                .retention_sweep(&operator(), musubi_fhir::datetime::now_ms())
                .map_err(|e| anyhow::anyhow!("{}", musubi_service::import::describe(&e)))?;
            println!("{}", report.summary_ja());
            Ok(())
        }
        Command::Demo { data, listen } => demo::run(&data, &listen),
        Command::Synth { persons, seed, out, start_year, years, formats, threads, quiet } => {
            synth::run(synth::SynthArgs { persons, seed, out, start_year, years, formats, threads, quiet })
        }
        Command::Totp { secret } => {
            let code = musubi_service::people::totp_code_now(secret.trim())
                .map_err(|e| anyhow::anyhow!("{}", musubi_service::import::describe(&e)))?;
            println!("{code}");
            Ok(())
        }
        Command::Token { command } => match command {
            TokenCommand::Issue { store, facility, name } => {
                let code: musubi_domain::FacilityCode = facility.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                if name.trim().is_empty() {
                    bail!("--name must not be empty");
                }
                let s = store.open()?;
                if s.read(|r| r.tokens())?.iter().any(|t| t.name == name && !t.revoked) {
                    bail!("a token named {name:?} already exists; revoke it first or choose another name");
                }
                let token = musubi_server::auth::issue(&s, "system", Some(&code), &name)?;
                eprintln!(
                    "医療機関 {code} のシステム {name:?} のトークンを発行しました。この表示の後は再表示できません。"
                );
                println!("{token}");
                Ok(())
            }
            TokenCommand::List { store } => {
                let s = store.open()?;
                for t in s.read(|r| r.tokens())? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        t.name,
                        t.kind,
                        t.facility.unwrap_or_else(|| "-".into()),
                        musubi_fhir::datetime::format_instant(t.created),
                        if t.revoked { "revoked" } else { "active" }
                    );
                }
                Ok(())
            }
            TokenCommand::Revoke { store, name } => {
                let n = store.open()?.revoke_token(name.clone())?;
                if n == 0 {
                    bail!("no active token named {name:?}");
                }
                eprintln!("revoked {n} token(s) named {name:?}");
                Ok(())
            }
        },
        Command::Facility { command } => people::facility(command),
        Command::Mpi { command } => mpi::run(command),
        Command::User { command } => people::user(command),
        Command::Audit { command } => match command {
            AuditCommand::Anchor { store } => {
                let s = store.open()?;
                match musubi_service::anchors::anchor(&s, &store.data)? {
                    Some(a) => println!("anchored record {} ({})", a.seq, a.hash),
                    None => println!("the audit log is empty"),
                }
                Ok(())
            }
            AuditCommand::Prune { store, keep_days } => {
                anyhow::ensure!(
                    keep_days >= 365,
                    "keep at least 365 days of audit records (the safety guideline asks for years)"
                );
                let s = store.open()?;
                let before = musubi_fhir::datetime::now_ms() - keep_days * 86_400_000;
                let n = musubi_service::anchors::prune(&s, &store.data, before)?;
                println!("pruned {n} audit records older than {keep_days} days");
                Ok(())
            }
            AuditCommand::Verify { store } => {
                let s = store.open()?;
                let bar = indicatif::ProgressBar::new_spinner();
                let start = std::time::Instant::now();
                let result =
                    musubi_store::verify_audit_chain(&s, |n| bar.set_message(format!("{n} records verified")))?;
                bar.finish_and_clear();
                match result {
                    Ok(n) => {
                        let secs = start.elapsed().as_secs_f64();
                        match musubi_service::anchors::verify(&s, &store.data) {
                            Ok(a) => {
                                println!(
                                    "OK: {n} audit records, chain intact ({:.0} records/s); {a} signed anchors match",
                                    n as f64 / secs.max(1e-9)
                                );
                                Ok(())
                            }
                            Err(e) => {
                                eprintln!("監査ログの改ざんを検出しました: {e}");
                                println!("TAMPERED: {e}");
                                std::process::exit(2);
                            }
                        }
                    }
                    Err(b) => {
                        eprintln!("監査ログの改ざんを検出しました: record {}: {}", b.seq, b.reason);
                        println!("TAMPERED: record {}: {}", b.seq, b.reason);
                        std::process::exit(2);
                    }
                }
            }
        },
        Command::Collect { command } => collect::run(command),
        Command::Import { store, paths, journal, quiet } => {
            import::run(&store.open()?, &store.data, &paths, journal.as_deref(), quiet)
        }
    }
}
