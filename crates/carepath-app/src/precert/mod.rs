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
pub mod history;
pub mod record;
pub mod review;
pub mod rulelists;
pub mod submit;

use std::sync::Arc;

use carepath_core::{Actor, EventDraft, MemberId, Npi, Role};
use carepath_precert::{self as precert, CaseState, Ctx, PrecertCase, WorkflowError};
use carepath_store::{CaseFilter, CaseRecord, Page as StorePage, StoreError};
use chrono::{DateTime, Utc};

pub use carepath_precert::{Retrospective, ServiceDates};
pub use coverage::{
    CoverageAssertion, CoverageRequest, FormFor, FormRequest, OrderCheck, PriorAuth,
};
pub use engine::{ListOrigin, PrecertEngine};
pub use goldcards::{GoldCard, MetricsReport, Period};
pub use record::{LIST_KIND, RECORD_KIND, case_of, queue_of, record_of, request_id_of};
pub use review::{Adverse, Decision, LaterInformation, PartLine, RequestedItem};
pub use rulelists::{RuleListVersion, Validation};
pub use submit::{CheckRequest, SubmitRequest, Submitted};

use crate::{
    App, AppError, AppResult, Caller, Page, PageRequest,
    context::{Rows, visible_page},
};

/// The member a list of cases is held to, if any.
fn query_member(filter: &CaseFilter) -> Option<MemberId> {
    filter
        .member_id
        .as_deref()
        .and_then(|m| MemberId::parse(m).ok())
}

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
    /// The id the submitting caller gave the request (the part of the idempotency key
    /// after the caller).
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

    /// The case a caller filed under its own request id ([`submit::request_key`]): a
    /// provider finds its own requests (`requesting`, the requester a FHIR inquiry
    /// names, changes nothing); staff and services name the provider who filed the
    /// request (its NPI). A caller who may not see it, or a request never filed, gets
    /// the same audited NOT_FOUND.
    pub async fn find_request(
        &self,
        caller: &Caller,
        requesting: Option<&Npi>,
        request_id: &str,
    ) -> AppResult<CaseView> {
        let key = match (caller.actor.role, requesting) {
            (Role::Provider, _) => submit::request_key(&caller.actor, request_id),
            (_, Some(npi)) => format!("{npi}:{request_id}"),
            (_, None) => {
                return Err(AppError::field(
                    "requesting_provider_npi",
                    "name the provider who filed the request (its NPI)",
                ));
            }
        };
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
        // Providers and members are held to their own cases in the query itself, so
        // the page and its token are made of cases the caller may see.
        let store = &self.app.store;
        let member = query_member(&filter);
        let read = |token: String| {
            let filter = &filter;
            async move { store.list_cases(filter, &token, size).await }
        };
        self.audited_page(
            caller,
            member.as_ref(),
            &query.page.token,
            size,
            read,
            CaseRecord::page_token,
        )
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
        let store = &self.app.store;
        let read = |token: String| async move { store.review_queue(&token, size).await };
        self.audited_page(
            caller,
            None,
            &page.token,
            size,
            read,
            CaseRecord::queue_token,
        )
        .await
    }

    /// A page of cases read by `read` after `token` (bounded in bytes,
    /// [`visible_page`]), each access audited in one transaction; a list of one
    /// `member`'s cases is audited under the member too, whatever it found.
    async fn audited_page<F>(
        &self,
        caller: &Caller,
        member: Option<&MemberId>,
        token: &str,
        size: u32,
        read: impl FnMut(String) -> F,
        key: fn(&CaseRecord) -> String,
    ) -> AppResult<Page<CaseView>>
    where
        F: Future<Output = Result<StorePage<CaseRecord>, StoreError>>,
    {
        let now = self.app.now();
        let rows = Rows {
            key,
            weight: CaseRecord::stored_bytes,
        };
        let view = |record: &CaseRecord| {
            Ok(Some(CaseView {
                case: case_of(record)?,
                request_id: request_id_of(record).to_owned(),
                as_of: now,
            }))
        };
        let page = visible_page(token, size, read, view, rows).await?;
        let shown: Vec<(&str, &str, &MemberId)> = page
            .items
            .iter()
            .map(|v| (RECORD_KIND, v.case.id.as_str(), &v.case.request.member_id))
            .collect();
        self.app
            .audit_list(caller, member.map(|m| (LIST_KIND, m)), shown)
            .await?;
        Ok(page)
    }
}
