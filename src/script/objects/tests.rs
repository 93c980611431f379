//! The status objects against a snapshot built in Rust, and the spec's two messageFormatter
//! examples run through the script host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mlua::Lua;
use serde_json::json;

use super::{LuaBuild, LuaChange, LuaMaster, LuaSourceStamp};
use crate::model::{
    BuildHistory, BuildInfo, BuildResult, BuilderInfo, Change, LogInfo, LogSource, MasterInfo,
    Patch, Properties, SourceStamp, StepInfo,
};
use crate::script::{Arg, Callback, HostLimits, ScriptHost};

/// A log that counts how often its text was read.
pub(crate) struct CountingLog {
    text: String,
    pub reads: AtomicUsize,
}

impl LogSource for CountingLog {
    fn text(&self) -> anyhow::Result<String> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.text.clone())
    }
}

/// Earlier builds of the sample builder: #15 finished, #16 still running.
struct History(Vec<Arc<BuildInfo>>);

impl BuildHistory for History {
    fn previous_finished(
        &self,
        builder: &BuilderInfo,
        number: i64,
    ) -> anyhow::Result<Option<Arc<BuildInfo>>> {
        Ok(self
            .0
            .iter()
            .filter(|b| b.builder == *builder && b.number < number && b.is_finished())
            .max_by_key(|b| b.number)
            .cloned())
    }
}

pub(crate) struct Sample {
    pub build: Arc<BuildInfo>,
    pub master: Arc<MasterInfo>,
    /// git.stdio, compile.stdio, compile.warnings, upload.stdio
    pub logs: Vec<Arc<CountingLog>>,
}

impl Sample {
    pub fn reads(&self) -> Vec<usize> {
        self.logs
            .iter()
            .map(|l| l.reads.load(Ordering::SeqCst))
            .collect()
    }
}

/// Build linux #17: git succeeded, compile failed with 100 lines of output, upload never
/// finished; one sourcestamp with one change.
pub(crate) fn sample() -> Sample {
    let builder = BuilderInfo {
        id: 3,
        name: "linux".into(),
        tags: vec!["fast".into()],
    };
    let mut compile_output: Vec<String> = (1..=100).map(|i| format!("line {i}")).collect();
    compile_output[98] = r#"x < y && "q""#.into();
    let logs: Vec<Arc<CountingLog>> = [
        "Cloning into 'repo'...\n".to_string(),
        compile_output.join("\n") + "\n",
        "warning: unused variable\n".to_string(),
        "uploading\n".to_string(),
    ]
    .into_iter()
    .map(|text| {
        Arc::new(CountingLog {
            text,
            reads: AtomicUsize::new(0),
        })
    })
    .collect();
    let log = |name: &str, index: usize, finished: bool| LogInfo {
        name: name.into(),
        finished,
        source: logs[index].clone(),
    };
    let step = |name: &str, results, text: &[&str], times: (f64, Option<f64>), logs| StepInfo {
        name: name.into(),
        results,
        text: text.iter().map(|s| s.to_string()).collect(),
        started_at: Some(times.0),
        complete_at: times.1,
        logs,
    };
    let change = Change {
        number: 5,
        who: "Alice <alice@example.org>".into(),
        revision: Some("abc123".into()),
        branch: Some("master".into()),
        when: 1_700_000_000,
        files: vec!["src/b.c".into(), "src/a.c".into()],
        comments: "Fix the frobnicator".into(),
        repository: "https://example.org/repo.git".into(),
        project: "demo".into(),
        codebase: String::new(),
        category: None,
        revlink: Some("https://example.org/repo/commit/abc123".into()),
        properties: vec![("ticket".into(), json!(42))],
    };
    let earlier = |number, complete_at: Option<f64>| {
        Arc::new(BuildInfo {
            builder: builder.clone(),
            number,
            results: complete_at.map(|_| BuildResult::Success),
            started_at: 1_699_990_000.0,
            complete_at,
            ..BuildInfo::default()
        })
    };
    let history = History(vec![earlier(15, Some(1_699_990_100.0)), earlier(16, None)]);
    let build = BuildInfo {
        builder: builder.clone(),
        number: 17,
        reason: "The SingleBranchScheduler scheduler named 'main' triggered this build".into(),
        results: Some(BuildResult::Failure),
        text: vec!["failed".into(), "compile".into()],
        started_at: 1_700_000_100.0,
        complete_at: Some(1_700_000_400.5),
        worker_name: "worker1".into(),
        properties: Properties::from_pairs(
            [
                ("buildername", json!("linux")),
                ("got_revision", json!("abc123")),
            ],
            "Build",
        ),
        sourcestamps: vec![SourceStamp {
            codebase: String::new(),
            branch: Some("master".into()),
            revision: Some("abc123".into()),
            repository: "https://example.org/repo.git".into(),
            project: "demo".into(),
            patch: None,
            changes: vec![change],
        }],
        steps: vec![
            step(
                "git",
                Some(BuildResult::Success),
                &["update"],
                (1_700_000_100.0, Some(1_700_000_110.0)),
                vec![log("stdio", 0, true)],
            ),
            step(
                "compile",
                Some(BuildResult::Failure),
                &["failed"],
                (1_700_000_110.0, Some(1_700_000_400.0)),
                vec![log("stdio", 1, true), log("warnings", 2, true)],
            ),
            step(
                "upload",
                None,
                &[],
                (1_700_000_400.0, None),
                vec![log("stdio", 3, false)],
            ),
        ],
        history: Some(Arc::new(history)),
    };
    let master = MasterInfo {
        title: "Example".into(),
        title_url: "https://example.org/".into(),
        buildbot_url: "http://localhost:8010/".into(),
        builders: vec![
            builder,
            BuilderInfo {
                id: 4,
                name: "docs".into(),
                tags: vec![],
            },
        ],
    };
    Sample {
        build: Arc::new(build),
        master: Arc::new(master),
        logs,
    }
}

