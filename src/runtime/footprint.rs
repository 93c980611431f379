//! The daemon's resident memory: what start-up leaves behind that an idle master does not
//! use, given back once it is up.
//!
//! Start-up runs code that an idle master never runs again (evaluating the config, opening
//! and checking the database, registering builders), scattered over a binary of some 20 MB;
//! the kernel maps each page fault's neighbours too (fault-around), so start-up leaves
//! about 10 MiB of the binary's code mapped, and glibc's malloc keeps what start-up freed.
//!
//! Fewer malloc arenas (`M_ARENA_MAX` 2) saved about 1 MiB idle but cost the REST API 15 to
//! 40% more CPU per request (the worker and SQLite threads then share arena locks): not
//! taken.

/// How long after `Master::start` the services have done what they do once at start.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(1);

/// Gives back what start-up touched and an idle master does not need: freed heap memory
/// (`malloc_trim`), and the mappings of the binary's code, which stay in the page cache and
/// are mapped again as code runs (64 KiB around each fault: a first REST request maps most
/// of them back). Only the executable mappings are dropped:
/// they are read-only copies of the file (no relocation writes into them), so nothing is
/// lost but the page table entries.
pub fn release_start_up_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    if let Err(error) = drop_code_mappings() {
        tracing::debug!("the binary's code pages were not released: {error}");
    }
}

/// `MADV_DONTNEED` over the executable mappings of this process's own binary, as listed in
/// `/proc/self/maps`.
#[cfg(target_os = "linux")]
fn drop_code_mappings() -> std::io::Result<()> {
    // As the kernel names it in the maps, `(deleted)` included once the file was replaced.
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        let [range, "r-xp", _offset, _dev, _inode, path] = fields[..] else {
            continue;
        };
        if std::path::Path::new(path.trim_start()) != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is a whole read-only private file mapping of our own binary;
        // MADV_DONTNEED only drops its page table entries, and the next access maps the
        // file's page again.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) }
            != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
