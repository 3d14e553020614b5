//! Nurse case management: referrals, assignment, the case through its phases, care
//! plans, transitions of care, arranged services, decision support and satisfaction.
//!
//! Decisions are the cases crate's ([`carepath_cases`]); the use cases here read what
//! a command needs from the directory, decide who may see a case ([`standing`], the
//! one policy of the area, plus the role checks of each use case) and run the command
//! through the one pipeline ([`App::change`]). A caller who may not see a case is told
//! it does not exist (audited). What a use case returns is already redacted for the
//! caller ([`SeenCase`]).

pub mod record;
pub mod referrals;

use std::collections::HashMap;

use carepath_cases::{
    self as cases, ArrangedService, CareAbroad, CareAbroadAssessment, CareSetting, CareTransition,
    CaseKind, DecisionSupport, Goal, GoalStatus, Interaction, InteractionChannel, ManagedCase,
    NewDecisionSupport, NewGoal, NewInteraction, NewService, NewTask, NewTransition,
    NurseCandidate, NurseRef, Outcome, Phase, Priority, Referral, ReferralSource,
    SatisfactionReport, ServiceState, Task, TaskChange, View,
};
use carepath_core::{
    Actor, CountryCode, EventDraft, Icd10Code, MemberId, Npi, PlanId, Provider, Role, Specialty,
    StaffId, StaffRole,
};
use carepath_store::{
    AuditOutcome, ManagedCaseFilter, ManagedCaseRecord, ProviderFilter, StaffFilter, StoreError,
};
use chrono::{DateTime, NaiveDate, Utc};

pub use self::record::RECORD_KIND;

/// The audit log's record kind of a read of one member's list of cases (the record
/// id is the member's).
pub const LIST_KIND: &str = "managed_case_list";
use self::referrals::{NewReferral, place};
use crate::{
    context::{App, Caller, MAX_PAGE_SIZE, Page, PageRequest, Rows, micros, visible_page},
    error::{AppError, AppResult},
    pipeline::{Aggregate, record_id},
};

/// The one policy of case management: what `actor` may see of `case`, `None` for
/// nothing (the caller is then told the case does not exist).
///
/// ```
/// use carepath_app::cases::standing;
/// use carepath_cases::{CaseKind, ManagedCase, Referral, ReferralSource, View};
/// use carepath_core::{Actor, MemberId, Role};
///
/// let at = "2026-11-23T14:00:00Z".parse().unwrap();
/// let referral = Referral {
///     source: ReferralSource::Member,
///     reason: "Help with my treatment calendar".into(),
///     referred_by: "M100001".into(),
///     event_id: None,
///     source_id: None,
///     diagnosis: None,
///     at,
/// };
/// let member = MemberId::parse("M100001").unwrap();
/// let (case, _events) = ManagedCase::open("CM-1".into(), member, CaseKind::Oncology, referral, at);
///
/// let herself = Actor::new(Role::Member, "M100001").unwrap();
/// let another = Actor::new(Role::Member, "M100002").unwrap();
/// let nurse = Actor::new(Role::Nurse, "RN-001").unwrap();
/// assert_eq!(standing(&herself, &case), Some(View::Shared));
/// assert_eq!(standing(&another, &case), None);
/// // An unassigned case is in every nurse's queue.
/// assert_eq!(standing(&nurse, &case), Some(View::Full));
/// ```
pub fn standing(actor: &Actor, case: &ManagedCase) -> Option<View> {
    match case.view_for(actor) {
        View::None => None,
        view => Some(view),
    }
}

/// A case as one caller may see it: redacted for the caller's view, with the day the
/// plan's business calendar is on (which tasks are overdue depends on it).
#[derive(Debug, Clone, PartialEq)]
pub struct SeenCase {
    /// The case without what the caller may not see.
    pub case: ManagedCase,
    /// Today in the plan's calendar.
    pub today: NaiveDate,
}

/// What a referral made by hand did.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The case the referral reached, if the referrer may see it. A referrer who may
    /// not (any provider may refer any member) learns only that it was taken.
    pub case: Option<SeenCase>,
    /// An open case of the same kind took the referral.
    pub absorbed: bool,
}

/// A referral made by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCase {
    /// The member referred.
    pub member_id: MemberId,
    /// The kind of case asked for.
    pub kind: CaseKind,
    /// The diagnosis behind the referral, if given.
    pub diagnosis: Option<Icd10Code>,
    /// Why (already checked: present, at most [`cases::MAX_TEXT`] characters).
    pub reason: String,
}

