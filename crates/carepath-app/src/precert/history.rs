//! Years of past precertification history, made through the real workflow and
//! written in bulk: for scale tests and benchmarks of a database that keeps history.
//!
//! Each case is an advanced-imaging request by a radiology provider of the directory
//! for one of its members, submitted on a day of the past years and decided by
//! automation ([`PrecertCase::submit`]); a share goes on to reviewers (claim,
//! approve, deny, ask for information), is withdrawn or appealed, and a share is
//! still open in the review queue, many of them long past due. The rows are what the
//! application itself would have stored: the case through [`record_of`], its events
//! through [`events_of`], the notices those events call for planned and rendered by
//! the notice rules and templates in force ([`notice_row`]) and sent, and an audit
//! entry for each call that made, changed or read the case. They are written by
//! [`Store::write_history`] many cases to a transaction, while the next batch is
//! being made.
//!
//! The shipped lists and notice templates start in 2026; so that requests of earlier
//! years are decided by rules and their notices rendered, the earliest version of
//! each list and of each template is taken to be in force from the first day of the
//! history (the shipped ones are used, whatever data directory is configured).
//!
//! Deterministic for a seed, apart from ids (time-ordered UUIDs, as the application
//! makes them). Request ids are `history-<seed>-<n>`: run again with another seed to
//! add more history to the same database.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use carepath_core::{
    Actor, BusinessCalendar, DomainEvent, Member, Plan, Provider, Role, ServiceCode, Setting,
    Staff, StaffRole, Urgency,
};
use carepath_notify::{NoticeRules, ResolvedRecipients, TemplateCatalog};
use carepath_precert::{
    AdverseDetermination, Answer, AppealDecision, AppealPriority, CaseState, Ctx, DocumentRequest,
    GoldCards, Lcg, Missing, PrecertCase, ProviderParty, RecordRef, RuleBook, ServiceLine,
    Submission, WithdrawReason,
};
use carepath_store::{
    AuditEntry, AuditOutcome, HistoryCase, HistoryNotice, HistoryWritten, MAX_HISTORY_BATCH,
    MemberFilter, ProviderFilter, SentNotice, StaffFilter, Store,
};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;

use super::{RECORD_KIND, record_of, submit::request_key};
use crate::{
    AppError, AppResult,
    notify::{
        handler::{notice_row, unreachable_row},
        precert_payload::{Parties, notice_payload},
    },
    pipeline::events_of,
};

/// Most cases one run makes.
pub const MAX_HISTORY_CASES: u64 = 10_000_000;
/// Most years of history.
pub const MAX_HISTORY_YEARS: u32 = 10;
/// Cases per transaction.
const BATCH: usize = 1_000;
const _: () = assert!(BATCH <= MAX_HISTORY_BATCH);

/// What to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryOptions {
    /// How many cases (1 to [`MAX_HISTORY_CASES`]).
    pub cases: u64,
    /// Seeds the choices; the same seed makes the same history.
    pub seed: u64,
    /// How many years back the history starts (1 to [`MAX_HISTORY_YEARS`]).
    pub years: u32,
}

impl HistoryOptions {
    fn check(&self) -> AppResult<()> {
        if !(1..=MAX_HISTORY_CASES).contains(&self.cases) {
            return Err(AppError::field(
                "cases",
                format!("from 1 to {MAX_HISTORY_CASES}"),
            ));
        }
        if !(1..=MAX_HISTORY_YEARS).contains(&self.years) {
            return Err(AppError::field(
                "years",
                format!("from 1 to {MAX_HISTORY_YEARS}"),
            ));
        }
        Ok(())
    }
}

/// What a run wrote and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistorySummary {
    pub written: HistoryWritten,
    /// Cases by how they stand, in [`Outcome`] order.
    pub outcomes: [u64; Outcome::ALL.len()],
    pub seconds: f64,
}

