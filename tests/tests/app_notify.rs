//! The notice use cases through `carepath_app` directly, without gRPC, on SQLite and
//! PostgreSQL: who sees which notice, resends, the failed list and the delivery
//! report, and the audit trail each leaves.

use carepath_app::{
    App, AppError, Caller, PageRequest,
    notify::{
        ListFailedNotices, ListNotices, NoticeState, Notices, NotifyArea, NotifySettings,
        ReportPeriod, ResendNotice,
    },
};
use carepath_core::{Actor, ContactChannel, Role};
use carepath_notify::MailSettings;
use carepath_store::{AuditOutcome, AuditQuery, AuditRecord, NewNotice};
use carepath_tests::{TestDb, contract_tests, test_start};
use chrono::Duration;
use serde_json::json;

contract_tests!(
    an_admin_lists_every_notice_and_a_member_their_own,
    a_member_asking_for_someone_elses_notices_is_refused_and_audited,
    a_notice_is_read_by_its_recipient_only,
    admins_resend_failed_notices,
    the_failed_list_and_the_report_are_for_admins_and_services,
);

const MEMBER: &str = "M100001";
const STRANGER: &str = "M100004";
const PROVIDER: &str = "1184649790";
const NURSE: &str = "RN-001";
const ADMIN: &str = "AD-001";

/// The notice ids of the three notices [`setup`] stores.
const TO_MEMBER: &str = "01900000-0000-7000-8000-000000000001";
const TO_PROVIDER: &str = "01900000-0000-7000-8000-000000000002";
const UNREACHABLE: &str = "01900000-0000-7000-8000-000000000003";

/// The notice use cases over `db` with the demo directory, on a fixed clock, with
/// three notices stored: a pending email to the member, a dead fax to the provider
/// (about the member), and a stranger no channel reaches.
async fn setup(db: &TestDb) -> (App, Notices, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &dir).await;
    let settings = NotifySettings {
        mail: MailSettings {
            batch_dir: dir.path().join("print"),
        },
        ..NotifySettings::default()
    };
    let area = NotifyArea::new(app.clone(), &settings).expect("the notification area starts");
    let mut tx = db.store.begin().await.unwrap();
    for n in [
        notice(TO_MEMBER, &format!("member:{MEMBER}"), "email", "pending"),
        NewNotice {
            rendered: Some(json!({})),
            last_error: "fax gateway refused the number".into(),
            ..notice(TO_PROVIDER, &format!("provider:{PROVIDER}"), "fax", "dead")
        },
        NewNotice {
            member_id: Some(STRANGER.into()),
            planned: Some(json!({ "unreachable": { "recipient": "member:M100004" } })),
            last_error: "unreachable: no address".into(),
            ..notice(UNREACHABLE, &format!("member:{STRANGER}"), "none", "dead")
        },
    ] {
        assert!(tx.insert_notice(&n, test_start()).await.unwrap());
    }
    tx.commit().await.unwrap();
    (app, area.notices, dir)
}

fn notice(id: &str, recipient: &str, channel: &str, state: &str) -> NewNotice {
    NewNotice {
        id: id.into(),
        idempotency_key: format!("key-{id}"),
        event_id: format!("event-{id}"),
        event_kind: "precert.case.denied".into(),
        rule_id: "denial".into(),
        rules_version: "1".into(),
        recipient_id: recipient.into(),
        recipient_role: "member".into(),
        recipient_name: "Someone".into(),
        member_id: Some(MEMBER.into()),
        channel: channel.into(),
        destination: String::new(),
        template_id: "denial".into(),
        template_version: 1,
        language: "en".into(),
        subject: "Your request".into(),
        priority: 1,
        planned: None,
        rendered: None,
        state: state.into(),
        last_error: String::new(),
    }
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("valid actor"), operation)
}

