//! FHIR R4 primitive types: which JSON shape each one takes and the lexical rules (the regexes
//! of the R4 specification, section 2.24.0.1), written as small hand-rolled matchers.
//!
//! The matchers are hand-written rather than compiled regexes because they run on every
//! primitive of every resource on the ingest path; each function's doc gives the regex it
//! implements, and a property test in `tests/` checks that they agree with the `regex` crate.

use serde_json::Value;

/// The FHIR R4 primitive types (plus `System.String`, the type of `Element.id` and
/// `Extension.url` in snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    /// `boolean`
    Boolean,
    /// `integer` (32-bit signed)
    Integer,
    /// `unsignedInt`
    UnsignedInt,
    /// `positiveInt`
    PositiveInt,
    /// `decimal`
    Decimal,
    /// `string`
    String,
    /// `code`
    Code,
    /// `id`
    Id,
    /// `uri`
    Uri,
    /// `url`
    Url,
    /// `canonical`
    Canonical,
    /// `oid`
    Oid,
    /// `uuid`
    Uuid,
    /// `markdown`
    Markdown,
    /// `base64Binary`
    Base64Binary,
    /// `date`
    Date,
    /// `dateTime`
    DateTime,
    /// `instant`
    Instant,
    /// `time`
    Time,
    /// `xhtml` (Narrative.div)
    Xhtml,
    /// `http://hl7.org/fhirpath/System.String`
    SystemString,
}

impl Primitive {
    /// The primitive named by a StructureDefinition type code, if it is one.
    pub fn from_code(code: &str) -> Option<Primitive> {
        Some(match code {
            "boolean" => Primitive::Boolean,
            "integer" => Primitive::Integer,
            "unsignedInt" => Primitive::UnsignedInt,
            "positiveInt" => Primitive::PositiveInt,
            "decimal" => Primitive::Decimal,
            "string" => Primitive::String,
            "code" => Primitive::Code,
            "id" => Primitive::Id,
            "uri" => Primitive::Uri,
            "url" => Primitive::Url,
            "canonical" => Primitive::Canonical,
            "oid" => Primitive::Oid,
            "uuid" => Primitive::Uuid,
            "markdown" => Primitive::Markdown,
            "base64Binary" => Primitive::Base64Binary,
            "date" => Primitive::Date,
            "dateTime" => Primitive::DateTime,
            "instant" => Primitive::Instant,
            "time" => Primitive::Time,
            "xhtml" => Primitive::Xhtml,
            "http://hl7.org/fhirpath/System.String" => Primitive::SystemString,
            _ => return None,
        })
    }

    /// The FHIR type name, as used in messages and `[x]` suffixes.
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Boolean => "boolean",
            Primitive::Integer => "integer",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::PositiveInt => "positiveInt",
            Primitive::Decimal => "decimal",
            Primitive::String => "string",
            Primitive::Code => "code",
            Primitive::Id => "id",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Canonical => "canonical",
            Primitive::Oid => "oid",
            Primitive::Uuid => "uuid",
            Primitive::Markdown => "markdown",
            Primitive::Base64Binary => "base64Binary",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Instant => "instant",
            Primitive::Time => "time",
            Primitive::Xhtml => "xhtml",
            Primitive::SystemString => "string",
        }
    }
}

/// Why a JSON value is not a valid primitive of its type; the text is Japanese, for the
/// vendor's engineer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimitiveError {
    /// The JSON type is wrong (a number where a string is required, …).
    JsonType(&'static str),
    /// The lexical form does not match the type's rule.
    Format(&'static str),
}

/// Checks one JSON value against a primitive type.
pub fn check(p: Primitive, v: &Value) -> Result<(), PrimitiveError> {
    use PrimitiveError::{Format, JsonType};
    match p {
        Primitive::Boolean => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(JsonType("JSON の true / false")),
        },
        Primitive::Integer | Primitive::UnsignedInt | Primitive::PositiveInt => {
            let Value::Number(n) = v else {
                return Err(JsonType("JSON の整数 (引用符なし)"));
            };
            let Some(i) = n.as_i64() else {
                return Err(Format("整数でなければなりません"));
            };
            let (lo, msg) = match p {
                Primitive::Integer => (i64::from(i32::MIN), "32 ビット符号付き整数の範囲外です"),
                Primitive::UnsignedInt => (0, "0 以上 2147483647 以下でなければなりません"),
                _ => (1, "1 以上 2147483647 以下でなければなりません"),
            };
            if i < lo || i > i64::from(i32::MAX) { Err(Format(msg)) } else { Ok(()) }
        }
        Primitive::Decimal => match v {
            Value::Number(_) => Ok(()),
            _ => Err(JsonType("JSON の数値 (引用符なし)")),
        },
        _ => {
            let Value::String(s) = v else {
                return Err(JsonType("JSON の文字列"));
            };
            check_str(p, s)
        }
    }
}

