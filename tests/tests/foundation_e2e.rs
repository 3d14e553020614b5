//! End to end through the real server on port 0: reflection, health, authentication,
//! the directory, error details and the audit trail, on both backends.

use carepath_core::Role;
use carepath_proto::directory::v1::{self as pb, directory_service_client::DirectoryServiceClient};
use carepath_store::{AuditOutcome, AuditQuery};
use carepath_tests::{
    TestDb, TestServer, contract_tests,
    process::{ServerProcess, binary},
    reflection_lists_services,
};
use tonic::Code;
use tonic_types::StatusExt;

/// A thin binary's reflection lists what it answers (its area, the audit search and
/// health), not every contract compiled into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_binary_lists_only_its_own_services() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = std::process::Command::new(binary("carepath-precert-server", None));
    command
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("precert.db").display()
        ))
        .arg("--signing-key")
        .arg(dir.path().join("signing.pem"));
    let server = ServerProcess::start("carepath-precert-server", command);
    let mut names = reflection_lists_services(server.channel().await).await;
    names.sort();
    assert_eq!(
        names,
        [
            "carepath.audit.v1.AuditService",
            "carepath.precert.v1.PrecertService",
            "grpc.health.v1.Health",
        ]
    );
}

contract_tests!(
    reflection_lists_every_service,
    health_reports_serving,
    calls_without_a_valid_token_are_unauthenticated,
    staff_tokens_must_match_the_staff_directory,
    members_are_visible_only_to_those_entitled,
    bad_input_names_the_field_and_writes_nothing,
    provider_search_finds_a_local_specialist,
);

async fn reflection_lists_every_service(db: &TestDb) {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let server = TestServer::start(db).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"carepath.directory.v1.DirectoryService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await;
}

async fn health_reports_serving(db: &TestDb) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = TestServer::start(db).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "carepath.directory.v1.DirectoryService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    server.stop().await;
}

