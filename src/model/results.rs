use std::fmt;

/// A build or step result, with Buildbot's numeric codes (they are part of the Lua surface:
/// `util.Results[2] == "failure"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuildResult {
    Success = 0,
    Warnings = 1,
    Failure = 2,
    Skipped = 3,
    Exception = 4,
    Retry = 5,
    Cancelled = 6,
}

impl BuildResult {
    pub const ALL: [BuildResult; 7] = [
        BuildResult::Success,
        BuildResult::Warnings,
        BuildResult::Failure,
        BuildResult::Skipped,
        BuildResult::Exception,
        BuildResult::Retry,
        BuildResult::Cancelled,
    ];

    pub fn from_code(code: i64) -> Option<BuildResult> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    pub fn code(self) -> i64 {
        self as i64
    }

    /// The lowercase name Buildbot uses (`Results[code]`).
    pub fn name(self) -> &'static str {
        match self {
            BuildResult::Success => "success",
            BuildResult::Warnings => "warnings",
            BuildResult::Failure => "failure",
            BuildResult::Skipped => "skipped",
            BuildResult::Exception => "exception",
            BuildResult::Retry => "retry",
            BuildResult::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BuildResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_buildbot() {
        for (code, name) in [(0, "success"), (2, "failure"), (6, "cancelled")] {
            let result = BuildResult::from_code(code).unwrap();
            assert_eq!(result.code(), code);
            assert_eq!(result.name(), name);
        }
        assert_eq!(BuildResult::from_code(7), None);
        assert_eq!(BuildResult::from_code(-1), None);
    }
}