/// How a generated case stands at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Approved by automation at submission.
    Automatic,
    /// Waiting in the review queue.
    PendedReview,
    /// Claimed by a reviewer, not yet decided.
    InReview,
    /// A reviewer asked the provider for more.
    PendedInformation,
    /// Approved by a reviewer.
    ReviewerApproved,
    /// Denied by a physician reviewer.
    Denied,
    /// Withdrawn by the requester while waiting for review.
    Withdrawn,
    /// Denied, then appealed; the appeal waits.
    AppealWaiting,
    /// Denied, appealed, and the denial upheld.
    AppealUpheld,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Automatic,
        Outcome::PendedReview,
        Outcome::InReview,
        Outcome::PendedInformation,
        Outcome::ReviewerApproved,
        Outcome::Denied,
        Outcome::Withdrawn,
        Outcome::AppealWaiting,
        Outcome::AppealUpheld,
    ];

    /// The share of each outcome, per ten thousand cases.
    const SHARES: [u64; 9] = [8_550, 200, 100, 50, 450, 350, 200, 50, 50];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Automatic => "approved_automatically",
            Outcome::PendedReview => "pended_review",
            Outcome::InReview => "in_review",
            Outcome::PendedInformation => "pended_information",
            Outcome::ReviewerApproved => "approved_by_reviewer",
            Outcome::Denied => "denied",
            Outcome::Withdrawn => "withdrawn",
            Outcome::AppealWaiting => "appeal_requested",
            Outcome::AppealUpheld => "appeal_upheld",
        }
    }

    fn pick(roll: u64) -> Outcome {
        let mut below = 0;
        for (outcome, share) in Outcome::ALL.iter().zip(Outcome::SHARES) {
            below += share;
            if roll % 10_000 < below {
                return *outcome;
            }
        }
        Outcome::Automatic
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// The services requested: advanced imaging the shipped lists precertify.
const CODES: &[&str] = &[
    "70551", "70553", "70544", "72148", "72141", "73221", "73721",
];
const DIAGNOSES: &[&str] = &["G43.909", "M54.16", "R51.9", "M25.561"];
const SUBMIT: &str = "/carepath.precert.v1.PrecertService/Submit";
const GET_CASE: &str = "/carepath.precert.v1.PrecertService/GetCase";
const CLAIM: &str = "/carepath.precert.v1.PrecertService/ClaimCase";
const DECIDE: &str = "/carepath.precert.v1.PrecertService/RecordDecision";
const REQUEST_INFORMATION: &str = "/carepath.precert.v1.PrecertService/RequestInformation";
const WITHDRAW: &str = "/carepath.precert.v1.PrecertService/WithdrawCase";
const APPEAL: &str = "/carepath.precert.v1.PrecertService/RequestAppeal";
const DECIDE_APPEAL: &str = "/carepath.precert.v1.PrecertService/DecideAppeal";

/// A member and a provider for whom the request templates decide as planned.
#[derive(Debug, Clone)]
struct Pairing {
    member: Member,
    plan: Plan,
    provider: Provider,
}

/// Everything a case is made from, read once.
struct Maker {
    calendar: Arc<BusinessCalendar>,
    rules: RuleBook,
    gold_cards: GoldCards,
    notice_rules: Arc<NoticeRules>,
    templates: Arc<TemplateCatalog>,
    recipients: ResolvedRecipients,
    pairings: Vec<Pairing>,
    /// Physician reviewers of the services' specialty (two at least, so an appeal
    /// goes to another).
    reviewers: Vec<Staff>,
    seed: u64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    count: u64,
}

/// Reads every entry of a paged directory list.
macro_rules! read_all {
    ($store:expr, $list:ident, $filter:expr) => {{
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = $store.$list(&$filter, &after, 500).await?;
            all.extend(page.items);
            match page.next_page_token {
                Some(token) => after = token,
                None => break,
            }
        }
        all
    }};
}

