//! A real HTTP server for the push tests: `http_server.py` (Python's `http.server`) as a
//! child process on 127.0.0.1, recording each request as a JSON line in a private
//! directory, answering as the test scripts it (500, a rate limit, a hang) and 201 else.
//!
//! Include it with `#[path = "support/http.rs"] mod http;`.
// Each test file uses part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One request the server read.
#[derive(Clone, Debug)]
pub struct Request {
    pub n: u64,
    /// Unix seconds when it arrived.
    pub at: f64,
    pub path: String,
    pub headers: serde_json::Map<String, Value>,
    pub body: String,
    /// The status answered; `None` for a hang.
    pub answered: Option<u16>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{}: {e}", self.body))
    }

    /// Whether it was answered 2xx.
    pub fn taken(&self) -> bool {
        self.answered
            .is_some_and(|status| (200..300).contains(&status))
    }
}

pub struct HttpServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// The certificate and key it serves HTTPS with.
    tls: Option<(PathBuf, PathBuf)>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        Self::start_with(None)
    }

    /// Serves HTTPS with this certificate (PEM) and key.
    pub fn start_tls(cert: &Path, key: &Path) -> HttpServer {
        Self::start_with(Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> HttpServer {
        let mut server = HttpServer {
            dir: tempfile::tempdir().unwrap(),
            port: 0,
            child: None,
            tls,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The next requests get these answers, in order (`{"status": 500}`, `{"hang": 5}`,
    /// ...); the ones after them 201.
    pub fn script(&self, answers: Value) {
        let path = self.dir.path().join("script.json");
        std::fs::write(path.with_extension("tmp"), answers.to_string()).unwrap();
        std::fs::rename(path.with_extension("tmp"), path).unwrap();
    }

    /// Kills the server: its port refuses connections until [`HttpServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        let text =
            std::fs::read_to_string(self.dir.path().join("requests.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                Request {
                    n: value["n"].as_u64().unwrap(),
                    at: value["at"].as_f64().unwrap(),
                    path: value["path"].as_str().unwrap().into(),
                    headers: value["headers"].as_object().unwrap().clone(),
                    body: value["body"].as_str().unwrap().into(),
                    answered: value["answered"].as_u64().map(|s| s as u16),
                }
            })
            .collect()
    }

    /// The requests answered 2xx.
    pub fn taken(&self) -> Vec<Request> {
        self.requests().into_iter().filter(Request::taken).collect()
    }

    /// Waits until `count` requests were taken (2xx) and answers them; panics with what
    /// came after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let taken = self.taken();
            if taken.len() >= count {
                return taken;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {count} requests taken within {timeout:?}, got {}: {:#?}\nserver log:\n{}",
                    taken.len(),
                    self.requests(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/http_server.py");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path());
        if let Some((cert, key)) = &self.tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (ready, announced) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready.send(line);
        });
        let line = announced.recv_timeout(START_TIMEOUT).unwrap_or_default();
        self.child = Some(child);
        match line.trim().parse() {
            Ok(port) => self.port = port,
            Err(_) => {
                self.stop();
                panic!(
                    "http_server.py did not start (said {line:?}); its log:\n{}",
                    self.log()
                );
            }
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
