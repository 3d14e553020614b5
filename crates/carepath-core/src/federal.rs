//! United States federal holidays by rule (5 U.S.C. 6103), so the shipped calendar
//! needs no yearly data entry and never runs out.
//!
//! The law fixes each holiday's date (January 1) or its weekday in a month (the third
//! Monday in January). Federal offices observe a holiday that falls on a Saturday on
//! the Friday before, and one that falls on a Sunday on the Monday after (section
//! 6103(b) and Executive Order 11582). Inauguration Day is not here: it is a holiday
//! only for federal employees in and around Washington, D.C.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// The first year every holiday below but Juneteenth was observed: the Birthday of
/// Martin Luther King, Jr. was first a holiday in 1986.
pub(crate) const FIRST_YEAR: i32 = 1986;

/// Juneteenth National Independence Day became a holiday on 17 June 2021.
const JUNETEENTH_FROM: i32 = 2021;

/// How a holiday's date is fixed by law.
enum Day {
    /// A month and day.
    Fixed(u32, u32),
    /// The `n`th given weekday of a month.
    Nth(u32, Weekday, u8),
    /// The last given weekday of a month.
    Last(u32, Weekday),
}

/// One holiday: its name when observed on its own date and when moved off a weekend.
struct Holiday {
    name: &'static str,
    observed: &'static str,
    day: Day,
    from_year: i32,
}

const HOLIDAYS: [Holiday; 11] = [
    Holiday {
        name: "New Year's Day",
        observed: "New Year's Day (observed)",
        day: Day::Fixed(1, 1),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Birthday of Martin Luther King, Jr.",
        observed: "Birthday of Martin Luther King, Jr.",
        day: Day::Nth(1, Weekday::Mon, 3),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Washington's Birthday (Presidents' Day)",
        observed: "Washington's Birthday (Presidents' Day)",
        day: Day::Nth(2, Weekday::Mon, 3),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Memorial Day",
        observed: "Memorial Day",
        day: Day::Last(5, Weekday::Mon),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Juneteenth National Independence Day",
        observed: "Juneteenth National Independence Day (observed)",
        day: Day::Fixed(6, 19),
        from_year: JUNETEENTH_FROM,
    },
    Holiday {
        name: "Independence Day",
        observed: "Independence Day (observed)",
        day: Day::Fixed(7, 4),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Labor Day",
        observed: "Labor Day",
        day: Day::Nth(9, Weekday::Mon, 1),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Columbus Day",
        observed: "Columbus Day",
        day: Day::Nth(10, Weekday::Mon, 2),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Veterans Day",
        observed: "Veterans Day (observed)",
        day: Day::Fixed(11, 11),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Thanksgiving Day",
        observed: "Thanksgiving Day",
        day: Day::Nth(11, Weekday::Thu, 4),
        from_year: FIRST_YEAR,
    },
    Holiday {
        name: "Christmas Day",
        observed: "Christmas Day (observed)",
        day: Day::Fixed(12, 25),
        from_year: FIRST_YEAR,
    },
];

/// The holiday of `year` that `holiday` is, observed: a weekend date moved to the
/// Friday before or the Monday after. `None` before the holiday existed, or past the
/// dates chrono represents.
fn observed(holiday: &Holiday, year: i32) -> Option<(NaiveDate, &'static str)> {
    if year < holiday.from_year {
        return None;
    }
    let date = match holiday.day {
        Day::Fixed(month, day) => NaiveDate::from_ymd_opt(year, month, day)?,
        Day::Nth(month, weekday, n) => {
            NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)?
        }
        Day::Last(month, weekday) => {
            let next = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            let last = next.pred_opt()?;
            let back =
                (7 + last.weekday().num_days_from_monday() - weekday.num_days_from_monday()) % 7;
            last - Duration::days(i64::from(back))
        }
    };
    Some(match date.weekday() {
        Weekday::Sat => (date.pred_opt()?, holiday.observed),
        Weekday::Sun => (date.succ_opt()?, holiday.observed),
        _ => (date, holiday.name),
    })
}

