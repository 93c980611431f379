//! `status.StatusPush`, which hands batches of status events to a Lua callback, and
//! `status.HttpStatusPush`, which posts them as JSON to a URL.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue};

use super::shared::{is_http_url, read_name};
use super::StatusTarget;
use crate::config::kwargs::constructor;
use crate::config::{define, Kwargs, Location, Namespaces};
use crate::script::Callback;

/// The queueing options both pushes share.
#[derive(Clone, Debug, PartialEq)]
pub struct PushOptions {
    /// 0.8's directory for a queue that survives restarts. The queue here always lives in
    /// the master's storage, which does that whether or not it is given.
    pub path: Option<String>,
    /// Leave empty and null values out of the events.
    pub filter: bool,
    /// Seconds events are gathered before a push.
    pub buffer_delay: f64,
    /// Seconds before retrying a failed push.
    pub retry_delay: f64,
    /// Event names never pushed.
    pub black_list: Vec<String>,
    /// Event names pushed, if given: no others.
    pub white_list: Option<Vec<String>>,
    /// 0.8's bounds of its memory queue and of its disk queue. The queue here is storage,
    /// so together they bound the events waiting; beyond, the oldest are dropped.
    pub max_memory_items: Option<usize>,
    pub max_disk_items: Option<usize>,
}

impl PushOptions {
    fn read(kw: &mut Kwargs) -> PushOptions {
        PushOptions {
            path: kw.optional("path"),
            filter: kw.optional_or("filter", true),
            buffer_delay: read_delay(kw, "bufferDelay", 1.0),
            retry_delay: read_delay(kw, "retryDelay", 5.0),
            black_list: kw.optional("blackList").unwrap_or_default(),
            white_list: kw.optional("whiteList"),
            max_memory_items: kw.optional("maxMemoryItems"),
            max_disk_items: kw.optional("maxDiskItems"),
        }
    }

    /// How many events may wait at most; `None`, as many as storage holds.
    pub fn queue_limit(&self) -> Option<usize> {
        match (self.max_memory_items, self.max_disk_items) {
            (None, None) => None,
            (memory, disk) => Some(memory.unwrap_or(0) + disk.unwrap_or(0)),
        }
    }
}

fn read_delay(kw: &mut Kwargs, name: &str, default: f64) -> f64 {
    let delay = kw.optional_or(name, default);
    if delay < 0.0 {
        kw.error(format!("option '{name}' must not be negative, got {delay}"));
    }
    delay
}

/// `status.StatusPush{serverPushCb=fn, ...}`.
#[derive(Clone, Debug)]
pub struct StatusPushConfig {
    pub name: Option<String>,
    /// Called with the push object (`self.queue:popChunk()`, `self:queueNextServerPush()`).
    pub server_push_cb: Callback,
    pub push: PushOptions,
    pub location: Location,
}

/// What HttpStatusPush posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpPayload {
    /// Buildbot 0.8's events, chunked into a `packets` form field (the default).
    Events,
    /// Buildbot 4's: the build as the REST API gives it, with its properties, as a JSON
    /// body, when it starts and when it finishes.
    Build,
}

/// `status.HttpStatusPush{serverUrl=..., ...}`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpStatusPushConfig {
    pub name: Option<String>,
    pub server_url: String,
    /// `payload='events'` or `'build'`.
    pub payload: HttpPayload,
    /// Log every request and response.
    pub debug: bool,
    /// Events per request at most.
    pub chunk_size: usize,
    /// Bytes per request at most.
    pub max_http_request_size: usize,
    /// More form fields posted with every request.
    pub extra_post_params: BTreeMap<String, String>,
    /// Basic auth, when `user` is given.
    pub user: Option<String>,
    pub password: Option<String>,
    /// More HTTP headers sent with every request.
    pub headers: BTreeMap<String, String>,
    pub push: PushOptions,
    pub location: Location,
}

