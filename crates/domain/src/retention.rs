//! How long a record is kept, from the rules of the national sharing service (DESIGN.md).
//!
//! | class | rule |
//! |---|---|
//! | 傷病名, 感染症, アレルギー (both), 健康診断結果報告書 | 5 years from the clinical date |
//! | 検査 | 1 year, but the last 3 results of an item are kept regardless |
//! | 処方 | 100 days, but the last 3 are kept regardless |
//! | 診療情報提供書, 退院時サマリー | 6 months (and about a week after the addressee receives it) |
//! | anything flagged `LTS` | kept |
//! | everything else | kept by the network's own policy (no end here) |
//!
//! The base date is the clinical date of the record; when a record has none, the date it was
//! received. For 診療情報提供書 and 退院時サマリー it is always the date received (the service
//! applies this in `prepare`).

use time::{Date, Duration, Month};

use crate::{Flags, ResourceClass};

/// The retention decision for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Kept until the network's own policy removes it.
    Kept,
    /// Removed after this date.
    Until(Date),
    /// Removed after this date unless it is among the last `keep_last` of its item for the person.
    UntilUnlessLatest {
        /// The end date.
        until: Date,
        /// How many of the most recent records of the same item survive the end date.
        keep_last: u8,
    },
}

impl Retention {
    /// The end date, if any (for the `retention_end` column).
    pub fn end(self) -> Option<Date> {
        match self {
            Retention::Kept => None,
            Retention::Until(d) | Retention::UntilUnlessLatest { until: d, .. } => Some(d),
        }
    }
}

/// The retention of a record of `class` with the given base date and flags.
pub fn retention(class: ResourceClass, base: Date, flags: Flags) -> Retention {
    if flags.contains(Flags::LTS) {
        return Retention::Kept;
    }
    match class {
        ResourceClass::Diagnosis
        | ResourceClass::Infection
        | ResourceClass::DrugAllergy
        | ResourceClass::OtherAllergy
        | ResourceClass::Checkup => Retention::Until(add_years(base, 5)),
        ResourceClass::Lab => Retention::UntilUnlessLatest { until: add_years(base, 1), keep_last: 3 },
        ResourceClass::Prescription => {
            Retention::UntilUnlessLatest { until: base.saturating_add(Duration::days(100)), keep_last: 3 }
        }
        ResourceClass::Referral | ResourceClass::DischargeSummary => Retention::Until(add_months(base, 6)),
        _ => Retention::Kept,
    }
}

/// Adds whole years; 29 February becomes 28 February in a common year.
pub fn add_years(d: Date, years: i32) -> Date {
    let y = d.year() + years;
    Date::from_calendar_date(y, d.month(), d.day())
        .or_else(|_| Date::from_calendar_date(y, d.month(), d.day() - 1))
        .unwrap_or(d)
}

/// Adds whole months, clamping the day to the end of the target month.
pub fn add_months(d: Date, months: u32) -> Date {
    let total = d.year() * 12 + (d.month() as i32 - 1) + months as i32;
    let (y, m0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = Month::try_from((m0 + 1) as u8).unwrap_or(Month::January);
    let mut day = d.day();
    loop {
        if let Ok(nd) = Date::from_calendar_date(y, month, day) {
            return nd;
        }
        if day <= 28 {
            return d;
        }
        day -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn five_year_items() {
        for c in [
            ResourceClass::Diagnosis,
            ResourceClass::Infection,
            ResourceClass::DrugAllergy,
            ResourceClass::OtherAllergy,
            ResourceClass::Checkup,
        ] {
            assert_eq!(retention(c, date!(2024 - 02 - 29), Flags::empty()), Retention::Until(date!(2029 - 02 - 28)));
        }
    }

    #[test]
    fn lts_keeps() {
        assert_eq!(retention(ResourceClass::Diagnosis, date!(2024 - 01 - 01), Flags::LTS), Retention::Kept);
    }

    #[test]
    fn labs_and_prescriptions_keep_the_last_three() {
        assert_eq!(
            retention(ResourceClass::Lab, date!(2024 - 03 - 01), Flags::empty()),
            Retention::UntilUnlessLatest { until: date!(2025 - 03 - 01), keep_last: 3 }
        );
        assert_eq!(
            retention(ResourceClass::Prescription, date!(2024 - 01 - 01), Flags::empty()),
            Retention::UntilUnlessLatest { until: date!(2024 - 04 - 10), keep_last: 3 }
        );
    }

    #[test]
    fn referrals_six_months() {
        assert_eq!(
            retention(ResourceClass::Referral, date!(2024 - 08 - 31), Flags::empty()),
            Retention::Until(date!(2025 - 02 - 28))
        );
    }

    #[test]
    fn others_are_kept() {
        assert_eq!(retention(ResourceClass::Other, date!(2024 - 01 - 01), Flags::empty()).end(), None);
    }
}
