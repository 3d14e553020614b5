//! Requirement checks and submissions: who may ask for whom, the parties of a
//! request, the answers and records a rule book knows, and the idempotent filing of a
//! case.

use std::collections::BTreeMap;

use carepath_core::{
    Actor, Icd10Code, Invalid, Member, MemberId, NetworkStatus, Npi, Plan, Provider, Role, Urgency,
};
use carepath_precert::{
    Answer, CheckAnswer, Ctx, PrecertCase, ProviderParty, Purpose, RecordRef, RuleBook,
    ServiceLine, Submission,
};
use carepath_store::{AuditOutcome, CaseCreated, CaseRecord, NewCase, SubmissionParties};
use chrono::{DateTime, Utc};

use super::{CaseView, Precert, RECORD_KIND, case_of, may_view, record_of, request_id_of};
use crate::{AppError, AppResult, Caller, pipeline::events_of};

/// A requirement check: does precertification apply to these services for this
/// member at this rendering provider?
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRequest {
    /// The member the services are for.
    pub member_id: MemberId,
    /// The provider who would render the services.
    pub rendering_npi: Npi,
    /// The member's diagnoses the services are for.
    pub diagnoses: Vec<Icd10Code>,
    /// The services asked about; one answer each, in order.
    pub lines: Vec<ServiceLine>,
}

/// A request for precertification.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    /// The submitting caller's own id of the request: a retry with the same id by
    /// the same caller answers with the case already filed ([`request_key`]).
    pub request_id: String,
    /// The member the services are for.
    pub member_id: MemberId,
    /// The provider asking (gold-card exemptions are theirs).
    pub requesting_npi: Npi,
    /// The provider rendering the services.
    pub servicing_npi: Npi,
    /// The services requested.
    pub lines: Vec<ServiceLine>,
    /// The member's diagnoses the services are for.
    pub diagnoses: Vec<Icd10Code>,
    /// How soon a decision is owed.
    pub urgency: Urgency,
    /// Answers to the rules' clinical questions, in the order sent (question id →
    /// answer, each question once).
    pub answers: Vec<(String, Answer)>,
    /// Records attached, in the order sent.
    pub records: Vec<RecordRef>,
    /// The coverage assertions given when the services were ordered, if the
    /// requester cites them: each must be the member's, and the case is linked to
    /// them.
    pub coverage_assertions: Vec<String>,
}

/// The idempotency key a request is filed under: the authenticated caller's own
/// request id, so no caller can take another's id by naming it as requester. A
/// provider's key starts with its NPI (as requests filed before this rule did); any
/// other caller's with its role and subject, which no NPI can be.
///
/// ```
/// use carepath_app::precert::submit::request_key;
/// use carepath_core::{Actor, Role};
///
/// let provider = Actor::new(Role::Provider, "1184649790").unwrap();
/// assert_eq!(request_key(&provider, "mri-0042"), "1184649790:mri-0042");
/// let nurse = Actor::new(Role::Nurse, "RN-001").unwrap();
/// assert_eq!(request_key(&nurse, "mri-0042"), "nurse/RN-001:mri-0042");
/// ```
pub fn request_key(actor: &Actor, request_id: &str) -> String {
    match actor.provider_npi() {
        Some(npi) => format!("{npi}:{request_id}"),
        None => format!("{}/{}:{request_id}", actor.role.as_str(), actor.subject),
    }
}

/// The fields in which a retry differs from the request first filed under its id,
/// named as the caller sends them (none for a true retry). Answers and records the
/// case gained after filing do not count: a retry conflicts only when it sends
/// something the first request did not.
pub fn conflicting_fields(filed: &Submission, retry: &SubmitRequest) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut differ = |differs: bool, field| {
        if differs {
            fields.push(field);
        }
    };
    differ(filed.member_id != retry.member_id, "member_id");
    differ(
        filed.requesting_provider.npi != retry.requesting_npi,
        "requesting_provider_npi",
    );
    differ(
        filed.servicing_provider.npi != retry.servicing_npi,
        "servicing_provider_npi",
    );
    differ(filed.lines != retry.lines, "lines");
    differ(filed.diagnoses != retry.diagnoses, "diagnoses");
    differ(filed.urgency != retry.urgency, "urgency");
    differ(
        retry
            .answers
            .iter()
            .any(|(id, answer)| filed.answers.get(id) != Some(answer)),
        "answers",
    );
    differ(
        retry.records.iter().any(|r| !filed.records.contains(r)),
        "records",
    );
    fields
}

/// The case a submission filed, or the one filed before under the same request id
/// (`created` false).
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The case filed.
    pub case: CaseView,
    /// False when the case was filed before under the same request id.
    pub created: bool,
}

