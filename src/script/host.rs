//! The script host: one thread that owns the config's Lua VM and runs the user's callbacks
//! and Lua-backed renderables for the rest of the master.
//!
//! **Architecture invariant:** only the host thread touches the VM. Rust code on any thread
//! or task sends a job and awaits the reply ([`Pending`]); a callback gets snapshots
//! ([`Arg`]), never live state, and returns plain data.
//!
//! Every job runs under a deadline and the VM under a memory limit, so a runaway callback
//! ends in a [`ScriptError`] naming the callback's `file:line`, and the next call works.
//! The deadline is [`super::deadline`]'s count hook. Callbacks run in a coroutine: when the
//! deadline passes, the hook suspends it (which no `pcall` in the callback can catch) and the
//! host drops it. Where the code cannot be suspended (inside a C function such as
//! `table.sort`, or in a renderable, which runs on the main thread), the hook raises an
//! error, then again at every instruction, so that no `pcall` can keep the code going.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, MultiValue, ThreadStatus, Value};
use tokio::sync::oneshot;

use super::callback::VmToken;
use super::deadline::{install_hook, Deadline};
use super::messages::{describe_error_object, first_lua_frame, split_place};
use super::objects::{
    build_of, LuaBuild, LuaChange, LuaLog, LuaMaster, LuaProperties, LuaSourceStamp, LuaStatusPush,
    LuaStep, PushChunk,
};
use super::renderable::{lua_serialize_options, RenderData, RenderError, Renderable};
use super::session::Suspended;
use super::Callback;
use crate::config::kwargs::describe;
use crate::config::status::LuaHandle;
use crate::config::Location;
use crate::model::{BuildInfo, Change, MasterInfo, SourceStamp};

/// How long one job may run and how much memory the VM may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLimits {
    pub call_timeout: Duration,
    /// Bytes for the whole VM, the config's own data included; 0 for no limit.
    pub memory_limit: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            call_timeout: Duration::from_secs(5),
            memory_limit: 256 * 1024 * 1024,
        }
    }
}

/// One argument of a callback: plain data, or a status object over a snapshot.
#[derive(Clone, Debug)]
pub enum Arg {
    /// Strings, numbers, tables; JSON null becomes nil.
    Json(serde_json::Value),
    Build(Arc<BuildInfo>),
    /// Step `.1` of a build.
    Step(Arc<BuildInfo>, usize),
    /// Log `.2` of step `.1` of a build.
    Log(Arc<BuildInfo>, usize, usize),
    SourceStamp(Arc<SourceStamp>),
    Change(Arc<Change>),
    /// `master_status`.
    Master(Arc<MasterInfo>),
    /// A `Properties` object, as renderers receive.
    Properties(Arc<RenderData>),
    /// A value the config holds (a `lookup` object, passed as `self` to its method).
    Handle(LuaHandle),
    /// A StatusPush's `self`, offering these events to `self.queue:popChunk()`.
    StatusPush(Arc<PushChunk>),
    /// A list of arguments, as a Lua sequence.
    List(Vec<Arg>),
    /// A table of these fields with the build as its `build` (0.8's `buildInfo`).
    WithBuild(serde_json::Value, Arc<BuildInfo>),
}

impl From<serde_json::Value> for Arg {
    fn from(value: serde_json::Value) -> Self {
        Arg::Json(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Json(value.into())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Json(value.into())
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Json(value.into())
    }
}

impl Arg {
    pub(super) fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        let missing = |what: &str| mlua::Error::runtime(format!("no such {what} in the build"));
        let userdata = |ud: mlua::AnyUserData| Value::UserData(ud);
        match self {
            Arg::Json(value) => json_to_lua(lua, &value),
            Arg::Build(build) => lua.create_userdata(LuaBuild(build)).map(userdata),
            Arg::Step(build, step) => {
                let step = LuaStep::new(build, step).ok_or_else(|| missing("step"))?;
                lua.create_userdata(step).map(userdata)
            }
            Arg::Log(build, step, log) => {
                let log = LuaLog::new(build, step, log).ok_or_else(|| missing("log"))?;
                lua.create_userdata(log).map(userdata)
            }
            Arg::SourceStamp(ss) => lua.create_userdata(LuaSourceStamp(ss)).map(userdata),
            Arg::Change(change) => lua.create_userdata(LuaChange(change)).map(userdata),
            Arg::Master(master) => lua.create_userdata(LuaMaster(master)).map(userdata),
            Arg::Properties(data) => lua.create_userdata(LuaProperties(data)).map(userdata),
            Arg::Handle(handle) => handle.value(lua),
            Arg::StatusPush(chunk) => lua.create_userdata(LuaStatusPush(chunk)).map(userdata),
            Arg::List(items) => {
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|item| item.into_lua(lua))
                    .collect::<mlua::Result<_>>()?;
                lua.create_sequence_from(items).map(Value::Table)
            }
            Arg::WithBuild(fields, build) => {
                let table = json_to_lua(lua, &fields)?;
                if let Value::Table(table) = &table {
                    table.raw_set("build", lua.create_userdata(LuaBuild(build))?)?;
                }
                Ok(table)
            }
        }
    }
}

