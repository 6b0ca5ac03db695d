//! Evaluation of the matcher on synthetic data: generates persons with `musubi-synth`, turns
//! every source patient into the JP Core Patient a facility would send, links them all in one
//! batch, and prints pairwise precision / recall / F1, time and peak memory.
//!
//! ```text
//! mpi-eval --persons 100000 [--seed 7] [--threads 0] [--explain 10]
//!          [--export-csv records.csv]      # normalized records + truth, for Splink
//!          [--online-bench]                # online benchmark (streams records; no batch scoring)
//!          [--check-synth]                 # count distinct persons the generator made indistinguishable
//!          [--dir OUT]                     # read a generated directory (fhir/*.ndjson + truth/) instead
//!          [--namesakes 0.05]              # add namesakes: 同姓同名・同生年月日 strangers living elsewhere
//!          [--no-guards]                   # without the evidence guards (to measure them)
//! ```
//!
//! **Namesakes** (`--namesakes F`): for a fraction F of the persons, a stranger with the same
//! name (kanji and kana as one facility registered it), sex and birth date is added, living in
//! another prefecture (the address of a random resident of another prefecture), with a card of
//! another insurer and their own mobile number, registered at one or two facilities the person
//! never used. They are the hard negatives the strong-field guard is for: nothing but the strong
//! fields tells them apart.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Instant;

use musubi_identify::eval::{pairwise, parse_truth};
use musubi_identify::{Decision, IndexBuilder, LinkConfig, NormalizedRecord, SourceKey, SourceRecord};
use musubi_synth::{SynthOptions, persons, region};

