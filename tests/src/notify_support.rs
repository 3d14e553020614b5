//! What the notification tests drive besides carepath: a real SMTP server (Python's
//! aiosmtpd) and an HTTP fax gateway, both on loopback, and reading PDF letters back
//! with poppler's `pdftotext`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// An aiosmtpd server that saves each accepted message, parsed by Python's `email`
/// package, as one JSON file. With a delay, it holds each message that long before
/// answering, first leaving a `receiving-<n>` marker; a message whose client went
/// away meanwhile is not accepted (as any SMTP server would: no 250 was sent).
const SMTP_SERVER: &str = r#"
import asyncio, json, pathlib, sys, threading, email, email.policy
from aiosmtpd.controller import Controller

port, out, delay = int(sys.argv[1]), pathlib.Path(sys.argv[2]), float(sys.argv[3])

class Saver:
    async def handle_DATA(self, server, session, envelope):
        n = len(list(out.glob("receiving-*")))
        (out / f"receiving-{n}").write_text("")
        if delay:
            await asyncio.sleep(delay)
            if server.transport is None or server.transport.is_closing():
                return "421 4.4.2 connection closed before the message was accepted"
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

/// An HTTP fax gateway: records each posted fax as JSON and answers with a job id;
/// a repeated idempotency key gets the first job back and is not faxed again.
const FAX_GATEWAY: &str = r#"
import json, pathlib, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out = int(sys.argv[1]), pathlib.Path(sys.argv[2])
lock = threading.Lock()

class Gateway(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            jobs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
            same = [j for j in jobs if j["idempotency_key"] == body["idempotency_key"]]
            if same:
                job = same[0]["job_id"]
            else:
                job = f"fax-{len(jobs)}"
                body["job_id"] = job
                body["authorization"] = self.headers.get("Authorization")
                (out / f"{len(jobs):04}.json").write_text(json.dumps(body))
        answer = json.dumps({"job_id": job, "status": "queued"}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Gateway)
print("ready", flush=True)
server.serve_forever()
"#;

/// A loopback port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A helper process, killed when dropped, that writes what it receives into a folder.
#[derive(Debug)]
struct Recorder {
    child: Child,
    dir: PathBuf,
}

impl Recorder {
    fn start(script: &str, args: &[String], port: u16, dir: PathBuf, what: &str) -> Recorder {
        std::fs::create_dir_all(&dir).expect("recorder folder");
        let child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed for the {what}: {e}"));
        let recorder = Recorder { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the {what} did not start on port {port} (is aiosmtpd installed? pip install aiosmtpd)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        recorder
    }

    fn records(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        });
        files
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
            })
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SMTP server on loopback.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    recorder: Recorder,
}

impl SmtpServer {
    /// Starts it on `port`, keeping what it receives under `dir`; with `hold`, each
    /// message is held that long before it is accepted.
    pub fn start(port: u16, dir: &Path, hold: Duration) -> SmtpServer {
        let args = [
            port.to_string(),
            dir.display().to_string(),
            hold.as_secs_f64().to_string(),
        ];
        SmtpServer {
            port,
            recorder: Recorder::start(SMTP_SERVER, &args, port, dir.to_path_buf(), "SMTP server"),
        }
    }

    /// Every message accepted so far, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        self.recorder.records()
    }

    /// How many messages have started to arrive (accepted or not).
    pub fn receiving(&self) -> usize {
        std::fs::read_dir(&self.recorder.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("receiving-"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits until at least `n` messages were accepted.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, got {}: {messages:#?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An HTTP fax gateway on loopback.
#[derive(Debug)]
pub struct FaxGateway {
    pub url: String,
    recorder: Recorder,
}

impl FaxGateway {
    pub fn start(dir: &Path) -> FaxGateway {
        let port = free_port();
        let args = [port.to_string(), dir.display().to_string()];
        FaxGateway {
            url: format!("http://127.0.0.1:{port}/v1/faxes"),
            recorder: Recorder::start(FAX_GATEWAY, &args, port, dir.to_path_buf(), "fax gateway"),
        }
    }

    /// Every fax the gateway accepted.
    pub fn faxes(&self) -> Vec<Value> {
        self.recorder.records()
    }
}

/// The text of a PDF, through poppler's `pdftotext`, with whitespace collapsed.
pub fn pdf_text(path: &Path) -> String {
    let output = Command::new("pdftotext")
        .arg("-enc")
        .arg("UTF-8")
        .arg(path)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "pdftotext is needed to read letters back (apt-get install -y poppler-utils): {e}"
            )
        });
    assert!(
        output.status.success(),
        "pdftotext failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    flatten(&String::from_utf8_lossy(&output.stdout))
}

/// Whitespace collapsed to single spaces, so phrases match across line breaks.
pub fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The print batch's manifest lines.
pub fn manifest(batch_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(batch_dir.join("manifest.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("manifest line"))
        .collect()
}

/// Every email a notice records as sent (its Message-ID as receipt, `notices`) arrived
/// at `smtp` once, and no email arrived that no notice accounts for; a notice in
/// `in_flight` (being sent when a process was killed) may have arrived twice.
pub fn assert_each_email_arrived_once(
    smtp: &SmtpServer,
    notices: &[carepath_store::NoticeRecord],
    in_flight: &std::collections::BTreeSet<String>,
) {
    let emailed: std::collections::BTreeMap<String, &carepath_store::NoticeRecord> = notices
        .iter()
        .filter(|n| n.channel == "email")
        .map(|n| (n.receipt_reference.clone(), n))
        .collect();
    assert!(!emailed.is_empty(), "emails were sent");
    assert!(
        !emailed.contains_key(""),
        "a sent email has no Message-ID as its receipt"
    );
    let mut received: std::collections::BTreeMap<String, usize> = Default::default();
    for message in smtp.messages() {
        let id = message["message_id"]
            .as_str()
            .expect("Message-ID")
            .to_owned();
        *received.entry(id).or_default() += 1;
    }
    for (message_id, notice) in &emailed {
        match received.get(message_id).copied().unwrap_or(0) {
            1 => {}
            0 => panic!("notice {} was recorded sent but never arrived", notice.id),
            2 if in_flight.contains(&notice.id) => {}
            n => panic!("notice {} arrived {n} times", notice.id),
        }
    }
    let unknown: Vec<&String> = received
        .keys()
        .filter(|id| !emailed.contains_key(*id))
        .collect();
    assert!(
        unknown.is_empty(),
        "emails no notice accounts for: {unknown:?}"
    );
}
