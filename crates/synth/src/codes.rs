//! Clinical code tables: diseases, drugs, lab items, allergens, departments and fee codes.
//!
//! Where the project ships the real master, the codes here are taken from it and a test checks
//! each one against the file: レセ電 傷病名コード (`reference/code-masters/`), JLAC10 lab codes
//! (the JP-CLINS core and infection CodeSystems in `reference/packages/`), J-FAGY allergen codes
//! (`reference/jfagy/`). Where no master is available, the table is **labelled synthetic**:
//! MEDIS 病名管理番号 (numbers starting `2099` are synthetic; the few from the JP-CLINS examples
//! are marked), YJ / 一般名処方 / HOT9 / レセ電医薬品 codes (synthetic unless marked "example",
//! which means copied from a JP-CLINS example instance), DPC 診断群分類 (the first six digits are
//! the real MDC-level disease codes, the rest approximated). Display texts are real drug and
//! disease names.

/// A disease with its codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disease {
    /// Stable key used inside the generator.
    pub key: &'static str,
    /// 標準病名 (display).
    pub name: &'static str,
    /// レセ電 傷病名コード (real, checked against the master).
    pub receipt: &'static str,
    /// MEDIS 病名管理番号 (`2099…` = synthetic).
    pub medis: &'static str,
    /// ICD-10.
    pub icd10: &'static str,
    /// SS-MIX2 / JP-CLINS department code.
    pub dept: &'static str,
}

const fn d(
    key: &'static str,
    name: &'static str,
    receipt: &'static str,
    medis: &'static str,
    icd10: &'static str,
    dept: &'static str,
) -> Disease {
    Disease { key, name, receipt, medis, icd10, dept }
}

/// Diseases used by the care model.
pub const DISEASES: &[Disease] = &[
    // chronic
    d("dm2", "２型糖尿病", "2500015", "20990001", "E119", "01"),
    d("htn", "本態性高血圧症", "8840107", "20990002", "I10", "01"),
    d("dyslipidemia", "脂質異常症", "8844446", "20990003", "E785", "01"),
    d("ckd", "慢性腎臓病", "8844106", "20990004", "N189", "01"),
    d("asthma", "気管支喘息", "4939008", "20990005", "J459", "05"),
    d("hyperuricemia", "高尿酸血症", "7906015", "20990006", "E790", "01"),
    d("osteoporosis", "骨粗鬆症", "7330006", "20990007", "M8199", "11"),
    d("gerd", "逆流性食道炎", "5301002", "20990008", "K210", "06"),
    d("af", "心房細動", "4273006", "20990009", "I489", "08"),
    d("rhinitis", "アレルギー性鼻炎", "4779004", "20990010", "J304", "27"),
    d("insomnia", "不眠症", "8839792", "20990011", "G470", "01"),
    d("angina", "狭心症", "4139007", "20058911", "I209", "08"), // MEDIS: example
    // acute outpatient
    d("uri", "急性上気道炎", "4659007", "20990020", "J069", "01"),
    d("bronchitis", "急性気管支炎", "4660009", "20990021", "J209", "01"),
    d("influenza", "インフルエンザ", "4871001", "20990022", "J111", "01"),
    d("gastroenteritis", "急性胃腸炎", "0091009", "20990023", "A090", "01"),
    d("cystitis", "膀胱炎", "5959015", "20990024", "N309", "20"),
    d("lumbago", "腰痛症", "8840829", "20990025", "M5456", "11"),
    d("eczema", "湿疹", "6923002", "20990026", "L309", "19"),
    d("conjunctivitis", "アレルギー性結膜炎", "3721002", "20990027", "H101", "26"),
    d("zoster", "帯状疱疹", "0539013", "20990028", "B029", "19"),
    d("covid", "ＣＯＶＩＤ－１９", "8850104", "20990029", "U071", "01"),
    d("sprain", "足関節捻挫", "8450012", "20990030", "S934", "11"),
    d("pharyngitis", "急性咽頭炎", "8832280", "20990031", "J029", "27"),
    d("gastritis", "胃炎", "8830417", "20054174", "K297", "01"), // MEDIS: SS-MIX2 sample
    // admissions
    d("pneumonia", "肺炎", "4860030", "20990040", "J189", "05"),
    d("aspiration", "誤嚥性肺炎", "5070003", "20990041", "J690", "05"),
    d("ami", "急性心筋梗塞", "8832376", "20990042", "I219", "08"),
    d("stroke", "脳梗塞", "8838708", "20990043", "I639", "04"),
    d("hipfx", "大腿骨頚部骨折", "8208009", "20990044", "S7200", "11"),
    d("appendicitis", "急性虫垂炎", "5409005", "20990045", "K359", "10"),
    d("cholecystitis", "急性胆のう炎", "8832408", "20990046", "K810", "10"),
    d("hf", "うっ血性心不全", "8830796", "20990047", "I500", "08"),
    d("polyp", "大腸ポリープ", "2113008", "20990048", "K635", "06"),
    // dental
    d("caries", "う蝕第２度", "8830788", "20990060", "K021", "40"),
    d("perio", "慢性歯周炎", "5234016", "20990061", "K053", "40"),
    d("pulpitis", "歯髄炎", "5220063", "20990062", "K040", "40"),
    // infections (carriers)
    d("hbv", "Ｂ型慢性肝炎", "0703003", "20990070", "B181", "06"),
    d("hcv", "Ｃ型慢性肝炎", "0703025", "20990071", "B182", "06"),
    d("syphilis", "梅毒", "8839057", "20990072", "A539", "19"),
    d("hiv", "ＨＩＶ感染症", "0798002", "20990073", "B24", "01"),
];

