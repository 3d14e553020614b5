//! Overload protection through the real server, on SQLite and PostgreSQL: beyond the
//! server's limit of calls in progress, calls are refused at once with UNAVAILABLE
//! while health checks and reflection keep answering; a caller over its own rate gets
//! RESOURCE_EXHAUSTED with a retry delay while other callers are still served.
//!
//! Every scenario runs under a generous deadline: a call that hangs fails the test.

use std::{num::NonZeroU32, time::Duration};

use carepath_core::Role;
use carepath_proto::{
    directory::v1::{self as pb, directory_service_client::DirectoryServiceClient},
    secondopinion::v1::{
        UploadRecordRequest, UploadRecordResponse,
        second_opinion_service_client::SecondOpinionServiceClient,
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

/// An upload whose client has not sent anything yet: the server's handler waits for the
/// first message, so the call holds a slot until the stream is closed.
struct Holder {
    open: Option<mpsc::Sender<UploadRecordRequest>>,
    call: JoinHandle<Result<tonic::Response<UploadRecordResponse>, Status>>,
}

impl Holder {
    fn start(server: &TestServer, channel: &Channel, token: &str) -> Holder {
        let (open, messages) = mpsc::channel(1);
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
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(db, options).await;
    let channel = server.channel().await;
    let token = server.token(Role::Admin, ADMIN);

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
        .map(|_| Holder::start(&server, &channel, &token))
        .collect();
    within_deadline("saturating the server", async {
        // Probes go one at a time, so once one is refused every slot is held by an
        // upload. An upload that lost its slot to a probe is started again.
        loop {
            for holder in &mut holders {
                if holder.call.is_finished() {
                    *holder = Holder::start(&server, &channel, &token);
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
        let services = reflection_lists_services(fresh).await;
        assert!(
            services.contains(&"carepath.precert.v1.PrecertService".to_owned()),
            "{services:?}"
        );
        // The uploads were taken on all along: they are still waiting for data.
        assert!(holders.iter().all(|h| !h.call.is_finished()));
    })
    .await;

    within_deadline("releasing the slots", async {
        for mut holder in holders {
            holder.open.take();
            let outcome = holder.call.await.expect("upload task");
            // The server read the (empty) upload: it had been admitted.
            assert_eq!(
                outcome.expect_err("an empty upload is refused").code(),
                Code::InvalidArgument
            );
        }
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
            per_caller: Some(CallerRate {
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
