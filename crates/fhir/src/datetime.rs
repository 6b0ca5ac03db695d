//! FHIR `date`, `dateTime` and `instant` values as ranges of UTC epoch milliseconds.
//!
//! A FHIR date has a precision: `2024` means the whole year, `2024-05-01` the whole day. Search
//! compares ranges, so every value becomes `[lo, hi]` (inclusive, in milliseconds). Values
//! without a time zone (dates, and the occasional dateTime a sender writes without one) are read
//! in Japan Standard Time (+09:00): Musubi's senders are Japanese facilities, and a clinical date
//! of "2024-05-01" means that day in Japan.

use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Japan Standard Time, the zone assumed for values without one.
pub const JST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// An inclusive range of UTC epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateRange {
    /// First millisecond of the value.
    pub lo: i64,
    /// Last millisecond of the value.
    pub hi: i64,
}

impl DateRange {
    /// The whole time line (an open Period).
    pub const ALL: DateRange = DateRange { lo: i64::MIN / 2, hi: i64::MAX / 2 };
}

/// Why a date could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid FHIR date/time {0:?}")]
pub struct DateError(pub String);

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a FHIR `date`, `dateTime` or `instant` into its range.
pub fn parse_range(s: &str) -> Result<DateRange, DateError> {
    let err = || DateError(s.to_owned());
    let (date_part, time_part) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut it = date_part.split('-');
    let y = it.next().filter(|p| p.len() == 4).and_then(num).ok_or_else(err)? as i32;
    let m = match it.next() {
        Some(p) if p.len() == 2 => Some(num(p).ok_or_else(err)?),
        Some(_) => return Err(err()),
        None => None,
    };
    let d = match it.next() {
        Some(p) if p.len() == 2 => Some(num(p).ok_or_else(err)?),
        Some(_) => return Err(err()),
        None => None,
    };
    if it.next().is_some() {
        return Err(err());
    }
    let month = |m: u32| Month::try_from(m as u8).map_err(|_| err());
    match (m, d, time_part) {
        (None, None, None) => {
            let lo = Date::from_calendar_date(y, Month::January, 1).map_err(|_| err())?;
            let hi = Date::from_calendar_date(y + 1, Month::January, 1).map_err(|_| err())?;
            Ok(day_span(lo, hi))
        }
        (Some(m), None, None) => {
            let lo = Date::from_calendar_date(y, month(m)?, 1).map_err(|_| err())?;
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let hi = Date::from_calendar_date(ny, month(nm)?, 1).map_err(|_| err())?;
            Ok(day_span(lo, hi))
        }
        (Some(m), Some(d), None) => {
            let lo = Date::from_calendar_date(y, month(m)?, d as u8).map_err(|_| err())?;
            let hi = lo.next_day().ok_or_else(err)?;
            Ok(day_span(lo, hi))
        }
        (Some(m), Some(d), Some(t)) => {
            let date = Date::from_calendar_date(y, month(m)?, d as u8).map_err(|_| err())?;
            parse_time(date, t).ok_or_else(err)
        }
        _ => Err(err()),
    }
}

fn day_span(lo: Date, hi_exclusive: Date) -> DateRange {
    let ms = |d: Date| d.midnight().assume_offset(JST).unix_timestamp() * 1000;
    DateRange { lo: ms(lo), hi: ms(hi_exclusive) - 1 }
}