/// Looks a disease up by key.
pub fn disease(key: &str) -> &'static Disease {
    DISEASES.iter().find(|d| d.key == key).unwrap_or(&DISEASES[0])
}

/// How a drug is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// 内服 (daily oral).
    Oral,
    /// 頓服 (as needed).
    AsNeeded,
    /// 外用 (inhaled, applied).
    External,
    /// 注射 (injection, inpatient).
    Injection,
}

/// A drug and its codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drug {
    /// Stable key.
    pub key: &'static str,
    /// Product display name (full-width, as masters write it).
    pub name: &'static str,
    /// 一般名処方マスタ code (synthetic unless from an example).
    pub general: &'static str,
    /// 一般名 display (【般】…).
    pub general_name: &'static str,
    /// YJ code (12).
    pub yj: &'static str,
    /// HOT9.
    pub hot9: &'static str,
    /// レセ電 医薬品コード (9 digits; synthetic).
    pub receipt: &'static str,
    /// MERIT-9 unit code and display.
    pub unit: (&'static str, &'static str),
    /// Units per day (or per use for as-needed / injections).
    pub per_day: f64,
    /// 用法 (MHLW 電子処方箋 usage code, its text).
    pub usage: (&'static str, &'static str),
    /// Route of administration.
    pub form: Form,
    /// 薬価 in 点 ×10 per unit (for receipt points; approximate).
    pub price10: u32,
}

// A table-row constructor: one argument per column keeps the table readable.
#[allow(clippy::too_many_arguments)]
const fn rx(
    key: &'static str,
    name: &'static str,
    general: &'static str,
    general_name: &'static str,
    yj: &'static str,
    hot9: &'static str,
    receipt: &'static str,
    unit: (&'static str, &'static str),
    per_day: f64,
    usage: (&'static str, &'static str),
    form: Form,
    price10: u32,
) -> Drug {
    Drug { key, name, general, general_name, yj, hot9, receipt, unit, per_day, usage, form, price10 }
}

