//! Work on a filed case: clinical review (claim, release, asking for and supplying
//! information, decisions), the paths after a decision (peer-to-peer discussion,
//! reconsideration, appeal), withdrawal and the sweep that withdraws cases whose
//! information did not come.

use std::collections::BTreeMap;

use carepath_core::{Invalid, Role, StaffId};
use carepath_precert::{
    self as precert, AdverseDetermination, Answer, AppealDecision, AppealPriority, DocumentRequest,
    LineApproval, Missing, MissingQuestion, PeerToPeerOutcome, RecordRef, StaffRef, WithdrawReason,
    WorkflowError,
};
use chrono::{DateTime, Utc};

use super::{CaseView, Precert, RECORD_KIND, case_of, submit::known_answers_and_documents};
use crate::{AppError, AppResult, Caller};

/// The reason, rationale and guideline of an adverse decision, as the reviewer gave
/// them; checked when the decision is made (after the reviewer's standing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adverse {
    /// The reason code (`not_medically_necessary`, ...).
    pub reason_code: String,
    /// Why, in words the member and provider can act on.
    pub rationale: String,
    /// The clinical guideline the decision rests on.
    pub guideline: String,
}

impl Adverse {
    fn determination(&self) -> Result<AdverseDetermination, Invalid> {
        AdverseDetermination::new(&self.reason_code, &self.rationale, &self.guideline)
    }
}

/// What is approved of one line in a partial approval, numbered from 1 as the
/// requester numbered the lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartLine {
    /// The line, numbered from 1.
    pub line_number: u32,
    /// Units approved.
    pub approved_units: u32,
    /// Approved days of a stay; 0 for none.
    pub approved_days: u32,
}

/// A reviewer's decision on a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve {
        note: String,
    },
    Deny(Adverse),
    ApproveInPart {
        adverse: Adverse,
        lines: Vec<PartLine>,
    },
}

/// Answers and records sent after the submission: information a reviewer asked for,
/// or what a reconsideration rests on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaterInformation {
    /// Answers to the rules' clinical questions, in the order sent, each question once.
    pub answers: Vec<(String, Answer)>,
    /// Records attached, in the order sent.
    pub records: Vec<RecordRef>,
}

/// One item a reviewer asks the provider to send: a rule's question (answered) or a
/// document (a record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedItem {
    /// The question's or document's id.
    pub id: String,
    /// What is asked for, in words.
    pub text: String,
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

impl Precert {
    /// A reviewer takes a case from the queue.
    pub async fn claim(&self, caller: &Caller, case_id: &str) -> AppResult<CaseView> {
        self.command(caller, case_id, |c, who, _, now| c.claim(who, now))
            .await
    }

    /// The reviewer holding a case puts it back in the queue.
    pub async fn release(&self, caller: &Caller, case_id: &str) -> AppResult<CaseView> {
        self.command(caller, case_id, |c, who, _, now| c.release(who, now))
            .await
    }

    /// The requester withdraws their request.
    pub async fn withdraw(
        &self,
        caller: &Caller,
        case_id: &str,
        reason: &str,
    ) -> AppResult<CaseView> {
        self.command(caller, case_id, |c, who, _, now| {
            c.withdraw(who, WithdrawReason::ByRequester, reason, now)
        })
        .await
    }

    /// A reviewer asks the provider for information: each item a rule's question is
    /// asked as that question, anything else as a document.
    pub async fn request_information(
        &self,
        caller: &Caller,
        case_id: &str,
        items: Vec<RequestedItem>,
    ) -> AppResult<CaseView> {
        let rules = self.engine.rules();
        let kinds = rules.question_kinds();
        let mut missing = Missing::default();
        for item in items {
            match kinds.get(item.id.as_str()) {
                Some(kind) => missing.questions.push(MissingQuestion {
                    id: item.id,
                    text: item.text,
                    answer: *kind,
                }),
                None => missing.documents.push(DocumentRequest {
                    id: item.id,
                    text: item.text,
                }),
            }
        }
        drop(kinds);
        drop(rules);
        self.command(caller, case_id, |c, who, ctx, now| {
            c.request_information(who, missing, ctx, now)
        })
        .await
    }

    /// Information sent after the submission, each answer checked against the
    /// questions the rule lists ask (records may answer a reviewer's own request, so
    /// their documents are not checked).
    fn checked(
        &self,
        information: LaterInformation,
    ) -> AppResult<(BTreeMap<String, Answer>, Vec<RecordRef>)> {
        let LaterInformation { answers, records } = information;
        known_answers_and_documents(&self.engine.rules(), &answers, &[])?;
        Ok((answers.into_iter().collect(), records))
    }

    /// The requester supplies answers and records; automation runs again.
    pub async fn supply_information(
        &self,
        caller: &Caller,
        case_id: &str,
        information: LaterInformation,
    ) -> AppResult<CaseView> {
        let (answers, records) = self.checked(information)?;
        self.command(caller, case_id, |c, who, ctx, now| {
            c.supply_information(who, answers, records, ctx, now)
        })
        .await
    }

