//! The business calendar every due date is computed with: weekends, holidays computed
//! by rule or listed as data, business hours and a timezone.
//!
//! A calendar file (`data/calendars/*.toml`) may name a rule (`rule = "us-federal"`:
//! the US federal holidays, computed for any year, [`crate::federal`]) and lists the
//! plan's own days as data, so a plan adds its days or another jurisdiction's calendar
//! without a release, and the shipped calendar does not run out.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::Deserialize;

/// The calendar shipped with the project.
const US_FEDERAL_TOML: &str = include_str!("../../../data/calendars/us-federal.toml");

/// Why a calendar file was rejected. Every message names the source, and the entry
/// where there is one, so a data fix is quick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The text is not TOML, or not in the calendar's shape (missing or unknown keys).
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    /// The timezone is not an IANA name such as `America/New_York`.
    #[error("{source_name}: unknown timezone {timezone:?}")]
    UnknownTimezone {
        source_name: String,
        timezone: String,
    },
    /// A top-level setting is missing or out of range.
    #[error("{source_name}: {field}: {message}")]
    Field {
        source_name: String,
        field: &'static str,
        message: String,
    },
    /// One holiday entry is malformed; `index` counts from 0 in file order.
    #[error("{source_name}: holidays[{index}] ({name:?}): {message}")]
    Holiday {
        source_name: String,
        index: usize,
        name: String,
        message: String,
    },
    /// The file names a holiday rule this build does not know.
    #[error("{source_name}: rule: unknown holiday rule {rule:?} (known: \"us-federal\")")]
    UnknownRule { source_name: String, rule: String },
    /// A date outside the years the calendar's holidays are known for: a due date
    /// computed with it would count every holiday as a business day.
    #[error(
        "calendar {calendar:?} covers {first_year} to {}, not {date}: add the plan's days for that year (last_year)",
        last_year.map_or_else(|| "any later year".to_owned(), |y| y.to_string())
    )]
    NotCovered {
        calendar: String,
        date: NaiveDate,
        first_year: i32,
        last_year: Option<i32>,
    },
    /// Two entries share a date, usually a copy-paste slip in the data.
    #[error(
        "{source_name}: holidays[{index}] ({name:?}): duplicate holiday on {date}, already listed as {first:?}"
    )]
    DuplicateHoliday {
        source_name: String,
        index: usize,
        name: String,
        date: NaiveDate,
        first: String,
    },
}

/// The file format, before checking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    id: String,
    name: String,
    timezone: String,
    business_day_start: String,
    business_day_end: String,
    /// Holidays computed by rule for every year (`"us-federal"`), besides those listed.
    rule: Option<String>,
    /// First and last year the holidays are complete for. Default: the years of the
    /// first and last listed holiday; with a rule, the rule's first year, and no last
    /// year unless the file lists days of its own (then the year of the last one).
    first_year: Option<i32>,
    last_year: Option<i32>,
    #[serde(default)]
    holidays: Vec<HolidayEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayEntry {
    /// A TOML date (`2026-01-01`) or a string holding one.
    date: toml::Value,
    name: String,
}

/// Holidays computed rather than listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HolidayRule {
    /// [`crate::federal`]: the US federal holidays as federal offices observe them.
    UsFederal,
}

/// Business days (Monday to Friday, not a holiday), business hours and a timezone.
///
/// Outside the years its holidays are known for ([`BusinessCalendar::covers`]) it still
/// answers, treating every weekday without a rule holiday as a business day; callers
/// that must not guess check [`BusinessCalendar::require_cover`] first (the binaries
/// refuse to start on a calendar that does not cover this year and the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    id: String,
    name: String,
    timezone: Tz,
    day_start: NaiveTime,
    day_end: NaiveTime,
    rule: Option<HolidayRule>,
    first_year: i32,
    /// `None`: every year from `first_year` on (a rule calendar without days of its own).
    last_year: Option<i32>,
    /// The listed (plan's own) observed holiday dates and their names. Never contains a
    /// weekend day or a rule holiday, which the weekday arithmetic below relies on.
    holidays: BTreeMap<NaiveDate, String>,
}