/// Scalars directly, tables through serde: most arguments are strings and numbers, and the
/// serde path costs several times more for them.
pub(super) fn json_to_lua(lua: &Lua, value: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::Array(_) | Json::Object(_) => lua.to_value_with(value, lua_serialize_options())?,
    })
}

/// What a callback's first return value converts to.
pub trait FromScript: Sized + Send + 'static {
    /// `Err` says what the value was instead, for the error message.
    fn from_script(lua: &Lua, value: Value) -> Result<Self, String>;
}

/// Plain data: nil, booleans, numbers, strings and tables of them.
impl FromScript for serde_json::Value {
    fn from_script(lua: &Lua, value: Value) -> Result<Self, String> {
        match value {
            Value::Nil => Ok(serde_json::Value::Null),
            value => lua.from_value(value).map_err(|e| {
                let why = match e {
                    mlua::Error::DeserializeError(why) => why,
                    e => e.to_string(),
                };
                format!("a value that is not plain data ({why})")
            }),
        }
    }
}

/// A build object or nil (`previousBuildGetter`).
impl FromScript for Option<Arc<BuildInfo>> {
    fn from_script(_: &Lua, value: Value) -> Result<Self, String> {
        match value {
            Value::Nil => Ok(None),
            value => build_of(&value)
                .map(Some)
                .ok_or_else(|| format!("{} where a build or nil was expected", describe(&value))),
        }
    }
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The Lua code raised an error.
    Failed,
    TimedOut {
        limit: Duration,
    },
    OutOfMemory {
        limit: usize,
    },
    /// The function returned something the caller cannot use.
    BadReturn,
    /// A function of a config that was replaced, a panic, or a stopped host.
    Internal,
}

/// A callback or renderable that failed. `Display` gives one line for logs and users;
/// the traceback, when there is one, is separate (and shown by `{:#}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    /// Where the function that was called is defined.
    pub function: Option<Location>,
    /// Lua's message with its own `file:line` (`master.cfg.lua:33: attempt to ...`); for a
    /// timeout, where the code was stopped.
    pub message: String,
    pub traceback: Option<String>,
}

impl ScriptError {
    pub(super) fn new(
        kind: ScriptErrorKind,
        function: Option<&Location>,
        message: impl Into<String>,
    ) -> Self {
        ScriptError {
            kind,
            function: function.cloned(),
            message: message.into(),
            traceback: None,
        }
    }

    fn stopped() -> Self {
        ScriptError::new(
            ScriptErrorKind::Internal,
            None,
            "the script host has stopped",
        )
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(function) = &self.function {
            write!(f, "{function}: ")?;
        }
        let message = &self.message;
        match &self.kind {
            ScriptErrorKind::Failed if self.function.is_some() => {
                write!(f, "function failed: {message}")?
            }
            ScriptErrorKind::Failed => f.write_str(message)?,
            ScriptErrorKind::TimedOut { limit } => {
                write!(f, "function timed out after {limit:?} at {message}")?
            }
            ScriptErrorKind::OutOfMemory { limit } => write!(
                f,
                "function ran out of memory (the Lua limit is {})",
                bytes(*limit)
            )?,
            ScriptErrorKind::BadReturn => write!(f, "function returned {message}")?,
            ScriptErrorKind::Internal => write!(f, "internal error: {message}")?,
        }
        if let (true, Some(traceback)) = (f.alternate(), &self.traceback) {
            write!(f, "\n{traceback}")?;
        }
        Ok(())
    }
}

fn bytes(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// A job's answer: `.await` it, or `.wait()` for it outside async code. The job runs even
/// when this is dropped.
#[must_use = "the answer says whether the callback failed"]
pub struct Pending<T>(oneshot::Receiver<Result<T, ScriptError>>);

impl<T> Pending<T> {
    /// Blocks the current thread until the answer comes. Panics when called from inside an
    /// async runtime: await instead.
    pub fn wait(self) -> Result<T, ScriptError> {
        self.0
            .blocking_recv()
            .unwrap_or_else(|_| Err(ScriptError::stopped()))
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, ScriptError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(ScriptError::stopped())))
    }
}

type Job = Box<dyn FnOnce(&mut Vm) + Send>;

/// A handle on the script host; clones share the one thread, which ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct ScriptHost {
    jobs: mpsc::Sender<Job>,
    /// Numbers the sessions (see [`super::session`]).
    sessions: Arc<AtomicU64>,
}

