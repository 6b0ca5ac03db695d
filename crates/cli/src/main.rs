//! `musubi`: the one binary of the network. Every command that touches the store takes
//! `--data DIR` (the embedded database, default `./musubi-data`) or `--database URL`
//! (PostgreSQL).

mod audit;
mod collect;
mod demo;
mod ids;
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
    /// PostgreSQL URL without a password (postgres://user@host/db) instead of the embedded
    /// database. A URL with a password belongs in the environment (MUSUBI_DATABASE_URL) or in a
    /// file (--database-file), never on the command line, where other users can read it.
    #[arg(long)]
    database: Option<String>,
    /// A file holding the PostgreSQL URL (it may carry the password).
    #[arg(long, env = "MUSUBI_DATABASE_URL_FILE")]
    database_file: Option<PathBuf>,
    /// The key file that seals TOTP secrets in the database (created 0600 on first use;
    /// default: secrets.key in the data directory). Keep it out of database backups.
    #[arg(long, env = "MUSUBI_SECRETS_KEY")]
    secrets_key: Option<PathBuf>,
    /// The network's secret for collected resource ids (created, mode 0600, on first start;
    /// default: `musubi-id.key` beside the data directory, never in the database). Every
    /// server and collector of one network must use the same key.
    #[arg(long, env = "MUSUBI_ID_KEY")]
    id_key: Option<PathBuf>,
}

/// The key that seals TOTP secrets: `explicit`, else `secrets.key` in `data` (created on first
/// use).
pub(crate) fn secrets_key(explicit: Option<&Path>, data: &Path) -> Result<musubi_service::secrets::SecretsKey> {
    let path = explicit.map_or_else(|| data.join("secrets.key"), Path::to_path_buf);
    musubi_service::secrets::SecretsKey::load_or_create(&path)
        .map_err(|e| anyhow::anyhow!("{}", musubi_service::import::describe(&e)))
}

/// A service that seals TOTP secrets with `key`, after sealing those still stored in clear.
pub(crate) fn sealing_service(
    store: Store,
    node: &str,
    key: musubi_service::secrets::SecretsKey,
) -> Result<musubi_service::Service> {
    let svc = musubi_service::Service::new(store, node).with_secrets_key(key);
    let n = svc.seal_clear_totp_secrets().map_err(|e| anyhow::anyhow!("{}", musubi_service::import::describe(&e)))?;
    if n > 0 {
        tracing::info!(accounts = n, "sealed TOTP secrets that were stored in clear");
    }
    Ok(svc)
}

/// The environment variable that may hold the PostgreSQL URL (read directly, so `--help`
/// never prints its value).
const DATABASE_URL_ENV: &str = "MUSUBI_DATABASE_URL";

/// Whether a database URL carries a password (`user:password@` or a `password=` parameter).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    userinfo.is_some_and(|u| u.contains(':'))
        || url.split(['?', '&']).skip(1).any(|p| p.to_ascii_lowercase().starts_with("password="))
}

/// The first store a command opened and its audit head then: a one-shot command that wrote
/// audit records anchors them when it ends (see `audit::anchor_after_command`).
static OPENED: std::sync::Mutex<Option<(StoreArgs, i64)>> = std::sync::Mutex::new(None);

impl StoreArgs {
    /// The PostgreSQL URL, if one is configured: `--database` (without a password), else
    /// `--database-file`, else `MUSUBI_DATABASE_URL`.
    fn database_url(&self) -> Result<Option<String>> {
        if let Some(url) = &self.database {
            if url_has_password(url) {
                bail!(
                    "--database carries a password, which other users of this machine can read on the command line; \
                     put the URL in {DATABASE_URL_ENV} or in a file given with --database-file"
                );
            }
            return Ok(Some(url.clone()));
        }
        if let Some(path) = &self.database_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the database URL file {}", path.display()))?;
            let url = text.trim();
            if url.is_empty() {
                bail!("the database URL file {} is empty", path.display());
            }
            return Ok(Some(url.to_owned()));
        }
        Ok(std::env::var(DATABASE_URL_ENV).ok().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()))
    }

    /// The store and a service over it that seals TOTP secrets.
    fn service(&self, node: &str) -> Result<musubi_service::Service> {
        let store = self.open()?;
        sealing_service(store, node, secrets_key(self.secrets_key.as_deref(), &self.data)?)
    }

    fn open(&self) -> Result<Store> {
        musubi_store::private_dir(&self.data)
            .with_context(|| format!("cannot create data directory {}", self.data.display()))?;
        let url = self.database_url()?;
        let store = Store::open(url.as_deref(), &self.data).context("cannot open the store")?;
        if let Ok(mut opened) = OPENED.lock()
            && opened.is_none()
        {
            *opened = Some((self.clone(), store.audit_head()?.0));
        }
        Ok(store)
    }

    /// The key for collected resource ids (read, or created on first start).
    fn id_key(&self) -> Result<musubi_service::ids::IdKey> {
        load_id_key(self.id_key.as_deref(), &self.data)
    }
}

