//! How fast the clinician's pages are for a patient with a long history: 5 years at 10
//! facilities (visits, admissions, labs, prescriptions, notes — several thousand records), on a
//! real server over an embedded store. For the patient page, the emergency summary and its PDF
//! it reports the server's own time per request (the `Server-Timing` header the pages send:
//! from the request to the response head, so the gate, the audit record, the page model and
//! the HTML or PDF are all in it) as p50 / p90 / p99 / max, and the round trip seen by the
//! client. It also times `musubi_pdf::render_summary` alone.
//!
//! It runs with mimalloc, the allocator of the `musubi` binary (with the system allocator the
//! service's whole-record read is about 60% slower on the blocking pool's threads than on the
//! main thread: freed memory goes back to the system and is faulted in again per request).
//!
//! `cargo bench -p musubi-web --bench pages` (set `MUSUBI_BENCH_N` for more samples).

#[path = "../tests/it/common/mod.rs"]
mod common;

// The allocator of the `musubi` binary (`musubi serve`), so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use common::*;
use musubi_domain::Profession;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Stats {
    name: &'static str,
    server: Vec<f64>,
    client: Vec<f64>,
    bytes: usize,
}

impl Stats {
    fn print(&mut self) {
        self.server.sort_by(f64::total_cmp);
        self.client.sort_by(f64::total_cmp);
        let s = &self.server;
        let c = &self.client;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} KB |",
            self.name,
            s.len(),
            pct(s, 0.5),
            pct(s, 0.9),
            pct(s, 0.99),
            s[s.len() - 1],
            pct(c, 0.5),
            pct(c, 0.99),
            self.bytes / 1024
        );
    }
}

fn measure(web: &Web, name: &'static str, path: &str, n: usize) -> Stats {
    for _ in 0..5 {
        let p = web.get(path);
        assert_eq!(p.status, 200, "{path}: {}", p.text());
    }
    let mut st = Stats { name, server: Vec::with_capacity(n), client: Vec::with_capacity(n), bytes: 0 };
    for _ in 0..n {
        let t = Instant::now();
        let p = web.get(path);
        st.client.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(p.status, 200, "{path}: {}", p.text());
        let timing = p.header("server-timing");
        let dur: f64 =
            timing.strip_prefix("app;dur=").and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("{timing}"));
        st.server.push(dur);
        st.bytes = p.bytes.len();
    }
    st
}