impl ScriptHost {
    /// Starts the host thread with the VM a config was evaluated in.
    pub fn start(lua: Lua, limits: HostLimits) -> Result<ScriptHost, ScriptError> {
        prepare(&lua, &limits)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let mut vm = Vm {
            lua,
            retired: Vec::new(),
            limits,
            spare: None,
            sessions: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("moonbot-lua".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job(&mut vm);
                }
            })
            .map_err(|e| {
                ScriptError::new(
                    ScriptErrorKind::Internal,
                    None,
                    format!("cannot start the script host thread: {e}"),
                )
            })?;
        Ok(ScriptHost {
            jobs,
            sessions: Arc::default(),
        })
    }

    pub(super) fn next_session_id(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// Calls `callback` with `args`; its first return value converts to `R`
    /// (`serde_json::Value` for plain data).
    pub fn call<R: FromScript>(&self, callback: &Callback, args: Vec<Arg>) -> Pending<R> {
        let callback = callback.clone();
        self.run_on_vm(Some(callback.location().clone()), move |vm| {
            vm.job(|vm, deadline| vm.call(&callback, args, deadline))
        })
    }

    /// Renders a renderable that needs Lua (`util.renderer`, `util.Transform`, or anything
    /// holding one); plain ones render here as well.
    pub fn render(&self, renderable: &Renderable, data: RenderData) -> Pending<serde_json::Value> {
        let renderable = renderable.clone();
        self.run_on_vm(None, move |vm| {
            vm.job(|vm, deadline| vm.render(&renderable, &data, deadline))
        })
    }

    /// Switches to a new config's VM; the old one is closed. Callbacks of the old config fail
    /// from now on, so services rebind theirs to the new config's. Fails, keeping the old VM,
    /// when the new one already holds more than the memory limit.
    pub fn replace_vm(&self, lua: Lua) -> Pending<()> {
        self.run_on_vm(None, move |vm| vm.job(|vm, _| vm.replace(lua)))
    }

    /// Runs `work` on the host thread.
    pub(super) fn run_on_vm<R: Send + 'static>(
        &self,
        function: Option<Location>,
        work: impl FnOnce(&mut Vm) -> Result<R, ScriptError> + Send + 'static,
    ) -> Pending<R> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |vm| {
            let result = catch_unwind(AssertUnwindSafe(|| work(vm))).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(function = ?function, "script host job panicked: {what}");
                Err(ScriptError::new(
                    ScriptErrorKind::Internal,
                    function.as_ref(),
                    format!("panicked: {what}"),
                ))
            });
            let _ = reply.send(result);
        });
        // A stopped host drops the job, and with it the reply: the answer says "stopped".
        let _ = self.jobs.send(job);
        Pending(answer)
    }
}

/// Sets the limits on a VM before the host uses it.
fn prepare(lua: &Lua, limits: &HostLimits) -> Result<(), ScriptError> {
    let internal = |message: String| ScriptError::new(ScriptErrorKind::Internal, None, message);
    let used = lua.used_memory();
    if limits.memory_limit != 0 && used > limits.memory_limit {
        return Err(internal(format!(
            "the config's Lua state holds {} already, above the memory limit of {}",
            bytes(used),
            bytes(limits.memory_limit)
        )));
    }
    lua.set_memory_limit(limits.memory_limit)
        .map_err(|e| internal(format!("cannot limit the Lua memory: {e}")))?;
    install_hook(lua).map_err(|e| internal(format!("cannot install the time limit: {e}")))
}

/// The host thread's state.
pub(super) struct Vm {
    pub(super) lua: Lua,
    /// Replaced VMs whose callbacks are still held (by a running build, say), each with its
    /// token; dropped once theirs is the last holder.
    retired: Vec<(Lua, VmToken)>,
    pub(super) limits: HostLimits,
    /// A coroutine that finished its last call, reused for the next (creating one costs
    /// more than the rest of a small call).
    spare: Option<mlua::Thread>,
    /// Sessions waiting for the answer to a request, by id.
    pub(super) sessions: HashMap<u64, Suspended>,
}

impl Vm {
    /// Runs one job under its deadline. A job that timed out leaves no spare coroutine.
    fn job<T>(
        &mut self,
        work: impl FnOnce(&mut Vm, &Deadline) -> Result<T, ScriptError>,
    ) -> Result<T, ScriptError> {
        self.retired.retain(|(_, token)| token.holders() > 1);
        let deadline = Deadline::start(self.limits.call_timeout);
        let result = work(self, &deadline);
        if deadline.stopped_at().is_some() {
            self.spare = None;
        }
        result
    }

