//! The FHIR door's limits. Through its router without a network: a caller over its
//! rate gets 429 with Retry-After while another caller goes on, one address cannot
//! flood the token endpoint, a request whose body never comes holds no slot, and one
//! caller holds at most its share of the requests in progress. Over the network:
//! connections beyond the limit are closed at once, and idle ones after their timeout.

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
use carepath_fhir::{FhirDoor, http::HttpLimits, listen::ConnectionBounds, router};
use carepath_tests::{
    TestDb, contract_tests,
    precert::{IMAGING_IN, INTERNIST},
};
use futures::StreamExt;
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

/// A door over a demo application on `db` with `limits`, its router answering as if
/// every request came from one address, and the application.
async fn door(
    db: &TestDb,
    keys: &tempfile::TempDir,
    limits: HttpLimits,
) -> (FhirDoor, axum::Router, carepath_app::App) {
    let app = carepath_tests::demo_app(db, keys).await;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    let door = FhirDoor::new(
        app.clone(),
        Precert::new(app.clone(), engine),
        "http://127.0.0.1:8080",
        &limits,
    );
    let routes = router(door.clone(), limits)
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40_000))));
    (door, routes, app)
}

/// A PAS `$submit` of the shipped approved-MRI example with `npi` as the requesting
/// and servicing provider, by a token of that provider.
fn submission(app: &carepath_app::App, npi: &str) -> Request<Body> {
    let token = app
        .auth
        .mint_scoped(
            &Actor::new(Role::Provider, npi).unwrap(),
            app.now(),
            chrono::Duration::minutes(5),
            "system/Claim.c",
            "client",
        )
        .unwrap();
    let bundle = include_str!("../../crates/carepath-fhir/examples/pas-mri-approved.json")
        .replace(IMAGING_IN, npi);
    Request::post("/fhir/Claim/$submit")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .body(Body::from(bundle))
        .unwrap()
}

#[tokio::test]
async fn a_request_whose_body_never_comes_holds_no_slot_and_gets_408() {
    let db = TestDb::sqlite().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let limits = HttpLimits {
        max_concurrent_requests: 1,
        request_body_timeout: Duration::from_secs(1),
        requests_per_caller: 100,
        per_caller: None,
        ..HttpLimits::default()
    };
    let (_door, routes, app) = door(&db, &keys, limits).await;
    // Five requests send their headers and the start of a body, then nothing.
    let stalled: Vec<_> = (0..5)
        .map(|_| {
            let body = futures::stream::once(async {
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"resourceType\""))
            })
            .chain(futures::stream::pending());
            let request = Request::post("/fhir/Claim/$submit")
                .header(header::CONTENT_TYPE, "application/fhir+json")
                .body(Body::from_stream(body))
                .unwrap();
            tokio::spawn(routes.clone().oneshot(request))
        })
        .collect();
    // The door's one slot is still free for a whole request.
    let answer = routes
        .clone()
        .oneshot(submission(&app, IMAGING_IN))
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::OK,
        "a complete request is served"
    );
    for request in stalled {
        let answer = tokio::time::timeout(Duration::from_secs(30), request)
            .await
            .expect("answered after the body timeout")
            .unwrap()
            .unwrap();
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
        let text = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("did not arrive within 1 s"),
            "the OperationOutcome says why: {text}"
        );
    }
}

#[tokio::test]
async fn one_caller_holds_at_most_its_share_of_the_requests_in_progress() {
    use sqlx::Connection;
    let db = TestDb::sqlite().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let limits = HttpLimits {
        max_concurrent_requests: 16,
        requests_per_caller: 2,
        per_caller: None,
        ..HttpLimits::default()
    };
    let (_door, routes, app) = door(&db, &keys, limits).await;
    // Another connection holds the database's writer, so each submission stays in
    // progress, waiting to be stored, until it lets go.
    let mut holder = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(routes.clone().oneshot(submission(&app, IMAGING_IN))))
        .collect();
    // Give both time to be admitted and reach the database.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "both wait on the database"
    );
    let third = routes
        .clone()
        .oneshot(submission(&app, IMAGING_IN))
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key(header::RETRY_AFTER));
    let text = axum::body::to_bytes(third.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("at most 2 at once"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    // Another caller is admitted meanwhile.
    let other = tokio::spawn(routes.clone().oneshot(submission(&app, INTERNIST)));
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    for w in waiting {
        assert_eq!(w.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        other.await.unwrap().unwrap().status(),
        StatusCode::OK,
        "the other caller's request was served, not refused"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once_and_idle_ones_after_their_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::sqlite().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let limits = HttpLimits {
        connections: ConnectionBounds {
            max_connections: 2,
            first_request_timeout: Duration::from_secs(1),
            ..ConnectionBounds::default()
        },
        ..HttpLimits::default()
    };
    let (door, _routes, _app) = door(&db, &keys, limits).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(carepath_fhir::serve(door, listener, limits, async {
        let _ = stopped.await;
    }));

    // Two connections that send nothing take the two places.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is closed as soon as it is accepted: its read ends at once.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(900), third.read(&mut buf))
        .await
        .expect("the third connection is closed before the idle timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The idle two are closed once they have begun no request for a second.
    for mut connection in idle {
        let read = tokio::time::timeout(Duration::from_secs(10), connection.read(&mut buf))
            .await
            .expect("the idle connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // Their places are free again: a request is served.
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("CapabilityStatement"), "{answer}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the door stops")
        .unwrap()
        .unwrap();
}