/// `hh:mm[:ss[.fff]][Z|±hh:mm]` on `date`.
fn parse_time(date: Date, t: &str) -> Option<DateRange> {
    let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
        (c, UtcOffset::UTC)
    } else if let Some(pos) = t.rfind(['+', '-']) {
        let (c, z) = t.split_at(pos);
        let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z.get(1..)?.split_once(':')?;
        // Checked: an out-of-range offset ("-128:00") is an error, not an overflow.
        let (zh, zm) = (i8::try_from(num(zh)?).ok()?, i8::try_from(num(zm)?).ok()?);
        (c, UtcOffset::from_hms(sign.checked_mul(zh)?, sign.checked_mul(zm)?, 0).ok()?)
    } else {
        (t, JST)
    };
    let mut parts = clock.split(':');
    // Checked: "256" is not hour 0.
    let h = u8::try_from(num(parts.next()?)?).ok()?;
    let mi = u8::try_from(num(parts.next()?)?).ok()?;
    let (sec, frac_ms, precision_ms) = match parts.next() {
        None => (0u8, 0u32, 60_000i64),
        Some(s) => {
            let (whole, frac) = match s.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (s, None),
            };
            let sec = u8::try_from(num(whole)?).ok()?;
            match frac {
                None => (sec, 0, 1000),
                Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                    let mut digits: String = f.chars().take(3).collect();
                    while digits.len() < 3 {
                        digits.push('0');
                    }
                    (sec, num(&digits)?, 1)
                }
                Some(_) => return None,
            }
        }
    };
    if parts.next().is_some() {
        return None;
    }
    let sec = sec.min(59); // a leap second is read as :59
    let pdt = date.with_hms_milli(h, mi, sec, frac_ms as u16).ok()?;
    let lo = pdt.assume_offset(offset).unix_timestamp_nanos() / 1_000_000;
    let lo = i64::try_from(lo).ok()?;
    Some(DateRange { lo, hi: lo + precision_ms - 1 })
}

/// The calendar date (in JST) of an epoch-millisecond instant.
pub fn jst_date(ms: i64) -> Option<Date> {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(dt.to_offset(JST).date())
}

/// Formats epoch milliseconds as a FHIR `instant` in UTC with milliseconds
/// (`2024-05-01T00:00:00.000Z`).
pub fn format_instant(ms: i64) -> String {
    let dt =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn precisions() {
        let day = parse_range("2024-05-01").unwrap();
        assert_eq!(day.hi - day.lo + 1, 86_400_000);
        assert_eq!(format_instant(day.lo), "2024-04-30T15:00:00.000Z");
        let month = parse_range("2024-02").unwrap();
        assert_eq!((month.hi - month.lo + 1) / 86_400_000, 29);
        let year = parse_range("2023").unwrap();
        assert_eq!((year.hi - year.lo + 1) / 86_400_000, 365);
        let dec = parse_range("2023-12").unwrap();
        assert_eq!(format_instant(dec.hi + 1), "2023-12-31T15:00:00.000Z");
    }

    #[test]
    fn out_of_range_time_parts_are_errors_not_overflows() {
        for bad in ["2024-01-01T10:00-128:00", "2024-01-01T10:00+255:255", "2024-01-01T256:00", "2024-01-01T10:256:00"]
        {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
        assert!(parse_range("2024-01-01T10:00-12:00").is_ok());
    }

    #[test]
    fn times_and_zones() {
        let a = parse_range("2021-07-05T11:19:41+09:00").unwrap();
        assert_eq!(format_instant(a.lo), "2021-07-05T02:19:41.000Z");
        assert_eq!(a.hi - a.lo, 999);
        let b = parse_range("2021-07-05T02:19:41Z").unwrap();
        assert_eq!(a.lo, b.lo);
        let c = parse_range("2021-07-05T19:28:23.000+09:00").unwrap();
        assert_eq!(c.hi, c.lo);
        let no_zone = parse_range("2021-07-05T11:19:41").unwrap();
        assert_eq!(no_zone.lo, a.lo);
        let minus = parse_range("2021-07-05T00:00:00-05:00").unwrap();
        assert_eq!(format_instant(minus.lo), "2021-07-05T05:00:00.000Z");
        assert_eq!(parse_range("2021-07-05").unwrap().lo, parse_range("2021-07-04T15:00:00Z").unwrap().lo);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "20240501",
            "2024-5-01",
            "2024-02-30",
            "2024-13",
            "2024-05-01T25:00:00Z",
            "2024-05-01Tab",
            "abcd",
            "2024-05-01-01",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jst_date_of_instant() {
        let r = parse_range("2024-05-01T23:30:00+09:00").unwrap();
        assert_eq!(jst_date(r.lo).unwrap().to_string(), "2024-05-01");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_range(&s);
        }

        #[test]
        fn instants_roundtrip(ms in 0i64..4_102_444_800_000) {
            let s = format_instant(ms);
            let r = parse_range(&s).unwrap();
            prop_assert_eq!(r.lo, ms);
            prop_assert_eq!(r.hi, ms);
        }
    }
}
