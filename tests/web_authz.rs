//! `util.Authz` against real masters over HTTP: every action with `false`, `true`, `'auth'`
//! and a Lua function, through the REST API and through the pages' forms (each control shown
//! only to whom it would let in, and refused with 401 or 403 and a JSON body naming the
//! action otherwise); forged forms; logins with BasicAuth, the login form, htpasswd files
//! written by Apache's `htpasswd` and by passlib, and a fronting server's header.

use std::time::Duration;

use moonbot::db::ChangeSpec;
use reqwest::header::{COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

mod support;

use support::{complete, submit, TestMaster};

/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// Two builders on bot1; bot2 serves none, so pausing it or shutting it down stops no test
/// build. `AUTHZ` is replaced by the rules under test.
const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("bot1"))
c['workers']:append(worker.LocalWorker("bot2"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "true" } })
c['builders']:append(util.BuilderConfig{ name = "linux", workernames = { "bot1" }, factory = f })
c['schedulers']:append(schedulers.ForceScheduler{ name = "force", builderNames = { "linux" } })
c['status']:append(status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1", authz = AUTHZ })
"#;

/// The actions, each with its REST call (path, method; `None`: a page only), and its page
/// control: the page that shows it, the form's action, and its fields.
struct Action {
    name: &'static str,
    rest: Option<(&'static str, &'static str)>,
    page: &'static str,
    form: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

/// In the order they are tried: the clean shutdown stops the master, so it comes last.
const ACTIONS: &[Action] = &[
    Action {
        name: "forceBuild",
        rest: Some(("forceschedulers/force", "force")),
        page: "/builders/linux",
        form: "/builders/linux/force",
        fields: &[("forcescheduler", "force"), ("reason", "try")],
    },
    Action {
        name: "forceAllBuilds",
        rest: Some(("builders", "force")),
        page: "/builders",
        form: "/builders/_all/forceall",
        fields: &[],
    },
    Action {
        name: "pingBuilder",
        rest: Some(("builders/1", "ping")),
        page: "/builders/linux",
        form: "/builders/linux/ping",
        fields: &[],
    },
    Action {
        name: "pauseSlave",
        rest: Some(("workers/2", "pause")),
        page: "/workers/bot2",
        form: "/workers/bot2/pause",
        fields: &[],
    },
    Action {
        name: "gracefulShutdown",
        rest: Some(("workers/2", "stop")),
        page: "/workers/bot2",
        form: "/workers/bot2/shutdown",
        fields: &[],
    },
    Action {
        name: "stopBuild",
        rest: Some(("builds/1", "stop")),
        page: "",
        form: "/builders/linux/builds/1/stop",
        fields: &[],
    },
    Action {
        name: "stopAllBuilds",
        rest: Some(("builders", "stop")),
        page: "/builders",
        form: "/builders/_all/stopall",
        fields: &[],
    },
    Action {
        name: "cancelPendingBuild",
        rest: Some(("buildrequests/1", "cancel")),
        page: "",
        form: "/builders/linux/cancelbuild",
        fields: &[("id", "1")],
    },
    Action {
        name: "cancelAllPendingBuilds",
        rest: Some(("builders/1", "cancel")),
        page: "/builders",
        form: "/builders/_all/cancelall",
        fields: &[],
    },
    Action {
        name: "stopChange",
        rest: Some(("changes/1", "stop")),
        page: "/changes/1",
        form: "/changes/1/stop",
        fields: &[],
    },
    Action {
        name: "showUsersPage",
        rest: None,
        page: "/",
        form: "/users",
        fields: &[],
    },
    Action {
        name: "cleanShutdown",
        rest: Some(("masters/1", "shutdown")),
        page: "/",
        form: "/shutdown",
        fields: &[],
    },
];

/// Functions that let bob in only when they receive the documented object.
const FUNCTIONS: &str = r#"
local function bob(user) return user == 'bob' end
local function bob_on_linux(user, builder) return user == 'bob' and builder.name == 'linux' end
local function bob_on_bot2(user, worker) return user == 'bob' and worker.name == 'bot2' end
local function bob_on_linux_build(user, build)
  return user == 'bob' and build.buildername == 'linux' and build.number == 1
end
local function bob_on_linux_request(user, request)
  return user == 'bob' and request.buildername == 'linux' and request.buildrequestid == 1
end
"#;

fn function_for(action: &str) -> &'static str {
    match action {
        "forceBuild" | "pingBuilder" => "bob_on_linux",
        "pauseSlave" | "gracefulShutdown" => "bob_on_bot2",
        "stopBuild" => "bob_on_linux_build",
        "cancelPendingBuild" => "bob_on_linux_request",
        _ => "bob",
    }
}

/// A user as a client: no credentials, or HTTP basic ones.
#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    Bob,
    Jill,
}

