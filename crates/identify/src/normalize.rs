//! Normalization of Japanese registration data, one small rule per function.
//!
//! Registration desks type the same person in many ways: full- or half-width kana, hiragana
//! or katakana, `オオノ`/`オーノ`/`オノ`, `ヅ`/`ズ`, a variant kanji (`髙`) or its common form
//! (`高`), `3丁目12番5号` or `３－１２－５`. Each rule below removes one such difference. The
//! matcher compares values at several levels of folding (see [`crate::compare`]) so that an
//! exact spelling still counts for more than a folded one.
//!
//! Every function is total (never panics) and idempotent: applying it twice gives the same
//! result as applying it once (property-tested).

use unicode_normalization::UnicodeNormalization;

/// Unicode NFKC: full-width ASCII becomes half-width, half-width kana becomes full-width (with
/// `ｶﾞ` composed to `ガ`), compatibility ideographs such as `塚` (U+FA10) become their unified
/// form. Callers keep the raw value beside the normalized one.
pub fn nfkc(s: &str) -> String {
    // Most registration data is already NFKC (full-width kana, kanji): skip the rewrite then.
    if unicode_normalization::is_nfkc_quick(s.chars()) == unicode_normalization::IsNormalized::Yes {
        return s.to_owned();
    }
    s.nfkc().collect()
}

/// Half-width katakana (U+FF61–U+FF9F) to full-width, composing voiced and semi-voiced marks;
/// everything else is left as is (unlike [`nfkc`], which also touches digits and letters).
pub fn halfwidth_to_fullwidth_kana(s: &str) -> String {
    if !s.chars().any(is_halfwidth_kana) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars() {
        if is_halfwidth_kana(c) {
            run.push(c);
        } else {
            if !run.is_empty() {
                out.extend(run.nfkc());
                run.clear();
            }
            out.push(c);
        }
    }
    out.extend(run.nfkc());
    out
}

fn is_halfwidth_kana(c: char) -> bool {
    ('\u{FF61}'..='\u{FF9F}').contains(&c)
}

/// Hiragana to katakana (`やまだ` → `ヤマダ`, `ゝ`/`ゞ` → `ヽ`/`ヾ`). Kana names are compared in
/// katakana, the form JP Core uses for the SYL representation.
pub fn hiragana_to_katakana(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' | '\u{309D}' | '\u{309E}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            other => other,
        })
        .collect()
}

/// Small kana to their full-size letters (`ァ` → `ア`, `ッ` → `ツ`, `ャ` → `ヤ`, `ヵ` → `カ`,
/// `ヶ` → `ケ`). Some legacy systems store kana names without small letters (`キヨウコ` for
/// `キョウコ`); this folding makes both agree at the phonetic level.
pub fn fold_small_kana(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ァ' => 'ア',
            'ィ' => 'イ',
            'ゥ' => 'ウ',
            'ェ' => 'エ',
            'ォ' => 'オ',
            'ッ' => 'ツ',
            'ャ' => 'ヤ',
            'ュ' => 'ユ',
            'ョ' => 'ヨ',
            'ヮ' => 'ワ',
            'ヵ' => 'カ',
            'ヶ' => 'ケ',
            other => other,
        })
        .collect()
}

/// `ヅ` → `ズ` and `ヂ` → `ジ`: the pairs sound the same in standard Japanese and desks use them
/// interchangeably (`スズキ`/`スヅキ`, `ツヅキ`/`ツズキ`). Also `ヴ` stays (it is distinct).
pub fn fold_zu_ji(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ヅ' => 'ズ',
            'ヂ' => 'ジ',
            other => other,
        })
        .collect()
}