/// The federal holidays observed on a date in `year`, in date order: New Year's Day of
/// the next year when it is observed on 31 December, and not this year's when it was
/// observed on the 31 December before. Empty before [`FIRST_YEAR`].
pub(crate) fn observed_in(year: i32) -> Vec<(NaiveDate, &'static str)> {
    if year < FIRST_YEAR {
        return Vec::new();
    }
    let mut days: Vec<_> = HOLIDAYS
        .iter()
        .filter_map(|h| observed(h, year))
        .filter(|(date, _)| date.year() == year)
        .collect();
    if let Some(next_new_year) = year.checked_add(1).and_then(|y| observed(&HOLIDAYS[0], y))
        && next_new_year.0.year() == year
    {
        days.push(next_new_year);
    }
    days.sort_by_key(|(date, _)| *date);
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observed federal holidays as published by the U.S. Office of Personnel
    /// Management ("Federal Holidays" pages, opm.gov/policy-data-oversight/pay-leave/
    /// federal-holidays), per year, in the year's own list (a New Year's Day observed
    /// on 31 December appears in the year it falls in). Inauguration Day, which OPM
    /// lists for the Washington, D.C., area only, is left out.
    const PUBLISHED: &[(i32, &[&str])] = &[
        (
            1999,
            &[
                "1999-01-01",
                "1999-01-18",
                "1999-02-15",
                "1999-05-31",
                "1999-07-05",
                "1999-09-06",
                "1999-10-11",
                "1999-11-11",
                "1999-11-25",
                "1999-12-24",
                "1999-12-31",
            ],
        ),
        (
            2000,
            &[
                "2000-01-17",
                "2000-02-21",
                "2000-05-29",
                "2000-07-04",
                "2000-09-04",
                "2000-10-09",
                "2000-11-10",
                "2000-11-23",
                "2000-12-25",
            ],
        ),
        (
            2010,
            &[
                "2010-01-01",
                "2010-01-18",
                "2010-02-15",
                "2010-05-31",
                "2010-07-05",
                "2010-09-06",
                "2010-10-11",
                "2010-11-11",
                "2010-11-25",
                "2010-12-24",
                "2010-12-31",
            ],
        ),
        (
            2011,
            &[
                "2011-01-17",
                "2011-02-21",
                "2011-05-30",
                "2011-07-04",
                "2011-09-05",
                "2011-10-10",
                "2011-11-11",
                "2011-11-24",
                "2011-12-26",
            ],
        ),
        (
            2012,
            &[
                "2012-01-02",
                "2012-01-16",
                "2012-02-20",
                "2012-05-28",
                "2012-07-04",
                "2012-09-03",
                "2012-10-08",
                "2012-11-12",
                "2012-11-22",
                "2012-12-25",
            ],
        ),
        (
            2015,
            &[
                "2015-01-01",
                "2015-01-19",
                "2015-02-16",
                "2015-05-25",
                "2015-07-03",
                "2015-09-07",
                "2015-10-12",
                "2015-11-11",
                "2015-11-26",
                "2015-12-25",
            ],
        ),
        (
            2017,
            &[
                "2017-01-02",
                "2017-01-16",
                "2017-02-20",
                "2017-05-29",
                "2017-07-04",
                "2017-09-04",
                "2017-10-09",
                "2017-11-10",
                "2017-11-23",
                "2017-12-25",
            ],
        ),
        (
            2020,
            &[
                "2020-01-01",
                "2020-01-20",
                "2020-02-17",
                "2020-05-25",
                "2020-07-03",
                "2020-09-07",
                "2020-10-12",
                "2020-11-11",
                "2020-11-26",
                "2020-12-25",
            ],
        ),
        (
            2021,
            &[
                "2021-01-01",
                "2021-01-18",
                "2021-02-15",
                "2021-05-31",
                "2021-06-18",
                "2021-07-05",
                "2021-09-06",
                "2021-10-11",
                "2021-11-11",
                "2021-11-25",
                "2021-12-24",
                "2021-12-31",
            ],
        ),
        (
            2022,
            &[
                "2022-01-17",
                "2022-02-21",
                "2022-05-30",
                "2022-06-20",
                "2022-07-04",
                "2022-09-05",
                "2022-10-10",
                "2022-11-11",
                "2022-11-24",
                "2022-12-26",
            ],
        ),
        (
            2023,
            &[
                "2023-01-02",
                "2023-01-16",
                "2023-02-20",
                "2023-05-29",
                "2023-06-19",
                "2023-07-04",
                "2023-09-04",
                "2023-10-09",
                "2023-11-10",
                "2023-11-23",
                "2023-12-25",
            ],
        ),
        (
            2024,
            &[
                "2024-01-01",
                "2024-01-15",
                "2024-02-19",
                "2024-05-27",
                "2024-06-19",
                "2024-07-04",
                "2024-09-02",
                "2024-10-14",
                "2024-11-11",
                "2024-11-28",
                "2024-12-25",
            ],
        ),
        (
            2025,
            &[
                "2025-01-01",
                "2025-01-20",
                "2025-02-17",
                "2025-05-26",
                "2025-06-19",
                "2025-07-04",
                "2025-09-01",
                "2025-10-13",
                "2025-11-11",
                "2025-11-27",
                "2025-12-25",
            ],
        ),
        (
            2026,
            &[
                "2026-01-01",
                "2026-01-19",
                "2026-02-16",
                "2026-05-25",
                "2026-06-19",
                "2026-07-03",
                "2026-09-07",
                "2026-10-12",
                "2026-11-11",
                "2026-11-26",
                "2026-12-25",
            ],
        ),
        (
            2027,
            &[
                "2027-01-01",
                "2027-01-18",
                "2027-02-15",
                "2027-05-31",
                "2027-06-18",
                "2027-07-05",
                "2027-09-06",
                "2027-10-11",
                "2027-11-11",
                "2027-11-25",
                "2027-12-24",
                "2027-12-31",
            ],
        ),
        (
            2028,
            &[
                "2028-01-17",
                "2028-02-21",
                "2028-05-29",
                "2028-06-19",
                "2028-07-04",
                "2028-09-04",
                "2028-10-09",
                "2028-11-10",
                "2028-11-23",
                "2028-12-25",
            ],
        ),
        (
            2029,
            &[
                "2029-01-01",
                "2029-01-15",
                "2029-02-19",
                "2029-05-28",
                "2029-06-19",
                "2029-07-04",
                "2029-09-03",
                "2029-10-08",
                "2029-11-12",
                "2029-11-22",
                "2029-12-25",
            ],
        ),
        (
            2030,
            &[
                "2030-01-01",
                "2030-01-21",
                "2030-02-18",
                "2030-05-27",
                "2030-06-19",
                "2030-07-04",
                "2030-09-02",
                "2030-10-14",
                "2030-11-11",
                "2030-11-28",
                "2030-12-25",
            ],
        ),
    ];

    #[test]
    fn the_rule_gives_the_published_dates() {
        for (year, published) in PUBLISHED {
            let computed: Vec<String> = observed_in(*year)
                .into_iter()
                .map(|(d, _)| d.to_string())
                .collect();
            assert_eq!(computed, *published, "{year}");
        }
    }

    #[test]
    fn every_observed_holiday_is_a_weekday_with_a_name() {
        for year in FIRST_YEAR..=2200 {
            let days = observed_in(year);
            assert!((9..=12).contains(&days.len()), "{year}: {days:?}");
            for (date, name) in days {
                assert!(date.weekday().num_days_from_monday() < 5, "{date} {name}");
                assert_eq!(date.year(), year);
            }
        }
    }

    #[test]
    fn names_say_when_a_holiday_is_moved() {
        let names: Vec<_> = observed_in(2027).into_iter().map(|(_, n)| n).collect();
        assert!(names.contains(&"Juneteenth National Independence Day (observed)"));
        assert!(names.contains(&"New Year's Day (observed)"));
        assert!(
            observed_in(2020)
                .iter()
                .all(|(_, n)| !n.starts_with("Juneteenth"))
        );
        assert!(observed_in(FIRST_YEAR - 1).is_empty());
    }
}