async fn calls_without_a_valid_token_are_unauthenticated(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut client = DirectoryServiceClient::new(server.channel().await);
    let get = || pb::GetMemberRequest {
        id: "M100001".into(),
    };

    let err = client.get_member(get()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let err = client
        .get_member(server.request("not-a-jwt", get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let valid = server.token(Role::Admin, "AD-001");
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    let err = client
        .get_member(server.request(&tampered, get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let ok = client
        .get_member(server.request(&valid, get()))
        .await
        .unwrap();
    assert!(
        ok.metadata().get("x-request-id").is_some(),
        "every answer carries its request id"
    );

    let actor = carepath_core::Actor::new(Role::Admin, "AD-001").unwrap();
    let expired = server
        .app
        .auth
        .mint(
            &actor,
            server.clock_now() - chrono::Duration::hours(2),
            chrono::Duration::hours(1),
        )
        .unwrap();
    let err = client
        .get_member(server.request(&expired, get()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());
    server.stop().await;
}

async fn members_are_visible_only_to_those_entitled(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut client = DirectoryServiceClient::new(server.channel().await);
    let get = |id: &str| pb::GetMemberRequest { id: id.into() };

    let me = server.token(Role::Member, "M100001");
    let found = client
        .get_member(server.request(&me, get("M100001")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.member.unwrap().id, "M100001");
    // The subscriber sees the covered family member.
    assert!(
        client
            .get_member(server.request(&me, get("M100003")))
            .await
            .is_ok()
    );

    let other = server.token(Role::Member, "M100014");
    let err = client
        .get_member(server.request(&other, get("M100001")))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "another member cannot even learn the record exists"
    );

    let provider = server.token(Role::Provider, "1381083801");
    let err = client
        .get_member(server.request(&provider, get("M100001")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let nurse = server.token(Role::Nurse, "RN-001");
    assert!(
        client
            .get_member(server.request(&nurse, get("M100014")))
            .await
            .is_ok()
    );
    let err = client
        .upsert_plan(server.request(
            &nurse,
            pb::UpsertPlanRequest {
                plan: Some(pb::Plan {
                    id: "P-X".into(),
                    name: "X".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let trail = db
        .store
        .search_audit(
            &AuditQuery {
                member_id: Some("M100001".into()),
                ..Default::default()
            },
            0,
            50,
        )
        .await
        .unwrap();
    let outcomes: Vec<_> = trail
        .iter()
        .map(|r| (r.entry.subject.as_str(), r.entry.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("M100001", AuditOutcome::Allowed),
            ("M100014", AuditOutcome::Denied),
            ("1381083801", AuditOutcome::Denied)
        ]
    );
    assert!(
        trail
            .iter()
            .all(|r| r.entry.rpc == "/carepath.directory.v1.DirectoryService/GetMember")
    );
    server.stop().await;
}

async fn bad_input_names_the_field_and_writes_nothing(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut client = DirectoryServiceClient::new(server.channel().await);
    let admin = server.token(Role::Admin, "AD-001");

    let err = client
        .get_provider(server.request(
            &admin,
            pb::GetProviderRequest {
                npi: "1234567890".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["npi"]);

    let member = pb::Member {
        id: "M777777".into(),
        plan_id: "PLAN-OAP".into(),
        first_name: "Test".into(),
        last_name: String::new(),
        date_of_birth: "2099-01-01".into(),
        address: Some(pb::Address {
            city: "Boston".into(),
            country: "US".into(),
            lines: vec!["1 Main St".into()],
            ..Default::default()
        }),
        language: "en".into(),
        preferred_channel: pb::ContactChannel::Mail as i32,
        ..Default::default()
    };
    let err = client
        .upsert_member(server.request(
            &admin,
            pb::UpsertMemberRequest {
                member: Some(member),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.contains(&"member.last_name".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"member.date_of_birth".to_owned()),
        "{fields:?}"
    );
    let err = client
        .get_member(server.request(
            &admin,
            pb::GetMemberRequest {
                id: "M777777".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "nothing was stored from the invalid request"
    );

    // Bytes that are not a GetPlanRequest (field 1 sent as a number, not text) are
    // the caller's fault: INVALID_ARGUMENT, not INTERNAL.
    #[derive(Clone, PartialEq, prost::Message)]
    struct NotAGetPlanRequest {
        #[prost(uint64, tag = "1")]
        id: u64,
    }
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let codec =
        carepath_proto::codec::StrictCodec::<NotAGetPlanRequest, pb::GetPlanResponse>::default();
    let err = grpc
        .unary(
            server.request(&admin, NotAGetPlanRequest { id: 7 }),
            http::uri::PathAndQuery::from_static("/carepath.directory.v1.DirectoryService/GetPlan"),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("not a valid protobuf"), "{err:?}");

    // A request carrying megabytes where an id goes gets a short answer.
    let err = client
        .get_member(server.request(
            &admin,
            pb::GetMemberRequest {
                id: "M".repeat(2_000_000),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().len() < 4_000, "{} bytes", err.message().len());
    server.stop().await;
}

async fn provider_search_finds_a_local_specialist(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut client = DirectoryServiceClient::new(server.channel().await);
    let member = server.token(Role::Member, "M100015");
    let found = client
        .list_providers(server.request(
            &member,
            pb::ListProvidersRequest {
                specialty: "orthopaedic surgery".into(),
                country: "ae".into(),
                in_network_for_plan: "PLAN-GLOBAL".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.providers.len(), 1);
    assert_eq!(found.providers[0].npi, "1495212221");
    assert!(!found.providers[0].biography.is_empty());
    server.stop().await;
}

/// A staff role in a token is checked against the staff directory: an admin token for
/// a staff id the plan does not have, or a physician reviewer's token for a nurse's id,
/// is refused before it reaches any record; and a refusal does not echo the token.
async fn staff_tokens_must_match_the_staff_directory(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut client = DirectoryServiceClient::new(server.channel().await);
    let get = || pb::GetMemberRequest {
        id: "M100001".into(),
    };
    for (role, subject) in [
        (Role::Admin, "AD-999"),
        (Role::PhysicianReviewer, "RN-001"),
        (Role::Admin, "RN-001"),
        (Role::Nurse, "MD-RAD-02"),
    ] {
        let token = server.token(role, subject);
        let refused = client
            .get_member(server.request(&token, get()))
            .await
            .expect_err("a role the directory does not give");
        assert_eq!(refused.code(), Code::Unauthenticated, "{role:?} {subject}");
        assert!(
            refused.message().contains("staff directory"),
            "{}",
            refused.message()
        );
    }
    for (role, subject) in [
        (Role::Admin, "AD-001"),
        (Role::Nurse, "RN-001"),
        (Role::PhysicianReviewer, "MD-RAD-02"),
    ] {
        let token = server.token(role, subject);
        client
            .get_member(server.request(&token, get()))
            .await
            .unwrap_or_else(|e| panic!("{role:?} {subject} is on the directory: {e:?}"));
    }
    let refused = client
        .get_member(server.request(&format!("x{}", "A".repeat(4000)), get()))
        .await
        .unwrap_err();
    assert_eq!(refused.message(), "token rejected: malformed token");
    server.stop().await;
}