/// The vowel of a (full-width) katakana letter, if it has one.
fn vowel_of(c: char) -> Option<char> {
    Some(match c {
        'ア' | 'カ' | 'ガ' | 'サ' | 'ザ' | 'タ' | 'ダ' | 'ナ' | 'ハ' | 'バ' | 'パ' | 'マ' | 'ヤ' | 'ャ' | 'ラ'
        | 'ワ' | 'ァ' | 'ヵ' => 'a',
        'イ' | 'キ' | 'ギ' | 'シ' | 'ジ' | 'チ' | 'ヂ' | 'ニ' | 'ヒ' | 'ビ' | 'ピ' | 'ミ' | 'リ' | 'ィ' => {
            'i'
        }
        'ウ' | 'ク' | 'グ' | 'ス' | 'ズ' | 'ツ' | 'ヅ' | 'ヌ' | 'フ' | 'ブ' | 'プ' | 'ム' | 'ユ' | 'ュ' | 'ル'
        | 'ゥ' | 'ヴ' => 'u',
        'エ' | 'ケ' | 'ゲ' | 'セ' | 'ゼ' | 'テ' | 'デ' | 'ネ' | 'ヘ' | 'ベ' | 'ペ' | 'メ' | 'レ' | 'ェ' | 'ヶ' => {
            'e'
        }
        'オ' | 'コ' | 'ゴ' | 'ソ' | 'ゾ' | 'ト' | 'ド' | 'ノ' | 'ホ' | 'ボ' | 'ポ' | 'モ' | 'ヨ' | 'ョ' | 'ロ'
        | 'ヲ' | 'ォ' => 'o',
        _ => return None,
    })
}

/// Long-vowel folding, the policy for kana names: a long vowel may be written with `ー`, with
/// the vowel letter, or not at all (`オオノ`, `オーノ`, `オノ`; `サトウ`, `サトー`, `サト`), so
/// all three fold to the short form. Removed are: every `ー`, and a vowel letter that only
/// lengthens the previous syllable — `ア` after an a-row letter, `イ` after i- or e-row, `ウ`
/// after u- or o-row, `オ` after o-row, `エ` after e-row.
///
/// This loses distinctions (`ユウコ` and `ユコ` fold together), which is why it is only the
/// *phonetic* level of comparison; the exact kana level keeps them apart.
pub fn fold_long_vowels(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_vowel: Option<char> = None;
    for c in s.chars() {
        if c == 'ー' || c == '〜' {
            continue;
        }
        let lengthens = matches!(
            (prev_vowel, c),
            (Some('a'), 'ア')
                | (Some('i' | 'e'), 'イ')
                | (Some('u' | 'o'), 'ウ')
                | (Some('o'), 'オ')
                | (Some('e'), 'エ')
        );
        if lengthens {
            // The vowel of the syllable stays the same, so a third letter (`オオオ`) folds too.
            continue;
        }
        prev_vowel = vowel_of(c);
        out.push(c);
    }
    out
}

/// Variant kanji (異体字) and their common forms: `(variant, common)`.
///
/// Sources: the pairs a registration desk meets in surnames, drawn from the 人名用漢字 /
/// 常用漢字 old–new correspondence (旧字体 → 新字体, 法務省 戸籍統一文字 notes) and the JIS
/// X 0213 IBM-extension ideographs that legacy receipt systems emit (`髙`, `﨑`). Included only
/// where the two forms are the same character for naming purposes (a family registered as
/// `齋藤` is also written `斎藤`). Deliberately **not** folded: `籐`/`藤` (different characters;
/// the mistake is a misconversion, caught by the one-character-difference level), and
/// `斉`/`齊`/`斎`/`齋` are folded together although `斉` and `斎` are distinct characters,
/// because desks and the public use them interchangeably in サイトウ and the kana still decides.
pub const VARIANT_KANJI: &[(char, char)] = &[
    ('髙', '高'),
    ('﨑', '崎'),
    ('嵜', '崎'),
    ('碕', '崎'),
    ('齋', '斎'),
    ('齊', '斎'),
    ('斉', '斎'),
    ('邊', '辺'),
    ('邉', '辺'),
    ('澤', '沢'),
    ('濱', '浜'),
    ('櫻', '桜'),
    ('廣', '広'),
    ('德', '徳'),
    ('國', '国'),
    ('龍', '竜'),
    ('嶋', '島'),
    ('嶌', '島'),
    ('關', '関'),
    ('冨', '富'),
    ('槇', '槙'),
    ('桒', '桑'),
    ('眞', '真'),
    ('實', '実'),
    ('惠', '恵'),
    ('榮', '栄'),
    ('壽', '寿'),
    ('彌', '弥'),
    ('淺', '浅'),
    ('藏', '蔵'),
    ('學', '学'),
    ('條', '条'),
    ('鐵', '鉄'),
    ('靜', '静'),
    ('靑', '青'),
    ('黑', '黒'),
    ('萬', '万'),
    ('與', '与'),
    ('舘', '館'),
    ('篭', '籠'),
    ('曾', '曽'),
    ('瀨', '瀬'),
    ('圓', '円'),
    ('峯', '峰'),
    ('嶽', '岳'),
    ('亞', '亜'),
    ('晉', '晋'),
    ('禮', '礼'),
    ('穗', '穂'),
    ('莊', '荘'),
    ('將', '将'),
    ('豐', '豊'),
    ('戶', '戸'),
    ('徑', '径'),
    ('絲', '糸'),
    ('驒', '騨'),
];

