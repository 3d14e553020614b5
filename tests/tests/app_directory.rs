//! The directory and audit use cases through `carepath_app` directly, without gRPC,
//! on SQLite and PostgreSQL: who may read which record, and the audit trail each read
//! and refusal leaves.

use carepath_app::{
    App, AppError, Caller, PageRequest,
    audit::{AuditLog, SearchAudit},
    directory::{Directory, ListMembers},
};
use carepath_core::{Actor, MemberId, PlanId, Role};
use carepath_store::{AuditOutcome, AuditRecord, AuditVerification};
use carepath_tests::{TestDb, contract_tests};

contract_tests!(
    a_member_reads_their_own_record_and_the_read_is_audited,
    a_provider_reading_a_member_is_refused_and_audited,
    a_member_reading_someone_else_is_told_it_does_not_exist,
    a_subscriber_lists_their_family_and_no_one_else,
    only_admins_and_services_write_the_directory,
    only_admins_read_the_audit_log,
    refused_searches_and_listings_are_audited_under_the_member,
    a_caller_not_entitled_to_a_member_cannot_tell_whether_it_exists,
);

const MEMBER: &str = "M100001";
const FAMILY: &str = "M100002";
const STRANGER: &str = "M100004";
const PROVIDER: &str = "1184649790";
const NURSE: &str = "RN-001";
const ADMIN: &str = "AD-001";

/// The application over `db` with the demo directory, on a fixed clock.
async fn app(db: &TestDb) -> (App, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    (app, keys)
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("valid actor"), operation)
}

fn member_id(id: &str) -> MemberId {
    MemberId::parse(id).expect("member id")
}

/// The audit entries about `member`, oldest first, as an admin reads them.
async fn trail(app: &App, member: &str) -> Vec<AuditRecord> {
    AuditLog::new(app.clone())
        .search(
            &caller(Role::Admin, ADMIN, "test"),
            SearchAudit {
                member: Some(member_id(member)),
                size: 500,
                ..SearchAudit::default()
            },
        )
        .await
        .expect("admin searches the audit log")
        .items
}

/// The entries of operation `op` in `trail`, as (subject, record kind, record id,
/// outcome).
fn entries_of(trail: &[AuditRecord], op: &str) -> Vec<(String, String, String, AuditOutcome)> {
    trail
        .iter()
        .filter(|r| r.entry.rpc == op)
        .map(|r| {
            (
                r.entry.subject.clone(),
                r.entry.record_kind.clone(),
                r.entry.record_id.clone(),
                r.entry.outcome,
            )
        })
        .collect()
}

async fn a_member_reads_their_own_record_and_the_read_is_audited(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let directory = Directory::new(app.clone());
    let me = caller(Role::Member, MEMBER, "own-read");
    let record = directory
        .get_member(&me, &member_id(MEMBER))
        .await
        .expect("a member reads their own record");
    assert_eq!(record.id.as_str(), MEMBER);
    // A subscriber reads a covered family member too.
    let family = directory
        .get_member(&me, &member_id(FAMILY))
        .await
        .expect("a subscriber reads their family");
    assert_eq!(family.subscriber_id, Some(member_id(MEMBER)));
    assert_eq!(
        entries_of(&trail(&app, MEMBER).await, "own-read"),
        [(
            MEMBER.to_owned(),
            "member".to_owned(),
            MEMBER.to_owned(),
            AuditOutcome::Allowed
        )]
    );
}

