//! Change sources written in Lua (`changes.PollingChangeSource`, `changes.ChangeSource`):
//! the task that calls their functions, and what those functions ask of the master.
//!
//! One task per source runs its functions one at a time: `startService`, each `poll` (every
//! `pollInterval`, at launch if asked, and when the `poller` hook asks), each request to
//! `/change_source/NAME`, each function given to `callLater`, then `stopService`. A function
//! runs as a script host session: when it runs a process, makes an HTTP request or touches
//! storage, the host suspends it and this task carries the request out, so a slow peer holds
//! up this source only. Stopping abandons a function where it waits (its process is killed),
//! unless it has stored something (a change, a state): then it gets `FINISH_WAIT` to end, so
//! that a poll is not cut between its `addChange` and its `setState`, which would report its
//! changes again at the next start. A change being stored is stored either way.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pb::ChangeMessage;
use crate::config::build::{LuaSource, PollTiming};
use crate::runtime::{Context, SourceRequest, SourceResponse};
use crate::script::{Arg, Callback, Reply, Request, Step};

/// How long `stopService` may take, waits included: a reconfig waits for it.
const STOP_SERVICE_WAIT: Duration = Duration::from_secs(5);

/// How long a function that has stored something when the source stops may take to end.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Output a process may leave for Lua, each of stdout and stderr.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// A running Lua source.
pub struct LuaSourceTask {
    ctx: Context,
    config: LuaSource,
    /// The `object_state` name its state is kept under.
    state_object: String,
    /// Functions given to `callLater`, with when they are due.
    timers: Vec<(Instant, Callback)>,
    stop: CancellationToken,
}

/// Whether a function ran to its end.
enum Ran {
    Returned(Value),
    Failed,
    Stopped,
}

impl LuaSourceTask {
    pub fn new(ctx: Context, config: &LuaSource, stop: CancellationToken) -> LuaSourceTask {
        LuaSourceTask {
            state_object: state_object(&config.name),
            ctx,
            config: config.clone(),
            timers: Vec::new(),
            stop,
        }
    }