/// Which cases to list, and which page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCases {
    /// One member's cases (required of providers, implied for members).
    pub member_id: Option<MemberId>,
    /// One nurse's cases.
    pub nurse_id: Option<StaffId>,
    /// Cases of one kind.
    pub kind: Option<CaseKind>,
    /// Cases in one phase.
    pub phase: Option<Phase>,
    /// Only cases in the queue (no nurse).
    pub unassigned_only: bool,
    /// Only open cases.
    pub open_only: bool,
    /// The page to read.
    pub page: PageRequest,
}

/// A supervisor's assignment of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignCase {
    /// The case (already checked).
    pub case_id: String,
    /// The nurse to assign; `None` to let the best nurse under the cap be chosen.
    pub nurse_id: Option<StaffId>,
    /// Why, for the case's history.
    pub reason: String,
}

/// A move of a case to another phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveCase {
    /// The case (already checked).
    pub case_id: String,
    /// The phase to move to.
    pub phase: Phase,
    /// A note for the history.
    pub note: String,
}

/// The closure of a case with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseCase {
    /// The case (already checked).
    pub case_id: String,
    /// How the case ended.
    pub outcome: Outcome,
    /// A note for the history.
    pub note: String,
}

/// A member declining case management (or the nurse recording it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclineCase {
    /// The case (already checked).
    pub case_id: String,
    /// A note for the history.
    pub note: String,
}

/// A goal to add to a case's care plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddGoal {
    /// The case (already checked).
    pub case_id: String,
    /// The goal.
    pub goal: NewGoal,
}

/// A new status for a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateGoal {
    /// The case (already checked).
    pub case_id: String,
    /// The goal (already checked).
    pub goal_id: String,
    /// Its new status.
    pub status: GoalStatus,
}

/// A task to add to a case's care plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddTask {
    /// The case (already checked).
    pub case_id: String,
    /// What is to be done.
    pub title: String,
    /// Who does it; the caller when `None`.
    pub owner: Option<String>,
    /// When it is due.
    pub due_on: NaiveDate,
    /// Its priority; normal when `None`.
    pub priority: Option<Priority>,
    /// The goal it serves, if any.
    pub goal_id: Option<String>,
}

/// A change to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateTask {
    /// The case (already checked).
    pub case_id: String,
    /// The task (already checked).
    pub task_id: String,
    /// What changes.
    pub change: TaskChange,
}

/// A contact with the member or her providers, for the interaction log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInteraction {
    /// The case (already checked).
    pub case_id: String,
    /// How the contact happened.
    pub channel: InteractionChannel,
    /// When; now when `None`.
    pub at: Option<DateTime<Utc>>,
    /// What was said.
    pub summary: String,
    /// What comes next, if anything.
    pub next_steps: Option<String>,
    /// A note only staff see.
    pub private: bool,
    /// Whether the member is told of it.
    pub notify_member: bool,
}

/// A transition of care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTransition {
    /// The case (already checked).
    pub case_id: String,
    /// The setting the member leaves.
    pub from_setting: CareSetting,
    /// The setting the member goes to.
    pub to_setting: CareSetting,
    /// The facility left, if named (must be in the directory).
    pub from_facility: Option<Npi>,
    /// The facility reached, if named (must be in the directory).
    pub to_facility: Option<Npi>,
    /// The day of discharge.
    pub discharge_date: NaiveDate,
    /// The day of arrival; the discharge day when `None`.
    pub arrival_date: Option<NaiveDate>,
    /// Notes.
    pub notes: String,
}

/// A service to arrange for the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrangeService {
    /// The case (already checked).
    pub case_id: String,
    /// The service; a linked precertification case must be the same member's.
    pub service: NewService,
}

/// A change to an arranged service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateService {
    /// The case (already checked).
    pub case_id: String,
    /// The service (already checked).
    pub service_id: String,
    /// Its new state, if it changes.
    pub state: Option<ServiceState>,
    /// A precertification case to link (the same member's).
    pub precert_case_id: Option<String>,
}

/// A request for decision support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDecisionSupport {
    /// The case (already checked).
    pub case_id: String,
    /// The request.
    pub request: NewDecisionSupport,
}

