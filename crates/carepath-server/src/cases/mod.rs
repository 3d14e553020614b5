//! `carepath.cases.v1.CaseService`: the gRPC door of nurse case management.
//!
//! Every handler takes the same three steps: the request becomes a command of domain
//! types ([`convert`]), the use case of [`carepath_app::cases`] runs it (who may see
//! and do what, the directory reads, the one command pipeline), and its answer becomes
//! the response. Nothing is decided here.

pub mod convert;

use carepath_proto::cases::v1::{self as pb, case_service_server::CaseService};

use crate::{context::App, door::grpc_service};

/// The case-management service.
#[derive(Debug, Clone)]
pub struct Cases {
    inner: carepath_app::cases::Cases,
}

impl Cases {
    /// The service over `app`, with the default caseload cap.
    pub fn new(app: App) -> Self {
        Cases {
            inner: carepath_app::cases::Cases::new(app),
        }
    }

    /// The same service with another caseload cap.
    pub fn with_caseload_cap(self, cap: u32) -> Self {
        Cases {
            inner: self.inner.with_caseload_cap(cap),
        }
    }
}

grpc_service! {
    impl CaseService for Cases {
        rpc open_case(request: pb::OpenCaseRequest) -> pb::OpenCaseResponse as |this, caller| {
            let cmd = convert::open_case(request.into_inner())?;
            let out = this.inner.open_case(&caller, cmd).await?;
            Ok(convert::open_case_to_proto(out))
        }

        rpc get_case(request: pb::GetCaseRequest) -> pb::GetCaseResponse as |this, caller| {
            let cmd = convert::get_case(request.into_inner())?;
            let out = this.inner.get_case(&caller, &cmd).await?;
            Ok(convert::get_case_to_proto(out))
        }

        rpc list_cases(request: pb::ListCasesRequest) -> pb::ListCasesResponse as |this, caller| {
            let cmd = convert::list_cases(request.into_inner())?;
            let out = this.inner.list_cases(&caller, cmd).await?;
            Ok(convert::list_cases_to_proto(out))
        }

        rpc claim_case(request: pb::ClaimCaseRequest) -> pb::ClaimCaseResponse as |this, caller| {
            let cmd = convert::claim_case(request.into_inner())?;
            let out = this.inner.claim_case(&caller, &cmd).await?;
            Ok(convert::claim_case_to_proto(out))
        }

        rpc assign_case(request: pb::AssignCaseRequest) -> pb::AssignCaseResponse as |this, caller| {
            let cmd = convert::assign_case(request.into_inner())?;
            let out = this.inner.assign_case(&caller, cmd).await?;
            Ok(convert::assign_case_to_proto(out))
        }

        rpc move_case(request: pb::MoveCaseRequest) -> pb::MoveCaseResponse as |this, caller| {
            let cmd = convert::move_case(request.into_inner())?;
            let out = this.inner.move_case(&caller, cmd).await?;
            Ok(convert::move_case_to_proto(out))
        }

        rpc close_case(request: pb::CloseCaseRequest) -> pb::CloseCaseResponse as |this, caller| {
            let cmd = convert::close_case(request.into_inner())?;
            let out = this.inner.close_case(&caller, cmd).await?;
            Ok(convert::close_case_to_proto(out))
        }

        rpc decline_case(request: pb::DeclineCaseRequest) -> pb::DeclineCaseResponse as |this, caller| {
            let cmd = convert::decline_case(request.into_inner())?;
            let out = this.inner.decline_case(&caller, cmd).await?;
            Ok(convert::decline_case_to_proto(out))
        }

        rpc add_goal(request: pb::AddGoalRequest) -> pb::AddGoalResponse as |this, caller| {
            let cmd = convert::add_goal(request.into_inner())?;
            let out = this.inner.add_goal(&caller, cmd).await?;
            Ok(convert::add_goal_to_proto(out))
        }

        rpc update_goal(request: pb::UpdateGoalRequest) -> pb::UpdateGoalResponse as |this, caller| {
            let cmd = convert::update_goal(request.into_inner())?;
            let out = this.inner.update_goal(&caller, cmd).await?;
            Ok(convert::update_goal_to_proto(out))
        }

        rpc add_task(request: pb::AddTaskRequest) -> pb::AddTaskResponse as |this, caller| {
            let cmd = convert::add_task(request.into_inner())?;
            let out = this.inner.add_task(&caller, cmd).await?;
            Ok(convert::add_task_to_proto(out))
        }

        rpc update_task(request: pb::UpdateTaskRequest) -> pb::UpdateTaskResponse as |this, caller| {
            let cmd = convert::update_task(request.into_inner())?;
            let out = this.inner.update_task(&caller, cmd).await?;
            Ok(convert::update_task_to_proto(out))
        }

        rpc record_interaction(request: pb::RecordInteractionRequest) -> pb::RecordInteractionResponse as |this, caller| {
            let cmd = convert::record_interaction(request.into_inner())?;
            let out = this.inner.record_interaction(&caller, cmd).await?;
            Ok(convert::record_interaction_to_proto(out))
        }

        rpc record_transition(request: pb::RecordTransitionRequest) -> pb::RecordTransitionResponse as |this, caller| {
            let cmd = convert::record_transition(request.into_inner())?;
            let out = this.inner.record_transition(&caller, cmd).await?;
            Ok(convert::record_transition_to_proto(out))
        }

        rpc arrange_service(request: pb::ArrangeServiceRequest) -> pb::ArrangeServiceResponse as |this, caller| {
            let cmd = convert::arrange_service(request.into_inner())?;
            let out = this.inner.arrange_service(&caller, cmd).await?;
            Ok(convert::arrange_service_to_proto(out))
        }

        rpc update_service(request: pb::UpdateServiceRequest) -> pb::UpdateServiceResponse as |this, caller| {
            let cmd = convert::update_service(request.into_inner())?;
            let out = this.inner.update_service(&caller, cmd).await?;
            Ok(convert::update_service_to_proto(out))
        }

        rpc request_decision_support(request: pb::RequestDecisionSupportRequest) -> pb::RequestDecisionSupportResponse as |this, caller| {
            let cmd = convert::request_decision_support(request.into_inner())?;
            let out = this.inner.request_decision_support(&caller, cmd).await?;
            Ok(convert::request_decision_support_to_proto(out))
        }

        rpc find_specialists(request: pb::FindSpecialistsRequest) -> pb::FindSpecialistsResponse as |this, caller| {
            let cmd = convert::find_specialists(request.into_inner())?;
            let out = this.inner.find_specialists(&caller, cmd).await?;
            Ok(convert::find_specialists_to_proto(out))
        }

        rpc assess_care_abroad(request: pb::AssessCareAbroadRequest) -> pb::AssessCareAbroadResponse as |this, caller| {
            let cmd = convert::assess_care_abroad(request.into_inner())?;
            let out = this.inner.assess_care_abroad(&caller, cmd).await?;
            Ok(convert::assess_care_abroad_to_proto(out))
        }

        rpc record_consent(request: pb::RecordConsentRequest) -> pb::RecordConsentResponse as |this, caller| {
            let cmd = convert::record_consent(request.into_inner())?;
            let out = this.inner.record_consent(&caller, cmd).await?;
            Ok(convert::record_consent_to_proto(out))
        }

        rpc rate_case(request: pb::RateCaseRequest) -> pb::RateCaseResponse as |this, caller| {
            let cmd = convert::rate_case(request.into_inner())?;
            let out = this.inner.rate_case(&caller, cmd).await?;
            Ok(convert::rate_case_to_proto(out))
        }

        rpc get_satisfaction_report(request: pb::GetSatisfactionReportRequest) -> pb::GetSatisfactionReportResponse as |this, caller| {
            let cmd = convert::get_satisfaction_report(request.into_inner())?;
            let out = this.inner.satisfaction_report(&caller, cmd).await?;
            Ok(convert::get_satisfaction_report_to_proto(out))
        }

        rpc get_work_list(request: pb::GetWorkListRequest) -> pb::GetWorkListResponse as |this, caller| {
            let cmd = convert::get_work_list(request.into_inner())?;
            let out = this.inner.work_list(&caller, cmd).await?;
            Ok(convert::get_work_list_to_proto(out))
        }
    }
}
