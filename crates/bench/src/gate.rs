//! `musubi-bench gate`: the cost of the one access gate per request — the decision alone, the
//! decision plus its audit append into a real store (group commit, as the service does for
//! reads), and the rate at which the audit chain verifies (in memory and from the store).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use musubi_domain::audit::{
    AuditAction, AuditAgent, AuditOutcome, AuditPurpose, AuditRecord, GENESIS_HASH, StoredAudit, chain_hash,
    verify_chain,
};
use musubi_domain::{FacilityCode, Flags, Profession, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_gate::{
    Actor, CareKind, CareRelation, ConsentSettings, Context, Decision, FacilityClass, FacilityInfo, Operation,
    PersonContext, RecordView, Residence, UserActor, decide,
};
use musubi_store::Store;

const HOSP: &str = "1318814790";
const SOURCE: &str = "1312345678";

fn code(s: &str) -> Result<FacilityCode> {
    s.parse().map_err(|e| anyhow::anyhow!("{e}"))
}

/// One request's inputs: a doctor at a hospital in the patient's area, with a care relationship,
/// reading a diagnosis from another facility (the consent path, the most common clinical read).
struct Inputs {
    actor: Actor,
    facility: FacilityInfo,
    person: PersonContext,
    record: RecordView,
}

fn inputs() -> Result<Inputs> {
    let hosp = code(HOSP)?;
    Ok(Inputs {
        actor: Actor::User(UserActor {
            user_id: "u-doctor".into(),
            login: "doctor@1318814790".into(),
            name: "結 花子".into(),
            profession: Profession::Doctor,
            facility: hosp,
        }),
        facility: FacilityInfo {
            code: hosp,
            name: "結総合病院".into(),
            class: FacilityClass::Hospital,
            prefecture: 13,
            area: "1301".into(),
            views: true,
        },
        person: PersonContext {
            person_id: "P1".into(),
            consent: ConsentSettings::default(),
            residence: Residence { prefecture: 13, area: "1301".into(), recent_prefectures: vec![] },
            care: vec![CareRelation { facility: hosp, kind: CareKind::Treated, until: None }],
            emergency: vec![],
            participating: true,
        },
        record: RecordView {
            rtype: ResourceType::Condition,
            class: ResourceClass::Diagnosis,
            facility: Some(code(SOURCE)?),
            patient_id: Some("pt-1".into()),
            person_id: Some("P1".into()),
            flags: Flags::empty(),
            clinical_date: Some(1_790_000_000_000),
        },
    })
}

fn audit_record(i: u64, d: &Decision) -> AuditRecord {
    AuditRecord {
        recorded: musubi_fhir::datetime::now_ms(),
        action: AuditAction::Read,
        subtype: "read".into(),
        outcome: if matches!(d, Decision::Allow(_)) { AuditOutcome::Success } else { AuditOutcome::MinorFailure },
        outcome_text: None,
        agent: AuditAgent {
            kind: "user".into(),
            name: "doctor@1318814790".into(),
            facility: Some(HOSP.into()),
            profession: Some("doctor".into()),
            address: Some("127.0.0.1".into()),
        },
        purpose: AuditPurpose::Treatment,
        patient: Some("pt-1".into()),
        person: Some("P1".into()),
        entities: vec![format!("Condition/{i}")],
        query: None,
        source: "bench".into(),
    }
}

pub fn run(data: std::path::PathBuf, database: Option<String>, requests: u64, threads: usize) -> Result<()> {
    let inp = Arc::new(inputs()?);
    let ctx = Context {
        now: 1_800_000_000_000,
        facility: Some(&inp.facility),
        person: Some(&inp.person),
        withheld: &[],
        policy: Default::default(),
    };

    // 1. The decision alone.
    let n = 2_000_000u64;
    let started = Instant::now();
    let mut allowed = 0u64;
    for _ in 0..n {
        if matches!(decide(&inp.actor, Operation::Read, std::hint::black_box(&inp.record), &ctx), Decision::Allow(_)) {
            allowed += 1;
        }
    }
    let per = started.elapsed().as_secs_f64() / n as f64;
    if allowed != n {
        bail!("the benchmark's doctor should be allowed every time ({allowed} of {n})");
    }
    println!("gate decision: {:.0} ns per decision ({n} decisions)", per * 1e9);

    // 2. Decision + audit append through the store's writer, `threads` callers at once.
    std::fs::create_dir_all(&data)?;
    let store = Store::open(database.as_deref(), &data)?;
    let before = store.audit_head()?.0;
    let per_thread = requests / threads as u64;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, inp) = (store.clone(), inp.clone());
            std::thread::spawn(move || -> Result<Histogram<u64>> {
                let mut h = Histogram::<u64>::new(3)?;
                let ctx = Context {
                    now: 1_800_000_000_000,
                    facility: Some(&inp.facility),
                    person: Some(&inp.person),
                    withheld: &[],
                    policy: Default::default(),
                };
                for i in 0..per_thread {
                    let t0 = Instant::now();
                    let d = decide(&inp.actor, Operation::Read, &inp.record, &ctx);
                    store.append_audit(vec![audit_record(t as u64 * per_thread + i, &d)])?;
                    h.record(t0.elapsed().as_micros() as u64)?;
                }
                Ok(h)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3)?;
    for h in handles {
        let h = h.join().map_err(|_| anyhow::anyhow!("a bench thread panicked"))??;
        hist.add(h)?;
    }
    let wall = started.elapsed().as_secs_f64();
    let done = per_thread * threads as u64;
    println!(
        "decision + audit append ({}, {threads} callers): {:.0} requests/s, {:.1} µs per request of capacity (wall time / requests); \
         latency per call p50 {} µs, p99 {} µs, max {} µs",
        store.backend(),
        done as f64 / wall,
        wall * 1e6 / done as f64,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    let after = store.audit_head()?.0;
    if after - before != done as i64 {
        bail!("expected {done} new audit records, the chain grew by {}", after - before);
    }

    // 3. Verification: in memory (the hashing and linking alone), then from the store.
    let m = 1_000_000i64;
    let mut prev = GENESIS_HASH.to_owned();
    let chain: Vec<StoredAudit> = (1..=m)
        .map(|seq| {
            let record = audit_record(seq as u64, &Decision::Allow(musubi_gate::Basis::Consent)).canonical_json();
            let hash = chain_hash(&prev, seq, &record);
            StoredAudit { seq, record, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash }
        })
        .collect();
    let started = Instant::now();
    let (next, _) = verify_chain(&chain, 1, GENESIS_HASH.to_owned()).map_err(|b| anyhow::anyhow!("{b:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    println!("audit verification in memory: {:.0} records/s ({} records)", (next - 1) as f64 / secs, next - 1);
    drop(chain);
    let started = Instant::now();
    let verified = match musubi_store::verify_audit_chain(&store, |_| {})? {
        Ok(n) => n,
        Err(b) => bail!("the chain does not verify: {b:?}"),
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "audit verification from the store ({}): {:.0} records/s ({verified} records)",
        store.backend(),
        verified as f64 / secs
    );
    Ok(())
}
