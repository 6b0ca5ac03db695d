//! Japanese personal names: surnames with approximate frequencies, given names by sex and birth
//! era, kana readings, and the variant kanji that registration desks write differently.
//!
//! **Synthetic tables.** The surname list is the ~300 most common Japanese surnames in their
//! usual rank order; the shares are approximations (the top ten follow published rankings, the
//! rest a Zipf-like decay), not census figures. A further share of people get a compound surname
//! built from common parts (上/中/下 + 田/川/山 …) with an approximate reading, so that names are
//! more diverse than 300. Given names are popular names of each era with the other kanji that
//! share their reading (used for the "wrong kanji, same reading" registration error).

use std::sync::LazyLock;

use crate::rng::{Cumulative, Rng};

/// Surnames in rank order as `kanji:カナ`.
const SURNAMES: &str = "佐藤:サトウ 鈴木:スズキ 高橋:タカハシ 田中:タナカ 伊藤:イトウ 渡辺:ワタナベ 山本:ヤマモト 中村:ナカムラ 小林:コバヤシ 加藤:カトウ \
吉田:ヨシダ 山田:ヤマダ 佐々木:ササキ 山口:ヤマグチ 松本:マツモト 井上:イノウエ 木村:キムラ 林:ハヤシ 斎藤:サイトウ 清水:シミズ \
山崎:ヤマザキ 森:モリ 池田:イケダ 橋本:ハシモト 阿部:アベ 石川:イシカワ 山下:ヤマシタ 中島:ナカジマ 石井:イシイ 小川:オガワ \
前田:マエダ 岡田:オカダ 長谷川:ハセガワ 藤田:フジタ 後藤:ゴトウ 近藤:コンドウ 村上:ムラカミ 遠藤:エンドウ 青木:アオキ 坂本:サカモト \
斉藤:サイトウ 福田:フクダ 太田:オオタ 西村:ニシムラ 藤井:フジイ 金子:カネコ 岡本:オカモト 藤原:フジワラ 中野:ナカノ 三浦:ミウラ \
原田:ハラダ 中川:ナカガワ 松田:マツダ 竹内:タケウチ 小野:オノ 田村:タムラ 中山:ナカヤマ 和田:ワダ 石田:イシダ 森田:モリタ \
上田:ウエダ 原:ハラ 内田:ウチダ 柴田:シバタ 酒井:サカイ 宮崎:ミヤザキ 横山:ヨコヤマ 高木:タカギ 安藤:アンドウ 宮本:ミヤモト \
大野:オオノ 小島:コジマ 谷口:タニグチ 今井:イマイ 工藤:クドウ 高田:タカダ 増田:マスダ 丸山:マルヤマ 杉山:スギヤマ 村田:ムラタ \
大塚:オオツカ 新井:アライ 小山:コヤマ 平野:ヒラノ 藤本:フジモト 河野:コウノ 上野:ウエノ 野口:ノグチ 武田:タケダ 松井:マツイ \
千葉:チバ 岩崎:イワサキ 菅原:スガワラ 木下:キノシタ 久保:クボ 佐野:サノ 野村:ノムラ 松尾:マツオ 市川:イチカワ 菊地:キクチ \
杉本:スギモト 古川:フルカワ 大西:オオニシ 島田:シマダ 水野:ミズノ 桜井:サクライ 高野:タカノ 渡部:ワタナベ 吉川:ヨシカワ 山内:ヤマウチ \
西田:ニシダ 飯田:イイダ 菊池:キクチ 西川:ニシカワ 小松:コマツ 北村:キタムラ 安田:ヤスダ 五十嵐:イガラシ 川口:カワグチ 平田:ヒラタ \
関:セキ 中田:ナカタ 久保田:クボタ 服部:ハットリ 東:ヒガシ 岩田:イワタ 土屋:ツチヤ 川崎:カワサキ 福島:フクシマ 本田:ホンダ \
辻:ツジ 樋口:ヒグチ 秋山:アキヤマ 田口:タグチ 永井:ナガイ 山中:ヤマナカ 中西:ナカニシ 吉村:ヨシムラ 川上:カワカミ 石原:イシハラ \
大橋:オオハシ 松岡:マツオカ 馬場:ババ 浅野:アサノ 荒木:アラキ 大久保:オオクボ 野田:ノダ 小沢:オザワ 田辺:タナベ 川村:カワムラ \
星野:ホシノ 黒田:クロダ 堀:ホリ 尾崎:オザキ 望月:モチヅキ 永田:ナガタ 熊谷:クマガイ 内藤:ナイトウ 松村:マツムラ 西山:ニシヤマ \
大谷:オオタニ 平井:ヒライ 大島:オオシマ 岩本:イワモト 片山:カタヤマ 本間:ホンマ 早川:ハヤカワ 横田:ヨコタ 岡崎:オカザキ 荒井:アライ \
大石:オオイシ 鎌田:カマタ 成田:ナリタ 宮田:ミヤタ 小田:オダ 石橋:イシバシ 篠原:シノハラ 須藤:スドウ 河合:カワイ 大川:オオカワ \
高井:タカイ 山岸:ヤマギシ 吉岡:ヨシオカ 小池:コイケ 中尾:ナカオ 新田:ニッタ 桑原:クワハラ 堀内:ホリウチ 松下:マツシタ 太田原:オオタワラ \
野崎:ノザキ 奥村:オクムラ 富田:トミタ 浜田:ハマダ 宇野:ウノ 松浦:マツウラ 関口:セキグチ 杉浦:スギウラ 小西:コニシ 北川:キタガワ \
澤田:サワダ 沢田:サワダ 田島:タジマ 松原:マツバラ 八木:ヤギ 西岡:ニシオカ 今村:イマムラ 上原:ウエハラ 細川:ホソカワ 大森:オオモリ \
小野寺:オノデラ 川田:カワダ 中本:ナカモト 村井:ムライ 竹田:タケダ 櫻井:サクライ 宮下:ミヤシタ 森本:モリモト 山根:ヤマネ 河村:カワムラ \
吉野:ヨシノ 南:ミナミ 広瀬:ヒロセ 深沢:フカザワ 矢野:ヤノ 中谷:ナカタニ 小田切:オダギリ 長田:ナガタ 飯塚:イイヅカ 萩原:ハギワラ \
岩井:イワイ 松永:マツナガ 岡村:オカムラ 内山:ウチヤマ 富永:トミナガ 佐久間:サクマ 竹中:タケナカ 三宅:ミヤケ 白石:シライシ 芦田:アシダ \
滝沢:タキザワ 石黒:イシグロ 川島:カワシマ 奥田:オクダ 小森:コモリ 大山:オオヤマ 片岡:カタオカ 古田:フルタ 土井:ドイ 平山:ヒラヤマ \
根本:ネモト 浅井:アサイ 野中:ノナカ 中井:ナカイ 柳沢:ヤナギサワ 大竹:オオタケ 水谷:ミズタニ 高山:タカヤマ 竹本:タケモト 松島:マツシマ \
西野:ニシノ 青山:アオヤマ 坂口:サカグチ 森下:モリシタ 岡:オカ 堀田:ホッタ 金井:カナイ 中原:ナカハラ 藤川:フジカワ 渡邊:ワタナベ \
梅田:ウメダ 畑中:ハタナカ 宮内:ミヤウチ 秋元:アキモト 長尾:ナガオ 三好:ミヨシ 亀井:カメイ 安達:アダチ 中沢:ナカザワ 谷:タニ \
高村:タカムラ 小笠原:オガサワラ 久野:クノ 野沢:ノザワ 戸田:トダ 藤岡:フジオカ 大木:オオキ 丹羽:ニワ 芹沢:セリザワ 赤松:アカマツ \
都築:ツヅキ 鶴田:ツルタ 小野田:オノダ 井口:イグチ 石塚:イシヅカ 手塚:テヅカ 大塚田:オオツカダ 千田:チダ 三上:ミカミ 米田:ヨネダ";

