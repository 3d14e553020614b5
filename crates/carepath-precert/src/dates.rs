//! Which dates of service a precertification request may carry, reckoned from the day
//! the plan receives it: not implausibly far ahead or behind (a typing slip such as
//! 2200 or 1900), and not already past, since precertification decides before the
//! service. A service already given is reviewed after the fact against the claim
//! (retrospective review, on the post-service clock), which this service does not
//! take; emergency admissions, which are notified after the fact by design, are the
//! exception.

use chrono::{Duration, NaiveDate};

use crate::{Admission, ServiceLine};

/// How far from the day of receipt a date of service may lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDates {
    /// Days after receipt a date of service may be: further ahead is refused as a
    /// slip (no plan precertifies years ahead, and no list is in force then).
    pub max_days_ahead: u32,
    /// Days before receipt a date of service may be (an emergency admission notified,
    /// or a retrospective request).
    pub max_days_past: u32,
    /// What becomes of a request for services already given.
    pub retrospective: Retrospective,
}

impl Default for ServiceDates {
    /// Two years ahead (a list version for next year may be asked about well before
    /// it starts); 90 days back; services already given taken for retrospective
    /// review.
    fn default() -> Self {
        ServiceDates {
            max_days_ahead: 730,
            max_days_past: 90,
            retrospective: Retrospective::Review,
        }
    }
}

/// Why a date of service was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceDateError {
    #[error(
        "{date} is more than {days} days after the request was received ({received}); check the date"
    )]
    TooFarAhead {
        date: NaiveDate,
        received: NaiveDate,
        days: u32,
    },
    #[error(
        "{date} is more than {days} days before the request was received ({received}); check the date"
    )]
    TooFarPast {
        date: NaiveDate,
        received: NaiveDate,
        days: u32,
    },
    #[error(
        "{date} is before the request was received ({received}): a service already given is a retrospective request, which this plan reviews only with the claim; only emergency admissions are notified after the fact"
    )]
    Retrospective {
        date: NaiveDate,
        received: NaiveDate,
    },
}

/// Whether `line` asks about a service already given when the plan received the
/// request on `received` (its local date): a date of service before receipt, but for an
/// emergency admission, which is notified after the fact by design. A date the day
/// before receipt still counts as ahead of it, since the requester's own date may be a
/// day behind the plan's.
pub fn after_the_fact(line: &ServiceLine, received: NaiveDate) -> bool {
    line.date_of_service < received - Duration::days(1) && line.admission != Admission::Emergency
}

/// What the plan does with a request for services already given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retrospective {
    /// Take it as a retrospective review: a reviewer decides it on the post-service
    /// clock; automation never approves it.
    #[default]
    Review,
    /// Refuse it: the plan reviews services already given only with their claim.
    Refuse,
}

/// Whether a check asks about services already given: a question about coverage may,
/// a request to precertify may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A requirement check: any date in the window.
    Check,
    /// A request: a date before receipt is a retrospective request (refused when the
    /// plan takes none), but for emergency admissions.
    Request,
}

impl ServiceDates {
    /// Checks `line`'s date of service against `received`, the plan's local date of
    /// receipt. A date the day before receipt still counts as ahead of it, since the
    /// requester's own date may be a day behind the plan's.
    pub fn check(
        &self,
        line: &ServiceLine,
        received: NaiveDate,
        purpose: Purpose,
    ) -> Result<(), ServiceDateError> {
        let date = line.date_of_service;
        if date > received + Duration::days(i64::from(self.max_days_ahead)) {
            return Err(ServiceDateError::TooFarAhead {
                date,
                received,
                days: self.max_days_ahead,
            });
        }
        if date < received - Duration::days(i64::from(self.max_days_past)) {
            return Err(ServiceDateError::TooFarPast {
                date,
                received,
                days: self.max_days_past,
            });
        }
        if purpose == Purpose::Request
            && self.retrospective == Retrospective::Refuse
            && after_the_fact(line, received)
        {
            return Err(ServiceDateError::Retrospective { date, received });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use carepath_core::{ServiceCode, Setting};

    use super::*;

    fn line(date: &str, admission: Admission) -> ServiceLine {
        ServiceLine {
            code: ServiceCode::parse("70553").unwrap(),
            units: 1,
            date_of_service: date.parse().unwrap(),
            setting: Setting::Outpatient,
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission,
        }
    }

    #[test]
    fn dates_are_checked_against_the_day_of_receipt() {
        let received: NaiveDate = "2026-11-23".parse().unwrap();
        let window = ServiceDates::default();
        let check = |date: &str, admission, purpose| {
            window.check(&line(date, admission), received, purpose)
        };
        use Admission::{Elective, Emergency};
        use Purpose::{Check, Request};
        assert_eq!(check("2026-11-23", Elective, Request), Ok(()));
        assert_eq!(check("2028-11-22", Elective, Request), Ok(()));
        assert_eq!(check("2026-11-22", Elective, Request), Ok(()));
        assert!(matches!(
            check("2028-11-23", Elective, Request),
            Err(ServiceDateError::TooFarAhead { days: 730, .. })
        ));
        assert!(matches!(
            check("2200-01-01", Elective, Check),
            Err(ServiceDateError::TooFarAhead { .. })
        ));
        assert!(matches!(
            check("1900-01-01", Emergency, Request),
            Err(ServiceDateError::TooFarPast { days: 90, .. })
        ));
        // A service already given is taken for retrospective review by default.
        assert_eq!(check("2026-11-01", Elective, Request), Ok(()));
        assert!(after_the_fact(&line("2026-11-01", Elective), received));
        assert!(!after_the_fact(&line("2026-11-22", Elective), received));
        assert!(!after_the_fact(&line("2026-11-01", Emergency), received));
        // A coverage question about a past date, and an emergency notified after.
        assert_eq!(check("2026-11-01", Elective, Check), Ok(()));
        assert_eq!(check("2026-11-01", Emergency, Request), Ok(()));
    }

    #[test]
    fn a_plan_that_takes_no_retrospective_requests_refuses_them() {
        let received: NaiveDate = "2026-11-23".parse().unwrap();
        let window = ServiceDates {
            retrospective: Retrospective::Refuse,
            ..ServiceDates::default()
        };
        let check = |date: &str, admission, purpose| {
            window.check(&line(date, admission), received, purpose)
        };
        assert_eq!(
            check("2026-11-01", Admission::Elective, Purpose::Request),
            Err(ServiceDateError::Retrospective {
                date: "2026-11-01".parse().unwrap(),
                received
            })
        );
        assert_eq!(
            check("2026-11-01", Admission::Emergency, Purpose::Request),
            Ok(())
        );
        assert_eq!(
            check("2026-11-01", Admission::Elective, Purpose::Check),
            Ok(())
        );
    }
}