const TAB: (&str, &str) = ("TAB", "錠");
const CAP: (&str, &str) = ("CAP", "カプセル");
const HON: (&str, &str) = ("HON", "本");
const KIT: (&str, &str) = ("KIT", "キット");
const U_MORNING: (&str, &str) = ("1011000400000000", "１日１回朝食後　服用");
const U_EVENING: (&str, &str) = ("1011040000000000", "１日１回夕食後　服用");
const U_BID: (&str, &str) = ("1012040400000000", "１日２回朝夕食後　服用");
const U_TID: (&str, &str) = ("1013044400000000", "１日３回朝昼夕食後　服用");
const U_BEDTIME: (&str, &str) = ("1011100000000000", "１日１回就寝前　服用");
const U_FEVER: (&str, &str) = ("1050710000000000", "発熱時　服用");
const U_APPLY: (&str, &str) = ("2B7N000000000000", "１日数回　塗布");
const U_INHALE: (&str, &str) = ("2I21000000000000", "１日２回　吸入");
const U_INJ: (&str, &str) = ("3I00000000000000", "点滴静注");

/// Drugs used by the care model.
pub const DRUGS: &[Drug] = &[
    rx(
        "metformin",
        "メトホルミン塩酸塩錠２５０ｍｇＭＴ「トーワ」",
        "3962002F1ZZZ",
        "【般】メトホルミン塩酸塩錠２５０ｍｇ",
        "3962002F1010",
        "990000101",
        "620099001",
        TAB,
        4.0,
        U_BID,
        Form::Oral,
        101,
    ),
    rx(
        "sitagliptin",
        "ジャヌビア錠５０ｍｇ",
        "3969010F2ZZZ",
        "【般】シタグリプチン錠５０ｍｇ",
        "3969010F2020",
        "990000102",
        "620099002",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        1231,
    ),
    rx(
        "dapagliflozin",
        "フォシーガ錠５ｍｇ",
        "3969019F1ZZZ",
        "【般】ダパグリフロジン錠５ｍｇ",
        "3969019F1020",
        "990000103",
        "620099003",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        1705,
    ),
    rx(
        "amlodipine",
        "アムロジピンＯＤ錠１０ｍｇ",
        "2171022F6ZZZ",
        "【般】アムロジピンＯＤ錠１０ｍｇ",
        "2171022F6276",
        "121431401",
        "620099004",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        157,
    ), // YJ, HOT9: example
    rx(
        "olmesartan",
        "オルメサルタンＯＤ錠２０ｍｇ「トーワ」",
        "2149044F4ZZZ",
        "【般】オルメサルタンＯＤ錠２０ｍｇ",
        "2149044F4010",
        "990000105",
        "620099005",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        201,
    ),
    rx(
        "rosuvastatin",
        "ロスバスタチン錠２．５ｍｇ「ＤＳＥＰ」",
        "2189017F1ZZZ",
        "【般】ロスバスタチン錠２．５ｍｇ",
        "2189017F1010",
        "990000106",
        "620099006",
        TAB,
        1.0,
        U_EVENING,
        Form::Oral,
        149,
    ),
    rx(
        "atorvastatin",
        "アトルバスタチン錠１０ｍｇ「サワイ」",
        "2189015F2ZZZ",
        "【般】アトルバスタチン錠１０ｍｇ",
        "2189015F2010",
        "990000107",
        "620099007",
        TAB,
        1.0,
        U_EVENING,
        Form::Oral,
        205,
    ),
    rx(
        "febuxostat",
        "フェブキソスタット錠２０ｍｇ「ＤＳＥＰ」",
        "3949003F2ZZZ",
        "【般】フェブキソスタット錠２０ｍｇ",
        "3949003F2010",
        "990000108",
        "620099008",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        235,
    ),
    rx(
        "alendronate",
        "アレンドロン酸錠３５ｍｇ「トーワ」",
        "3999018F2ZZZ",
        "【般】アレンドロン酸錠３５ｍｇ",
        "3999018F2010",
        "990000109",
        "620099009",
        TAB,
        1.0 / 7.0,
        ("1011010000000000", "１週間に１回起床時　服用"),
        Form::Oral,
        1680,
    ),
    rx(
        "vonoprazan",
        "タケキャブ錠１０ｍｇ",
        "2329030F1ZZZ",
        "【般】ボノプラザン錠１０ｍｇ",
        "2329030F1020",
        "990000110",
        "620099010",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        1000,
    ),
    rx(
        "apixaban",
        "エリキュース錠５ｍｇ",
        "3339004F2ZZZ",
        "【般】アピキサバン錠５ｍｇ",
        "3339004F2020",
        "990000111",
        "620099011",
        TAB,
        2.0,
        U_BID,
        Form::Oral,
        2510,
    ),
    rx(
        "bisoprolol",
        "ビソプロロールフマル酸塩錠２．５ｍｇ「サワイ」",
        "2123016F2ZZZ",
        "【般】ビソプロロールフマル酸塩錠２．５ｍｇ",
        "2123016F2010",
        "990000112",
        "620099012",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        101,
    ),
    rx(
        "fexofenadine",
        "フェキソフェナジン塩酸塩錠６０ｍｇ「サワイ」",
        "4490023F1ZZZ",
        "【般】フェキソフェナジン塩酸塩錠６０ｍｇ",
        "4490023F1010",
        "990000113",
        "620099013",
        TAB,
        2.0,
        U_BID,
        Form::Oral,
        171,
    ),
    rx(
        "lemborexant",
        "デエビゴ錠２．５ｍｇ",
        "1190027F1ZZZ",
        "【般】レンボレキサント錠２．５ｍｇ",
        "1190027F1022",
        "990000114",
        "620099014",
        TAB,
        1.0,
        U_BEDTIME,
        Form::Oral,
        962,
    ), // YJ: example
    rx(
        "budesonide",
        "シムビコートタービュヘイラー６０吸入",
        "2290801G1ZZZ",
        "【般】ブデソニド・ホルモテロール吸入剤",
        "2290801G1020",
        "990000115",
        "620099015",
        KIT,
        1.0 / 30.0,
        U_INHALE,
        Form::External,
        38860,
    ),
    rx(
        "montelukast",
        "モンテルカスト錠１０ｍｇ「ＫＭ」",
        "4490026F2ZZZ",
        "【般】モンテルカスト錠１０ｍｇ",
        "4490026F2010",
        "990000116",
        "620099016",
        TAB,
        1.0,
        U_BEDTIME,
        Form::Oral,
        398,
    ),
    rx(
        "nitro",
        "ニトロペン舌下錠０．３ｍｇ",
        "2171009F1ZZZ",
        "【般】ニトログリセリン舌下錠０．３ｍｇ",
        "2171009F1020",
        "990000117",
        "620099017",
        TAB,
        1.0,
        ("1050210000000000", "胸痛発作時　舌下"),
        Form::AsNeeded,
        117,
    ),
    rx(
        "calonal",
        "カロナール錠５００",
        "1141007F3ZZZ",
        "【般】アセトアミノフェン錠５００ｍｇ",
        "1141007F3023",
        "123812902",
        "620099018",
        TAB,
        3.0,
        U_TID,
        Form::Oral,
        72,
    ), // YJ, HOT9: example
    rx(
        "calonal_prn",
        "カロナール錠３００",
        "1141007F1ZZZ",
        "【般】アセトアミノフェン錠３００ｍｇ",
        "1141007F1063",
        "990000119",
        "620099019",
        TAB,
        1.0,
        U_FEVER,
        Form::AsNeeded,
        62,
    ), // YJ: example
    rx(
        "loxoprofen",
        "ロキソプロフェンナトリウム錠６０ｍｇ「サワイ」",
        "1149019F1ZZZ",
        "【般】ロキソプロフェンナトリウム錠６０ｍｇ",
        "1149019F1010",
        "990000120",
        "620099020",
        TAB,
        3.0,
        U_TID,
        Form::Oral,
        101,
    ),
    rx(
        "carbocisteine",
        "カルボシステイン錠２５０ｍｇ「サワイ」",
        "2233002F1ZZZ",
        "【般】カルボシステイン錠２５０ｍｇ",
        "2233002F1280",
        "103831601",
        "620099021",
        TAB,
        3.0,
        U_TID,
        Form::Oral,
        57,
    ), // YJ, HOT9: example
    rx(
        "rebamipide",
        "レバミピド錠１００ｍｇ「トーワ」",
        "2329021F1ZZZ",
        "【般】レバミピド錠１００ｍｇ",
        "2329021F1010",
        "990000122",
        "620099022",
        TAB,
        3.0,
        U_TID,
        Form::Oral,
        101,
    ),
    rx(
        "miyabm",
        "ミヤＢＭ錠",
        "2316009F1ZZZ",
        "【般】酪酸菌製剤錠",
        "2316009F1022",
        "104195801",
        "620099023",
        TAB,
        3.0,
        U_TID,
        Form::Oral,
        59,
    ), // YJ, HOT9: example
    rx(
        "oseltamivir",
        "オセルタミビルカプセル７５ｍｇ「サワイ」",
        "6250021M1ZZZ",
        "【般】オセルタミビルカプセル７５ｍｇ",
        "6250021M1010",
        "990000124",
        "620099024",
        CAP,
        2.0,
        U_BID,
        Form::Oral,
        1418,
    ),
    rx(
        "cefcapene",
        "セフカペンピボキシル塩酸塩錠１００ｍｇ「サワイ」",
        "6132016F2ZZZ",
        "【般】セフカペンピボキシル塩酸塩錠１００ｍｇ",
        "6132016F2010",
        "990000125",
        "620099025",
        TAB,
        3.0,
        U_TID,
        Form::Oral,
        355,
    ),
    rx(
        "levofloxacin",
        "レボフロキサシン錠５００ｍｇ「ＤＳＥＰ」",
        "6241013F2ZZZ",
        "【般】レボフロキサシン錠５００ｍｇ",
        "6241013F2010",
        "990000126",
        "620099026",
        TAB,
        1.0,
        U_MORNING,
        Form::Oral,
        1171,
    ),
    rx(
        "valacyclovir",
        "バラシクロビル錠５００ｍｇ「サワイ」",
        "6250019F1ZZZ",
        "【般】バラシクロビル錠５００ｍｇ",
        "6250019F1010",
        "990000127",
        "620099027",
        TAB,
        6.0,
        U_TID,
        Form::Oral,
        1190,
    ),
    rx(
        "heparinoid",
        "ヘパリン類似物質油性クリーム０．３％「ニプロ」",
        "3339950N1ZZZ",
        "【般】ヘパリン類似物質油性クリーム０．３％",
        "3339950N1010",
        "990000128",
        "620099028",
        HON,
        1.0 / 14.0,
        U_APPLY,
        Form::External,
        1200,
    ),
    rx(
        "prednisolone",
        "プレドニン錠５ｍｇ",
        "2456001F1ZZZ",
        "【般】プレドニゾロン錠５ｍｇ",
        "2456001F1310",
        "105271807",
        "620099029",
        TAB,
        2.0,
        U_MORNING,
        Form::Oral,
        96,
    ), // YJ, HOT9: example
    rx(
        "ceftriaxone",
        "セフトリアキソンナトリウム静注用１ｇ「サワイ」",
        "6132419D1ZZZ",
        "【般】セフトリアキソンナトリウム静注用１ｇ",
        "6132419D1010",
        "990000130",
        "620099030",
        HON,
        2.0,
        U_INJ,
        Form::Injection,
        4480,
    ),
    rx(
        "ampsul",
        "スルバシリン静注用１．５ｇ",
        "6139505F1ZZZ",
        "【般】アンピシリン・スルバクタム静注用１．５ｇ",
        "6139505F1020",
        "990000131",
        "620099031",
        HON,
        4.0,
        U_INJ,
        Form::Injection,
        6500,
    ),
    rx(
        "solita",
        "ソリタ－Ｔ３号輸液５００ｍＬ",
        "3319550A1ZZZ",
        "【般】維持液５００ｍＬ",
        "3319550A1020",
        "990000132",
        "620099032",
        HON,
        2.0,
        U_INJ,
        Form::Injection,
        1760,
    ),
    rx(
        "heparin",
        "ヘパリンＮａ注５千単位／５ｍＬ「モチダ」",
        "3334400A1ZZZ",
        "【般】ヘパリンナトリウム注５０００単位５ｍＬ",
        "3334400A1010",
        "990000133",
        "620099033",
        HON,
        2.0,
        U_INJ,
        Form::Injection,
        1650,
    ),
];

