//! Decoding SS-MIX2 file bytes to text: ISO-2022-JP as the standard requires, tolerating what
//! vendors actually write.
//!
//! - encoding_rs' ISO-2022-JP decoder uses the WHATWG JIS X 0208 index, which already holds the
//!   CP932 extensions that fit in ISO-2022-JP (NEC row 13: ①, Ⅰ, ㈱; NEC-selected IBM rows
//!   89–92: 髙, 﨑). So those decode without special handling.
//! - JIS X 0212 (`ESC $ ( D`) is not supported by encoding_rs; left alone its bytes would be
//!   read as ASCII and silently corrupt the text. Each such character is replaced by the geta
//!   mark 〓 (the customary stand-in) and reported.
//! - Files written in CP932 or UTF-8 instead of ISO-2022-JP (8-bit bytes, no escapes) are
//!   decoded in that encoding with a warning, when they decode cleanly.
//! - Any other malformed byte becomes U+FFFD and is reported with its line.
//!
//! The whole file is decoded before it is split into segments: inside a JIS X 0208 run the
//! bytes `|`, `^`, `~`, `\` and `&` are halves of kanji, not delimiters.

use encoding_rs::{DecoderResult, ISO_2022_JP, SHIFT_JIS};

/// What went wrong or was unusual while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeIssue {
    /// 1-based line (segment) where it happened, counted on segment terminators.
    pub line: usize,
    /// What happened.
    pub kind: DecodeIssueKind,
    /// Why, in Japanese.
    pub reason: String,
}

/// The kinds of decoding issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeIssueKind {
    /// The file is in another encoding (CP932, UTF-8) and was read in that one.
    OtherEncoding,
    /// Characters that cannot be represented (JIS X 0212) were replaced by 〓.
    Substituted,
    /// Bytes that are not valid in any way were replaced by U+FFFD: the text is damaged.
    Malformed,
}

/// Decoded text and what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text.
    pub text: String,
    /// Issues, in file order.
    pub issues: Vec<DecodeIssue>,
}

const ESC: u8 = 0x1b;

/// Decodes the bytes of one standardized-storage file.
pub fn decode(bytes: &[u8]) -> Decoded {
    let has_8bit = bytes.iter().any(|b| *b >= 0x80);
    let has_esc = bytes.contains(&ESC);
    if has_8bit && !has_esc {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return Decoded {
                text: s.trim_start_matches('\u{feff}').to_owned(),
                issues: vec![DecodeIssue {
                    line: 1,
                    kind: DecodeIssueKind::OtherEncoding,
                    reason: "ISO-2022-JP ではなく UTF-8 で書かれています（UTF-8 として読みました）".into(),
                }],
            };
        }
        if let Some(s) = SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes) {
            return Decoded {
                text: s.into_owned(),
                issues: vec![DecodeIssue {
                    line: 1,
                    kind: DecodeIssueKind::OtherEncoding,
                    reason: "ISO-2022-JP ではなく Shift_JIS (CP932) で書かれています（CP932 として読みました）".into(),
                }],
            };
        }
    }
    let mut issues = Vec::new();
    let prepared = replace_jis_x_0212(bytes, &mut issues);
    let text = decode_iso2022jp(&prepared, &mut issues);
    issues.sort_by_key(|i| i.line);
    Decoded { text, issues }
}

/// 1-based line of a byte offset. CR and LF never occur inside a JIS double-byte run (those
/// bytes are 0x21–0x7E), so counting them on the raw bytes is exact.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    let upto = &bytes[..offset.min(bytes.len())];
    let mut line = 1;
    let mut i = 0;
    while i < upto.len() {
        match upto[i] {
            b'\r' => {
                line += 1;
                if upto.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => line += 1,
            _ => {}
        }
        i += 1;
    }
    line
}

