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

use crate::{context::App, door::grpc_service};

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

grpc_service! {
    impl PrecertService for Precert {
        rpc check_requirement(request: pb::CheckRequirementRequest) -> pb::CheckRequirementResponse as |this, caller| {
            let cmd = convert::check_requirement(request.into_inner())?;
            // The command's one line is the request's `line`.
            let out = this.inner.check(&caller, cmd).await.map_err(|e| match e {
                carepath_app::AppError::Invalid(v) => {
                    carepath_app::AppError::Invalid(v.rename_prefix("lines[0]", "line"))
                }
                other => other,
            })?;
            Ok(pb::CheckRequirementResponse {
                answer: convert::answers_to_proto(out).pop(),
            })
        }

        rpc batch_check_requirements(request: pb::BatchCheckRequirementsRequest) -> pb::BatchCheckRequirementsResponse as |this, caller| {
            let cmd = convert::batch_check_requirements(request.into_inner())?;
            let out = this.inner.check(&caller, cmd).await?;
            Ok(pb::BatchCheckRequirementsResponse {
                answers: convert::answers_to_proto(out),
            })
        }

        rpc submit(request: pb::SubmitRequest) -> pb::SubmitResponse as |this, caller| {
            let cmd = convert::submit(request.into_inner())?;
            let out = this.inner.submit(&caller, cmd).await?;
            Ok(convert::submitted_to_proto(out))
        }

        rpc get_case(request: pb::GetCaseRequest) -> pb::GetCaseResponse as |this, caller| {
            let id = convert::case_id(&request.get_ref().id, "id")?;
            let out = this.inner.get_case(&caller, &id).await?;
            Ok(pb::GetCaseResponse {
                case: convert::case(&out),
            })
        }

        rpc list_cases(request: pb::ListCasesRequest) -> pb::ListCasesResponse as |this, caller| {
            let query = convert::list_cases(request.into_inner())?;
            let out = this.inner.list_cases(&caller, query).await?;
            let (cases, next_page_token) = convert::cases(out);
            Ok(pb::ListCasesResponse {
                cases,
                next_page_token,
            })
        }

        rpc supply_information(request: pb::SupplyInformationRequest) -> pb::SupplyInformationResponse as |this, caller| {
            let req = request.into_inner();
            let (id, information) =
                convert::later_information(&req.case_id, req.answers, req.records)?;
            let out = (this.inner)
                .supply_information(&caller, &id, information)
                .await?;
            Ok(pb::SupplyInformationResponse {
                case: convert::case(&out),
            })
        }

        rpc withdraw_case(request: pb::WithdrawCaseRequest) -> pb::WithdrawCaseResponse as |this, caller| {
            let req = request.get_ref();
            let id = convert::case_id(&req.case_id, "case_id")?;
            let out = this.inner.withdraw(&caller, &id, &req.reason).await?;
            Ok(pb::WithdrawCaseResponse {
                case: convert::case(&out),
            })
        }

        rpc list_review_queue(request: pb::ListReviewQueueRequest) -> pb::ListReviewQueueResponse as |this, caller| {
            let page = convert::page(request.into_inner().page);
            let out = this.inner.review_queue(&caller, page).await?;
            let (cases, next_page_token) = convert::cases(out);
            Ok(pb::ListReviewQueueResponse {
                cases,
                next_page_token,
            })
        }

        rpc claim_case(request: pb::ClaimCaseRequest) -> pb::ClaimCaseResponse as |this, caller| {
            let id = convert::case_id(&request.get_ref().case_id, "case_id")?;
            let out = this.inner.claim(&caller, &id).await?;
            Ok(pb::ClaimCaseResponse {
                case: convert::case(&out),
            })
        }

        rpc release_case(request: pb::ReleaseCaseRequest) -> pb::ReleaseCaseResponse as |this, caller| {
            let id = convert::case_id(&request.get_ref().case_id, "case_id")?;
            let out = this.inner.release(&caller, &id).await?;
            Ok(pb::ReleaseCaseResponse {
                case: convert::case(&out),
            })
        }

        rpc request_information(request: pb::RequestInformationRequest) -> pb::RequestInformationResponse as |this, caller| {
            let (id, items) = convert::request_information(request.into_inner())?;
            let out = this.inner.request_information(&caller, &id, items).await?;
            Ok(pb::RequestInformationResponse {
                case: convert::case(&out),
            })
        }

        rpc record_decision(request: pb::RecordDecisionRequest) -> pb::RecordDecisionResponse as |this, caller| {
            let (id, decision) = convert::record_decision(request.into_inner())?;
            let out = this.inner.decide(&caller, &id, decision).await?;
            Ok(pb::RecordDecisionResponse {
                case: convert::case(&out),
            })
        }

        rpc request_peer_to_peer(request: pb::RequestPeerToPeerRequest) -> pb::RequestPeerToPeerResponse as |this, caller| {
            let id = convert::case_id(&request.get_ref().case_id, "case_id")?;
            let out = this.inner.request_peer_to_peer(&caller, &id).await?;
            Ok(pb::RequestPeerToPeerResponse {
                case: convert::case(&out),
            })
        }

        rpc schedule_peer_to_peer(request: pb::SchedulePeerToPeerRequest) -> pb::SchedulePeerToPeerResponse as |this, caller| {
            let (id, at) = convert::schedule_peer_to_peer(request.into_inner())?;
            let out = this.inner.schedule_peer_to_peer(&caller, &id, at).await?;
            Ok(pb::SchedulePeerToPeerResponse {
                case: convert::case(&out),
            })
        }

        rpc complete_peer_to_peer(request: pb::CompletePeerToPeerRequest) -> pb::CompletePeerToPeerResponse as |this, caller| {
            let req = request.get_ref();
            let id = convert::case_id(&req.case_id, "case_id")?;
            let out = (this.inner)
                .complete_peer_to_peer(&caller, &id, req.overturned, &req.note)
                .await?;
            Ok(pb::CompletePeerToPeerResponse {
                case: convert::case(&out),
            })
        }

        rpc request_reconsideration(request: pb::RequestReconsiderationRequest) -> pb::RequestReconsiderationResponse as |this, caller| {
            let req = request.into_inner();
            let (id, information) =
                convert::later_information(&req.case_id, req.answers, req.records)?;
            let out = this.inner.reconsider(&caller, &id, information).await?;
            Ok(pb::RequestReconsiderationResponse {
                case: convert::case(&out),
            })
        }

        rpc request_appeal(request: pb::RequestAppealRequest) -> pb::RequestAppealResponse as |this, caller| {
            let req = request.get_ref();
            let id = convert::case_id(&req.case_id, "case_id")?;
            let out = (this.inner)
                .appeal(&caller, &id, req.expedited, &req.reason)
                .await?;
            Ok(pb::RequestAppealResponse {
                case: convert::case(&out),
            })
        }

        rpc decide_appeal(request: pb::DecideAppealRequest) -> pb::DecideAppealResponse as |this, caller| {
            let (id, overturn, adverse) = convert::decide_appeal(request.into_inner())?;
            let out = (this.inner)
                .decide_appeal(&caller, &id, overturn, adverse)
                .await?;
            Ok(pb::DecideAppealResponse {
                case: convert::case(&out),
            })
        }

        rpc evaluate_gold_cards(request: pb::EvaluateGoldCardsRequest) -> pb::EvaluateGoldCardsResponse as |this, caller| {
            let out = this.inner.evaluate_gold_cards_for(&caller).await?;
            Ok(pb::EvaluateGoldCardsResponse {
                gold_cards: out.into_iter().map(convert::gold_card_to_proto).collect(),
            })
        }

        rpc list_gold_cards(request: pb::ListGoldCardsRequest) -> pb::ListGoldCardsResponse as |this, caller| {
            let (npi, page) = convert::list_gold_cards(request.into_inner())?;
            let out = this.inner.list_gold_cards(&caller, npi, page).await?;
            Ok(pb::ListGoldCardsResponse {
                gold_cards: out
                    .items
                    .into_iter()
                    .map(convert::gold_card_to_proto)
                    .collect(),
                next_page_token: out.next_page_token,
            })
        }

        rpc get_metrics(request: pb::GetMetricsRequest) -> pb::GetMetricsResponse as |this, caller| {
            let period = convert::get_metrics(request.into_inner())?;
            let out = this.inner.metrics(&caller, period).await?;
            Ok(convert::metrics_to_proto(out))
        }

        rpc list_rule_lists(request: pb::ListRuleListsRequest) -> pb::ListRuleListsResponse as |this, caller| {
            let page = convert::page(request.into_inner().page);
            let out = this.inner.list_rule_lists(&caller, page).await?;
            Ok(pb::ListRuleListsResponse {
                lists: out
                    .items
                    .into_iter()
                    .map(convert::rule_list_to_proto)
                    .collect(),
                next_page_token: out.next_page_token,
            })
        }

        rpc validate_rule_list(request: pb::ValidateRuleListRequest) -> pb::ValidateRuleListResponse as |this, caller| {
            let req = request.into_inner();
            let out = (this.inner)
                .validate_rule_list(&caller, &req.source_name, &req.source)
                .await?;
            Ok(convert::validation_to_proto(out))
        }

        rpc activate_rule_list(request: pb::ActivateRuleListRequest) -> pb::ActivateRuleListResponse as |this, caller| {
            let req = request.into_inner();
            let out = (this.inner)
                .activate_rule_list(&caller, &req.source_name, req.source)
                .await?;
            Ok(pb::ActivateRuleListResponse {
                list: Some(convert::rule_list_to_proto(out)),
            })
        }
    }
}
