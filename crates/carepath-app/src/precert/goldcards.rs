//! Gold cards (providers exempt from precertification in a category where nearly all
//! their requests are approved) and the reporting metrics: the two uses that read
//! many cases at once.

use std::collections::BTreeSet;

use carepath_core::{Npi, Role};
use carepath_precert::{
    self as precert, DecisionMaker, DecisionOutcome, DecisionRecord, LineOutcome, PrecertCase,
    goldcard::{DecidedBy, RecordOutcome},
    metrics::Metrics,
};
use carepath_store::{CaseRecord, GoldCardRecord, StoreError};
use chrono::{DateTime, Utc};

use super::{Precert, case_of};
use crate::{AppError, AppResult, Caller, Page, PageRequest};

/// Cases read at once by the sweeps that visit many (gold cards, metrics), so memory
/// holds one page of full case documents, not all of them.
const CASE_PAGE: u32 = 500;
/// How far back a gold-card evaluation reads first decisions (more than the
/// evaluation's own window, which the precert crate applies).
const DECISION_READ_DAYS: i64 = 200;
/// The period metrics cover when the caller names no start.
const DEFAULT_METRICS_DAYS: i64 = 365;

/// A provider's gold-card standing in one category.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldCard {
    /// The provider.
    pub provider_npi: String,
    /// The service category (`advanced_imaging`, ...).
    pub category: String,
    /// Whether the provider is exempt from precertification in the category.
    pub exempt: bool,
    /// Decided requests in the window, gold-card approvals excluded.
    pub requests: u32,
    /// Of those, approved.
    pub approvals: u32,
    /// Approvals / requests, 0.0 when there were none.
    pub approval_rate: f64,
    /// When the standing was evaluated.
    pub evaluated_at: DateTime<Utc>,
    /// The start of the window of decisions counted.
    pub window_start: DateTime<Utc>,
    /// How the standing changed at the evaluation (`granted`, `kept`, ...).
    pub change: String,
}

impl From<GoldCardRecord> for GoldCard {
    fn from(c: GoldCardRecord) -> Self {
        GoldCard {
            approval_rate: if c.requests == 0 {
                0.0
            } else {
                c.approvals as f64 / c.requests as f64
            },
            provider_npi: c.npi,
            category: c.category,
            exempt: c.exempt,
            requests: c.requests as u32,
            approvals: c.approvals as u32,
            evaluated_at: c.evaluated_at,
            window_start: c.window_start,
            change: c.change,
        }
    }
}

/// The metrics of the cases received in a period, and how many cases were read.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsReport {
    /// The metrics.
    pub metrics: Metrics,
    /// Cases read.
    pub total_requests: u32,
}

/// The period metrics cover: cases received from `from` (a year before now when
/// `None`) until `to` (now when `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// The start, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// The end, exclusive.
    pub to: Option<DateTime<Utc>>,
}

/// A serde value's wire name (`"granted"` for `StatusChange::Granted`).
fn json_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Visits every case `read` returns, [`CASE_PAGE`] at a time: `read` takes the
/// (`key`, id) of the last case of the page before, `None` for the first page.
async fn each_case<Fut>(
    mut read: impl FnMut(Option<(DateTime<Utc>, String)>) -> Fut,
    key: impl Fn(&CaseRecord) -> DateTime<Utc>,
    mut visit: impl FnMut(&CaseRecord) -> AppResult<()>,
) -> AppResult<()>
where
    Fut: Future<Output = Result<Vec<CaseRecord>, StoreError>>,
{
    let mut after = None;
    loop {
        let page = read(after).await?;
        for record in &page {
            visit(record)?;
        }
        match page.last() {
            Some(last) if page.len() == CASE_PAGE as usize => {
                after = Some((key(last), last.id.clone()));
            }
            _ => return Ok(()),
        }
    }
}

/// The decision history gold carding counts: one record per category of the case's
/// lines, from its first decision.
fn decision_records(case: &PrecertCase) -> Vec<DecisionRecord> {
    let Some(first) = case.decisions.first() else {
        return Vec::new();
    };
    let outcome = match first.outcome {
        DecisionOutcome::Approved => RecordOutcome::Approved,
        DecisionOutcome::PartiallyApproved => RecordOutcome::PartiallyApproved,
        DecisionOutcome::Denied => RecordOutcome::Denied,
    };
    let decided_by = match first.by {
        DecisionMaker::Automation => DecidedBy::Automation,
        DecisionMaker::Staff(_) => DecidedBy::Human,
    };
    let Some(det) = &case.determination else {
        return Vec::new();
    };
    let gold_card = det.lines.iter().any(|l| {
        matches!(
            l.outcome,
            LineOutcome::Approved {
                basis: precert::ApprovalBasis::GoldCard { .. }
            }
        )
    });
    let categories: BTreeSet<_> = det
        .lines
        .iter()
        .filter(|l| l.requirement == precert::Requirement::Required)
        .filter_map(|l| l.rule.as_ref().map(|r| r.category))
        .collect();
    categories
        .into_iter()
        .map(|category| DecisionRecord {
            npi: case.request.requesting_provider.npi.clone(),
            category,
            decided_at: first.at,
            outcome,
            decided_by,
            gold_card,
        })
        .collect()
}

