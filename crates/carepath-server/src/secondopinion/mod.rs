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
use tonic::{Status, Streaming};

use crate::{context::App, door::grpc_service};

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

    /// The use cases this service calls.
    pub fn use_cases(&self) -> &UseCases {
        &self.inner
    }

    /// Ends every open `WatchStatus` stream; called when the server begins to stop.
    pub fn stop_watchers(&self) {
        self.inner.stop_watchers();
    }
}

grpc_service! {
    impl SecondOpinionService for SecondOpinion {
        type DownloadRecordStream = BoxStream<pb::DownloadRecordResponse>;
        type WatchStatusStream = BoxStream<pb::WatchStatusResponse>;
        rpc check_eligibility(request: pb::CheckEligibilityRequest) -> pb::CheckEligibilityResponse as |this, caller| {
            let cmd = convert::check_eligibility(request.into_inner(), this.inner.today())?;
            let out = this.inner.check_eligibility(&caller, cmd).await?;
            Ok(to_proto::eligibility_to_proto(out))
        }

        rpc submit(request: pb::SubmitRequest) -> pb::SubmitResponse as |this, caller| {
            let cmd = convert::submit(request.into_inner(), this.inner.today())?;
            let out = this.inner.submit(&caller, cmd).await?;
            Ok(to_proto::submitted_to_proto(out))
        }

        rpc get_questionnaire(request: pb::GetQuestionnaireRequest) -> pb::GetQuestionnaireResponse as |this, caller| {
            let req = request.into_inner();
            let out = this.inner.questionnaire(&caller, &req.request_id).await?;
            Ok(pb::GetQuestionnaireResponse {
                questionnaire: Some(to_proto::questionnaire_to_proto(&out)),
            })
        }

        rpc answer_questionnaire(request: pb::AnswerQuestionnaireRequest) -> pb::AnswerQuestionnaireResponse as |this, caller| {
            let (id, answers) = convert::answer_questionnaire(request.into_inner())?;
            let out = this
                .inner
                .answer_questionnaire(&caller, &id, answers)
                .await?;
            Ok(pb::AnswerQuestionnaireResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc upload_record(request: Streaming<pb::UploadRecordRequest>) -> pb::UploadRecordResponse as |this, caller| {
            let (cmd, chunks) = convert::upload(request.into_inner()).await?;
            let out = this.inner.upload_record(&caller, cmd, chunks).await?;
            let (record, request) = to_proto::record_added_to_proto(&out);
            Ok(pb::UploadRecordResponse { record, request })
        }

        rpc log_record(request: pb::LogRecordRequest) -> pb::LogRecordResponse as |this, caller| {
            let cmd = convert::log_record(request.into_inner())?;
            let out = this.inner.log_record(&caller, cmd).await?;
            let (record, request) = to_proto::record_added_to_proto(&out);
            Ok(pb::LogRecordResponse { record, request })
        }

        rpc download_record(request: pb::DownloadRecordRequest) -> Self::DownloadRecordStream as |this, caller| {
            let cmd = convert::download(request.into_inner());
            let out = this.inner.download_record(&caller, cmd).await?;
            Ok(Box::pin(to_proto::download_to_proto(out)) as Self::DownloadRecordStream)
        }

        rpc get_physician(request: pb::GetPhysicianRequest) -> pb::GetPhysicianResponse as |this, caller| {
            let req = request.into_inner();
            let (expert, provider) = this.inner.physician(&caller, &req.request_id).await?;
            Ok(pb::GetPhysicianResponse {
                physician: Some(to_proto::physician_to_proto(&expert, provider.as_ref())),
            })
        }

        rpc coordinate(request: pb::CoordinateRequest) -> pb::CoordinateResponse as |this, caller| {
            let req = request.into_inner();
            let out = this.inner.coordinate(&caller, &req.request_id).await?;
            Ok(pb::CoordinateResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc publish_opinion(request: pb::PublishOpinionRequest) -> pb::PublishOpinionResponse as |this, caller| {
            let req = request.into_inner();
            let draft = convert::opinion_from_proto(req.opinion)?;
            let out = this
                .inner
                .publish_opinion(&caller, &req.request_id, draft)
                .await?;
            Ok(pb::PublishOpinionResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc add_addendum(request: pb::AddAddendumRequest) -> pb::AddAddendumResponse as |this, caller| {
            let req = request.into_inner();
            let out = this
                .inner
                .add_addendum(&caller, &req.request_id, &req.text)
                .await?;
            Ok(pb::AddAddendumResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc mark_reviewed(request: pb::MarkReviewedRequest) -> pb::MarkReviewedResponse as |this, caller| {
            let req = request.into_inner();
            let out = this.inner.mark_reviewed(&caller, &req.request_id).await?;
            Ok(pb::MarkReviewedResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc share_with_doctor(request: pb::ShareWithDoctorRequest) -> pb::ShareWithDoctorResponse as |this, caller| {
            let cmd = convert::share(request.into_inner())?;
            let out = this.inner.share_with_doctor(&caller, cmd).await?;
            Ok(pb::ShareWithDoctorResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc record_follow_up(request: pb::RecordFollowUpRequest) -> pb::RecordFollowUpResponse as |this, caller| {
            let cmd = convert::follow_up(request.into_inner())?;
            let out = this.inner.record_follow_up(&caller, cmd).await?;
            Ok(pb::RecordFollowUpResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc ask_question(request: pb::AskQuestionRequest) -> pb::AskQuestionResponse as |this, caller| {
            let req = request.into_inner();
            let out = this
                .inner
                .ask_question(&caller, &req.request_id, &req.question)
                .await?;
            Ok(pb::AskQuestionResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc answer_question(request: pb::AnswerQuestionRequest) -> pb::AnswerQuestionResponse as |this, caller| {
            let req = request.into_inner();
            let out = this
                .inner
                .answer_question(&caller, &req.request_id, req.question_number, &req.answer)
                .await?;
            Ok(pb::AnswerQuestionResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc close(request: pb::CloseRequest) -> pb::CloseResponse as |this, caller| {
            let req = request.into_inner();
            let out = this
                .inner
                .close(&caller, &req.request_id, &req.closing_note)
                .await?;
            Ok(pb::CloseResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc post_message(request: pb::PostMessageRequest) -> pb::PostMessageResponse as |this, caller| {
            let req = request.into_inner();
            let out = this
                .inner
                .post_message(&caller, &req.request_id, &req.body)
                .await?;
            Ok(pb::PostMessageResponse {
                message: Some(to_proto::message_to_proto(&out)),
            })
        }

        rpc list_messages(request: pb::ListMessagesRequest) -> pb::ListMessagesResponse as |this, caller| {
            let req = request.into_inner();
            let page = convert::page(req.page);
            let out = this
                .inner
                .list_messages(&caller, &req.request_id, page)
                .await?;
            Ok(pb::ListMessagesResponse {
                messages: out.items.iter().map(to_proto::message_to_proto).collect(),
                next_page_token: out.next_page_token,
            })
        }

        rpc get_request(request: pb::GetRequestRequest) -> pb::GetRequestResponse as |this, caller| {
            let req = request.into_inner();
            let out = this.inner.get_request(&caller, &req.request_id).await?;
            Ok(pb::GetRequestResponse {
                request: Some(to_proto::request_to_proto(&out)),
            })
        }

        rpc list_requests(request: pb::ListRequestsRequest) -> pb::ListRequestsResponse as |this, caller| {
            let cmd = convert::list_requests(request.into_inner())?;
            let out = this.inner.list_requests(&caller, cmd).await?;
            Ok(pb::ListRequestsResponse {
                requests: out.items.iter().map(to_proto::request_to_proto).collect(),
                next_page_token: out.next_page_token,
            })
        }

        rpc watch_status(request: pb::WatchStatusRequest) -> Self::WatchStatusStream as |this, caller| {
            let req = request.into_inner();
            let out = this.inner.watch_status(&caller, &req.request_id).await?;
            let stream = out.map(|change| Ok(to_proto::status_change_to_proto(change)));
            Ok(Box::pin(stream) as Self::WatchStatusStream)
        }
    }
}