/// `show(...)`: values as text, tables with sorted keys, so checks compare strings.
const SHOW: &str = r##"
local function repr(v)
  if type(v) ~= "table" then
    return type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  local items = {}
  for _, k in ipairs(keys) do
    items[#items + 1] = (type(k) == "number" and "" or k .. "=") .. repr(v[k])
  end
  return "{" .. table.concat(items, ", ") .. "}"
end
function show(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = repr((select(i, ...))) end
  return table.concat(parts, ", ")
end
"##;

/// Evaluates each expression with `build`, `master`, `ss` (a patched sourcestamp) and
/// `change` in scope and compares what `show` makes of its values.
fn check(cases: &[(&str, &str)]) {
    let sample = sample();
    let lua = Lua::new();
    let globals = lua.globals();
    globals
        .set("build", LuaBuild(sample.build.clone()))
        .unwrap();
    globals
        .set("master", LuaMaster(sample.master.clone()))
        .unwrap();
    let patched = SourceStamp {
        codebase: "lib".into(),
        patch: Some(Patch {
            level: 1,
            body: b"--- a\n+++ b\n".to_vec(),
            subdir: None,
            author: Some("bob".into()),
            comment: Some("try this".into()),
        }),
        ..SourceStamp::default()
    };
    globals
        .set("ss", LuaSourceStamp(Arc::new(patched)))
        .unwrap();
    let change = sample.build.sourcestamps[0].changes[0].clone();
    globals.set("change", LuaChange(Arc::new(change))).unwrap();
    lua.load(SHOW).exec().unwrap();
    let mut failures = Vec::new();
    for (expr, expected) in cases {
        let got = lua
            .load(format!("return show({expr})"))
            .eval::<String>()
            .unwrap_or_else(|e| format!("error: {e}"));
        if got != *expected {
            failures.push(format!("{expr}\n   got: {got}\n  want: {expected}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(sample.reads(), [0, 0, 0, 0], "no log may be read unasked");
}

#[test]
fn build_methods_and_fields() {
    check(&[
        ("build:getNumber(), build.number", "17, 17"),
        (
            "build:getBuilder():getName(), build.builderName",
            r#""linux", "linux""#,
        ),
        ("build:getBuilder().builderid, build.builderid", "3, 3"),
        ("build:getBuilder():getTags()", r#"{"fast"}"#),
        ("build:getResults(), build.results", "2, 2"),
        (
            "build:getReason() == build.reason, build.reason",
            r#"true, "The SingleBranchScheduler scheduler named 'main' triggered this build""#,
        ),
        (
            "build:getText(), build.state_string",
            r#"{"failed", "compile"}, "failed compile""#,
        ),
        ("build:getTimes()", "1700000100.0, 1700000400.5"),
        (
            "build.started_at, build.complete_at",
            "1700000100.0, 1700000400.5",
        ),
        ("build:isFinished()", "true"),
        (
            "build:getSlavename(), build:getWorkername(), build.workername",
            r#""worker1", "worker1", "worker1""#,
        ),
        (
            "build:getResponsibleUsers()",
            r#"{"Alice <alice@example.org>"}"#,
        ),
        ("build:getProperty('got_revision')", r#""abc123""#),
        (
            "build:getProperty('nope', 'dflt'), build:getProperty('nope')",
            r#""dflt", nil"#,
        ),
        (
            "build:getProperties():getProperty('buildername'), build.properties.got_revision",
            r#""linux", "abc123""#,
        ),
        ("build:getProperties():hasProperty('got_revision')", "true"),
        (
            "build:getProperties():asDict().got_revision",
            r#"{"abc123", "Build"}"#,
        ),
        (
            "#build:getSourceStamps(), build:getSourceStamp().branch",
            r#"1, "master""#,
        ),
        ("build.sourcestamps[1].revision", r#""abc123""#),
        (
            "build:getChanges()[1].who",
            r#""Alice <alice@example.org>""#,
        ),
        (
            "build:getSteps(), build.steps[2].name",
            r#"{step git, step compile, step upload}, "compile""#,
        ),
        (
            "build:getLogs()",
            "{log git.stdio, log compile.stdio, log compile.warnings, log upload.stdio}",
        ),
        ("build:getPreviousBuild()", "build linux #15"),
        ("build:getPreviousBuild():getPreviousBuild()", "nil"),
        ("tostring(build)", r#""build linux #17""#),
    ]);
}

#[test]
fn step_and_log_methods() {
    check(&[
        (
            "build:getSteps()[2]:getName(), build:getSteps()[2].number",
            r#""compile", 1"#,
        ),
        ("build:getSteps()[2]:getResults()", r#"2, {"failed"}"#),
        ("build:getSteps()[3]:getResults()", "nil, {}"),
        ("build:getSteps()[2]:getText()", r#"{"failed"}"#),
        (
            "build:getSteps()[2]:isFinished(), build:getSteps()[3]:isFinished()",
            "true, false",
        ),
        (
            "build:getSteps()[2]:getTimes()",
            "1700000110.0, 1700000400.0",
        ),
        ("build:getSteps()[3]:getTimes()", "1700000400.0, nil"),
        (
            "build:getSteps()[2].results, build:getSteps()[3].results",
            "2, nil",
        ),
        (
            "build:getSteps()[2]:getLogs()",
            "{log compile.stdio, log compile.warnings}",
        ),
        ("build:getSteps()[2]:getBuild():getNumber()", "17"),
        (
            "build:getLogs()[3]:getName(), build:getLogs()[3].name",
            r#""warnings", "warnings""#,
        ),
        ("build:getLogs()[3]:getStep():getName()", r#""compile""#),
        (
            "build:getLogs()[3]:isFinished(), build:getLogs()[4]:isFinished()",
            "true, false",
        ),
    ]);
}

#[test]
fn sourcestamp_and_change_fields() {
    check(&[
        (
            "build.sourcestamps[1].codebase, build.sourcestamps[1].repository, build.sourcestamps[1].project",
            r#""", "https://example.org/repo.git", "demo""#,
        ),
        ("build.sourcestamps[1].patch, build.sourcestamps[1].patch_info", "nil, nil"),
        (
            "ss.patch",
            r#"{1, "--- a\
+++ b\
", body="--- a\
+++ b\
", level=1}"#,
        ),
        (
            "ss.patch_info, ss.patch_info[2]",
            r#"{"bob", "try this", author="bob", comment="try this"}, "try this""#,
        ),
        ("ss.branch, ss.revision, #ss.changes", "nil, nil, 0"),
        ("tostring(ss)", r#""sourcestamp lib:HEAD""#),
        ("change.who, change.author", r#""Alice <alice@example.org>", "Alice <alice@example.org>""#),
        ("change.revision, change.branch, change.when", r#""abc123", "master", 1700000000"#),
        ("change.files", r#"{"src/b.c", "src/a.c"}"#),
        ("change.comments, change.category", r#""Fix the frobnicator", nil"#),
        ("change.repository, change.project, change.codebase", r#""https://example.org/repo.git", "demo", """#),
        ("change.revlink", r#""https://example.org/repo/commit/abc123""#),
        ("change.properties, change.number", "{ticket=42}, 5"),
        (
            "change:asDict()",
            r#"{at="Tue 14 Nov 2023 22:13:20", branch="master", codebase="", comments="Fix the frobnicator", files={{name="src/a.c"}, {name="src/b.c"}}, number=5, project="demo", properties={{"ticket", 42, "Change"}}, repository="https://example.org/repo.git", rev="abc123", revision="abc123", revlink="https://example.org/repo/commit/abc123", when=1700000000, who="Alice <alice@example.org>"}"#,
        ),
        (
            "change:asText()",
            r#""Files:\
 src/b.c\
 src/a.c\
On: https://example.org/repo.git\
For: demo\
At: Tue 14 Nov 2023 22:13:20\
Changed By: Alice <alice@example.org>\
Comments: Fix the frobnicator\
Properties: \
  ticket: 42\
\
""#,
        ),
    ]);
}

#[test]
fn master_status_methods() {
    check(&[
        ("master:getTitle(), master.title", r#""Example", "Example""#),
        (
            "master:getTitleURL(), master:getBuildbotURL()",
            r#""https://example.org/", "http://localhost:8010/""#,
        ),
        ("master:getBuilderNames()", r#"{"linux", "docs"}"#),
        (
            "master:getBuilder('docs'):getName(), master:getBuilder('nope')",
            r#""docs", nil"#,
        ),
        (
            "master:getURLForThing(build)",
            r#""http://localhost:8010/#builders/3/builds/17""#,
        ),
        (
            "master:getURLForThing(build:getSteps()[2])",
            r#""http://localhost:8010/#builders/3/builds/17/steps/1""#,
        ),
        (
            "master:getURLForThing(build:getLogs()[3])",
            r#""http://localhost:8010/#builders/3/builds/17/steps/1/logs/warnings""#,
        ),
        (
            "master:getURLForThing(master:getBuilder('docs'))",
            r#""http://localhost:8010/#builders/4""#,
        ),
        (
            "master:getURLForThing(change), master:getURLForThing('x')",
            "nil, nil",
        ),
    ]);
}

#[test]
fn callbacks_cannot_change_a_snapshot() {
    check(&[
        (
            "(pcall(function() build.number = 1 end)), build.number",
            "false, 17",
        ),
        (
            "(pcall(function() change.who = 'x' end)), change.who",
            r#"false, "Alice <alice@example.org>""#,
        ),
        (
            "(pcall(function() master.title = 'x' end)), master.title",
            r#"false, "Example""#,
        ),
        // Tables handed out are fresh copies.
        (
            "(function() build:getText()[1] = 'x' return build:getText()[1] end)()",
            r#""failed""#,
        ),
        (
            "(function() table.remove(build:getSteps()) return #build:getSteps() end)()",
            "3",
        ),
        (
            "(function() change.files[1] = 'x' return change.files[1] end)()",
            r#""src/b.c""#,
        ),
        (
            "(function() build:getChanges()[1] = nil return #build:getChanges() end)()",
            "1",
        ),
        (
            "(function() change:asDict().who = 'x' return change:asDict().who end)()",
            r#""Alice <alice@example.org>""#,
        ),
    ]);
}

/// The messageFormatter of a shipped example, in the VM that loaded it.
fn example_formatter(file: &str) -> (mlua::Lua, Callback) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let loaded = crate::config::load_path(&path).unwrap();
    let formatter = loaded
        .config
        .status
        .iter()
        .find_map(|target| match target {
            crate::config::status::StatusTarget::MailNotifier(mail) => {
                mail.message_formatter.clone()
            }
            _ => None,
        })
        .unwrap();
    (loaded.lua, formatter)
}

/// The spec's two formatters, as the examples ship them, each started in a host.
fn formatters() -> (ScriptHost, Callback, ScriptHost, Callback) {
    let (short_vm, short) = example_formatter("mail_short_formatter.lua");
    let (html_vm, html) = example_formatter("mail_html_formatter.lua");
    let start = |lua| ScriptHost::start(lua, HostLimits::default()).unwrap();
    (start(short_vm), short, start(html_vm), html)
}

fn formatter_args(sample: &Sample, mode: &str) -> Vec<Arg> {
    vec![
        Arg::from(mode),
        Arg::from("linux"),
        Arg::Build(sample.build.clone()),
        Arg::from(sample.build.results.unwrap().code()),
        Arg::Master(sample.master.clone()),
    ]
}

#[test]
fn the_short_message_formatter_of_the_spec() {
    let (host, short, _, _) = formatters();
    let sample = sample();
    let message: serde_json::Value = host
        .call(&short, formatter_args(&sample, "problem"))
        .wait()
        .unwrap();
    assert_eq!(message, json!({"body": "STATUS: Failure", "type": "plain"}));
    assert_eq!(sample.reads(), [0, 0, 0, 0]);
}

#[test]
fn the_html_message_formatter_of_the_spec() {
    let (_, _, host, html) = formatters();
    let sample = sample();
    let message: serde_json::Value = host
        .call(&html, formatter_args(&sample, "failing"))
        .wait()
        .unwrap();
    let url = "http://localhost:8010/#builders/3/builds/17";
    let mut expected = vec![
        "<h4>Build status: FAILURE</h4>".to_string(),
        r#"<table cellspacing="10"><tr>"#.into(),
        "<td>Buildslave for this Build:</td><td><b>worker1</b></td></tr>".into(),
        format!(r#"<tr><td>Complete logs for all build steps:</td><td><a href="{url}">{url}</a></td></tr>"#),
        "<tr><td>Build Reason:</td><td>The SingleBranchScheduler scheduler named 'main' triggered this build</td></tr>".into(),
        "<tr><td>Build Source Stamp:</td><td><b>[branch master] abc123</b></td></tr>".into(),
        "<tr><td>Blamelist:</td><td>Alice <alice@example.org></td></tr>".into(),
        "</table>".into(),
        "<h4>Recent Changes:</h4>".into(),
        r#"<table cellspacing="10">"#.into(),
        "<tr><td>Repository:</td><td>https://example.org/repo.git</td></tr>".into(),
        "<tr><td>Project:</td><td>demo</td></tr>".into(),
        "<tr><td>Time:</td><td>Tue Nov 14 22:13:20 2023</td></tr>".into(),
        "<tr><td>Changed by:</td><td>Alice <alice@example.org></td></tr>".into(),
        "<tr><td>Comments:</td><td>Fix the frobnicator</td></tr>".into(),
        "</table>".into(),
        r#"<table cellspacing="10"><tr><th align="left">Files</th></tr>"#.into(),
        "<tr><td>src/a.c:</td></tr>".into(),
        "<tr><td>src/b.c:</td></tr>".into(),
        "</table>".into(),
        "<br>".into(),
        format!(r#"<i>Detailed log of last build step:</i> <a href="{url}/steps/compile/logs/stdio">{url}/steps/compile/logs/stdio</a>"#),
        "<br>".into(),
        r#"<h4>Last 80 lines of "compile.stdio"</h4>"#.into(),
        "<pre>".into(),
    ];
    expected.extend((21..=98).map(|i| format!("line {i}")));
    expected.push("x &lt; y &amp;&amp; \"q\"".into());
    expected.push("line 100".into());
    expected.extend(["</pre>", "<br><br>", "<b>-The Buildbot</b>"].map(String::from));
    assert_eq!(message["type"], "html");
    assert_eq!(message["body"].as_str().unwrap(), expected.join("\n"));
    // Only the log the formatter reads is loaded, once.
    assert_eq!(sample.reads(), [0, 1, 0, 0]);
}
