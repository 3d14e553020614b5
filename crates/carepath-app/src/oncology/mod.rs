//! Oncology pathway review: whole treatment plans against the pathway catalogue, each
//! submitted plan becoming one precertification case.
//!
//! On pathway with no open finding, every line of the case is approved at once;
//! otherwise the case waits for an oncologist with the findings and alternatives on
//! record, and the provider may adopt an alternative (a new plan and case replacing
//! the first, which is withdrawn). Every submitted plan publishes
//! `oncology.plan.submitted`, the early referral to oncology case management. The
//! same standards apply in and out of network.
//!
//! The precertification case of a plan is filed, and the case of a replaced plan
//! withdrawn, through the precertification use cases ([`crate::precert::filing`]);
//! this area never writes a case row itself.

pub mod policy;
pub mod record;

use std::sync::Arc;

use carepath_core::{EventDraft, Invalid, MemberId, Npi, ServiceCode, Setting, Specialty, Urgency};
use carepath_oncology::{
    Benefit, Cancer, Catalogue, ClinicalContext, Drug, Regimen, SiteOfService, Situation,
    TreatmentPlan, adopt_alternative,
};
use carepath_precert::{PrecertCase, ProgramReview, ProviderParty, Submission};
use carepath_store::{AuditOutcome, StoreError};
use chrono::{DateTime, NaiveDate, Utc};

pub use policy::{may_adopt, may_submit, may_view};
pub use record::{PlanEvaluation, PlanUpgrade, upgrade_stored_plans};

use crate::{
    App, Caller, PageRequest,
    error::{AppError, AppResult},
    page_in_memory,
    pipeline::{append_events, record_id},
    precert::{
        PrecertEngine, case_of,
        filing::{self, ReviewedRequest},
        request_id_of,
    },
};
use record::StoredPlan;

/// The audit log's record kind of an oncology plan.
pub const RECORD_KIND: &str = "oncology_plan";
/// What a caller is told was not found.
const NOUN: &str = "oncology plan";
/// The longest request id a client may send.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The oncology use cases.
#[derive(Debug, Clone)]
pub struct Oncology {
    app: App,
    engine: Arc<PrecertEngine>,
    catalogue: Arc<Catalogue>,
}

/// A plan to submit for review.
#[derive(Debug, Clone)]
pub struct SubmitPlan {
    /// The client's id of the request, unique per treating provider (retries with the
    /// same id return the plan it made); see [`check_request_id`].
    pub request_id: String,
    /// The member the plan treats.
    pub member_id: MemberId,
    /// The provider treating the member, who requests the services.
    pub treating_provider: Npi,
    /// Where the services are given; the treating provider when not named.
    pub servicing_provider: Option<Npi>,
    /// How soon a decision is owed.
    pub urgency: Urgency,
    /// The first date of service.
    pub start_date: NaiveDate,
    /// The plan itself.
    pub plan: TreatmentPlan,
}

/// A treating provider adopting one of the alternatives offered for a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptAlternative {
    /// The plan offered the alternative.
    pub plan_id: String,
    /// The regimen adopted, one of those offered.
    pub regimen_id: String,
}

/// A submitted plan with its evaluation and its precertification case.
#[derive(Debug, Clone)]
pub struct SubmittedPlan {
    /// The plan's id (`ONC-…`).
    pub id: String,
    /// The client's request id the plan was submitted under.
    pub request_id: String,
    /// The member the plan treats.
    pub member_id: MemberId,
    /// The provider treating the member.
    pub treating_provider_npi: Npi,
    /// The evaluation said when the plan was submitted.
    pub evaluation: PlanEvaluation,
    /// The precertification case covering the plan's lines, as it is now.
    pub case: PrecertCase,
    /// The request id the case was filed under (`oncology:<request id>`).
    pub case_request_id: String,
    /// The plan this one replaced (an adopted alternative).
    pub replaces_plan_id: Option<String>,
    /// When the plan was submitted (microsecond precision).
    pub submitted_at: DateTime<Utc>,
    /// The plan as submitted.
    pub plan: TreatmentPlan,
    /// When this answer was made (the case's deadlines are told relative to it).
    pub as_of: DateTime<Utc>,
}

/// The answer to a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The plan, with its case as it is now.
    pub plan: SubmittedPlan,
    /// False for a retry that returned the plan its request id made before.
    pub created: bool,
}