struct Args {
    persons: u64,
    seed: u64,
    threads: usize,
    explain: usize,
    export_csv: Option<String>,
    online: usize,
    dir: Option<String>,
    model_out: Option<String>,
    sweep: Vec<f64>,
    online_bench: bool,
    check_synth: bool,
    namesakes: f64,
    no_guards: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        persons: 10_000,
        seed: 7,
        threads: 0,
        explain: 0,
        export_csv: None,
        online: 0,
        dir: None,
        model_out: None,
        sweep: Vec::new(),
        online_bench: false,
        check_synth: false,
        namesakes: 0.0,
        no_guards: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--persons" => a.persons = v()?.parse().map_err(|e| format!("--persons: {e}"))?,
            "--seed" => a.seed = v()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--threads" => a.threads = v()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--explain" => a.explain = v()?.parse().map_err(|e| format!("--explain: {e}"))?,
            "--online" => a.online = v()?.parse().map_err(|e| format!("--online: {e}"))?,
            "--export-csv" => a.export_csv = Some(v()?),
            "--model-out" => a.model_out = Some(v()?),
            "--dir" => a.dir = Some(v()?),
            "--online-bench" => a.online_bench = true,
            "--check-synth" => a.check_synth = true,
            "--no-guards" => a.no_guards = true,
            "--namesakes" => {
                a.namesakes = v()?.parse().map_err(|e| format!("--namesakes: {e}"))?;
                if !(0.0..=1.0).contains(&a.namesakes) {
                    return Err("--namesakes is a fraction between 0 and 1".into());
                }
            }
            "--sweep" => {
                a.sweep = v()?
                    .split(',')
                    .map(|x| x.trim().parse::<f64>().map_err(|e| format!("--sweep: {e}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

fn rss_mib() -> f64 {
    status_kib("VmRSS:") / 1024.0
}

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0.0)
}

/// Source records and truth from the generator, in memory.
fn synthesize(a: &Args) -> (Vec<SourceRecord>, HashMap<SourceKey, String>) {
    let opts = SynthOptions::new(a.persons, a.seed, std::env::temp_dir().join("mpi-eval-unused"));
    let region = region(opts.seed, opts.persons);
    let mut records = Vec::new();
    let mut truth = HashMap::new();
    for p in persons(&region, &opts) {
        let pid = p.identity.person_id();
        for sp in &p.registrations {
            let f = region.facility(sp.facility);
            let patient = musubi_synth::fhir::patient(sp, f, "2025-04-01T09:00:00+09:00");
            match SourceRecord::from_fhir_patient(&patient, &f.code) {
                Ok((r, _)) => {
                    truth.insert(r.key.clone(), pid.clone());
                    records.push(r);
                }
                Err(e) => eprintln!("skipped a patient: {e}"),
            }
        }
    }
    if a.namesakes > 0.0 {
        let facilities: Vec<musubi_domain::FacilityCode> = region.facilities.iter().map(|f| f.code).collect();
        let added = add_namesakes(&mut records, &mut truth, &facilities, a.namesakes, a.seed);
        println!("namesakes: {added} records of strangers with a person's name, sex and birth date, living elsewhere");
    }
    (records, truth)
}

/// A small deterministic generator (splitmix64), so that the namesakes depend on the seed only.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Adds namesakes (see the module documentation) of a fraction of the persons in `truth`;
/// returns the number of records added.
fn add_namesakes(
    records: &mut Vec<SourceRecord>,
    truth: &mut HashMap<SourceKey, String>,
    facilities: &[musubi_domain::FacilityCode],
    fraction: f64,
    seed: u64,
) -> usize {
    let mut rng = Mix(seed ^ 0x4e41_4d45_5341_4b45);
    let pref: Vec<String> = records.iter().map(|r| NormalizedRecord::of(r).prefecture).collect();
    // Each person's first record, the facilities they used and the prefectures they lived in.
    let mut first: Vec<usize> = Vec::new();
    let mut used: HashMap<String, Vec<musubi_domain::FacilityCode>> = HashMap::new();
    let mut lived: HashMap<String, Vec<&str>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let Some(p) = truth.get(&r.key) else { continue };
        let e = used.entry(p.clone()).or_default();
        if e.is_empty() {
            first.push(i);
        }
        e.push(r.key.facility);
        lived.entry(p.clone()).or_default().extend(pref.get(i).map(String::as_str));
    }
    let mut new = Vec::new();
    for (n, &i) in first.iter().enumerate() {
        if !rng.chance(fraction) {
            continue;
        }
        let Some(victim) = records.get(i) else { continue };
        let Some(pid) = truth.get(&victim.key) else { continue };
        let used = used.get(pid).cloned().unwrap_or_default();
        let lived = lived.get(pid).cloned().unwrap_or_default();
        // A resident of a prefecture the person never lived in, carrying a card of another insurer, lends the
        // address and the insurer (with a number of the namesake's own).
        let other_insurer = |d: &SourceRecord| {
            d.insurance
                .iter()
                .find(|x| victim.insurance.iter().all(|v| v.insurer() != x.insurer()))
                .map(|x| x.insurer())
        };
        let mut donor = None;
        for _ in 0..64 {
            let d = rng.below(records.len());
            if pref.get(d).is_some_and(|p| !p.is_empty() && !lived.contains(&p.as_str()))
                && let Some(rec) = records.get(d)
                && let Some(insurer) = other_insurer(rec)
            {
                donor = Some((rec, insurer));
                break;
            }
        }
        let Some((donor, insurer)) = donor else { continue };
        let number = format!("{:08}", rng.next() % 100_000_000);
        let insurance: Vec<musubi_domain::InsuranceId> =
            musubi_domain::InsuranceId::new(insurer, "", &number, Some(0)).ok().into_iter().collect();
        let phone = format!("090-{:04}-{:04}", 9000 + rng.below(1000), rng.below(10_000));
        let visits = 1 + rng.below(2);
        for v in 0..visits {
            let Some(&facility) =
                (0..64).filter_map(|_| facilities.get(rng.below(facilities.len()))).find(|f| !used.contains(f))
            else {
                continue;
            };
            let mut r = victim.clone();
            r.key = SourceKey::new(facility, format!("NS{n}-{v}"));
            r.addresses = donor.addresses.clone();
            r.insurance = insurance.clone();
            r.phones = vec![phone.clone()];
            r.cross_refs.clear();
            new.push(r);
        }
    }
    let added = new.len();
    for r in &new {
        if let Some(n) = r.key.local_id.split('-').next() {
            truth.insert(r.key.clone(), n.to_owned());
        }
    }
    records.extend(new);
    added
}

/// Source records from a generated directory: the first entry of each Bundle line is the Patient.
fn read_dir(dir: &str) -> Result<(Vec<SourceRecord>, HashMap<SourceKey, String>), String> {
    let truth_bytes = std::fs::read(format!("{dir}/truth/source_patients.csv"))
        .map_err(|e| format!("{dir}/truth/source_patients.csv: {e}"))?;
    let truth: HashMap<SourceKey, String> = parse_truth(&truth_bytes).map_err(|e| e.to_string())?.into_iter().collect();
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let entries = std::fs::read_dir(format!("{dir}/fhir")).map_err(|e| format!("{dir}/fhir: {e}"))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Some(code) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()) else { continue };
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
            let Some(p) = v.pointer("/entry/0/resource") else { continue };
            if let Ok((r, _)) = SourceRecord::from_fhir_patient(p, &code)
                && seen.insert(r.key.clone())
            {
                records.push(r);
            }
        }
    }
    Ok((records, truth))
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mpi-eval: {e}");
            std::process::exit(2);
        }
    };
    if a.online_bench {
        online_bench(&a);
        return;
    }
    if a.check_synth {
        check_synth(&a);
        return;
    }
    let t0 = Instant::now();
    let (mut records, truth) = match &a.dir {
        Some(d) => match read_dir(d) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("mpi-eval: {e}");
                std::process::exit(1);
            }
        },
        None => synthesize(&a),
    };
    let gen_s = t0.elapsed().as_secs_f64();
    println!("records {} (persons {}) generated in {gen_s:.1} s", records.len(), a.persons);

    if let Some(path) = &a.export_csv {
        if let Err(e) = export(path, &records, &truth) {
            eprintln!("mpi-eval: {path}: {e}");
            std::process::exit(1);
        }
        println!("wrote {path}");
    }

    // Hold out records for the online benchmark: every 1 in k, so they are spread over persons.
    let mut held = Vec::new();
    if let Some(step) = records.len().checked_div(a.online) {
        let step = step.max(1);
        let mut kept = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            if i % step == step / 2 && held.len() < a.online { held.push(r) } else { kept.push(r) }
        }
        records = kept;
    }

    let config = LinkConfig { threads: a.threads, evidence_guards: !a.no_guards, ..LinkConfig::default() };
    let rss_before = rss_mib();
    let t = Instant::now();
    let mut builder = IndexBuilder::new(config);
    builder.push_all(&records);
    let keys: Vec<SourceKey> = records.iter().map(|r| r.key.clone()).collect();
    if a.online > 0 {
        // Only the index stays in memory, as in a server.
        records.clear();
        records.shrink_to_fit();
    }
    let norm_s = t.elapsed().as_secs_f64();
    let (mut index, report) = builder.finish();
    let total_s = t.elapsed().as_secs_f64();
    let stats = index.stats();
    println!(
        "batch link: {:.2} s (normalize {:.2} s{}), {} candidate pairs, {} persons, {} review pairs, {} refused joins",
        total_s,
        norm_s,
        report.seconds.iter().map(|(k, v)| format!(", {k} {v:.2} s")).collect::<String>(),
        report.candidate_pairs,
        report.persons,
        report.review.len(),
        report.refused_joins
    );
    println!(
        "index: {} records, {} persons, {} block keys, ~{:.0} MiB heap (estimate); RSS {:.0} MiB (+{:.0} MiB since before linking), peak RSS {:.0} MiB",
        stats.records,
        stats.persons,
        stats.block_keys,
        stats.heap_bytes as f64 / 1048576.0,
        rss_mib(),
        rss_mib() - rss_before,
        peak_rss_mib()
    );
    let m = &report.model;
    println!("model: prior {:.3e}, link ≥ {}, review ≥ {}", m.prior, m.thresholds.link, m.thresholds.review);
    for f in &m.fields {
        let ws: Vec<String> = (1..f.m.len())
            .map(|l| format!("{} {:+.1} (m {:.4} u {:.2e})", f.levels[l], (f.m[l] / f.u[l]).log2(), f.m[l], f.u[l]))
            .collect();
        println!("  {:<12} {}", f.field.name(), ws.join(", "));
    }
    if let Some(p) = &a.model_out {
        let _ = std::fs::write(p, m.to_json());
    }

    let labels: Vec<(SourceKey, String)> =
        keys.iter().filter_map(|k| Some((k.clone(), index.person_of(k)?.to_string()))).collect();
    let held_keys: std::collections::HashSet<&SourceKey> = held.iter().map(|r| &r.key).collect();
    let truth_batch: HashMap<SourceKey, String> =
        truth.iter().filter(|(k, _)| !held_keys.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let s = pairwise(labels.iter().map(|(k, p)| (k, p.as_str())), &truth_batch);
    println!(
        "batch pairwise: precision {:.5} recall {:.5} F1 {:.5} (pairs: predicted {}, true {}, correct {})",
        s.precision, s.recall, s.f1, s.predicted_pairs, s.true_pairs, s.correct_pairs
    );
    // The review queue against the truth, by weight band.
    {
        let mut bands: std::collections::BTreeMap<i64, (u32, u32)> = std::collections::BTreeMap::new();
        let mut by_hold: std::collections::BTreeMap<String, (u32, u32)> = std::collections::BTreeMap::new();
        for r in &report.review {
            let same = truth.contains_key(&r.a) && truth.get(&r.a) == truth.get(&r.b);
            let e = bands.entry((r.weight / 2.0).floor() as i64 * 2).or_default();
            let h = by_hold.entry(format!("{:?}", r.hold)).or_default();
            if same {
                e.0 += 1;
                h.0 += 1;
            } else {
                e.1 += 1;
                h.1 += 1;
            }
        }
        let fmt = |m: &std::collections::BTreeMap<String, (u32, u32)>| {
            m.iter().map(|(k, (s, d))| format!("{k}: {s} same/{d} different")).collect::<Vec<_>>().join(", ")
        };
        println!("review queue: {} pairs; by reason: {}", report.review.len(), fmt(&by_hold));
        println!(
            "  by weight band: {}",
            bands.iter().map(|(k, (s, d))| format!("[{k},{}) {s}/{d}", k + 2)).collect::<Vec<_>>().join(" ")
        );
    }
    for th in &a.sweep {
        let cfg = LinkConfig {
            threads: a.threads,
            model: Some(report.model.clone()),
            thresholds: Some(musubi_identify::Thresholds { link: *th, review: th.min(0.0) - 5.0 }),
            evidence_guards: !a.no_guards,
            ..LinkConfig::default()
        };
        let t = Instant::now();
        let mut b = IndexBuilder::new(cfg);
        b.push_all(&records);
        let (ix, rep) = b.finish();
        let labels: Vec<(SourceKey, String)> =
            keys.iter().filter_map(|k| Some((k.clone(), ix.person_of(k)?.to_string()))).collect();
        let s = pairwise(labels.iter().map(|(k, p)| (k, p.as_str())), &truth_batch);
        println!(
            "  link ≥ {th:>5.1}: precision {:.5} recall {:.5} F1 {:.5} ({} persons, {:.2} s with the model given)",
            s.precision,
            s.recall,
            s.f1,
            rep.persons,
            t.elapsed().as_secs_f64()
        );
    }
    if a.explain > 0 {
        let brief: HashMap<SourceKey, String> = records
            .iter()
            .map(|r| {
                let n = NormalizedRecord::of(r);
                let v = n.values();
                (r.key.clone(), v[1..].iter().filter(|x| !x.is_empty()).copied().collect::<Vec<_>>().join("/"))
            })
            .collect();
        explain(&index, &labels, &truth, &brief, a.explain);
    }

    if !held.is_empty() {
        let mut lat = Vec::with_capacity(held.len());
        let mut counts = [0usize; 3];
        for r in &held {
            let t = Instant::now();
            let d = index.add(r);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            counts[match d {
                Decision::Linked { .. } => 0,
                Decision::Review { .. } => 1,
                Decision::NewPerson { .. } => 2,
            }] += 1;
        }
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
        println!(
            "online: {} adds into {} persons: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; linked {}, review {}, new {}",
            held.len(),
            stats.persons,
            pct(0.5),
            pct(0.99),
            lat.last().copied().unwrap_or(0.0),
            counts[0],
            counts[1],
            counts[2]
        );
        let all: Vec<(SourceKey, String)> = index.links().into_iter().map(|(k, p)| (k, p.to_string())).collect();
        let s = pairwise(all.iter().map(|(k, p)| (k, p.as_str())), &truth);
        println!("after online adds, pairwise: precision {:.5} recall {:.5} F1 {:.5}", s.precision, s.recall, s.f1);
    }
    println!("peak RSS {:.0} MiB, total {:.1} s", peak_rss_mib(), t0.elapsed().as_secs_f64());
}

