//! The standardized-storage path rules:
//! `PID[0:3]/PID[3:6]/PID/診療日|-/データ種別/PID_診療日_データ種別_オーダNO_発生日時_診療科_コンディションフラグ`.
//!
//! [`StoragePath::parse`] checks every rule and names the one broken. The directory parts must
//! agree with the file name, because the collector trusts the path for the patient and date:
//! a file in the wrong folder would otherwise land in the wrong patient's record.

use std::fmt;

/// One row of the data-type table (reference/ssmix2/ssmix2_standard_storage_data_types.csv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataTypeRow {
    /// The data type (`OMP-01`).
    pub code: &'static str,
    /// Its Japanese name for this message (`処方オーダ`).
    pub name_ja: &'static str,
    /// The HL7 message (`RDE^O11`).
    pub message: &'static str,
    /// The field that gives 診療日 (`ORC-9`); empty when the folder is `-`.
    pub care_date_field: &'static str,
}

const fn row(
    code: &'static str,
    name_ja: &'static str,
    message: &'static str,
    care_date_field: &'static str,
) -> DataTypeRow {
    DataTypeRow { code, name_ja, message, care_date_field }
}

/// The 36 rows of the standardized-storage data types (26 distinct data types).
pub const DATA_TYPES: [DataTypeRow; 36] = [
    row("ADT-00", "患者基本情報の更新", "ADT^A08", ""),
    row("ADT-00", "患者基本情報の削除", "ADT^A23", ""),
    row("ADT-01", "担当医の変更", "ADT^A54", ""),
    row("ADT-01", "担当医の取消", "ADT^A55", ""),
    row("ADT-12", "外来診察の受付", "ADT^A04", "PV1-44"),
    row("ADT-21", "入院予定", "ADT^A14", "PV2-8"),
    row("ADT-21", "入院予定の取消", "ADT^A27", "PV2-8"),
    row("ADT-22", "入院実施", "ADT^A01", "PV1-44"),
    row("ADT-22", "入院実施の取消", "ADT^A11", "PV1-44"),
    row("ADT-31", "外出泊実施", "ADT^A21", "EVN-6"),
    row("ADT-31", "外出泊実施の取消", "ADT^A52", "EVN-6"),
    row("ADT-32", "外出泊帰院実施", "ADT^A22", "EVN-6"),
    row("ADT-32", "外出泊帰院実施の取消", "ADT^A53", "PV2-47"),
    row("ADT-41", "転科・転棟(転室・転床)予定", "ADT^A15", "PV2-8"),
    row("ADT-41", "転科・転棟(転室・転床)予定の取消", "ADT^A26", "PV2-8"),
    row("ADT-42", "転科・転棟(転室・転床)実施", "ADT^A02", "EVN-6"),
    row("ADT-42", "転科・転棟(転室・転床)実施の取消", "ADT^A12", "EVN-6"),
    row("ADT-51", "退院予定", "ADT^A16", "PV2-9"),
    row("ADT-51", "退院予定の取消", "ADT^A25", "PV2-9"),
    row("ADT-52", "退院実施", "ADT^A03", "PV1-45"),
    row("ADT-52", "退院実施の取消", "ADT^A13", "PV1-45"),
    row("ADT-61", "アレルギー情報の登録／更新", "ADT^A60", ""),
    row("PPR-01", "病名（歴）情報の登録／更新", "PPR^ZD1", ""),
    row("OMD", "食事オーダ", "OMD^O03", "ORC-9"),
    row("OMP-01", "処方オーダ", "RDE^O11", "ORC-9"),
    row("OMP-11", "処方実施通知", "RAS^O17", "RXA-3"),
    row("OMP-02", "注射オーダ", "RDE^O11", "ORC-9"),
    row("OMP-12", "注射実施通知", "RAS^O17", "RXA-3"),
    row("OML-01", "検体検査オーダ", "OML^O33", "ORC-9"),
    row("OML-11", "検体検査結果通知", "OUL^R22", "SPM-17"),
    row("OMG-01", "放射線検査オーダ", "OMG^O19", "ORC-9"),
    row("OMG-11", "放射線検査の実施通知", "OMI^Z23", "OBR-7"),
    row("OMG-02", "内視鏡検査オーダ", "OMG^O19", "ORC-9"),
    row("OMG-12", "内視鏡検査の実施通知", "OMI^Z23", "OBR-7"),
    row("OMG-03", "生理検査オーダ", "OMG^O19", "ORC-9"),
    row("OMG-13", "生理検査結果通知", "ORU^R01", "OBR-7"),
];

