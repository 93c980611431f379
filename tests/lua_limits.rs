//! Hostile Lua: configs and formatters that loop where a time limit is hard to reach
//! (`pcall`, coroutines, finalizers), that try to exit, spawn, write or load binary code,
//! and that fail without a message. Evaluation ends within its limit with the line, the
//! sandbox refuses with the line and what to use instead, and a running master keeps its
//! config, sends its mail and stops.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moonbot::config::{load_path, load_with, EvaluationLimits};
use serde_json::json;
use smtp::{ReceivedMail, SmtpOptions, SmtpServer};
use support::{sql, WAIT};

const QUICK: EvaluationLimits = EvaluationLimits {
    timeout: Duration::from_millis(300),
    memory_limit: 64 * 1024 * 1024,
};

/// The errors of evaluating `source` as `master.cfg.lua` under `limits`, one per line.
fn errors_with(source: &str, limits: EvaluationLimits) -> String {
    match load_with("master.cfg.lua", source.as_bytes(), Path::new("."), limits) {
        Ok(_) => panic!("loaded without errors:\n{source}"),
        Err(errors) => errors.to_string(),
    }
}

/// The line of `source` holding `marker`.
fn line_of(source: &str, marker: &str) -> usize {
    source.lines().position(|l| l.contains(marker)).unwrap() + 1
}

#[test]
fn loops_hidden_by_pcall_coroutines_and_metamethods_end_within_the_limit_at_their_line() {
    let cases = [
        "pcall(function() while true do end end) -- LOOP",
        "for i = 1, 100000 do pcall(function() while true do end end) end -- LOOP",
        "coroutine.wrap(function() while true do end end)() -- LOOP",
        "local co = coroutine.create(function() while true do end end) -- LOOP\nwhile true do coroutine.resume(co) end",
        "local t = setmetatable({}, {__index = function() while true do pcall(error) end end}) -- LOOP\nprint(pcall(function() return t.x end))",
        "table.sort({3, 2, 1}, function() while true do pcall(function() while true do end end) end end) -- LOOP",
        "local ok = pcall(function() while true do end end) -- LOOP\nassert(not ok)\nBuildmasterConfig['title'] = 'caught it'",
    ];
    for case in cases {
        let source = format!("local c = BuildmasterConfig\n{case}\n");
        let started = Instant::now();
        let errors = errors_with(&source, QUICK);
        let took = started.elapsed();
        let at = line_of(&source, "-- LOOP");
        assert_eq!(
            errors,
            format!(
                "master.cfg.lua:{at}: evaluating the config took longer than 0.3 s (an endless loop?)\n"
            ),
            "{case}"
        );
        assert!(took < Duration::from_secs(5), "{case}: took {took:?}");
    }
}

#[test]
fn an_allocation_loop_runs_out_of_memory_at_its_line() {
    let source = "local c = BuildmasterConfig\nlocal t = {}\nwhile true do t[#t + 1] = ('x'):rep(1024) .. #t end\n";
    let limits = EvaluationLimits {
        timeout: Duration::from_secs(60),
        ..QUICK
    };
    assert_eq!(
        errors_with(source, limits),
        "master.cfg.lua:3: out of memory (evaluating a config may use 64 MiB)\n"
    );
}

#[test]
fn a_config_with_a_latin1_comment_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.cfg.lua");
    std::fs::write(
        &file,
        b"-- Jos\xe9's master\nlocal c = BuildmasterConfig\nc['title'] = 'Caf\xe9'\n",
    )
    .unwrap();
    let loaded = load_path(&file).unwrap();
    assert_eq!(loaded.config.title, "Caf\u{fffd}");
}