struct Site {
    master: TestMaster,
    base: String,
    http: reqwest::Client,
}

impl Site {
    async fn start(authz: &str, prelude: &str) -> Site {
        let config = format!("{prelude}\n{}", CONFIG.replace("AUTHZ", authz));
        Site::start_with(&config).await
    }

    async fn start_with(config: &str) -> Site {
        let master = TestMaster::start(config).await;
        let base = format!("http://{}", master.web_address.unwrap());
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(WAIT)
            .build()
            .unwrap();
        Site { master, base, http }
    }

    /// A finished build #1 (request 1) of linux and change 1.
    async fn fill(&self) {
        let bsid = submit(&self.master, &["linux"], &[]).await;
        complete(&self.master, bsid).await;
        let change = ChangeSpec {
            author: "alice".into(),
            comments: "fix".into(),
            repository: "repo".into(),
            ..Default::default()
        };
        self.master.context.db.add_change(&change).await.unwrap();
    }

    fn request(&self, method: reqwest::Method, path: &str, who: Who) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match who {
            Who::Anonymous => request,
            Who::Bob => request.basic_auth("bob", Some("pw")),
            Who::Jill => request.basic_auth("jill", Some("pw2")),
        }
    }

    async fn rpc(&self, path: &str, method: &str, who: Who) -> (u16, Value) {
        let params = if path.starts_with("forceschedulers") {
            json!({ "builderid": 1, "reason": "try" })
        } else {
            json!({})
        };
        let body = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
        let response = self
            .request(reqwest::Method::POST, &format!("/api/v2/{path}"), who)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A page as `who` sees it, with the session cookie it was given.
    async fn page(&self, path: &str, who: Who) -> (u16, String, String) {
        let response = self
            .request(reqwest::Method::GET, path, who)
            .send()
            .await
            .unwrap();
        let cookie = response
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_string();
        let status = response.status().as_u16();
        (status, cookie, response.text().await.unwrap())
    }

    /// Posts a page's form as `who`, with the session's CSRF token unless `forged`.
    async fn post_form(
        &self,
        form: &str,
        fields: &[(&str, &str)],
        who: Who,
        forged: bool,
    ) -> (u16, String) {
        let (_, cookie, html) = self.page("/about", who).await;
        let token = csrf_token(&html);
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        if !forged {
            fields.push(("csrf", &token));
        }
        let response = self
            .request(reqwest::Method::POST, form, who)
            .header(COOKIE, cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

fn csrf_token(html: &str) -> String {
    let pattern = regex::Regex::new(r#"<meta name="csrf-token" content="([^"]*)">"#).unwrap();
    pattern
        .captures(html)
        .expect("every page carries its CSRF token")[1]
        .to_string()
}

/// What a refusal must look like: 401 or 403, and a JSON error naming the action.
fn assert_refused(status: u16, body: &str, expected: u16, action: &str, context: &str) {
    assert_eq!(status, expected, "{context}: {body}");
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(action),
        "{context}: the error names {action}: {body}"
    );
}

/// What the action does for `who`, through the REST API and the page's form, and whether
/// the page shows the control.
async fn check(site: &Site, action: &Action, who: Who, allowed: Option<u16>) {
    let context = format!("{} as {who:?}", action.name);
    if !action.page.is_empty() {
        let (_, _, html) = site.page(action.page, who).await;
        let shown = if action.name == "showUsersPage" {
            html.contains("href=\"/users\"")
        } else {
            html.contains(&format!("action=\"{}\"", action.form))
        };
        assert_eq!(
            shown,
            allowed.is_none(),
            "{context}: the control is shown only when allowed"
        );
    }
    let refused = |status: u16| status == 401 || status == 403;
    if let Some((path, method)) = action.rest {
        let (status, body) = site.rpc(path, method, who).await;
        match allowed {
            Some(expected) => {
                assert_refused(status, &body.to_string(), expected, action.name, &context)
            }
            None => assert!(
                !refused(status),
                "{context}: REST allowed, got {status} {body}"
            ),
        }
    }
    if action.name == "cleanShutdown" && allowed.is_none() {
        return; // The REST call above shut the master down.
    }
    let (status, body) = if action.name == "showUsersPage" {
        let (status, _, body) = site.page("/users", who).await;
        (status, body)
    } else {
        site.post_form(action.form, action.fields, who, false).await
    };
    match allowed {
        Some(expected) => assert_refused(status, &body, expected, action.name, &context),
        None => assert!(
            matches!(status, 200 | 303 | 400),
            "{context}: page allowed, got {status} {body}"
        ),
    }
}

const USERS: &str = "auth=util.BasicAuth({{'bob', 'pw'}, {'jill', 'pw2'}})";

fn rules(rule: impl Fn(&str) -> String) -> String {
    let rules: Vec<String> = ACTIONS
        .iter()
        .map(|a| format!("{}={}", a.name, rule(a.name)))
        .collect();
    format!("util.Authz{{{USERS}, {}}}", rules.join(", "))
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_set_to_false_are_refused_to_everyone() {
    let site = Site::start(&rules(|_| "false".into()), "").await;
    site.fill().await;
    for action in ACTIONS {
        check(&site, action, Who::Anonymous, Some(403)).await;
        check(&site, action, Who::Bob, Some(403)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_set_to_true_are_allowed_to_anonymous_visitors() {
    let site = Site::start(&rules(|_| "true".into()), "").await;
    site.fill().await;
    for action in ACTIONS {
        check(&site, action, Who::Anonymous, None).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_set_to_auth_ask_anonymous_visitors_to_log_in_and_let_users_in() {
    let site = Site::start(&rules(|_| "'auth'".into()), "").await;
    site.fill().await;
    let response = site
        .request(reqwest::Method::GET, "/users", Who::Anonymous)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Basic realm=\"moonbot\"",
        "a 401 challenges for the BasicAuth users"
    );
    for action in ACTIONS {
        check(&site, action, Who::Anonymous, Some(401)).await;
        check(&site, action, Who::Bob, None).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn action_functions_receive_the_user_and_the_documented_object() {
    let site = Site::start(&rules(|name| function_for(name).into()), FUNCTIONS).await;
    site.fill().await;
    for action in ACTIONS {
        check(&site, action, Who::Anonymous, Some(401)).await;
        check(&site, action, Who::Jill, Some(403)).await;
        check(&site, action, Who::Bob, None).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_action_function_denies_and_the_next_call_works() {
    let prelude = "local calls = 0
        local function flaky(user) calls = calls + 1; if calls == 1 then error('boom') end return true end";
    let site = Site::start(&format!("util.Authz{{{USERS}, forceBuild=flaky}}"), prelude).await;
    let (status, body) = site.rpc("forceschedulers/force", "force", Who::Bob).await;
    assert_refused(
        status,
        &body.to_string(),
        403,
        "forceBuild",
        "a failing function",
    );
    let (status, body) = site.rpc("forceschedulers/force", "force", Who::Bob).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn view_guards_every_page_and_every_rest_read() {
    for (rule, anonymous, bob) in [
        ("false", Some(403), Some(403)),
        ("true", None, None),
        ("'auth'", Some(401), None),
        ("function(user) return user == 'bob' end", Some(401), None),
    ] {
        let site = Site::start(&format!("util.Authz{{{USERS}, view={rule}}}"), "").await;
        for (who, expected) in [(Who::Anonymous, anonymous), (Who::Bob, bob)] {
            let context = format!("view={rule} as {who:?}");
            let response = site
                .request(reqwest::Method::GET, "/api/v2/builders", who)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            match expected {
                Some(code) => assert_refused(status, &body, code, "view", &context),
                None => assert_eq!(status, 200, "{context}: {body}"),
            }
            let (status, _, body) = site.page("/builders", who).await;
            match expected {
                // A page sends the visitor to the login form instead.
                Some(401) => assert_eq!(status, 303, "{context}: {body}"),
                Some(code) => assert_eq!(status, code, "{context}: {body}"),
                None => assert_eq!(status, 200, "{context}: {body}"),
            }
        }
        // The login form and the stylesheet stay open.
        assert_eq!(
            site.page("/login", Who::Anonymous).await.0,
            200,
            "view={rule}"
        );
        assert_eq!(
            site.page("/default.css", Who::Anonymous).await.0,
            200,
            "view={rule}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_posted_without_the_sessions_csrf_token_is_refused_with_403() {
    let site = Site::start("util.Authz{default_action=true}", "").await;
    let (status, body) = site
        .post_form(
            "/builders/linux/force",
            &[("forcescheduler", "force")],
            Who::Anonymous,
            true,
        )
        .await;
    assert_refused(status, &body, 403, "forceBuild", "a form without its token");
    assert!(body.contains("CSRF"), "{body}");
    // A token of another session does not do either.
    let (_, _, html) = site.page("/", Who::Anonymous).await;
    let other = csrf_token(&html);
    let (_, cookie, _) = site.page("/", Who::Anonymous).await;
    let response = site
        .request(
            reqwest::Method::POST,
            "/builders/_all/stopall",
            Who::Anonymous,
        )
        .header(COOKIE, cookie)
        .form(&[("csrf", other.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let (status, body) = site
        .post_form(
            "/builders/linux/force",
            &[("forcescheduler", "force")],
            Who::Anonymous,
            false,
        )
        .await;
    assert_eq!(status, 303, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_force_form_submits_the_schedulers_fields_with_the_user_as_owner() {
    let config = CONFIG
        .replace(
            r#"schedulers.ForceScheduler{ name = "force", builderNames = { "linux" } }"#,
            r#"schedulers.ForceScheduler{ name = "force", builderNames = { "linux" },
                 properties = { util.StringParameter{ name = "pr", label = "PR" },
                                util.BooleanParameter{ name = "clean", label = "Clean" } } }"#,
        )
        .replace(
            "AUTHZ",
            &format!("util.Authz{{{USERS}, forceBuild='auth'}}"),
        );
    let site = Site::start_with(&config).await;
    let (_, _, html) = site.page("/builders/linux", Who::Bob).await;
    for field in [
        "name=\"reason\"",
        "name=\"pr\"",
        "name=\"clean\"",
        "name=\"branch\"",
        "name=\"revision\"",
    ] {
        assert!(html.contains(field), "the form has {field}: {html}");
    }
    let fields = [
        ("forcescheduler", "force"),
        ("reason", "because"),
        ("pr", "17"),
        ("clean", "true"),
        ("branch", "topic"),
    ];
    let (status, body) = site
        .post_form("/builders/linux/force", &fields, Who::Bob, false)
        .await;
    assert_eq!(status, 303, "{body}");
    let builds = wait_for_build(&site).await;
    let properties = &builds["properties"];
    assert_eq!(properties["pr"][0], "17");
    assert_eq!(properties["clean"][0], true);
    assert_eq!(properties["owner"][0], "bob");
    assert_eq!(properties["reason"][0], "because");
    assert_eq!(properties["branch"][0], "topic");
}

async fn wait_for_build(site: &Site) -> Value {
    let url = format!("{}/api/v2/builds?property=*", site.base);
    let wait = async {
        loop {
            let response = site
                .http
                .get(&url)
                .basic_auth("bob", Some("pw"))
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            // A build's properties are written just after it starts.
            let build = &body["builds"][0];
            if !build["properties"]["owner"].is_null() {
                return build.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("a build starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_form_starts_a_session_the_pages_show_and_logout_ends_it() {
    let site = Site::start(&format!("util.Authz{{{USERS}, forceBuild='auth'}}"), "").await;
    let (_, cookie, html) = site.page("/builders/linux", Who::Anonymous).await;
    assert!(
        html.contains("href=\"/login?then=%2Fbuilders%2Flinux\""),
        "{html}"
    );
    assert!(!html.contains("/builders/linux/force"), "{html}");
    let login = |password: &'static str| {
        site.http
            .post(format!("{}/login", site.base))
            .header(COOKIE, cookie.clone())
            .form(&[
                ("username", "bob"),
                ("passwd", password),
                ("then", "/builders/linux"),
            ])
            .send()
    };
    let wrong = login("nope").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password"));
    let right = login("pw").await.unwrap();
    assert_eq!(right.status().as_u16(), 303);
    assert_eq!(right.headers()["location"], "/builders/linux");
    let session = right.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(session, cookie, "a login gets a new session id");
    let html = site
        .http
        .get(format!("{}/builders/linux", site.base))
        .header(COOKIE, session.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<span class=\"login\">bob"),
        "the page names its user: {html}"
    );
    assert!(html.contains("action=\"/builders/linux/force\""), "{html}");
    let token = csrf_token(&html);
    let out = site
        .http
        .post(format!("{}/logout", site.base))
        .header(COOKIE, session.clone())
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let html = site
        .http
        .get(format!("{}/builders/linux", site.base))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<span class=\"login\">bob"), "{html}");
    // A login never sends the browser to another site.
    let elsewhere = site
        .http
        .post(format!("{}/login", site.base))
        .form(&[
            ("username", "bob"),
            ("passwd", "pw"),
            ("then", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.headers()["location"], "/");
}

/// An htpasswd file with a user per hash form, made by Apache's `htpasswd` and by passlib.
fn write_htpasswd(path: &std::path::Path) -> Vec<(String, String)> {
    let mut users = Vec::new();
    let mut lines = String::new();
    for flag in ["-m", "-B", "-d", "-s", "-2", "-5"] {
        let user = format!("apache{flag}");
        let password = format!("pw{flag}");
        let out = std::process::Command::new("htpasswd")
            .args(["-nb", flag, &user, &password])
            .output()
            .expect("htpasswd runs (scripts/test installs apache2-utils)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
        lines.push('\n');
        users.push((user, password));
    }
    // Costs as low as each scheme allows where the default takes seconds in a debug build.
    let script = "import sys\n\
        from passlib import hash as h\n\
        costs = {'bcrypt': {'rounds': 5}, 'sha256_crypt': {'rounds': 5000}, 'sha512_crypt': {'rounds': 5000}}\n\
        for name in sys.argv[1:]:\n\
        \x20   scheme = getattr(h, name).using(**costs.get(name, {}))\n\
        \x20   print(f'passlib-{name}:' + scheme.hash(f'pw-{name}'))\n";
    let schemes = [
        "apr_md5_crypt",
        "bcrypt",
        "des_crypt",
        "ldap_sha1",
        "md5_crypt",
        "sha256_crypt",
        "sha512_crypt",
    ];
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(schemes)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "passlib (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines.push_str(&String::from_utf8_lossy(&out.stdout));
    for name in schemes {
        users.push((format!("passlib-{name}"), format!("pw-{name}")));
    }
    std::fs::write(path, lines).unwrap();
    users
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hash_form_of_htpasswd_and_passlib_logs_its_user_in_and_nobody_else() {
    for class in ["HTPasswdAuth", "HTPasswdAprAuth"] {
        let dir = tempfile::tempdir().unwrap();
        let users = write_htpasswd(&dir.path().join("htpasswd"));
        let config = CONFIG.replace(
            "AUTHZ",
            &format!("util.Authz{{auth=util.{class}('htpasswd'), view='auth'}}"),
        );
        let master = TestMaster::start_in(dir, &config).await;
        let url = format!("http://{}/api/v2/builders", master.web_address.unwrap());
        let http = reqwest::Client::new();
        let status = |user: String, password: String| {
            let request = http.get(&url).basic_auth(user, Some(password));
            async move { request.send().await.unwrap().status().as_u16() }
        };
        for (user, password) in &users {
            assert_eq!(
                status(user.clone(), password.clone()).await,
                200,
                "{class}: {user}"
            );
            assert_eq!(
                status(user.clone(), "wrong".into()).await,
                401,
                "{class}: {user} with a wrong password"
            );
        }
        assert_eq!(
            status("nobody".into(), "pw-bcrypt".into()).await,
            401,
            "{class}: an unknown user"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fronting_servers_user_is_trusted_and_others_are_sent_to_its_login_url() {
    let site = Site::start(
        "util.Authz{useHttpHeader=true, httpLoginUrl='https://ci.example.org/login', forceBuild='auth'}",
        "",
    )
    .await;
    let (_, _, html) = site.page("/builders/linux", Who::Anonymous).await;
    assert!(
        html.contains("<a href=\"https://ci.example.org/login\">Login</a>"),
        "{html}"
    );
    assert!(!html.contains("/builders/linux/force"), "{html}");
    let (status, _) = site
        .rpc("forceschedulers/force", "force", Who::Anonymous)
        .await;
    assert_eq!(status, 401);
    let html = site
        .http
        .get(format!("{}/builders/linux", site.base))
        .header("REMOTE_USER", "carol")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<span class=\"login\">carol"), "{html}");
    assert!(html.contains("action=\"/builders/linux/force\""), "{html}");
    let body = json!({ "jsonrpc": "2.0", "method": "force", "params": {"builderid": 1}, "id": 1 });
    let response = site
        .http
        .post(format!("{}/api/v2/forceschedulers/force", site.base))
        .header("REMOTE_USER", "carol")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let build = wait_for_build(&site).await;
    assert_eq!(build["properties"]["owner"][0], "carol");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_basic_credentials_are_a_401_even_where_anonymous_visitors_may_view() {
    let site = Site::start(&format!("util.Authz{{{USERS}}}"), "").await;
    let response = site
        .http
        .get(format!("{}/api/v2/builders", site.base))
        .basic_auth("bob", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key(WWW_AUTHENTICATE));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "wrong user name or password");
}

/// A buildset of linux over change `changeid`'s sourcestamp, announced as a scheduler would.
async fn submit_change(site: &Site, changeid: i64) -> i64 {
    let ctx = &site.master.context;
    let (_, ssid) = ctx.db.change(changeid).await.unwrap();
    let spec = moonbot::db::BuildsetSpec {
        reason: "change".into(),
        scheduler: "test".into(),
        sourcestamp_ids: vec![ssid],
        builder_ids: vec![ctx.db.builder_id("linux").await.unwrap()],
        ..Default::default()
    };
    let (_, brids) = ctx.db.add_buildset(&spec).await.unwrap();
    let brid = *brids.values().next().unwrap();
    moonbot::data::publish(
        &ctx.db,
        &ctx.bus,
        moonbot::data::Resource::BuildRequest(brid),
        "new",
    )
    .await
    .unwrap();
    brid
}

async fn rest_get(site: &Site, path: &str) -> Value {
    site.http
        .get(format!("{}/api/v2/{path}", site.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_builds_nothing_until_unpaused_and_bulk_cancels_reach_pending_requests() {
    let site = Site::start("util.Authz{default_action=true}", "").await;
    site.fill().await;
    let (status, body) = site.rpc("workers/1", "pause", Who::Anonymous).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rest_get(&site, "workers/1").await["workers"][0]["paused"],
        true
    );

    // Change 1's request waits on the paused worker; stopChange cancels it and no other.
    let by_change = submit_change(&site, 1).await;
    let other = submit(&site.master, &["linux"], &[]).await;
    let (status, body) = site.rpc("changes/1", "stop", Who::Anonymous).await;
    assert_eq!(
        (status, &body["result"]),
        (200, &json!({"cancelled": 1})),
        "{body}"
    );
    let request = rest_get(&site, &format!("buildrequests/{by_change}")).await;
    assert_eq!(
        request["buildrequests"][0]["results"], 6,
        "cancelled: {request}"
    );
    let builds = rest_get(&site, "builds").await;
    assert_eq!(
        builds["meta"]["total"], 1,
        "the paused worker started nothing: {builds}"
    );

    // Unpaused, it builds what is still pending.
    let (status, body) = site.rpc("workers/1", "unpause", Who::Anonymous).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(WAIT, complete(&site.master, other))
        .await
        .expect("the unpaused worker builds the waiting request");

    // Paused again, requests wait until "cancel all" takes every one of the builder's (the
    // engine may have collapsed the older into the newer first).
    site.rpc("workers/1", "pause", Who::Anonymous).await;
    submit(&site.master, &["linux"], &[]).await;
    submit(&site.master, &["linux"], &[]).await;
    let (status, body) = site.rpc("builders/1", "cancel", Who::Anonymous).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["cancelled"].as_i64() >= Some(1), "{body}");
    let waiting = rest_get(&site, "buildrequests?complete=false").await;
    assert_eq!(waiting["meta"]["total"], 0, "{waiting}");

    // A graceful shutdown is stored and shown.
    let (status, body) = site.rpc("workers/2", "stop", Who::Anonymous).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rest_get(&site, "workers/2").await["workers"][0]["graceful"],
        true
    );
    let (_, _, html) = site.page("/workers/bot2", Who::Anonymous).await;
    assert!(html.contains("yes, once its builds end"), "{html}");
}