/// A search for in-network specialists for the case's member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindSpecialists {
    /// The case (already checked).
    pub case_id: String,
    /// The specialty wanted.
    pub specialty: Specialty,
    /// Where; the member's country when `None`.
    pub country: Option<CountryCode>,
    /// The page to read.
    pub page: PageRequest,
}

/// Specialists found for a case.
#[derive(Debug, Clone, PartialEq)]
pub struct Specialists {
    /// Those who speak the member's language first, otherwise in directory order.
    pub providers: Vec<Provider>,
    /// The country searched.
    pub country: CountryCode,
    /// The member's plan, whose network was searched.
    pub plan_id: PlanId,
    /// The token of the next page (empty on the last).
    pub next_page_token: String,
}

/// The assessment of care abroad for a decision-support request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessCareAbroad {
    /// The case (already checked).
    pub case_id: String,
    /// The decision-support request assessed (already checked).
    pub decision_support_id: String,
    /// What the nurse recommends.
    pub recommendation: CareAbroad,
    /// Why.
    pub rationale: String,
    /// A specialist in the country, if named (must practise there).
    pub specialist: Option<Npi>,
    /// The country; the member's when `None`.
    pub country: Option<CountryCode>,
}

/// The member's consent (or its withdrawal) to a provider seeing her case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConsent {
    /// The case (already checked).
    pub case_id: String,
    /// The provider (must be in the directory).
    pub provider: Npi,
    /// Granted or withdrawn.
    pub granted: bool,
}

/// The member's rating of a closed case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCase {
    /// The case (already checked).
    pub case_id: String,
    /// One to five.
    pub rating: u32,
    /// A comment.
    pub comment: String,
}

/// The period of a satisfaction report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SatisfactionPeriod {
    /// From (inclusive); the beginning of time when `None`.
    pub from: Option<DateTime<Utc>>,
    /// To (exclusive); just after now when `None`.
    pub to: Option<DateTime<Utc>>,
}

/// One open task of a nurse's work list.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseTask {
    /// The case it belongs to.
    pub case_id: String,
    /// The task.
    pub task: Task,
}

/// A nurse's work list.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkList {
    /// The nurse.
    pub nurse_id: StaffId,
    /// Open cases the nurse holds.
    pub open_cases: u32,
    /// The caseload cap.
    pub caseload_cap: u32,
    /// Overdue tasks, earliest due first.
    pub overdue: Vec<CaseTask>,
    /// Other open tasks, earliest due first.
    pub upcoming: Vec<CaseTask>,
    /// Cases waiting in the unassigned queue.
    pub unassigned_queue: u32,
    /// Today in the plan's calendar.
    pub today: NaiveDate,
}

/// The case-management use cases.
#[derive(Debug, Clone)]
pub struct Cases {
    app: App,
    /// Open cases a nurse may hold at most.
    cap: u32,
}

impl Cases {
    /// The use cases over `app`, with the default caseload cap
    /// ([`cases::DEFAULT_CASELOAD_CAP`]).
    pub fn new(app: App) -> Self {
        Cases {
            app,
            cap: cases::DEFAULT_CASELOAD_CAP,
        }
    }

    /// The same use cases with another caseload cap.
    pub fn with_caseload_cap(mut self, cap: u32) -> Self {
        self.cap = cap;
        self
    }

    /// The caseload cap: open cases a nurse may hold at most.
    pub fn caseload_cap(&self) -> u32 {
        self.cap
    }

    /// Today in the plan's business calendar, for due and overdue tasks.
    pub fn today(&self) -> NaiveDate {
        self.app
            .now()
            .with_timezone(&self.app.calendar.timezone())
            .date_naive()
    }

    /// `case` as a caller with `view` may see it.
    fn seen(&self, case: &ManagedCase, view: View) -> SeenCase {
        SeenCase {
            case: case.redacted(view),
            today: self.today(),
        }
    }