/// A standardized-storage data type (`ADT-00`, `OMP-01` …), one of those in [`DATA_TYPES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataType(&'static str);

impl DataType {
    /// Looks a code up in the table.
    pub fn from_code(code: &str) -> Option<DataType> {
        DATA_TYPES.iter().find(|r| r.code == code).map(|r| DataType(r.code))
    }

    /// The code (`OMP-01`).
    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// The table rows for this data type (one per HL7 message it may hold).
    pub fn rows(&self) -> impl Iterator<Item = &'static DataTypeRow> + '_ {
        DATA_TYPES.iter().filter(move |r| r.code == self.0)
    }

    /// Whether `message` (`RDE^O11`) is one this data type may hold.
    pub fn allows_message(&self, message: &str) -> bool {
        self.rows().any(|r| r.message == message)
    }

    /// The Japanese name of the data type (its first row).
    pub fn name_ja(&self) -> &'static str {
        self.rows().next().map(|r| r.name_ja).unwrap_or("")
    }

    /// Whether files of this type live under the `-` date folder (no 診療日).
    pub fn is_static(&self) -> bool {
        self.rows().all(|r| r.care_date_field.is_empty())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// 診療日: a date `yyyymmdd`, or `-` for data that has none (patient information, allergies,
/// diagnoses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CareDate {
    /// A date, kept as the eight digits.
    Date(String),
    /// `-`.
    None,
}

impl CareDate {
    /// The folder and file-name form (`20110701` or `-`).
    pub fn as_str(&self) -> &str {
        match self {
            CareDate::Date(s) => s,
            CareDate::None => "-",
        }
    }

    /// The FHIR date (`2011-07-01`), if any.
    pub fn fhir_date(&self) -> Option<String> {
        match self {
            CareDate::Date(s) => Some(format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..8])),
            CareDate::None => None,
        }
    }
}

/// コンディションフラグ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Condition {
    /// `1`: the data is valid.
    Valid,
    /// `0`: the data was cancelled (取消) or superseded.
    Cancelled,
}

/// A checked standardized-storage path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePath {
    /// The path as given, with `\` turned into `/`.
    pub relative: String,
    /// 患者ID.
    pub patient_id: String,
    /// 診療日.
    pub care_date: CareDate,
    /// データ種別.
    pub data_type: DataType,
    /// オーダNO (`999999999999999` when the data has no order).
    pub order_no: String,
    /// 発生日時, the digits as written (17, or 15 in the NHO samples).
    pub occurred_at: String,
    /// 診療科 (`None` for `-`).
    pub department: Option<String>,
    /// コンディションフラグ.
    pub condition: Condition,
}

