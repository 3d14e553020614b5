//! The email channel against a real SMTP server (Python's aiosmtpd) on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carepath_core::ContactChannel;
use carepath_notify::{
    Channel, ChannelError, Destination, EmailChannel, EmailSettings, RecipientRole, TlsMode,
};
use support::{assert_contains_all, denial, denial_phrases, free_port};

/// An aiosmtpd server whose handler saves each message, parsed and decoded by
/// Python's `email` package, as one JSON file; recipients starting with `reject` are
/// refused with 550.
const SERVER: &str = r#"
import json, pathlib, sys, threading, email, email.policy
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])

class Saver:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "to": str(msg["to"]),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
        }
        n = len(list(out.glob("*.json")))
        tmp = out / f".{n}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.rename(out / f"{n}.json")
        return "250 OK"

controller = Controller(Saver(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The SMTP server process, stopped when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    inbox: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().to_path_buf();
        let port = free_port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(port.to_string())
            .arg(&inbox)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed for the SMTP test server (pip install aiosmtpd)");
        let mut server = Self {
            child,
            port,
            inbox,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the SMTP test server exited ({status}); is aiosmtpd installed? (pip install aiosmtpd)"
                );
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP test server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.inbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|p| read_json(p)).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn settings(port: u16) -> EmailSettings {
    EmailSettings {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        credentials: None,
        from: "Carepath Health Plan <notices@carepath.example>".into(),
        timeout_secs: 10,
    }
}

#[tokio::test]
async fn a_denial_email_arrives_with_every_required_part() {
    let server = SmtpServer::start();
    let channel = EmailChannel::new(&settings(server.port)).unwrap();
    let notice = denial(
        RecipientRole::RequestingProvider,
        ContactChannel::Email,
        "en",
    );
    let Destination::Email { address } = &notice.destination else {
        panic!("not an email notice")
    };

    let receipt = channel.deliver(&notice).await.unwrap();
    assert_eq!(receipt.channel, ContactChannel::Email);
    assert_eq!(
        receipt.reference,
        format!("<notice-{}@carepath.example>", notice.key)
    );
    assert!(receipt.detail.unwrap().starts_with("250"));

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["mail_from"], "notices@carepath.example");
    assert_eq!(m["rcpt_tos"], serde_json::json!([address]));
    assert_eq!(m["subject"], notice.subject.as_str());
    assert_eq!(m["message_id"], receipt.reference.as_str());
    assert_contains_all(m["text"].as_str().unwrap(), &denial_phrases("en"));
    let html = m["html"].as_str().expect("an HTML alternative");
    assert!(html.contains("<h2>How to appeal</h2>"), "{html}");
    assert_contains_all(
        html,
        &["expedited appeal", "civil action", "1-800-555-0142"],
    );
}

#[tokio::test]
async fn a_refused_recipient_is_a_permanent_failure() {
    let server = SmtpServer::start();
    let channel = EmailChannel::new(&settings(server.port)).unwrap();
    let mut notice = denial(
        RecipientRole::RequestingProvider,
        ContactChannel::Email,
        "en",
    );
    notice.destination = Destination::Email {
        address: "rejected@clinic.example".into(),
    };
    let err = channel.deliver(&notice).await.unwrap_err();
    assert!(
        matches!(&err, ChannelError::Permanent(m) if m.contains("550")),
        "{err}"
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn with_no_server_listening_delivery_fails_retryably() {
    let channel = EmailChannel::new(&settings(free_port())).unwrap();
    let notice = denial(
        RecipientRole::RequestingProvider,
        ContactChannel::Email,
        "en",
    );
    let err = channel.deliver(&notice).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_bad_address_is_refused_before_connecting() {
    let channel = EmailChannel::new(&settings(free_port())).unwrap();
    let mut notice = denial(
        RecipientRole::RequestingProvider,
        ContactChannel::Email,
        "en",
    );
    notice.destination = Destination::Email {
        address: "not an address".into(),
    };
    let err = channel.deliver(&notice).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        EmailChannel::new(&EmailSettings {
            from: "nobody".into(),
            ..settings(25)
        })
        .is_err()
    );
}
