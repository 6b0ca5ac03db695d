//! Geography of the synthetic region: three neighbouring prefectures with their real
//! 二次医療圏 (secondary medical care areas) and real municipalities.
//!
//! Public geography: prefecture numbers, 二次医療圏 names, municipality names, the first three
//! digits of their postal codes and their telephone area codes are the real ones. **Synthetic:**
//! the 町名 (town names, common names that exist in many cities), 丁目-番-号 and the last four
//! digits of postal codes are made up; the same town always gets the same postal code.

/// A municipality (市区町村).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct City {
    /// Name as written in addresses (e.g. 静岡市葵区).
    pub name: &'static str,
    /// Real first three digits of its postal codes.
    pub postal3: &'static str,
    /// Real telephone area code (市外局番, with the leading 0).
    pub area_code: &'static str,
    /// Relative population weight inside its 二次医療圏.
    pub weight: u32,
}

/// A 二次医療圏.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaDef {
    /// Prefecture number (都道府県番号).
    pub prefecture: u8,
    /// The area's name.
    pub name: &'static str,
    /// Relative population weight in the region.
    pub weight: u32,
    /// Municipalities in it (a selection).
    pub cities: &'static [City],
}

/// The prefectures of the region: number, name.
pub const PREFECTURES: &[(u8, &str)] = &[(14, "神奈川県"), (19, "山梨県"), (22, "静岡県")];

const fn c(name: &'static str, postal3: &'static str, area_code: &'static str, weight: u32) -> City {
    City { name, postal3, area_code, weight }
}

/// The 二次医療圏 of the region with population weights (thousands, rounded) and cities.
pub const AREAS: &[AreaDef] = &[
    AreaDef {
        prefecture: 14,
        name: "横浜",
        weight: 3770,
        cities: &[
            c("横浜市青葉区", "225", "045", 31),
            c("横浜市港北区", "222", "045", 36),
            c("横浜市戸塚区", "244", "045", 28),
            c("横浜市中区", "231", "045", 15),
        ],
    },
    AreaDef {
        prefecture: 14,
        name: "川崎北部",
        weight: 860,
        cities: &[
            c("川崎市宮前区", "216", "044", 23),
            c("川崎市多摩区", "214", "044", 22),
            c("川崎市麻生区", "215", "044", 18),
        ],
    },
    AreaDef {
        prefecture: 14,
        name: "川崎南部",
        weight: 670,
        cities: &[
            c("川崎市川崎区", "210", "044", 23),
            c("川崎市中原区", "211", "044", 26),
            c("川崎市幸区", "212", "044", 17),
        ],
    },
    AreaDef {
        prefecture: 14,
        name: "相模原",
        weight: 720,
        cities: &[
            c("相模原市中央区", "252", "042", 27),
            c("相模原市南区", "252", "042", 28),
            c("相模原市緑区", "252", "042", 17),
        ],
    },
    AreaDef {
        prefecture: 14,
        name: "横須賀・三浦",
        weight: 690,
        cities: &[
            c("横須賀市", "238", "046", 39),
            c("三浦市", "238", "046", 4),
            c("逗子市", "249", "046", 6),
            c("鎌倉市", "248", "0467", 17),
        ],
    },
    AreaDef {
        prefecture: 14,
        name: "湘南東部",
        weight: 700,
        cities: &[c("藤沢市", "251", "0466", 44), c("茅ヶ崎市", "253", "0467", 24), c("寒川町", "253", "0467", 5)],
    },
    AreaDef {
        prefecture: 14,
        name: "湘南西部",
        weight: 580,
        cities: &[c("平塚市", "254", "0463", 26), c("秦野市", "257", "0463", 16), c("伊勢原市", "259", "0463", 10)],
    },
    AreaDef {
        prefecture: 14,
        name: "県央",
        weight: 850,
        cities: &[
            c("厚木市", "243", "046", 22),
            c("大和市", "242", "046", 24),
            c("海老名市", "243", "046", 14),
            c("座間市", "252", "046", 13),
        ],
    },
    AreaDef {
        prefecture: 14,
        name: "県西",
        weight: 330,
        cities: &[c("小田原市", "250", "0465", 19), c("南足柄市", "250", "0465", 4), c("箱根町", "250", "0460", 1)],
    },
    AreaDef {
        prefecture: 22,
        name: "賀茂",
        weight: 60,
        cities: &[c("下田市", "415", "0558", 2), c("東伊豆町", "413", "0557", 1)],
    },
    AreaDef {
        prefecture: 22,
        name: "熱海伊東",
        weight: 100,
        cities: &[c("熱海市", "413", "0557", 3), c("伊東市", "414", "0557", 7)],
    },
    AreaDef {
        prefecture: 22,
        name: "駿東田方",
        weight: 630,
        cities: &[
            c("沼津市", "410", "055", 19),
            c("三島市", "411", "055", 11),
            c("裾野市", "410", "055", 5),
            c("伊豆の国市", "410", "055", 5),
        ],
    },
    AreaDef {
        prefecture: 22,
        name: "富士",
        weight: 370,
        cities: &[c("富士市", "417", "0545", 25), c("富士宮市", "418", "0544", 13)],
    },
    AreaDef {
        prefecture: 22,
        name: "静岡",
        weight: 680,
        cities: &[
            c("静岡市葵区", "420", "054", 25),
            c("静岡市駿河区", "422", "054", 21),
            c("静岡市清水区", "424", "054", 23),
        ],
    },
    AreaDef {
        prefecture: 22,
        name: "志太榛原",
        weight: 450,
        cities: &[
            c("藤枝市", "426", "054", 14),
            c("焼津市", "425", "054", 14),
            c("島田市", "427", "0547", 10),
            c("牧之原市", "421", "0548", 4),
        ],
    },
    AreaDef {
        prefecture: 22,
        name: "中東遠",
        weight: 460,
        cities: &[
            c("磐田市", "438", "0538", 17),
            c("掛川市", "436", "0537", 12),
            c("袋井市", "437", "0538", 9),
            c("菊川市", "439", "0537", 5),
        ],
    },
    AreaDef {
        prefecture: 22,
        name: "西部",
        weight: 850,
        cities: &[
            c("浜松市中央区", "430", "053", 60),
            c("浜松市浜名区", "434", "053", 14),
            c("湖西市", "431", "053", 6),
        ],
    },
    AreaDef {
        prefecture: 19,
        name: "中北",
        weight: 460,
        cities: &[
            c("甲府市", "400", "055", 19),
            c("甲斐市", "400", "055", 8),
            c("韮崎市", "407", "0551", 3),
            c("南アルプス市", "400", "055", 7),
        ],
    },
    AreaDef {
        prefecture: 19,
        name: "峡東",
        weight: 130,
        cities: &[c("山梨市", "405", "0553", 3), c("笛吹市", "406", "055", 7), c("甲州市", "404", "0553", 3)],
    },
    AreaDef {
        prefecture: 19,
        name: "峡南",
        weight: 50,
        cities: &[c("身延町", "409", "0556", 1), c("富士川町", "400", "0556", 1)],
    },
    AreaDef {
        prefecture: 19,
        name: "富士・東部",
        weight: 170,
        cities: &[c("富士吉田市", "403", "0555", 5), c("大月市", "401", "0554", 2), c("都留市", "402", "0554", 3)],
    },
];

