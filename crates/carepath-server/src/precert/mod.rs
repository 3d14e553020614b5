//! `carepath.precert.v1.PrecertService`: requirement checks, submissions, clinical
//! review and the paths after a decision, gold cards, metrics and rule lists.
//!
//! Decisions are the precert crate's; this module parses, authorizes, loads the case,
//! applies one workflow command, and stores the case, its events and the audit entry
//! in one transaction.
//!
//! Who may see a case: the requesting and servicing providers, the member, and plan
//! staff (nurses, physician reviewers, admins) and internal services. Anyone else is
//! told it does not exist.

pub mod convert;
pub use carepath_app::precert::engine;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use carepath_core::{Actor, Invalid, MemberId, NetworkStatus, Npi, Role, StaffId};
use carepath_precert::{
    self as precert, AdverseDetermination, Answer, AppealDecision, AppealPriority, CaseState, Ctx,
    DecisionMaker, DecisionOutcome, DecisionRecord, DocumentRequest, EventDraft,
    LineApproval, LineOutcome, Missing, MissingQuestion, PeerToPeerOutcome, PrecertCase,
    ProviderParty, RecordRef, RuleList, StaffRef, Submission, WithdrawReason, WorkflowError,
    goldcard::{DecidedBy, RecordOutcome},
};
use carepath_proto::precert::v1::{self as pb, precert_service_server::PrecertService};
use carepath_store::{
    AuditOutcome, CaseCreated, CaseFilter, CaseRecord, GoldCardRecord, NewCase, RuleListRecord,
    StoreError, SubmissionParties, Tx,
};
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use self::engine::{ListOrigin, PrecertEngine};
use crate::{
    context::{App, Caller, caller_of, page_in_memory, page_size},
    convert::{json_name, optional, optional_instant, required, timestamp, urgency_from_proto},
    error::{ApiError, ApiResult, respond},
};

/// The precertification service.
#[derive(Debug, Clone)]
pub struct Precert {
    app: App,
    engine: Arc<PrecertEngine>,
}

const RECORD_KIND: &str = "precert_case";
/// Cases read at once by the sweeps that visit many (gold cards, metrics), so memory
/// holds one page of full case documents, not all of them.
const CASE_PAGE: u32 = 500;
const MAX_REQUEST_ID: usize = 128;

/// Visits every case `read` returns, [`CASE_PAGE`] at a time: `read` takes the
/// (`key`, id) of the last case of the page before, `None` for the first page.
async fn each_case<Page>(
    mut read: impl FnMut(Option<(DateTime<Utc>, String)>) -> Page,
    key: impl Fn(&CaseRecord) -> DateTime<Utc>,
    mut visit: impl FnMut(&CaseRecord) -> ApiResult<()>,
) -> ApiResult<()>
where
    Page: Future<Output = Result<Vec<CaseRecord>, StoreError>>,
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

/// Whether `actor` may see `case`.
fn may_view(actor: &Actor, case: &PrecertCase) -> bool {
    match actor.role {
        Role::Provider => actor.provider_npi().is_some_and(|npi| {
            npi == case.request.requesting_provider.npi
                || npi == case.request.servicing_provider.npi
        }),
        Role::Member => actor.member_id().as_ref() == Some(&case.request.member_id),
        Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
    }
}

fn queue_of(state: CaseState) -> &'static str {
    match state {
        CaseState::PendedReview
        | CaseState::InReview
        | CaseState::AppealRequested
        | CaseState::PeerToPeerRequested => "review",
        CaseState::PendedInformation => "information",
        _ => "",
    }
}

/// The stored form of a case.
pub fn record_of(case: &PrecertCase, request_key: &str) -> CaseRecord {
    let (urgency, due_at) = case.owed();
    CaseRecord {
        id: case.id.clone(),
        request_key: request_key.to_owned(),
        member_id: case.request.member_id.to_string(),
        requesting_npi: case.request.requesting_provider.npi.to_string(),
        servicing_npi: case.request.servicing_provider.npi.to_string(),
        status: case.state.as_str().to_owned(),
        urgency: urgency.as_str().to_owned(),
        queue: queue_of(case.state).to_owned(),
        reviewer_id: case.claimed_by.as_ref().map(|s| s.staff_id.to_string()),
        received_at: case.received_at,
        due_at,
        decided_at: case.decisions.first().map(|d| d.at),
        doc: serde_json::to_value(case).expect("cases serialize"),
    }
}

fn case_of(record: &CaseRecord) -> ApiResult<PrecertCase> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| ApiError::Internal(format!("stored case {} unreadable: {e}", record.id)))
}

fn request_id_of(record: &CaseRecord) -> &str {
    record.request_key.split_once(':').map_or("", |(_, id)| id)
}

/// The events of a command, each with a fresh id.
fn events_of(drafts: Vec<EventDraft>) -> Vec<carepath_core::DomainEvent> {
    drafts
        .into_iter()
        .map(|draft| draft.into_event(uuid::Uuid::now_v7().to_string()))
        .collect()
}

/// Writes the events of a command to the outbox of the open transaction.
pub async fn append_events(tx: &mut Tx, events: Vec<EventDraft>) -> ApiResult<()> {
    Ok(tx.append_events(&events_of(events)).await?)
}

/// Microsecond precision: what both backends store, so keys and pages compare exactly.
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

/// The parties of a request, all found in the directory.
struct Parties {
    member: carepath_core::Member,
    plan: carepath_core::Plan,
    requesting: carepath_core::Provider,
    requesting_network: NetworkStatus,
    servicing_network: NetworkStatus,
}

