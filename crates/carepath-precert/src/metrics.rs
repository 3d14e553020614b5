//! Reporting metrics over a period, in the shape CMS-0057-F asks payers to publish:
//! shares approved and denied (standard and expedited), approved after appeal,
//! approved after an extended review, and time from receipt to decision.
//!
//! Computed from [`CaseSummary`] values so a report can run over summaries kept in a
//! reporting table without loading whole cases.

use carepath_core::Urgency;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::case::{CaseState, DecisionMaker, DecisionOutcome, DecisionStage, PrecertCase};

/// Where a case ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalOutcome {
    Approved,
    PartiallyApproved,
    Denied,
    Withdrawn,
    /// No decision yet (or a post-decision path is open).
    Open,
}

/// What metrics need from one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSummary {
    pub case_id: String,
    pub urgency: Urgency,
    pub received_at: DateTime<Utc>,
    /// Due time set at receipt.
    pub original_due_at: DateTime<Utc>,
    /// The initial determination (the first decision), which the published shares
    /// are based on.
    pub first_decision: Option<(DecisionOutcome, DateTime<Utc>)>,
    /// Whether the first decision came after the due time in force when it was made.
    pub decided_late: bool,
    /// Whether the time for the first decision was extended past the due time set at
    /// receipt (the clock started again when requested information arrived).
    pub review_extended: bool,
    /// Whether the plan owes a decision and it is overdue, as of the summary's
    /// `as_of`.
    pub overdue: bool,
    pub final_outcome: FinalOutcome,
    pub auto_approved: bool,
    pub appealed: bool,
    pub approved_on_appeal: bool,
}

impl PrecertCase {
    /// The case as metrics see it, with open cases judged overdue as of `as_of`.
    pub fn summary(&self, as_of: DateTime<Utc>) -> CaseSummary {
        let first = self.decisions.first();
        let final_outcome = match self.state {
            CaseState::Approved | CaseState::AppealOverturned => FinalOutcome::Approved,
            CaseState::Withdrawn => FinalOutcome::Withdrawn,
            CaseState::AppealUpheld => match self.current_decision().map(|d| d.outcome) {
                Some(DecisionOutcome::PartiallyApproved) => FinalOutcome::PartiallyApproved,
                _ => FinalOutcome::Denied,
            },
            CaseState::Denied => FinalOutcome::Denied,
            CaseState::PartiallyApproved => FinalOutcome::PartiallyApproved,
            _ => FinalOutcome::Open,
        };
        CaseSummary {
            case_id: self.id.clone(),
            urgency: self.request.urgency,
            received_at: self.received_at,
            original_due_at: self.original_due.at,
            first_decision: first.map(|d| (d.outcome, d.at)),
            decided_late: first.is_some_and(|d| d.at > d.due_at),
            review_extended: first.is_some_and(|d| d.due_at > self.original_due.at),
            overdue: self.is_late(as_of),
            final_outcome,
            auto_approved: first.is_some_and(|d| {
                d.by == DecisionMaker::Automation && d.outcome == DecisionOutcome::Approved
            }),
            appealed: self.appeal.is_some(),
            approved_on_appeal: self.decisions.iter().any(|d| {
                d.stage == DecisionStage::Appeal && d.outcome == DecisionOutcome::Approved
            }),
        }
    }
}

/// Figures for one urgency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrgencyMetrics {
    /// Requests received in the period.
    pub received: u32,
    /// Of those, with an initial decision.
    pub decided: u32,
    pub approved: u32,
    pub partially_approved: u32,
    pub denied: u32,
    /// Shares of decided requests, 0.0 when none were decided.
    pub approved_share: f64,
    pub partially_approved_share: f64,
    pub denied_share: f64,
    /// Share of decided requests approved after their review time was extended.
    pub approved_after_extended_review_share: f64,
    pub mean_hours_to_decision: Option<f64>,
    pub median_hours_to_decision: Option<f64>,
}