    /// The domain's view of the caller, with the staff member's name from the
    /// directory.
    async fn who(&self, caller: &Caller) -> AppResult<cases::Caller> {
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

    /// Reads a case the caller may see, without auditing the read; otherwise an
    /// audited NOT_FOUND.
    async fn visible(&self, caller: &Caller, id: &str) -> AppResult<(ManagedCase, View)> {
        let (_, case, view) = self
            .app
            .visible(caller, id, |actor, case: &ManagedCase| {
                standing(actor, case)
            })
            .await?;
        Ok((case, view))
    }

    /// Applies one command to a stored case through the pipeline and returns the case
    /// as the caller may see it afterwards, with the command's value.
    async fn command<T>(
        &self,
        caller: &Caller,
        case_id: &str,
        command: impl FnOnce(
            &mut ManagedCase,
            &cases::Caller,
            DateTime<Utc>,
        ) -> Result<(T, Vec<EventDraft>), cases::CaseError>,
    ) -> AppResult<(SeenCase, T)> {
        let who = self.who(caller).await?;
        let changed = self
            .app
            .change(
                caller,
                case_id,
                |actor, case: &ManagedCase, _| standing(actor, case),
                |case, _, now| Ok(command(case, &who, now)?),
            )
            .await?;
        let view = changed.aggregate.view_for(&caller.actor);
        Ok((self.seen(&changed.aggregate, view), changed.value))
    }

    /// A command that returns only its events.
    async fn step(
        &self,
        caller: &Caller,
        case_id: &str,
        command: impl FnOnce(
            &mut ManagedCase,
            &cases::Caller,
            DateTime<Utc>,
        ) -> Result<Vec<EventDraft>, cases::CaseError>,
    ) -> AppResult<SeenCase> {
        let (case, ()) = self
            .command(caller, case_id, |case, who, now| {
                Ok(((), command(case, who, now)?))
            })
            .await?;
        Ok(case)
    }

    /// A nurse from the staff directory, for assignment.
    async fn nurse(&self, id: &StaffId, field: &str) -> AppResult<NurseRef> {
        match self.app.store.get_staff(id).await {
            Ok(staff) if staff.role == StaffRole::Nurse => Ok(NurseRef {
                staff_id: staff.id,
                name: staff.name,
            }),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(AppError::field(
                field,
                "no nurse with this id in the staff directory",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn caseload_of(&self, nurse: &StaffId) -> AppResult<u32> {
        let loads = self.app.store.caseloads().await?;
        Ok(loads
            .iter()
            .find(|(id, _)| id == nurse.as_str())
            .map_or(0, |(_, n)| u32::try_from(*n).unwrap_or(u32::MAX)))
    }

    /// A provider named in `field` must be in the directory.
    async fn known_provider(&self, npi: &Npi, field: &str) -> AppResult<Provider> {
        match self.app.store.get_provider(npi).await {
            Ok(p) => Ok(p),
            Err(StoreError::NotFound { .. }) => Err(AppError::field(
                field,
                "no provider with this NPI in the directory",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Refers a member to case management by hand: opens a case, or adds the referral
    /// to the member's open case of the kind.
    pub async fn open_case(&self, caller: &Caller, cmd: OpenCase) -> AppResult<Opened> {
        let source = match caller.actor.role {
            Role::Nurse => ReferralSource::Nurse,
            Role::Admin => ReferralSource::Admin,
            Role::Provider => ReferralSource::Provider,
            Role::Member if caller.actor.member_id().as_ref() == Some(&cmd.member_id) => {
                ReferralSource::Member
            }
            Role::Member => return Err(AppError::denied("members refer themselves only")),
            Role::PhysicianReviewer | Role::Service => {
                return Err(AppError::denied(
                    "referrals come from nurses, providers, members and supervisors",
                ));
            }
        };
        match self.app.store.get_member(&cmd.member_id).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(AppError::field("member_id", "no member with this id"));
            }
            Err(e) => return Err(e.into()),
        }
        let now = self.app.stored_now();
        let new = NewReferral {
            key: format!("manual:{}", uuid::Uuid::now_v7()),
            member_id: cmd.member_id,
            kind: cmd.kind,
            referral: Referral {
                source,
                reason: cmd.reason,
                referred_by: caller.actor.subject.clone(),
                event_id: None,
                source_id: None,
                diagnosis: cmd.diagnosis.map(|d| d.to_string()),
                at: now,
            },
            decision_support: None,
        };
        let mut tx = self.app.store.begin().await?;
        let placed = match place(&mut tx, caller, new, now).await {
            Err(AppError::AlreadyExists { .. }) => {
                return Err(AppError::FailedPrecondition(
                    "another referral for this member opened a case at the same moment; try again"
                        .into(),
                ));
            }
            other => other?,
        };
        tx.commit().await?;
        Ok(Opened {
            case: standing(&caller.actor, &placed.case).map(|view| self.seen(&placed.case, view)),
            absorbed: placed.absorbed,
        })
    }

    /// Reads a case (audited).
    pub async fn get_case(&self, caller: &Caller, case_id: &str) -> AppResult<SeenCase> {
        let (_, case, view) = self
            .app
            .view(caller, case_id, |actor, case: &ManagedCase| {
                standing(actor, case)
            })
            .await?;
        Ok(self.seen(&case, view))
    }

    /// Lists the cases the caller may see (each one read is audited).
    pub async fn list_cases(&self, caller: &Caller, cmd: ListCases) -> AppResult<Page<SeenCase>> {
        let size = cmd.page.checked_size("page.page_size")?;
        let mut listed_member = cmd.member_id.clone();
        let mut filter = ManagedCaseFilter {
            member_id: cmd.member_id.map(|m| m.to_string()),
            nurse_id: cmd.nurse_id.map(|n| n.to_string()),
            kind: cmd.kind.map(|k| k.as_str().to_owned()),
            phase: cmd.phase.map(|p| p.as_str().to_owned()),
            unassigned_only: cmd.unassigned_only,
            open_only: cmd.open_only,
            visible_to_nurse: None,
        };
        match caller.actor.role {
            Role::Admin | Role::Service => {}
            Role::Nurse => filter.visible_to_nurse = Some(caller.actor.subject.clone()),
            Role::Member => {
                let me = caller.actor.member_id().map(|m| m.to_string());
                if filter.member_id.is_some() && filter.member_id != me {
                    return Err(AppError::denied("members list their own cases"));
                }
                filter.member_id = me;
                listed_member = caller.actor.member_id();
            }
            Role::Provider => {
                if filter.member_id.is_none() {
                    return Err(AppError::field(
                        "member_id",
                        "providers list the cases of one member they treat",
                    ));
                }
            }
            Role::PhysicianReviewer => {
                return Err(AppError::denied(
                    "case management is for nurses and supervisors",
                ));
            }
        }
        // A provider's cases are those the member let it see, which only the case
        // knows: the page is made of those, so its token names none of the others.
        let store = &self.app.store;
        let found = visible_page(
            &cmd.page.token,
            size,
            |token| {
                let filter = &filter;
                async move { store.list_managed_cases(filter, &token, size).await }
            },
            |record| {
                let case = ManagedCase::from_record(record)?;
                Ok(standing(&caller.actor, &case).map(|view| (case, view)))
            },
            Rows {
                key: ManagedCaseRecord::page_token,
                weight: ManagedCaseRecord::stored_bytes,
            },
        )
        .await?;
        // The read of one member's list is audited under the member, whatever it
        // found; each case shown is audited too.
        let shown: Vec<(&str, &str, &MemberId)> = found
            .items
            .iter()
            .map(|(case, _)| (RECORD_KIND, case.id.as_str(), &case.member_id))
            .collect();
        self.app
            .audit_list(
                caller,
                listed_member.as_ref().map(|m| (LIST_KIND, m)),
                shown,
            )
            .await?;
        let items = found
            .items
            .into_iter()
            .map(|(case, view)| self.seen(&case, view))
            .collect();
        Ok(Page {
            items,
            next_page_token: found.next_page_token,
        })
    }

    /// A nurse takes a case from the queue, within the caseload cap. `case_id` is the
    /// id as sent: it is checked after the caller's standing as a nurse.
    pub async fn claim_case(&self, caller: &Caller, case_id: &str) -> AppResult<SeenCase> {
        if caller.actor.role != Role::Nurse {
            return Err(AppError::denied(
                "only nurses claim cases; supervisors assign them",
            ));
        }
        let me = caller
            .actor
            .staff_id()
            .ok_or_else(|| AppError::denied("nurses are known by their staff id"))?;
        let nurse = self.nurse(&me, "subject").await?;
        let load = self.caseload_of(&me).await?;
        if !cases::has_capacity(load, self.cap) {
            return Err(AppError::FailedPrecondition(format!(
                "your caseload is at the cap ({load} of {} open cases)",
                self.cap
            )));
        }
        let id = record_id(case_id, "case_id")?;
        self.step(caller, &id, |case, who, now| {
            case.assign(who, nurse, "claimed from the queue", now)
        })
        .await
    }

    /// A supervisor assigns a case to a nurse, or to the best nurse under the cap.
    pub async fn assign_case(&self, caller: &Caller, cmd: AssignCase) -> AppResult<SeenCase> {
        if caller.actor.role != Role::Admin {
            return Err(AppError::denied(
                "supervisors assign cases; nurses claim them",
            ));
        }
        let (nurse, reason) = match cmd.nurse_id {
            Some(nurse_id) => {
                let nurse = self.nurse(&nurse_id, "nurse_id").await?;
                let load = self.caseload_of(&nurse_id).await?;
                if !cases::has_capacity(load, self.cap) {
                    return Err(AppError::FailedPrecondition(format!(
                        "nurse {nurse_id} is at the caseload cap ({load} of {})",
                        self.cap
                    )));
                }
                (nurse, cmd.reason.trim().to_owned())
            }
            None => {
                let (case, _) = self.visible(caller, &cmd.case_id).await?;
                let nurse = self.best_nurse(&case).await?;
                let reason = if cmd.reason.trim().is_empty() {
                    "matched by specialty, language and caseload".to_owned()
                } else {
                    cmd.reason.trim().to_owned()
                };
                (nurse, reason)
            }
        };
        self.step(caller, &cmd.case_id, |case, who, now| {
            case.assign(who, nurse, &reason, now)
        })
        .await
    }

    /// The best nurse for a case among those under the cap.
    async fn best_nurse(&self, case: &ManagedCase) -> AppResult<NurseRef> {
        let staff = self
            .app
            .store
            .list_staff(
                &StaffFilter {
                    role: Some(StaffRole::Nurse.as_str().to_owned()),
                    specialty: None,
                },
                "",
                MAX_PAGE_SIZE,
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
                AppError::FailedPrecondition("every nurse is at the caseload cap".into())
            })
    }

    /// Moves a case to another phase.
    pub async fn move_case(&self, caller: &Caller, cmd: MoveCase) -> AppResult<SeenCase> {
        self.step(caller, &cmd.case_id, |case, who, now| {
            case.move_to(who, cmd.phase, &cmd.note, now)
        })
        .await
    }

    /// Closes a case with its outcome.
    pub async fn close_case(&self, caller: &Caller, cmd: CloseCase) -> AppResult<SeenCase> {
        self.step(caller, &cmd.case_id, |case, who, now| {
            case.close(who, cmd.outcome, &cmd.note, now)
        })
        .await
    }

    /// Closes a case the member declined.
    pub async fn decline_case(&self, caller: &Caller, cmd: DeclineCase) -> AppResult<SeenCase> {
        self.step(caller, &cmd.case_id, |case, who, now| {
            case.decline(who, &cmd.note, now)
        })
        .await
    }

    /// Adds a goal to the care plan; returns the case and the goal.
    pub async fn add_goal(&self, caller: &Caller, cmd: AddGoal) -> AppResult<(SeenCase, Goal)> {
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.add_goal(who, cmd.goal, now)
        })
        .await
    }

    /// Sets a goal's status.
    pub async fn update_goal(&self, caller: &Caller, cmd: UpdateGoal) -> AppResult<SeenCase> {
        self.step(caller, &cmd.case_id, |case, who, now| {
            case.set_goal_status(who, &cmd.goal_id, cmd.status, now)
        })
        .await
    }

    /// Adds a task to the care plan (the caller's, at normal priority, unless said
    /// otherwise); returns the case and the task.
    pub async fn add_task(&self, caller: &Caller, cmd: AddTask) -> AppResult<(SeenCase, Task)> {
        let task = NewTask {
            title: cmd.title,
            owner: cmd.owner.unwrap_or_else(|| caller.actor.subject.clone()),
            due_on: cmd.due_on,
            priority: cmd.priority.unwrap_or(Priority::Normal),
            goal_id: cmd.goal_id,
        };
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.add_task(who, task, now)
        })
        .await
    }

    /// Changes a task; returns the case and the task.
    pub async fn update_task(
        &self,
        caller: &Caller,
        cmd: UpdateTask,
    ) -> AppResult<(SeenCase, Task)> {
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.update_task(who, &cmd.task_id, cmd.change, now)
        })
        .await
    }

