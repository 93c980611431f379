//! The pages in a real browser: Debian's Chromium, headless, started by the test (for a page
//! and its console) or driven through chromedriver with fantoccini (for live updates).
//! `scripts/test` installs both.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

mod support;

use support::{complete, submit, TestMaster};

/// Flags Chromium needs to run headless as root in a container, with nothing of its own
/// talking to the network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A builder whose second step waits until the file `GO` appears, so a test decides when
/// its build ends.
fn config(gate: &Path) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("bot1"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "greet", command = {{ "sh", "-c", "printf '\\033[32mhello\\033[0m\\n'" }} }})
f:addStep(steps.ShellCommand{{ name = "gate",
  command = {{ "sh", "-c", "while [ ! -e '{gate}' ]; do sleep 0.05; done" }} }})
c['builders']:append(util.BuilderConfig{{ name = "linux", workernames = {{ "bot1" }}, factory = f }})
c['status']:append(status.WebStatus{{ http_port = "tcp:0:interface=127.0.0.1" }})
"#,
        gate = gate.join("GO").display()
    )
}

fn base(master: &TestMaster) -> String {
    format!("http://{}", master.web_address.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_in_chromium_without_a_console_message() {
    let gate = tempfile::tempdir().unwrap();
    std::fs::write(gate.path().join("GO"), "").unwrap();
    let master = TestMaster::start(&config(gate.path())).await;
    let bsid = submit(&master, &["linux"], &[]).await;
    complete(&master, bsid).await;
    for (path, heading) in [
        ("/", "Welcome to"),
        ("/builders", "Builders"),
        ("/waterfall", "Waterfall"),
        (
            "/waterfall?show_events=true",
            r#"<span class="event">connect <a href="/workers/bot1">bot1</a>"#,
        ),
        ("/builders/linux", "Builder linux"),
        ("/builders/linux/builds/1", "build #1"),
        (
            "/builders/linux/builds/1/steps/0/logs/stdio",
            "greet / stdio",
        ),
        ("/changes", "Changes"),
        ("/workers", "Workers"),
        ("/one_line_per_build", "Recent builds"),
        ("/about", "About"),
        ("/console", "Console"),
        ("/grid", "Grid"),
        ("/tgrid", "Transposed grid"),
        ("/one_box_per_builder", "Builders at a glance"),
        ("/builders/linux/builds/1/steps/0", "step greet"),
        ("/buildstatus?builder=linux&number=1", "linux #1"),
        ("/json/help", "The JSON status"),
    ] {
        let (dom, log) = dump_dom(&format!("{}{path}", base(&master))).await;
        assert!(dom.contains(heading), "{path} shows '{heading}': {dom}");
        let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "{path}: console messages {console:?}");
    }
}

/// The DOM headless Chromium makes of `url`, and its log.
async fn dump_dom(url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(url)
        .output()
        .await
        .expect("chromium runs (scripts/test installs it)");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{url}: {log}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), log)
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_show_their_builds_with_javascript_off() {
    let gate = tempfile::tempdir().unwrap();
    std::fs::write(gate.path().join("GO"), "").unwrap();
    let master = TestMaster::start(&config(gate.path())).await;
    let bsid = submit(&master, &["linux"], &[]).await;
    complete(&master, bsid).await;
    // A page whose script rewrites it shows whether scripts ran (public_html is served).
    let public = master.dir().join("public_html");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(
        public.join("probe.html"),
        "<body><p id=p>still</p><script>document.getElementById('p').textContent='scripts ran'</script></body>",
    )
    .unwrap();
    let (_driver, client, _profile) = browser(false).await;
    client
        .goto(&format!("{}/probe.html", base(&master)))
        .await
        .unwrap();
    let probe = client.find(Locator::Id("p")).await.unwrap();
    assert_eq!(probe.text().await.unwrap(), "still", "scripts are off");
    for (path, shows) in [
        (
            "/waterfall",
            "a.result.success[href='/builders/linux/builds/1']",
        ),
        ("/builders/linux/builds/1", "li.step.success"),
        (
            "/builders/linux/builds/1/steps/0/logs/stdio",
            "pre.log span.stdout",
        ),
        ("/console", "table.console"),
        ("/grid", "a.result.success[href='/builders/linux/builds/1']"),
        (
            "/builders",
            "a.result.success[href='/builders/linux/builds/1']",
        ),
        (
            "/builders/linux",
            "a.result.success[href='/builders/linux/builds/1']",
        ),
    ] {
        client
            .goto(&format!("{}{path}", base(&master)))
            .await
            .unwrap();
        client
            .find(Locator::Css(shows))
            .await
            .unwrap_or_else(|e| panic!("{path} shows {shows} without JavaScript: {e}"));
    }
    client.close().await.unwrap();
}

/// A chromedriver on a free port, killed with the test.
async fn chromedriver() -> (tokio::process::Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver runs (scripts/test installs it)");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver does not listen on {port}");
}

