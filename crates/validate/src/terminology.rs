//! Code tables of the shared items, loaded from the same embedded material as the profiles:
//!
//! - the 43 core lab items and 5 infection items: the JP-CLINS CodeSystems
//!   `JP_CLINS_ObsLabResult_CoreLabo_CS` / `…_InfectionLabo_CS` (JLAC10 grouping), whose concept
//!   hierarchy is group → JLAC10 17-digit codes;
//! - the J-FAGY allergen master (`reference/jfagy/JFAGY_J9FN_20250401_R01-utf8.csv`, ©
//!   国立大学法人東京大学・一般社団法人日本医療情報学会, CC BY 4.0): code → Japanese term;
//! - a small table of 一般名処方マスタ entries ([`GENERAL_ORDER_CODES`]), for the one
//!   consistency check the validator can make without the full master;
//! - the formats of codes whose masters are not available (MEDIS 病名管理番号, YJ, 一般名処方).

use std::collections::HashMap;
use std::sync::OnceLock;

use musubi_domain::systems;
use unicode_normalization::UnicodeNormalization;

use crate::package;

/// A group of lab items (the first level of the JP-CLINS lab CodeSystems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabGroup {
    /// The group code (`HbA1c-NGSP`, `ALB`, `HBs-AG-QUANT`, …).
    pub code: &'static str,
    /// Japanese name (`アルブミン`, `HBs抗原(定量)`).
    pub display: &'static str,
    /// Core item (検査) or infection item (感染症).
    pub kind: LabKind,
}

/// Whether a lab group is one of the 43 core items or one of the 5 infection items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabKind {
    /// 検査 (core lab items).
    Core,
    /// 感染症 (syphilis STS/TP, HBs, HCV, HIV).
    Infection,
}

/// One J-FAGY code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JfagyEntry {
    /// The code (`J9FC11310000`).
    pub code: &'static str,
    /// Japanese term (JPTERM).
    pub term: &'static str,
    /// End date of validity (`99999999` while current).
    pub end_date: &'static str,
}

struct Tables {
    /// JLAC10 code → (group index, kind).
    lab_codes: HashMap<&'static str, usize>,
    lab_groups: Vec<LabGroup>,
    /// Group code → index, per kind.
    group_index: HashMap<(LabKind, &'static str), usize>,
    jfagy: HashMap<&'static str, JfagyEntry>,
    document_sections: HashMap<&'static str, &'static str>,
}

/// The JP-CLINS document section CodeSystem.
pub const DOCUMENT_SECTION_CS: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/document-section";

fn collect_concepts(concepts: &[package::Concept], out: &mut HashMap<&'static str, &'static str>) {
    for c in concepts {
        out.insert(leak(c.code.clone()), leak(c.display.clone().unwrap_or_default()));
        collect_concepts(&c.concept, out);
    }
}

/// The J-FAGY master, verbatim.
static JFAGY_CSV: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../reference/jfagy/JFAGY_J9FN_20250401_R01-utf8.csv"));

fn leak(s: String) -> &'static str {
    // The tables live for the whole process (built once in a OnceLock).
    Box::leak(s.into_boxed_str())
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            lab_codes: HashMap::new(),
            lab_groups: Vec::new(),
            group_index: HashMap::new(),
            jfagy: HashMap::new(),
            document_sections: HashMap::new(),
        };
        let cs = package::code_systems(
            package::JP_CLINS,
            &[systems::CORE_LABO_JLAC10, systems::INFECTION_LABO_JLAC10, DOCUMENT_SECTION_CS],
        );
        if let Some(sections) = cs.get(DOCUMENT_SECTION_CS) {
            collect_concepts(&sections.concept, &mut t.document_sections);
        }
        for (url, kind) in
            [(systems::CORE_LABO_JLAC10, LabKind::Core), (systems::INFECTION_LABO_JLAC10, LabKind::Infection)]
        {
            let Some(cs) = cs.get(url) else { continue };
            for group in &cs.concept {
                // Core groups have no display; their codes carry the Japanese name as a designation.
                let display = group
                    .display
                    .clone()
                    .filter(|_| kind == LabKind::Infection)
                    .or_else(|| {
                        group.concept.iter().find_map(|c| {
                            c.designation.iter().find(|d| d.language.as_deref() == Some("ja")).map(|d| d.value.clone())
                        })
                    })
                    .or_else(|| group.concept.first().and_then(|c| c.display.clone()))
                    .unwrap_or_else(|| group.code.clone());
                let code = leak(group.code.clone());
                t.lab_groups.push(LabGroup { code, display: leak(display), kind });
                let idx = t.lab_groups.len() - 1;
                t.group_index.insert((kind, code), idx);
                for c in &group.concept {
                    t.lab_codes.insert(leak(c.code.clone()), idx);
                }
            }
        }
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(JFAGY_CSV.as_bytes());
        for rec in rdr.records().flatten() {
            let (Some(code), Some(term), Some(end)) = (rec.get(1), rec.get(2), rec.get(10)) else { continue };
            let code = leak(code.to_owned());
            t.jfagy.insert(code, JfagyEntry { code, term: leak(term.to_owned()), end_date: leak(end.to_owned()) });
        }
        t
    })
}