/// Which path rule was broken. Every variant's message is in Japanese for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not `PID3/PID3/PID/date/type/file`.
    #[error(
        "パスの階層が {found} 段です（患者ID先頭3桁/次の3桁/患者ID/診療日/データ種別/ファイル名 の 6 段が必要です）"
    )]
    Depth {
        /// How many parts there were.
        found: usize,
    },
    /// The file name does not have seven `_`-separated parts.
    #[error(
        "ファイル名が {found} 個に区切られています（患者ID_診療日_データ種別_オーダNO_発生日時_診療科_コンディションフラグ の 7 個が必要です）"
    )]
    FileNameParts {
        /// How many parts there were.
        found: usize,
    },
    /// An empty or malformed 患者ID.
    #[error("ファイル名の患者ID {0:?} が不正です（空、または英数字以外を含みます）")]
    PatientId(String),
    /// A directory does not agree with the file name's 患者ID.
    #[error("{level}番目のディレクトリ {found:?} がファイル名の患者ID {patient_id:?} と一致しません（{rule}）")]
    PatientDirectory {
        /// 1, 2 or 3.
        level: usize,
        /// What the rule requires.
        rule: &'static str,
        /// The directory name.
        found: String,
        /// The file name's 患者ID.
        patient_id: String,
    },
    /// 診療日 is neither `yyyymmdd` nor `-`.
    #[error("診療日 {0:?} が yyyymmdd の日付でも '-' でもありません")]
    CareDate(String),
    /// The 診療日 directory does not agree with the file name.
    #[error("診療日ディレクトリ {found:?} がファイル名の診療日 {expected:?} と一致しません")]
    CareDateDirectory {
        /// The directory name.
        found: String,
        /// The file name's 診療日.
        expected: String,
    },
    /// The data type is not one of the standardized ones.
    #[error("データ種別 {0:?} は標準化ストレージのデータ種別ではありません")]
    DataType(String),
    /// The data-type directory does not agree with the file name.
    #[error("データ種別ディレクトリ {found:?} がファイル名のデータ種別 {expected:?} と一致しません")]
    DataTypeDirectory {
        /// The directory name.
        found: String,
        /// The file name's データ種別.
        expected: String,
    },
    /// A static data type with a date, or a dated one under `-`.
    #[error("データ種別 {data_type} の診療日は {expected} でなければなりません（{found:?}）")]
    CareDateForType {
        /// The data type.
        data_type: &'static str,
        /// What is expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// オーダNO is not 1–15 alphanumerics.
    #[error("オーダNO {0:?} が不正です（英数字 1〜15 桁）")]
    OrderNo(String),
    /// 発生日時 is not 17 (or 15) digits with a valid date.
    #[error("発生日時 {0:?} が不正です（yyyyMMddHHmmssfff の 17 桁）")]
    OccurredAt(String),
    /// 診療科 is not `-` or 1–3 alphanumerics.
    #[error("診療科 {0:?} が不正です（'-' または英数字 1〜3 桁）")]
    Department(String),
    /// The condition flag is not 0 or 1.
    #[error("コンディションフラグ {0:?} が不正です（1 有効 / 0 取消）")]
    ConditionFlag(String),
}

fn chars_slice(s: &str, from: usize, to: usize) -> String {
    s.chars().skip(from).take(to.saturating_sub(from)).collect()
}

/// Whether `yyyymmdd` is a real calendar date.
pub(crate) fn valid_ymd(s: &str) -> bool {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let y: u32 = s[..4].parse().unwrap_or(0);
    let m: u8 = s[4..6].parse().unwrap_or(0);
    let d: u8 = s[6..8].parse().unwrap_or(0);
    let Ok(month) = time::Month::try_from(m) else { return false };
    let Ok(year) = i32::try_from(y) else { return false };
    (1800..=2200).contains(&y) && d >= 1 && d <= time::util::days_in_month(month, year)
}

fn valid_time(hh: &str, mi: &str, ss: &str) -> bool {
    let p = |s: &str, max: u8| s.parse::<u8>().map(|v| v <= max).unwrap_or(false);
    p(hh, 23) && p(mi, 59) && p(ss, 59)
}

