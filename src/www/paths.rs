//! The REST API's paths, as Buildbot's endpoints declare them (`/builders/n:builderid/builds`):
//! `n:` takes an integer, `i:` an identifier, `s:` any segment. The first pattern that
//! matches wins, so numeric ones come before the names they could be mistaken for.

use std::sync::OnceLock;

use crate::data::builds::{BuildRef, BuilderRef, LogRef, StepRef};
use crate::data::registry::WorkerRef;

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Builders,
    Builder,
    Builds,
    Build,
    TriggeredBuilds,
    Steps,
    Step,
    Logs,
    Log,
    LogContents,
    LogRaw,
    LogRawInline,
    Changes,
    Change,
    Sourcestamps,
    Sourcestamp,
    Buildsets,
    Buildset,
    BuildRequests,
    BuildRequest,
    Workers,
    Worker,
    Masters,
    Master,
    Schedulers,
    Scheduler,
    ChangeSources,
    ChangeSource,
    ForceSchedulers,
    ForceScheduler,
    Reporters,
    Reporter,
    Messages,
}

/// A segment of a pattern; the names and literals are slices of the patterns' static text,
/// so the table is built without a string of its own (it is built at the first request).
#[derive(Clone, Copy, Debug)]
enum Segment {
    Literal(&'static str),
    Integer(&'static str),
    Identifier(&'static str),
    Text(&'static str),
}

/// A value a path gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Int(i64),
    Str(String),
}

/// The values a matched path gave, by name (`builderid`, `buildername`, `step_name`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args(Vec<(&'static str, Arg)>);

impl Args {
    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.iter().find_map(|(n, arg)| match arg {
            Arg::Int(value) if *n == name => Some(*value),
            _ => None,
        })
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|(n, arg)| match arg {
            Arg::Str(value) if *n == name => Some(value.as_str()),
            _ => None,
        })
    }

    pub fn builder(&self) -> Option<BuilderRef> {
        match (self.int("builderid"), self.text("buildername")) {
            (Some(id), _) => Some(BuilderRef::Id(id)),
            (None, Some(name)) => Some(BuilderRef::Name(name.to_string())),
            _ => None,
        }
    }

    pub fn build(&self) -> Option<BuildRef> {
        match (self.int("buildid"), self.int("build_number")) {
            (Some(id), _) => Some(BuildRef::Id(id)),
            (None, Some(number)) => Some(BuildRef::Number(self.builder()?, number)),
            _ => None,
        }
    }

    pub fn step(&self) -> Option<StepRef> {
        if let Some(id) = self.int("stepid") {
            return Some(StepRef::Id(id));
        }
        if let Some(number) = self.int("step_number") {
            return Some(StepRef::Number(self.build()?, number));
        }
        let name = self.text("step_name")?;
        Some(StepRef::Name(self.build()?, name.to_string()))
    }

    pub fn log(&self) -> Option<LogRef> {
        if let Some(id) = self.int("logid") {
            return Some(LogRef::Id(id));
        }
        let slug = self.text("log_slug")?;
        Some(LogRef::Slug(self.step()?, slug.to_string()))
    }

    pub fn worker(&self) -> Option<WorkerRef> {
        match (self.int("workerid"), self.text("name")) {
            (Some(id), _) => Some(WorkerRef::Id(id)),
            (None, Some(name)) => Some(WorkerRef::Name(name.to_string())),
            _ => None,
        }
    }
}

struct Pattern {
    segments: Vec<Segment>,
    endpoint: Endpoint,
}

/// The ways a URL names one build.
const BUILD_PREFIXES: &[&str] = &[
    "builds/n:buildid",
    "builders/n:builderid/builds/n:build_number",
    "builders/s:buildername/builds/n:build_number",
];

fn patterns() -> &'static [Pattern] {
    static PATTERNS: OnceLock<Vec<Pattern>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        use Endpoint::*;
        let mut table = Vec::new();
        // A pattern is its pieces joined by `/`, each piece one or more segments.
        let mut add = |pieces: &[&'static str], endpoint| {
            let segments = pieces
                .iter()
                .flat_map(|piece| piece.split('/'))
                .filter(|text| !text.is_empty())
                .map(segment)
                .collect();
            table.push(Pattern { segments, endpoint });
        };
        for pattern in [
            "builders",
            "masters/n:masterid/builders",
            "workers/n:workerid/builders",
        ] {
            add(&[pattern], Builders);
        }
        for pattern in [
            "builders/n:builderid",
            "builders/s:buildername",
            "masters/n:masterid/builders/n:builderid",
        ] {
            add(&[pattern], Builder);
        }
        for pattern in [
            "builds",
            "builders/n:builderid/builds",
            "builders/s:buildername/builds",
            "buildrequests/n:buildrequestid/builds",
            "changes/n:changeid/builds",
            "workers/n:workerid/builds",
        ] {
            add(&[pattern], Builds);
        }
        add(&["builds/n:buildid/triggered_builds"], TriggeredBuilds);
        // Steps, logs and log contents under each way of naming a build (or a step).
        let mut steps = vec![["", "steps/n:stepid"]];
        for build in BUILD_PREFIXES {
            add(&[build], Build);
            add(&[build, "steps"], Steps);
            add(&[build, "changes"], Changes);
            steps.push([build, "steps/n:step_number"]);
            steps.push([build, "steps/i:step_name"]);
        }
        for &[build, step] in &steps {
            add(&[build, step], Step);
            add(&[build, step, "logs"], Logs);
            add(&[build, step, "logs/i:log_slug"], Log);
        }
        let mut logs = vec![["", "", "logs/n:logid"]];
        logs.extend(
            steps
                .iter()
                .map(|&[build, step]| [build, step, "logs/i:log_slug"]),
        );
        for log in &logs {
            add(log, Log);
            add(&[log.as_slice(), &["contents"]].concat(), LogContents);
            add(&[log.as_slice(), &["raw"]].concat(), LogRaw);
            add(&[log.as_slice(), &["raw_inline"]].concat(), LogRawInline);
        }
        add(&["changes"], Changes);
        add(&["changes/n:changeid"], Change);
        add(&["sourcestamps/n:ssid/changes"], Changes);
        add(&["sourcestamps"], Sourcestamps);
        add(&["buildsets/n:buildsetid/sourcestamps"], Sourcestamps);
        add(&["sourcestamps/n:ssid"], Sourcestamp);
        add(&["buildsets"], Buildsets);
        add(&["buildsets/n:bsid"], Buildset);
        add(&["buildrequests"], BuildRequests);
        add(&["builders/n:builderid/buildrequests"], BuildRequests);
        add(&["buildrequests/n:buildrequestid"], BuildRequest);
        for pattern in [
            "workers",
            "masters/n:masterid/workers",
            "masters/n:masterid/builders/n:builderid/workers",
            "builders/n:builderid/workers",
        ] {
            add(&[pattern], Workers);
        }
        for prefix in [
            "",
            "masters/n:masterid/",
            "masters/n:masterid/builders/n:builderid/",
            "builders/n:builderid/",
        ] {
            add(&[prefix, "workers/n:workerid"], Worker);
            add(&[prefix, "workers/i:name"], Worker);
        }
        add(&["masters"], Masters);
        add(&["builders/n:builderid/masters"], Masters);
        add(&["masters/n:masterid"], Master);
        add(&["builders/n:builderid/masters/n:masterid"], Master);
        add(&["schedulers"], Schedulers);
        add(&["masters/n:masterid/schedulers"], Schedulers);
        add(&["schedulers/n:schedulerid"], Scheduler);
        add(&["masters/n:masterid/schedulers/n:schedulerid"], Scheduler);
        add(&["changesources"], ChangeSources);
        add(&["masters/n:masterid/changesources"], ChangeSources);
        add(&["changesources/n:changesourceid"], ChangeSource);
        add(
            &["masters/n:masterid/changesources/n:changesourceid"],
            ChangeSource,
        );
        add(&["forceschedulers"], ForceSchedulers);
        add(&["builders/n:builderid/forceschedulers"], ForceSchedulers);
        add(&["forceschedulers/i:schedulername"], ForceScheduler);
        add(&["reporters"], Reporters);
        add(&["reporters/s:reportername"], Reporter);
        add(&["reporters/s:reportername/messages"], Messages);
        table
    })
}

