//! Record layouts: which record ids each kind of file has, how many fields each may have, and
//! which must come before which. From reference/uke/LAYOUT.md (current edition, 医科 and 調剤)
//! and reference/uke/uke_record_layouts.csv (older edition, DPC and common records).

/// What a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum FileKind {
    /// 医科 (starts with IR). DPC receipts are 医科 files with DPC records in them.
    Medical,
    /// 調剤 (starts with YK).
    Pharmacy,
}

/// Which edition of the record conditions the dates follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Edition {
    /// 西暦 dates (`YYYYMM`, `YYYYMMDD`).
    Seireki,
    /// 和暦 dates (`GYYMM`, `GYYMMDD`).
    Wareki,
}

/// Where a record may appear inside a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// IR / YK: the first record of the file.
    FileHeader,
    /// RE: opens a receipt.
    Receipt,
    /// HO, KO, SN, JD, MF …: insurance, before any clinical record.
    Insurance,
    /// SY, SI, IY, TO, CO, DPC and 調剤 records.
    Clinical,
    /// GO: the last record of the file.
    FileTrailer,
}

/// A known record id: where it goes and the field counts the editions give it (record id
/// included, trailing empty fields included). An empty `counts` means "not checked".
#[derive(Debug, Clone, Copy)]
pub struct RecordSpec {
    /// The record id (`SY`).
    pub id: &'static str,
    /// Its name in Japanese.
    pub name_ja: &'static str,
    /// Where it goes.
    pub stage: Stage,
    /// Allowed field counts.
    pub counts: &'static [usize],
}

const fn spec(id: &'static str, name_ja: &'static str, stage: Stage, counts: &'static [usize]) -> RecordSpec {
    RecordSpec { id, name_ja, stage, counts }
}

/// 医科 and DPC records. RE has 38 fields now; the older table gives 35 (36 in its source).
/// SI/IY/TO have 44/44/48 with the 31 算定日 fields and 13/13/17 without (before 平成24).
pub const MEDICAL: &[RecordSpec] = &[
    spec("IR", "医療機関情報", Stage::FileHeader, &[10]),
    spec("RE", "レセプト共通", Stage::Receipt, &[35, 36, 38]),
    spec("HO", "保険者", Stage::Insurance, &[15]),
    spec("KO", "公費", Stage::Insurance, &[12]),
    spec("SN", "資格確認", Stage::Insurance, &[9]),
    spec("JD", "受診日等", Stage::Insurance, &[33]),
    spec("MF", "窓口負担額", Stage::Insurance, &[]),
    spec("KH", "特記事項", Stage::Insurance, &[2]),
    spec("SY", "傷病名", Stage::Clinical, &[8]),
    spec("SI", "診療行為", Stage::Clinical, &[13, 44]),
    spec("IY", "医薬品", Stage::Clinical, &[13, 44]),
    spec("TO", "特定器材", Stage::Clinical, &[17, 48]),
    spec("CO", "コメント", Stage::Clinical, &[5]),
    spec("SJ", "症状詳記", Stage::Clinical, &[3]),
    spec("TI", "臓器提供医療機関情報", Stage::Clinical, &[10]),
    spec("TR", "臓器提供者レセプト情報", Stage::Clinical, &[17, 18]),
    spec("TS", "臓器提供者請求情報", Stage::Clinical, &[5]),
    spec("NI", "日計表", Stage::Clinical, &[]),
    spec("BU", "診断群分類", Stage::Clinical, &[6]),
    spec("SB", "傷病情報", Stage::Clinical, &[8]),
    spec("KK", "患者基礎情報", Stage::Clinical, &[14]),
    spec("SK", "診療関連情報", Stage::Clinical, &[7]),
    spec("GA", "外泊情報", Stage::Clinical, &[7]),
    spec("HH", "包括評価", Stage::Clinical, &[9]),
    spec("GT", "合計調整", Stage::Clinical, &[12]),
    spec("CD", "コーディングデータ", Stage::Clinical, &[11]),
    spec("GO", "診療報酬請求書", Stage::FileTrailer, &[4]),
];

/// 調剤 records (current edition; CZ has 54 fields in the 平成30 edition and 71 in 令和8).
pub const PHARMACY: &[RecordSpec] = &[
    spec("YK", "薬局情報", Stage::FileHeader, &[9]),
    spec("RE", "レセプト共通", Stage::Receipt, &[42]),
    spec("HO", "保険者", Stage::Insurance, &[14]),
    spec("KO", "公費", Stage::Insurance, &[10]),
    spec("SN", "資格確認", Stage::Insurance, &[9]),
    spec("JD", "受診日等", Stage::Insurance, &[33]),
    spec("MF", "窓口負担額", Stage::Insurance, &[]),
    spec("SH", "処方基本", Stage::Clinical, &[10]),
    spec("CZ", "調剤情報", Stage::Clinical, &[54, 71]),
    spec("IY", "医薬品", Stage::Clinical, &[10]),
    spec("TO", "特定器材", Stage::Clinical, &[]),
    spec("CO", "コメント", Stage::Clinical, &[3]),
    spec("TK", "摘要", Stage::Clinical, &[]),
    spec("KI", "基本料・薬学管理料", Stage::Clinical, &[114]),
    spec("ST", "処方箋発行医療機関", Stage::Clinical, &[]),
    spec("GO", "診療報酬請求書", Stage::FileTrailer, &[4]),
];

/// The spec of a record id in a kind of file.
pub fn find(kind: FileKind, id: &str) -> Option<&'static RecordSpec> {
    let table = match kind {
        FileKind::Medical => MEDICAL,
        FileKind::Pharmacy => PHARMACY,
    };
    table.iter().find(|s| s.id == id)
}
