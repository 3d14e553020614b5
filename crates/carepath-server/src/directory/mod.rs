//! `carepath.directory.v1.DirectoryService`: plans, members, providers and staff.
//!
//! Who may do what: admins and internal services write; anyone authenticated reads
//! plans and providers (a member reads a physician's biography); a member reads their
//! own record and, as subscriber, those of their covered family; nurses, physician
//! reviewers, admins and services read any member; staff records are for staff.
//! Every read of a member record, allowed or not, is audit-logged.

use carepath_core::{Actor, Member, MemberId, Npi, PlanId, Role, StaffId};
use carepath_proto::directory::v1::{self as pb, directory_service_server::DirectoryService};
use carepath_store::{AuditOutcome, MemberFilter, ProviderFilter, StaffFilter};
use tonic::{Request, Response, Status};

use crate::error::respond;

use crate::{
    context::{App, Caller, caller_of, page_size},
    convert::{self, provider_kind_from_proto, staff_role_from_proto},
    error::{ApiError, ApiResult},
};

/// The directory service over the shared application state.
#[derive(Debug, Clone)]
pub struct Directory {
    app: App,
}

impl Directory {
    pub fn new(app: App) -> Self {
        Directory { app }
    }
}

fn require_writer(actor: &Actor) -> ApiResult<()> {
    match actor.role {
        Role::Admin | Role::Service => Ok(()),
        _ => Err(ApiError::denied(
            "only admins and internal services change the directory",
        )),
    }
}

fn require_staff(actor: &Actor) -> ApiResult<()> {
    if actor.is_staff() || actor.role == Role::Service {
        Ok(())
    } else {
        Err(ApiError::denied("staff records are visible to staff only"))
    }
}

/// Whether `actor` may read `member`: the member, their subscriber, staff, services.
fn may_read_member(actor: &Actor, member: &Member) -> bool {
    match actor.role {
        Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
        Role::Member => actor
            .member_id()
            .is_some_and(|me| me == member.id || member.subscriber_id.as_ref() == Some(&me)),
        Role::Provider => false,
    }
}