/// Whether `actor` may check or submit a request for `member`: members act for
/// themselves only and physician reviewers decide requests rather than make them;
/// a provider submits only requests they make or service (`parties` holds the
/// requesting and servicing providers of a submission, `None` for a check).
///
/// ```
/// use carepath_app::precert::submit::may_request;
/// use carepath_core::{Actor, MemberId, Role};
///
/// let member = MemberId::parse("M100001").unwrap();
/// let other = MemberId::parse("M100002").unwrap();
/// let actor = Actor::new(Role::Member, "M100001").unwrap();
/// assert!(may_request(&actor, &member, None).is_ok());
/// assert!(may_request(&actor, &other, None).is_err());
/// let reviewer = Actor::new(Role::PhysicianReviewer, "MD-001").unwrap();
/// assert!(may_request(&reviewer, &member, None).is_err());
/// ```
pub fn may_request(
    actor: &Actor,
    member: &MemberId,
    parties: Option<(&Npi, &Npi)>,
) -> AppResult<()> {
    match actor.role {
        Role::Member if actor.member_id().as_ref() != Some(member) => {
            Err(AppError::denied("members act for themselves only"))
        }
        Role::PhysicianReviewer => Err(AppError::denied(
            "physician reviewers decide requests; they do not make them",
        )),
        Role::Provider => match parties {
            Some((requesting, servicing))
                if actor
                    .provider_npi()
                    .is_none_or(|me| &me != requesting && &me != servicing) =>
            {
                Err(AppError::denied(
                    "providers submit requests they make or service",
                ))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Names every answer to a question no precertification rule asks (a misspelt id
/// would otherwise leave the request waiting for the answer it meant to give), and
/// every record for a document no list names. Records supplied later may answer a
/// reviewer's own request, so callers pass only a submission's records.
pub(super) fn known_answers_and_documents(
    book: &RuleBook,
    answers: &[(String, Answer)],
    records: &[RecordRef],
) -> Result<(), Invalid> {
    let mut invalid = Invalid::new();
    for (i, (id, _)) in answers.iter().enumerate() {
        if !id.is_empty() && !book.asks(id) {
            invalid.push(
                format!("answers[{i}].question_id"),
                format!("{id:?} is not a question of the precertification list (CheckRequirement lists a rule's questions)"),
            );
        }
    }
    for (i, r) in records.iter().enumerate() {
        let id = r.document.as_str();
        if !id.is_empty() && !book.names_document(id) {
            invalid.push(
                format!("records[{i}].document"),
                format!("{id:?} is not a document of the precertification list (CheckRequirement lists what to send)"),
            );
        }
    }
    invalid.into_result()
}

/// The parties of a request, all found in the directory.
pub(super) struct Parties {
    pub(super) member: Member,
    pub(super) plan: Plan,
    pub(super) requesting: Provider,
    pub(super) requesting_network: NetworkStatus,
    pub(super) servicing_network: NetworkStatus,
}

impl Parties {
    /// Checks that each party exists, naming the field of any that does not;
    /// `servicing_field` is `None` when one provider plays both parts.
    pub(super) fn of(
        found: SubmissionParties,
        member_id: &MemberId,
        requesting_field: &str,
        servicing_field: Option<&str>,
    ) -> AppResult<Parties> {
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
                Err(AppError::Internal(format!(
                    "the plan of member {member_id} is missing"
                )))
            }
        }
    }
}

impl Precert {
    /// The case already made under `request_key` (if any, and if the key is not
    /// empty), the member with their plan, and the two providers: the directory
    /// records from [`crate::directory::memory`] when it has all four, read (and
    /// remembered) otherwise.
    pub(super) async fn parties(
        &self,
        request_key: &str,
        member: &MemberId,
        requesting: &Npi,
        servicing: &Npi,
    ) -> AppResult<SubmissionParties> {
        let now = self.app.now();
        let memory = &self.app.directory;
        if let Some(mut found) = memory.parties(member, requesting, servicing, now) {
            if !request_key.is_empty() {
                found.existing_case = self.app.store.case_id_by_request_key(request_key).await?;
            }
            return Ok(found);
        }
        let found = (self.app.store)
            .submission_parties(request_key, member, requesting, servicing)
            .await?;
        memory.remember(&found, now);
        Ok(found)
    }

    /// Refuses dates of service outside the engine's window ([`carepath_precert::
    /// ServiceDates`]), reckoned from the plan's local date today, naming each line's
    /// `{field}[i].date_of_service` (`lines[0].date_of_service`), and figures past their
    /// bounds (`carepath_precert::limits::check_line`).
    pub(super) fn check_service_dates<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a ServiceLine>,
        purpose: Purpose,
        field: &str,
    ) -> AppResult<()> {
        let received = self
            .app
            .now()
            .with_timezone(&self.app.calendar.timezone())
            .date_naive();
        let window = self.engine.service_dates();
        let mut invalid = Invalid::new();
        for (i, line) in lines.into_iter().enumerate() {
            if let Err(e) = window.check(line, received, purpose) {
                invalid.push(format!("{field}[{i}].date_of_service"), e.to_string());
            }
            carepath_precert::limits::check_line(&mut invalid, &format!("{field}[{i}]"), line);
        }
        Ok(invalid.into_result()?)
    }

    /// Whether precertification applies to each line, under the rules in force. The
    /// check is audited as an access to the member's coverage.
    pub async fn check(&self, caller: &Caller, req: CheckRequest) -> AppResult<Vec<CheckAnswer>> {
        let CheckRequest {
            member_id,
            rendering_npi: npi,
            diagnoses,
            lines,
        } = req;
        may_request(&caller.actor, &member_id, None)?;
        self.check_service_dates(&lines, Purpose::Check, "lines")?;
        let found = self.parties("", &member_id, &npi, &npi).await?;
        let Parties {
            plan,
            requesting_network: network,
            ..
        } = Parties::of(found, &member_id, "rendering_provider_npi", None)?;
        let rules = self.engine.rules();
        let mut answers = Vec::with_capacity(lines.len());
        for check in rules.check_many(&plan, network, &lines, &diagnoses) {
            let check = check.map_err(|e| AppError::FailedPrecondition(e.to_string()))?;
            answers.push(check.to_answer());
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

    /// Files a request and decides it at once where automation can. A retry with the
    /// same request id by the same caller answers with the case filed first, whatever
    /// changed in the case since, even when the two race; a different request under
    /// an id the caller used before is ALREADY_EXISTS naming what differs.
    pub async fn submit(&self, caller: &Caller, req: SubmitRequest) -> AppResult<Submitted> {
        let rules = self.engine.rules();
        known_answers_and_documents(&rules, &req.answers, &req.records)?;
        may_request(
            &caller.actor,
            &req.member_id,
            Some((&req.requesting_npi, &req.servicing_npi)),
        )?;
        let key = request_key(&caller.actor, &req.request_id);
        let now = self.app.stored_now();
        let found = self
            .parties(
                &key,
                &req.member_id,
                &req.requesting_npi,
                &req.servicing_npi,
            )
            .await?;
        // A retry answers with its case, whatever changed since.
        if let Some(existing) = &found.existing_case {
            let record = self.app.store.get_case(existing).await?;
            return self.resubmitted(caller, record, &req, now).await;
        }
        let retry = req.clone();
        let SubmitRequest {
            request_id,
            member_id,
            requesting_npi: requesting,
            servicing_npi: servicing,
            lines,
            diagnoses,
            urgency,
            answers,
            records,
            coverage_assertions,
        } = req;
        self.check_service_dates(&lines, Purpose::Request, "lines")?;
        if coverage_assertions.len() > carepath_precert::MAX_LINES {
            return Err(AppError::field(
                "coverage_assertions",
                format!(
                    "at most {} coverage assertions",
                    carepath_precert::MAX_LINES
                ),
            ));
        }
        let mut assertions: Vec<String> = Vec::with_capacity(coverage_assertions.len());
        for (i, id) in coverage_assertions.iter().enumerate() {
            let field = format!("coverage_assertions[{i}]");
            let a = self.find_assertion(caller, id, &field).await?;
            if a.member_id != member_id {
                return Err(AppError::field(
                    &field,
                    "the coverage assertion is for another member",
                ));
            }
            if !assertions.contains(&a.id) {
                assertions.push(a.id);
            }
        }
        let Parties {
            member,
            plan,
            requesting: requester,
            requesting_network,
            servicing_network,
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
            answers: answers.into_iter().collect::<BTreeMap<_, _>>(),
            records,
            coverage_assertions: assertions.clone(),
        };
        let who = self.workflow_caller(caller).await?;
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
                .ok_or_else(|| AppError::Internal("case vanished after conflict".into()))?;
            return self.resubmitted(caller, existing, &retry, now).await;
        }
        for assertion in &assertions {
            // The request follows the assertion: the audit log links the two.
            self.app
                .audit(
                    caller,
                    super::coverage::ASSERTION_RECORD_KIND,
                    assertion,
                    Some(&member.id),
                    AuditOutcome::Allowed,
                )
                .await?;
        }
        Ok(Submitted {
            case: CaseView {
                case,
                request_id,
                as_of: now,
            },
            created: true,
        })
    }

    /// The answer to a retry: the case filed first, to a caller who may see it and
    /// sends the same request; anyone else learns only that the request id is taken,
    /// and the caller who filed it what the retry changes.
    async fn resubmitted(
        &self,
        caller: &Caller,
        record: CaseRecord,
        retry: &SubmitRequest,
        now: DateTime<Utc>,
    ) -> AppResult<Submitted> {
        let case = case_of(&record)?;
        if !may_view(&caller.actor, &case) {
            return Err(AppError::AlreadyExists {
                kind: "request id",
                id: request_id_of(&record).to_owned(),
            });
        }
        let conflicts = conflicting_fields(&case.request, retry);
        if !conflicts.is_empty() {
            return Err(AppError::AlreadyExists {
                kind: "request id",
                id: format!(
                    "{} (filed before as case {} with another {})",
                    request_id_of(&record),
                    case.id,
                    conflicts.join(", ")
                ),
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
        Ok(Submitted {
            case: CaseView {
                case,
                request_id: request_id_of(&record).to_owned(),
                as_of: now,
            },
            created: false,
        })
    }
}
