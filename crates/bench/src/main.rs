//! `musubi-bench`: the measurements behind BENCHMARKS.md.
//!
//! - `ingest`: transaction Bundles of 100 resources into the embedded store through the service
//!   (validation, classification, gate, audit, durable commit), and serde_json parsing of the same
//!   bytes for the ratio;
//! - `populate`: fills a store with N synthetic resources through the import path;
//! - `load`: an open-loop HTTP load at a fixed rate against a running server (latency measured
//!   from each request's scheduled start, so a stall is not hidden: no coordinated omission),
//!   over plain HTTP or HTTPS with a client certificate (`--ca`, `--client-cert`, `--client-key`);
//! - `ndjson`: writes a large NDJSON file for the import memory test;
//! - `gate`: the access decision and its audit append per request, and the audit verification rate.

mod gate;
mod http;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

// mimalloc: the ingest path allocates many small JSON nodes; glibc malloc spent about a fifth
// of the time in malloc/free (measured with callgrind).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use musubi_gate::Actor;
use musubi_service::{Ctx, Service};
use musubi_store::Store;
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ingest transaction Bundles into a fresh embedded store.
    Ingest {
        #[arg(long)]
        data: PathBuf,
        /// Number of Bundles.
        #[arg(long, default_value_t = 200)]
        bundles: usize,
        /// Resources per Bundle.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Concurrent submitters.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
    /// Fill a store with synthetic patients and observations through the import path.
    Populate {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        resources: usize,
        /// Write the ids of the Observations (for `load`) here.
        #[arg(long)]
        ids: PathBuf,
    },
    /// The gate per request: decision alone, decision + audit append, audit verification rate.
    Gate {
        /// Data directory of the embedded store (ignored with --database).
        #[arg(long)]
        data: PathBuf,
        /// PostgreSQL URL instead of the embedded store.
        #[arg(long)]
        database: Option<String>,
        /// Requests (decision + audit append).
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// Concurrent callers.
        #[arg(long, default_value_t = 8)]
        threads: usize,
    },
    /// Writes an NDJSON file of about `gib` GiB.
    Ndjson {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3.0)]
        gib: f64,
    },
    /// Open-loop HTTP load against a running server.
    Load {
        /// FHIR base, e.g. http://127.0.0.1:8080/fhir
        #[arg(long)]
        base: String,
        #[arg(long)]
        token: String,
        /// A file of lines `Type/id` to read, or (with --search) patient ids.
        #[arg(long)]
        ids: PathBuf,
        /// Requests per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Search `Observation?patient=…&category=laboratory` instead of reading by id.
        #[arg(long)]
        search: bool,
        #[command(flatten)]
        tls: http::TlsClient,
    },
}

const CODES: [(&str, &str); 4] = [
    ("3D046000001920402", "HbA1c"),
    ("3C025000002327101", "Cre"),
    ("3F015000002327101", "Tcho"),
    ("3B035000002327201", "AST"),
];

fn observation(patient: &str, i: usize, id: Option<String>) -> Value {
    let (code, display) = CODES[i % 4];
    let mut o = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS", "code": code, "display": display}]},
        "subject": {"reference": patient},
        "effectiveDateTime": format!("20{:02}-{:02}-{:02}T09:{:02}:00+09:00", 20 + i % 6, 1 + i % 12, 1 + i % 28, i % 60),
        "valueQuantity": {"value": 5.0 + (i % 50) as f64 / 10.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}],
        "referenceRange": [{"low": {"value": 4.6, "unit": "%"}, "high": {"value": 6.2, "unit": "%"}}]
    });
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o
}

fn patient(i: usize, id: Option<String>) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "identifier": [{"system": format!("urn:oid:1.2.392.100495.20.3.51.1{BENCH_FACILITY}"), "value": format!("B{i:08}")}],
        "name": [
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "IDE"}], "text": "結 太郎", "family": "結", "given": ["太郎"]},
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}], "text": "ムスビ タロウ", "family": "ムスビ", "given": ["タロウ"]}
        ],
        "gender": if i.is_multiple_of(2) { "male" } else { "female" },
        "birthDate": format!("19{:02}-{:02}-{:02}", 30 + i % 70, 1 + i % 12, 1 + i % 28)
    });
    if let Some(id) = id {
        p["id"] = json!(id);
    }
    p
}

