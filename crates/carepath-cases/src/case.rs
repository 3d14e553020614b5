//! The managed case: a serializable aggregate and the commands that are the only way to
//! change it.
//!
//! ```text
//! screening ─> assessment ─> planning ─> implementation ─┬─> monitoring ─┐
//!                                ^                       └─> transitions_of_care
//!                                └──── (re-plan) ──── monitoring <──> transitions_of_care
//! closed: from any open phase with an outcome; "goals met" and "goals partially met"
//! only once care was delivered (implementation, monitoring, transitions of care).
//! A member's decline closes the case with the outcome `member_declined`.
//! ```
//!
//! Every command takes the caller and `now`, checks the caller's right (a typed
//! [`CaseError::PermissionDenied`]) and the state ([`CaseError::IllegalTransition`],
//! FAILED_PRECONDITION at the edge), appends a history entry and returns the events to
//! publish.

use std::collections::BTreeSet;

use carepath_core::{Actor, CountryCode, Icd10Code, Invalid, MemberId, Npi, Role, StaffId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{
    CareAbroad, CareSetting, CaseKind, DecisionReason, GoalStatus, InteractionChannel, Outcome,
    Phase, Priority, ReferralSource, ServiceKind, ServiceState, TaskStatus,
};

/// The aggregate kind of every case event.
pub const AGGREGATE_KIND: &str = "managed_case";

/// Event kinds published by cases, one constant each so producers and consumers share
/// the spelling.
pub mod event_kinds {
    pub const OPENED: &str = "cases.case.opened";
    pub const REFERRAL_ABSORBED: &str = "cases.referral.absorbed";
    pub const ASSIGNED: &str = "cases.case.assigned";
    pub const PHASE_CHANGED: &str = "cases.case.phase_changed";
    pub const CLOSED: &str = "cases.case.closed";
    pub const GOAL_ADDED: &str = "cases.goal.added";
    pub const GOAL_UPDATED: &str = "cases.goal.updated";
    pub const TASK_ADDED: &str = "cases.task.added";
    pub const TASK_UPDATED: &str = "cases.task.updated";
    pub const INTERACTION_RECORDED: &str = "cases.interaction.recorded";
    pub const TRANSITION_RECORDED: &str = "cases.transition.recorded";
    pub const SERVICE_REQUESTED: &str = "cases.service.requested";
    pub const SERVICE_UPDATED: &str = "cases.service.updated";
    pub const DECISION_SUPPORT_REQUESTED: &str = "cases.decision_support.requested";
    pub const CARE_ABROAD_ASSESSED: &str = "cases.decision_support.care_abroad_assessed";
    pub const CONSENT_RECORDED: &str = "cases.consent.recorded";
    pub const RATED: &str = "cases.case.rated";
}

/// Longest free text accepted (summaries, notes, comments).
pub const MAX_TEXT: usize = 4000;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaseError {
    /// The command is not allowed from where the case (or one of its items) stands.
    #[error("cannot {action}: {reason}")]
    IllegalTransition {
        action: &'static str,
        reason: String,
    },
    #[error("permission denied to {action}: {reason}")]
    PermissionDenied {
        action: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

fn illegal(action: &'static str, reason: impl Into<String>) -> CaseError {
    CaseError::IllegalTransition {
        action,
        reason: reason.into(),
    }
}

fn denied(action: &'static str, reason: &'static str) -> CaseError {
    CaseError::PermissionDenied { action, reason }
}

/// The caller of a command, with the name shown on what they record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    /// The staff member's name from the directory; the subject when unknown.
    pub name: String,
}

impl Caller {
    pub fn new(actor: Actor, name: impl Into<String>) -> Self {
        Caller {
            actor,
            name: name.into(),
        }
    }
}

/// A nurse case manager as recorded on the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NurseRef {
    pub staff_id: StaffId,
    pub name: String,
}

/// Why a case was opened or why an open case was told again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    pub source: ReferralSource,
    pub reason: String,
    /// Who referred: a subject (staff id, NPI, member id) or the emitting service.
    pub referred_by: String,
    /// The outbox event that made an automatic referral.
    pub event_id: Option<String>,
    /// The record that caused it: an oncology plan, a precertification case, a
    /// second-opinion request.
    pub source_id: Option<String>,
    pub diagnosis: Option<String>,
    pub at: DateTime<Utc>,
}

/// One nurse's time on the case; reassignment ends the previous one, so the history
/// of who managed the case is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub nurse: NurseRef,
    pub assigned_by: String,
    pub assigned_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    pub id: String,
    pub description: String,
    pub target_date: NaiveDate,
    pub status: GoalStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    /// Who does it: a staff id, or a free description ("member", "pharmacist").
    pub owner: String,
    pub due_on: NaiveDate,
    pub priority: Priority,
    pub status: TaskStatus,
    pub goal_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Task {
    /// Unfinished and due before `today`.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        !self.status.is_finished() && self.due_on < today
    }
}

