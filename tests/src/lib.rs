//! Test harness shared by the storage contract suite and the end-to-end tests: a fresh
//! database per test on either backend, and the real server started on port 0.
//!
//! PostgreSQL tests run when `CAREPATH_TEST_POSTGRES_URL` names a server (a role that
//! may create databases); each test gets its own database, dropped afterwards. When
//! the variable is unset they return at once, and `tests/run.sh` says plainly that the
//! suite was skipped. When `CAREPATH_PG_MARKER_DIR` is set, each PostgreSQL test that
//! really ran leaves a file there, so CI can prove the suite ran.

pub mod fhir;
pub mod load;
pub mod nats;
pub mod notify_support;
pub mod precert;
pub mod process;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use carepath_core::{Actor, BusinessCalendar, Clock, FixedClock, Role};
use carepath_server::{App, Area, Limits, auth::Authenticator};
use carepath_store::Store;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

/// The backends a contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, migrated database that is removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

/// The PostgreSQL server the suite uses, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("CAREPATH_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..path_start], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn mark_postgres_ran(test: &str) {
    if let Ok(dir) = std::env::var("CAREPATH_PG_MARKER_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(PathBuf::from(dir).join(test.replace("::", "__")), "ran");
    }
}

impl TestDb {
    /// The kinds of the events recorded for one aggregate, in outbox order.
    pub async fn event_kinds(&self, aggregate_kind: &str, id: &str) -> Vec<String> {
        self.store
            .events_for(aggregate_kind, id)
            .await
            .expect("events readable")
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// A fresh SQLite file in a temporary folder.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = Store::connect(&url).await.expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        TestDb {
            store,
            url,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` when no server is configured. `test`
    /// names the test for CI's record of what ran.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let admin = postgres_url()?;
        let name = format!("carepath_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("CAREPATH_TEST_POSTGRES_URL is set but {admin} does not answer: {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = with_database(&admin, &name);
        let store = Store::connect(&url).await.expect("open postgres");
        store.migrate().await.expect("migrate postgres");
        mark_postgres_ran(test);
        Some(TestDb {
            store,
            url,
            _dir: None,
            pg_drop: Some((admin, name)),
        })
    }

    /// The database of `backend`, or `None` for PostgreSQL when it is not configured.
    pub async fn on(backend: Backend, test: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::sqlite().await),
            Backend::Postgres => TestDb::postgres(test).await,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_drop.take() else {
            return;
        };
        // Drop runs inside the test's runtime: do the async clean-up on a thread of
        // its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Runs a contract test body once per backend: `contract_tests!(name, name, ...)`
/// expects `async fn name(db: &TestDb)` in scope and generates `sqlite::name` and
/// `postgres::name` tests.
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDb::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    let Some(db) = $crate::TestDb::postgres(test).await else {
                        eprintln!("skipped {test}: CAREPATH_TEST_POSTGRES_URL is not set");
                        return;
                    };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

/// The application over `db` on a clock fixed at [`test_start`], with the demo
/// directory loaded, for use-case tests without a server; its signing key is in
/// `keys`, which must outlive it.
pub async fn demo_app(db: &TestDb, keys: &tempfile::TempDir) -> App {
    let mut app = carepath_app::setup::embedded(db.store.clone(), &keys.path().join("signing.pem"))
        .expect("signing key");
    app.clock = Arc::new(FixedClock::new(test_start()));
    carepath_app::setup::load_demo(&app)
        .await
        .expect("demo directory");
    app
}

/// The test servers' token keys (in `keys`), accepting the five-year tokens
/// [`TestServer::token`] mints, since tests move the clock by years.
fn test_authenticator(keys: &tempfile::TempDir) -> Authenticator {
    Authenticator::with_local_key(&keys.path().join("signing.pem"))
        .expect("key")
        .with_policy(carepath_app::auth::TokenPolicy {
            max_lifetime: chrono::Duration::days(6 * 365),
            ..carepath_app::auth::TokenPolicy::default()
        })
}

/// A running server on a random local port, stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: App,
    pub clock: Arc<FixedClock>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    _keys: tempfile::TempDir,
    /// The server's own runtime, when started with [`TestServer::start_with`].
    runtime: Option<tokio::runtime::Runtime>,
}

/// Settings for [`TestServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Where notices go out (SMTP server, fax gateway, print folder, retries).
    pub notify: carepath_app::notify::settings::NotifySettings,
    /// Timeouts, message sizes and overload limits.
    pub limits: Limits,
}

/// The instant test servers start at: a Monday morning in New York.
pub fn test_start() -> DateTime<Utc> {
    "2026-11-23T14:00:00Z".parse().expect("valid instant")
}

impl TestServer {
    /// Starts every area over `db`, with a fixed clock at [`test_start`] and the demo
    /// directory loaded.
    pub async fn start(db: &TestDb) -> TestServer {
        let keys = tempfile::tempdir().expect("temp dir");
        let auth = test_authenticator(&keys);
        let clock = Arc::new(FixedClock::new(test_start()));
        let app = App {
            store: db.store.clone(),
            clock: clock.clone() as Arc<dyn Clock>,
            calendar: Arc::new(BusinessCalendar::us_federal()),
            auth: Arc::new(auth),
            refusals: Arc::default(),
            directory: Arc::default(),
            outside_copies: Default::default(),
        };
        carepath_cli::load_demo(&db.store).await.expect("demo data");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = app.clone();
        let handle = tokio::spawn(async move {
            carepath_server::serve(served, listener, Area::ALL, Limits::default(), async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            addr,
            app,
            clock,
            stop: Some(stop),
            handle: Some(handle),
            _keys: keys,
            runtime: None,
        }
    }

    /// Starts every area over `db` like [`TestServer::start`], with `options`, in a
    /// runtime and database pool of its own, so [`TestServer::kill`] can stop it the
    /// way a killed process stops.
    pub async fn start_with(db: &TestDb, options: ServerOptions) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let url = db.url.clone();
        let store = runtime
            .spawn(async move { Store::connect(&url).await.expect("server database") })
            .await
            .expect("connect");
        let keys = tempfile::tempdir().expect("temp dir");
        let auth = test_authenticator(&keys);
        let clock = Arc::new(FixedClock::new(test_start()));
        let app = App {
            store,
            clock: clock.clone() as Arc<dyn Clock>,
            calendar: Arc::new(BusinessCalendar::us_federal()),
            auth: Arc::new(auth),
            refusals: Arc::default(),
            directory: Arc::default(),
            outside_copies: Default::default(),
        };
        carepath_cli::load_demo(&db.store).await.expect("demo data");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = app.clone();
        let handle = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            let engine = carepath_app::precert::PrecertEngine::load(&served.store)
                .await
                .expect("rule lists");
            carepath_server::server::serve_with(
                served,
                engine,
                listener,
                Area::ALL,
                options.limits,
                &options.notify,
                None,
                None,
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("server runs");
        });
        TestServer {
            addr,
            app,
            clock,
            stop: Some(stop),
            handle: Some(handle),
            _keys: keys,
            runtime: Some(runtime),
        }
    }