    fn call<R: FromScript>(
        &mut self,
        callback: &Callback,
        args: Vec<Arg>,
        deadline: &Deadline,
    ) -> Result<R, ScriptError> {
        let location = callback.location();
        let current = callback.belongs_to(&self.lua);
        let lua = &self.lua_of(callback).clone();
        let function = callback.function(lua).map_err(|e| match e {
            mlua::Error::MismatchedRegistryKey => ScriptError::new(
                ScriptErrorKind::Internal,
                Some(location),
                "the function belongs to a config that was replaced",
            ),
            e => self.error(e, Some(location), deadline),
        })?;
        let args = args
            .into_iter()
            .map(|arg| arg.into_lua(lua))
            .collect::<mlua::Result<MultiValue>>()
            .map_err(|e| match e {
                e if is_memory_error(&e) => self.error(e, Some(location), deadline),
                e => ScriptError::new(
                    ScriptErrorKind::Internal,
                    Some(location),
                    format!("bad argument: {}", describe_error(&e).0),
                ),
            })?;
        // The spare coroutine belongs to the current VM.
        let spare = if current { self.spare.take() } else { None };
        let mut finished_thread = None;
        let run = || -> mlua::Result<(ThreadStatus, MultiValue)> {
            let thread = match spare {
                Some(thread) => {
                    thread.reset(function)?;
                    thread
                }
                None => lua.create_thread(function)?,
            };
            let values = thread.resume::<MultiValue>(args)?;
            let status = thread.status();
            if status == ThreadStatus::Finished && current {
                finished_thread = Some(thread);
            }
            Ok((status, values))
        };
        let ran = run();
        if finished_thread.is_some() {
            self.spare = finished_thread;
        }
        let (status, values) = ran.map_err(|e| self.error(e, Some(location), deadline))?;
        if let Some(timeout) = timed_out(deadline, Some(location)) {
            return Err(timeout);
        }
        if status != ThreadStatus::Finished {
            return Err(ScriptError::new(
                ScriptErrorKind::Failed,
                Some(location),
                "yielded outside a coroutine",
            ));
        }
        let first = values.into_iter().next().unwrap_or(Value::Nil);
        R::from_script(lua, first)
            .map_err(|what| ScriptError::new(ScriptErrorKind::BadReturn, Some(location), what))
    }

    /// The VM `callback` belongs to: the current one, or a replaced one still in use.
    pub(super) fn lua_of(&self, callback: &Callback) -> &Lua {
        match self
            .retired
            .iter()
            .find(|(lua, _)| callback.belongs_to(lua))
        {
            Some((lua, _)) if !callback.belongs_to(&self.lua) => lua,
            _ => &self.lua,
        }
    }

    fn render(
        &mut self,
        renderable: &Renderable,
        data: &RenderData,
        deadline: &Deadline,
    ) -> Result<serde_json::Value, ScriptError> {
        let mut rendered = renderable.render(data, Some(&self.lua));
        // A renderable of a replaced config renders in its own VM.
        for (lua, _) in &self.retired {
            match &rendered {
                Err(RenderError::Lua {
                    source: mlua::Error::MismatchedRegistryKey,
                    ..
                }) => {
                    rendered = renderable.render(data, Some(lua));
                }
                _ => break,
            }
        }
        if rendered.is_ok() {
            // A renderer that caught the timeout error and returned still timed out.
            if let Some(timeout) = timed_out(deadline, None) {
                return Err(timeout);
            }
        }
        rendered.map_err(|e| match e {
            RenderError::Lua { location, source } => self.error(source, Some(&location), deadline),
            RenderError::Format(message) => {
                ScriptError::new(ScriptErrorKind::Failed, None, message)
            }
            e @ RenderError::NeedsLua(_) => {
                ScriptError::new(ScriptErrorKind::Internal, None, e.to_string())
            }
        })
    }

    /// Closing the old VM runs its config's finalizers, under the job's deadline.
    fn replace(&mut self, lua: Lua) -> Result<(), ScriptError> {
        prepare(&lua, &self.limits)?;
        self.spare = None;
        let old = std::mem::replace(&mut self.lua, lua);
        if let Some(token) = old.remove_app_data::<VmToken>() {
            if let Err(error) = crate::config::release_config(&old) {
                tracing::warn!("cannot release the replaced config: {error}");
            }
            if token.holders() > 1 {
                self.retired.push((old, token));
            }
        }
        Ok(())
    }

    /// Turns an mlua error into a `ScriptError`. After running out of memory the garbage is
    /// collected at once, so the next job starts with the room the failed one left.
    pub(super) fn error(
        &self,
        error: mlua::Error,
        function: Option<&Location>,
        deadline: &Deadline,
    ) -> ScriptError {
        if let Some(timeout) = timed_out(deadline, function) {
            return timeout;
        }
        if is_memory_error(&error) {
            let _ = self.lua.gc_collect();
            return ScriptError::new(
                ScriptErrorKind::OutOfMemory {
                    limit: self.limits.memory_limit,
                },
                function,
                error.to_string(),
            );
        }
        let (message, traceback) = describe_error(&error);
        ScriptError {
            traceback,
            ..ScriptError::new(ScriptErrorKind::Failed, function, message)
        }
    }
}