    /// Runs `startService`, then polls, answers requests and runs timers until stopped, then
    /// runs `stopService`. A new config from `updates` (one with the same `compare_attrs`)
    /// is taken between two functions: its functions and fields from then on, the timer
    /// going on as it was.
    pub async fn run(
        mut self,
        mut updates: watch::Receiver<LuaSource>,
        mut requests: mpsc::Receiver<SourceRequest>,
        poll_now: Arc<Notify>,
    ) {
        let description = match &self.config.describe {
            Some(describe) => match self.call_describe(describe).await {
                Some(text) => text,
                None => self.config.kind().to_string(),
            },
            None => self.config.kind().to_string(),
        };
        tracing::info!(source = %self.config.name, "change source started: {description}");
        if let Some(start) = self.config.start_service.clone() {
            self.run_function("startService", &start, Vec::new(), Some(self.stop.clone()))
                .await;
        }
        let mut last_poll = Instant::now();
        let mut next_poll = self.config.polling.as_ref().map(|(timing, _)| {
            let first = match timing.at_launch {
                true => last_poll,
                false => last_poll + Duration::from_secs(timing.interval),
            };
            first + random_delay(timing)
        });
        let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let next_timer = self.timers.iter().map(|(due, _)| *due).min();
            tokio::select! {
                _ = self.stop.cancelled() => break,
                changed = updates.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.config = updates.borrow_and_update().clone();
                    continue;
                }
                _ = tokio::time::sleep_until(next_poll.unwrap_or_else(far)), if next_poll.is_some() => {}
                _ = poll_now.notified(), if next_poll.is_some() => {}
                Some(request) = requests.recv() => {
                    self.answer_request(request).await;
                    continue;
                }
                _ = tokio::time::sleep_until(next_timer.unwrap_or_else(far)), if next_timer.is_some() => {
                    self.run_due_timers().await;
                    continue;
                }
            }
            let Some((timing, poll)) = self.config.polling.clone() else {
                continue;
            };
            self.run_function("poll", &poll, Vec::new(), Some(self.stop.clone()))
                .await;
            last_poll = Instant::now();
            next_poll =
                Some(last_poll + Duration::from_secs(timing.interval) + random_delay(&timing));
        }
        if let Some(stop_service) = self.config.stop_service.clone() {
            let run = self.run_function("stopService", &stop_service, Vec::new(), None);
            if tokio::time::timeout(STOP_SERVICE_WAIT, run).await.is_err() {
                tracing::warn!(
                    source = %self.config.name,
                    "stopService did not end within {STOP_SERVICE_WAIT:?}; abandoned"
                );
            }
        }
        tracing::info!(source = %self.config.name, "change source stopped");
    }

    async fn call_describe(&self, describe: &Callback) -> Option<String> {
        let answer: Result<Value, _> = self
            .ctx
            .script
            .call(describe, vec![Arg::Handle(self.config.this.clone())])
            .await;
        match answer {
            Ok(Value::String(text)) => Some(text),
            Ok(other) => {
                tracing::warn!(source = %self.config.name, "describe returned {other}, not a string");
                None
            }
            Err(e) => {
                tracing::warn!(source = %self.config.name, "describe failed: {e}");
                None
            }
        }
    }

    async fn run_due_timers(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.timers = later;
        for (_, function) in due {
            if self.stop.is_cancelled() {
                return;
            }
            self.run_function(
                "callLater function",
                &function,
                Vec::new(),
                Some(self.stop.clone()),
            )
            .await;
        }
    }

    /// Hands a request to `handleRequest(self, request)` and answers with what it returns:
    /// nil (202), a string (200, as text), or `{status=, headers=, body=}` (a table body is
    /// sent as JSON).
    async fn answer_request(&mut self, request: SourceRequest) {
        let Some(handler) = self.config.handle_request.clone() else {
            let _ = request.reply.send(json_response(
                404,
                json!({"error": format!("change source '{}' takes no requests (it has no handleRequest)", self.config.name)}),
            ));
            return;
        };
        let argument = json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "body": request.body,
        });
        let ran = self
            .run_function(
                "handleRequest",
                &handler,
                vec![Arg::Json(argument)],
                Some(self.stop.clone()),
            )
            .await;
        let response = match ran {
            Ran::Returned(Value::Null) => json_response(202, json!({})),
            Ran::Returned(Value::String(text)) => SourceResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                body: text,
            },
            Ran::Returned(Value::Object(answer)) => response_of(answer),
            Ran::Returned(other) => {
                tracing::warn!(source = %self.config.name, "handleRequest returned {other}, not nil, a string or a table");
                json_response(
                    500,
                    json!({"error": "the change source answered something unexpected"}),
                )
            }
            Ran::Failed => json_response(
                500,
                json!({"error": "the change source failed; the master's log says why"}),
            ),
            Ran::Stopped => json_response(503, json!({"error": "the change source is stopping"})),
        };
        let _ = request.reply.send(response);
    }

    /// Runs one of the source's functions with `self` and `args` to its end, carrying out
    /// what it asks for; a failure is logged with the function's place and the line that
    /// failed. `stop` abandons it where it is, at once or, if it has stored something,
    /// after `FINISH_WAIT`.
    async fn run_function(
        &mut self,
        what: &str,
        function: &Callback,
        args: Vec<Arg>,
        stop: Option<CancellationToken>,
    ) -> Ran {
        let stored = AtomicBool::new(false);
        let mut cancel = std::pin::pin!(async {
            match &stop {
                Some(stop) => stop.cancelled().await,
                None => std::future::pending().await,
            }
            if stored.load(Ordering::Relaxed) {
                tokio::time::sleep(FINISH_WAIT).await;
            }
        });
        let mut all = vec![Arg::Handle(self.config.this.clone())];
        all.extend(args);
        let mut session = self.ctx.script.session(function, all);
        let mut reply = None;
        loop {
            let step = tokio::select! {
                step = session.step(reply.take()) => step,
                () = &mut cancel => return Ran::Stopped,
            };
            match step {
                Ok(Step::Done(value)) => return Ran::Returned(value),
                Ok(Step::Asks(request)) => {
                    if matches!(request, Request::AddChange(_) | Request::SetState(..)) {
                        stored.store(true, Ordering::Relaxed);
                    }
                    reply = Some(tokio::select! {
                        answer = self.carry_out(request) => answer,
                        () = &mut cancel => return Ran::Stopped,
                    });
                }
                Err(error) => {
                    tracing::warn!(source = %self.config.name, "{what} failed: {error}");
                    return Ran::Failed;
                }
            }
        }
    }

    async fn carry_out(&mut self, request: Request) -> Reply {
        match request {
            Request::Process {
                command,
                workdir,
                env,
                timeout,
            } => run_process(&self.ctx, command, workdir, env, timeout).await,
            Request::Http {
                url,
                method,
                headers,
                body,
                timeout,
            } => http_request(url, method, headers, body, timeout).await,
            Request::AddChange(change) => {
                let spec = change_of(change)?.into_spec(None);
                let ctx = self.ctx.clone();
                // Spawned, so that a change being stored is stored even if the source stops.
                let stored = tokio::spawn(async move { super::submit(&ctx, spec).await });
                match stored.await {
                    Ok(Ok(id)) => Ok(json!(id)),
                    Ok(Err(e)) => Err(format!("addChange: {e:#}")),
                    Err(e) => Err(format!("addChange: {e}")),
                }
            }
            Request::GetState(key) => self
                .ctx
                .db
                .get_state(&self.state_object, &key)
                .await
                .map(Option::unwrap_or_default)
                .map_err(|e| format!("getState('{key}'): {e}")),
            Request::SetState(key, value) => {
                let db = self.ctx.db.clone();
                let object = self.state_object.clone();
                let stored = tokio::spawn(async move {
                    db.set_state(&object, &key, &value)
                        .await
                        .map_err(|e| format!("setState('{key}'): {e}"))
                });
                match stored.await {
                    Ok(result) => result.map(|()| Value::Null),
                    Err(e) => Err(format!("setState: {e}")),
                }
            }
            Request::CallLater(delay, function) => {
                self.timers.push((Instant::now() + delay, function));
                Ok(Value::Null)
            }
        }
    }
}