/// Looks a drug up by key.
pub fn drug(key: &str) -> &'static Drug {
    DRUGS.iter().find(|d| d.key == key).unwrap_or(&DRUGS[0])
}

/// A lab item (JLAC10 from the JP-CLINS CodeSystems).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lab {
    /// Key (the JP-CLINS group code, e.g. `HbA1c-NGSP`, or `eGFR`).
    pub key: &'static str,
    /// JLAC10 17-digit code.
    pub jlac10: &'static str,
    /// Name shown to people.
    pub name: &'static str,
    /// UCUM-ish unit as labs print it.
    pub unit: &'static str,
    /// Reference range low–high.
    pub range: (f64, f64),
    /// Decimal places.
    pub decimals: u8,
    /// Specimen (JLAC10 material code, display).
    pub specimen: (&'static str, &'static str),
    /// Facility-local code suffix (facilities prefix their own numbering).
    pub local: &'static str,
    /// Which JP-CLINS CodeSystem it belongs to: core 43 items, infection items, or neither.
    pub group: LabGroup,
}

/// Which JP-CLINS item list a lab belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabGroup {
    /// One of the 43 core items.
    Core,
    /// One of the 5 infection items.
    Infection,
    /// Not in the JP-CLINS lists (plain JLAC10).
    Other,
}