/// Approximate population shares (percent) of the ten most common surnames.
const TOP10_SHARE: [f64; 10] = [1.50, 1.45, 1.14, 1.08, 0.87, 0.86, 0.86, 0.85, 0.84, 0.72];

/// Variant forms (異体字) a legal name may use and a desk may or may not type.
/// `(standard, variants)`; the first variant is the common one.
pub const VARIANT_KANJI: &[(char, &[char])] = &[
    ('高', &['髙']),
    ('斎', &['齋', '齊']),
    ('辺', &['邊', '邉']),
    ('崎', &['﨑']),
    ('沢', &['澤']),
    ('浜', &['濱']),
    ('桜', &['櫻']),
    ('島', &['嶋']),
    ('国', &['國']),
    ('広', &['廣']),
    ('竜', &['龍']),
    ('関', &['關']),
];

/// Given names by era: `カナ:漢字|別表記|…` (the first kanji form is the common one).
const MALE: [&str; 5] = [
    "キヨシ:清|潔 シゲル:茂|繁 イサム:勇 ヒロシ:博|浩|宏|弘 ミノル:実|稔 ススム:進|晋 タダシ:正|忠 タケシ:武|猛 マサル:勝|優 サブロウ:三郎 \
     マサオ:正夫|政夫|雅夫 アキラ:昭|明|彰 イチロウ:一郎 トシオ:敏夫|俊夫 ヨシオ:義雄|良雄 ユキオ:幸雄|行雄 カズオ:和夫|一夫 ヒデオ:秀夫|英夫 イサオ:功|勲 マモル:守|衛",
    "マコト:誠|真|信 ヒロシ:浩|博|宏|弘 オサム:修|治 タカシ:隆|孝|崇|貴 シゲル:茂 アキラ:明|昭|彰 ケンイチ:健一|憲一|賢一 カズヒコ:和彦|一彦 ツトム:勉|努 キヨシ:清 \
     ヒロユキ:博之|浩之|裕之|弘之 ヒデキ:秀樹|英樹 タツヤ:達也|竜也 テツヤ:哲也|徹也 サトシ:聡|智|悟 ユタカ:裕|豊 ツヨシ:剛|強 ヤスオ:康夫|靖夫 ヨシアキ:義明|善明 ミツオ:光男|光雄",
    "マコト:誠|真 ダイスケ:大輔|大介 ケンイチ:健一|憲一 ナオキ:直樹|直紀 ツヨシ:剛 マナブ:学 コウジ:浩二|浩司|幸治|孝二 ケンタロウ:健太郎 タクヤ:拓也|拓哉 タツヤ:達也 \
     カズヤ:和也|一也 ヒデキ:秀樹 タカユキ:隆之|孝之|貴之 リョウ:亮|涼 サトシ:聡|智 ジュン:淳|純|潤 ユウイチ:雄一|裕一|祐一 トモユキ:智之|知之 セイイチ:誠一 ユウスケ:雄介|祐介|裕介",
    "ショウタ:翔太|翔大 ダイスケ:大輔|大介 タクヤ:拓也|拓哉 ケンタ:健太|健大 ショウ:翔 ダイキ:大樹|大貴|大輝 ツバサ:翼 リョウ:亮|涼 ユウタ:優太|雄太|勇太|裕太 ナオト:直人|尚人 \
     ユウダイ:雄大|勇大 タクミ:拓海|匠|巧 ユウト:悠斗|優斗|勇斗 カイト:海斗|快斗 リョウタ:涼太|亮太 ケン:健|謙 シュン:駿|俊 レン:蓮|廉 ユウキ:優希|勇気|祐樹 コウタ:康太|航太",
    "レン:蓮 ヒロト:大翔|大斗 ユウマ:悠真|優真 ハルト:陽翔|悠斗 ミナト:湊 イツキ:樹|伊月 アオイ:蒼|碧 ソウタ:颯太|蒼太 ヒナタ:陽太|日向 ユウト:悠人|優人 \
     ヤマト:大和 リツ:律 アサヒ:朝陽|旭 カナタ:奏太|叶多 ハヤテ:颯 アラタ:新 ソラ:蒼空|空 ユイト:結翔 ハル:晴 ユヅキ:結月",
];
const FEMALE: [&str; 5] = [
    "カズコ:和子|一子 サチコ:幸子|祥子 セツコ:節子 ヒロコ:弘子|博子|裕子|浩子 キョウコ:京子|恭子 ヨウコ:洋子|陽子|容子 ミヨコ:美代子 ヒサコ:久子|寿子 フミコ:文子|富美子 シズコ:静子|志津子 \
     チヨコ:千代子 トシコ:敏子|俊子|利子 マサコ:正子|雅子 ノブコ:信子|伸子 カズエ:和江|一枝 テルコ:照子 ハルコ:春子|晴子 ミツコ:光子|満子 ヤエコ:八重子 サダコ:貞子",
    "ケイコ:恵子|啓子|圭子|敬子 サチコ:幸子 クミコ:久美子 ヨウコ:洋子|陽子 ユミコ:由美子|裕美子 キョウコ:京子 マユミ:真由美|真弓 ミチコ:美智子|道子 カズコ:和子 アケミ:明美 \
     ノリコ:典子|紀子|則子 ユウコ:裕子|優子|祐子|悠子 ナオミ:直美 ジュンコ:順子|純子 エツコ:悦子 セツコ:節子 トモコ:智子|知子|朋子|友子 ヨシコ:良子|芳子|佳子 タカコ:孝子|貴子 シヅコ:静子",
    "ケイコ:恵子|啓子 ユウコ:裕子|優子 ヨウコ:陽子|洋子 ナオミ:直美|尚美 マユミ:真由美|真弓 トモコ:智子|知子 クミコ:久美子 ミホ:美穂|美保 ユミ:由美|裕美|由実 カオリ:香織|香里|佳織 \
     エミ:恵美|絵美 アイ:愛|藍 アケミ:明美 サオリ:沙織|さおり マリ:真理|麻里|真里 ミカ:美香|美佳 アヤコ:綾子|彩子 ジュンコ:純子 リエ:理恵|理絵 ユカ:由香|由佳|有加",
    "アイ:愛 ミサキ:美咲|美沙希 アヤ:彩|綾 マイ:麻衣|舞 サオリ:沙織 ミホ:美穂 ハルカ:遥|遙|春香 ナナミ:七海|菜々美 ユウカ:優花|優香|夕夏 アヤカ:彩香|綾香 \
     モエ:萌 チヒロ:千尋 アオイ:葵 マユ:真由|麻由 ナツミ:菜摘|夏美|奈津美 アスカ:明日香 ミク:未来|美紅 ヒナ:陽菜|日菜 ユイ:結衣|唯|由衣 サキ:咲|早紀|沙紀",
    "ヒマリ:陽葵|日葵 リン:凛|鈴 ユイナ:結菜|結奈 メイ:芽依|芽衣 アオイ:葵 ツムギ:紬 サクラ:さくら|咲良|桜 ユイ:結衣 ヒナ:陽菜 リコ:莉子|梨子 \
     ミオ:美桜|澪 コハル:心春|小春 アン:杏 カエデ:楓 ユヅキ:結月|優月 サキ:咲希|沙希 サナ:紗奈|咲那 ウタ:詩 コトネ:琴音 エマ:恵麻|咲茉",
];

