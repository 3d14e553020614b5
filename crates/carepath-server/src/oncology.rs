//! `carepath.oncology.v1.OncologyService`: whole treatment plans against the pathway
//! catalogue, each submitted plan becoming one precertification case.
//!
//! On pathway with no open finding, every line of the case is approved at once;
//! otherwise the case waits for an oncologist with the findings and alternatives on
//! record, and the provider may adopt an alternative (a new plan and case replacing
//! the first, which is withdrawn). Every submitted plan publishes
//! `oncology.plan.submitted`, the early referral to oncology case management. The
//! same standards apply in and out of network.

use std::sync::Arc;

use carepath_core::{Icd10Code, Invalid, MemberId, Npi, Role, ServiceCode, Setting, Specialty};
use carepath_oncology::{
    Benefit, Catalogue, ClinicalContext, CycleCount, DaySchedule, DoseBasis, DrugCode, DrugRole,
    Evaluation, Intent, LineOfTherapy, PatientFactors, PlannedDrug, RiskFactor, SiteOfService,
    StageGroup, TreatmentPlan, adopt_alternative, evaluate_plan,
};
use carepath_precert::{
    Ctx, PrecertCase, ProgramReview, ProviderParty, ServiceLine, Submission, WithdrawReason,
};
use carepath_proto::oncology::v1::{self as pb, oncology_service_server::OncologyService};
use carepath_store::{AuditOutcome, PlanRecord, StoreError};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use tonic::{Request, Response, Status};

use crate::{
    context::{App, Caller, caller_of, page_in_memory, page_size},
    convert::{json_name, optional, required, timestamp, urgency_from_proto},
    error::{ApiError, ApiResult, respond},
    precert::{convert::case_to_proto, engine::PrecertEngine},
};
use carepath_app::{micros, pipeline::append_events, precert::record_of};

const RECORD_KIND: &str = "oncology_plan";
/// HCPCS for an oral anticancer drug not otherwise specified: how oral lines appear on
/// the precertification case (the pharmacy id stays on the plan).
const ORAL_ANTICANCER: &str = "J8999";
/// HCPCS for an oral non-chemotherapy drug not otherwise specified.
const ORAL_SUPPORTIVE: &str = "J8499";

/// The oncology service.
#[derive(Debug, Clone)]
pub struct Oncology {
    app: App,
    engine: Arc<PrecertEngine>,
    catalogue: Arc<Catalogue>,
}

/// What is stored for a submitted plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanDoc {
    request_id: String,
    plan: TreatmentPlan,
    /// The evaluation as returned to the provider, in its contract form (protobuf,
    /// hex-encoded), so the record shows exactly what was said.
    evaluation: String,
    alternatives: Vec<String>,
}

fn drug_from_proto(invalid: &mut Invalid, field: &str, d: pb::PlannedDrug) -> Option<PlannedDrug> {
    let code = required(invalid, &format!("{field}.code"), &d.code, DrugCode::parse);
    let basis = required(
        invalid,
        &format!("{field}.dose_basis"),
        &d.dose_basis,
        DoseBasis::parse,
    );
    let days = required(
        invalid,
        &format!("{field}.days"),
        &d.days,
        DaySchedule::parse,
    );
    if !(d.dose.is_finite() && d.dose > 0.0) {
        invalid.push(format!("{field}.dose"), "must be a positive number");
    }
    if d.cycle_length_days == 0 || d.cycle_length_days > 365 {
        invalid.push(format!("{field}.cycle_length_days"), "must be 1 to 365");
    }
    let cycles = match u16::try_from(d.cycles) {
        Ok(0) => CycleCount::UntilProgression,
        Ok(n) => CycleCount::Fixed(n),
        Err(_) => {
            invalid.push(format!("{field}.cycles"), "is too large");
            return None;
        }
    };
    Some(PlannedDrug {
        code: code?,
        name: (!d.name.trim().is_empty()).then(|| d.name.trim().to_owned()),
        dose: d.dose,
        basis: basis?,
        days: days?,
        cycle_length_days: u16::try_from(d.cycle_length_days).ok()?,
        cycles,
    })
}