impl BusinessCalendar {
    /// Loads and checks a calendar file. `source_name` (usually the file name) is put
    /// in every error.
    ///
    /// Rejected: unknown timezones and rules, unparsable times or dates, a business day
    /// that ends before it starts, duplicate dates (a listed day that the rule already
    /// gives included), holidays on a weekend (list the observed weekday instead), and
    /// a first year before the rule's.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, CalendarError> {
        let file: CalendarFile = toml::from_str(text).map_err(|e| CalendarError::Syntax {
            source_name: source_name.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let field_error = |field: &'static str, message: String| CalendarError::Field {
            source_name: source_name.to_owned(),
            field,
            message,
        };

        if file.id.trim().is_empty() {
            return Err(field_error("id", "must not be empty".into()));
        }
        if file.name.trim().is_empty() {
            return Err(field_error("name", "must not be empty".into()));
        }
        let timezone =
            Tz::from_str(file.timezone.trim()).map_err(|_| CalendarError::UnknownTimezone {
                source_name: source_name.to_owned(),
                timezone: file.timezone.clone(),
            })?;
        let parse_time = |field: &'static str, s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| field_error(field, format!("{s:?} is not a time such as \"17:00\"")))
        };
        let day_start = parse_time("business_day_start", &file.business_day_start)?;
        let day_end = parse_time("business_day_end", &file.business_day_end)?;
        if day_end <= day_start {
            return Err(field_error(
                "business_day_end",
                format!("must be after business_day_start ({day_start})"),
            ));
        }

        let rule = match file.rule.as_deref().map(str::trim) {
            None => None,
            Some("us-federal") => Some(HolidayRule::UsFederal),
            Some(other) => {
                return Err(CalendarError::UnknownRule {
                    source_name: source_name.to_owned(),
                    rule: other.to_owned(),
                });
            }
        };
        let mut holidays = BTreeMap::new();
        for (index, entry) in file.holidays.into_iter().enumerate() {
            let holiday_error = |message: String| CalendarError::Holiday {
                source_name: source_name.to_owned(),
                index,
                name: entry.name.clone(),
                message,
            };
            if entry.name.trim().is_empty() {
                return Err(holiday_error("name must not be empty".into()));
            }
            let date = holiday_date(&entry.date).map_err(holiday_error)?;
            if is_weekend(date) {
                return Err(holiday_error(format!(
                    "{date} is a {:?}; list the weekday the holiday is observed on",
                    date.weekday()
                )));
            }
            let first = holidays
                .get(&date)
                .cloned()
                .or_else(|| rule_holiday(rule, date).map(str::to_owned));
            if let Some(first) = first {
                return Err(CalendarError::DuplicateHoliday {
                    source_name: source_name.to_owned(),
                    index,
                    name: entry.name,
                    date,
                    first,
                });
            }
            holidays.insert(date, entry.name);
        }

        let first_holiday_year = holidays.keys().next().map(Datelike::year);
        let last_holiday_year = holidays.keys().next_back().map(Datelike::year);
        let rule_first_year = rule.map(|HolidayRule::UsFederal| crate::federal::FIRST_YEAR);
        let Some(first_year) = file.first_year.or(rule_first_year.max(first_holiday_year)) else {
            return Err(field_error(
                "first_year",
                "give first_year and last_year, or list holidays".into(),
            ));
        };
        let last_year = file.last_year.or(last_holiday_year);
        if rule.is_none() && last_year.is_none() {
            return Err(field_error(
                "last_year",
                "give last_year, or list holidays".into(),
            ));
        }
        if let Some(rule_first) = rule_first_year
            && first_year < rule_first
        {
            return Err(field_error(
                "first_year",
                format!("must not be before {rule_first}, the rule's first year"),
            ));
        }
        if let Some(last_year) = last_year
            && last_year < first_year
        {
            return Err(field_error(
                "last_year",
                format!("must not be before first_year ({first_year})"),
            ));
        }

