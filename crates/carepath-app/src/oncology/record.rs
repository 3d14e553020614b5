//! The one mapping between a submitted oncology plan and its stored row, and the
//! upgrade of rows written in the earlier shape.
//!
//! The row's document holds the client's request id, the plan, the evaluation said to
//! the provider (a [`PlanEvaluation`], as JSON) and the ids of the alternatives offered.
//!
//! Rows written before evaluations were stored as documents hold the evaluation as a
//! hex-encoded protobuf message instead. SQL cannot decode that, and this crate knows
//! no protobuf, so such a row is converted by evaluating its stored plan again:
//! evaluation is pure and deterministic (the same catalogue and plan give the same
//! evaluation), and every such row was judged against the shipped catalogue, so the
//! result is what was said at the time. As a check that the catalogue has not changed
//! since, the alternatives evaluated again must be the ones the row recorded as
//! offered; a row failing the check is not converted and cannot be read
//! ([`crate::AppError::Internal`]). [`upgrade_stored_plans`] converts every such row
//! once; `carepath migrate` and server start run it after the SQL migrations.

use carepath_core::{MemberId, Npi};
use carepath_oncology::{Catalogue, Evaluation, TreatmentPlan, evaluate_plan};
use carepath_store::{Json, PlanRecord, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};

/// An evaluation as it was said to the provider: the catalogue's judgement of the plan
/// and the notice the catalogue carries about its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEvaluation {
    /// What the catalogue says of the plan.
    pub evaluation: Evaluation,
    /// The label the catalogue data carries (the shipped data says it is illustrative).
    pub notice: String,
}

impl PlanEvaluation {
    /// The evaluation of `plan` against `catalogue`.
    pub fn of(catalogue: &Catalogue, plan: &TreatmentPlan) -> AppResult<Self> {
        Ok(PlanEvaluation {
            evaluation: evaluate_plan(catalogue, plan)?,
            notice: catalogue.notice().to_owned(),
        })
    }

    /// The ids of the on-pathway alternatives offered, most preferred first.
    pub fn alternative_ids(&self) -> Vec<String> {
        self.evaluation
            .alternatives
            .iter()
            .map(|a| a.regimen_id.clone())
            .collect()
    }
}

/// The stored document of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanDoc {
    request_id: String,
    plan: TreatmentPlan,
    evaluation: StoredEvaluation,
    /// Absent from rows of the earlier shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    alternatives: Vec<String>,
}

/// The evaluation as a row holds it: a document, or (rows of the earlier shape) a
/// hex-encoded message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredEvaluation {
    Document(Box<Evaluation>),
    Encoded(String),
}

/// A submitted plan as stored: the row's columns, typed, and its document.
#[derive(Debug, Clone)]
pub(crate) struct StoredPlan {
    pub id: String,
    pub request_key: String,
    pub member_id: MemberId,
    pub treating_npi: Npi,
    pub precert_case_id: String,
    pub replaces_plan_id: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub request_id: String,
    pub plan: TreatmentPlan,
    /// `None` for a row of the earlier shape, until it is evaluated again.
    pub evaluation: Option<PlanEvaluation>,
    pub alternatives: Vec<String>,
}

fn unreadable(id: &str, e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("stored oncology plan {id} unreadable: {e}"))
}

impl StoredPlan {
    /// The plan a row holds.
    pub fn from_record(record: &PlanRecord) -> AppResult<Self> {
        let doc: PlanDoc =
            serde_json::from_value(record.doc.0.clone()).map_err(|e| unreadable(&record.id, e))?;
        let evaluation = match doc.evaluation {
            StoredEvaluation::Document(evaluation) => Some(PlanEvaluation {
                evaluation: *evaluation,
                notice: doc.notice.unwrap_or_default(),
            }),
            StoredEvaluation::Encoded(_) => None,
        };
        Ok(StoredPlan {
            id: record.id.clone(),
            request_key: record.request_key.clone(),
            member_id: MemberId::parse(&record.member_id).map_err(|e| unreadable(&record.id, e))?,
            treating_npi: Npi::parse(&record.treating_npi)
                .map_err(|e| unreadable(&record.id, e))?,
            precert_case_id: record.precert_case_id.clone(),
            replaces_plan_id: record.replaces_plan_id.clone(),
            submitted_at: record.submitted_at,
            request_id: doc.request_id,
            plan: doc.plan,
            evaluation,
            alternatives: doc.alternatives,
        })
    }

