//! The fax channel against a small HTTP gateway the test runs on loopback.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine;
use carepath_core::ContactChannel;
use carepath_notify::{Channel, ChannelError, FaxChannel, FaxSettings, RecipientRole};
use support::{assert_contains_all, denial, denial_phrases, free_port, pdf_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the gateway received.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake fax gateway: answers each request with the next scripted (status, body)
/// and records what it received.
struct Gateway {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn gateway(answers: Vec<(u16, &'static str)>) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/faxes", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0_u8; 8192];
                let header_end = loop {
                    let n = stream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[header_end + 4..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                log.lock().unwrap().push(Received {
                    request_line,
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                });
                let (status, answer) = answers.lock().unwrap().pop_front().unwrap_or((500, "{}"));
                let response = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Gateway { url, received }
}

fn channel(url: &str) -> FaxChannel {
    FaxChannel::new(FaxSettings {
        endpoint: url.to_owned(),
        bearer_token: Some("test-token".into()),
        from: "+1 800 555 0143".into(),
        timeout_secs: 10,
    })
    .unwrap()
}

#[tokio::test]
async fn a_denial_fax_is_posted_as_a_pdf_with_every_required_part() {
    let gw = gateway(vec![(202, r#"{"id": "fax-7781", "status": "queued"}"#)]).await;
    let notice = denial(RecipientRole::RequestingProvider, ContactChannel::Fax, "en");

    let receipt = channel(&gw.url).deliver(&notice).await.unwrap();
    assert_eq!(receipt.channel, ContactChannel::Fax);
    assert_eq!(receipt.reference, "fax-7781");
    assert!(receipt.detail.unwrap().contains("queued"));

    let received = gw.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.request_line, "POST /v1/faxes HTTP/1.1");
    assert_eq!(r.header("authorization"), Some("Bearer test-token"));
    let carepath_notify::Destination::Fax { number } = &notice.destination else {
        panic!("not a fax notice")
    };
    assert_eq!(r.body["to"], number.as_str());
    assert_eq!(r.body["from"], "+1 800 555 0143");
    assert_eq!(r.body["subject"], notice.subject.as_str());
    assert_eq!(r.body["idempotency_key"], notice.key.as_str());
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(r.body["document_pdf_base64"].as_str().unwrap())
        .unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fax.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let text = pdf_text(&path);
    assert_contains_all(&text, &denial_phrases("en"));
    assert_contains_all(&text, &[&format!("Fax: {number}")]);
}

#[tokio::test]
async fn gateway_errors_are_classified() {
    let gw = gateway(vec![
        (503, r#"{"error": "busy"}"#),
        (429, r#"{"error": "slow down"}"#),
        (422, r#"{"error": "invalid fax number"}"#),
    ])
    .await;
    let ch = channel(&gw.url);
    let notice = denial(RecipientRole::RequestingProvider, ContactChannel::Fax, "en");
    let first = ch.deliver(&notice).await.unwrap_err();
    assert!(
        matches!(&first, ChannelError::Retryable(m) if m.contains("503")),
        "{first}"
    );
    let second = ch.deliver(&notice).await.unwrap_err();
    assert!(second.is_retryable(), "{second}");
    let third = ch.deliver(&notice).await.unwrap_err();
    assert!(
        matches!(&third, ChannelError::Permanent(m) if m.contains("invalid fax number")),
        "{third}"
    );
    // Every retry carries the same idempotency key, so the gateway can fold them.
    let keys: Vec<_> = gw
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body["idempotency_key"].clone())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == notice.key.as_str()));
}

#[tokio::test]
async fn an_unreachable_gateway_is_retryable() {
    let url = format!("http://127.0.0.1:{}/v1/faxes", free_port());
    let notice = denial(RecipientRole::RequestingProvider, ContactChannel::Fax, "en");
    let err = channel(&url).deliver(&notice).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn notices_for_other_channels_are_refused() {
    let gw = gateway(vec![]).await;
    let notice = denial(RecipientRole::Member, ContactChannel::Mail, "en");
    let err = channel(&gw.url).deliver(&notice).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(gw.received.lock().unwrap().is_empty());
    assert!(
        FaxChannel::new(FaxSettings {
            endpoint: "not a url".into(),
            bearer_token: None,
            from: "x".into(),
            timeout_secs: 1,
        })
        .is_err()
    );
}
