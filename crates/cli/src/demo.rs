//! `musubi demo`: a ready region on the embedded store. On first run it generates a small
//! synthetic region (a few hundred people, several facilities), loads each facility's JP-CLINS
//! submissions as that facility's system, issues system tokens, creates logins (clinicians, a
//! patient and a named operator, so no bootstrap token is ever written) and prints a short
//! tour; later runs reuse it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use musubi_domain::Profession;
use musubi_fhir::ResourceType;
use musubi_gate::Actor;
use musubi_service::import::{ImportStats, NoProgress};
use musubi_service::people::{NewUser, Registration};
use musubi_service::{Ctx, Service};
use musubi_store::Store;
use musubi_synth::FacilityType;
use serde_json::Value;

const DEMO_PERSONS: u64 = 300;
const DEMO_SEED: u64 = 2026;

pub fn run(data: &Path, listen: &str) -> Result<()> {
    musubi_store::private_dir(data).with_context(|| format!("cannot create {}", data.display()))?;
    let store = Store::open_sqlite(data)?;
    let fresh = store.setting("demo.loaded")?.is_none();
    if fresh {
        load(&store, data, listen)?;
    }
    let tour = std::fs::read_to_string(data.join("demo-tour.txt")).unwrap_or_default();
    eprintln!("{tour}");
    let anchoring = crate::audit::Anchoring::demo(&store, data)?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(crate::run_server(
        store,
        data,
        listen,
        crate::ServeOptions { demo: true, ..crate::ServeOptions::default() },
        anchoring,
    ))
}

/// The password of every demo account (synthetic region only; printed in the tour).
pub const DEMO_PASSWORD: &str = "Musubi-demo-2026";
/// The login of the demo's operator account, and its name.
pub const DEMO_OPERATOR: &str = "operator";
const DEMO_OPERATOR_NAME: &str = "結 運営（デモ）";

