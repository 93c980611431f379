//! The WebStatus pages of a real master over real builds: golden HTML (times and CSRF
//! tokens masked), the options the pages apply, a long log's paging and text, templates and
//! `public_html` from the base directory, and `/sse` carrying the bus.

use std::time::Duration;

use moonbot::db::ChangeSpec;
use serde_json::Value;

mod support;

use support::{complete, golden, submit, TestMaster};

/// Two builders that build (one succeeds with coloured output on stdout and stderr, one
/// fails), one that never builds, and the link options of the change pages.
const CONFIG: &str = r##"
local c = BuildmasterConfig
c['title'] = "Frobnicator"
c['titleURL'] = "https://frob.example.org/"
c['workers']:append(worker.LocalWorker("bot1"))
c['workers']:append(worker.LocalWorker("bot2"))
local ok = util.BuildFactory()
ok:addStep(steps.ShellCommand{ name = "greet",
  command = { "sh", "-c", "printf 'plain <b>\\n\\033[1;32mgreen\\033[0m done\\n'; echo oops >&2" } })
ok:addStep(steps.ShellCommand{ name = "count", command = { "seq", "1", "2500" } })
local bad = util.BuildFactory()
bad:addStep(steps.ShellCommand{ name = "fail", command = { "false" } })
c['builders']:append(util.BuilderConfig{ name = "linux", workernames = { "bot1" }, factory = ok,
  tags = { "unix" }, description = "builds on Linux" })
c['builders']:append(util.BuilderConfig{ name = "mac", workernames = { "bot1" }, factory = bad })
c['builders']:append(util.BuilderConfig{ name = "windows", workernames = { "bot2" }, factory = bad })
c['status']:append(status.WebStatus{
  http_port = "tcp:0:interface=127.0.0.1",
  numbuilds = 5,
  num_events_max = 2,
  revlink = "https://git.example.org/commit/%s",
  changecommentlink = { "#(\\d+)", "https://bugs.example.org/\\1", "Bug" },
  projects = { frob = "https://frob.example.org/project" },
  repositories = { ["https://example.org/frob.git"] = "https://example.org/frob" },
})
"##;

struct Site {
    master: TestMaster,
    base: String,
    client: reqwest::Client,
}

impl Site {
    async fn start(config: &str) -> Site {
        let master = TestMaster::start(config).await;
        let base = format!(
            "http://{}",
            master.web_address.expect("the web server listens")
        );
        Site {
            master,
            base,
            client: reqwest::Client::new(),
        }
    }

    /// The page's status, content type and body.
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        (status, content_type, response.text().await.unwrap())
    }

    /// An HTML page that must be there, with its times and base directory masked.
    async fn page(&self, path: &str) -> String {
        let (status, content_type, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(content_type, "text/html; charset=utf-8", "{path}");
        mask(&body, &self.master.dir().display().to_string())
    }
}