/// Compound surname parts for the long tail: `(kanji, kana)`; the suffix kana has a voiced form
/// after most prefixes (rendaku, approximated).
const TAIL_PREFIX: &[(&str, &str)] = &[
    ("上", "カミ"),
    ("中", "ナカ"),
    ("下", "シモ"),
    ("大", "オオ"),
    ("小", "コ"),
    ("西", "ニシ"),
    ("東", "ヒガシ"),
    ("北", "キタ"),
    ("南", "ミナミ"),
    ("石", "イシ"),
    ("岩", "イワ"),
    ("松", "マツ"),
    ("竹", "タケ"),
    ("梅", "ウメ"),
    ("桑", "クワ"),
    ("柳", "ヤナギ"),
    ("杉", "スギ"),
    ("宮", "ミヤ"),
    ("寺", "テラ"),
    ("藤", "フジ"),
    ("菊", "キク"),
    ("村", "ムラ"),
    ("吉", "ヨシ"),
    ("福", "フク"),
    ("金", "カネ"),
    ("黒", "クロ"),
    ("白", "シラ"),
    ("青", "アオ"),
    ("赤", "アカ"),
    ("今", "イマ"),
    ("長", "ナガ"),
    ("広", "ヒロ"),
    ("深", "フカ"),
    ("浅", "アサ"),
    ("野", "ノ"),
];
const TAIL_SUFFIX: &[(&str, &str, &str)] = &[
    ("田", "タ", "ダ"),
    ("川", "カワ", "ガワ"),
    ("山", "ヤマ", "ヤマ"),
    ("野", "ノ", "ノ"),
    ("村", "ムラ", "ムラ"),
    ("島", "シマ", "ジマ"),
    ("沢", "サワ", "ザワ"),
    ("井", "イ", "イ"),
    ("原", "ハラ", "ハラ"),
    ("木", "キ", "ギ"),
    ("本", "モト", "モト"),
    ("森", "モリ", "モリ"),
    ("谷", "タニ", "ヤ"),
    ("岡", "オカ", "オカ"),
    ("崎", "サキ", "ザキ"),
    ("口", "クチ", "グチ"),
    ("内", "ウチ", "ウチ"),
    ("瀬", "セ", "セ"),
    ("橋", "ハシ", "バシ"),
    ("塚", "ツカ", "ヅカ"),
];

