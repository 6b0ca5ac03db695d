//! Hand-written UKE files (built here, synthetic data only): both date editions, CR LF and the
//! 0x1A terminator, 医科 / DPC / 調剤, and the broken cases that must be quarantined with a
//! located reason while the rest of the file lands.

use musubi_domain::FacilityCode;
use musubi_uke::{Edition, FileKind, ProblemKind, Severity, UkeFile, collect};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A record with `fields` first and empty fields up to `total`.
fn rec(fields: &[&str], total: usize) -> String {
    let mut v: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
    v.resize(total.max(fields.len()), String::new());
    v.join(",")
}

/// An SI/IY line of the current edition with 算定日 values on the given days.
fn with_days(head: &[&str], days: &[(usize, &str)]) -> String {
    let mut v: Vec<String> = head.iter().map(|s| (*s).to_owned()).collect();
    v.resize(44, String::new());
    for (d, val) in days {
        v[13 + d - 1] = (*val).to_owned();
    }
    v.join(",")
}

fn file(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!bad);
    let mut out = b.into_owned();
    out.push(0x1a);
    out
}

fn ir(ym: &str) -> String {
    rec(&["IR", "1", "13", "1", "8814790", "", "むすび内科クリニック", ym, "00", "0312345678"], 10)
}

fn re_current(no: &str, name: &str, sex: &str, birth: &str, karte: &str, kana: &str) -> String {
    let mut v = vec![String::new(); 38];
    for (i, s) in ["RE", no, "1112", "202405", name, sex, birth].iter().enumerate() {
        v[i] = (*s).to_owned();
    }
    v[13] = karte.to_owned();
    v[36] = kana.to_owned();
    v.join(",")
}

fn current_edition() -> Vec<String> {
    vec![
        ir("202405"),
        re_current("1", "架空　一郎", "1", "19700401", "K0001", "カクウ　イチロウ"),
        rec(&["HO", "06139999", "１２", "３４", "2", "465"], 15),
        rec(&["KO", "54136015", "1234566", "", "2", "465"], 12),
        rec(&["SN", "1", "01", "06139999", "１２", "３４", "01"], 9),
        rec(&["SY", "8848176", "20240501", "1", "", "", "01", ""], 8),
        rec(&["SY", "0000999", "20240510", "2", "80028003", "架空の病名", "", "経過観察"], 8),
        with_days(&["SI", "12", "", "112007410", "", "73", "2"], &[(7, "1"), (21, "1")]),
        rec(&["CO", "12", "", "810000001", "再診時に説明"], 5),
        with_days(&["IY", "21", "", "620007880", "3", "12", "14"], &[(7, "14")]),
        rec(&["TO", "40", "", "700010000", "1", "10", "1", "", "", "", "架空の器材"], 48),
        re_current("2", "架空　花子", "2", "19820911", "", "カクウ　ハナコ"),
        rec(&["HO", "39131234", "", "00112233", "1", "120"], 15),
        rec(&["SY", "8849692", "20240401", "1", "", "", "", ""], 8),
        rec(&["GO", "3", "585", "99"], 4),
    ]
}

fn landed(f: &UkeFile, i: usize) -> &musubi_uke::MappedReceipt {
    f.receipts[i].result.as_ref().unwrap_or_else(|e| panic!("receipt {i} quarantined: {e:?}"))
}

fn of<'a>(r: &'a musubi_uke::MappedReceipt, t: &str) -> Vec<&'a Value> {
    r.resources.iter().filter(|x| x.resource_type == t).map(|x| &x.resource).collect()
}