/// Every audit entry of operation `op`, oldest first.
async fn trail(db: &TestDb, op: &str) -> Vec<AuditRecord> {
    db.store
        .search_audit(&AuditQuery::default(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.rpc == op)
        .collect()
}

fn ids(notices: &[carepath_app::notify::Notice]) -> Vec<&str> {
    let mut ids: Vec<&str> = notices.iter().map(|n| n.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

async fn an_admin_lists_every_notice_and_a_member_their_own(db: &TestDb) {
    let (_app, notices, _dir) = setup(db).await;
    let all = notices
        .list(&caller(Role::Admin, ADMIN, "all"), ListNotices::default())
        .await
        .expect("admins list every notice");
    assert_eq!(ids(&all.items), [TO_MEMBER, TO_PROVIDER, UNREACHABLE]);
    assert!(all.next_page_token.is_empty());
    // The listing is audited, and so is each notice it showed, under its member, so
    // a search for the member finds the admin's read.
    let audited = trail(db, "all").await;
    let entries: Vec<(&str, &str, Option<&str>)> = audited
        .iter()
        .map(|a| {
            (
                a.entry.record_kind.as_str(),
                a.entry.record_id.as_str(),
                a.entry.member_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(entries[0], ("notice", "*", None));
    for (id, member) in [
        (TO_MEMBER, MEMBER),
        (TO_PROVIDER, MEMBER),
        (UNREACHABLE, STRANGER),
    ] {
        assert!(
            entries.contains(&("notice", id, Some(member))),
            "{id} is not audited under the member: {entries:?}"
        );
    }

    let mine = notices
        .list(
            &caller(Role::Member, MEMBER, "mine"),
            ListNotices::default(),
        )
        .await
        .expect("a member lists their own");
    assert_eq!(ids(&mine.items), [TO_MEMBER]);
    let listed = &mine.items[0];
    assert_eq!(
        (listed.state, listed.channel),
        (NoticeState::Pending, Some(ContactChannel::Email))
    );
    let audited = trail(db, "mine").await;
    assert_eq!(audited[0].entry.record_id, format!("member:{MEMBER}"));
    assert_eq!(audited[0].entry.member_id.as_deref(), Some(MEMBER));

    // Paged one at a time, the admin sees each notice once.
    let admin = caller(Role::Admin, ADMIN, "paged");
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = notices
            .list(
                &admin,
                ListNotices {
                    recipient: None,
                    page: PageRequest { token, size: 1 },
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|n| n.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.sort();
    assert_eq!(seen, [TO_MEMBER, TO_PROVIDER, UNREACHABLE]);
}

async fn a_member_asking_for_someone_elses_notices_is_refused_and_audited(db: &TestDb) {
    let (_app, notices, _dir) = setup(db).await;
    let err = notices
        .list(
            &caller(Role::Member, MEMBER, "snoop"),
            ListNotices {
                recipient: Some(format!("member:{STRANGER}")),
                ..ListNotices::default()
            },
        )
        .await
        .expect_err("someone else's notices");
    assert!(
        matches!(&err, AppError::PermissionDenied(m) if m == "notices are listed to their recipient only"),
        "{err:?}"
    );
    let audited = trail(db, "snoop").await;
    assert_eq!(audited.len(), 1);
    let e = &audited[0].entry;
    assert_eq!(
        (
            e.record_kind.as_str(),
            e.record_id.as_str(),
            e.member_id.as_deref(),
            e.outcome
        ),
        (
            "notice",
            "member:M100004",
            Some(STRANGER),
            AuditOutcome::Denied
        )
    );
    // A service has no notices of its own to default to, but sees everyone's.
    let service = notices
        .list(
            &caller(Role::Service, "relay", "svc"),
            ListNotices::default(),
        )
        .await
        .unwrap();
    assert_eq!(service.items.len(), 3);
}

async fn a_notice_is_read_by_its_recipient_only(db: &TestDb) {
    let (_app, notices, _dir) = setup(db).await;
    let provider = caller(Role::Provider, PROVIDER, "read");
    let read = notices
        .get(&provider, TO_PROVIDER)
        .await
        .expect("the provider reads their notice");
    assert_eq!(read.state, NoticeState::Dead);
    assert_eq!(read.last_error, "fax gateway refused the number");

    let member = caller(Role::Member, MEMBER, "peek");
    let err = notices
        .get(&member, TO_PROVIDER)
        .await
        .expect_err("the member is not the recipient");
    assert_eq!(err.to_string(), format!("notice {TO_PROVIDER} not found"));
    let err = notices
        .get(&member, "no-such-notice")
        .await
        .expect_err("no such notice");
    assert_eq!(err.to_string(), "notice no-such-notice not found");
    let err = notices.get(&member, "  ").await.expect_err("no id");
    assert!(
        matches!(&err, AppError::Invalid(i) if i.violations[0].field == "id"),
        "{err:?}"
    );
    let denied: Vec<_> = trail(db, "peek")
        .await
        .into_iter()
        .map(|r| (r.entry.record_id, r.entry.member_id, r.entry.outcome))
        .collect();
    assert_eq!(
        denied,
        [
            (
                TO_PROVIDER.to_owned(),
                Some(MEMBER.to_owned()),
                AuditOutcome::Denied
            ),
            ("no-such-notice".to_owned(), None, AuditOutcome::Denied),
        ]
    );
}

async fn admins_resend_failed_notices(db: &TestDb) {
    let (_app, notices, _dir) = setup(db).await;
    let resend = |reason: &str, id: &str| ResendNotice {
        id: id.into(),
        reason: reason.into(),
    };
    let err = notices
        .resend(
            &caller(Role::Provider, PROVIDER, "resend"),
            resend("again", TO_PROVIDER),
        )
        .await
        .expect_err("providers do not resend");
    assert!(
        matches!(&err, AppError::PermissionDenied(m) if m == "only admins and services resend notices"),
        "{err:?}"
    );
    assert_eq!(
        trail(db, "resend").await[0].entry.outcome,
        AuditOutcome::Denied
    );

    let admin = caller(Role::Admin, ADMIN, "resend");
    let err = notices
        .resend(&admin, resend(" ", TO_PROVIDER))
        .await
        .expect_err("a reason is required");
    assert!(
        matches!(&err, AppError::Invalid(i) if i.violations[0].field == "reason"),
        "{err:?}"
    );
    let sent = notices
        .resend(&admin, resend("The gateway is fixed", TO_PROVIDER))
        .await
        .expect("a dead notice is resent");
    assert_eq!(sent.state, NoticeState::Pending);
    let err = notices
        .resend(&admin, resend("Once more", TO_PROVIDER))
        .await
        .expect_err("a pending notice is not resent");
    assert_eq!(
        err.to_string(),
        format!("notice {TO_PROVIDER} is pending; only failed or dead notices are resent")
    );
    let err = notices
        .resend(&admin, resend("Try the stranger", UNREACHABLE))
        .await
        .expect_err("no channel reaches the stranger");
    assert!(
        matches!(&err, AppError::FailedPrecondition(m) if m.starts_with("no channel reaches")),
        "{err:?}"
    );
}

async fn the_failed_list_and_the_report_are_for_admins_and_services(db: &TestDb) {
    let (_app, notices, _dir) = setup(db).await;
    let nurse = caller(Role::Nurse, NURSE, "failed");
    let err = notices
        .list_failed(&nurse, ListFailedNotices::default())
        .await
        .expect_err("nurses do not work the failed list");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
    let audited = trail(db, "failed").await;
    assert_eq!(
        (
            audited[0].entry.record_id.as_str(),
            audited[0].entry.outcome
        ),
        ("failed", AuditOutcome::Denied)
    );

    let admin = caller(Role::Admin, ADMIN, "failed");
    let dead = notices
        .list_failed(
            &admin,
            ListFailedNotices {
                state: Some(NoticeState::Dead),
                ..ListFailedNotices::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&dead.items), [TO_PROVIDER, UNREACHABLE]);
    // Each failed notice listed is audited under its member.
    let audited = trail(db, "failed").await;
    for (id, member) in [(TO_PROVIDER, MEMBER), (UNREACHABLE, STRANGER)] {
        assert!(
            audited.iter().any(|a| a.entry.record_id == id
                && a.entry.member_id.as_deref() == Some(member)
                && a.entry.outcome == AuditOutcome::Allowed),
            "{id} is not audited under the member: {audited:#?}"
        );
    }
    let err = notices
        .list_failed(
            &admin,
            ListFailedNotices {
                state: Some(NoticeState::Sent),
                ..ListFailedNotices::default()
            },
        )
        .await
        .expect_err("only failed or dead");
    assert!(
        matches!(&err, AppError::Invalid(i) if i.violations[0].field == "state"),
        "{err:?}"
    );

    let service = caller(Role::Service, "ops", "report");
    let err = notices
        .delivery_report(&service, ReportPeriod::default())
        .await
        .expect_err("the period is required");
    let AppError::Invalid(invalid) = err else {
        panic!("{err:?}")
    };
    let fields: Vec<&str> = invalid
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["from", "to"]);
    let report = notices
        .delivery_report(
            &service,
            ReportPeriod {
                from: Some(test_start() - Duration::days(1)),
                to: Some(test_start() + Duration::days(1)),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (report.total, report.unreachable, report.dead, report.sent),
        (3, 1, 1, 0)
    );
    let channels: Vec<_> = report
        .channels
        .iter()
        .map(|c| (c.channel, c.pending, c.dead))
        .collect();
    assert_eq!(
        channels,
        [
            (Some(ContactChannel::Email), 1, 0),
            (Some(ContactChannel::Fax), 0, 1)
        ]
    );
    let err = notices
        .delivery_report(
            &caller(Role::Member, MEMBER, "report"),
            ReportPeriod::default(),
        )
        .await
        .expect_err("members do not read the report");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
}