/// A surname: kanji, katakana reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surname {
    /// 漢字.
    pub kanji: &'static str,
    /// カナ (full-width katakana).
    pub kana: &'static str,
}

/// A given-name entry: a reading and the kanji forms that share it.
#[derive(Debug, Clone)]
pub struct GivenName {
    /// カナ.
    pub kana: &'static str,
    /// Kanji forms; the first is the common one.
    pub forms: Vec<&'static str>,
}

struct Tables {
    surnames: Vec<Surname>,
    surname_cum: Cumulative,
    male: Vec<Vec<GivenName>>,
    female: Vec<Vec<GivenName>>,
}

fn parse_given(s: &'static str) -> Vec<GivenName> {
    s.split_whitespace()
        .filter_map(|item| {
            let (kana, forms) = item.split_once(':')?;
            Some(GivenName { kana, forms: forms.split('|').collect() })
        })
        .collect()
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let surnames: Vec<Surname> = SURNAMES
        .split_whitespace()
        .filter_map(|item| item.split_once(':').map(|(kanji, kana)| Surname { kanji, kana }))
        .collect();
    let weights = (0..surnames.len())
        .map(|rank| TOP10_SHARE.get(rank).copied().unwrap_or_else(|| 0.72 * (10.0 / (rank as f64 + 1.0)).powf(0.8)));
    Tables {
        surname_cum: Cumulative::new(weights),
        surnames,
        male: MALE.iter().map(|s| parse_given(s)).collect(),
        female: FEMALE.iter().map(|s| parse_given(s)).collect(),
    }
});

