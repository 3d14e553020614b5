//! `carepath.secondopinion.v1.SecondOpinionService`: eligibility, questionnaires,
//! records, the lead physician, the opinion and what follows it, secure messages and
//! status, live.
//!
//! Every handler converts the request ([`convert`]), calls the use case of
//! [`carepath_app::secondopinion::SecondOpinion`], and converts the answer back
//! ([`to_proto`]).

pub mod convert;
pub mod to_proto;

use std::pin::Pin;

use carepath_app::secondopinion::SecondOpinion as UseCases;
use carepath_proto::secondopinion::v1::{
    self as pb, second_opinion_service_server::SecondOpinionService,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    context::{App, caller_of},
    error::respond,
};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The second-opinion service.
#[derive(Debug, Clone)]
pub struct SecondOpinion {
    inner: UseCases,
}

impl SecondOpinion {
    /// The service over the use cases `inner`.
    pub fn new(inner: UseCases) -> Self {
        SecondOpinion { inner }
    }

    /// The service over `app`, its records where [`UseCases::for_app`] keeps them.
    pub fn for_app(app: App) -> std::io::Result<Self> {
        Ok(Self::new(UseCases::for_app(app)?))
    }

    /// Ends every open `WatchStatus` stream; called when the server begins to stop.
    pub fn stop_watchers(&self) {
        self.inner.stop_watchers();
    }
}

