//! People: households, names, birth dates on Japan's age pyramid, addresses that move,
//! phones, and insurance identities that change over the years.
//!
//! People are generated in *blocks* of [`BLOCK`] consecutive indices; a block is split into
//! households (shared surname, address, insurance). A block depends only on the seed and its
//! number, so blocks can be generated on any thread in any order with the same result.

use musubi_domain::InsuranceId;
use time::Date;

use crate::dates::{add_days, age_on, birthday, jan1};
use crate::geo::{self, City, TOWNS};
use crate::names;
use crate::region::{InsurerKind, Region};
use crate::rng::{Rng, key};

/// People per generation block.
pub const BLOCK: u64 = 8;

/// Sex as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    /// 男.
    Male,
    /// 女.
    Female,
}

impl Sex {
    /// FHIR gender code.
    pub fn fhir(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
    /// HL7 v2 (M/F).
    pub fn hl7(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
        }
    }
    /// UKE 男女区分 (1 男, 2 女).
    pub fn uke(self) -> &'static str {
        match self {
            Sex::Male => "1",
            Sex::Female => "2",
        }
    }
}

/// A legal name valid from a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePeriod {
    /// From this date on.
    pub from: Date,
    /// 姓 (legal form, may contain variant kanji).
    pub family: String,
    /// 名.
    pub given: String,
    /// セイ.
    pub family_kana: String,
    /// メイ.
    pub given_kana: String,
}

/// An address valid from a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// From this date on.
    pub from: Date,
    /// Prefecture number.
    pub prefecture: u8,
    /// 二次医療圏 index.
    pub area: u16,
    /// Municipality.
    pub city: &'static str,
    /// 町名.
    pub town: &'static str,
    /// 丁目-番-号 and building, e.g. `3-12-5` or `2-4-1 コーポ緑302`.
    pub block: String,
    /// 〒.
    pub postal_code: String,
    /// Telephone area code of the municipality.
    pub area_code: &'static str,
}

impl Address {
    /// The full address text (prefecture + city + town + 丁目-番-号).
    pub fn text(&self) -> String {
        format!("{}{}{}{}", geo::prefecture_name(self.prefecture), self.city, self.town, self.block)
    }
}

/// Insurance valid from a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insurance {
    /// From this date on.
    pub from: Date,
    /// Index into [`Region::insurers`].
    pub insurer: u32,
    /// The identifier (保険者番号:記号:番号:枝番).
    pub id: InsuranceId,
    /// Insured person (本人) rather than dependent (家族).
    pub principal: bool,
}

/// A person's identity over the years (clinical history lives in [`crate::care`]).
#[derive(Debug, Clone)]
pub struct Identity {
    /// Person index (0-based).
    pub index: u64,
    /// Household number.
    pub household: u64,
    /// Sex.
    pub sex: Sex,
    /// Birth date.
    pub birth: Date,
    /// Legal names over time (married-name changes).
    pub names: Vec<NamePeriod>,
    /// Addresses over time.
    pub addresses: Vec<Address>,
    /// Home phone (landline), if any.
    pub home_phone: Option<String>,
    /// Mobile phone, if any.
    pub mobile: Option<String>,
    /// Insurance over time.
    pub insurance: Vec<Insurance>,
    /// Index of the twin, if this person is a twin.
    pub twin_of: Option<u64>,
    /// Whether this person was generated as a same-name, same-birthday stranger of another.
    pub doppelganger_of: Option<u64>,
}

impl Identity {
    /// The stable person id used in truth files.
    pub fn person_id(&self) -> String {
        format!("P{:08}", self.index)
    }
    /// The legal name on a date.
    pub fn name_on(&self, d: Date) -> &NamePeriod {
        self.names.iter().rev().find(|n| n.from <= d).unwrap_or(&self.names[0])
    }
    /// The address on a date.
    pub fn address_on(&self, d: Date) -> &Address {
        self.addresses.iter().rev().find(|a| a.from <= d).unwrap_or(&self.addresses[0])
    }
    /// The insurance on a date.
    pub fn insurance_on(&self, d: Date) -> &Insurance {
        self.insurance.iter().rev().find(|a| a.from <= d).unwrap_or(&self.insurance[0])
    }
    /// Age on a date.
    pub fn age_on(&self, d: Date) -> i32 {
        age_on(self.birth, d)
    }
    /// The best phone a desk would write.
    pub fn phone(&self) -> Option<&str> {
        self.home_phone.as_deref().or(self.mobile.as_deref())
    }
}

