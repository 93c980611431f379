//! How a SQLite connection waits for the write lock another connection holds.
//!
//! SQLite's own busy handler (`busy_timeout`) sleeps 1 ms first, then longer, while a write
//! transaction here lasts tens of microseconds: two writers that meet (a build's end and
//! the next one's start, a start's registrations) lost a millisecond each time. This one
//! sleeps 10 µs first and doubles up to 2 ms, for the same 10 s in all.
//!
//! sqlx's `Any` connections do not reach SQLite's handle, so the handler goes in through SQL:
//! every connection gets a function, `moonbot_short_busy_waits()`, that installs it on the
//! connection that calls it; the pool calls it once a connection is open, after sqlx's
//! own `busy_timeout`, which it replaces.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;
use std::time::Duration;

use libsqlite3_sys as ffi;

use super::{DbError, DbResult};

/// The first sleep, doubled after each try up to [`LONGEST`].
const FIRST: Duration = Duration::from_micros(10);
const LONGEST: Duration = Duration::from_millis(2);
/// How long a write waits in all before SQLite reports the database locked.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Gives every SQLite connection the process opens from now on the SQL function. Without
/// it a connection could not run what the pool sends as it opens, so a refusal (SQLite out
/// of memory) is an error.
pub(super) fn register() -> DbResult<()> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    // SAFETY: registers a function with the signature SQLite calls it with.
    let code =
        *REGISTERED.get_or_init(|| unsafe { ffi::sqlite3_auto_extension(Some(add_function)) });
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(DbError::Sql(sqlx::Error::Configuration(
            format!("SQLite refused the function that shortens its busy waits ({code})").into(),
        )))
    }
}

/// The automatic extension: adds `moonbot_short_busy_waits()` to a new connection.
unsafe extern "C" fn add_function(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened; the name is a C string that lives as
    // long as the program, and the function keeps no user data.
    unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"moonbot_short_busy_waits".as_ptr(),
            0,
            ffi::SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(install),
            None,
            None,
            None,
        )
    }
}

/// The SQL function: installs [`wait`] as the busy handler of the calling connection.
unsafe extern "C" fn install(
    context: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite passes the context of a running call, whose connection is open.
    unsafe {
        let db = ffi::sqlite3_context_db_handle(context);
        ffi::sqlite3_busy_handler(db, Some(wait), std::ptr::null_mut());
        ffi::sqlite3_result_null(context);
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