/// The shipped rule book with each list's earliest version in force from `start`.
fn rules_from(start: DateTime<Utc>) -> AppResult<RuleBook> {
    let shipped = carepath_precert::shipped();
    let mut lists = shipped.lists().to_vec();
    let mut earliest: BTreeMap<String, usize> = BTreeMap::new();
    for (i, list) in lists.iter().enumerate() {
        let entry = earliest.entry(list.id.clone()).or_insert(i);
        if list.effective_from < lists[*entry].effective_from {
            *entry = i;
        }
    }
    for i in earliest.into_values() {
        let from = start.date_naive() - Duration::days(1);
        if from < lists[i].effective_from {
            lists[i].effective_from = from;
        }
    }
    RuleBook::from_lists(lists).map_err(|e| AppError::Internal(e.to_string()))
}

/// The shipped notice templates with each template's earliest version in effect from
/// `start`, so notices of earlier years render too.
fn templates_from(start: DateTime<Utc>) -> AppResult<TemplateCatalog> {
    const KEY: &str = "effective_from = \"";
    let files = carepath_notify::SHIPPED_TEMPLATES;
    let catalog = files
        .iter()
        .find(|(name, _)| *name == "catalog.toml")
        .map(|(_, text)| *text)
        .unwrap_or_default();
    let earliest = catalog
        .lines()
        .filter_map(|l| l.trim().strip_prefix(KEY))
        .filter_map(|rest| rest.strip_suffix('"'))
        .min()
        .unwrap_or_default()
        .to_owned();
    let from = (start.date_naive() - Duration::days(1)).format("%Y-%m-%d");
    let moved = |text: &str| {
        if earliest.is_empty() || earliest.as_str() <= from.to_string().as_str() {
            return text.to_owned();
        }
        text.replace(&format!("{KEY}{earliest}\""), &format!("{KEY}{from}\""))
    };
    TemplateCatalog::from_files(files.iter().map(|(name, text)| match *name {
        "catalog.toml" => (name.to_string(), moved(text)),
        _ => (name.to_string(), text.to_string()),
    }))
    .map_err(|e| AppError::Internal(e.to_string()))
}

/// A request of the template `approving` (its answers meet the rule's criteria) or
/// not (they do not: a reviewer must look).
fn submission(
    pairing: &Pairing,
    code: &str,
    diagnosis: &str,
    date_of_service: chrono::NaiveDate,
    approving: bool,
) -> AppResult<Submission> {
    let internal = |e: &dyn std::fmt::Display| AppError::Internal(e.to_string());
    let npi = pairing.provider.npi.clone();
    let network = pairing.provider.network_status(&pairing.plan.id);
    let mut answers = BTreeMap::new();
    answers.insert("red_flag_symptoms".to_owned(), Answer::Bool(approving));
    if !approving {
        answers.insert("conservative_therapy_weeks".to_owned(), Answer::Number(2.0));
    }
    Ok(Submission {
        member_id: pairing.member.id.clone(),
        plan: pairing.plan.clone(),
        requesting_provider: ProviderParty {
            npi: npi.clone(),
            network,
        },
        servicing_provider: ProviderParty { npi, network },
        lines: vec![ServiceLine {
            code: ServiceCode::parse(code).map_err(|e| internal(&e))?,
            units: 1,
            date_of_service,
            setting: Setting::Outpatient,
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission: Default::default(),
        }],
        diagnoses: vec![carepath_core::Icd10Code::parse(diagnosis).map_err(|e| internal(&e))?],
        urgency: Urgency::Routine,
        answers,
        records: vec![RecordRef {
            id: "note-1".into(),
            document: "clinical_notes".into(),
        }],
        coverage_assertions: Vec::new(),
    })
}

fn actor(role: Role, subject: &str) -> AppResult<carepath_precert::Caller> {
    let actor = Actor::new(role, subject).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(carepath_precert::Caller::new(actor, None))
}