/// The job's timeout as an error, if its deadline passed.
pub(super) fn timed_out(deadline: &Deadline, function: Option<&Location>) -> Option<ScriptError> {
    let stopped = deadline.stopped_at()?;
    Some(ScriptError {
        traceback: Some(stopped.traceback),
        ..ScriptError::new(
            ScriptErrorKind::TimedOut {
                limit: deadline.limit(),
            },
            function,
            stopped.place,
        )
    })
}

fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// The message with its `file:line`, and the traceback apart. A message without a place (a
/// Rust method's, or a value raised with `error`) takes the first Lua frame of the traceback.
fn describe_error(error: &mlua::Error) -> (String, Option<String>) {
    let (message, traceback) = match error {
        mlua::Error::RuntimeError(text) => match text.split_once("\nstack traceback:") {
            Some((message, traceback)) => (
                message.to_string(),
                Some(format!("stack traceback:{traceback}")),
            ),
            None => (text.clone(), None),
        },
        mlua::Error::CallbackError { cause, traceback } => {
            (describe_error(cause).0, Some(traceback.clone()))
        }
        other => (other.to_string(), None),
    };
    let message = describe_error_object(message);
    let place = traceback.as_deref().and_then(first_lua_frame);
    let message = match place {
        Some(place) if split_place(&message).is_none() => format!("{place}: {message}"),
        _ => message,
    };
    (message, traceback)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::model::{LogInfo, LogSource, Properties, StepInfo};
    use crate::script::objects::tests::sample;

    const CONFIG: &str = r#"
fns = {}
function fns.trivial(mode, name, build, results, master_status)
  return { body = "STATUS: " .. util.Results[results], type = "plain" }
end
function fns.number(build) return build:getNumber() end
function fns.echo(...) return { ... } end
function fns.loop()
  while true do end -- LOOP
end
function fns.swallow()
  while true do pcall(function() while true do end end) end
end
function fns.nested()
  local co = coroutine.wrap(function() while true do end end) -- NESTED
  co()
end
function fns.sort()
  local t = {}
  for i = 1, 100 do t[i] = i end
  table.sort(t, function(a, b) while true do end end) -- SORT
end
function fns.sort_swallow()
  table.sort({ 3, 2, 1 }, function(a, b)
    while true do pcall(function() while true do end end) end -- SORT_SWALLOW
  end)
end
function fns.hog()
  local t = {}
  while true do t[#t + 1] = ("x"):rep(64) .. #t end
end
function fns.boom()
  error("boom") -- BOOM
end
function fns.index(build)
  return build.nope.field -- INDEX
end
function fns.badarg(build)
  return build:getProperty() -- BADARG
end
function fns.readlog(build)
  return build:getLogs()[1]:getText() -- READLOG
end
function fns.yield() coroutine.yield(1) end
function fns.nomessage() error() end -- NOMESSAGE
function fns.tableerror() error({ code = 1 }) end -- TABLEERROR
function fns.exit() os.exit(7) end -- EXIT
local spinner = coroutine.wrap(function()
  coroutine.yield()
  while true do end -- SPINNER
end)
spinner()
function fns.old_coroutine() spinner() end
function fns.returns_function() return function() end end
function fns.returns_build(build) return { build = build } end
function fns.previous(build) return build:getPreviousBuild() end
function fns.same(build) return build end
function fns.props(props) return props:getProperty("branch", "none") end
function fns.describe(...)
  local t = {}
  for i = 1, select('#', ...) do t[i] = tostring((select(i, ...))) end
  return t
end
"#;

    const LIMITS: HostLimits = HostLimits {
        call_timeout: Duration::from_millis(200),
        memory_limit: 32 * 1024 * 1024,
    };

    /// The line of CONFIG holding `marker`.
    fn line(marker: &str) -> u32 {
        let index = CONFIG.lines().position(|l| l.contains(marker)).unwrap();
        index as u32 + 1
    }

    fn start(source: &str, limits: HostLimits) -> (ScriptHost, BTreeMap<String, Callback>) {
        let loaded =
            crate::config::load_source("master.cfg.lua", source, std::path::Path::new("."))
                .unwrap();
        let fns: mlua::Table = loaded.lua.globals().get("fns").unwrap();
        let callbacks = fns
            .pairs::<String, mlua::Function>()
            .map(|pair| {
                let (name, function) = pair.unwrap();
                (name, Callback::new(&loaded.lua, &function).unwrap())
            })
            .collect();
        (ScriptHost::start(loaded.lua, limits).unwrap(), callbacks)
    }

    fn call(
        host: &ScriptHost,
        f: &Callback,
        args: Vec<Arg>,
    ) -> Result<serde_json::Value, ScriptError> {
        host.call(f, args).wait()
    }

    /// The host still answers, correctly.
    fn assert_alive(host: &ScriptHost, fns: &BTreeMap<String, Callback>) {
        let answer = call(host, &fns["echo"], vec![Arg::from("still"), Arg::from(1)]);
        assert_eq!(answer.unwrap(), json!(["still", 1]));
    }

    #[test]
    fn ten_thousand_calls_in_a_row() {
        let (host, fns) = start(CONFIG, HostLimits::default());
        let sample = sample();
        let args = || {
            vec![
                Arg::from("failing"),
                Arg::from("linux"),
                Arg::Build(sample.build.clone()),
                Arg::from(2),
                Arg::Master(sample.master.clone()),
            ]
        };
        let started = Instant::now();
        for _ in 0..10_000 {
            let message = call(&host, &fns["trivial"], args()).unwrap();
            assert_eq!(message["body"], "STATUS: failure");
        }
        // Printed, not asserted: this is a debug build on a shared machine.
        eprintln!(
            "trivial formatter: {:.1} µs per call (debug build)",
            started.elapsed().as_secs_f64() * 1e6 / 10_000.0
        );
        assert_alive(&host, &fns);
    }

    #[tokio::test]
    async fn calls_are_awaited_from_async_code() {
        fn shared_across_tasks<T: Send + Sync + 'static>() {}
        shared_across_tasks::<ScriptHost>();
        shared_across_tasks::<Pending<serde_json::Value>>();
        let (host, fns) = start(CONFIG, LIMITS);
        let build = sample().build;
        let answers = futures_join(
            (0..20)
                .map(|_| {
                    host.call::<serde_json::Value>(&fns["number"], vec![Arg::Build(build.clone())])
                })
                .collect(),
        )
        .await;
        for answer in answers {
            assert_eq!(answer.unwrap(), json!(17));
        }
    }

    async fn futures_join<T>(pending: Vec<Pending<T>>) -> Vec<Result<T, ScriptError>> {
        let mut out = Vec::new();
        for p in pending {
            out.push(p.await);
        }
        out
    }

    #[test]
    fn runaway_loops_time_out_where_they_loop_and_the_host_goes_on() {
        let (host, fns) = start(CONFIG, LIMITS);
        for (name, marker) in [
            ("loop", "-- LOOP"),
            ("swallow", "fns.swallow"),
            ("nested", "-- NESTED"),
            ("sort", "-- SORT"),
            ("sort_swallow", "-- SORT_SWALLOW"),
            ("old_coroutine", "-- SPINNER"),
        ] {
            let error = call(&host, &fns[name], vec![]).unwrap_err();
            let defined = fns[name].location();
            assert_eq!(
                error.kind,
                ScriptErrorKind::TimedOut {
                    limit: LIMITS.call_timeout
                },
                "{name}"
            );
            assert_eq!(error.function.as_ref(), Some(defined), "{name}");
            let expected_at = match name {
                "swallow" => line(marker) + 1,
                _ => line(marker),
            };
            assert_eq!(
                error.to_string(),
                format!(
                    "{defined}: function timed out after 200ms at master.cfg.lua:{expected_at}"
                ),
                "{name}"
            );
            assert!(
                error
                    .traceback
                    .as_deref()
                    .unwrap_or_default()
                    .contains("stack traceback:"),
                "{name}: {error:#}"
            );
            assert_alive(&host, &fns);
        }
    }

    #[test]
    fn endless_allocation_hits_the_memory_limit_and_the_host_goes_on() {
        let limits = HostLimits {
            call_timeout: Duration::from_secs(60),
            ..LIMITS
        };
        let (host, fns) = start(CONFIG, limits);
        for _ in 0..2 {
            let error = call(&host, &fns["hog"], vec![]).unwrap_err();
            assert_eq!(
                error.kind,
                ScriptErrorKind::OutOfMemory {
                    limit: LIMITS.memory_limit
                }
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "{}: function ran out of memory (the Lua limit is 32 MiB)",
                    fns["hog"].location()
                )
            );
            assert_alive(&host, &fns);
        }
    }

    struct FailingLog;
    impl LogSource for FailingLog {
        fn text(&self) -> anyhow::Result<String> {
            anyhow::bail!("log file gone")
        }
    }

    struct PanickingLog;
    impl LogSource for PanickingLog {
        fn text(&self) -> anyhow::Result<String> {
            panic!("log reader bug")
        }
    }

    fn build_with_log(source: Arc<dyn LogSource>) -> Arc<BuildInfo> {
        Arc::new(BuildInfo {
            steps: vec![StepInfo {
                name: "compile".into(),
                logs: vec![LogInfo {
                    name: "stdio".into(),
                    finished: true,
                    source,
                }],
                ..StepInfo::default()
            }],
            ..BuildInfo::default()
        })
    }

    #[test]
    fn errors_name_the_callback_and_the_failing_line() {
        let (host, fns) = start(CONFIG, LIMITS);
        let build = Arg::Build(sample().build);
        let failing = Arg::Build(build_with_log(Arc::new(FailingLog)));
        for (name, arg, marker, message) in [
            ("boom", build.clone(), "-- BOOM", "boom".to_string()),
            (
                "index",
                build.clone(),
                "-- INDEX",
                "attempt to index a nil value (field 'nope')".into(),
            ),
            (
                "badarg",
                build.clone(),
                "-- BADARG",
                "bad argument #2 to `LuaBuild.getProperty`: error converting Lua nil to String (expected string or number)".into(),
            ),
            (
                "readlog",
                failing,
                "-- READLOG",
                "getText: cannot read log 'stdio' of step 'compile': log file gone".into(),
            ),
            (
                "nomessage",
                build.clone(),
                "-- NOMESSAGE",
                "error raised with nil instead of a message".into(),
            ),
            (
                "tableerror",
                build.clone(),
                "-- TABLEERROR",
                "error raised with a table instead of a message".into(),
            ),
            (
                "exit",
                build.clone(),
                "-- EXIT",
                "os.exit is not available in a config: it would stop the master; call error(message) to report a problem".into(),
            ),
        ] {
            let error = call(&host, &fns[name], vec![arg]).unwrap_err();
            assert_eq!(error.kind, ScriptErrorKind::Failed, "{name}");
            assert_eq!(
                error.to_string(),
                format!(
                    "{}: function failed: master.cfg.lua:{}: {message}",
                    fns[name].location(),
                    line(marker)
                ),
                "{name}"
            );
            assert!(error.traceback.is_some(), "{name}");
            assert_alive(&host, &fns);
        }
    }

    #[test]
    fn values_that_cannot_be_returned_are_clear_errors() {
        let (host, fns) = start(CONFIG, LIMITS);
        let build = sample().build;
        let error = call(&host, &fns["returns_function"], vec![]).unwrap_err();
        assert_eq!(error.kind, ScriptErrorKind::BadReturn);
        assert_eq!(
            error.to_string(),
            format!(
                "{}: function returned a value that is not plain data (unsupported value type `function`)",
                fns["returns_function"].location()
            )
        );
        let error = call(
            &host,
            &fns["returns_build"],
            vec![Arg::Build(build.clone())],
        )
        .unwrap_err();
        assert_eq!(error.kind, ScriptErrorKind::BadReturn);
        let error = call(&host, &fns["yield"], vec![]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: function failed: yielded outside a coroutine",
                fns["yield"].location()
            )
        );
        // Where a build is expected, a build comes back.
        let previous: Option<Arc<BuildInfo>> = host
            .call(&fns["previous"], vec![Arg::Build(build.clone())])
            .wait()
            .unwrap();
        assert_eq!(previous.map(|b| b.number), Some(15));
        let same: Option<Arc<BuildInfo>> = host
            .call(&fns["same"], vec![Arg::Build(build.clone())])
            .wait()
            .unwrap();
        assert!(Arc::ptr_eq(&same.unwrap(), &build));
        let error = host
            .call::<Option<Arc<BuildInfo>>>(&fns["number"], vec![Arg::Build(build)])
            .wait()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: function returned number 17 where a build or nil was expected",
                fns["number"].location()
            )
        );
        assert_alive(&host, &fns);
    }

    #[test]
    fn a_panic_under_a_callback_is_an_internal_error_and_the_host_goes_on() {
        let (host, fns) = start(CONFIG, LIMITS);
        let build = build_with_log(Arc::new(PanickingLog));
        let error = call(&host, &fns["readlog"], vec![Arg::Build(build)]).unwrap_err();
        assert_eq!(error.kind, ScriptErrorKind::Internal);
        assert_eq!(
            error.to_string(),
            format!(
                "{}: internal error: panicked: log reader bug",
                fns["readlog"].location()
            )
        );
        assert_alive(&host, &fns);
    }

    #[test]
    fn renderables_that_need_lua_render_on_the_host() {
        let source = format!(
            "{CONFIG}\nrenderables = {{
  util.renderer(function(props) return props:getProperty('branch') .. '!' end),
  util.Interpolate('%(prop:branch)s-%(kw:n)s', {{n = util.Transform(function(x) return x * 2 end, 21)}}),
  util.renderer(function() while true do end end), -- RENDERLOOP
  util.renderer(function() while true do pcall(function() while true do end end) end end), -- SWALLOW
}}\n"
        );
        let loaded =
            crate::config::load_source("master.cfg.lua", &source, std::path::Path::new("."))
                .unwrap();
        let renderables: Vec<Renderable> = loaded
            .lua
            .globals()
            .get::<mlua::Table>("renderables")
            .unwrap()
            .sequence_values::<mlua::Value>()
            .map(|v| Renderable::from_lua_value(&loaded.lua, v.unwrap()).unwrap())
            .collect();
        let host = ScriptHost::start(loaded.lua, LIMITS).unwrap();
        let data = RenderData::with_properties(Properties::from_pairs(
            [("branch", json!("main"))],
            "Build",
        ));
        let render = |r: &Renderable| host.render(r, data.clone()).wait();
        assert_eq!(render(&renderables[0]).unwrap(), json!("main!"));
        assert_eq!(render(&renderables[1]).unwrap(), json!("main-42"));
        let error = render(&renderables[2]).unwrap_err();
        let at = source
            .lines()
            .position(|l| l.contains("-- RENDERLOOP"))
            .unwrap()
            + 1;
        assert_eq!(
            error.to_string(),
            format!("master.cfg.lua:{at}: function timed out after 200ms at master.cfg.lua:{at}")
        );
        let error = render(&renderables[3]).unwrap_err();
        let at = source
            .lines()
            .position(|l| l.contains("-- SWALLOW"))
            .unwrap()
            + 1;
        assert_eq!(
            error.to_string(),
            format!("master.cfg.lua:{at}: function timed out after 200ms at master.cfg.lua:{at}")
        );
        assert_eq!(render(&renderables[0]).unwrap(), json!("main!"));
    }

    #[test]
    fn every_kind_of_argument_reaches_callbacks() {
        let (host, fns) = start(CONFIG, LIMITS);
        let sample = sample();
        let build = sample.build.clone();
        let ss = Arc::new(build.sourcestamps[0].clone());
        let change = Arc::new(ss.changes[0].clone());
        let args = vec![
            Arg::Step(build.clone(), 1),
            Arg::Log(build.clone(), 1, 1),
            Arg::SourceStamp(ss),
            Arg::Change(change),
            Arg::Master(sample.master.clone()),
            Arg::Json(json!(null)),
            Arg::Json(json!(1.5)),
            Arg::Json(json!({"a": [true]})),
        ];
        let answer = call(&host, &fns["describe"], args).unwrap();
        assert_eq!(
            answer,
            json!([
                "step compile",
                "log compile.warnings",
                "sourcestamp :abc123",
                "change 5",
                "master Example",
                "nil",
                "1.5",
                answer[7].clone()
            ])
        );
        assert!(answer[7].as_str().unwrap().starts_with("table: "));
        let error = call(&host, &fns["describe"], vec![Arg::Step(build, 9)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: internal error: bad argument: no such step in the build",
                fns["describe"].location()
            )
        );
    }

    #[test]
    fn properties_objects_reach_callbacks() {
        let (host, fns) = start(CONFIG, LIMITS);
        let data = RenderData::with_properties(Properties::from_pairs(
            [("branch", json!("main"))],
            "Build",
        ));
        let answer = call(&host, &fns["props"], vec![Arg::Properties(Arc::new(data))]);
        assert_eq!(answer.unwrap(), json!("main"));
    }

    #[test]
    fn a_replaced_vm_runs_the_new_configs_callbacks_and_keeps_the_old_ones_while_held() {
        let (host, old) = start(CONFIG, LIMITS);
        let loaded = crate::config::load_source(
            "master.cfg.lua",
            "fns = { function() return 'new' end }",
            std::path::Path::new("."),
        )
        .unwrap();
        let fns: mlua::Table = loaded.lua.globals().get("fns").unwrap();
        let new = Callback::new(&loaded.lua, &fns.get(1).unwrap()).unwrap();
        host.replace_vm(loaded.lua).wait().unwrap();
        assert_eq!(call(&host, &new, vec![]).unwrap(), json!("new"));
        // A running build may still hold the old config's functions: they run in their VM.
        assert_eq!(
            call(&host, &old["echo"], vec![Arg::from("still here")]).unwrap(),
            json!(["still here"])
        );
    }

    #[test]
    fn a_vm_over_the_memory_limit_is_refused() {
        let loaded = crate::config::load_source(
            "master.cfg.lua",
            "big = string.rep('x', 2 * 1024 * 1024)",
            std::path::Path::new("."),
        )
        .unwrap();
        let limits = HostLimits {
            memory_limit: 1024 * 1024,
            ..LIMITS
        };
        let error = ScriptHost::start(loaded.lua, limits).err().unwrap();
        assert_eq!(error.kind, ScriptErrorKind::Internal);
        assert!(
            error
                .to_string()
                .ends_with("above the memory limit of 1 MiB"),
            "{error}"
        );
    }
}
