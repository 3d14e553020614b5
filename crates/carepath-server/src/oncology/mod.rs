//! `carepath.oncology.v1.OncologyService`: the gRPC door of oncology pathway review
//! ([`carepath_app::oncology`]). Each call converts the request, runs the use case and
//! converts the answer back.

pub mod convert;

use std::sync::Arc;

use carepath_app::{App, oncology::Oncology as UseCases, precert::PrecertEngine};
use carepath_oncology::Catalogue;
use carepath_proto::oncology::v1::{self as pb, oncology_service_server::OncologyService};
use tonic::{Request, Response, Status};

pub use self::convert::plan_to_proto;
use crate::{context::caller_of, error::respond};

/// The oncology service.
#[derive(Debug, Clone)]
pub struct Oncology {
    inner: UseCases,
}

impl Oncology {
    /// The service over the oncology use cases.
    pub fn new(app: App, engine: Arc<PrecertEngine>, catalogue: Arc<Catalogue>) -> Self {
        Oncology {
            inner: UseCases::new(app, engine, catalogue),
        }
    }
}

#[tonic::async_trait]
impl OncologyService for Oncology {
    async fn evaluate_plan(
        &self,
        request: Request<pb::EvaluatePlanRequest>,
    ) -> Result<Response<pb::EvaluatePlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let plan = convert::plan_from_proto(request.into_inner().plan)?;
            let out = self.inner.evaluate_plan(&caller, &plan).await?;
            Ok(pb::EvaluatePlanResponse {
                evaluation: Some(convert::evaluation_to_proto(&out)),
            })
        })
        .await
    }

    async fn submit_plan(
        &self,
        request: Request<pb::SubmitPlanRequest>,
    ) -> Result<Response<pb::SubmitPlanResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::submit_plan(request.into_inner())?;
            let out = self.inner.submit_plan(&caller, cmd).await?;
            Ok(pb::SubmitPlanResponse {
                plan: Some(convert::submitted_to_proto(&out.plan)),
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
            let id = request.into_inner().id;
            let out = self.inner.get_plan(&caller, &id).await?;
            Ok(pb::GetPlanResponse {
                plan: Some(convert::submitted_to_proto(&out)),
            })
        })
        .await
    }

    async fn accept_alternative(
        &self,
        request: Request<pb::AcceptAlternativeRequest>,
    ) -> Result<Response<pb::AcceptAlternativeResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::accept_alternative(request.into_inner());
            let out = self.inner.accept_alternative(&caller, cmd).await?;
            Ok(pb::AcceptAlternativeResponse {
                plan: Some(convert::submitted_to_proto(&out)),
            })
        })
        .await
    }

    async fn list_pathways(
        &self,
        request: Request<pb::ListPathwaysRequest>,
    ) -> Result<Response<pb::ListPathwaysResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let page = convert::list_pathways(request.into_inner());
            let out = self.inner.list_pathways(&caller, page).await?;
            Ok(convert::pathways_to_proto(out))
        })
        .await
    }

    async fn get_pathway(
        &self,
        request: Request<pb::GetPathwayRequest>,
    ) -> Result<Response<pb::GetPathwayResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (cancer_id, context) = convert::get_pathway(request.into_inner())?;
            let out = self
                .inner
                .get_pathway(&caller, &cancer_id, &context)
                .await?;
            Ok(convert::pathway_to_proto(out))
        })
        .await
    }
}
