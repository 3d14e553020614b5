//! `carepath.cases.v1.CaseService`: the gRPC door of nurse case management.
//!
//! Every handler takes the same three steps: the request becomes a command of domain
//! types ([`convert`]), the use case of [`carepath_app::cases`] runs it (who may see
//! and do what, the directory reads, the one command pipeline), and its answer becomes
//! the response. Nothing is decided here.

pub mod convert;

use carepath_proto::cases::v1::{self as pb, case_service_server::CaseService};
use tonic::{Request, Response, Status};

use crate::{
    context::{App, caller_of},
    error::respond,
};

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

#[tonic::async_trait]
impl CaseService for Cases {
    async fn open_case(
        &self,
        request: Request<pb::OpenCaseRequest>,
    ) -> Result<Response<pb::OpenCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::open_case(request.into_inner())?;
            let out = self.inner.open_case(&caller, cmd).await?;
            Ok(convert::open_case_to_proto(out))
        })
        .await
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::get_case(request.into_inner())?;
            let out = self.inner.get_case(&caller, &cmd).await?;
            Ok(convert::get_case_to_proto(out))
        })
        .await
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::list_cases(request.into_inner())?;
            let out = self.inner.list_cases(&caller, cmd).await?;
            Ok(convert::list_cases_to_proto(out))
        })
        .await
    }

    async fn claim_case(
        &self,
        request: Request<pb::ClaimCaseRequest>,
    ) -> Result<Response<pb::ClaimCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::claim_case(request.into_inner())?;
            let out = self.inner.claim_case(&caller, &cmd).await?;
            Ok(convert::claim_case_to_proto(out))
        })
        .await
    }

    async fn assign_case(
        &self,
        request: Request<pb::AssignCaseRequest>,
    ) -> Result<Response<pb::AssignCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::assign_case(request.into_inner())?;
            let out = self.inner.assign_case(&caller, cmd).await?;
            Ok(convert::assign_case_to_proto(out))
        })
        .await
    }

    async fn move_case(
        &self,
        request: Request<pb::MoveCaseRequest>,
    ) -> Result<Response<pb::MoveCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::move_case(request.into_inner())?;
            let out = self.inner.move_case(&caller, cmd).await?;
            Ok(convert::move_case_to_proto(out))
        })
        .await
    }

    async fn close_case(
        &self,
        request: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CloseCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::close_case(request.into_inner())?;
            let out = self.inner.close_case(&caller, cmd).await?;
            Ok(convert::close_case_to_proto(out))
        })
        .await
    }

    async fn decline_case(
        &self,
        request: Request<pb::DeclineCaseRequest>,
    ) -> Result<Response<pb::DeclineCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::decline_case(request.into_inner())?;
            let out = self.inner.decline_case(&caller, cmd).await?;
            Ok(convert::decline_case_to_proto(out))
        })
        .await
    }

    async fn add_goal(
        &self,
        request: Request<pb::AddGoalRequest>,
    ) -> Result<Response<pb::AddGoalResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::add_goal(request.into_inner())?;
            let out = self.inner.add_goal(&caller, cmd).await?;
            Ok(convert::add_goal_to_proto(out))
        })
        .await
    }

    async fn update_goal(
        &self,
        request: Request<pb::UpdateGoalRequest>,
    ) -> Result<Response<pb::UpdateGoalResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::update_goal(request.into_inner())?;
            let out = self.inner.update_goal(&caller, cmd).await?;
            Ok(convert::update_goal_to_proto(out))
        })
        .await
    }

    async fn add_task(
        &self,
        request: Request<pb::AddTaskRequest>,
    ) -> Result<Response<pb::AddTaskResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::add_task(request.into_inner())?;
            let out = self.inner.add_task(&caller, cmd).await?;
            Ok(convert::add_task_to_proto(out))
        })
        .await
    }

    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::UpdateTaskResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::update_task(request.into_inner())?;
            let out = self.inner.update_task(&caller, cmd).await?;
            Ok(convert::update_task_to_proto(out))
        })
        .await
    }

    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Result<Response<pb::RecordInteractionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::record_interaction(request.into_inner())?;
            let out = self.inner.record_interaction(&caller, cmd).await?;
            Ok(convert::record_interaction_to_proto(out))
        })
        .await
    }

    async fn record_transition(
        &self,
        request: Request<pb::RecordTransitionRequest>,
    ) -> Result<Response<pb::RecordTransitionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::record_transition(request.into_inner())?;
            let out = self.inner.record_transition(&caller, cmd).await?;
            Ok(convert::record_transition_to_proto(out))
        })
        .await
    }

    async fn arrange_service(
        &self,
        request: Request<pb::ArrangeServiceRequest>,
    ) -> Result<Response<pb::ArrangeServiceResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::arrange_service(request.into_inner())?;
            let out = self.inner.arrange_service(&caller, cmd).await?;
            Ok(convert::arrange_service_to_proto(out))
        })
        .await
    }

    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> Result<Response<pb::UpdateServiceResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::update_service(request.into_inner())?;
            let out = self.inner.update_service(&caller, cmd).await?;
            Ok(convert::update_service_to_proto(out))
        })
        .await
    }

    async fn request_decision_support(
        &self,
        request: Request<pb::RequestDecisionSupportRequest>,
    ) -> Result<Response<pb::RequestDecisionSupportResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::request_decision_support(request.into_inner())?;
            let out = self.inner.request_decision_support(&caller, cmd).await?;
            Ok(convert::request_decision_support_to_proto(out))
        })
        .await
    }

    async fn find_specialists(
        &self,
        request: Request<pb::FindSpecialistsRequest>,
    ) -> Result<Response<pb::FindSpecialistsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::find_specialists(request.into_inner())?;
            let out = self.inner.find_specialists(&caller, cmd).await?;
            Ok(convert::find_specialists_to_proto(out))
        })
        .await
    }

    async fn assess_care_abroad(
        &self,
        request: Request<pb::AssessCareAbroadRequest>,
    ) -> Result<Response<pb::AssessCareAbroadResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::assess_care_abroad(request.into_inner())?;
            let out = self.inner.assess_care_abroad(&caller, cmd).await?;
            Ok(convert::assess_care_abroad_to_proto(out))
        })
        .await
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::record_consent(request.into_inner())?;
            let out = self.inner.record_consent(&caller, cmd).await?;
            Ok(convert::record_consent_to_proto(out))
        })
        .await
    }

    async fn rate_case(
        &self,
        request: Request<pb::RateCaseRequest>,
    ) -> Result<Response<pb::RateCaseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::rate_case(request.into_inner())?;
            let out = self.inner.rate_case(&caller, cmd).await?;
            Ok(convert::rate_case_to_proto(out))
        })
        .await
    }

    async fn get_satisfaction_report(
        &self,
        request: Request<pb::GetSatisfactionReportRequest>,
    ) -> Result<Response<pb::GetSatisfactionReportResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::get_satisfaction_report(request.into_inner())?;
            let out = self.inner.satisfaction_report(&caller, cmd).await?;
            Ok(convert::get_satisfaction_report_to_proto(out))
        })
        .await
    }

    async fn get_work_list(
        &self,
        request: Request<pb::GetWorkListRequest>,
    ) -> Result<Response<pb::GetWorkListResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::get_work_list(request.into_inner())?;
            let out = self.inner.work_list(&caller, cmd).await?;
            Ok(convert::get_work_list_to_proto(out))
        })
        .await
    }
}