fn lab_lookup(system: &str, code: &str, kind: LabKind) -> Option<&'static LabGroup> {
    let t = tables();
    let ok_system = match kind {
        LabKind::Core => system == systems::CORE_LABO_JLAC10 || system == systems::JLAC10,
        LabKind::Infection => system == systems::INFECTION_LABO_JLAC10 || system == systems::JLAC10,
    };
    if !ok_system {
        return None;
    }
    let g = t.lab_groups.get(*t.lab_codes.get(code)?)?;
    (g.kind == kind).then_some(g)
}

/// If `code` (in the JLAC10 system or the core-item CodeSystem) is one of the 43 core lab items,
/// its group code (`ALB`, `HbA1c-NGSP`, …).
pub fn is_core_lab_code(system: &str, code: &str) -> Option<&'static str> {
    lab_lookup(system, code, LabKind::Core).map(|g| g.code)
}

/// If `code` (in the JLAC10 system or the infection-item CodeSystem) is one of the 5 infection
/// items, its group code (`HBs-AG-QUANT`, `TP-RESULT`, …).
pub fn is_infection_lab_code(system: &str, code: &str) -> Option<&'static str> {
    lab_lookup(system, code, LabKind::Infection).map(|g| g.code)
}

/// The lab group (with its Japanese name) of a JLAC10 code, core or infection.
pub fn lab_group(system: &str, code: &str) -> Option<&'static LabGroup> {
    lab_lookup(system, code, LabKind::Core).or_else(|| lab_lookup(system, code, LabKind::Infection))
}

/// The lab group with this group code.
pub fn lab_group_by_code(kind: LabKind, group: &str) -> Option<&'static LabGroup> {
    let t = tables();
    t.group_index.iter().find(|((k, c), _)| *k == kind && *c == group).and_then(|(_, &i)| t.lab_groups.get(i))
}

/// All lab groups of a kind, in CodeSystem order.
pub fn lab_groups(kind: LabKind) -> impl Iterator<Item = &'static LabGroup> {
    tables().lab_groups.iter().filter(move |g| g.kind == kind)
}

/// The J-FAGY entry for a code (food J9F…, non-food J9N…, dummies D9F/D9M/D9N…).
pub fn jfagy(code: &str) -> Option<&'static JfagyEntry> {
    tables().jfagy.get(code)
}

/// The Japanese term of a J-FAGY code.
pub fn jfagy_term(code: &str) -> Option<&'static str> {
    jfagy(code).map(|e| e.term)
}

/// Number of codes in the J-FAGY master.
pub fn jfagy_len() -> usize {
    tables().jfagy.len()
}