/// Synthetic town names (町名) common to many Japanese cities.
pub const TOWNS: &[&str] = &[
    "本町",
    "中町",
    "栄町",
    "緑町",
    "旭町",
    "東町",
    "西町",
    "南町",
    "北町",
    "元町",
    "幸町",
    "昭和町",
    "大手町",
    "新町",
    "宮前",
    "桜町",
    "若葉町",
    "松が丘",
    "富士見町",
    "日の出町",
    "錦町",
    "寿町",
    "泉町",
    "弥生町",
    "高砂町",
    "末広町",
    "曙町",
    "清水町",
    "春日町",
    "八幡町",
    "港町",
    "住吉町",
    "花園",
    "向陽台",
    "青葉台",
    "みどり台",
    "駅前",
    "常盤町",
];

/// The name of a prefecture by number.
pub fn prefecture_name(number: u8) -> &'static str {
    PREFECTURES.iter().find(|(n, _)| *n == number).map(|(_, s)| *s).unwrap_or("")
}

/// The synthetic postal code of a town: the city's real three digits plus four digits derived
/// from the town (always the same for the same city and town).
pub fn postal_code(city: &City, town_index: usize) -> String {
    let h = crate::rng::key(0x5057_414C, &[city.name.len() as u64, u64::from(city.weight), town_index as u64]);
    let h2 = city.name.chars().fold(h, |acc, c| crate::rng::mix(acc ^ u64::from(c)));
    format!("{}-{:04}", city.postal3, h2 % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_area_belongs_to_a_known_prefecture_and_has_cities() {
        for a in AREAS {
            assert!(!prefecture_name(a.prefecture).is_empty());
            assert!(!a.cities.is_empty());
            for c in a.cities {
                assert_eq!(c.postal3.len(), 3);
                assert!(c.area_code.starts_with('0'));
            }
        }
        // The real 二次医療圏 counts: 神奈川 9, 静岡 8, 山梨 4.
        for (p, n) in [(14, 9), (22, 8), (19, 4)] {
            assert_eq!(AREAS.iter().filter(|a| a.prefecture == p).count(), n);
        }
    }

    #[test]
    fn postal_codes_are_stable_and_well_formed() {
        let city = &AREAS[13].cities[0];
        assert_eq!(city.name, "静岡市葵区");
        let a = postal_code(city, 3);
        assert_eq!(a, postal_code(city, 3));
        assert!(a.starts_with("420-"));
        assert_eq!(a.len(), 8);
    }
}