/// Reads (or creates) the key for collected ids at `path`, by default beside `data`.
pub(crate) fn load_id_key(path: Option<&Path>, data: &Path) -> Result<musubi_service::ids::IdKey> {
    let path = path.map(Path::to_owned).unwrap_or_else(|| musubi_service::ids::IdKey::default_path(data));
    musubi_service::ids::IdKey::load_or_create(&path)
        .with_context(|| format!("cannot read or create the id key {}", path.display()))
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
        /// Certificate revocation lists (files, PEM or DER, or directories of *.crl / *.pem /
        /// *.der; repeatable) the signers' certificates are checked against. An issuer without a
        /// CRL leaves the revocation status unknown: the signature is accepted and shown as
        /// 失効確認なし.
        #[arg(long = "signature-crl", value_name = "FILE")]
        signature_crls: Vec<PathBuf>,
        /// Delete what the retention rules say has expired, every hour (off by default: it really
        /// deletes clinical data; `musubi retention sweep` runs it once).
        #[arg(long)]
        retention_sweep: bool,
        /// Memory (MiB) for parsed records kept between requests: the patient page, the
        /// emergency summary and its PDF of a long history read them all (0 turns it off).
        #[arg(long, default_value_t = 256, env = "MUSUBI_RECORD_CACHE_MIB")]
        record_cache_mib: u64,
        #[command(flatten)]
        anchor: audit::AnchorArgs,
        #[command(flatten)]
        tls: TlsArgs,
        /// Connections served at once; one more is answered 503 with Retry-After.
        #[arg(long, default_value_t = 1024, env = "MUSUBI_MAX_CONNECTIONS")]
        max_connections: usize,
    },
    /// Network settings: `network.participation` (`opt-in` | `per-visit`), `emergency.hours`
    /// (1–12).
    Setting {
        #[command(flatten)]
        store: StoreArgs,
        /// The setting's key.
        key: String,
        /// The new value (without it, the current value is printed).
        value: Option<String>,
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
    /// Print the current one-time code of a TOTP secret read from standard input (for trying
    /// the demo without an authenticator app; the secret never goes on the command line).
    Totp,
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
        command: audit::AuditCommand,
    },
    /// Collect SS-MIX2 storage and UKE receipt files; show the quarantine.
    Collect {
        #[command(subcommand)]
        command: collect::CollectCommand,
    },
    /// Ids of collected resources: move those still under deterministic ids to keyed ones.
    Ids {
        #[command(subcommand)]
        command: ids::IdsCommand,
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

/// HTTPS and mutual TLS for `serve`.
#[derive(Args, Clone, Default)]
struct TlsArgs {
    /// Serve HTTPS (with HSTS) with this certificate chain (PEM, leaf first). Without it Musubi
    /// serves plain HTTP, which it allows only on a loopback address.
    #[arg(long, env = "MUSUBI_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MUSUBI_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: the CA (PEM) that signs the facilities' client certificates. Every system
    /// token must then come over a connection with its own facility's certificate (the
    /// 医療機関コード in the subject serialNumber, or as the CN).
    #[arg(long, env = "MUSUBI_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Refuse TLS connections without a client certificate (browsers too); by default only
    /// system tokens need one.
    #[arg(long, requires = "client_ca")]
    require_client_cert: bool,
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
        /// Lifetime: days (90d), hours (12h) or minutes (30m); rotate before it ends.
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Issue a new secret for the system token NAME (same facility). The old secret keeps
    /// working for the overlap only (default 1 day, so the facility's system can be switched
    /// over; `--overlap 0m` ends it at once).
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// The token's name.
        name: String,
        /// Lifetime of the new secret.
        #[arg(long, default_value = "90d")]
        expires: String,
        /// How long the old secret stays valid.
        #[arg(long, default_value = "1d")]
        overlap: String,
    },
    /// List tokens (names, facilities, expiry; never the tokens).
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

/// Writes the bootstrap (administrator) token to `dir/admin-token` (mode 0600) while no
/// operator account exists and the store has no valid one. The token can do exactly one thing:
/// create the first operator account (the server refuses it everywhere else); creating that
/// account revokes it, and from then on no token is written (a revoked one left in the file is
/// removed).
pub(crate) fn ensure_admin_token(store: &Store, dir: &Path) -> Result<Option<PathBuf>> {
    let path = dir.join("admin-token");
    if store.read(|r| r.users())?.iter().any(|u| u.profession == musubi_service::login::OPERATOR_PROFESSION) {
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            tracing::info!(path = %path.display(), "removed the revoked bootstrap token (an operator exists)");
        }
        return Ok(None);
    }
    let now = musubi_fhir::datetime::now_ms();
    if store.read(|r| r.tokens())?.iter().any(|t| t.kind == "admin" && t.active_at(now)) {
        return Ok(None);
    }
    let token = musubi_server::auth::issue(store, "admin", None, "admin")?;
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
    pub signature_crls: Vec<PathBuf>,
    pub retention_sweep: bool,
    pub record_cache_mib: u64,
    /// The key file sealing TOTP secrets (default: secrets.key in the data directory).
    pub secrets_key: Option<PathBuf>,
    /// Connections served at once.
    pub max_connections: usize,
    tls: TlsArgs,
    /// The demo: plain HTTP is allowed on any address.
    pub demo: bool,
    /// The network's secret for collected resource ids.
    pub id_key: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            base_url: None,
            body_limit_mib: 64,
            hpki_roots: Vec::new(),
            signature_crls: Vec::new(),
            retention_sweep: false,
            record_cache_mib: musubi_service::DEFAULT_RECORD_CACHE_BYTES >> 20,
            secrets_key: None,
            max_connections: musubi_server::limits::Limits::default().max_connections,
            tls: TlsArgs::default(),
            demo: false,
            id_key: None,
        }
    }
}

