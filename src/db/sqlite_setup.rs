//! What every SQLite connection is set up with as it opens: `synchronous=NORMAL`, the
//! write-ahead log, and a busy handler of our own.
//!
//! SQLite's own busy handler (`busy_timeout`) sleeps 1 ms first, then longer, while a write
//! transaction here lasts tens of microseconds: two writers that meet (a build's end and
//! the next one's start, a start's registrations) lost a millisecond each time. This one
//! sleeps 10 µs first and doubles up to 2 ms, for the same 10 s in all.
//!
//! sqlx's `Any` connections do not reach SQLite's handle, and a query sent once a
//! connection is open is one more round trip to its thread. So an automatic extension,
//! which SQLite runs inside `sqlite3_open_v2` on the connection's own thread, sets the
//! pragmas there; and as sqlx sets its `busy_timeout` after the open, which would replace
//! the handler, the extension leaves a trace callback that installs the handler as the
//! connection's first statement (sqlx's own pragma) begins, then removes itself.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::time::Duration;

use libsqlite3_sys as ffi;

use super::{DbError, DbResult};

/// The first sleep, doubled after each try up to [`LONGEST`].
const FIRST: Duration = Duration::from_micros(10);
const LONGEST: Duration = Duration::from_millis(2);
/// How long a write waits in all before SQLite reports the database locked.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// What a connection runs as it opens. The journal mode is the file's (only a new database
/// changes); the sync level is the connection's.
const PRAGMAS: &std::ffi::CStr = c"PRAGMA synchronous=NORMAL; PRAGMA journal_mode=WAL";

/// Sets up every SQLite connection the process opens from now on. A refusal (SQLite out
/// of memory) is an error: the connections would not be set up.
pub(super) fn register() -> DbResult<()> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    // SAFETY: registers a function with the signature SQLite calls it with.
    let code = *REGISTERED.get_or_init(|| unsafe { ffi::sqlite3_auto_extension(Some(set_up)) });
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(DbError::Sql(sqlx::Error::Configuration(
            format!("SQLite refused the setup of its connections ({code})").into(),
        )))
    }
}

/// The automatic extension: the busy handler first (the pragmas read the file, which
/// another connection may have locked), then the pragmas, then the trace callback that
/// puts the handler back after sqlx's `busy_timeout`. An error fails the open with
/// SQLite's message.
unsafe extern "C" fn set_up(
    db: *mut ffi::sqlite3,
    error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened, on this thread; `error` is where SQLite
    // takes a message it frees; the callbacks keep no user data.
    unsafe {
        ffi::sqlite3_busy_handler(db, Some(wait), std::ptr::null_mut());
        let code = ffi::sqlite3_exec(db, PRAGMAS.as_ptr(), None, std::ptr::null_mut(), error);
        if code != ffi::SQLITE_OK {
            return code;
        }
        ffi::sqlite3_trace_v2(
            db,
            ffi::SQLITE_TRACE_STMT as c_uint,
            Some(first_statement),
            std::ptr::null_mut(),
        )
    }
}

/// The trace callback, called as a statement begins: installs [`wait`] on the statement's
/// connection, then removes itself.
unsafe extern "C" fn first_statement(
    _event: c_uint,
    _context: *mut c_void,
    statement: *mut c_void,
    _sql: *mut c_void,
) -> c_int {
    // SAFETY: for SQLITE_TRACE_STMT, SQLite passes the running statement, whose connection
    // is open; both calls only set the connection's fields.
    unsafe {
        let db = ffi::sqlite3_db_handle(statement.cast());
        ffi::sqlite3_busy_handler(db, Some(wait), std::ptr::null_mut());
        ffi::sqlite3_trace_v2(db, 0, None, std::ptr::null_mut());
    }
    0
}

/// Has the connection `db` leave the write-ahead log as it is when it closes last
/// (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`); answers SQLite's code.
///
/// # Safety
/// `db` is an open connection, used by no other thread during the call.
pub(super) unsafe fn keep_log_at_close(db: *mut ffi::sqlite3) -> c_int {
    // SAFETY: as the caller promises; the option takes an int and an optional int pointer
    // for the previous value, here none.
    unsafe {
        ffi::sqlite3_db_config(
            db,
            ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        )
    }
}

/// Removes the callback that puts [`wait`] back at the first statement, from a connection
/// that sets a busy handler of its own ([`super::direct`]).
pub(super) fn keep_busy_handler(connection: &rusqlite::Connection) {
    // SAFETY: the handle is the open connection's; this only clears its trace callback.
    unsafe {
        ffi::sqlite3_trace_v2(connection.handle(), 0, None, std::ptr::null_mut());
    }
}

/// The busy handler: sleeps before the `tries`-th retry, or gives up (0) once the sleeps
/// so far reach [`GIVE_UP_AFTER`].
unsafe extern "C" fn wait(_data: *mut c_void, tries: c_int) -> c_int {
    match sleep_before(u32::try_from(tries).unwrap_or(u32::MAX)) {
        Some(sleep) => {
            std::thread::sleep(sleep);
            1
        }
        None => 0,
    }
}

/// The sleep before retry `tries` (0 first), None once the earlier ones add up to
/// [`GIVE_UP_AFTER`].
fn sleep_before(tries: u32) -> Option<Duration> {
    let slept: Duration = (0..tries).map(sleep_at).sum();
    (slept < GIVE_UP_AFTER).then(|| sleep_at(tries))
}

/// [`FIRST`], doubled at each retry, up to [`LONGEST`].
fn sleep_at(tries: u32) -> Duration {
    (FIRST * 2u32.saturating_pow(tries)).min(LONGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_double_from_ten_microseconds_to_two_milliseconds_for_ten_seconds_in_all() {
        let sleeps: Vec<Duration> = (0..).map_while(sleep_before).collect();
        assert_eq!(sleeps[..3], [10, 20, 40].map(Duration::from_micros));
        assert_eq!(sleeps[8], Duration::from_millis(2));
        assert!(sleeps.iter().all(|sleep| *sleep <= LONGEST));
        let total: Duration = sleeps.iter().sum();
        assert!(
            total >= GIVE_UP_AFTER && total < GIVE_UP_AFTER + LONGEST,
            "{total:?}"
        );
    }
}
