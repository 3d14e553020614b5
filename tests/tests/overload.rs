//! Overload protection through the real server, on SQLite and PostgreSQL: beyond the
//! server's limit of calls in progress, calls are refused at once with UNAVAILABLE
//! while health checks and reflection keep answering and readiness says NOT_SERVING; a
//! caller over its own rate gets RESOURCE_EXHAUSTED with a retry delay while other
//! callers are still served; one caller opening many calls whose request never comes
//! holds at most its own share, for no longer than the request deadline.
//!
//! Every scenario runs under a generous deadline: a call that hangs fails the test.

use std::{num::NonZeroU32, time::Duration};

use carepath_core::Role;
use carepath_proto::{
    directory::v1::{self as pb, directory_service_client::DirectoryServiceClient},
    secondopinion::v1::{
        FirstOpinion, RecordHeader, RecordKind, SubmitRequest, UploadRecordRequest,
        UploadRecordResponse, second_opinion_service_client::SecondOpinionServiceClient,
        upload_record_request::Part,
    },
};
use carepath_server::{Limits, overload::CallerRate};
use carepath_tests::{
    ServerOptions, TestDb, TestServer, contract_tests, reflection_lists_services,
};
use tokio::{sync::mpsc, task::JoinHandle};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

contract_tests!(
    beyond_the_limit_calls_are_refused_at_once_and_health_still_answers,
    a_caller_over_its_rate_is_refused_while_others_are_served,
    calls_whose_request_never_comes_do_not_stop_other_callers,
    connections_and_long_lived_streams_are_bounded,
);

/// No scenario here comes near this; reaching it means a call hung.
const DEADLINE: Duration = Duration::from_secs(90);

async fn within_deadline<T>(what: &str, body: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, body)
        .await
        .unwrap_or_else(|_| panic!("{what}: a call did not return within {DEADLINE:?}"))
}

const ADMIN: &str = "AD-001";
const PROVIDER: &str = "1184649790";
const SLOTS: usize = 4;

async fn get_plan(server: &TestServer, channel: &Channel, token: &str) -> Result<(), Status> {
    DirectoryServiceClient::new(channel.clone())
        .get_plan(server.request(
            token,
            pb::GetPlanRequest {
                id: "PLAN-PCM-OAP".into(),
            },
        ))
        .await
        .map(drop)
}

/// `n` GetPlan calls sent at once; their outcomes in any order.
async fn burst(server: &TestServer, channel: &Channel, token: &str, n: usize) -> Vec<Code> {
    let calls = (0..n).map(|_| async {
        match get_plan(server, channel, token).await {
            Ok(()) => Code::Ok,
            Err(status) => {
                if status.code() == Code::Unavailable {
                    assert!(
                        status.message().contains("overloaded"),
                        "refusal explains itself: {status:?}"
                    );
                }
                status.code()
            }
        }
    });
    futures::future::join_all(calls).await
}

