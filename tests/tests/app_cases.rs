//! Case management through the application layer directly, without gRPC, on both
//! backends: a member's referral opens a case that a nurse claims; a member who asks
//! for another member's case is told it does not exist, and the refusal is audited.

use carepath_app::{
    AppError, Caller, PageRequest,
    cases::{AddGoal, Cases, LIST_KIND, ListCases, OpenCase, RECORD_KIND, RecordConsent},
};
use carepath_cases::{CaseKind, NewGoal, Phase, ReferralSource, View};
use carepath_core::{Actor, MemberId, Npi, Role};
use carepath_store::{AuditOutcome, AuditQuery};
use carepath_tests::{TestDb, contract_tests, test_start};

contract_tests!(
    a_member_refers_herself_and_a_nurse_claims_the_case,
    another_member_is_told_the_case_does_not_exist_and_the_refusal_is_audited,
    a_member_may_not_change_her_care_plan_and_the_refusal_is_audited,
    a_providers_list_and_its_page_token_show_only_cases_it_may_see,
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

/// The member's own referral of `kind`; returns the case id.
async fn referral_of(cases: &Cases, kind: CaseKind) -> String {
    let member = caller(Role::Member, MEMBER, "test/OpenCase");
    let opened = cases
        .open_case(
            &member,
            OpenCase {
                member_id: MemberId::parse(MEMBER).unwrap(),
                kind,
                diagnosis: None,
                reason: "Help with my care".into(),
            },
        )
        .await
        .expect("a member refers herself");
    opened.case.expect("her own case").case.id
}

async fn a_providers_list_and_its_page_token_show_only_cases_it_may_see(db: &TestDb) {
    let keys = tempfile::tempdir().unwrap();
    let cases = cases(db, &keys).await;
    let hidden = referral_of(&cases, CaseKind::Oncology).await;
    let shared = referral_of(&cases, CaseKind::General).await;
    const CONSENTED: &str = "1381083801";
    const STRANGER: &str = "1500125129";
    let member = caller(Role::Member, MEMBER, "test/RecordConsent");
    cases
        .record_consent(
            &member,
            RecordConsent {
                case_id: shared.clone(),
                provider: Npi::parse(CONSENTED).unwrap(),
                granted: true,
            },
        )
        .await
        .expect("consent");
    let list = |kind: Option<CaseKind>, token: &str| ListCases {
        member_id: Some(MemberId::parse(MEMBER).unwrap()),
        kind,
        page: PageRequest {
            token: token.into(),
            size: 1,
        },
        ..ListCases::default()
    };

    // A provider the member let see none of her cases gets no case and no token,
    // with or without a kind filter.
    let stranger = caller(Role::Provider, STRANGER, "test/ListCases");
    for kind in [None, Some(CaseKind::Oncology), Some(CaseKind::General)] {
        let page = cases
            .list_cases(&stranger, list(kind, ""))
            .await
            .expect("list");
        assert!(page.items.is_empty(), "{kind:?}: {:?}", page.items);
        assert_eq!(
            page.next_page_token, "",
            "{kind:?}: the token names a hidden case"
        );
    }

    // The consented provider pages through exactly its case; no token names the other.
    let consented = caller(Role::Provider, CONSENTED, "test/ListCases");
    let (mut token, mut seen) = (String::new(), Vec::new());
    loop {
        let page = cases
            .list_cases(&consented, list(None, &token))
            .await
            .expect("list");
        assert!(
            !page.next_page_token.contains(&hidden),
            "{}",
            page.next_page_token
        );
        seen.extend(page.items.into_iter().map(|c| c.case.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, [shared]);

    // The list reads are audited under the member, even the ones that found nothing.
    let entries = db
        .store
        .search_audit(
            &AuditQuery {
                subject: Some(STRANGER.into()),
                member_id: Some(MEMBER.into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().all(|r| r.entry.record_kind == LIST_KIND
        && r.entry.record_id == MEMBER
        && r.entry.rpc == "test/ListCases"));
}
