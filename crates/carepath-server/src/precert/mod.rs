//! `carepath.precert.v1.PrecertService`: requirement checks, submissions, clinical
//! review and the paths after a decision, gold cards, metrics and rule lists.
//!
//! Each handler converts the request ([`convert`]), calls the use case of
//! [`carepath_app::precert::Precert`] and converts the answer back; who may do what,
//! the workflow and storage are the application's.

pub mod convert;
pub use carepath_app::precert::engine;

use std::sync::Arc;

use carepath_app::precert::PrecertEngine;
use carepath_proto::precert::v1::{self as pb, precert_service_server::PrecertService};
use tonic::{Request, Response, Status};

use crate::{
    context::{App, caller_of},
    error::respond,
};

/// The precertification service: the gRPC door to the precertification use cases.
#[derive(Debug, Clone)]
pub struct Precert {
    inner: carepath_app::precert::Precert,
}

impl Precert {
    /// The service over `app`, deciding with `engine`'s rules and exemptions.
    pub fn new(app: App, engine: Arc<PrecertEngine>) -> Self {
        Precert::over(carepath_app::precert::Precert::new(app, engine))
    }

    /// The service over use cases already built (shared with the sweeps).
    pub fn over(inner: carepath_app::precert::Precert) -> Self {
        Precert { inner }
    }

    /// The use cases behind the service.
    pub fn use_cases(&self) -> &carepath_app::precert::Precert {
        &self.inner
    }
}

