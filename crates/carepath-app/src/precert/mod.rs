//! Precertification use cases: requirement checks, submissions, clinical review and
//! the paths after a decision, gold cards, metrics, rule lists and the sweeps.
//!
//! Decisions are the precert crate's; a use case here authorizes, loads the case,
//! applies one workflow command and stores the case, its events and the audit entry
//! in one transaction (through [`App::change`]).
//!
//! Who may see a case ([`may_view`]): the requesting and servicing providers, the
//! member, and plan staff (nurses, physician reviewers, admins) and internal
//! services. Anyone else is told it does not exist.

pub mod coverage;
pub mod engine;
pub mod filing;
pub mod goldcards;
pub mod record;
pub mod review;
pub mod rulelists;
pub mod submit;

use std::sync::Arc;

use carepath_core::{Actor, EventDraft, MemberId, Npi, Role};
use carepath_precert::{self as precert, CaseState, Ctx, PrecertCase, WorkflowError};
use carepath_store::{AuditOutcome, CaseFilter, CaseRecord, StoreError};
use chrono::{DateTime, Utc};

pub use carepath_precert::ServiceDates;
pub use coverage::{
    CoverageAssertion, CoverageRequest, FormFor, FormRequest, OrderCheck, PriorAuth,
};
pub use engine::{ListOrigin, PrecertEngine};
pub use goldcards::{GoldCard, MetricsReport, Period};
pub use record::{RECORD_KIND, case_of, queue_of, record_of, request_id_of};
pub use review::{Adverse, Decision, LaterInformation, PartLine, RequestedItem};
pub use rulelists::{RuleListVersion, Validation};
pub use submit::{CheckRequest, SubmitRequest, Submitted};

use crate::{App, AppError, AppResult, Caller, Page, PageRequest};

/// The precertification use cases over the application's state and the live rule
/// book. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Precert {
    app: App,
    engine: Arc<PrecertEngine>,
}

/// Whether `actor` may see `case`: the one policy of this area, asked once per
/// command on a case.
pub fn may_view(actor: &Actor, case: &PrecertCase) -> bool {
    match actor.role {
        Role::Provider => actor.provider_npi().is_some_and(|npi| {
            npi == case.request.requesting_provider.npi
                || npi == case.request.servicing_provider.npi
        }),
        Role::Member => actor.member_id().as_ref() == Some(&case.request.member_id),
        Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
    }
}

/// A case as a caller sees it: the case, the requester's own id of the request and
/// the time its lateness is judged at.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseView {
    /// The case.
    pub case: PrecertCase,
    /// The id the requester gave the request (the part of the idempotency key after
    /// the requester).
    pub request_id: String,
    /// When the view was taken: the time of the change for a command, the clock's
    /// reading for a read.
    pub as_of: DateTime<Utc>,
}

/// What a list of cases is filtered on; a provider or member sees their own cases
/// only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListCases {
    /// Only the cases of this member.
    pub member_id: Option<MemberId>,
    /// Only the cases this provider requests or services.
    pub provider_npi: Option<Npi>,
    /// Only the cases in this state.
    pub status: Option<CaseState>,
    /// Only the cases received at or after this instant.
    pub received_from: Option<DateTime<Utc>>,
    /// Only the cases received before this instant.
    pub received_to: Option<DateTime<Utc>>,
    /// Which page, and how long.
    pub page: PageRequest,
}

impl Precert {
    /// The use cases over `app`, deciding with `engine`'s rules and exemptions.
    pub fn new(app: App, engine: Arc<PrecertEngine>) -> Self {
        Precert { app, engine }
    }

    /// The rules and exemptions in force.
    pub fn engine(&self) -> &Arc<PrecertEngine> {
        &self.engine
    }

    /// The application's clock reading.
    pub fn now(&self) -> DateTime<Utc> {
        self.app.now()
    }