/// The `object_state` name a Lua source's state is kept under.
pub fn state_object(name: &str) -> String {
    format!("LuaChangeSource:{name}")
}

fn random_delay(timing: &PollTiming) -> Duration {
    let (min, max) = (timing.random_delay_min, timing.random_delay_max);
    Duration::from_secs(if max > min {
        fastrand::u64(min..=max)
    } else {
        min
    })
}

fn json_response(status: u16, body: Value) -> SourceResponse {
    SourceResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

/// `{status=, headers=, body=}`; a body that is not a string goes as JSON.
fn response_of(mut answer: serde_json::Map<String, Value>) -> SourceResponse {
    let status = answer
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s))
        .unwrap_or(200);
    let mut headers: Vec<(String, String)> = match answer.remove("headers") {
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k.to_lowercase(), value)
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = match answer.remove("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text,
        Some(data) => {
            if !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".into(), "application/json".into()));
            }
            data.to_string()
        }
    };
    SourceResponse {
        status,
        headers,
        body,
    }
}

/// `self:addChange{...}`'s table as the master's change: the fields of `sendchange`
/// (`author`, `when_timestamp` and `src` included); an unknown field is an error.
fn change_of(mut change: Value) -> Result<ChangeMessage, String> {
    // An empty Lua table reads as an object; `files={}` is a list.
    if let Some(files) = change.get_mut("files") {
        if files.as_object().is_some_and(|o| o.is_empty()) {
            *files = json!([]);
        }
    }
    serde_json::from_value(change).map_err(|e| format!("addChange: {e}"))
}

async fn run_process(
    ctx: &Context,
    command: Vec<String>,
    workdir: Option<String>,
    env: BTreeMap<String, String>,
    timeout: Duration,
) -> Reply {
    let shown = command.join(" ");
    let dir = match workdir {
        Some(dir) => ctx.basedir.join(dir),
        None => ctx.basedir.clone(),
    };
    let child = Command::new(&command[0])
        .args(&command[1..])
        .current_dir(&dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "util.runProcess: cannot run '{shown}' in {}: {e}",
                dir.display()
            )
        })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| format!("util.runProcess: '{shown}': {e}"))?,
        Err(_) => {
            return Err(format!(
                "util.runProcess: '{shown}' timed out after {timeout:?}"
            ))
        }
    };
    let text =
        |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned();
    Ok(json!({
        // A process killed by a signal has no code; Buildbot reports -1.
        "rc": output.status.code().unwrap_or(-1),
        "stdout": text(&output.stdout),
        "stderr": text(&output.stderr),
    }))
}

/// One client for every Lua source: HTTPS trusts what the status targets trust.
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("moonbot/", env!("CARGO_PKG_VERSION")));
            if let Ok(tls) = crate::runtime::tls::tls_config() {
                builder = builder.use_preconfigured_tls((*tls).clone());
            }
            builder
                .build()
                .map_err(|e| format!("cannot set up an HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

async fn http_request(
    url: String,
    method: String,
    headers: BTreeMap<String, String>,
    body: Option<String>,
    timeout: Duration,
) -> Reply {
    let failed = |e: &dyn std::fmt::Display| format!("util.httpRequest: {method} {url}: {e}");
    let method_value = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| failed(&e))?;
    let mut request = client()
        .map_err(|e| failed(&e))?
        .request(method_value, &url)
        .timeout(timeout);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| "no answer")
        .map_err(|e| failed(&format!("{e:#}")))?;
    let status = response.status().as_u16();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = response.bytes().await.map_err(|e| failed(&e))?;
    Ok(json!({
        "status": status,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}
