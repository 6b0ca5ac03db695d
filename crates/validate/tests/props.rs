//! Property tests: the validator never panics on arbitrary JSON (or on examples with random
//! parts replaced), and the hand-written primitive matchers agree with the FHIR R4 regexes.

use musubi_validate::{Validator, primitives};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("Patient"),
            Just("Bundle"),
            Just("Observation"),
            Just("coding"),
            Just("extension"),
            Just("resourceType"),
            Just("meta"),
            Just("profile"),
            Just("entry"),
            Just("resource"),
            Just("http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS"),
            Just("http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS"),
            Just("2024-01-01T00:00:00+09:00"),
            Just("urn:uuid:b76ef6f6-f6e3-c110-5039-eee64ef6ab6a"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("resourceType".to_owned()),
                        Just("meta".to_owned()),
                        Just("profile".to_owned()),
                        Just("entry".to_owned()),
                        Just("resource".to_owned()),
                        Just("contained".to_owned()),
                        Just("extension".to_owned()),
                        Just("url".to_owned()),
                        Just("valueString".to_owned()),
                        Just("identifier".to_owned()),
                        Just("name".to_owned()),
                        Just("code".to_owned()),
                        Just("coding".to_owned()),
                        Just("system".to_owned()),
                        Just("_birthDate".to_owned()),
                        "[a-zA-Z_]{1,10}",
                    ],
                    inner,
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn example(rel: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference").join(rel);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or(Value::Null)
}

/// Replaces the `n`-th node (in walk order) of `v` with `with`.
fn replace_nth(v: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, n, with)),
        Value::Object(o) => o.values_mut().any(|x| replace_nth(x, n, with)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let val = Validator::shared();
        let _ = val.validate_resource(&v);
        let _ = val.validate_bundle(&v);
        let mut as_patient = v.clone();
        if let Value::Object(o) = &mut as_patient {
            o.insert("resourceType".into(), json!("Patient"));
            o.insert("meta".into(), json!({"profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS"]}));
        }
        let _ = val.validate_resource(&as_patient);
    }

    #[test]
    fn broken_examples_never_panic(n in 0usize..2000, with in arb_json(), which in 0usize..3) {
        let rel = ["jp-clins/examples/Bundle-Bundle-CLINS-Observations-Example-01.json",
                   "jp-clins/examples/Bundle-Bundle-CLINS-Referral-Example-01.json",
                   "jp-clins/examples/MedicationRequest-Example-JP-MedReq-PO-SID-28days.json"][which];
        let mut v = example(rel);
        let mut k = n;
        replace_nth(&mut v, &mut k, &with);
        let _ = Validator::shared().validate_bundle(&v);
        let _ = Validator::shared().validate_resource(&v);
    }

    #[test]
    fn datetime_matcher_agrees_with_the_r4_regex(s in "[0-9T:+\\-Z.]{0,32}|[12][0-9]{3}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,3})?(Z|[+-][01][0-9]:[0-5][0-9])?") {
        let date = regex::Regex::new(r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$").unwrap();
        let date_time = regex::Regex::new(r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$").unwrap();
        let instant = regex::Regex::new(r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$").unwrap();
        let time = regex::Regex::new(r"^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$").unwrap();
        prop_assert_eq!(primitives::is_date(&s), date.is_match(&s), "date {}", s);
        prop_assert_eq!(primitives::is_datetime(&s), date_time.is_match(&s), "dateTime {}", s);
        prop_assert_eq!(primitives::is_instant(&s), instant.is_match(&s), "instant {}", s);
        prop_assert_eq!(primitives::is_time(&s), time.is_match(&s), "time {}", s);
    }

    #[test]
    fn string_matchers_agree_with_the_r4_regexes(s in "[ a-zA-Z0-9.:\\-+/=\\t]{0,20}|urn:oid:[0-9.]{0,12}|urn:uuid:[0-9a-fA-F\\-]{30,40}") {
        let code = regex::Regex::new(r"^[^\s]+(\s[^\s]+)*$").unwrap();
        let id = regex::Regex::new(r"^[A-Za-z0-9\-\.]{1,64}$").unwrap();
        let oid = regex::Regex::new(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$").unwrap();
        let uuid = regex::Regex::new(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$").unwrap();
        let uri = regex::Regex::new(r"^\S*$").unwrap();
        prop_assert_eq!(primitives::is_code(&s), code.is_match(&s), "code {:?}", s);
        prop_assert_eq!(primitives::is_id(&s), id.is_match(&s), "id {:?}", s);
        prop_assert_eq!(primitives::is_oid(&s), oid.is_match(&s), "oid {:?}", s);
        prop_assert_eq!(primitives::is_uuid(&s), uuid.is_match(&s), "uuid {:?}", s);
        prop_assert_eq!(primitives::is_uri(&s), uri.is_match(&s), "uri {:?}", s);
    }
}

#[test]
fn validator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Validator>();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                format!(
                    "{:?}",
                    Validator::shared()
                        .validate_resource(&json!({"resourceType": "Patient", "identifier": [{"value": "1"}]}))
                )
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().ok().as_deref(), Some("[]"));
    }
}

#[test]
fn deep_nesting_is_rejected_without_overflow() {
    // 300 nested contained resources and 300 nested arrays in a coding list.
    let mut v = json!({"resourceType": "Patient"});
    for _ in 0..300 {
        v = json!({"resourceType": "Patient", "contained": [v]});
    }
    let issues = Validator::shared().validate_resource(&v);
    assert!(issues.iter().any(|i| i.message.contains("深すぎ")), "{:?}", issues.first());
    let mut codings = json!({"system": "http://example.org", "code": "x"});
    for _ in 0..300 {
        codings = json!([codings]);
    }
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"coding": codings}});
    let issues = Validator::shared().validate_resource(&obs);
    assert!(musubi_validate::has_errors(&issues));
}