/// One page of the catalogue's cancers.
#[derive(Debug, Clone)]
pub struct Pathways {
    /// The catalogue version listed.
    pub catalogue_version: String,
    /// The cancers of this page, ordered by id.
    pub cancers: Vec<Cancer>,
    /// Empty on the last page.
    pub next_page_token: String,
    /// The label the catalogue data carries.
    pub notice: String,
}

/// The on-pathway regimens for a cancer in a clinical context.
#[derive(Debug, Clone)]
pub struct Pathway {
    /// The catalogue version consulted.
    pub catalogue_version: String,
    /// The regimens, by situation and preference.
    pub regimens: Vec<PathwayRegimen>,
    /// The label the catalogue data carries.
    pub notice: String,
}

/// One on-pathway regimen for one situation.
#[derive(Debug, Clone)]
pub struct PathwayRegimen {
    /// The situation the regimen is on pathway for.
    pub situation: Situation,
    /// 1 for the most preferred.
    pub preference: usize,
    /// The regimen.
    pub regimen: Regimen,
    /// The catalogue's drug for each of the regimen's components, in order (`None`
    /// when the catalogue does not list it).
    pub drugs: Vec<Option<Drug>>,
}

/// A client's request id, trimmed: required and at most [`MAX_REQUEST_ID_LEN`]
/// characters.
///
/// ```
/// use carepath_app::oncology::check_request_id;
///
/// assert_eq!(check_request_id("request_id", " r-1 ").unwrap(), "r-1");
/// assert!(check_request_id("request_id", "  ").is_err());
/// ```
pub fn check_request_id(field: &str, value: &str) -> Result<String, Invalid> {
    let id = value.trim();
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN {
        return Err(Invalid::field(
            field,
            format!("is required, at most {MAX_REQUEST_ID_LEN} characters"),
        ));
    }
    Ok(id.to_owned())
}

/// The precertification setting of a plan's site of service.
fn setting_of(site: Option<SiteOfService>) -> Setting {
    match site {
        Some(SiteOfService::Inpatient) => Setting::Inpatient,
        Some(SiteOfService::HospitalOutpatient) => Setting::Outpatient,
        Some(SiteOfService::HomeInfusion) => Setting::Home,
        Some(SiteOfService::Office) | None => Setting::Office,
    }
}

/// The program review the pathway evaluation amounts to.
fn review_of(
    evaluation: &carepath_oncology::Evaluation,
    specialty: Option<Specialty>,
) -> ProgramReview {
    let regimen = evaluation
        .matched
        .as_ref()
        .map_or("none", |m| m.regimen_id.as_str());
    ProgramReview {
        approved: evaluation.instant_approval(),
        rule: format!(
            "oncology-pathway:{regimen}@{}",
            evaluation.catalogue_version
        ),
        criteria: if evaluation.instant_approval() {
            vec![
                format!(
                    "on pathway: {regimen} for {}",
                    evaluation
                        .matched
                        .as_ref()
                        .map_or("", |m| m.situation_id.as_str())
                ),
                "no open findings".to_owned(),
            ]
        } else {
            evaluation
                .open_findings()
                .map(|f| format!("{}: {}", f.code.as_str(), f.message))
                .collect()
        },
        reviewer_specialty: specialty,
    }
}

/// Who files a plan, for whom, and when services start.
struct Filing<'a> {
    request_id: &'a str,
    member_id: &'a MemberId,
    treating: &'a Npi,
    servicing: &'a Npi,
    urgency: Urgency,
    start: NaiveDate,
    plan: TreatmentPlan,
    replaces: Option<&'a StoredPlan>,
}

impl Oncology {
    /// The use cases over `app`, deciding cases with `engine`'s rules and judging plans
    /// against `catalogue`.
    pub fn new(app: App, engine: Arc<PrecertEngine>, catalogue: Arc<Catalogue>) -> Self {
        Oncology {
            app,
            engine,
            catalogue,
        }
    }

    /// The catalogue plans are judged against.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Evaluates a plan against the catalogue without submitting it. Open to every
    /// signed-in caller; nothing is stored.
    pub async fn evaluate_plan(
        &self,
        _caller: &Caller,
        plan: &TreatmentPlan,
    ) -> AppResult<PlanEvaluation> {
        PlanEvaluation::of(&self.catalogue, plan)
    }

