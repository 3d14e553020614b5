//! The NATS JetStream server the event tests publish to: its address, a stream and
//! subject prefix of a test's own (so runs never see each other's messages), and
//! every message of a stream read back.

use async_nats::jetstream;
use serde_json::Value;

/// The NATS server with JetStream the suite uses: `CAREPATH_TEST_NATS_URL`, by default
/// the local one (tests/run.sh starts it when nothing answers).
pub fn nats_url() -> String {
    std::env::var("CAREPATH_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

/// A stream and subject prefix no other run uses; the stream is deleted when this is
/// dropped, so a failed test leaves nothing behind either.
#[derive(Debug)]
pub struct TestStream {
    pub name: String,
    pub prefix: String,
    /// The NATS server it lives on.
    pub url: String,
}

impl TestStream {
    /// A stream on the suite's NATS server ([`nats_url`]).
    pub fn new(label: &str) -> TestStream {
        TestStream::at(label, &nats_url())
    }

    /// A stream on the NATS server at `url`.
    pub fn at(label: &str, url: &str) -> TestStream {
        let run = uuid::Uuid::now_v7().simple().to_string();
        TestStream {
            name: format!("TEST_{}_{run}", label.to_uppercase()),
            prefix: format!("test-{run}.carepath"),
            url: url.to_owned(),
        }
    }

    /// The serve flags that publish to this stream.
    pub fn flags(&self) -> Vec<String> {
        [
            "--nats-url",
            &self.url,
            "--nats-stream",
            &self.name,
            "--nats-subject-prefix",
            &self.prefix,
            "--nats-max-age-days",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    async fn context(&self) -> jetstream::Context {
        let url = &self.url;
        let client = async_nats::connect(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("no NATS server with JetStream at {url}: {e}"));
        jetstream::new(client)
    }

    /// Every message of the stream, in stream order: its subject, its `Nats-Msg-Id`
    /// header and its body as JSON.
    pub async fn messages(&self) -> Vec<StreamedEvent> {
        let js = self.context().await;
        let mut stream = js.get_stream(&self.name).await.expect("the stream exists");
        let info = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        if info.messages == 0 {
            return out;
        }
        for seq in info.first_sequence..=info.last_sequence {
            let message = stream.get_raw_message(seq).await.expect("message");
            let msg_id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&message.payload).expect("JSON body");
            out.push(StreamedEvent {
                subject: message.subject.to_string(),
                msg_id,
                raw: String::from_utf8_lossy(&message.payload).into_owned(),
                body,
            });
        }
        out
    }

    /// Deletes the stream and its messages.
    pub async fn delete(&self) {
        let js = self.context().await;
        js.delete_stream(&self.name).await.expect("delete stream");
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        // Drop cannot await: a thread of its own with a small runtime deletes it (an
        // error means it was deleted already or never made).
        let (name, url) = (self.name.clone(), self.url.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = jetstream::new(client).delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    pub subject: String,
    pub msg_id: String,
    /// The body as sent.
    pub raw: String,
    pub body: Value,
}
