//! `carepath.directory.v1.DirectoryService`: the gRPC door of the directory (plans,
//! members, providers and staff).
//!
//! Each handler converts the request ([`convert`], and [`crate::convert`] for the
//! records), calls the use case of [`carepath_app::directory`] (which holds who may
//! read and write what, and audits member reads), and converts the answer back.

pub mod convert;

use carepath_core::{MemberId, Npi, PlanId, StaffId};
use carepath_proto::directory::v1::{self as pb, directory_service_server::DirectoryService};
use tonic::{Request, Response, Status};

use crate::{
    context::{App, caller_of},
    convert as records,
    error::respond,
};

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

#[tonic::async_trait]
impl DirectoryService for Directory {
    async fn upsert_plan(
        &self,
        request: Request<pb::UpsertPlanRequest>,
    ) -> Result<Response<pb::UpsertPlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let plan = records::plan_from_proto(request.into_inner().plan)?;
            let out = self.inner.upsert_plan(&caller, plan).await?;
            Ok(pb::UpsertPlanResponse {
                plan: Some(records::plan_to_proto(&out.record)),
                created: out.created,
            })
        })
        .await
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = convert::id("id", &request.get_ref().id, PlanId::parse)?;
            let plan = self.inner.get_plan(&caller, &id).await?;
            Ok(pb::GetPlanResponse {
                plan: Some(records::plan_to_proto(&plan)),
            })
        })
        .await
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let page = convert::page(request.into_inner().page);
            let found = self.inner.list_plans(&caller, page).await?;
            Ok(pb::ListPlansResponse {
                plans: found.items.iter().map(records::plan_to_proto).collect(),
                next_page_token: found.next_page_token,
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
            let member =
                records::member_from_proto(request.into_inner().member, self.inner.today())?;
            let out = self.inner.upsert_member(&caller, member).await?;
            Ok(pb::UpsertMemberResponse {
                member: Some(records::member_to_proto(&out.record)),
                created: out.created,
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
            let id = convert::id("id", &request.get_ref().id, MemberId::parse)?;
            let member = self.inner.get_member(&caller, &id).await?;
            Ok(pb::GetMemberResponse {
                member: Some(records::member_to_proto(&member)),
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
            let cmd = convert::list_members(request.into_inner())?;
            let found = self.inner.list_members(&caller, cmd).await?;
            Ok(pb::ListMembersResponse {
                members: found.items.iter().map(records::member_to_proto).collect(),
                next_page_token: found.next_page_token,
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
            let provider = records::provider_from_proto(request.into_inner().provider)?;
            let out = self.inner.upsert_provider(&caller, provider).await?;
            Ok(pb::UpsertProviderResponse {
                provider: Some(records::provider_to_proto(&out.record)),
                created: out.created,
            })
        })
        .await
    }

    async fn get_provider(
        &self,
        request: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::GetProviderResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let npi = convert::id("npi", &request.get_ref().npi, Npi::parse)?;
            let provider = self.inner.get_provider(&caller, &npi).await?;
            Ok(pb::GetProviderResponse {
                provider: Some(records::provider_to_proto(&provider)),
            })
        })
        .await
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::list_providers(request.into_inner())?;
            let found = self.inner.list_providers(&caller, cmd).await?;
            Ok(pb::ListProvidersResponse {
                providers: found.items.iter().map(records::provider_to_proto).collect(),
                next_page_token: found.next_page_token,
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
            let staff = records::staff_from_proto(request.into_inner().staff)?;
            let out = self.inner.upsert_staff(&caller, staff).await?;
            Ok(pb::UpsertStaffResponse {
                staff: Some(records::staff_to_proto(&out.record)),
                created: out.created,
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
            let id = convert::id("id", &request.get_ref().id, StaffId::parse)?;
            let staff = self.inner.get_staff(&caller, &id).await?;
            Ok(pb::GetStaffResponse {
                staff: Some(records::staff_to_proto(&staff)),
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
            let cmd = convert::list_staff(request.into_inner())?;
            let found = self.inner.list_staff(&caller, cmd).await?;
            Ok(pb::ListStaffResponse {
                staff: found.items.iter().map(records::staff_to_proto).collect(),
                next_page_token: found.next_page_token,
            })
        })
        .await
    }
}
