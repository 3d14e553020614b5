//! `carepath.directory.v1.DirectoryService`: the gRPC door of the directory (plans,
//! members, providers and staff).
//!
//! Each handler converts the request ([`convert`], and [`crate::convert`] for the
//! records), calls the use case of [`carepath_app::directory`] (which holds who may
//! read and write what, and audits member reads), and converts the answer back.

pub mod convert;

use carepath_core::{MemberId, Npi, PlanId, StaffId};
use carepath_proto::directory::v1::{self as pb, directory_service_server::DirectoryService};

use crate::{context::App, convert as records, door::grpc_service};

/// The directory service.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: carepath_app::directory::Directory,
}

impl Directory {
    pub fn new(app: App) -> Self {
        Directory {
            inner: carepath_app::directory::Directory::new(app),
        }
    }
}

grpc_service! {
    impl DirectoryService for Directory {
        rpc upsert_plan(request: pb::UpsertPlanRequest) -> pb::UpsertPlanResponse as |this, caller| {
            let plan = records::plan_from_proto(request.into_inner().plan)?;
            let out = this.inner.upsert_plan(&caller, plan).await?;
            Ok(pb::UpsertPlanResponse {
                plan: Some(records::plan_to_proto(&out.record)),
                created: out.created,
            })
        }

        rpc get_plan(request: pb::GetPlanRequest) -> pb::GetPlanResponse as |this, caller| {
            let id = convert::id("id", &request.get_ref().id, PlanId::parse)?;
            let plan = this.inner.get_plan(&caller, &id).await?;
            Ok(pb::GetPlanResponse {
                plan: Some(records::plan_to_proto(&plan)),
            })
        }

        rpc list_plans(request: pb::ListPlansRequest) -> pb::ListPlansResponse as |this, caller| {
            let page = convert::page(request.into_inner().page);
            let found = this.inner.list_plans(&caller, page).await?;
            Ok(pb::ListPlansResponse {
                plans: found.items.iter().map(records::plan_to_proto).collect(),
                next_page_token: found.next_page_token,
            })
        }

        rpc upsert_member(request: pb::UpsertMemberRequest) -> pb::UpsertMemberResponse as |this, caller| {
            let member =
                records::member_from_proto(request.into_inner().member, this.inner.today())?;
            let out = this.inner.upsert_member(&caller, member).await?;
            Ok(pb::UpsertMemberResponse {
                member: Some(records::member_to_proto(&out.record)),
                created: out.created,
            })
        }

        rpc get_member(request: pb::GetMemberRequest) -> pb::GetMemberResponse as |this, caller| {
            let id = convert::id("id", &request.get_ref().id, MemberId::parse)?;
            let member = this.inner.get_member(&caller, &id).await?;
            Ok(pb::GetMemberResponse {
                member: Some(records::member_to_proto(&member)),
            })
        }

        rpc list_members(request: pb::ListMembersRequest) -> pb::ListMembersResponse as |this, caller| {
            let cmd = convert::list_members(request.into_inner())?;
            let found = this.inner.list_members(&caller, cmd).await?;
            Ok(pb::ListMembersResponse {
                members: found.items.iter().map(records::member_to_proto).collect(),
                next_page_token: found.next_page_token,
            })
        }

        rpc upsert_provider(request: pb::UpsertProviderRequest) -> pb::UpsertProviderResponse as |this, caller| {
            let provider = records::provider_from_proto(request.into_inner().provider)?;
            let out = this.inner.upsert_provider(&caller, provider).await?;
            Ok(pb::UpsertProviderResponse {
                provider: Some(records::provider_to_proto(&out.record)),
                created: out.created,
            })
        }

        rpc get_provider(request: pb::GetProviderRequest) -> pb::GetProviderResponse as |this, caller| {
            let npi = convert::id("npi", &request.get_ref().npi, Npi::parse)?;
            let provider = this.inner.get_provider(&caller, &npi).await?;
            Ok(pb::GetProviderResponse {
                provider: Some(records::provider_to_proto(&provider)),
            })
        }

        rpc list_providers(request: pb::ListProvidersRequest) -> pb::ListProvidersResponse as |this, caller| {
            let cmd = convert::list_providers(request.into_inner())?;
            let found = this.inner.list_providers(&caller, cmd).await?;
            Ok(pb::ListProvidersResponse {
                providers: found.items.iter().map(records::provider_to_proto).collect(),
                next_page_token: found.next_page_token,
            })
        }

        rpc upsert_staff(request: pb::UpsertStaffRequest) -> pb::UpsertStaffResponse as |this, caller| {
            let staff = records::staff_from_proto(request.into_inner().staff)?;
            let out = this.inner.upsert_staff(&caller, staff).await?;
            Ok(pb::UpsertStaffResponse {
                staff: Some(records::staff_to_proto(&out.record)),
                created: out.created,
            })
        }

        rpc get_staff(request: pb::GetStaffRequest) -> pb::GetStaffResponse as |this, caller| {
            let id = convert::id("id", &request.get_ref().id, StaffId::parse)?;
            let staff = this.inner.get_staff(&caller, &id).await?;
            Ok(pb::GetStaffResponse {
                staff: Some(records::staff_to_proto(&staff)),
            })
        }

        rpc list_staff(request: pb::ListStaffRequest) -> pb::ListStaffResponse as |this, caller| {
            let cmd = convert::list_staff(request.into_inner())?;
            let found = this.inner.list_staff(&caller, cmd).await?;
            Ok(pb::ListStaffResponse {
                staff: found.items.iter().map(records::staff_to_proto).collect(),
                next_page_token: found.next_page_token,
            })
        }
    }
}
