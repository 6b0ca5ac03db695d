//! The 47 prefectures (都道府県) with their JIS X 0401 numbers.

/// The 47 prefectures in JIS X 0401 order (number = index + 1).
pub const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// The name of prefecture `n` (1..=47).
pub fn prefecture_name(n: u8) -> Option<&'static str> {
    PREFECTURES.get(usize::from(n).checked_sub(1)?).copied()
}

/// The number of a prefecture from its name, with or without 都/道/府/県 ("東京", "東京都"),
/// or from its two-digit number.
pub fn prefecture_number(s: &str) -> Option<u8> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        return (1..=47).contains(&n).then_some(n);
    }
    PREFECTURES
        .iter()
        .position(|name| {
            *name == s || (name.chars().count() > 2 && name.trim_end_matches(['都', '道', '府', '県']) == s)
        })
        .map(|i| (i + 1) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(prefecture_number("東京都"), Some(13));
        assert_eq!(prefecture_number("東京"), Some(13));
        assert_eq!(prefecture_number("北海道"), Some(1));
        assert_eq!(prefecture_number("沖縄県"), Some(47));
        assert_eq!(prefecture_number("13"), Some(13));
        assert_eq!(prefecture_number("48"), None);
        assert_eq!(prefecture_number("東京府"), None);
        for n in 1..=47 {
            assert_eq!(prefecture_number(prefecture_name(n).unwrap()), Some(n));
        }
    }
}
