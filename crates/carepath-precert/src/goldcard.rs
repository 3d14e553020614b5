//! Gold carding: providers whose requests for a category are almost always approved
//! skip review for it, and lose the exemption when their record slips.
//!
//! The evaluation follows the shape of the Texas gold-card law: a six-month window, at
//! least five requests, at least 90% approved. Requests that were themselves approved
//! by a gold card are left out, or an exemption would keep renewing itself on its own
//! approvals.

use std::collections::{BTreeMap, HashMap};

use carepath_core::Npi;
use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::Category;

/// Length of the trailing evaluation window, and how long an exemption lasts before it
/// is re-evaluated.
pub const WINDOW_MONTHS: u32 = 6;

/// Fewest requests in the window for a provider to be evaluated at all; below it an
/// approval rate says little.
pub const MIN_REQUESTS: u32 = 5;

/// Lowest approval rate, in percent, that grants or keeps an exemption.
pub const MIN_APPROVAL_PERCENT: u32 = 90;

/// How a decided request ended, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordOutcome {
    Approved,
    /// Counts as not approved: the provider asked for more than was medically
    /// necessary.
    PartiallyApproved,
    Denied,
}

/// Who made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    Automation,
    Human,
}

/// One decided request, as kept in the decision history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub npi: Npi,
    pub category: Category,
    pub decided_at: DateTime<Utc>,
    pub outcome: RecordOutcome,
    pub decided_by: DecidedBy,
    /// Whether the approval came from a gold-card exemption (excluded from the
    /// statistics).
    pub gold_card: bool,
}

/// An exemption from review for one provider and category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    /// Stable id quoted in approvals (`GC-1234567893-advanced_imaging-2026-07-01`).
    pub id: String,
    pub npi: Npi,
    pub category: Category,
    pub granted_on: NaiveDate,
    /// When it must be re-evaluated.
    pub review_by: NaiveDate,
}

/// The exemptions in force, looked up by provider and category during determination.
#[derive(Debug, Clone, Default)]
pub struct GoldCards {
    by_key: HashMap<(Npi, Category), Exemption>,
}

impl GoldCards {
    /// The exemptions currently in force (the latest evaluation's grants).
    pub fn new(exemptions: impl IntoIterator<Item = Exemption>) -> Self {
        Self {
            by_key: exemptions
                .into_iter()
                .map(|e| ((e.npi.clone(), e.category), e))
                .collect(),
        }
    }

    /// The exemption `npi` holds for `category`, if any.
    pub fn exemption_for(&self, npi: &Npi, category: Category) -> Option<&Exemption> {
        self.by_key.get(&(npi.clone(), category))
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// How a provider's status changed at this evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Gained,
    Kept,
    Lost,
    /// Not exempt before or now.
    NotExempt,
}

/// One provider and category's statistics and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldCardStatus {
    pub npi: Npi,
    pub category: Category,
    /// Decided requests in the window, gold-card approvals excluded.
    pub requests: u32,
    pub approvals: u32,
    /// Of those, decided by a person (the rest by automation), for context.
    pub human_decisions: u32,
    /// Approvals / requests, 0.0 when there were none.
    pub rate: f64,
    pub change: StatusChange,
    /// The exemption granted or kept, if exempt now.
    pub exemption: Option<Exemption>,
}

impl GoldCardStatus {
    pub fn exempt(&self) -> bool {
        self.exemption.is_some()
    }
}

/// Whether the counts meet the thresholds; integer arithmetic so 9 of 10 is exactly
/// 90%.
pub fn qualifies(requests: u32, approvals: u32) -> bool {
    requests >= MIN_REQUESTS
        && u64::from(approvals) * 100 >= u64::from(requests) * u64::from(MIN_APPROVAL_PERCENT)
}