fn parse_id<T, E: std::fmt::Display>(
    field: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> ApiResult<T> {
    let mut invalid = carepath_core::Invalid::new();
    let parsed = convert::required(&mut invalid, field, value, parse);
    invalid.into_result()?;
    Ok(parsed.expect("no violation means the id parsed"))
}

fn token(next: Option<String>) -> String {
    next.unwrap_or_default()
}

fn filter(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

impl Directory {
    async fn get_member_checked(&self, caller: &Caller, id: &MemberId) -> ApiResult<Member> {
        let member = match self.app.store.get_member(id).await {
            Ok(m) => m,
            Err(carepath_store::StoreError::NotFound { .. }) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        "member",
                        id.as_str(),
                        Some(id),
                        ApiError::hidden("member", id.as_str()),
                    )
                    .await);
            }
            Err(e) => return Err(e.into()),
        };
        if !may_read_member(&caller.actor, &member) {
            let err = if caller.actor.role == Role::Member {
                ApiError::hidden("member", id.as_str())
            } else {
                ApiError::denied(
                    "providers see member data through their requests, not the directory",
                )
            };
            return Err(self
                .app
                .refuse(caller, "member", id.as_str(), Some(id), err)
                .await);
        }
        self.app
            .audit(
                caller,
                "member",
                id.as_str(),
                Some(id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(member)
    }
}

#[tonic::async_trait]
impl DirectoryService for Directory {
    async fn upsert_plan(
        &self,
        request: Request<pb::UpsertPlanRequest>,
    ) -> Result<Response<pb::UpsertPlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            require_writer(&caller.actor)?;
            let plan = convert::plan_from_proto(request.into_inner().plan)?;
            let mut tx = self.app.store.begin().await?;
            let created = tx.upsert_plan(&plan, self.app.now()).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(pb::UpsertPlanResponse {
                plan: Some(convert::plan_to_proto(&plan)),
                created,
            })
        })
        .await
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let id = parse_id("id", &request.get_ref().id, PlanId::parse)?;
            let plan = self.app.store.get_plan(&id).await?;
            Ok::<_, ApiError>(pb::GetPlanResponse {
                plan: Some(convert::plan_to_proto(&plan)),
            })
        })
        .await
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let page = request.into_inner().page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let found = self.app.store.list_plans(&page.page_token, size).await?;
            Ok::<_, ApiError>(pb::ListPlansResponse {
                plans: found.items.iter().map(convert::plan_to_proto).collect(),
                next_page_token: token(found.next_page_token),
            })
        })
        .await
    }

    async fn upsert_member(
        &self,
        request: Request<pb::UpsertMemberRequest>,
    ) -> Result<Response<pb::UpsertMemberResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            require_writer(&caller.actor)?;
            let now = self.app.now();
            let member = convert::member_from_proto(request.into_inner().member, now.date_naive())?;
            let mut tx = self.app.store.begin().await?;
            let created = tx.upsert_member(&member, now).await?;
            tx.append_audit(
                &caller.audit_entry(
                    "member",
                    member.id.as_str(),
                    Some(&member.id),
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, ApiError>(pb::UpsertMemberResponse {
                member: Some(convert::member_to_proto(&member)),
                created,
            })
        })
        .await
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = parse_id("id", &request.get_ref().id, MemberId::parse)?;
            let member = self.get_member_checked(&caller, &id).await?;
            Ok::<_, ApiError>(pb::GetMemberResponse {
                member: Some(convert::member_to_proto(&member)),
            })
        })
        .await
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let mut invalid = carepath_core::Invalid::new();
            let plan_id = convert::optional(&mut invalid, "plan_id", &req.plan_id, PlanId::parse);
            let subscriber_id = convert::optional(
                &mut invalid,
                "subscriber_id",
                &req.subscriber_id,
                MemberId::parse,
            );
            invalid.into_result()?;
            let filter = MemberFilter {
                plan_id: plan_id.flatten(),
                subscriber_id: subscriber_id.flatten(),
            };
            // A subscriber may list their own covered family; everyone else needs staff access.
            let own_family = caller.actor.role == Role::Member
                && filter.subscriber_id.is_some()
                && filter.subscriber_id == caller.actor.member_id();
            if !own_family {
                require_staff(&caller.actor)
                    .map_err(|_| ApiError::denied("members are listed for staff only"))?;
            }
            let page = req.page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let found = self
                .app
                .store
                .list_members(&filter, &page.page_token, size)
                .await?;
            let mut tx = self.app.store.begin().await?;
            for m in &found.items {
                tx.append_audit(
                    &caller.audit_entry(
                        "member",
                        m.id.as_str(),
                        Some(&m.id),
                        AuditOutcome::Allowed,
                    ),
                    self.app.now(),
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, ApiError>(pb::ListMembersResponse {
                members: found.items.iter().map(convert::member_to_proto).collect(),
                next_page_token: token(found.next_page_token),
            })
        })
        .await
    }

    async fn upsert_provider(
        &self,
        request: Request<pb::UpsertProviderRequest>,
    ) -> Result<Response<pb::UpsertProviderResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            require_writer(&caller.actor)?;
            let provider = convert::provider_from_proto(request.into_inner().provider)?;
            let mut tx = self.app.store.begin().await?;
            let created = tx.upsert_provider(&provider, self.app.now()).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(pb::UpsertProviderResponse {
                provider: Some(convert::provider_to_proto(&provider)),
                created,
            })
        })
        .await
    }

    async fn get_provider(
        &self,
        request: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::GetProviderResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let npi = parse_id("npi", &request.get_ref().npi, Npi::parse)?;
            let provider = self.app.store.get_provider(&npi).await?;
            Ok::<_, ApiError>(pb::GetProviderResponse {
                provider: Some(convert::provider_to_proto(&provider)),
            })
        })
        .await
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        respond(async move {
            caller_of(&request)?;
            let req = request.into_inner();
            let kind = match req.kind {
                0 => None,
                k => Some(
                    provider_kind_from_proto(k)
                        .ok_or_else(|| {
                            ApiError::field("kind", "is not a known PROVIDER_KIND_* value")
                        })?
                        .as_str()
                        .to_owned(),
                ),
            };
            let filter = ProviderFilter {
                specialty: filter(&req.specialty)
                    .map(|s| s.to_lowercase().replace([' ', '-'], "_")),
                kind,
                country: filter(&req.country).map(|c| c.to_uppercase()),
                in_network_for_plan: filter(&req.in_network_for_plan),
                language: filter(&req.language).map(|l| l.to_lowercase()),
            };
            let page = req.page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let found = self
                .app
                .store
                .list_providers(&filter, &page.page_token, size)
                .await?;
            Ok::<_, ApiError>(pb::ListProvidersResponse {
                providers: found.items.iter().map(convert::provider_to_proto).collect(),
                next_page_token: token(found.next_page_token),
            })
        })
        .await
    }

    async fn upsert_staff(
        &self,
        request: Request<pb::UpsertStaffRequest>,
    ) -> Result<Response<pb::UpsertStaffResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            require_writer(&caller.actor)?;
            let staff = convert::staff_from_proto(request.into_inner().staff)?;
            let mut tx = self.app.store.begin().await?;
            let created = tx.upsert_staff(&staff, self.app.now()).await?;
            tx.commit().await?;
            Ok::<_, ApiError>(pb::UpsertStaffResponse {
                staff: Some(convert::staff_to_proto(&staff)),
                created,
            })
        })
        .await
    }

    async fn get_staff(
        &self,
        request: Request<pb::GetStaffRequest>,
    ) -> Result<Response<pb::GetStaffResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            require_staff(&caller.actor)?;
            let id = parse_id("id", &request.get_ref().id, StaffId::parse)?;
            let staff = self.app.store.get_staff(&id).await?;
            Ok::<_, ApiError>(pb::GetStaffResponse {
                staff: Some(convert::staff_to_proto(&staff)),
            })
        })
        .await
    }

    async fn list_staff(
        &self,
        request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            require_staff(&caller.actor)?;
            let req = request.into_inner();
            let role = match req.role {
                0 => None,
                r => Some(
                    staff_role_from_proto(r)
                        .ok_or_else(|| {
                            ApiError::field("role", "is not a known STAFF_ROLE_* value")
                        })?
                        .as_str()
                        .to_owned(),
                ),
            };
            let filter = StaffFilter {
                role,
                specialty: filter(&req.specialty),
            };
            let page = req.page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let found = self
                .app
                .store
                .list_staff(&filter, &page.page_token, size)
                .await?;
            Ok::<_, ApiError>(pb::ListStaffResponse {
                staff: found.items.iter().map(convert::staff_to_proto).collect(),
                next_page_token: token(found.next_page_token),
            })
        })
        .await
    }
}