const SER: (&str, &str) = ("023", "血清");
const WB: (&str, &str) = ("019", "全血（添加物入り）");
const URINE: (&str, &str) = ("001", "尿");

#[allow(clippy::too_many_arguments)]
const fn lab(
    key: &'static str,
    jlac10: &'static str,
    name: &'static str,
    unit: &'static str,
    range: (f64, f64),
    decimals: u8,
    specimen: (&'static str, &'static str),
    local: &'static str,
    group: LabGroup,
) -> Lab {
    Lab { key, jlac10, name, unit, range, decimals, specimen, local, group }
}

/// Lab items used by the care model.
pub const LABS: &[Lab] = &[
    lab("HbA1c-NGSP", "3D046000001906202", "ＨｂＡ１ｃ（ＮＧＳＰ）", "%", (4.9, 6.0), 1, WB, "0101", LabGroup::Core),
    lab("BS", "3D010129902327101", "血糖", "mg/dL", (73.0, 109.0), 0, SER, "0102", LabGroup::Core),
    lab("Cre", "3C015000002327101", "クレアチニン", "mg/dL", (0.46, 1.07), 2, SER, "0103", LabGroup::Core),
    lab("eGFR", "8A065000002391901", "eGFR", "mL/min/1.73m2", (60.0, 200.0), 1, SER, "0104", LabGroup::Other),
    lab("BUN", "3C025000002327201", "尿素窒素", "mg/dL", (8.0, 20.0), 1, SER, "0105", LabGroup::Core),
    lab("UA", "3C020000002327101", "尿酸", "mg/dL", (2.6, 7.0), 1, SER, "0106", LabGroup::Core),
    lab("K", "3H015000002326101", "カリウム", "mmol/L", (3.6, 4.8), 1, SER, "0107", LabGroup::Core),
    lab("Na", "3H010000002326101", "ナトリウム", "mmol/L", (138.0, 145.0), 0, SER, "0108", LabGroup::Core),
    lab("LDL-C", "3F077000002327101", "ＬＤＬコレステロール", "mg/dL", (65.0, 139.0), 0, SER, "0109", LabGroup::Core),
    lab("HDL-C", "3F070000002327101", "ＨＤＬコレステロール", "mg/dL", (40.0, 90.0), 0, SER, "0110", LabGroup::Core),
    lab("TG", "3F015000002327101", "中性脂肪", "mg/dL", (40.0, 149.0), 0, SER, "0111", LabGroup::Core),
    lab("AST", "3B035000002327201", "ＡＳＴ", "U/L", (13.0, 30.0), 0, SER, "0112", LabGroup::Core),
    lab("ALT", "3B045000002327201", "ＡＬＴ", "U/L", (7.0, 30.0), 0, SER, "0113", LabGroup::Core),
    lab("GGT", "3B090000002327701", "γ－ＧＴ", "U/L", (9.0, 50.0), 0, SER, "0114", LabGroup::Core),
    lab("ALB", "3A015000002327101", "アルブミン", "g/dL", (4.1, 5.1), 1, SER, "0115", LabGroup::Core),
    lab("CRP", "5C070000002306201", "ＣＲＰ", "mg/dL", (0.0, 0.14), 2, SER, "0116", LabGroup::Core),
    lab("WBC", "2A990000001930952", "白血球数", "/μL", (3300.0, 8600.0), 0, WB, "0117", LabGroup::Core),
    lab("Hb", "2A030000001930901", "ヘモグロビン", "g/dL", (11.6, 16.8), 1, WB, "0118", LabGroup::Core),
    lab("PLT", "2A050000001930901", "血小板数", "万/μL", (15.8, 34.8), 1, WB, "0119", LabGroup::Core),
    lab("BNP", "4Z271000002205101", "ＢＮＰ", "pg/mL", (0.0, 18.4), 1, ("022", "血漿"), "0120", LabGroup::Core),
    lab("CK", "3B010000002327201", "ＣＫ", "U/L", (59.0, 248.0), 0, SER, "0121", LabGroup::Core),
    lab("U-TP", "1A990000000191153", "尿蛋白定性", "", (0.0, 0.0), 0, URINE, "0122", LabGroup::Core),
    // infection items (judgements)
    lab(
        "HBs-AG-RESULT",
        "5F016141002302311",
        "ＨＢｓ抗原（判定）",
        "",
        (0.0, 0.0),
        0,
        SER,
        "0201",
        LabGroup::Infection,
    ),
    lab(
        "HCV-AB-RESULT",
        "5F360148202302311",
        "ＨＣＶ抗体（判定）",
        "",
        (0.0, 0.0),
        0,
        SER,
        "0202",
        LabGroup::Infection,
    ),
    lab("TP-RESULT", "5E075135101819011", "梅毒ＴＰ抗体（定性）", "", (0.0, 0.0), 0, SER, "0203", LabGroup::Infection),
    lab("STS-QLRESULT", "5E074135102311711", "梅毒ＳＴＳ（定性）", "", (0.0, 0.0), 0, SER, "0204", LabGroup::Infection),
    lab(
        "HIV-1P2-AB-P24-RESULT",
        "5F560155002302311",
        "ＨＩＶ－１＋２抗体・ｐ２４抗原（判定）",
        "",
        (0.0, 0.0),
        0,
        SER,
        "0205",
        LabGroup::Infection,
    ),
];

