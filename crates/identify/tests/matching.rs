//! Matching decisions on hand-made hard cases, against an index trained on a synthetic region
//! (so that weights and name frequencies are realistic).

use std::sync::OnceLock;

use musubi_domain::FacilityCode;
use musubi_identify::{
    BirthDate, Decision, Hold, Index, IndexBuilder, LinkConfig, LinkReason, Model, PostalAddress, Sex, SourceKey,
    SourceRecord,
};
use musubi_synth::{SynthOptions, persons, region};

/// Source records of a small synthetic region.
fn synth_records(n: u64, seed: u64) -> Vec<(SourceRecord, String)> {
    let opts = SynthOptions::new(n, seed, std::env::temp_dir().join("identify-test-unused"));
    let region = region(opts.seed, opts.persons);
    let mut out = Vec::new();
    for p in persons(&region, &opts) {
        for sp in &p.registrations {
            let f = region.facility(sp.facility);
            let patient = musubi_synth::fhir::patient(sp, f, "2025-04-01T09:00:00+09:00");
            let (r, warnings) =
                SourceRecord::from_fhir_patient(&patient, &f.code).expect("synth Patients are readable");
            assert!(warnings.is_empty(), "{warnings:?}");
            out.push((r, p.identity.person_id()));
        }
    }
    out
}

fn base_index() -> Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            let recs: Vec<SourceRecord> = synth_records(4000, 3).into_iter().map(|(r, _)| r).collect();
            let mut b = IndexBuilder::new(LinkConfig::default());
            b.push_all(&recs);
            b.finish().0
        })
        .clone()
}

fn fac(i: u32) -> FacilityCode {
    // Valid codes in Kanagawa (14), 医科: 14 1 0000xx c.
    FacilityCode::from_parts(14, musubi_domain::FacilityKind::Medical, 900 + i).expect("valid facility code")
}

#[allow(clippy::too_many_arguments)]
fn rec(
    facility: u32,
    id: &str,
    kanji: (&str, &str),
    kana: (&str, &str),
    sex: Sex,
    birth: (u16, u8, u8),
    address: &str,
    postal: &str,
    phone: Option<&str>,
    insurance: Option<&str>,
) -> SourceRecord {
    let mut r = SourceRecord::new(SourceKey::new(fac(facility), id));
    r.family_kanji = Some(kanji.0.into()).filter(|s: &String| !s.is_empty());
    r.given_kanji = Some(kanji.1.into()).filter(|s: &String| !s.is_empty());
    r.family_kana = Some(kana.0.into()).filter(|s: &String| !s.is_empty());
    r.given_kana = Some(kana.1.into()).filter(|s: &String| !s.is_empty());
    r.sex = sex;
    r.birth_date = BirthDate::new(birth.0, birth.1, birth.2);
    r.addresses =
        vec![PostalAddress { text: Some(address.into()), postal_code: Some(postal.into()), ..Default::default() }];
    r.phones = phone.map(|p| vec![p.to_owned()]).unwrap_or_default();
    r.insurance = insurance.map(|i| vec![i.parse().expect("valid insurance id")]).unwrap_or_default();
    r
}

fn linked_to(d: &Decision, person: musubi_identify::PersonId) -> bool {
    matches!(d, Decision::Linked { person: p, .. } if *p == person)
}

#[test]
fn twins_stay_apart() {
    let mut ix = base_index();
    let a = rec(
        1,
        "T1",
        ("五十嵐", "翔太"),
        ("イガラシ", "ショウタ"),
        Sex::Male,
        (2015, 5, 5),
        "神奈川県横浜市中区山下町3-12-5",
        "231-0023",
        Some("045-111-2222"),
        Some("06141089:12:34567:02"),
    );
    let b = rec(
        2,
        "T2",
        ("五十嵐", "大翔"),
        ("イガラシ", "ヒロト"),
        Sex::Male,
        (2015, 5, 5),
        "神奈川県横浜市中区山下町3-12-5",
        "231-0023",
        Some("045-111-2222"),
        Some("06141089:12:34567:03"),
    );
    let first = ix.add(&a);
    let second = ix.add(&b);
    assert!(matches!(first, Decision::NewPerson { .. }), "{first:?}");
    assert!(matches!(second, Decision::NewPerson { .. }), "twins must not link or go to review: {second:?}");
    assert_ne!(first.person(), second.person());
    // The same twin seen again at a third facility links to the right one.
    let mut a2 = a.clone();
    a2.key = SourceKey::new(fac(3), "T1b");
    a2.insurance.clear();
    let third = ix.add(&a2);
    assert!(linked_to(&third, first.person()), "{third:?}");
}