fn staff_caller(staff: &Staff) -> AppResult<carepath_precert::Caller> {
    let role = match staff.role {
        StaffRole::PhysicianReviewer => Role::PhysicianReviewer,
        StaffRole::Nurse => Role::Nurse,
        _ => Role::Admin,
    };
    let mut caller = actor(role, staff.id.as_str())?;
    caller.specialty = staff.specialty.clone();
    Ok(caller)
}

/// A case being made: the case, its rows so far, and the time of the last step.
struct Making {
    case: PrecertCase,
    events: Vec<DomainEvent>,
    /// Each event with the case as it stood right after it, for its notices.
    snapshots: Vec<PrecertCase>,
    audit: Vec<(AuditEntry, DateTime<Utc>)>,
    staff: Vec<Staff>,
}

impl Making {
    fn publish(&mut self, drafts: Vec<carepath_core::EventDraft>) {
        for event in events_of(drafts) {
            self.events.push(event);
            self.snapshots.push(self.case.clone());
        }
    }

    fn audit(&mut self, subject: &str, role: Role, rpc: &str, at: DateTime<Utc>) {
        self.audit.push((
            AuditEntry {
                subject: subject.to_owned(),
                role: role.as_str().to_owned(),
                rpc: rpc.to_owned(),
                record_kind: RECORD_KIND.to_owned(),
                record_id: self.case.id.clone(),
                member_id: Some(self.case.request.member_id.as_str().to_owned()),
                outcome: AuditOutcome::Allowed,
                repeats: 0,
            },
            at,
        ));
    }
}

fn workflow(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("history workflow: {e}"))
}

