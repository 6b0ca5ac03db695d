//! Reading a UKE file: Shift_JIS (CP932) lines ending in CR LF with an optional 0x1A after the
//! last, comma-separated fields with the record id first, grouped into receipts (RE up to the
//! next RE), with every structural and format check located by line, record and field.
//!
//! Fields are split by hand on `,`: the record conditions use no quoting, and a `"` inside a
//! comment's 文字データ must stay literal, which a CSV reader with quoting would not do.

use encoding_rs::SHIFT_JIS;
use sha2::{Digest, Sha256};

use crate::layout::{self, Edition, FileKind};
use crate::{Problem, ProblemKind, Severity, date};

/// One record (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based line number.
    pub line: usize,
    /// The fields, the record id first (field 1).
    pub fields: Vec<String>,
}

impl Record {
    /// The record id.
    pub fn id(&self) -> &str {
        self.fields.first().map(String::as_str).unwrap_or("")
    }

    /// Field `n` (1-based; 1 is the record id), empty when absent.
    pub fn field(&self, n: usize) -> &str {
        n.checked_sub(1).and_then(|i| self.fields.get(i)).map(String::as_str).unwrap_or("")
    }

    /// Field `n` trimmed, `None` when empty.
    pub fn opt(&self, n: usize) -> Option<&str> {
        let f = self.field(n).trim_matches([' ', '　']);
        (!f.is_empty()).then_some(f)
    }
}

/// A group of lines that lands or is quarantined together: one receipt, or the stray records
/// before the first receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// RE-2, when the unit is a receipt.
    pub receipt_no: Option<String>,
    /// The records, RE first.
    pub records: Vec<Record>,
    /// Problems found in it (errors quarantine it).
    pub problems: Vec<Problem>,
    /// The decoded lines as they were.
    pub raw: String,
}

impl Unit {
    /// Whether an error quarantines the unit.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The file name.
    pub name: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
    /// 医科 or 調剤, when the header says.
    pub kind: Option<FileKind>,
    /// The date edition, when the header says.
    pub edition: Option<Edition>,
    /// IR or YK.
    pub header: Option<Record>,
    /// GO.
    pub trailer: Option<Record>,
    /// The receipts (and a stray unit if records precede the first RE).
    pub units: Vec<Unit>,
    /// File-level problems (errors quarantine the file).
    pub problems: Vec<Problem>,
    /// Records read.
    pub records: usize,
}

struct Ctx<'n> {
    file: &'n str,
}

impl Ctx<'_> {
    fn p(
        &self,
        severity: Severity,
        kind: ProblemKind,
        rec: Option<&Record>,
        line: Option<usize>,
        field: Option<usize>,
        reason: String,
    ) -> Problem {
        Problem {
            severity,
            kind,
            file: self.file.to_owned(),
            line: rec.map(|r| r.line).or(line),
            record: rec.map(|r| r.id().to_owned()),
            field,
            reason,
        }
    }
}

