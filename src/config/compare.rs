//! The one rule for whether a reconfigured service's options changed: its config compared
//! with where it stands in the file left out, so that moving a definition, or adding a line
//! above it, changes nothing (Vector's `ConfigDiff` keys on name and content alike).
//!
//! Configs are compared by their `Debug` text, which covers every option without a
//! hand-kept list; while a comparison runs, [`Location`](super::Location) prints nothing and
//! a callback prints its code instead of its place.

use std::cell::Cell;
use std::fmt::Debug;

thread_local! {
    static IGNORING_PLACES: Cell<bool> = const { Cell::new(false) };
}

/// Whether two configs of one service ask for the same thing, wherever they are written.
pub fn same_options<T: Debug + ?Sized>(old: &T, new: &T) -> bool {
    /// Restores the flag even if a `Debug` impl panics.
    struct Comparing;
    impl Drop for Comparing {
        fn drop(&mut self) {
            IGNORING_PLACES.set(false);
        }
    }
    IGNORING_PLACES.set(true);
    let _comparing = Comparing;
    format!("{old:?}") == format!("{new:?}")
}

/// Whether `Debug` output is for [`same_options`], and so leaves places out.
pub fn ignoring_places() -> bool {
    IGNORING_PLACES.get()
}