fn load(store: &Store, data: &Path, listen: &str) -> Result<()> {
    let web = format!("http://{listen}");
    eprintln!("デモ地域を生成しています（{DEMO_PERSONS} 人、合成データ）…");
    let out = data.join("synth");
    let mut opts = musubi_synth::SynthOptions::new(DEMO_PERSONS, DEMO_SEED, &out);
    opts.formats.ssmix2 = false;
    opts.formats.uke = false;
    musubi_synth::generate(&opts, &musubi_synth::NoProgress).map_err(|e| anyhow::anyhow!("{e}"))?;
    let region = musubi_synth::region(DEMO_SEED, DEMO_PERSONS);
    let service = crate::sealing_service(store.clone(), "demo", crate::secrets_key(None, data)?)?;
    let op = Ctx::operator("demo");
    let describe = |e: musubi_service::ApiError| anyhow::anyhow!(musubi_service::import::describe(&e));

    // The registry first: the gate places patients and facilities in their 二次医療圏 from it.
    for f in &region.facilities {
        let Some(area) = region.areas.get(usize::from(f.area)) else { continue };
        let row = musubi_store::FacilityRow {
            code: f.code.to_string(),
            name: f.name.clone(),
            class: facility_class(f.kind).to_owned(),
            prefecture: i64::from(f.prefecture),
            area: area_id(area),
            area_name: area.name.to_owned(),
            discloses: f.discloses,
            views: f.views,
        };
        let cities = area.cities.iter().map(|c| c.name.to_owned()).collect();
        service.register_facility(&op, row, cities).map_err(describe)?;
    }

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
    // Relink with a model trained on the loaded region (links were made on every write).
    let (records, persons, reviews) = service.mpi_rebuild(&op).map_err(describe)?;
    // The network is opt-in (参加同意): the demo's synthetic patients all consented to take
    // part, so that the tour shows shared records.
    store.participation_for_everyone(musubi_fhir::datetime::now_ms(), "demo".into())?;

    let pick = pick_showcase(store, &region)?;
    let mut accounts = Vec::new();
    if let Some(p) = &pick {
        for (facility, profession) in &p.staff {
            let Some(u) = region.users.iter().find(|u| u.facility == facility.index && u.profession == *profession)
            else {
                continue;
            };
            let enrolled = service
                .create_user(
                    &op,
                    NewUser {
                        login: u.login.clone(),
                        name: u.name.clone(),
                        kana: u.kana.clone(),
                        profession: u.profession,
                        facilities: vec![facility.code.to_string()],
                        password: DEMO_PASSWORD.to_owned(),
                    },
                )
                .map_err(describe)?;
            accounts.push(DemoAccount {
                login: u.login.clone(),
                who: format!("{}（{}、{}）", u.name, profession_ja(u.profession), facility.name),
                facility: facility.code.to_string(),
                totp_secret: enrolled.totp_secret,
            });
        }
    }
    let patient_account = match &pick {
        Some(p) => register_showcase_patient(&service, store, &p.patient_id)?,
        None => None,
    };
    // The network's operator: a named account with password and one-time code, like the
    // clinicians' (it also means the demo never writes a bootstrap token).
    let operator =
        service.create_operator_enrolled(&op, DEMO_OPERATOR, DEMO_OPERATOR_NAME, DEMO_PASSWORD).map_err(describe)?;
    let mut tour = String::new();
    tour.push_str("=== Musubi デモ地域 ===\n");
    tour.push_str(&format!(
        "合成データ: {} 人、{} 施設、取り込み {} 件（却下 {} 件）、患者登録 {} 件を {} 人に名寄せ（確認待ち {} 件）。実在の患者データは含みません。\n\n",
        DEMO_PERSONS,
        region.facilities.len(),
        stats.created + stats.updated,
        stats.rejected.len(),
        records,
        persons,
        reviews
    ));
    tour.push_str(&format!("ログインはすべてパスワード {DEMO_PASSWORD} とワンタイムコード（TOTP）です。\n"));
    tour.push_str(
        "ワンタイムコードは認証アプリに秘密鍵を登録するか、`echo <秘密鍵> | musubi totp` で表示できます。\n\n",
    );
    tour.push_str(&format!("医療者（{web}/login）:\n"));
    for a in &accounts {
        tour.push_str(&format!("  {}  {}  施設 {}  秘密鍵 {}\n", a.login, a.who, a.facility, a.totp_secret));
    }
    if let Some((login, name, secret)) = &patient_account {
        tour.push_str(&format!("\n患者ポータル（{web}/portal）:\n  {login}  {name} さん  秘密鍵 {secret}\n"));
        if let Some(p) = &pick {
            tour.push_str(&format!("  病院での患者 ID: {}\n", p.patient_id));
        }
        tour.push_str("  上の医療者はこの方の診療に関わっています。医師でログインして患者検索から開き、救急用サマリ（PDF）を確かめ、\n");
        tour.push_str("  ポータルでは開示の設定を変えて、誰がいつ見たか（閲覧履歴）を確認できます。\n");
    }
    tour.push_str(&format!(
        "\n運営者（{web}/login?next=/admin）:\n  {DEMO_OPERATOR}  {DEMO_OPERATOR_NAME}  秘密鍵 {}\n",
        operator.totp_secret
    ));
    tour.push_str("  名寄せの確認待ち一覧、施設と利用者、監査ログの報告、緊急時アクセスの事後確認。\n\n");
    for (code, name, token) in &tokens {
        tour.push_str(&format!("{name}（{code}）のシステムトークン: {token}\n"));
    }
    if let Some((code, name, token)) = tokens.first() {
        tour.push_str(&format!("\nFHIR API を試す（{name} {code} のシステムとして）:\n"));
        tour.push_str(&format!("  export TOKEN={token}\n"));
        tour.push_str(&format!("  curl -H \"Authorization: Bearer $TOKEN\" {web}/fhir/metadata\n"));
        tour.push_str(&format!("  curl -H \"Authorization: Bearer $TOKEN\" '{web}/fhir/Patient?_count=5'\n"));
        tour.push_str(&format!(
            "  curl -H \"Authorization: Bearer $TOKEN\" '{web}/fhir/Condition?patient=<id>&_sort=-date'\n"
        ));
        tour.push_str(
            "施設のトークンでは、その施設が送ったデータだけが見えます（アクセスはすべて監査ログに記録され、運営者が監査レポートで確認できます）。\n",
        );
    }
    if let Ok(audit_dir) = crate::audit::demo_audit_dir(data) {
        tour.push_str(&format!(
            "監査ログの検証（署名アンカーはデータディレクトリの外 {} に記録されます）:\n  musubi audit verify --data {} --audit-pubkey {}\n",
            audit_dir.display(),
            data.display(),
            audit_dir.join("anchor.key.pub").display()
        ));
    }
    tour.push_str(&format!("生成の内訳: {}\n", data.join("synth/manifest.json").display()));
    write_private(&data.join("demo-tour.txt"), &tour)?;
    // The same accounts for scripts (and the demo's own test).
    let machine = serde_json::json!({
        "password": DEMO_PASSWORD,
        "users": accounts.iter().map(|a| serde_json::json!({
            "login": a.login, "facility": a.facility, "totp_secret": a.totp_secret, "who": a.who,
        })).collect::<Vec<_>>(),
        "patient": patient_account.as_ref().map(|(login, _, secret)| serde_json::json!({
            "login": login, "totp_secret": secret,
            "patient_id": pick.as_ref().map(|p| p.patient_id.clone()),
        })),
        "operator": {"login": DEMO_OPERATOR, "totp_secret": operator.totp_secret},
        "system_tokens": tokens.iter().map(|(code, _, token)| serde_json::json!({
            "facility": code.to_string(), "token": token,
        })).collect::<Vec<_>>(),
    });
    write_private(&data.join("demo-accounts.json"), &serde_json::to_string_pretty(&machine)?)?;
    if !stats.rejected.is_empty() {
        let path = data.join("quarantine");
        musubi_store::private_dir(&path)?;
        let mut lines = String::new();
        for r in &stats.rejected {
            lines.push_str(&serde_json::json!({"file": r.file, "line": r.line, "reason": r.reason}).to_string());
            lines.push('\n');
        }
        std::io::Write::write_all(
            &mut musubi_store::private_create(&path.join("demo-import.ndjson"))?,
            lines.as_bytes(),
        )?;
    }
    store.put_setting("demo.loaded".into(), musubi_fhir::datetime::now_ms().to_string())?;
    Ok(())
}