/// Evaluates every provider and category seen in `records` or holding an exemption in
/// `previous`, over the six months ending at `as_of` (exclusive of the start, inclusive
/// of `as_of`). Output is sorted by NPI, then category.
pub fn evaluate(
    records: &[DecisionRecord],
    as_of: DateTime<Utc>,
    previous: &GoldCards,
) -> Vec<GoldCardStatus> {
    let start = as_of
        .checked_sub_months(Months::new(WINDOW_MONTHS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // (requests, approvals, human decisions)
    let mut counts: BTreeMap<(Npi, Category), (u32, u32, u32)> = BTreeMap::new();
    for record in records {
        if record.gold_card || record.decided_at <= start || record.decided_at > as_of {
            continue;
        }
        let entry = counts
            .entry((record.npi.clone(), record.category))
            .or_default();
        entry.0 += 1;
        if record.outcome == RecordOutcome::Approved {
            entry.1 += 1;
        }
        if record.decided_by == DecidedBy::Human {
            entry.2 += 1;
        }
    }
    for key in previous.by_key.keys() {
        counts.entry(key.clone()).or_default();
    }

    let today = as_of.date_naive();
    let review_by = today
        .checked_add_months(Months::new(WINDOW_MONTHS))
        .unwrap_or(NaiveDate::MAX);
    counts
        .into_iter()
        .map(
            |((npi, category), (requests, approvals, human_decisions))| {
                let was = previous.exemption_for(&npi, category).is_some();
                let now = qualifies(requests, approvals);
                let change = match (was, now) {
                    (false, true) => StatusChange::Gained,
                    (true, true) => StatusChange::Kept,
                    (true, false) => StatusChange::Lost,
                    (false, false) => StatusChange::NotExempt,
                };
                // A kept exemption keeps its id and grant date; only its review moves.
                let exemption = now.then(|| match previous.exemption_for(&npi, category) {
                    Some(held) => Exemption {
                        review_by,
                        ..held.clone()
                    },
                    None => Exemption {
                        id: format!("GC-{npi}-{category}-{today}"),
                        npi: npi.clone(),
                        category,
                        granted_on: today,
                        review_by,
                    },
                });
                GoldCardStatus {
                    rate: if requests == 0 {
                        0.0
                    } else {
                        f64::from(approvals) / f64::from(requests)
                    },
                    npi,
                    category,
                    requests,
                    approvals,
                    human_decisions,
                    change,
                    exemption,
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn npi() -> Npi {
        Npi::parse("1234567893").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn record(day: &str, outcome: RecordOutcome, gold_card: bool) -> DecisionRecord {
        DecisionRecord {
            npi: npi(),
            category: Category::AdvancedImaging,
            decided_at: at(&format!("{day}T15:00:00Z")),
            outcome,
            decided_by: DecidedBy::Automation,
            gold_card,
        }
    }

    fn run(records: &[DecisionRecord], previous: &GoldCards) -> GoldCardStatus {
        let mut out = evaluate(records, at("2026-07-01T00:00:00Z"), previous);
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    #[test]
    fn thresholds_and_changes() {
        use RecordOutcome::*;
        let none = GoldCards::default();
        let nine_of_ten: Vec<_> = (1..=10)
            .map(|d| {
                record(
                    &format!("2026-03-{d:02}"),
                    if d == 1 { Denied } else { Approved },
                    false,
                )
            })
            .collect();
        let s = run(&nine_of_ten, &none);
        assert_eq!(
            (s.requests, s.approvals, s.change),
            (10, 9, StatusChange::Gained)
        );
        assert!((s.rate - 0.9).abs() < 1e-9);
        let exemption = s.exemption.clone().unwrap();
        assert_eq!(exemption.id, "GC-1234567893-advanced_imaging-2026-07-01");
        assert_eq!(exemption.review_by.to_string(), "2027-01-01");

        let held = GoldCards::new([exemption.clone()]);
        assert_eq!(run(&nine_of_ten, &held).change, StatusChange::Kept);
        // Kept a month later: the same exemption, reviewed later.
        let kept = evaluate(&nine_of_ten, at("2026-08-01T00:00:00Z"), &held).remove(0);
        let again = kept.exemption.unwrap();
        assert_eq!(
            (kept.change, again.id.as_str(), again.granted_on),
            (
                StatusChange::Kept,
                exemption.id.as_str(),
                exemption.granted_on
            )
        );
        assert_eq!(again.review_by.to_string(), "2027-02-01");

        // Partial approvals count against the rate.
        let mut slipping = nine_of_ten.clone();
        slipping[2].outcome = PartiallyApproved;
        let s = run(&slipping, &held);
        assert_eq!((s.approvals, s.change), (8, StatusChange::Lost));
        assert!(s.exemption.is_none());

        // Four requests are too few, however good.
        let four: Vec<_> = nine_of_ten[1..5].to_vec();
        assert_eq!(run(&four, &none).change, StatusChange::NotExempt);
    }

    #[test]
    fn gold_card_approvals_and_old_records_do_not_count() {
        use RecordOutcome::*;
        let mut records: Vec<_> = (1..=4)
            .map(|d| record(&format!("2026-05-{d:02}"), Approved, false))
            .collect();
        // Gold-card approvals would lift it to 10 requests.
        records.extend((1..=6).map(|d| record(&format!("2026-06-{d:02}"), Approved, true)));
        // Outside the window: before it, exactly at its (exclusive) start, and after
        // as_of.
        records.push(record("2025-12-31", Approved, false));
        records.push(DecisionRecord {
            decided_at: at("2026-01-01T00:00:00Z"),
            ..record("2026-01-01", Approved, false)
        });
        records.push(record("2026-07-02", Approved, false));
        let s = run(&records, &GoldCards::default());
        assert_eq!(s.requests, 4);
        assert_eq!(s.change, StatusChange::NotExempt);
    }

    #[test]
    fn exempt_providers_with_no_activity_lose_it() {
        let previous = GoldCards::new([Exemption {
            id: "GC-old".into(),
            npi: npi(),
            category: Category::Dialysis,
            granted_on: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            review_by: NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
        }]);
        let out = evaluate(&[], at("2026-07-01T00:00:00Z"), &previous);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].change, StatusChange::Lost);
        assert_eq!(out[0].requests, 0);
    }

    proptest! {
        #[test]
        fn exemption_iff_thresholds(outcomes in proptest::collection::vec(0u8..3, 0..30), gold in proptest::collection::vec(any::<bool>(), 30)) {
            let records: Vec<DecisionRecord> = outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let outcome = match o { 0 => RecordOutcome::Approved, 1 => RecordOutcome::PartiallyApproved, _ => RecordOutcome::Denied };
                    record(&format!("2026-04-{:02}", i % 28 + 1), outcome, gold[i])
                })
                .collect();
            let counted: Vec<&DecisionRecord> = records.iter().filter(|r| !r.gold_card).collect();
            let requests = counted.len() as u32;
            let approvals = counted.iter().filter(|r| r.outcome == RecordOutcome::Approved).count() as u32;
            let out = evaluate(&records, at("2026-07-01T00:00:00Z"), &GoldCards::default());
            let exempt = out.first().is_some_and(GoldCardStatus::exempt);
            let expected = requests >= 5 && f64::from(approvals) / f64::from(requests.max(1)) >= 0.9;
            prop_assert_eq!(exempt, expected);
            for s in &out {
                prop_assert!(s.requests >= s.approvals);
                prop_assert!(!s.exempt() || s.rate >= 0.9);
            }
        }
    }
}