async fn a_provider_reading_a_member_is_refused_and_audited(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let directory = Directory::new(app.clone());
    let provider = caller(Role::Provider, PROVIDER, "provider-read");
    let err = directory
        .get_member(&provider, &member_id(MEMBER))
        .await
        .expect_err("providers see members through their requests only");
    assert!(
        matches!(&err, AppError::PermissionDenied(m) if m.contains("through their requests")),
        "{err:?}"
    );
    assert_eq!(
        entries_of(&trail(&app, MEMBER).await, "provider-read"),
        [(
            PROVIDER.to_owned(),
            "member".to_owned(),
            MEMBER.to_owned(),
            AuditOutcome::Denied
        )]
    );
    // Staff read any member, and the read is recorded as allowed.
    let nurse = caller(Role::Nurse, NURSE, "nurse-read");
    directory
        .get_member(&nurse, &member_id(MEMBER))
        .await
        .expect("nurses read members");
    assert_eq!(
        entries_of(&trail(&app, MEMBER).await, "nurse-read")[0].3,
        AuditOutcome::Allowed
    );
}

async fn a_member_reading_someone_else_is_told_it_does_not_exist(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let directory = Directory::new(app.clone());
    let me = caller(Role::Member, MEMBER, "snoop");
    let err = directory
        .get_member(&me, &member_id(STRANGER))
        .await
        .expect_err("not their record");
    assert!(
        matches!(&err, AppError::NotFound { kind: "member", id } if id == STRANGER),
        "{err:?}"
    );
    // A record that does not exist gets the same answer.
    let missing = directory
        .get_member(&me, &member_id("M999999"))
        .await
        .expect_err("no such member");
    assert_eq!(missing.to_string(), "member M999999 not found");
    assert_eq!(
        entries_of(&trail(&app, STRANGER).await, "snoop"),
        [(
            MEMBER.to_owned(),
            "member".to_owned(),
            STRANGER.to_owned(),
            AuditOutcome::Denied
        )]
    );
}

async fn a_subscriber_lists_their_family_and_no_one_else(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let directory = Directory::new(app.clone());
    let me = caller(Role::Member, MEMBER, "family");
    let family = directory
        .list_members(
            &me,
            ListMembers {
                subscriber_id: Some(member_id(MEMBER)),
                ..ListMembers::default()
            },
        )
        .await
        .expect("a subscriber lists their family");
    let ids: Vec<&str> = family.items.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&FAMILY), "{ids:?}");
    assert!(!ids.contains(&STRANGER), "{ids:?}");
    // Every member listed is audited.
    assert_eq!(entries_of(&trail(&app, FAMILY).await, "family").len(), 1);

    let err = directory
        .list_members(
            &me,
            ListMembers {
                subscriber_id: Some(member_id(STRANGER)),
                ..ListMembers::default()
            },
        )
        .await
        .expect_err("someone else's family");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
    let err = directory
        .list_members(
            &caller(Role::Nurse, NURSE, "too-many"),
            ListMembers {
                page: PageRequest {
                    token: String::new(),
                    size: 501,
                },
                ..ListMembers::default()
            },
        )
        .await
        .expect_err("page too large");
    assert!(
        matches!(&err, AppError::Invalid(i) if i.violations[0].field == "page.page_size"),
        "{err:?}"
    );
}

async fn only_admins_and_services_write_the_directory(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let directory = Directory::new(app.clone());
    let plan_id = PlanId::parse("PLAN-PCM-OAP").unwrap();
    let mut plan = directory
        .get_plan(&caller(Role::Member, MEMBER, "plan"), &plan_id)
        .await
        .expect("anyone reads plans");
    plan.name = "Renamed plan".into();
    let err = directory
        .upsert_plan(&caller(Role::Nurse, NURSE, "write"), plan.clone())
        .await
        .expect_err("nurses do not write the directory");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
    let written = directory
        .upsert_plan(&caller(Role::Admin, ADMIN, "write"), plan)
        .await
        .expect("admins write the directory");
    assert!(!written.created);
    assert_eq!(
        directory
            .get_plan(&caller(Role::Provider, PROVIDER, "plan"), &plan_id)
            .await
            .unwrap()
            .name,
        "Renamed plan"
    );
    let err = directory
        .get_staff(
            &caller(Role::Member, MEMBER, "staff"),
            &carepath_core::StaffId::parse(NURSE).unwrap(),
        )
        .await
        .expect_err("staff records are for staff");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
}

