//! Notifications end to end through the real server, on both backends: a physician's
//! denial emailed to the provider (to a real SMTP server) and mailed to the member (a
//! PDF letter read back with pdftotext), approvals and information requests reaching
//! the provider, retries while the SMTP server is down, a server killed mid-dispatch
//! and restarted with every notice sent exactly once, who sees which notices, and the
//! second-opinion and case-management events (with the fax gateway).

use std::{collections::BTreeMap, time::Duration};

use base64::Engine;

use carepath_app::notify::settings::{DispatchOptions, NotifySettings};
use carepath_core::{DirectoryBundle, DomainEvent, Role};
use carepath_notify::{EmailSettings, FaxSettings, MailSettings, RetryPolicy, TlsMode, examples};
use carepath_proto::{
    common::v1::{Setting, Urgency},
    notify::v1::{self as npb, notification_service_client::NotificationServiceClient},
    precert::v1::{
        self as pb, clinical_answer::Value as Answer, precert_service_client::PrecertServiceClient,
    },
};
use carepath_store::NoticeRecord;
use carepath_tests::{
    ServerOptions, TestDb, TestServer, contract_tests,
    notify_support::{FaxGateway, SmtpServer, flatten, free_port, manifest, pdf_text},
};
use serde_json::Value;
use tonic::{Code, transport::Channel};

contract_tests!(
    a_physician_denial_emails_the_provider_and_mails_the_member_a_letter,
    an_approval_reaches_the_provider_at_once,
    an_information_request_reaches_the_provider_with_its_due_date,
    with_the_smtp_server_down_the_notice_is_retried_then_sent_once,
    killing_the_server_mid_dispatch_then_restarting_sends_every_notice_once,
    recipients_see_only_their_own_notices,
    second_opinion_and_case_management_events_become_notices,
);

const MEMBER: &str = "M100001"; // prefers email, lives in the US
const OTHER_MEMBER: &str = "M100007";
const IMAGING: &str = "1184649790"; // Clearview Imaging: prefers the portal, has email
const IMAGING_EMAIL: &str = "scheduling.clearview@example.org";
const MEMBER_EMAIL: &str = "dana.whitcombe@example.org";

/// A folder for the print batch, SMTP and fax recordings of one test.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn batch(&self) -> std::path::PathBuf {
        self.path("print")
    }

    /// Settings pointing at an SMTP server on `smtp_port` (running or not) and this
    /// workspace's print folder; retries after one minute.
    fn options(&self, smtp_port: u16, fax: Option<&FaxGateway>) -> ServerOptions {
        ServerOptions {
            notify: NotifySettings {
                email: EmailSettings {
                    host: "127.0.0.1".into(),
                    port: smtp_port,
                    tls: TlsMode::None,
                    credentials: None,
                    from: "Carepath Health Plan <notices@carepath.example>".into(),
                    timeout_secs: 10,
                },
                fax: fax.map(|f| FaxSettings {
                    endpoint: f.url.clone(),
                    bearer_token: Some("test-fax-token".into()),
                    from: "1-800-555-0143".into(),
                    timeout_secs: 10,
                }),
                mail: MailSettings {
                    batch_dir: self.batch(),
                },
                retry: RetryPolicy::default(),
                dispatch: DispatchOptions {
                    batch: 4,
                    lease: Duration::from_secs(120),
                    idle_poll: Duration::from_millis(50),
                    ..DispatchOptions::default()
                },
            },
            ..ServerOptions::default()
        }
    }
}

fn precert(channel: Channel) -> PrecertServiceClient<Channel> {
    PrecertServiceClient::new(channel)
}

fn notices(channel: Channel) -> NotificationServiceClient<Channel> {
    NotificationServiceClient::new(channel)
}

fn flag(id: &str, v: bool) -> pb::ClinicalAnswer {
    pb::ClinicalAnswer {
        question_id: id.into(),
        value: Some(Answer::Flag(v)),
    }
}

fn number(id: &str, v: f64) -> pb::ClinicalAnswer {
    pb::ClinicalAnswer {
        question_id: id.into(),
        value: Some(Answer::Number(v)),
    }
}