/// Checks the lexical form of a string-valued primitive.
pub fn check_str(p: Primitive, s: &str) -> Result<(), PrimitiveError> {
    use PrimitiveError::Format;
    if s.is_empty() {
        return Err(Format("空文字列は使えません (値がなければ要素ごと省略してください)"));
    }
    let ok = match p {
        Primitive::String | Primitive::Markdown | Primitive::SystemString => true,
        Primitive::Code => is_code(s),
        Primitive::Id => is_id(s),
        Primitive::Uri | Primitive::Url | Primitive::Canonical => is_uri(s),
        Primitive::Oid => is_oid(s),
        Primitive::Uuid => is_uuid(s),
        Primitive::Base64Binary => is_base64(s),
        Primitive::Date => {
            if !is_date(s) {
                return Err(Format("日付は YYYY、YYYY-MM または YYYY-MM-DD の形式です"));
            }
            return calendar_ok(s);
        }
        Primitive::DateTime => {
            if !is_datetime(s) {
                return Err(Format(
                    "日時は YYYY、YYYY-MM、YYYY-MM-DD、または YYYY-MM-DDThh:mm:ss(.sss)+zz:zz (時刻にはタイムゾーンが必須) の形式です",
                ));
            }
            return calendar_ok(s);
        }
        Primitive::Instant => {
            if !is_instant(s) {
                return Err(Format("instant は YYYY-MM-DDThh:mm:ss(.sss)+zz:zz (秒とタイムゾーンまで必須) の形式です"));
            }
            return calendar_ok(s);
        }
        Primitive::Time => is_time(s),
        Primitive::Xhtml => s.trim_start().starts_with("<div"),
        Primitive::Boolean
        | Primitive::Integer
        | Primitive::UnsignedInt
        | Primitive::PositiveInt
        | Primitive::Decimal => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Format(match p {
            Primitive::Code => "code の前後に空白を置けず、途中の空白は 1 文字ずつです",
            Primitive::Id => "id は半角英数字・ハイフン・ピリオドの 1〜64 文字です",
            Primitive::Uri | Primitive::Url | Primitive::Canonical => "URI に空白は使えません",
            Primitive::Oid => "OID は urn:oid:1.2.3 の形式です",
            Primitive::Uuid => "UUID は urn:uuid: に続く小文字 16 進の 8-4-4-4-12 桁です",
            Primitive::Base64Binary => "base64 の文字 (A-Z a-z 0-9 + / =) で 4 文字単位でなければなりません",
            Primitive::Time => "時刻は hh:mm:ss の形式です",
            Primitive::Xhtml => "Narrative.div は <div> 要素で始まらなければなりません",
            _ => "形式が正しくありません",
        }))
    }
}

/// `[^\s]+(\s[^\s]+)*`
pub fn is_code(s: &str) -> bool {
    let mut prev_space = true; // start counts as "after a space": a leading space is invalid
    for c in s.chars() {
        let sp = c.is_whitespace();
        if sp && prev_space {
            return false;
        }
        prev_space = sp;
    }
    !s.is_empty() && !prev_space
}

/// `[A-Za-z0-9\-\.]{1,64}`
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `\S*`
pub fn is_uri(s: &str) -> bool {
    if s.is_ascii() {
        // `\s` in the R4 regexes is Unicode white space; for ASCII that is these bytes.
        return !s.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    }
    !s.chars().any(char::is_whitespace)
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
pub fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else { return false };
    let mut parts = rest.split('.');
    match parts.next() {
        Some("0" | "1" | "2") => {}
        _ => return false,
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let b = p.as_bytes();
        let ok = match b {
            [] => false,
            [b'0'] => true,
            [first, ..] => (b'1'..=b'9').contains(first) && b.iter().all(u8::is_ascii_digit),
        };
        if !ok {
            return false;
        }
    }
    n > 0
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
pub fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else { return false };
    is_bare_uuid(rest)
}

