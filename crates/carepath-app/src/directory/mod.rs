//! Directory use cases: plans, members, providers and staff.
//!
//! Who may do what ([`may`], the area's one policy): admins and internal services
//! write; anyone authenticated reads plans and providers (a member reads a
//! physician's biography); a member reads their own record and, as subscriber, those
//! of their covered family; nurses, physician reviewers, admins and services read any
//! member; staff records are for staff. Every read of a member record, allowed or
//! not, is audit-logged.

use carepath_core::{
    Actor, Member, MemberId, Npi, Plan, PlanId, Provider, ProviderKind, Role, Staff, StaffId,
    StaffRole,
};
use carepath_store::{AuditOutcome, MemberFilter, ProviderFilter, StaffFilter, StoreError};
use chrono::NaiveDate;

use crate::{App, AppError, AppResult, Caller, Page, PageRequest};

pub mod memory;

/// The audit log's record kind of a member record.
pub const MEMBER_RECORD_KIND: &str = "member";

/// Something a caller asks to do with the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Create or replace a plan, member, provider or staff record.
    Write,
    /// Read plans and providers.
    ReadPublic,
    /// Read staff records.
    ReadStaff,
    /// List members; `subscriber` is the subscriber whose covered family is asked
    /// for, if that is the filter.
    ListMembers {
        /// The subscriber filter of the listing.
        subscriber: Option<&'a MemberId>,
    },
    /// Read one member's record.
    ReadMember(&'a Member),
}

/// Whether `actor` may do `action`: the directory's one policy.
///
/// ```
/// use carepath_app::directory::{Action, may};
/// use carepath_core::{Actor, MemberId, Role};
///
/// let nurse = Actor::new(Role::Nurse, "RN-001").unwrap();
/// let member = Actor::new(Role::Member, "M100001").unwrap();
/// let own = MemberId::parse("M100001").unwrap();
/// let other = MemberId::parse("M100002").unwrap();
///
/// assert!(may(&nurse, Action::ReadStaff));
/// assert!(!may(&member, Action::ReadStaff));
/// assert!(!may(&nurse, Action::Write));
/// assert!(may(&member, Action::ListMembers { subscriber: Some(&own) }));
/// assert!(!may(&member, Action::ListMembers { subscriber: Some(&other) }));
/// assert!(may(&member, Action::ReadPublic));
/// ```
pub fn may(actor: &Actor, action: Action<'_>) -> bool {
    let staff_or_service = actor.is_staff() || actor.role == Role::Service;
    match action {
        Action::Write => matches!(actor.role, Role::Admin | Role::Service),
        Action::ReadPublic => true,
        Action::ReadStaff => staff_or_service,
        Action::ListMembers { subscriber } => {
            let own_family = actor.role == Role::Member
                && subscriber.is_some()
                && subscriber.cloned() == actor.member_id();
            own_family || staff_or_service
        }
        Action::ReadMember(member) => match actor.role {
            Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
            Role::Member => actor
                .member_id()
                .is_some_and(|me| me == member.id || member.subscriber_id.as_ref() == Some(&me)),
            Role::Provider => false,
        },
    }
}

/// A record written: the record and whether it was new.
#[derive(Debug, Clone, PartialEq)]
pub struct Upserted<T> {
    /// The record as stored.
    pub record: T,
    /// Whether it was created (not replaced).
    pub created: bool,
}

/// Lists members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMembers {
    /// Only the members of this plan.
    pub plan_id: Option<PlanId>,
    /// Only this subscriber and their covered family.
    pub subscriber_id: Option<MemberId>,
    /// Which page.
    pub page: PageRequest,
}

/// Lists providers; each text filter is optional and matched without regard to case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListProviders {
    /// A specialty, as `sports medicine`, `sports-medicine` or `sports_medicine`.
    pub specialty: Option<String>,
    /// A kind of provider.
    pub kind: Option<ProviderKind>,
    /// An ISO country code.
    pub country: Option<String>,
    /// A plan whose network the provider is in.
    pub in_network_for_plan: Option<String>,
    /// A language the provider speaks.
    pub language: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

/// Lists staff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListStaff {
    /// A staff role.
    pub role: Option<StaffRole>,
    /// A specialty.
    pub specialty: Option<String>,
    /// Which page.
    pub page: PageRequest,
}

