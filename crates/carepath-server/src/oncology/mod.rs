//! `carepath.oncology.v1.OncologyService`: the gRPC door of oncology pathway review
//! ([`carepath_app::oncology`]). Each call converts the request, runs the use case and
//! converts the answer back.

pub mod convert;

use std::sync::Arc;

use carepath_app::{App, oncology::Oncology as UseCases, precert::PrecertEngine};
use carepath_oncology::Catalogue;
use carepath_proto::oncology::v1::{self as pb, oncology_service_server::OncologyService};

pub use self::convert::plan_to_proto;
use crate::door::grpc_service;

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

grpc_service! {
    impl OncologyService for Oncology {
        rpc evaluate_plan(request: pb::EvaluatePlanRequest) -> pb::EvaluatePlanResponse as |this, caller| {
            let plan = convert::plan_from_proto(request.into_inner().plan)?;
            let out = this.inner.evaluate_plan(&caller, &plan).await?;
            Ok(pb::EvaluatePlanResponse {
                evaluation: Some(convert::evaluation_to_proto(&out)),
            })
        }

        rpc submit_plan(request: pb::SubmitPlanRequest) -> pb::SubmitPlanResponse as |this, caller| {
            let cmd = convert::submit_plan(request.into_inner())?;
            let out = this.inner.submit_plan(&caller, cmd).await?;
            Ok(pb::SubmitPlanResponse {
                plan: Some(convert::submitted_to_proto(&out.plan)),
                created: out.created,
            })
        }

        rpc get_plan(request: pb::GetPlanRequest) -> pb::GetPlanResponse as |this, caller| {
            let id = request.into_inner().id;
            let out = this.inner.get_plan(&caller, &id).await?;
            Ok(pb::GetPlanResponse {
                plan: Some(convert::submitted_to_proto(&out)),
            })
        }

        rpc accept_alternative(request: pb::AcceptAlternativeRequest) -> pb::AcceptAlternativeResponse as |this, caller| {
            let cmd = convert::accept_alternative(request.into_inner());
            let out = this.inner.accept_alternative(&caller, cmd).await?;
            Ok(pb::AcceptAlternativeResponse {
                plan: Some(convert::submitted_to_proto(&out)),
            })
        }

        rpc list_pathways(request: pb::ListPathwaysRequest) -> pb::ListPathwaysResponse as |this, caller| {
            let page = convert::list_pathways(request.into_inner());
            let out = this.inner.list_pathways(&caller, page).await?;
            Ok(convert::pathways_to_proto(out))
        }

        rpc get_pathway(request: pb::GetPathwayRequest) -> pb::GetPathwayResponse as |this, caller| {
            let (cancer_id, context) = convert::get_pathway(request.into_inner())?;
            let out = this
                .inner
                .get_pathway(&caller, &cancer_id, &context)
                .await?;
            Ok(convert::pathway_to_proto(out))
        }
    }
}
