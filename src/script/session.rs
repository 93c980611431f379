//! Sessions: a Lua function that runs across several host jobs because it waits on the
//! outside world in between (a change source's `poll` running `git ls-remote`, fetching a
//! feed, storing a change). The function runs in a coroutine of its own; `lua/sources.lua`
//! yields it with a [`Request`], the host hands the request to the caller and keeps the
//! coroutine, and the caller resumes it with the [`Reply`] once it has one. Meanwhile the
//! host runs other jobs, so a slow peer delays nobody.
//!
//! The function's time limit counts its time in Lua across all its jobs, not the waits:
//! those have timeouts of their own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mlua::{Lua, LuaSerdeExt, MultiValue, RegistryKey, Table, Thread, ThreadStatus, Value};

use super::deadline::Deadline;
use super::host::{json_to_lua, timed_out, Arg, FromScript, ScriptError, ScriptErrorKind};
use super::host::{ScriptHost, Vm};
use super::Callback;
use crate::config::kwargs::describe;
use crate::config::{define, Namespaces};

/// `lua/sources.lua` as bytecode (build.rs), which names itself `buildbot/sources.lua`.
const SOURCES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sources.luac"));

/// The longest a process or a request may take when the caller names no timeout.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// What a suspended function asks for.
#[derive(Debug)]
pub enum Request {
    /// `util.runProcess{"git", "ls-remote", url, timeout=30, workdir=..., env={...}}`.
    Process {
        command: Vec<String>,
        /// Relative to the master's base directory.
        workdir: Option<String>,
        env: BTreeMap<String, String>,
        timeout: Duration,
    },
    /// `util.httpRequest{url=..., method="GET", headers={...}, body=..., timeout=30}`.
    Http {
        url: String,
        method: String,
        headers: BTreeMap<String, String>,
        body: Option<String>,
        timeout: Duration,
    },
    /// `self:addChange{...}`, the fields as given.
    AddChange(serde_json::Value),
    GetState(String),
    SetState(String, serde_json::Value),
    /// `self:callLater(seconds, fn)`.
    CallLater(Duration, Callback),
}

/// The answer to a [`Request`]: a value for the function, or a message it raises at the line
/// that asked.
pub type Reply = Result<serde_json::Value, String>;

/// Where a session stands after a job.
#[derive(Debug)]
pub enum Step {
    /// The function returned this (its first value).
    Done(serde_json::Value),
    /// The function waits for the answer to this.
    Asks(Request),
}

/// What `lua/sources.lua` gave back, kept in the VM's app data.
struct Kit {
    token: RegistryKey,
    sessions: RegistryKey,
    make_self: RegistryKey,
}

/// Runs `lua/sources.lua`: `util.runProcess`, `util.httpRequest`, and what a change source's
/// `self` is made of. Also `util.jsonDecode` and `util.jsonEncode`, which pollers of feeds need.
pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    let (token, sessions, make_self): (Table, Table, mlua::Function) = lua
        .load(SOURCES)
        .set_mode(mlua::ChunkMode::Binary)
        .call(ns.util.clone())?;
    lua.set_app_data(Kit {
        token: lua.create_registry_value(token)?,
        sessions: lua.create_registry_value(sessions)?,
        make_self: lua.create_registry_value(make_self)?,
    });
    define(
        &ns.util,
        "jsonDecode",
        lua.create_function(|lua, text: mlua::String| {
            let value: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("util.jsonDecode: {e}")))?;
            json_to_lua(lua, &value)
        })?,
    )?;
    define(
        &ns.util,
        "jsonEncode",
        lua.create_function(|lua, value: Value| {
            let value: serde_json::Value = lua
                .from_value(value)
                .map_err(|e| mlua::Error::runtime(format!("util.jsonEncode: {e}")))?;
            Ok(value.to_string())
        })?,
    )
}

/// A change source's `self` over the table it was declared with.
pub fn make_self(lua: &Lua, fields: Table) -> mlua::Result<Value> {
    let kit = lua
        .app_data_ref::<Kit>()
        .ok_or_else(|| mlua::Error::runtime("lua/sources.lua was not loaded"))?;
    let make: mlua::Function = lua.registry_value(&kit.make_self)?;
    make.call(fields)
}