    /// The workflow's view of the caller: staff bring the specialty the directory
    /// records for them, which adverse decisions are checked against.
    async fn workflow_caller(&self, caller: &Caller) -> AppResult<precert::Caller> {
        let actor = caller.actor.clone();
        let specialty = match actor.staff_id() {
            Some(id) => match self.app.store.get_staff(&id).await {
                Ok(staff) => staff.specialty,
                Err(StoreError::NotFound { .. }) if actor.role == Role::PhysicianReviewer => {
                    return Err(AppError::denied(
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

    /// Applies one workflow command to the stored case `case_id` (already trimmed)
    /// through the command pipeline: load under lock, [`may_view`], run, store the
    /// case with its events and the audit entry in one transaction.
    async fn command(
        &self,
        caller: &Caller,
        case_id: &str,
        command: impl FnOnce(
            &mut PrecertCase,
            &precert::Caller,
            &Ctx<'_>,
            DateTime<Utc>,
        ) -> Result<Vec<EventDraft>, WorkflowError>,
    ) -> AppResult<CaseView> {
        let who = self.workflow_caller(caller).await?;
        let rules = self.engine.rules();
        let gold = self.engine.gold_cards();
        let ctx = Ctx {
            calendar: &self.app.calendar,
            rules: &rules,
            gold_cards: &gold,
        };
        let changed = self
            .app
            .change::<PrecertCase, (), ()>(
                caller,
                case_id,
                |actor, case, _| may_view(actor, case).then_some(()),
                |case, (), now| Ok(((), command(case, &who, &ctx, now)?)),
            )
            .await?;
        Ok(CaseView {
            request_id: request_id_of(&changed.record).to_owned(),
            case: changed.aggregate,
            as_of: changed.at,
        })
    }

    /// One case, for a caller who may see it (the read is audited); otherwise an
    /// audited NOT_FOUND.
    pub async fn get_case(&self, caller: &Caller, case_id: &str) -> AppResult<CaseView> {
        let (record, case, ()) = self
            .app
            .view::<PrecertCase, ()>(caller, case_id, |actor, case| {
                may_view(actor, case).then_some(())
            })
            .await?;
        Ok(CaseView {
            request_id: request_id_of(&record).to_owned(),
            case,
            as_of: self.app.now(),
        })
    }

    /// The case a requester filed under its own request id: `requesting` is the
    /// requester's NPI (`None`: the calling provider's own), `request_id` the id it
    /// gave the request. A caller who may not see it, or a request never filed, gets
    /// the same audited NOT_FOUND.
    pub async fn find_request(
        &self,
        caller: &Caller,
        requesting: Option<&Npi>,
        request_id: &str,
    ) -> AppResult<CaseView> {
        let requesting = match requesting {
            Some(npi) => npi.clone(),
            None => caller.actor.provider_npi().ok_or_else(|| {
                AppError::field(
                    "requesting_provider_npi",
                    "name the provider who made the request (its NPI)",
                )
            })?,
        };
        let key = format!("{requesting}:{request_id}");
        match self.app.store.case_by_request_key(&key).await? {
            Some(record) => self.get_case(caller, &record.id).await,
            None => Err(self.app.hidden::<PrecertCase>(caller, &key, None).await),
        }
    }

    /// A page of the cases matching `query`; providers and members see their own
    /// only. Every case listed is audited.
    pub async fn list_cases(&self, caller: &Caller, query: ListCases) -> AppResult<Page<CaseView>> {
        let size = query.page.checked_size("page.page_size")?;
        let mut filter = CaseFilter {
            member_id: query.member_id.map(|m| m.to_string()),
            provider_npi: query.provider_npi.map(|n| n.to_string()),
            status: query.status.map(|s| s.as_str().to_owned()),
            received_from: query.received_from,
            received_to: query.received_to,
        };
        match caller.actor.role {
            Role::Provider => {
                let me = caller.actor.provider_npi().map(|n| n.to_string());
                if filter.provider_npi.is_some() && filter.provider_npi != me {
                    return Err(AppError::denied("providers list their own cases"));
                }
                filter.provider_npi = me;
            }
            Role::Member => {
                let me = caller.actor.member_id().map(|m| m.to_string());
                if filter.member_id.is_some() && filter.member_id != me {
                    return Err(AppError::denied("members list their own cases"));
                }
                filter.member_id = me;
            }
            _ => {}
        }
        let found = self
            .app
            .store
            .list_cases(&filter, &query.page.token, size)
            .await?;
        self.audited_page(caller, found.items, found.next_page_token)
            .await
    }

    /// A page of the cases waiting for a clinician, oldest due first; for nurses,
    /// physician reviewers and admins.
    pub async fn review_queue(
        &self,
        caller: &Caller,
        page: PageRequest,
    ) -> AppResult<Page<CaseView>> {
        caller.require_role(
            &[Role::Nurse, Role::PhysicianReviewer, Role::Admin],
            "the review queue",
        )?;
        let size = page.checked_size("page.page_size")?;
        let found = self.app.store.review_queue(&page.token, size).await?;
        self.audited_page(caller, found.items, found.next_page_token)
            .await
    }

    /// The cases of a page, each access audited in one transaction.
    async fn audited_page(
        &self,
        caller: &Caller,
        records: Vec<CaseRecord>,
        next: Option<String>,
    ) -> AppResult<Page<CaseView>> {
        let now = self.app.now();
        let mut items = Vec::with_capacity(records.len());
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
            items.push(CaseView {
                case,
                request_id: request_id_of(record).to_owned(),
                as_of: now,
            });
        }
        tx.commit().await?;
        Ok(Page {
            items,
            next_page_token: next.unwrap_or_default(),
        })
    }
}