/// A browser session through a fresh chromedriver, with JavaScript on or off; the driver
/// lives as long as the first value.
async fn browser(
    javascript: bool,
) -> (tokio::process::Child, fantoccini::Client, tempfile::TempDir) {
    let (driver, driver_url) = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": args,
            // 2 blocks scripts of every page; the driver's own commands still run.
            "prefs": { "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 } },
        }),
    );
    // The driver is reached over plain HTTP, but the TLS configuration is built anyway.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .expect("a TLS configuration")
        .capabilities(capabilities)
        .connect(&driver_url)
        .await
        .expect("a browser session");
    (driver, client, profile)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_waterfall_shows_a_new_build_and_its_end_without_a_reload() {
    let gate = tempfile::tempdir().unwrap();
    let master = TestMaster::start(&config(gate.path())).await;
    let (_driver, client, _profile) = browser(true).await;
    client
        .goto(&format!("{}/waterfall?show_events=false", base(&master)))
        .await
        .unwrap();
    client
        .find(Locator::XPath("//td[contains(., 'No builds yet.')]"))
        .await
        .expect("an empty waterfall first");
    let bsid = submit(&master, &["linux"], &[]).await;
    let running = "a.result.running[href='/builders/linux/builds/1']";
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(running))
        .await
        .expect("the running build appears without a reload");
    assert_eq!(text_of(&client, running).await, "#1");
    std::fs::write(gate.path().join("GO"), "").unwrap();
    complete(&master, bsid).await;
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(
            "a.result.success[href='/builders/linux/builds/1']",
        ))
        .await
        .expect("the build turns green without a reload");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_builds_page_follows_it_live_until_it_finishes() {
    let gate = tempfile::tempdir().unwrap();
    let master = TestMaster::start(&config(gate.path())).await;
    let (_driver, client, _profile) = browser(true).await;

    let bsid = submit(&master, &["linux"], &[]).await;
    // Wait until the build waits at its gate.
    let running = async {
        loop {
            let text = reqwest::get(format!("{}/api/v2/builds/1/steps/1", base(&master)))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains("\"started_at\": 1") || text.contains("\"started_at\":1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the build reaches its gate");
    client
        .goto(&format!("{}/builders/linux/builds/1", base(&master)))
        .await
        .unwrap();
    assert_eq!(text_of(&client, "h1 .result").await, "running");

    std::fs::write(gate.path().join("GO"), "").unwrap();
    complete(&master, bsid).await;
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("h1 .result.success"))
        .await
        .expect("the page shows the build's success without a reload");
    // The live page may replace the header again between finding and reading it.
    assert_eq!(text_of(&client, "h1 .result.success").await, "success");
    let mut green_steps = 0;
    for _ in 0..100 {
        green_steps = client
            .find_all(Locator::Css("li.step.success"))
            .await
            .unwrap()
            .len();
        if green_steps == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(green_steps, 2, "both steps turned green");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_without_rights_sees_no_force_button_and_a_forged_post_gets_403() {
    let master = TestMaster::start(
        r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("bot1"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "true" } })
c['builders']:append(util.BuilderConfig{ name = "linux", workernames = { "bot1" }, factory = f })
c['schedulers']:append(schedulers.ForceScheduler{ name = "force", builderNames = { "linux" } })
c['status']:append(status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1",
  authz = util.Authz{ auth = util.BasicAuth({{ "bob", "pw" }}), forceBuild = "auth" } })
"#,
    )
    .await;
    let (_driver, client, _profile) = browser(true).await;
    let page = format!("{}/builders/linux", base(&master));
    client.goto(&page).await.unwrap();
    let force = Locator::Css("form[action='/builders/linux/force'] button");
    assert!(
        client.find_all(force).await.unwrap().is_empty(),
        "an anonymous visitor sees no force button"
    );
    // Another page's script posting the form without this session's token.
    let forged = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/builders/linux/force', { method: 'POST',
               headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
               body: 'forcescheduler=force' })
               .then(r => r.text().then(t => done([r.status, t])));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(forged[0], 403);
    let body: serde_json::Value = serde_json::from_str(forged[1].as_str().unwrap()).unwrap();
    assert_eq!(
        body["error"],
        "forceBuild: the form's CSRF token is missing or wrong"
    );

    client
        .find(Locator::LinkText("Login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = client.form(Locator::Css("form.login")).await.unwrap();
    form.set_by_name("username", "bob").await.unwrap();
    form.set_by_name("passwd", "pw").await.unwrap();
    client
        .find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The click returns before the login's redirect has loaded the page again.
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.current_url().await.unwrap().as_str() != page {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the login did not lead back to the builder page");
    let user = client.find(Locator::Css(".login")).await.unwrap();
    assert!(user.text().await.unwrap().starts_with("bob"));
    client.find(force).await.unwrap().click().await.unwrap();
    let forced = async {
        loop {
            let builds: serde_json::Value =
                reqwest::get(format!("{}/api/v2/builds?property=owner", base(&master)))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            // A build's properties are written just after it starts.
            let owner = &builds["builds"][0]["properties"]["owner"][0];
            if !owner.is_null() {
                return owner.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let owner = tokio::time::timeout(Duration::from_secs(30), forced)
        .await
        .expect("the force button starts a build");
    assert_eq!(owner, "bob");
    client.close().await.unwrap();
}

/// The text of the element `css` selects. A live page replaces its content when an event
/// arrives, which can happen between finding an element and reading it: read it again.
async fn text_of(client: &fantoccini::Client, css: &str) -> String {
    for _ in 0..20 {
        let element = client.find(Locator::Css(css)).await.unwrap();
        match element.text().await {
            Ok(text) => return text,
            Err(fantoccini::error::CmdError::Standard(error))
                if error.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("cannot read {css}: {error}"),
        }
    }
    panic!("{css} was replaced on every read");
}