/// An outpatient brain MRI for `member`, requested and performed by the imaging
/// center.
fn mri(request_id: &str, member: &str, answers: Vec<pb::ClinicalAnswer>) -> pb::SubmitRequest {
    pb::SubmitRequest {
        request_id: request_id.into(),
        member_id: member.into(),
        requesting_provider_npi: IMAGING.into(),
        servicing_provider_npi: IMAGING.into(),
        lines: vec![pb::ServiceLine {
            service_code: "70553".into(),
            units: 1,
            date_of_service: "2026-12-01".into(),
            setting: Setting::Outpatient as i32,
            ..Default::default()
        }],
        diagnoses: vec!["G43.909".into()],
        urgency: Urgency::Routine as i32,
        answers,
        records: vec![pb::RecordReference {
            id: "rec-1".into(),
            document: "clinical_notes".into(),
        }],
    }
}

/// Submits an MRI request that automation approves at once; returns the case id.
async fn approved_case(server: &TestServer, request_id: &str, member: &str) -> String {
    let mut c = precert(server.channel().await);
    let token = server.token(Role::Provider, IMAGING);
    let case = c
        .submit(server.request(
            &token,
            mri(request_id, member, vec![flag("red_flag_symptoms", true)]),
        ))
        .await
        .expect("submit")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(case.status(), pb::CaseStatus::Approved);
    case.id
}

