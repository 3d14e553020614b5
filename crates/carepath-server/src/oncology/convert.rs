//! Conversions between `carepath.oncology.v1` messages and the oncology use cases'
//! domain types. Incoming conversions collect every bad field under the path the
//! caller sent; outgoing ones cannot fail.

use carepath_app::{
    PageRequest,
    oncology::{
        AcceptAlternative, Pathway, Pathways, PlanEvaluation, SubmitPlan, SubmittedPlan,
        check_request_id,
    },
};
use carepath_core::{Icd10Code, Invalid, MemberId, Npi};
use carepath_oncology::{
    ClinicalContext, CycleCount, DaySchedule, DoseBasis, DrugCode, Intent, LineOfTherapy,
    PatientFactors, PlannedDrug, RiskFactor, Severity, SiteOfService, StageGroup, TreatmentPlan,
};
use carepath_proto::oncology::v1 as pb;

use crate::{
    convert::{json_name, optional, required, timestamp, urgency_from_proto},
    precert::convert::{case_to_proto, date},
};

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

/// A clinical context; `prefix` is the field path of the message (`plan.context.`).
fn context_from_proto(
    invalid: &mut Invalid,
    prefix: &str,
    c: pb::ClinicalContext,
    strict_performance_status: bool,
) -> ClinicalContext {
    ClinicalContext {
        stage_group: optional(
            invalid,
            &format!("{prefix}stage_group"),
            &c.stage_group,
            StageGroup::parse,
        )
        .flatten(),
        biomarkers: c.biomarkers.into_iter().collect(),
        histology: (!c.histology.trim().is_empty()).then(|| c.histology.trim().to_uppercase()),
        line: optional(
            invalid,
            &format!("{prefix}line"),
            &c.line,
            LineOfTherapy::parse,
        )
        .flatten(),
        intent: optional(
            invalid,
            &format!("{prefix}intent"),
            &c.intent,
            Intent::parse,
        )
        .flatten(),
        performance_status: if strict_performance_status {
            match c.performance_status {
                -1 => None,
                n @ 0..=4 => Some(n as u8),
                _ => {
                    invalid.push(
                        format!("{prefix}performance_status"),
                        "ecog performance status must be 0 to 4, or -1 when not stated",
                    );
                    None
                }
            }
        } else {
            u8::try_from(c.performance_status).ok().filter(|p| *p <= 4)
        },
    }
}

/// A treatment plan, every bad field named under `plan.`.
pub fn plan_from_proto(p: Option<pb::TreatmentPlan>) -> Result<TreatmentPlan, Invalid> {
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
    let context = context_from_proto(
        &mut invalid,
        "plan.context.",
        p.context.unwrap_or_default(),
        true,
    );
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
        cycles: cycles_to_proto(d.cycles),
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

fn cycles_to_proto(cycles: CycleCount) -> u32 {
    match cycles {
        CycleCount::Fixed(n) => u32::from(n),
        CycleCount::UntilProgression => 0,
    }
}

/// The contract form of an evaluation.
pub fn evaluation_to_proto(pe: &PlanEvaluation) -> pb::Evaluation {
    let e = &pe.evaluation;
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
                blocking: f.severity == Severity::Blocking,
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
                service_code: l.precert_code(),
                units: l.precert_units(),
            })
            .collect(),
        notice: pe.notice.clone(),
    }
}

/// A submission, every bad field named.
pub fn submit_plan(req: pb::SubmitPlanRequest) -> Result<SubmitPlan, Invalid> {
    let mut invalid = Invalid::new();
    let request_id = match check_request_id("request_id", &req.request_id) {
        Ok(id) => Some(id),
        Err(e) => {
            invalid.extend(e);
            None
        }
    };
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
    let start = date(&mut invalid, "start_date", &req.start_date);
    let plan = match plan_from_proto(req.plan) {
        Ok(p) => Some(p),
        Err(e) => {
            invalid.extend(e);
            None
        }
    };
    invalid.into_result()?;
    Ok(SubmitPlan {
        request_id: request_id.expect("checked"),
        member_id: member_id.expect("checked"),
        treating_provider: treating.expect("checked"),
        servicing_provider: servicing.flatten(),
        urgency: urgency.expect("checked"),
        start_date: start.expect("checked"),
        plan: plan.expect("checked"),
    })
}