/// Splits, decodes and checks a file. Never fails: everything wrong is in the problems.
pub fn parse(name: &str, bytes: &[u8]) -> Parsed {
    let ctx = Ctx { file: name };
    let sha256 = hex::encode(Sha256::digest(bytes));
    let mut problems = Vec::new();
    let mut body = bytes;
    if let Some(pos) = body.iter().position(|b| *b == 0x1a) {
        if body[pos + 1..].iter().any(|b| !matches!(b, b'\r' | b'\n' | 0x1a)) {
            problems.push(ctx.p(
                Severity::Error,
                ProblemKind::Encoding,
                None,
                Some(line_at(bytes, pos)),
                None,
                "EOF 文字 (0x1A) の後にデータがあります（ファイルが壊れています）".into(),
            ));
        }
        body = &body[..pos];
    }
    // CR and LF never occur inside a Shift_JIS double-byte character, so lines can be split
    // before decoding and each line decoded on its own (which locates bad bytes exactly).
    let mut raw_lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let ended_with_newline = body.last() == Some(&b'\n');
    if ended_with_newline {
        raw_lines.pop();
    }
    let mut bare_lf = false;
    let mut lines: Vec<(usize, String)> = Vec::with_capacity(raw_lines.len());
    for (i, raw) in raw_lines.iter().enumerate() {
        let line_no = i + 1;
        let (raw, had_cr) = match raw.strip_suffix(b"\r") {
            Some(r) => (r, true),
            None => (*raw, false),
        };
        let is_last = i + 1 == raw_lines.len();
        if !had_cr && (!is_last || ended_with_newline) {
            bare_lf = true;
        }
        let (text, _, bad) = SHIFT_JIS.decode(raw);
        if bad {
            problems.push(ctx.p(
                Severity::Error,
                ProblemKind::Encoding,
                None,
                Some(line_no),
                None,
                "Shift_JIS として読めないバイトがあります".into(),
            ));
        }
        lines.push((line_no, text.into_owned()));
    }
    if bare_lf {
        problems.push(ctx.p(
            Severity::Warning,
            ProblemKind::Encoding,
            None,
            None,
            None,
            "改行が CR LF ではなく LF です（受け付けました）".into(),
        ));
    }
    if !body.is_empty() && !ended_with_newline {
        let last = lines.len();
        problems.push(ctx.p(
            Severity::Warning,
            ProblemKind::Structure,
            None,
            Some(last),
            None,
            "最終行が改行で終わっていません（行が途中で切れている可能性があります）".into(),
        ));
    }
    let mut parsed = Parsed {
        name: name.to_owned(),
        sha256,
        kind: None,
        edition: None,
        header: None,
        trailer: None,
        units: Vec::new(),
        problems,
        records: 0,
    };
    let records: Vec<(Record, &str)> = lines
        .iter()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(n, t)| (Record { line: *n, fields: t.split(',').map(str::to_owned).collect() }, t.as_str()))
        .collect();
    parsed.records = records.len();
    let mut iter = records.into_iter();
    let Some((header, _)) = iter.next() else {
        parsed.problems.push(ctx.p(
            Severity::Error,
            ProblemKind::Structure,
            None,
            Some(1),
            None,
            "ファイルが空です".into(),
        ));
        return parsed;
    };
    let kind = match header.id() {
        "IR" => FileKind::Medical,
        "YK" => FileKind::Pharmacy,
        other => {
            parsed.problems.push(ctx.p(
                Severity::Error,
                ProblemKind::Order,
                Some(&header),
                None,
                Some(1),
                format!("先頭のレコードが IR（医科）でも YK（調剤）でもありません（{:?}）", truncate(other, 8)),
            ));
            return parsed;
        }
    };
    parsed.kind = Some(kind);
    check_fields(&ctx, kind, &header, &mut parsed.problems);
    let ym_field = if kind == FileKind::Medical { 8 } else { 7 };
    parsed.edition = match header.opt(ym_field).map(str::len) {
        Some(6) => Some(Edition::Seireki),
        Some(5) => Some(Edition::Wareki),
        _ => None,
    };
    if parsed.edition.is_none() || header.opt(ym_field).and_then(date::year_month).is_none() {
        parsed.problems.push(ctx.p(
            Severity::Error,
            ProblemKind::Date,
            Some(&header),
            None,
            Some(ym_field),
            format!(
                "{}-{ym_field} 請求年月 {:?} が YYYYMM（西暦）でも GYYMM（和暦）でもありません",
                header.id(),
                header.field(ym_field)
            ),
        ));
    }
    parsed.header = Some(header);

    let mut seen_receipts: Vec<String> = Vec::new();
    for (rec, text) in iter {
        let id = rec.id().to_owned();
        if parsed.trailer.is_some() {
            parsed.problems.push(ctx.p(
                Severity::Error,
                ProblemKind::Order,
                Some(&rec),
                None,
                None,
                format!("GO レコードの後に {id} レコードがあります"),
            ));
            continue;
        }
        let valid_id = id.len() == 2 && id.bytes().all(|b| b.is_ascii_uppercase());
        let spec = if valid_id { layout::find(kind, &id) } else { None };
        if id == "GO" {
            check_fields(&ctx, kind, &rec, &mut parsed.problems);
            parsed.trailer = Some(rec);
            continue;
        }
        if matches!(id.as_str(), "IR" | "YK") {
            parsed.problems.push(ctx.p(
                Severity::Error,
                ProblemKind::Order,
                Some(&rec),
                None,
                None,
                format!("{id} レコードがファイルの途中にあります"),
            ));
            continue;
        }
        if id == "RE" {
            let no = rec.opt(2).unwrap_or("").to_owned();
            let mut unit =
                Unit { receipt_no: Some(no.clone()), records: Vec::new(), problems: Vec::new(), raw: String::new() };
            if seen_receipts.contains(&no) {
                unit.problems.push(ctx.p(
                    Severity::Error,
                    ProblemKind::Consistency,
                    Some(&rec),
                    None,
                    Some(2),
                    format!("RE-2 レセプト番号 {no} が重複しています"),
                ));
            }
            seen_receipts.push(no);
            parsed.units.push(unit);
        } else if parsed.units.is_empty() {
            parsed.units.push(Unit { receipt_no: None, records: Vec::new(), problems: Vec::new(), raw: String::new() });
            if let Some(u) = parsed.units.last_mut() {
                u.problems.push(ctx.p(
                    Severity::Error,
                    ProblemKind::Order,
                    Some(&rec),
                    None,
                    None,
                    format!("{id} レコードが RE レコードより前にあります（どのレセプトにも属しません）"),
                ));
            }
        }
        let Some(unit) = parsed.units.last_mut() else { continue };
        if !unit.raw.is_empty() {
            unit.raw.push_str("\r\n");
        }
        unit.raw.push_str(text);
        if !valid_id {
            unit.problems.push(ctx.p(
                Severity::Error,
                ProblemKind::Structure,
                Some(&rec),
                None,
                Some(1),
                format!("レコード識別情報 {:?} が英大文字 2 文字ではありません", truncate(&id, 8)),
            ));
        } else if let Some(spec) = spec {
            // Order inside a receipt: insurance records before clinical ones.
            let latest = unit
                .records
                .iter()
                .filter_map(|r| layout::find(kind, r.id()).map(|s| (s.stage, r.id().to_owned())))
                .max_by_key(|(s, _)| *s);
            if let Some((stage, later_id)) = latest
                && spec.stage < stage
            {
                {
                    unit.problems.push(ctx.p(
                        Severity::Error,
                        ProblemKind::Order,
                        Some(&rec),
                        None,
                        None,
                        format!("{id} レコードが {later_id} レコードより後にあります（{} は傷病名・診療行為より前に置きます）", spec.name_ja),
                    ));
                }
            }
            check_fields(&ctx, kind, &rec, &mut unit.problems);
        } else {
            unit.problems.push(ctx.p(
                Severity::Warning,
                ProblemKind::Structure,
                Some(&rec),
                None,
                Some(1),
                format!("レコード {id} はこの種類のファイルでは解釈できないため変換していません（原本に残ります）"),
            ));
        }
        unit.records.push(rec);
    }
    if parsed.trailer.is_none() {
        parsed.problems.push(ctx.p(
            Severity::Error,
            ProblemKind::Structure,
            None,
            Some(lines.len()),
            None,
            "GO レコードがありません（ファイルが途中で切れています）".into(),
        ));
    }
    parsed
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn line_at(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())].iter().filter(|b| **b == b'\n').count()
}

