//! The daemon's resident memory: what start-up leaves behind that an idle master does not
//! use, given back once it is up.
//!
//! Start-up evaluates the config, opens and checks the database and registers builders;
//! glibc's malloc keeps what that freed. The binary's code that start-up touched stays
//! mapped: dropping those mappings lowers the idle figure only until the first request
//! maps them back, and frees nothing the page cache does not still hold, so it is not
//! done. What a start touches is kept small instead by the binary's layout (`build.rs`:
//! the functions a start runs are linked together).
//!
//! Fewer malloc arenas (`M_ARENA_MAX` 2) saved about 1 MiB idle but cost the REST API 15 to
//! 40% more CPU per request (the worker and SQLite threads then share arena locks): not
//! taken.

/// How long after `Master::start` the services have done what they do once at start, and
/// the SQLite connections the start used have been closed (`db::SQLITE_IDLE`), their page
/// caches freed.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(3);

/// Gives the heap memory start-up freed back to the system (`malloc_trim`).
pub fn release_start_up_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