/// A session's coroutine while it waits, on the host thread.
pub(super) struct Suspended {
    /// The VM the coroutine belongs to (perhaps one a reconfig replaced).
    lua: Lua,
    thread: Thread,
    /// The function, for messages; it also keeps its VM counted as in use.
    callback: Callback,
    /// Time in Lua left to the function.
    left: Duration,
}

/// What a session's coroutine is resumed with.
enum Resume {
    /// The function's arguments, the first time.
    Start(MultiValue),
    /// The answer to its last request.
    Answer(Reply),
}

/// A function running as a session. Dropping it ends the session: the coroutine is
/// discarded at the host's next job.
pub struct Session {
    host: ScriptHost,
    id: u64,
    /// The function and its arguments, until the first step.
    start: Option<(Callback, Vec<Arg>)>,
    /// Whether the host may hold the coroutine.
    open: bool,
}

impl ScriptHost {
    /// Prepares `callback` with `args` as a session; it starts at the first
    /// [`Session::step`].
    pub fn session(&self, callback: &Callback, args: Vec<Arg>) -> Session {
        Session {
            host: self.clone(),
            id: self.next_session_id(),
            start: Some((callback.clone(), args)),
            open: false,
        }
    }
}

impl Session {
    /// Runs the function (with the reply to its last request; `None` the first time) until
    /// it asks for something else or ends.
    pub async fn step(&mut self, reply: Option<Reply>) -> Result<Step, ScriptError> {
        let id = self.id;
        let answer = match (self.start.take(), reply) {
            (Some((callback, args)), _) => {
                let location = callback.location().clone();
                self.open = true;
                self.host
                    .run_on_vm(Some(location), move |vm| {
                        let args = vm.start_session(id, callback, args)?;
                        vm.step_session(id, Resume::Start(args))
                    })
                    .await
            }
            (None, reply) => {
                let reply = reply.unwrap_or(Ok(serde_json::Value::Null));
                self.host
                    .run_on_vm(None, move |vm| vm.step_session(id, Resume::Answer(reply)))
                    .await
            }
        };
        if !matches!(answer, Ok(Step::Asks(_))) {
            self.open = false;
        }
        answer
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            let id = self.id;
            drop(self.host.run_on_vm(None, move |vm| {
                vm.sessions.remove(&id);
                Ok(())
            }));
        }
    }
}

impl Vm {
    /// Makes the session's coroutine; returns the arguments of its first resume.
    fn start_session(
        &mut self,
        id: u64,
        callback: Callback,
        args: Vec<Arg>,
    ) -> Result<MultiValue, ScriptError> {
        let location = callback.location().clone();
        let lua = self.lua_of(&callback).clone();
        let failed = |e: mlua::Error| {
            ScriptError::new(
                ScriptErrorKind::Internal,
                Some(&location),
                format!("cannot start the function: {e}"),
            )
        };
        let function = callback.function(&lua).map_err(failed)?;
        let thread = lua.create_thread(function).map_err(failed)?;
        let kit = lua
            .app_data_ref::<Kit>()
            .ok_or_else(|| failed(mlua::Error::runtime("lua/sources.lua was not loaded")))?;
        let sessions: Table = lua.registry_value(&kit.sessions).map_err(failed)?;
        sessions.raw_set(thread.clone(), true).map_err(failed)?;
        drop(kit);
        let args = args
            .into_iter()
            .map(|arg| arg.into_lua(&lua))
            .collect::<mlua::Result<Vec<Value>>>()
            .map_err(failed)?;
        self.sessions.insert(
            id,
            Suspended {
                lua,
                thread,
                callback,
                left: self.limits.call_timeout,
            },
        );
        Ok(MultiValue::from_vec(args))
    }