fn is_digits(s: &str, lens: &[usize]) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (lens.is_empty() || lens.contains(&s.len()))
}

/// Field count and per-field format checks for one record.
fn check_fields(ctx: &Ctx<'_>, kind: FileKind, rec: &Record, out: &mut Vec<Problem>) {
    let id = rec.id();
    let Some(spec) = layout::find(kind, id) else { return };
    let n = rec.fields.len();
    if let (Some(min), Some(max)) = (spec.counts.iter().min(), spec.counts.iter().max()) {
        if n < *max && !spec.counts.contains(&n) {
            let expected: Vec<String> = spec.counts.iter().map(ToString::to_string).collect();
            out.push(ctx.p(
                Severity::Error,
                ProblemKind::Structure,
                Some(rec),
                None,
                Some(n),
                format!(
                    "{id} レコードのフィールド数が {n} です（{} が必要です）。行が途中で切れているか区切りが欠けています",
                    expected.join(" または ")
                ),
            ));
            if n < *min {
                // Too short to read safely; format checks would only repeat the same fact.
                return;
            }
        } else if n > *max {
            out.push(ctx.p(
                Severity::Warning,
                ProblemKind::Structure,
                Some(rec),
                None,
                Some(n),
                format!("{id} レコードのフィールド数が {n} で、既知の {max} より多いです（余分なフィールドは変換していません）"),
            ));
        }
    }
    let mut code = |field: usize, lens: &[usize], label: &str, required: bool| {
        let v = rec.field(field).trim();
        if v.is_empty() {
            if required {
                out.push(ctx.p(
                    Severity::Error,
                    ProblemKind::Missing,
                    Some(rec),
                    None,
                    Some(field),
                    format!("{id}-{field} {label}がありません"),
                ));
            }
        } else if !is_digits(v, lens) {
            let l: Vec<String> = lens.iter().map(ToString::to_string).collect();
            out.push(ctx.p(
                Severity::Error,
                ProblemKind::Code,
                Some(rec),
                None,
                Some(field),
                format!(
                    "{id}-{field} {label} {v:?} が {} 桁の数字ではありません",
                    if l.is_empty() { "任意".into() } else { l.join("/") }
                ),
            ));
        }
    };
    match (kind, id) {
        (FileKind::Medical, "IR") | (FileKind::Pharmacy, "YK") => {
            code(3, &[2], "都道府県", true);
            code(4, &[1], "点数表", true);
            code(5, &[7], "医療機関コード", true);
        }
        (_, "RE") => {
            code(2, &[], "レセプト番号", true);
            code(3, &[4], "レセプト種別", true);
            code(6, &[1], "男女区分", true);
        }
        (_, "HO") => {
            let v = rec.field(2).trim();
            if !is_digits(v, &[6, 8]) {
                out.push(ctx.p(
                    Severity::Error,
                    ProblemKind::Code,
                    Some(rec),
                    None,
                    Some(2),
                    format!("HO-2 保険者番号 {v:?} が 8 桁（国保は 6 桁）の数字ではありません"),
                ));
            }
        }
        (_, "KO") => code(2, &[8], "公費負担者番号", true),
        (FileKind::Medical, "SY") => {
            code(2, &[7], "傷病名コード", true);
            code(4, &[1], "転帰区分", false);
            let m = rec.field(5).trim();
            if !(m.is_empty() || is_digits(m, &[]) && m.len().is_multiple_of(4)) {
                out.push(ctx.p(
                    Severity::Error,
                    ProblemKind::Code,
                    Some(rec),
                    None,
                    Some(5),
                    format!("SY-5 修飾語コード {m:?} が 4 桁の数字の並びではありません"),
                ));
            }
        }
        (FileKind::Medical, "SI") => code(4, &[9], "診療行為コード", true),
        (FileKind::Medical, "IY") => code(4, &[9], "医薬品コード", true),
        (FileKind::Medical, "TO") => code(4, &[9], "特定器材コード", true),
        (FileKind::Medical, "CO") => code(4, &[9], "コメントコード", true),
        (FileKind::Medical, "SB") => code(2, &[7], "傷病名コード", true),
        (FileKind::Medical, "CD") => code(6, &[9], "レセ電コード", true),
        (FileKind::Pharmacy, "IY") => code(3, &[9], "医薬品コード", true),
        (FileKind::Pharmacy, "CO") => code(2, &[9], "コメントコード", true),
        _ => {}
    }
    // Dates.
    let date_fields: &[(usize, &str, bool)] = match (kind, id) {
        (_, "RE") => &[(4, "診療年月", true), (7, "生年月日", true)],
        (FileKind::Medical, "SY") => &[(3, "診療開始日", false)],
        (FileKind::Medical, "CD") => &[(2, "実施年月日", true)],
        (FileKind::Pharmacy, "CZ") => &[(3, "処方箋交付年月日", false), (4, "調剤年月日", false)],
        _ => &[],
    };
    for (field, label, required) in date_fields {
        let v = rec.field(*field).trim();
        let ok = match (v.len(), *field, id) {
            (0, _, _) => !required,
            (_, 4, "RE") => date::year_month(v).is_some(),
            _ => date::date(v).is_some(),
        };
        if !ok {
            out.push(ctx.p(
                Severity::Error,
                if v.is_empty() { ProblemKind::Missing } else { ProblemKind::Date },
                Some(rec),
                None,
                Some(*field),
                if v.is_empty() {
                    format!("{id}-{field} {label}がありません")
                } else {
                    format!("{id}-{field} {label} {v:?} が日付ではありません")
                },
            ));
        }
    }
    // 算定日 (day 1..31) fields hold counts.
    let days = match (kind, id, n) {
        (FileKind::Medical, "SI" | "IY", 44..) => Some(14),
        (FileKind::Medical, "TO", 48..) => Some(18),
        _ => None,
    };
    if let Some(first) = days {
        for f in first..first + 31 {
            let v = rec.field(f).trim();
            if !v.is_empty() && !is_digits(v, &[]) {
                out.push(ctx.p(
                    Severity::Error,
                    ProblemKind::Code,
                    Some(rec),
                    None,
                    Some(f),
                    format!("{id}-{f} 算定日情報（{}日）{v:?} が数字ではありません", f + 1 - first),
                ));
            }
        }
    }
}