/// One entry of the interaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    pub id: String,
    pub channel: InteractionChannel,
    pub at: DateTime<Utc>,
    pub author_id: String,
    pub author_name: String,
    pub summary: String,
    pub next_steps: Option<String>,
    /// Internal notes members and providers never see.
    pub private: bool,
    /// Whether the member is told (a follow-up notice); never for private notes.
    pub notify_member: bool,
}

/// A move between care settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CareTransition {
    pub id: String,
    pub from_setting: CareSetting,
    pub to_setting: CareSetting,
    pub from_facility: Option<Npi>,
    pub to_facility: Option<Npi>,
    /// The day the member left the first setting.
    pub discharge_date: NaiveDate,
    /// The day the member arrived in the next one (same day or later).
    pub arrival_date: NaiveDate,
    pub notes: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// A service the nurse arranges: home care, equipment, respite, community resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrangedService {
    pub id: String,
    pub kind: ServiceKind,
    pub description: String,
    pub vendor: Option<Npi>,
    pub state: ServiceState,
    pub needs_precertification: bool,
    /// The precertification case that covers it, when it needs one.
    pub precert_case_id: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// For a member abroad: whether local care is appropriate, and the specialist found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CareAbroadAssessment {
    pub country: CountryCode,
    pub recommendation: CareAbroad,
    pub rationale: String,
    pub specialist: Option<Npi>,
    pub assessed_by: String,
    pub assessed_at: DateTime<Utc>,
}

/// A request to connect the member with an expert physician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionSupport {
    pub id: String,
    pub reason: DecisionReason,
    pub diagnosis: Option<Icd10Code>,
    pub specialty: Option<String>,
    pub notes: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub care_abroad: Option<CareAbroadAssessment>,
}

/// A provider's access to the case, granted or revoked by the member's word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub provider: Npi,
    pub granted: bool,
    pub recorded_by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Satisfaction {
    /// 1 (very poor) to 5 (excellent).
    pub rating: u8,
    pub comment: String,
    pub rated_at: DateTime<Utc>,
}

impl Satisfaction {
    /// Ratings of 4 and 5 count as satisfied.
    pub fn satisfied(&self) -> bool {
        self.rating >= 4
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub by: String,
    pub role: Role,
    pub action: String,
    pub note: String,
}

pub use carepath_core::EventDraft;

/// What a caller may see of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Everything, including private notes.
    Full,
    /// Everything but private notes (the member, consented providers).
    Shared,
    /// Nothing; the edge says the case does not exist.
    None,
}

/// A case of nurse case management. Storage keeps it as one JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedCase {
    pub id: String,
    pub member_id: MemberId,
    pub kind: CaseKind,
    pub phase: Phase,
    pub opened_at: DateTime<Utc>,
    /// The referral that opened the case first, then every one it absorbed.
    pub referrals: Vec<Referral>,
    pub nurse: Option<NurseRef>,
    pub assignments: Vec<Assignment>,
    pub goals: Vec<Goal>,
    pub tasks: Vec<Task>,
    pub interactions: Vec<Interaction>,
    pub transitions: Vec<CareTransition>,
    pub services: Vec<ArrangedService>,
    pub decision_support: Vec<DecisionSupport>,
    pub consents: Vec<Consent>,
    pub outcome: Option<Outcome>,
    pub closure_note: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub satisfaction: Option<Satisfaction>,
    pub history: Vec<HistoryEntry>,
}

fn text(field: &str, value: &str, required: bool, invalid: &mut Invalid) -> String {
    let v = value.trim();
    if required && v.is_empty() {
        invalid.push(field, "is required");
    } else if v.chars().count() > MAX_TEXT {
        invalid.push(field, format!("must be at most {MAX_TEXT} characters"));
    }
    v.to_owned()
}

/// A goal to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGoal {
    pub description: String,
    pub target_date: NaiveDate,
}

/// A task to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub title: String,
    pub owner: String,
    pub due_on: NaiveDate,
    pub priority: Priority,
    pub goal_id: Option<String>,
}

/// Changes to a task; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskChange {
    pub status: Option<TaskStatus>,
    pub owner: Option<String>,
    pub due_on: Option<NaiveDate>,
    pub priority: Option<Priority>,
}