impl Maker {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            calendar: &self.calendar,
            rules: &self.rules,
            gold_cards: &self.gold_cards,
        }
    }

    /// Case number `n` of the run: received in order over the history, so audit
    /// entries follow one another in time.
    fn case(&self, n: u64) -> AppResult<(HistoryCase, Outcome)> {
        let mut rng = Lcg(self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.draw();
        let span = (self.now - self.start).num_seconds().max(1) as u64;
        let offset = (u128::from(span) * u128::from(n) / u128::from(self.count)) as i64
            + rng.below(span / self.count.max(1) + 1) as i64;
        let received = crate::micros(self.start + Duration::seconds(offset));
        let outcome = Outcome::pick(rng.draw());
        // Later steps fit between receipt and now: a day apart, or closer for recent
        // cases.
        let room = (self.now - received).min(Duration::days(20));
        let step = |k: i32| received + room * k / 8;
        let pairing = &self.pairings[rng.below(self.pairings.len() as u64) as usize];
        let local = received
            .with_timezone(&self.calendar.timezone())
            .date_naive();
        let date_of_service = local + Duration::days(7 + rng.below(30) as i64);
        let request = submission(
            pairing,
            rng.pick(CODES),
            rng.pick(DIAGNOSES),
            date_of_service,
            outcome == Outcome::Automatic,
        )?;
        let npi = pairing.provider.npi.as_str();
        let provider = actor(Role::Provider, npi)?;
        let key = request_key(&provider.actor, &format!("history-{}-{n}", self.seed));
        let id = format!("PA-{}", uuid::Uuid::now_v7().simple());
        let ctx = self.ctx();
        let (case, drafts) = PrecertCase::submit(
            id,
            request,
            pairing.provider.specialty.clone(),
            &provider,
            &ctx,
            received,
        )
        .map_err(workflow)?;
        let mut m = Making {
            case,
            events: Vec::new(),
            snapshots: Vec::new(),
            audit: Vec::new(),
            staff: Vec::new(),
        };
        m.publish(drafts);
        m.audit(npi, Role::Provider, SUBMIT, received);
        m.audit(
            npi,
            Role::Provider,
            GET_CASE,
            step(1) - Duration::minutes(5).min(room / 16),
        );
        let expected = match outcome {
            Outcome::Automatic => CaseState::Approved,
            _ => CaseState::PendedReview,
        };
        if m.case.state != expected {
            return Err(workflow(format!(
                "case {n} is {} after submission, not {}",
                m.case.state.as_str(),
                expected.as_str()
            )));
        }
        let first = rng.below(self.reviewers.len() as u64) as usize;
        let reviewer = &self.reviewers[first];
        let other = &self.reviewers[(first + 1) % self.reviewers.len()];
        let by = staff_caller(reviewer)?;
        let claim = |m: &mut Making, at| -> AppResult<()> {
            let drafts = m.case.claim(&by, at).map_err(workflow)?;
            m.publish(drafts);
            m.audit(reviewer.id.as_str(), by.actor.role, CLAIM, at);
            m.staff.push(reviewer.clone());
            Ok(())
        };
        let adverse = || {
            AdverseDetermination::new(
                "not_medically_necessary",
                "Six weeks of conservative therapy have not been tried and there are no red-flag symptoms.",
                "Advanced imaging criteria: low back and joint pain",
            )
            .map_err(workflow)
        };
        match outcome {
            Outcome::Automatic | Outcome::PendedReview => {}
            Outcome::InReview => claim(&mut m, step(2))?,
            Outcome::PendedInformation => {
                claim(&mut m, step(2))?;
                let missing = Missing {
                    questions: Vec::new(),
                    documents: vec![DocumentRequest {
                        id: "imaging_reports".into(),
                        text: "Reports of prior imaging for the same condition".into(),
                    }],
                };
                let drafts = m
                    .case
                    .request_information(&by, missing, &ctx, step(3))
                    .map_err(workflow)?;
                m.publish(drafts);
                m.audit(
                    reviewer.id.as_str(),
                    by.actor.role,
                    REQUEST_INFORMATION,
                    step(3),
                );
            }
            Outcome::ReviewerApproved => {
                claim(&mut m, step(2))?;
                let drafts = m
                    .case
                    .approve(
                        &by,
                        "Criteria met on review of the clinical notes.",
                        step(3),
                    )
                    .map_err(workflow)?;
                m.publish(drafts);
                m.audit(reviewer.id.as_str(), by.actor.role, DECIDE, step(3));
            }
            Outcome::Withdrawn => {
                let drafts = m
                    .case
                    .withdraw(&provider, WithdrawReason::ByRequester, "", step(2))
                    .map_err(workflow)?;
                m.publish(drafts);
                m.audit(npi, Role::Provider, WITHDRAW, step(2));
            }
            Outcome::Denied | Outcome::AppealWaiting | Outcome::AppealUpheld => {
                claim(&mut m, step(2))?;
                let drafts = m.case.deny(&by, adverse()?, step(3)).map_err(workflow)?;
                m.publish(drafts);
                m.audit(reviewer.id.as_str(), by.actor.role, DECIDE, step(3));
                if outcome != Outcome::Denied {
                    let drafts = m
                        .case
                        .appeal(
                            &provider,
                            AppealPriority::Standard,
                            "The member's symptoms have worsened despite therapy.",
                            step(5),
                        )
                        .map_err(workflow)?;
                    m.publish(drafts);
                    m.audit(npi, Role::Provider, APPEAL, step(5));
                }
                if outcome == Outcome::AppealUpheld {
                    let by_other = staff_caller(other)?;
                    let drafts = m
                        .case
                        .decide_appeal(
                            &by_other,
                            AppealDecision::Upheld {
                                adverse: adverse()?,
                            },
                            step(7),
                        )
                        .map_err(workflow)?;
                    m.publish(drafts);
                    m.audit(
                        other.id.as_str(),
                        by_other.actor.role,
                        DECIDE_APPEAL,
                        step(7),
                    );
                    m.staff.push(other.clone());
                }
            }
        }
        // A third of the members look at their case once it has moved.
        let last = m.audit.last().map_or(received, |(_, at)| *at);
        if rng.below(3) == 0 {
            let member = m.case.request.member_id.clone();
            m.audit(member.as_str(), Role::Member, GET_CASE, last + room / 16);
        }
        let notices = self.notices(&m, pairing)?;
        let updated_at = m.case.history.last().map_or(received, |h| h.at);
        let record = record_of(&m.case, &key);
        Ok((
            HistoryCase {
                record,
                updated_at,
                events: m.events,
                audit: m.audit,
                notices,
            },
            outcome,
        ))
    }

    /// The notices the case's events call for, as the notifier plans and renders
    /// them, each sent half a minute after its event.
    fn notices(&self, m: &Making, pairing: &Pairing) -> AppResult<Vec<HistoryNotice>> {
        let parties = Parties {
            requesting: Some(pairing.provider.clone()),
            servicing: None,
            staff: m.staff.clone(),
        };
        let mut notices = Vec::new();
        for (event, case) in m.events.iter().zip(&m.snapshots) {
            if !self
                .notice_rules
                .rules
                .iter()
                .any(|r| r.matches_kind(&event.kind))
            {
                continue;
            }
            let payload = notice_payload(event, case, &parties).map_err(workflow)?;
            let event = DomainEvent {
                payload,
                ..event.clone()
            };
            let plan = self
                .notice_rules
                .plan(&event, &self.recipients)
                .map_err(workflow)?;
            let created_at = event.occurred_at + Duration::seconds(5);
            for planned in &plan.notices {
                let notice = notice_row(&self.templates, planned);
                let sent = (notice.state == "pending").then(|| SentNotice {
                    at: event.occurred_at + Duration::seconds(30),
                    reference: format!("{}-{}", notice.channel, notice.id),
                    detail: "accepted".into(),
                });
                notices.push(HistoryNotice {
                    notice,
                    created_at,
                    sent,
                });
            }
            for u in &plan.unreachable {
                notices.push(HistoryNotice {
                    notice: unreachable_row(&event, &self.notice_rules.version, u),
                    created_at,
                    sent: None,
                });
            }
        }
        Ok(notices)
    }

    /// Cases `from..to` of the run.
    fn batch(&self, from: u64, to: u64) -> AppResult<(Vec<HistoryCase>, [u64; 9])> {
        let mut cases = Vec::with_capacity((to - from) as usize);
        let mut outcomes = [0; 9];
        for n in from..to {
            let (case, outcome) = self.case(n)?;
            outcomes[outcome.index()] += 1;
            cases.push(case);
        }
        Ok((cases, outcomes))
    }
}