#[tonic::async_trait]
impl PrecertService for Precert {
    async fn check_requirement(
        &self,
        request: Request<pb::CheckRequirementRequest>,
    ) -> Result<Response<pb::CheckRequirementResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::check_requirement(request.into_inner())?;
            let out = self.inner.check(&caller, cmd).await?;
            Ok(pb::CheckRequirementResponse {
                answer: convert::answers_to_proto(out).pop(),
            })
        })
        .await
    }

    async fn batch_check_requirements(
        &self,
        request: Request<pb::BatchCheckRequirementsRequest>,
    ) -> Result<Response<pb::BatchCheckRequirementsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::batch_check_requirements(request.into_inner())?;
            let out = self.inner.check(&caller, cmd).await?;
            Ok(pb::BatchCheckRequirementsResponse {
                answers: convert::answers_to_proto(out),
            })
        })
        .await
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::submit(request.into_inner())?;
            let out = self.inner.submit(&caller, cmd).await?;
            Ok(convert::submitted_to_proto(out))
        })
        .await
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = convert::case_id(&request.get_ref().id, "id")?;
            let out = self.inner.get_case(&caller, &id).await?;
            Ok(pb::GetCaseResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let query = convert::list_cases(request.into_inner())?;
            let out = self.inner.list_cases(&caller, query).await?;
            let (cases, next_page_token) = convert::cases(out);
            Ok(pb::ListCasesResponse {
                cases,
                next_page_token,
            })
        })
        .await
    }

    async fn supply_information(
        &self,
        request: Request<pb::SupplyInformationRequest>,
    ) -> Result<Response<pb::SupplyInformationResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let (id, information) =
                convert::later_information(&req.case_id, req.answers, req.records)?;
            let out = (self.inner)
                .supply_information(&caller, &id, information)
                .await?;
            Ok(pb::SupplyInformationResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn withdraw_case(
        &self,
        request: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::WithdrawCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.get_ref();
            let id = convert::case_id(&req.case_id, "case_id")?;
            let out = self.inner.withdraw(&caller, &id, &req.reason).await?;
            Ok(pb::WithdrawCaseResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn list_review_queue(
        &self,
        request: Request<pb::ListReviewQueueRequest>,
    ) -> Result<Response<pb::ListReviewQueueResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let page = convert::page(request.into_inner().page);
            let out = self.inner.review_queue(&caller, page).await?;
            let (cases, next_page_token) = convert::cases(out);
            Ok(pb::ListReviewQueueResponse {
                cases,
                next_page_token,
            })
        })
        .await
    }

    async fn claim_case(
        &self,
        request: Request<pb::ClaimCaseRequest>,
    ) -> Result<Response<pb::ClaimCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = convert::case_id(&request.get_ref().case_id, "case_id")?;
            let out = self.inner.claim(&caller, &id).await?;
            Ok(pb::ClaimCaseResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn release_case(
        &self,
        request: Request<pb::ReleaseCaseRequest>,
    ) -> Result<Response<pb::ReleaseCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = convert::case_id(&request.get_ref().case_id, "case_id")?;
            let out = self.inner.release(&caller, &id).await?;
            Ok(pb::ReleaseCaseResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn request_information(
        &self,
        request: Request<pb::RequestInformationRequest>,
    ) -> Result<Response<pb::RequestInformationResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (id, items) = convert::request_information(request.into_inner())?;
            let out = self.inner.request_information(&caller, &id, items).await?;
            Ok(pb::RequestInformationResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn record_decision(
        &self,
        request: Request<pb::RecordDecisionRequest>,
    ) -> Result<Response<pb::RecordDecisionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (id, decision) = convert::record_decision(request.into_inner())?;
            let out = self.inner.decide(&caller, &id, decision).await?;
            Ok(pb::RecordDecisionResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn request_peer_to_peer(
        &self,
        request: Request<pb::RequestPeerToPeerRequest>,
    ) -> Result<Response<pb::RequestPeerToPeerResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = convert::case_id(&request.get_ref().case_id, "case_id")?;
            let out = self.inner.request_peer_to_peer(&caller, &id).await?;
            Ok(pb::RequestPeerToPeerResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn schedule_peer_to_peer(
        &self,
        request: Request<pb::SchedulePeerToPeerRequest>,
    ) -> Result<Response<pb::SchedulePeerToPeerResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (id, at) = convert::schedule_peer_to_peer(request.into_inner())?;
            let out = self.inner.schedule_peer_to_peer(&caller, &id, at).await?;
            Ok(pb::SchedulePeerToPeerResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn complete_peer_to_peer(
        &self,
        request: Request<pb::CompletePeerToPeerRequest>,
    ) -> Result<Response<pb::CompletePeerToPeerResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.get_ref();
            let id = convert::case_id(&req.case_id, "case_id")?;
            let out = (self.inner)
                .complete_peer_to_peer(&caller, &id, req.overturned, &req.note)
                .await?;
            Ok(pb::CompletePeerToPeerResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn request_reconsideration(
        &self,
        request: Request<pb::RequestReconsiderationRequest>,
    ) -> Result<Response<pb::RequestReconsiderationResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let (id, information) =
                convert::later_information(&req.case_id, req.answers, req.records)?;
            let out = self.inner.reconsider(&caller, &id, information).await?;
            Ok(pb::RequestReconsiderationResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn request_appeal(
        &self,
        request: Request<pb::RequestAppealRequest>,
    ) -> Result<Response<pb::RequestAppealResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.get_ref();
            let id = convert::case_id(&req.case_id, "case_id")?;
            let out = (self.inner)
                .appeal(&caller, &id, req.expedited, &req.reason)
                .await?;
            Ok(pb::RequestAppealResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn decide_appeal(
        &self,
        request: Request<pb::DecideAppealRequest>,
    ) -> Result<Response<pb::DecideAppealResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (id, overturn, adverse) = convert::decide_appeal(request.into_inner())?;
            let out = (self.inner)
                .decide_appeal(&caller, &id, overturn, adverse)
                .await?;
            Ok(pb::DecideAppealResponse {
                case: convert::case(&out),
            })
        })
        .await
    }

    async fn evaluate_gold_cards(
        &self,
        request: Request<pb::EvaluateGoldCardsRequest>,
    ) -> Result<Response<pb::EvaluateGoldCardsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let out = self.inner.evaluate_gold_cards_for(&caller).await?;
            Ok(pb::EvaluateGoldCardsResponse {
                gold_cards: out.into_iter().map(convert::gold_card_to_proto).collect(),
            })
        })
        .await
    }

    async fn list_gold_cards(
        &self,
        request: Request<pb::ListGoldCardsRequest>,
    ) -> Result<Response<pb::ListGoldCardsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (npi, page) = convert::list_gold_cards(request.into_inner())?;
            let out = self.inner.list_gold_cards(&caller, npi, page).await?;
            Ok(pb::ListGoldCardsResponse {
                gold_cards: out
                    .items
                    .into_iter()
                    .map(convert::gold_card_to_proto)
                    .collect(),
                next_page_token: out.next_page_token,
            })
        })
        .await
    }

    async fn get_metrics(
        &self,
        request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let period = convert::get_metrics(request.into_inner())?;
            let out = self.inner.metrics(&caller, period).await?;
            Ok(convert::metrics_to_proto(out))
        })
        .await
    }

    async fn list_rule_lists(
        &self,
        request: Request<pb::ListRuleListsRequest>,
    ) -> Result<Response<pb::ListRuleListsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let page = convert::page(request.into_inner().page);
            let out = self.inner.list_rule_lists(&caller, page).await?;
            Ok(pb::ListRuleListsResponse {
                lists: out
                    .items
                    .into_iter()
                    .map(convert::rule_list_to_proto)
                    .collect(),
                next_page_token: out.next_page_token,
            })
        })
        .await
    }

    async fn validate_rule_list(
        &self,
        request: Request<pb::ValidateRuleListRequest>,
    ) -> Result<Response<pb::ValidateRuleListResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = (self.inner)
                .validate_rule_list(&caller, &req.source_name, &req.source)
                .await?;
            Ok(convert::validation_to_proto(out))
        })
        .await
    }

    async fn activate_rule_list(
        &self,
        request: Request<pb::ActivateRuleListRequest>,
    ) -> Result<Response<pb::ActivateRuleListResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = (self.inner)
                .activate_rule_list(&caller, &req.source_name, req.source)
                .await?;
            Ok(pb::ActivateRuleListResponse {
                list: Some(convert::rule_list_to_proto(out)),
            })
        })
        .await
    }
}