    /// Records a contact in the interaction log; returns the case and the entry.
    pub async fn record_interaction(
        &self,
        caller: &Caller,
        cmd: RecordInteraction,
    ) -> AppResult<(SeenCase, Interaction)> {
        let new = NewInteraction {
            channel: cmd.channel,
            at: micros(cmd.at.unwrap_or_else(|| self.app.now())),
            summary: cmd.summary,
            next_steps: cmd.next_steps,
            private: cmd.private,
            notify_member: cmd.notify_member,
        };
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.record_interaction(who, new, now)
        })
        .await
    }

    /// Records a transition of care; returns the case and the transition.
    pub async fn record_transition(
        &self,
        caller: &Caller,
        cmd: RecordTransition,
    ) -> AppResult<(SeenCase, CareTransition)> {
        for (field, npi) in [
            ("from_facility_npi", &cmd.from_facility),
            ("to_facility_npi", &cmd.to_facility),
        ] {
            if let Some(npi) = npi {
                self.known_provider(npi, field).await?;
            }
        }
        let new = NewTransition {
            from_setting: cmd.from_setting,
            to_setting: cmd.to_setting,
            from_facility: cmd.from_facility,
            to_facility: cmd.to_facility,
            discharge_date: cmd.discharge_date,
            arrival_date: cmd.arrival_date.unwrap_or(cmd.discharge_date),
            notes: cmd.notes,
        };
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.record_transition(who, new, now)
        })
        .await
    }

    /// Arranges a service; returns the case and the service.
    pub async fn arrange_service(
        &self,
        caller: &Caller,
        cmd: ArrangeService,
    ) -> AppResult<(SeenCase, ArrangedService)> {
        if let Some(id) = &cmd.service.precert_case_id {
            self.check_precert_link(caller, &cmd.case_id, id).await?;
        }
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.arrange_service(who, cmd.service, now)
        })
        .await
    }

    /// Changes an arranged service; returns the case and the service.
    pub async fn update_service(
        &self,
        caller: &Caller,
        cmd: UpdateService,
    ) -> AppResult<(SeenCase, ArrangedService)> {
        if let Some(id) = &cmd.precert_case_id {
            self.check_precert_link(caller, &cmd.case_id, id).await?;
        }
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.update_service(who, &cmd.service_id, cmd.state, cmd.precert_case_id, now)
        })
        .await
    }

    /// A linked precertification case must exist and be the same member's (read
    /// without exposing it). Only a caller who may see the managed case learns whether
    /// it does, and another member's case reads as absent.
    async fn check_precert_link(&self, caller: &Caller, case_id: &str, id: &str) -> AppResult<()> {
        let (managed, _) = self.visible(caller, case_id).await?;
        let absent = || {
            AppError::field(
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

    /// Requests decision support; returns the case and the request.
    pub async fn request_decision_support(
        &self,
        caller: &Caller,
        cmd: RequestDecisionSupport,
    ) -> AppResult<(SeenCase, DecisionSupport)> {
        self.command(caller, &cmd.case_id, |case, who, now| {
            case.request_decision_support(who, cmd.request, now)
        })
        .await
    }

    /// In-network specialists for the case's member, in the member's country unless
    /// another is asked (the case's nurse and supervisors only; the read is audited).
    pub async fn find_specialists(
        &self,
        caller: &Caller,
        cmd: FindSpecialists,
    ) -> AppResult<Specialists> {
        let size = cmd.page.checked_size("page.page_size")?;
        let (case, view) = self.visible(caller, &cmd.case_id).await?;
        if view != View::Full {
            return Err(AppError::denied(
                "the case's nurse searches for specialists",
            ));
        }
        let member = self.app.store.get_member(&case.member_id).await?;
        let country = cmd
            .country
            .unwrap_or_else(|| member.address.country.clone());
        let filter = ProviderFilter {
            specialty: Some(cmd.specialty.to_string()),
            kind: None,
            country: Some(country.to_string()),
            in_network_for_plan: Some(member.plan_id.to_string()),
            language: None,
        };
        let found = self
            .app
            .store
            .list_providers(&filter, &cmd.page.token, size)
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
        Ok(Specialists {
            providers,
            country,
            plan_id: member.plan_id,
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }

    /// Records the assessment of care abroad for a decision-support request.
    pub async fn assess_care_abroad(
        &self,
        caller: &Caller,
        cmd: AssessCareAbroad,
    ) -> AppResult<SeenCase> {
        let (case, _) = self.visible(caller, &cmd.case_id).await?;
        let member = self.app.store.get_member(&case.member_id).await?;
        let country = cmd
            .country
            .unwrap_or_else(|| member.address.country.clone());
        if let Some(npi) = &cmd.specialist {
            let specialist = self.known_provider(npi, "specialist_npi").await?;
            if specialist.address.country != country {
                return Err(AppError::field(
                    "specialist_npi",
                    format!("the specialist does not practise in {country}"),
                ));
            }
        }
        self.step(caller, &cmd.case_id, move |case, who, now| {
            let assessment = CareAbroadAssessment {
                country,
                recommendation: cmd.recommendation,
                rationale: cmd.rationale,
                specialist: cmd.specialist,
                assessed_by: who.actor.subject.clone(),
                assessed_at: now,
            };
            case.assess_care_abroad(who, &cmd.decision_support_id, assessment, now)
        })
        .await
    }

    /// Records the member's consent to a provider seeing her case, or its withdrawal.
    pub async fn record_consent(&self, caller: &Caller, cmd: RecordConsent) -> AppResult<SeenCase> {
        self.known_provider(&cmd.provider, "provider_npi").await?;
        self.step(caller, &cmd.case_id, |case, who, now| {
            case.record_consent(who, cmd.provider, cmd.granted, now)
        })
        .await
    }

    /// The member rates her closed case; the rating is kept for the satisfaction
    /// report in the same transaction.
    pub async fn rate_case(&self, caller: &Caller, cmd: RateCase) -> AppResult<SeenCase> {
        let who = self.who(caller).await?;
        let mut working = self
            .app
            .open(caller, &cmd.case_id, |actor, case: &ManagedCase, _| {
                standing(actor, case)
            })
            .await?;
        // The domain's refusal ends the call without an audit entry of its own, as a
        // refused rating always has.
        let now = working.now;
        let events = working
            .aggregate
            .rate(&who, cmd.rating, &cmd.comment, now)?;
        working.events.extend(events);
        let case = &working.aggregate;
        let rating = case.satisfaction.as_ref().map_or(0, |s| s.rating);
        let (case_id, member) = (case.id.clone(), case.member_id.clone());
        working
            .tx
            .insert_rating(&case_id, member.as_str(), rating, now)
            .await?;
        let (case, ..) = working.commit().await?;
        let view = case.view_for(&caller.actor);
        Ok(self.seen(&case, view))
    }

    /// Member satisfaction with case management over a period (supervisors).
    pub async fn satisfaction_report(
        &self,
        caller: &Caller,
        period: SatisfactionPeriod,
    ) -> AppResult<SatisfactionReport> {
        if !matches!(caller.actor.role, Role::Admin | Role::Service) {
            return Err(AppError::denied(
                "the satisfaction report is for supervisors",
            ));
        }
        let from = period.from.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let to = period
            .to
            .unwrap_or_else(|| self.app.now() + chrono::Duration::seconds(1));
        if to <= from {
            return Err(AppError::field("to", "must be after from"));
        }
        let ratings = self.app.store.ratings_between(from, to).await?;
        Ok(cases::satisfaction::report(
            ratings.into_iter().filter_map(|r| u8::try_from(r).ok()),
        ))
    }

    /// A nurse's open tasks across her cases, overdue first (each case read is
    /// audited). Nurses read their own; supervisors name the nurse.
    pub async fn work_list(
        &self,
        caller: &Caller,
        nurse_id: Option<StaffId>,
    ) -> AppResult<WorkList> {
        let nurse = match caller.actor.role {
            Role::Nurse => {
                let me = caller.actor.staff_id().expect("nurses have staff ids");
                if nurse_id.as_ref().is_some_and(|a| a != &me) {
                    return Err(AppError::denied("nurses see their own work list"));
                }
                me
            }
            Role::Admin => nurse_id.ok_or_else(|| AppError::field("nurse_id", "is required"))?,
            _ => {
                return Err(AppError::denied(
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
            let case = ManagedCase::from_record(record)?;
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
                let item = CaseTask {
                    case_id: case.id.clone(),
                    task: task.clone(),
                };
                if task.is_overdue(today) {
                    overdue.push(item);
                } else {
                    upcoming.push(item);
                }
            }
        }
        tx.commit().await?;
        overdue.sort_by_key(|t| t.task.due_on);
        upcoming.sort_by_key(|t| t.task.due_on);
        let queue = self.app.store.unassigned_case_count().await?;
        Ok(WorkList {
            nurse_id: nurse,
            open_cases: records.len() as u32,
            caseload_cap: self.cap,
            overdue,
            upcoming,
            unassigned_queue: u32::try_from(queue).unwrap_or(u32::MAX),
            today,
        })
    }
}