/// An interaction to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInteraction {
    pub channel: InteractionChannel,
    /// When it happened; the edge defaults it to now.
    pub at: DateTime<Utc>,
    pub summary: String,
    pub next_steps: Option<String>,
    pub private: bool,
    pub notify_member: bool,
}

/// A transition to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransition {
    pub from_setting: CareSetting,
    pub to_setting: CareSetting,
    pub from_facility: Option<Npi>,
    pub to_facility: Option<Npi>,
    pub discharge_date: NaiveDate,
    pub arrival_date: NaiveDate,
    pub notes: String,
}

/// A service to arrange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewService {
    pub kind: ServiceKind,
    pub description: String,
    pub vendor: Option<Npi>,
    pub precert_case_id: Option<String>,
    pub start_date: Option<NaiveDate>,
}

/// A decision-support request to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDecisionSupport {
    pub reason: DecisionReason,
    pub diagnosis: Option<Icd10Code>,
    pub specialty: Option<String>,
    pub notes: String,
}

impl ManagedCase {
    /// A new case in screening, unassigned, opened by `referral`.
    pub fn open(
        id: String,
        member_id: MemberId,
        kind: CaseKind,
        referral: Referral,
        now: DateTime<Utc>,
    ) -> (ManagedCase, Vec<EventDraft>) {
        let mut case = ManagedCase {
            id,
            member_id,
            kind,
            phase: Phase::Screening,
            opened_at: now,
            referrals: Vec::new(),
            nurse: None,
            assignments: Vec::new(),
            goals: Vec::new(),
            tasks: Vec::new(),
            interactions: Vec::new(),
            transitions: Vec::new(),
            services: Vec::new(),
            decision_support: Vec::new(),
            consents: Vec::new(),
            outcome: None,
            closure_note: String::new(),
            closed_at: None,
            satisfaction: None,
            history: Vec::new(),
        };
        case.history.push(HistoryEntry {
            at: now,
            by: referral.referred_by.clone(),
            role: role_of_source(referral.source),
            action: "open".into(),
            note: referral.reason.clone(),
        });
        let event = case.event(
            event_kinds::OPENED,
            now,
            json!({
                "kind": kind,
                "phase": case.phase,
                "referral": referral_json(&referral),
            }),
        );
        case.referrals.push(referral);
        (case, vec![event])
    }

    pub fn is_open(&self) -> bool {
        self.phase != Phase::Closed
    }

    /// Whether the case is assigned to `staff`.
    pub fn is_assigned_to(&self, staff: &StaffId) -> bool {
        self.nurse.as_ref().is_some_and(|n| &n.staff_id == staff)
    }

    /// Providers the member has currently agreed may see the case.
    pub fn consented_providers(&self) -> BTreeSet<Npi> {
        let mut set = BTreeSet::new();
        for c in &self.consents {
            if c.granted {
                set.insert(c.provider.clone());
            } else {
                set.remove(&c.provider);
            }
        }
        set
    }

    /// Nurses see their own cases and the unassigned queue; admins and internal
    /// services all; members their own (without private notes); providers only where
    /// the member agreed.
    pub fn view_for(&self, actor: &Actor) -> View {
        match actor.role {
            Role::Admin | Role::Service => View::Full,
            Role::Nurse => match (&self.nurse, actor.staff_id()) {
                (None, Some(_)) => View::Full,
                (Some(n), Some(me)) if n.staff_id == me => View::Full,
                _ => View::None,
            },
            Role::Member if actor.member_id().as_ref() == Some(&self.member_id) => View::Shared,
            Role::Provider
                if actor
                    .provider_npi()
                    .is_some_and(|npi| self.consented_providers().contains(&npi)) =>
            {
                View::Shared
            }
            _ => View::None,
        }
    }

    /// The case as `view` may see it: private notes are removed for shared views.
    pub fn redacted(&self, view: View) -> ManagedCase {
        let mut case = self.clone();
        if view != View::Full {
            case.interactions.retain(|i| !i.private);
        }
        case
    }

    /// Overdue, unfinished tasks.
    pub fn overdue_tasks(&self, today: NaiveDate) -> Vec<&Task> {
        self.tasks.iter().filter(|t| t.is_overdue(today)).collect()
    }

    fn event(&self, kind: &'static str, at: DateTime<Utc>, extra: Value) -> EventDraft {
        let mut payload = json!({
            "case_id": self.id,
            "member_id": self.member_id,
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut payload, extra) {
            base.extend(extra);
        }
        EventDraft {
            kind,
            aggregate_kind: AGGREGATE_KIND,
            aggregate_id: self.id.clone(),
            member_id: self.member_id.clone(),
            occurred_at: at,
            payload,
        }
    }

    fn record(&mut self, who: &Caller, at: DateTime<Utc>, action: &str, note: impl Into<String>) {
        self.history.push(HistoryEntry {
            at,
            by: who.actor.subject.clone(),
            role: who.actor.role,
            action: action.to_owned(),
            note: note.into(),
        });
    }

    fn require_open(&self, action: &'static str) -> Result<(), CaseError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(illegal(action, "the case is closed"))
        }
    }

