//! carepath binaries run as real processes: found beside the test executable, started
//! on a free port with JSON logs, and stopped as an operator would (SIGTERM) or as a
//! crash would (SIGKILL).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::transport::Channel;

/// How long a process may take to say where it listens.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// The binary `name` from this source tree (`target/<profile>/<name>`), or a failure
/// saying how to build it. `flag`, when given, must appear in its `--help`, so a stale
/// binary from an older tree is caught before the test misreads it.
pub fn binary(name: &str, flag: Option<&str>) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let folder = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = folder.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        path.display()
    );
    if let Some(flag) = flag {
        let help = Command::new(&path)
            .args(if name == "carepath" {
                &["serve", "--help"][..]
            } else {
                &["--help"][..]
            })
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            String::from_utf8_lossy(&help.stdout).contains(flag),
            "{} is older than this test (it has no {flag} flag): run \
             `cargo build --workspace --bins` first",
            path.display()
        );
    }
    path
}

/// A server binary running as a child process, killed when dropped. Its log (JSON
/// lines on stderr) is read for the life of the process and printed if a test fails.
pub struct ServerProcess {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads the log until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl ServerProcess {
    /// Starts `command` (a carepath server with everything but `--listen`) on a free
    /// port and waits until it says where it listens. Logs are JSON, at the level
    /// `CAREPATH_LOG` names if `command` sets it, else INFO.
    pub fn start(name: &str, mut command: Command) -> ServerProcess {
        let filter_set = command
            .get_envs()
            .any(|(key, value)| key == "CAREPATH_LOG" && value.is_some());
        if !filter_set {
            command.env("CAREPATH_LOG", "info");
        }
        // The all-in-one server also opens the FHIR API: on a free port too, unless the
        // test chose one, so servers of tests running side by side never collide.
        let fhir_set = command
            .get_envs()
            .any(|(key, value)| key == "CAREPATH_FHIR_LISTEN" && value.is_some());
        if !fhir_set {
            command.env("CAREPATH_FHIR_LISTEN", "127.0.0.1:0");
        }
        // The metrics endpoint is off unless the test asks for it: servers of tests
        // running side by side would otherwise all want its default port.
        let metrics_set = command
            .get_envs()
            .any(|(key, value)| key == "CAREPATH_METRICS_LISTEN" && value.is_some());
        if !metrics_set {
            command.env("CAREPATH_METRICS_LISTEN", "");
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .env("CAREPATH_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));

        // A thread of its own drains the pipe so it never fills; the listening address
        // is sent back once.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry: Option<serde_json::Value> = serde_json::from_str(&line).ok();
                let fields = entry.as_ref().and_then(|e| e.get("fields"));
                if fields
                    .and_then(|f| f.get("message"))
                    .and_then(|m| m.as_str())
                    == Some("carepath listening")
                    && let Some(addr) = fields
                        .and_then(|f| f.get("addr"))
                        .and_then(|a| a.as_str())
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = found.send(addr);
                }
                lines.lock().expect("log lock").push(line);
            }
        });
        let addr = match listening.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "{name} did not start listening (exit: {status:?}); its log:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        ServerProcess {
            name: name.to_owned(),
            addr,
            child,
            log,
            reader: Some(reader),
        }
    }

    /// A plaintext channel to the process, connected once it answers.
    pub async fn channel(&self) -> Channel {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match Channel::from_shared(format!("http://{}", self.addr))
                .expect("uri")
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
            {
                Ok(channel) => return channel,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{} at {} does not answer: {e}",
                    self.name,
                    self.addr
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Kills the process with SIGKILL, as a crash or an out-of-memory kill would: no
    /// shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap the killed process");
    }

    /// Asks the process to stop (SIGTERM), waits for it to exit (killing it after
    /// 30 s), and returns its whole log.
    pub fn terminate(mut self) -> Vec<String> {
        let asked = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while asked && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "log of {}:\n{}",
                self.name,
                self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
            );
        }
    }
}