#[test]
fn current_edition_medical_file_lands_with_values() {
    let bytes = file(&current_edition());
    let f = collect("20240601.UKE", &bytes, Some("1318814790".parse().unwrap())).unwrap();
    assert_eq!(f.kind, FileKind::Medical);
    assert_eq!(f.edition, Edition::Seireki);
    assert_eq!(f.facility.as_str(), "1318814790");
    assert_eq!(f.facility_name.as_deref(), Some("むすび内科クリニック"));
    assert_eq!(f.billing_month, "2024-05");
    assert_eq!(f.records, 15);
    assert!(f.problems.is_empty(), "{:?}", f.problems);
    assert_eq!(f.receipts.len(), 2);
    assert_eq!(f.receipts[0].lines, (2, 11));

    let r = landed(&f, 0);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let p = &r.patient;
    assert_eq!(p["name"][0]["text"], "架空　一郎");
    assert_eq!(p["name"][0]["family"], "架空");
    assert_eq!(p["name"][0]["given"][0], "一郎");
    assert_eq!(p["name"][0]["extension"][0]["valueCode"], "IDE");
    assert_eq!(p["name"][1]["text"], "カクウ　イチロウ");
    assert_eq!(p["name"][1]["extension"][0]["valueCode"], "SYL");
    assert_eq!(p["gender"], "male");
    assert_eq!(p["birthDate"], "1970-04-01");
    assert_eq!(p["identifier"][0]["system"], "urn:oid:1.2.392.100495.20.3.51.11318814790");
    assert_eq!(p["identifier"][0]["value"], "K0001");
    assert_eq!(p["identifier"][1]["system"], "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID");
    assert_eq!(p["identifier"][1]["value"], "06139999:１２:３４:01");
    assert_eq!(r.resources[0].resource_type, "Patient");

    let use_ = &r.facility_use;
    assert_eq!(use_.facility.as_str(), "1318814790");
    assert_eq!(use_.year_month, "2024-05");
    assert_eq!(use_.insurance_id.as_ref().unwrap().match_key(), "06139999:12:34:01");
    assert_eq!(use_.patient_id, p["id"].as_str().unwrap());

    let cov = of(r, "Coverage");
    assert_eq!(cov[0]["payor"][0]["identifier"]["value"], "06139999");
    assert_eq!(cov[0]["dependent"], "01");
    assert_eq!(cov[1]["payor"][0]["identifier"]["value"], "54136015");
    assert_eq!(cov[1]["subscriberId"], "1234566");

    let cond = of(r, "Condition");
    assert_eq!(cond[0]["code"]["coding"][0]["system"], "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease");
    assert_eq!(cond[0]["code"]["coding"][0]["code"], "8848176");
    assert_eq!(cond[0]["code"]["text"], "１１β－水酸化酵素欠損症");
    assert_eq!(cond[0]["onsetDateTime"], "2024-05-01");
    assert_eq!(cond[0]["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(cond[0]["note"][0]["text"], "主傷病");
    assert_eq!(cond[1]["code"]["text"], "架空の病名");
    assert_eq!(cond[1]["clinicalStatus"]["coding"][0]["code"], "resolved");
    assert_eq!(cond[1]["abatementString"], "2024-05 転帰: 治ゆ");
    assert_eq!(cond[1]["note"][0]["text"], "修飾語コード: 8002 8003");
    assert_eq!(cond[1]["note"][1]["text"], "補足コメント: 経過観察");

    let procs = of(r, "Procedure");
    assert_eq!(procs[0]["code"]["coding"][0]["code"], "112007410");
    assert_eq!(procs[0]["performedPeriod"]["start"], "2024-05-07");
    assert_eq!(procs[0]["performedPeriod"]["end"], "2024-05-21");
    let notes: Vec<&str> = procs[0]["note"].as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap()).collect();
    assert!(notes.contains(&"回数: 2"));
    assert!(notes.contains(&"算定日: 7日(1), 21日(1)"));
    assert!(notes.contains(&"コメント 810000001: 再診時に説明"), "{notes:?}");
    assert_eq!(procs[1]["usedCode"][0]["coding"][0]["code"], "700010000");
    assert_eq!(procs[1]["usedCode"][0]["text"], "架空の器材");

    let meds = of(r, "MedicationStatement");
    assert_eq!(meds[0]["medicationCodeableConcept"]["coding"][0]["code"], "620007880");
    assert_eq!(meds[0]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"], 3);
    assert_eq!(meds[0]["effectivePeriod"]["start"], "2024-05-07");

    // 後期高齢: no 記号, so that slot is empty; no カルテ番号, so the patient is keyed on it.
    let r2 = landed(&f, 1);
    assert_eq!(r2.facility_use.insurance_id.as_ref().unwrap().to_string(), "39131234::00112233:");
    assert_eq!(r2.patient["gender"], "female");
    assert_eq!(of(r2, "Condition")[0]["code"]["text"], "１７β－ヒドロキシステロイド脱水素酵素欠損症");
}

#[test]
fn reimport_gives_the_same_ids() {
    let bytes = file(&current_edition());
    let a = collect("a.UKE", &bytes, None).unwrap();
    let b = collect("b.UKE", &bytes, None).unwrap();
    let ids = |f: &UkeFile| -> Vec<String> {
        f.receipts.iter().flat_map(|r| r.result.as_ref().unwrap().resources.iter().map(|x| x.id.clone())).collect()
    };
    assert_eq!(ids(&a), ids(&b));
    let mut all = ids(&a);
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
    assert_eq!(a.sha256, b.sha256);
}

#[test]
fn older_wareki_edition() {
    let re = rec(&["RE", "1", "1112", "43012", "カクウ　タロウ", "1", "3230405"], 35);
    let lines = vec![
        rec(&["IR", "2", "13", "1", "8814790", "", "むすび医院", "43012", "00", ""], 10),
        re,
        rec(&["HO", "  133066", "", "1234", "1", "100"], 15),
        rec(&["SY", "8848177", "4301201", "4", "", "", "", ""], 8),
        rec(&["SI", "11", "", "111000110", "", "282", "1"], 13),
        rec(&["IY", "21", "", "610453119", "2", "5", "7"], 13),
        rec(&["GO", "1", "100", "99"], 4),
    ];
    let f = collect("old.UKE", &file(&lines), None).unwrap();
    assert_eq!(f.edition, Edition::Wareki);
    assert_eq!(f.billing_month, "2018-12");
    let r = landed(&f, 0);
    assert_eq!(r.patient["birthDate"], "1948-04-05");
    assert_eq!(r.patient["name"][0]["extension"][0]["valueCode"], "SYL");
    assert_eq!(r.facility_use.year_month, "2018-12");
    // A 6-digit 国保 number written right-aligned with spaces becomes 8 digits.
    assert_eq!(r.facility_use.insurance_id.as_ref().unwrap().to_string(), "00133066::1234:");
    let c = of(r, "Condition")[0];
    assert_eq!(c["onsetDateTime"], "2018-12-01");
    assert_eq!(c["clinicalStatus"]["coding"][0]["code"], "inactive");
    assert_eq!(c["code"]["text"], "１７α－水酸化酵素欠損症");
    // No 算定日 in this edition: the month is all the claim tells.
    assert_eq!(of(r, "Procedure")[0]["performedDateTime"], "2018-12");
    assert_eq!(of(r, "MedicationStatement")[0]["effectiveDateTime"], "2018-12");
}

#[test]
fn a_truncated_line_quarantines_its_receipt_only() {
    let mut lines = current_edition();
    // Receipt 2's SY is cut after its third field.
    lines[13] = "SY,8849692,20240401".into();
    let f = collect("cut.UKE", &file(&lines), None).unwrap();
    assert!(f.receipts[0].result.is_ok());
    let errs = f.receipts[1].result.as_ref().unwrap_err();
    let e = errs.iter().find(|p| p.severity == Severity::Error).unwrap();
    assert_eq!(e.kind, ProblemKind::Structure);
    assert_eq!(e.line, Some(14));
    assert_eq!(e.record.as_deref(), Some("SY"));
    assert!(e.reason.contains("フィールド数が 3 です（8 が必要です）"), "{}", e.reason);
    assert_eq!(f.receipts[1].receipt_no.as_deref(), Some("2"));
    assert!(f.receipts[1].raw.contains("SY,8849692,20240401"));
}

#[test]
fn a_wrong_record_order_is_named() {
    let mut lines = current_edition();
    // Receipt 2: SY before HO.
    lines.swap(12, 13);
    let f = collect("order.UKE", &file(&lines), None).unwrap();
    assert!(f.receipts[0].result.is_ok());
    let errs = f.receipts[1].result.as_ref().unwrap_err();
    let e = errs.iter().find(|p| p.kind == ProblemKind::Order).unwrap();
    assert_eq!(e.line, Some(14));
    assert_eq!(e.record.as_deref(), Some("HO"));
    assert!(e.reason.contains("HO レコードが SY レコードより後にあります"), "{}", e.reason);

    // A record before any RE is its own quarantined unit.
    let mut lines = current_edition();
    let ho = lines.remove(2);
    lines.insert(1, ho);
    let f = collect("stray.UKE", &file(&lines), None).unwrap();
    assert_eq!(f.receipts[0].receipt_no, None);
    let e = &f.receipts[0].result.as_ref().unwrap_err()[0];
    assert!(e.reason.contains("RE レコードより前"), "{}", e.reason);
    assert!(f.receipts[1].result.is_ok());
}

#[test]
fn a_bad_code_is_named() {
    let mut lines = current_edition();
    lines[5] = rec(&["SY", "12345AB", "20240501", "1", "", "", "01", ""], 8);
    lines[7] = with_days(&["SI", "12", "", "11200741", "", "73", "2"], &[(7, "x")]);
    let f = collect("code.UKE", &file(&lines), None).unwrap();
    let errs = f.receipts[0].result.as_ref().unwrap_err();
    let sy = errs.iter().find(|p| p.record.as_deref() == Some("SY")).unwrap();
    assert_eq!((sy.line, sy.field, sy.kind), (Some(6), Some(2), ProblemKind::Code));
    assert_eq!(sy.reason, "SY-2 傷病名コード \"12345AB\" が 7 桁の数字ではありません");
    let si: Vec<_> = errs.iter().filter(|p| p.record.as_deref() == Some("SI")).collect();
    assert!(si.iter().any(|p| p.field == Some(4)));
    assert!(si.iter().any(|p| p.field == Some(20) && p.reason.contains("7日")), "{si:?}");
    assert!(f.receipts[1].result.is_ok());
    // A well-formed code that the master lacks lands with a warning.
    let mut lines = current_edition();
    lines[5] = rec(&["SY", "1234567", "20240501", "1", "", "", "", ""], 8);
    let f = collect("unknown.UKE", &file(&lines), None).unwrap();
    let r = landed(&f, 0);
    assert!(
        r.problems.iter().any(|p| p.severity == Severity::Warning && p.reason.contains("傷病名マスターにありません"))
    );
}

#[test]
fn whole_file_rejections() {
    // Cut before GO.
    let mut lines = current_edition();
    lines.pop();
    let e = collect("nogo.UKE", &file(&lines), None).unwrap_err();
    assert!(e.problems.iter().any(|p| p.reason.contains("GO レコードがありません")));
    // Not starting with IR / YK.
    let mut lines = current_edition();
    lines.remove(0);
    let e = collect("noir.UKE", &file(&lines), None).unwrap_err();
    assert_eq!(e.problems[0].line, Some(1));
    assert!(e.problems[0].reason.contains("IR（医科）でも YK（調剤）でもありません"));
    // Another facility's file.
    let other: FacilityCode = "1312345678".parse().unwrap();
    let e = collect("other.UKE", &file(&current_edition()), Some(other)).unwrap_err();
    assert_eq!(e.problems[0].kind, ProblemKind::Consistency);
    // Data after the EOF byte.
    let mut bytes = file(&current_edition());
    bytes.extend_from_slice(b"SY,1\r\n");
    assert!(collect("eof.UKE", &bytes, None).is_err());
    // Bad bytes in the header.
    let mut bytes = file(&current_edition());
    bytes[3] = 0x81;
    bytes[4] = 0x0d;
    assert!(collect("bytes.UKE", &bytes, None).is_err());
}

#[test]
fn line_ends_and_terminator_variants() {
    let text = current_edition().join("\n");
    let (b, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
    let f = collect("lf.UKE", &b, None).unwrap();
    assert!(f.problems.iter().any(|p| p.reason.contains("LF")));
    assert!(f.problems.iter().any(|p| p.reason.contains("最終行が改行で終わっていません")));
    assert!(f.receipts.iter().all(|r| r.result.is_ok()));
    // CR LF without the 0x1A terminator is fine too.
    let mut bytes = file(&current_edition());
    bytes.pop();
    let f = collect("noeof.UKE", &bytes, None).unwrap();
    assert!(f.problems.is_empty());
}

#[test]
fn go_totals_are_checked() {
    let mut lines = current_edition();
    let last = lines.len() - 1;
    lines[last] = rec(&["GO", "9", "1", "99"], 4);
    let f = collect("go.UKE", &file(&lines), None).unwrap();
    assert!(f.problems.iter().any(|p| p.field == Some(2) && p.reason.contains("3")));
    assert!(f.problems.iter().any(|p| p.field == Some(3) && p.reason.contains("585")));
}

#[test]
fn pharmacy_file_gives_dispenses() {
    let mut re = vec![String::new(); 42];
    for (i, s) in [
        "RE",
        "1",
        "4112",
        "202405",
        "架空　次郎",
        "1",
        "19600101",
        "",
        "",
        "13",
        "1",
        "8814790",
        "むすび内科クリニック",
    ]
    .iter()
    .enumerate()
    {
        re[i] = (*s).to_owned();
    }
    re[35] = "D-77".into();
    re[41] = "カクウ　ジロウ".into();
    let lines = vec![
        rec(&["YK", "1", "13", "4", "1234567", "むすび薬局", "202405", "00", ""], 9),
        re.join(","),
        rec(&["HO", "06139999", "５６", "７８", "1", "300"], 14),
        rec(&["SN", "1", "01", "06139999", "５６", "７８", "02"], 9),
        rec(&["SH", "1", "1", "1013044400000000", "", "30"], 10),
        rec(&["CZ", "1", "20240510", "20240510", "1", "14", "1"], 54),
        rec(&["IY", "1", "620005570", "3"], 10),
        rec(&["CO", "810000001", "一包化"], 3),
        rec(&["GO", "1", "300", "99"], 4),
    ];
    let f = collect("rx.UKE", &file(&lines), None).unwrap();
    assert_eq!(f.kind, FileKind::Pharmacy);
    assert_eq!(f.facility.as_str(), "1341234567");
    let r = landed(&f, 0);
    assert_eq!(r.patient["identifier"][0]["value"], "D-77");
    assert_eq!(r.facility_use.insurance_id.as_ref().unwrap().to_string(), "06139999:５６:７８:02");
    let d = of(r, "MedicationDispense")[0];
    assert_eq!(d["medicationCodeableConcept"]["coding"][0]["code"], "620005570");
    assert_eq!(d["quantity"]["value"], 3);
    assert_eq!(d["daysSupply"]["value"], 14);
    assert_eq!(d["whenHandedOver"], "2024-05-10");
    assert_eq!(d["dosageInstruction"][0]["timing"]["code"]["coding"][0]["code"], "1013044400000000");
    let notes: Vec<&str> = d["note"].as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap()).collect();
    assert!(notes.contains(&"コメント 810000001: 一包化"), "{notes:?}");
    // JP_MedicationDispense: the Rp number (SH 処方No) and the drug's place in it.
    assert_eq!(
        d["identifier"],
        json!([
            {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber", "value": "1"},
            {"system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicationAdministrationIndex", "value": "1"},
        ])
    );
}

#[test]
fn dispenses_count_their_place_in_each_rp() {
    let mut re = vec![String::new(); 42];
    for (i, s) in ["RE", "1", "4112", "202405", "架空　次郎", "1", "19600101"].iter().enumerate() {
        re[i] = (*s).to_owned();
    }
    re[35] = "D-78".into();
    let lines = vec![
        rec(&["YK", "1", "13", "4", "1234567", "むすび薬局", "202405", "00", ""], 9),
        re.join(","),
        rec(&["HO", "06139999", "５６", "７８", "1", "300"], 14),
        rec(&["SH", "01", "1", "1013044400000000", "", "30"], 10),
        rec(&["CZ", "1", "20240510", "20240510", "1", "14", "1"], 54),
        rec(&["IY", "1", "620005570", "3"], 10),
        rec(&["IY", "1", "620007880", "1"], 10),
        rec(&["SH", "02", "3", "1050110020000000", "", "10"], 10),
        rec(&["CZ", "1", "20240510", "20240510", "1", "5", "1"], 54),
        rec(&["IY", "1", "620002023", "2"], 10),
        rec(&["GO", "1", "300", "99"], 4),
    ];
    let f = collect("rx2.UKE", &file(&lines), None).unwrap();
    let d = of(landed(&f, 0), "MedicationDispense");
    let ids: Vec<(&str, &str)> = d
        .iter()
        .map(|x| (x["identifier"][0]["value"].as_str().unwrap(), x["identifier"][1]["value"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, [("01", "1"), ("01", "2"), ("02", "1")]);
    assert_eq!(d[2]["medicationCodeableConcept"]["coding"][0]["code"], "620002023");
}

/// A receipt computer numbers receipts per file: the same レセプト番号 in a facility's 社保 and
/// 国保 files, or its 医科 and DPC files, of one month are other patients' receipts and must
/// get other ids; the same file read again gives the same ids.
#[test]
fn receipt_numbers_reused_by_other_files_of_the_month_get_other_ids() {
    let ids = |f: &UkeFile| -> Vec<String> {
        f.receipts
            .iter()
            .flat_map(|r| r.result.as_ref().unwrap().resources.iter())
            .filter(|x| x.resource_type != "Patient")
            .map(|x| x.id.clone())
            .collect()
    };
    let shaho = current_edition();
    let mut kokuho = current_edition();
    kokuho[0] = rec(&["IR", "2", "13", "1", "8814790", "", "むすび内科クリニック", "202405", "00", "0312345678"], 10);
    let dpc = vec![
        ir("202405"),
        re_current("1", "架空　三郎", "1", "19550505", "K9", ""),
        rec(&["HO", "06139999", "１", "２", "10", "5000"], 15),
        rec(&["BU", "040080xx99x0xx", "20240501", "20240510", "1", ""], 6),
        rec(&["SB", "8848176", "", "", "E250", "11", "", ""], 8),
        rec(&["GO", "1", "5000", "99"], 4),
    ];
    let mut volume2 = current_edition();
    volume2[0] = rec(&["IR", "1", "13", "1", "8814790", "", "むすび内科クリニック", "202405", "02", "0312345678"], 10);
    let files: Vec<UkeFile> =
        [&shaho, &kokuho, &dpc, &volume2].iter().map(|l| collect("RECEIPTC.UKE", &file(l), None).unwrap()).collect();
    let mut all: Vec<String> = files.iter().flat_map(ids).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "ids collide between the files of one month");
    // The keys say which submission a receipt came from.
    let key = |f: &UkeFile| f.receipts[0].result.as_ref().unwrap().resources[1].key.clone();
    assert_eq!(key(&files[0]), "1318814790.202405.ika1.1.HO.1");
    assert_eq!(key(&files[1]), "1318814790.202405.ika2.1.HO.1");
    assert_eq!(key(&files[2]), "1318814790.202405.dpc1.1.HO.1");
    assert_eq!(key(&files[3]), "1318814790.202405.ika1v02.1.HO.1");
    // Idempotent: the same bytes under another name give the same ids.
    let again = collect("again.UKE", &file(&kokuho), None).unwrap();
    assert_eq!(ids(&again), ids(&files[1]));
}

#[test]
fn dpc_records_map() {
    let lines = vec![
        ir("202405"),
        re_current("1", "架空　三郎", "1", "19550505", "K9", ""),
        rec(&["HO", "06139999", "１", "２", "10", "5000"], 15),
        rec(&["BU", "040080xx99x0xx", "20240501", "20240510", "1", ""], 6),
        rec(&["SB", "8848176", "", "", "E250", "11", "", ""], 8),
        rec(&["CD", "20240502", "50", "1", "1", "620007880", "1", "", "", "1", ""], 11),
        rec(&["CD", "20240503", "60", "2", "1", "160008010", "", "", "", "1", ""], 11),
        rec(&["GO", "1", "5000", "99"], 4),
    ];
    let f = collect("dpc.UKE", &file(&lines), None).unwrap();
    let r = landed(&f, 0);
    let c = of(r, "Condition")[0];
    assert_eq!(c["code"]["coding"][1]["code"], "E250");
    assert_eq!(c["code"]["text"], "１１β－水酸化酵素欠損症");
    assert_eq!(of(r, "MedicationStatement")[0]["effectiveDateTime"], "2024-05-02");
    assert_eq!(of(r, "Procedure")[0]["code"]["coding"][0]["code"], "160008010");
    assert_eq!(of(r, "Procedure")[0]["performedDateTime"], "2024-05-03");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        musubi_uke::fuzz_parse(&data);
    }

    #[test]
    fn mutated_files_never_panic(at in any::<prop::sample::Index>(), bytes in proptest::collection::vec(any::<u8>(), 1..12), cut in any::<prop::sample::Index>()) {
        let mut data = file(&current_edition());
        let i = at.index(data.len());
        data.splice(i..i, bytes);
        musubi_uke::fuzz_parse(&data);
        let c = cut.index(data.len());
        musubi_uke::fuzz_parse(&data[..c]);
    }

    #[test]
    fn csv_like_text_never_panics(lines in proptest::collection::vec("(IR|RE|HO|KO|SY|SI|IY|TO|CO|SN|GO|YK|CZ|SH|CD|SB|[A-Z]{2})(,[0-9A-Za-zあ-ん　 ]{0,9}){0,50}", 0..12)) {
        let text = lines.join("\r\n");
        let (b, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
        musubi_uke::fuzz_parse(&b);
    }
}