#[test]
fn same_name_same_birthday_strangers_stay_apart() {
    let mut ix = base_index();
    let a = rec(
        1,
        "S1",
        ("佐藤", "浩"),
        ("サトウ", "ヒロシ"),
        Sex::Male,
        (1950, 1, 1),
        "神奈川県川崎市中原区小杉町1-2-3",
        "211-0063",
        Some("044-123-4567"),
        Some("39140280::81460488:00"),
    );
    let b = rec(
        2,
        "S2",
        ("佐藤", "浩"),
        ("サトウ", "ヒロシ"),
        Sex::Male,
        (1950, 1, 1),
        "静岡県浜松市中区元城町5-6-7",
        "430-0946",
        Some("053-987-6543"),
        Some("39220011::12345678:00"),
    );
    let first = ix.add(&a);
    let second = ix.add(&b);
    assert!(!matches!(second, Decision::Linked { .. }), "{second:?}");
    assert_ne!(first.person(), second.person());
}

#[test]
fn siblings_sharing_the_household_stay_apart() {
    let mut ix = base_index();
    let a = rec(
        1,
        "B1",
        ("渡辺", "蓮"),
        ("ワタナベ", "レン"),
        Sex::Male,
        (2006, 2, 3),
        "神奈川県横浜市戸塚区清水町3-23-8",
        "244-4743",
        Some("045-842-0710"),
        Some("01140011:14783570:1513:01"),
    );
    let b = rec(
        2,
        "B2",
        ("渡辺", "湊"),
        ("ワタナベ", "ミナト"),
        Sex::Male,
        (2011, 5, 31),
        "神奈川県横浜市戸塚区清水町3-23-8",
        "244-4743",
        Some("045-842-0710"),
        Some("01140011:14783570:1513:02"),
    );
    let first = ix.add(&a);
    let second = ix.add(&b);
    assert_ne!(first.person(), second.person(), "{second:?}");
}

fn noisy_pair(change: impl Fn(&mut SourceRecord)) -> (Decision, Decision) {
    let mut ix = base_index();
    let a = rec(
        1,
        "N1",
        ("髙橋", "恵子"),
        ("タカハシ", "ケイコ"),
        Sex::Female,
        (1965, 3, 12),
        "神奈川県藤沢市鵠沼海岸2-4-1",
        "251-0037",
        Some("090-1234-5678"),
        Some("06141089:285:80025:00"),
    );
    let mut b = a.clone();
    b.key = SourceKey::new(fac(2), "N2");
    change(&mut b);
    (ix.add(&a), ix.add(&b))
}

#[test]
fn transposed_birth_date_links() {
    let (a, b) = noisy_pair(|b| {
        b.birth_date = BirthDate::new(1965, 3, 21);
        b.insurance.clear();
    });
    assert!(linked_to(&b, a.person()), "{b:?}");
}

#[test]
fn one_wrong_birth_digit_links() {
    let (a, b) = noisy_pair(|b| {
        b.birth_date = BirthDate::new(1965, 3, 13);
        b.insurance.clear();
    });
    assert!(linked_to(&b, a.person()), "{b:?}");
}

#[test]
fn variant_kanji_links() {
    let (a, b) = noisy_pair(|b| {
        b.family_kanji = Some("高橋".into());
        b.insurance.clear();
        b.phones.clear();
    });
    assert!(linked_to(&b, a.person()), "{b:?}");
    if let Decision::Linked { evidence, .. } = &b {
        let family = evidence.levels.iter().find(|(f, _)| f.name() == "family_name").map(|(_, l)| l.as_str());
        assert_eq!(family, Some("kanji_exact"));
    }
}

#[test]
fn halfwidth_kana_and_long_vowel_link() {
    let (a, b) = noisy_pair(|b| {
        b.family_kanji = None;
        b.given_kanji = None;
        b.family_kana = Some("ﾀｶﾊｼ".into());
        b.given_kana = Some("ｹｰｺ".into());
        b.insurance.clear();
    });
    assert!(linked_to(&b, a.person()), "{b:?}");
}

