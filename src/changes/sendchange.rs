//! `moonbot sendchange`: Buildbot's `buildbot sendchange`, sending one change to a
//! PBChangeSource over HTTP.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::pb::{ChangeMessage, CHANGES_PATH};

/// How long sending a change may take, connection included.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The version control systems Buildbot's sendchange accepts for `--vc`.
const VCS: &[&str] = &["cvs", "svn", "darcs", "hg", "bzr", "git", "mtn", "p4"];

/// The options of `buildbot sendchange`, with the same names and short flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SendchangeArgs {
    /// Where the master's PBChangeSource listens (HOST:PORT).
    #[arg(short = 'm', long)]
    pub master: String,
    /// USER:PASSWORD, or USER to be asked for the password.
    #[arg(short = 'a', long, default_value = "change:changepw")]
    pub auth: String,
    /// The author of the commit.
    #[arg(short = 'W', long)]
    pub who: String,
    #[arg(short = 'R', long, default_value = "")]
    pub repository: String,
    /// The version control system in use.
    #[arg(short = 's', long, value_parser = clap::builder::PossibleValuesParser::new(VCS))]
    pub vc: Option<String>,
    #[arg(short = 'P', long, default_value = "")]
    pub project: String,
    #[arg(short = 'b', long)]
    pub branch: Option<String>,
    #[arg(short = 'C', long)]
    pub category: Option<String>,
    #[arg(long)]
    pub codebase: Option<String>,
    #[arg(short = 'r', long)]
    pub revision: Option<String>,
    /// A file holding the revision.
    #[arg(long)]
    pub revision_file: Option<PathBuf>,
    /// A property of the change; may be repeated.
    #[arg(short = 'p', long = "property", value_name = "NAME:VALUE")]
    pub properties: Vec<String>,
    /// The log message.
    #[arg(short = 'c', long)]
    pub comments: Option<String>,
    /// Read the log message from this file (- for stdin).
    #[arg(short = 'F', long)]
    pub logfile: Option<PathBuf>,
    /// The change's time, in seconds since the epoch.
    #[arg(short = 'w', long)]
    pub when: Option<f64>,
    #[arg(short = 'l', long, default_value = "")]
    pub revlink: String,
    /// The files the change touches.
    pub files: Vec<String>,
}

/// Why a change was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("master must be HOST:PORT, not '{0}'")]
    BadMaster(String),
    #[error("cannot connect to {master}: {source}")]
    Connect {
        master: String,
        source: std::io::Error,
    },
    #[error("the master refused the change ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("talking to {master}: {message}")]
    Protocol { master: String, message: String },
    #[error("no answer from {0} within {SEND_TIMEOUT:?}")]
    TimedOut(String),
}

/// Runs `moonbot sendchange`: prints "change sent successfully", or fails with why not.
pub async fn sendchange(args: SendchangeArgs) -> anyhow::Result<()> {
    let (user, password) = credentials(&args.auth)?;
    let message = message_from_args(args.clone())?;
    send_change(&args.master, &user, &password, &message)
        .await
        .context("change not sent")?;
    println!("change sent successfully");
    Ok(())
}

/// Sends one change to the PBChangeSource at `master` (HOST:PORT); returns its change id.
pub async fn send_change(
    master: &str,
    user: &str,
    password: &str,
    change: &ChangeMessage,
) -> Result<i64, SendError> {
    match master.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => return Err(SendError::BadMaster(master.to_string())),
    }
    tokio::time::timeout(SEND_TIMEOUT, post_change(master, user, password, change))
        .await
        .map_err(|_| SendError::TimedOut(master.to_string()))?
}