fn positive(invalid: &mut Invalid, field: &str, v: f64) -> Option<f64> {
    if v == 0.0 {
        return None;
    }
    if !(v.is_finite() && v > 0.0) {
        invalid.push(field, "must be a positive number");
        return None;
    }
    Some(v)
}

fn plan_from_proto(p: Option<pb::TreatmentPlan>) -> Result<TreatmentPlan, Invalid> {
    let Some(p) = p else {
        return Err(Invalid::field("plan", "is required"));
    };
    let mut invalid = Invalid::new();
    let diagnosis = required(
        &mut invalid,
        "plan.diagnosis",
        &p.diagnosis,
        Icd10Code::parse,
    );
    let c = p.context.unwrap_or_default();
    let context = ClinicalContext {
        stage_group: optional(
            &mut invalid,
            "plan.context.stage_group",
            &c.stage_group,
            StageGroup::parse,
        )
        .flatten(),
        biomarkers: c.biomarkers.into_iter().collect(),
        histology: (!c.histology.trim().is_empty()).then(|| c.histology.trim().to_uppercase()),
        line: optional(
            &mut invalid,
            "plan.context.line",
            &c.line,
            LineOfTherapy::parse,
        )
        .flatten(),
        intent: optional(
            &mut invalid,
            "plan.context.intent",
            &c.intent,
            Intent::parse,
        )
        .flatten(),
        performance_status: match c.performance_status {
            -1 => None,
            n @ 0..=4 => Some(n as u8),
            _ => {
                invalid.push(
                    "plan.context.performance_status",
                    "ecog performance status must be 0 to 4, or -1 when not stated",
                );
                None
            }
        },
    };
    let pf = p.patient.unwrap_or_default();
    let risk_factors = pf
        .risk_factors
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            invalid.check(
                &format!("plan.patient.risk_factors[{i}]"),
                RiskFactor::parse(r),
            )
        })
        .collect();
    let patient = PatientFactors {
        age_years: match pf.age_years {
            0 => None,
            n if n <= 120 => Some(n as u8),
            _ => {
                invalid.push("plan.patient.age_years", "must be at most 120");
                None
            }
        },
        body_surface_area_m2: positive(
            &mut invalid,
            "plan.patient.body_surface_area_m2",
            pf.body_surface_area_m2,
        ),
        weight_kg: positive(&mut invalid, "plan.patient.weight_kg", pf.weight_kg),
        creatinine_clearance_ml_min: positive(
            &mut invalid,
            "plan.patient.creatinine_clearance_ml_min",
            pf.creatinine_clearance_ml_min,
        ),
        risk_factors,
    };
    if p.drugs.is_empty() {
        invalid.push("plan.drugs", "at least one drug is required");
    }
    let drugs: Vec<_> = p
        .drugs
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| drug_from_proto(&mut invalid, &format!("plan.drugs[{i}]"), d))
        .collect();
    let supportive: Vec<_> = p
        .supportive
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| drug_from_proto(&mut invalid, &format!("plan.supportive[{i}]"), d))
        .collect();
    let site_of_service = optional(
        &mut invalid,
        "plan.site_of_service",
        &p.site_of_service,
        SiteOfService::parse,
    )
    .flatten();
    let plan = TreatmentPlan {
        diagnosis: diagnosis.unwrap_or_else(|| Icd10Code::parse("C80.1").expect("valid code")),
        cancer_id: (!p.cancer_id.trim().is_empty()).then(|| p.cancer_id.trim().to_owned()),
        context,
        patient,
        drugs,
        supportive,
        site_of_service,
    };
    if let Err(more) = plan.validate() {
        invalid.extend(more.nest("plan"));
    }
    invalid.into_result()?;
    Ok(plan)
}

