//! Requests to poll change sources now (the `poller` change hook): the master, which holds
//! the running sources, answers them.

use tokio::sync::{mpsc, oneshot};

/// Which sources to poll now.
pub struct PollRequest {
    /// The sources asked for by name; `None`, every polling source.
    pub names: Option<Vec<String>>,
    /// The only sources that may be polled; `None`, any.
    pub allowed: Option<Vec<String>>,
    /// The names of the sources told to poll, or why none was.
    pub reply: oneshot::Sender<Result<Vec<String>, String>>,
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Polls {
    sender: mpsc::Sender<PollRequest>,
}

impl Polls {
    pub fn channel() -> (Polls, mpsc::Receiver<PollRequest>) {
        let (sender, receiver) = mpsc::channel(16);
        (Polls { sender }, receiver)
    }

    /// Tells the sources `names` (all polling sources when `None`), within `allowed`, to
    /// poll now; answers their names, or why it could not (an unknown or refused name).
    pub async fn poll_now(
        &self,
        names: Option<Vec<String>>,
        allowed: Option<Vec<String>>,
    ) -> Result<Vec<String>, String> {
        let (reply, answer) = oneshot::channel();
        let stopped = || "the master is shutting down".to_string();
        self.sender
            .send(PollRequest {
                names,
                allowed,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}