    /// Care-plan work is done by the assigned nurse or an admin (supervisor).
    fn require_manager(&self, who: &Caller, action: &'static str) -> Result<(), CaseError> {
        match who.actor.role {
            Role::Admin => Ok(()),
            Role::Nurse => match who.actor.staff_id() {
                Some(me) if self.is_assigned_to(&me) => Ok(()),
                _ => Err(denied(action, "claim the case first")),
            },
            _ => Err(denied(action, "only the case's nurse or a supervisor may")),
        }
    }

    fn next_id(prefix: &str, taken: usize) -> String {
        format!("{prefix}{}", taken + 1)
    }

    /// An open case of the same kind takes a new referral instead of a second case.
    pub fn absorb(&mut self, referral: Referral, now: DateTime<Utc>) -> Vec<EventDraft> {
        self.history.push(HistoryEntry {
            at: now,
            by: referral.referred_by.clone(),
            role: role_of_source(referral.source),
            action: "absorb_referral".into(),
            note: referral.reason.clone(),
        });
        let event = self.event(
            event_kinds::REFERRAL_ABSORBED,
            now,
            json!({ "referral": referral_json(&referral) }),
        );
        self.referrals.push(referral);
        vec![event]
    }

    /// Assigns the case to `nurse`, ending the current assignment if any. Nurses may
    /// only take unassigned cases for themselves (a claim); admins assign and reassign.
    pub fn assign(
        &mut self,
        who: &Caller,
        nurse: NurseRef,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "assign the case";
        self.require_open(ACTION)?;
        match who.actor.role {
            Role::Admin => {}
            Role::Nurse => {
                if who.actor.staff_id().as_ref() != Some(&nurse.staff_id) {
                    return Err(denied(ACTION, "nurses claim cases for themselves only"));
                }
                if let Some(current) = &self.nurse {
                    return Err(illegal(
                        ACTION,
                        format!("the case is already assigned to {}", current.staff_id),
                    ));
                }
            }
            _ => return Err(denied(ACTION, "only nurses and supervisors assign cases")),
        }
        if self.is_assigned_to(&nurse.staff_id) {
            return Err(illegal(
                ACTION,
                format!("the case is already assigned to {}", nurse.staff_id),
            ));
        }
        let previous = self.nurse.take();
        if let Some(last) = self.assignments.last_mut() {
            last.ended_at.get_or_insert(now);
        }
        self.assignments.push(Assignment {
            nurse: nurse.clone(),
            assigned_by: who.actor.subject.clone(),
            assigned_at: now,
            ended_at: None,
            reason: reason.trim().to_owned(),
        });
        self.nurse = Some(nurse.clone());
        let action = if previous.is_some() {
            "reassign"
        } else {
            "assign"
        };
        self.record(who, now, action, format!("to {}", nurse.staff_id));
        Ok(vec![self.event(
            event_kinds::ASSIGNED,
            now,
            json!({
                "nurse_id": nurse.staff_id,
                "nurse_name": nurse.name,
                "previous_nurse_id": previous.map(|p| p.staff_id),
                "assigned_by": who.actor.subject,
                "kind": self.kind,
            }),
        )])
    }

    /// Moves the case to another phase along the documented graph.
    pub fn move_to(
        &mut self,
        who: &Caller,
        to: Phase,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "move the case";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        if !phase_move_allowed(self.phase, to) {
            return Err(illegal(
                ACTION,
                format!("no move from {} to {to}", self.phase),
            ));
        }
        let from = self.phase;
        self.phase = to;
        self.record(who, now, "move", format!("{from} -> {to}: {}", note.trim()));
        Ok(vec![self.event(
            event_kinds::PHASE_CHANGED,
            now,
            json!({ "from": from, "to": to }),
        )])
    }

    /// Closes the case with an outcome.
    pub fn close(
        &mut self,
        who: &Caller,
        outcome: Outcome,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "close the case";
        if outcome == Outcome::MemberDeclined {
            return self.decline(who, note, now);
        }
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        if outcome.needs_care_delivered()
            && !matches!(
                self.phase,
                Phase::Implementation | Phase::Monitoring | Phase::TransitionsOfCare
            )
        {
            return Err(illegal(
                ACTION,
                format!(
                    "outcome {outcome} needs care delivered first; the case is in {}",
                    self.phase
                ),
            ));
        }
        Ok(self.finish(who, outcome, note, now))
    }