/// The tour holds the demo's secrets: readable by the owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    crate::write_secret(path, text.trim_end())
}

struct DemoAccount {
    login: String,
    who: String,
    facility: String,
    totp_secret: String,
}

/// The person the tour is about: seen at several facilities, one of them a hospital whose
/// staff get the demo logins.
struct Showcase {
    patient_id: String,
    staff: Vec<(musubi_synth::Facility, Profession)>,
}

fn pick_showcase(store: &Store, region: &musubi_synth::Region) -> Result<Option<Showcase>> {
    let links = store.read(|r| r.mpi_links())?;
    let by_code: HashMap<String, &musubi_synth::Facility> =
        region.facilities.iter().map(|f| (f.code.to_string(), f)).collect();
    let mut persons: BTreeMap<&str, Vec<&musubi_store::mpi::LinkRow>> = BTreeMap::new();
    for l in &links {
        persons.entry(l.person_id.as_str()).or_default().push(l);
    }
    // Most facilities first; a viewing hospital among them; ties by person id (deterministic).
    let mut best: Option<(usize, &str)> = None;
    for (person, rows) in &persons {
        let hospital = rows.iter().any(|l| {
            by_code.get(&l.facility).is_some_and(|f| f.kind == FacilityType::Hospital && f.views && f.discloses)
        });
        if hospital && rows.len() >= 2 && best.is_none_or(|(n, _)| rows.len() > n) {
            best = Some((rows.len(), person));
        }
    }
    let Some((_, person)) = best else { return Ok(None) };
    let rows = &persons[person];
    let Some(hospital_link) = rows
        .iter()
        .find(|l| by_code.get(&l.facility).is_some_and(|f| f.kind == FacilityType::Hospital && f.views && f.discloses))
    else {
        return Ok(None);
    };
    let hospital = by_code[&hospital_link.facility];
    let mut staff = vec![
        (hospital.clone(), Profession::Doctor),
        (hospital.clone(), Profession::Nurse),
        (hospital.clone(), Profession::Clerk),
    ];
    for (kind, profession) in
        [(FacilityType::Pharmacy, Profession::Pharmacist), (FacilityType::DentalClinic, Profession::Dentist)]
    {
        let used = rows.iter().filter_map(|l| by_code.get(&l.facility)).find(|f| f.kind == kind && f.views);
        let any = region.facilities.iter().find(|f| f.kind == kind && f.views && f.area == hospital.area);
        if let Some(f) = used.copied().or(any) {
            staff.push((f.clone(), profession));
        }
    }
    Ok(Some(Showcase { patient_id: hospital_link.patient_id.clone(), staff }))
}

