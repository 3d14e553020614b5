//! Remote second-opinion use cases: eligibility, submission, the questionnaire,
//! medical records, the lead physician, the opinion and what follows it, secure
//! messages and live status.
//!
//! Decisions are the second-opinion crate's; a command here loads the request under
//! lock, works out how the caller relates to it ([`policy`]), applies one domain
//! command, assigns a lead physician when the records just completed, and stores the
//! request with its events and the audit entry in one transaction ([`crate::pipeline`]).
//! Watchers hear of status changes after the commit. Uploaded bytes go to the record
//! store ([`records`]) first and are committed only once verified.
//!
//! Who may see a request: the member (and the subscriber, for a minor), the assigned
//! lead physician, and nurse coordinators while it is open. Anyone else is told it does
//! not exist, and the refusal is audited.

mod commands;
mod files;
mod matching;
mod messages;
pub mod record;
pub mod records;
mod watch;

use std::sync::Arc;

use carepath_core::{Actor, EventDraft, MemberId, Provider, Role};
use carepath_secondopinion::{
    Answer, Catalogue, Doctor, EligibilityInput, Expert, NewRecord, NewRequest, OpinionDraft,
    Party, Questionnaire, SecondOpinionRequest, Status, WorkflowError, check_eligibility,
    may_request_for,
};
use carepath_store::{AuditOutcome, OpinionRequestRecord, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use self::{
    commands::{
        CheckEligibility, DoctorRef, Eligibility, ListRequests, LogRecord, RecordAdded,
        RecordFollowUp, RequestView, ShareWithDoctor, Submit, Submitted,
    },
    files::{Download, DownloadRecord, UploadRecord},
    record::{RECORD_KIND, list_scope, policy, record_of, request_of},
    records::RecordStorage,
    watch::StatusChange,
};
use crate::{
    context::{App, Caller, Page, Rows, visible_page},
    error::{AppError, AppResult},
    pipeline::{Working, append_events, record_id},
};

/// The audit log's record kind of an uploaded or logged medical record.
pub const FILE_KIND: &str = "secondopinion_record";
/// The audit log's record kind of a secure message.
pub const MESSAGE_KIND: &str = "secondopinion_message";
/// The audit log's record kind of an eligibility check.
pub const ELIGIBILITY_KIND: &str = "secondopinion_eligibility";
/// Who assigns the lead physician when the records complete.
pub const MATCHING_SUBJECT: &str = "secondopinion-matching";
/// The lease name of the record sweep.
pub const RECORD_SWEEP_JOB: &str = "secondopinion.records";

/// Status changes kept for slow watchers before they are told to re-read.
const WATCH_BUFFER: usize = 1024;

/// The second-opinion use cases over one application.
#[derive(Debug, Clone)]
pub struct SecondOpinion {
    app: App,
    catalogue: Arc<Catalogue>,
    records: RecordStorage,
    /// Fed after every commit that changes a status; each watcher subscribes.
    changes: broadcast::Sender<StatusChange>,
    /// Cancelled when the application stops, so open watches end and do not hold a
    /// graceful shutdown open.
    stopping: CancellationToken,
}

impl SecondOpinion {
    /// The use cases over `app`, with reference data `catalogue` and the records in
    /// `records`.
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

    /// The use cases over `app`, with the reference data in force
    /// ([`crate::data::current`]) and the records in
    /// the object store set by [`records::configure_url`] (`--records-url`), the
    /// folder set by [`records::configure_folder`] (`--records-dir`), or the
    /// default beside the database ([`RecordStorage::default_folder`]).
    pub fn for_app(app: App) -> std::io::Result<Self> {
        if let Some(storage) = records::configured_store() {
            tracing::info!("second-opinion records kept in the configured object store");
            return Ok(Self::new(
                app,
                crate::data::current().secondopinion,
                storage,
            ));
        }
        let folder = records::configured_folder()
            .unwrap_or_else(|| RecordStorage::default_folder(&app.store));
        let storage = RecordStorage::local(&folder)?;
        tracing::info!(folder = %folder.display(), "second-opinion records kept here");
        Ok(Self::new(
            app,
            crate::data::current().secondopinion,
            storage,
        ))
    }

    /// Removes what interrupted uploads left ([`RecordStorage::sweep`]) now, then every
    /// [`records::SWEEP_EVERY`], until `stop`; among processes sharing the database
    /// (and the record store), one at a time sweeps (`jobs`).
    pub async fn sweep_records(self, jobs: crate::jobs::Jobs, stop: CancellationToken) {
        let mut checked_before = None;
        let mut turns = jobs.periodic(RECORD_SWEEP_JOB, records::SWEEP_EVERY);
        while turns.next(&stop).await {
            match self.records.sweep(&self.app.store, checked_before).await {
                Ok(swept) => checked_before = Some(swept.cutoff),
                Err(e) => tracing::warn!(error = %e, "record sweep failed"),
            }
        }
    }

    /// Passes status changes committed by other processes (PostgreSQL notifications
    /// naming the request, [`carepath_store::Wakeups::opinions`]) to this process's
    /// watchers, until `stop`: the request is read again and each of its status changes
    /// announced; watchers drop the ones they have seen (by version).
    pub async fn follow_other_processes(self, stop: CancellationToken) {
        let mut changed = self.app.store.wakeups().opinions();
        loop {
            let id = tokio::select! {
                () = stop.cancelled() => return,
                id = changed.recv() => match id {
                    Ok(id) => id,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "status changes of other processes missed");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if self.changes.receiver_count() == 0 {
                continue;
            }
            match self.app.store.get_opinion_request(&id).await {
                Ok(stored) => match request_of(&stored) {
                    Ok(request) => self.announce(&request, 0),
                    Err(e) => {
                        tracing::warn!(error = %e, request = %id, "changed request unreadable")
                    }
                },
                Err(e) => tracing::warn!(error = %e, request = %id, "changed request not read"),
            }
        }
    }

    /// Ends every open status watch; called when the application begins to stop.
    pub fn stop_watchers(&self) {
        self.stopping.cancel();
    }

    /// Today's date on the application's clock: the day first opinions must not be
    /// after.
    pub fn today(&self) -> NaiveDate {
        self.app.now().date_naive()
    }

    /// The request as shown now.
    fn view(&self, request: SecondOpinionRequest) -> RequestView {
        RequestView {
            late: request.is_late(self.app.now()),
            request,
            physician: None,
        }
    }

    /// Reads a request the caller may see and audits the read.
    async fn read(&self, caller: &Caller, id: &str) -> AppResult<(SecondOpinionRequest, Party)> {
        let id = record_id(id, "request_id")?;
        let now = self.app.now();
        let (_, request, party) = self
            .app
            .view(caller, &id, |actor, r| policy(actor, r, now))
            .await?;
        Ok((request, party))
    }

    /// Loads a request the caller may see, without auditing the read.
    async fn visible(&self, caller: &Caller, id: &str) -> AppResult<(SecondOpinionRequest, Party)> {
        let now = self.app.now();
        let (_, request, party) = self
            .app
            .visible(caller, id, |actor, r| policy(actor, r, now))
            .await?;
        Ok((request, party))
    }

    /// Applies one domain command through the pipeline: load under lock, the
    /// caller's part, the command, a lead physician if the records just completed,
    /// and one commit. Watchers hear of status changes after it.
    async fn command(
        &self,
        caller: &Caller,
        id: &str,
        command: impl FnOnce(
            &mut SecondOpinionRequest,
            &Party,
            &Actor,
            DateTime<Utc>,
        ) -> Result<Vec<EventDraft>, WorkflowError>,
    ) -> AppResult<SecondOpinionRequest> {
        let id = record_id(id, "request_id")?;
        let working: Working<'_, SecondOpinionRequest, Party> =
            self.app.open(caller, &id, policy).await?;
        let before = working.aggregate.history.len();
        let actor = &caller.actor;
        let (mut working, ()) = working
            .apply(|request, party, now| Ok(((), command(request, party, actor, now)?)))
            .await?;
        if working.aggregate.status == Status::AwaitingAssignment {
            let assigned = self
                .assign(&mut working.tx, &mut working.aggregate, working.now)
                .await?;
            working.events.extend(assigned);
        }
        let (request, ..) = working.commit().await?;
        self.announce(&request, before);
        Ok(request)
    }

    /// A command whose answer is the request, shown now.
    async fn step(
        &self,
        caller: &Caller,
        id: &str,
        command: impl FnOnce(
            &mut SecondOpinionRequest,
            &Party,
            &Actor,
            DateTime<Utc>,
        ) -> Result<Vec<EventDraft>, WorkflowError>,
    ) -> AppResult<RequestView> {
        let request = self.command(caller, id, command).await?;
        Ok(self.view(request))
    }

    /// Whether a member qualifies for a second opinion, and under which diagnosis
    /// group. Only members ask, for themselves or their minor family members; the
    /// check is audited.
    pub async fn check_eligibility(
        &self,
        caller: &Caller,
        cmd: CheckEligibility,
    ) -> AppResult<Eligibility> {
        self.member_for(caller, &cmd.member_id).await?;
        let outcome = check_eligibility(
            &self.catalogue,
            EligibilityInput {
                diagnosis: &cmd.diagnosis,
                major_surgery_recommended: cmd.major_surgery_recommended,
                emergency: cmd.emergency,
                has_first_opinion: cmd.first_opinion.is_some(),
            },
        );
        self.app
            .audit(
                caller,
                ELIGIBILITY_KIND,
                cmd.member_id.as_str(),
                Some(&cmd.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(match outcome {
            Ok(g) => Eligibility {
                group: Some(g.clone()),
                ineligible: None,
            },
            Err(why) => Eligibility {
                group: self.catalogue.group_of(&cmd.diagnosis).cloned(),
                ineligible: Some(why),
            },
        })
    }

    /// The member a request would be for, if the caller may ask for them: members for
    /// themselves, subscribers for their minor family members.
    async fn member_for(
        &self,
        caller: &Caller,
        member_id: &MemberId,
    ) -> AppResult<carepath_core::Member> {
        if caller.actor.role != Role::Member {
            return Err(self
                .app
                .refuse(
                    caller,
                    "member",
                    member_id.as_str(),
                    Some(member_id),
                    AppError::denied("members ask for second opinions themselves"),
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
                    AppError::hidden("member", member_id.as_str()),
                )
                .await),
        }
    }

    /// Opens a request for an eligible member and returns it with the questionnaire
    /// to answer. An ineligible request is refused with the reason (audited).
    pub async fn submit(&self, caller: &Caller, cmd: Submit) -> AppResult<Submitted> {
        let now = self.app.stored_now();
        let member = self.member_for(caller, &cmd.member_id).await?;
        let group = match check_eligibility(
            &self.catalogue,
            EligibilityInput {
                diagnosis: &cmd.diagnosis,
                major_surgery_recommended: cmd.major_surgery_recommended,
                emergency: cmd.emergency,
                has_first_opinion: cmd.first_opinion.is_some(),
            },
        ) {
            Ok(g) => g,
            Err(why) => {
                return Err(self
                    .app
                    .refuse(
                        caller,
                        RECORD_KIND,
                        cmd.member_id.as_str(),
                        Some(&cmd.member_id),
                        AppError::FailedPrecondition(format!(
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
                diagnosis: cmd.diagnosis,
                major_surgery_recommended: cmd.major_surgery_recommended,
                current_treatment: cmd.current_treatment.trim().to_owned(),
                first_opinion: cmd
                    .first_opinion
                    .expect("eligibility needs a first opinion"),
            },
            group,
            &self.catalogue,
            now,
        );
        let mut tx = self.app.store.begin().await?;
        tx.insert_opinion_request(&record_of(&request), now).await?;
        append_events(&mut tx, events).await?;
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
            .cloned();
        Ok(Submitted {
            request: RequestView {
                late: request.is_late(now),
                request,
                physician: None,
            },
            questionnaire,
        })
    }

    /// The questionnaire of a request (the version it was opened with).
    pub async fn questionnaire(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> AppResult<Questionnaire> {
        let (r, _) = self.read(caller, request_id).await?;
        self.catalogue
            .questionnaire(&r.questionnaire.id, r.questionnaire.version)
            .cloned()
            .ok_or_else(|| {
                AppError::FailedPrecondition(format!(
                    "questionnaire {} version {} is no longer loaded",
                    r.questionnaire.id, r.questionnaire.version
                ))
            })
    }

    /// Saves the member's answers to the questionnaire (replacing earlier ones).
    pub async fn answer_questionnaire(
        &self,
        caller: &Caller,
        request_id: &str,
        answers: Vec<Answer>,
    ) -> AppResult<RequestView> {
        let catalogue = self.catalogue.clone();
        let calendar = self.app.calendar.clone();
        self.step(caller, request_id, move |r, party, actor, now| {
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

    /// Logs a record a nurse coordinator received by fax or mail.
    pub async fn log_record(&self, caller: &Caller, cmd: LogRecord) -> AppResult<RecordAdded> {
        let record_id = format!("REC-{}", uuid::Uuid::now_v7().simple());
        let new = NewRecord {
            id: record_id.clone(),
            kind: cmd.kind,
            channel: cmd.channel,
            description: cmd.description.trim().to_owned(),
            file_name: None,
            content_type: None,
            size_bytes: 0,
            sha256: None,
            object_key: None,
        };
        let calendar = self.app.calendar.clone();
        let request = self
            .command(caller, &cmd.request_id, move |r, party, actor, now| {
                r.add_record(party, actor, new, &calendar, now)
            })
            .await?;
        Ok(self.record_added(request, &record_id))
    }

    fn record_added(&self, request: SecondOpinionRequest, record_id: &str) -> RecordAdded {
        RecordAdded {
            record: request.records.iter().find(|r| r.id == record_id).cloned(),
            request: self.view(request),
        }
    }

    /// The lead physician of a request, with their directory profile.
    pub async fn physician(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> AppResult<(Expert, Option<Provider>)> {
        let (request, _) = self.read(caller, request_id).await?;
        let Some(expert) = request.physician else {
            return Err(AppError::FailedPrecondition(
                "no lead physician is assigned yet".into(),
            ));
        };
        let provider = self.provider(&expert.npi).await?;
        Ok((expert, provider))
    }

    /// A nurse takes on the coordination of a request.
    pub async fn coordinate(&self, caller: &Caller, request_id: &str) -> AppResult<RequestView> {
        self.step(caller, request_id, |r, party, actor, now| {
            r.coordinate(party, actor, now)
        })
        .await
    }

    /// The lead physician publishes the opinion.
    pub async fn publish_opinion(
        &self,
        caller: &Caller,
        request_id: &str,
        draft: OpinionDraft,
    ) -> AppResult<RequestView> {
        self.step(caller, request_id, move |r, party, actor, now| {
            r.publish(party, actor, draft, now)
        })
        .await
    }

    /// The lead physician adds to a published opinion.
    pub async fn add_addendum(
        &self,
        caller: &Caller,
        request_id: &str,
        text: &str,
    ) -> AppResult<RequestView> {
        let text = text.trim().to_owned();
        self.step(caller, request_id, move |r, party, actor, now| {
            r.add_addendum(party, actor, text, now)
        })
        .await
    }

    /// The member says they have read the opinion.
    pub async fn mark_reviewed(&self, caller: &Caller, request_id: &str) -> AppResult<RequestView> {
        self.step(caller, request_id, |r, party, actor, now| {
            r.mark_reviewed(party, actor, now)
        })
        .await
    }

    /// The member consents to a copy of the opinion going to a doctor. A directory
    /// doctor must exist.
    pub async fn share_with_doctor(
        &self,
        caller: &Caller,
        cmd: ShareWithDoctor,
    ) -> AppResult<RequestView> {
        let doctor = match cmd.doctor {
            DoctorRef::Given(doctor) => *doctor,
            DoctorRef::Directory(npi) => match self.provider(&npi).await? {
                Some(p) => doctor_from_provider(&p),
                None => {
                    return Err(AppError::field(
                        "doctor.npi",
                        "no provider with this NPI in the directory",
                    ));
                }
            },
        };
        let consent = cmd.consent;
        self.step(caller, &cmd.request_id, move |r, party, actor, now| {
            r.share_with_doctor(party, actor, doctor, consent, now)
        })
        .await
    }

    /// A nurse records the follow-up with the member.
    pub async fn record_follow_up(
        &self,
        caller: &Caller,
        cmd: RecordFollowUp,
    ) -> AppResult<RequestView> {
        let notes = cmd.notes.trim().to_owned();
        let (channel, understands) = (cmd.channel, cmd.member_understands);
        self.step(caller, &cmd.request_id, move |r, party, actor, now| {
            r.record_follow_up(party, actor, channel, notes, understands, now)
        })
        .await
    }

    /// The member asks the lead physician a follow-up question.
    pub async fn ask_question(
        &self,
        caller: &Caller,
        request_id: &str,
        question: &str,
    ) -> AppResult<RequestView> {
        let question = question.trim().to_owned();
        self.step(caller, request_id, move |r, party, actor, now| {
            r.ask_question(party, actor, question, now)
        })
        .await
    }

    /// The lead physician answers follow-up question `number`.
    pub async fn answer_question(
        &self,
        caller: &Caller,
        request_id: &str,
        number: u32,
        answer: &str,
    ) -> AppResult<RequestView> {
        let answer = answer.trim().to_owned();
        self.step(caller, request_id, move |r, party, actor, now| {
            r.answer_question(party, actor, number, answer, now)
        })
        .await
    }

    /// A nurse closes the request.
    pub async fn close(
        &self,
        caller: &Caller,
        request_id: &str,
        closing_note: &str,
    ) -> AppResult<RequestView> {
        let note = closing_note.trim().to_owned();
        self.step(caller, request_id, move |r, party, actor, now| {
            r.close(party, actor, note, now)
        })
        .await
    }

    /// A request the caller may see, with the lead physician's profile.
    pub async fn get_request(&self, caller: &Caller, request_id: &str) -> AppResult<RequestView> {
        let (request, _) = self.read(caller, request_id).await?;
        let mut shown = self.view(request);
        if let Some(expert) = &shown.request.physician {
            shown.physician = self.app.store.get_provider(&expert.npi).await.ok();
        }
        Ok(shown)
    }

    /// One page of the requests the caller may see ([`list_scope`]); each one shown
    /// is audited.
    pub async fn list_requests(
        &self,
        caller: &Caller,
        cmd: ListRequests,
    ) -> AppResult<Page<RequestView>> {
        let size = cmd.page.checked_size("page.page_size")?;
        let now = self.app.now();
        let Some(mut filter) = list_scope(&caller.actor) else {
            return Err(self
                .app
                .refuse(
                    caller,
                    RECORD_KIND,
                    "*",
                    None,
                    AppError::denied(
                        "second-opinion requests are seen by members, their lead physicians and nurse coordinators",
                    ),
                )
                .await);
        };
        filter.status = cmd.status.map(|s| s.as_str().to_owned());
        filter.due_before = cmd.late_only.then_some(now);
        let store = &self.app.store;
        let found = visible_page(
            &cmd.page.token,
            size,
            |token| {
                let filter = &filter;
                async move { store.list_opinion_requests(filter, &token, size).await }
            },
            |record| {
                let request = request_of(record)?;
                Ok(policy(&caller.actor, &request, now).map(|_| request))
            },
            Rows {
                key: OpinionRequestRecord::page_token,
                weight: OpinionRequestRecord::stored_bytes,
            },
        )
        .await?;
        let mut tx = self.app.store.begin().await?;
        for request in &found.items {
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
        }
        tx.commit().await?;
        Ok(Page {
            items: found
                .items
                .into_iter()
                .map(|request| RequestView {
                    late: request.is_late(now),
                    request,
                    physician: None,
                })
                .collect(),
            next_page_token: found.next_page_token,
        })
    }
}

/// A directory provider as the doctor a copy goes to.
pub fn doctor_from_provider(p: &Provider) -> Doctor {
    Doctor {
        npi: Some(p.npi.clone()),
        name: p.name.clone(),
        email: p.email.clone(),
        fax: p.fax.clone(),
        address: Some(p.address.clone()),
        language: p.languages.first().cloned(),
        preferred_channel: Some(p.preferred_channel),
    }
}
