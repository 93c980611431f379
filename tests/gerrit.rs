//! GerritStatusPush end to end: real builds, reviews sent with the system ssh client to a
//! real sshd on loopback whose forced command records what `gerrit review` receives.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sshd::Sshd;
use support::{complete, submit, TestMaster};

/// Builders `a`, `b`, `c` (whose build triggers `d` without waiting for it) and `d` (which
/// takes a moment); their step exits with the property `rc`.
fn config(sshd: &Sshd, options: &str, callbacks: &str) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['buildbotURL'] = 'http://ci.example.org/'
c['www'] = {{port='tcp:0:interface=127.0.0.1'}}
c['workers'] = {{worker.LocalWorker('local', {{max_builds=4}})}}
local function factory(extra)
  local f = util.BuildFactory()
  f:addStep(steps.ShellCommand{{name='run', command={{'sh', '-c', util.Interpolate('%(prop:pause:-true)s; exit %(prop:rc:-0)s')}}}})
  if extra then f:addStep(extra) end
  return f
end
c['builders'] = {{
  util.BuilderConfig{{name='a', workernames={{'local'}}, factory=factory()}},
  util.BuilderConfig{{name='b', workernames={{'local'}}, factory=factory()}},
  util.BuilderConfig{{name='c', workernames={{'local'}},
    factory=factory(steps.Trigger{{schedulerNames={{'later'}}, waitForFinish=false,
      set_properties={{pause='sleep 1'}}}})}},
  util.BuilderConfig{{name='d', workernames={{'local'}}, factory=factory()}},
}}
c['schedulers'] = {{schedulers.Triggerable{{name='later', builderNames={{'d'}}}}}}
c['outbox'] = {{retryDelay=0.1, maxRetryDelay=0.3}}
{callbacks}
c['status'] = {{status.GerritStatusPush{{server='127.0.0.1', username='{user}', port={port},
  identity_file='{identity}', ssh_known_hosts='{known_hosts}', {options}}}}}
"#,
        user = whoami(),
        port = sshd.port,
        identity = sshd.identity_file().display(),
        known_hosts = sshd.known_hosts(),
    )
}