/// Reads the directory and finds the members and radiology providers for whom the
/// requests decide as planned: approved at once when the criteria are met, pended
/// for a radiology reviewer when not.
async fn maker(store: &Store, options: &HistoryOptions, now: DateTime<Utc>) -> AppResult<Maker> {
    let data = crate::data::current();
    // The shipped notice rules, like the shipped lists and templates below.
    let notice_rules =
        Arc::new(NoticeRules::shipped().map_err(|e| AppError::Internal(e.to_string()))?);
    let start = now - Duration::days(365 * i64::from(options.years));
    let members: Vec<Member> = read_all!(store, list_members, MemberFilter::default());
    let providers: Vec<Provider> = read_all!(store, list_providers, ProviderFilter::default());
    let staff: Vec<Staff> = read_all!(store, list_staff, StaffFilter::default());
    let mut recipients = ResolvedRecipients::default();
    for m in &members {
        recipients = recipients.with_member(m.clone());
    }
    for p in &providers {
        recipients = recipients.with_provider(p.clone());
    }
    for s in &staff {
        recipients = recipients.with_staff(s.clone());
    }
    let mut maker = Maker {
        calendar: data.calendar,
        rules: rules_from(start)?,
        gold_cards: GoldCards::default(),
        notice_rules,
        templates: Arc::new(templates_from(start)?),
        recipients,
        pairings: Vec::new(),
        reviewers: Vec::new(),
        seed: options.seed,
        start,
        now,
        count: options.cases,
    };
    let radiology = |s: &Option<carepath_core::Specialty>| {
        s.as_ref().is_some_and(|s| s.as_str() == "radiology")
    };
    maker.reviewers = staff
        .iter()
        .filter(|s| s.role == StaffRole::PhysicianReviewer && radiology(&s.specialty))
        .cloned()
        .collect();
    if maker.reviewers.len() < 2 {
        return Err(AppError::FailedPrecondition(
            "the directory needs two physician reviewers in radiology (load the demo directory)"
                .into(),
        ));
    }
    let plans: BTreeMap<String, Plan> = {
        let mut plans = BTreeMap::new();
        for m in &members {
            if !plans.contains_key(m.plan_id.as_str()) {
                plans.insert(m.plan_id.to_string(), store.get_plan(&m.plan_id).await?);
            }
        }
        plans
    };
    let probe_day = now.date_naive() + Duration::days(14);
    for provider in providers.iter().filter(|p| radiology(&p.specialty)) {
        for member in &members {
            let Some(plan) = plans.get(member.plan_id.as_str()) else {
                continue;
            };
            let pairing = Pairing {
                member: member.clone(),
                plan: plan.clone(),
                provider: provider.clone(),
            };
            if maker.decides_as_planned(&pairing, probe_day)? {
                maker.pairings.push(pairing);
            }
        }
    }
    if maker.pairings.is_empty() {
        return Err(AppError::FailedPrecondition(
            "no member and radiology provider of the directory for whom imaging requests are decided (load the demo directory)"
                .into(),
        ));
    }
    Ok(maker)
}