#[tonic::async_trait]
impl SecondOpinionService for SecondOpinion {
    async fn check_eligibility(
        &self,
        request: Request<pb::CheckEligibilityRequest>,
    ) -> Result<Response<pb::CheckEligibilityResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::check_eligibility(request.into_inner(), self.inner.today())?;
            let out = self.inner.check_eligibility(&caller, cmd).await?;
            Ok(to_proto::eligibility_to_proto(out))
        })
        .await
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::submit(request.into_inner(), self.inner.today())?;
            let out = self.inner.submit(&caller, cmd).await?;
            Ok(to_proto::submitted_to_proto(out))
        })
        .await
    }

    async fn get_questionnaire(
        &self,
        request: Request<pb::GetQuestionnaireRequest>,
    ) -> Result<Response<pb::GetQuestionnaireResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self.inner.questionnaire(&caller, &req.request_id).await?;
            Ok(pb::GetQuestionnaireResponse {
                questionnaire: Some(to_proto::questionnaire_to_proto(&out)),
            })
        })
        .await
    }

    async fn answer_questionnaire(
        &self,
        request: Request<pb::AnswerQuestionnaireRequest>,
    ) -> Result<Response<pb::AnswerQuestionnaireResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (id, answers) = convert::answer_questionnaire(request.into_inner())?;
            let out = self
                .inner
                .answer_questionnaire(&caller, &id, answers)
                .await?;
            Ok(pb::AnswerQuestionnaireResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn upload_record(
        &self,
        request: Request<Streaming<pb::UploadRecordRequest>>,
    ) -> Result<Response<pb::UploadRecordResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let (cmd, chunks) = convert::upload(request.into_inner()).await?;
            let out = self.inner.upload_record(&caller, cmd, chunks).await?;
            let (record, request) = to_proto::record_added_to_proto(&out);
            Ok(pb::UploadRecordResponse { record, request })
        })
        .await
    }

    async fn log_record(
        &self,
        request: Request<pb::LogRecordRequest>,
    ) -> Result<Response<pb::LogRecordResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::log_record(request.into_inner())?;
            let out = self.inner.log_record(&caller, cmd).await?;
            let (record, request) = to_proto::record_added_to_proto(&out);
            Ok(pb::LogRecordResponse { record, request })
        })
        .await
    }

    type DownloadRecordStream = BoxStream<pb::DownloadRecordResponse>;

    async fn download_record(
        &self,
        request: Request<pb::DownloadRecordRequest>,
    ) -> Result<Response<Self::DownloadRecordStream>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::download(request.into_inner());
            let out = self.inner.download_record(&caller, cmd).await?;
            Ok(Box::pin(to_proto::download_to_proto(out)) as Self::DownloadRecordStream)
        })
        .await
    }

    async fn get_physician(
        &self,
        request: Request<pb::GetPhysicianRequest>,
    ) -> Result<Response<pb::GetPhysicianResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let (expert, provider) = self.inner.physician(&caller, &req.request_id).await?;
            Ok(pb::GetPhysicianResponse {
                physician: Some(to_proto::physician_to_proto(&expert, provider.as_ref())),
            })
        })
        .await
    }

    async fn coordinate(
        &self,
        request: Request<pb::CoordinateRequest>,
    ) -> Result<Response<pb::CoordinateResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self.inner.coordinate(&caller, &req.request_id).await?;
            Ok(pb::CoordinateResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn publish_opinion(
        &self,
        request: Request<pb::PublishOpinionRequest>,
    ) -> Result<Response<pb::PublishOpinionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let draft = convert::opinion_from_proto(req.opinion)?;
            let out = self
                .inner
                .publish_opinion(&caller, &req.request_id, draft)
                .await?;
            Ok(pb::PublishOpinionResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn add_addendum(
        &self,
        request: Request<pb::AddAddendumRequest>,
    ) -> Result<Response<pb::AddAddendumResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self
                .inner
                .add_addendum(&caller, &req.request_id, &req.text)
                .await?;
            Ok(pb::AddAddendumResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn mark_reviewed(
        &self,
        request: Request<pb::MarkReviewedRequest>,
    ) -> Result<Response<pb::MarkReviewedResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self.inner.mark_reviewed(&caller, &req.request_id).await?;
            Ok(pb::MarkReviewedResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn share_with_doctor(
        &self,
        request: Request<pb::ShareWithDoctorRequest>,
    ) -> Result<Response<pb::ShareWithDoctorResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::share(request.into_inner())?;
            let out = self.inner.share_with_doctor(&caller, cmd).await?;
            Ok(pb::ShareWithDoctorResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn record_follow_up(
        &self,
        request: Request<pb::RecordFollowUpRequest>,
    ) -> Result<Response<pb::RecordFollowUpResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::follow_up(request.into_inner())?;
            let out = self.inner.record_follow_up(&caller, cmd).await?;
            Ok(pb::RecordFollowUpResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn ask_question(
        &self,
        request: Request<pb::AskQuestionRequest>,
    ) -> Result<Response<pb::AskQuestionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self
                .inner
                .ask_question(&caller, &req.request_id, &req.question)
                .await?;
            Ok(pb::AskQuestionResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn answer_question(
        &self,
        request: Request<pb::AnswerQuestionRequest>,
    ) -> Result<Response<pb::AnswerQuestionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self
                .inner
                .answer_question(&caller, &req.request_id, req.question_number, &req.answer)
                .await?;
            Ok(pb::AnswerQuestionResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn close(
        &self,
        request: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self
                .inner
                .close(&caller, &req.request_id, &req.closing_note)
                .await?;
            Ok(pb::CloseResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self
                .inner
                .post_message(&caller, &req.request_id, &req.body)
                .await?;
            Ok(pb::PostMessageResponse {
                message: Some(to_proto::message_to_proto(&out)),
            })
        })
        .await
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let page = convert::page(req.page);
            let out = self
                .inner
                .list_messages(&caller, &req.request_id, page)
                .await?;
            Ok(pb::ListMessagesResponse {
                messages: out.items.iter().map(to_proto::message_to_proto).collect(),
                next_page_token: out.next_page_token,
            })
        })
        .await
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::GetRequestResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self.inner.get_request(&caller, &req.request_id).await?;
            Ok(pb::GetRequestResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        })
        .await
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let cmd = convert::list_requests(request.into_inner())?;
            let out = self.inner.list_requests(&caller, cmd).await?;
            Ok(pb::ListRequestsResponse {
                requests: out.items.iter().map(to_proto::request_to_proto).collect(),
                next_page_token: out.next_page_token,
            })
        })
        .await
    }

    type WatchStatusStream = BoxStream<pb::WatchStatusResponse>;

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let out = self.inner.watch_status(&caller, &req.request_id).await?;
            let stream = out.map(|change| Ok(to_proto::status_change_to_proto(change)));
            Ok(Box::pin(stream) as Self::WatchStatusStream)
        })
        .await
    }
}
