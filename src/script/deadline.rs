//! The time limit on Lua code, shared by config evaluation and the script host's jobs.
//!
//! A count hook on the VM's main thread checks the running job's deadline every
//! [`HOOK_INTERVAL`] instructions; every coroutine inherits it, since Lua copies the hook of
//! the thread that creates a coroutine, so it is installed once, before any of the config's
//! code runs. Once the deadline has passed, the running coroutine is suspended when it can
//! be (no `pcall` inside it can catch that); otherwise an error is raised, and from then on
//! at every instruction, so that code catching the error cannot run a single instruction
//! more. Finalizers (`__gc`) run with hooks off, which is why the sandbox refuses them; a
//! single C call that never returns to Lua (a pathological `string.find` pattern) still
//! escapes.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::time::{Duration, Instant};

use mlua::{ffi, Lua};

/// Lua instructions between two deadline checks: a check costs a clock read, so this keeps
/// it far below 1% of the run time while still stopping a loop within microseconds.
const HOOK_INTERVAL: i32 = 10_000;

/// Installs [`deadline_hook`] on the VM's main thread. Coroutines created from then on
/// inherit it; between deadlines it returns at once.
pub fn install_hook(lua: &Lua) -> mlua::Result<()> {
    // SAFETY: lua_sethook on the state exec_raw hands us (the main thread, as no Lua code is
    // running); `deadline_hook` upholds the hook contract (see there).
    unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_sethook(
                state,
                Some(deadline_hook),
                ffi::LUA_MASKCOUNT,
                HOOK_INTERVAL,
            )
        })
    }
}

thread_local! {
    /// When the running job must end; `None` between jobs. Only the thread running the Lua
    /// code sets it.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Where the running job was stopped, once its deadline passed.
    static STOPPED_AT: RefCell<Option<StoppedAt>> = const { RefCell::new(None) };
}

/// Where code was first stopped by its deadline.
#[derive(Clone, Debug)]
pub struct StoppedAt {
    /// `file:line`.
    pub place: String,
    /// Lua's traceback from there.
    pub traceback: String,
}

/// The count hook. Between jobs and before the deadline it returns at once (restoring the
/// normal interval on a thread a past timeout left checking at every instruction). After
/// it, the running coroutine is suspended when it can be. Otherwise an error is raised, and
/// from then on at every instruction of this Lua thread: code that catches the error with
/// `pcall` cannot run a single instruction more, so the error climbs out of every `pcall`.
///
/// SAFETY contract: `lua_error` does not return (it unwinds with longjmp), so nothing with a
/// destructor may be alive in this frame when it is called.
unsafe extern "C-unwind" fn deadline_hook(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    let expired = DEADLINE.with(|d| d.get().is_some_and(|deadline| Instant::now() >= deadline));
    if !expired {
        if ffi::lua_gethookcount(state) != HOOK_INTERVAL {
            ffi::lua_sethook(
                state,
                Some(deadline_hook),
                ffi::LUA_MASKCOUNT,
                HOOK_INTERVAL,
            );
        }
        return;
    }
    record_stop(state, ar);
    if ffi::lua_isyieldable(state) != 0 {
        ffi::lua_yield(state, 0);
        return;
    }
    ffi::lua_sethook(state, Some(deadline_hook), ffi::LUA_MASKCOUNT, 1);
    ffi::lua_pushfstring(
        state,
        c"%s:%d: timed out".as_ptr(),
        (*ar).short_src.as_ptr(),
        (*ar).currentline,
    );
    ffi::lua_error(state);
}

/// Records where the job was first stopped, with a traceback.
///
/// The Lua calls that may raise (the traceback allocates) come before any Rust value with a
/// destructor exists.
unsafe fn record_stop(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    if STOPPED_AT.with(|s| s.borrow().is_some()) {
        return;
    }
    ffi::lua_getinfo(state, c"Sl".as_ptr(), ar);
    // A hook has LUA_MINSTACK free slots, enough for the traceback's string.
    ffi::luaL_traceback(state, state, std::ptr::null(), 0);
    let mut len = 0;
    let text = ffi::lua_tolstring(state, -1, &mut len);
    let traceback = if text.is_null() {
        String::new()
    } else {
        String::from_utf8_lossy(std::slice::from_raw_parts(text.cast::<u8>(), len)).into_owned()
    };
    ffi::lua_settop(state, -2);
    let src = CStr::from_ptr((*ar).short_src.as_ptr()).to_string_lossy();
    let place = format!("{src}:{}", (*ar).currentline);
    STOPPED_AT.with(|s| *s.borrow_mut() = Some(StoppedAt { place, traceback }));
}

/// The running job's deadline on this thread; cleared when dropped, whatever way the job
/// ends. The VM must have the hook ([`install_hook`]).
pub struct Deadline {
    limit: Duration,
}

impl Deadline {
    pub fn start(limit: Duration) -> Deadline {
        Deadline::remaining(limit, limit)
    }

    /// A deadline `left` from now on a job whose whole limit is `limit`: a change source's
    /// function runs in several jobs (between them it waits for a process or a peer), and
    /// only its time in Lua counts.
    pub fn remaining(left: Duration, limit: Duration) -> Deadline {
        DEADLINE.with(|d| d.set(Some(Instant::now() + left)));
        STOPPED_AT.with(|s| s.borrow_mut().take());
        Deadline { limit }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Where the job was stopped, if its deadline passed.
    pub fn stopped_at(&self) -> Option<StoppedAt> {
        STOPPED_AT.with(|s| s.borrow().clone())
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
        STOPPED_AT.with(|s| s.borrow_mut().take());
    }
}
