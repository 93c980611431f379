//! `moonbot statuslog`: follows a master's PBListener and prints its events as they come,
//! reconnecting when the master goes away (a restart) until interrupted.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The options of `moonbot statuslog`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatuslogArgs {
    /// Where the master's PBListener listens (HOST:PORT).
    #[arg(short = 'm', long)]
    pub master: String,
    /// USER:PASSWORD, as the PBListener's `user` and `passwd`.
    #[arg(short = 'a', long, default_value = "statusClient:clientpw")]
    pub auth: String,
}

/// The wait between two connection attempts.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// Why a session ended.
enum Ended {
    /// The master refused the credentials: trying again would not help.
    Refused(String),
    /// The connection failed or closed (after the login when `was_connected`): the master
    /// may be restarting.
    Lost { why: String, was_connected: bool },
}

/// Prints `KEY MESSAGE` for each event, one line each; runs until the master refuses the
/// credentials (an error) or the process is interrupted.
pub async fn statuslog(args: StatuslogArgs) -> anyhow::Result<()> {
    let (user, passwd) = args
        .auth
        .split_once(':')
        .context("--auth must be USER:PASSWORD")?;
    // Said once per outage, not at every attempt.
    let mut say_lost = true;
    loop {
        match session(&args.master, user, passwd).await {
            Ended::Refused(answer) => anyhow::bail!("{}: {answer}", args.master),
            Ended::Lost { why, was_connected } => {
                if say_lost || was_connected {
                    eprintln!("statuslog: {}: {why}; reconnecting", args.master);
                }
                say_lost = false;
            }
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

async fn session(master: &str, user: &str, passwd: &str) -> Ended {
    let lost = |why: String| Ended::Lost {
        why,
        was_connected: false,
    };
    let stream = match TcpStream::connect(master).await {
        Ok(stream) => stream,
        Err(error) => return lost(format!("cannot connect: {error}")),
    };
    let (read, mut write) = stream.into_split();
    let mut login = json!({"user": user, "passwd": passwd}).to_string();
    login.push('\n');
    if let Err(error) = write.write_all(login.as_bytes()).await {
        return lost(format!("cannot log in: {error}"));
    }
    let mut lines = BufReader::new(read).lines();
    match lines.next_line().await {
        Ok(Some(answer)) => {
            let answer: Value = serde_json::from_str(&answer).unwrap_or_default();
            if answer["ok"] != Value::Bool(true) {
                let error = answer["error"].as_str().unwrap_or("login refused");
                return Ended::Refused(error.to_string());
            }
        }
        Ok(None) => return lost("connection closed at login".into()),
        Err(error) => return lost(format!("cannot log in: {error}")),
    }
    eprintln!("statuslog: connected to {master}");
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => println!("{}", event_line(&line)),
            Ok(None) => {
                return Ended::Lost {
                    why: "connection closed".into(),
                    was_connected: true,
                }
            }
            Err(error) => {
                return Ended::Lost {
                    why: format!("connection lost: {error}"),
                    was_connected: true,
                }
            }
        }
    }
}

/// `KEY MESSAGE` for an event line; what is not an event as the master sent it.
fn event_line(line: &str) -> String {
    let event: Value = serde_json::from_str(line).unwrap_or_default();
    match (&event["key"], &event["lagged"]) {
        (Value::String(key), _) => format!("{key} {}", event["message"]),
        (_, Value::Number(missed)) => format!("(missed {missed} events)"),
        _ => line.to_string(),
    }
}
