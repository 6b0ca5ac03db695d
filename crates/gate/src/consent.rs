//! A patient's disclosure settings (開示設定) and how they are evaluated for one facility and
//! profession.
//!
//! The settings follow the national plan for the sharing service: by area, by facility kind
//! within a prefecture or 二次医療圏, by profession, and per facility; the default is blanket
//! consent inside the residence 二次医療圏 and individual consent outside it; everything can be
//! closed at once. Precedence, most specific first:
//!
//! 1. everything closed → denied;
//! 2. the viewer's profession turned off → denied;
//! 3. an explicit setting for the facility → that;
//! 4. a setting for the facility's kind in its 二次医療圏, then in its prefecture → that (a
//!    closed kind stays closed even for a facility where the patient consented in person);
//! 5. the area tier of the facility: residence 二次医療圏 (default open), residence prefecture,
//!    prefectures lived in during the past 2 years, earlier/other (all three default closed —
//!    outside the residence area a patient consents individually).
//!
//! Consent given in person at a visit (a care relationship the facility records) counts as an
//! individual consent for that facility unless steps 1–3 deny it; the gate applies that.

use std::collections::BTreeMap;

use musubi_domain::{FacilityCode, Profession};
use serde::{Deserialize, Serialize};

/// The kind of facility, as patients choose them in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FacilityClass {
    /// 病院
    Hospital,
    /// 診療所 (医科)
    Clinic,
    /// 歯科診療所
    Dental,
    /// 薬局
    Pharmacy,
    /// その他 (検査機関, 訪問看護, 介護 …)
    Other,
}

impl FacilityClass {
    /// Every class.
    pub const ALL: [FacilityClass; 5] = [
        FacilityClass::Hospital,
        FacilityClass::Clinic,
        FacilityClass::Dental,
        FacilityClass::Pharmacy,
        FacilityClass::Other,
    ];

    /// The Japanese name.
    pub fn label_ja(self) -> &'static str {
        match self {
            FacilityClass::Hospital => "病院",
            FacilityClass::Clinic => "診療所",
            FacilityClass::Dental => "歯科診療所",
            FacilityClass::Pharmacy => "薬局",
            FacilityClass::Other => "その他の施設",
        }
    }

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            FacilityClass::Hospital => "hospital",
            FacilityClass::Clinic => "clinic",
            FacilityClass::Dental => "dental",
            FacilityClass::Pharmacy => "pharmacy",
            FacilityClass::Other => "other",
        }
    }

    /// From the stable code.
    pub fn from_code(s: &str) -> Option<FacilityClass> {
        FacilityClass::ALL.into_iter().find(|c| c.code() == s)
    }
}

/// Where a facility is and what it is (from the network's facility registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityInfo {
    /// 医療機関コード.
    pub code: FacilityCode,
    /// Name.
    pub name: String,
    /// Kind.
    pub class: FacilityClass,
    /// Prefecture number.
    pub prefecture: u8,
    /// 二次医療圏 (an id unique in the network, e.g. "1301" for 区中央部).
    pub area: String,
    /// Whether its staff view (閲覧) other facilities' data. A facility that does not view
    /// reads only its own records, whatever the patient allows.
    #[serde(default = "yes")]
    pub views: bool,
}

fn yes() -> bool {
    true
}

/// Where the patient lives and has lived (from the registered address history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Residence {
    /// Prefecture of residence now.
    pub prefecture: u8,
    /// 二次医療圏 of residence now.
    pub area: String,
    /// Other prefectures lived in during the past 2 years.
    pub recent_prefectures: Vec<u8>,
}

/// Where a kind rule applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Within {
    /// A prefecture.
    Prefecture(u8),
    /// A 二次医療圏.
    Area(String),
}

/// One setting by facility kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSetting {
    /// Where.
    pub within: Within,
    /// Which kind.
    pub class: FacilityClass,
    /// Open or closed.
    pub allow: bool,
}

/// The area tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaSettings {
    /// Facilities in the residence 二次医療圏 (default open: blanket consent).
    pub residence_area: bool,
    /// Other facilities in the residence prefecture (default closed).
    pub residence_prefecture: bool,
    /// Prefectures lived in during the past 2 years (default closed).
    pub recent_prefectures: bool,
    /// Everywhere else (default closed).
    pub elsewhere: bool,
}

impl Default for AreaSettings {
    fn default() -> Self {
        AreaSettings { residence_area: true, residence_prefecture: false, recent_prefectures: false, elsewhere: false }
    }
}

/// A patient's disclosure settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentSettings {
    /// Everything closed (全て非開示).
    #[serde(default)]
    pub closed: bool,
    /// The area tiers.
    #[serde(default)]
    pub area: AreaSettings,
    /// Settings by facility kind within a prefecture or 二次医療圏.
    #[serde(default)]
    pub kinds: Vec<KindSetting>,
    /// Professions turned off or on (default on).
    #[serde(default)]
    pub professions: BTreeMap<String, bool>,
    /// Per-facility settings.
    #[serde(default)]
    pub facilities: BTreeMap<String, bool>,
}