/// Submits an MRI request that goes to review, and has a radiologist deny it.
async fn denied_case(server: &TestServer, request_id: &str) -> String {
    let mut c = precert(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING);
    let radiologist = server.token(Role::PhysicianReviewer, "MD-RAD-01");
    let answers = vec![
        flag("red_flag_symptoms", false),
        number("conservative_therapy_weeks", 2.0),
    ];
    let case = c
        .submit(server.request(&provider, mri(request_id, MEMBER, answers)))
        .await
        .expect("submit")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(case.status(), pb::CaseStatus::PendedReview);
    c.claim_case(server.request(
        &radiologist,
        pb::ClaimCaseRequest {
            case_id: case.id.clone(),
        },
    ))
    .await
    .expect("claim");
    let denied = c
        .record_decision(server.request(
            &radiologist,
            pb::RecordDecisionRequest {
                case_id: case.id.clone(),
                outcome: pb::DecisionOutcome::Denied as i32,
                reason_code: "not_medically_necessary".into(),
                rationale:
                    "Two weeks of conservative therapy and no red-flag symptoms documented.".into(),
                guideline: "Advanced imaging criteria AI-12, section 3 (illustrative)".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("deny")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(denied.status(), pb::CaseStatus::Denied);
    case.id
}

/// The notices stored for the events of kind `kind` of a case.
async fn case_notices(db: &TestDb, case_id: &str, kind: &str) -> Vec<NoticeRecord> {
    let mut out = Vec::new();
    for event in db.store.events_for("precert_case", case_id).await.unwrap() {
        if event.kind == kind {
            out.extend(db.store.notices_for_event(&event.id).await.unwrap());
        }
    }
    out
}

/// Waits until `count` notices exist for a case's `kind` events and every one is in
/// one of `states`.
async fn settled(
    db: &TestDb,
    case_id: &str,
    kind: &str,
    count: usize,
    states: &[&str],
) -> Vec<NoticeRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = case_notices(db, case_id, kind).await;
        if found.len() == count && found.iter().all(|n| states.contains(&n.state.as_str())) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for {count} {kind} notices in {states:?}; have {:#?}",
            found
                .iter()
                .map(|n| (&n.rule_id, &n.channel, &n.state, &n.last_error))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_rule(found: &[NoticeRecord], rule: &str) -> NoticeRecord {
    found
        .iter()
        .find(|n| n.rule_id == rule)
        .unwrap_or_else(|| panic!("no notice of rule {rule}"))
        .clone()
}

/// What every denial states, filled from the case: the service and date, the
/// specific reason and the reviewer's rationale, the plan provision (the rule and the
/// list version), the guideline and that it is free on request, what would change
/// the decision, the peer-to-peer offer, how and by when to appeal (180 days after
/// the decision) and the 72-hour expedited appeal, external review, and the number.
fn denial_phrases(case_id: &str) -> Vec<String> {
    [
        case_id,
        "70553 Advanced imaging (outpatient)",
        "December 1, 2026",
        "Why the request was denied",
        "does not show that the service is medically necessary",
        "Two weeks of conservative therapy and no red-flag symptoms documented.",
        "Dr. Peter Lindqvist",
        "rule IMG-MRI",
        "Advanced imaging criteria AI-12, section 3 (illustrative)",
        "free of charge",
        "What could change this decision",
        "record of the treatment already tried",
        "Peer-to-peer discussion",
        "1-800-555-0144",
        "May 22, 2027",
        "expedited appeal",
        "72 hours",
        "external review",
        "civil action",
        "1-800-555-0142",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn assert_states_all(text: &str, phrases: &[String]) {
    let flat = flatten(text);
    for p in phrases {
        assert!(flat.contains(p.as_str()), "missing {p:?} in:\n{flat}");
    }
}

fn messages_to<'a>(messages: &'a [Value], to: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| {
            m["rcpt_tos"]
                .as_array()
                .is_some_and(|r| r.iter().any(|a| a == to))
        })
        .collect()
}

async fn a_physician_denial_emails_the_provider_and_mails_the_member_a_letter(db: &TestDb) {
    let ws = Workspace::new();
    let smtp = SmtpServer::start(free_port(), &ws.path("smtp"), Duration::ZERO);
    let server = TestServer::start_with(db, ws.options(smtp.port, None)).await;
    let case_id = denied_case(&server, "req-deny-1").await;

    let found = settled(db, &case_id, "precert.case.denied", 2, &["sent"]).await;
    let to_provider = by_rule(&found, "precert-denied-requesting");
    let to_member = by_rule(&found, "precert-denied-member");
    assert_eq!(
        (to_provider.channel.as_str(), to_member.channel.as_str()),
        ("email", "mail"),
        "the provider prefers the portal, which a denial may not use: email; the member by post"
    );

    // One email, received by the SMTP server, stating every required part.
    let messages = smtp.wait_for(1).await;
    let denial_mail: Vec<_> = messages_to(&messages, IMAGING_EMAIL);
    assert_eq!(denial_mail.len(), 1, "{messages:#?}");
    let email = denial_mail[0];
    assert!(
        email["subject"]
            .as_str()
            .unwrap()
            .contains("Precertification denied"),
        "{email}"
    );
    assert_eq!(
        email["message_id"].as_str().unwrap(),
        format!("<notice-{}@carepath.example>", to_provider.idempotency_key)
    );
    assert_states_all(email["text"].as_str().unwrap(), &denial_phrases(&case_id));
    assert_eq!(
        to_provider.receipt_reference,
        email["message_id"].as_str().unwrap()
    );

    // One letter to the member in the print batch, whose text holds the same parts.
    let entries = manifest(&ws.batch());
    let letters: Vec<_> = entries
        .iter()
        .filter(|e| e["idempotency_key"] == to_member.idempotency_key.as_str())
        .collect();
    assert_eq!(letters.len(), 1, "{entries:#?}");
    assert_eq!(letters[0]["recipient"], "Dana Whitcombe");
    let letter = pdf_text(&ws.batch().join(letters[0]["file"].as_str().unwrap()));
    assert_states_all(&letter, &denial_phrases(&case_id));
    assert!(letter.contains("Dana Whitcombe"), "{letter}");

    // Delivering the event again (as the outbox may) adds nothing.
    let area = carepath_server::notify::NotifyArea::new(
        server.app.clone(),
        &ws.options(smtp.port, None).notify,
    )
    .unwrap();
    let events = db.store.events_for("precert_case", &case_id).await.unwrap();
    let denial = events
        .iter()
        .find(|e| e.kind == "precert.case.denied")
        .unwrap();
    area.handler.store_notices(denial).await.unwrap();
    assert_eq!(
        case_notices(db, &case_id, "precert.case.denied")
            .await
            .len(),
        2
    );

    // The provider reads the notice with its content and its delivery record.
    let mut n = notices(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING);
    let got = n
        .get_notice(server.request(
            &provider,
            npb::GetNoticeRequest {
                id: to_provider.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notice
        .unwrap();
    assert_eq!(got.state(), npb::DeliveryState::Sent);
    assert_eq!(got.channel(), npb::Channel::Email);
    assert_states_all(&got.body, &denial_phrases(&case_id));
    assert_eq!(got.history.len(), 1);
    assert_eq!(got.history[0].outcome, "sent");
    assert!(got.history[0].detail.contains("250"), "{:?}", got.history);
    server.stop().await;
}

async fn an_approval_reaches_the_provider_at_once(db: &TestDb) {
    let ws = Workspace::new();
    let smtp = SmtpServer::start(free_port(), &ws.path("smtp"), Duration::ZERO);
    let server = TestServer::start_with(db, ws.options(smtp.port, None)).await;
    let case_id = approved_case(&server, "req-approve-1", MEMBER).await;

    let found = settled(db, &case_id, "precert.case.approved", 2, &["sent"]).await;
    let to_provider = by_rule(&found, "precert-approved-requesting");
    assert_eq!(
        to_provider.channel, "portal",
        "the imaging center reads the portal"
    );
    assert_eq!(
        to_provider.priority, 0,
        "approvals to the provider go first"
    );
    assert_eq!(to_provider.recipient_id, format!("provider:{IMAGING}"));
    let to_member = by_rule(&found, "precert-approved-member");
    assert_eq!(to_member.channel, "email");

    let mut n = notices(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING);
    let listed = n
        .list_notices(server.request(&provider, npb::ListNoticesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].subject.contains("Precertification approved"));
    let got = n
        .get_notice(server.request(
            &provider,
            npb::GetNoticeRequest {
                id: listed[0].id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notice
        .unwrap();
    assert_states_all(
        &got.body,
        &[
            format!("Authorization number: {case_id}"),
            "70553 Advanced imaging (outpatient): 1 units".into(),
            "The services may be scheduled".into(),
            "Valid from December 1, 2026 through March 1, 2027".into(),
        ],
    );
    assert_eq!(got.receipt_reference, format!("provider:{IMAGING}"));

    let messages = smtp.wait_for(1).await;
    let to_dana = messages_to(&messages, MEMBER_EMAIL);
    assert_eq!(to_dana.len(), 1);
    assert!(
        to_dana[0]["text"]
            .as_str()
            .unwrap()
            .contains("Good news: we approved the request from Clearview Imaging Center")
    );
    server.stop().await;
}

async fn an_information_request_reaches_the_provider_with_its_due_date(db: &TestDb) {
    let ws = Workspace::new();
    let server = TestServer::start_with(db, ws.options(free_port(), None)).await;
    let mut c = precert(server.channel().await);
    let token = server.token(Role::Provider, IMAGING);
    let case = c
        .submit(server.request(&token, mri("req-info-1", MEMBER, vec![])))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.status(), pb::CaseStatus::PendedInformation);
    let found = settled(
        db,
        &case.id,
        "precert.case.information_requested",
        1,
        &["sent"],
    )
    .await;
    let notice = &found[0];
    assert_eq!(
        (notice.rule_id.as_str(), notice.channel.as_str()),
        ("precert-info-requested", "portal")
    );
    let mut n = notices(server.channel().await);
    let got = n
        .get_notice(server.request(
            &token,
            npb::GetNoticeRequest {
                id: notice.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notice
        .unwrap();
    // The provider has 15 business days (Thanksgiving is a holiday).
    let due = case.information_due_at.expect("due");
    let due = chrono::DateTime::from_timestamp(due.seconds, 0)
        .unwrap()
        .date_naive();
    assert_eq!(due, chrono::NaiveDate::from_ymd_opt(2026, 12, 15).unwrap());
    assert!(
        got.subject
            .contains("Information needed by December 15, 2026"),
        "{}",
        got.subject
    );
    assert_states_all(&got.body, &["What we need".into(), "By when".into()]);
    let question = case
        .missing
        .iter()
        .find(|m| m.id == "red_flag_symptoms")
        .expect("the question asked");
    assert!(
        flatten(&got.body).contains(&flatten(&question.text)),
        "{}\n{question:?}",
        got.body
    );
    server.stop().await;
}

async fn with_the_smtp_server_down_the_notice_is_retried_then_sent_once(db: &TestDb) {
    let ws = Workspace::new();
    let port = free_port();
    let server = TestServer::start_with(db, ws.options(port, None)).await;
    let case_id = approved_case(&server, "req-approve-down", MEMBER).await;

    let found = settled(
        db,
        &case_id,
        "precert.case.approved",
        2,
        &["sent", "failed"],
    )
    .await;
    let email = by_rule(&found, "precert-approved-member");
    assert_eq!(email.state, "failed");
    assert_eq!(email.attempts, 1);
    assert!(
        email.last_error.contains("retryable"),
        "{}",
        email.last_error
    );
    assert_eq!(
        email.next_attempt_at,
        Some(server.clock_now() + chrono::Duration::minutes(1)),
        "retried after the first backoff step"
    );

    // Staff see it in the failed list and in the report.
    let mut n = notices(server.channel().await);
    let admin = server.token(Role::Admin, "AD-001");
    let failed = n
        .list_failed_notices(server.request(&admin, npb::ListFailedNoticesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert!(failed.iter().any(|f| f.id == email.id));
    let report = n
        .get_delivery_report(server.request(
            &admin,
            npb::GetDeliveryReportRequest {
                from: Some(carepath_server::convert::timestamp(
                    server.clock_now() - chrono::Duration::days(1),
                )),
                to: Some(carepath_server::convert::timestamp(
                    server.clock_now() + chrono::Duration::days(1),
                )),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let email_counts = report
        .channels
        .iter()
        .find(|c| c.channel() == npb::Channel::Email)
        .unwrap();
    assert_eq!((email_counts.failed, email_counts.sent), (1, 0));
    assert_eq!(report.sent, 1, "the provider's portal notice");

    // Not before it is due, even though the server is back.
    let smtp = SmtpServer::start(port, &ws.path("smtp"), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        db.store.get_notice(&email.id).await.unwrap().state,
        "failed"
    );
    server.clock.advance(chrono::Duration::minutes(2));
    let found = settled(db, &case_id, "precert.case.approved", 2, &["sent"]).await;
    let email = by_rule(&found, "precert-approved-member");
    assert_eq!(email.attempts, 2);
    let messages = smtp.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1, "sent once: {messages:#?}");
    let attempts = db.store.notice_attempts(&email.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "sent"]);
    server.stop().await;
}

async fn killing_the_server_mid_dispatch_then_restarting_sends_every_notice_once(db: &TestDb) {
    let ws = Workspace::new();
    // The SMTP server holds each message a second before accepting it, so the kill
    // lands while a message is on the wire.
    let smtp = SmtpServer::start(free_port(), &ws.path("smtp"), Duration::from_secs(1));
    let server = TestServer::start_with(db, ws.options(smtp.port, None)).await;
    let mut cases = Vec::new();
    for i in 0..3 {
        cases.push(approved_case(&server, &format!("req-kill-{i}"), MEMBER).await);
    }
    let denied = denied_case(&server, "req-kill-deny").await;

    // Every notice of the four cases, whatever its state.
    let all_notices = async || {
        let mut all = Vec::new();
        for c in &cases {
            all.extend(case_notices(db, c, "precert.case.approved").await);
        }
        all.extend(case_notices(db, &denied, "precert.case.denied").await);
        all
    };
    // Kill once the second email is being received and every notice has been made
    // (on a busy machine the notifier may reach the last events after that email).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while smtp.receiving() < 2 || all_notices().await.len() < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "no email went out, or not every notice was made"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let all = all_notices().await;
    assert_eq!(all.len(), 8, "2 per approval, 2 for the denial");
    let in_flight: Vec<_> = all.iter().filter(|n| n.state == "sending").collect();
    assert!(!in_flight.is_empty(), "the kill left notices mid-dispatch");
    assert!(
        all.iter().any(|n| n.state != "sent"),
        "the kill came before the batch was done"
    );

    // Start again; the dead dispatcher's leases run out and everything goes, once.
    let server = TestServer::start_with(db, ws.options(smtp.port, None)).await;
    server.clock.advance(chrono::Duration::minutes(3));
    let mut after = Vec::new();
    for c in &cases {
        after.extend(settled(db, c, "precert.case.approved", 2, &["sent"]).await);
    }
    after.extend(settled(db, &denied, "precert.case.denied", 2, &["sent"]).await);

    let emails: Vec<_> = after.iter().filter(|n| n.channel == "email").collect();
    assert_eq!(
        emails.len(),
        4,
        "3 approvals to the member, 1 denial to the provider"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = smtp.messages();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        *per_id
            .entry(m["message_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for e in &emails {
        let id = format!("<notice-{}@carepath.example>", e.idempotency_key);
        assert_eq!(per_id.get(&id), Some(&1), "{id} in {per_id:#?}");
    }
    assert_eq!(messages.len(), emails.len(), "{per_id:#?}");

    let letters = manifest(&ws.batch());
    let letter_keys: Vec<_> = letters
        .iter()
        .map(|l| l["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    let mail: Vec<_> = after.iter().filter(|n| n.channel == "mail").collect();
    assert_eq!(mail.len(), 1);
    assert_eq!(letter_keys, [mail[0].idempotency_key.clone()]);

    // The notices the kill caught record the abandoned attempt.
    for n in in_flight {
        let attempts = db.store.notice_attempts(&n.id).await.unwrap();
        let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes.first(), Some(&"abandoned"), "{outcomes:?}");
        assert_eq!(outcomes.last(), Some(&"sent"), "{outcomes:?}");
    }
    server.stop().await;
}

async fn recipients_see_only_their_own_notices(db: &TestDb) {
    let ws = Workspace::new();
    let server = TestServer::start_with(db, ws.options(free_port(), None)).await;
    let dana_case = approved_case(&server, "req-own-1", MEMBER).await;
    let tamsin_case = approved_case(&server, "req-own-2", OTHER_MEMBER).await;
    settled(
        db,
        &dana_case,
        "precert.case.approved",
        2,
        &["sent", "failed"],
    )
    .await;
    let tamsin = settled(
        db,
        &tamsin_case,
        "precert.case.approved",
        2,
        &["sent", "failed"],
    )
    .await;
    let tamsins = by_rule(&tamsin, "precert-approved-member");

    let mut n = notices(server.channel().await);
    let dana = server.token(Role::Member, MEMBER);
    let own = n
        .list_notices(server.request(&dana, npb::ListNoticesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(own.len(), 1, "{own:#?}");
    assert!(
        own.iter()
            .all(|x| x.recipient_id == format!("member:{MEMBER}"))
    );

    let err = n
        .list_notices(server.request(
            &dana,
            npb::ListNoticesRequest {
                recipient_id: format!("member:{OTHER_MEMBER}"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = n
        .get_notice(server.request(
            &dana,
            npb::GetNoticeRequest {
                id: tamsins.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "another member's notice does not exist for her"
    );
    let err = n
        .resend_notice(server.request(
            &dana,
            npb::ResendNoticeRequest {
                id: tamsins.id.clone(),
                reason: "x".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = n
        .list_failed_notices(server.request(&dana, npb::ListFailedNoticesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let provider = server.token(Role::Provider, IMAGING);
    let theirs = n
        .list_notices(server.request(&provider, npb::ListNoticesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(theirs.len(), 2);
    assert!(
        theirs
            .iter()
            .all(|x| x.recipient_id == format!("provider:{IMAGING}"))
    );

    let admin = server.token(Role::Admin, "AD-001");
    let everything = n
        .list_notices(server.request(
            &admin,
            npb::ListNoticesRequest {
                page: Some(carepath_proto::common::v1::PageRequest {
                    page_size: 3,
                    page_token: String::new(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everything.notices.len(), 3);
    assert!(!everything.next_page_token.is_empty());
    let err = n
        .list_notices(server.request(
            &admin,
            npb::ListNoticesRequest {
                page: Some(carepath_proto::common::v1::PageRequest {
                    page_size: 501,
                    page_token: String::new(),
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Staff resend the member's failed email (the SMTP port is closed here).
    let resent = n
        .resend_notice(server.request(
            &admin,
            npb::ResendNoticeRequest {
                id: tamsins.id.clone(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(resent.code(), Code::InvalidArgument, "a resend says why");

    // Every read, allowed or refused, is audited: the member's listing once for the
    // list and once for the notice it showed.
    let audit = db
        .store
        .search_audit(
            &carepath_store::AuditQuery {
                subject: Some(MEMBER.into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let outcomes: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.record_kind == "notice")
        .map(|a| a.entry.outcome.as_str())
        .collect();
    assert_eq!(
        outcomes,
        ["allowed", "allowed", "denied", "denied", "denied", "denied"]
    );
    server.stop().await;
}

/// Appends `event` to the outbox the way the other areas do.
async fn publish(db: &TestDb, event: &DomainEvent) {
    let mut tx = db.store.begin().await.unwrap();
    tx.append_event(event).await.unwrap();
    tx.commit().await.unwrap();
}

async fn event_notices(db: &TestDb, event_id: &str, count: usize) -> Vec<NoticeRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = db.store.notices_for_event(event_id).await.unwrap();
        if found.len() == count && found.iter().all(|n| n.state == "sent") {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{event_id}: {:#?}",
            found
                .iter()
                .map(|n| (&n.rule_id, &n.channel, &n.state, &n.last_error))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn second_opinion_and_case_management_events_become_notices(db: &TestDb) {
    let ws = Workspace::new();
    let smtp = SmtpServer::start(free_port(), &ws.path("smtp"), Duration::ZERO);
    let fax = FaxGateway::start(&ws.path("fax"));
    let server = TestServer::start_with(db, ws.options(smtp.port, Some(&fax))).await;
    let dir = DirectoryBundle::demo().unwrap();
    let wanted = [
        ("secondopinion.request.records_missing", 1, "email"),
        ("secondopinion.opinion.published", 2, "email+portal"),
        ("secondopinion.opinion.shared_with_doctor", 1, "fax"),
        ("cases.interaction.recorded", 1, "email"),
    ];
    let mut stored = Vec::new();
    for (kind, count, channels) in wanted {
        let mut event = examples::sample_events(&dir)
            .into_iter()
            .find(|e| e.kind == kind)
            .unwrap();
        event.id = uuid::Uuid::now_v7().to_string();
        event.occurred_at = server.clock_now();
        publish(db, &event).await;
        let found = event_notices(db, &event.id, count).await;
        let mut got: Vec<_> = found.iter().map(|n| n.channel.as_str()).collect();
        got.sort();
        assert_eq!(got.join("+"), channels, "{kind}");
        stored.push((kind, found));
    }

    // The nurse coordinator's follow-up waits in her portal queue.
    let published = &stored[1].1;
    let nurse_notice = published.iter().find(|n| n.channel == "portal").unwrap();
    let mut n = notices(server.channel().await);
    let nurse = server.token(Role::Nurse, "RN-001");
    let queue = n
        .list_notices(server.request(&nurse, npb::ListNoticesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(
        queue.iter().map(|q| &q.id).collect::<Vec<_>>(),
        [&nurse_notice.id]
    );

    // The doctor's copy went through the fax gateway as a PDF, keyed by the notice.
    let faxes = fax.faxes();
    assert_eq!(faxes.len(), 1);
    let copy = &stored[2].1[0];
    assert_eq!(faxes[0]["idempotency_key"], copy.idempotency_key.as_str());
    assert_eq!(faxes[0]["to"], "+971 4 555 0100");
    assert_eq!(faxes[0]["authorization"], "Bearer test-fax-token");
    assert_eq!(copy.receipt_reference, "fax-0");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(faxes[0]["document_pdf_base64"].as_str().unwrap())
        .unwrap();
    let path = ws.path("fax.pdf");
    std::fs::write(&path, pdf).unwrap();
    let text = pdf_text(&path);
    assert!(
        text.contains("The diagnosis of stage 4 chronic kidney disease is confirmed"),
        "{text}"
    );

    // The emails arrived: records missing, opinion published, the nurse's summary.
    let messages = smtp.wait_for(3).await;
    let subjects: Vec<_> = messages_to(&messages, MEMBER_EMAIL)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects.len(), 3);
    assert!(
        subjects
            .iter()
            .any(|t| flatten(t).contains("Pathology slides from the 2026 biopsy"))
    );
    assert!(
        subjects
            .iter()
            .any(|t| flatten(t).contains("We went over your new medicines"))
    );
    server.stop().await;
}