    /// Submits a plan: evaluates it, files its precertification case (approved at once
    /// when on pathway with nothing open) and publishes the referral, in one
    /// transaction. Idempotent on (treating provider, request id): a retry returns the
    /// plan the request id made, to a caller who may see it ([`may_view`]); anyone
    /// else is told the request id is taken. Submitted by the treating or servicing
    /// provider, or plan intake staff ([`may_submit`]).
    pub async fn submit_plan(&self, caller: &Caller, cmd: SubmitPlan) -> AppResult<Submitted> {
        let servicing = cmd
            .servicing_provider
            .clone()
            .unwrap_or_else(|| cmd.treating_provider.clone());
        if !may_submit(&caller.actor, &cmd.treating_provider, &servicing) {
            return Err(AppError::denied(
                "oncology plans are submitted by the treating provider or plan intake staff",
            ));
        }
        let key = format!("{}:{}", cmd.treating_provider, cmd.request_id);
        if let Some(existing) = self.app.store.plan_by_request_key(&key).await? {
            return self
                .resubmitted(
                    caller,
                    &StoredPlan::from_record(&existing)?,
                    &cmd.request_id,
                )
                .await;
        }
        let created = self
            .create(
                caller,
                Filing {
                    request_id: &cmd.request_id,
                    member_id: &cmd.member_id,
                    treating: &cmd.treating_provider,
                    servicing: &servicing,
                    urgency: cmd.urgency,
                    start: cmd.start_date,
                    plan: cmd.plan,
                    replaces: None,
                },
            )
            .await;
        let plan = match created {
            Err(AppError::AlreadyExists { .. }) => {
                // A concurrent retry of the same request won the race.
                let existing = self
                    .app
                    .store
                    .plan_by_request_key(&key)
                    .await?
                    .ok_or_else(|| AppError::Internal("plan vanished after conflict".into()))?;
                return self
                    .resubmitted(
                        caller,
                        &StoredPlan::from_record(&existing)?,
                        &cmd.request_id,
                    )
                    .await;
            }
            other => other?,
        };
        Ok(Submitted {
            plan: self.submitted(plan).await?,
            created: true,
        })
    }