impl Parties {
    /// Checks that each party exists, naming the field of any that does not;
    /// `servicing_field` is `None` when one provider plays both parts.
    fn of(
        found: SubmissionParties,
        member_id: &MemberId,
        requesting_field: &str,
        servicing_field: Option<&str>,
    ) -> ApiResult<Parties> {
        match (found.member, found.requesting, found.servicing, found.plan) {
            (Some(member), Some(requesting), Some(servicing), Some(plan)) => Ok(Parties {
                requesting_network: requesting.network_status(&plan.id),
                servicing_network: servicing.network_status(&plan.id),
                member,
                plan,
                requesting,
            }),
            (member, requesting, servicing, _) => {
                let mut invalid = Invalid::new();
                if member.is_none() {
                    invalid.push("member_id", "no member with this id");
                }
                let unknown = "no provider with this NPI in the directory";
                if requesting.is_none() {
                    invalid.push(requesting_field, unknown);
                }
                if let Some(field) = servicing_field
                    && servicing.is_none()
                {
                    invalid.push(field, unknown);
                }
                invalid.into_result()?;
                // Every party exists, so the member's plan is what is missing.
                Err(ApiError::Internal(format!(
                    "the plan of member {member_id} is missing"
                )))
            }
        }
    }
}

impl Precert {
    pub fn new(app: App, engine: Arc<PrecertEngine>) -> Self {
        Precert { app, engine }
    }

    /// When gold cards were last evaluated, by this process or another on the same
    /// database; `None` before the first evaluation.
    pub async fn gold_cards_evaluated_at(&self) -> ApiResult<Option<DateTime<Utc>>> {
        Ok(self
            .app
            .store
            .gold_cards(None)
            .await?
            .into_iter()
            .map(|c| c.evaluated_at)
            .max())
    }

    /// The service's clock reading.
    pub fn now(&self) -> DateTime<Utc> {
        self.app.now()
    }