fn explain(
    index: &musubi_identify::Index,
    labels: &[(SourceKey, String)],
    truth: &HashMap<SourceKey, String>,
    brief: &HashMap<SourceKey, String>,
    n: usize,
) {
    let show = |k: &SourceKey| brief.get(k).cloned().unwrap_or_default();
    // False negatives: records of one true person in different predicted persons.
    let mut by_truth: HashMap<&str, Vec<(&SourceKey, &str)>> = HashMap::new();
    let mut by_pred: HashMap<&str, Vec<&SourceKey>> = HashMap::new();
    for (k, p) in labels {
        if let Some(t) = truth.get(k) {
            by_truth.entry(t).or_default().push((k, p));
        }
        by_pred.entry(p).or_default().push(k);
    }
    let mut fns = Vec::new();
    for (t, v) in &by_truth {
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                if v[i].1 != v[j].1 {
                    fns.push((*t, v[i].0, v[j].0));
                }
            }
        }
    }
    fns.sort();
    println!("false negatives: {} pairs; first {n}:", fns.len());
    for (t, a, b) in fns.iter().take(n) {
        if let Some((w, lv)) = index.explain(a, b) {
            println!("  {t} w {w:.1} {}\n    {}\n    {}", fmt_levels(&lv), show(a), show(b));
        }
    }
    let mut fps = Vec::new();
    for v in by_pred.values() {
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                if truth.get(v[i]) != truth.get(v[j]) {
                    fps.push((v[i], v[j]));
                }
            }
        }
    }
    fps.sort();
    println!("false positives: {} pairs; first {n}:", fps.len());
    for (a, b) in fps.iter().take(n) {
        if let Some((w, lv)) = index.explain(a, b) {
            println!(
                "  {} / {} w {w:.1} {}\n    {}\n    {}",
                truth.get(*a).map(String::as_str).unwrap_or("?"),
                truth.get(*b).map(String::as_str).unwrap_or("?"),
                fmt_levels(&lv),
                show(a),
                show(b)
            );
        }
    }
}