#[test]
fn refused_functions_name_their_line_and_what_to_use_instead() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let victim = victim.to_str().unwrap();
    let cases = [
        ("os.exit(7)", "os.exit is not available in a config: it would stop the master; call error(message) to report a problem".to_string()),
        (&format!("os.execute('rm {victim}')"), "os.execute is not available in a config: it would run a command on the master's machine; run commands in a build step (steps.ShellCommand)".into()),
        ("io.popen('ls')", "io.popen is not available in a config: it would run a command on the master's machine; run commands in a build step (steps.ShellCommand)".into()),
        (&format!("io.open('{victim}', 'w')"), "io.open(path, \"w\") is not available in a config: a config writes no file; open files for reading (io.open(path) or mode \"r\"), and write them in a build step".into()),
        (&format!("io.open('{victim}', 'r+')"), "io.open(path, \"r+\") is not available in a config: a config writes no file; open files for reading (io.open(path) or mode \"r\"), and write them in a build step".into()),
        (&format!("io.output('{victim}')"), "io.output(file) is not available in a config: a config writes no file; print() and io.write() write to the master's output".into()),
        (&format!("os.remove('{victim}')"), "os.remove is not available in a config: a config changes no file; change files in a build step (steps.ShellCommand)".into()),
        (&format!("os.rename('{victim}', '{victim}2')"), "os.rename is not available in a config: a config changes no file; change files in a build step (steps.ShellCommand)".into()),
        ("os.tmpname()", "os.tmpname is not available in a config: it creates a file; keep the data in Lua values".into()),
        ("io.tmpfile()", "io.tmpfile is not available in a config: it creates a file; keep the data in Lua values".into()),
        ("io.read('l')", "io.read is not available in a config: a config does not read standard input; read a file with io.open(path) or io.lines(path)".into()),
        ("io.input():read('l')", "io.input() is not available in a config: a config does not read standard input; read a file with io.open(path) or io.lines(path)".into()),
        ("io.lines()", "io.lines() is not available in a config: a config does not read standard input; read a file with io.open(path) or io.lines(path)".into()),
        ("dofile()", "dofile() is not available in a config: a config does not read standard input; read a file with io.open(path) or io.lines(path)".into()),
        ("io.open('/dev/stdin')", "io.open: '/dev/stdin' is not a regular file; a config reads regular files only".into()),
        ("os.setlocale('C')", "os.setlocale(locale) is not available in a config: it would change the whole master's locale; os.setlocale() reads it".into()),
        ("debug.sethook()", "debug.sethook is not available in a config: of the debug library, a config has debug.traceback only".into()),
        ("debug.getinfo(1)", "debug.getinfo is not available in a config: of the debug library, a config has debug.traceback only".into()),
        ("load(string.dump(function() end), 'x', 'b')", "load(..., \"b\") is not available in a config: a config loads text chunks only (mode \"t\")".into()),
        ("package.loadlib('libc.so.6', 'exit')", "package.loadlib is not available in a config: a config loads no C code; write the module in Lua".into()),
        ("setmetatable({}, {__gc = function() end})", "setmetatable with a __gc metamethod is not available in a config: finalizers run where the time limit cannot stop them; release what you hold explicitly".into()),
    ];
    for (call, message) in cases {
        // The refusal is an error like any other: a pcall sees it, and then it stops the load.
        let source = format!(
            "local c = BuildmasterConfig\nlocal ok, why = pcall(function() return {call} end)\nassert(not ok and why:find('is not') or why:find('not a regular'), why)\n{call}\n"
        );
        assert_eq!(
            errors_with(&source, QUICK),
            format!("master.cfg.lua:4: {message}\n"),
            "{call}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim")).unwrap(),
        "keep me"
    );
    assert!(!dir.path().join("victim2").exists());
}

#[test]
fn what_configs_need_still_works_and_modules_load_as_text_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "s3cret\nsecond line\n").unwrap();
    std::fs::write(
        dir.path().join("helpers.lua"),
        "return { greet = function(who) return 'hello ' .. who end }\n",
    )
    .unwrap();
    let binary = mlua::Lua::new()
        .load("return {}")
        .into_function()
        .unwrap()
        .dump(false);
    std::fs::write(dir.path().join("compiled.lua"), binary).unwrap();
    let base = dir.path().to_str().unwrap();
    let source = format!(
        r#"
local c = BuildmasterConfig
local f = assert(io.open("{base}/password"))
local password = f:read("l")
f:close()
assert(password == "s3cret")
assert(io.open("{base}/password", "r"):read("a"):find("second"))
local count = 0
for line in io.lines("{base}/password") do count = count + 1 end
assert(count == 2)
assert(io.open("{base}/nothing here") == nil)
io.input("{base}/password")
assert(io.read("l") == "s3cret")
assert(os.getenv("PATH") and os.time() > 0 and os.date("%Y"):match("^%d+$") and os.clock() >= 0)
assert(os.setlocale() and string.format("%5.1f", math.pi) == "  3.1" and utf8.char(233) == "é")
assert(table.concat({{1, 2}}, ",") == "1,2")
assert(debug.traceback("here"):find("stack traceback"))
assert(load("return 1 + 1")() == 2)
assert(load(string.dump(function() end)) == nil)
package.path = "{base}/?.lua"
assert(require("helpers").greet("moon") == "hello moon")
io.write("")
c['title'] = password
local ok, why = pcall(require, "compiled")
assert(not ok)
error(why, 0)
"#
    );
    let errors = errors_with(&source, QUICK);
    assert_eq!(
        errors,
        format!("master.cfg.lua:24: error loading module 'compiled' from file '{base}/compiled.lua': attempt to load a binary chunk (mode is 't')\n")
    );
}

// ---- the real binary ------------------------------------------------------------------

fn moonbot(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn master_config(extra: &str) -> String {
    format!(
        r#"local c = BuildmasterConfig
c['workers'] = {{ worker.LocalWorker("local") }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "say", command = {{ "echo", util.renderer(function() return "hi" end) }} }})
c['builders'] = {{ util.BuilderConfig{{ name = "b", workernames = {{ "local" }}, factory = f }} }}
{extra}
"#
    )
}

