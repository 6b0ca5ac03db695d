//! Receipt dates in both editions: 西暦 `YYYYMM` / `YYYYMMDD` and 和暦 `GYYMM` / `GYYMMDD`
//! (G: 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和). The form is told by the length.

/// The first year of each era, by 年号区分.
fn era_start(g: u8) -> Option<i32> {
    match g {
        1 => Some(1868),
        2 => Some(1912),
        3 => Some(1926),
        4 => Some(1989),
        5 => Some(2019),
        _ => None,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A year and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    /// 西暦 year.
    pub year: i32,
    /// 1–12.
    pub month: u8,
}

impl YearMonth {
    /// `2024-05`, the FHIR partial date.
    pub fn fhir(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// `202405`.
    pub fn compact(&self) -> String {
        format!("{:04}{:02}", self.year, self.month)
    }

    /// The number of days in the month.
    pub fn days(&self) -> u8 {
        time::Month::try_from(self.month).map(|m| time::util::days_in_month(m, self.year)).unwrap_or(31)
    }

    /// The FHIR date of a day in this month, if the day exists.
    pub fn day(&self, d: u8) -> Option<String> {
        (d >= 1 && d <= self.days()).then(|| format!("{:04}-{:02}-{:02}", self.year, self.month, d))
    }
}

/// Parses `YYYYMM` or `GYYMM`.
pub fn year_month(s: &str) -> Option<YearMonth> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    let (year, month) = match s.len() {
        6 => (i32::try_from(digits(&s[..4])?).ok()?, digits(&s[4..6])?),
        5 => {
            let base = era_start(u8::try_from(digits(&s[..1])?).ok()?)?;
            let yy = i32::try_from(digits(&s[1..3])?).ok()?;
            if yy == 0 {
                return None;
            }
            (base + yy - 1, digits(&s[3..5])?)
        }
        _ => return None,
    };
    let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    (1800..=2200).contains(&year).then_some(YearMonth { year, month })
}

/// Parses `YYYYMMDD` or `GYYMMDD` to a FHIR date (`2024-05-01`).
pub fn date(s: &str) -> Option<String> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    let (ym, d) = match s.len() {
        8 => (year_month(&s[..6])?, digits(&s[6..8])?),
        7 => (year_month(&s[..5])?, digits(&s[5..7])?),
        _ => return None,
    };
    ym.day(u8::try_from(d).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_editions() {
        assert_eq!(year_month("202405").unwrap().fhir(), "2024-05");
        assert_eq!(year_month("43012").unwrap().fhir(), "2018-12");
        assert_eq!(year_month("50105").unwrap().fhir(), "2019-05");
        assert_eq!(date("20240531").as_deref(), Some("2024-05-31"));
        assert_eq!(date("3230405").as_deref(), Some("1948-04-05"));
        assert_eq!(date("4300229"), None);
        assert_eq!(date("4280229").as_deref(), Some("2016-02-29"));
        assert_eq!(date("9230405"), None);
        assert_eq!(date("202405"), None);
        assert_eq!(year_month("202413"), None);
        assert_eq!(year_month("40012"), None);
        assert_eq!(year_month("２０２４０５"), None);
    }
}
