//! Second-opinion records kept in S3-compatible storage (`--records-url
//! s3://BUCKET/PREFIX`), through `carepath_app`, on both backends, against a real S3
//! server started by the test (moto, `python3 -m moto.server`; tests/run.sh installs
//! it): an upload lands in the bucket under the prefix and downloads whole, an upload
//! with a wrong checksum leaves nothing in the bucket, and a sweep leaves a listed
//! record alone.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use carepath_app::{
    AppError, Caller,
    secondopinion::{
        DownloadRecord, RecordStorage, SecondOpinion, Submit, UploadRecord, records::sha256_hex,
    },
};
use carepath_core::{Actor, Icd10Code, MemberId, Npi, Role};
use carepath_secondopinion::{Answer, AnswerValue, FirstOpinion, RecordKind};
use carepath_tests::{TestDb, contract_tests, notify_support::free_port};
use futures::StreamExt;

contract_tests!(an_upload_is_kept_in_the_bucket_and_downloads_whole);

const UK_MEMBER: &str = "M100014";
const UK_OWN_NEPHROLOGIST: &str = "1230457628";
const BUCKET: &str = "carepath-records";
const PREFIX: &str = "replicas";

/// A moto S3 server on loopback, stopped when dropped.
struct S3Server {
    endpoint: String,
    child: Child,
}

impl S3Server {
    fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed for the S3 server: {e}"));
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the S3 server exited ({status}): is moto installed? pip install 'moto[server]'"
                );
            }
            assert!(
                Instant::now() < deadline,
                "the S3 server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Every key in the bucket.
    async fn keys(&self) -> Vec<String> {
        let listing = reqwest::get(format!("{}/{BUCKET}?list-type=2", self.endpoint))
            .await
            .expect("list the bucket")
            .text()
            .await
            .expect("listing");
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("valid actor"), operation)
}

fn kidney_request() -> Submit {
    Submit {
        member_id: MemberId::parse(UK_MEMBER).unwrap(),
        diagnosis: Icd10Code::parse("N18.4").unwrap(),
        major_surgery_recommended: false,
        emergency: false,
        current_treatment: "A daily ACE inhibitor to slow further damage to the kidneys".into(),
        first_opinion: Some(FirstOpinion {
            physician_npi: Some(Npi::parse(UK_OWN_NEPHROLOGIST).unwrap()),
            physician_name: "Dr. Fiona MacAllister".into(),
            practice: None,
            given_on: "2026-10-02".parse().unwrap(),
            summary: "Chronic kidney disease stage 4".into(),
        }),
    }
}

fn kidney_answers() -> Vec<Answer> {
    let answer = |id: &str, value| Answer {
        question_id: id.into(),
        value,
    };
    vec![
        answer("stage", AnswerValue::Choice("4".into())),
        answer("on_dialysis", AnswerValue::YesNo(false)),
        answer(
            "current_treatment",
            AnswerValue::Text("Lisinopril 10 mg daily".into()),
        ),
        answer("latest_egfr", AnswerValue::Number(22.0)),
        answer(
            "questions_for_expert",
            AnswerValue::Text("Is my treatment aggressive enough?".into()),
        ),
    ]
}

fn upload(id: &str, bytes: &[u8], sha256: String) -> UploadRecord {
    UploadRecord {
        request_id: id.into(),
        kind: RecordKind::LabResult,
        file_name: "labs.pdf".into(),
        content_type: "application/pdf".into(),
        size_bytes: bytes.len() as u64,
        sha256,
        description: "Kidney function tests".into(),
    }
}

async fn an_upload_is_kept_in_the_bucket_and_downloads_whole(db: &TestDb) {
    carepath_cli::install_crypto_provider();
    let s3 = S3Server::start();
    let made = reqwest::Client::new()
        .put(format!("{}/{BUCKET}", s3.endpoint))
        .send()
        .await
        .expect("create the bucket");
    assert!(made.status().is_success(), "bucket not made: {made:?}");
    let storage = RecordStorage::s3(
        &format!("s3://{BUCKET}/{PREFIX}"),
        [
            ("aws_endpoint", s3.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
        ],
    )
    .expect("an S3 record store");

    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let opinions = SecondOpinion::new(
        app.clone(),
        Arc::new(carepath_secondopinion::shipped()),
        storage.clone(),
    );
    let member = caller(Role::Member, UK_MEMBER, "app/UploadRecord");
    let id = opinions
        .submit(&member, kidney_request())
        .await
        .unwrap()
        .request
        .request
        .id;
    opinions
        .answer_questionnaire(&member, &id, kidney_answers())
        .await
        .unwrap();

    // Two megabytes and a bit: more than one part on the way in, more than one piece on
    // the way out.
    let bytes: Vec<u8> = (0..2 * 1024 * 1024 + 77).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<bytes::Bytes, AppError>> = bytes
        .chunks(512 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let added = opinions
        .upload_record(
            &member,
            upload(&id, &bytes, sha256_hex(&bytes)),
            futures::stream::iter(chunks),
        )
        .await
        .expect("upload to S3");
    let record = added.record.expect("the uploaded record");
    let key = record.object_key.clone().expect("a file");
    assert_eq!(
        s3.keys().await,
        [format!("{PREFIX}/{key}")],
        "the record is in the bucket under the prefix, and nothing else is"
    );

    let download = opinions
        .download_record(
            &member,
            DownloadRecord {
                request_id: id.clone(),
                record_id: record.id.clone(),
            },
        )
        .await
        .expect("download from S3");
    let got: Vec<u8> = download.bytes.map(|b| b.unwrap().to_vec()).concat().await;
    assert!(got == bytes, "the download differs from the upload");

    // A wrong checksum keeps nothing, in the bucket either.
    let other = b"%PDF-1.4 a second report".to_vec();
    let refused = opinions
        .upload_record(
            &member,
            upload(&id, &other, sha256_hex(b"something else")),
            futures::stream::iter([Ok(bytes::Bytes::from(other.clone()))]),
        )
        .await;
    assert!(matches!(refused, Err(AppError::Invalid(_))), "{refused:?}");
    assert_eq!(s3.keys().await, [format!("{PREFIX}/{key}")]);

    // A sweep over the bucket leaves the listed record alone.
    let swept = storage.sweep(&app.store, None).await.expect("sweep S3");
    assert_eq!((swept.temporary, swept.orphans), (0, 0));
    assert_eq!(s3.keys().await, [format!("{PREFIX}/{key}")]);
}
