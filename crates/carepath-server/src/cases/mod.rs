//! `carepath.cases.v1.CaseService`: nurse case management. Referrals, assignment, the
//! case through its phases, care plans, transitions of care, arranged services,
//! decision support and satisfaction.
//!
//! Decisions are the cases crate's; this module parses, authorizes, loads the case,
//! applies one command, and stores the case, its events and the audit entry in one
//! transaction. A caller who may not see a case is told it does not exist (audited).

pub mod convert;
pub mod referrals;

use std::collections::HashMap;

use carepath_cases::{
    self as cases, CareAbroad, CareAbroadAssessment, CareSetting, CaseError, CaseKind,
    DecisionReason, EventDraft, GoalStatus, InteractionChannel, ManagedCase, NewDecisionSupport,
    NewGoal, NewInteraction, NewService, NewTask, NewTransition, NurseCandidate, NurseRef, Outcome,
    Phase, Priority, Referral, ReferralSource, ServiceKind, ServiceState, TaskChange, TaskStatus,
    View,
};
use carepath_core::{
    CountryCode, Icd10Code, Invalid, MemberId, Npi, Role, Specialty, StaffId, StaffRole,
};
use carepath_proto::cases::v1::{self as pb, case_service_server::CaseService};
use carepath_store::{
    AuditOutcome, ManagedCaseFilter, ManagedCaseRecord, ProviderFilter, StaffFilter, StoreError, Tx,
};
use chrono::{DateTime, NaiveDate, Utc};
use tonic::{Request, Response, Status};

use self::convert::{
    case_to_proto, date, decision_support_to_proto, interaction_to_proto, optional_enum,
    required_enum, service_to_proto, task_to_proto, transition_to_proto,
};
use self::referrals::NewReferral;
use crate::{
    context::{App, Caller, caller_of, page_size},
    convert::{optional, provider_to_proto, required},
    error::{ApiError, ApiResult, respond},
};

/// The audit record kind of a case.
pub const RECORD_KIND: &str = "managed_case";

/// The case-management service.
#[derive(Debug, Clone)]
pub struct Cases {
    app: App,
    /// Open cases a nurse may hold at most.
    cap: u32,
}

/// The stored form of a case.
pub fn record_of(case: &ManagedCase) -> ManagedCaseRecord {
    ManagedCaseRecord {
        id: case.id.clone(),
        member_id: case.member_id.to_string(),
        kind: case.kind.as_str().to_owned(),
        phase: case.phase.as_str().to_owned(),
        nurse_id: case.nurse.as_ref().map(|n| n.staff_id.to_string()),
        opened_at: case.opened_at,
        closed_at: case.closed_at,
        doc: serde_json::to_value(case).expect("cases serialize"),
    }
}

pub(crate) fn case_of(record: &ManagedCaseRecord) -> ApiResult<ManagedCase> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| ApiError::Internal(format!("stored case {} unreadable: {e}", record.id)))
}

/// Writes the events of a command to the outbox of the open transaction.
pub async fn append_events(tx: &mut Tx, events: Vec<EventDraft>) -> ApiResult<()> {
    let events: Vec<_> = events
        .into_iter()
        .map(|draft| draft.into_event(uuid::Uuid::now_v7().to_string()))
        .collect();
    Ok(tx.append_events(&events).await?)
}

/// Microsecond precision: what both backends store, so pages compare exactly.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn parse_case_id(id: &str) -> ApiResult<String> {
    let id = id.trim();
    if id.is_empty() {
        return Err(ApiError::field("case_id", "is required"));
    }
    Ok(id.to_owned())
}

/// Records a missing case id with the request's other field problems.
fn require_case_id(invalid: &mut Invalid, case_id: &str) {
    if case_id.trim().is_empty() {
        invalid.push("case_id", "is required");
    }
}