    /// The member declines case management (themselves, or through their nurse or a
    /// supervisor); the case closes with that outcome.
    pub fn decline(
        &mut self,
        who: &Caller,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "record the member's decline";
        match who.actor.role {
            Role::Member if who.actor.member_id().as_ref() == Some(&self.member_id) => {}
            _ => self.require_manager(who, ACTION)?,
        }
        self.require_open(ACTION)?;
        Ok(self.finish(who, Outcome::MemberDeclined, note, now))
    }

    fn finish(
        &mut self,
        who: &Caller,
        outcome: Outcome,
        note: &str,
        now: DateTime<Utc>,
    ) -> Vec<EventDraft> {
        let from = self.phase;
        self.phase = Phase::Closed;
        self.outcome = Some(outcome);
        self.closure_note = note.trim().to_owned();
        self.closed_at = Some(now);
        if let Some(last) = self.assignments.last_mut() {
            last.ended_at.get_or_insert(now);
        }
        self.record(who, now, "close", format!("{outcome}: {}", note.trim()));
        vec![self.event(
            event_kinds::CLOSED,
            now,
            json!({
                "outcome": outcome,
                "from_phase": from,
                "nurse_id": self.nurse.as_ref().map(|n| n.staff_id.clone()),
                "kind": self.kind,
            }),
        )]
    }

    pub fn add_goal(
        &mut self,
        who: &Caller,
        goal: NewGoal,
        now: DateTime<Utc>,
    ) -> Result<(Goal, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "add a goal";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        let description = text("description", &goal.description, true, &mut invalid);
        invalid.into_result()?;
        let goal = Goal {
            id: Self::next_id("G", self.goals.len()),
            description,
            target_date: goal.target_date,
            status: GoalStatus::Active,
            created_at: now,
            updated_at: now,
        };
        self.goals.push(goal.clone());
        self.record(who, now, "add_goal", &goal.id);
        let event = self.event(
            event_kinds::GOAL_ADDED,
            now,
            json!({ "goal_id": goal.id, "target_date": goal.target_date }),
        );
        Ok((goal, vec![event]))
    }

    pub fn set_goal_status(
        &mut self,
        who: &Caller,
        goal_id: &str,
        status: GoalStatus,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "update the goal";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let goal = self
            .goals
            .iter_mut()
            .find(|g| g.id == goal_id)
            .ok_or_else(|| Invalid::field("goal_id", "no goal with this id on the case"))?;
        if !goal.status.may_become(status) {
            return Err(illegal(
                ACTION,
                format!("a {} goal cannot become {status}", goal.status),
            ));
        }
        goal.status = status;
        goal.updated_at = now;
        self.record(who, now, "update_goal", format!("{goal_id} -> {status}"));
        Ok(vec![self.event(
            event_kinds::GOAL_UPDATED,
            now,
            json!({ "goal_id": goal_id, "status": status }),
        )])
    }

    pub fn add_task(
        &mut self,
        who: &Caller,
        task: NewTask,
        now: DateTime<Utc>,
    ) -> Result<(Task, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "add a task";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        let title = text("title", &task.title, true, &mut invalid);
        let owner = text("owner", &task.owner, true, &mut invalid);
        if let Some(goal) = &task.goal_id
            && !self.goals.iter().any(|g| &g.id == goal)
        {
            invalid.push("goal_id", "no goal with this id on the case");
        }
        invalid.into_result()?;
        let task = Task {
            id: Self::next_id("T", self.tasks.len()),
            title,
            owner,
            due_on: task.due_on,
            priority: task.priority,
            status: TaskStatus::Open,
            goal_id: task.goal_id,
            created_at: now,
            updated_at: now,
        };
        self.tasks.push(task.clone());
        self.record(who, now, "add_task", &task.id);
        let event = self.event(
            event_kinds::TASK_ADDED,
            now,
            json!({
                "task_id": task.id, "owner": task.owner, "due_on": task.due_on,
                "priority": task.priority, "status": task.status,
            }),
        );
        Ok((task, vec![event]))
    }

