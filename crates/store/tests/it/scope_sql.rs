//! The store's SQL for a search scope selects exactly the records `in_scope` (the gate's
//! in-memory reading of the same scope) selects — over random records and random scopes, on
//! both backends. Together with the gate's property test (scope == decision) this holds the
//! SQL to the decision: nothing hidden is counted, nothing visible is missing.

use musubi_domain::{Flags, ResourceClass};
use musubi_fhir::ResourceType;
use musubi_gate::{RecordView, in_scope};
use musubi_store::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const FACS: [&str; 3] = ["1318814790", "1348814790", "1418814790"];
const PERSONS: [&str; 3] = ["P1", "P2", "P3"];
const DAY: i64 = 86_400_000;
const NOW: i64 = 1_800_000_000_000;

fn records() -> Vec<RecordView> {
    let mut out = Vec::new();
    let mut i = 0u64;
    for f in FACS.iter().map(Some).chain([None]) {
        for p in PERSONS {
            for class in
                [ResourceClass::Diagnosis, ResourceClass::Lab, ResourceClass::Encounter, ResourceClass::Administrative]
            {
                for flags in [0u8, 2, 4] {
                    i += 1;
                    out.push(RecordView {
                        rtype: ResourceType::Observation,
                        class,
                        facility: f.map(|c| c.parse().unwrap()),
                        patient_id: Some(format!("pt-{p}")),
                        person_id: Some(p.to_owned()),
                        flags: Flags::from_bits(flags),
                        clinical_date: if i.is_multiple_of(5) { None } else { Some(NOW - (i as i64 % 700) * DAY) },
                    });
                }
            }
        }
    }
    out
}

fn load(store: &Store, recs: &[RecordView]) {
    let puts = recs
        .iter()
        .enumerate()
        .map(|(i, r)| PutResource {
            rtype: r.rtype,
            id: format!("r{i:04}"),
            version: 1,
            expect: Expect::Absent,
            last_updated: 1,
            content: "{}".into(),
            content_hash: "h".into(),
            meta: StoredMeta {
                facility: r.facility,
                submitter: "t".into(),
                patient_id: r.patient_id.clone(),
                person_id: r.person_id.clone(),
                class: r.class,
                clinical_date: r.clinical_date,
                flags: r.flags,
                retention_end: None,
                keep_last: None,
                item_key: None,
                bundle_key: None,
            },
            index: vec![],
        })
        .collect();
    store.commit(WriteBatch { puts, ..Default::default() }).unwrap();
}

fn arb_rule() -> impl Strategy<Value = ScopeRule> {
    (
        prop::option::of(prop::collection::vec(prop::sample::select(FACS.to_vec()), 0..3)),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["diagnosis", "lab", "encounter", "administrative"]),
            0..3,
        )),
        prop::option::of(prop::collection::vec(prop::sample::select(PERSONS.to_vec()), 0..3)),
        prop::option::of(0i64..800),
        0u8..8,
        prop::option::of(prop::collection::vec(prop::sample::select(FACS.to_vec()), 0..2)),
    )
        .prop_map(|(f, c, p, days, flags, x)| ScopeRule {
            facilities: f.map(|v| v.into_iter().map(str::to_owned).collect()),
            classes: c,
            patients: None,
            persons: p.map(|v| v.into_iter().map(str::to_owned).collect()),
            min_clinical_date: days.map(|d| NOW - d * DAY),
            exclude_flags: flags,
            exclude_facilities: x.map(|v| v.into_iter().map(str::to_owned).collect()),
        })
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::all()),
        prop::collection::vec(arb_rule(), 0..4).prop_map(|rules| Scope { rules: Some(rules) })
    ]
}

fn check(store: &Store) {
    let recs = records();
    load(store, &recs);
    let mut runner = TestRunner::new(Config { cases: 300, ..Config::default() });
    runner
        .run(&(arb_scope(), any::<bool>()), |(scope, with_person)| {
            let mut filters = vec![];
            if with_person {
                filters.push(Filter::Patient(vec!["pt-P2".into()]));
            }
            let q = SearchQuery { rtype: ResourceType::Observation, filters, scope: scope.clone(), sort: Sort::Id };
            let got: Vec<String> =
                store.read(|r| r.search_rows(&q, 0, None)).unwrap().into_iter().map(|r| r.id).collect();
            let expected: Vec<String> = recs
                .iter()
                .enumerate()
                .filter(|(_, r)| in_scope(&scope, r) && (!with_person || r.patient_id.as_deref() == Some("pt-P2")))
                .map(|(i, _)| format!("r{i:04}"))
                .collect();
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(store.read(|r| r.search_count(&q)).unwrap() as usize, expected.len());
            Ok(())
        })
        .unwrap();
}

#[test]
fn sqlite_scope_sql_matches_in_scope() {
    let dir = tempfile::tempdir().unwrap();
    check(&Store::open_sqlite(dir.path()).unwrap());
}

#[test]
fn postgres_scope_sql_matches_in_scope() {
    let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect("MUSUBI_TEST_POSTGRES is not set: run scripts/test");
    let name = format!("musubi_scope_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    {
        check(&Store::open_postgres(&url).unwrap());
    }
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
