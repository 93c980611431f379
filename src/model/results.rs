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

    /// The worse of two results, in Buildbot's `worst_status` order: SKIPPED is the
    /// mildest (a skipped step does not spoil a build), CANCELLED the worst.
    pub fn worst(self, other: BuildResult) -> BuildResult {
        const WORST_FIRST: [BuildResult; 7] = [
            BuildResult::Cancelled,
            BuildResult::Retry,
            BuildResult::Exception,
            BuildResult::Failure,
            BuildResult::Warnings,
            BuildResult::Success,
            BuildResult::Skipped,
        ];
        WORST_FIRST
            .into_iter()
            .find(|r| *r == self || *r == other)
            .unwrap_or(self)
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

    #[test]
    fn worst_follows_buildbot_order() {
        use BuildResult::*;
        assert_eq!(Success.worst(Skipped), Success);
        assert_eq!(Skipped.worst(Warnings), Warnings);
        assert_eq!(Failure.worst(Warnings), Failure);
        assert_eq!(Exception.worst(Cancelled), Cancelled);
    }
}