    pub fn update_task(
        &mut self,
        who: &Caller,
        task_id: &str,
        change: TaskChange,
        now: DateTime<Utc>,
    ) -> Result<(Task, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "update the task";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        let owner = change
            .owner
            .as_deref()
            .map(|o| text("owner", o, true, &mut invalid));
        invalid.into_result()?;
        let task = self
            .tasks
            .iter_mut()
            .find(|t| t.id == task_id)
            .ok_or_else(|| Invalid::field("task_id", "no task with this id on the case"))?;
        if let Some(status) = change.status
            && status != task.status
            && !task.status.may_become(status)
        {
            return Err(illegal(
                ACTION,
                format!("a task that is {} cannot become {status}", task.status),
            ));
        }
        if task.status.is_finished() && change.status.is_none_or(|s| s == task.status) {
            return Err(illegal(
                ACTION,
                format!("the task is {} and cannot change", task.status),
            ));
        }
        let before = task.status;
        if let Some(status) = change.status {
            task.status = status;
        }
        if let Some(owner) = owner {
            task.owner = owner;
        }
        if let Some(due) = change.due_on {
            task.due_on = due;
        }
        if let Some(priority) = change.priority {
            task.priority = priority;
        }
        task.updated_at = now;
        let task = task.clone();
        self.record(
            who,
            now,
            "update_task",
            format!("{task_id}: {before} -> {}", task.status),
        );
        let event = self.event(
            event_kinds::TASK_UPDATED,
            now,
            json!({
                "task_id": task.id, "owner": task.owner, "due_on": task.due_on,
                "priority": task.priority, "status": task.status, "previous_status": before,
            }),
        );
        Ok((task, vec![event]))
    }

    /// Logs a call, email, message or note. Members are notified only of contacts
    /// that are not private.
    pub fn record_interaction(
        &mut self,
        who: &Caller,
        new: NewInteraction,
        now: DateTime<Utc>,
    ) -> Result<(Interaction, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "log an interaction";
        self.require_manager(who, ACTION)?;
        let mut invalid = Invalid::new();
        let summary = text("summary", &new.summary, true, &mut invalid);
        let next_steps = new
            .next_steps
            .as_deref()
            .map(|s| text("next_steps", s, false, &mut invalid))
            .filter(|s| !s.is_empty());
        if new.at > now {
            invalid.push("occurred_at", "must not be in the future");
        }
        invalid.into_result()?;
        // A closed case still takes notes (a follow-up after closure) but nothing
        // that reaches the member would make sense without an open case.
        if !self.is_open() && new.channel != InteractionChannel::Note {
            return Err(illegal(
                ACTION,
                "the case is closed; only notes may be added",
            ));
        }
        let interaction = Interaction {
            id: Self::next_id("I", self.interactions.len()),
            channel: new.channel,
            at: new.at,
            author_id: who.actor.subject.clone(),
            author_name: who.name.clone(),
            summary,
            next_steps,
            private: new.private,
            notify_member: new.notify_member && !new.private,
        };
        self.interactions.push(interaction.clone());
        self.record(
            who,
            now,
            "log_interaction",
            format!("{} {}", interaction.id, interaction.channel),
        );
        let mut payload = json!({
            "interaction_id": interaction.id,
            "nurse_id": interaction.author_id,
            "nurse_name": interaction.author_name,
            "contact_channel": interaction.channel,
            "notify_member": interaction.notify_member,
            "summary": if interaction.private { String::new() } else { interaction.summary.clone() },
        });
        if let Some(next) = &interaction.next_steps
            && !interaction.private
        {
            payload["next_steps"] = json!(next);
        }
        let event = self.event(event_kinds::INTERACTION_RECORDED, now, payload);
        Ok((interaction, vec![event]))
    }

    pub fn record_transition(
        &mut self,
        who: &Caller,
        new: NewTransition,
        now: DateTime<Utc>,
    ) -> Result<(CareTransition, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "record a transition of care";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        if new.from_setting == new.to_setting && new.from_facility == new.to_facility {
            invalid.push(
                "to_setting",
                "must differ from the setting the member leaves",
            );
        }
        if new.arrival_date < new.discharge_date {
            invalid.push("arrival_date", "must not be before the discharge date");
        }
        let notes = text("notes", &new.notes, false, &mut invalid);
        invalid.into_result()?;
        let transition = CareTransition {
            id: Self::next_id("TR", self.transitions.len()),
            from_setting: new.from_setting,
            to_setting: new.to_setting,
            from_facility: new.from_facility,
            to_facility: new.to_facility,
            discharge_date: new.discharge_date,
            arrival_date: new.arrival_date,
            notes,
            recorded_by: who.actor.subject.clone(),
            recorded_at: now,
        };
        self.transitions.push(transition.clone());
        self.record(
            who,
            now,
            "record_transition",
            format!("{} -> {}", transition.from_setting, transition.to_setting),
        );
        let event = self.event(
            event_kinds::TRANSITION_RECORDED,
            now,
            json!({
                "transition_id": transition.id,
                "from_setting": transition.from_setting,
                "to_setting": transition.to_setting,
                "from_facility": transition.from_facility,
                "to_facility": transition.to_facility,
                "discharge_date": transition.discharge_date,
                "arrival_date": transition.arrival_date,
            }),
        );
        Ok((transition, vec![event]))
    }