#[test]
fn married_name_change_links() {
    let (a, b) = noisy_pair(|b| {
        b.family_kanji = Some("佐々木".into());
        b.family_kana = Some("ササキ".into());
        b.phones.clear();
    });
    assert!(linked_to(&b, a.person()), "{b:?}");
    // Without the insurance card, the address and given name and birth date still carry it.
    let (a, b) = noisy_pair(|b| {
        b.family_kanji = Some("佐々木".into());
        b.family_kana = Some("ササキ".into());
        b.insurance = vec!["39140280::81460488:00".parse().expect("valid")];
    });
    assert!(linked_to(&b, a.person()), "{b:?}");
}

#[test]
fn insurance_identity_links_deterministically() {
    let (a, b) = noisy_pair(|b| {
        b.family_kanji = None;
        b.family_kana = None;
        b.addresses.clear();
        b.phones.clear();
        // Same card typed in full width with a hyphen.
        b.insurance = vec!["06141089:２８５:８００-２５:00".parse().expect("valid")];
    });
    match &b {
        Decision::Linked { person, reason, .. } => {
            assert_eq!(*person, a.person());
            assert_eq!(*reason, LinkReason::Insurance);
        }
        other => panic!("{other:?}"),
    }
    // The card alone, without the given name and birth date agreeing, is a question for an
    // operator: anyone can copy a card number.
    let (a, b) = noisy_pair(|b| {
        b.family_kanji = None;
        b.family_kana = None;
        b.given_kanji = None;
        b.given_kana = None;
        b.addresses.clear();
        b.phones.clear();
    });
    match &b {
        Decision::Review { person, candidates } => {
            assert_ne!(*person, a.person());
            assert_eq!(candidates[0].hold, Some(Hold::IdentifierOnly));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cross_reference_links() {
    let mut ix = base_index();
    let a = rec(
        1,
        "X1",
        ("山田", "太郎"),
        ("ヤマダ", "タロウ"),
        Sex::Male,
        (1980, 1, 2),
        "東京都千代田区霞が関1-2-3",
        "100-0013",
        None,
        None,
    );
    let mut b = SourceRecord::new(SourceKey::new(fac(2), "X2"));
    b.cross_refs = vec![a.key.clone()];
    b.sex = Sex::Male;
    let da = ix.add(&a);
    // A bare cross-reference waits for an operator.
    let db = ix.add(&b);
    assert!(matches!(db, Decision::Review { .. }), "{db:?}");
    assert_ne!(da.person(), db.person());
    // Backed by the given name and birth date, it links at once.
    b.given_kana = Some("タロウ".into());
    b.birth_date = BirthDate::new(1980, 1, 2);
    let db = ix.add(&b);
    assert!(matches!(db, Decision::Linked { reason: LinkReason::CrossReference, .. }), "{db:?}");
    assert_eq!(da.person(), db.person());
}

#[test]
fn same_facility_goes_to_review() {
    let (a, b) = {
        let mut ix = base_index();
        let a = rec(
            1,
            "D1",
            ("森", "花子"),
            ("モリ", "ハナコ"),
            Sex::Female,
            (1977, 7, 7),
            "東京都港区芝公園4-2-8",
            "105-0011",
            Some("03-3333-4444"),
            None,
        );
        let mut b = a.clone();
        b.key = SourceKey::new(fac(1), "D2");
        (ix.add(&a), ix.add(&b))
    };
    match b {
        Decision::Review { candidates, .. } => {
            assert_eq!(candidates[0].person, a.person());
            assert_eq!(candidates[0].hold, Some(Hold::SameFacility));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn merge_split_round_trip_and_keep_apart() {
    let mut ix = base_index();
    let a = rec(
        1,
        "M1",
        ("小林", "誠"),
        ("コバヤシ", "マコト"),
        Sex::Male,
        (1971, 8, 9),
        "東京都新宿区西新宿2-8-1",
        "163-8001",
        None,
        None,
    );
    let b = rec(
        2,
        "M2",
        ("木村", "健"),
        ("キムラ", "ケン"),
        Sex::Male,
        (1990, 2, 3),
        "大阪府大阪市北区梅田1-1-1",
        "530-0001",
        None,
        None,
    );
    let pa = ix.add(&a).person();
    let pb = ix.add(&b).person();
    assert_ne!(pa, pb);
    let m = ix.merge(pa, pb).expect("both exist");
    assert_eq!(ix.person_of(&a.key), Some(m.survivor));
    assert_eq!(ix.person_of(&b.key), Some(m.survivor));
    assert_eq!(ix.records_of(m.survivor).map(|v| v.len()), Some(2));
    assert_eq!(ix.records_of(m.retired), None);
    let split = ix.split(&b.key).expect("indexed");
    assert_ne!(ix.person_of(&a.key), Some(split));
    assert_eq!(ix.person_of(&b.key), Some(split));
    // The operator's split is remembered: re-sending b unchanged does not link it back.
    let again = ix.add(&b);
    assert!(!matches!(again, Decision::Linked { person, .. } if Some(person) == ix.person_of(&a.key)));
    // Removing records.
    ix.remove(&b.key).expect("indexed");
    assert_eq!(ix.person_of(&b.key), None);
    assert!(ix.remove(&b.key).is_err());
}

#[test]
fn evaluate_does_not_insert_and_ranks() {
    let mut ix = base_index();
    let a = rec(
        1,
        "E1",
        ("髙橋", "恵子"),
        ("タカハシ", "ケイコ"),
        Sex::Female,
        (1965, 3, 12),
        "神奈川県藤沢市鵠沼海岸2-4-1",
        "251-0037",
        Some("090-1234-5678"),
        None,
    );
    let pa = ix.add(&a).person();
    let n = ix.len();
    let mut q = a.clone();
    q.key = SourceKey::new(fac(9), "query");
    q.family_kanji = Some("高橋".into());
    let c = ix.evaluate(&q);
    assert_eq!(ix.len(), n);
    assert_eq!(c[0].person, pa);
    assert!(c[0].probability > 0.99, "{:?}", c[0]);
}

#[test]
fn trained_model_round_trips_as_json() {
    let ix = base_index();
    let m = ix.model();
    let back = Model::from_json(&m.to_json()).expect("valid");
    assert_eq!(&back, m);
    // Estimated, not the initial guesses: birth date agreement is strong, given names matter.
    assert!(m.level_weight(musubi_identify::Field::BirthDate, 1) > 10.0);
    assert!(m.level_weight(musubi_identify::Field::GivenName, 5) < -5.0);
    assert!(m.prior > 0.0 && m.prior < 1e-3);
}

#[test]
fn rare_names_weigh_more_than_common_ones() {
    let ix = base_index();
    let mk = |id: &str, fam: (&str, &str)| {
        rec(
            5,
            id,
            (fam.0, "浩"),
            (fam.1, "ヒロシ"),
            Sex::Male,
            (1950, 1, 1),
            "北海道札幌市中央区北一条西2-1",
            "060-0001",
            None,
            None,
        )
    };
    let common = mk("C", ("佐藤", "サトウ"));
    let rare = mk("R", ("五十嵐", "イガラシ"));
    let mut ix2 = ix.clone();
    ix2.add(&common);
    ix2.add(&rare);
    let mut c2 = common.clone();
    c2.key = SourceKey::new(fac(6), "C2");
    let mut r2 = rare.clone();
    r2.key = SourceKey::new(fac(6), "R2");
    let wc = ix2.evaluate(&c2).first().map(|c| c.weight).unwrap_or(f64::MIN);
    let wr = ix2.evaluate(&r2).first().map(|c| c.weight).unwrap_or(f64::MIN);
    assert!(wr > wc + 2.0, "五十嵐 {wr} vs 佐藤 {wc}");
}

#[test]
fn restore_keeps_stored_persons() {
    let recs: Vec<SourceRecord> = synth_records(300, 5).into_iter().map(|(r, _)| r).collect();
    let mut b = IndexBuilder::new(LinkConfig::default());
    b.push_all(&recs);
    let (mut ix, _) = b.finish();
    // An operator split, then a restart.
    let some = recs.iter().find(|r| ix.records_of(ix.person_of(&r.key).expect("indexed")).map(|v| v.len()) > Some(1));
    let split_key = some.expect("a person with several records").key.clone();
    ix.split(&split_key).expect("indexed");
    let links = ix.links();
    let mut b = IndexBuilder::new(LinkConfig::default());
    b.push_all(&recs);
    let others: Vec<SourceKey> = recs.iter().map(|r| r.key.clone()).filter(|k| *k != split_key).collect();
    let kept: Vec<(SourceKey, SourceKey)> = others.into_iter().map(|o| (split_key.clone(), o)).collect();
    let mut restored = b.restore(ix.model().clone(), &links, &kept);
    assert_eq!(restored.links(), links);
    // The split record, sent again, stays apart from its former person.
    let r = recs.iter().find(|r| r.key == split_key).expect("present").clone();
    let d = restored.add(&r);
    assert!(!matches!(d, Decision::Linked { .. }), "{d:?}");
}
