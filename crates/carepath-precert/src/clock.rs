//! Due times: when a decision, an answer to an information request, or an appeal
//! decision is due, on the business calendar and under the regulatory ceilings.
//!
//! The plan promises faster than the regulations require (urgent: the same business
//! day; routine: two business days) but a business-day deadline can stretch over a
//! long holiday weekend, so every decision deadline is also capped by the regulatory
//! ceiling in calendar time (72 hours expedited, 7 days standard, CMS-0057-F). Due =
//! min(business deadline, ceiling).

use carepath_core::{BusinessCalendar, Urgency};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Business days for a routine decision (plan turnaround).
pub const ROUTINE_BUSINESS_DAYS: u32 = 2;
/// Calendar hours allowed for an expedited decision (CMS-0057-F, ERISA urgent claims).
pub const URGENT_CEILING_HOURS: u32 = 72;
/// Calendar hours allowed for a standard decision (7 days, CMS-0057-F).
pub const ROUTINE_CEILING_HOURS: u32 = 7 * 24;
/// Hours an urgent requester is given to answer an information request: ERISA
/// requires at least 48 hours for urgent claims.
pub const URGENT_INFORMATION_HOURS: u32 = 48;
/// Business days a routine requester is given, and after which any request still
/// waiting for information may be closed (CAQH CORE 278 v4.1).
pub const INFORMATION_BUSINESS_DAYS: u32 = 15;
/// Calendar hours for an expedited appeal decision (ERISA).
pub const EXPEDITED_APPEAL_HOURS: u32 = 72;
/// Calendar days for a standard pre-service appeal decision (ERISA: 30 days).
pub const STANDARD_APPEAL_DAYS: u32 = 30;
/// Calendar days after an adverse decision within which an appeal may be filed
/// (ERISA: at least 180 days).
pub const APPEAL_FILING_DAYS: u32 = 180;

/// Calendar days for a decision on a retrospective (post-service) request (ERISA
/// post-service claims: 30 days).
pub const POST_SERVICE_DAYS: u32 = 30;

/// Calendar days an authorization stays valid after the last date of service
/// requested.
pub const AUTHORIZATION_VALID_DAYS: i64 = 90;
/// Calendar days after an appeal is upheld within which external review may be asked
/// for (four months, as the federal external-review rules allow).
pub const EXTERNAL_REVIEW_DAYS: i64 = 123;

/// How the due time was arrived at, stored with it so a report can say which limit
/// applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueBasis {
    /// The plan's business-day turnaround.
    BusinessDays,
    /// The regulatory ceiling was earlier and binds.
    RegulatoryCeiling,
    /// A retrospective request: the post-service clock in calendar days.
    PostService,
}

/// A due time and what set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub at: DateTime<Utc>,
    pub basis: DueBasis,
}

/// When a decision is due for a request received (or whose missing information was
/// received) at `received`.
///
/// Urgent: the end of the same business day, or of the next business day when
/// received after hours or on a non-business day. Routine: the end of the second
/// business day after receipt. Either way no later than the ceiling (72 or 168
/// calendar hours after receipt).
pub fn decision_due(cal: &BusinessCalendar, received: DateTime<Utc>, urgency: Urgency) -> Due {
    let (days, ceiling_hours) = match urgency {
        Urgency::Urgent => (0, URGENT_CEILING_HOURS),
        Urgency::Routine => (ROUTINE_BUSINESS_DAYS, ROUTINE_CEILING_HOURS),
    };
    let business = cal.business_deadline(received, days);
    let ceiling = cal.add_calendar_hours(received, ceiling_hours);
    if ceiling < business {
        Due {
            at: ceiling,
            basis: DueBasis::RegulatoryCeiling,
        }
    } else {
        Due {
            at: business,
            basis: DueBasis::BusinessDays,
        }
    }
}

/// When the decision on a retrospective request received at `received` is due: 30
/// calendar days (ERISA post-service claims), whatever the urgency, since the service
/// was already given.
pub fn post_service_due(cal: &BusinessCalendar, received: DateTime<Utc>) -> Due {
    Due {
        at: cal.add_calendar_hours(received, POST_SERVICE_DAYS * 24),
        basis: DueBasis::PostService,
    }
}

/// When the requester's answer to an information request made at `requested` is due:
/// 48 hours for urgent requests (the ERISA minimum, and short enough to keep an urgent
/// case urgent), 15 business days for routine ones.
pub fn information_due(
    cal: &BusinessCalendar,
    requested: DateTime<Utc>,
    urgency: Urgency,
) -> DateTime<Utc> {
    match urgency {
        Urgency::Urgent => cal.add_calendar_hours(requested, URGENT_INFORMATION_HOURS),
        Urgency::Routine => cal.business_deadline(requested, INFORMATION_BUSINESS_DAYS),
    }
}

/// From when a request still waiting for information may be withdrawn: 15 business
/// days after the information was asked for, whatever the urgency (CAQH CORE 278).
pub fn withdraw_after(cal: &BusinessCalendar, requested: DateTime<Utc>) -> DateTime<Utc> {
    cal.business_deadline(requested, INFORMATION_BUSINESS_DAYS)
}

/// When an appeal filed at `filed` must be decided.
pub fn appeal_due(filed: DateTime<Utc>, expedited: bool) -> DateTime<Utc> {
    if expedited {
        filed + Duration::hours(i64::from(EXPEDITED_APPEAL_HOURS))
    } else {
        filed + Duration::days(i64::from(STANDARD_APPEAL_DAYS))
    }
}