impl StoragePath {
    /// Parses and checks a path relative to the storage root (`/` or `\` separated).
    pub fn parse(relative_path: &str) -> Result<StoragePath, PathError> {
        let relative = relative_path.replace('\\', "/");
        let trimmed = relative.trim_start_matches("./").trim_matches('/');
        let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() != 6 {
            return Err(PathError::Depth { found: parts.len() });
        }
        let (d1, d2, d3, d4, d5, file) = (parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]);
        let name: Vec<&str> = file.split('_').collect();
        if name.len() != 7 {
            return Err(PathError::FileNameParts { found: name.len() });
        }
        let (pid, date, dtype, order, occurred, dept, flag) =
            (name[0], name[1], name[2], name[3], name[4], name[5], name[6]);
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(PathError::PatientId(pid.to_owned()));
        }
        let checks = [
            (1, "患者IDの先頭 3 桁", chars_slice(pid, 0, 3), d1),
            (2, "患者IDの 4〜6 桁目", chars_slice(pid, 3, 6), d2),
            (3, "患者ID", pid.to_owned(), d3),
        ];
        for (level, rule, expected, found) in checks {
            if expected != found {
                return Err(PathError::PatientDirectory {
                    level,
                    rule,
                    found: found.to_owned(),
                    patient_id: pid.to_owned(),
                });
            }
        }
        let care_date = match date {
            "-" => CareDate::None,
            d if valid_ymd(d) => CareDate::Date(d.to_owned()),
            d => return Err(PathError::CareDate(d.to_owned())),
        };
        if d4 != date {
            return Err(PathError::CareDateDirectory { found: d4.to_owned(), expected: date.to_owned() });
        }
        let data_type = DataType::from_code(dtype).ok_or_else(|| PathError::DataType(dtype.to_owned()))?;
        if d5 != dtype {
            return Err(PathError::DataTypeDirectory { found: d5.to_owned(), expected: dtype.to_owned() });
        }
        match (&care_date, data_type.is_static()) {
            (CareDate::Date(d), true) => {
                return Err(PathError::CareDateForType {
                    data_type: data_type.as_str(),
                    expected: "'-'",
                    found: d.clone(),
                });
            }
            (CareDate::None, false) => {
                return Err(PathError::CareDateForType {
                    data_type: data_type.as_str(),
                    expected: "yyyymmdd の日付",
                    found: "-".into(),
                });
            }
            _ => {}
        }
        if order.is_empty() || order.len() > 15 || !order.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PathError::OrderNo(order.to_owned()));
        }
        let occurred_ok = (occurred.len() == 17 || occurred.len() == 15)
            && occurred.bytes().all(|b| b.is_ascii_digit())
            && valid_ymd(&occurred[..8])
            && valid_time(&occurred[8..10], &occurred[10..12], &occurred[12..14]);
        if !occurred_ok {
            return Err(PathError::OccurredAt(occurred.to_owned()));
        }
        let department = match dept {
            "-" => None,
            d if !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_alphanumeric()) => Some(d.to_owned()),
            d => return Err(PathError::Department(d.to_owned())),
        };
        let condition = match flag {
            "1" => Condition::Valid,
            "0" => Condition::Cancelled,
            f => return Err(PathError::ConditionFlag(f.to_owned())),
        };
        Ok(StoragePath {
            relative: relative.clone(),
            patient_id: pid.to_owned(),
            care_date,
            data_type,
            order_no: order.to_owned(),
            occurred_at: occurred.to_owned(),
            department,
            condition,
        })
    }

    /// Whether the 発生日時 uses the 15-digit form of the NHO samples.
    pub fn has_short_occurred_at(&self) -> bool {
        self.occurred_at.len() == 15
    }

    /// Whether the order number is the all-nines "no order" value.
    pub fn has_no_order(&self) -> bool {
        self.order_no.bytes().all(|b| b == b'9')
    }

    /// 発生日時 as a FHIR instant in JST (`2011-07-01T11:38:13.225+09:00`).
    pub fn occurred_at_fhir(&self) -> String {
        let o = &self.occurred_at;
        let frac = &o[14..];
        format!(
            "{}-{}-{}T{}:{}:{}.{}+09:00",
            &o[..4],
            &o[4..6],
            &o[6..8],
            &o[8..10],
            &o[10..12],
            &o[12..14],
            if frac.is_empty() { "0" } else { frac }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_good_path() {
        let p = StoragePath::parse(
            "999/901/9999013/20110701/OMP-01/9999013_20110701_OMP-01_000000011000185_20110701224603984_01_1",
        )
        .unwrap();
        assert_eq!(p.patient_id, "9999013");
        assert_eq!(p.care_date, CareDate::Date("20110701".into()));
        assert_eq!(p.care_date.fhir_date().as_deref(), Some("2011-07-01"));
        assert_eq!(p.data_type.as_str(), "OMP-01");
        assert_eq!(p.order_no, "000000011000185");
        assert_eq!(p.occurred_at_fhir(), "2011-07-01T22:46:03.984+09:00");
        assert_eq!(p.department.as_deref(), Some("01"));
        assert_eq!(p.condition, Condition::Valid);
        assert!(p.data_type.allows_message("RDE^O11"));
        assert!(!p.data_type.allows_message("RAS^O17"));
    }

    #[test]
    fn static_types_and_windows_separators() {
        let p =
            StoragePath::parse("999\\901\\9999013\\-\\ADT-00\\9999013_-_ADT-00_999999999999999_20111220224447339_-_1")
                .unwrap();
        assert_eq!(p.care_date, CareDate::None);
        assert!(p.has_no_order());
        assert_eq!(p.department, None);
    }

    #[test]
    fn the_misplaced_sample_names_the_patient_directory_rule() {
        let e = StoragePath::parse(
            "000/000/0000001/20000401/ADT-31/9999013_20110630_OMP-11_123456789012345_20110701113813225_01_1",
        )
        .unwrap_err();
        assert!(matches!(e, PathError::PatientDirectory { level: 1, .. }), "{e:?}");
        assert!(e.to_string().contains("患者ID"), "{e}");
    }

    #[test]
    fn each_rule_is_named() {
        let base = |f: &str| format!("999/901/9999013/20110701/OMP-01/{f}");
        type Check = fn(&PathError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("a/b".into(), |e| matches!(e, PathError::Depth { found: 2 })),
            (base("9999013_20110701_OMP-01_1_20110701224603984_01"), |e| {
                matches!(e, PathError::FileNameParts { found: 6 })
            }),
            (base("9999013_20110732_OMP-01_1_20110701224603984_01_1"), |e| matches!(e, PathError::CareDate(_))),
            (base("9999013_20110702_OMP-01_1_20110701224603984_01_1"), |e| {
                matches!(e, PathError::CareDateDirectory { .. })
            }),
            (base("9999013_20110701_OMP-99_1_20110701224603984_01_1"), |e| matches!(e, PathError::DataType(_))),
            (base("9999013_20110701_OMP-02_1_20110701224603984_01_1"), |e| {
                matches!(e, PathError::DataTypeDirectory { .. })
            }),
            (base("9999013_20110701_OMP-01_1234567890123456_20110701224603984_01_1"), |e| {
                matches!(e, PathError::OrderNo(_))
            }),
            (base("9999013_20110701_OMP-01_1_2011070122460398_01_1"), |e| matches!(e, PathError::OccurredAt(_))),
            (base("9999013_20110701_OMP-01_1_20110701254603984_01_1"), |e| matches!(e, PathError::OccurredAt(_))),
            (base("9999013_20110701_OMP-01_1_20110701224603984_0001_1"), |e| matches!(e, PathError::Department(_))),
            (base("9999013_20110701_OMP-01_1_20110701224603984_01_2"), |e| matches!(e, PathError::ConditionFlag(_))),
            ("999/901/9999013/20110701/ADT-00/9999013_20110701_ADT-00_1_20110701224603984_01_1".into(), |e| {
                matches!(e, PathError::CareDateForType { .. })
            }),
            ("999/902/9999013/20110701/OMP-01/9999013_20110701_OMP-01_1_20110701224603984_01_1".into(), |e| {
                matches!(e, PathError::PatientDirectory { level: 2, .. })
            }),
        ];
        for (path, check) in cases {
            let e = StoragePath::parse(&path).unwrap_err();
            assert!(check(&e), "{path}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn fifteen_digit_occurred_at_is_accepted() {
        let p = StoragePath::parse("999/901/9999013/-/ADT-00/9999013_-_ADT-00_999999999999999_201112202244473_-_1")
            .unwrap();
        assert!(p.has_short_occurred_at());
        assert_eq!(p.occurred_at_fhir(), "2011-12-20T22:44:47.3+09:00");
    }

    #[test]
    fn table_matches_the_reference_csv() {
        let csv = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../reference/ssmix2/ssmix2_standard_storage_data_types.csv"
        ));
        let rows: Vec<&str> = csv.lines().skip(1).filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), DATA_TYPES.len());
        for (line, r) in rows.iter().zip(DATA_TYPES.iter()) {
            assert_eq!(*line, format!("{},{},{},{}", r.code, r.name_ja, r.message, r.care_date_field));
        }
    }
}