/// A lower-case 8-4-4-4-12 hexadecimal UUID without prefix.
pub fn is_bare_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { matches!(c, b'0'..=b'9' | b'a'..=b'f') }
        })
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`
pub fn is_base64(s: &str) -> bool {
    let mut n = 0usize;
    for c in s.chars() {
        if c.is_whitespace() {
            continue;
        }
        if !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=') {
            return false;
        }
        n += 1;
    }
    n > 0 && n.is_multiple_of(4)
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

/// Four-digit year except `0000`: `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)`.
fn year_ok(b: &[u8]) -> bool {
    b.len() == 4 && digits(b) && b != b"0000"
}

fn two(b: &[u8], lo: u8, hi: u8) -> bool {
    b.len() == 2 && digits(b) && {
        let v = (b[0] - b'0') * 10 + (b[1] - b'0');
        (lo..=hi).contains(&v)
    }
}

/// `YYYY(-MM(-DD)?)?` with month 01-12 and day 01-31.
fn date_part(b: &[u8]) -> bool {
    match b.len() {
        4 => year_ok(b),
        7 => year_ok(&b[..4]) && b[4] == b'-' && two(&b[5..7], 1, 12),
        10 => year_ok(&b[..4]) && b[4] == b'-' && two(&b[5..7], 1, 12) && b[7] == b'-' && two(&b[8..10], 1, 31),
        _ => false,
    }
}

/// `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?`
fn time_part(b: &[u8]) -> bool {
    if b.len() < 8 || !two(&b[0..2], 0, 23) || b[2] != b':' || !two(&b[3..5], 0, 59) || b[5] != b':' {
        return false;
    }
    if !two(&b[6..8], 0, 60) {
        return false;
    }
    match &b[8..] {
        [] => true,
        [b'.', frac @ ..] => !frac.is_empty() && digits(frac),
        _ => false,
    }
}

/// `(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`
fn tz_part(b: &[u8]) -> bool {
    match b {
        [b'Z'] => true,
        [b'+' | b'-', rest @ ..] => {
            rest.len() == 5
                && rest[2] == b':'
                && (rest == b"14:00" || (two(&rest[0..2], 0, 13) && two(&rest[3..5], 0, 59)))
        }
        _ => false,
    }
}

/// Splits `hh:mm:ss(.f)` from its time-zone suffix.
fn split_tz(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = b.iter().position(|c| matches!(c, b'Z' | b'+' | b'-'))?;
    Some((&b[..pos], &b[pos..]))
}

/// The R4 `date` regex.
pub fn is_date(s: &str) -> bool {
    date_part(s.as_bytes())
}

/// The R4 `dateTime` regex: a date, or a full date with `T`, time and mandatory zone.
pub fn is_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() <= 10 {
        return date_part(b);
    }
    if b[10] != b'T' || !date_part(&b[..10]) {
        return false;
    }
    match split_tz(&b[11..]) {
        Some((t, z)) => time_part(t) && tz_part(z),
        None => false,
    }
}

/// The R4 `instant` regex: full date, time and zone.
pub fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 10 && b[10] == b'T' && date_part(&b[..10]) && is_datetime(s)
}

/// The R4 `time` regex.
pub fn is_time(s: &str) -> bool {
    time_part(s.as_bytes())
}

/// Beyond the regex: the day must exist in its month (no 2021-02-30).
fn calendar_ok(s: &str) -> Result<(), PrimitiveError> {
    let b = s.as_bytes();
    if b.len() < 10 {
        return Ok(());
    }
    let num = |r: std::ops::Range<usize>| -> u32 { b[r].iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0')) };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d > days { Err(PrimitiveError::Format("存在しない日付です")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert!(is_date("2021"));
        assert!(is_date("2021-07"));
        assert!(is_date("2021-07-05"));
        assert!(!is_date("0000"));
        assert!(!is_date("2021-13"));
        assert!(!is_date("2021-7-5"));
        assert!(is_datetime("2021-07-05T13:08:22+09:00"));
        assert!(is_datetime("2021-07-05T19:28:23.000+09:00"));
        assert!(is_datetime("2021-07-05T19:28:23Z"));
        assert!(!is_datetime("2021-07-05T19:28:23"));
        assert!(!is_datetime("2021-07-05T19:28+09:00"));
        assert!(!is_datetime("2021-07-05 19:28:23+09:00"));
        assert!(is_instant("2021-07-05T19:28:23.000+09:00"));
        assert!(!is_instant("2021-07-05"));
        assert!(is_time("12:00:00"));
        assert!(!is_time("24:00:00"));
        assert_eq!(check_str(Primitive::Date, "2021-02-29"), Err(PrimitiveError::Format("存在しない日付です")));
        assert!(check_str(Primitive::Date, "2024-02-29").is_ok());
    }

    #[test]
    fn ids_codes_and_uris() {
        assert!(is_id("Example-JP-MedReq-PO-SID-28days"));
        assert!(!is_id("has space"));
        assert!(!is_id(&"a".repeat(65)));
        assert!(is_code("final"));
        assert!(is_code("a b"));
        assert!(!is_code(" a"));
        assert!(!is_code("a  b"));
        assert!(!is_code("a "));
        assert!(is_oid("urn:oid:1.2.392.100495.20.3.51.11318814790"));
        assert!(!is_oid("urn:oid:1.02"));
        assert!(is_uuid("urn:uuid:b76ef6f6-f6e3-c110-5039-eee64ef6ab6a"));
        assert!(!is_uuid("urn:uuid:B76EF6F6-f6e3-c110-5039-eee64ef6ab6a"));
        assert!(is_base64("SGVsbG8="));
        assert!(!is_base64("SGVsbG8"));
    }

    #[test]
    fn json_shapes() {
        use serde_json::json;
        assert!(check(Primitive::Code, &json!(5)).is_err());
        assert!(check(Primitive::Boolean, &json!("true")).is_err());
        assert!(check(Primitive::PositiveInt, &json!(0)).is_err());
        assert!(check(Primitive::PositiveInt, &json!(1)).is_ok());
        assert!(check(Primitive::Integer, &json!(1.5)).is_err());
        assert!(check(Primitive::Decimal, &json!(1.5)).is_ok());
        assert!(check(Primitive::String, &json!("")).is_err());
    }
}
