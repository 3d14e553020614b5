//! `carepath.secondopinion.v1.SecondOpinionService`: eligibility, questionnaires,
//! records, the lead physician, the opinion and what follows it, secure messages and
//! status, live.
//!
//! Decisions are the second-opinion crate's; this module parses, loads the request
//! under lock, works out how the caller relates to it, applies one command, and stores
//! the request with its events and the audit entry in one transaction. Uploaded bytes
//! go to the record store first and are committed only once verified.
//!
//! Who may see a request: the member (and the subscriber, for a minor), the assigned
//! lead physician, and nurse coordinators while it is open. Anyone else is told it does
//! not exist, and the refusal is audited.

pub mod convert;
pub mod records;

use std::{collections::HashMap, pin::Pin, sync::Arc};

use carepath_core::{Actor, Icd10Code, Invalid, MemberId, Npi, Provider, Role};
use carepath_proto::secondopinion::v1::{
    self as pb, second_opinion_service_server::SecondOpinionService,
};
use carepath_secondopinion::{
    Catalogue, Conflicts, EligibilityInput, EventDraft, Expert, MatchInput, NewRecord, NewRequest,
    Party, RecordChannel, SecondOpinionRequest, Status as RequestStatus, WorkflowError,
    check_eligibility, check_text, choose_expert, may_request_for,
};
use carepath_store::{
    AuditOutcome, OpinionMessageRecord, OpinionRequestFilter, OpinionRequestRecord, ProviderFilter,
    StoreError, Tx,
};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use self::records::{CONTENT_TYPES, MAX_CHUNK_BYTES, MAX_RECORD_BYTES, RecordStorage};
use crate::{
    context::{App, Caller, caller_of, page_size},
    convert::required,
    error::{ApiError, ApiResult, respond},
};

const RECORD_KIND: &str = "secondopinion_request";
const FILE_KIND: &str = "secondopinion_record";
const HIDDEN: &str = "second-opinion request";
/// Who assigns the lead physician when the records complete.
const MATCHING_SUBJECT: &str = "secondopinion-matching";
const MAX_FILE_NAME: usize = 255;
const MAX_DESCRIPTION: usize = 2_000;
/// Status changes kept for slow watchers before they are told to re-read.
const WATCH_BUFFER: usize = 1024;

/// One status change, sent to watchers after its transaction commits.
#[derive(Debug, Clone)]
struct StatusChange {
    request_id: String,
    status: RequestStatus,
    version: u64,
    at: DateTime<Utc>,
    action: String,
}

/// The second-opinion service.
#[derive(Debug, Clone)]
pub struct SecondOpinion {
    app: App,
    catalogue: Arc<Catalogue>,
    records: RecordStorage,
    /// Fed after every commit that changes a status; each watcher subscribes.
    changes: broadcast::Sender<StatusChange>,
    /// Cancelled when the server shuts down, so open watches end and do not hold
    /// the graceful shutdown open.
    stopping: CancellationToken,
}

fn request_of(record: &OpinionRequestRecord) -> ApiResult<SecondOpinionRequest> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| ApiError::Internal(format!("stored request {} unreadable: {e}", record.id)))
}

fn record_of(r: &SecondOpinionRequest) -> OpinionRequestRecord {
    OpinionRequestRecord {
        id: r.id.clone(),
        member_id: r.member_id.to_string(),
        status: r.status.as_str().to_owned(),
        diagnosis_group: r.diagnosis_group.clone(),
        physician_npi: r.physician.as_ref().map(|p| p.npi.to_string()),
        coordinator_id: r.coordinator.as_ref().map(ToString::to_string),
        received_at: r.received_at,
        due_at: r.due_at,
        awaiting_opinion: r.opinion.is_none(),
        doc: serde_json::to_value(r).expect("requests serialize"),
    }
}

/// Microsecond precision: what both backends store, so pages compare exactly.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn request_id(id: &str) -> ApiResult<String> {
    let id = id.trim();
    if id.is_empty() {
        return Err(ApiError::field("request_id", "is required"));
    }
    Ok(id.to_owned())
}

