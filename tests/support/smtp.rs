//! A real SMTP server for the mail tests: `smtp_server.py` (aiosmtpd) as a child process on
//! 127.0.0.1, recording each message it accepts as JSON in a private directory.
//!
//! Include it with `#[path = "support/smtp.rs"] mod smtp;` so that only the tests that send
//! mail compile it.
// Each test file uses part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moonbot::config::status::StatusTarget;
use moonbot::db::OutboxMessage;
use moonbot::status::mail::smtp::SmtpTransport;
use moonbot::status::outbox::{Outcome, Transport};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The longest wait for the server to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    #[default]
    None,
    /// STARTTLS offered and required before MAIL.
    Starttls,
    /// TLS from the first byte.
    Smtps,
}

#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    pub tls: Tls,
    /// The only credentials accepted; with them, MAIL without AUTH is refused.
    pub auth: Option<(String, String)>,
    /// Recipients answered with 550.
    pub refuse_rcpt: Vec<String>,
    /// Recipients answered with 450 once (by this server process), then accepted.
    pub defer_rcpt: Vec<String>,
    /// Every message answered with 554 at the end of its DATA.
    pub refuse_message: bool,
    /// Seconds the server waits before answering each message's DATA.
    pub pause: Option<f64>,
    /// Offer only these AUTH mechanisms (e.g. `LOGIN`); empty, all aiosmtpd has.
    pub auth_mechanisms: Vec<String>,
    /// Close each connection instead of answering the DATA of its message number N+1.
    pub drop_after: Option<u32>,
    /// The certificate (PEM chain) and key the server presents; by default one issued by
    /// a CA of its own ([`SmtpServer::ca_file`]).
    pub certificate: Option<(PathBuf, PathBuf)>,
}

/// One message the server accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedMail {
    /// Numbers the connection the message came over.
    pub session: u64,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The DATA as sent.
    pub raw: String,
    /// Decoded (RFC 2047) headers, in order.
    pub headers: Vec<(String, String)>,
    /// The leaf parts, decoded from their transfer encoding.
    pub parts: Vec<MailPart>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MailPart {
    pub content_type: String,
    pub filename: Option<String>,
    /// The decoded text, with line ends as `\n`.
    pub content: String,
}

impl ReceivedMail {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn from_json(value: &Value) -> ReceivedMail {
        let text = |v: &Value| v.as_str().expect("a string").to_string();
        ReceivedMail {
            session: value["session"].as_u64().expect("session"),
            mail_from: text(&value["mail_from"]),
            rcpt_tos: value["rcpt_tos"]
                .as_array()
                .expect("rcpt_tos")
                .iter()
                .map(text)
                .collect(),
            raw: text(&value["raw"]),
            headers: value["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|pair| (text(&pair[0]), text(&pair[1])))
                .collect(),
            parts: value["parts"]
                .as_array()
                .expect("parts")
                .iter()
                .map(|part| MailPart {
                    content_type: text(&part["content_type"]),
                    filename: part["filename"].as_str().map(str::to_string),
                    content: text(&part["content"]),
                })
                .collect(),
        }
    }
}

pub struct SmtpServer {
    options: SmtpOptions,
    /// Holds `mail/` (the messages), `certs/` and `server.log` (the server's stderr).
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts a server on a free port.
    pub fn start(options: SmtpOptions) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = SmtpServer {
            options,
            dir,
            port: 0,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (for `localhost` and `127.0.0.1`).
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.options.tls != Tls::None, "the server has no TLS");
        assert!(
            self.options.certificate.is_none(),
            "the test gave the certificate"
        );
        self.certs().join("ca.pem")
    }