fn whoami() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The Gerrit properties of patch set `patchset` of change 7 of project `proj`.
fn change(patchset: i64, extra: &[(&'static str, Value)]) -> Vec<(&'static str, Value)> {
    let mut properties = vec![
        ("event.change.project", json!("proj")),
        ("event.change.number", json!("7")),
        ("event.patchSet.number", json!(patchset.to_string())),
        ("event.patchSet.revision", json!(format!("rev{patchset}"))),
    ];
    properties.extend_from_slice(extra);
    properties
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

const CALLBACKS: &str = r#"
local function review(builderName, build, result, status, arg)
  return {message=('%s %s #%d %s'):format(arg, builderName, build:getNumber(), util.Results[result]),
          labels={Verified=(result == util.SUCCESS) and 1 or -1, ['Code-Review']=0}}
end
local function start(builderName, build, arg)
  return arg .. ' started ' .. builderName
end
local function summary(buildInfoList, results, status, arg)
  local names = {}
  for _, info in ipairs(buildInfoList) do
    table.insert(names, info.name .. '#' .. info.build:getNumber() .. '=' .. info.resultText)
  end
  return {message=arg .. ' ' .. table.concat(names, ',') .. ' ' .. util.Results[results]}
end
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_start_and_summary_callbacks_produce_their_command_lines() {
    let sshd = Sshd::start("3.9.1");
    let options = "reviewCB=review, reviewArg='R', startCB=start, startArg='S', \
                   summaryCB=summary, summaryArg='Z', notify='OWNER'";
    let master = TestMaster::start(&config(&sshd, options, CALLBACKS)).await;
    let bsid = submit(&master, &["a"], &change(2, &[("rc", json!(2))])).await;
    complete(&master, bsid).await;
    let mut commands = sshd.wait_for(3);
    commands.sort();
    let review = |message: &str, labels: &[&str]| {
        let mut command = words(&["gerrit", "review", "--project", "proj", "--message"]);
        command.push(message.to_string());
        command.extend(words(&["--notify", "OWNER"]));
        for label in labels {
            command.extend(words(&["--label", label]));
        }
        command.push("rev2".into());
        command
    };
    let mut expected = vec![
        review("R a #1 failure", &["Code-Review=0", "Verified=-1"]),
        review("S started a", &[]),
        review("Z a#1=failed failure", &[]),
    ];
    expected.sort();
    assert_eq!(commands, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_waits_for_the_build_a_buildset_triggered() {
    let sshd = Sshd::start("3.9.1");
    let master = TestMaster::start(&config(&sshd, "", "")).await;
    let bsid = submit(&master, &["a", "b", "c"], &change(1, &[])).await;
    complete(&master, bsid).await;
    let commands = sshd.wait_for(1);
    // Let any second review arrive if one were sent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let commands_after = sshd.commands();
    assert_eq!(commands_after.len(), 1, "{commands_after:?}");
    let command = &commands[0];
    let message = &command[5];
    for builder in ["a", "b", "c", "d"] {
        assert!(
            message.contains(&format!("Builder {builder} succeeded")),
            "{message}"
        );
    }
    assert_eq!(message.matches("\n\n").count(), 3, "{message}");
    assert_eq!(command[6..], words(&["--label", "Verified=1", "rev1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_quotes_newlines_and_substitutions_arrives_unchanged() {
    // A server before 2.6 also takes --verified rather than --label.
    let sshd = Sshd::start("2.5.2");
    let nasty = "it's \"quoted\" \\ and\nnew $(touch /tmp/gerrit-pwned) `id` $HOME; 'x' \t end";
    let callbacks = format!(
        "local function summary() return {{message={}, labels={{Verified=1}}}} end",
        lua_string(nasty)
    );
    let master = TestMaster::start(&config(&sshd, "summaryCB=summary", &callbacks)).await;
    let bsid = submit(&master, &["a"], &change(1, &[])).await;
    complete(&master, bsid).await;
    let commands = sshd.wait_for(1);
    let mut expected = words(&["gerrit", "review", "--project", "proj", "--message"]);
    expected.push(nasty.to_string());
    expected.extend(words(&["--verified", "1", "rev1"]));
    assert_eq!(commands, [expected]);
    assert!(!std::path::Path::new("/tmp/gerrit-pwned").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_sent_while_sshd_is_down_arrive_once_when_it_is_back() {
    let mut sshd = Sshd::start("3.9.1");
    let options = "reviewCB=review, reviewArg='R'";
    let master = TestMaster::start(&config(&sshd, options, CALLBACKS)).await;
    sshd.pause();
    let first = submit(&master, &["a", "b"], &change(1, &[])).await;
    let second = submit(&master, &["a"], &change(2, &[("rc", json!(1))])).await;
    complete(&master, first).await;
    complete(&master, second).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sshd.commands().is_empty());
    sshd.resume();
    // Three reviews and two summaries.
    sshd.wait_for(5);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let commands = sshd.commands();
    assert_eq!(commands.len(), 5, "{commands:?}");
    let mut messages: Vec<&str> = commands.iter().map(|c| c[5].as_str()).collect();
    messages.sort();
    assert!(messages[0].starts_with("Builder a failed"), "{messages:?}");
    assert!(
        messages[1].starts_with("Builder a succeeded"),
        "{messages:?}"
    );
    assert!(messages[2].starts_with("R a #"), "{messages:?}");
    assert!(messages[3].starts_with("R a #"), "{messages:?}");
    assert!(messages[4].starts_with("R b #1 success"), "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_patch_set_gets_its_review_without_labels() {
    let sshd = Sshd::start("3.9.1");
    let master = TestMaster::start(&config(&sshd, "", "")).await;
    // The old patch set's build runs until the new one is submitted, however slow the
    // machine.
    let gate = master.dir().join("gate");
    let wait = format!("while [ ! -e '{}' ]; do sleep 0.02; done", gate.display());
    let old = submit(&master, &["a"], &change(1, &[("pause", json!(wait))])).await;
    let new = submit(&master, &["b"], &change(2, &[])).await;
    std::fs::write(&gate, "").unwrap();
    complete(&master, old).await;
    complete(&master, new).await;
    let commands = sshd.wait_for(2);
    let old_review = commands
        .iter()
        .find(|c| c.last().unwrap() == "rev1")
        .unwrap();
    let new_review = commands
        .iter()
        .find(|c| c.last().unwrap() == "rev2")
        .unwrap();
    assert!(
        !old_review.contains(&"--label".to_string()),
        "{old_review:?}"
    );
    assert!(
        new_review.contains(&"Verified=1".to_string()),
        "{new_review:?}"
    );
}

/// `text` as a Lua string literal.
fn lua_string(text: &str) -> String {
    let mut literal = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            '\t' => literal.push_str("\\t"),
            c => literal.push(c),
        }
    }
    literal.push('"');
    literal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_keeps_queued_reviews_and_new_callbacks_apply_to_the_next_build() {
    let mut sshd = Sshd::start("3.9.1");
    let options = |arg: &str| format!("reviewCB=review, reviewArg='{arg}', summaryCB=false");
    let mut master = TestMaster::start(&config(&sshd, &options("old"), CALLBACKS)).await;
    sshd.pause();
    let queued = submit(&master, &["a"], &change(1, &[])).await;
    complete(&master, queued).await;
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(
            &sshd,
            &options("new"),
            &CALLBACKS.replace("'%s %s #%d %s'", "'%s! %s #%d %s'"),
        ),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~1 -0 services)",
        "{outcome:?}"
    );
    let next = submit(&master, &["b"], &change(1, &[])).await;
    complete(&master, next).await;
    sshd.resume();
    sshd.wait_for(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut messages: Vec<String> = sshd.commands().iter().map(|c| c[5].clone()).collect();
    messages.sort();
    assert_eq!(messages, ["new! b #1 success", "old a #1 success"]);
}