    /// A reviewer's decision. Only a physician reviewer may deny or approve in part;
    /// anyone else is refused (and audited) before the decision is looked at.
    pub async fn decide(
        &self,
        caller: &Caller,
        case_id: &str,
        decision: Decision,
    ) -> AppResult<CaseView> {
        match decision {
            Decision::Approve { note } => {
                self.command(caller, case_id, |c, who, _, now| c.approve(who, &note, now))
                    .await
            }
            Decision::Deny(adverse) => {
                self.physician_only(caller, case_id, "deny a request")
                    .await?;
                let adverse = adverse.determination()?;
                self.command(caller, case_id, |c, who, _, now| c.deny(who, adverse, now))
                    .await
            }
            Decision::ApproveInPart { adverse, lines } => {
                self.physician_only(caller, case_id, "approve in part")
                    .await?;
                let adverse = adverse.determination()?;
                let mut invalid = Invalid::new();
                let approvals: Vec<LineApproval> = lines
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
                self.command(caller, case_id, |c, who, _, now| {
                    c.approve_in_part(who, &approvals, adverse, now)
                })
                .await
            }
        }
    }

    /// Refuses (and audits the refusal of) an adverse decision by anyone but a
    /// physician reviewer.
    async fn physician_only(&self, caller: &Caller, case_id: &str, what: &str) -> AppResult<()> {
        if caller.actor.role == Role::PhysicianReviewer {
            return Ok(());
        }
        Err(self
            .app
            .refuse(
                caller,
                RECORD_KIND,
                case_id,
                None,
                AppError::denied(format!("only a physician reviewer may {what}")),
            )
            .await)
    }

    /// The requester asks to discuss an adverse decision with a physician reviewer.
    pub async fn request_peer_to_peer(
        &self,
        caller: &Caller,
        case_id: &str,
    ) -> AppResult<CaseView> {
        self.command(caller, case_id, |c, who, _, now| {
            c.request_peer_to_peer(who, now)
        })
        .await
    }

    /// The calling physician reviewer schedules the discussion, which they hold.
    pub async fn schedule_peer_to_peer(
        &self,
        caller: &Caller,
        case_id: &str,
        at: DateTime<Utc>,
    ) -> AppResult<CaseView> {
        self.command(caller, case_id, |c, who, _, now| {
            let physician = staff_ref(who)?;
            c.schedule_peer_to_peer(who, physician, at, now)
        })
        .await
    }

    /// The discussion's outcome: the decision overturned or standing.
    pub async fn complete_peer_to_peer(
        &self,
        caller: &Caller,
        case_id: &str,
        overturned: bool,
        note: &str,
    ) -> AppResult<CaseView> {
        let outcome = if overturned {
            PeerToPeerOutcome::Overturned
        } else {
            PeerToPeerOutcome::DecisionStands
        };
        self.command(caller, case_id, |c, who, _, now| {
            c.complete_peer_to_peer(who, outcome, note, now)
        })
        .await
    }

    /// The requester sends more information and asks for the decision again.
    pub async fn reconsider(
        &self,
        caller: &Caller,
        case_id: &str,
        information: LaterInformation,
    ) -> AppResult<CaseView> {
        let (answers, records) = self.checked(information)?;
        self.command(caller, case_id, |c, who, ctx, now| {
            c.reconsider(who, answers, records, ctx, now)
        })
        .await
    }

    /// The requester or member appeals an adverse decision.
    pub async fn appeal(
        &self,
        caller: &Caller,
        case_id: &str,
        expedited: bool,
        reason: &str,
    ) -> AppResult<CaseView> {
        let priority = if expedited {
            AppealPriority::Expedited
        } else {
            AppealPriority::Standard
        };
        self.command(caller, case_id, |c, who, _, now| {
            c.appeal(who, priority, reason, now)
        })
        .await
    }

    /// A reviewer decides an appeal: overturned with a rationale, or upheld with the
    /// adverse determination's reason, rationale and guideline.
    pub async fn decide_appeal(
        &self,
        caller: &Caller,
        case_id: &str,
        overturn: bool,
        adverse: Adverse,
    ) -> AppResult<CaseView> {
        let decision = if overturn {
            if adverse.rationale.trim().is_empty() {
                return Err(AppError::field("rationale", "is required"));
            }
            AppealDecision::Overturned {
                rationale: adverse.rationale.trim().to_owned(),
            }
        } else {
            AppealDecision::Upheld {
                adverse: adverse.determination()?,
            }
        };
        self.command(caller, case_id, |c, who, _, now| {
            c.decide_appeal(who, decision, now)
        })
        .await
    }

    /// Withdraws cases whose requested information is overdue past the limit;
    /// returns how many. Run by the precertification sweep as the internal service
    /// `precert-sweeper`.
    pub async fn withdraw_overdue(&self) -> AppResult<usize> {
        let now = self.app.now();
        let sweeper = Caller::service("precert-sweeper", "sweep:withdraw_overdue");
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
                .command(&sweeper, &record.id, |case, who, _, now| {
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