fn main() {
    // Internal errors are logged by the service: show them (a failed request stops the run).
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let n: usize = std::env::var("MUSUBI_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let net = Net::start();
    let codes = [
        "1318814790",
        "1312345678",
        "1312345679",
        "1312345680",
        "1318814791",
        "1312345681",
        "1312345682",
        "1348814790",
        "1318814792",
        "1312345683",
    ];
    let mut sites = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let hospital = code.starts_with("131881");
        let class = if code.starts_with("134") {
            "pharmacy"
        } else if hospital {
            "hospital"
        } else {
            "clinic"
        };
        net.facility(code, &format!("結び医療機関{}", i + 1), class, "1301", if i == 0 { &["千代田区"] } else { &[] });
        sites.push(data::Site { facility: (*code).into(), local_id: format!("P-{:04}", i + 1), hospital });
    }
    let secret = net.user("dr-bench", "結城 一郎", Profession::Doctor, &[codes[0]]);
    let plan = data::Plan {
        years: 5,
        visits_per_year: 12,
        now_ms: musubi_fhir::datetime::now_ms(),
        seed: 42,
        uninformed: true,
    };
    let t = Instant::now();
    let bundles = data::history(&data::YUI, &sites, &plan);
    let records: usize = bundles.iter().map(|(_, b)| b["entry"].as_array().map_or(0, Vec::len)).sum();
    let ids = net.load(&bundles);
    println!(
        "loaded {records} records of one person from {} facilities over {} years in {:.1} s",
        codes.len(),
        plan.years,
        t.elapsed().as_secs_f64()
    );
    let patient = ids[codes[0]].clone();

    // For comparison, a patient with an ordinary history: a year at two facilities.
    let hanako = data::Person {
        family: "結",
        given: "花子",
        kana_family: "ムスビ",
        kana_given: "ハナコ",
        gender: "female",
        birth: "1970-05-05",
        insurance: "06139999:1:456:02",
        state: "東京都",
        city: "千代田区",
        line: "大手町2-2-2",
        phone: "03-2222-3333",
    };
    let small_sites =
        [sites[0].clone(), sites[1].clone()].map(|s| data::Site { local_id: format!("{}-H", s.local_id), ..s });
    let small_plan = data::Plan { years: 1, visits_per_year: 6, seed: 7, ..plan.clone() };
    let small_bundles = data::history(&hanako, &small_sites, &small_plan);
    let small_records: usize = small_bundles.iter().map(|(_, b)| b["entry"].as_array().map_or(0, Vec::len)).sum();
    let small = net.load(&small_bundles)[codes[0]].clone();

    // `MUSUBI_BENCH_PROFILE=model`: only the page model and the summary, in a loop, for a
    // profiler (`perf record`); nothing is measured.
    if std::env::var("MUSUBI_BENCH_PROFILE").as_deref() == Ok("model") {
        let ctx = musubi_service::Ctx::operator("bench");
        let rec = net.svc.person_record(&ctx, &patient, "bench").unwrap();
        for _ in 0..n {
            let v = musubi_web::model::patient_view(&rec.person_id, &rec.entries, musubi_fhir::datetime::now_ms());
            let s = musubi_service::summary::build(&rec, &patient, musubi_fhir::datetime::now_ms());
            assert!(!v.labs.is_empty() && !s.labs.items.is_empty());
        }
        return;
    }
    let web = Web::new(&net);
    web.login_clinician("dr-bench", &secret, None);
    let page = format!("/patients/{patient}");

    println!();
    println!("| page | n | server p50 ms | p90 | p99 | max | round trip p50 ms | p99 | size |");
    println!("|---|---|---|---|---|---|---|---|---|");
    measure(&web, "patient page", &page, n).print();
    measure(&web, "emergency summary", &format!("{page}/summary"), n).print();
    measure(&web, "summary PDF", &format!("{page}/summary.pdf"), n.min(100)).print();
    measure(&web, "lab item page (HbA1c)", &format!("{page}/labs/HbA1c-NGSP"), n.min(100)).print();
    println!();
    println!("an ordinary patient ({small_records} records, a year at two facilities):");
    println!();
    println!("| page | n | server p50 ms | p90 | p99 | max | round trip p50 ms | p99 | size |");
    println!("|---|---|---|---|---|---|---|---|---|");
    measure(&web, "patient page", &format!("/patients/{small}"), n).print();
    measure(&web, "emergency summary", &format!("/patients/{small}/summary"), n).print();
    measure(&web, "summary PDF", &format!("/patients/{small}/summary.pdf"), n.min(100)).print();

    // Where a patient page's time goes: the service's whole-record read (gate, audit record,
    // loading and parsing every record) against the page model built from it; the store's
    // row and content reads and the JSON parsing are timed on their own too.
    let user = net.store.read(|r| r.user_by_login("dr-bench")).unwrap().unwrap();
    let doctor = musubi_service::Ctx {
        actor: musubi_gate::Actor::User(musubi_gate::UserActor {
            user_id: user.id.clone(),
            login: user.login.clone(),
            name: user.name.clone(),
            profession: Profession::Doctor,
            facility: codes[0].parse().unwrap(),
        }),
        address: None,
        base_url: "http://localhost/fhir".into(),
    };
    let person = net.store.read(|r| r.person_of_patient(&patient)).unwrap().unwrap();
    let (mut rec_t, mut view_t, mut rows_t, mut contents_t, mut parse_t) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n.min(50) {
        let t = Instant::now();
        let rec = net.svc.person_record(&doctor, &patient, "bench").unwrap();
        rec_t.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let v = musubi_web::model::patient_view(&rec.person_id, &rec.entries, musubi_fhir::datetime::now_ms());
        view_t.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!v.labs.is_empty());
        let t = Instant::now();
        let rows = net.store.read(|r| r.person_records(&person)).unwrap();
        rows_t.push(t.elapsed().as_secs_f64() * 1000.0);
        let keys: Vec<(musubi_fhir::ResourceType, String, i64)> =
            rows.iter().map(|r| (r.rtype, r.id.clone(), r.version)).collect();
        let t = Instant::now();
        let contents = net.store.read(|r| r.contents(&keys)).unwrap();
        contents_t.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let parsed: usize = contents
            .iter()
            .filter_map(|c| c.content.as_deref())
            .map(|c| serde_json::from_str::<serde_json::Value>(c).map(|_| 1).unwrap_or(0))
            .sum();
        parse_t.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(parsed, rows.len());
    }
    // The same read on another thread (the pages run the service on tokio's blocking pool).
    let mut thread_t = Vec::new();
    for _ in 0..n.min(50) {
        let (svc, ctx, pid) = (net.svc.clone(), doctor.clone(), patient.clone());
        let t = Instant::now();
        std::thread::spawn(move || svc.person_record(&ctx, &pid, "bench").unwrap().entries.len()).join().unwrap();
        thread_t.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // The first open of the record after a start: nothing of it parsed yet (a fresh service,
    // so an empty cache of parsed versions; the database's pages are warm all the same).
    let mut cold_t = Vec::new();
    for _ in 0..n.min(20) {
        let svc = musubi_service::Service::new(net.store.clone(), "bench-cold");
        let t = Instant::now();
        let rec = svc.person_record(&doctor, &patient, "bench").unwrap();
        let v = musubi_web::model::patient_view(&rec.person_id, &rec.entries, musubi_fhir::datetime::now_ms());
        cold_t.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!v.labs.is_empty());
    }
    let mut sum_t = Vec::new();
    for _ in 0..n.min(50) {
        let t = Instant::now();
        let s = net.svc.emergency_summary(&doctor, &patient).unwrap();
        sum_t.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!s.medications.items.is_empty());
    }
    println!();
    println!("where the patient page's time goes (p50 of {} runs, ms):", rec_t.len());
    for (name, v) in [
        ("Service::person_record (gate + audit + load + parse)", &mut rec_t),
        ("  store: the person's record rows", &mut rows_t),
        ("  store: their contents", &mut contents_t),
        ("  JSON parsing of the contents", &mut parse_t),
        ("Service::person_record on a fresh thread", &mut thread_t),
        ("model::patient_view (the page model)", &mut view_t),
        ("first open after a start (empty cache): person_record + patient_view", &mut cold_t),
        ("Service::emergency_summary (in process, no HTTP)", &mut sum_t),
    ] {
        v.sort_by(f64::total_cmp);
        println!("- {name}: {:.1}", pct(v, 0.5));
    }

    // The PDF alone: the summary built once (through the gate), rendered many times.
    let ctx = musubi_service::Ctx::operator("bench");
    let summary = net.svc.emergency_summary(&ctx, &patient).unwrap();
    let meta = musubi_pdf::PdfMeta {
        generated_at: musubi_fhir::datetime::now_ms(),
        generated_by: "結城 一郎（医師）".into(),
        facility: "結び医療機関1".into(),
    };
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..n.min(100) {
        let t = Instant::now();
        size = musubi_pdf::render_summary(&summary, &meta).unwrap().len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!();
    println!(
        "render_summary alone: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} KB ({} allergies, {} medications, {} labs in the summary)",
        pct(&times, 0.5),
        pct(&times, 0.99),
        times[times.len() - 1],
        size / 1024,
        summary.allergies.items.len(),
        summary.medications.items.len(),
        summary.labs.items.len()
    );
    println!("records the summary was built from: {}", summary.records_seen);
}