    /// Kills the server: the port refuses connections until [`SmtpServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, directory and options.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// What the server accepted so far, in order.
    pub fn received(&self) -> Vec<ReceivedMail> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.mail_dir())
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().path())
                    .filter_map(|path| {
                        let seq = path.file_name()?.to_str()?.strip_suffix(".json")?;
                        Some((seq.parse().ok()?, path))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|(_, path)| {
                let text = std::fs::read_to_string(path).unwrap();
                ReceivedMail::from_json(&serde_json::from_str(&text).unwrap())
            })
            .collect()
    }

    /// Waits until at least `count` messages arrived, and answers them all; panics with what
    /// did arrive after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {count} mails within {timeout:?}, got {}: {received:#?}\nserver log:\n{}",
                    received.len(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn spawn(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.mail_dir());
        let tls = match self.options.tls {
            Tls::None => "none",
            Tls::Starttls => "starttls",
            Tls::Smtps => "smtps",
        };
        command.args(["--tls", tls]);
        if let Some((cert, key)) = &self.options.certificate {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        } else if self.options.tls != Tls::None {
            if self.certs().join("cert.pem").exists() {
                command
                    .arg("--cert")
                    .arg(self.certs().join("cert.pem"))
                    .arg("--key")
                    .arg(self.certs().join("key.pem"));
            } else {
                command.arg("--make-cert").arg(self.certs());
            }
        }
        if let Some((user, password)) = &self.options.auth {
            command.arg("--auth").arg(format!("{user}:{password}"));
        }
        for address in &self.options.refuse_rcpt {
            command.arg("--refuse-rcpt").arg(address);
        }
        for address in &self.options.defer_rcpt {
            command.arg("--defer-rcpt").arg(address);
        }
        if self.options.refuse_message {
            command.arg("--refuse-message");
        }
        if let Some(seconds) = self.options.pause {
            command.arg("--pause").arg(seconds.to_string());
        }
        for mechanism in &self.options.auth_mechanisms {
            command.arg("--auth-mechanism").arg(mechanism);
        }
        if let Some(count) = self.options.drop_after {
            command.arg("--drop-after").arg(count.to_string());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
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
        match line.trim().strip_prefix("READY ").map(str::parse) {
            Some(Ok(port)) => self.port = port,
            _ => {
                self.stop();
                panic!(
                    "smtp_server.py did not start (said {line:?}); its log:\n{}",
                    self.log()
                );
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed certificate for `names` made as an operator makes one for a private relay
/// (`openssl req -x509`, which marks it as a CA), written to `dir` as `NAME.pem` and
/// `NAME.key`; answers their paths.
pub fn self_signed(dir: &Path, name: &str, names: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg(format!("subjectAltName={names}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(made.success(), "openssl req -x509 failed");
    (cert, key)
}

/// A self-signed certificate like [`self_signed`]'s for `localhost` and `127.0.0.1`, but
/// expired yesterday: `dir/expired.pem` and `dir/expired.key`.
pub fn expired_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let made = Command::new("python3")
        .arg(script)
        .arg("--make-expired-cert")
        .arg(dir)
        .status()
        .expect("python3 runs");
    assert!(made.success(), "smtp_server.py --make-expired-cert failed");
    (dir.join("expired.pem"), dir.join("expired.key"))
}

/// The transport of a MailNotifier written with these extra options (`relayhost=...`).
pub fn transport(options: &str) -> SmtpTransport {
    let source = format!(
        "local c = BuildmasterConfig
         c['status'] = {{status.MailNotifier{{fromaddr='bot@example.org', {options}}}}}"
    );
    let loaded = moonbot::config::load_source("master.cfg.lua", &source, Path::new("."))
        .unwrap_or_else(|errors| panic!("{errors}"));
    match loaded.config.status.into_iter().next() {
        Some(StatusTarget::MailNotifier(config)) => SmtpTransport::new(&config).unwrap(),
        other => panic!("expected a MailNotifier, got {other:?}"),
    }
}

/// A pending outbox message from `from` to `to` (addresses as in headers) with a small
/// RFC 5322 body whose subject and text name `id`.
pub fn message(id: i64, from: &str, to: &[&str]) -> OutboxMessage {
    let body = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: build {id} failed\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{id}@moonbot.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Build {id} failed.\r\n",
        to = to.join(", ")
    );
    OutboxMessage {
        id,
        reporter: "MailNotifier".into(),
        kind: "mail".into(),
        dedup_key: format!("build/{id}"),
        summary: format!("build {id} failed"),
        meta: json!({"from": from, "to": to}),
        body: body.into_bytes(),
        state: "pending".into(),
        attempts: 0,
        created_at: 0.0,
        next_attempt_at: 0.0,
        sent_at: None,
        last_error: None,
        retry_recipients: None,
        refused_recipients: Vec::new(),
    }
}

/// Sends `batch` over one session as the delivery task would, without storage: the outcome
/// of each message up to the first that broke the session, or why none could be opened.
pub async fn deliver(
    transport: &SmtpTransport,
    batch: &[OutboxMessage],
) -> Result<Vec<Outcome>, String> {
    let mut session = transport.open().await?;
    let mut outcomes = Vec::new();
    for message in batch {
        let outcome = transport.send(&mut session, message).await;
        let broken = matches!(outcome, Outcome::Broken(_));
        outcomes.push(outcome);
        if broken {
            return Ok(outcomes);
        }
    }
    transport.close(session).await;
    Ok(outcomes)
}
