//! Control requests to the running master (force a build, stop one, rebuild, cancel a
//! request): the REST API's JSON-RPC sends them, the engine answers.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

/// Why a control request was refused; `status` is the HTTP status the API answers with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub status: u16,
    pub message: String,
}

impl ControlError {
    pub fn bad_request(message: impl Into<String>) -> ControlError {
        ControlError {
            status: 400,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ControlError {
        ControlError {
            status: 404,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ControlError {
        ControlError {
            status: 503,
            message: message.into(),
        }
    }
}

/// A new buildset and its request id per builder id, as Buildbot's `force` and
/// `rebuild` answer `[bsid, {builderid: brid}]`.
pub type Submitted = (i64, BTreeMap<i64, i64>);

type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

/// Each worker of a pinged builder, and whether it answered.
pub type Pinged = Vec<(String, bool)>;

/// Which pending build requests a cancel is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingOf {
    Builder(i64),
    AllBuilders,
    /// Those whose sourcestamps hold this change (Buildbot 0.8's `stopChange`).
    Change(i64),
}

pub enum ControlRequest {
    /// `POST /api/v2/forceschedulers/NAME {"method": "force", "params": {...}}`; `params`
    /// holds `builderid` or `builderNames` and the scheduler's parameters by name.
    Force {
        scheduler: String,
        params: Map<String, Value>,
        reply: Reply<Submitted>,
    },
    StopBuild {
        buildid: i64,
        reason: String,
        reply: Reply<()>,
    },
    Rebuild {
        buildid: i64,
        reply: Reply<Submitted>,
    },
    CancelRequest {
        buildrequestid: i64,
        reason: String,
        reply: Reply<()>,
    },
    /// Stops every running build, or those of one builder; answers how many.
    StopBuilds {
        builderid: Option<i64>,
        reason: String,
        reply: Reply<usize>,
    },
    /// Cancels pending requests; answers how many.
    CancelRequests {
        which: PendingOf,
        reason: String,
        reply: Reply<usize>,
    },
    PauseWorker {
        worker: String,
        paused: bool,
        reply: Reply<()>,
    },
    /// The worker takes no more builds and shuts down when its running ones end.
    ShutDownWorker { worker: String, reply: Reply<()> },
    PingBuilder {
        builder: String,
        reply: Reply<Pinged>,
    },
    /// A clean shutdown (`Some(true)`: no new builds, the master stops once the running
    /// ones end), calling it off (`Some(false)`), or only asking; answers whether one is
    /// under way.
    CleanShutdown {
        set: Option<bool>,
        reply: Reply<bool>,
    },
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Control {
    sender: mpsc::Sender<ControlRequest>,
}

impl Control {
    pub fn channel() -> (Control, mpsc::Receiver<ControlRequest>) {
        let (sender, receiver) = mpsc::channel(64);
        (Control { sender }, receiver)
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(Reply<T>) -> ControlRequest,
    ) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ControlError::unavailable("the master is shutting down");
        self.sender
            .send(request(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn force(
        &self,
        scheduler: &str,
        params: Map<String, Value>,
    ) -> Result<Submitted, ControlError> {
        let scheduler = scheduler.to_string();
        self.ask(|reply| ControlRequest::Force {
            scheduler,
            params,
            reply,
        })
        .await
    }

    pub async fn stop_build(&self, buildid: i64, reason: String) -> Result<(), ControlError> {
        self.ask(|reply| ControlRequest::StopBuild {
            buildid,
            reason,
            reply,
        })
        .await
    }
    pub async fn rebuild(&self, buildid: i64) -> Result<Submitted, ControlError> {
        self.ask(|reply| ControlRequest::Rebuild { buildid, reply })
            .await
    }

    pub async fn cancel_request(
        &self,
        buildrequestid: i64,
        reason: String,
    ) -> Result<(), ControlError> {
        self.ask(|reply| ControlRequest::CancelRequest {
            buildrequestid,
            reason,
            reply,
        })
        .await
    }

    pub async fn stop_builds(
        &self,
        builderid: Option<i64>,
        reason: String,
    ) -> Result<usize, ControlError> {
        self.ask(|reply| ControlRequest::StopBuilds {
            builderid,
            reason,
            reply,
        })
        .await
    }

    pub async fn cancel_requests(
        &self,
        which: PendingOf,
        reason: String,
    ) -> Result<usize, ControlError> {
        self.ask(|reply| ControlRequest::CancelRequests {
            which,
            reason,
            reply,
        })
        .await
    }

    pub async fn pause_worker(&self, worker: String, paused: bool) -> Result<(), ControlError> {
        self.ask(|reply| ControlRequest::PauseWorker {
            worker,
            paused,
            reply,
        })
        .await
    }

    pub async fn shut_down_worker(&self, worker: String) -> Result<(), ControlError> {
        self.ask(|reply| ControlRequest::ShutDownWorker { worker, reply })
            .await
    }

    pub async fn ping_builder(&self, builder: String) -> Result<Pinged, ControlError> {
        self.ask(|reply| ControlRequest::PingBuilder { builder, reply })
            .await
    }

    /// Begins (`Some(true)`) or calls off (`Some(false)`) a clean shutdown, or (`None`)
    /// only asks; answers whether one is under way after the request.
    pub async fn clean_shutdown(&self, set: Option<bool>) -> Result<bool, ControlError> {
        self.ask(|reply| ControlRequest::CleanShutdown { set, reply })
            .await
    }
}