/// The ranked surname table (for tests and the documentation of frequencies).
pub fn surname_table() -> &'static [Surname] {
    &TABLES.surnames
}

/// Draws a surname: ~75% from the ranked table by share, the rest a compound from the tail.
/// Returns owned strings because tail names are built.
pub(crate) fn draw_surname(rng: &mut Rng) -> (String, String) {
    let t = &*TABLES;
    if rng.chance(0.75) {
        let s = t.surnames[t.surname_cum.sample(rng)];
        (s.kanji.to_owned(), s.kana.to_owned())
    } else {
        let (pk, pkana) = *rng.pick(TAIL_PREFIX);
        let (sk, plain, voiced) = *rng.pick(TAIL_SUFFIX);
        if pk == sk {
            let (sk, plain, _) = TAIL_SUFFIX[0];
            return (format!("{pk}{sk}"), format!("{pkana}{plain}"));
        }
        // Rendaku after prefixes ending in a vowel sound other than ン, approximated at 60%.
        let suffix_kana = if rng.chance(0.6) { voiced } else { plain };
        (format!("{pk}{sk}"), format!("{pkana}{suffix_kana}"))
    }
}

/// Birth-year era index used by the given-name tables.
pub(crate) fn era(birth_year: i32) -> usize {
    match birth_year {
        ..=1944 => 0,
        1945..=1964 => 1,
        1965..=1984 => 2,
        1985..=2004 => 3,
        _ => 4,
    }
}