    /// Runs the session's coroutine until it asks for something or ends. A request that
    /// cannot be made (a bad argument) is answered at once with an error it can catch.
    fn step_session(&mut self, id: u64, resume: Resume) -> Result<Step, ScriptError> {
        let Some(mut session) = self.sessions.remove(&id) else {
            return Err(ScriptError::new(
                ScriptErrorKind::Internal,
                None,
                "the function could not be started",
            ));
        };
        let location = session.callback.location().clone();
        let lua = session.lua.clone();
        let mut args = match resume {
            Resume::Start(args) => args,
            Resume::Answer(reply) => reply_to_lua(&lua, reply).map_err(|e| {
                ScriptError::new(ScriptErrorKind::Internal, Some(&location), e.to_string())
            })?,
        };
        loop {
            let deadline = Deadline::remaining(session.left, self.limits.call_timeout);
            let started = Instant::now();
            let resumed = session.thread.resume::<MultiValue>(args);
            session.left = session.left.saturating_sub(started.elapsed());
            if let Some(timeout) = timed_out(&deadline, Some(&location)) {
                return Err(timeout);
            }
            let values = resumed.map_err(|e| self.error(e, Some(&location), &deadline))?;
            if session.thread.status() == ThreadStatus::Finished {
                let first = values.into_iter().next().unwrap_or(Value::Nil);
                return serde_json::Value::from_script(&lua, first)
                    .map(Step::Done)
                    .map_err(|what| {
                        ScriptError::new(ScriptErrorKind::BadReturn, Some(&location), what)
                    });
            }
            match read_request(&lua, values) {
                Ok(Some(request)) => {
                    self.sessions.insert(id, session);
                    return Ok(Step::Asks(request));
                }
                Ok(None) => {
                    return Err(ScriptError::new(
                        ScriptErrorKind::Failed,
                        Some(&location),
                        "yielded outside a coroutine of its own",
                    ))
                }
                Err(message) => {
                    args = reply_to_lua(&lua, Err(message))
                        .map_err(|e| self.error(e, Some(&location), &deadline))?;
                }
            }
        }
    }
}

fn reply_to_lua(lua: &Lua, reply: Reply) -> mlua::Result<MultiValue> {
    Ok(match reply {
        Ok(value) => MultiValue::from_vec(vec![Value::Boolean(true), json_to_lua(lua, &value)?]),
        Err(message) => MultiValue::from_vec(vec![
            Value::Boolean(false),
            Value::String(lua.create_string(message)?),
        ]),
    })
}

/// The request a coroutine yielded with, `None` when it yielded something else (its own
/// `coroutine.yield`), or why the request is malformed.
fn read_request(lua: &Lua, values: MultiValue) -> Result<Option<Request>, String> {
    let mut values = values.into_iter();
    let token = {
        let kit = lua
            .app_data_ref::<Kit>()
            .ok_or("lua/sources.lua was not loaded")?;
        lua.registry_value::<Table>(&kit.token)
            .map_err(|e| e.to_string())?
    };
    match values.next() {
        Some(Value::Table(t)) if t.to_pointer() == token.to_pointer() => {}
        _ => return Ok(None),
    }
    let kind = match values.next() {
        Some(Value::String(kind)) => kind.to_string_lossy(),
        _ => return Ok(None),
    };
    let args = values.next().unwrap_or(Value::Nil);
    let json = |value: Value| -> Result<serde_json::Value, String> {
        lua.from_value(value).map_err(|e| e.to_string())
    };
    let request = match kind.as_str() {
        "process" => process_request(args)?,
        "http" => http_request(args)?,
        "addChange" => match args {
            Value::Table(_) => Request::AddChange(json(args)?),
            other => return Err(format!("a change is a table, got {}", describe(&other))),
        },
        "getState" => Request::GetState(state_key(args)?),
        "setState" => {
            let Value::Table(args) = args else {
                return Err("setState takes a key and a value".into());
            };
            let key = state_key(args.get("key").map_err(|e| e.to_string())?)?;
            let value = json(args.get("value").map_err(|e| e.to_string())?)
                .map_err(|e| format!("the state '{key}' must be plain data: {e}"))?;
            Request::SetState(key, value)
        }
        "callLater" => {
            let Value::Table(args) = args else {
                return Err("callLater takes seconds and a function".into());
            };
            let seconds = seconds(args.get("seconds").map_err(|e| e.to_string())?, "seconds")?
                .ok_or("callLater: seconds must be a number")?;
            let function = match args.get("fn").map_err(|e| e.to_string())? {
                Value::Function(f) => Callback::new(lua, &f).map_err(|e| e.to_string())?,
                other => {
                    return Err(format!(
                        "callLater: the second argument must be a function, got {}",
                        describe(&other)
                    ))
                }
            };
            Request::CallLater(seconds, function)
        }
        other => return Err(format!("unknown request '{other}'")),
    };
    Ok(Some(request))
}