/// The adoption of an alternative (checked by the use case).
pub fn accept_alternative(req: pb::AcceptAlternativeRequest) -> AcceptAlternative {
    AcceptAlternative {
        plan_id: req.plan_id,
        regimen_id: req.regimen_id,
    }
}

/// The contract form of a submitted plan.
pub fn submitted_to_proto(p: &SubmittedPlan) -> pb::SubmittedPlan {
    pb::SubmittedPlan {
        id: p.id.clone(),
        request_id: p.request_id.clone(),
        member_id: p.member_id.to_string(),
        treating_provider_npi: p.treating_provider_npi.to_string(),
        evaluation: Some(evaluation_to_proto(&p.evaluation)),
        case: Some(case_to_proto(&p.case, &p.case_request_id, p.as_of)),
        replaces_plan_id: p.replaces_plan_id.clone().unwrap_or_default(),
        submitted_at: Some(timestamp(p.submitted_at)),
        plan: Some(plan_to_proto(&p.plan)),
    }
}

/// A page request for the catalogue's cancers.
pub fn list_pathways(req: pb::ListPathwaysRequest) -> PageRequest {
    let page = req.page.unwrap_or_default();
    PageRequest {
        token: page.page_token,
        size: page.page_size,
    }
}

/// The cancer and clinical context of a pathway request, every bad field named.
pub fn get_pathway(req: pb::GetPathwayRequest) -> Result<(String, ClinicalContext), Invalid> {
    let mut invalid = Invalid::new();
    if req.cancer_id.trim().is_empty() {
        invalid.push("cancer_id", "is required");
    }
    let context = context_from_proto(
        &mut invalid,
        "context.",
        req.context.unwrap_or_default(),
        false,
    );
    invalid.into_result()?;
    Ok((req.cancer_id.trim().to_owned(), context))
}

/// The contract form of a page of cancers.
pub fn pathways_to_proto(p: Pathways) -> pb::ListPathwaysResponse {
    pb::ListPathwaysResponse {
        catalogue_version: p.catalogue_version,
        next_page_token: p.next_page_token,
        cancers: p
            .cancers
            .into_iter()
            .map(|cancer| pb::Cancer {
                id: cancer.id,
                name: cancer.name,
                oncotree_code: cancer.oncotree,
                icd10_ranges: cancer
                    .icd10
                    .iter()
                    .map(|r| format!("{}-{}", r.from, r.to))
                    .collect(),
                situations: cancer
                    .situations
                    .into_iter()
                    .map(|s| pb::Situation {
                        id: s.id,
                        name: s.name,
                        regimen_ids: s.regimen_ids,
                    })
                    .collect(),
            })
            .collect(),
        notice: p.notice,
    }
}

/// The contract form of a pathway.
pub fn pathway_to_proto(p: Pathway) -> pb::GetPathwayResponse {
    let regimens = p
        .regimens
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
                .zip(&o.drugs)
                .map(|(comp, drug)| pb::RegimenComponent {
                    drug_id: comp.drug_id.clone(),
                    drug_name: drug.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
                    codes: drug
                        .as_ref()
                        .map(|d| {
                            d.hcpcs
                                .iter()
                                .map(|h| h.code.to_string())
                                .chain(d.pharmacy_codes.iter().map(|p| p.as_str().to_owned()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    route: json_name(&comp.route),
                    dose: comp.dose,
                    dose_basis: comp.basis.as_str().to_owned(),
                    days: comp.days.to_string(),
                    cycle_length_days: u32::from(comp.cycle_length_days),
                    cycles: cycles_to_proto(comp.cycles),
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
    pb::GetPathwayResponse {
        catalogue_version: p.catalogue_version,
        regimens,
        notice: p.notice,
    }
}
