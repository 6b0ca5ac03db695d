//! A small HL7 v2.5 parser over decoded text: segments, fields, repetitions, components,
//! subcomponents and escape sequences, with typed accessors.
//!
//! Written here rather than taken from `hl7-parser` because the collector needs three things a
//! general parser does not give together: it must keep going after a bad segment and report
//! each problem with its segment number and field (a vendor's file is quarantined with a reason,
//! not a parse error string); it must accept CR, CRLF and LF segment ends and say which it saw;
//! and `\X..\` hex escapes must be decoded in the message's own character set (ISO-2022-JP),
//! not as Latin-1. The parser borrows the text and splits lazily, so it allocates one vector of
//! field slices per segment and nothing else.

use std::borrow::Cow;

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator (MSH-1), usually `|`.
    pub field: char,
    /// Component separator, usually `^`.
    pub component: char,
    /// Repetition separator, usually `~`.
    pub repetition: char,
    /// Escape character, usually `\`; `None` when the message declares none.
    pub escape: Option<char>,
    /// Subcomponent separator, usually `&`.
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters { field: '|', component: '^', repetition: '~', escape: Some('\\'), subcomponent: '&' }
    }
}

/// How the segments of a message were terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// CR only, as HL7 requires.
    Cr,
    /// CR LF (Windows tools).
    CrLf,
    /// LF only (Unix tools).
    Lf,
    /// More than one kind in the same message.
    Mixed,
}

/// A problem found while parsing, before any mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxIssue {
    /// 0-based segment index (MSH is 0), when the problem belongs to a segment.
    pub segment_index: Option<usize>,
    /// Segment name, when known.
    pub segment: Option<String>,
    /// Field number, when the problem belongs to a field.
    pub field: Option<u32>,
    /// Whether the message cannot be used at all.
    pub fatal: bool,
    /// Why, in Japanese.
    pub reason: String,
}

/// A parsed message borrowing the decoded text.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The delimiters from MSH.
    pub delimiters: Delimiters,
    /// The segments in order; index 0 is MSH.
    pub segments: Vec<Segment<'a>>,
    /// How segments were terminated.
    pub line_ending: LineEnding,
    /// Problems found while parsing (escape sequences, empty or unnamed segments).
    pub issues: Vec<SyntaxIssue>,
}

/// One segment: its name and raw field slices.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// 0-based position in the message (MSH is 0), the guide's 連番.
    pub index: usize,
    /// The three-character segment name (`PID`).
    pub name: &'a str,
    /// The segment text as it was, without its terminator.
    pub raw: &'a str,
    fields: Vec<&'a str>,
    delimiters: Delimiters,
}