    /// A submitted plan, to a caller who may see it ([`may_view`]); audited. Anyone
    /// else is told it does not exist (audited as refused).
    pub async fn get_plan(&self, caller: &Caller, id: &str) -> AppResult<SubmittedPlan> {
        let id = record_id(id, "id")?;
        let (plan, _) = self.visible_plan(caller, &id).await?;
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &id,
                Some(&plan.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        self.submitted(plan).await
    }

    /// The treating provider adopts one of the alternatives offered for a plan: a new
    /// plan with the alternative regimen is submitted, and the case of the first is
    /// withdrawn, in one transaction.
    pub async fn accept_alternative(
        &self,
        caller: &Caller,
        cmd: AcceptAlternative,
    ) -> AppResult<SubmittedPlan> {
        let mut invalid = Invalid::new();
        let plan_id = cmd.plan_id.trim();
        let regimen_id = cmd.regimen_id.trim();
        if plan_id.is_empty() {
            invalid.push("plan_id", "is required");
        }
        if regimen_id.is_empty() {
            invalid.push("regimen_id", "is required");
        }
        invalid.into_result()?;
        let (old, case) = self.visible_plan(caller, plan_id).await?;
        if !may_adopt(&caller.actor, &old.treating_npi) {
            return Err(AppError::denied(
                "the treating provider adopts an alternative",
            ));
        }
        if !old.alternatives.iter().any(|a| a == regimen_id) {
            return Err(AppError::field(
                "regimen_id",
                format!(
                    "not one of the alternatives offered: {}",
                    old.alternatives.join(", ")
                ),
            ));
        }
        let plan = adopt_alternative(&self.catalogue, &old.plan, regimen_id)?;
        let start = case
            .request
            .lines
            .first()
            .map(|l| l.date_of_service)
            .unwrap_or_else(|| self.app.now().date_naive());
        let request_id = format!("{}:alt:{regimen_id}", old.request_id);
        let created = self
            .create(
                caller,
                Filing {
                    request_id: &request_id,
                    member_id: &case.request.member_id,
                    treating: &case.request.requesting_provider.npi,
                    servicing: &case.request.servicing_provider.npi,
                    urgency: case.request.urgency,
                    start,
                    plan,
                    replaces: Some(&old),
                },
            )
            .await?;
        self.submitted(created).await
    }

    /// One page of the catalogue's cancers, ordered by id. Open to every signed-in
    /// caller.
    pub async fn list_pathways(&self, _caller: &Caller, page: PageRequest) -> AppResult<Pathways> {
        let size = page.checked_size("page.page_size")?;
        let c = &self.catalogue;
        let (cancers, next_page_token) = page_in_memory(
            c.cancers().iter().collect(),
            |cancer| cancer.id.clone(),
            &page.token,
            size,
        );
        Ok(Pathways {
            catalogue_version: c.version().to_owned(),
            cancers: cancers.into_iter().cloned().collect(),
            next_page_token,
            notice: c.notice().to_owned(),
        })
    }

    /// The on-pathway regimens for cancer `cancer_id` in the situations `context` fits
    /// (criteria it does not report are not held against it). Open to every signed-in
    /// caller.
    pub async fn get_pathway(
        &self,
        _caller: &Caller,
        cancer_id: &str,
        context: &ClinicalContext,
    ) -> AppResult<Pathway> {
        let cat = &self.catalogue;
        let cancer_id = cancer_id.trim();
        let options = cat
            .pathway(cancer_id, context)
            .ok_or_else(|| AppError::NotFound {
                kind: "cancer",
                id: cancer_id.to_owned(),
            })?;
        let regimens = options
            .into_iter()
            .map(|o| PathwayRegimen {
                situation: o.situation.clone(),
                preference: o.preference,
                regimen: o.regimen.clone(),
                drugs: o
                    .regimen
                    .components
                    .iter()
                    .map(|comp| cat.drug(&comp.drug_id).cloned())
                    .collect(),
            })
            .collect();
        Ok(Pathway {
            catalogue_version: cat.version().to_owned(),
            regimens,
            notice: cat.notice().to_owned(),
        })
    }

    /// A stored plan and its case, when the caller may see them; otherwise an audited
    /// NOT_FOUND.
    async fn visible_plan(
        &self,
        caller: &Caller,
        id: &str,
    ) -> AppResult<(StoredPlan, PrecertCase)> {
        let record = match self.app.store.get_plan_record(id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, id, None, AppError::hidden(NOUN, id))
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let plan = StoredPlan::from_record(&record)?;
        let case = self.case_of(&plan).await?;
        if !may_view(&caller.actor, &plan.treating_npi, &plan.member_id, &case) {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    id,
                    Some(&plan.member_id),
                    AppError::hidden(NOUN, id),
                )
                .await);
        }
        Ok((plan, case))
    }

    /// The precertification case of a plan, as it is now.
    async fn case_of(&self, plan: &StoredPlan) -> AppResult<PrecertCase> {
        case_of(&self.app.store.get_case(&plan.precert_case_id).await?)
    }

    /// A retry returns the plan its request id made, to those who may see it; anyone
    /// else learns only that the request id is taken.
    async fn resubmitted(
        &self,
        caller: &Caller,
        existing: &StoredPlan,
        request_id: &str,
    ) -> AppResult<Submitted> {
        let case = self.case_of(existing).await?;
        if !may_view(
            &caller.actor,
            &existing.treating_npi,
            &existing.member_id,
            &case,
        ) {
            return Err(AppError::AlreadyExists {
                kind: "request id",
                id: request_id.to_owned(),
            });
        }
        let plan = self.submitted(existing.clone()).await?;
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &existing.id,
                Some(&case.request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(Submitted {
            plan,
            created: false,
        })
    }

    /// The answer for a stored plan, with its case as it is now.
    async fn submitted(&self, plan: StoredPlan) -> AppResult<SubmittedPlan> {
        let case_record = self.app.store.get_case(&plan.precert_case_id).await?;
        let case = case_of(&case_record)?;
        Ok(SubmittedPlan {
            evaluation: plan.evaluation(&self.catalogue)?,
            case_request_id: request_id_of(&case_record).to_owned(),
            case,
            id: plan.id,
            request_id: plan.request_id,
            member_id: plan.member_id,
            treating_provider_npi: plan.treating_npi,
            replaces_plan_id: plan.replaces_plan_id,
            submitted_at: plan.submitted_at,
            plan: plan.plan,
            as_of: self.app.now(),
        })
    }

    /// A provider of the directory, or an error naming `field`.
    async fn provider(&self, npi: &Npi, field: &str) -> AppResult<carepath_core::Provider> {
        match self.app.store.get_provider(npi).await {
            Ok(p) => Ok(p),
            Err(StoreError::NotFound { .. }) => Err(AppError::field(
                field,
                "no provider with this NPI in the directory",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a new plan and files its precertification case (withdrawing the case of
    /// the plan it replaces) in one transaction.
    async fn create(&self, caller: &Caller, f: Filing<'_>) -> AppResult<StoredPlan> {
        let evaluation = PlanEvaluation::of(&self.catalogue, &f.plan)?;
        let member = match self.app.store.get_member(f.member_id).await {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => {
                return Err(AppError::field("member_id", "no member with this id"));
            }
            Err(e) => return Err(e.into()),
        };
        let health_plan = self.app.store.get_plan(&member.plan_id).await?;
        let treating_provider = self.provider(f.treating, "treating_provider_npi").await?;
        let servicing_provider = self.provider(f.servicing, "servicing_provider_npi").await?;
        let lines = evaluation
            .evaluation
            .service_lines
            .iter()
            .map(|l| {
                Ok(carepath_precert::ServiceLine {
                    code: ServiceCode::parse(&l.precert_code())
                        .map_err(|e| AppError::Internal(e.to_string()))?,
                    units: l.precert_units(),
                    date_of_service: f.start,
                    setting: if l.benefit == Benefit::Pharmacy {
                        Setting::Home
                    } else {
                        setting_of(f.plan.site_of_service)
                    },
                    facility_kind: None,
                    length_of_stay_hours: None,
                    delivery: None,
                    admission: Default::default(),
                })
            })
            .collect::<AppResult<_>>()?;
        let submission = Submission {
            member_id: member.id.clone(),
            requesting_provider: ProviderParty {
                npi: f.treating.clone(),
                network: treating_provider.network_status(&health_plan.id),
            },
            servicing_provider: ProviderParty {
                npi: f.servicing.clone(),
                network: servicing_provider.network_status(&health_plan.id),
            },
            plan: health_plan,
            lines,
            diagnoses: vec![f.plan.diagnosis.clone()],
            urgency: f.urgency,
            answers: Default::default(),
            records: Vec::new(),
            coverage_assertions: Vec::new(),
        };
        let specialty = treating_provider
            .specialty
            .clone()
            .filter(|s| s.as_str().contains("oncology"))
            .or_else(|| Specialty::parse("medical_oncology").ok());
        let now = self.app.stored_now();
        let plan = StoredPlan {
            id: format!("ONC-{}", uuid::Uuid::now_v7().simple()),
            request_key: format!("{}:{}", f.treating, f.request_id),
            member_id: member.id.clone(),
            treating_npi: f.treating.clone(),
            // Set once the case is filed, below.
            precert_case_id: String::new(),
            replaces_plan_id: f.replaces.map(|r| r.id.clone()),
            submitted_at: now,
            request_id: f.request_id.to_owned(),
            alternatives: evaluation.alternative_ids(),
            plan: f.plan,
            evaluation: Some(evaluation),
        };
        let mut tx = self.app.store.begin().await?;
        if let Some(old) = f.replaces {
            filing::withdraw_replaced(&mut tx, caller, &old.precert_case_id, &plan.id, now).await?;
        }
        let review = ReviewedRequest {
            review: review_of(
                &plan.evaluation.as_ref().expect("just evaluated").evaluation,
                specialty,
            ),
            submission,
            requesting_specialty: treating_provider.specialty.clone(),
            request_key: format!("{}:oncology:{}", f.treating, f.request_id),
        };
        let case =
            filing::file_reviewed(&self.app, &self.engine, &mut tx, caller, review, now).await?;
        let plan = StoredPlan {
            precert_case_id: case.id.clone(),
            ..plan
        };
        tx.insert_plan(&plan.to_record()?).await?;
        let evaluation = &plan.evaluation.as_ref().expect("just evaluated").evaluation;
        let referral = EventDraft {
            kind: "oncology.plan.submitted",
            aggregate_kind: RECORD_KIND,
            aggregate_id: plan.id.clone(),
            member_id: member.id.clone(),
            occurred_at: now,
            payload: serde_json::json!({
                "plan_id": plan.id,
                "precert_case_id": case.id,
                "member_id": member.id,
                "treating_provider_npi": f.treating,
                "cancer_id": evaluation.cancer_id,
                "diagnosis": plan.plan.diagnosis,
                "on_pathway": evaluation.on_pathway,
                "instant_approval": evaluation.instant_approval(),
                "regimen_id": evaluation.matched.as_ref().map(|m| m.regimen_id.clone()),
                "replaces_plan_id": plan.replaces_plan_id,
            }),
        };
        append_events(&mut tx, vec![referral]).await?;
        tx.append_audit(
            &caller.audit_entry(
                RECORD_KIND,
                &plan.id,
                Some(&member.id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(plan)
    }
}