/// Japan's population by five-year age group (millions, 2023, rounded), 0–4 … 100+.
const PYRAMID: [f64; 21] =
    [4.2, 4.8, 5.3, 5.5, 6.2, 6.4, 6.6, 7.4, 8.2, 9.6, 9.5, 8.2, 7.4, 7.6, 9.0, 7.2, 5.8, 3.9, 1.9, 0.5, 0.1];

/// An age for a household's anchor person. Households of young anchors add children and
/// parents, those of old anchors are small, so the anchor draw is re-weighted to keep the whole
/// population on the pyramid.
fn pyramid_age(rng: &mut Rng, min: i32, max: i32) -> i32 {
    let w: Vec<f64> = PYRAMID
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let lo = i as i32 * 5;
            let household_size_correction = match lo {
                0..=19 => 0.45,
                20..=34 => 0.9,
                65.. => 1.9,
                _ => 1.0,
            };
            if lo + 4 < min || lo > max { 0.0 } else { *p * household_size_correction }
        })
        .collect();
    let g = rng.weighted(&w) as i32;
    (g * 5 + rng.range(0, 4) as i32).clamp(min, max)
}

/// Parameters of the time window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// First day of history.
    pub start: Date,
    /// First day after the history.
    pub end: Date,
}

impl Window {
    /// A window of `years` starting on January 1st of `start_year`.
    pub fn new(start_year: i32, years: u32) -> Self {
        Window { start: jan1(start_year), end: jan1(start_year + years.max(1) as i32) }
    }
    /// Length in days.
    pub fn days(&self) -> i64 {
        crate::dates::days_between(self.start, self.end)
    }
    /// A uniformly random day inside the window.
    pub(crate) fn random_day(&self, rng: &mut Rng) -> Date {
        add_days(self.start, rng.range(0, self.days() - 1))
    }
}

struct Member {
    sex: Sex,
    age: i32,
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Head,
    Spouse,
    Child,
    Elder,
}

fn household_plan(rng: &mut Rng) -> Vec<Member> {
    let anchor = pyramid_age(rng, 0, 102);
    let male = |r: &mut Rng| if r.chance(0.5) { Sex::Male } else { Sex::Female };
    let mut m = Vec::new();
    let with_children = |rng: &mut Rng, m: &mut Vec<Member>, parent_age: i32, first_child: Option<i32>| {
        let n = 1 + rng.weighted(&[0.35, 0.45, 0.2]);
        let mut ages: Vec<i32> = Vec::new();
        if let Some(a) = first_child {
            ages.push(a);
        }
        while ages.len() < n {
            let a = (parent_age - rng.range(24, 40) as i32).max(0);
            ages.push(a);
        }
        for a in ages {
            m.push(Member { sex: if rng.chance(0.51) { Sex::Male } else { Sex::Female }, age: a, role: Role::Child });
        }
    };
    if anchor < 20 {
        let head_age = anchor + rng.range(25, 38) as i32;
        m.push(Member { sex: Sex::Male, age: head_age, role: Role::Head });
        if rng.chance(0.88) {
            m.push(Member { sex: Sex::Female, age: head_age - rng.range(-2, 4) as i32, role: Role::Spouse });
        }
        with_children(rng, &mut m, head_age, Some(anchor));
        if rng.chance(0.08) {
            m.push(Member { sex: Sex::Female, age: head_age + rng.range(25, 33) as i32, role: Role::Elder });
        }
    } else {
        let kind = match anchor {
            20..=34 => rng.weighted(&[0.55, 0.15, 0.30, 0.0]),
            35..=59 => rng.weighted(&[0.22, 0.18, 0.55, 0.05]),
            60..=74 => rng.weighted(&[0.25, 0.55, 0.05, 0.15]),
            _ => rng.weighted(&[0.42, 0.43, 0.0, 0.15]),
        };
        let sex = male(rng);
        m.push(Member { sex, age: anchor, role: Role::Head });
        match kind {
            0 => {}
            1 | 2 => {
                let other = if sex == Sex::Male { Sex::Female } else { Sex::Male };
                m.push(Member { sex: other, age: (anchor + rng.range(-4, 4) as i32).max(20), role: Role::Spouse });
                if kind == 2 {
                    with_children(rng, &mut m, anchor, None);
                }
            }
            _ => {
                // Three generations: the anchor lives with an adult child and grandchildren.
                let child_age = (anchor - rng.range(26, 34) as i32).max(20);
                m.push(Member { sex: Sex::Male, age: child_age, role: Role::Spouse });
                m.push(Member { sex: Sex::Female, age: child_age - rng.range(0, 3) as i32, role: Role::Spouse });
                with_children(rng, &mut m, child_age, None);
                m[0].role = Role::Elder;
                m[1].role = Role::Head;
            }
        }
    }
    m
}