/// Folds variant kanji to their common form with [`VARIANT_KANJI`] (`髙橋` → `高橋`,
/// `渡邊` → `渡辺`, `齋藤` → `斎藤`).
pub fn fold_variant_kanji(s: &str) -> String {
    s.chars().map(fold_variant_char).collect()
}

fn fold_variant_char(c: char) -> char {
    // Every variant is a CJK ideograph (U+4E00 and above); skip the table for kana and ASCII.
    if (c as u32) < 0x4E00 {
        return c;
    }
    VARIANT_KANJI.iter().find(|(v, _)| *v == c).map(|(_, k)| *k).unwrap_or(c)
}

/// Removes every white space character (ASCII, ideographic U+3000, and other Unicode spaces):
/// names are stored with and without a space between family and given name.
pub fn remove_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Dashes and hyphen look-alikes to ASCII `-`: U+2010–U+2015, U+2212 (minus), U+FF0D
/// (full-width hyphen-minus), U+FE63, U+FF70 (half-width `ｰ`), and `ー` (U+30FC) when it
/// stands between digits (`３ー１２` in an address).
pub fn normalize_hyphens(s: &str) -> String {
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in cs.iter().enumerate() {
        let dash = match c {
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}' | '\u{FE63}' | '\u{FF70}' | '\u{2043}' => true,
            'ー' => {
                let before = i.checked_sub(1).and_then(|j| cs.get(j)).is_some_and(|p| is_digit_like(*p));
                let after = cs.get(i + 1).is_some_and(|n| is_digit_like(*n));
                before && after
            }
            _ => false,
        };
        out.push(if dash { '-' } else { c });
    }
    out
}

fn is_digit_like(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c) || kanji_digit(c).is_some()
}

/// Kana as the matcher compares it exactly: NFKC (half-width → full-width), hiragana →
/// katakana, no white space, `ｰ`/`-` variants to `ー`.
pub fn kana_exact(s: &str) -> String {
    settle(s, kana_exact_once)
}

/// Applies a rule until nothing changes (at most four times). Removing a character can bring a
/// stray combining mark next to a letter it composes with (`ﾊ ﾞ`), which the next NFKC pass
/// composes; settling keeps the composite rules idempotent.
fn settle(s: &str, f: fn(&str) -> String) -> String {
    let mut cur = f(s);
    // Only a combining mark left over can compose on a second pass.
    if !cur.chars().any(is_combining) {
        return cur;
    }
    for _ in 0..4 {
        let next = f(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Combining marks that NFKC may compose with a preceding letter once something between them
/// is removed: the kana voiced marks and the general combining diacritics.
fn is_combining(c: char) -> bool {
    matches!(c, '\u{3099}' | '\u{309A}' | '\u{0300}'..='\u{036F}')
}

fn kana_exact_once(s: &str) -> String {
    let k = hiragana_to_katakana(&nfkc(s));
    k.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}' => 'ー',
            other => other,
        })
        .collect()
}

/// Kana as the matcher compares it phonetically: [`kana_exact`], then small kana, `ヅ`/`ヂ`
/// and long vowels folded.
pub fn kana_phonetic(s: &str) -> String {
    settle(s, |x| fold_long_vowels(&fold_zu_ji(&fold_small_kana(&kana_exact_once(x)))))
}

