//! One attached worker's WebSocket: a writer task, a reader task that answers the worker's
//! requests and routes `update`/`complete` to the command they belong to, and requests to
//! the worker awaited by `seq_number`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, field, map};
use super::quick_ack::QuickAck;

/// Updates of one command in flight between the reader and the step.
const UPDATES_IN_FLIGHT: usize = 16;

/// What the worker reports about a running command.
#[derive(Debug)]
pub enum CommandEvent {
    /// `update`: `[key, value]` pairs (`stdout`, `stderr`, `header`, `log`, `rc`, ...).
    Update(Vec<(String, Value)>),
    /// `complete`, with the failure text when the command raised.
    Complete(Option<String>),
    /// A file-transfer request (`update_upload_file_write`, `update_read_file`, ...): the
    /// whole message, and where the result (or an exception's text) goes back to the worker.
    Transfer {
        op: String,
        message: Value,
        reply: oneshot::Sender<Result<Value, String>>,
    },
}

/// A request the worker answered with an exception, or a connection that closed first.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("the worker answered with an exception: {0}")]
    Exception(String),
    #[error("the worker's connection is lost")]
    Lost,
}

type Pending = oneshot::Sender<Result<Value, RemoteError>>;

struct Inner {
    name: String,
    /// Tells two connections of one worker apart.
    id: u64,
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Mutex<HashMap<u64, Pending>>,
    commands: Mutex<HashMap<String, mpsc::Sender<CommandEvent>>>,
    next_seq: AtomicI64,
    next_command: AtomicU64,
    closed: CancellationToken,
    /// `get_worker_info`'s answer, as JSON for the REST API.
    info: Mutex<serde_json::Value>,
}

/// A worker's live connection; cloning shares it.
#[derive(Clone)]
pub struct Connection(Arc<Inner>);

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