fn state_key(value: Value) -> Result<String, String> {
    match value {
        Value::String(key) => Ok(key.to_string_lossy()),
        other => Err(format!("a state key is a string, got {}", describe(&other))),
    }
}

/// A timeout or delay in seconds; `None` when not given.
fn seconds(value: Value, what: &str) -> Result<Option<Duration>, String> {
    let number = match value {
        Value::Nil => return Ok(None),
        Value::Integer(i) => i as f64,
        Value::Number(n) => n,
        other => {
            return Err(format!(
                "{what} must be a number of seconds, got {}",
                describe(&other)
            ))
        }
    };
    Duration::try_from_secs_f64(number)
        .map(Some)
        .map_err(|_| format!("{what} must be a number of seconds, not negative, got {number}"))
}

fn string_map(value: Value, what: &str) -> Result<BTreeMap<String, String>, String> {
    let table = match value {
        Value::Nil => return Ok(BTreeMap::new()),
        Value::Table(table) => table,
        other => {
            return Err(format!(
                "{what} must be a table of strings, got {}",
                describe(&other)
            ))
        }
    };
    let mut map = BTreeMap::new();
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| e.to_string())?;
        match (key, value) {
            (Value::String(k), Value::String(v)) => {
                map.insert(k.to_string_lossy(), v.to_string_lossy());
            }
            (Value::String(k), Value::Integer(v)) => {
                map.insert(k.to_string_lossy(), v.to_string());
            }
            (k, v) => {
                return Err(format!(
                    "{what} must be a table of strings, got {} = {}",
                    describe(&k),
                    describe(&v)
                ))
            }
        }
    }
    Ok(map)
}

fn process_request(args: Value) -> Result<Request, String> {
    let Value::Table(args) = args else {
        return Err(format!(
            "util.runProcess takes a table: {{\"command\", \"arg\", ..., timeout=seconds}}, got {}",
            describe(&args)
        ));
    };
    let mut command = Vec::new();
    for word in args.clone().sequence_values::<Value>() {
        match word.map_err(|e| e.to_string())? {
            Value::String(s) => command.push(s.to_string_lossy()),
            Value::Integer(i) => command.push(i.to_string()),
            other => {
                return Err(format!(
                    "util.runProcess: the command's words must be strings, got {}",
                    describe(&other)
                ))
            }
        }
    }
    if command.is_empty() {
        return Err("util.runProcess: no command given".into());
    }
    let get = |name: &str| args.get::<Value>(name).map_err(|e| e.to_string());
    let workdir = match get("workdir")? {
        Value::Nil => None,
        Value::String(s) => Some(s.to_string_lossy()),
        other => {
            return Err(format!(
                "util.runProcess: workdir must be a string, got {}",
                describe(&other)
            ))
        }
    };
    Ok(Request::Process {
        command,
        workdir,
        env: string_map(get("env")?, "util.runProcess: env")?,
        timeout: seconds(get("timeout")?, "util.runProcess: timeout")?.unwrap_or(DEFAULT_WAIT),
    })
}

fn http_request(args: Value) -> Result<Request, String> {
    let args = match args {
        Value::Table(args) => args,
        other => {
            return Err(format!(
                "util.httpRequest takes a table: {{url=..., method=..., headers=..., body=..., timeout=...}}, got {}",
                describe(&other)
            ))
        }
    };
    let get = |name: &str| args.get::<Value>(name).map_err(|e| e.to_string());
    let text = |name: &str| -> Result<Option<String>, String> {
        match get(name)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_string_lossy())),
            other => Err(format!(
                "util.httpRequest: {name} must be a string, got {}",
                describe(&other)
            )),
        }
    };
    Ok(Request::Http {
        url: text("url")?.ok_or("util.httpRequest: no url given")?,
        method: text("method")?
            .unwrap_or_else(|| "GET".into())
            .to_uppercase(),
        headers: string_map(get("headers")?, "util.httpRequest: headers")?,
        body: text("body")?,
        timeout: seconds(get("timeout")?, "util.httpRequest: timeout")?.unwrap_or(DEFAULT_WAIT),
    })
}