#[test]
fn a_running_master_refuses_configs_that_loop_keeps_its_own_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let dir_arg = base.to_str().unwrap();
    std::fs::write(base.join("master.cfg.lua"), master_config("")).unwrap();
    let (ok, said) = moonbot(&["start", dir_arg]);
    assert!(ok, "{said}");
    let another = "c['builders']:append(util.BuilderConfig{ name = 'other', workernames = { 'local' }, factory = f })\n";
    for looping in [
        "pcall(function() while true do end end) -- LOOP",
        "coroutine.wrap(function() while true do end end)() -- LOOP",
        "setmetatable({}, {__gc = function() while true do end end}) -- LOOP\ncollectgarbage()",
        "pcall(os.execute, 'kill -9 $PPID') -- LOOP\nos.execute('kill -9 $PPID')",
    ] {
        let config = master_config(&format!("{another}{looping}"));
        let at = line_of(&config, "-- LOOP") + usize::from(looping.starts_with("pcall(os.execute"));
        std::fs::write(base.join("master.cfg.lua"), &config).unwrap();
        let started = Instant::now();
        let (ok, said) = moonbot(&["reconfig", dir_arg]);
        assert!(!ok, "{said}");
        assert!(
            said.contains(&format!("master.cfg.lua:{at}: ")),
            "{looping}: no line {at} in\n{said}"
        );
        assert!(
            said.contains("reconfig aborted without changes: 1 error"),
            "{said}"
        );
        // The evaluation limit, plus the time the command takes to see the outcome.
        assert!(started.elapsed() < Duration::from_secs(20), "{looping}");
        assert_eq!(
            sql(base, "SELECT name FROM builders WHERE active = 1"),
            vec![json!(["b"])],
            "the old config stays"
        );
    }
    std::fs::write(base.join("master.cfg.lua"), master_config(another)).unwrap();
    let (ok, said) = moonbot(&["reconfig", dir_arg]);
    assert!(ok, "{said}");
    let (ok, said) = moonbot(&["stop", dir_arg]);
    assert!(ok, "{said}");
    assert!(!base.join("moonbot.pid").exists());
}

fn spawn_master(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .args(["start", "--nodaemon"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .env("MOONBOT_LOG", "info")
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forces a build of `b` through JSON-RPC, retrying while the master starts.
fn force(web_port: u16) {
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                      "params": {"builderid": 1, "username": "me <me@example.org>"}});
    let url = format!("http://127.0.0.1:{web_port}/api/v2/forceschedulers/force");
    let client = reqwest::Client::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = runtime.block_on(client.post(&url).json(&body).send());
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "the master never took the force");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_mail(server: &SmtpServer, count: usize) -> Vec<ReceivedMail> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.wait_for(count, WAIT))
}

#[test]
fn formatters_that_exit_or_loop_in_a_finalizer_give_way_to_the_built_in_message() {
    let server = SmtpServer::start(SmtpOptions::default());
    let web = free_port();
    let port = server.port();
    let notifier = |name: &str, formatter: &str| {
        format!(
            "c['status']:append(status.MailNotifier{{name = '{name}', fromaddr = 'bb@example.org', \
             relayhost = '127.0.0.1', smtpPort = {port}, sendToInterestedUsers = false, \
             extraRecipients = {{ '{name}@example.org' }}, mode = {{ 'all' }}, \
             messageFormatter = function() {formatter} end}})\n"
        )
    };
    let extra = format!(
        "c['lua'] = {{ timeout = 0.5 }}\n\
         c['www'] = {{ port = {web} }}\n\
         c['outbox'] = {{ retryDelay = 0.1 }}\n\
         c['schedulers'] = {{ schedulers.ForceScheduler{{ name = 'force', builderNames = {{ 'b' }} }} }}\n\
         {}{}",
        notifier("exit", "os.exit(7)"),
        notifier(
            "finalizer",
            "setmetatable({}, {__gc = function() while true do end end}) collectgarbage() return {body = 'x'}"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.cfg.lua"), master_config(&extra)).unwrap();
    let mut master = spawn_master(dir.path());
    force(web);
    let mails = wait_for_mail(&server, 2);
    let mut to: Vec<&str> = mails
        .iter()
        .map(|m| m.header("To").unwrap_or_default())
        .collect();
    to.sort();
    assert_eq!(to, ["exit@example.org", "finalizer@example.org"]);
    for mail in &mails {
        assert!(
            mail.parts[0]
                .content
                .contains("The Buildbot has detected a passing build on builder b"),
            "{}",
            mail.raw
        );
    }
    // The master lives on: a second build mails again, and its renderer still runs.
    force(web);
    assert_eq!(wait_for_mail(&server, 4).len(), 4);
    assert!(master.try_wait().unwrap().is_none(), "the master exited");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        log.contains("os.exit is not available in a config"),
        "{log}"
    );
    assert!(log.contains("setmetatable with a __gc metamethod"), "{log}");
    master.kill().unwrap();
    master.wait().unwrap();
}