/// Registers the showcase patient's portal account from the hospital's registration.
fn register_showcase_patient(
    service: &Service,
    store: &Store,
    patient_id: &str,
) -> Result<Option<(String, String, String)>> {
    let id = patient_id.to_owned();
    let Some(text) = store.read(|r| r.version(ResourceType::Patient, &id, None))?.and_then(|v| v.content) else {
        return Ok(None);
    };
    let p: Value = serde_json::from_str(&text)?;
    // The one Patient reader: the same name, kana and address every page shows.
    let now = musubi_fhir::datetime::now_ms();
    let who = musubi_record::identity::PatientIdentity::of_patient(&p, now);
    let address = musubi_record::identity::chosen_address(&p, now);
    let (false, false, Some(address)) = (who.insurance.is_empty(), who.birth_date.is_empty(), address) else {
        return Ok(None);
    };
    let (name, kana, insurance, birth) =
        (who.name.as_str(), who.kana.as_str(), who.insurance.as_str(), who.birth_date.as_str());
    let login = "demo-patient".to_owned();
    // As at a desk: the operator issues the activation code after an identity check.
    let code = service
        .issue_activation_code(&musubi_service::Ctx::operator("demo"), patient_id)
        .map_err(|e| anyhow::anyhow!(musubi_service::import::describe(&e)))?;
    let reg = Registration {
        name: name.to_owned(),
        kana: kana.to_owned(),
        sex: p["gender"].as_str().unwrap_or("unknown").to_owned(),
        birth_date: birth.to_owned(),
        prefecture: address["state"].as_str().unwrap_or_default().to_owned(),
        city: address["city"].as_str().unwrap_or_default().to_owned(),
        insurance_id: insurance.to_owned(),
        login: login.clone(),
        password: DEMO_PASSWORD.to_owned(),
        activation_code: code.code,
    };
    let enrolled =
        service.register_patient(reg, None).map_err(|e| anyhow::anyhow!(musubi_service::import::describe(&e)))?;
    Ok(Some((login, name.to_owned(), enrolled.totp_secret)))
}

fn facility_class(kind: FacilityType) -> &'static str {
    match kind {
        FacilityType::Hospital => "hospital",
        FacilityType::Clinic => "clinic",
        FacilityType::DentalClinic => "dental",
        FacilityType::Pharmacy => "pharmacy",
        FacilityType::Lab => "other",
    }
}

/// The registry id of a 二次医療圏: prefecture number and the area's index.
fn area_id(area: &musubi_synth::region::Area) -> String {
    format!("{:02}{:02}", area.prefecture, area.index)
}

fn profession_ja(p: Profession) -> &'static str {
    match p {
        Profession::Doctor => "医師",
        Profession::Dentist => "歯科医師",
        Profession::Pharmacist => "薬剤師",
        Profession::Nurse => "看護師",
        Profession::OtherLicensed => "その他の医療職",
        Profession::Clerk => "事務",
    }
}