/// [`kana_phonetic`] of a value already in [`kana_exact`] form (skips the NFKC pass when no
/// combining mark is left).
pub fn phonetic_of_exact(exact: &str) -> String {
    let once = fold_long_vowels(&fold_zu_ji(&fold_small_kana(exact)));
    if once.chars().any(is_combining) { kana_phonetic(&once) } else { once }
}

/// Kanji names as the matcher compares them: NFKC, no white space, variant kanji folded, and
/// hiragana/katakana folded too (a name written in kana in the kanji slot, `さくら`/`サクラ`).
pub fn kanji_name(s: &str) -> String {
    settle(s, |x| fold_variant_kanji(&hiragana_to_katakana(&remove_whitespace(&nfkc(x)))))
}

/// Digits of a phone number (`０９０－１２３４－５６７８` → `09012345678`). A `+81` prefix
/// becomes a leading `0`.
pub fn phone_digits(s: &str) -> String {
    let n = nfkc(s);
    let t = n.trim();
    let (intl, rest) = match t.strip_prefix("+81") {
        Some(r) => (true, r),
        None => (false, t),
    };
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if intl && !digits.starts_with('0') { format!("0{digits}") } else { digits }
}

/// A postal code as seven ASCII digits (`〒１２３－４５６７` → `1234567`), or `None` when it
/// does not have exactly seven digits.
pub fn postal_code(s: &str) -> Option<String> {
    let digits: String = nfkc(s).chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 7).then_some(digits)
}