pub const STATUS_PUSH_OPTIONS: &[&str] = &[
    "serverPushCb",
    "queue",
    "path",
    "filter",
    "bufferDelay",
    "retryDelay",
    "blackList",
    "whiteList",
    "maxMemoryItems",
    "maxDiskItems",
    "name",
];
pub const HTTP_STATUS_PUSH_OPTIONS: &[&str] = &[
    "serverUrl",
    "payload",
    "debug",
    "maxMemoryItems",
    "maxDiskItems",
    "chunkSize",
    "maxHttpRequestSize",
    "extra_post_params",
    "user",
    "password",
    "headers",
    "path",
    "filter",
    "bufferDelay",
    "retryDelay",
    "blackList",
    "whiteList",
    "name",
];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "StatusPush",
        constructor(lua, "status.StatusPush", parse_status_push)?,
    )?;
    define(
        &ns.status,
        "HttpStatusPush",
        constructor(lua, "status.HttpStatusPush", parse_http_status_push)?,
    )
}

fn parse_status_push(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(
        lua,
        "StatusPush",
        args,
        &["serverPushCb"],
        STATUS_PUSH_OPTIONS,
    );
    let name = read_name(&mut kw);
    let server_push_cb = kw.required_opt("serverPushCb");
    kw.refuse(
        "queue",
        "takes a Python queue object, which a Lua config cannot provide \
         (the queue is built in, kept in the master's storage)",
    );
    let push = PushOptions::read(&mut kw);
    let location = kw.location();
    let ok = kw.finish();
    let server_push_cb = server_push_cb?;
    ok.then(|| {
        StatusTarget::StatusPush(Box::new(StatusPushConfig {
            name,
            server_push_cb,
            push,
            location,
        }))
    })
}