    /// The workflow's view of the caller: staff bring the specialty the directory
    /// records for them, which adverse decisions are checked against.
    async fn workflow_caller(&self, caller: &Caller) -> ApiResult<precert::Caller> {
        let actor = caller.actor.clone();
        let specialty = match actor.staff_id() {
            Some(id) => match self.app.store.get_staff(&id).await {
                Ok(staff) => staff.specialty,
                Err(StoreError::NotFound { .. }) if actor.role == Role::PhysicianReviewer => {
                    return Err(ApiError::denied(
                        "physician reviewers must be in the staff directory",
                    ));
                }
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        Ok(precert::Caller::new(actor, specialty))
    }

    async fn load_visible(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ApiResult<(CaseRecord, PrecertCase)> {
        let record = match self.app.store.get_case(id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        id,
                        None,
                        ApiError::hidden("precert case", id),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let case = case_of(&record)?;
        if !may_view(&caller.actor, &case) {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    id,
                    Some(&case.request.member_id),
                    ApiError::hidden("precert case", id),
                )
                .await);
        }
        Ok((record, case))
    }

    /// Applies one workflow command to a stored case: load under lock, authorize,
    /// run, store the case with its events and the audit entry, all in one
    /// transaction.
    async fn transition(
        &self,
        caller: &Caller,
        case_id: &str,
        command: impl FnOnce(
            &mut PrecertCase,
            &precert::Caller,
            &Ctx<'_>,
            DateTime<Utc>,
        ) -> Result<Vec<EventDraft>, WorkflowError>,
    ) -> ApiResult<pb::Case> {
        let id = parse_case_id(case_id)?;
        let who = self.workflow_caller(caller).await?;
        let rules = self.engine.rules();
        let gold = self.engine.gold_cards();
        let ctx = Ctx {
            calendar: &self.app.calendar,
            rules: &rules,
            gold_cards: &gold,
        };
        let now = micros(self.app.now());
        let mut tx = self.app.store.begin().await?;
        let mut record = match tx.case_for_update(&id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                drop(tx);
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        &id,
                        None,
                        ApiError::hidden("precert case", &id),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        let mut case = case_of(&record)?;
        let member = case.request.member_id.clone();
        if !may_view(&caller.actor, &case) {
            drop(tx);
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    &id,
                    Some(&member),
                    ApiError::hidden("precert case", &id),
                )
                .await);
        }
        let events = match command(&mut case, &who, &ctx, now) {
            Ok(events) => events,
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
        let key = record.request_key.clone();
        record = record_of(&case, &key);
        tx.update_case(&record, now).await?;
        append_events(&mut tx, events).await?;
        tx.append_audit(
            &caller.audit_entry(RECORD_KIND, &id, Some(&member), AuditOutcome::Allowed),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(convert::case_to_proto(&case, request_id_of(&record), now))
    }

    /// The member's plan and the provider's network status for it.
    /// Members check and submit for themselves only; providers for any member (the
    /// case then binds them as requester).
    fn may_act_for_member(actor: &Actor, member: &MemberId) -> ApiResult<()> {
        match actor.role {
            Role::Member if actor.member_id().as_ref() != Some(member) => {
                Err(ApiError::denied("members act for themselves only"))
            }
            Role::PhysicianReviewer => Err(ApiError::denied(
                "physician reviewers decide requests; they do not make them",
            )),
            _ => Ok(()),
        }
    }

    async fn check(
        &self,
        caller: &Caller,
        member_id: &str,
        npi: &str,
        diagnoses: &[String],
        lines: Vec<Option<pb::ServiceLine>>,
        line_field: impl Fn(usize) -> String,
    ) -> ApiResult<Vec<pb::RequirementAnswer>> {
        let mut invalid = Invalid::new();
        let member_id = required(&mut invalid, "member_id", member_id, MemberId::parse);
        let npi = required(&mut invalid, "rendering_provider_npi", npi, Npi::parse);
        let diagnoses = convert::diagnoses(&mut invalid, "diagnoses", diagnoses);
        let lines: Vec<_> = lines
            .into_iter()
            .enumerate()
            .filter_map(|(i, l)| convert::service_line(&mut invalid, &line_field(i), l))
            .collect();
        invalid.into_result()?;
        let (member_id, npi) = (member_id.expect("checked"), npi.expect("checked"));
        Self::may_act_for_member(&caller.actor, &member_id)?;
        let found = (self.app.store)
            .submission_parties("", &member_id, &npi, &npi)
            .await?;
        let Parties {
            plan,
            requesting_network: network,
            ..
        } = Parties::of(found, &member_id, "rendering_provider_npi", None)?;
        let rules = self.engine.rules();
        let mut answers = Vec::with_capacity(lines.len());
        for check in rules.check_many(&plan, network, &lines, &diagnoses) {
            let check = check.map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
            answers.push(convert::answer_to_proto(&check.to_answer()));
        }
        self.app
            .audit(
                caller,
                "coverage_check",
                member_id.as_str(),
                Some(&member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(answers)
    }

    async fn submit(
        &self,
        caller: &Caller,
        req: pb::SubmitRequest,
    ) -> ApiResult<pb::SubmitResponse> {
        let mut invalid = Invalid::new();
        let request_id = req.request_id.trim().to_owned();
        if request_id.is_empty() {
            invalid.push("request_id", "is required");
        } else if request_id.len() > MAX_REQUEST_ID {
            invalid.push(
                "request_id",
                format!("must be at most {MAX_REQUEST_ID} characters"),
            );
        }
        let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
        let requesting = required(
            &mut invalid,
            "requesting_provider_npi",
            &req.requesting_provider_npi,
            Npi::parse,
        );
        let servicing = required(
            &mut invalid,
            "servicing_provider_npi",
            &req.servicing_provider_npi,
            Npi::parse,
        );
        if req.lines.is_empty() {
            invalid.push("lines", "at least one service line is required");
        } else if req.lines.len() > precert::MAX_LINES {
            invalid.push("lines", format!("at most {} lines", precert::MAX_LINES));
        }
        let lines: Vec<_> = req
            .lines
            .into_iter()
            .enumerate()
            .filter_map(|(i, l)| {
                convert::service_line(&mut invalid, &format!("lines[{i}]"), Some(l))
            })
            .collect();
        let diagnoses = convert::diagnoses(&mut invalid, "diagnoses", &req.diagnoses);
        if req.diagnoses.is_empty() {
            invalid.push("diagnoses", "at least one diagnosis is required");
        }
        let urgency = urgency_from_proto(req.urgency, "urgency", &mut invalid);
        self.known_answers_and_documents(&mut invalid, &req.answers, &req.records);
        let answers = convert::answers(&mut invalid, "answers", req.answers);
        let records = convert::records(&mut invalid, "records", req.records);
        invalid.into_result()?;
        let (member_id, requesting, servicing, urgency) = (
            member_id.expect("checked"),
            requesting.expect("checked"),
            servicing.expect("checked"),
            urgency.expect("checked"),
        );
        Self::may_act_for_member(&caller.actor, &member_id)?;
        if caller.actor.role == Role::Provider
            && caller
                .actor
                .provider_npi()
                .is_none_or(|me| me != requesting && me != servicing)
        {
            return Err(ApiError::denied(
                "providers submit requests they make or service",
            ));
        }

        let key = format!("{requesting}:{request_id}");
        let now = micros(self.app.now());
        let found = (self.app.store)
            .submission_parties(&key, &member_id, &requesting, &servicing)
            .await?;
        // A retry answers with its case, whatever changed since.
        if let Some(existing) = &found.existing_case {
            let record = self.app.store.get_case(existing).await?;
            return self.resubmitted(caller, record, now).await;
        }
        let Parties {
            member,
            plan,
            requesting: requester,
            requesting_network,
            servicing_network,
            ..
        } = Parties::of(
            found,
            &member_id,
            "requesting_provider_npi",
            Some("servicing_provider_npi"),
        )?;
        let submission = Submission {
            member_id: member.id.clone(),
            plan,
            requesting_provider: ProviderParty {
                npi: requesting,
                network: requesting_network,
            },
            servicing_provider: ProviderParty {
                npi: servicing,
                network: servicing_network,
            },
            lines,
            diagnoses,
            urgency,
            answers,
            records,
        };
        let who = self.workflow_caller(caller).await?;
        let rules = self.engine.rules();
        let gold = self.engine.gold_cards();
        let ctx = Ctx {
            calendar: &self.app.calendar,
            rules: &rules,
            gold_cards: &gold,
        };
        let id = format!("PA-{}", uuid::Uuid::now_v7().simple());
        let (case, events) =
            PrecertCase::submit(id, submission, requester.specialty.clone(), &who, &ctx, now)?;
        let new_case = NewCase {
            record: record_of(&case, &key),
            events: events_of(events),
            audit: caller.audit_entry(
                RECORD_KIND,
                &case.id,
                Some(&member.id),
                AuditOutcome::Allowed,
            ),
            at: now,
        };
        if self.app.store.create_case(new_case).await? == CaseCreated::Duplicate {
            // A concurrent retry of the same request won the race; its case may still
            // be on its way to disk.
            self.app.store.settle().await?;
            let existing = self
                .app
                .store
                .case_by_request_key(&key)
                .await?
                .ok_or_else(|| ApiError::Internal("case vanished after conflict".into()))?;
            return self.resubmitted(caller, existing, now).await;
        }
        Ok(pb::SubmitResponse {
            case: Some(convert::case_to_proto(&case, &request_id, now)),
            created: true,
        })
    }

    async fn resubmitted(
        &self,
        caller: &Caller,
        record: CaseRecord,
        now: DateTime<Utc>,
    ) -> ApiResult<pb::SubmitResponse> {
        let case = case_of(&record)?;
        if !may_view(&caller.actor, &case) {
            return Err(ApiError::AlreadyExists {
                kind: "request id",
                id: request_id_of(&record).to_owned(),
            });
        }
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &case.id,
                Some(&case.request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(pb::SubmitResponse {
            case: Some(convert::case_to_proto(&case, request_id_of(&record), now)),
            created: false,
        })
    }

    async fn list(
        &self,
        caller: &Caller,
        req: pb::ListCasesRequest,
    ) -> ApiResult<pb::ListCasesResponse> {
        let mut invalid = Invalid::new();
        let member = optional(&mut invalid, "member_id", &req.member_id, MemberId::parse).flatten();
        let npi = optional(&mut invalid, "provider_npi", &req.provider_npi, Npi::parse).flatten();
        let status = match req.status {
            0 => None,
            s => {
                let state = convert::state_from_proto(s);
                if state.is_none() {
                    invalid.push("status", "is not a known CASE_STATUS_* value");
                }
                state
            }
        };
        let received_from = optional_instant(&mut invalid, "received_from", req.received_from);
        let received_to = optional_instant(&mut invalid, "received_to", req.received_to);
        let page = req.page.unwrap_or_default();
        let size = page_size(page.page_size, "page.page_size");
        invalid.into_result()?;
        let size = size?;
        let mut filter = CaseFilter {
            member_id: member.map(|m| m.to_string()),
            provider_npi: npi.map(|n| n.to_string()),
            status: status.map(|s| s.as_str().to_owned()),
            received_from,
            received_to,
        };
        match caller.actor.role {
            Role::Provider => {
                let me = caller.actor.provider_npi().map(|n| n.to_string());
                if filter.provider_npi.is_some() && filter.provider_npi != me {
                    return Err(ApiError::denied("providers list their own cases"));
                }
                filter.provider_npi = me;
            }
            Role::Member => {
                let me = caller.actor.member_id().map(|m| m.to_string());
                if filter.member_id.is_some() && filter.member_id != me {
                    return Err(ApiError::denied("members list their own cases"));
                }
                filter.member_id = me;
            }
            _ => {}
        }
        let found = self
            .app
            .store
            .list_cases(&filter, &page.page_token, size)
            .await?;
        self.audited_page(caller, found.items, found.next_page_token)
            .await
    }

    async fn audited_page(
        &self,
        caller: &Caller,
        records: Vec<CaseRecord>,
        next: Option<String>,
    ) -> ApiResult<pb::ListCasesResponse> {
        let now = self.app.now();
        let mut cases = Vec::with_capacity(records.len());
        let mut tx = self.app.store.begin().await?;
        for record in &records {
            let case = case_of(record)?;
            tx.append_audit(
                &caller.audit_entry(
                    RECORD_KIND,
                    &case.id,
                    Some(&case.request.member_id),
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
            cases.push(convert::case_to_proto(&case, request_id_of(record), now));
        }
        tx.commit().await?;
        Ok(pb::ListCasesResponse {
            cases,
            next_page_token: next.unwrap_or_default(),
        })
    }

    fn require_role(caller: &Caller, roles: &[Role], what: &str) -> ApiResult<()> {
        if roles.contains(&caller.actor.role) {
            Ok(())
        } else {
            Err(ApiError::denied(format!(
                "{what} is for {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// Recomputes gold cards from the trailing window of first decisions.
    pub async fn evaluate_gold_cards(&self, now: DateTime<Utc>) -> ApiResult<Vec<pb::GoldCard>> {
        // Two evaluations at once (the daily sweep and an admin's call) must not let
        // the one that read older decisions set the exemptions last.
        let _updating = self.engine.updating().await;
        let window_start = now - chrono::Duration::days(200);
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
            out.push(pb::GoldCard {
                provider_npi: s.npi.to_string(),
                category: s.category.as_str().to_owned(),
                exempt: s.exempt(),
                requests: s.requests,
                approvals: s.approvals,
                approval_rate: s.rate,
                evaluated_at: Some(timestamp(now)),
                window_start: Some(timestamp(start)),
                change,
            });
        }
        tx.commit().await?;
        self.engine.set_gold_cards(precert::GoldCards::new(
            statuses.into_iter().filter_map(|s| s.exemption),
        ));
        Ok(out)
    }

    /// Answers and records sent after the submission (information supplied, a
    /// reconsideration), validated: each answer to a question a rule asks.
    fn later_information(
        &self,
        answers: Vec<pb::ClinicalAnswer>,
        records: Vec<pb::RecordReference>,
    ) -> ApiResult<(BTreeMap<String, Answer>, Vec<RecordRef>)> {
        let mut invalid = Invalid::new();
        self.known_answers_and_documents(&mut invalid, &answers, &[]);
        let answers = convert::answers(&mut invalid, "answers", answers);
        let records = convert::records(&mut invalid, "records", records);
        invalid.into_result()?;
        Ok((answers, records))
    }

    /// Names every answer to a question no precertification rule asks (a misspelt id
    /// would otherwise leave the request waiting for the answer it meant to give), and
    /// every record for a document no list names. Records supplied later may answer a
    /// reviewer's own request, so only a submission's records are checked.
    fn known_answers_and_documents(
        &self,
        invalid: &mut Invalid,
        answers: &[pb::ClinicalAnswer],
        records: &[pb::RecordReference],
    ) {
        let book = self.engine.rules();
        for (i, a) in answers.iter().enumerate() {
            let id = a.question_id.trim();
            if !id.is_empty() && !book.asks(id) {
                invalid.push(
                    format!("answers[{i}].question_id"),
                    format!("{id:?} is not a question of the precertification list (CheckRequirement lists a rule's questions)"),
                );
            }
        }
        for (i, r) in records.iter().enumerate() {
            let id = r.document.trim();
            if !id.is_empty() && !book.names_document(id) {
                invalid.push(
                    format!("records[{i}].document"),
                    format!("{id:?} is not a document of the precertification list (CheckRequirement lists what to send)"),
                );
            }
        }
    }

    /// Withdraws cases whose requested information is overdue past the limit.
    pub async fn withdraw_overdue(&self) -> ApiResult<usize> {
        let now = self.app.now();
        let sweeper = Caller {
            actor: Actor::new(Role::Service, "precert-sweeper").expect("valid service actor"),
            operation: "sweep:withdraw_overdue".into(),
        };
        let mut withdrawn = 0;
        for record in self.app.store.cases_in_queue("information").await? {
            let case = case_of(&record)?;
            let overdue = case
                .information_request
                .as_ref()
                .is_some_and(|r| now >= r.withdraw_after);
            if !overdue {
                continue;
            }
            // One case that cannot be withdrawn now (supplied or withdrawn by another
            // call a moment ago) does not hold up the rest.
            match self
                .transition(&sweeper, &record.id, |case, who, _, now| {
                    case.withdraw(who, WithdrawReason::InformationNotReceived, "", now)
                })
                .await
            {
                Ok(_) => withdrawn += 1,
                Err(e) => {
                    tracing::warn!(case_id = %record.id, error = %e, "overdue case not withdrawn")
                }
            }
        }
        Ok(withdrawn)
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

fn list_version(
    list: &RuleList,
    origin: &ListOrigin,
    today: chrono::NaiveDate,
) -> pb::RuleListVersion {
    pb::RuleListVersion {
        list_id: list.id.clone(),
        version: list.version.clone(),
        effective_from: list.effective_from.format("%Y-%m-%d").to_string(),
        effective_to: list
            .effective_to
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        rules: list.rules.len() as u32,
        source: match origin {
            ListOrigin::Shipped => "shipped".into(),
            ListOrigin::Activated { by } => by.clone(),
        },
        in_force: list.in_force_on(today),
    }
}

/// The calling physician reviewer, who holds the discussion they schedule. Callers who
/// are not plan staff are refused as the workflow refuses any other role.
fn staff_ref(who: &precert::Caller) -> Result<StaffRef, WorkflowError> {
    let staff_id: StaffId = who
        .actor
        .staff_id()
        .ok_or(WorkflowError::PermissionDenied {
            action: precert::Action::SchedulePeerToPeer,
            reason: precert::PermissionReason::Role {
                role: who.actor.role,
            },
        })?;
    Ok(StaffRef {
        staff_id,
        role: who.actor.role,
        specialty: who.specialty.clone(),
    })
}

#[tonic::async_trait]
impl PrecertService for Precert {
    async fn check_requirement(
        &self,
        request: Request<pb::CheckRequirementRequest>,
    ) -> Result<Response<pb::CheckRequirementResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let mut answers = self
                .check(
                    &caller,
                    &req.member_id,
                    &req.rendering_provider_npi,
                    &req.diagnoses,
                    vec![req.line],
                    |_| "line".to_owned(),
                )
                .await?;
            Ok(pb::CheckRequirementResponse {
                answer: answers.pop(),
            })
        })
        .await
    }

    async fn batch_check_requirements(
        &self,
        request: Request<pb::BatchCheckRequirementsRequest>,
    ) -> Result<Response<pb::BatchCheckRequirementsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            if req.lines.is_empty() || req.lines.len() > precert::MAX_LINES {
                return Err(ApiError::field(
                    "lines",
                    format!("between 1 and {} lines", precert::MAX_LINES),
                ));
            }
            let lines = req.lines.into_iter().map(Some).collect();
            let answers = self
                .check(
                    &caller,
                    &req.member_id,
                    &req.rendering_provider_npi,
                    &req.diagnoses,
                    lines,
                    |i| format!("lines[{i}]"),
                )
                .await?;
            Ok(pb::BatchCheckRequirementsResponse { answers })
        })
        .await
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            self.submit(&caller, request.into_inner()).await
        })
        .await
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = parse_case_id(&request.get_ref().id)
                .map_err(|_| ApiError::field("id", "is required"))?;
            let (record, case) = self.load_visible(&caller, &id).await?;
            self.app
                .audit(
                    &caller,
                    RECORD_KIND,
                    &id,
                    Some(&case.request.member_id),
                    AuditOutcome::Allowed,
                )
                .await?;
            Ok(pb::GetCaseResponse {
                case: Some(convert::case_to_proto(
                    &case,
                    request_id_of(&record),
                    self.app.now(),
                )),
            })
        })
        .await
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            self.list(&caller, request.into_inner()).await
        })
        .await
    }

    async fn supply_information(
        &self,
        request: Request<pb::SupplyInformationRequest>,
    ) -> Result<Response<pb::SupplyInformationResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let (answers, records) = self.later_information(req.answers, req.records)?;
            let case = self
                .transition(&caller, &req.case_id, |c, who, ctx, now| {
                    c.supply_information(who, answers, records, ctx, now)
                })
                .await?;
            Ok(pb::SupplyInformationResponse { case: Some(case) })
        })
        .await
    }

    async fn withdraw_case(
        &self,
        request: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::WithdrawCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.get_ref();
            let case = self
                .transition(&caller, &req.case_id, |c, who, _, now| {
                    c.withdraw(who, WithdrawReason::ByRequester, &req.reason, now)
                })
                .await?;
            Ok(pb::WithdrawCaseResponse { case: Some(case) })
        })
        .await
    }

    async fn list_review_queue(
        &self,
        request: Request<pb::ListReviewQueueRequest>,
    ) -> Result<Response<pb::ListReviewQueueResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            Self::require_role(
                &caller,
                &[Role::Nurse, Role::PhysicianReviewer, Role::Admin],
                "the review queue",
            )?;
            let page = request.into_inner().page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let found = self.app.store.review_queue(&page.page_token, size).await?;
            let listed = self
                .audited_page(&caller, found.items, found.next_page_token)
                .await?;
            Ok(pb::ListReviewQueueResponse {
                cases: listed.cases,
                next_page_token: listed.next_page_token,
            })
        })
        .await
    }

    async fn claim_case(
        &self,
        request: Request<pb::ClaimCaseRequest>,
    ) -> Result<Response<pb::ClaimCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let case = self
                .transition(&caller, &request.get_ref().case_id, |c, who, _, now| {
                    c.claim(who, now)
                })
                .await?;
            Ok(pb::ClaimCaseResponse { case: Some(case) })
        })
        .await
    }

    async fn release_case(
        &self,
        request: Request<pb::ReleaseCaseRequest>,
    ) -> Result<Response<pb::ReleaseCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let case = self
                .transition(&caller, &request.get_ref().case_id, |c, who, _, now| {
                    c.release(who, now)
                })
                .await?;
            Ok(pb::ReleaseCaseResponse { case: Some(case) })
        })
        .await
    }

    async fn request_information(
        &self,
        request: Request<pb::RequestInformationRequest>,
    ) -> Result<Response<pb::RequestInformationResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            if req.missing.is_empty() {
                return Err(ApiError::field(
                    "missing",
                    "name at least one item the provider must send",
                ));
            }
            let mut invalid = Invalid::new();
            for (i, item) in req.missing.iter().enumerate() {
                if item.id.trim().is_empty() {
                    invalid.push(format!("missing[{i}].id"), "is required");
                }
                if item.text.trim().is_empty() {
                    invalid.push(format!("missing[{i}].text"), "is required");
                }
            }
            invalid.into_result()?;
            let kinds = self
                .engine
                .rules()
                .question_kinds()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<BTreeMap<_, _>>();
            let mut missing = Missing::default();
            for item in req.missing {
                match kinds.get(item.id.trim()) {
                    Some(kind) => missing.questions.push(MissingQuestion {
                        id: item.id.trim().to_owned(),
                        text: item.text.trim().to_owned(),
                        answer: *kind,
                    }),
                    None => missing.documents.push(DocumentRequest {
                        id: item.id.trim().to_owned(),
                        text: item.text.trim().to_owned(),
                    }),
                }
            }
            let case = self
                .transition(&caller, &req.case_id, |c, who, ctx, now| {
                    c.request_information(who, missing, ctx, now)
                })
                .await?;
            Ok(pb::RequestInformationResponse { case: Some(case) })
        })
        .await
    }

    async fn record_decision(
        &self,
        request: Request<pb::RecordDecisionRequest>,
    ) -> Result<Response<pb::RecordDecisionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let outcome = pb::DecisionOutcome::try_from(req.outcome)
                .unwrap_or(pb::DecisionOutcome::Unspecified);
            let case = match outcome {
                pb::DecisionOutcome::Approved => {
                    self.transition(&caller, &req.case_id, |c, who, _, now| {
                        c.approve(who, &req.note, now)
                    })
                    .await?
                }
                pb::DecisionOutcome::Denied => {
                    if caller.actor.role != Role::PhysicianReviewer {
                        return Err(self
                            .app
                            .refuse(
                                &caller,
                                RECORD_KIND,
                                req.case_id.trim(),
                                None,
                                ApiError::denied("only a physician reviewer may deny a request"),
                            )
                            .await);
                    }
                    let adverse = AdverseDetermination::new(
                        &req.reason_code,
                        &req.rationale,
                        &req.guideline,
                    )?;
                    self.transition(&caller, &req.case_id, |c, who, _, now| {
                        c.deny(who, adverse, now)
                    })
                    .await?
                }
                pb::DecisionOutcome::PartiallyApproved => {
                    if caller.actor.role != Role::PhysicianReviewer {
                        return Err(self
                            .app
                            .refuse(
                                &caller,
                                RECORD_KIND,
                                req.case_id.trim(),
                                None,
                                ApiError::denied("only a physician reviewer may approve in part"),
                            )
                            .await);
                    }
                    let adverse = AdverseDetermination::new(
                        &req.reason_code,
                        &req.rationale,
                        &req.guideline,
                    )?;
                    let mut invalid = Invalid::new();
                    let approvals: Vec<LineApproval> = req
                        .lines
                        .iter()
                        .enumerate()
                        .filter_map(|(i, l)| {
                            if l.line_number == 0 {
                                invalid.push(
                                    format!("lines[{i}].line_number"),
                                    "lines are numbered from 1",
                                );
                                return None;
                            }
                            Some(LineApproval {
                                line: l.line_number as usize - 1,
                                approved_units: l.approved_units,
                                approved_days: (l.approved_days > 0).then_some(l.approved_days),
                            })
                        })
                        .collect();
                    if approvals.is_empty() {
                        invalid.push(
                            "lines",
                            "name the units or days approved for at least one line",
                        );
                    }
                    invalid.into_result()?;
                    self.transition(&caller, &req.case_id, |c, who, _, now| {
                        c.approve_in_part(who, &approvals, adverse, now)
                    })
                    .await?
                }
                pb::DecisionOutcome::Unspecified => {
                    return Err(ApiError::field(
                        "outcome",
                        "must be APPROVED, PARTIALLY_APPROVED or DENIED",
                    ));
                }
            };
            Ok(pb::RecordDecisionResponse { case: Some(case) })
        })
        .await
    }

    async fn request_peer_to_peer(
        &self,
        request: Request<pb::RequestPeerToPeerRequest>,
    ) -> Result<Response<pb::RequestPeerToPeerResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let case = self
                .transition(&caller, &request.get_ref().case_id, |c, who, _, now| {
                    c.request_peer_to_peer(who, now)
                })
                .await?;
            Ok(pb::RequestPeerToPeerResponse { case: Some(case) })
        })
        .await
    }

    async fn schedule_peer_to_peer(
        &self,
        request: Request<pb::SchedulePeerToPeerRequest>,
    ) -> Result<Response<pb::SchedulePeerToPeerResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let at = req
                .scheduled_for
                .and_then(crate::convert::instant)
                .ok_or_else(|| ApiError::field("scheduled_for", "is required"))?;
            let case = self
                .transition(&caller, &req.case_id, |c, who, _, now| {
                    let physician = staff_ref(who)?;
                    c.schedule_peer_to_peer(who, physician, at, now)
                })
                .await?;
            Ok(pb::SchedulePeerToPeerResponse { case: Some(case) })
        })
        .await
    }

    async fn complete_peer_to_peer(
        &self,
        request: Request<pb::CompletePeerToPeerRequest>,
    ) -> Result<Response<pb::CompletePeerToPeerResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let outcome = if req.overturned {
                PeerToPeerOutcome::Overturned
            } else {
                PeerToPeerOutcome::DecisionStands
            };
            let case = self
                .transition(&caller, &req.case_id, |c, who, _, now| {
                    c.complete_peer_to_peer(who, outcome, &req.note, now)
                })
                .await?;
            Ok(pb::CompletePeerToPeerResponse { case: Some(case) })
        })
        .await
    }

    async fn request_reconsideration(
        &self,
        request: Request<pb::RequestReconsiderationRequest>,
    ) -> Result<Response<pb::RequestReconsiderationResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let (answers, records) = self.later_information(req.answers, req.records)?;
            let case = self
                .transition(&caller, &req.case_id, |c, who, ctx, now| {
                    c.reconsider(who, answers, records, ctx, now)
                })
                .await?;
            Ok(pb::RequestReconsiderationResponse { case: Some(case) })
        })
        .await
    }

    async fn request_appeal(
        &self,
        request: Request<pb::RequestAppealRequest>,
    ) -> Result<Response<pb::RequestAppealResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let priority = if req.expedited {
                AppealPriority::Expedited
            } else {
                AppealPriority::Standard
            };
            let case = self
                .transition(&caller, &req.case_id, |c, who, _, now| {
                    c.appeal(who, priority, &req.reason, now)
                })
                .await?;
            Ok(pb::RequestAppealResponse { case: Some(case) })
        })
        .await
    }

    async fn decide_appeal(
        &self,
        request: Request<pb::DecideAppealRequest>,
    ) -> Result<Response<pb::DecideAppealResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let decision = if req.overturn {
                if req.rationale.trim().is_empty() {
                    return Err(ApiError::field("rationale", "is required"));
                }
                AppealDecision::Overturned {
                    rationale: req.rationale.trim().to_owned(),
                }
            } else {
                AppealDecision::Upheld {
                    adverse: AdverseDetermination::new(
                        &req.reason_code,
                        &req.rationale,
                        &req.guideline,
                    )?,
                }
            };
            let case = self
                .transition(&caller, &req.case_id, |c, who, _, now| {
                    c.decide_appeal(who, decision, now)
                })
                .await?;
            Ok(pb::DecideAppealResponse { case: Some(case) })
        })
        .await
    }

    async fn evaluate_gold_cards(
        &self,
        request: Request<pb::EvaluateGoldCardsRequest>,
    ) -> Result<Response<pb::EvaluateGoldCardsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            Self::require_role(
                &caller,
                &[Role::Admin, Role::Service],
                "gold-card evaluation",
            )?;
            let gold_cards = self.evaluate_gold_cards(self.app.now()).await?;
            Ok(pb::EvaluateGoldCardsResponse { gold_cards })
        })
        .await
    }

    async fn list_gold_cards(
        &self,
        request: Request<pb::ListGoldCardsRequest>,
    ) -> Result<Response<pb::ListGoldCardsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let mut invalid = Invalid::new();
            let npi = optional(
                &mut invalid,
                "provider_npi",
                &request.get_ref().provider_npi,
                Npi::parse,
            )
            .flatten();
            let page = request.get_ref().page.clone().unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size");
            invalid.into_result()?;
            let size = size?;
            let npi = match caller.actor.role {
                Role::Provider => {
                    let me = caller.actor.provider_npi();
                    if npi.is_some() && npi != me {
                        return Err(ApiError::denied("providers see their own gold cards"));
                    }
                    me
                }
                Role::Member => {
                    return Err(ApiError::denied(
                        "gold cards are for providers and plan staff",
                    ));
                }
                _ => npi,
            };
            let found = self
                .app
                .store
                .gold_cards_page(npi.as_ref().map(|n| n.as_str()), &page.page_token, size)
                .await?;
            Ok(pb::ListGoldCardsResponse {
                next_page_token: found.next_page_token.unwrap_or_default(),
                gold_cards: found
                    .items
                    .into_iter()
                    .map(|c| pb::GoldCard {
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
                        evaluated_at: Some(timestamp(c.evaluated_at)),
                        window_start: Some(timestamp(c.window_start)),
                        change: c.change,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            Self::require_role(
                &caller,
                &[
                    Role::Admin,
                    Role::Service,
                    Role::Nurse,
                    Role::PhysicianReviewer,
                ],
                "metrics",
            )?;
            let req = request.into_inner();
            let now = self.app.now();
            let mut invalid = Invalid::new();
            let from = optional_instant(&mut invalid, "from", req.from);
            let to = optional_instant(&mut invalid, "to", req.to);
            invalid.into_result()?;
            let from = from.unwrap_or(now - chrono::Duration::days(365));
            let to = to.unwrap_or(now + chrono::Duration::seconds(1));
            if to <= from {
                return Err(ApiError::field("to", "must be after from"));
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
            let m = precert::metrics::metrics(&summaries, from, to);
            let urgency = |u: &precert::metrics::UrgencyMetrics| pb::UrgencyMetrics {
                requests: u.received,
                decided: u.decided,
                approved_share: u.approved_share,
                denied_share: u.denied_share,
                partially_approved_share: u.partially_approved_share,
                approved_after_extended_review_share: u.approved_after_extended_review_share,
                average_hours_to_decision: u.mean_hours_to_decision.unwrap_or(0.0),
                median_hours_to_decision: u.median_hours_to_decision.unwrap_or(0.0),
            };
            Ok(pb::GetMetricsResponse {
                standard: Some(urgency(&m.standard)),
                expedited: Some(urgency(&m.expedited)),
                approved_after_extended_review_share: m.approved_after_extended_review_share,
                approved_after_appeal_share: m.approved_after_appeal_share,
                auto_approval_rate: m.auto_approval_rate,
                late_cases: m.late_cases,
                total_requests: summaries.len() as u32,
            })
        })
        .await
    }

    async fn list_rule_lists(
        &self,
        request: Request<pb::ListRuleListsRequest>,
    ) -> Result<Response<pb::ListRuleListsResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let page = request.into_inner().page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let today = self.app.now().date_naive();
            let rules = self.engine.rules();
            let (lists, next_page_token) = page_in_memory(
                rules.lists().iter().collect(),
                |l| format!("{}/{}", l.id, l.version),
                &page.page_token,
                size,
            );
            let lists = lists
                .into_iter()
                .map(|l| list_version(l, &self.engine.origin(&l.id, &l.version), today))
                .collect();
            Ok(pb::ListRuleListsResponse {
                lists,
                next_page_token,
            })
        })
        .await
    }

    async fn validate_rule_list(
        &self,
        request: Request<pb::ValidateRuleListRequest>,
    ) -> Result<Response<pb::ValidateRuleListResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            Self::require_role(&caller, &[Role::Admin], "rule-list administration")?;
            let req = request.into_inner();
            let name = if req.source_name.trim().is_empty() {
                "rule-list.toml"
            } else {
                req.source_name.trim()
            };
            let today = self.app.now().date_naive();
            let result = RuleList::from_toml(name, &req.source)
                .and_then(|list| self.engine.with_list(list.clone()).map(|_| list));
            Ok(match result {
                Ok(list) => pb::ValidateRuleListResponse {
                    valid: true,
                    errors: Vec::new(),
                    list: Some(list_version(
                        &list,
                        &ListOrigin::Activated {
                            by: caller.actor.subject.clone(),
                        },
                        today,
                    )),
                },
                Err(errors) => pb::ValidateRuleListResponse {
                    valid: false,
                    errors: errors.0.iter().map(ToString::to_string).collect(),
                    list: None,
                },
            })
        })
        .await
    }

    async fn activate_rule_list(
        &self,
        request: Request<pb::ActivateRuleListRequest>,
    ) -> Result<Response<pb::ActivateRuleListResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            Self::require_role(&caller, &[Role::Admin], "rule-list administration")?;
            let req = request.into_inner();
            let name = if req.source_name.trim().is_empty() { "rule-list.toml" } else { req.source_name.trim() };
            let list = RuleList::from_toml(name, &req.source).map_err(|e| load_invalid(&e))?;
            let _updating = self.engine.updating().await;
            let book = self.engine.with_list(list.clone()).map_err(|e| load_invalid(&e))?;
            let now = self.app.now();
            let record = RuleListRecord {
                list_id: list.id.clone(),
                version: list.version.clone(),
                effective_from: list.effective_from,
                source_name: name.to_owned(),
                source: req.source,
                activated_by: caller.actor.subject.clone(),
                activated_at: now,
            };
            let mut tx = self.app.store.begin().await?;
            tx.insert_rule_list(&record).await?;
            tx.append_event(&carepath_core::DomainEvent {
                id: uuid::Uuid::now_v7().to_string(),
                kind: "precert.rule_list.activated".into(),
                aggregate_kind: "precert_rule_list".into(),
                aggregate_id: format!("{}@{}", list.id, list.version),
                member_id: None,
                occurred_at: now,
                payload: serde_json::json!({ "list_id": list.id, "version": list.version, "effective_from": list.effective_from, "activated_by": caller.actor.subject }),
            })
            .await?;
            tx.commit().await?;
            let origin = ListOrigin::Activated { by: record.activated_by.clone() };
            let version = book
                .lists()
                .iter()
                .find(|l| l.id == list.id && l.version == list.version)
                .map_or_else(|| list_version(&list, &origin, now.date_naive()), |l| list_version(l, &origin, now.date_naive()));
            self.engine.install(book, &record);
            Ok(pb::ActivateRuleListResponse { list: Some(version) })
        })
        .await
    }
}

fn load_invalid(errors: &precert::LoadErrors) -> ApiError {
    let mut invalid = Invalid::new();
    for e in &errors.0 {
        invalid.push("source", e.to_string());
    }
    ApiError::Invalid(invalid)
}