/// A transaction of one Patient and `size - 1` Observations referring to it by urn:uuid.
fn transaction(b: usize, size: usize) -> String {
    let puuid = format!("urn:uuid:00000000-0000-4000-8000-{b:012}");
    let mut entries =
        vec![json!({"fullUrl": puuid, "resource": patient(b, None), "request": {"method": "POST", "url": "Patient"}})];
    for i in 1..size {
        entries.push(json!({"resource": observation(&puuid, b * size + i, None), "request": {"method": "POST", "url": "Observation"}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
}

fn ingest(data: PathBuf, bundles: usize, size: usize, threads: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(&data);
    let store = Store::open_sqlite(&data)?;
    let service = Service::new(store, "bench");
    let texts: Vec<String> = (0..bundles).map(|b| transaction(b, size)).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let resources = bundles * size;
    // serde_json alone on the same bytes.
    let t = Instant::now();
    for s in &texts {
        let v: Value = serde_json::from_str(s)?;
        std::hint::black_box(v);
    }
    let parse_secs = t.elapsed().as_secs_f64();
    let ctx =
        Ctx { actor: Actor::Operator { name: "bench".into() }, address: None, base_url: "http://bench/fhir".into() };
    let texts = Arc::new(texts);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (svc, ctx, texts, next) = (service.clone(), ctx.clone(), texts.clone(), next.clone());
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(s) = texts.get(i) else { return Ok(()) };
                    let v: Value = serde_json::from_str(s)?;
                    svc.transaction(&ctx, v).map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest: {resources} resources in {bundles} transaction Bundles of {size} ({:.1} MB), {threads} threads: {:.2} s = {:.0} resources/s; serde_json parse only: {:.0} resources/s; ratio ingest/parse = {:.3}",
        bytes as f64 / 1e6,
        secs,
        resources as f64 / secs,
        resources as f64 / parse_secs,
        parse_secs / secs
    );
    Ok(())
}

/// The facility whose system writes (`populate`) and reads (`scripts/bench`, with a system token
/// of this facility) the measured records; its code is in every benchmark Patient's identifier.
const BENCH_FACILITY: &str = "1318814790";

fn populate(data: PathBuf, resources: usize, ids: PathBuf) -> Result<()> {
    let store = Store::open_sqlite(&data)?;
    let service = Service::new(store, "bench");
    // Written by the facility's own system, as in production: its token reads them back.
    let facility = BENCH_FACILITY.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx =
        Ctx { actor: Actor::System { name: "bench-emr".into(), facility }, address: None, base_url: String::new() };
    let patients = resources / 50;
    let mut buf = Vec::with_capacity(resources * 700);
    let mut id_out = std::io::BufWriter::new(std::fs::File::create(&ids)?);
    for p in 0..patients {
        writeln!(buf, "{}", patient(p, Some(format!("pt{p:07}"))))?;
    }
    for i in 0..(resources - patients) {
        let p = i % patients.max(1);
        let id = format!("ob{i:08}");
        writeln!(buf, "{}", observation(&format!("Patient/pt{p:07}"), i, Some(id.clone())))?;
        writeln!(id_out, "Observation/{id}\tpt{p:07}")?;
    }
    let t = Instant::now();
    let mut stats = musubi_service::import::ImportStats::default();
    service
        .import_ndjson(&ctx, "populate", std::io::Cursor::new(buf), &musubi_service::import::NoProgress, &mut stats)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "populate: {} created, {} rejected in {:.1} s = {:.0} resources/s (NDJSON import path)",
        stats.created,
        stats.rejected.len(),
        secs,
        stats.created as f64 / secs
    );
    Ok(())
}

fn ndjson(out: PathBuf, gib: f64) -> Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let target = (gib * 1024.0 * 1024.0 * 1024.0) as u64;
    let mut written = 0u64;
    let mut i = 0usize;
    while written < target {
        let mut o = observation(&format!("Patient/m{:06}", i % 100_000), i, Some(format!("m{i:09}")));
        // Padding of the size of a real lab result with comments and reference ranges.
        o["note"] =
            json!([{"text": "検体は午前中に採取。溶血なし。前回値と比較して大きな変動はありません。".repeat(4)}]);
        let line = o.to_string();
        writeln!(f, "{line}")?;
        written += line.len() as u64 + 1;
        i += 1;
    }
    println!("ndjson: {i} resources, {:.2} GiB in {}", written as f64 / (1u64 << 30) as f64, out.display());
    Ok(())
}

async fn load(
    base: String,
    token: String,
    ids: PathBuf,
    rate: u64,
    seconds: u64,
    search: bool,
    tls: http::TlsClient,
) -> Result<()> {
    let lines: Vec<String> = std::fs::read_to_string(&ids)?.lines().map(str::to_owned).collect();
    anyhow::ensure!(!lines.is_empty(), "no ids in {}", ids.display());
    let client = Arc::new(http::Pool::new(&base, &tls)?);
    let scheme = tls.describe();
    // The pool speaks paths; the base's path prefix (e.g. /fhir) goes in front of each.
    let prefix = base.split_once("://").and_then(|(_, r)| r.find('/').map(|i| r[i..].to_owned())).unwrap_or_default();
    let hist = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let scheduled = start + interval * n as u32;
        tokio::time::sleep_until(scheduled).await;
        let line = &lines[(n as usize * 7919) % lines.len()];
        let (key, patient) = line.split_once('\t').unwrap_or((line.as_str(), ""));
        let url = if search {
            format!("{prefix}/Observation?patient={patient}&category=laboratory&_count=20")
        } else {
            format!("{prefix}/{key}")
        };
        let (client, hist, errors, token) = (client.clone(), hist.clone(), errors.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let ok = matches!(client.get(&url, &token).await, Ok(200..=299));
            // From the scheduled start: a stalled server cannot hide its queueing delay.
            let micros = scheduled.elapsed().as_micros() as u64;
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if let Ok(mut h) = hist.lock() {
                let _ = h.record(micros.max(1));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = hist.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    println!(
        "load ({}, {scheme}): {} requests in {:.1} s = {:.0} req/s, errors {}; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        if search { "search Observation?patient&category" } else { "read by id" },
        h.len(),
        elapsed,
        h.len() as f64 / elapsed,
        errors.load(std::sync::atomic::Ordering::Relaxed),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.9) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Ingest { data, bundles, size, threads } => ingest(data, bundles, size, threads),
        Cmd::Populate { data, resources, ids } => populate(data, resources, ids),
        Cmd::Ndjson { out, gib } => ndjson(out, gib),
        Cmd::Gate { data, database, requests, threads } => gate::run(data, database, requests, threads.max(1)),
        Cmd::Load { base, token, ids, rate, seconds, search, tls } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(load(base, token, ids, rate, seconds, search, tls)),
    }
}
