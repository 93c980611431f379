//! The web server's doors for change sources: a Lua `ChangeSource` cannot open a socket of
//! its own, so requests to `/change_source/NAME` on the WebStatus port are handed to the
//! running source of that name, which answers them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

/// One request to `/change_source/NAME[/PATH]`.
#[derive(Debug)]
pub struct SourceRequest {
    pub method: String,
    /// What follows `/change_source/NAME`, `/` at least.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Names in lowercase.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub reply: oneshot::Sender<SourceResponse>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SourceResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Each route's key and where its requests go, by source name.
type Routes = HashMap<String, (u64, mpsc::Sender<SourceRequest>)>;

/// The running sources that take requests, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct SourceEndpoints(Arc<Mutex<Routes>>);

impl SourceEndpoints {
    /// Routes `name` to `requests` from now on; returns the key [`SourceEndpoints::close`]
    /// takes, so that a source stopping after its successor started leaves the route alone.
    pub fn open(&self, name: &str, requests: mpsc::Sender<SourceRequest>) -> u64 {
        let key = fastrand::u64(..);
        self.lock().insert(name.to_string(), (key, requests));
        key
    }

    pub fn close(&self, name: &str, key: u64) {
        let mut routes = self.lock();
        if routes.get(name).is_some_and(|(open, _)| *open == key) {
            routes.remove(name);
        }
    }

    /// Where requests for `name` go, if a running source takes them.
    pub fn get(&self, name: &str) -> Option<mpsc::Sender<SourceRequest>> {
        self.lock().get(name).map(|(_, sender)| sender.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