/// The contract form of a plan.
pub fn plan_to_proto(plan: &TreatmentPlan) -> pb::TreatmentPlan {
    let drug = |d: &PlannedDrug| pb::PlannedDrug {
        code: d.code.to_string(),
        name: d.name.clone().unwrap_or_default(),
        dose: d.dose,
        dose_basis: d.basis.as_str().to_owned(),
        days: d.days.to_string(),
        cycle_length_days: u32::from(d.cycle_length_days),
        cycles: match d.cycles {
            CycleCount::Fixed(n) => u32::from(n),
            CycleCount::UntilProgression => 0,
        },
    };
    pb::TreatmentPlan {
        diagnosis: plan.diagnosis.to_string(),
        cancer_id: plan.cancer_id.clone().unwrap_or_default(),
        context: Some(pb::ClinicalContext {
            stage_group: plan
                .context
                .stage_group
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            biomarkers: plan.context.biomarkers.clone().into_iter().collect(),
            histology: plan.context.histology.clone().unwrap_or_default(),
            line: plan
                .context
                .line
                .map(|l| l.as_str().to_owned())
                .unwrap_or_default(),
            intent: plan
                .context
                .intent
                .map(|i| i.as_str().to_owned())
                .unwrap_or_default(),
            performance_status: plan.context.performance_status.map_or(-1, i32::from),
        }),
        patient: Some(pb::PatientFactors {
            age_years: plan.patient.age_years.map_or(0, u32::from),
            body_surface_area_m2: plan.patient.body_surface_area_m2.unwrap_or(0.0),
            weight_kg: plan.patient.weight_kg.unwrap_or(0.0),
            creatinine_clearance_ml_min: plan.patient.creatinine_clearance_ml_min.unwrap_or(0.0),
            risk_factors: plan
                .patient
                .risk_factors
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        }),
        drugs: plan.drugs.iter().map(drug).collect(),
        supportive: plan.supportive.iter().map(drug).collect(),
        site_of_service: plan
            .site_of_service
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// The precertification code a plan line is billed under.
fn line_code(line: &carepath_oncology::ServiceLine) -> String {
    match (&line.code, line.benefit, line.role) {
        (DrugCode::Hcpcs(code), _, _) => code.to_string(),
        (_, _, DrugRole::Anticancer) => ORAL_ANTICANCER.to_owned(),
        _ => ORAL_SUPPORTIVE.to_owned(),
    }
}

fn line_units(line: &carepath_oncology::ServiceLine) -> u32 {
    // An absurd dose saturates (and fails the plan's checks) rather than overflowing.
    let per_cycle = line
        .units_per_administration
        .unwrap_or(1)
        .saturating_mul(u32::from(line.administrations_per_cycle.max(1)));
    line.total_units.unwrap_or(per_cycle).max(1)
}

fn evaluation_to_proto(e: &Evaluation, notice: &str) -> pb::Evaluation {
    pb::Evaluation {
        catalogue_version: e.catalogue_version.clone(),
        cancer_id: e.cancer_id.clone().unwrap_or_default(),
        on_pathway: e.on_pathway,
        instant_approval: e.instant_approval(),
        matched_regimen_id: e
            .matched
            .as_ref()
            .map(|m| m.regimen_id.clone())
            .unwrap_or_default(),
        matched_regimen_name: e
            .matched
            .as_ref()
            .map(|m| m.regimen_name.clone())
            .unwrap_or_default(),
        matched_situation_id: e
            .matched
            .as_ref()
            .map(|m| m.situation_id.clone())
            .unwrap_or_default(),
        findings: e
            .findings
            .iter()
            .map(|f| pb::Finding {
                code: json_name(&f.code),
                blocking: f.severity == carepath_oncology::Severity::Blocking,
                message: f.message.clone(),
                subject: f.subject.clone().unwrap_or_default(),
                references: f.references.clone(),
            })
            .collect(),
        alternatives: e
            .alternatives
            .iter()
            .map(|a| pb::Alternative {
                regimen_id: a.regimen_id.clone(),
                regimen_name: a.regimen_name.clone(),
                situation_id: a.situation_id.clone(),
                preference: a.preference as u32,
                cost_per_cycle_usd: a.cost_per_cycle_usd,
                references: a.references.clone(),
            })
            .collect(),
        site_of_service: e.site_of_service.as_ref().map(|s| pb::SiteSuggestion {
            planned: s.planned.as_str().to_owned(),
            suggested: s.suggested.as_str().to_owned(),
            saving_per_cycle_usd: s.saving_per_cycle_usd,
            estimated_saving_usd: s.estimated_saving_usd.unwrap_or(0),
        }),
        lines: e
            .service_lines
            .iter()
            .map(|l| pb::PlanLine {
                benefit: json_name(&l.benefit),
                drug_code: l.code.to_string(),
                drug_name: l.drug_name.clone(),
                role: json_name(&l.role),
                service_code: line_code(l),
                units: line_units(l),
            })
            .collect(),
        notice: notice.to_owned(),
    }
}

fn setting_of(site: Option<SiteOfService>) -> Setting {
    match site {
        Some(SiteOfService::Inpatient) => Setting::Inpatient,
        Some(SiteOfService::HospitalOutpatient) => Setting::Outpatient,
        Some(SiteOfService::HomeInfusion) => Setting::Home,
        Some(SiteOfService::Office) | None => Setting::Office,
    }
}

impl Oncology {
    pub fn new(app: App, engine: Arc<PrecertEngine>, catalogue: Arc<Catalogue>) -> Self {
        Oncology {
            app,
            engine,
            catalogue,
        }
    }

    fn evaluate(&self, plan: &TreatmentPlan) -> ApiResult<Evaluation> {
        Ok(evaluate_plan(&self.catalogue, plan)?)
    }

    fn may_view(actor: &carepath_core::Actor, record: &PlanRecord, case: &PrecertCase) -> bool {
        match actor.role {
            Role::Provider => actor.provider_npi().is_some_and(|npi| {
                npi.as_str() == record.treating_npi || npi == case.request.servicing_provider.npi
            }),
            Role::Member => actor
                .member_id()
                .is_some_and(|m| m.as_str() == record.member_id),
            Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
        }
    }

    async fn submitted(&self, record: &PlanRecord) -> ApiResult<pb::SubmittedPlan> {
        let case_record = self.app.store.get_case(&record.precert_case_id).await?;
        let case: PrecertCase = serde_json::from_value(case_record.doc.clone())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let doc: PlanDoc = serde_json::from_value(record.doc.0.clone())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let bytes = hex::decode(&doc.evaluation).map_err(|e| ApiError::Internal(e.to_string()))?;
        let evaluation = <pb::Evaluation as prost::Message>::decode(bytes.as_slice())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let request_id = case_record
            .request_key
            .split_once(':')
            .map_or("", |(_, r)| r)
            .to_owned();
        Ok(pb::SubmittedPlan {
            id: record.id.clone(),
            request_id: doc.request_id.clone(),
            member_id: record.member_id.clone(),
            treating_provider_npi: record.treating_npi.clone(),
            evaluation: Some(evaluation),
            case: Some(case_to_proto(&case, &request_id, self.app.now())),
            replaces_plan_id: record.replaces_plan_id.clone().unwrap_or_default(),
            submitted_at: Some(timestamp(record.submitted_at)),
            plan: Some(plan_to_proto(&doc.plan)),
        })
    }

    /// Creates the plan record and its precertification case (and withdraws the case
    /// of the plan it replaces) in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        caller: &Caller,
        request_id: &str,
        member_id: &MemberId,
        treating: &Npi,
        servicing: &Npi,
        urgency: carepath_core::Urgency,
        start: NaiveDate,
        plan: TreatmentPlan,
        replaces: Option<&PlanRecord>,
    ) -> ApiResult<PlanRecord> {
        let evaluation = self.evaluate(&plan)?;
        let member = match self.app.store.get_member(member_id).await {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::field("member_id", "no member with this id"));
            }
            Err(e) => return Err(e.into()),
        };
        let health_plan = self.app.store.get_plan(&member.plan_id).await?;
        let provider = |npi: &Npi, field: &'static str| {
            let store = self.app.store.clone();
            let npi = npi.clone();
            async move {
                match store.get_provider(&npi).await {
                    Ok(p) => Ok(p),
                    Err(StoreError::NotFound { .. }) => Err(ApiError::field(
                        field,
                        "no provider with this NPI in the directory",
                    )),
                    Err(e) => Err(e.into()),
                }
            }
        };
        let treating_provider = provider(treating, "treating_provider_npi").await?;
        let servicing_provider = provider(servicing, "servicing_provider_npi").await?;
        let lines: Vec<ServiceLine> = evaluation
            .service_lines
            .iter()
            .map(|l| {
                Ok(ServiceLine {
                    code: ServiceCode::parse(&line_code(l))
                        .map_err(|e| ApiError::Internal(e.to_string()))?,
                    units: line_units(l),
                    date_of_service: start,
                    setting: if l.benefit == Benefit::Pharmacy {
                        Setting::Home
                    } else {
                        setting_of(plan.site_of_service)
                    },
                    facility_kind: None,
                    length_of_stay_hours: None,
                    delivery: None,
                    admission: Default::default(),
                })
            })
            .collect::<ApiResult<_>>()?;
        let submission = Submission {
            member_id: member.id.clone(),
            requesting_provider: ProviderParty {
                npi: treating.clone(),
                network: treating_provider.network_status(&health_plan.id),
            },
            servicing_provider: ProviderParty {
                npi: servicing.clone(),
                network: servicing_provider.network_status(&health_plan.id),
            },
            plan: health_plan,
            lines,
            diagnoses: vec![plan.diagnosis.clone()],
            urgency,
            answers: Default::default(),
            records: Vec::new(),
        };
        let specialty = treating_provider
            .specialty
            .clone()
            .filter(|s| s.as_str().contains("oncology"))
            .or_else(|| Specialty::parse("medical_oncology").ok());
        let regimen = evaluation
            .matched
            .as_ref()
            .map_or("none", |m| m.regimen_id.as_str());
        let review = ProgramReview {
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
                    .map(|f| format!("{}: {}", json_name(&f.code), f.message))
                    .collect()
            },
            reviewer_specialty: specialty,
        };
        let who = carepath_precert::Caller::new(caller.actor.clone(), None);
        let rules = self.engine.rules();
        let gold = self.engine.gold_cards();
        let ctx = Ctx {
            calendar: &self.app.calendar,
            rules: &rules,
            gold_cards: &gold,
        };
        let now = micros(self.app.now());
        let case_id = format!("PA-{}", uuid::Uuid::now_v7().simple());
        let (case, events) = PrecertCase::submit_reviewed(
            case_id,
            submission,
            treating_provider.specialty.clone(),
            &who,
            &ctx,
            &review,
            now,
        )?;
        let key = format!("{treating}:{request_id}");
        let case_key = format!("{treating}:oncology:{request_id}");
        let proto_eval = evaluation_to_proto(&evaluation, self.catalogue.notice());
        let record = PlanRecord {
            id: format!("ONC-{}", uuid::Uuid::now_v7().simple()),
            request_key: key,
            member_id: member.id.to_string(),
            treating_npi: treating.to_string(),
            precert_case_id: case.id.clone(),
            replaces_plan_id: replaces.map(|r| r.id.clone()),
            submitted_at: now,
            doc: Json(
                serde_json::to_value(PlanDoc {
                    request_id: request_id.to_owned(),
                    plan: plan.clone(),
                    evaluation: hex::encode(prost::Message::encode_to_vec(&proto_eval)),
                    alternatives: evaluation
                        .alternatives
                        .iter()
                        .map(|a| a.regimen_id.clone())
                        .collect(),
                })
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            ),
        };
        let mut tx = self.app.store.begin().await?;
        if let Some(old) = replaces {
            let mut old_case_record = tx.case_for_update(&old.precert_case_id).await?;
            let mut old_case: PrecertCase = serde_json::from_value(old_case_record.doc.clone())
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let withdraw_events = old_case.withdraw(
                &who,
                WithdrawReason::ByRequester,
                &format!("replaced by the revised plan {}", record.id),
                now,
            )?;
            let old_key = old_case_record.request_key.clone();
            old_case_record = record_of(&old_case, &old_key);
            tx.update_case(&old_case_record, now).await?;
            append_events(&mut tx, withdraw_events).await?;
        }
        tx.insert_case(&record_of(&case, &case_key), now).await?;
        tx.insert_plan(&record).await?;
        let referral = carepath_core::DomainEvent {
            id: uuid::Uuid::now_v7().to_string(),
            kind: "oncology.plan.submitted".to_owned(),
            aggregate_kind: RECORD_KIND.to_owned(),
            aggregate_id: record.id.clone(),
            member_id: Some(member.id.clone()),
            occurred_at: now,
            payload: serde_json::json!({
                "plan_id": record.id,
                "precert_case_id": case.id,
                "member_id": member.id,
                "treating_provider_npi": treating,
                "cancer_id": evaluation.cancer_id,
                "diagnosis": plan.diagnosis,
                "on_pathway": evaluation.on_pathway,
                "instant_approval": evaluation.instant_approval(),
                "regimen_id": evaluation.matched.as_ref().map(|m| m.regimen_id.clone()),
                "replaces_plan_id": replaces.map(|r| r.id.clone()),
            }),
        };
        append_events(&mut tx, events).await?;
        tx.append_event(&referral).await?;
        tx.append_audit(
            &caller.audit_entry(
                RECORD_KIND,
                &record.id,
                Some(&member.id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn submit_plan(
        &self,
        caller: &Caller,
        req: pb::SubmitPlanRequest,
    ) -> ApiResult<pb::SubmitPlanResponse> {
        let mut invalid = Invalid::new();
        let request_id = req.request_id.trim().to_owned();
        if request_id.is_empty() || request_id.len() > 128 {
            invalid.push("request_id", "is required, at most 128 characters");
        }
        let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
        let treating = required(
            &mut invalid,
            "treating_provider_npi",
            &req.treating_provider_npi,
            Npi::parse,
        );
        let servicing = optional(
            &mut invalid,
            "servicing_provider_npi",
            &req.servicing_provider_npi,
            Npi::parse,
        );
        let urgency = urgency_from_proto(req.urgency, "urgency", &mut invalid);
        let start = crate::precert::convert::date(&mut invalid, "start_date", &req.start_date);
        let plan = match plan_from_proto(req.plan) {
            Ok(p) => Some(p),
            Err(e) => {
                invalid.extend(e);
                None
            }
        };
        invalid.into_result()?;
        let (member_id, treating, urgency, start, plan) = (
            member_id.expect("checked"),
            treating.expect("checked"),
            urgency.expect("checked"),
            start.expect("checked"),
            plan.expect("checked"),
        );
        let servicing = servicing.flatten().unwrap_or_else(|| treating.clone());
        match caller.actor.role {
            Role::Provider
                if caller
                    .actor
                    .provider_npi()
                    .is_some_and(|me| me == treating || me == servicing) => {}
            Role::Nurse | Role::Admin | Role::Service => {}
            _ => {
                return Err(ApiError::denied(
                    "oncology plans are submitted by the treating provider or plan intake staff",
                ));
            }
        }
        let key = format!("{treating}:{request_id}");
        if let Some(existing) = self.app.store.plan_by_request_key(&key).await? {
            return self.resubmitted(caller, &existing, &request_id).await;
        }
        let record = match self
            .create(
                caller,
                &request_id,
                &member_id,
                &treating,
                &servicing,
                urgency,
                start,
                plan,
                None,
            )
            .await
        {
            Err(ApiError::AlreadyExists { .. }) => {
                // A concurrent retry of the same request won the race.
                let existing = self
                    .app
                    .store
                    .plan_by_request_key(&key)
                    .await?
                    .ok_or_else(|| ApiError::Internal("plan vanished after conflict".into()))?;
                return self.resubmitted(caller, &existing, &request_id).await;
            }
            other => other?,
        };
        Ok(pb::SubmitPlanResponse {
            plan: Some(self.submitted(&record).await?),
            created: true,
        })
    }

    /// A retry returns the plan its request id made, to those who may see it; anyone
    /// else learns only that the request id is taken.
    async fn resubmitted(
        &self,
        caller: &Caller,
        existing: &PlanRecord,
        request_id: &str,
    ) -> ApiResult<pb::SubmitPlanResponse> {
        let case_record = self.app.store.get_case(&existing.precert_case_id).await?;
        let case: PrecertCase = serde_json::from_value(case_record.doc)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if !Self::may_view(&caller.actor, existing, &case) {
            return Err(ApiError::AlreadyExists {
                kind: "request id",
                id: request_id.to_owned(),
            });
        }
        let plan = self.submitted(existing).await?;
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &existing.id,
                Some(&case.request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(pb::SubmitPlanResponse {
            plan: Some(plan),
            created: false,
        })
    }

    async fn visible_plan(&self, caller: &Caller, id: &str) -> ApiResult<PlanRecord> {
        let record = match self.app.store.get_plan_record(id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        id,
                        None,
                        ApiError::hidden("oncology plan", id),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let case_record = self.app.store.get_case(&record.precert_case_id).await?;
        let case: PrecertCase = serde_json::from_value(case_record.doc)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if !Self::may_view(&caller.actor, &record, &case) {
            let member = MemberId::parse(&record.member_id).ok();
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    id,
                    member.as_ref(),
                    ApiError::hidden("oncology plan", id),
                )
                .await);
        }
        Ok(record)
    }
}

#[tonic::async_trait]
impl OncologyService for Oncology {
    async fn evaluate_plan(
        &self,
        request: Request<pb::EvaluatePlanRequest>,
    ) -> Result<Response<pb::EvaluatePlanResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let plan = plan_from_proto(request.into_inner().plan)?;
            let evaluation = self.evaluate(&plan)?;
            Ok(pb::EvaluatePlanResponse {
                evaluation: Some(evaluation_to_proto(&evaluation, self.catalogue.notice())),
            })
        })
        .await
    }

    async fn submit_plan(
        &self,
        request: Request<pb::SubmitPlanRequest>,
    ) -> Result<Response<pb::SubmitPlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            self.submit_plan(&caller, request.into_inner()).await
        })
        .await
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = request.get_ref().id.trim().to_owned();
            if id.is_empty() {
                return Err(ApiError::field("id", "is required"));
            }
            let record = self.visible_plan(&caller, &id).await?;
            let member = MemberId::parse(&record.member_id).ok();
            self.app
                .audit(
                    &caller,
                    RECORD_KIND,
                    &id,
                    member.as_ref(),
                    AuditOutcome::Allowed,
                )
                .await?;
            Ok(pb::GetPlanResponse {
                plan: Some(self.submitted(&record).await?),
            })
        })
        .await
    }

    async fn accept_alternative(
        &self,
        request: Request<pb::AcceptAlternativeRequest>,
    ) -> Result<Response<pb::AcceptAlternativeResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let mut invalid = Invalid::new();
            if req.plan_id.trim().is_empty() {
                invalid.push("plan_id", "is required");
            }
            if req.regimen_id.trim().is_empty() {
                invalid.push("regimen_id", "is required");
            }
            invalid.into_result()?;
            let old = self.visible_plan(&caller, req.plan_id.trim()).await?;
            if caller.actor.role != Role::Provider
                || caller
                    .actor
                    .provider_npi()
                    .is_none_or(|me| me.as_str() != old.treating_npi)
            {
                return Err(ApiError::denied(
                    "the treating provider adopts an alternative",
                ));
            }
            let doc: PlanDoc = serde_json::from_value(old.doc.0.clone())
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if !doc.alternatives.iter().any(|a| a == req.regimen_id.trim()) {
                return Err(ApiError::field(
                    "regimen_id",
                    format!(
                        "not one of the alternatives offered: {}",
                        doc.alternatives.join(", ")
                    ),
                ));
            }
            let plan = adopt_alternative(&self.catalogue, &doc.plan, req.regimen_id.trim())?;
            let old_case = self.app.store.get_case(&old.precert_case_id).await?;
            let case: PrecertCase = serde_json::from_value(old_case.doc)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let member = case.request.member_id.clone();
            let treating = case.request.requesting_provider.npi.clone();
            let servicing = case.request.servicing_provider.npi.clone();
            let start = case
                .request
                .lines
                .first()
                .map(|l| l.date_of_service)
                .unwrap_or_else(|| self.app.now().date_naive());
            let request_id = format!("{}:alt:{}", doc.request_id, req.regimen_id.trim());
            let record = self
                .create(
                    &caller,
                    &request_id,
                    &member,
                    &treating,
                    &servicing,
                    case.request.urgency,
                    start,
                    plan,
                    Some(&old),
                )
                .await?;
            Ok(pb::AcceptAlternativeResponse {
                plan: Some(self.submitted(&record).await?),
            })
        })
        .await
    }

    async fn list_pathways(
        &self,
        request: Request<pb::ListPathwaysRequest>,
    ) -> Result<Response<pb::ListPathwaysResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let page = request.into_inner().page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let c = &self.catalogue;
            let (cancers, next_page_token) = page_in_memory(
                c.cancers().iter().collect(),
                |cancer| cancer.id.clone(),
                &page.page_token,
                size,
            );
            Ok(pb::ListPathwaysResponse {
                catalogue_version: c.version().to_owned(),
                next_page_token,
                cancers: cancers
                    .into_iter()
                    .map(|cancer| pb::Cancer {
                        id: cancer.id.clone(),
                        name: cancer.name.clone(),
                        oncotree_code: cancer.oncotree.clone(),
                        icd10_ranges: cancer
                            .icd10
                            .iter()
                            .map(|r| format!("{}-{}", r.from, r.to))
                            .collect(),
                        situations: cancer
                            .situations
                            .iter()
                            .map(|s| pb::Situation {
                                id: s.id.clone(),
                                name: s.name.clone(),
                                regimen_ids: s.regimen_ids.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                notice: c.notice().to_owned(),
            })
        })
        .await
    }

    async fn get_pathway(
        &self,
        request: Request<pb::GetPathwayRequest>,
    ) -> Result<Response<pb::GetPathwayResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let req = request.into_inner();
            let mut invalid = Invalid::new();
            if req.cancer_id.trim().is_empty() {
                invalid.push("cancer_id", "is required");
            }
            let c = req.context.unwrap_or_default();
            let context = ClinicalContext {
                stage_group: optional(
                    &mut invalid,
                    "context.stage_group",
                    &c.stage_group,
                    StageGroup::parse,
                )
                .flatten(),
                biomarkers: c.biomarkers.into_iter().collect(),
                histology: (!c.histology.trim().is_empty())
                    .then(|| c.histology.trim().to_uppercase()),
                line: optional(&mut invalid, "context.line", &c.line, LineOfTherapy::parse)
                    .flatten(),
                intent: optional(&mut invalid, "context.intent", &c.intent, Intent::parse)
                    .flatten(),
                performance_status: u8::try_from(c.performance_status).ok().filter(|p| *p <= 4),
            };
            invalid.into_result()?;
            let cat = &self.catalogue;
            let options =
                cat.pathway(req.cancer_id.trim(), &context)
                    .ok_or_else(|| ApiError::NotFound {
                        kind: "cancer",
                        id: req.cancer_id.trim().to_owned(),
                    })?;
            let regimens = options
                .into_iter()
                .map(|o| pb::PathwayRegimen {
                    situation_id: o.situation.id.clone(),
                    situation_name: o.situation.name.clone(),
                    preference: o.preference as u32,
                    regimen_id: o.regimen.id.clone(),
                    regimen_name: o.regimen.name.clone(),
                    components: o
                        .regimen
                        .components
                        .iter()
                        .map(|comp| {
                            let drug = cat.drug(&comp.drug_id);
                            pb::RegimenComponent {
                                drug_id: comp.drug_id.clone(),
                                drug_name: drug.map(|d| d.name.clone()).unwrap_or_default(),
                                codes: drug
                                    .map(|d| {
                                        d.hcpcs
                                            .iter()
                                            .map(|h| h.code.to_string())
                                            .chain(
                                                d.pharmacy_codes
                                                    .iter()
                                                    .map(|p| p.as_str().to_owned()),
                                            )
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                                route: json_name(&comp.route),
                                dose: comp.dose,
                                dose_basis: comp.basis.as_str().to_owned(),
                                days: comp.days.to_string(),
                                cycle_length_days: u32::from(comp.cycle_length_days),
                                cycles: match comp.cycles {
                                    CycleCount::Fixed(n) => u32::from(n),
                                    CycleCount::UntilProgression => 0,
                                },
                            }
                        })
                        .collect(),
                    emetogenic_risk: json_name(&o.regimen.emetogenic_risk),
                    febrile_neutropenia_risk: json_name(&o.regimen.febrile_neutropenia_risk),
                    sites: o
                        .regimen
                        .sites
                        .iter()
                        .map(|s| s.as_str().to_owned())
                        .collect(),
                    references: o.regimen.references.clone(),
                })
                .collect();
            Ok(pb::GetPathwayResponse {
                catalogue_version: cat.version().to_owned(),
                regimens,
                notice: cat.notice().to_owned(),
            })
        })
        .await
    }
}