        Ok(Self {
            id: file.id,
            name: file.name,
            timezone,
            day_start,
            day_end,
            rule,
            first_year,
            last_year,
            holidays,
        })
    }

    /// United States federal holidays by rule, every year from 1986 on, business hours
    /// 08:00 to 17:00 America/New_York: the shipped `data/calendars/us-federal.toml`.
    pub fn us_federal() -> Self {
        // The file is part of the build and checked by the tests, so failing here is a
        // packaging bug rather than a runtime condition.
        Self::from_toml("us-federal.toml", US_FEDERAL_TOML)
            .unwrap_or_else(|e| panic!("shipped calendar is invalid: {e}"))
    }

    /// The calendar's identifier, recorded next to every due date computed with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A human-readable name for listings.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timezone business days and hours are reckoned in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// When the business day starts and ends, local time.
    pub fn business_hours(&self) -> (NaiveTime, NaiveTime) {
        (self.day_start, self.day_end)
    }

    /// The holidays observed in `year` (by rule and listed), in date order.
    pub fn holidays_in(&self, year: i32) -> Vec<(NaiveDate, &str)> {
        let mut days: Vec<(NaiveDate, &str)> = self.rule_holidays_in(year);
        let listed = self
            .holidays
            .iter()
            .filter(|(d, _)| d.year() == year)
            .map(|(d, n)| (*d, n.as_str()));
        days.extend(listed);
        days.sort_by_key(|(d, _)| *d);
        days
    }

    /// The name of the holiday on `date`, if it is one.
    pub fn holiday(&self, date: NaiveDate) -> Option<&str> {
        rule_holiday(self.rule, date).or_else(|| self.holidays.get(&date).map(String::as_str))
    }

    /// Whether `date` is within the years the holidays are known for.
    pub fn covers(&self, date: NaiveDate) -> bool {
        date.year() >= self.first_year && self.last_year.is_none_or(|last| date.year() <= last)
    }

    /// `Ok` when the calendar [`covers`](Self::covers) `date`, else the error naming
    /// the years it does cover.
    pub fn require_cover(&self, date: NaiveDate) -> Result<(), CalendarError> {
        if self.covers(date) {
            return Ok(());
        }
        Err(CalendarError::NotCovered {
            calendar: self.id.clone(),
            date,
            first_year: self.first_year,
            last_year: self.last_year,
        })
    }

    /// `Ok` when the calendar covers the whole of `today`'s year and the next, so any
    /// due date a request received today can have is computed with known holidays.
    /// Checked at start.
    pub fn require_cover_from(&self, today: NaiveDate) -> Result<(), CalendarError> {
        let next_year_end = NaiveDate::from_ymd_opt(today.year() + 1, 12, 31).unwrap_or(today);
        self.require_cover(today)?;
        self.require_cover(next_year_end)
    }

    /// Monday to Friday and not a holiday.
    pub fn is_business_day(&self, d: NaiveDate) -> bool {
        !is_weekend(d) && !self.holidays.contains_key(&d) && rule_holiday(self.rule, d).is_none()
    }

    /// `d` if it is a business day, else the first business day after it.
    pub fn next_business_day_on_or_after(&self, d: NaiveDate) -> NaiveDate {
        self.add_business_days(d, 0)
    }

    /// The `n`th business day after `d`, not counting `d` itself; for `n = 0`, the
    /// next business day on or after `d`. The result is always a business day.
    ///
    /// Composition: `add_business_days(add_business_days(d, n), m) ==
    /// add_business_days(d, n + m)` whenever `n >= 1` or `d` is a business day. For a
    /// `d` that is not a business day, `add_business_days(d, 0)` and
    /// `add_business_days(d, 1)` are the same day, so there `add_business_days(
    /// add_business_days(d, 0), m) == add_business_days(d, m + 1)`.
    ///
    /// # Panics
    ///
    /// If the result is past the last date chrono can represent (tens of millions of
    /// business days ahead); see [`BusinessCalendar::checked_add_business_days`].
    pub fn add_business_days(&self, d: NaiveDate, n: u32) -> NaiveDate {
        self.checked_add_business_days(d, n)
            .expect("business day out of the representable date range")
    }

    /// [`BusinessCalendar::add_business_days`], or `None` when the result cannot be
    /// represented.
    pub fn checked_add_business_days(&self, d: NaiveDate, n: u32) -> Option<NaiveDate> {
        if n == 0 {
            let mut date = d;
            while !self.is_business_day(date) {
                date = date.succ_opt()?;
            }
            return Some(date);
        }
        // Jump over `remaining` weekdays at once, then again over however many of
        // the weekdays jumped were holidays, until a jump lands clear of them. Each
        // round's target is a weekday, and the loop only ends when it is not a
        // holiday.
        let mut date = d;
        let mut remaining = u64::from(n);
        while remaining > 0 {
            let target = add_weekdays(date, remaining)?;
            remaining = self.weekday_holidays_in(date, target);
            date = target;
        }
        Some(date)
    }

    /// Business days in `(from, to]`: after `from`, up to and including `to`. Negative
    /// when `to` is before `from`, so `business_days_between(a, b) ==
    /// -business_days_between(b, a)`.
    pub fn business_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        if to < from {
            return -self.business_days_between(to, from);
        }
        let weekdays = weekdays_before(to) + i64::from(!is_weekend(to))
            - weekdays_before(from)
            - i64::from(!is_weekend(from));
        weekdays - self.weekday_holidays_in(from, to) as i64
    }

    /// The due date for something needing `n` business days, received at `received`:
    /// the end of the business day (local `business_day_end`) of
    /// `add_business_days(local date of received, n)`, in UTC.
    ///
    /// For `n = 0` ("same business day"), a receipt during or before a business day's
    /// hours is due at that day's end; one after hours or on a non-business day is due
    /// at the end of the next business day.
    pub fn business_deadline(&self, received: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        let local = received.with_timezone(&self.timezone);
        let local_date = local.date_naive();
        let due_date = if n == 0 {
            if self.is_business_day(local_date) && local.time() < self.day_end {
                local_date
            } else {
                self.add_business_days(local_date, 1)
            }
        } else {
            self.add_business_days(local_date, n)
        };
        self.end_of_business_day(due_date)
    }

    /// The instant `date`'s business day ends, in UTC.
    ///
    /// When the local end time is ambiguous (clocks going back) the earlier instant is
    /// used, so a deadline is never later than the plan promised; when it does not
    /// exist (clocks going forward) the first valid instant after it is used.
    pub fn end_of_business_day(&self, date: NaiveDate) -> DateTime<Utc> {
        let mut local = date.and_time(self.day_end);
        loop {
            match self.timezone.from_local_datetime(&local) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.to_utc(),
                LocalResult::None => local += Duration::minutes(15),
            }
        }
    }

    /// `received + hours` in elapsed time, for regulatory ceilings counted in calendar
    /// hours (72 hours for an expedited decision) that ignore weekends and holidays.
    pub fn add_calendar_hours(&self, received: DateTime<Utc>, hours: u32) -> DateTime<Utc> {
        received + Duration::hours(i64::from(hours))
    }

    /// The rule's holidays observed in `year`.
    fn rule_holidays_in(&self, year: i32) -> Vec<(NaiveDate, &'static str)> {
        match self.rule {
            Some(HolidayRule::UsFederal) => crate::federal::observed_in(year),
            None => Vec::new(),
        }
    }

    /// Holidays in `(from, to]`. Every holiday is a weekday (the rule's by
    /// construction, listed ones checked on load), and none is both.
    fn weekday_holidays_in(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        if to <= from {
            return 0;
        }
        let listed = self
            .holidays
            .range((
                std::ops::Bound::Excluded(from),
                std::ops::Bound::Included(to),
            ))
            .count() as u64;
        let by_rule: usize = (from.year()..=to.year())
            .map(|year| {
                self.rule_holidays_in(year)
                    .iter()
                    .filter(|(d, _)| *d > from && *d <= to)
                    .count()
            })
            .sum();
        listed + by_rule as u64
    }
}