/// The period's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub standard: UrgencyMetrics,
    pub expedited: UrgencyMetrics,
    /// Share of decided requests approved on appeal.
    pub approved_after_appeal_share: f64,
    /// Share of decided requests, of both urgencies, approved after their review time
    /// was extended (usually to wait for missing information).
    pub approved_after_extended_review_share: f64,
    /// Share of decided requests approved by automation at once.
    pub auto_approval_rate: f64,
    /// Requests decided after their due time, plus requests still overdue.
    pub late_cases: u32,
}

fn share(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

fn urgency_metrics(cases: &[&CaseSummary]) -> UrgencyMetrics {
    let decided: Vec<&&CaseSummary> = cases
        .iter()
        .filter(|c| c.first_decision.is_some())
        .collect();
    let count = |o: DecisionOutcome| {
        decided
            .iter()
            .filter(|c| c.first_decision.is_some_and(|(d, _)| d == o))
            .count() as u32
    };
    let mut hours: Vec<f64> = decided
        .iter()
        .filter_map(|c| {
            c.first_decision
                .map(|(_, at)| (at - c.received_at).num_milliseconds() as f64 / 3_600_000.0)
        })
        .collect();
    hours.sort_by(f64::total_cmp);
    let n = hours.len();
    let median = match n {
        0 => None,
        n if n % 2 == 1 => Some(hours[n / 2]),
        n => Some((hours[n / 2 - 1] + hours[n / 2]) / 2.0),
    };
    let decided_n = decided.len() as u32;
    let extended = decided
        .iter()
        .filter(|c| {
            c.review_extended
                && c.first_decision
                    .is_some_and(|(o, _)| o == DecisionOutcome::Approved)
        })
        .count() as u32;
    let (approved, partially_approved, denied) = (
        count(DecisionOutcome::Approved),
        count(DecisionOutcome::PartiallyApproved),
        count(DecisionOutcome::Denied),
    );
    UrgencyMetrics {
        received: cases.len() as u32,
        decided: decided_n,
        approved,
        partially_approved,
        denied,
        approved_share: share(approved, decided_n),
        partially_approved_share: share(partially_approved, decided_n),
        denied_share: share(denied, decided_n),
        approved_after_extended_review_share: share(extended, decided_n),
        mean_hours_to_decision: (n > 0).then(|| hours.iter().sum::<f64>() / n as f64),
        median_hours_to_decision: median,
    }
}

/// The report for requests received in `[from, to)`.
pub fn metrics(summaries: &[CaseSummary], from: DateTime<Utc>, to: DateTime<Utc>) -> Metrics {
    let in_period: Vec<&CaseSummary> = summaries
        .iter()
        .filter(|c| from <= c.received_at && c.received_at < to)
        .collect();
    let by = |u: Urgency| -> Vec<&CaseSummary> {
        in_period
            .iter()
            .copied()
            .filter(|c| c.urgency == u)
            .collect()
    };
    let decided: Vec<&&CaseSummary> = in_period
        .iter()
        .filter(|c| c.first_decision.is_some())
        .collect();
    let decided_n = decided.len() as u32;
    let count = |f: &dyn Fn(&CaseSummary) -> bool| decided.iter().filter(|c| f(c)).count() as u32;
    Metrics {
        from,
        to,
        standard: urgency_metrics(&by(Urgency::Routine)),
        expedited: urgency_metrics(&by(Urgency::Urgent)),
        approved_after_appeal_share: share(count(&|c| c.approved_on_appeal), decided_n),
        approved_after_extended_review_share: share(
            count(&|c| {
                c.review_extended
                    && c.first_decision
                        .is_some_and(|(o, _)| o == DecisionOutcome::Approved)
            }),
            decided_n,
        ),
        auto_approval_rate: share(count(&|c| c.auto_approved), decided_n),
        late_cases: in_period
            .iter()
            .filter(|c| c.decided_late || c.overdue)
            .count() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn summary(
        id: &str,
        urgency: Urgency,
        decided: Option<(DecisionOutcome, &str)>,
    ) -> CaseSummary {
        CaseSummary {
            case_id: id.into(),
            urgency,
            received_at: at("2026-03-02T14:00:00Z"),
            original_due_at: at("2026-03-04T22:00:00Z"),
            first_decision: decided.map(|(o, t)| (o, at(t))),
            decided_late: false,
            review_extended: false,
            overdue: false,
            final_outcome: FinalOutcome::Open,
            auto_approved: false,
            appealed: false,
            approved_on_appeal: false,
        }
    }

    #[test]
    fn shares_times_and_lateness() {
        use DecisionOutcome::*;
        let mut cases = vec![
            CaseSummary {
                auto_approved: true,
                ..summary(
                    "a",
                    Urgency::Routine,
                    Some((Approved, "2026-03-02T14:00:00Z")),
                )
            },
            summary(
                "b",
                Urgency::Routine,
                Some((Denied, "2026-03-03T14:00:00Z")),
            ),
            CaseSummary {
                decided_late: true,
                review_extended: true,
                approved_on_appeal: true,
                appealed: true,
                ..summary(
                    "c",
                    Urgency::Routine,
                    Some((Approved, "2026-03-06T14:00:00Z")),
                )
            },
            summary(
                "d",
                Urgency::Urgent,
                Some((PartiallyApproved, "2026-03-02T20:00:00Z")),
            ),
            CaseSummary {
                overdue: true,
                ..summary("e", Urgency::Urgent, None)
            },
        ];
        // Outside the period.
        cases.push(CaseSummary {
            received_at: at("2026-04-01T00:00:00Z"),
            ..summary(
                "f",
                Urgency::Routine,
                Some((Denied, "2026-04-01T01:00:00Z")),
            )
        });
        let m = metrics(
            &cases,
            at("2026-03-01T00:00:00Z"),
            at("2026-04-01T00:00:00Z"),
        );
        assert_eq!((m.standard.received, m.standard.decided), (3, 3));
        assert_eq!((m.standard.approved, m.standard.denied), (2, 1));
        assert!((m.standard.approved_share - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.standard.median_hours_to_decision, Some(24.0));
        assert_eq!(
            m.standard.mean_hours_to_decision,
            Some((0.0 + 24.0 + 96.0) / 3.0)
        );
        assert_eq!((m.expedited.received, m.expedited.decided), (2, 1));
        assert_eq!(m.expedited.partially_approved, 1);
        assert_eq!(m.expedited.median_hours_to_decision, Some(6.0));
        assert!((m.auto_approval_rate - 0.25).abs() < 1e-9);
        assert!((m.approved_after_appeal_share - 0.25).abs() < 1e-9);
        assert!((m.approved_after_extended_review_share - 0.25).abs() < 1e-9);
        assert!((m.standard.approved_after_extended_review_share - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.expedited.approved_after_extended_review_share, 0.0);
        assert_eq!(m.late_cases, 2);
    }

    #[test]
    fn decisions_within_a_second_still_count_their_time() {
        let case = summary(
            "a",
            Urgency::Urgent,
            Some((DecisionOutcome::Approved, "2026-03-02T14:00:00.720Z")),
        );
        let m = metrics(
            &[case],
            at("2026-03-01T00:00:00Z"),
            at("2026-04-01T00:00:00Z"),
        );
        let hours = m.expedited.mean_hours_to_decision.unwrap();
        assert!((hours * 3600.0 - 0.72).abs() < 1e-9, "{hours}");
    }

    #[test]
    fn empty_period_has_no_averages() {
        let m = metrics(&[], at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z"));
        assert_eq!(m.standard.mean_hours_to_decision, None);
        assert_eq!(m.auto_approval_rate, 0.0);
    }
}