async fn only_admins_read_the_audit_log(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let log = AuditLog::new(app.clone());
    let err = log
        .search(
            &caller(Role::Nurse, NURSE, "search"),
            SearchAudit::default(),
        )
        .await
        .expect_err("nurses do not read the audit log");
    assert!(
        matches!(&err, AppError::PermissionDenied(m) if m == "only admins read the audit log"),
        "{err:?}"
    );
    let err = log
        .verify(&caller(Role::Service, "notify", "verify"))
        .await
        .expect_err("services do not either");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");

    for id in [MEMBER, FAMILY] {
        Directory::new(app.clone())
            .get_member(&caller(Role::Nurse, NURSE, "read"), &member_id(id))
            .await
            .unwrap();
    }
    let admin = caller(Role::Admin, ADMIN, "search");
    let first = log
        .search(
            &admin,
            SearchAudit {
                size: 1,
                ..SearchAudit::default()
            },
        )
        .await
        .expect("admins search");
    assert_eq!(first.items.len(), 1);
    assert!(!first.next_page_token.is_empty());
    // The search itself is on the record, under `*` for a search of every member.
    let all = log
        .search(
            &admin,
            SearchAudit {
                size: 500,
                ..SearchAudit::default()
            },
        )
        .await
        .unwrap();
    assert!(
        all.items.iter().any(|r| r.entry.rpc == "search"
            && r.entry.record_kind == "audit_log"
            && r.entry.record_id == "*"),
        "{:#?}",
        all.items
    );
    assert!(matches!(
        log.verify(&admin).await.unwrap().verdict,
        AuditVerification::Intact { .. }
    ));
}

async fn refused_searches_and_listings_are_audited_under_the_member(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let err = AuditLog::new(app.clone())
        .search(
            &caller(Role::Nurse, NURSE, "nurse-search"),
            SearchAudit {
                member: Some(member_id(MEMBER)),
                ..SearchAudit::default()
            },
        )
        .await
        .expect_err("nurses do not read the audit log");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
    let err = Directory::new(app.clone())
        .list_members(
            &caller(Role::Member, STRANGER, "stranger-lists"),
            ListMembers {
                subscriber_id: Some(member_id(MEMBER)),
                ..ListMembers::default()
            },
        )
        .await
        .expect_err("someone else's family");
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
    let trail = trail(&app, MEMBER).await;
    assert_eq!(
        entries_of(&trail, "nurse-search"),
        [(
            NURSE.to_owned(),
            "audit_log".to_owned(),
            MEMBER.to_owned(),
            AuditOutcome::Denied
        )]
    );
    assert_eq!(
        entries_of(&trail, "stranger-lists"),
        [(
            STRANGER.to_owned(),
            "member".to_owned(),
            MEMBER.to_owned(),
            AuditOutcome::Denied
        )]
    );
}

/// The kind of an answer and its message with the member id taken out.
fn shape(result: Result<carepath_core::Member, AppError>, id: &str) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => {
            let kind = match &e {
                AppError::NotFound { .. } => "not found",
                AppError::PermissionDenied(_) => "permission denied",
                _ => "other",
            };
            format!("{kind}: {}", e.to_string().replace(id, "<id>"))
        }
    }
}

async fn a_caller_not_entitled_to_a_member_cannot_tell_whether_it_exists(db: &TestDb) {
    let (app, _keys) = app(db).await;
    let directory = Directory::new(app.clone());
    const MISSING: &str = "M999999";
    for (who, op) in [
        (caller(Role::Provider, PROVIDER, "probe"), "a provider"),
        (caller(Role::Member, STRANGER, "probe"), "another member"),
    ] {
        let real = shape(directory.get_member(&who, &member_id(MEMBER)).await, MEMBER);
        let missing = shape(
            directory.get_member(&who, &member_id(MISSING)).await,
            MISSING,
        );
        assert_ne!(real, "ok", "{op} read the member");
        assert_eq!(real, missing, "{op} can tell a member exists");
    }
}