impl Connection {
    /// Starts the reader and writer tasks over an accepted WebSocket.
    pub fn start(name: String, socket: WebSocketStream<QuickAck>) -> Connection {
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();
        let connection = Connection(Arc::new(Inner {
            name,
            id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
            outgoing,
            pending: Mutex::default(),
            commands: Mutex::default(),
            next_seq: AtomicI64::new(1),
            next_command: AtomicU64::new(1),
            closed: CancellationToken::new(),
            info: Mutex::new(serde_json::Value::Null),
        }));
        let (mut sink, mut stream) = socket.split();
        let closed = connection.0.closed.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = closed.cancelled() => break,
                    message = to_send.recv() => match message {
                        Some(message) => if sink.send(message).await.is_err() { break },
                        None => break,
                    },
                }
            }
            let _ = sink.close().await;
            closed.cancel();
        });
        let reader = connection.clone();
        tokio::spawn(async move {
            let why = loop {
                tokio::select! {
                    _ = reader.0.closed.cancelled() => break "closed by the master".to_string(),
                    message = stream.next() => match message {
                        Some(Ok(Message::Binary(bytes))) => match protocol::decode(&bytes) {
                            Ok(message) => if let Err(why) = reader.dispatch(message).await { break why },
                            Err(why) => break format!("malformed message: {why}"),
                        },
                        Some(Ok(Message::Close(_))) | None => break "the worker closed the connection".into(),
                        Some(Ok(Message::Text(_))) => break "malformed message: a text frame".into(),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => break format!("connection error: {error}"),
                    },
                }
            };
            tracing::info!(worker = %reader.0.name, "worker connection closed: {why}");
            reader.close();
        });
        connection
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }

    pub fn info(&self) -> serde_json::Value {
        self.0
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves when the connection is gone.
    pub async fn closed(&self) {
        self.0.closed.cancelled().await
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.is_cancelled()
    }

    /// Ends the connection: every pending request and running command sees it lost.
    pub fn close(&self) {
        self.0.closed.cancel();
        self.0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .for_each(|(_, waiter)| {
                let _ = waiter.send(Err(RemoteError::Lost));
            });
        self.0
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Buildbot's handshake: the worker's info, then the output settings.
    pub async fn handshake(&self) -> Result<(), RemoteError> {
        let mut info = protocol::to_json(&self.request("get_worker_info", vec![]).await?);
        // As Buildbot: the worker's environment and command list are not shown.
        if let Some(fields) = info.as_object_mut() {
            fields.remove("environ");
            fields.remove("worker_commands");
        }
        *self.0.info.lock().unwrap_or_else(|e| e.into_inner()) = info;
        let settings = map(vec![
            (
                "newline_re",
                r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)".into(),
            ),
            ("max_line_length", 4096.into()),
            ("buffer_timeout", 5.into()),
            ("buffer_size", (64 * 1024).into()),
        ]);
        self.request("set_worker_settings", vec![("args", settings)])
            .await?;
        self.request("print", vec![("message", "attached".into())])
            .await?;
        Ok(())
    }

    /// Sends `keepalive` every `interval` until the connection closes; a worker that does
    /// not answer within the interval is taken as gone.
    pub async fn keep_alive(&self, interval: Duration) {
        loop {
            tokio::select! {
                _ = self.closed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let answer = tokio::time::timeout(interval, self.request("keepalive", vec![])).await;
            if !matches!(answer, Ok(Ok(_))) {
                tracing::warn!(worker = %self.0.name, "the worker did not answer a keepalive");
                self.close();
                return;
            }
        }
    }

    /// Sends a request and awaits its response.
    pub async fn request(
        &self,
        op: &str,
        mut fields: Vec<(&str, Value)>,
    ) -> Result<Value, RemoteError> {
        let seq = self.0.next_seq.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq as u64, answer);
        fields.push(("op", op.into()));
        fields.push(("seq_number", seq.into()));
        self.send(map(fields));
        if self.is_closed() {
            self.close();
        }
        answered.await.unwrap_or(Err(RemoteError::Lost))
    }

    fn send(&self, message: Value) {
        let _ = self
            .0
            .outgoing
            .send(Message::Binary(protocol::encode(&message).into()));
    }

    /// Starts `command_name` on the worker; its updates and completion arrive on the
    /// returned receiver, which ends when the connection is lost.
    pub async fn start_command(
        &self,
        command_name: &str,
        args: Value,
    ) -> Result<(String, mpsc::Receiver<CommandEvent>), RemoteError> {
        let command_id = self
            .0
            .next_command
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let (sender, events) = mpsc::channel(UPDATES_IN_FLIGHT);
        self.0
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(command_id.clone(), sender);
        let started = self
            .request(
                "start_command",
                vec![
                    ("command_id", command_id.as_str().into()),
                    ("command_name", command_name.into()),
                    ("args", args),
                ],
            )
            .await;
        if let Err(error) = started {
            self.forget(&command_id);
            return Err(error);
        }
        Ok((command_id, events))
    }

    pub fn forget(&self, command_id: &str) {
        self.0
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(command_id);
    }

    /// Asks the worker to shut itself down (`buildbot-worker` stops its process).
    pub async fn shutdown(&self) -> Result<(), RemoteError> {
        self.request("shutdown", vec![]).await.map(drop)
    }

    pub async fn interrupt(&self, command_id: &str, why: &str) -> Result<(), RemoteError> {
        self.request(
            "interrupt_command",
            vec![("command_id", command_id.into()), ("why", why.into())],
        )
        .await
        .map(drop)
    }

    fn respond(&self, seq: &Value, result: Result<Value, String>) {
        let mut fields = vec![("op", "response".into()), ("seq_number", seq.clone())];
        match result {
            Ok(value) => fields.push(("result", value)),
            Err(why) => {
                fields.push(("result", why.into()));
                fields.push(("is_exception", true.into()));
            }
        }
        self.send(map(fields));
    }

    fn command_sender(&self, command_id: Option<&str>) -> Option<mpsc::Sender<CommandEvent>> {
        self.0
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(command_id?)
            .cloned()
    }

    /// Handles one message from the worker; an error closes the connection.
    async fn dispatch(&self, message: Value) -> Result<(), String> {
        let op = field(&message, "op").and_then(Value::as_str).unwrap_or("");
        let seq = field(&message, "seq_number")
            .cloned()
            .ok_or_else(|| format!("malformed message: '{op}' without a seq_number"))?;
        if op == "response" {
            let seq = seq
                .as_u64()
                .ok_or("malformed message: a response's seq_number is not a number")?;
            let waiter = self
                .0
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&seq);
            let result = field(&message, "result").cloned().unwrap_or(Value::Nil);
            let answer = if field(&message, "is_exception").is_some() {
                Err(RemoteError::Exception(protocol::text(&result)))
            } else {
                Ok(result)
            };
            if let Some(waiter) = waiter {
                let _ = waiter.send(answer);
            }
            return Ok(());
        }
        let command_id = field(&message, "command_id").map(protocol::text);
        let event = match op {
            "update" => {
                let Some(Value::Array(pairs)) = field(&message, "args") else {
                    return Err("malformed message: an update without a list of args".into());
                };
                let mut updates = Vec::new();
                for pair in pairs {
                    match pair.as_array().map(Vec::as_slice) {
                        Some([key, value]) => updates.push((protocol::text(key), value.clone())),
                        _ => {
                            return Err(
                                "malformed message: an update that is not [key, value]".into()
                            )
                        }
                    }
                }
                Some(CommandEvent::Update(updates))
            }
            "complete" => Some(CommandEvent::Complete(
                field(&message, "args")
                    .filter(|failure| !failure.is_nil())
                    .map(protocol::text),
            )),
            op if op.starts_with("update_") => {
                let (reply, answer) = oneshot::channel();
                let connection = self.clone();
                let seq = seq.clone();
                // The answer comes from the step, so it is sent from a task of its own.
                tokio::spawn(async move {
                    let result = answer
                        .await
                        .unwrap_or_else(|_| Err("the transfer has ended".into()));
                    connection.respond(&seq, result);
                });
                let event = CommandEvent::Transfer {
                    op: op.to_string(),
                    message: message.clone(),
                    reply,
                };
                return match self.command_sender(command_id.as_deref()) {
                    Some(sender) => {
                        let _ = sender.send(event).await;
                        Ok(())
                    }
                    None => {
                        if let CommandEvent::Transfer { reply, .. } = event {
                            let _ = reply.send(Err("unknown command_id".into()));
                        }
                        Ok(())
                    }
                };
            }
            _ => None,
        };
        let Some(event) = event else {
            self.respond(
                &seq,
                Err(format!("Command {op} is not supported by the master")),
            );
            return Ok(());
        };
        let complete = matches!(event, CommandEvent::Complete(_));
        match self.command_sender(command_id.as_deref()) {
            Some(sender) => {
                // Waiting here holds back the worker's next frames: backpressure on a
                // command whose logs are written slower than it prints.
                let _ = sender.send(event).await;
                if complete {
                    self.forget(command_id.as_deref().unwrap_or_default());
                }
                self.respond(&seq, Ok(Value::Nil));
            }
            None => self.respond(&seq, Err("unknown command_id".into())),
        }
        Ok(())
    }
}
