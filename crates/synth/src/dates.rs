//! Small date helpers over `time::Date` (the generator works in whole days, Japan time).

use time::{Date, Duration, Month};

/// `d + n` days.
pub(crate) fn add_days(d: Date, n: i64) -> Date {
    d.checked_add(Duration::days(n)).unwrap_or(d)
}

/// Days from `a` to `b` (negative if `b` is earlier).
pub(crate) fn days_between(a: Date, b: Date) -> i64 {
    (b - a).whole_days()
}

/// January 1st of a year.
pub(crate) fn jan1(year: i32) -> Date {
    Date::from_calendar_date(year, Month::January, 1).unwrap_or(Date::MIN)
}

/// A date from parts, clamping the day to the month's length.
pub(crate) fn ymd(year: i32, month: u8, day: u8) -> Option<Date> {
    let m = Month::try_from(month).ok()?;
    let last = time::util::days_in_month(m, year);
    Date::from_calendar_date(year, m, day.min(last).max(1)).ok()
}

/// Age in whole years on `on` for someone born on `birth`.
pub(crate) fn age_on(birth: Date, on: Date) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
        age -= 1;
    }
    age
}

/// The date on which someone born on `birth` turns `years` (29 Feb → 1 Mar).
pub(crate) fn birthday(birth: Date, years: i32) -> Date {
    Date::from_calendar_date(birth.year() + years, birth.month(), birth.day())
        .unwrap_or_else(|_| ymd(birth.year() + years, 3, 1).unwrap_or(birth))
}

/// `YYYYMMDD`.
pub(crate) fn compact(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day())
}

/// `YYYY-MM-DD`.
pub(crate) fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// `YYYYMM` as a number (for month keys).
pub(crate) fn month_key(d: Date) -> u32 {
    d.year() as u32 * 100 + d.month() as u32
}