/// The name of a JP-CLINS document section code (`300` → 構造情報セクション), if the
/// CodeSystem defines it.
pub fn document_section(code: &str) -> Option<&'static str> {
    tables().document_sections.get(code).copied()
}

/// MEDIS 病名管理番号 (ICD10対応標準病名マスター): 8 digits; `99999999` means uncoded.
pub fn is_medis_disease_key(code: &str) -> bool {
    code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit())
}

/// YJ code (個別医薬品コード): 12 characters — 薬効分類 4 digits, 投与経路・成分 3, 剤形 1 letter,
/// then 規格 and product characters, the last being a check digit.
pub fn is_yj_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 12
        && b[..7].iter().all(u8::is_ascii_digit)
        && b[7].is_ascii_uppercase()
        && b[8..11].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && b[11].is_ascii_digit()
}

/// 一般名処方コード (一般名処方マスタ): the first 9 characters of the 薬価基準収載医薬品コード
/// (薬効分類 4, 成分 3, 剤形 letter, 規格) followed by `ZZZ`, e.g. `1124030F2ZZZ`.
pub fn is_general_order_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 12
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4..7].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && b[7].is_ascii_uppercase()
        && (b[8].is_ascii_digit() || b[8].is_ascii_uppercase())
        && &b[9..] == b"ZZZ"
}

/// JLAC10 17-character code: uppercase letters and digits.
pub fn is_jlac10(code: &str) -> bool {
    code.len() == 17 && code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// A small excerpt of the 一般名処方マスタ (code → 一般名処方の標準的な記載).
///
/// Source: 厚生労働省「処方箋に記載する一般名処方の標準的な記載（一般名処方マスタ）」 as carried in
/// the 社会保険診療報酬支払基金 基本マスター 医薬品マスター (columns 37 一般名コード / 38
/// 一般名処方の標準的な記載), edition applied from 2026-04-01; クアゼパム錠２０ｍｇ also appears in the
/// JP-CLINS example `MedicationRequest-Example-JP-MedReq-PO-SID-28days`. This is NOT the master:
/// it only lets the validator catch a code whose display names a drug listed here under a
/// different code. Codes not listed pass with an information issue.
pub const GENERAL_ORDER_CODES: &[(&str, &str)] = &[
    ("1124030F2ZZZ", "【般】クアゼパム錠２０ｍｇ"),
    ("1129007F2ZZZ", "【般】ゾピクロン錠１０ｍｇ"),
    ("1129008F3ZZZ", "【般】タンドスピロンクエン酸塩錠２０ｍｇ"),
    ("1141700J2ZZZ", "【般】アセトアミノフェン坐剤１００ｍｇ"),
    ("1141700J3ZZZ", "【般】アセトアミノフェン坐剤２００ｍｇ"),
    ("1147002F1ZZZ", "【般】ジクロフェナクＮａ錠２５ｍｇ"),
    ("1149019F1ZZZ", "【般】ロキソプロフェンＮａ錠６０ｍｇ"),
    ("1149032F1ZZZ", "【般】エトドラク錠１００ｍｇ"),
    ("1149700J1ZZZ", "【般】ケトプロフェン坐剤５０ｍｇ"),
    ("1161001F1ZZZ", "【般】アマンタジン塩酸塩錠５０ｍｇ"),
    ("1162001F1ZZZ", "【般】ビペリデン塩酸塩錠１ｍｇ"),
    ("1169005F1ZZZ", "【般】ブロモクリプチンメシル酸塩錠２．５ｍｇ"),
    ("1179038F6ZZZ", "【般】リスペリドン口腔内崩壊錠２ｍｇ"),
    ("2132003F1ZZZ", "【般】トリクロルメチアジド錠２ｍｇ"),
    ("2132003F3ZZZ", "【般】トリクロルメチアジド錠１ｍｇ"),
    ("2144009F1ZZZ", "【般】テモカプリル塩酸塩錠１ｍｇ"),
    ("2144009F2ZZZ", "【般】テモカプリル塩酸塩錠２ｍｇ"),
    ("2149035F2ZZZ", "【般】フェロジピン錠５ｍｇ"),
    ("2149037F1ZZZ", "【般】シルニジピン錠５ｍｇ"),
    ("2149037F2ZZZ", "【般】シルニジピン錠１０ｍｇ"),
    ("2171012F1ZZZ", "【般】トラピジル錠５０ｍｇ"),
    ("2171021F3ZZZ", "【般】ベニジピン塩酸塩錠８ｍｇ"),
    ("2190024F1ZZZ", "【般】沈降炭酸カルシウム錠５００ｍｇ（高リン血症用）"),
    ("2251001G1ZZZ", "【般】テオフィリン徐放錠２００ｍｇ（２４時間持続）"),
    ("2325003B2ZZZ", "【般】ファモチジン散２％"),
    ("2329023F1ZZZ", "【般】ランソプラゾール口腔内崩壊錠１５ｍｇ"),
    ("2329023F2ZZZ", "【般】ランソプラゾール口腔内崩壊錠３０ｍｇ"),
    ("2399008F1ZZZ", "【般】イトプリド塩酸塩錠５０ｍｇ"),
    ("3160002M2ZZZ", "【般】メナテトレノンカプセル１５ｍｇ"),
    ("3929003C1ZZZ", "【般】球形吸着炭細粒"),
    ("3969004F1ZZZ", "【般】ボグリボース錠０．２ｍｇ"),
    ("3969004F2ZZZ", "【般】ボグリボース錠０．３ｍｇ"),
    ("3999018F1ZZZ", "【般】アレンドロン酸錠５ｍｇ"),
    ("4291009F1ZZZ", "【般】ビカルタミド錠８０ｍｇ"),
    ("4490011F2ZZZ", "【般】ペミロラストＫ錠５ｍｇ"),
    ("4490017F1ZZZ", "【般】プランルカスト錠１１２．５ｍｇ"),
    ("4490017M1ZZZ", "【般】プランルカストカプセル１１２．５ｍｇ"),
    ("6250002D1ZZZ", "【般】アシクロビル顆粒４０％"),
];

/// The JP Core alias file (canonical URIs with the OIDs they replaced, in comments).
static ALIASES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../reference/jp-clins/fsh-codesystems/aliases-jpcore-CSVS-IdSystem-url.fsh"
));