async fn post_change(
    master: &str,
    user: &str,
    password: &str,
    change: &ChangeMessage,
) -> Result<i64, SendError> {
    let protocol = |message: String| SendError::Protocol {
        master: master.to_string(),
        message,
    };
    let stream = TcpStream::connect(master)
        .await
        .map_err(|source| SendError::Connect {
            master: master.to_string(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let connection = tokio::spawn(connection);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let body = serde_json::to_vec(change).expect("a change is JSON");
    let request = hyper::Request::post(CHANGES_PATH)
        .header(header::HOST, master)
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| protocol(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
        .to_bytes();
    connection.abort();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_string() }),
    );
    if !status.is_success() {
        return Err(SendError::Rejected {
            status: status.as_u16(),
            message: answer["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        });
    }
    answer["changeid"]
        .as_i64()
        .ok_or_else(|| protocol(format!("unexpected answer {answer}")))
}

/// The change the command line describes, as Buildbot's `SendChangeOptions` builds it.
fn message_from_args(args: SendchangeArgs) -> anyhow::Result<ChangeMessage> {
    let revision = match &args.revision_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the revision file {}", path.display()))?
                .trim_end()
                .to_string(),
        ),
        None => args.revision,
    };
    let comments = match (args.comments, &args.logfile) {
        (Some(comments), _) if !comments.is_empty() => comments,
        (_, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the comments from stdin")?;
            text
        }
        (_, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the log file {}", path.display()))?,
        (comments, None) => comments.unwrap_or_default(),
    };
    let mut properties = BTreeMap::new();
    for property in &args.properties {
        let Some((name, value)) = property.split_once(':') else {
            bail!("property '{property}' must be NAME:VALUE");
        };
        properties.insert(name.to_string(), serde_json::Value::from(value));
    }
    Ok(ChangeMessage {
        who: args.who,
        committer: None,
        files: args.files,
        comments,
        branch: args.branch,
        revision,
        category: args.category,
        when: args.when,
        properties,
        repository: args.repository,
        project: args.project,
        revlink: Some(args.revlink),
        codebase: args.codebase.filter(|c| !c.is_empty()),
        vc: args.vc,
    })
}

/// `--auth USER:PASSWORD`; with only a user, the password is asked for on the terminal.
fn credentials(auth: &str) -> anyhow::Result<(String, String)> {
    if let Some((user, password)) = auth.split_once(':') {
        return Ok((user.to_string(), password.to_string()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("--auth '{auth}' has no password (use USER:PASSWORD)");
    }
    eprint!("Enter password for '{auth}': ");
    let password = read_password().context("cannot read the password")?;
    eprintln!();
    Ok((auth.to_string(), password))
}

/// A line from the terminal with echo off.
fn read_password() -> std::io::Result<String> {
    // SAFETY: plain termios calls on stdin with a struct tcgetattr fills in.
    let saved = unsafe {
        let mut termios = std::mem::zeroed::<libc::termios>();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut termios) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let saved = termios;
        termios.c_lflag &= !libc::ECHO;
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &termios);
        saved
    };
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved) };
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SendchangeArgs,
    }

    fn parse(argv: &[&str]) -> SendchangeArgs {
        Cli::try_parse_from(std::iter::once("sendchange").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn options_make_buildbots_change() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("msg");
        std::fs::write(&log, "from the file\n").unwrap();
        let args = parse(&[
            "-m",
            "localhost:9989",
            "-W",
            "amy",
            "-b",
            "main",
            "-p",
            "ticket:12:a",
            "-F",
            log.to_str().unwrap(),
            "-s",
            "git",
            "--when",
            "1700000000",
            "a.c",
            "b.c",
        ]);
        let message = message_from_args(args).unwrap();
        assert_eq!(message.comments, "from the file\n");
        assert_eq!(message.files, vec!["a.c", "b.c"]);
        assert_eq!(message.properties["ticket"], "12:a");
        assert_eq!(message.when, Some(1_700_000_000.0));
        assert_eq!(message.vc.as_deref(), Some("git"));
        assert_eq!(message.revlink.as_deref(), Some(""));
        let args = parse(&[
            "-m",
            "h:1",
            "-W",
            "amy",
            "-c",
            "given",
            "-F",
            "/nonexistent",
        ]);
        assert_eq!(message_from_args(args).unwrap().comments, "given");
        let args = parse(&["-m", "h:1", "-W", "amy", "-p", "noseparator"]);
        assert!(message_from_args(args).is_err());
    }

    #[test]
    fn unknown_vc_and_missing_who_are_refused() {
        assert!(
            Cli::try_parse_from(["sendchange", "-m", "h:1", "-W", "a", "--vc", "rcs"]).is_err()
        );
        assert!(Cli::try_parse_from(["sendchange", "-m", "h:1"]).is_err());
    }

    #[tokio::test]
    async fn a_master_without_a_port_is_refused_before_connecting() {
        let change = ChangeMessage::default();
        for master in ["localhost", "localhost:x", ":80"] {
            assert!(matches!(
                send_change(master, "u", "p", &change).await,
                Err(SendError::BadMaster(_))
            ));
        }
    }
}