async fn append_events(
    tx: &mut Tx,
    request: &SecondOpinionRequest,
    events: Vec<EventDraft>,
    at: DateTime<Utc>,
) -> ApiResult<()> {
    let events: Vec<_> = events
        .into_iter()
        .map(|draft| draft.into_event(uuid::Uuid::now_v7().to_string()))
        .collect();
    Ok(tx.append_events(&events).await?)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl SecondOpinion {
    pub fn new(app: App, catalogue: Arc<Catalogue>, records: RecordStorage) -> Self {
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        SecondOpinion {
            app,
            catalogue,
            records,
            changes,
            stopping: CancellationToken::new(),
        }
    }

    /// The service over `app`, with the shipped reference data and its records in
    /// the folder set by [`records::configure_folder`] (`--records-dir`), or the
    /// default beside the database ([`RecordStorage::default_folder`]).
    pub fn for_app(app: App) -> std::io::Result<Self> {
        let folder = records::configured_folder()
            .unwrap_or_else(|| RecordStorage::default_folder(&app.store));
        let storage = RecordStorage::local(&folder)?;
        tracing::info!(folder = %folder.display(), "second-opinion records kept here");
        Ok(Self::new(
            app,
            Arc::new(carepath_secondopinion::shipped()),
            storage,
        ))
    }

    /// Ends every open `WatchStatus` stream; called when the server begins to stop.
    pub fn stop_watchers(&self) {
        self.stopping.cancel();
    }

    async fn hide(&self, caller: &Caller, id: &str, member: Option<&MemberId>) -> ApiError {
        self.app
            .refuse(
                caller,
                RECORD_KIND,
                id,
                member,
                ApiError::hidden(HIDDEN, id),
            )
            .await
    }

    /// Loads a request the caller may see, or hides it (audited).
    async fn load_visible(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ApiResult<(SecondOpinionRequest, Party)> {
        let record = match self.app.store.get_opinion_request(id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Err(self.hide(caller, id, None).await),
            Err(e) => return Err(e.into()),
        };
        let request = request_of(&record)?;
        match Party::of(&caller.actor, &request, self.app.now()) {
            Some(party) => Ok((request, party)),
            None => Err(self.hide(caller, id, Some(&request.member_id)).await),
        }
    }

    /// Reads a request the caller may see and audits the read.
    async fn read(&self, caller: &Caller, id: &str) -> ApiResult<(SecondOpinionRequest, Party)> {
        let (request, party) = self.load_visible(caller, id).await?;
        self.app
            .audit(
                caller,
                RECORD_KIND,
                &request.id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok((request, party))
    }

    /// Applies one command: load under lock, work out the caller's part, run it,
    /// assign a lead physician if the records just completed, and store the request,
    /// its events and the audit entry in one transaction. Watchers hear of status
    /// changes after the commit.
    async fn transition(
        &self,
        caller: &Caller,
        id: &str,
        command: impl FnOnce(
            &mut SecondOpinionRequest,
            &Party,
            &Actor,
            DateTime<Utc>,
        ) -> Result<Vec<EventDraft>, WorkflowError>,
    ) -> ApiResult<SecondOpinionRequest> {
        let id = request_id(id)?;
        let now = micros(self.app.now());
        let mut tx = self.app.store.begin().await?;
        let record = match tx.opinion_request_for_update(&id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                drop(tx);
                return Err(self.hide(caller, &id, None).await);
            }
            Err(e) => return Err(e.into()),
        };
        let mut request = request_of(&record)?;
        let member = request.member_id.clone();
        let Some(party) = Party::of(&caller.actor, &request, now) else {
            drop(tx);
            return Err(self.hide(caller, &id, Some(&member)).await);
        };
        let before = request.history.len();
        let mut events = match command(&mut request, &party, &caller.actor, now) {
            Ok(events) => events,
            Err(e) => {
                drop(tx);
                let err = ApiError::from(e);
                if matches!(err, ApiError::PermissionDenied(_)) {
                    return Err(self
                        .app
                        .refuse(caller, RECORD_KIND, &id, Some(&member), err)
                        .await);
                }
                return Err(err);
            }
        };
        if request.status == RequestStatus::AwaitingAssignment {
            events.extend(self.assign(&mut tx, &mut request, now).await?);
        }
        tx.update_opinion_request(&record_of(&request), now).await?;
        append_events(&mut tx, &request, events, now).await?;
        tx.append_audit(
            &caller.audit_entry(RECORD_KIND, &id, Some(&member), AuditOutcome::Allowed),
            now,
        )
        .await?;
        tx.commit().await?;
        self.announce(&request, before);
        Ok(request)
    }

    /// Tells watchers of every status change in the history after `before`.
    fn announce(&self, request: &SecondOpinionRequest, before: usize) {
        let mut last = before
            .checked_sub(1)
            .and_then(|i| request.history.get(i))
            .map(|h| h.status);
        for (i, entry) in request.history.iter().enumerate().skip(before) {
            if Some(entry.status) != last {
                // No receivers is fine: nobody is watching.
                let _ = self.changes.send(StatusChange {
                    request_id: request.id.clone(),
                    status: entry.status,
                    version: i as u64 + 1,
                    at: entry.at,
                    action: entry.action.clone(),
                });
            }
            last = Some(entry.status);
        }
    }

    /// Chooses and assigns the lead physician, inside the caller's transaction. When
    /// nobody is free the request waits in `awaiting_assignment`.
    async fn assign(
        &self,
        tx: &mut Tx,
        request: &mut SecondOpinionRequest,
        now: DateTime<Utc>,
    ) -> ApiResult<Vec<EventDraft>> {
        let Some(group) = self.catalogue.group(&request.diagnosis_group) else {
            return Err(ApiError::Internal(format!(
                "request {} names unknown group {}",
                request.id, request.diagnosis_group
            )));
        };
        let mut candidates: Vec<Provider> = Vec::new();
        for specialty in &group.specialties {
            let filter = ProviderFilter {
                specialty: Some(specialty.to_string()),
                kind: Some("physician".into()),
                ..Default::default()
            };
            let mut after = String::new();
            loop {
                let page = self.app.store.list_providers(&filter, &after, 500).await?;
                candidates.extend(page.items);
                match page.next_page_token {
                    Some(t) => after = t,
                    None => break,
                }
            }
        }
        let load: HashMap<Npi, u32> = tx
            .expert_load()
            .await?
            .into_iter()
            .filter_map(|(npi, n)| Some((Npi::parse(&npi).ok()?, u32::try_from(n).ok()?)))
            .collect();
        let first_practice = match (
            &request.first_opinion.practice,
            &request.first_opinion.physician_npi,
        ) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(npi)) => match self.app.store.get_provider(npi).await {
                Ok(p) => p.practice,
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            (None, None) => None,
        };
        let chosen = choose_expert(
            &candidates,
            MatchInput {
                group,
                language: &request.member_language,
                country: &request.member_country,
                conflicts: Conflicts {
                    first_opinion_npi: request.first_opinion.physician_npi.as_ref(),
                    first_opinion_practice: first_practice.as_deref(),
                },
                open_requests: &load,
                capacity: self.catalogue.expert_capacity,
            },
        );
        let expert = match chosen {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(request = %request.id, reason = %e, "no expert free; the request waits");
                return Ok(Vec::new());
            }
        };
        let system = Actor::new(Role::Service, MATCHING_SUBJECT).expect("valid service name");
        Ok(request.assign(
            &system,
            Expert {
                npi: expert.npi.clone(),
                name: expert.name.clone(),
                specialty: expert.specialty.clone().expect("experts have a specialty"),
                practice: expert.practice.clone(),
                assigned_at: now,
            },
            now,
        )?)
    }

    async fn check_eligibility(
        &self,
        caller: &Caller,
        req: pb::CheckEligibilityRequest,
    ) -> ApiResult<pb::CheckEligibilityResponse> {
        let mut invalid = Invalid::new();
        let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
        let diagnosis = required(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
        let today = self.app.now().date_naive();
        let first = convert::first_opinion(&mut invalid, "first_opinion", req.first_opinion, today);
        invalid.into_result()?;
        let (member_id, diagnosis) = (member_id.expect("checked"), diagnosis.expect("checked"));
        self.member_for(caller, &member_id).await?;
        let outcome = check_eligibility(
            &self.catalogue,
            EligibilityInput {
                diagnosis: &diagnosis,
                major_surgery_recommended: req.major_surgery_recommended,
                emergency: req.emergency,
                has_first_opinion: first.is_some(),
            },
        );
        self.app
            .audit(
                caller,
                "secondopinion_eligibility",
                member_id.as_str(),
                Some(&member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        let group = self.catalogue.group_of(&diagnosis);
        Ok(match outcome {
            Ok(g) => pb::CheckEligibilityResponse {
                eligible: true,
                diagnosis_group: g.id.clone(),
                condition: g.name.clone(),
                basis: convert::basis(g.basis),
                ..Default::default()
            },
            Err(why) => pb::CheckEligibilityResponse {
                eligible: false,
                reason_code: why.code().into(),
                reason: why.to_string(),
                diagnosis_group: group.map(|g| g.id.clone()).unwrap_or_default(),
                condition: group.map(|g| g.name.clone()).unwrap_or_default(),
                basis: group.map(|g| convert::basis(g.basis)).unwrap_or_default(),
            },
        })
    }

    /// The member a request would be for, if the caller may ask for them: members for
    /// themselves, subscribers for their minor family members.
    async fn member_for(
        &self,
        caller: &Caller,
        member_id: &MemberId,
    ) -> ApiResult<carepath_core::Member> {
        if caller.actor.role != Role::Member {
            return Err(self
                .app
                .refuse(
                    caller,
                    "member",
                    member_id.as_str(),
                    Some(member_id),
                    ApiError::denied("members ask for second opinions themselves"),
                )
                .await);
        }
        let member = match self.app.store.get_member(member_id).await {
            Ok(m) => Some(m),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let today = self.app.now().date_naive();
        match member {
            Some(m)
                if may_request_for(
                    &caller.actor,
                    &m.id,
                    m.subscriber_id.as_ref(),
                    m.date_of_birth,
                    today,
                ) =>
            {
                Ok(m)
            }
            _ => Err(self
                .app
                .refuse(
                    caller,
                    "member",
                    member_id.as_str(),
                    Some(member_id),
                    ApiError::hidden("member", member_id.as_str()),
                )
                .await),
        }
    }

    async fn submit(
        &self,
        caller: &Caller,
        req: pb::SubmitRequest,
    ) -> ApiResult<pb::SubmitResponse> {
        let mut invalid = Invalid::new();
        let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
        let diagnosis = required(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
        let now = micros(self.app.now());
        let first = convert::first_opinion(
            &mut invalid,
            "first_opinion",
            req.first_opinion,
            now.date_naive(),
        );
        if let Err(e) = check_text("current_treatment", &req.current_treatment) {
            invalid.extend(e);
        }
        invalid.into_result()?;
        let (member_id, diagnosis) = (member_id.expect("checked"), diagnosis.expect("checked"));
        let member = self.member_for(caller, &member_id).await?;
        let group = match check_eligibility(
            &self.catalogue,
            EligibilityInput {
                diagnosis: &diagnosis,
                major_surgery_recommended: req.major_surgery_recommended,
                emergency: req.emergency,
                has_first_opinion: first.is_some(),
            },
        ) {
            Ok(g) => g,
            Err(why) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        member_id.as_str(),
                        Some(&member_id),
                        ApiError::FailedPrecondition(format!(
                            "not eligible ({}): {why}",
                            why.code()
                        )),
                    )
                    .await);
            }
        };
        let id = format!("SO-{}", uuid::Uuid::now_v7().simple());
        let (request, events) = SecondOpinionRequest::open(
            NewRequest {
                id,
                member,
                requested_by: caller.actor.clone(),
                diagnosis,
                major_surgery_recommended: req.major_surgery_recommended,
                current_treatment: req.current_treatment.trim().to_owned(),
                first_opinion: first.expect("eligibility needs a first opinion"),
            },
            group,
            &self.catalogue,
            now,
        );
        let mut tx = self.app.store.begin().await?;
        tx.insert_opinion_request(&record_of(&request), now).await?;
        append_events(&mut tx, &request, events, now).await?;
        tx.append_audit(
            &caller.audit_entry(
                RECORD_KIND,
                &request.id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        self.announce(&request, 0);
        let questionnaire = self
            .catalogue
            .questionnaire(&request.questionnaire.id, request.questionnaire.version)
            .map(convert::questionnaire_to_proto);
        Ok(pb::SubmitResponse {
            request: Some(convert::request_to_proto(&request, now)),
            questionnaire,
        })
    }

    async fn answer(
        &self,
        caller: &Caller,
        req: pb::AnswerQuestionnaireRequest,
    ) -> ApiResult<SecondOpinionRequest> {
        let mut invalid = Invalid::new();
        let answers = convert::answers_from_proto(&mut invalid, req.answers);
        invalid.into_result()?;
        let catalogue = self.catalogue.clone();
        let calendar = self.app.calendar.clone();
        self.transition(caller, &req.request_id, move |r, party, actor, now| {
            let questionnaire = catalogue
                .questionnaire(&r.questionnaire.id, r.questionnaire.version)
                .ok_or_else(|| {
                    WorkflowError::Rule(format!(
                        "questionnaire {} version {} is no longer loaded",
                        r.questionnaire.id, r.questionnaire.version
                    ))
                })?;
            // Only the member may answer; check before judging the answers.
            if !matches!(party, Party::Member | Party::Subscriber) {
                return Err(WorkflowError::NotAllowed(
                    "only the member may answer the questionnaire".into(),
                ));
            }
            let checked = questionnaire.check(&answers)?;
            r.answer_questionnaire(party, actor, checked, &calendar, now)
        })
        .await
    }

    async fn upload(
        &self,
        caller: &Caller,
        mut stream: Streaming<pb::UploadRecordRequest>,
    ) -> ApiResult<pb::UploadRecordResponse> {
        use pb::upload_record_request::Part;
        let first = stream.message().await.map_err(|s| {
            ApiError::field(
                "header",
                format!("the upload stream failed: {}", s.message()),
            )
        })?;
        let Some(pb::UploadRecordRequest {
            part: Some(Part::Header(header)),
        }) = first
        else {
            return Err(ApiError::field(
                "header",
                "the first message of an upload must be its header",
            ));
        };
        let mut invalid = Invalid::new();
        let id = header.request_id.trim().to_owned();
        if id.is_empty() {
            invalid.push("header.request_id", "is required");
        }
        let kind = convert::kind_from_proto(&mut invalid, "header.kind", header.kind);
        let file_name = header.file_name.trim().to_owned();
        if file_name.is_empty() {
            invalid.push("header.file_name", "is required");
        } else if file_name.len() > MAX_FILE_NAME || file_name.contains(['/', '\\', '\0']) {
            invalid.push(
                "header.file_name",
                format!("must be a plain file name of at most {MAX_FILE_NAME} bytes"),
            );
        }
        let content_type = header.content_type.trim().to_ascii_lowercase();
        if !CONTENT_TYPES.contains(&content_type.as_str()) {
            invalid.push(
                "header.content_type",
                format!("must be one of {}", CONTENT_TYPES.join(", ")),
            );
        }
        if header.size_bytes == 0 || header.size_bytes > MAX_RECORD_BYTES {
            invalid.push(
                "header.size_bytes",
                format!("must be between 1 and {MAX_RECORD_BYTES} bytes"),
            );
        }
        let sha256 = header.sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            invalid.push("header.sha256", "must be 64 hexadecimal characters");
        }
        if header.description.chars().count() > MAX_DESCRIPTION {
            invalid.push(
                "header.description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            );
        }
        invalid.into_result()?;
        let kind = kind.expect("checked");

        // Refuse before any byte is kept.
        let (request, party) = self.load_visible(caller, &id).await?;
        if let Err(e) = request.may_add_record(&party, RecordChannel::Upload) {
            let err = ApiError::from(e);
            if matches!(err, ApiError::PermissionDenied(_)) {
                return Err(self
                    .app
                    .refuse(caller, RECORD_KIND, &id, Some(&request.member_id), err)
                    .await);
            }
            return Err(err);
        }

        let record_id = format!("REC-{}", uuid::Uuid::now_v7().simple());
        let temp = object_store::path::Path::from(format!("tmp/{record_id}"));
        let chunks = stream.map(|m| match m {
            Ok(pb::UploadRecordRequest {
                part: Some(Part::Chunk(bytes)),
            }) if bytes.len() <= MAX_CHUNK_BYTES => Ok(bytes),
            Ok(pb::UploadRecordRequest {
                part: Some(Part::Chunk(_)),
            }) => Err(ApiError::field(
                "chunk",
                format!("a chunk may hold at most {MAX_CHUNK_BYTES} bytes"),
            )),
            Ok(_) => Err(ApiError::field(
                "header",
                "only the first message of an upload is a header",
            )),
            Err(s) => Err(ApiError::field(
                "chunk",
                format!("the upload stream failed: {}", s.message()),
            )),
        });
        let received = self
            .records
            .receive(&temp, Box::pin(chunks), header.size_bytes)
            .await?;
        if received.size != header.size_bytes {
            self.records.delete(&temp).await;
            return Err(ApiError::field(
                "header.size_bytes",
                format!(
                    "{} bytes were declared but {} arrived; nothing was kept",
                    header.size_bytes, received.size
                ),
            ));
        }
        if received.sha256 != sha256 {
            self.records.delete(&temp).await;
            tracing::info!(request = %id, "upload refused: checksum mismatch");
            return Err(ApiError::field(
                "header.sha256",
                format!(
                    "does not match the bytes received (their SHA-256 is {}); nothing was kept",
                    received.sha256
                ),
            ));
        }
        let key = object_store::path::Path::from(format!("requests/{id}/{record_id}"));
        if let Err(e) = self.records.commit(&temp, &key).await {
            self.records.delete(&temp).await;
            return Err(e);
        }
        let calendar = self.app.calendar.clone();
        let new = NewRecord {
            id: record_id.clone(),
            kind,
            channel: RecordChannel::Upload,
            description: header.description.trim().to_owned(),
            file_name: Some(file_name),
            content_type: Some(content_type),
            size_bytes: received.size,
            sha256: Some(received.sha256),
            object_key: Some(key.to_string()),
        };
        let result = self
            .transition(caller, &id, move |r, party, actor, now| {
                r.add_record(party, actor, new, &calendar, now)
            })
            .await;
        match result {
            Ok(request) => {
                let now = self.app.now();
                let record = request
                    .records
                    .iter()
                    .find(|r| r.id == record_id)
                    .map(convert::record_to_proto);
                Ok(pb::UploadRecordResponse {
                    record,
                    request: Some(convert::request_to_proto(&request, now)),
                })
            }
            Err(e) => {
                self.records.delete(&key).await;
                Err(e)
            }
        }
    }

    async fn download(
        &self,
        caller: &Caller,
        req: pb::DownloadRecordRequest,
    ) -> ApiResult<BoxStream<pb::DownloadRecordResponse>> {
        use pb::download_record_response::Part;
        let id = request_id(&req.request_id)?;
        if req.record_id.trim().is_empty() {
            return Err(ApiError::field("record_id", "is required"));
        }
        let (request, _) = self.load_visible(caller, &id).await?;
        let Some(record) = request
            .records
            .iter()
            .find(|r| r.id == req.record_id.trim())
        else {
            return Err(self
                .app
                .refuse(
                    caller,
                    FILE_KIND,
                    req.record_id.trim(),
                    Some(&request.member_id),
                    ApiError::hidden("record", req.record_id.trim()),
                )
                .await);
        };
        let Some(key) = &record.object_key else {
            return Err(ApiError::FailedPrecondition(format!(
                "record {} arrived by {} and has no file",
                record.id,
                record.channel.as_str()
            )));
        };
        let bytes = self
            .records
            .read(&object_store::path::Path::from(key.as_str()))
            .await?;
        self.app
            .audit(
                caller,
                FILE_KIND,
                &record.id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        let head = futures::stream::once(futures::future::ready(Ok(pb::DownloadRecordResponse {
            part: Some(Part::Record(convert::record_to_proto(record))),
        })));
        let body = bytes.map(|chunk| {
            chunk
                .map(|b| pb::DownloadRecordResponse {
                    part: Some(Part::Chunk(b)),
                })
                .map_err(crate::error::status_of)
        });
        Ok(Box::pin(head.chain(body)))
    }

    async fn physician(&self, caller: &Caller, id: &str) -> ApiResult<pb::Physician> {
        let id = request_id(id)?;
        let (request, _) = self.read(caller, &id).await?;
        let Some(expert) = &request.physician else {
            return Err(ApiError::FailedPrecondition(
                "no lead physician is assigned yet".into(),
            ));
        };
        let provider = match self.app.store.get_provider(&expert.npi).await {
            Ok(p) => Some(p),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(convert::physician_to_proto(expert, provider.as_ref()))
    }

    async fn share(
        &self,
        caller: &Caller,
        req: pb::ShareWithDoctorRequest,
    ) -> ApiResult<SecondOpinionRequest> {
        let Some(given) = req.doctor else {
            return Err(ApiError::field("doctor", "is required"));
        };
        let mut invalid = Invalid::new();
        let doctor = if given.npi.trim().is_empty() {
            convert::doctor_from_proto(&mut invalid, given)
        } else {
            match invalid.check("doctor.npi", Npi::parse(&given.npi)) {
                None => None,
                Some(npi) => match self.app.store.get_provider(&npi).await {
                    Ok(p) => Some(convert::doctor_from_provider(&p)),
                    Err(StoreError::NotFound { .. }) => {
                        invalid.push("doctor.npi", "no provider with this NPI in the directory");
                        None
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        };
        invalid.into_result()?;
        let doctor = doctor.expect("checked");
        self.transition(caller, &req.request_id, move |r, party, actor, now| {
            r.share_with_doctor(party, actor, doctor, req.consent, now)
        })
        .await
    }

    async fn post_message(
        &self,
        caller: &Caller,
        req: pb::PostMessageRequest,
    ) -> ApiResult<pb::Message> {
        check_text("body", &req.body)?;
        let id = request_id(&req.request_id)?;
        let (request, _) = self.load_visible(caller, &id).await?;
        let now = micros(self.app.now());
        let message = OpinionMessageRecord {
            id: format!("MSG-{}", uuid::Uuid::now_v7().simple()),
            request_id: id.clone(),
            author_role: caller.actor.role.to_string(),
            author_id: caller.actor.subject.clone(),
            body: req.body.trim().to_owned(),
            sent_at: now,
        };
        let event = EventDraft {
            kind: carepath_secondopinion::event_kinds::MESSAGE_POSTED,
            aggregate_kind: carepath_secondopinion::AGGREGATE_KIND,
            aggregate_id: request.id.clone(),
            member_id: request.member_id.clone(),
            occurred_at: now,
            payload: serde_json::json!({
                "request_id": request.id,
                "condition": request.condition,
                "message_id": message.id,
                "author_role": message.author_role,
            }),
        };
        let mut tx = self.app.store.begin().await?;
        tx.insert_opinion_message(&message).await?;
        append_events(&mut tx, &request, vec![event], now).await?;
        tx.append_audit(
            &caller.audit_entry(
                "secondopinion_message",
                &message.id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(message_to_proto(&message))
    }

    async fn list_requests(
        &self,
        caller: &Caller,
        req: pb::ListRequestsRequest,
    ) -> ApiResult<pb::ListRequestsResponse> {
        let page = req.page.unwrap_or_default();
        let size = page_size(page.page_size, "page.page_size")?;
        let status = match req.status {
            0 => None,
            v => Some(
                convert::status_from_proto(v)
                    .ok_or_else(|| ApiError::field("status", "must be a STATUS_* value"))?,
            ),
        };
        let now = self.app.now();
        let mut filter = OpinionRequestFilter {
            status: status.map(|s| s.as_str().to_owned()),
            due_before: req.late_only.then_some(now),
            ..Default::default()
        };
        match caller.actor.role {
            Role::Member => {
                filter.member_id = Some(caller.actor.subject.clone());
            }
            Role::Provider => filter.physician_npi = Some(caller.actor.subject.clone()),
            Role::Nurse => filter.open_only = true,
            _ => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        "*",
                        None,
                        ApiError::denied(
                            "second-opinion requests are seen by members, their lead physicians and nurse coordinators",
                        ),
                    )
                    .await);
            }
        }
        let found = self
            .app
            .store
            .list_opinion_requests(&filter, &page.page_token, size)
            .await?;
        let mut requests = Vec::with_capacity(found.items.len());
        for record in &found.items {
            let request = request_of(record)?;
            if Party::of(&caller.actor, &request, now).is_none() {
                continue;
            }
            self.app
                .audit(
                    caller,
                    RECORD_KIND,
                    &request.id,
                    Some(&request.member_id),
                    AuditOutcome::Allowed,
                )
                .await?;
            requests.push(convert::request_to_proto(&request, now));
        }
        Ok(pb::ListRequestsResponse {
            requests,
            next_page_token: found.next_page_token.unwrap_or_default(),
        })
    }

    async fn watch(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ApiResult<BoxStream<pb::WatchStatusResponse>> {
        let id = request_id(id)?;
        // Subscribe before reading, so no change between the read and the first
        // broadcast is missed; the version check drops ones the snapshot covers.
        let mut changes = self.changes.subscribe();
        let (request, _) = self.read(caller, &id).await?;
        let (tx, rx) = mpsc::channel::<Result<pb::WatchStatusResponse, Status>>(16);
        let mut version = request.version();
        let mut status = request.status;
        let snapshot = pb::WatchStatusResponse {
            request_id: id.clone(),
            status: convert::status_to_proto(request.status),
            version,
            at: request
                .history
                .last()
                .map(|h| crate::convert::timestamp(h.at)),
            action: "snapshot".into(),
            snapshot: true,
        };
        let store = self.app.store.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            if tx.send(Ok(snapshot)).await.is_err() {
                return;
            }
            while status != RequestStatus::Closed {
                let change = tokio::select! {
                    () = stopping.cancelled() => return,
                    () = tx.closed() => return,
                    change = changes.recv() => change,
                };
                let next = match change {
                    Ok(c) if c.request_id == id && c.version > version => c,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: re-read and send the current status.
                        let Ok(current) = store
                            .get_opinion_request(&id)
                            .await
                            .map_err(ApiError::from)
                            .and_then(|r| request_of(&r))
                        else {
                            return;
                        };
                        if current.version() <= version {
                            continue;
                        }
                        StatusChange {
                            request_id: id.clone(),
                            status: current.status,
                            version: current.version(),
                            at: current.history.last().map_or_else(Utc::now, |h| h.at),
                            action: current
                                .history
                                .last()
                                .map(|h| h.action.clone())
                                .unwrap_or_default(),
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                version = next.version;
                status = next.status;
                let message = pb::WatchStatusResponse {
                    request_id: next.request_id,
                    status: convert::status_to_proto(next.status),
                    version: next.version,
                    at: Some(crate::convert::timestamp(next.at)),
                    action: next.action,
                    snapshot: false,
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

fn message_to_proto(m: &OpinionMessageRecord) -> pb::Message {
    pb::Message {
        id: m.id.clone(),
        request_id: m.request_id.clone(),
        author_role: m.author_role.clone(),
        author_id: m.author_id.clone(),
        body: m.body.clone(),
        sent_at: Some(crate::convert::timestamp(m.sent_at)),
    }
}

/// Runs a transition and shows the request.
macro_rules! step {
    ($self:ident, $request:ident, $response:ident, |$r:ident, $party:ident, $actor:ident, $now:ident, $req:ident| $body:expr) => {
        respond(async move {
            let caller = caller_of(&$request)?;
            let $req = $request.into_inner();
            let id = $req.request_id.clone();
            let request = $self
                .transition(&caller, &id, move |$r, $party, $actor, $now| $body)
                .await?;
            Ok(pb::$response {
                request: Some(convert::request_to_proto(&request, $self.app.now())),
            })
        })
        .await
    };
}

#[tonic::async_trait]
impl SecondOpinionService for SecondOpinion {
    async fn check_eligibility(
        &self,
        request: Request<pb::CheckEligibilityRequest>,
    ) -> Result<Response<pb::CheckEligibilityResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            self.check_eligibility(&caller, request.into_inner()).await
        })
        .await
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            self.submit(&caller, request.into_inner()).await
        })
        .await
    }

    async fn get_questionnaire(
        &self,
        request: Request<pb::GetQuestionnaireRequest>,
    ) -> Result<Response<pb::GetQuestionnaireResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let id = request_id(&request.get_ref().request_id)?;
            let (r, _) = self.read(&caller, &id).await?;
            let q = self
                .catalogue
                .questionnaire(&r.questionnaire.id, r.questionnaire.version)
                .ok_or_else(|| {
                    ApiError::FailedPrecondition(format!(
                        "questionnaire {} version {} is no longer loaded",
                        r.questionnaire.id, r.questionnaire.version
                    ))
                })?;
            Ok(pb::GetQuestionnaireResponse {
                questionnaire: Some(convert::questionnaire_to_proto(q)),
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
            let r = self.answer(&caller, request.into_inner()).await?;
            Ok(pb::AnswerQuestionnaireResponse {
                request: Some(convert::request_to_proto(&r, self.app.now())),
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
            self.upload(&caller, request.into_inner()).await
        })
        .await
    }

    async fn log_record(
        &self,
        request: Request<pb::LogRecordRequest>,
    ) -> Result<Response<pb::LogRecordResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let mut invalid = Invalid::new();
            let kind = convert::kind_from_proto(&mut invalid, "kind", req.kind);
            let channel = convert::logged_channel_from_proto(&mut invalid, "channel", req.channel);
            if let Err(e) = check_text("description", &req.description) {
                invalid.extend(e);
            }
            invalid.into_result()?;
            let record_id = format!("REC-{}", uuid::Uuid::now_v7().simple());
            let new = NewRecord {
                id: record_id.clone(),
                kind: kind.expect("checked"),
                channel: channel.expect("checked"),
                description: req.description.trim().to_owned(),
                file_name: None,
                content_type: None,
                size_bytes: 0,
                sha256: None,
                object_key: None,
            };
            let calendar = self.app.calendar.clone();
            let r = self
                .transition(&caller, &req.request_id, move |r, party, actor, now| {
                    r.add_record(party, actor, new, &calendar, now)
                })
                .await?;
            Ok(pb::LogRecordResponse {
                record: r
                    .records
                    .iter()
                    .find(|x| x.id == record_id)
                    .map(convert::record_to_proto),
                request: Some(convert::request_to_proto(&r, self.app.now())),
            })
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
            self.download(&caller, request.into_inner()).await
        })
        .await
    }

    async fn get_physician(
        &self,
        request: Request<pb::GetPhysicianRequest>,
    ) -> Result<Response<pb::GetPhysicianResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let physician = self
                .physician(&caller, &request.get_ref().request_id)
                .await?;
            Ok(pb::GetPhysicianResponse {
                physician: Some(physician),
            })
        })
        .await
    }

    async fn coordinate(
        &self,
        request: Request<pb::CoordinateRequest>,
    ) -> Result<Response<pb::CoordinateResponse>, Status> {
        step!(
            self,
            request,
            CoordinateResponse,
            |r, party, actor, now, _req| r.coordinate(party, actor, now)
        )
    }

    async fn publish_opinion(
        &self,
        request: Request<pb::PublishOpinionRequest>,
    ) -> Result<Response<pb::PublishOpinionResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let req = request.into_inner();
            let draft = convert::opinion_from_proto(req.opinion)?;
            let r = self
                .transition(&caller, &req.request_id, move |r, party, actor, now| {
                    r.publish(party, actor, draft, now)
                })
                .await?;
            Ok(pb::PublishOpinionResponse {
                request: Some(convert::request_to_proto(&r, self.app.now())),
            })
        })
        .await
    }

    async fn add_addendum(
        &self,
        request: Request<pb::AddAddendumRequest>,
    ) -> Result<Response<pb::AddAddendumResponse>, Status> {
        step!(
            self,
            request,
            AddAddendumResponse,
            |r, party, actor, now, req| r.add_addendum(
                party,
                actor,
                req.text.trim().to_owned(),
                now
            )
        )
    }

    async fn mark_reviewed(
        &self,
        request: Request<pb::MarkReviewedRequest>,
    ) -> Result<Response<pb::MarkReviewedResponse>, Status> {
        step!(
            self,
            request,
            MarkReviewedResponse,
            |r, party, actor, now, _req| r.mark_reviewed(party, actor, now)
        )
    }

    async fn share_with_doctor(
        &self,
        request: Request<pb::ShareWithDoctorRequest>,
    ) -> Result<Response<pb::ShareWithDoctorResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let r = self.share(&caller, request.into_inner()).await?;
            Ok(pb::ShareWithDoctorResponse {
                request: Some(convert::request_to_proto(&r, self.app.now())),
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
            let req = request.into_inner();
            let mut invalid = Invalid::new();
            let channel =
                convert::follow_up_channel_from_proto(&mut invalid, "channel", req.channel);
            invalid.into_result()?;
            let channel = channel.expect("checked");
            let notes = req.notes.trim().to_owned();
            let r = self
                .transition(&caller, &req.request_id, move |r, party, actor, now| {
                    r.record_follow_up(party, actor, channel, notes, req.member_understands, now)
                })
                .await?;
            Ok(pb::RecordFollowUpResponse {
                request: Some(convert::request_to_proto(&r, self.app.now())),
            })
        })
        .await
    }

    async fn ask_question(
        &self,
        request: Request<pb::AskQuestionRequest>,
    ) -> Result<Response<pb::AskQuestionResponse>, Status> {
        step!(
            self,
            request,
            AskQuestionResponse,
            |r, party, actor, now, req| r.ask_question(
                party,
                actor,
                req.question.trim().to_owned(),
                now
            )
        )
    }

    async fn answer_question(
        &self,
        request: Request<pb::AnswerQuestionRequest>,
    ) -> Result<Response<pb::AnswerQuestionResponse>, Status> {
        step!(
            self,
            request,
            AnswerQuestionResponse,
            |r, party, actor, now, req| r.answer_question(
                party,
                actor,
                req.question_number,
                req.answer.trim().to_owned(),
                now
            )
        )
    }

    async fn close(
        &self,
        request: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        step!(self, request, CloseResponse, |r, party, actor, now, req| r
            .close(party, actor, req.closing_note.trim().to_owned(), now))
    }

    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            let message = self.post_message(&caller, request.into_inner()).await?;
            Ok(pb::PostMessageResponse {
                message: Some(message),
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
            let page = req.page.unwrap_or_default();
            let size = page_size(page.page_size, "page.page_size")?;
            let id = request_id(&req.request_id)?;
            let (r, _) = self.load_visible(&caller, &id).await?;
            let found = self
                .app
                .store
                .list_opinion_messages(&id, &page.page_token, size)
                .await?;
            self.app
                .audit(
                    &caller,
                    "secondopinion_message",
                    &id,
                    Some(&r.member_id),
                    AuditOutcome::Allowed,
                )
                .await?;
            Ok(pb::ListMessagesResponse {
                messages: found.items.iter().map(message_to_proto).collect(),
                next_page_token: found.next_page_token.unwrap_or_default(),
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
            let id = request_id(&request.get_ref().request_id)?;
            let (r, _) = self.read(&caller, &id).await?;
            let now = self.app.now();
            let mut shown = convert::request_to_proto(&r, now);
            if let Some(expert) = &r.physician {
                let provider = self.app.store.get_provider(&expert.npi).await.ok();
                shown.physician = Some(convert::physician_to_proto(expert, provider.as_ref()));
            }
            Ok(pb::GetRequestResponse {
                request: Some(shown),
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
            self.list_requests(&caller, request.into_inner()).await
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
            self.watch(&caller, &request.get_ref().request_id).await
        })
        .await
    }
}