fn parse_http_status_push(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(
        lua,
        "HttpStatusPush",
        args,
        &["serverUrl"],
        HTTP_STATUS_PUSH_OPTIONS,
    );
    let name = read_name(&mut kw);
    let server_url: String = kw.required("serverUrl");
    if !server_url.is_empty() && !is_http_url(&server_url) {
        kw.error(format!(
            "option 'serverUrl' must be an http:// or https:// URL, got '{server_url}'"
        ));
    }
    let payload = match kw.optional_or("payload", "events".to_string()).as_str() {
        "events" => HttpPayload::Events,
        "build" => HttpPayload::Build,
        other => {
            kw.error(format!(
                "option 'payload' must be 'events' (0.8's packets) or 'build' (Buildbot 4's \
                 build as JSON), got '{other}'"
            ));
            HttpPayload::Events
        }
    };
    if payload == HttpPayload::Build {
        for option in [
            "chunkSize",
            "maxHttpRequestSize",
            "extra_post_params",
            "filter",
        ] {
            if kw.has(option) {
                kw.error(format!(
                    "option '{option}' shapes 0.8's packets; it does not go with payload='build'"
                ));
            }
        }
    }
    let config = HttpStatusPushConfig {
        name,
        server_url,
        payload,
        debug: kw.optional_or("debug", false),
        chunk_size: kw.optional_or("chunkSize", 200),
        max_http_request_size: kw.optional_or("maxHttpRequestSize", 1 << 20),
        extra_post_params: kw.optional("extra_post_params").unwrap_or_default(),
        user: kw.optional("user"),
        password: kw.optional("password"),
        headers: kw.optional("headers").unwrap_or_default(),
        push: PushOptions::read(&mut kw),
        location: kw.location(),
    };
    for (option, value) in [
        ("chunkSize", config.chunk_size),
        ("maxHttpRequestSize", config.max_http_request_size),
    ] {
        if value == 0 {
            kw.error(format!("option '{option}' must be at least 1"));
        }
    }
    kw.finish()
        .then(|| StatusTarget::HttpStatusPush(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, target};

    fn defaults() -> PushOptions {
        PushOptions {
            path: None,
            filter: true,
            buffer_delay: 1.0,
            retry_delay: 5.0,
            black_list: Vec::new(),
            white_list: None,
            max_memory_items: None,
            max_disk_items: None,
        }
    }

    fn status_push(snippet: &str) -> StatusPushConfig {
        match target(snippet) {
            StatusTarget::StatusPush(config) => *config,
            other => panic!("expected a StatusPush, got {other:?}"),
        }
    }

    fn http_push(snippet: &str) -> HttpStatusPushConfig {
        match target(snippet) {
            StatusTarget::HttpStatusPush(config) => *config,
            other => panic!("expected an HttpStatusPush, got {other:?}"),
        }
    }

    #[test]
    fn status_push_defaults_and_every_option() {
        let config = status_push("c['status'] = {status.StatusPush(function(self) end)}");
        assert_eq!(config.push, defaults());
        assert_eq!(config.server_push_cb.location().line, 1);
        let config = status_push(
            "c['status'] = {status.StatusPush{serverPushCb=function(self) end, name='push',
               path='events', filter=false, bufferDelay=0.5, retryDelay=10,
               blackList={'logChunk', 'stepETAUpdate'}}}",
        );
        assert_eq!(config.name.as_deref(), Some("push"));
        assert_eq!(
            config.push,
            PushOptions {
                path: Some("events".into()),
                filter: false,
                buffer_delay: 0.5,
                retry_delay: 10.0,
                black_list: vec!["logChunk".into(), "stepETAUpdate".into()],
                white_list: None,
                max_memory_items: None,
                max_disk_items: None,
            }
        );
    }

    #[test]
    fn http_status_push_defaults_and_every_option() {
        let location = Location {
            file: "master.cfg.lua".into(),
            line: 1,
        };
        assert_eq!(
            http_push("c['status'] = {status.HttpStatusPush('http://example.com/submit')}"),
            HttpStatusPushConfig {
                name: Some("HttpStatusPush".into()),
                server_url: "http://example.com/submit".into(),
                payload: HttpPayload::Events,
                debug: false,
                chunk_size: 200,
                max_http_request_size: 1 << 20,
                extra_post_params: BTreeMap::new(),
                user: None,
                password: None,
                headers: BTreeMap::new(),
                push: defaults(),
                location: location.clone(),
            }
        );
        assert_eq!(
            http_push(
                "c['status'] = {status.HttpStatusPush{serverUrl='https://example.com/submit',
                   debug=true, maxMemoryItems=1000, maxDiskItems=50000, chunkSize=20,
                   maxHttpRequestSize=4096, extra_post_params={secret='s3'},
                   path='http_push', filter=false, bufferDelay=2, retryDelay=30,
                   blackList={'logChunk'}, whiteList={'buildFinished'}, user='u',
                   password='p', headers={['X-Team']='ci'}, name='dashboard'}}"
            ),
            HttpStatusPushConfig {
                name: Some("dashboard".into()),
                server_url: "https://example.com/submit".into(),
                payload: HttpPayload::Events,
                debug: true,
                chunk_size: 20,
                max_http_request_size: 4096,
                extra_post_params: [("secret".to_string(), "s3".to_string())].into(),
                user: Some("u".into()),
                password: Some("p".into()),
                headers: [("X-Team".to_string(), "ci".to_string())].into(),
                push: PushOptions {
                    path: Some("http_push".into()),
                    filter: false,
                    buffer_delay: 2.0,
                    retry_delay: 30.0,
                    black_list: vec!["logChunk".into()],
                    white_list: Some(vec!["buildFinished".into()]),
                    max_memory_items: Some(1000),
                    max_disk_items: Some(50000),
                },
                location,
            }
        );
    }

    #[test]
    fn buildbot_4_payload_is_chosen_by_name_and_refuses_the_packet_options() {
        let config = http_push(
            "c['status'] = {status.HttpStatusPush{serverUrl='http://x', payload='build'}}",
        );
        assert_eq!(config.payload, HttpPayload::Build);
        assert_eq!(
            errors("status.HttpStatusPush{serverUrl='http://x', payload='build', chunkSize=5}"),
            "master.cfg.lua:1: HttpStatusPush: option 'chunkSize' shapes 0.8's packets; it does not go with payload='build'"
        );
    }

    #[test]
    fn queue_bounds_add_up_as_0_8_memory_and_disk_queues_did() {
        let limit = |snippet: &str| http_push(snippet).push.queue_limit();
        assert_eq!(
            limit("c['status'] = {status.HttpStatusPush('http://x')}"),
            None
        );
        assert_eq!(
            limit("c['status'] = {status.HttpStatusPush{serverUrl='http://x', maxMemoryItems=5, maxDiskItems=0}}"),
            Some(5)
        );
        assert_eq!(
            limit("c['status'] = {status.HttpStatusPush{serverUrl='http://x', maxMemoryItems=5, maxDiskItems=20}}"),
            Some(25)
        );
        assert!(crate::config::status::testing::unimplemented(
            "c['status'] = {status.HttpStatusPush{serverUrl='http://x', maxMemoryItems=5,
               bufferDelay=2, retryDelay=1}, status.StatusPush{serverPushCb=print, maxDiskItems=3}}"
        )
        .is_empty());
    }

    #[test]
    fn the_spec_examples() {
        let config = status_push(
            "local function Process(self)
               print(tostring(self.queue:popChunk()))
               self:queueNextServerPush()
             end
             local sp = status.StatusPush{serverPushCb=Process, bufferDelay=0.5, retryDelay=5}
             c['status']:append(sp)",
        );
        assert_eq!(config.push.buffer_delay, 0.5);
        http_push(
            "local sp = status.HttpStatusPush{serverUrl='http://example.com/submit'}
             c['status']:append(sp)",
        );
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            ("status.StatusPush{filter=false}", "master.cfg.lua:1: StatusPush: missing required option 'serverPushCb'"),
            (
                "status.StatusPush{serverPushCb='Process'}",
                "master.cfg.lua:1: StatusPush: option 'serverPushCb' must be a function, got string 'Process'",
            ),
            (
                "status.StatusPush{serverPushCb=print, queue={}}",
                "master.cfg.lua:1: StatusPush: option 'queue' takes a Python queue object, which a Lua config cannot provide (the queue is built in, kept in the master's storage)",
            ),
            (
                "status.StatusPush{serverPushCb=print, bufferDelay=-1}",
                "master.cfg.lua:1: StatusPush: option 'bufferDelay' must not be negative, got -1",
            ),
            (
                "status.StatusPush{serverPushCb=print, blackList='logChunk'}",
                "master.cfg.lua:1: StatusPush: option 'blackList' must be a list of strings, got string 'logChunk'",
            ),
            ("status.HttpStatusPush{debug=true}", "master.cfg.lua:1: HttpStatusPush: missing required option 'serverUrl'"),
            (
                "status.HttpStatusPush('example.com/submit')",
                "master.cfg.lua:1: HttpStatusPush: option 'serverUrl' must be an http:// or https:// URL, got 'example.com/submit'",
            ),
            (
                "status.HttpStatusPush{serverUrl='http://x', payload='json'}",
                "master.cfg.lua:1: HttpStatusPush: option 'payload' must be 'events' (0.8's packets) or 'build' (Buildbot 4's build as JSON), got 'json'",
            ),
            (
                "status.HttpStatusPush{serverUrl='http://x', chunkSize=0}",
                "master.cfg.lua:1: HttpStatusPush: option 'chunkSize' must be at least 1",
            ),
            (
                "status.HttpStatusPush{serverUrl='http://x', retryDelay='5s'}",
                "master.cfg.lua:1: HttpStatusPush: option 'retryDelay' must be a number, got string '5s'",
            ),
            (
                "status.HttpStatusPush{serverUrl='http://x', queue={}}",
                "master.cfg.lua:1: HttpStatusPush: unknown option 'queue'",
            ),
            (
                "status.HttpStatusPush{serverUrl='http://x', extra_post_params={n=1}}",
                "master.cfg.lua:1: HttpStatusPush: option 'extra_post_params' entry 'n' must be a string, got number 1",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