    pub fn arrange_service(
        &mut self,
        who: &Caller,
        new: NewService,
        now: DateTime<Utc>,
    ) -> Result<(ArrangedService, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "arrange a service";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        let description = text("description", &new.description, false, &mut invalid);
        invalid.into_result()?;
        let service = ArrangedService {
            id: Self::next_id("S", self.services.len()),
            kind: new.kind,
            description,
            vendor: new.vendor,
            state: ServiceState::Requested,
            needs_precertification: new.kind.usually_needs_precertification(),
            precert_case_id: new.precert_case_id,
            start_date: new.start_date,
            requested_at: now,
            updated_at: now,
        };
        self.services.push(service.clone());
        self.record(
            who,
            now,
            "arrange_service",
            format!("{} {}", service.id, service.kind),
        );
        let event = self.event(event_kinds::SERVICE_REQUESTED, now, service_json(&service));
        Ok((service, vec![event]))
    }

    /// Moves an arranged service on (arranged, delivered, cancelled) and may link the
    /// precertification case that covers it.
    pub fn update_service(
        &mut self,
        who: &Caller,
        service_id: &str,
        state: Option<ServiceState>,
        precert_case_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(ArrangedService, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "update the service";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let service = self
            .services
            .iter_mut()
            .find(|s| s.id == service_id)
            .ok_or_else(|| Invalid::field("service_id", "no service with this id on the case"))?;
        if let Some(state) = state
            && !service.state.may_become(state)
        {
            return Err(illegal(
                ACTION,
                format!("a {} service cannot become {state}", service.state),
            ));
        }
        if state.is_none() && precert_case_id.is_none() {
            return Err(
                Invalid::field("state", "give a new state or a precertification case").into(),
            );
        }
        if let Some(state) = state {
            service.state = state;
        }
        if let Some(id) = precert_case_id {
            service.precert_case_id = Some(id);
        }
        service.updated_at = now;
        let service = service.clone();
        self.record(
            who,
            now,
            "update_service",
            format!("{} -> {}", service.id, service.state),
        );
        let event = self.event(event_kinds::SERVICE_UPDATED, now, service_json(&service));
        Ok((service, vec![event]))
    }

    pub fn request_decision_support(
        &mut self,
        who: &Caller,
        new: NewDecisionSupport,
        now: DateTime<Utc>,
    ) -> Result<(DecisionSupport, Vec<EventDraft>), CaseError> {
        const ACTION: &str = "request decision support";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        let notes = text("notes", &new.notes, false, &mut invalid);
        invalid.into_result()?;
        Ok(self.push_decision_support(
            &who.actor.subject,
            who,
            new.reason,
            new.diagnosis,
            new.specialty,
            notes,
            now,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn push_decision_support(
        &mut self,
        by: &str,
        who: &Caller,
        reason: DecisionReason,
        diagnosis: Option<Icd10Code>,
        specialty: Option<String>,
        notes: String,
        now: DateTime<Utc>,
    ) -> (DecisionSupport, Vec<EventDraft>) {
        let request = DecisionSupport {
            id: Self::next_id("D", self.decision_support.len()),
            reason,
            diagnosis,
            specialty,
            notes,
            requested_by: by.to_owned(),
            requested_at: now,
            care_abroad: None,
        };
        self.decision_support.push(request.clone());
        self.record(
            who,
            now,
            "request_decision_support",
            format!("{} {reason}", request.id),
        );
        let event = self.event(
            event_kinds::DECISION_SUPPORT_REQUESTED,
            now,
            json!({
                "decision_support_id": request.id,
                "reason": reason,
                "diagnosis": request.diagnosis,
                "specialty": request.specialty,
            }),
        );
        (request, vec![event])
    }

    /// Adds a decision-support request that came with an automatic referral.
    pub fn add_referred_decision_support(
        &mut self,
        referral: &Referral,
        reason: DecisionReason,
        diagnosis: Option<Icd10Code>,
        now: DateTime<Utc>,
    ) -> Vec<EventDraft> {
        let who = Caller {
            actor: Actor {
                subject: referral.referred_by.clone(),
                role: Role::Service,
            },
            name: referral.referred_by.clone(),
        };
        self.push_decision_support(
            &referral.referred_by,
            &who,
            reason,
            diagnosis,
            None,
            referral.reason.clone(),
            now,
        )
        .1
    }

    /// For a member abroad: records whether local care is appropriate and, if so,
    /// the specialist found in their country.
    pub fn assess_care_abroad(
        &mut self,
        who: &Caller,
        decision_support_id: &str,
        assessment: CareAbroadAssessment,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "assess care abroad";
        self.require_manager(who, ACTION)?;
        self.require_open(ACTION)?;
        let mut invalid = Invalid::new();
        text("rationale", &assessment.rationale, true, &mut invalid);
        invalid.into_result()?;
        let request = self
            .decision_support
            .iter_mut()
            .find(|d| d.id == decision_support_id)
            .ok_or_else(|| {
                Invalid::field(
                    "decision_support_id",
                    "no decision-support request with this id on the case",
                )
            })?;
        let payload = json!({
            "decision_support_id": request.id,
            "country": assessment.country,
            "recommendation": assessment.recommendation,
            "specialist_npi": assessment.specialist,
        });
        request.care_abroad = Some(CareAbroadAssessment {
            rationale: assessment.rationale.trim().to_owned(),
            ..assessment
        });
        self.record(who, now, "assess_care_abroad", decision_support_id);
        Ok(vec![self.event(
            event_kinds::CARE_ABROAD_ASSESSED,
            now,
            payload,
        )])
    }

    /// Records the member's agreement (or its withdrawal) that a provider who treats
    /// them may see the case.
    pub fn record_consent(
        &mut self,
        who: &Caller,
        provider: Npi,
        granted: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "record consent";
        match who.actor.role {
            Role::Member if who.actor.member_id().as_ref() == Some(&self.member_id) => {}
            _ => self.require_manager(who, ACTION)?,
        }
        self.consents.push(Consent {
            provider: provider.clone(),
            granted,
            recorded_by: who.actor.subject.clone(),
            at: now,
        });
        self.record(
            who,
            now,
            "record_consent",
            format!("{provider} {}", if granted { "granted" } else { "revoked" }),
        );
        Ok(vec![self.event(
            event_kinds::CONSENT_RECORDED,
            now,
            json!({ "provider_npi": provider, "granted": granted }),
        )])
    }

    /// The member rates their experience, once, after the case closed.
    pub fn rate(
        &mut self,
        who: &Caller,
        rating: u32,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventDraft>, CaseError> {
        const ACTION: &str = "rate the case";
        if who.actor.member_id().as_ref() != Some(&self.member_id) {
            return Err(denied(ACTION, "only the member rates their case"));
        }
        let mut invalid = Invalid::new();
        if !(1..=5).contains(&rating) {
            invalid.push("rating", "must be 1 to 5");
        }
        let comment = text("comment", comment, false, &mut invalid);
        invalid.into_result()?;
        if self.is_open() {
            return Err(illegal(ACTION, "the case is still open"));
        }
        if self.satisfaction.is_some() {
            return Err(illegal(ACTION, "the case was already rated"));
        }
        let satisfaction = Satisfaction {
            rating: rating as u8,
            comment,
            rated_at: now,
        };
        self.satisfaction = Some(satisfaction.clone());
        self.record(who, now, "rate", rating.to_string());
        Ok(vec![self.event(
            event_kinds::RATED,
            now,
            json!({ "rating": satisfaction.rating, "satisfied": satisfaction.satisfied() }),
        )])
    }
}

/// The moves between open phases. Closing is its own command.
pub fn phase_move_allowed(from: Phase, to: Phase) -> bool {
    use Phase::*;
    matches!(
        (from, to),
        (Screening, Assessment)
            | (Assessment, Planning)
            | (Planning, Implementation)
            | (Implementation, Monitoring | TransitionsOfCare)
            | (Monitoring, TransitionsOfCare | Planning)
            | (TransitionsOfCare, Monitoring | Planning)
    )
}

fn role_of_source(source: ReferralSource) -> Role {
    match source {
        ReferralSource::Nurse => Role::Nurse,
        ReferralSource::Provider => Role::Provider,
        ReferralSource::Member => Role::Member,
        ReferralSource::Admin => Role::Admin,
        ReferralSource::OncologyPlan
        | ReferralSource::InpatientPrecertification
        | ReferralSource::SecondOpinion => Role::Service,
    }
}

fn referral_json(r: &Referral) -> Value {
    json!({
        "source": r.source,
        "reason": r.reason,
        "referred_by": r.referred_by,
        "event_id": r.event_id,
        "source_id": r.source_id,
        "diagnosis": r.diagnosis,
    })
}

fn service_json(s: &ArrangedService) -> Value {
    json!({
        "service_id": s.id,
        "service_kind": s.kind,
        "state": s.state,
        "vendor_npi": s.vendor,
        "needs_precertification": s.needs_precertification,
        "precert_case_id": s.precert_case_id,
    })
}