fn draw_address(rng: &mut Rng, region: &Region, area: Option<u16>, from: Date) -> Address {
    let area_idx = match area {
        Some(a) => a,
        None => {
            let w: Vec<f64> = region.areas.iter().map(|a| f64::from(a.weight)).collect();
            rng.weighted(&w) as u16
        }
    };
    let a = &region.areas[area_idx as usize];
    let cw: Vec<f64> = a.cities.iter().map(|c| f64::from(c.weight)).collect();
    let city: &City = &a.cities[rng.weighted(&cw)];
    let t = rng.index(TOWNS.len());
    let mut block = format!("{}-{}-{}", rng.range(1, 5), rng.range(1, 28), rng.range(1, 25));
    if rng.chance(0.35) {
        const BUILDINGS: &[&str] = &["コーポ", "ハイツ", "メゾン", "グランドパレス", "サンハイム", "レジデンス"];
        const SUFFIX: &[&str] = &["緑", "桜", "青葉", "富士見", "中央", "弐番館"];
        block = format!(
            "{} {}{}{}",
            block,
            rng.pick(BUILDINGS),
            rng.pick(SUFFIX),
            rng.range(1, 8) * 100 + rng.range(1, 12)
        );
    }
    Address {
        from,
        prefecture: a.prefecture,
        area: area_idx,
        city: city.name,
        town: TOWNS[t],
        block,
        postal_code: geo::postal_code(city, t),
        area_code: city.area_code,
    }
}

fn landline(rng: &mut Rng, area_code: &str) -> String {
    match area_code.len() {
        3 => format!("{}-{}-{:04}", area_code, rng.range(200, 999), rng.range(0, 9999)),
        4 => format!("{}-{:02}-{:04}", area_code, rng.range(20, 99), rng.range(0, 9999)),
        _ => format!("{}-{}-{:04}", area_code, rng.range(2, 9), rng.range(0, 9999)),
    }
}

fn mobile(rng: &mut Rng) -> String {
    format!("{}-{:04}-{:04}", rng.pick(&["090", "080", "070"]), rng.range(1000, 9999), rng.range(0, 9999))
}

fn random_birth(rng: &mut Rng, age: i32, on: Date) -> Date {
    // Born `age` years before `on`, on a random day of that year of life.
    let latest = crate::dates::birthday(on, -age);
    add_days(latest, -rng.range(0, 364))
}

/// Employment-based insurance of a principal: the insurer and its card numbers.
struct Plan {
    kind: InsurerKind,
    insurer: u32,
    symbol: String,
    number: String,
}

fn employee_plan(rng: &mut Rng, region: &Region, prefecture: u8) -> Plan {
    let kind = [InsurerKind::Kyokai, InsurerKind::Kumiai, InsurerKind::Kyosai][rng.weighted(&[0.58, 0.30, 0.12])];
    let list = region.insurers_of(kind, prefecture, None);
    let insurer = list.get(rng.index(list.len())).map(|i| i.index).unwrap_or(0);
    let (symbol, number) = match kind {
        InsurerKind::Kyokai => (format!("{}", rng.range(1_000_000, 99_999_999)), format!("{}", rng.range(1, 9999))),
        InsurerKind::Kumiai => (format!("{}", rng.range(1, 999)), format!("{}", rng.range(1, 99_999))),
        _ => (format!("{}", rng.range(10, 99_999)), format!("{}", rng.range(1, 999_999))),
    };
    Plan { kind, insurer, symbol, number }
}

fn kokuho_plan(rng: &mut Rng, region: &Region, addr: &Address) -> Plan {
    let list = region.insurers_of(InsurerKind::Kokuho, addr.prefecture, Some(addr.city));
    let insurer = list.first().map(|i| i.index).unwrap_or(0);
    // 国保の記号 are often kana or short codes; numbers are up to 7 digits.
    let symbol = rng.pick(&["01", "02", "05", "11", "21", "あ", "い", "う"]).to_string();
    Plan { kind: InsurerKind::Kokuho, insurer, symbol, number: format!("{}", rng.range(1, 9_999_999)) }
}