fn kanji_digit(c: char) -> Option<u32> {
    Some(match c {
        '〇' | '零' => 0,
        '一' | '壱' => 1,
        '二' | '弐' => 2,
        '三' | '参' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// A number written in kanji numerals, as used before 丁目 and in 番地 (`三` → 3, `十二` → 12,
/// `二十` → 20, `百五` → 105, `一〇五` → 105). `None` if `s` is not such a number.
pub fn kanji_number(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let cs: Vec<char> = s.chars().collect();
    if !cs.iter().any(|c| matches!(c, '十' | '百' | '千')) {
        // Positional (一〇五).
        let mut v: u32 = 0;
        for c in &cs {
            v = v.checked_mul(10)?.checked_add(kanji_digit(*c)?)?;
        }
        return Some(v);
    }
    let mut total: u32 = 0;
    let mut digit: Option<u32> = None;
    for c in cs {
        let unit = match c {
            '十' => 10,
            '百' => 100,
            '千' => 1000,
            _ => {
                if digit.is_some() {
                    return None;
                }
                digit = Some(kanji_digit(c)?);
                continue;
            }
        };
        total = total.checked_add(digit.unwrap_or(1).checked_mul(unit)?)?;
        digit = None;
    }
    total.checked_add(digit.unwrap_or(0))
}

/// The 47 prefectures in JIS X 0401 order (code = index + 1): the domain's one table.
pub use musubi_domain::PREFECTURES;

/// The JIS X 0401 code (1–47) of a prefecture name, with or without its 都/道/府/県 suffix
/// (`東京都`, `東京`, `13`).
pub fn prefecture_code(s: &str) -> Option<u8> {
    let t = remove_whitespace(&nfkc(s));
    if let Ok(n) = t.parse::<u8>() {
        return (1..=47).contains(&n).then_some(n);
    }
    PREFECTURES.iter().position(|p| *p == t || strip_pref_suffix(p) == t).and_then(|i| u8::try_from(i + 1).ok())
}

fn strip_pref_suffix(p: &str) -> &str {
    if p == "北海道" {
        return p;
    }
    p.strip_suffix(['都', '府', '県']).unwrap_or(p)
}

/// Splits a leading prefecture name off an address text: `("東京都", "千代田区…")`.
pub fn split_prefecture(s: &str) -> (Option<u8>, &str) {
    for (i, p) in PREFECTURES.iter().enumerate() {
        if let Some(rest) = s.strip_prefix(p) {
            return (u8::try_from(i + 1).ok(), rest);
        }
    }
    (None, s)
}

/// The part of an address after the city, in a canonical form: NFKC, no white space, hyphens
/// folded, `ケ`/`ヶ`/`が` in place names as `ケ`, kanji numerals before `丁目` as digits, and the
/// 丁目-番(地)-号 forms written as `N-N-N` (`三丁目12番地5号` → `3-12-5`, `3丁目12-5` → `3-12-5`).
/// What follows the numbers (a building and room) is kept after the numbers.
pub fn address_line(s: &str) -> String {
    settle(s, address_line_once)
}

fn address_line_once(s: &str) -> String {
    let t = normalize_hyphens(&remove_whitespace(&nfkc(s)));
    let t: String = t.chars().map(|c| if matches!(c, 'ヶ' | 'ヵ' | 'が' | 'ケ' | 'ｹ') { 'ケ' } else { c }).collect();
    // Kanji numerals followed by 丁目 / 番 / 号 / 番地 become digits.
    let cs: Vec<char> = t.chars().collect();
    let mut out = String::with_capacity(t.len());
    let mut i = 0;
    while i < cs.len() {
        let start = i;
        while i < cs.len() && (kanji_digit(cs[i]).is_some() || matches!(cs[i], '十' | '百')) {
            i += 1;
        }
        if i > start {
            let run: String = cs[start..i].iter().collect();
            let followed = cs.get(i).is_some_and(|c| matches!(c, '丁' | '番' | '号' | '-'));
            let preceded_by_digit_marker = start > 0 && matches!(cs[start - 1], '-' | '目' | '番' | '地');
            match kanji_number(&run) {
                Some(n) if followed || preceded_by_digit_marker => out.push_str(&n.to_string()),
                _ => out.push_str(&run),
            }
            continue;
        }
        out.push(cs[i]);
        i += 1;
    }
    // 丁目 / 番地 / 番 / 号 / の between numbers become hyphens; a trailing 号 or 番地 goes.
    let cs: Vec<char> = out.chars().collect();
    let mut res = String::with_capacity(out.len());
    let mut i = 0;
    while i < cs.len() {
        let prev_digit = res.chars().last().is_some_and(|c| c.is_ascii_digit());
        let rest: String = cs[i..].iter().take(2).collect();
        let (skip, is_marker) = if rest == "丁目" || rest == "番地" {
            (2, true)
        } else if matches!(cs[i], '番' | '号' | 'の' | 'ノ') {
            (1, true)
        } else {
            (0, false)
        };
        if prev_digit && is_marker {
            i += skip;
            let next_digit = cs.get(i).is_some_and(char::is_ascii_digit);
            if next_digit {
                res.push('-');
            }
            continue;
        }
        res.push(cs[i]);
        i += 1;
    }
    res
}

/// Splits a canonical address line (see [`address_line`]) into the 町名 before the first digit
/// and the numbers (`N-N-N`) after it; anything after the numbers (building) is dropped.
pub fn split_town_numbers(line: &str) -> (&str, &str) {
    let Some(first_digit) = line.find(|c: char| c.is_ascii_digit()) else {
        return (line, "");
    };
    let (town, rest) = line.split_at(first_digit);
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
    let nums = rest[..end].trim_end_matches('-');
    (town, nums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nfkc_widens_halfwidth_kana_and_narrows_digits() {
        assert_eq!(nfkc("ﾔﾏﾀﾞ ﾀﾛｳ"), "ヤマダ タロウ");
        assert_eq!(nfkc("１２３ＡＢ"), "123AB");
        assert_eq!(nfkc("塚"), "塚");
    }

    #[test]
    fn halfwidth_kana_only_touches_kana() {
        assert_eq!(halfwidth_to_fullwidth_kana("ﾊﾟﾋﾟｰ１２"), "パピー１２");
        assert_eq!(halfwidth_to_fullwidth_kana("ｻﾄｳ"), "サトウ");
        assert_eq!(halfwidth_to_fullwidth_kana("山田"), "山田");
    }

    #[test]
    fn hiragana_folds_to_katakana() {
        assert_eq!(hiragana_to_katakana("やまだ はなこ"), "ヤマダ ハナコ");
        assert_eq!(hiragana_to_katakana("いすゞ"), "イスヾ");
        assert_eq!(hiragana_to_katakana("ヤマダ"), "ヤマダ");
    }

    #[test]
    fn small_kana_fold() {
        assert_eq!(fold_small_kana("キョウコ"), "キヨウコ");
        assert_eq!(fold_small_kana("ハットリ"), "ハツトリ");
        assert_eq!(fold_small_kana("ヶ"), "ケ");
    }

    #[test]
    fn zu_ji_fold() {
        assert_eq!(fold_zu_ji("スヅキ"), "スズキ");
        assert_eq!(fold_zu_ji("ツヅキ"), "ツズキ");
        assert_eq!(fold_zu_ji("ハナヂ"), "ハナジ");
        assert_eq!(fold_zu_ji("スズキ"), "スズキ");
    }

    #[test]
    fn long_vowel_policy() {
        for s in ["オオノ", "オーノ", "オノ"] {
            assert_eq!(fold_long_vowels(s), "オノ", "{s}");
        }
        for s in ["サトウ", "サトー", "サト"] {
            assert_eq!(fold_long_vowels(s), "サト", "{s}");
        }
        assert_eq!(fold_long_vowels("ケイコ"), "ケコ");
        assert_eq!(fold_long_vowels("ケーコ"), "ケコ");
        assert_eq!(fold_long_vowels("ユウコ"), "ユコ");
        // Not a long vowel: イ after a, ウ after a.
        assert_eq!(fold_long_vowels("アイ"), "アイ");
        assert_eq!(fold_long_vowels("ナオミ"), "ナオミ");
        assert_eq!(fold_long_vowels("イノウエ"), "イノエ");
    }

    #[test]
    fn variant_kanji_table() {
        assert_eq!(fold_variant_kanji("髙橋"), "高橋");
        assert_eq!(fold_variant_kanji("山﨑"), "山崎");
        assert_eq!(fold_variant_kanji("齋藤"), "斎藤");
        assert_eq!(fold_variant_kanji("齊藤"), "斎藤");
        assert_eq!(fold_variant_kanji("斉藤"), "斎藤");
        assert_eq!(fold_variant_kanji("渡邊"), "渡辺");
        assert_eq!(fold_variant_kanji("渡邉"), "渡辺");
        assert_eq!(fold_variant_kanji("澤田"), "沢田");
        assert_eq!(fold_variant_kanji("濱田"), "浜田");
        assert_eq!(fold_variant_kanji("櫻井"), "桜井");
        assert_eq!(fold_variant_kanji("廣瀬"), "広瀬");
        assert_eq!(fold_variant_kanji("德永"), "徳永");
        assert_eq!(fold_variant_kanji("國分"), "国分");
        assert_eq!(fold_variant_kanji("龍一"), "竜一");
        assert_eq!(fold_variant_kanji("中嶋"), "中島");
        // Not folded: 籐 is another character.
        assert_eq!(fold_variant_kanji("籐井"), "籐井");
        // Every entry maps to a form that is not itself a variant (one pass suffices).
        for (v, k) in VARIANT_KANJI {
            assert_eq!(fold_variant_char(*k), *k, "{v} → {k}");
        }
    }

    #[test]
    fn whitespace_and_hyphens() {
        assert_eq!(remove_whitespace("山田　太郎 "), "山田太郎");
        assert_eq!(normalize_hyphens("3−12－5"), "3-12-5");
        assert_eq!(normalize_hyphens("３ー１２"), "３-１２");
        assert_eq!(normalize_hyphens("コーポ"), "コーポ");
        assert_eq!(normalize_hyphens("1‐2―3"), "1-2-3");
    }

    #[test]
    fn kana_levels() {
        assert_eq!(kana_exact("ﾔﾏﾀﾞ ﾊﾅｺ"), "ヤマダハナコ");
        assert_eq!(kana_exact("やまだ"), "ヤマダ");
        assert_eq!(kana_phonetic("オーノ"), "オノ");
        assert_eq!(kana_phonetic("ｽﾂﾞｷ"), "スズキ");
        assert_eq!(kana_phonetic("ジュンコ"), "ジユンコ");
    }

    #[test]
    fn kanji_names() {
        assert_eq!(kanji_name("髙橋　"), "高橋");
        assert_eq!(kanji_name("さくら"), "サクラ");
    }

    #[test]
    fn phones() {
        assert_eq!(phone_digits("０９０－１２３４－５６７８"), "09012345678");
        assert_eq!(phone_digits("+81 90 1234 5678"), "09012345678");
        assert_eq!(phone_digits("(03)1234-5678"), "0312345678");
    }

    #[test]
    fn postal_codes() {
        assert_eq!(postal_code("〒１２３－４５６７").as_deref(), Some("1234567"));
        assert_eq!(postal_code("123-4567").as_deref(), Some("1234567"));
        assert_eq!(postal_code("123-456"), None);
    }

    #[test]
    fn kanji_numbers() {
        assert_eq!(kanji_number("三"), Some(3));
        assert_eq!(kanji_number("十二"), Some(12));
        assert_eq!(kanji_number("二十"), Some(20));
        assert_eq!(kanji_number("二十三"), Some(23));
        assert_eq!(kanji_number("百五"), Some(105));
        assert_eq!(kanji_number("一〇五"), Some(105));
        assert_eq!(kanji_number("山"), None);
        assert_eq!(kanji_number(""), None);
    }

    #[test]
    fn prefectures() {
        assert_eq!(prefecture_code("東京都"), Some(13));
        assert_eq!(prefecture_code("東京"), Some(13));
        assert_eq!(prefecture_code("北海道"), Some(1));
        assert_eq!(prefecture_code("大阪"), Some(27));
        assert_eq!(prefecture_code("１３"), Some(13));
        assert_eq!(prefecture_code("48"), None);
        assert_eq!(split_prefecture("神奈川県横浜市"), (Some(14), "横浜市"));
    }

    #[test]
    fn address_lines() {
        assert_eq!(address_line("三丁目12番地5号"), "3-12-5");
        assert_eq!(address_line("3丁目12-5"), "3-12-5");
        assert_eq!(address_line("３－１２－５"), "3-12-5");
        assert_eq!(address_line("緑町三丁目１２番５号"), "緑町3-12-5");
        assert_eq!(address_line("緑町3丁目12番5号 コーポ緑302"), "緑町3-12-5コーポ緑302");
        assert_eq!(address_line("緑町3−12−5"), "緑町3-12-5");
        assert_eq!(address_line("霞ヶ関1-2-3"), "霞ケ関1-2-3");
        assert_eq!(address_line("霞が関一丁目2番3号"), "霞ケ関1-2-3");
        assert_eq!(address_line("三田2-1"), "三田2-1");
        assert_eq!(split_town_numbers("緑町3-12-5コーポ緑302"), ("緑町", "3-12-5"));
        assert_eq!(split_town_numbers("緑町"), ("緑町", ""));
    }

    fn any_text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ぁ-ゖァ-ヺｦ-ﾟ一-龥０-９0-9ー－−\\- 　丁目番地号の]{0,16}").unwrap_or_else(
            |_| {
                // The regex is a constant; fall back to any string if it ever fails to compile.
                proptest::string::string_regex(".{0,16}").expect("constant regex")
            },
        )
    }

    proptest! {
        #[test]
        fn rules_are_idempotent(s in any_text()) {
            for f in [
                nfkc as fn(&str) -> String,
                halfwidth_to_fullwidth_kana,
                hiragana_to_katakana,
                fold_small_kana,
                fold_zu_ji,
                fold_long_vowels,
                fold_variant_kanji,
                remove_whitespace,
                normalize_hyphens,
                kana_exact,
                kana_phonetic,
                kanji_name,
                phone_digits,
                address_line,
            ] {
                let once = f(&s);
                prop_assert_eq!(f(&once), once.clone(), "input {:?}", s);
            }
            let _ = postal_code(&s);
            let _ = kanji_number(&s);
            let _ = prefecture_code(&s);
        }

        #[test]
        fn phonetic_of_exact_agrees(s in any_text()) {
            prop_assert_eq!(phonetic_of_exact(&kana_exact(&s)), kana_phonetic(&s));
        }

        #[test]
        fn never_panics_on_any_string(s in ".{0,24}") {
            let _ = kana_phonetic(&s);
            let _ = kanji_name(&s);
            let _ = address_line(&s);
            let _ = phone_digits(&s);
            let _ = split_town_numbers(&address_line(&s));
            let _ = kanji_number(&s);
        }
    }
}