/// Looks a lab item up by key.
pub fn lab_item(key: &str) -> &'static Lab {
    LABS.iter().find(|l| l.key == key).unwrap_or(&LABS[0])
}

/// Allergens: J-FAGY code, display, category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allergen {
    /// J-FAGY code (real, checked against the master) or, for drugs, a drug key.
    pub code: &'static str,
    /// Display (the J-FAGY 日本語名).
    pub name: &'static str,
    /// food / environment / medication.
    pub category: &'static str,
}

/// Food and environmental allergens from J-FAGY, and drug allergies (drug keys into [`DRUGS`]
/// for the YJ / 一般名 codes, plus a class name).
pub const ALLERGENS: &[Allergen] = &[
    Allergen { code: "J9FC15110000", name: "えび", category: "food" },
    Allergen { code: "J9FC15120000", name: "かに", category: "food" },
    Allergen { code: "J9FA19140000", name: "そば", category: "food" },
    Allergen { code: "J9FB13110000", name: "鶏卵", category: "food" },
    Allergen { code: "J9FB12110011", name: "牛乳", category: "food" },
    Allergen { code: "J9FA15000000", name: "小麦", category: "food" },
    Allergen { code: "J9FA21180000", name: "落花生", category: "food" },
    Allergen { code: "J9FC11310000", name: "さば", category: "food" },
    Allergen { code: "J9FA32540000", name: "キウイフルーツ", category: "food" },
    Allergen { code: "J9NK13320000", name: "スギ", category: "environment" },
    Allergen { code: "J9NM13110000", name: "ハウスダスト", category: "environment" },
    Allergen { code: "J9NM12000000", name: "ダニ", category: "environment" },
    Allergen { code: "J9NJ12150000", name: "ネコ", category: "environment" },
    Allergen { code: "J9NN11150000", name: "ニッケル", category: "environment" },
    Allergen { code: "J9NP14000000", name: "ゴム", category: "environment" },
    Allergen { code: "cefcapene", name: "セフェム系抗生物質", category: "medication" },
    Allergen { code: "loxoprofen", name: "ＮＳＡＩＤｓ", category: "medication" },
    Allergen { code: "levofloxacin", name: "ニューキノロン系抗菌薬", category: "medication" },
];