/// A text filter: trimmed, and none when empty.
fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn page_of<T>(page: carepath_store::Page<T>) -> Page<T> {
    Page {
        items: page.items,
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

/// The directory use cases.
#[derive(Debug, Clone)]
pub struct Directory {
    app: App,
}

impl Directory {
    /// The use cases over `app`.
    pub fn new(app: App) -> Self {
        Directory { app }
    }

    /// Today on the application's clock: the date a member record is validated
    /// against (no date of birth in the future).
    pub fn today(&self) -> NaiveDate {
        self.app.now().date_naive()
    }

    fn require(&self, caller: &Caller, action: Action<'_>, refusal: &str) -> AppResult<()> {
        if may(&caller.actor, action) {
            Ok(())
        } else {
            Err(AppError::denied(refusal))
        }
    }

    fn require_writer(&self, caller: &Caller) -> AppResult<()> {
        self.require(
            caller,
            Action::Write,
            "only admins and internal services change the directory",
        )
    }

    /// Creates or replaces a plan (admins and services).
    pub async fn upsert_plan(&self, caller: &Caller, plan: Plan) -> AppResult<Upserted<Plan>> {
        self.require_writer(caller)?;
        let mut tx = self.app.store.begin().await?;
        let created = tx.upsert_plan(&plan, self.app.now()).await?;
        tx.commit().await?;
        self.app.directory.forget_plan(&plan.id);
        Ok(Upserted {
            record: plan,
            created,
        })
    }

    /// A plan, for anyone authenticated.
    pub async fn get_plan(&self, caller: &Caller, id: &PlanId) -> AppResult<Plan> {
        self.require(
            caller,
            Action::ReadPublic,
            "the directory is for authenticated callers",
        )?;
        Ok(self.app.store.get_plan(id).await?)
    }

    /// One page of the plans, for anyone authenticated.
    pub async fn list_plans(&self, caller: &Caller, page: PageRequest) -> AppResult<Page<Plan>> {
        self.require(
            caller,
            Action::ReadPublic,
            "the directory is for authenticated callers",
        )?;
        let size = page.checked_size("page.page_size")?;
        Ok(page_of(self.app.store.list_plans(&page.token, size).await?))
    }

    /// Creates or replaces a member (admins and services); the write is audited. The
    /// record is validated already (see [`Directory::today`]).
    pub async fn upsert_member(
        &self,
        caller: &Caller,
        member: Member,
    ) -> AppResult<Upserted<Member>> {
        self.require_writer(caller)?;
        let now = self.app.now();
        let mut tx = self.app.store.begin().await?;
        let created = tx.upsert_member(&member, now).await?;
        tx.append_audit(
            &caller.audit_entry(
                MEMBER_RECORD_KIND,
                member.id.as_str(),
                Some(&member.id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        self.app.directory.forget_member(&member.id);
        Ok(Upserted {
            record: member,
            created,
        })
    }

    /// A member's record, for those who may read it; the read is audited, and so is a
    /// refusal. A member asking for someone else's record is told it does not exist;
    /// a provider, who reads no member's record, is refused before the record is
    /// looked for. Either way the answer is the same whether or not the member exists.
    pub async fn get_member(&self, caller: &Caller, id: &MemberId) -> AppResult<Member> {
        if caller.actor.role == Role::Provider {
            return Err(self
                .app
                .refuse(
                    caller,
                    MEMBER_RECORD_KIND,
                    id.as_str(),
                    Some(id),
                    AppError::denied(
                        "providers see member data through their requests, not the directory",
                    ),
                )
                .await);
        }
        let member = match self.app.store.get_member(id).await {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        MEMBER_RECORD_KIND,
                        id.as_str(),
                        Some(id),
                        AppError::hidden("member", id.as_str()),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        if !may(&caller.actor, Action::ReadMember(&member)) {
            return Err(self
                .app
                .refuse(
                    caller,
                    MEMBER_RECORD_KIND,
                    id.as_str(),
                    Some(id),
                    AppError::hidden("member", id.as_str()),
                )
                .await);
        }
        self.app
            .audit(
                caller,
                MEMBER_RECORD_KIND,
                id.as_str(),
                Some(id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(member)
    }

    /// One page of members, for staff and services, or a subscriber's own covered
    /// family; each member listed is audited, and so is a refusal (under the
    /// subscriber asked for, if any).
    pub async fn list_members(&self, caller: &Caller, cmd: ListMembers) -> AppResult<Page<Member>> {
        let subscriber = cmd.subscriber_id.as_ref();
        if !may(&caller.actor, Action::ListMembers { subscriber }) {
            return Err(self
                .app
                .refuse(
                    caller,
                    MEMBER_RECORD_KIND,
                    subscriber.map_or("*", MemberId::as_str),
                    subscriber,
                    AppError::denied("members are listed for staff only"),
                )
                .await);
        }
        let filter = MemberFilter {
            plan_id: cmd.plan_id,
            subscriber_id: cmd.subscriber_id,
        };
        let size = cmd.page.checked_size("page.page_size")?;
        let found = self
            .app
            .store
            .list_members(&filter, &cmd.page.token, size)
            .await?;
        let mut tx = self.app.store.begin().await?;
        for m in &found.items {
            tx.append_audit(
                &caller.audit_entry(
                    MEMBER_RECORD_KIND,
                    m.id.as_str(),
                    Some(&m.id),
                    AuditOutcome::Allowed,
                ),
                self.app.now(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(page_of(found))
    }

    /// Creates or replaces a provider (admins and services).
    pub async fn upsert_provider(
        &self,
        caller: &Caller,
        provider: Provider,
    ) -> AppResult<Upserted<Provider>> {
        self.require_writer(caller)?;
        let mut tx = self.app.store.begin().await?;
        let created = tx.upsert_provider(&provider, self.app.now()).await?;
        tx.commit().await?;
        self.app.directory.forget_provider(&provider.npi);
        Ok(Upserted {
            record: provider,
            created,
        })
    }

    /// A provider, for anyone authenticated.
    pub async fn get_provider(&self, caller: &Caller, npi: &Npi) -> AppResult<Provider> {
        self.require(
            caller,
            Action::ReadPublic,
            "the directory is for authenticated callers",
        )?;
        Ok(self.app.store.get_provider(npi).await?)
    }

    /// One page of providers, for anyone authenticated.
    pub async fn list_providers(
        &self,
        caller: &Caller,
        cmd: ListProviders,
    ) -> AppResult<Page<Provider>> {
        self.require(
            caller,
            Action::ReadPublic,
            "the directory is for authenticated callers",
        )?;
        let filter = ProviderFilter {
            specialty: text(cmd.specialty).map(|s| s.to_lowercase().replace([' ', '-'], "_")),
            kind: cmd.kind.map(|k| k.as_str().to_owned()),
            country: text(cmd.country).map(|c| c.to_uppercase()),
            in_network_for_plan: text(cmd.in_network_for_plan),
            language: text(cmd.language).map(|l| l.to_lowercase()),
        };
        let size = cmd.page.checked_size("page.page_size")?;
        Ok(page_of(
            self.app
                .store
                .list_providers(&filter, &cmd.page.token, size)
                .await?,
        ))
    }

    /// Creates or replaces a staff record (admins and services).
    pub async fn upsert_staff(&self, caller: &Caller, staff: Staff) -> AppResult<Upserted<Staff>> {
        self.require_writer(caller)?;
        let mut tx = self.app.store.begin().await?;
        let created = tx.upsert_staff(&staff, self.app.now()).await?;
        tx.commit().await?;
        Ok(Upserted {
            record: staff,
            created,
        })
    }

    /// A staff record, for staff and services.
    pub async fn get_staff(&self, caller: &Caller, id: &StaffId) -> AppResult<Staff> {
        self.require(
            caller,
            Action::ReadStaff,
            "staff records are visible to staff only",
        )?;
        Ok(self.app.store.get_staff(id).await?)
    }

    /// One page of staff, for staff and services.
    pub async fn list_staff(&self, caller: &Caller, cmd: ListStaff) -> AppResult<Page<Staff>> {
        self.require(
            caller,
            Action::ReadStaff,
            "staff records are visible to staff only",
        )?;
        let filter = StaffFilter {
            role: cmd.role.map(|r| r.as_str().to_owned()),
            specialty: text(cmd.specialty),
        };
        let size = cmd.page.checked_size("page.page_size")?;
        Ok(page_of(
            self.app
                .store
                .list_staff(&filter, &cmd.page.token, size)
                .await?,
        ))
    }
}
