//! Golden files: what users read (config errors, mails, pages) pinned in files under `tests/`.
//! `MOONBOT_BLESS=1` rewrites every golden file a run compares with; review the diff.
//!
//! Shared by the integration tests (as `support::golden`) and the library's unit tests (by
//! path), so there is one way to pin text and one variable to rewrite it.

use std::path::Path;

/// The environment variable that rewrites golden files instead of comparing with them.
pub const BLESS: &str = "MOONBOT_BLESS";

/// Compares `actual` with the file at `path` (relative to the crate's root), or writes it
/// there when [`BLESS`] is `1`.
pub fn check(path: impl AsRef<Path>, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var(BLESS).as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} ({BLESS}=1 writes it)", path.display()));
    assert_eq!(actual, expected, "golden file {}", path.display());
}