/// What the settings say for one facility and profession, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Disclosed.
    Open(&'static str),
    /// Not disclosed, for a reason that consent in person cannot override.
    Closed(&'static str),
    /// Not disclosed by the area/kind settings; an individual consent (in person at a visit)
    /// would open it.
    NeedsIndividualConsent(&'static str),
}

impl ConsentSettings {
    /// The verdict for a viewer of `profession` at facility `f`, for a patient living at `r`.
    pub fn verdict(&self, r: &Residence, f: &FacilityInfo, profession: Profession) -> Verdict {
        if self.closed {
            return Verdict::Closed("患者がすべての開示を停止しています");
        }
        if self.professions.get(profession.code()) == Some(&false) {
            return Verdict::Closed("患者がこの職種への開示を停止しています");
        }
        match self.facilities.get(f.code.as_str()) {
            Some(true) => return Verdict::Open("患者がこの医療機関への開示を許可しています"),
            Some(false) => return Verdict::Closed("患者がこの医療機関への開示を停止しています"),
            None => {}
        }
        let kind = |w: &Within| self.kinds.iter().find(|k| &k.within == w && k.class == f.class).map(|k| k.allow);
        let by_kind = kind(&Within::Area(f.area.clone())).or_else(|| kind(&Within::Prefecture(f.prefecture)));
        match by_kind {
            Some(true) => return Verdict::Open("患者がこの地域のこの種類の施設への開示を許可しています"),
            // An explicit choice of the patient: consent given in person earlier does not reopen
            // it (a per-facility setting can).
            Some(false) => return Verdict::Closed("患者がこの地域のこの種類の施設への開示を停止しています"),
            None => {}
        }
        let (open, why_open, why_closed) = if f.area == r.area && f.prefecture == r.prefecture {
            (
                self.area.residence_area,
                "居住地の二次医療圏内（包括同意）",
                "患者が居住地の二次医療圏への開示を停止しています",
            )
        } else if f.prefecture == r.prefecture {
            (
                self.area.residence_prefecture,
                "患者が居住都道府県内への開示を許可しています",
                "居住地の二次医療圏外のため個別の同意が必要です",
            )
        } else if r.recent_prefectures.contains(&f.prefecture) {
            (
                self.area.recent_prefectures,
                "患者が過去2年間に居住した都道府県への開示を許可しています",
                "居住地の二次医療圏外のため個別の同意が必要です",
            )
        } else {
            (
                self.area.elsewhere,
                "患者がその他の地域への開示を許可しています",
                "居住地の二次医療圏外のため個別の同意が必要です",
            )
        };
        if open { Verdict::Open(why_open) } else { Verdict::NeedsIndividualConsent(why_closed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fac(code: &str, class: FacilityClass, pref: u8, area: &str) -> FacilityInfo {
        FacilityInfo {
            code: code.parse().unwrap(),
            name: "x".into(),
            class,
            prefecture: pref,
            area: area.into(),
            views: true,
        }
    }

    fn home() -> Residence {
        Residence { prefecture: 13, area: "1301".into(), recent_prefectures: vec![14] }
    }

    #[test]
    fn defaults_open_inside_the_residence_area_only() {
        let s = ConsentSettings::default();
        assert!(matches!(
            s.verdict(&home(), &fac("1318814790", FacilityClass::Hospital, 13, "1301"), Profession::Doctor),
            Verdict::Open(_)
        ));
        assert!(matches!(
            s.verdict(&home(), &fac("1318814790", FacilityClass::Hospital, 13, "1302"), Profession::Doctor),
            Verdict::NeedsIndividualConsent(_)
        ));
        assert!(matches!(
            s.verdict(&home(), &fac("1418814790", FacilityClass::Hospital, 14, "1401"), Profession::Doctor),
            Verdict::NeedsIndividualConsent(_)
        ));
    }

    #[test]
    fn closing_pharmacies_in_the_area_closes_them_but_not_hospitals() {
        let mut s = ConsentSettings::default();
        s.kinds.push(KindSetting { within: Within::Area("1301".into()), class: FacilityClass::Pharmacy, allow: false });
        assert!(matches!(
            s.verdict(&home(), &fac("1348814790", FacilityClass::Pharmacy, 13, "1301"), Profession::Pharmacist),
            Verdict::Closed(_)
        ));
        assert!(matches!(
            s.verdict(&home(), &fac("1318814790", FacilityClass::Hospital, 13, "1301"), Profession::Doctor),
            Verdict::Open(_)
        ));
    }

    #[test]
    fn precedence() {
        let mut s = ConsentSettings::default();
        let f = fac("1318814790", FacilityClass::Hospital, 14, "1401");
        s.area.elsewhere = false;
        s.facilities.insert("1318814790".into(), true);
        assert!(matches!(s.verdict(&home(), &f, Profession::Nurse), Verdict::Open(_)), "explicit facility beats area");
        s.professions.insert("nurse".into(), false);
        assert!(matches!(s.verdict(&home(), &f, Profession::Nurse), Verdict::Closed(_)), "profession beats facility");
        s.closed = true;
        assert!(matches!(s.verdict(&home(), &f, Profession::Doctor), Verdict::Closed(_)));
    }

    #[test]
    fn settings_roundtrip_as_json() {
        let mut s = ConsentSettings::default();
        s.kinds.push(KindSetting { within: Within::Prefecture(13), class: FacilityClass::Dental, allow: true });
        s.facilities.insert("1318814790".into(), false);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ConsentSettings>(&j).unwrap(), s);
        assert_eq!(serde_json::from_str::<ConsentSettings>("{}").unwrap(), ConsentSettings::default());
    }
}