/// Times and durations change from run to run; the base directory too.
fn mask(html: &str, basedir: &str) -> String {
    let times = regex::Regex::new(r"<time>[^<]*</time>").unwrap();
    let durations = regex::Regex::new(r#"<span class="duration">[^<]*</span>"#).unwrap();
    let html = times.replace_all(html, "<time>TIME</time>");
    let token = regex::Regex::new(r#"<meta name="csrf-token" content="[^"]*">"#).unwrap();
    let html = token.replace_all(&html, r#"<meta name="csrf-token" content="CSRF">"#);
    let html = durations.replace_all(&html, r#"<span class="duration">DURATION</span>"#);
    // A command's environment, in its log's header, is the test runner's.
    let environment = regex::Regex::new(r#"<span class="header">  \w+=[^\n]*\n</span>"#).unwrap();
    let html = environment.replace_all(&html, "");
    html.replace(basedir, "BASEDIR")
        .replace(env!("CARGO_PKG_VERSION"), "VERSION")
}

/// The fixed history: linux #1 and #2 succeed, mac #1 fails, one change.
async fn history(site: &Site) {
    for builders in [&["linux", "mac"][..], &["linux"][..]] {
        let bsid = submit(&site.master, builders, &[]).await;
        complete(&site.master, bsid).await;
    }
    moonbot::changes::submit(
        &site.master.context,
        ChangeSpec {
            author: "alice <alice@example.org>".into(),
            comments: "fix the frobnicator, closes #42 <for real>".into(),
            branch: Some("main".into()),
            revision: Some("0123456789abcdef".into()),
            when: Some(1_700_000_000.0),
            repository: "https://example.org/frob.git".into(),
            project: "frob".into(),
            files: vec!["src/frob.c".into()],
            ..ChangeSpec::default()
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_over_real_builds_match_their_golden_html() {
    let site = Site::start(CONFIG).await;
    history(&site).await;
    // The header's length and the elapsed time vary with the environment.
    let counts = regex::Regex::new(r"Lines \d+&ndash;\d+ of \d+|elapsedTime=[0-9.]+").unwrap();
    for (path, name) in [
        ("/", "root"),
        ("/about", "about"),
        ("/builders", "builders"),
        ("/builders/linux", "builder"),
        ("/builders/linux/builds/2", "build"),
        ("/builders/mac/builds/1", "build_failed"),
        ("/builders/linux/builds/2/steps/0/logs/stdio", "log"),
        ("/changes", "changes"),
        ("/changes/1", "change"),
        ("/workers", "workers"),
        ("/one_line_per_build", "one_line_per_build"),
        ("/one_line_per_build?builder=mac", "one_line_per_build_mac"),
        ("/waterfall", "waterfall"),
        ("/waterfall?tag=unix&branch=main", "waterfall_unix_main"),
    ] {
        let page = site.page(path).await;
        let page = counts.replace_all(&page, "MASKED");
        golden::check(format!("tests/golden/web/{name}.html"), &page);
    }
    assert_eq!(
        site.page("/buildslaves").await,
        site.page("/workers").await,
        "/buildslaves is the 0.8 name of /workers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_log_opens_on_its_last_page_and_streams_as_plain_text() {
    let site = Site::start(CONFIG).await;
    let bsid = submit(&site.master, &["linux"], &[]).await;
    complete(&site.master, bsid).await;
    let log = "/builders/linux/builds/1/steps/1/logs/stdio";

    let last = site.page(log).await;
    // The log holds the command's header lines, then 2500 numbers.
    let pager = regex::Regex::new(r"Lines (\d+)&ndash;(\d+) of (\d+)\.").unwrap();
    let numbers = |page: &str| -> Vec<i64> {
        let c = pager.captures(page).expect("a pager line");
        (1..=3).map(|i| c[i].parse().unwrap()).collect()
    };
    let [from, to, total] = numbers(&last)[..] else {
        unreachable!()
    };
    assert_eq!((from, to), (total - 999, total), "the last 1000 lines");
    assert!(
        last.contains(">2500\n</span>"),
        "the last line is on the first screen"
    );
    assert!(!last.contains(">1500\n</span>"), "an earlier page is not");
    let first = site.page(&format!("{log}?first=0")).await;
    assert!(first.contains(">1\n</span>") && !first.contains(">1001\n</span>"));

    let (status, content_type, text) = site.get(&format!("{log}/text")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/plain; charset=utf-8")
    );
    let numbers: Vec<&str> = text.lines().filter(|l| l.parse::<u32>().is_ok()).collect();
    assert_eq!(numbers.len(), 2500, "every line, streamed in pieces");

    let (_, _, greet) = site
        .get("/builders/linux/builds/1/steps/0/logs/stdio/text")
        .await;
    assert!(greet.contains("plain <b>\ngreen done\noops\n"), "{greet:?}");
    assert!(
        !greet.contains('\x1b'),
        "no escape sequence in the plain text"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn numbuilds_from_the_url_or_the_config_bounds_a_builders_list() {
    let site = Site::start(CONFIG).await;
    for _ in 0..3 {
        let bsid = submit(&site.master, &["mac"], &[]).await;
        complete(&site.master, bsid).await;
    }
    let listed = |page: &str| page.matches("href=\"/builders/mac/builds/").count();
    assert_eq!(listed(&site.page("/builders/mac").await), 3);
    assert_eq!(listed(&site.page("/builders/mac?numbuilds=2").await), 2);
    let few = CONFIG.replace("numbuilds = 5", "numbuilds = 1");
    let small = Site::start(&few).await;
    let bsid = submit(&small.master, &["mac"], &[]).await;
    complete(&small.master, bsid).await;
    let bsid = submit(&small.master, &["mac"], &[]).await;
    complete(&small.master, bsid).await;
    assert_eq!(listed(&small.page("/builders/mac").await), 1);
    let (status, _, body) = site.get("/builders/mac?numbuilds=many").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("numbuilds=many: expected a number of items"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_waterfall_shows_num_events_builds_at_most_num_events_max() {
    let site = Site::start(CONFIG).await;
    for _ in 0..3 {
        let bsid = submit(&site.master, &["mac"], &[]).await;
        complete(&site.master, bsid).await;
    }
    let shown = |page: &str| page.matches("href=\"/builders/mac/builds/").count();
    assert_eq!(
        shown(&site.page("/waterfall").await),
        2,
        "num_events_max = 2"
    );
    assert_eq!(shown(&site.page("/waterfall?num_events=1").await), 1);
    assert_eq!(shown(&site.page("/waterfall?num_events=50").await), 2);
    assert_eq!(shown(&site.page("/waterfall?builder=linux").await), 0);
    assert_eq!(shown(&site.page("/waterfall?branch=other").await), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_and_public_html_of_the_base_directory_replace_the_built_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/root.html"),
        "{% extends \"base.html\" %}{% block content %}<p>Our own welcome to {{ title }}</p>{% endblock %}",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("htdocs")).unwrap();
    std::fs::write(
        dir.path().join("htdocs/robots.txt"),
        "User-agent: *\nDisallow: /\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("htdocs/logo.svg"), "<svg/>").unwrap();
    let config = CONFIG.replace("numbuilds = 5,", "numbuilds = 5, public_html = \"htdocs\",");
    let master = support::start(dir.path(), &config).await;
    let base = format!("http://{}", master.web_address.unwrap());
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            let kind = response.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string();
            (status, kind, response.text().await.unwrap())
        }
    };
    let (_, _, root) = get("/").await;
    assert!(
        root.contains("<p>Our own welcome to Frobnicator</p>"),
        "{root}"
    );
    assert!(
        root.contains("<a href=\"/builders\">Builders</a>"),
        "base.html stays built in"
    );
    assert_eq!(get("/robots.txt").await.2, "User-agent: *\nDisallow: /\n");
    assert_eq!(
        get("/logo.svg").await,
        (200, "image/svg+xml".into(), "<svg/>".into())
    );
    let (status, kind, css) = get("/default.css").await;
    assert_eq!((status, kind.as_str()), (200, "text/css; charset=utf-8"));
    assert!(css.contains(".failure"), "the built-in stylesheet");
    assert_eq!(get("/../master.cfg.lua").await.0, 404);
    assert_eq!(get("/nothing/here").await.0, 404);
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_things_that_do_not_exist_are_404_with_a_page_that_says_so() {
    let site = Site::start(CONFIG).await;
    for (path, says) in [
        ("/builders/nope", "no builder named &#39;nope&#39;"),
        (
            "/builders/linux/builds/9",
            "no build 9 of builder &#39;linux&#39;",
        ),
        (
            "/builders/linux/builds/9/steps/0/logs/stdio",
            "no log &#39;stdio&#39;",
        ),
        ("/changes/77", "no change 77"),
    ] {
        let (status, kind, body) = site.get(path).await;
        assert_eq!(
            (status, kind.as_str()),
            (404, "text/html; charset=utf-8"),
            "{path}"
        );
        assert!(body.contains(says), "{path}: {body}");
    }
}

/// Reads server-sent events until one whose data has `key`; their data, in order.
async fn events_until(response: &mut reqwest::Response, key: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut buffer = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let data: Value = serde_json::from_str(data).unwrap();
                let done = data["key"] == key;
                seen.push(data);
                if done {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event {key} in {seen:?}"));
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_listen_carries_the_bus_events_under_its_path_only() {
    let site = Site::start(CONFIG).await;
    let mut stream = site
        .client
        .get(format!("{}/sse/listen/builders/*/builds", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.headers()[reqwest::header::CONTENT_TYPE],
        "text/event-stream"
    );
    let bsid = submit(&site.master, &["mac"], &[]).await;
    complete(&site.master, bsid).await;
    let macid = site.master.context.db.builder_id("mac").await.unwrap();
    let finished = format!("builders/{macid}/builds/1/finished");
    let events = events_until(&mut stream, &finished).await;
    let keys: Vec<&str> = events.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert!(
        keys.iter().all(|k| k.starts_with("builders/")),
        "only keys under the path: {keys:?}"
    );
    assert!(
        keys.contains(&format!("builders/{macid}/builds/1/new").as_str()),
        "{keys:?}"
    );
    assert_eq!(events.last().unwrap()["message"]["results"], 2);
}

/// The next text message of a WebSocket, as JSON.
async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket stays open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ws_answers_commands_and_sends_the_events_of_consumed_paths() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let site = Site::start(CONFIG).await;
    let url = format!("{}/ws", site.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let send = |text: &str| Message::Text(text.to_string().into());
    socket
        .send(send(r#"{"cmd": "ping", "_id": 1}"#))
        .await
        .unwrap();
    socket
        .send(send(
            r#"{"cmd": "startConsuming", "path": "builds/*/finished", "_id": 2}"#,
        ))
        .await
        .unwrap();
    socket
        .send(send(r#"{"cmd": "frobnicate", "_id": 3}"#))
        .await
        .unwrap();
    socket
        .send(send(
            r#"{"cmd": "stopConsuming", "path": "changes/*/new", "_id": 4}"#,
        ))
        .await
        .unwrap();
    let mut received = Vec::new();
    for _ in 0..4 {
        received.push(next_json(&mut socket).await);
    }
    assert_eq!(
        received,
        [
            serde_json::json!({"_id": 1, "code": 200}),
            serde_json::json!({"_id": 2, "code": 200}),
            serde_json::json!({"_id": 3, "code": 404, "error": "no such command 'frobnicate'"}),
            serde_json::json!({"_id": 4, "code": 400, "error": "path was not consumed"}),
        ]
    );
    let bsid = submit(&site.master, &["mac"], &[]).await;
    complete(&site.master, bsid).await;
    let event = next_json(&mut socket).await;
    let key = event["k"].as_str().unwrap();
    assert!(
        key.starts_with("builds/") && key.ends_with("/finished"),
        "only the consumed path, the whole key matched: {event}"
    );
    assert_eq!(event["m"]["results"], 2, "the build's message: {event}");
}