pub(crate) async fn run_server(
    store: Store,
    data: &Path,
    listen: &str,
    opts: ServeOptions,
    anchoring: audit::Anchoring,
) -> Result<()> {
    let ServeOptions {
        base_url,
        body_limit_mib,
        hpki_roots,
        signature_crls,
        retention_sweep,
        record_cache_mib,
        secrets_key: key_path,
        max_connections,
        tls,
        demo,
        id_key,
    } = opts;
    // TLS settings are checked before anything else starts, so a bad file fails at once.
    let tls_config = match (&tls.tls_cert, &tls.tls_key) {
        (Some(cert), Some(key)) => Some(
            musubi_server::tls::server_config(&musubi_server::tls::TlsFiles {
                cert,
                key,
                client_ca: tls.client_ca.as_deref(),
                require_client_cert: tls.require_client_cert,
            })
            .map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
        ),
        _ => None,
    };
    if let Some(p) = ensure_admin_token(&store, data)? {
        tracing::info!(path = %p.display(), "wrote the administrator token (first start); keep it secret");
        eprintln!(
            "管理者トークンを {} に書き出しました（初回起動）。このトークンでできるのは最初の運営者アカウントの作成だけです（ウェブの /admin/login、または POST /api/admin/operators）。作成するとトークンは失効します。",
            p.display()
        );
    }
    let node = hostname();
    audit::warn_if_audit_mutable(&store)?;
    warn_if_deterministic_ids(&store)?;
    let key = secrets_key(key_path.as_deref(), data)?;
    let id_key = load_id_key(id_key.as_deref(), data)?;
    let service = sealing_service(store, &node, key)?
        .with_record_cache(record_cache_mib.saturating_mul(1 << 20))
        .with_id_key(id_key);
    if !hpki_roots.is_empty() || !signature_crls.is_empty() {
        let crls = musubi_service::signature::Crls::load(&signature_crls)
            .map_err(|e| anyhow::anyhow!("cannot load the signature CRLs: {e}"))?;
        let roots = musubi_service::signature::TrustRoots::load(&hpki_roots)
            .map_err(|e| anyhow::anyhow!("cannot load the HPKI roots: {e}"))?
            .with_crls(crls);
        tracing::info!(
            roots = roots.len(),
            crls = ?roots.crl_issuers(),
            "signature trust roots and revocation lists loaded"
        );
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
    let config = musubi_server::ServerConfig {
        base_url,
        body_limit: body_limit_mib * 1024 * 1024,
        limits: musubi_server::limits::Limits { max_connections, ..Default::default() },
        https: tls_config.is_some(),
        bind_system_tokens: tls_config.is_some() && tls.client_ca.is_some(),
        ..Default::default()
    };
    let state = musubi_server::AppState::new(service, config);
    anchoring.start().await?;
    // The signal handlers first: a SIGTERM as soon as the port answers still stops cleanly.
    let stop = musubi_server::shutdown_signal();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    match tls_config {
        Some(tls_config) => {
            let mtls = if tls.client_ca.is_some() { " with client certificates (mutual TLS)" } else { "" };
            tracing::info!(%addr, "serving the FHIR API at /fhir over HTTPS{mtls}");
            eprintln!("Musubi FHIR API: https://{addr}/fhir");
            musubi_server::serve_on(listener, state, Some(tls_config), stop).await?;
        }
        None => {
            // Health data never crosses a network in the clear: plain HTTP only on this
            // machine (behind a TLS-terminating proxy on the same host) or for the demo.
            if !demo && !musubi_server::tls::is_loopback(&addr) {
                bail!(
                    "refusing to serve plain HTTP on {addr}, which is not a loopback address: give --tls-cert and --tls-key (or listen on 127.0.0.1 behind a TLS proxy)"
                );
            }
            tracing::warn!(%addr, demo, "serving plain HTTP without TLS: only for loopback and the demo");
            eprintln!("Musubi FHIR API: http://{addr}/fhir（TLS なしの平文 HTTP: ループバックとデモ専用です）");
            musubi_server::serve_on(listener, state, None, stop).await?;
        }
    }
    anchoring.stop().await
}

/// Warns when collected resources are still stored under the collectors' deterministic ids (a
/// store from before keyed ids): anyone can compute those. One `LIKE` that stops at the first,
/// until it finds none (then a setting remembers it).
fn warn_if_deterministic_ids(store: &Store) -> Result<()> {
    let t = std::time::Instant::now();
    let remain = store.read(|r| r.deterministic_ids_remain())?;
    tracing::debug!(ms = t.elapsed().as_secs_f64() * 1e3, remain, "looked for deterministic ids");
    let setting = musubi_store::rekey::ALL_KEYED_SETTING;
    if !remain && store.setting(setting)?.is_none() {
        // None now means none ever again: later starts need not look.
        store.put_setting(setting.to_owned(), musubi_fhir::datetime::now_ms().to_string())?;
    }
    if remain {
        tracing::warn!(
            "collected resources are still stored under deterministic (computable) ids: stop the server and run `musubi ids rekey`"
        );
        eprintln!(
            "警告: 収集したリソースの一部が、施設コードと患者番号から計算できる ID のまま保存されています。サーバーを停止して musubi ids rekey を実行してください。"
        );
    }
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
    // The server anchors by itself; the audit commands are about anchors.
    let one_shot = !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. } | Command::Audit { .. });
    let result = run(cli.command);
    if one_shot {
        audit::anchor_after_command();
    }
    result
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve {
            store,
            listen,
            base_url,
            body_limit_mib,
            hpki_roots,
            signature_crls,
            retention_sweep,
            record_cache_mib,
            anchor,
            max_connections,
            tls,
        } => {
            let s = store.open()?;
            let anchoring = audit::Anchoring::from_args(&s, &store.data, &anchor)?;
            let opts = ServeOptions {
                base_url,
                body_limit_mib,
                hpki_roots,
                signature_crls,
                retention_sweep,
                record_cache_mib,
                secrets_key: store.secrets_key.clone(),
                max_connections,
                tls,
                demo: false,
                id_key: store.id_key.clone(),
            };
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run_server(
                s,
                &store.data,
                &listen,
                opts,
                anchoring,
            ))
        }
        Command::Setting { store, key, value } => {
            let svc = musubi_service::Service::new(store.open()?, "cli");
            let describe = |e: musubi_service::ApiError| anyhow::anyhow!("{}", musubi_service::import::describe(&e));
            if let Some(v) = value {
                svc.change_setting(&operator(), &key, &v).map_err(describe)?;
            }
            println!("{key} = {}", svc.setting_value(&key).map_err(describe)?);
            Ok(())
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
        Command::Totp => {
            let mut secret = String::new();
            std::io::stdin().read_line(&mut secret).context("cannot read the secret from standard input")?;
            if secret.trim().is_empty() {
                bail!("give the base32 secret on standard input, e.g. `musubi totp < secret.txt`");
            }
            let code = musubi_service::people::totp_code_now(secret.trim())
                .map_err(|e| anyhow::anyhow!("{}", musubi_service::import::describe(&e)))?;
            println!("{code}");
            Ok(())
        }
        Command::Token { command } => match command {
            TokenCommand::Issue { store, facility, name, expires } => {
                let code: musubi_domain::FacilityCode = facility.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                if name.trim().is_empty() {
                    bail!("--name must not be empty");
                }
                let lifetime =
                    musubi_server::auth::parse_lifetime(&expires).map_err(|e| anyhow::anyhow!("--expires {e}"))?;
                let s = store.open()?;
                let now = musubi_fhir::datetime::now_ms();
                if s.read(|r| r.tokens())?.iter().any(|t| t.name == name && t.active_at(now)) {
                    bail!("a token named {name:?} already exists; rotate or revoke it, or choose another name");
                }
                let until = now + lifetime;
                let token = musubi_server::auth::issue_expiring(&s, "system", Some(&code), &name, Some(until))?;
                eprintln!(
                    "医療機関 {code} のシステム {name:?} のトークンを発行しました（有効期限 {}）。この表示の後は再表示できません。",
                    musubi_fhir::datetime::format_instant(until)
                );
                println!("{token}");
                Ok(())
            }
            TokenCommand::Rotate { store, name, expires, overlap } => {
                let lifetime =
                    musubi_server::auth::parse_lifetime(&expires).map_err(|e| anyhow::anyhow!("--expires {e}"))?;
                let overlap =
                    musubi_server::auth::parse_lifetime(&overlap).map_err(|e| anyhow::anyhow!("--overlap {e}"))?;
                let s = store.open()?;
                let now = musubi_fhir::datetime::now_ms();
                let Some(token) = musubi_server::auth::rotate(&s, &name, Some(now + lifetime), now + overlap, now)?
                else {
                    bail!("no active token named {name:?}");
                };
                eprintln!(
                    "トークン {name:?} を更新しました（新しいトークンの有効期限 {}）。古いトークンは {} まで使えます。この表示の後は再表示できません。",
                    musubi_fhir::datetime::format_instant(now + lifetime),
                    musubi_fhir::datetime::format_instant(now + overlap)
                );
                println!("{token}");
                Ok(())
            }
            TokenCommand::List { store } => {
                let s = store.open()?;
                let now = musubi_fhir::datetime::now_ms();
                for t in s.read(|r| r.tokens())? {
                    let state = if t.revoked {
                        "revoked"
                    } else if t.active_at(now) {
                        "active"
                    } else {
                        "expired"
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t.name,
                        t.kind,
                        t.facility.as_deref().unwrap_or("-"),
                        musubi_fhir::datetime::format_instant(t.created),
                        t.expires.map_or_else(|| "no expiry".into(), musubi_fhir::datetime::format_instant),
                        state
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
        Command::Audit { command } => audit::run(command),
        Command::Collect { command } => collect::run(command),
        Command::Ids { command } => ids::run(command),
        Command::Import { store, paths, journal, quiet } => {
            import::run(&store.open()?, &store.data, &paths, journal.as_deref(), quiet)
        }
    }
}
