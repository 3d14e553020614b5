//! Starting a server: errors name what failed, logs off a terminal are plain text, the
//! database file is the owner's only, a plan's data directory is checked, and the audit
//! heads a server anchors let `audit verify` and the server's `VerifyAudit` catch a
//! removed newest entry.
//!
//! Runs the real `carepath` binary (built beside this test's executable by
//! `cargo build --workspace --bins`, which tests/run.sh does first).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use carepath_core::{Actor, Role};
use carepath_proto::audit::v1::audit_service_client::AuditServiceClient;
use carepath_server::auth::Authenticator;
use carepath_store::Store;
use carepath_tests::process::binary;
use chrono::Datelike;

/// Runs `carepath serve` with `args` until it exits (it is expected to fail at start)
/// and returns what it printed on stderr.
fn failed_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary("carepath", None))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("CAREPATH_FHIR_LISTEN", "127.0.0.1:0")
        .env("CAREPATH_METRICS_LISTEN", "")
        .env("CAREPATH_RECORDS_DIR", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run carepath");
    assert!(!output.status.success(), "carepath started: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_sqlite_file_in_a_missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    let file = missing.join("carepath.db");
    let stderr = failed_start(&["--database-url", &format!("sqlite://{}", file.display())]);
    assert!(
        stderr.contains(&format!(
            "cannot open SQLite database {}: the folder {} does not exist",
            file.display(),
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_postgresql_is_named_with_the_refusal() {
    // Nothing listens on port 1 of the loopback address.
    let stderr = failed_start(&["--database-url", "postgres://postgres@127.0.0.1:1/test"]);
    assert!(
        stderr.contains("cannot open PostgreSQL at 127.0.0.1:1: "),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

#[test]
fn logs_off_a_terminal_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary("carepath", None))
        .arg("serve")
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("carepath.db").display()),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CAREPATH_FHIR_LISTEN", "127.0.0.1:0")
        .env("CAREPATH_METRICS_LISTEN", "")
        .env("CAREPATH_LOG", "info")
        .env_remove("CAREPATH_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start carepath");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let listening = line.contains("carepath listening");
                lines.push(line);
                if listening {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("carepath listening")),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    }
}

#[tokio::test]
async fn a_new_sqlite_database_is_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carepath.db");
    let store = Store::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    for name in ["carepath.db", "carepath.db-wal", "carepath.db-shm"] {
        let path = dir.path().join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    store.close().await;
}

#[test]
fn a_calendar_that_does_not_cover_this_year_and_the_next_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("calendars")).unwrap();
    // A calendar typed in up to last year, as the shipped one was up to 2030.
    let last_year = chrono::Utc::now().date_naive().year() - 1;
    std::fs::write(
        data.path().join("calendars/typed.toml"),
        format!(
            "id = \"typed\"\nname = \"Typed in\"\ntimezone = \"America/New_York\"\n\
             business_day_start = \"08:00\"\nbusiness_day_end = \"17:00\"\n\
             first_year = 2024\nlast_year = {last_year}\n"
        ),
    )
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("carepath.db").display());
    let stderr = failed_start(&[
        "--database-url",
        &url,
        "--data-dir",
        &data.path().display().to_string(),
    ]);
    assert!(
        stderr.contains(&format!(
            "calendar \"typed\" covers 2024 to {last_year}, not "
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_file_in_the_data_directory_stops_the_start_named() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("secondopinion")).unwrap();
    std::fs::write(data.path().join("secondopinion/groups.toml"), "nonsense =").unwrap();
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("carepath.db").display());
    let stderr = failed_start(&[
        "--database-url",
        &url,
        "--data-dir",
        &data.path().display().to_string(),
    ]);
    assert!(
        stderr.contains(&format!(
            "data directory: {}",
            data.path().join("secondopinion").display()
        )),
        "{stderr}"
    );
}

/// `carepath audit verify` on `url`, with what it printed.
fn audit_verify(url: &str) -> (bool, String) {
    let output = Command::new(binary("carepath", None))
        .args(["audit", "verify", "--database-url", url])
        .env("CAREPATH_LOG", "warn")
        .output()
        .expect("run carepath audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `AuditService/VerifyAudit` on a server started on `url` with `--demo` (its audit
/// anchors beside the database, tokens from the key beside it), asked by an admin.
async fn verify_through_a_server(
    url: &str,
    key: &Path,
) -> carepath_proto::audit::v1::VerifyAuditResponse {
    let mut serve = Command::new(binary("carepath", Some("--audit-anchor-file")));
    serve.args(["serve", "--demo", "--database-url", url]);
    let server = carepath_tests::process::ServerProcess::start("carepath", serve);
    // Its first anchoring is done as it starts.
    let anchors = key.with_file_name("carepath.db.audit-anchors");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&anchors).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            Instant::now() < deadline,
            "no anchor file at {}",
            anchors.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = Authenticator::with_local_key(key)
        .expect("the server's key")
        .mint(
            &Actor::new(Role::Admin, "AD-001").expect("actor"),
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("token");
    let mut request = tonic::Request::new(carepath_proto::audit::v1::VerifyAuditRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    let answer = AuditServiceClient::new(server.channel().await)
        .verify_audit(request)
        .await
        .expect("VerifyAudit")
        .into_inner();
    // Stopping waits for the client's connection to close, which this runtime does
    // while the process is stopped from another thread.
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("stopped");
    answer
}

#[tokio::test]
async fn audit_verify_catches_a_removed_newest_entry_through_the_anchor_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carepath.db");
    let url = format!("sqlite://{}", file.display());
    let key = dir.path().join("carepath.db.key.pem");

    // Some accesses on record.
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let at = chrono::Utc::now();
    for i in 0..20 {
        let entry = carepath_store::AuditEntry {
            subject: "RN-001".into(),
            role: "nurse".into(),
            rpc: "/carepath.directory.v1.DirectoryService/GetMember".into(),
            record_kind: "member".into(),
            record_id: format!("M1000{i:02}"),
            member_id: Some(format!("M1000{i:02}")),
            outcome: carepath_store::AuditOutcome::Allowed,
            repeats: 0,
        };
        store
            .audit(&entry, at + chrono::Duration::seconds(i))
            .await
            .unwrap();
    }
    store.close().await;

    // A server anchors the heads beside the database as it starts, and its own
    // verification reads them.
    let intact = verify_through_a_server(&url, &key).await;
    assert!(intact.intact, "{intact:?}");
    assert_eq!(intact.entries, 20, "{intact:?}");
    assert!(intact.anchors_checked >= 1, "{intact:?}");
    let (ok, text) = audit_verify(&url);
    assert!(ok, "{text}");
    assert!(
        text.contains("audit log intact: 20 entries, anchors in"),
        "{text}"
    );

    // Remove the newest entry and set its chain's head back: the chain still links.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (seq, chain, prev): (i64, i32, String) =
        sqlx::query_as("SELECT seq, chain, prev_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = $2")
        .bind(&prev)
        .bind(chain)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let missing =
        format!("entry {seq} of chain {chain}, anchored outside the database, is missing");
    let (ok, text) = audit_verify(&url);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("audit log broken at entry {seq}: {missing}")),
        "{text}"
    );
    // The running server's verification says the same.
    let broken = verify_through_a_server(&url, &key).await;
    assert!(!broken.intact, "{broken:?}");
    assert_eq!(broken.broken_at_seq, seq, "{broken:?}");
    assert!(broken.reason.contains(&missing), "{broken:?}");
    assert!(broken.anchors_checked >= 1, "{broken:?}");
}