/// Draws a given name for a sex (true = female) and birth year. Earlier entries are a little
/// more common (a gentle rank decay).
pub(crate) fn draw_given(rng: &mut Rng, female: bool, birth_year: i32) -> (&'static GivenName, usize) {
    let t = &*TABLES;
    let list = if female { &t.female[era(birth_year)] } else { &t.male[era(birth_year)] };
    let weights: Vec<f64> = (0..list.len()).map(|i| 1.0 / (i as f64 + 4.0)).collect();
    let e = &list[rng.weighted(&weights)];
    // The common kanji form most of the time.
    let form = if e.forms.len() > 1 && rng.chance(0.35) { 1 + rng.index(e.forms.len() - 1) } else { 0 };
    (e, form)
}

/// Other kanji forms with the same reading as `kanji` (for the wrong-kanji registration error).
pub(crate) fn same_reading_alternatives(kana: &str, kanji: &str) -> Vec<&'static str> {
    let t = &*TABLES;
    t.male
        .iter()
        .chain(t.female.iter())
        .flatten()
        .filter(|g| g.kana == kana)
        .flat_map(|g| g.forms.iter().copied())
        .filter(|f| *f != kanji)
        .fold(Vec::new(), |mut acc, f| {
            if !acc.contains(&f) {
                acc.push(f);
            }
            acc
        })
}

/// The legal form of a surname with a variant kanji substituted, if it has one.
pub(crate) fn variant_of(kanji: &str, rng: &mut Rng) -> Option<String> {
    let positions: Vec<(usize, &[char])> = kanji
        .chars()
        .enumerate()
        .filter_map(|(i, c)| VARIANT_KANJI.iter().find(|(s, _)| *s == c).map(|(_, v)| (i, *v)))
        .collect();
    if positions.is_empty() {
        return None;
    }
    let (pos, variants) = positions[rng.index(positions.len())];
    let v = if variants.len() > 1 && rng.chance(0.3) { variants[1] } else { variants[0] };
    Some(kanji.chars().enumerate().map(|(i, c)| if i == pos { v } else { c }).collect())
}

/// Folds variant kanji to their standard forms (what most registration systems store).
pub fn fold_variants(s: &str) -> String {
    s.chars().map(|c| VARIANT_KANJI.iter().find(|(_, v)| v.contains(&c)).map(|(std, _)| *std).unwrap_or(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_parse_with_readings() {
        let s = surname_table();
        assert!(s.len() >= 300, "{} surnames", s.len());
        assert_eq!(s[0], Surname { kanji: "佐藤", kana: "サトウ" });
        assert_eq!(s[1].kanji, "鈴木");
        for n in s {
            assert!(!n.kanji.is_empty());
            assert!(n.kana.chars().all(|c| ('ァ'..='ヶ').contains(&c) || c == 'ー'), "{n:?}");
        }
        for era_list in TABLES.male.iter().chain(TABLES.female.iter()) {
            assert!(era_list.len() >= 20);
        }
    }

    #[test]
    fn sato_is_more_common_than_a_rank_200_name() {
        let mut rng = Rng::new(3, &[]);
        let (mut sato, mut rare) = (0, 0);
        for _ in 0..200_000 {
            let (k, _) = draw_surname(&mut rng);
            if k == "佐藤" {
                sato += 1;
            } else if k == "小田切" {
                rare += 1;
            }
        }
        assert!(sato > 10 * rare.max(1), "佐藤 {sato}, 小田切 {rare}");
    }

    #[test]
    fn variants_fold_back() {
        let mut rng = Rng::new(1, &[]);
        let v = variant_of("高橋", &mut rng).unwrap();
        assert_eq!(v, "髙橋");
        assert_eq!(fold_variants("髙橋"), "高橋");
        assert_eq!(fold_variants("渡邊"), "渡辺");
        assert!(variant_of("佐藤", &mut rng).is_none());
        assert!(same_reading_alternatives("ヒロシ", "浩").contains(&"博"));
    }
}
