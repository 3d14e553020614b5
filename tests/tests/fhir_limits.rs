//! The FHIR door's per-caller limits, through its router without a network: a
//! caller over its rate gets 429 with Retry-After while another caller goes on, and
//! one address cannot flood the token endpoint.

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use axum::{
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{Request, StatusCode, header},
};
use carepath_app::{
    limits::CallerRate,
    precert::{Precert, PrecertEngine},
};
use carepath_core::{Actor, Role};
use carepath_fhir::{FhirDoor, http::HttpLimits, router};
use carepath_tests::{
    TestDb, contract_tests,
    precert::{IMAGING_IN, INTERNIST},
};
use tower::ServiceExt;

contract_tests!(a_caller_over_its_rate_waits_and_others_do_not);

fn rate(per_second: u32, burst: u32) -> CallerRate {
    CallerRate {
        per_second: NonZeroU32::new(per_second).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    }
}

async fn a_caller_over_its_rate_waits_and_others_do_not(db: &TestDb) {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    let limits = HttpLimits {
        per_caller: Some(rate(1, 2)),
        token_requests_per_peer: rate(1, 3),
        ..HttpLimits::default()
    };
    let door = FhirDoor::new(
        app.clone(),
        Precert::new(app.clone(), engine),
        "http://127.0.0.1:8080",
        &limits,
    );
    let routes =
        router(door, limits).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40_000))));
    let token = |npi: &str| {
        let actor = Actor::new(Role::Provider, npi).unwrap();
        app.auth
            .mint_scoped(
                &actor,
                app.now(),
                chrono::Duration::minutes(5),
                "system/ClaimResponse.s",
                "client",
            )
            .unwrap()
    };
    let search = |token: &str| {
        Request::get("/fhir/ClaimResponse?identifier=nothing-filed")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let busy = token(IMAGING_IN);
    for _ in 0..2 {
        let answer = routes.clone().oneshot(search(&busy)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let refused = routes.clone().oneshot(search(&busy)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let other = routes
        .clone()
        .oneshot(search(&token(INTERNIST)))
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another caller is not held up"
    );

    // Token requests from one address: the burst, then 429 before any is looked at.
    let token_request = || {
        Request::post("/auth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap()
    };
    for _ in 0..3 {
        let answer = routes.clone().oneshot(token_request()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    }
    let flooded = routes.clone().oneshot(token_request()).await.unwrap();
    assert_eq!(flooded.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(flooded.headers().contains_key(header::RETRY_AFTER));
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = routes.clone().oneshot(token_request()).await.unwrap();
    assert_eq!(later.status(), StatusCode::BAD_REQUEST);
}