    /// The row to store. A plan of the earlier shape must be evaluated first
    /// ([`StoredPlan::evaluated`]).
    pub fn to_record(&self) -> AppResult<PlanRecord> {
        let evaluation = self
            .evaluation
            .as_ref()
            .ok_or_else(|| AppError::Internal(format!("plan {} is not evaluated", self.id)))?;
        let doc = PlanDoc {
            request_id: self.request_id.clone(),
            plan: self.plan.clone(),
            evaluation: StoredEvaluation::Document(Box::new(evaluation.evaluation.clone())),
            notice: Some(evaluation.notice.clone()),
            alternatives: self.alternatives.clone(),
        };
        Ok(PlanRecord {
            id: self.id.clone(),
            request_key: self.request_key.clone(),
            member_id: self.member_id.to_string(),
            treating_npi: self.treating_npi.to_string(),
            precert_case_id: self.precert_case_id.clone(),
            replaces_plan_id: self.replaces_plan_id.clone(),
            submitted_at: self.submitted_at,
            doc: Json(serde_json::to_value(doc).map_err(|e| unreadable(&self.id, e))?),
        })
    }

    /// The evaluation said when the plan was submitted; a row of the earlier shape is
    /// evaluated again against `catalogue` (see the module documentation).
    pub fn evaluation(&self, catalogue: &Catalogue) -> AppResult<PlanEvaluation> {
        if let Some(evaluation) = &self.evaluation {
            return Ok(evaluation.clone());
        }
        let evaluation = PlanEvaluation::of(catalogue, &self.plan)
            .map_err(|e| unreadable(&self.id, format!("its plan no longer evaluates: {e}")))?;
        if evaluation.alternative_ids() != self.alternatives {
            return Err(unreadable(
                &self.id,
                format!(
                    "catalogue {} offers other alternatives than were offered",
                    evaluation.evaluation.catalogue_version
                ),
            ));
        }
        Ok(evaluation)
    }
}

/// What [`upgrade_stored_plans`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanUpgrade {
    /// Rows converted to the current shape.
    pub converted: usize,
    /// Rows left as they were because they could not be read or evaluated again to
    /// the same alternatives (each logged).
    pub kept: usize,
}

/// Converts every stored plan whose evaluation is in the earlier shape (a hex-encoded
/// message) to the current one, evaluating its plan again against `catalogue` (the
/// catalogue the server ships; see the module documentation). Idempotent: a second
/// run finds nothing to do. Each row is rewritten in its own transaction.
pub async fn upgrade_stored_plans(store: &Store, catalogue: &Catalogue) -> AppResult<PlanUpgrade> {
    let mut outcome = PlanUpgrade::default();
    for record in store.plans_with_encoded_evaluation().await? {
        let converted = StoredPlan::from_record(&record).and_then(|plan| {
            let evaluation = plan.evaluation(catalogue)?;
            Ok((plan, evaluation))
        });
        match converted {
            Ok((mut plan, evaluation)) => {
                plan.evaluation = Some(evaluation);
                let mut tx = store.begin().await?;
                tx.replace_plan_doc(&plan.id, &plan.to_record()?.doc)
                    .await?;
                tx.commit().await?;
                outcome.converted += 1;
            }
            Err(_) => {
                // The cause is not logged: it may quote the plan (health data).
                tracing::warn!(
                    plan_id = %record.id,
                    "stored oncology plan left in its earlier shape: it does not evaluate again to what was offered"
                );
                outcome.kept += 1;
            }
        }
    }
    if outcome != PlanUpgrade::default() {
        tracing::info!(
            converted = outcome.converted,
            kept = outcome.kept,
            "stored oncology evaluations upgraded"
        );
    }
    Ok(outcome)
}