/// The last moment an appeal may be filed after an adverse decision at `decided`.
pub fn appeal_filing_deadline(decided: DateTime<Utc>) -> DateTime<Utc> {
    decided + Duration::days(i64::from(APPEAL_FILING_DAYS))
}

/// The last day an authorization covers, for services requested up to `last_service`.
pub fn authorization_valid_through(last_service: NaiveDate) -> NaiveDate {
    last_service + Duration::days(AUTHORIZATION_VALID_DAYS)
}

/// The last day external review may be asked for after an appeal upheld on
/// `decided_on`.
pub fn external_review_deadline(decided_on: NaiveDate) -> NaiveDate {
    decided_on + Duration::days(EXTERNAL_REVIEW_DAYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn decision_due_examples() {
        let cal = BusinessCalendar::us_federal();
        // (received, urgency, due, basis)
        let cases = [
            // Wednesday morning, urgent: end of that day (17:00 EST = 22:00 UTC).
            (
                "2026-11-25T15:00:00Z",
                Urgency::Urgent,
                "2026-11-25T22:00:00Z",
                DueBasis::BusinessDays,
            ),
            // Wednesday after hours, urgent: Thanksgiving is skipped, Friday's end.
            (
                "2026-11-25T23:00:00Z",
                Urgency::Urgent,
                "2026-11-27T22:00:00Z",
                DueBasis::BusinessDays,
            ),
            // Friday evening before a Monday holiday (MLK 2027-01-18): next business day
            // is Tuesday 17:00, 94 hours away; the 72-hour ceiling binds.
            (
                "2027-01-15T23:00:00Z",
                Urgency::Urgent,
                "2027-01-18T23:00:00Z",
                DueBasis::RegulatoryCeiling,
            ),
            // Routine Wednesday before Thanksgiving: Monday's end.
            (
                "2026-11-25T15:00:00Z",
                Urgency::Routine,
                "2026-11-30T22:00:00Z",
                DueBasis::BusinessDays,
            ),
            // Routine on Christmas Eve: 2 business days is Tuesday 12-29.
            (
                "2026-12-24T15:00:00Z",
                Urgency::Routine,
                "2026-12-29T22:00:00Z",
                DueBasis::BusinessDays,
            ),
        ];
        for (received, urgency, due, basis) in cases {
            let d = decision_due(&cal, utc(received), urgency);
            assert_eq!((d.at, d.basis), (utc(due), basis), "{received} {urgency}");
        }
    }

    #[test]
    fn information_and_appeal_clocks() {
        let cal = BusinessCalendar::us_federal();
        let asked = utc("2026-12-31T15:00:00Z");
        assert_eq!(
            information_due(&cal, asked, Urgency::Urgent),
            utc("2027-01-02T15:00:00Z")
        );
        // 15 business days over New Year's Day and MLK Day.
        assert_eq!(
            information_due(&cal, asked, Urgency::Routine),
            utc("2027-01-25T22:00:00Z")
        );
        assert_eq!(withdraw_after(&cal, asked), utc("2027-01-25T22:00:00Z"));
        assert_eq!(appeal_due(asked, true), utc("2027-01-03T15:00:00Z"));
        assert_eq!(appeal_due(asked, false), utc("2027-01-30T15:00:00Z"));
        assert_eq!(appeal_filing_deadline(asked).month(), 6);
    }

    fn received() -> impl Strategy<Value = DateTime<Utc>> {
        let first = utc("2024-01-01T00:00:00Z").timestamp();
        let last = utc("2030-11-30T00:00:00Z").timestamp();
        (first..=last).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn due_never_past_the_ceiling_and_on_a_business_day_end(at in received(), urgent in any::<bool>()) {
            let cal = BusinessCalendar::us_federal();
            let urgency = if urgent { Urgency::Urgent } else { Urgency::Routine };
            let ceiling = if urgent { URGENT_CEILING_HOURS } else { ROUTINE_CEILING_HOURS };
            let due = decision_due(&cal, at, urgency);
            prop_assert!(due.at > at);
            prop_assert!(due.at <= at + Duration::hours(i64::from(ceiling)));
            match due.basis {
                DueBasis::BusinessDays => {
                    let local = due.at.with_timezone(&cal.timezone());
                    prop_assert!(cal.is_business_day(local.date_naive()));
                    prop_assert_eq!(local.time(), cal.business_hours().1);
                }
                DueBasis::RegulatoryCeiling => {
                    prop_assert_eq!(due.at, at + Duration::hours(i64::from(ceiling)));
                    let days = if urgent { 0 } else { ROUTINE_BUSINESS_DAYS };
                    prop_assert!(due.at < cal.business_deadline(at, days));
                }
                DueBasis::PostService => prop_assert!(false, "a request in advance is not post-service"),
            }
        }

        #[test]
        fn a_post_service_decision_is_due_thirty_calendar_days_after_receipt(at in received()) {
            let cal = BusinessCalendar::us_federal();
            let due = post_service_due(&cal, at);
            prop_assert_eq!(due.basis, DueBasis::PostService);
            prop_assert_eq!(due.at, at + Duration::days(i64::from(POST_SERVICE_DAYS)));
        }
    }
}