    /// Stops a server started with [`TestServer::start_with`] as a crash would: every
    /// task stops where it stands; nothing is finished, acknowledged or recorded.
    pub fn kill(mut self) {
        self.stop.take();
        self.handle.take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// A bearer token for `role` and `subject`, signed by the server's key. Token
    /// expiry is checked against the server's clock, which tests move forward (by days,
    /// up to years) after minting, so the token is issued at the clock's reading and
    /// lasts five years.
    pub fn token(&self, role: Role, subject: &str) -> String {
        let actor = Actor::new(role, subject).expect("valid actor");
        self.app
            .auth
            .mint(&actor, self.clock.now(), chrono::Duration::days(5 * 365))
            .expect("mint")
    }

    /// Wraps `message` in a request carrying `token`.
    pub fn request<T>(&self, token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
        request
    }

    /// The server's current (fixed) time.
    pub fn clock_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A precertification service over the same state, for driving its background
    /// sweeps directly.
    pub async fn precert(&self) -> carepath_app::precert::Precert {
        let engine = carepath_app::precert::PrecertEngine::load(&self.app.store)
            .await
            .expect("engine");
        carepath_app::precert::Precert::new(self.app.clone(), engine)
    }

    /// Stops the server, letting calls in flight finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The services a server's reflection lists.
pub async fn reflection_lists_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("reflection stream")
        .expect("one answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_path_only() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
                "x"
            ),
            "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