impl Maker {
    fn decides_as_planned(&self, pairing: &Pairing, day: chrono::NaiveDate) -> AppResult<bool> {
        let caller = actor(Role::Provider, pairing.provider.npi.as_str())?;
        for (approving, expected) in [
            (true, CaseState::Approved),
            (false, CaseState::PendedReview),
        ] {
            let request = submission(pairing, CODES[0], DIAGNOSES[0], day, approving)?;
            let decided = PrecertCase::submit(
                "probe",
                request,
                pairing.provider.specialty.clone(),
                &caller,
                &self.ctx(),
                self.now,
            );
            match decided {
                Ok((case, _)) if case.state == expected => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }
}

/// Makes `options.cases` cases of history up to `now` and writes them to `store`,
/// which must hold a directory with radiology providers and reviewers (the demo
/// directory does). Batches are made on a blocking thread while the one before is
/// written. `progress` hears the cases written so far after each batch.
pub async fn generate(
    store: &Store,
    options: &HistoryOptions,
    now: DateTime<Utc>,
    mut progress: impl FnMut(u64),
) -> AppResult<HistorySummary> {
    options.check()?;
    let started = Instant::now();
    // Every month of the history gets its own partition on PostgreSQL (the audit log
    // and the outbox), as the months a server lives through do.
    let first = now - Duration::days(366 * i64::from(options.years) + 31);
    store.ensure_partitions(first, now).await?;
    let maker = Arc::new(maker(store, options, now).await?);
    let (batches, mut ready) = mpsc::channel::<AppResult<(Vec<HistoryCase>, [u64; 9])>>(2);
    let count = options.cases;
    let making = tokio::task::spawn_blocking(move || {
        let mut from = 0;
        while from < count {
            let to = (from + BATCH as u64).min(count);
            let batch = maker.batch(from, to);
            let failed = batch.is_err();
            if batches.blocking_send(batch).is_err() || failed {
                return;
            }
            from = to;
        }
    });
    let mut written = HistoryWritten::default();
    let mut outcomes = [0; 9];
    while let Some(batch) = ready.recv().await {
        let (cases, counts) = batch?;
        written.add(store.write_history(&cases).await?);
        for (total, n) in outcomes.iter_mut().zip(counts) {
            *total += n;
        }
        progress(written.cases);
    }
    making
        .await
        .map_err(|e| AppError::Internal(format!("history generation stopped: {e}")))?;
    store.settle_history().await?;
    Ok(HistorySummary {
        written,
        outcomes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