/// The name of the rule's holiday observed on `date`, if any.
fn rule_holiday(rule: Option<HolidayRule>, date: NaiveDate) -> Option<&'static str> {
    match rule? {
        HolidayRule::UsFederal => crate::federal::observed_in(date.year())
            .into_iter()
            .find(|(d, _)| *d == date)
            .map(|(_, name)| name),
    }
}

fn holiday_date(value: &toml::Value) -> Result<NaiveDate, String> {
    match value {
        toml::Value::Datetime(dt) => match (dt.date, dt.time) {
            (Some(date), None) if dt.offset.is_none() => NaiveDate::from_ymd_opt(
                i32::from(date.year),
                u32::from(date.month),
                u32::from(date.day),
            )
            .ok_or_else(|| format!("{dt} is not a calendar date")),
            _ => Err(format!(
                "{dt} must be a date without a time, such as 2026-01-01"
            )),
        },
        toml::Value::String(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map_err(|_| format!("{s:?} is not a date such as 2026-01-01")),
        other => Err(format!(
            "date must be a date such as 2026-01-01, not a {}",
            other.type_str()
        )),
    }
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Days since 0001-01-01, a Monday, so `index % 7` is the weekday (Monday = 0).
fn day_index(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - 1
}

/// Weekdays strictly before `d`, counted from 0001-01-01 (negative before it).
fn weekdays_before(d: NaiveDate) -> i64 {
    let i = day_index(d);
    i.div_euclid(7) * 5 + i.rem_euclid(7).min(5)
}

/// The `k`th weekday after `d`, `k >= 1`, ignoring holidays.
fn add_weekdays(d: NaiveDate, k: u64) -> Option<NaiveDate> {
    // Number the weekdays 0, 1, 2, ... from 0001-01-01; the target's number is that
    // of the last weekday on or before `d`, plus `k`.
    let last_on_or_before = weekdays_before(d) + i64::from(!is_weekend(d)) - 1;
    let target = last_on_or_before.checked_add(i64::try_from(k).ok()?)?;
    let index = target.div_euclid(5) * 7 + target.rem_euclid(5);
    let days_from_ce = i32::try_from(index.checked_add(1)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(days_from_ce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cal() -> BusinessCalendar {
        BusinessCalendar::us_federal()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// Reference implementation: one day at a time.
    fn add_business_days_slowly(cal: &BusinessCalendar, d: NaiveDate, n: u32) -> NaiveDate {
        if n == 0 {
            return cal.next_business_day_on_or_after(d);
        }
        let mut date = d;
        let mut left = n;
        while left > 0 {
            date = date.succ_opt().unwrap();
            if cal.is_business_day(date) {
                left -= 1;
            }
        }
        date
    }

    #[test]
    fn shipped_calendar_loads() {
        let cal = cal();
        assert_eq!(cal.id(), "us-federal");
        assert_eq!(cal.timezone(), chrono_tz::America::New_York);
        // Computed by rule: no last year.
        assert!(cal.covers(date("1986-01-01")));
        assert!(cal.covers(date("2030-12-31")));
        assert!(cal.covers(date("2031-01-01")));
        assert!(cal.covers(date("2400-07-04")));
        assert!(!cal.covers(date("1985-12-31")));
        // New Year's Day 2028 falls on a Saturday and is observed on 2027-12-31.
        let per_year: Vec<_> = (2024..=2031).map(|y| cal.holidays_in(y).len()).collect();
        assert_eq!(per_year, [11, 11, 11, 12, 10, 11, 11, 11]);
    }

    #[test]
    fn holidays_after_2030_are_not_business_days() {
        let cal = cal();
        let cases = [
            ("2031-01-01", "New Year's Day"),
            ("2031-06-19", "Juneteenth National Independence Day"),
            ("2032-07-05", "Independence Day (observed)"), // 2032-07-04 is a Sunday
            ("2033-11-24", "Thanksgiving Day"),
            ("2033-12-26", "Christmas Day (observed)"), // 2033-12-25 is a Sunday
            ("2038-12-31", "New Year's Day (observed)"), // 2039-01-01 is a Saturday
        ];
        for (d, name) in cases {
            assert_eq!(cal.holiday(date(d)), Some(name), "{d}");
            assert!(!cal.is_business_day(date(d)), "{d}");
        }
        // Received the day before Thanksgiving 2033, two business days: Monday.
        assert_eq!(
            cal.business_deadline(utc("2033-11-23T15:00:00Z"), 2),
            utc("2033-11-28T22:00:00Z")
        );
    }

    #[test]
    fn plan_days_are_data_on_top_of_the_rule() {
        let text = r#"
            id = "plan"
            name = "Plan calendar"
            timezone = "America/New_York"
            business_day_start = "08:00"
            business_day_end = "17:00"
            rule = "us-federal"
            [[holidays]]
            date = 2026-11-27
            name = "Day after Thanksgiving"
            [[holidays]]
            date = 2027-11-26
            name = "Day after Thanksgiving"
        "#;
        let cal = BusinessCalendar::from_toml("plan.toml", text).unwrap();
        assert_eq!(
            cal.holiday(date("2026-11-27")),
            Some("Day after Thanksgiving")
        );
        assert_eq!(cal.holiday(date("2026-11-26")), Some("Thanksgiving Day"));
        assert_eq!(
            cal.add_business_days(date("2026-11-25"), 1),
            date("2026-11-30")
        );
        assert_eq!(
            cal.business_days_between(date("2026-11-25"), date("2026-11-30")),
            1
        );
        assert_eq!(cal.holidays_in(2026).len(), 12);
        // The plan's days end in 2027, so the calendar does too.
        assert!(cal.covers(date("2027-12-31")));
        assert!(!cal.covers(date("2028-01-01")));

        // A listed day the rule already gives is a slip in the data.
        let twice = text.replace("2027-11-26", "2027-11-25");
        let err = BusinessCalendar::from_toml("plan.toml", &twice).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plan.toml: holidays[1] (\"Day after Thanksgiving\"): duplicate holiday on 2027-11-25, already listed as \"Thanksgiving Day\""
        );
        let unknown = text.replace("rule = \"us-federal\"", "rule = \"uk-bank\"");
        let err = BusinessCalendar::from_toml("plan.toml", &unknown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plan.toml: rule: unknown holiday rule \"uk-bank\" (known: \"us-federal\")"
        );
        let early = text.replace("rule = ", "first_year = 1980\nrule = ");
        let err = BusinessCalendar::from_toml("plan.toml", &early).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plan.toml: first_year: must not be before 1986, the rule's first year"
        );
    }

    #[test]
    fn a_calendar_that_ends_is_refused_for_the_years_after() {
        // The calendar as it shipped before holidays were computed: typed in to 2030.
        let text = r#"
            id = "typed"
            name = "Typed in"
            timezone = "America/New_York"
            business_day_start = "08:00"
            business_day_end = "17:00"
            first_year = 2024
            last_year = 2030
            [[holidays]]
            date = 2030-12-25
            name = "Christmas Day"
        "#;
        let typed = BusinessCalendar::from_toml("typed.toml", text).unwrap();
        assert!(typed.require_cover_from(date("2029-03-01")).is_ok());
        // In 2030 a due date can fall in 2031, which it does not know.
        let err = typed.require_cover_from(date("2030-03-01")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "calendar \"typed\" covers 2024 to 2030, not 2031-12-31: add the plan's days for that year (last_year)"
        );
        assert!(matches!(
            typed.require_cover(date("2031-01-02")),
            Err(CalendarError::NotCovered { .. })
        ));
        assert!(typed.require_cover(date("2023-12-31")).is_err());
        // The shipped calendar is refused for no year from 1986 on.
        for year in [2026, 2030, 2031, 2100, 3000] {
            assert!(
                cal()
                    .require_cover_from(date(&format!("{year}-06-01")))
                    .is_ok(),
                "{year}"
            );
        }
    }

    #[test]
    fn observed_holidays() {
        let cal = cal();
        let cases = [
            ("2026-07-03", Some("Independence Day (observed)")),
            ("2026-07-04", None),
            ("2027-12-24", Some("Christmas Day (observed)")),
            ("2027-12-31", Some("New Year's Day (observed)")),
            ("2026-11-26", Some("Thanksgiving Day")),
            ("2026-11-27", None),
            ("2029-11-12", Some("Veterans Day (observed)")),
            ("2024-01-15", Some("Birthday of Martin Luther King, Jr.")),
            ("2030-05-27", Some("Memorial Day")),
        ];
        for (d, name) in cases {
            assert_eq!(cal.holiday(date(d)), name, "{d}");
        }
    }

    #[test]
    fn business_days_around_the_2026_holidays() {
        let cal = cal();
        // (start, n, expected)
        let cases = [
            ("2026-11-25", 0, "2026-11-25"), // Wednesday before Thanksgiving
            ("2026-11-25", 1, "2026-11-27"), // skips Thanksgiving
            ("2026-11-25", 2, "2026-11-30"),
            ("2026-11-26", 0, "2026-11-27"), // Thanksgiving itself
            ("2026-11-26", 1, "2026-11-27"),
            ("2026-11-28", 1, "2026-11-30"), // Saturday
            ("2026-12-23", 2, "2026-12-28"), // Christmas Friday, then the weekend
            ("2026-12-24", 1, "2026-12-28"),
            ("2026-12-31", 1, "2027-01-04"), // New Year's Day 2027 is a Friday
            ("2026-12-31", 15, "2027-01-25"), // crosses MLK Day (2027-01-18)
            ("2026-07-02", 1, "2026-07-06"), // Independence Day observed Friday
        ];
        for (start, n, expected) in cases {
            assert_eq!(
                cal.add_business_days(date(start), n),
                date(expected),
                "{start} + {n}"
            );
        }
        assert_eq!(
            cal.business_days_between(date("2026-11-25"), date("2026-11-30")),
            2
        );
        assert_eq!(
            cal.business_days_between(date("2026-11-30"), date("2026-11-25")),
            -2
        );
        assert_eq!(
            cal.business_days_between(date("2026-12-24"), date("2027-01-04")),
            5
        );
        assert_eq!(
            cal.business_days_between(date("2026-12-26"), date("2026-12-26")),
            0
        );
    }

    #[test]
    fn deadlines_around_the_2026_holidays() {
        let cal = cal();
        // (received, n, due): 17:00 New York is 22:00 UTC in winter, 21:00 in summer.
        let cases = [
            // Wednesday before Thanksgiving, routine 2 business days: Monday.
            ("2026-11-25T15:00:00Z", 2, "2026-11-30T22:00:00Z"),
            // Same business day, received in hours.
            ("2026-11-25T15:00:00Z", 0, "2026-11-25T22:00:00Z"),
            // Same business day, received after 17:00 local: next business day.
            ("2026-11-25T22:30:00Z", 0, "2026-11-27T22:00:00Z"),
            // 03:00 UTC Thursday is still Wednesday evening in New York.
            ("2026-11-26T03:00:00Z", 1, "2026-11-27T22:00:00Z"),
            // Received on Christmas Day.
            ("2026-12-25T14:00:00Z", 0, "2026-12-28T22:00:00Z"),
            ("2026-12-25T14:00:00Z", 2, "2026-12-29T22:00:00Z"),
            // New Year's Eve, 2 business days over New Year's Day.
            ("2026-12-31T13:00:00Z", 2, "2027-01-05T22:00:00Z"),
            // Before opening counts as that business day.
            ("2026-12-31T11:00:00Z", 0, "2026-12-31T22:00:00Z"),
            // Summer time: 17:00 EDT is 21:00 UTC; Juneteenth is a Friday.
            ("2026-06-18T14:00:00Z", 1, "2026-06-22T21:00:00Z"),
            // Friday before the spring change; due Monday after it (EDT).
            ("2026-03-06T14:00:00Z", 1, "2026-03-09T21:00:00Z"),
        ];
        for (received, n, due) in cases {
            assert_eq!(
                cal.business_deadline(utc(received), n),
                utc(due),
                "{received} + {n}"
            );
        }
    }

    #[test]
    fn calendar_hours_ignore_weekends_and_holidays() {
        let cal = cal();
        assert_eq!(
            cal.add_calendar_hours(utc("2026-11-25T15:00:00Z"), 72),
            utc("2026-11-28T15:00:00Z")
        );
        assert_eq!(
            cal.add_calendar_hours(utc("2026-11-25T15:00:00Z"), 7 * 24),
            utc("2026-12-02T15:00:00Z")
        );
    }

    #[test]
    fn end_of_day_on_a_missing_local_time_moves_forward() {
        let text = r#"
            id = "night"
            name = "Night shift"
            timezone = "America/New_York"
            business_day_start = "00:00"
            business_day_end = "02:30"
            first_year = 2026
            last_year = 2026
        "#;
        let cal = BusinessCalendar::from_toml("night.toml", text).unwrap();
        // 2026-03-08 is a Sunday; use the test only for the end-of-day conversion.
        assert_eq!(
            cal.end_of_business_day(date("2026-03-08")),
            utc("2026-03-08T07:00:00Z")
        );
        // Ambiguous 01:30 on 2026-11-01 takes the earlier (EDT) instant.
        let text = text.replace("02:30", "01:30");
        let cal = BusinessCalendar::from_toml("night.toml", &text).unwrap();
        assert_eq!(
            cal.end_of_business_day(date("2026-11-01")),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn calendar_errors_name_source_and_entry() {
        let header = r#"
            id = "t"
            name = "Test"
            timezone = "America/New_York"
            business_day_start = "08:00"
            business_day_end = "17:00"
        "#;
        let cases = [
            (
                format!(
                    "{header}[[holidays]]\ndate = 2026-01-01\nname = \"A\"\n[[holidays]]\ndate = 2026-01-01\nname = \"B\"\n"
                ),
                "t.toml: holidays[1] (\"B\"): duplicate holiday on 2026-01-01, already listed as \"A\"",
            ),
            (
                format!("{header}[[holidays]]\ndate = \"2026-02-30\"\nname = \"Nope\"\n"),
                "t.toml: holidays[0] (\"Nope\"): \"2026-02-30\" is not a date such as 2026-01-01",
            ),
            (
                format!("{header}[[holidays]]\ndate = 2026-07-04\nname = \"Independence Day\"\n"),
                "t.toml: holidays[0] (\"Independence Day\"): 2026-07-04 is a Sat; list the weekday the holiday is observed on",
            ),
            (
                format!("{header}[[holidays]]\ndate = 2026-07-03T00:00:00\nname = \"X\"\n"),
                "t.toml: holidays[0] (\"X\"): 2026-07-03T00:00:00 must be a date without a time, such as 2026-01-01",
            ),
            (
                header.replace("America/New_York", "Mars/Olympus_Mons"),
                "t.toml: unknown timezone \"Mars/Olympus_Mons\"",
            ),
            (
                header.replace("17:00", "07:00"),
                "t.toml: business_day_end: must be after business_day_start (08:00:00)",
            ),
            (
                header.replace("\"08:00\"", "\"8am\""),
                "t.toml: business_day_start: \"8am\" is not a time such as \"17:00\"",
            ),
            (
                header.to_owned(),
                "t.toml: first_year: give first_year and last_year, or list holidays",
            ),
        ];
        for (text, message) in cases {
            let err = BusinessCalendar::from_toml("t.toml", &text).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let err = BusinessCalendar::from_toml("t.toml", "id = ").unwrap_err();
        assert!(matches!(err, CalendarError::Syntax { .. }), "{err}");
        assert!(err.to_string().starts_with("t.toml: "), "{err}");
    }

    #[test]
    fn string_dates_are_accepted() {
        let text = r#"
            id = "t"
            name = "Test"
            timezone = "Europe/London"
            business_day_start = "09:00"
            business_day_end = "17:30"
            [[holidays]]
            date = "2026-12-25"
            name = "Christmas Day"
        "#;
        let cal = BusinessCalendar::from_toml("t.toml", text).unwrap();
        assert!(!cal.is_business_day(date("2026-12-25")));
        assert!(cal.covers(date("2026-01-01")));
        assert!(!cal.covers(date("2027-01-01")));
    }

    #[test]
    fn far_future_is_none_not_a_panic() {
        let cal = cal();
        assert_eq!(cal.checked_add_business_days(NaiveDate::MAX, 1), None);
        assert_eq!(
            cal.checked_add_business_days(date("2026-01-01"), u32::MAX),
            None
        );
        assert!(
            cal.checked_add_business_days(date("2026-01-01"), 10_000_000)
                .is_some()
        );
    }

    fn covered_date() -> impl Strategy<Value = NaiveDate> {
        let first = date("2024-01-01").num_days_from_ce();
        let last = date("2060-12-31").num_days_from_ce();
        (first..=last).prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).unwrap())
    }

    fn received_instant() -> impl Strategy<Value = DateTime<Utc>> {
        let first = utc("2024-01-01T00:00:00Z").timestamp();
        let last = utc("2060-11-30T00:00:00Z").timestamp();
        (first..=last).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn business_days_never_land_on_weekends_or_holidays(d in covered_date(), n in 0u32..40) {
            let cal = cal();
            let due = cal.add_business_days(d, n);
            prop_assert!(cal.is_business_day(due), "{d} + {n} = {due}");
            prop_assert!(due >= d);
        }

        #[test]
        fn fast_and_slow_agree(d in covered_date(), n in 0u32..60) {
            let cal = cal();
            prop_assert_eq!(cal.add_business_days(d, n), add_business_days_slowly(&cal, d, n));
        }

        #[test]
        fn deadlines_fall_at_the_end_of_a_business_day(received in received_instant(), n in 0u32..40) {
            let cal = cal();
            let due = cal.business_deadline(received, n).with_timezone(&cal.timezone());
            prop_assert!(cal.is_business_day(due.date_naive()), "{received} + {n} = {due}");
            prop_assert_eq!(due.time(), cal.business_hours().1);
            prop_assert!(due.to_utc() > received);
        }

        #[test]
        fn adding_business_days_composes(d in covered_date(), n in 0u32..30, m in 0u32..30) {
            let cal = cal();
            let stepwise = cal.add_business_days(cal.add_business_days(d, n), m);
            if n >= 1 || cal.is_business_day(d) {
                prop_assert_eq!(stepwise, cal.add_business_days(d, n + m));
            } else {
                prop_assert_eq!(cal.add_business_days(d, 0), cal.add_business_days(d, 1));
                prop_assert_eq!(stepwise, cal.add_business_days(d, m + 1));
            }
        }

        #[test]
        fn counting_undoes_adding(d in covered_date(), n in 0u32..60) {
            let cal = cal();
            let start = cal.next_business_day_on_or_after(d);
            prop_assert_eq!(cal.business_days_between(start, cal.add_business_days(start, n)), i64::from(n));
            // From any day, the nth business day after it is n business days away.
            if n >= 1 {
                prop_assert_eq!(cal.business_days_between(d, cal.add_business_days(d, n)), i64::from(n));
            }
        }

        #[test]
        fn counting_matches_a_day_by_day_count(a in covered_date(), b in covered_date()) {
            let cal = cal();
            let (from, to) = if a <= b { (a, b) } else { (b, a) };
            let slow = from
                .iter_days()
                .skip(1)
                .take_while(|d| *d <= to)
                .filter(|d| cal.is_business_day(*d))
                .count() as i64;
            prop_assert_eq!(cal.business_days_between(from, to), slow);
            prop_assert_eq!(cal.business_days_between(to, from), -slow);
        }

        #[test]
        fn deadlines_are_monotonic(received in received_instant(), n in 0u32..40) {
            let cal = cal();
            prop_assert!(cal.business_deadline(received, n) <= cal.business_deadline(received, n + 1));
            prop_assert!(cal.add_business_days(received.date_naive(), n) < cal.add_business_days(received.date_naive(), n + 1) || n == 0);
        }

        #[test]
        fn later_receipt_never_means_earlier_deadline(a in received_instant(), b in received_instant(), n in 0u32..20) {
            let cal = cal();
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(cal.business_deadline(early, n) <= cal.business_deadline(late, n));
        }
    }
}