impl<'a> Message<'a> {
    /// Parses decoded message text. Fails only when there is no usable MSH segment; every other
    /// problem is collected in [`Message::issues`].
    pub fn parse(text: &'a str) -> Result<Message<'a>, SyntaxIssue> {
        let fatal = |reason: &str| SyntaxIssue {
            segment_index: Some(0),
            segment: Some("MSH".into()),
            field: None,
            fatal: true,
            reason: reason.to_owned(),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // MLLP framing (VT before, FS after the message) is common in stored files: not content.
        let text = text.trim_start_matches('\u{0b}');
        let text = text.trim_end_matches(['\u{1c}', '\r', '\n']);
        let (lines, line_ending) = split_segments(text);
        let mut lines = lines.into_iter().filter(|l| !l.trim().is_empty());
        let first = lines.next().ok_or_else(|| fatal("メッセージが空です"))?;
        if !first.starts_with("MSH") {
            return Err(fatal("メッセージが MSH セグメントで始まっていません"));
        }
        let mut chars = first.char_indices().skip(3);
        let (_, field) = chars.next().ok_or_else(|| fatal("MSH-1 フィールド区切り文字がありません"))?;
        if field.is_alphanumeric() || field.is_whitespace() {
            return Err(fatal("MSH-1 フィールド区切り文字が不正です"));
        }
        let after = &first[3 + field.len_utf8()..];
        let enc_end = after.find(field).unwrap_or(after.len());
        let enc: Vec<char> = after[..enc_end].chars().collect();
        if enc.len() < 3 {
            return Err(fatal("MSH-2 コード化文字が 4 文字そろっていません"));
        }
        let delimiters = Delimiters {
            field,
            component: enc[0],
            repetition: enc[1],
            escape: enc.get(2).copied().filter(|c| *c != ' '),
            subcomponent: enc.get(3).copied().unwrap_or('&'),
        };
        let mut issues = Vec::new();
        if enc.len() < 4 {
            issues.push(SyntaxIssue {
                segment_index: Some(0),
                segment: Some("MSH".into()),
                field: Some(2),
                fatal: false,
                reason: "MSH-2 コード化文字が 3 文字です（サブ成分区切りは & とみなしました）".into(),
            });
        }
        let mut segments = Vec::new();
        segments.push(Segment::msh(first, delimiters, enc_end));
        for line in lines {
            let index = segments.len();
            let seg = Segment::other(index, line, delimiters);
            if !is_segment_name(seg.name) {
                issues.push(SyntaxIssue {
                    segment_index: Some(index),
                    segment: None,
                    field: None,
                    fatal: false,
                    reason: format!("セグメント名 {:?} が不正です（英大文字と数字 3 文字）", truncate(seg.name, 10)),
                });
            }
            segments.push(seg);
        }
        for seg in &segments {
            seg.check_escapes(&mut issues);
        }
        Ok(Message { delimiters, segments, line_ending, issues })
    }

    /// The first segment with this name.
    pub fn segment(&self, name: &str) -> Option<&Segment<'a>> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// MSH-9.1^MSH-9.2, e.g. `RDE^O11`.
    pub fn message_type(&self) -> Option<String> {
        let msh = self.segments.first()?;
        let code = msh.get(9).comp(1).as_str();
        let event = msh.get(9).comp(2).as_str();
        if code.is_empty() {
            return None;
        }
        Some(format!("{code}^{event}"))
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> Option<String> {
        self.segments.first().and_then(|m| m.text(10))
    }

    /// The segment names joined (`MSHPIDPV1…`), the form the segment-order rules match.
    pub fn name_sequence(&self) -> String {
        self.segments.iter().map(|s| s.name).collect()
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn is_segment_name(name: &str) -> bool {
    name.len() == 3 && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Splits at CR, CRLF or LF and tells which were used.
fn split_segments(text: &str) -> (Vec<&str>, LineEnding) {
    let (mut cr, mut crlf, mut lf) = (false, false, false);
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    crlf = true;
                    i += 1;
                } else {
                    cr = true;
                }
                start = i + 1;
            }
            b'\n' => {
                out.push(&text[start..i]);
                lf = true;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    let ending = match (cr, crlf, lf) {
        (_, false, false) => LineEnding::Cr,
        (false, true, false) => LineEnding::CrLf,
        (false, false, true) => LineEnding::Lf,
        _ => LineEnding::Mixed,
    };
    (out, ending)
}

impl<'a> Segment<'a> {
    fn msh(line: &'a str, d: Delimiters, enc_end: usize) -> Segment<'a> {
        // MSH-1 is the separator itself and MSH-2 the encoding characters: they are not split.
        let sep_len = d.field.len_utf8();
        let enc_start = 3 + sep_len;
        let enc = &line[enc_start..enc_start + enc_end];
        let mut fields = vec![&line[..3], &line[3..3 + sep_len], enc];
        let rest_start = enc_start + enc_end;
        if rest_start < line.len() {
            fields.extend(line[rest_start + sep_len..].split(d.field));
        }
        Segment { index: 0, name: &line[..3], raw: line, fields, delimiters: d }
    }

    fn other(index: usize, line: &'a str, d: Delimiters) -> Segment<'a> {
        let fields: Vec<&str> = line.split(d.field).collect();
        let name = fields.first().copied().unwrap_or("");
        Segment { index, name, raw: line, fields, delimiters: d }
    }

    /// Number of fields present after the name (trailing empty fields included).
    pub fn field_count(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// Field `n` (1-based; MSH-1 is the separator). An absent field is empty.
    pub fn get(&self, n: usize) -> Value<'a> {
        let raw = self.fields.get(n).copied().unwrap_or("");
        let whole = self.name == "MSH" && n <= 2;
        Value { raw, d: self.delimiters, level: if whole { Level::Leaf } else { Level::Field } }
    }

    /// Field `n` unescaped, `None` when empty.
    pub fn text(&self, n: usize) -> Option<String> {
        self.get(n).text_opt()
    }

    /// Component `c` of the first repetition of field `n`, unescaped, `None` when empty.
    pub fn comp_text(&self, n: usize, c: usize) -> Option<String> {
        self.get(n).comp(c).text_opt()
    }

    fn check_escapes(&self, issues: &mut Vec<SyntaxIssue>) {
        let Some(e) = self.delimiters.escape else { return };
        for (n, f) in self.fields.iter().enumerate().skip(1) {
            if self.name == "MSH" && n <= 2 {
                continue;
            }
            if !f.contains(e) {
                continue;
            }
            for part in f.split([self.delimiters.component, self.delimiters.repetition, self.delimiters.subcomponent]) {
                if let Err(reason) = unescape_checked(part, &self.delimiters) {
                    issues.push(SyntaxIssue {
                        segment_index: Some(self.index),
                        segment: Some(self.name.to_owned()),
                        field: u32::try_from(n).ok(),
                        fatal: false,
                        reason,
                    });
                    break;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Field,
    Repetition,
    Component,
    Leaf,
}

/// A field, repetition, component or subcomponent: raw text that splits further on demand.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    raw: &'a str,
    d: Delimiters,
    level: Level,
}

impl<'a> Value<'a> {
    /// The raw text, escapes and inner delimiters included.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether the value is empty (or the HL7 null `""`).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() || self.raw == "\"\""
    }

    /// The repetitions of a field (a field with no repetition separator has one).
    pub fn reps(&self) -> Vec<Value<'a>> {
        match self.level {
            Level::Field => self
                .raw
                .split(self.d.repetition)
                .map(|r| Value { raw: r, d: self.d, level: Level::Repetition })
                .collect(),
            _ => vec![*self],
        }
    }

    /// Repetition `i` (0-based) of a field.
    pub fn rep(&self, i: usize) -> Value<'a> {
        self.reps().get(i).copied().unwrap_or(Value { raw: "", d: self.d, level: Level::Repetition })
    }

    /// Component `c` (1-based) of the first repetition.
    pub fn comp(&self, c: usize) -> Value<'a> {
        let base = match self.level {
            Level::Field => self.raw.split(self.d.repetition).next().unwrap_or(""),
            Level::Repetition => self.raw,
            Level::Component | Level::Leaf => {
                return if c == 1 { *self } else { Value { raw: "", d: self.d, level: Level::Leaf } };
            }
        };
        let raw = c.checked_sub(1).and_then(|i| base.split(self.d.component).nth(i)).unwrap_or("");
        Value { raw, d: self.d, level: Level::Component }
    }

    /// Subcomponent `s` (1-based) of a component (or of the first component).
    pub fn sub(&self, s: usize) -> Value<'a> {
        let base = match self.level {
            Level::Component => *self,
            Level::Leaf => return if s == 1 { *self } else { Value { raw: "", d: self.d, level: Level::Leaf } },
            _ => self.comp(1),
        };
        let raw = s.checked_sub(1).and_then(|i| base.raw.split(self.d.subcomponent).nth(i)).unwrap_or("");
        Value { raw, d: self.d, level: Level::Leaf }
    }

    /// The unescaped text. Invalid escapes are kept as written (they were reported at parse).
    pub fn text(&self) -> Cow<'a, str> {
        if self.raw == "\"\"" {
            return Cow::Borrowed("");
        }
        unescape(self.raw, &self.d)
    }

    /// The unescaped, trimmed text, `None` when empty.
    pub fn text_opt(&self) -> Option<String> {
        let t = self.text();
        let t = t.trim();
        if t.is_empty() { None } else { Some(t.to_owned()) }
    }
}

/// Escapes text for use inside a field: the delimiters and the escape character become
/// `\F\ \S\ \T\ \R\ \E\`, and line breaks `\.br\` (the inverse of [`unescape`]).
pub fn escape(text: &str, d: &Delimiters) -> String {
    let Some(e) = d.escape else { return text.to_owned() };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = if c == d.field {
            Some("F")
        } else if c == d.component {
            Some("S")
        } else if c == d.subcomponent {
            Some("T")
        } else if c == d.repetition {
            Some("R")
        } else if c == e {
            Some("E")
        } else if c == '\n' {
            Some(".br")
        } else {
            None
        };
        match code {
            Some(x) => {
                out.push(e);
                out.push_str(x);
                out.push(e);
            }
            None => out.push(c),
        }
    }
    out
}

/// Unescapes `\F\ \S\ \T\ \R\ \E\ \Xhh..\ \.br\` and drops formatting and character-set
/// escapes (`\H\ \N\ \Cxxyy\ \Mxxyyzz\`). Unknown or unterminated escapes stay as written.
pub fn unescape<'a>(raw: &'a str, d: &Delimiters) -> Cow<'a, str> {
    match d.escape {
        Some(e) if raw.contains(e) => Cow::Owned(unescape_inner(raw, d, e).0),
        _ => Cow::Borrowed(raw),
    }
}

/// Like [`unescape`] but reports the first invalid escape sequence.
pub fn unescape_checked(raw: &str, d: &Delimiters) -> Result<String, String> {
    match d.escape {
        Some(e) if raw.contains(e) => {
            let (s, err) = unescape_inner(raw, d, e);
            match err {
                Some(r) => Err(r),
                None => Ok(s),
            }
        }
        _ => Ok(raw.to_owned()),
    }
}

fn unescape_inner(raw: &str, d: &Delimiters, e: char) -> (String, Option<String>) {
    let mut out = String::with_capacity(raw.len());
    let mut err = None;
    let mut rest = raw;
    while let Some(pos) = rest.find(e) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + e.len_utf8()..];
        let Some(end) = after.find(e) else {
            err.get_or_insert_with(|| "エスケープシーケンスが閉じていません".to_owned());
            out.push(e);
            rest = after;
            continue;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(e),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            _ if seq.starts_with('X') => match decode_hex(&seq[1..]) {
                Some(s) => out.push_str(&s),
                None => {
                    err.get_or_insert_with(|| format!("16進エスケープ \\{seq}\\ を解釈できません"));
                    out.push(e);
                    out.push_str(seq);
                    out.push(e);
                }
            },
            _ if (seq.starts_with('C') || seq.starts_with('M')) && seq[1..].bytes().all(|b| b.is_ascii_hexdigit()) => {}
            _ if seq.starts_with('Z') => {
                out.push(e);
                out.push_str(seq);
                out.push(e);
            }
            _ => {
                err.get_or_insert_with(|| format!("未知のエスケープシーケンス \\{}\\ です", truncate(seq, 12)));
                out.push(e);
                out.push_str(seq);
                out.push(e);
            }
        }
        rest = &after[end + e.len_utf8()..];
    }
    out.push_str(rest);
    (out, err)
}

