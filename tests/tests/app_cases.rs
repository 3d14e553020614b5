//! Case management through the application layer directly, without gRPC, on both
//! backends: a member's referral opens a case that a nurse claims; a member who asks
//! for another member's case is told it does not exist, and the refusal is audited.

use carepath_app::{
    AppError, Caller,
    cases::{AddGoal, Cases, OpenCase, RECORD_KIND},
};
use carepath_cases::{CaseKind, NewGoal, Phase, ReferralSource, View};
use carepath_core::{Actor, MemberId, Role};
use carepath_store::{AuditOutcome, AuditQuery};
use carepath_tests::{TestDb, contract_tests, test_start};

contract_tests!(
    a_member_refers_herself_and_a_nurse_claims_the_case,
    another_member_is_told_the_case_does_not_exist_and_the_refusal_is_audited,
    a_member_may_not_change_her_care_plan_and_the_refusal_is_audited,
);

const MEMBER: &str = "M100001";

/// The use cases over `db` with the demo directory, a fixed clock and a key in
/// `keys`.
async fn cases(db: &TestDb, keys: &tempfile::TempDir) -> Cases {
    let app = carepath_tests::demo_app(db, keys).await;
    Cases::new(app)
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("valid actor"), operation)
}

/// The member's own referral, opened through the use case.
async fn referral(cases: &Cases) -> String {
    let member = caller(Role::Member, MEMBER, "test/OpenCase");
    let opened = cases
        .open_case(
            &member,
            OpenCase {
                member_id: MemberId::parse(MEMBER).unwrap(),
                kind: CaseKind::Oncology,
                diagnosis: None,
                reason: "Help with my treatment calendar".into(),
            },
        )
        .await
        .expect("a member refers herself");
    assert!(!opened.absorbed);
    let seen = opened.case.expect("the member sees her own case");
    assert_eq!(seen.case.phase, Phase::Screening);
    assert_eq!(seen.case.referrals[0].source, ReferralSource::Member);
    seen.case.id
}

async fn a_member_refers_herself_and_a_nurse_claims_the_case(db: &TestDb) {
    let keys = tempfile::tempdir().unwrap();
    let cases = cases(db, &keys).await;
    let id = referral(&cases).await;

    let nurse = caller(Role::Nurse, "RN-001", "test/ClaimCase");
    let claimed = cases.claim_case(&nurse, &id).await.expect("claimed");
    let assigned = claimed.case.nurse.as_ref().expect("a nurse holds it");
    assert_eq!(assigned.staff_id.as_str(), "RN-001");
    assert_eq!(assigned.name, "Maria Delgado, RN");
    assert_eq!(claimed.today, test_start().date_naive());

    // Only the case's nurse works it now; another nurse no longer sees it.
    let reader = caller(Role::Nurse, "RN-001", "test/GetCase");
    let seen = cases.get_case(&reader, &id).await.unwrap();
    assert_eq!(seen.case.view_for(&reader.actor), View::Full);
    let other = caller(Role::Nurse, "RN-005", "test/ClaimCase");
    assert!(matches!(
        cases.claim_case(&other, &id).await,
        Err(AppError::NotFound { kind: "case", .. })
    ));
    // Members do not claim cases.
    let member = caller(Role::Member, MEMBER, "test/ClaimCase");
    assert!(matches!(
        cases.claim_case(&member, &id).await,
        Err(AppError::PermissionDenied(_))
    ));

    assert_eq!(
        db.event_kinds(RECORD_KIND, &id).await,
        ["cases.case.opened", "cases.case.assigned"]
    );
    let entries = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some("RN-001".into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let claims: Vec<_> = entries
        .iter()
        .filter(|r| r.entry.rpc == "test/ClaimCase")
        .collect();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].entry.record_kind, RECORD_KIND);
    assert_eq!(claims[0].entry.record_id, id);
    assert_eq!(claims[0].entry.member_id.as_deref(), Some(MEMBER));
    assert_eq!(claims[0].entry.outcome, AuditOutcome::Allowed);
}

async fn another_member_is_told_the_case_does_not_exist_and_the_refusal_is_audited(db: &TestDb) {
    let keys = tempfile::tempdir().unwrap();
    let cases = cases(db, &keys).await;
    let id = referral(&cases).await;

    let stranger = caller(Role::Member, "M100002", "test/GetCase");
    match cases.get_case(&stranger, &id).await {
        Err(AppError::NotFound { kind, id: missing }) => {
            assert_eq!((kind, missing.as_str()), ("case", id.as_str()));
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    // A case that does not exist reads the same.
    assert!(matches!(
        cases.get_case(&stranger, "CM-none").await,
        Err(AppError::NotFound { kind: "case", .. })
    ));

    let entries = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some("M100002".into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let refusals: Vec<_> = entries.iter().map(|r| &r.entry).collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals.iter().all(|e| e.outcome == AuditOutcome::Denied
        && e.record_kind == RECORD_KIND
        && e.rpc == "test/GetCase"));
    assert_eq!(refusals[0].record_id, id);
    assert_eq!(refusals[0].member_id.as_deref(), Some(MEMBER));
    assert_eq!(refusals[1].record_id, "CM-none");
    assert_eq!(refusals[1].member_id, None);
}

async fn a_member_may_not_change_her_care_plan_and_the_refusal_is_audited(db: &TestDb) {
    let keys = tempfile::tempdir().unwrap();
    let cases = cases(db, &keys).await;
    let id = referral(&cases).await;

    // She sees her case, but the care plan is the nurse's: the domain refuses, the
    // refusal is audited once the transaction has ended, and nothing is written.
    let member = caller(Role::Member, MEMBER, "test/AddGoal");
    let goal = AddGoal {
        case_id: id.clone(),
        goal: NewGoal {
            description: "Knows whom to call at night".into(),
            target_date: "2027-01-15".parse().unwrap(),
        },
    };
    assert!(matches!(
        cases.add_goal(&member, goal).await,
        Err(AppError::PermissionDenied(_))
    ));
    let entries = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some(MEMBER.into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let refusal: Vec<_> = entries
        .iter()
        .map(|r| &r.entry)
        .filter(|e| e.rpc == "test/AddGoal")
        .collect();
    assert_eq!(refusal.len(), 1, "{refusal:?}");
    assert_eq!(refusal[0].outcome, AuditOutcome::Denied);
    assert_eq!(refusal[0].record_id, id);
    let admin = caller(Role::Admin, "AD-001", "test/GetCase");
    assert!(
        cases
            .get_case(&admin, &id)
            .await
            .unwrap()
            .case
            .goals
            .is_empty()
    );
    assert_eq!(
        db.event_kinds(RECORD_KIND, &id).await,
        ["cases.case.opened"]
    );
}