fn koki_plan(rng: &mut Rng, region: &Region, addr: &Address) -> Plan {
    let list = region.insurers_of(InsurerKind::Koki, addr.prefecture, Some(addr.city));
    let insurer = list.first().map(|i| i.index).unwrap_or(0);
    Plan {
        kind: InsurerKind::Koki,
        insurer,
        symbol: String::new(),
        number: format!("{:08}", rng.range(10_000_000, 99_999_999)),
    }
}

fn to_insurance(region: &Region, plan: &Plan, branch: u8, from: Date, principal: bool) -> Option<Insurance> {
    let ins = region.insurers.get(plan.insurer as usize)?;
    let id = InsuranceId::new(ins.number, &plan.symbol, &plan.number, Some(branch)).ok()?;
    let _ = plan.kind;
    Some(Insurance { from, insurer: plan.insurer, id, principal })
}

/// Generates the identities of block `block` (persons `block*BLOCK .. (block+1)*BLOCK`, capped
/// at `limit`).
pub(crate) fn block_identities(region: &Region, seed: u64, window: &Window, block: u64, limit: u64) -> Vec<Identity> {
    let first = block * BLOCK;
    let last = ((block + 1) * BLOCK).min(limit);
    let mut rng = Rng::new(seed, &[0x5045_5253_4f4e, block]);
    let mut out: Vec<Identity> = Vec::new();
    let mut household_no = 0u64;
    while first + (out.len() as u64) < last {
        let members = household_plan(&mut rng);
        let hh = key(seed, &[block, household_no]) % 1_000_000_000_000;
        household_no += 1;
        // Household surname, its legal variant, address, moves and landline.
        let (mut fam, fam_kana) = names::draw_surname(&mut rng);
        if rng.chance(0.12)
            && let Some(v) = names::variant_of(&fam, &mut rng)
        {
            fam = v;
        }
        let mut addresses = vec![draw_address(&mut rng, region, None, Date::MIN)];
        let head_age = members.iter().find(|m| m.role == Role::Head).map(|m| m.age).unwrap_or(40);
        let move_rate: f64 = if head_age < 40 { 0.09 } else { 0.035 };
        let years = window.days() as f64 / 365.0;
        if rng.chance(1.0 - (1.0 - move_rate).powf(years)) {
            let when = window.random_day(&mut rng);
            let cur = addresses[0].area;
            let dest = match rng.weighted(&[0.5, 0.3, 0.2]) {
                0 => Some(cur),
                1 => {
                    let p = region.areas[cur as usize].prefecture;
                    let same: Vec<u16> = region.areas.iter().filter(|a| a.prefecture == p).map(|a| a.index).collect();
                    Some(*rng.pick(&same))
                }
                _ => None,
            };
            addresses.push(draw_address(&mut rng, region, dest, when));
        }
        let home_phone = if rng.chance(if head_age >= 60 { 0.85 } else { 0.45 }) {
            Some(landline(&mut rng, addresses[0].area_code))
        } else {
            None
        };
        // Principal insurance plan of the head (employee or 国保), with a job change or retirement.
        let head_employed = head_age < 65 && rng.chance(if head_age < 60 { 0.85 } else { 0.5 });
        let mut head_plans: Vec<(Date, Plan)> = Vec::new();
        if head_employed {
            head_plans.push((Date::MIN, employee_plan(&mut rng, region, addresses[0].prefecture)));
            if rng.chance(0.03 * years) {
                let when = window.random_day(&mut rng);
                head_plans.push((when, employee_plan(&mut rng, region, addresses[0].prefecture)));
            }
        } else {
            head_plans.push((Date::MIN, kokuho_plan(&mut rng, region, &addresses[0])));
        }
        let twin_pair = if rng.chance(0.03) { Some(()) } else { None };
        let mut child_seen: Option<(u64, Date)> = None;
        for (mi, m) in members.iter().enumerate() {
            let index = first + out.len() as u64;
            if index >= last {
                break;
            }
            let mut prng = Rng::new(seed, &[0x4944_454e, index]);
            let mut birth = random_birth(&mut prng, m.age, window.start);
            let mut twin_of = None;
            if m.role == Role::Child {
                if let (Some(()), Some((other, b))) = (twin_pair, child_seen)
                    && twin_of.is_none()
                    && out.iter().all(|o: &Identity| o.twin_of != Some(other))
                {
                    birth = b;
                    twin_of = Some(other);
                }
                child_seen = child_seen.or(Some((index, birth)));
            }
            let (g, form) = names::draw_given(&mut prng, m.sex == Sex::Female, birth.year());
            let mut names_v = vec![NamePeriod {
                from: Date::MIN,
                family: fam.clone(),
                given: g.forms[form].to_owned(),
                family_kana: fam_kana.clone(),
                given_kana: g.kana.to_owned(),
            }];
            let mut addrs = addresses.clone();
            // Married-name change: a woman in her twenties or thirties marries and moves out.
            let age0 = age_on(birth, window.start);
            let mut married_on = None;
            if m.sex == Sex::Female
                && (m.role == Role::Child || m.role == Role::Head)
                && (21..=37).contains(&age0)
                && prng.chance(0.035 * years)
            {
                let when = window.random_day(&mut prng);
                let (nf, nk) = names::draw_surname(&mut prng);
                names_v.push(NamePeriod {
                    from: when,
                    family: nf,
                    given: names_v[0].given.clone(),
                    family_kana: nk,
                    given_kana: names_v[0].given_kana.clone(),
                });
                let cur = addrs.iter().rev().find(|a| a.from <= when).map(|a| a.area).unwrap_or(addrs[0].area);
                addrs.retain(|a| a.from <= when);
                let dest = if prng.chance(0.7) { Some(cur) } else { None };
                addrs.push(draw_address(&mut prng, region, dest, when));
                married_on = Some(when);
            }
            let mobile_p = if m.age >= 15 { if m.age >= 75 { 0.6 } else { 0.92 } } else { 0.0 };
            let mob = if prng.chance(mobile_p) { Some(mobile(&mut prng)) } else { None };
            // Insurance: own employment, dependent of the head, 国保 and 後期高齢者 at 75.
            let mut ins: Vec<Insurance> = Vec::new();
            let own_employed = match m.role {
                Role::Head => head_employed,
                Role::Spouse => m.age < 60 && prng.chance(0.45),
                Role::Child => m.age >= 22 && prng.chance(0.8),
                Role::Elder => false,
            };
            let branch = mi as u8;
            if own_employed && m.role != Role::Head {
                let p = employee_plan(&mut prng, region, addrs[0].prefecture);
                ins.extend(to_insurance(region, &p, 0, Date::MIN, true));
            } else if m.role == Role::Elder || (!head_employed && m.role != Role::Head) {
                let p = kokuho_plan(&mut prng, region, &addrs[0]);
                ins.extend(to_insurance(region, &p, 0, Date::MIN, true));
            } else {
                for (from, p) in &head_plans {
                    let principal = m.role == Role::Head;
                    ins.extend(to_insurance(region, p, if principal { 0 } else { branch }, *from, principal));
                }
            }
            // Retirement of an employed principal at 65 → 国保.
            if ins
                .last()
                .is_some_and(|i| i.principal && region.insurers[i.insurer as usize].kind != InsurerKind::Kokuho)
            {
                let r65 = birthday(birth, 65);
                if r65 >= window.start && r65 < window.end && prng.chance(0.7) {
                    let addr = addrs.iter().rev().find(|a| a.from <= r65).unwrap_or(&addrs[0]).clone();
                    let p = kokuho_plan(&mut prng, region, &addr);
                    ins.extend(to_insurance(region, &p, 0, r65, true));
                }
            }
            // Marriage: a dependent of the husband's employee plan, unless employed.
            if let Some(when) = married_on
                && (!own_employed || prng.chance(0.3))
            {
                let p = employee_plan(&mut prng, region, addrs.last().map(|a| a.prefecture).unwrap_or(22));
                ins.extend(to_insurance(region, &p, 1, when, false));
            }
            // A move to another municipality changes a 国保 number.
            for a in addrs.iter().skip(1) {
                if let Some(cur) = ins.iter().rev().find(|i| i.from <= a.from)
                    && region.insurers[cur.insurer as usize].kind == InsurerKind::Kokuho
                    && region.insurers[cur.insurer as usize].city != Some(a.city)
                {
                    let p = kokuho_plan(&mut prng, region, a);
                    ins.extend(to_insurance(region, &p, 0, a.from, true));
                }
            }
            // 75: 後期高齢者医療 from the birthday.
            let b75 = birthday(birth, 75);
            if b75 < window.end {
                let addr = addrs.iter().rev().find(|a| a.from <= b75.max(window.start)).unwrap_or(&addrs[0]).clone();
                let p = koki_plan(&mut prng, region, &addr);
                ins.retain(|i| i.from < b75);
                ins.extend(to_insurance(region, &p, 0, if b75 < window.start { Date::MIN } else { b75 }, true));
            }
            ins.sort_by_key(|i| i.from);
            if ins.is_empty() {
                let p = kokuho_plan(&mut prng, region, &addrs[0]);
                ins.extend(to_insurance(region, &p, 0, Date::MIN, true));
            }
            out.push(Identity {
                index,
                household: hh,
                sex: m.sex,
                birth,
                names: names_v,
                addresses: addrs,
                home_phone: home_phone.clone(),
                mobile: mob,
                insurance: ins,
                twin_of,
                doppelganger_of: None,
            });
        }
        // Set the twin link both ways.
        let links: Vec<(u64, u64)> = out.iter().filter_map(|p| p.twin_of.map(|o| (o, p.index))).collect();
        for (a, b) in links {
            if let Some(p) = out.iter_mut().find(|p| p.index == a) {
                p.twin_of = Some(b);
            }
        }
    }
    // Rarely, a stranger with the same name and birth date as someone else in the block
    // (a hard negative for the MPI): copy name and birthday, keep everything else.
    if out.len() >= 2 && rng.chance(0.02) {
        let (a, b) = (0usize, out.len() - 1);
        // Only between people well under 75 so the insurance rules stay true for the copy.
        let young = |p: &Identity| age_on(p.birth, window.end) < 70;
        if out[a].household != out[b].household && out[a].sex == out[b].sex && young(&out[a]) && young(&out[b]) {
            let (names_a, birth_a, idx_a) = (out[a].names[0].clone(), out[a].birth, out[a].index);
            let nb = &mut out[b];
            nb.names = vec![NamePeriod { from: Date::MIN, ..names_a }];
            nb.birth = birth_a;
            nb.doppelganger_of = Some(idx_a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::region;

    #[test]
    fn blocks_are_deterministic_and_sized() {
        let r = region(5, 2000);
        let w = Window::new(2023, 3);
        let a = block_identities(&r, 5, &w, 3, 1000);
        let b = block_identities(&r, 5, &w, 3, 1000);
        assert_eq!(a.len(), BLOCK as usize);
        assert_eq!(a.iter().map(|p| p.index).collect::<Vec<_>>(), (24..32).collect::<Vec<_>>());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.names, y.names);
            assert_eq!(x.birth, y.birth);
            assert_eq!(x.insurance, y.insurance);
        }
        assert_eq!(block_identities(&r, 5, &w, 0, 5).len(), 5);
    }

    #[test]
    fn age_pyramid_and_insurance_rules_hold() {
        let r = region(5, 20_000);
        let w = Window::new(2023, 3);
        let people: Vec<Identity> = (0..1500).flat_map(|b| block_identities(&r, 5, &w, b, 12_000)).collect();
        let n = people.len() as f64;
        let old = people.iter().filter(|p| p.age_on(w.start) >= 65).count() as f64 / n;
        let young = people.iter().filter(|p| p.age_on(w.start) < 15).count() as f64 / n;
        assert!((0.18..0.40).contains(&old), "65+ share {old}");
        assert!((0.06..0.20).contains(&young), "under-15 share {young}");
        for p in &people {
            // Everyone 75 or older at the end is in 後期高齢者医療 then.
            let last = add_days(w.end, -1);
            if p.age_on(last) >= 75 {
                assert!(p.insurance_on(last).id.insurer().is_late_elderly(), "{:?}", p.insurance);
            }
            assert!(p.insurance.iter().all(|i| i.id.insurer().has_valid_check_digit()));
        }
        assert!(people.iter().any(|p| p.twin_of.is_some()));
        assert!(people.iter().any(|p| p.names.len() > 1), "a married-name change");
        assert!(people.iter().any(|p| p.addresses.len() > 1), "a move");
        assert!(people.iter().any(|p| p.doppelganger_of.is_some()));
    }
}