impl Precert {
    /// When gold cards were last evaluated, by this process or another on the same
    /// database; `None` before the first evaluation.
    pub async fn gold_cards_evaluated_at(&self) -> AppResult<Option<DateTime<Utc>>> {
        Ok(self
            .app
            .store
            .gold_cards(None)
            .await?
            .into_iter()
            .map(|c| c.evaluated_at)
            .max())
    }

    /// An evaluation of gold cards asked for by an admin or an internal service.
    pub async fn evaluate_gold_cards_for(&self, caller: &Caller) -> AppResult<Vec<GoldCard>> {
        caller.require_role(&[Role::Admin, Role::Service], "gold-card evaluation")?;
        self.evaluate_gold_cards(self.app.now()).await
    }

    /// Recomputes gold cards as of `now` from the trailing window of first
    /// decisions, stores the standings and puts the exemptions in force (the daily
    /// sweep's step).
    pub async fn evaluate_gold_cards(&self, now: DateTime<Utc>) -> AppResult<Vec<GoldCard>> {
        // Two evaluations at once (the daily sweep and an admin's call) must not let
        // the one that read older decisions set the exemptions last.
        let _updating = self.engine.updating().await;
        let window_start = now - chrono::Duration::days(DECISION_READ_DAYS);
        let mut records = Vec::new();
        let (store, end) = (&self.app.store, now + chrono::Duration::seconds(1));
        each_case(
            |after| store.cases_decided_between(window_start, end, after, CASE_PAGE),
            |case| case.decided_at.unwrap_or(window_start),
            |record| {
                records.extend(decision_records(&case_of(record)?));
                Ok(())
            },
        )
        .await?;
        let previous = self.engine.gold_cards();
        let statuses = precert::goldcard::evaluate(&records, now, &previous);
        let mut tx = self.app.store.begin().await?;
        let mut out = Vec::with_capacity(statuses.len());
        for s in &statuses {
            let change = json_name(&s.change);
            let start = now
                .checked_sub_months(chrono::Months::new(6))
                .unwrap_or(now);
            tx.upsert_gold_card(&GoldCardRecord {
                npi: s.npi.to_string(),
                category: s.category.as_str().to_owned(),
                exempt: s.exempt(),
                requests: i64::from(s.requests),
                approvals: i64::from(s.approvals),
                evaluated_at: now,
                window_start: start,
                exemption: s
                    .exemption
                    .as_ref()
                    .map(|e| serde_json::to_string(e).expect("exemptions serialize"))
                    .unwrap_or_default(),
                change: change.clone(),
            })
            .await?;
            out.push(GoldCard {
                provider_npi: s.npi.to_string(),
                category: s.category.as_str().to_owned(),
                exempt: s.exempt(),
                requests: s.requests,
                approvals: s.approvals,
                approval_rate: s.rate,
                evaluated_at: now,
                window_start: start,
                change,
            });
        }
        tx.commit().await?;
        self.engine.set_gold_cards(precert::GoldCards::new(
            statuses.into_iter().filter_map(|s| s.exemption),
        ));
        Ok(out)
    }

    /// A page of the stored standings, of one provider or all; providers see their
    /// own, members none.
    pub async fn list_gold_cards(
        &self,
        caller: &Caller,
        npi: Option<Npi>,
        page: PageRequest,
    ) -> AppResult<Page<GoldCard>> {
        let size = page.checked_size("page.page_size")?;
        let npi = match caller.actor.role {
            Role::Provider => {
                let me = caller.actor.provider_npi();
                if npi.is_some() && npi != me {
                    return Err(AppError::denied("providers see their own gold cards"));
                }
                me
            }
            Role::Member => {
                return Err(AppError::denied(
                    "gold cards are for providers and plan staff",
                ));
            }
            _ => npi,
        };
        let found = self
            .app
            .store
            .gold_cards_page(npi.as_ref().map(|n| n.as_str()), &page.token, size)
            .await?;
        Ok(Page {
            items: found.items.into_iter().map(GoldCard::from).collect(),
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }

    /// The metrics of the cases received in `period`; for plan staff and internal
    /// services.
    pub async fn metrics(&self, caller: &Caller, period: Period) -> AppResult<MetricsReport> {
        caller.require_role(
            &[
                Role::Admin,
                Role::Service,
                Role::Nurse,
                Role::PhysicianReviewer,
            ],
            "metrics",
        )?;
        let now = self.app.now();
        let from = period
            .from
            .unwrap_or(now - chrono::Duration::days(DEFAULT_METRICS_DAYS));
        let to = period.to.unwrap_or(now + chrono::Duration::seconds(1));
        if to <= from {
            return Err(AppError::field("to", "must be after from"));
        }
        let mut summaries = Vec::new();
        let store = &self.app.store;
        each_case(
            |after| store.cases_received_between(from, to, after, CASE_PAGE),
            |case| case.received_at,
            |record| {
                summaries.push(case_of(record)?.summary(now));
                Ok(())
            },
        )
        .await?;
        Ok(MetricsReport {
            metrics: precert::metrics::metrics(&summaries, from, to),
            total_requests: summaries.len() as u32,
        })
    }
}