fn segment(text: &'static str) -> Segment {
    match text.split_once(':') {
        Some(("n", name)) => Segment::Integer(name),
        Some(("i", name)) => Segment::Identifier(name),
        Some(("s", name)) => Segment::Text(name),
        _ => Segment::Literal(text),
    }
}

/// Buildbot's `Identifier`: `[a-zA-Z_-][a-zA-Z0-9._-]*`, at most 50 characters.
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && text.len() <= 50
}

/// The endpoint a path (without `/api/v2/`) names, and the values it gave.
pub fn resolve(path: &str) -> Option<(Endpoint, Args)> {
    let parts: Vec<&str> = path.split('/').collect();
    'patterns: for pattern in patterns() {
        if pattern.segments.len() != parts.len() {
            continue;
        }
        let mut args = Args::default();
        for (&segment, &part) in pattern.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Integer(name) => match part.parse::<i64>() {
                    Ok(value) if !part.starts_with('+') => args.0.push((name, Arg::Int(value))),
                    _ => continue 'patterns,
                },
                Segment::Identifier(name) if is_identifier(part) => {
                    args.0.push((name, Arg::Str(part.to_string())))
                }
                Segment::Text(name) if !part.is_empty() => {
                    args.0.push((name, Arg::Str(part.to_string())))
                }
                _ => continue 'patterns,
            }
        }
        return Some((pattern.endpoint, args));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_as_buildbots_patterns() {
        let cases = [
            ("builds", Endpoint::Builds, None),
            ("builds/7", Endpoint::Build, Some(BuildRef::Id(7))),
            (
                "builders/3/builds/5",
                Endpoint::Build,
                Some(BuildRef::Number(BuilderRef::Id(3), 5)),
            ),
            (
                "builders/linux/builds/5",
                Endpoint::Build,
                Some(BuildRef::Number(BuilderRef::Name("linux".into()), 5)),
            ),
            ("builds/7/steps", Endpoint::Steps, Some(BuildRef::Id(7))),
        ];
        for (path, endpoint, build) in cases {
            let (found, args) = resolve(path).unwrap();
            assert_eq!((found, args.build()), (endpoint, build), "{path}");
        }
        let (endpoint, args) =
            resolve("builders/linux/builds/5/steps/compile/logs/stdio/raw").unwrap();
        assert_eq!(endpoint, Endpoint::LogRaw);
        assert_eq!(
            args.log(),
            Some(LogRef::Slug(
                StepRef::Name(
                    BuildRef::Number(BuilderRef::Name("linux".into()), 5),
                    "compile".into()
                ),
                "stdio".into()
            ))
        );
        let (endpoint, args) = resolve("builds/7/steps/2").unwrap();
        assert_eq!(endpoint, Endpoint::Step);
        assert_eq!(args.step(), Some(StepRef::Number(BuildRef::Id(7), 2)));
        let (endpoint, args) = resolve("builders/3").unwrap();
        assert_eq!(
            (endpoint, args.builder()),
            (Endpoint::Builder, Some(BuilderRef::Id(3)))
        );
        assert_eq!(
            resolve("workers/bot-1").unwrap().1.worker(),
            Some(WorkerRef::Name("bot-1".into()))
        );
        for bad in [
            "",
            "builds/",
            "nothing",
            "builds/x/steps",
            "builds/7/steps/2x/logs",
            "logs/1/rawx",
        ] {
            assert_eq!(resolve(bad), None, "{bad}");
        }
    }
}