/// Rewrites each JIS X 0212 run (`ESC $ ( D` … next ESC) as a JIS X 0208 run of geta marks.
fn replace_jis_x_0212(bytes: &[u8], issues: &mut Vec<DecodeIssue>) -> Vec<u8> {
    const SEQ: &[u8] = b"\x1b$(D";
    if !bytes.windows(SEQ.len()).any(|w| w == SEQ) {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(SEQ) {
            let start = i;
            i += SEQ.len();
            let mut count = 0;
            out.extend_from_slice(b"\x1b$B");
            while i < bytes.len() && bytes[i] != ESC && bytes[i] != b'\r' && bytes[i] != b'\n' {
                // Two bytes per character; an odd trailing byte is still one lost character.
                i += 2;
                count += 1;
                out.extend_from_slice(&[0x22, 0x2e]);
            }
            i = i.min(bytes.len());
            issues.push(DecodeIssue {
                line: line_of(bytes, start),
                kind: DecodeIssueKind::Substituted,
                reason: format!("JIS X 0212（補助漢字）の文字 {count} 字は変換できないため 〓 に置き換えました"),
            });
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn decode_iso2022jp(bytes: &[u8], issues: &mut Vec<DecodeIssue>) -> String {
    let mut decoder = ISO_2022_JP.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2 + 16);
    let mut read_total = 0;
    let mut reported = 0usize;
    loop {
        let input = &bytes[read_total..];
        if out.capacity() - out.len() < decoder.max_utf8_buffer_length_without_replacement(input.len()).unwrap_or(1024)
        {
            out.reserve(decoder.max_utf8_buffer_length_without_replacement(input.len()).unwrap_or(1024));
        }
        let (result, read) = decoder.decode_to_string_without_replacement(input, &mut out, true);
        read_total += read;
        match result {
            DecoderResult::InputEmpty => break,
            DecoderResult::OutputFull => out.reserve(1024),
            DecoderResult::Malformed(_, _) => {
                out.push('\u{fffd}');
                // Report each line once; a run of bad bytes is one problem.
                let line = line_of(bytes, read_total.saturating_sub(1));
                if reported != line {
                    reported = line;
                    issues.push(DecodeIssue {
                        line,
                        kind: DecodeIssueKind::Malformed,
                        reason: "ISO-2022-JP として読めないバイトがあります（U+FFFD に置き換えました）".into(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(s: &str) -> Vec<u8> {
        let (b, _, bad) = ISO_2022_JP.encode(s);
        assert!(!bad);
        b.into_owned()
    }

    #[test]
    fn decodes_kanji_containing_delimiter_bytes() {
        // 患 is 0x34 0x35, but ソ (0x25 0x3d) and 表 (0x49 0x3d) etc. — pick text whose JIS bytes
        // include '|' (0x7c) and '^' (0x5e): 倫 = 0x4e 0x51? Use a known one: 院 = 0x31 0x21.
        let text = "PID|1||患者^太郎|ダーゼン錠（５mg)|ソ表能\r";
        let d = decode(&iso(text));
        assert_eq!(d.text, text);
        assert!(d.issues.is_empty());
    }

    #[test]
    fn cp932_extensions_in_jis_runs_decode() {
        // NEC row 13 (①) and NEC-selected IBM rows (髙) as encoding_rs would write them.
        let d = decode(&iso("A①髙B\r"));
        assert_eq!(d.text, "A①髙B\r");
    }

    #[test]
    fn jis_x_0212_is_replaced_and_reported() {
        let mut b = b"MSH|^~\\&\rPID|".to_vec();
        b.extend_from_slice(b"\x1b$(D\x30\x21\x30\x22\x1b(B|X\r");
        let d = decode(&b);
        assert_eq!(d.text, "MSH|^~\\&\rPID|〓〓|X\r");
        assert_eq!(d.issues.len(), 1);
        assert_eq!(d.issues[0].line, 2);
        assert_eq!(d.issues[0].kind, DecodeIssueKind::Substituted);
        assert!(d.issues[0].reason.contains("2 字"));
    }

    #[test]
    fn shift_jis_file_is_read_with_a_warning() {
        let d = decode(&[0xfb, 0xfc]);
        assert_eq!(d.text, "髙");
        assert_eq!(d.issues[0].kind, DecodeIssueKind::OtherEncoding);
    }

    #[test]
    fn malformed_bytes_are_reported_with_line() {
        let d = decode(b"MSH|\r\x1b$B\x7f\x7f\x1b(B\rX\x80\x1b(B\r");
        assert!(d.text.contains('\u{fffd}'));
        assert!(d.issues.iter().any(|i| i.line == 2 && i.kind == DecodeIssueKind::Malformed));
    }
}