/// A clinical department: SS-MIX2 診療科コード and name.
pub fn department_name(code: &str) -> &'static str {
    match code {
        "01" => "内科",
        "04" => "神経内科",
        "05" => "呼吸器科",
        "06" => "消化器科",
        "08" => "循環器科",
        "09" => "小児科",
        "10" => "外科",
        "11" => "整形外科",
        "19" => "皮膚科",
        "20" => "ひ尿器科",
        "26" => "眼科",
        "27" => "耳鼻いんこう科",
        "30" => "放射線科",
        "40" => "歯科",
        _ => "内科",
    }
}

/// 診療行為 codes for receipts (SSK 基本マスター; those marked "layout" are the ones named in
/// `reference/uke/LAYOUT.md`, the rest are the long-standing codes of the same master).
pub mod fees {
    /// 初診料.
    pub const FIRST_VISIT: (&str, u32) = ("111000110", 291);
    /// 再診料 (layout).
    pub const REVISIT: (&str, u32) = ("112007410", 75);
    /// 特定疾患療養管理料（診療所） (layout).
    pub const CHRONIC_MGMT: (&str, u32) = ("113001810", 225);
    /// 処方料（その他） (layout).
    pub const PRESCRIPTION_IN: (&str, u32) = ("120001210", 42);
    /// 処方箋料（その他）.
    pub const PRESCRIPTION_OUT: (&str, u32) = ("120002910", 60);
    /// 末梢血液一般 (layout).
    pub const CBC: (&str, u32) = ("160008010", 21);
    /// ＨｂＡ１ｃ (layout).
    pub const HBA1C: (&str, u32) = ("160010010", 49);
    /// Ｂ−Ｖ 採血料 (layout).
    pub const BLOOD_DRAW: (&str, u32) = ("160095710", 40);
    /// 調剤基本料１ (layout; 調剤).
    pub const DISPENSING_BASE: (&str, u32) = ("410004110", 45);
    /// 内服薬調剤料 (layout; placed in the 薬剤調製料 slot).
    pub const DISPENSING_ORAL: (&str, u32) = ("420000110", 24);
    /// 屯服薬調剤料 (layout).
    pub const DISPENSING_PRN: (&str, u32) = ("420000210", 21);
}

/// DPC 診断群分類 for the admission diseases: 14 characters (first six real MDC codes).
pub fn dpc_code(disease_key: &str) -> &'static str {
    match disease_key {
        "pneumonia" => "040080x099x0xx",
        "aspiration" => "040081xx99x0xx",
        "ami" => "050030xx03000x",
        "stroke" => "010060xx99x20x",
        "hipfx" => "160800xx01xxxx",
        "appendicitis" => "060150xx03xxxx",
        "cholecystitis" => "060330xx02xxxx",
        "hf" => "050130xx9900xx",
        "polyp" => "060100xx03xxxx",
        _ => "999999xx99xxxx",
    }
}
