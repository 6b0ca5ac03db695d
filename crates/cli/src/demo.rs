//! `musubi demo`: a ready region on the embedded store. On first run it generates a small
//! synthetic region (a few hundred people, several facilities), loads each facility's JP-CLINS
//! submissions as that facility's system, issues tokens, and prints a short tour; later runs
//! reuse it.

use std::path::Path;

use anyhow::{Context, Result};
use musubi_gate::Actor;
use musubi_service::import::{ImportStats, NoProgress};
use musubi_service::{Ctx, Service};
use musubi_store::Store;

const DEMO_PERSONS: u64 = 300;
const DEMO_SEED: u64 = 2026;

pub fn run(data: &Path, listen: &str) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let store = Store::open_sqlite(data)?;
    let fresh = store.setting("demo.loaded")?.is_none();
    if fresh {
        load(&store, data)?;
    }
    let tour = std::fs::read_to_string(data.join("demo-tour.txt")).unwrap_or_default();
    eprintln!("{tour}");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(crate::run_server(store, data, listen, None, 64))
}

fn load(store: &Store, data: &Path) -> Result<()> {
    eprintln!("デモ地域を生成しています（{DEMO_PERSONS} 人、合成データ）…");
    let out = data.join("synth");
    let mut opts = musubi_synth::SynthOptions::new(DEMO_PERSONS, DEMO_SEED, &out);
    opts.formats.ssmix2 = false;
    opts.formats.uke = false;
    let manifest = musubi_synth::generate(&opts, &musubi_synth::NoProgress).map_err(|e| anyhow::anyhow!("{e}"))?;
    let region = musubi_synth::region(DEMO_SEED, DEMO_PERSONS);
    crate::ensure_admin_token(store, data)?;
    let service = Service::new(store.clone(), "demo");
    let mut tokens = Vec::new();
    let mut stats = ImportStats::default();
    let fhir_dir = out.join("fhir");
    for f in &region.facilities {
        let file = fhir_dir.join(format!("{}.ndjson", f.code));
        if !file.exists() {
            continue;
        }
        // Each facility's data is submitted by that facility's own system, as in production.
        let name = format!("demo-{}", f.code);
        let ctx = Ctx {
            actor: Actor::System { name: name.clone(), facility: f.code },
            address: None,
            base_url: String::new(),
        };
        let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
        service
            .import_ndjson(&ctx, &file.display().to_string(), reader, &NoProgress, &mut stats)
            .map_err(|e| anyhow::anyhow!(musubi_service::import::describe(&e)))?;
        if tokens.len() < 3 {
            let token = musubi_server::auth::issue(store, "system", Some(&f.code), &name)?;
            tokens.push((f.code, f.name.clone(), token));
        }
    }
    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap_or_default();
    let mut tour = String::new();
    tour.push_str("=== Musubi デモ地域 ===\n");
    tour.push_str(&format!(
        "合成データ: {} 人、{} 施設、取り込み {} 件（却下 {} 件）。実在の患者データは含みません。\n\n",
        DEMO_PERSONS,
        region.facilities.len(),
        stats.created + stats.updated,
        stats.rejected.len()
    ));
    tour.push_str(&format!("管理者トークン: {}\n", admin.trim()));
    for (code, name, token) in &tokens {
        tour.push_str(&format!("{name}（{code}）のシステムトークン: {token}\n"));
    }
    tour.push_str("\n試してみる:\n");
    tour.push_str("  export TOKEN=$(cat ./musubi-demo/admin-token)\n");
    tour.push_str("  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/fhir/metadata\n");
    tour.push_str("  curl -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:8080/fhir/Patient?_count=5'\n");
    tour.push_str(
        "  curl -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:8080/fhir/Condition?patient=<id>&_sort=-date'\n",
    );
    tour.push_str("  curl -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:8080/fhir/AuditEvent?_count=5'\n");
    tour.push_str(
        "施設のトークンでは、その施設が送ったデータだけが見えます（アクセスはすべて監査ログに記録されます）。\n",
    );
    tour.push_str(&format!("生成の内訳: {}\n", data.join("synth/manifest.json").display()));
    let _ = manifest;
    std::fs::write(data.join("demo-tour.txt"), &tour)?;
    if !stats.rejected.is_empty() {
        let path = data.join("quarantine");
        std::fs::create_dir_all(&path)?;
        let mut lines = String::new();
        for r in &stats.rejected {
            lines.push_str(&serde_json::json!({"file": r.file, "line": r.line, "reason": r.reason}).to_string());
            lines.push('\n');
        }
        std::fs::write(path.join("demo-import.ndjson"), lines)?;
    }
    store.put_setting("demo.loaded".into(), musubi_fhir::datetime::now_ms().to_string())?;
    Ok(())
}