/// Hex escapes carry bytes of the message's own encoding: decode them as ISO-2022-JP (which is
/// ASCII for plain bytes), falling back to CP932.
fn decode_hex(hex_digits: &str) -> Option<String> {
    let bytes = hex::decode(hex_digits).ok()?;
    let (s, _, bad) = encoding_rs::ISO_2022_JP.decode(&bytes);
    if !bad {
        return Some(s.into_owned());
    }
    let (s, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    if bad { None } else { Some(s.into_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "MSH|^~\\&|HIS|SEND|GW|RCV|20111220224447||ADT^A08^ADT_A01|123|P|2.5\rPID|0001||9999013^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M\rOBX|1|TX|X^Y||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\\\.br\\g|\r";

    #[test]
    fn parses_fields_repetitions_components() {
        let m = Message::parse(MSG).unwrap();
        assert_eq!(m.segments.len(), 3);
        assert_eq!(m.message_type().as_deref(), Some("ADT^A08"));
        assert_eq!(m.control_id().as_deref(), Some("123"));
        let msh = &m.segments[0];
        assert_eq!(msh.get(1).as_str(), "|");
        assert_eq!(msh.get(2).as_str(), "^~\\&");
        assert_eq!(msh.text(3).as_deref(), Some("HIS"));
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.index, 1);
        assert_eq!(pid.comp_text(3, 1).as_deref(), Some("9999013"));
        assert_eq!(pid.comp_text(3, 5).as_deref(), Some("PI"));
        let names = pid.get(5).reps();
        assert_eq!(names.len(), 2);
        assert_eq!(names[0].comp(1).text(), "患者");
        assert_eq!(names[1].comp(2).text(), "タロウ");
        assert_eq!(names[1].comp(8).text(), "P");
        assert_eq!(m.name_sequence(), "MSHPIDOBX");
        assert_eq!(m.line_ending, LineEnding::Cr);
        assert!(m.issues.is_empty(), "{:?}", m.issues);
    }

    #[test]
    fn unescapes_every_standard_sequence() {
        let m = Message::parse(MSG).unwrap();
        let obx = m.segment("OBX").unwrap();
        assert_eq!(obx.get(5).text(), "a|b^c&d~e\\fA\ng");
    }

    #[test]
    fn subcomponents() {
        let m = Message::parse("MSH|^~\\&|A\rTQ1|1||1013044400000000&内服・経口&JAMISDP01|||5^d\r").unwrap();
        let tq1 = m.segment("TQ1").unwrap();
        assert_eq!(tq1.get(3).comp(1).sub(2).text(), "内服・経口");
        assert_eq!(tq1.get(3).sub(3).text(), "JAMISDP01");
        assert_eq!(tq1.comp_text(6, 2).as_deref(), Some("d"));
    }

    #[test]
    fn reports_bad_escapes_and_line_endings() {
        let m = Message::parse("MSH|^~\\&|A\r\nOBX|1|ST|||\\Q\\\r\nZZ\r\n").unwrap();
        assert_eq!(m.line_ending, LineEnding::CrLf);
        assert!(m.issues.iter().any(|i| i.field == Some(5) && i.reason.contains("未知")));
        assert!(m.issues.iter().any(|i| i.segment_index == Some(2)));
    }

    #[test]
    fn rejects_non_msh() {
        assert!(Message::parse("PID|1").is_err());
        assert!(Message::parse("").is_err());
        assert!(Message::parse("MSH").is_err());
        assert!(Message::parse("MSH|^").is_err());
    }
}