async fn health(channel: Channel, service: &str) -> i32 {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

/// A member with a second-opinion request to upload records to (the demo's UK member).
const UPLOADER: &str = "M100014";

/// The member's second-opinion request, made through the service.
async fn second_opinion_request(server: &TestServer, channel: &Channel, token: &str) -> String {
    let request = SubmitRequest {
        member_id: UPLOADER.into(),
        diagnosis: "N18.4".into(),
        major_surgery_recommended: false,
        current_treatment: "A daily ACE inhibitor".into(),
        emergency: false,
        first_opinion: Some(FirstOpinion {
            physician_npi: "1230457628".into(),
            physician_name: "Dr. Fiona MacAllister".into(),
            practice: String::new(),
            given_on: "2026-10-02".into(),
            summary: "Chronic kidney disease stage 4".into(),
        }),
    };
    SecondOpinionServiceClient::new(channel.clone())
        .submit(server.request(token, request))
        .await
        .expect("second-opinion request")
        .into_inner()
        .request
        .expect("the request")
        .id
}

/// An upload whose client has sent its header and nothing more: the server's handler
/// waits for the file's bytes, so the call holds a slot until the stream is closed.
struct Holder {
    open: Option<mpsc::Sender<UploadRecordRequest>>,
    call: JoinHandle<Result<tonic::Response<UploadRecordResponse>, Status>>,
}

impl Holder {
    fn start(server: &TestServer, channel: &Channel, token: &str, request_id: &str) -> Holder {
        let (open, messages) = mpsc::channel(1);
        let header = UploadRecordRequest {
            part: Some(Part::Header(RecordHeader {
                request_id: request_id.into(),
                kind: RecordKind::Mri as i32,
                file_name: "scan.pdf".into(),
                content_type: "application/pdf".into(),
                size_bytes: 1024,
                sha256: "0".repeat(64),
                description: String::new(),
            })),
        };
        open.try_send(header).expect("room for the header");
        let request = server.request(token, tokio_stream::wrappers::ReceiverStream::new(messages));
        let mut client = SecondOpinionServiceClient::new(channel.clone());
        let call = tokio::spawn(async move { client.upload_record(request).await });
        Holder {
            open: Some(open),
            call,
        }
    }
}

async fn beyond_the_limit_calls_are_refused_at_once_and_health_still_answers(db: &TestDb) {
    let options = ServerOptions {
        limits: Limits {
            max_concurrent_calls: SLOTS,
            // One caller makes every call here: the server's limit is what is tested.
            calls_per_caller: 1024,
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(db, options).await;
    let channel = server.channel().await;
    let token = server.token(Role::Admin, ADMIN);
    let uploader = server.token(Role::Member, UPLOADER);
    let request_id = second_opinion_request(&server, &channel, &uploader).await;

    within_deadline("a burst of calls", async {
        // Many calls at once: each is taken on or refused, and whichever arrives
        // first finds a free slot.
        let outcomes = burst(&server, &channel, &token, 64).await;
        assert!(
            outcomes
                .iter()
                .all(|c| matches!(c, Code::Ok | Code::Unavailable)),
            "{outcomes:?}"
        );
        assert!(outcomes.contains(&Code::Ok), "{outcomes:?}");
    })
    .await;

    let mut holders: Vec<Holder> = (0..SLOTS)
        .map(|_| Holder::start(&server, &channel, &uploader, &request_id))
        .collect();
    within_deadline("saturating the server", async {
        // Probes go one at a time, so once one is refused every slot is held by an
        // upload. An upload that lost its slot to a probe is started again.
        loop {
            for holder in &mut holders {
                if holder.call.is_finished() {
                    *holder = Holder::start(&server, &channel, &uploader, &request_id);
                }
            }
            match get_plan(&server, &channel, &token).await {
                Err(status) if status.code() == Code::Unavailable => break,
                Ok(()) => {}
                Err(other) => panic!("unexpected refusal {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    within_deadline("calls while saturated", async {
        let outcomes = burst(&server, &channel, &token, 32).await;
        assert!(
            outcomes.iter().all(|c| *c == Code::Unavailable),
            "every call beyond the limit is refused: {outcomes:?}"
        );
        // Health checks and reflection stay outside the limit, on a new connection as
        // a load balancer's probe would make and on the busy one.
        let fresh = server.channel().await;
        for service in ["", "carepath.directory.v1.DirectoryService"] {
            assert_eq!(
                health(fresh.clone(), service).await,
                ServingStatus::Serving as i32,
                "{service:?}"
            );
        }
        assert_eq!(
            health(channel.clone(), "").await,
            ServingStatus::Serving as i32
        );
        let services = reflection_lists_services(fresh.clone()).await;
        assert!(
            services.contains(&"carepath.precert.v1.PrecertService".to_owned()),
            "{services:?}"
        );
        // Readiness says the server takes no more calls, so a balancer goes elsewhere.
        readiness_becomes(&fresh, ServingStatus::NotServing).await;
        // The uploads were taken on all along: they are still waiting for data.
        assert!(holders.iter().all(|h| !h.call.is_finished()));
    })
    .await;

    within_deadline("releasing the slots", async {
        for mut holder in holders {
            holder.open.take();
            let outcome = holder.call.await.expect("upload task");
            // The server read the upload, short of its announced size: it had been
            // admitted.
            assert_eq!(
                outcome.expect_err("an incomplete upload is refused").code(),
                Code::InvalidArgument
            );
        }
        readiness_becomes(&channel, ServingStatus::Serving).await;
        get_plan(&server, &channel, &token)
            .await
            .expect("served again once slots are free");
        let outcomes = burst(&server, &channel, &token, 32).await;
        assert!(
            outcomes
                .iter()
                .all(|c| matches!(c, Code::Ok | Code::Unavailable)),
            "{outcomes:?}"
        );
        assert!(outcomes.contains(&Code::Ok), "{outcomes:?}");
    })
    .await;
    server.stop().await;
}

async fn a_caller_over_its_rate_is_refused_while_others_are_served(db: &TestDb) {
    let options = ServerOptions {
        limits: Limits {
            per_person: Some(CallerRate {
                per_second: NonZeroU32::MIN,
                burst: NonZeroU32::new(3).expect("non-zero"),
            }),
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(db, options).await;
    let channel = server.channel().await;
    let busy = server.token(Role::Admin, ADMIN);
    let other = server.token(Role::Provider, PROVIDER);

    within_deadline("one caller over its rate", async {
        // A burst of three, then one call a second: twenty calls in a row cannot all
        // pass.
        let mut refusal = None;
        let mut served = 0;
        for _ in 0..20 {
            match get_plan(&server, &channel, &busy).await {
                Ok(()) => served += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    refusal = Some(status);
                    break;
                }
            }
        }
        assert!(served >= 3, "the burst is served first ({served})");
        let refusal = refusal.expect("the busy caller is refused");
        assert!(
            refusal.message().contains("rate limit"),
            "{}",
            refusal.message()
        );
        let retry = refusal
            .get_details_retry_info()
            .expect("a RetryInfo detail says when to come back");
        assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));

        // Another caller has a bucket of its own.
        get_plan(&server, &channel, &other)
            .await
            .expect("a different caller is still served");
        // Health checks carry no token and are never limited.
        assert_eq!(
            health(channel.clone(), "").await,
            ServingStatus::Serving as i32
        );
    })
    .await;
    server.stop().await;
}

/// Waits until the health service's `readiness` status is `status` (it is looked at
/// every second).
async fn readiness_becomes(channel: &Channel, status: ServingStatus) {
    while health(channel.clone(), carepath_server::server::READINESS).await != status as i32 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long a request may take to arrive in the test below.
const BODY_DEADLINE: Duration = Duration::from_secs(2);

/// The reviewer's reproduction: one caller (a member) opens 40 calls on one HTTP/2
/// connection, each with its headers and no request message. Before, each took one of
/// the server's 32 slots until the 30 s call timeout, and every other caller got
/// UNAVAILABLE. Now the member holds at most its own share of calls in progress (the
/// rest are refused at once), none of them takes a server slot, and they end when the
/// request deadline passes.
async fn calls_whose_request_never_comes_do_not_stop_other_callers(db: &TestDb) {
    let limits = Limits {
        request_body_timeout: BODY_DEADLINE,
        ..Limits::default()
    };
    let per_caller = limits.calls_per_caller;
    assert!(per_caller < 40 && limits.max_concurrent_calls <= 40);
    let options = ServerOptions {
        limits,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(db, options).await;
    let member = server.token(Role::Member, "M100001");
    let other = server.token(Role::Provider, PROVIDER);

    within_deadline("calls without a request", async {
        let tcp = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
        tokio::spawn(connection);
        let mut client = client;
        let mut answers = Vec::new();
        let mut open_bodies = Vec::new();
        for _ in 0..40 {
            client = client.ready().await.expect("stream capacity");
            let request = http::Request::post(format!(
                "http://{}/carepath.directory.v1.DirectoryService/GetPlan",
                server.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {member}"))
            .body(())
            .expect("request");
            // Headers only: no DATA frame, and the stream stays open.
            let (answer, body) = client.send_request(request, false).expect("stream");
            answers.push(tokio::spawn(async move {
                let answer = answer.await.expect("an answer");
                answer
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(Code::from_i32)
            }));
            open_bodies.push(body);
        }

        // Meanwhile other callers are served, and the server says it is ready.
        let channel = server.channel().await;
        for _ in 0..5 {
            get_plan(&server, &channel, &other)
                .await
                .expect("another caller is served while the member's calls wait");
        }
        assert_eq!(
            health(channel.clone(), carepath_server::server::READINESS).await,
            ServingStatus::Serving as i32
        );

        let mut codes = Vec::new();
        for answer in answers {
            codes.push(answer.await.expect("answer task"));
        }
        let refused = codes
            .iter()
            .filter(|c| **c == Some(Code::ResourceExhausted))
            .count();
        let ended = codes
            .iter()
            .filter(|c| **c == Some(Code::DeadlineExceeded))
            .count();
        assert_eq!(
            (refused, ended),
            (40 - per_caller, per_caller),
            "beyond its share refused at once, its share ended at the deadline: {codes:?}"
        );
        drop(open_bodies);
        // The member's calls are over: it is served again.
        get_plan(&server, &channel, &member)
            .await
            .expect("the member is served once its calls have ended");
    })
    .await;
    server.stop().await;
}

/// Whether the server closes `tcp` within `within`: its read ends or fails.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // The server's HTTP/2 preface (SETTINGS) may come first.
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// Connections that never begin a call, connections beyond the limit, connections left
/// idle after a call, and long-lived streams beyond their share are all let go: the
/// review found idle connections kept forever and health watches unlimited.
async fn connections_and_long_lived_streams_are_bounded(db: &TestDb) {
    use carepath_server::connections::ConnectionLimits;
    let connections = ConnectionLimits {
        max_connections: 3,
        first_call_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        long_lived_per_connection: 2,
        long_lived_total: 3,
    };
    let options = ServerOptions {
        limits: Limits {
            connections,
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(db, options).await;
    let connect = || tokio::net::TcpStream::connect(server.addr);

    within_deadline("connections that never call", async {
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(connect().await.expect("connect"));
        }
        // A fourth is closed at once: the server has its most open.
        let mut extra = connect().await.expect("connect");
        assert!(closed_within(&mut extra, Duration::from_secs(1)).await);
        // The three are open until their first call is overdue, then closed.
        assert!(!closed_within(&mut silent[0], Duration::from_millis(300)).await);
        for tcp in &mut silent {
            assert!(closed_within(tcp, Duration::from_secs(5)).await);
        }
    })
    .await;

    within_deadline("a connection idle after its call", async {
        let tcp = connect().await.expect("connect");
        let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
        let connection = tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");
        let token = server.token(Role::Admin, ADMIN);
        let request = http::Request::post(format!(
            "http://{}/carepath.directory.v1.DirectoryService/GetPlan",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request");
        let (answer, mut body) = client.send_request(request, false).expect("stream");
        // An empty GetPlanRequest: one gRPC frame of length 0.
        body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .expect("send");
        let answer = answer.await.expect("answer");
        assert_eq!(answer.status(), http::StatusCode::OK);
        let mut answer = answer.into_body();
        while let Some(data) = answer.data().await {
            data.expect("answer data");
        }
        // No call in progress any more: closed after the idle timeout.
        // Closed by the server: the connection ends, without a GOAWAY (an error) or with.
        let ended = tokio::time::timeout(Duration::from_secs(5), connection)
            .await
            .expect("the idle connection is closed")
            .expect("connection task");
        drop(ended);
    })
    .await;

    within_deadline("long-lived streams", async {
        let watch = |channel: Channel| async move {
            HealthClient::new(channel)
                .watch(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(tonic::Response::into_inner)
        };
        let first = server.channel().await;
        let mut kept = vec![
            watch(first.clone()).await.expect("one watch"),
            watch(first.clone()).await.expect("two watches"),
        ];
        let refused = watch(first.clone())
            .await
            .expect_err("a third on the connection");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(refused.message().contains("connection"), "{refused:?}");
        let second = server.channel().await;
        kept.push(
            watch(second.clone())
                .await
                .expect("another connection's first"),
        );
        let refused = watch(second.clone())
            .await
            .expect_err("beyond the server's");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(refused.message().contains("server"), "{refused:?}");
        // A watch that ends gives its place back.
        drop(kept.remove(0));
        loop {
            match watch(second.clone()).await {
                Ok(stream) => {
                    kept.push(stream);
                    break;
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // Plain calls are not long-lived streams: still answered.
        assert_eq!(health(first, "").await, ServingStatus::Serving as i32);
    })
    .await;
    server.stop().await;
}