fn text_opt(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

impl Cases {
    pub fn new(app: App) -> Self {
        Cases {
            app,
            cap: cases::DEFAULT_CASELOAD_CAP,
        }
    }

    /// The same service with another caseload cap.
    pub fn with_caseload_cap(mut self, cap: u32) -> Self {
        self.cap = cap;
        self
    }

    /// Today in the plan's business calendar, for due and overdue tasks.
    fn today(&self) -> NaiveDate {
        self.app
            .now()
            .with_timezone(&self.app.calendar.timezone())
            .date_naive()
    }

    /// The domain's view of the caller, with the staff member's name from the
    /// directory.
    async fn who(&self, caller: &Caller) -> ApiResult<cases::Caller> {
        let name = match caller.actor.staff_id() {
            Some(id) => match self.app.store.get_staff(&id).await {
                Ok(staff) => staff.name,
                Err(StoreError::NotFound { .. }) => id.to_string(),
                Err(e) => return Err(e.into()),
            },
            None => caller.actor.subject.clone(),
        };
        Ok(cases::Caller::new(caller.actor.clone(), name))
    }

    fn hidden(id: &str) -> ApiError {
        ApiError::hidden("case", id)
    }

    /// Reads a case the caller may see; otherwise an audited NOT_FOUND.
    async fn load_visible(&self, caller: &Caller, id: &str) -> ApiResult<(ManagedCase, View)> {
        let id = parse_case_id(id)?;
        let record = match self.app.store.get_managed_case(&id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, &id, None, Self::hidden(&id))
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let case = case_of(&record)?;
        let view = case.view_for(&caller.actor);
        if view == View::None {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    &id,
                    Some(&case.member_id),
                    Self::hidden(&id),
                )
                .await);
        }
        Ok((case, view))
    }

    /// Applies one command to a stored case: load under lock, check the caller may see
    /// it, run, store the case with its events and the audit entry, in one
    /// transaction. Returns the case as the caller may see it and the command's value.
    async fn mutate<T>(
        &self,
        caller: &Caller,
        case_id: &str,
        command: impl FnOnce(
            &mut ManagedCase,
            &cases::Caller,
            DateTime<Utc>,
        ) -> Result<(T, Vec<EventDraft>), CaseError>,
    ) -> ApiResult<(pb::Case, T)> {
        let id = parse_case_id(case_id)?;
        let who = self.who(caller).await?;
        let now = micros(self.app.now());
        let mut tx = self.app.store.begin().await?;
        let record = match tx.managed_case_for_update(&id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                drop(tx);
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, &id, None, Self::hidden(&id))
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let mut case = case_of(&record)?;
        let member = case.member_id.clone();
        if case.view_for(&caller.actor) == View::None {
            drop(tx);
            return Err(self
                .app
                .refuse(caller, RECORD_KIND, &id, Some(&member), Self::hidden(&id))
                .await);
        }
        let (value, events) = match command(&mut case, &who, now) {
            Ok(done) => done,
            Err(e) => {
                drop(tx);
                let err = ApiError::from(e);
                if matches!(err, ApiError::PermissionDenied(_)) {
                    return Err(self
                        .app
                        .refuse(caller, RECORD_KIND, &id, Some(&member), err)
                        .await);
                }
                return Err(err);
            }
        };
        tx.update_managed_case(&record_of(&case), now).await?;
        append_events(&mut tx, events).await?;
        tx.append_audit(
            &caller.audit_entry(RECORD_KIND, &id, Some(&member), AuditOutcome::Allowed),
            now,
        )
        .await?;
        tx.commit().await?;
        let view = case.view_for(&caller.actor);
        Ok((case_to_proto(&case.redacted(view), self.today()), value))
    }

    /// A nurse from the staff directory, for assignment.
    async fn nurse(&self, id: &StaffId, field: &str) -> ApiResult<NurseRef> {
        match self.app.store.get_staff(id).await {
            Ok(staff) if staff.role == StaffRole::Nurse => Ok(NurseRef {
                staff_id: staff.id,
                name: staff.name,
            }),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(ApiError::field(
                field,
                "no nurse with this id in the staff directory",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn caseload_of(&self, nurse: &StaffId) -> ApiResult<u32> {
        let loads = self.app.store.caseloads().await?;
        Ok(loads
            .iter()
            .find(|(id, _)| id == nurse.as_str())
            .map_or(0, |(_, n)| u32::try_from(*n).unwrap_or(u32::MAX)))
    }

    async fn open_case(
        &self,
        caller: &Caller,
        req: pb::OpenCaseRequest,
    ) -> ApiResult<pb::OpenCaseResponse> {
        let mut invalid = Invalid::new();
        let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
        let kind = required_enum(&mut invalid, "kind", CaseKind::ALL, req.kind, "CASE_KIND");
        let diagnosis = optional(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
        let reason = req.reason.trim().to_owned();
        if reason.is_empty() {
            invalid.push("reason", "is required");
        } else if reason.chars().count() > cases::MAX_TEXT {
            invalid.push(
                "reason",
                format!("must be at most {} characters", cases::MAX_TEXT),
            );
        }
        invalid.into_result()?;
        let (member_id, kind) = (member_id.expect("checked"), kind.expect("checked"));
        let source = match caller.actor.role {
            Role::Nurse => ReferralSource::Nurse,
            Role::Admin => ReferralSource::Admin,
            Role::Provider => ReferralSource::Provider,
            Role::Member if caller.actor.member_id().as_ref() == Some(&member_id) => {
                ReferralSource::Member
            }
            Role::Member => return Err(ApiError::denied("members refer themselves only")),
            Role::PhysicianReviewer | Role::Service => {
                return Err(ApiError::denied(
                    "referrals come from nurses, providers, members and supervisors",
                ));
            }
        };
        match self.app.store.get_member(&member_id).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::field("member_id", "no member with this id"));
            }
            Err(e) => return Err(e.into()),
        }
        let now = micros(self.app.now());
        let new = NewReferral {
            key: format!("manual:{}", uuid::Uuid::now_v7()),
            member_id,
            kind,
            referral: Referral {
                source,
                reason,
                referred_by: caller.actor.subject.clone(),
                event_id: None,
                source_id: None,
                diagnosis: diagnosis.flatten().map(|d| d.to_string()),
                at: now,
            },
            decision_support: None,
        };
        let mut tx = self.app.store.begin().await?;
        let placed = match referrals::place(&mut tx, caller, new, now).await {
            Err(ApiError::AlreadyExists { .. }) => {
                return Err(ApiError::FailedPrecondition(
                    "another referral for this member opened a case at the same moment; try again"
                        .into(),
                ));
            }
            other => other?,
        };
        tx.commit().await?;
        // A referrer who may not see the case (any provider may refer any member) is
        // told only that the referral was taken: not the case it reached, nor whether
        // the member already had one.
        let view = placed.case.view_for(&caller.actor);
        if view == View::None {
            return Ok(pb::OpenCaseResponse::default());
        }
        Ok(pb::OpenCaseResponse {
            case_id: placed.case.id.clone(),
            absorbed: placed.absorbed,
            case: Some(case_to_proto(&placed.case.redacted(view), self.today())),
        })
    }

    async fn get(
        &self,
        caller: &Caller,
        req: pb::GetCaseRequest,
    ) -> ApiResult<pb::GetCaseResponse> {
        let (case, view) = self.load_visible(caller, &req.case_id).await?;
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &case.id,
                Some(&case.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(pb::GetCaseResponse {
            case: Some(case_to_proto(&case.redacted(view), self.today())),
        })
    }

    async fn list(
        &self,
        caller: &Caller,
        req: pb::ListCasesRequest,
    ) -> ApiResult<pb::ListCasesResponse> {
        let mut invalid = Invalid::new();
        let member = optional(&mut invalid, "member_id", &req.member_id, MemberId::parse).flatten();
        let nurse = optional(&mut invalid, "nurse_id", &req.nurse_id, StaffId::parse).flatten();
        let kind = optional_enum(&mut invalid, "kind", CaseKind::ALL, req.kind, "CASE_KIND");
        let phase = optional_enum(&mut invalid, "phase", Phase::ALL, req.phase, "PHASE");
        let page = req.page.unwrap_or_default();
        let size = page_size(page.page_size, "page.page_size");
        invalid.into_result()?;
        let size = size?;
        let mut filter = ManagedCaseFilter {
            member_id: member.map(|m| m.to_string()),
            nurse_id: nurse.map(|n| n.to_string()),
            kind: kind.map(|k| k.as_str().to_owned()),
            phase: phase.map(|p| p.as_str().to_owned()),
            unassigned_only: req.unassigned_only,
            open_only: req.open_only,
            visible_to_nurse: None,
        };
        match caller.actor.role {
            Role::Admin | Role::Service => {}
            Role::Nurse => filter.visible_to_nurse = Some(caller.actor.subject.clone()),
            Role::Member => {
                let me = caller.actor.member_id().map(|m| m.to_string());
                if filter.member_id.is_some() && filter.member_id != me {
                    return Err(ApiError::denied("members list their own cases"));
                }
                filter.member_id = me;
            }
            Role::Provider => {
                if filter.member_id.is_none() {
                    return Err(ApiError::field(
                        "member_id",
                        "providers list the cases of one member they treat",
                    ));
                }
            }
            Role::PhysicianReviewer => {
                return Err(ApiError::denied(
                    "case management is for nurses and supervisors",
                ));
            }
        }
        let found = self
            .app
            .store
            .list_managed_cases(&filter, &page.page_token, size)
            .await?;
        let today = self.today();
        let now = self.app.now();
        let mut cases = Vec::with_capacity(found.items.len());
        let mut tx = self.app.store.begin().await?;
        for record in &found.items {
            let case = case_of(record)?;
            let view = case.view_for(&caller.actor);
            if view == View::None {
                continue;
            }
            tx.append_audit(
                &caller.audit_entry(
                    RECORD_KIND,
                    &case.id,
                    Some(&case.member_id),
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
            cases.push(case_to_proto(&case.redacted(view), today));
        }
        tx.commit().await?;
        Ok(pb::ListCasesResponse {
            cases,
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }

    async fn claim(&self, caller: &Caller, req: pb::ClaimCaseRequest) -> ApiResult<pb::Case> {
        if caller.actor.role != Role::Nurse {
            return Err(ApiError::denied(
                "only nurses claim cases; supervisors assign them",
            ));
        }
        let me = caller
            .actor
            .staff_id()
            .ok_or_else(|| ApiError::denied("nurses are known by their staff id"))?;
        let nurse = self.nurse(&me, "subject").await?;
        let load = self.caseload_of(&me).await?;
        if !cases::has_capacity(load, self.cap) {
            return Err(ApiError::FailedPrecondition(format!(
                "your caseload is at the cap ({load} of {} open cases)",
                self.cap
            )));
        }
        let (case, ()) = self
            .mutate(caller, &req.case_id, |case, who, now| {
                Ok(((), case.assign(who, nurse, "claimed from the queue", now)?))
            })
            .await?;
        Ok(case)
    }

    async fn assign(&self, caller: &Caller, req: pb::AssignCaseRequest) -> ApiResult<pb::Case> {
        if caller.actor.role != Role::Admin {
            return Err(ApiError::denied(
                "supervisors assign cases; nurses claim them",
            ));
        }
        let mut invalid = Invalid::new();
        let nurse_id = optional(&mut invalid, "nurse_id", &req.nurse_id, StaffId::parse).flatten();
        let id = parse_case_id(&req.case_id);
        invalid.into_result()?;
        let id = id?;
        let (nurse, reason) = match nurse_id {
            Some(nurse_id) => {
                let nurse = self.nurse(&nurse_id, "nurse_id").await?;
                let load = self.caseload_of(&nurse_id).await?;
                if !cases::has_capacity(load, self.cap) {
                    return Err(ApiError::FailedPrecondition(format!(
                        "nurse {nurse_id} is at the caseload cap ({load} of {})",
                        self.cap
                    )));
                }
                (nurse, req.reason.trim().to_owned())
            }
            None => {
                let (case, _) = self.load_visible(caller, &id).await?;
                let nurse = self.best_nurse(&case).await?;
                let reason = if req.reason.trim().is_empty() {
                    "matched by specialty, language and caseload".to_owned()
                } else {
                    req.reason.trim().to_owned()
                };
                (nurse, reason)
            }
        };
        let (case, ()) = self
            .mutate(caller, &id, |case, who, now| {
                Ok(((), case.assign(who, nurse, &reason, now)?))
            })
            .await?;
        Ok(case)
    }

    /// The best nurse for a case among those under the cap.
    async fn best_nurse(&self, case: &ManagedCase) -> ApiResult<NurseRef> {
        let staff = self
            .app
            .store
            .list_staff(
                &StaffFilter {
                    role: Some(StaffRole::Nurse.as_str().to_owned()),
                    specialty: None,
                },
                "",
                carepath_app::context::MAX_PAGE_SIZE,
            )
            .await?;
        let loads: HashMap<String, i64> = self.app.store.caseloads().await?.into_iter().collect();
        let language = self
            .app
            .store
            .get_member(&case.member_id)
            .await
            .ok()
            .map(|m| m.language);
        let current = case.nurse.as_ref().map(|n| n.staff_id.clone());
        let candidates: Vec<NurseCandidate> = staff
            .items
            .into_iter()
            .filter(|s| Some(&s.id) != current.as_ref())
            .map(|s| NurseCandidate {
                caseload: loads
                    .get(s.id.as_str())
                    .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX)),
                specialty: s.specialty.map(|x| x.to_string()),
                languages: s.languages,
                nurse: NurseRef {
                    staff_id: s.id,
                    name: s.name,
                },
            })
            .collect();
        cases::choose_nurse(case.kind, language.as_ref(), &candidates, self.cap)
            .map(|c| c.nurse.clone())
            .ok_or_else(|| {
                ApiError::FailedPrecondition("every nurse is at the caseload cap".into())
            })
    }

    async fn find_specialists(
        &self,
        caller: &Caller,
        req: pb::FindSpecialistsRequest,
    ) -> ApiResult<pb::FindSpecialistsResponse> {
        let mut invalid = Invalid::new();
        let specialty = required(&mut invalid, "specialty", &req.specialty, Specialty::parse);
        let country = optional(&mut invalid, "country", &req.country, CountryCode::parse).flatten();
        let page = req.page.unwrap_or_default();
        let size = page_size(page.page_size, "page.page_size");
        let id = parse_case_id(&req.case_id);
        invalid.into_result()?;
        let (size, id) = (size?, id?);
        let (case, view) = self.load_visible(caller, &id).await?;
        if view != View::Full {
            return Err(ApiError::denied(
                "the case's nurse searches for specialists",
            ));
        }
        let member = self.app.store.get_member(&case.member_id).await?;
        let country = country.unwrap_or_else(|| member.address.country.clone());
        let filter = ProviderFilter {
            specialty: specialty.map(|s| s.to_string()),
            kind: None,
            country: Some(country.to_string()),
            in_network_for_plan: Some(member.plan_id.to_string()),
            language: None,
        };
        let found = self
            .app
            .store
            .list_providers(&filter, &page.page_token, size)
            .await?;
        let mut providers = found.items;
        // Those who speak the member's language first; otherwise directory order.
        providers.sort_by_key(|p| !p.speaks(&member.language));
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &case.id,
                Some(&case.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(pb::FindSpecialistsResponse {
            providers: providers.iter().map(provider_to_proto).collect(),
            country: country.to_string(),
            plan_id: member.plan_id.to_string(),
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }

    async fn assess_care_abroad(
        &self,
        caller: &Caller,
        req: pb::AssessCareAbroadRequest,
    ) -> ApiResult<pb::Case> {
        let mut invalid = Invalid::new();
        let recommendation = required_enum(
            &mut invalid,
            "recommendation",
            CareAbroad::ALL,
            req.recommendation,
            "CARE_ABROAD",
        );
        let specialist = optional(
            &mut invalid,
            "specialist_npi",
            &req.specialist_npi,
            Npi::parse,
        )
        .flatten();
        let country = optional(&mut invalid, "country", &req.country, CountryCode::parse).flatten();
        if req.decision_support_id.trim().is_empty() {
            invalid.push("decision_support_id", "is required");
        }
        invalid.into_result()?;
        let (case, _) = self.load_visible(caller, &req.case_id).await?;
        let member = self.app.store.get_member(&case.member_id).await?;
        let country = country.unwrap_or_else(|| member.address.country.clone());
        if let Some(npi) = &specialist {
            match self.app.store.get_provider(npi).await {
                Ok(p) if p.address.country == country => {}
                Ok(_) => {
                    return Err(ApiError::field(
                        "specialist_npi",
                        format!("the specialist does not practise in {country}"),
                    ));
                }
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::field(
                        "specialist_npi",
                        "no provider with this NPI in the directory",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let recommendation = recommendation.expect("checked");
        let ds_id = req.decision_support_id.trim().to_owned();
        let rationale = req.rationale.clone();
        let (case, ()) = self
            .mutate(caller, &req.case_id, move |case, who, now| {
                let assessment = CareAbroadAssessment {
                    country,
                    recommendation,
                    rationale,
                    specialist,
                    assessed_by: who.actor.subject.clone(),
                    assessed_at: now,
                };
                Ok(((), case.assess_care_abroad(who, &ds_id, assessment, now)?))
            })
            .await?;
        Ok(case)
    }

    async fn rate(&self, caller: &Caller, req: pb::RateCaseRequest) -> ApiResult<pb::Case> {
        let id = parse_case_id(&req.case_id)?;
        let who = self.who(caller).await?;
        let now = micros(self.app.now());
        let mut tx = self.app.store.begin().await?;
        let record = match tx.managed_case_for_update(&id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                drop(tx);
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, &id, None, Self::hidden(&id))
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let mut case = case_of(&record)?;
        if case.view_for(&caller.actor) == View::None {
            drop(tx);
            let member = case.member_id.clone();
            return Err(self
                .app
                .refuse(caller, RECORD_KIND, &id, Some(&member), Self::hidden(&id))
                .await);
        }
        let events = case.rate(&who, req.rating, &req.comment, now)?;
        let rating = case.satisfaction.as_ref().map_or(0, |s| s.rating);
        tx.update_managed_case(&record_of(&case), now).await?;
        tx.insert_rating(&case.id, case.member_id.as_str(), rating, now)
            .await?;
        append_events(&mut tx, events).await?;
        tx.append_audit(
            &caller.audit_entry(
                RECORD_KIND,
                &id,
                Some(&case.member_id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        let view = case.view_for(&caller.actor);
        Ok(case_to_proto(&case.redacted(view), self.today()))
    }

    async fn satisfaction(
        &self,
        caller: &Caller,
        req: pb::GetSatisfactionReportRequest,
    ) -> ApiResult<pb::GetSatisfactionReportResponse> {
        if !matches!(caller.actor.role, Role::Admin | Role::Service) {
            return Err(ApiError::denied(
                "the satisfaction report is for supervisors",
            ));
        }
        let from = req
            .from
            .and_then(crate::convert::instant)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let to = req
            .to
            .and_then(crate::convert::instant)
            .unwrap_or_else(|| self.app.now() + chrono::Duration::seconds(1));
        if to <= from {
            return Err(ApiError::field("to", "must be after from"));
        }
        let ratings = self.app.store.ratings_between(from, to).await?;
        let report =
            cases::satisfaction::report(ratings.into_iter().filter_map(|r| u8::try_from(r).ok()));
        Ok(pb::GetSatisfactionReportResponse {
            ratings: report.ratings,
            satisfied: report.satisfied,
            satisfaction_rate: report.rate,
            average_rating: report.average,
            distribution: report.distribution.to_vec(),
        })
    }

    async fn work_list(
        &self,
        caller: &Caller,
        req: pb::GetWorkListRequest,
    ) -> ApiResult<pb::GetWorkListResponse> {
        let mut invalid = Invalid::new();
        let asked = optional(&mut invalid, "nurse_id", &req.nurse_id, StaffId::parse).flatten();
        invalid.into_result()?;
        let nurse = match caller.actor.role {
            Role::Nurse => {
                let me = caller.actor.staff_id().expect("nurses have staff ids");
                if asked.as_ref().is_some_and(|a| a != &me) {
                    return Err(ApiError::denied("nurses see their own work list"));
                }
                me
            }
            Role::Admin => asked.ok_or_else(|| ApiError::field("nurse_id", "is required"))?,
            _ => {
                return Err(ApiError::denied(
                    "work lists are for nurses and supervisors",
                ));
            }
        };
        let records = self.app.store.open_managed_cases_of(nurse.as_str()).await?;
        let today = self.today();
        let now = self.app.now();
        let mut overdue = Vec::new();
        let mut upcoming = Vec::new();
        let mut tx = self.app.store.begin().await?;
        for record in &records {
            let case = case_of(record)?;
            tx.append_audit(
                &caller.audit_entry(
                    RECORD_KIND,
                    &case.id,
                    Some(&case.member_id),
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
            for task in case.tasks.iter().filter(|t| !t.status.is_finished()) {
                let item = task_to_proto(&case.id, task, today);
                if task.is_overdue(today) {
                    overdue.push((task.due_on, item));
                } else {
                    upcoming.push((task.due_on, item));
                }
            }
        }
        tx.commit().await?;
        overdue.sort_by_key(|(due, _)| *due);
        upcoming.sort_by_key(|(due, _)| *due);
        let queue = self.app.store.unassigned_case_count().await?;
        Ok(pb::GetWorkListResponse {
            nurse_id: nurse.to_string(),
            open_cases: records.len() as u32,
            caseload_cap: self.cap,
            overdue_tasks: overdue.into_iter().map(|(_, t)| t).collect(),
            upcoming_tasks: upcoming.into_iter().map(|(_, t)| t).collect(),
            unassigned_queue: u32::try_from(queue).unwrap_or(u32::MAX),
        })
    }
}

/// Runs a handler body with the caller read from the request.
macro_rules! handler {
    ($self:ident, $request:ident, |$caller:ident, $req:ident| $body:expr) => {{
        let $caller = caller_of(&$request);
        let $req = $request.into_inner();
        respond(async move {
            let $caller = $caller?;
            $body
        })
        .await
    }};
}

#[tonic::async_trait]
impl CaseService for Cases {
    async fn open_case(
        &self,
        request: Request<pb::OpenCaseRequest>,
    ) -> Result<Response<pb::OpenCaseResponse>, Status> {
        handler!(self, request, |caller, req| self
            .open_case(&caller, req)
            .await)
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        handler!(self, request, |caller, req| self.get(&caller, req).await)
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        handler!(self, request, |caller, req| self.list(&caller, req).await)
    }

    async fn claim_case(
        &self,
        request: Request<pb::ClaimCaseRequest>,
    ) -> Result<Response<pb::ClaimCaseResponse>, Status> {
        handler!(self, request, |caller, req| Ok(pb::ClaimCaseResponse {
            case: Some(self.claim(&caller, req).await?)
        }))
    }

    async fn assign_case(
        &self,
        request: Request<pb::AssignCaseRequest>,
    ) -> Result<Response<pb::AssignCaseResponse>, Status> {
        handler!(self, request, |caller, req| Ok(pb::AssignCaseResponse {
            case: Some(self.assign(&caller, req).await?)
        }))
    }

    async fn move_case(
        &self,
        request: Request<pb::MoveCaseRequest>,
    ) -> Result<Response<pb::MoveCaseResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let phase = required_enum(&mut invalid, "phase", Phase::ALL, req.phase, "PHASE");
            invalid.into_result()?;
            let phase = phase.expect("checked");
            let (case, ()) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    Ok(((), case.move_to(who, phase, &req.note, now)?))
                })
                .await?;
            Ok(pb::MoveCaseResponse { case: Some(case) })
        })
    }

    async fn close_case(
        &self,
        request: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CloseCaseResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let outcome = required_enum(
                &mut invalid,
                "outcome",
                Outcome::ALL,
                req.outcome,
                "OUTCOME",
            );
            invalid.into_result()?;
            let outcome = outcome.expect("checked");
            let (case, ()) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    Ok(((), case.close(who, outcome, &req.note, now)?))
                })
                .await?;
            Ok(pb::CloseCaseResponse { case: Some(case) })
        })
    }

    async fn decline_case(
        &self,
        request: Request<pb::DeclineCaseRequest>,
    ) -> Result<Response<pb::DeclineCaseResponse>, Status> {
        handler!(self, request, |caller, req| {
            let (case, ()) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    Ok(((), case.decline(who, &req.note, now)?))
                })
                .await?;
            Ok(pb::DeclineCaseResponse { case: Some(case) })
        })
    }

    async fn add_goal(
        &self,
        request: Request<pb::AddGoalRequest>,
    ) -> Result<Response<pb::AddGoalResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let target = date(&mut invalid, "target_date", &req.target_date, true);
            invalid.into_result()?;
            let goal = NewGoal {
                description: req.description,
                target_date: target.expect("checked"),
            };
            let (case, goal) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.add_goal(who, goal, now)
                })
                .await?;
            Ok(pb::AddGoalResponse {
                goal: case.goals.iter().find(|g| g.id == goal.id).cloned(),
                case: Some(case),
            })
        })
    }

    async fn update_goal(
        &self,
        request: Request<pb::UpdateGoalRequest>,
    ) -> Result<Response<pb::UpdateGoalResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let status = required_enum(
                &mut invalid,
                "status",
                GoalStatus::ALL,
                req.status,
                "GOAL_STATUS",
            );
            if req.goal_id.trim().is_empty() {
                invalid.push("goal_id", "is required");
            }
            invalid.into_result()?;
            let status = status.expect("checked");
            let (case, ()) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    Ok((
                        (),
                        case.set_goal_status(who, req.goal_id.trim(), status, now)?,
                    ))
                })
                .await?;
            Ok(pb::UpdateGoalResponse { case: Some(case) })
        })
    }

    async fn add_task(
        &self,
        request: Request<pb::AddTaskRequest>,
    ) -> Result<Response<pb::AddTaskResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let due = date(&mut invalid, "due_date", &req.due_date, true);
            let priority = optional_enum(
                &mut invalid,
                "priority",
                Priority::ALL,
                req.priority,
                "PRIORITY",
            );
            invalid.into_result()?;
            let owner = text_opt(&req.owner).unwrap_or_else(|| caller.actor.subject.clone());
            let task = NewTask {
                title: req.title,
                owner,
                due_on: due.expect("checked"),
                priority: priority.unwrap_or(Priority::Normal),
                goal_id: text_opt(&req.goal_id),
            };
            let today = self.today();
            let (case, task) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.add_task(who, task, now)
                })
                .await?;
            Ok(pb::AddTaskResponse {
                task: Some(task_to_proto(&case.id, &task, today)),
                case: Some(case),
            })
        })
    }

    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::UpdateTaskResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let status = optional_enum(
                &mut invalid,
                "status",
                TaskStatus::ALL,
                req.status,
                "TASK_STATUS",
            );
            let priority = optional_enum(
                &mut invalid,
                "priority",
                Priority::ALL,
                req.priority,
                "PRIORITY",
            );
            let due = date(&mut invalid, "due_date", &req.due_date, false);
            if req.task_id.trim().is_empty() {
                invalid.push("task_id", "is required");
            }
            invalid.into_result()?;
            let change = TaskChange {
                status,
                owner: text_opt(&req.owner),
                due_on: due,
                priority,
            };
            let today = self.today();
            let (case, task) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.update_task(who, req.task_id.trim(), change, now)
                })
                .await?;
            Ok(pb::UpdateTaskResponse {
                task: Some(task_to_proto(&case.id, &task, today)),
                case: Some(case),
            })
        })
    }

    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Result<Response<pb::RecordInteractionResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let channel = required_enum(
                &mut invalid,
                "channel",
                InteractionChannel::ALL,
                req.channel,
                "INTERACTION_CHANNEL",
            );
            let at = match req.occurred_at {
                None => None,
                Some(t) => {
                    let parsed = crate::convert::instant(t);
                    if parsed.is_none() {
                        invalid.push("occurred_at", "is not a valid instant");
                    }
                    parsed
                }
            };
            invalid.into_result()?;
            let now = self.app.now();
            let new = NewInteraction {
                channel: channel.expect("checked"),
                at: micros(at.unwrap_or(now)),
                summary: req.summary,
                next_steps: text_opt(&req.next_steps),
                private: req.private,
                notify_member: req.notify_member,
            };
            let (case, interaction) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.record_interaction(who, new, now)
                })
                .await?;
            Ok(pb::RecordInteractionResponse {
                interaction: Some(interaction_to_proto(&interaction)),
                case: Some(case),
            })
        })
    }

    async fn record_transition(
        &self,
        request: Request<pb::RecordTransitionRequest>,
    ) -> Result<Response<pb::RecordTransitionResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let from = required_enum(
                &mut invalid,
                "from_setting",
                CareSetting::ALL,
                req.from_setting,
                "CARE_SETTING",
            );
            let to = required_enum(
                &mut invalid,
                "to_setting",
                CareSetting::ALL,
                req.to_setting,
                "CARE_SETTING",
            );
            let from_facility = optional(
                &mut invalid,
                "from_facility_npi",
                &req.from_facility_npi,
                Npi::parse,
            )
            .flatten();
            let to_facility = optional(
                &mut invalid,
                "to_facility_npi",
                &req.to_facility_npi,
                Npi::parse,
            )
            .flatten();
            let discharge = date(&mut invalid, "discharge_date", &req.discharge_date, true);
            let arrival = date(&mut invalid, "arrival_date", &req.arrival_date, false);
            invalid.into_result()?;
            for (field, npi) in [
                ("from_facility_npi", &from_facility),
                ("to_facility_npi", &to_facility),
            ] {
                if let Some(npi) = npi {
                    match self.app.store.get_provider(npi).await {
                        Ok(_) => {}
                        Err(StoreError::NotFound { .. }) => {
                            return Err(ApiError::field(
                                field,
                                "no provider with this NPI in the directory",
                            ));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let discharge = discharge.expect("checked");
            let new = NewTransition {
                from_setting: from.expect("checked"),
                to_setting: to.expect("checked"),
                from_facility,
                to_facility,
                discharge_date: discharge,
                arrival_date: arrival.unwrap_or(discharge),
                notes: req.notes,
            };
            let (case, transition) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.record_transition(who, new, now)
                })
                .await?;
            Ok(pb::RecordTransitionResponse {
                transition: Some(transition_to_proto(&transition)),
                case: Some(case),
            })
        })
    }

    async fn arrange_service(
        &self,
        request: Request<pb::ArrangeServiceRequest>,
    ) -> Result<Response<pb::ArrangeServiceResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let kind = required_enum(
                &mut invalid,
                "kind",
                ServiceKind::ALL,
                req.kind,
                "SERVICE_KIND",
            );
            let vendor =
                optional(&mut invalid, "vendor_npi", &req.vendor_npi, Npi::parse).flatten();
            let start = date(&mut invalid, "start_date", &req.start_date, false);
            invalid.into_result()?;
            let precert_case_id = text_opt(&req.precert_case_id);
            if let Some(id) = &precert_case_id {
                self.check_precert_link(&caller, &req.case_id, id).await?;
            }
            let new = NewService {
                kind: kind.expect("checked"),
                description: req.description,
                vendor,
                precert_case_id,
                start_date: start,
            };
            let (case, service) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.arrange_service(who, new, now)
                })
                .await?;
            Ok(pb::ArrangeServiceResponse {
                service: Some(service_to_proto(&service)),
                case: Some(case),
            })
        })
    }

    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> Result<Response<pb::UpdateServiceResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let state = optional_enum(
                &mut invalid,
                "state",
                ServiceState::ALL,
                req.state,
                "SERVICE_STATE",
            );
            if req.service_id.trim().is_empty() {
                invalid.push("service_id", "is required");
            }
            invalid.into_result()?;
            let precert_case_id = text_opt(&req.precert_case_id);
            if let Some(id) = &precert_case_id {
                self.check_precert_link(&caller, &req.case_id, id).await?;
            }
            let (case, service) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.update_service(who, req.service_id.trim(), state, precert_case_id, now)
                })
                .await?;
            Ok(pb::UpdateServiceResponse {
                service: Some(service_to_proto(&service)),
                case: Some(case),
            })
        })
    }

    async fn request_decision_support(
        &self,
        request: Request<pb::RequestDecisionSupportRequest>,
    ) -> Result<Response<pb::RequestDecisionSupportResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let reason = required_enum(
                &mut invalid,
                "reason",
                DecisionReason::ALL,
                req.reason,
                "DECISION_REASON",
            );
            let diagnosis =
                optional(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse).flatten();
            let specialty =
                optional(&mut invalid, "specialty", &req.specialty, Specialty::parse).flatten();
            invalid.into_result()?;
            let new = NewDecisionSupport {
                reason: reason.expect("checked"),
                diagnosis,
                specialty: specialty.map(|s| s.to_string()),
                notes: req.notes,
            };
            let (case, request) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    case.request_decision_support(who, new, now)
                })
                .await?;
            Ok(pb::RequestDecisionSupportResponse {
                decision_support: Some(decision_support_to_proto(&request)),
                case: Some(case),
            })
        })
    }

    async fn find_specialists(
        &self,
        request: Request<pb::FindSpecialistsRequest>,
    ) -> Result<Response<pb::FindSpecialistsResponse>, Status> {
        handler!(self, request, |caller, req| self
            .find_specialists(&caller, req)
            .await)
    }

    async fn assess_care_abroad(
        &self,
        request: Request<pb::AssessCareAbroadRequest>,
    ) -> Result<Response<pb::AssessCareAbroadResponse>, Status> {
        handler!(self, request, |caller, req| Ok(
            pb::AssessCareAbroadResponse {
                case: Some(self.assess_care_abroad(&caller, req).await?)
            }
        ))
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        handler!(self, request, |caller, req| {
            let mut invalid = Invalid::new();
            require_case_id(&mut invalid, &req.case_id);
            let npi = required(&mut invalid, "provider_npi", &req.provider_npi, Npi::parse);
            invalid.into_result()?;
            let npi = npi.expect("checked");
            match self.app.store.get_provider(&npi).await {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::field(
                        "provider_npi",
                        "no provider with this NPI in the directory",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            let (case, ()) = self
                .mutate(&caller, &req.case_id, |case, who, now| {
                    Ok(((), case.record_consent(who, npi, req.granted, now)?))
                })
                .await?;
            Ok(pb::RecordConsentResponse { case: Some(case) })
        })
    }

    async fn rate_case(
        &self,
        request: Request<pb::RateCaseRequest>,
    ) -> Result<Response<pb::RateCaseResponse>, Status> {
        handler!(self, request, |caller, req| Ok(pb::RateCaseResponse {
            case: Some(self.rate(&caller, req).await?)
        }))
    }

    async fn get_satisfaction_report(
        &self,
        request: Request<pb::GetSatisfactionReportRequest>,
    ) -> Result<Response<pb::GetSatisfactionReportResponse>, Status> {
        handler!(self, request, |caller, req| self
            .satisfaction(&caller, req)
            .await)
    }

    async fn get_work_list(
        &self,
        request: Request<pb::GetWorkListRequest>,
    ) -> Result<Response<pb::GetWorkListResponse>, Status> {
        handler!(self, request, |caller, req| self
            .work_list(&caller, req)
            .await)
    }
}

impl Cases {
    /// A linked precertification case must exist and be the same member's (read
    /// without exposing it). Only a caller who may see the managed case learns whether
    /// it does, and another member's case reads as absent.
    async fn check_precert_link(&self, caller: &Caller, case_id: &str, id: &str) -> ApiResult<()> {
        let (managed, _) = self.load_visible(caller, case_id).await?;
        let absent = || {
            ApiError::field(
                "precert_case_id",
                "no precertification case with this id for this member",
            )
        };
        match self.app.store.get_case(id).await {
            Ok(precert) if precert.member_id == managed.member_id.as_str() => Ok(()),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(absent()),
            Err(e) => Err(e.into()),
        }
    }
}