/// The other spelling of a JP Core code or identifier system: the `urn:oid:` form for a
/// `http://jpfhir.jp/...` URI and back (JP Core 1.1 publishes both variants; JP-CLINS uses URIs).
pub fn oid_alias(uri: &str) -> Option<&'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    let map = MAP.get_or_init(|| {
        let mut m = HashMap::new();
        for line in ALIASES.lines() {
            let Some(rest) = line.trim().strip_prefix("Alias:") else { continue };
            let Some((_, def)) = rest.split_once('=') else { continue };
            let Some((url, comment)) = def.split_once(" //") else { continue };
            let url = url.trim();
            let Some(oid) = comment.split_whitespace().find(|w| w.starts_with("urn:oid:")) else { continue };
            if url.starts_with("http") {
                m.insert(url, oid);
                m.insert(oid, url);
            }
        }
        m
    });
    map.get(uri).copied()
}

/// Normalizes a drug name for comparison: NFKC (full-width digits and letters to half-width),
/// without the `【般】` mark and spaces, letters lower-cased.
pub fn normalize_drug_name(name: &str) -> String {
    let n: String = name.nfkc().collect();
    n.trim_start_matches("【般】").chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// The 一般名 of a code in [`GENERAL_ORDER_CODES`].
pub fn general_order_name(code: &str) -> Option<&'static str> {
    GENERAL_ORDER_CODES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The code under which [`GENERAL_ORDER_CODES`] lists a drug name (compared normalized).
pub fn general_order_code_for_name(display: &str) -> Option<&'static str> {
    static BY_NAME: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    let map = BY_NAME.get_or_init(|| GENERAL_ORDER_CODES.iter().map(|(c, n)| (normalize_drug_name(n), *c)).collect());
    map.get(&normalize_drug_name(display)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_infection_lookups() {
        assert_eq!(is_core_lab_code(systems::JLAC10, "3A015000002329101"), Some("ALB"));
        assert_eq!(is_core_lab_code(systems::CORE_LABO_JLAC10, "3D046000001921002"), Some("HbA1c-NGSP"));
        assert_eq!(is_core_lab_code(systems::JLAC10, "5F016141002302301"), None);
        assert_eq!(is_infection_lab_code(systems::JLAC10, "5F016141002302301"), Some("HBs-AG-QUANT"));
        assert_eq!(lab_group(systems::JLAC10, "3A015000002329101").map(|g| g.display), Some("アルブミン"));
        assert_eq!(
            lab_group(systems::JLAC10, "5F016141002302301").map(|g| (g.display, g.kind)),
            Some(("HBs抗原(定量)", LabKind::Infection))
        );
        assert_eq!(is_core_lab_code("http://example.org", "3A015000002329101"), None);
        assert_eq!(lab_groups(LabKind::Core).count(), 55);
        assert_eq!(lab_groups(LabKind::Infection).count(), 53);
    }

    #[test]
    fn jfagy_master() {
        assert_eq!(jfagy_len(), 1738);
        assert_eq!(jfagy_term("D9F000000000"), Some("食品ダミーコード"));
        assert!(jfagy("J9FC11310000").is_some());
        assert!(jfagy("J9FZZZZZZZZZ").is_none());
    }

    #[test]
    fn document_sections() {
        assert_eq!(document_section("300"), Some("構造情報セクション"));
        assert_eq!(document_section("950"), Some("紹介目的セクション"));
        // Commented out in the CodeSystem, though the eDischargeSummary profile uses it.
        assert_eq!(document_section("362"), None);
    }

    #[test]
    fn code_formats() {
        assert!(is_medis_disease_key("20058911"));
        assert!(is_medis_disease_key("99999999"));
        assert!(!is_medis_disease_key("2005891"));
        assert!(is_yj_code("2171022F6276"));
        assert!(is_yj_code("2359800J1035"));
        assert!(!is_yj_code("1124030F2ZZZ"));
        assert!(is_general_order_code("1124030F2ZZZ"));
        assert!(is_general_order_code("2124030F2ZZZ"));
        assert!(!is_general_order_code("2171022F6276"));
        assert!(is_jlac10("3A015000001827101"));
        assert!(!is_jlac10("3A01500000182710"));
    }

    #[test]
    fn oid_aliases() {
        assert_eq!(
            oid_alias("http://jpfhir.jp/fhir/core/mhlw/IdSystem/medicalRegistrationNumber"),
            Some("urn:oid:1.2.392.100495.20.3.31")
        );
        assert_eq!(
            oid_alias("urn:oid:1.2.392.100495.20.3.31"),
            Some("http://jpfhir.jp/fhir/core/mhlw/IdSystem/medicalRegistrationNumber")
        );
        assert_eq!(oid_alias("http://example.org"), None);
    }

    #[test]
    fn general_order_table() {
        assert_eq!(general_order_name("1124030F2ZZZ"), Some("【般】クアゼパム錠２０ｍｇ"));
        assert_eq!(general_order_code_for_name("【般】クアゼパム錠２０ｍｇ"), Some("1124030F2ZZZ"));
        assert_eq!(general_order_code_for_name("クアゼパム錠20mg"), Some("1124030F2ZZZ"));
        for (code, _) in GENERAL_ORDER_CODES {
            assert!(is_general_order_code(code), "{code}");
        }
    }
}