fn fmt_levels(lv: &[(musubi_identify::Field, String)]) -> String {
    lv.iter().map(|(f, l)| format!("{}={l}", f.name())).collect::<Vec<_>>().join(" ")
}

fn export(path: &str, records: &[SourceRecord], truth: &HashMap<SourceKey, String>) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let mut header: Vec<&str> = NormalizedRecord::COLUMNS.to_vec();
    header.push("person");
    w.write_record(&header).map_err(|e| e.to_string())?;
    for r in records {
        let person = truth.get(&r.key).map(String::as_str).unwrap_or("");
        let n = NormalizedRecord::of(r);
        let mut row: Vec<&str> = n.values().to_vec();
        row.push(person);
        w.write_record(&row).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    let _ = std::io::stdout().flush();
    Ok(())
}

/// What a held-out record should get.
enum Expect {
    /// Linked to the person of this (indexed) record.
    LinkTo(SourceKey),
    /// A new person (no other record of this person exists yet).
    New,
}

/// The online benchmark: a region of `--persons` persons is generated and streamed into a
/// batch build (records are not kept, so the process holds only the index), holding out the
/// last registration of every 100th person (it should link) and every registration of every
/// 100th+50 person (the first should start a new person, the rest link to it). The held-out
/// records are then added one by one, timing each decision.
fn online_bench(a: &Args) {
    let t0 = Instant::now();
    let opts = SynthOptions::new(a.persons, a.seed, std::env::temp_dir().join("mpi-eval-unused"));
    let region = region(opts.seed, opts.persons);
    let config = LinkConfig { threads: a.threads, evidence_guards: !a.no_guards, ..LinkConfig::default() };
    let mut builder = IndexBuilder::new(config);
    let mut held: Vec<(SourceRecord, Expect)> = Vec::new();
    let mut n = 0u64;
    for p in persons(&region, &opts) {
        let recs: Vec<SourceRecord> = p
            .registrations
            .iter()
            .filter_map(|sp| {
                let f = region.facility(sp.facility);
                let patient = musubi_synth::fhir::patient(sp, f, "2025-04-01T09:00:00+09:00");
                SourceRecord::from_fhir_patient(&patient, &f.code).ok().map(|(r, _)| r)
            })
            .collect();
        n += recs.len() as u64;
        let i = p.identity.index;
        if i % 100 == 0 && recs.len() >= 2 {
            let mut recs = recs;
            let last = recs.pop();
            let anchor = recs[0].key.clone();
            for r in &recs {
                builder.push(r);
            }
            if let Some(last) = last {
                held.push((last, Expect::LinkTo(anchor)));
            }
        } else if i % 100 == 50 && !recs.is_empty() {
            let first = recs[0].key.clone();
            for (j, r) in recs.into_iter().enumerate() {
                held.push((r, if j == 0 { Expect::New } else { Expect::LinkTo(first.clone()) }));
            }
        } else {
            for r in &recs {
                builder.push(r);
            }
        }
    }
    println!(
        "generated {n} records of {} persons in {:.1} s; {} held out",
        a.persons,
        t0.elapsed().as_secs_f64(),
        held.len()
    );
    let t = Instant::now();
    let (mut index, report) = builder.finish();
    let stats = index.stats();
    println!(
        "batch build: {:.1} s ({}), {} candidate pairs; index {} records, {} persons, {} block keys",
        t.elapsed().as_secs_f64(),
        report.seconds.iter().map(|(k, v)| format!("{k} {v:.1} s")).collect::<Vec<_>>().join(", "),
        report.candidate_pairs,
        stats.records,
        stats.persons,
        stats.block_keys
    );
    println!(
        "memory: index heap estimate {:.0} MiB; process RSS {:.0} MiB after the build (the process holds nothing else of size); peak RSS {:.0} MiB during the build",
        stats.heap_bytes as f64 / 1048576.0,
        rss_mib(),
        peak_rss_mib()
    );
    let mut lat = Vec::with_capacity(held.len());
    let (mut right, mut wrong_link, mut review, mut wrong_new) = (0u32, 0u32, 0u32, 0u32);
    let mut wrong_link_of_new = 0u32;
    let mut shown = 0;
    for (r, expect) in &held {
        let t = Instant::now();
        let d = index.add(r);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        let want = match expect {
            Expect::LinkTo(k) => index.person_of(k),
            Expect::New => None,
        };
        match (&d, want) {
            (Decision::Linked { person, .. }, Some(w)) if *person == w => right += 1,
            (Decision::NewPerson { .. }, None) => right += 1,
            (Decision::Linked { evidence, .. }, w) => {
                wrong_link += 1;
                if w.is_none() {
                    wrong_link_of_new += 1;
                }
                if shown < a.explain {
                    shown += 1;
                    let lv: Vec<String> = evidence.levels.iter().map(|(f, l)| format!("{}={l}", f.name())).collect();
                    println!(
                        "  wrong link: {} → {} (w {:.1}, {:?}) {}\n    {}",
                        r.key,
                        evidence.record,
                        evidence.weight,
                        evidence.deterministic,
                        lv.join(" "),
                        NormalizedRecord::of(r).values()[1..]
                            .iter()
                            .filter(|x| !x.is_empty())
                            .copied()
                            .collect::<Vec<_>>()
                            .join("/")
                    );
                }
            }
            (Decision::Review { .. }, _) => review += 1,
            (Decision::NewPerson { .. }, Some(_)) => wrong_new += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    println!(
        "online add: {} records into {} persons: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.len(),
        stats.persons,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    println!(
        "online decisions: {right} right, {wrong_link} linked to a wrong person ({wrong_link_of_new} of them first records of a new person), {review} sent to review, {wrong_new} new where a link was due"
    );
    println!("peak RSS {:.0} MiB, total {:.1} s", peak_rss_mib(), t0.elapsed().as_secs_f64());
}

/// Distinct generated persons that share an insurance identity, or name + birth date + address:
/// no matcher can tell such records apart, so they bound the achievable precision.
fn check_synth(a: &Args) {
    let opts = SynthOptions::new(a.persons, a.seed, std::env::temp_dir().join("mpi-eval-unused"));
    let region = region(opts.seed, opts.persons);
    let mut by_ins: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    let mut by_demo: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for p in persons(&region, &opts) {
        let pid = p.identity.person_id();
        for sp in &p.registrations {
            by_ins.entry(sp.insurance.id.match_key()).or_default().insert(pid.clone());
            let key = format!("{} {} {} {}", sp.family, sp.given, sp.birth, sp.address.text());
            by_demo.entry(key).or_default().insert(pid.clone());
        }
    }
    fn shared(
        m: &HashMap<String, std::collections::BTreeSet<String>>,
    ) -> Vec<(&String, &std::collections::BTreeSet<String>)> {
        let mut v: Vec<_> = m.iter().filter(|(_, s)| s.len() > 1).collect();
        v.sort();
        v
    }
    let ins = shared(&by_ins);
    let demo = shared(&by_demo);
    println!("insurance identities held by more than one person: {}", ins.len());
    for (k, s) in ins.iter().take(5) {
        println!("  {k}: {s:?}");
    }
    println!("name + birth date + address held by more than one person: {}", demo.len());
    for (k, s) in demo.iter().take(5) {
        println!("  {k}: {s:?}");
    }
}
