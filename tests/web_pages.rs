//! The WebStatus pages of a real master over real builds: golden HTML (times and CSRF
//! tokens masked), the options the pages apply, a long log's paging and text, templates and
//! `public_html` from the base directory, and `/sse` carrying the bus.

use std::time::Duration;

use moonbot::db::ChangeSpec;
use serde_json::Value;

#[path = "support/master_process.rs"]
mod master_process;
mod support;

use support::{complete, golden, submit, TestMaster};

/// Two builders that build (one succeeds with coloured output on stdout and then, a moment
/// later so that the two pipes' order is fixed, stderr; one fails), one that never builds, and the link options of the change pages.
const CONFIG: &str = r##"
local c = BuildmasterConfig
c['title'] = "Frobnicator"
c['titleURL'] = "https://frob.example.org/"
c['workers']:append(worker.LocalWorker("bot1"))
c['workers']:append(worker.LocalWorker("bot2"))
local ok = util.BuildFactory()
ok:addStep(steps.ShellCommand{ name = "greet",
  command = { "sh", "-c", "printf 'plain <b>\\n\\033[1;32mgreen\\033[0m done\\n'; sleep 0.3; echo oops >&2" } })
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
    // One build at a time, so that build ids (and the pages' order) are the same each run.
    for builders in [&["linux"][..], &["mac"][..], &["linux"][..]] {
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
        (
            "/waterfall?builder=windows&show_events=true",
            "waterfall_events",
        ),
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
    // stdout and stderr are read apart, so "oops" may come before or after the rest.
    assert!(
        greet.contains("plain <b>\ngreen done\n") && greet.contains("oops\n"),
        "{greet:?}"
    );
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
                // The handshake (its UUID) and keep-alives are not bus events.
                if !event.lines().any(|l| l == "event: event") {
                    continue;
                }
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
            serde_json::json!({"_id": 1, "msg": "pong", "code": 200}),
            serde_json::json!({"_id": 2, "msg": "OK", "code": 200}),
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

/// Stores a change with `revision` by `author` and builds its sourcestamp on `builders`,
/// as a scheduler would; waits for the builds.
async fn build_change(site: &Site, author: &str, revision: &str, builders: &[&str]) -> i64 {
    use moonbot::data::{publish, Resource};
    use moonbot::db::BuildsetSpec;
    let ctx = &site.master.context;
    let changeid = moonbot::changes::submit(
        ctx,
        ChangeSpec {
            author: author.into(),
            comments: format!("{revision}: fixes #7"),
            branch: Some("main".into()),
            revision: Some(revision.into()),
            when: Some(1_700_000_000.0),
            repository: "https://example.org/frob.git".into(),
            project: "frob".into(),
            ..ChangeSpec::default()
        },
    )
    .await
    .unwrap();
    let change = moonbot::data::changes::change(&ctx.db, changeid)
        .await
        .unwrap()
        .unwrap();
    // One builder at a time, so that build ids are the same each run.
    for name in builders {
        let spec = BuildsetSpec {
            reason: "change".into(),
            scheduler: "test".into(),
            sourcestamp_ids: vec![change["sourcestamp"]["ssid"].as_i64().unwrap()],
            builder_ids: vec![ctx.db.builder_id(name).await.unwrap()],
            ..Default::default()
        };
        let (bsid, brids) = ctx.db.add_buildset(&spec).await.unwrap();
        for brid in brids.values() {
            publish(&ctx.db, &ctx.bus, Resource::BuildRequest(*brid), "new")
                .await
                .unwrap();
        }
        complete(&site.master, bsid).await;
    }
    changeid
}

/// linux builds both changes; mac fails both (the first broke it, the second failed
/// again); windows builds neither.
async fn two_changes(site: &Site) {
    build_change(
        site,
        "alice <alice@example.org>",
        "aaaa1111",
        &["linux", "mac"],
    )
    .await;
    build_change(site, "bob <bob@example.org>", "bbbb2222", &["linux", "mac"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_grids_steps_and_boxes_match_their_golden_html() {
    let site = Site::start(CONFIG).await;
    two_changes(&site).await;
    // A log's length varies with the environment its header lists.
    let lines = regex::Regex::new(r"\(\d+ lines,").unwrap();
    for (path, name) in [
        ("/console", "console"),
        ("/grid", "grid"),
        ("/tgrid", "tgrid"),
        ("/one_box_per_builder", "one_box_per_builder"),
        ("/builders/linux/builds/1/steps/0", "step"),
        ("/buildstatus?builder=mac&number=2", "buildstatus"),
    ] {
        let page = site.page(path).await;
        let page = lines.replace_all(&page, "(LINES lines,");
        golden::check(format!("tests/golden/web/{name}.html"), &page);
    }
    let boxes = |page: &str| page.matches("class=\"result ").count();
    let console = site.page("/console").await;
    assert!(
        regex::Regex::new(r#"result failure" data-buildid="\d+" href="/builders/mac/builds/1""#)
            .unwrap()
            .is_match(&console)
            && regex::Regex::new(
                r#"result failed-again" data-buildid="\d+" href="/builders/mac/builds/2""#
            )
            .unwrap()
            .is_match(&console),
        "mac's first failure broke it, its second failed again: {console}"
    );
    let bob = site.page("/console?name=bob").await;
    assert!(
        bob.contains("bbbb2222") && !bob.contains("aaaa1111"),
        "{bob}"
    );
    assert_eq!(boxes(&site.page("/console?builder=linux").await), 2);
    assert_eq!(boxes(&site.page("/console?branch=other").await), 0);
    assert_eq!(
        boxes(
            &site
                .page("/console?project=frob&repository=https://example.org/frob.git")
                .await
        ),
        4
    );
    let asc = site.page("/tgrid?rev_order=asc").await;
    assert!(asc.find("aaaa1111").unwrap() < asc.find("bbbb2222").unwrap());
    let desc = site.page("/tgrid").await;
    assert!(desc.find("bbbb2222").unwrap() < desc.find("aaaa1111").unwrap());
    let narrow = site.page("/grid?width=1").await;
    assert!(
        narrow.contains("bbbb2222") && !narrow.contains("aaaa1111"),
        "{narrow}"
    );
    assert_eq!(boxes(&site.page("/grid?tag=unix").await), 2, "linux only");
    let (status, _, body) = site.get("/tgrid?rev_order=sideways").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = site.get("/buildstatus?builder=mac").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("number= is required"));
    let by_name = site.page("/builders/linux/builds/1/steps/greet").await;
    assert_eq!(by_name, site.page("/builders/linux/builds/1/steps/0").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn feeds_list_the_failed_builds_the_waterfalls_arguments_select() {
    let site = Site::start(CONFIG).await;
    two_changes(&site).await;
    let (status, kind, rss) = site.get("/rss").await;
    assert_eq!((status, kind.as_str()), (200, "application/rss+xml"));
    assert!(
        rss.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\""),
        "{rss}"
    );
    assert_eq!(
        rss.matches("<item>").count(),
        2,
        "mac's two failures: {rss}"
    );
    assert!(rss.contains("<title>mac build #2 failure</title>"), "{rss}");
    assert!(
        rss.contains("<link>http://localhost:8080/builders/mac/builds/2</link>"),
        "{rss}"
    );
    let (status, kind, atom) = site.get("/atom").await;
    assert_eq!((status, kind.as_str()), (200, "application/atom+xml"));
    assert_eq!(atom.matches("<entry>").count(), 2, "{atom}");
    assert!(atom.contains("<updated>20"), "{atom}");
    assert_eq!(
        site.get("/rss?builder=linux")
            .await
            .2
            .matches("<item>")
            .count(),
        0
    );
    assert_eq!(
        site.get("/atom?numbuilds=1")
            .await
            .2
            .matches("<entry>")
            .count(),
        1
    );
    assert_eq!(
        site.get("/rss?last_time=1000")
            .await
            .2
            .matches("<item>")
            .count(),
        0
    );

    let only_rss = CONFIG.replace(
        "numbuilds = 5,",
        "numbuilds = 5, provide_feeds = { 'rss' },",
    );
    let other = Site::start(&only_rss).await;
    assert_eq!(other.get("/rss").await.0, 200);
    assert_eq!(other.get("/atom").await.0, 404);
    assert_eq!(other.get("/json").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_answers_the_08_status_tree_with_its_flags() {
    let site = Site::start(CONFIG).await;
    two_changes(&site).await;
    let json = |path: &'static str| {
        let site = &site;
        async move {
            let (status, kind, body) = site.get(path).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(kind, "application/json", "{path}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let mac = json("/json/builders/mac").await;
    assert_eq!(mac["cachedBuilds"], serde_json::json!([1, 2]));
    assert_eq!(mac["slaves"], serde_json::json!(["bot1"]));
    assert_eq!(mac["pendingBuilds"], 0);
    assert_eq!(mac["state"], "idle");
    let last = json("/json/builders/mac/builds/-1").await;
    assert_eq!(last["number"], 2);
    assert_eq!(last["results"], 2);
    assert_eq!(last["slave"], "bot1");
    assert_eq!(last["sourceStamps"][0]["revision"], "bbbb2222");
    assert_eq!(last["blame"], serde_json::json!(["bob <bob@example.org>"]));
    let change = &last["sourceStamps"][0]["changes"][0];
    assert_eq!(change["who"], "bob <bob@example.org>");
    assert_eq!(change["rev"], "bbbb2222");
    assert_eq!(change["comments"], "bbbb2222: fixes #7");
    assert_eq!(change["at"], "Tue 14 Nov 2023 22:13:20");
    assert_eq!(last["eta"], Value::Null, "a finished build has no ETA");
    assert_eq!(last["steps"][0]["name"], "fail");
    assert_eq!(last["steps"][0]["results"][0], 2);
    assert_eq!(json("/json/builders/mac/builds/-2").await["number"], 1);
    assert_eq!(site.get("/json/builders/mac/builds/-3").await.0, 404);
    let newest = json("/json/builders/mac/builds?numbuilds=1").await;
    let numbers: Vec<&String> = newest.as_object().unwrap().keys().collect();
    assert_eq!(numbers, ["2"]);
    let step = json("/json/builders/mac/builds/1/steps/fail").await;
    assert_eq!(step["isFinished"], true);
    let root = json("/json").await;
    assert_eq!(root["project"]["title"], "Frobnicator");
    assert!(root["builders"]["windows"].is_object());
    assert!(root["slaves"]["bot2"].is_object());
    let selected = json("/json?select=project&select=builders/mac/builds/1").await;
    assert_eq!(selected["builders"]["mac"]["builds"]["1"]["number"], 1);
    assert_eq!(selected.as_object().unwrap().len(), 2, "{selected}");
    let (_, kind, text) = site.get("/json/project?as_text=1").await;
    assert_eq!(kind, "text/plain; charset=utf-8");
    assert!(
        text.contains("\n  \"title\": \"Frobnicator\""),
        "indented: {text}"
    );
    let (_, _, padded) = site.get("/json/project?callback=show").await;
    assert!(
        padded.starts_with("show({") && padded.ends_with("});"),
        "{padded}"
    );
    let filtered = json("/json/builders/windows?filter=1").await;
    assert!(filtered.get("currentBuilds").is_none(), "{filtered}");
    assert_eq!(site.get("/json/builders/nope").await.0, 404);
    assert_eq!(site.get("/json/frobs").await.0, 404);
    let help = site.page("/json/help").await;
    assert!(help.contains("select=PATH"));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_badges_show_a_builds_result_as_png_and_svg() {
    let site = Site::start(CONFIG).await;
    two_changes(&site).await;
    let bytes = |path: &'static str| {
        let url = format!("{}{path}", site.base);
        async move {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            let kind = response.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string();
            (status, kind, response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, kind, normal) = bytes("/png?builder=mac").await;
    assert_eq!((status, kind.as_str()), (200, "image/png"));
    assert_eq!(&normal[..8], b"\x89PNG\r\n\x1a\n");
    let width = |png: &[u8]| u32::from_be_bytes(png[16..20].try_into().unwrap());
    let (_, _, large) = bytes("/png?builder=mac&size=large").await;
    let (_, _, small) = bytes("/png?builder=mac&size=small").await;
    assert_eq!(
        (width(&large), width(&normal)),
        (3 * width(&small), 2 * width(&small))
    );
    let (_, kind, svg) = bytes("/svg?builder=mac").await;
    assert_eq!(kind, "image/svg+xml");
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("<title>build: failure</title>"), "{svg}");
    let svg = |path: &'static str| async move { String::from_utf8(bytes(path).await.2).unwrap() };
    assert!(svg("/svg?builder=linux&number=1")
        .await
        .contains("build: success"));
    assert!(svg("/svg?builder=linux&revision=aaaa1111")
        .await
        .contains("build: success"));
    assert!(svg("/svg?builder=linux&revision=cccc")
        .await
        .contains("build: unknown"));
    assert!(svg("/svg?builder=windows").await.contains("build: unknown"));
    assert_eq!(site.get("/png?builder=nope").await.0, 404);
    assert_eq!(site.get("/png?builder=mac&size=huge").await.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_add_and_remove_change_what_a_listening_stream_carries() {
    let site = Site::start(CONFIG).await;
    let mut stream = site
        .client
        .get(format!("{}/sse/listen", site.base))
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let uuid = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = stream.chunk().await.unwrap().unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            if let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                assert!(event.starts_with("event: handshake\n"), "{event}");
                return event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap()
                    .to_string();
            }
        }
    })
    .await
    .expect("a handshake first");
    let call = |path: String| {
        let url = format!("{}{path}", site.base);
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(call(format!("/sse/add/{uuid}/changes")).await.0, 200);
    assert_eq!(
        call(format!("/sse/add/{uuid}/builds/*/finished")).await.0,
        200
    );
    let (status, body) = call(format!("/sse/remove/{uuid}/changes")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"msg":"OK"}"#));
    let (status, body) = call(format!("/sse/remove/{uuid}/changes")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call("/sse/add/no-such-stream/changes".into()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no event stream 'no-such-stream'"), "{body}");

    history(&site).await;
    let events = events_until(&mut stream, "builds/3/finished").await;
    let mut keys: Vec<&str> = events.iter().map(|e| e["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "builds/1/finished",
            "builds/2/finished",
            "builds/3/finished"
        ],
        "added and not removed paths only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_waterfall_keeps_failing_builders_and_a_time_window() {
    let site = Site::start(CONFIG).await;
    two_changes(&site).await;
    let columns = |page: &str| {
        ["linux", "mac", "windows"]
            .into_iter()
            .filter(|b| page.contains(&format!("<th><a href=\"/builders/{b}\">")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        columns(&site.page("/waterfall").await),
        ["linux", "mac", "windows"]
    );
    assert_eq!(
        columns(&site.page("/waterfall?failures_only=true").await),
        ["mac"]
    );
    let shown = |page: &str| page.matches("href=\"/builders/mac/builds/").count();
    assert_eq!(shown(&site.page("/waterfall?last_time=1000").await), 0);
    assert_eq!(
        shown(&site.page("/waterfall?builder=mac&show_time=3600").await),
        2
    );
    assert_eq!(
        shown(&site.page("/waterfall?first_time=4000000000").await),
        0
    );
    // A local worker connects as the master starts, before any build.
    let connected = "<span class=\"event\">connect <a href=\"/workers/bot2\">bot2</a></span>";
    let events = site
        .page("/waterfall?builder=windows&show_events=true")
        .await;
    assert!(events.contains(connected), "{events}");
    let default = site.page("/waterfall?builder=windows").await;
    assert!(default.contains(connected), "shown by default: {default}");
    let hidden = site
        .page("/waterfall?builder=windows&show_events=false")
        .await;
    assert!(!hidden.contains("class=\"event\""), "{hidden}");
    let full = site.page("/waterfall?builder=mac&show_events=true").await;
    assert_eq!(shown(&full), 2);
    assert!(
        !full.contains("class=\"event\""),
        "events before a full page of builds are not shown: {full}"
    );
    assert_eq!(site.get("/waterfall?failures_only=maybe").await.0, 400);
    assert_eq!(site.get("/waterfall?last_time=yesterday").await.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn property_filters_find_the_matching_builds_older_than_the_last_numbuilds() {
    let site = Site::start(CONFIG).await;
    let owners = ["ann", "ann", "ben", "ben", "ben", "ben", "ben", "ben"];
    for (at, owner) in owners.iter().enumerate() {
        let properties = [
            ("owner", serde_json::json!(owner)),
            ("nightly", serde_json::json!(at == 0)),
            ("attempt", serde_json::json!(at)),
        ];
        let bsid = submit(&site.master, &["mac"], &properties).await;
        complete(&site.master, bsid).await;
    }
    let numbers = |page: &str| -> Vec<i64> {
        let link = regex::Regex::new(r#"href="/builders/mac/builds/(\d+)""#).unwrap();
        link.captures_iter(page)
            .map(|c| c[1].parse().unwrap())
            .collect()
    };
    // numbuilds is 5: the newest five are all ben's.
    assert_eq!(numbers(&site.page("/builders/mac").await), [8, 7, 6, 5, 4]);
    assert_eq!(
        numbers(&site.page("/builders/mac?property.owner=ann").await),
        [2, 1]
    );
    let first = site
        .page("/builders/mac?property.owner=ann&numbuilds=1")
        .await;
    assert_eq!(numbers(&first), [2]);
    assert!(
        first.contains(r#"<a href="?property.owner=ann&amp;numbuilds=2">show more</a>"#),
        "show more keeps the filter: {first}"
    );
    for nightly in ["True", "true"] {
        let page = site
            .page(&format!("/builders/mac?property.nightly={nightly}"))
            .await;
        assert_eq!(numbers(&page), [1], "{nightly}");
    }
    assert_eq!(
        numbers(
            &site
                .page("/builders/mac?property.attempt=2&property.owner=ben")
                .await
        ),
        [3]
    );
    assert!(numbers(
        &site
            .page("/builders/mac?property.attempt=2&property.owner=ann")
            .await
    )
    .is_empty());
}

/// A rare property value cannot make a builder page read the builder's whole history: the
/// filters look through the last 200 finished builds (0.8's `max_search`), or as many as
/// `numbuilds` asks when it is more.
#[tokio::test(flavor = "multi_thread")]
async fn property_filters_look_only_through_the_last_200_finished_builds() {
    let site = Site::start(CONFIG).await;
    for owner in ["ann", "ben"] {
        let bsid = submit(
            &site.master,
            &["mac"],
            &[("owner", serde_json::json!(owner))],
        )
        .await;
        complete(&site.master, bsid).await;
    }
    // Ben's build, 199 times more: ann's is then the 201st newest.
    let pool = &site.master.context.db.pool;
    sqlx::query(
        "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 199) \
         INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, started_at, \
         complete_at, locks_duration_s, state_string, results) SELECT number + n, builderid, \
         buildrequestid, workerid, masterid, started_at, complete_at, locks_duration_s, \
         state_string, results FROM builds, k WHERE number = 2",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO build_properties (buildid, name, value, source) SELECT b.id, p.name, \
         p.value, p.source FROM builds b, build_properties p, builds ben \
         WHERE ben.number = 2 AND p.buildid = ben.id AND b.number > 2",
    )
    .execute(pool)
    .await
    .unwrap();
    let page = site.page("/builders/mac?property.owner=ann").await;
    assert!(!page.contains(r#"href="/builders/mac/builds/1""#), "{page}");
    assert!(
        page.contains("among the last 200 finished builds"),
        "the page says how far it looked: {page}"
    );
    let page = site
        .page("/builders/mac?property.owner=ann&numbuilds=201")
        .await;
    assert!(page.contains(r#"href="/builders/mac/builds/1""#), "{page}");
    let page = site.page("/builders/mac?property.owner=ben").await;
    assert!(
        page.contains(r#"href="/builders/mac/builds/201""#),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn property_filters_choose_a_builders_builds() {
    let site = Site::start(CONFIG).await;
    for owner in ["ann", "ben", "ann"] {
        let bsid = submit(
            &site.master,
            &["mac"],
            &[("owner", serde_json::json!(owner))],
        )
        .await;
        complete(&site.master, bsid).await;
    }
    let listed = |page: &str| page.matches("href=\"/builders/mac/builds/").count();
    assert_eq!(listed(&site.page("/builders/mac").await), 3);
    let ann = site.page("/builders/mac?property.owner=ann").await;
    assert_eq!(listed(&ann), 2);
    assert!(ann.contains("<code>owner=ann</code>"), "{ann}");
    assert_eq!(
        listed(
            &site
                .page("/builders/mac?property.owner=ann&numbuilds=1")
                .await
        ),
        1
    );
    assert_eq!(
        listed(&site.page("/builders/mac?property.owner=cid").await),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn link_functions_of_the_config_link_and_a_failing_one_leaves_plain_text() {
    let config = CONFIG
        .replace(
            r#"revlink = "https://git.example.org/commit/%s","#,
            r#"revlink = function(rev, repo) return "https://rev.example.org/" .. rev .. "?in=" .. repo end,"#,
        )
        .replace(
            r##"changecommentlink = { "#(\\d+)", "https://bugs.example.org/\\1", "Bug" },"##,
            r#"changecommentlink = function(text, project) error("no tickets today") end,"#,
        )
        .replace(
            r#"projects = { frob = "https://frob.example.org/project" },"#,
            r#"projects = function(name) return "https://projects.example.org/" .. name end,"#,
        );
    assert!(config.contains("no tickets today") && config.contains("projects.example.org"));
    let site = Site::start(&config).await;
    history(&site).await;
    let change = site.page("/changes/1").await;
    assert!(
        change.contains(
            r#"<a href="https://rev.example.org/0123456789abcdef?in=https://example.org/frob.git">"#
        ),
        "{change}"
    );
    assert!(
        change.contains(r#"<a href="https://projects.example.org/frob">frob</a>"#),
        "{change}"
    );
    assert!(
        change.contains("fix the frobnicator, closes #42 &lt;for real&gt;"),
        "the comments as plain text: {change}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn builders_with_branch_show_the_last_build_of_that_branch() {
    use moonbot::data::{publish, Resource};
    use moonbot::db::{BuildsetSpec, SourceStampSpec};
    let site = Site::start(CONFIG).await;
    let ctx = &site.master.context;
    for branch in ["main", "release"] {
        let spec = BuildsetSpec {
            reason: "test".into(),
            scheduler: "test".into(),
            new_sourcestamps: vec![SourceStampSpec {
                branch: Some(branch.into()),
                ..Default::default()
            }],
            builder_ids: vec![ctx.db.builder_id("linux").await.unwrap()],
            ..Default::default()
        };
        let (bsid, brids) = ctx.db.add_buildset(&spec).await.unwrap();
        for brid in brids.values() {
            publish(&ctx.db, &ctx.bus, Resource::BuildRequest(*brid), "new")
                .await
                .unwrap();
        }
        complete(&site.master, bsid).await;
    }
    let (first, second) = ("/builders/linux/builds/1\"", "/builders/linux/builds/2\"");
    let all = site.page("/builders").await;
    assert!(all.contains(second) && !all.contains(first), "{all}");
    let main = site.page("/builders?branch=main").await;
    assert!(main.contains(first) && !main.contains(second), "{main}");
    let both = site.page("/builders?branch=main&branch=release").await;
    assert!(both.contains(second) && !both.contains(first), "{both}");
    let none = site.page("/builders?branch=nope").await;
    assert!(!none.contains(first) && !none.contains(second), "{none}");
    let lines = site.page("/one_line_per_build?branch=main").await;
    assert!(lines.contains(first) && !lines.contains(second), "{lines}");
}

/// A master of its own process whose link functions fail: one raises an error, one answers
/// a number.
const FAILING_LINKS: &str = r#"
local c = BuildmasterConfig
c['status']:append(status.WebStatus{
  http_port = "tcp:PORT:interface=127.0.0.1",
  change_hook_dialects = { base = true },
  revlink = function(rev, repo) return 42 end,
  changecommentlink = function(text, project) error("no tickets today") end,
})
"#;

#[tokio::test(flavor = "multi_thread")]
async fn failing_revlink_and_changecommentlink_functions_are_logged_at_their_line_and_pages_render()
{
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = FAILING_LINKS.replace("PORT", &port.to_string());
    let line_of = |text: &str| 1 + config.lines().position(|l| l.contains(text)).unwrap();
    let (revlink_line, comment_line) = (line_of("revlink ="), line_of("changecommentlink ="));
    std::fs::write(dir.path().join("master.cfg.lua"), &config).unwrap();
    let master = master_process::spawn_master(dir.path(), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut hooked = None;
    for _ in 0..200 {
        let answer = client
            .post(format!("{base}/change_hook/base"))
            .form(&[
                ("author", "alice"),
                ("comments", "closes #42 <now>"),
                ("revision", "abc123"),
                ("project", "frob"),
            ])
            .send()
            .await;
        if let Ok(answer) = answer {
            hooked = Some(answer.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hooked, Some(202), "the change hook takes the change");
    for path in ["/changes/1", "/changes", "/console"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("closes #42 &lt;now&gt;") && !page.contains("href=\"42\""),
            "{path} shows the plain comments and no revision link: {page}"
        );
    }
    master_process::kill(master);
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    for expected in [
        format!("master.cfg.lua:{comment_line}: no tickets today"),
        format!("master.cfg.lua:{revlink_line}: WebStatus revlink: function returned 42"),
    ] {
        assert!(log.contains(&expected), "the log says {expected:?}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_written_to_http_log_which_rotates_by_size() {
    let config = CONFIG.replace(
        "numbuilds = 5,",
        "numbuilds = 5, rotateLength = 400, maxRotatedFiles = 2,",
    );
    let site = Site::start(&config).await;
    for _ in 0..12 {
        site.page("/about").await;
    }
    let dir = site.master.dir();
    let log = std::fs::read_to_string(dir.join("http.log")).unwrap();
    let line = log.lines().last().unwrap();
    let shape = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /about HTTP/1\.1" 200 \d+ "-" "-"$"#,
    )
    .unwrap();
    assert!(shape.is_match(line), "{line}");
    assert!(
        log.len() <= 400,
        "rotated at 400 bytes: {} bytes",
        log.len()
    );
    assert!(dir.join("http.log.1").exists() && dir.join("http.log.2").exists());
    assert!(
        !dir.join("http.log.3").exists(),
        "two rotated files are kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_build_and_a_queued_request_show_when_they_should_be_done() {
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("GO");
    let config = format!(
        r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("bot1", {{ max_builds = 1 }}))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "gate",
  command = {{ "sh", "-c", "while [ ! -e '{go}' ]; do sleep 0.05; done" }} }})
c['builders']:append(util.BuilderConfig{{ name = "slow", workernames = {{ "bot1" }}, factory = f }})
c['status']:append(status.WebStatus{{ http_port = "tcp:0:interface=127.0.0.1" }})
"#,
        go = go.display()
    );
    let site = Site::start(&config).await;
    let page = site.page("/builders/slow").await;
    assert!(!page.contains("ETA"), "no ETA before a first success");
    std::fs::write(&go, "").unwrap();
    let bsid = submit(&site.master, &["slow"], &[]).await;
    complete(&site.master, bsid).await;
    std::fs::remove_file(&go).unwrap();
    submit(
        &site.master,
        &["slow"],
        &[("owner", serde_json::json!("ann"))],
    )
    .await;
    submit(
        &site.master,
        &["slow"],
        &[("owner", serde_json::json!("ben"))],
    )
    .await;
    let eta = regex::Regex::new(r#"<span class="eta">ETA in \d+ s</span>"#).unwrap();
    let done = regex::Regex::new(r#"<span class="eta">done in \d+ s</span>"#).unwrap();
    let shown = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let page = site.page("/builders/slow").await;
            if eta.is_match(&page) && done.is_match(&page) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the running build's ETA and the queued request's");
    assert!(shown.contains("request 3,"), "{shown}");
    let ben = site.page("/builders/slow?property.owner=ben").await;
    assert!(ben.contains("request 3,"), "ben's request waits: {ben}");
    let ann = site.page("/builders/slow?property.owner=ann").await;
    assert!(!ann.contains("request 3,"), "ann's request runs: {ann}");
    let (_, _, node) = site.get("/json/builders/slow").await;
    let node: Value = serde_json::from_str(&node).unwrap();
    assert_eq!(
        (
            &node["currentBuilds"],
            &node["pendingBuilds"],
            &node["state"]
        ),
        (
            &serde_json::json!([2]),
            &serde_json::json!(1),
            &serde_json::json!("building")
        )
    );
    let (_, _, pending) = site.get("/json/builders/slow/pendingBuilds").await;
    let pending: Value = serde_json::from_str(&pending).unwrap();
    assert_eq!(pending[0]["id"], 3, "{pending}");
    let builders = site.page("/builders").await;
    assert!(builders.contains("ETA in "), "{builders}");
    assert!(builders.contains("(the last done in "), "{builders}");
    std::fs::write(&go, "").unwrap();
}
