//! The audit log through the real server: admins search it by member, subject and
//! period; nobody else may; the search itself is recorded; and `VerifyAudit` and
//! `carepath audit verify` both notice an entry altered by hand, on both backends.

use std::process::Command;

use carepath_core::Role;
use carepath_proto::{
    audit::v1::{self as pb, audit_service_client::AuditServiceClient},
    directory::v1::{GetMemberRequest, directory_service_client::DirectoryServiceClient},
};
use carepath_tests::{TestDb, TestServer, contract_tests};
use sqlx::Connection;
use tonic::Code;
use tonic_types::StatusExt;

contract_tests!(
    admins_search_the_log_by_member_subject_and_period,
    only_admins_read_the_log,
    an_entry_altered_by_hand_breaks_the_chain,
    a_script_repeating_a_refused_read_is_slowed_and_counted,
);

const GET_MEMBER: &str = "/carepath.directory.v1.DirectoryService/GetMember";

/// A nurse reads M100001 (allowed), another member tries to (denied), and the nurse
/// reads M100014 (another member's trail).
async fn make_trail(server: &TestServer) {
    let mut directory = DirectoryServiceClient::new(server.channel().await);
    let get = |id: &str| GetMemberRequest { id: id.into() };
    let nurse = server.token(Role::Nurse, "RN-001");
    directory
        .get_member(server.request(&nurse, get("M100001")))
        .await
        .expect("nurse reads a member");
    let other = server.token(Role::Member, "M100014");
    let err = directory
        .get_member(server.request(&other, get("M100001")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    directory
        .get_member(server.request(&nurse, get("M100014")))
        .await
        .expect("nurse reads another member");
}

async fn search(
    server: &TestServer,
    token: &str,
    request: pb::SearchAuditRequest,
) -> Result<pb::SearchAuditResponse, tonic::Status> {
    let mut audit = AuditServiceClient::new(server.channel().await);
    audit
        .search_audit(server.request(token, request))
        .await
        .map(|r| r.into_inner())
}

async fn admins_search_the_log_by_member_subject_and_period(db: &TestDb) {
    let server = TestServer::start(db).await;
    make_trail(&server).await;
    let admin = server.token(Role::Admin, "AD-002");

    let by_member = search(
        &server,
        &admin,
        pb::SearchAuditRequest {
            member_id: "M100001".into(),
            ..Default::default()
        },
    )
    .await
    .expect("admin searches");
    let seen: Vec<_> = by_member
        .entries
        .iter()
        .map(|e| (e.subject.as_str(), e.rpc.as_str(), e.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            ("RN-001", GET_MEMBER, pb::AuditOutcome::Allowed as i32),
            ("M100014", GET_MEMBER, pb::AuditOutcome::Denied as i32),
        ],
        "every access to M100001's data, oldest first, with its outcome"
    );
    assert!(
        by_member
            .entries
            .iter()
            .all(|e| e.member_id == "M100001" && e.hash.len() == 64 && e.at.is_some())
    );
    assert!(by_member.next_page_token.is_empty());

    // By subject, one entry a page.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = search(
            &server,
            &admin,
            pb::SearchAuditRequest {
                subject: "RN-001".into(),
                page: Some(carepath_proto::common::v1::PageRequest {
                    page_size: 1,
                    page_token: token.clone(),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("page");
        assert!(page.entries.len() <= 1);
        pages.extend(page.entries.into_iter().map(|e| e.member_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, ["M100001", "M100014"]);

    // A period that ends before the trail began finds nothing.
    let before = search(
        &server,
        &admin,
        pb::SearchAuditRequest {
            to: Some(prost_types::Timestamp {
                seconds: server.clock_now().timestamp() - 3600,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await
    .expect("period search");
    assert!(before.entries.is_empty(), "{:?}", before.entries);

    // The searches themselves are in the log, under the admin's name.
    let searches = search(
        &server,
        &admin,
        pb::SearchAuditRequest {
            subject: "AD-002".into(),
            ..Default::default()
        },
    )
    .await
    .expect("search for searches");
    assert!(
        searches
            .entries
            .iter()
            .any(|e| e.rpc == "/carepath.audit.v1.AuditService/SearchAudit"
                && e.record_kind == "audit_log"
                && e.member_id == "M100001"),
        "{:?}",
        searches.entries
    );
    server.stop().await;
}

async fn only_admins_read_the_log(db: &TestDb) {
    let server = TestServer::start(db).await;
    make_trail(&server).await;
    for (role, subject) in [
        (Role::Nurse, "RN-001"),
        (Role::PhysicianReviewer, "MD-RAD-01"),
        (Role::Member, "M100001"),
        (Role::Provider, "1381083801"),
        (Role::Service, "notifications"),
    ] {
        let token = server.token(role, subject);
        let err = search(&server, &token, pb::SearchAuditRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role:?}");
        let mut audit = AuditServiceClient::new(server.channel().await);
        let err = audit
            .verify_audit(server.request(&token, pb::VerifyAuditRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role:?}");
    }
    let mut audit = AuditServiceClient::new(server.channel().await);
    let err = audit
        .search_audit(pb::SearchAuditRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let admin = server.token(Role::Admin, "AD-002");
    let err = search(
        &server,
        &admin,
        pb::SearchAuditRequest {
            member_id: "not a member id".into(),
            page: Some(carepath_proto::common::v1::PageRequest {
                page_size: 0,
                page_token: "garbage".into(),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .expect("field details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["member_id", "page.page_token"]);
    server.stop().await;
}

/// `carepath audit verify` as an operator runs it, against the test's database.
fn cli_verify(db: &TestDb) -> (bool, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("carepath"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let out = Command::new(&bin)
        .args(["audit", "verify", "--database-url", &db.url])
        .output()
        .expect("run carepath audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn an_entry_altered_by_hand_breaks_the_chain(db: &TestDb) {
    let server = TestServer::start(db).await;
    make_trail(&server).await;
    let admin = server.token(Role::Admin, "AD-002");
    let mut audit = AuditServiceClient::new(server.channel().await);
    let verified = audit
        .verify_audit(server.request(&admin, pb::VerifyAuditRequest {}))
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.intact, "{verified:?}");
    assert!(verified.entries >= 3, "{verified:?}");
    let (ok, text) = cli_verify(db);
    assert!(ok, "fresh log verifies: {text}");
    assert!(text.contains("intact"), "{text}");

    // The first entry about M100001 is rewritten to blame somebody else.
    let first = search(
        &server,
        &admin,
        pb::SearchAuditRequest {
            member_id: "M100001".into(),
            ..Default::default()
        },
    )
    .await
    .expect("search")
    .entries[0]
        .seq;
    let sql = sqlx::AssertSqlSafe(format!(
        "UPDATE audit_log SET subject = 'RN-999' WHERE seq = {first}"
    ));
    if db.url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }

    let verified = audit
        .verify_audit(server.request(&admin, pb::VerifyAuditRequest {}))
        .await
        .expect("verify")
        .into_inner();
    assert!(!verified.intact);
    assert_eq!(verified.broken_at_seq, first);
    assert!(verified.reason.contains("hash"), "{verified:?}");
    let (ok, text) = cli_verify(db);
    assert!(!ok, "altered log must fail: {text}");
    assert!(text.contains(&format!("entry {first}")), "{text}");
    server.stop().await;
}

/// A member's token in a script asking for another member's record over and over:
/// the person's rate limit turns most calls away, and the refusals let through are
/// written as one entry and one count per minute, not one row each.
async fn a_script_repeating_a_refused_read_is_slowed_and_counted(db: &TestDb) {
    let server = TestServer::start(db).await;
    let stranger = server.token(Role::Member, "M100014");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut directory = DirectoryServiceClient::new(server.channel().await);
        let request = server.request(
            &stranger,
            GetMemberRequest {
                id: "M100001".into(),
            },
        );
        let (metadata, _, message) = request.into_parts();
        tasks.push(tokio::spawn(async move {
            let (mut not_found, mut limited) = (0_u32, 0_u32);
            for _ in 0..60 {
                let call = tonic::Request::from_parts(
                    metadata.clone(),
                    Default::default(),
                    message.clone(),
                );
                match directory.get_member(call).await {
                    Err(s) if s.code() == Code::NotFound => not_found += 1,
                    Err(s) if s.code() == Code::ResourceExhausted => limited += 1,
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            (not_found, limited)
        }));
    }
    let (mut refused, mut limited) = (0, 0);
    for task in tasks {
        let (n, l) = task.await.expect("task");
        refused += n;
        limited += l;
    }
    assert_eq!(refused + limited, 480);
    assert!(
        limited > 0,
        "a person's rate cannot carry a script ({refused} served)"
    );

    let denied = |records: Vec<carepath_store::AuditRecord>| -> Vec<u32> {
        records
            .into_iter()
            .filter(|r| {
                r.entry.subject == "M100014"
                    && r.entry.record_id == "M100001"
                    && r.entry.outcome == carepath_store::AuditOutcome::Denied
            })
            .map(|r| r.entry.repeats)
            .collect()
    };
    let query = carepath_store::AuditQuery {
        subject: Some("M100014".into()),
        ..Default::default()
    };
    // The server's clock stands still: one minute, one entry so far.
    let now = denied(db.store.search_audit(&query, 0, 10_000).await.unwrap());
    assert_eq!(now, [0], "{refused} refusals");
    // Once the minute is over the count is written: every refusal is accounted for.
    server.clock.advance(chrono::Duration::seconds(60));
    assert_eq!(server.app.flush_refusals(false).await.unwrap(), 1);
    let after = denied(db.store.search_audit(&query, 0, 10_000).await.unwrap());
    assert_eq!(after, [0, refused - 1]);
    server.stop().await;
}
