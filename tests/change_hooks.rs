//! The change hooks against a running master over HTTP: the payloads of Buildbot's own hook
//! tests (`shared/data/webhooks/`) replayed with good, missing and wrong signatures,
//! tokens and credentials, form-encoded and JSON, and the changes they make read back from
//! `/api/v2/changes` field by field, as Buildbot's tests expect them.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};

mod support;

use support::{get_json, TestMaster, WAIT};

/// The directory of the webhook payloads: `MOONBOT_WEBHOOKS`, or `shared/data/webhooks`
/// beside the repository or a directory above it.
fn webhooks() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOONBOT_WEBHOOKS") {
        return dir.into();
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/data/webhooks"))
        .find(|dir| dir.is_dir())
        .expect("shared/data/webhooks above the repository, or MOONBOT_WEBHOOKS")
}

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(webhooks().join(name)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn sha1(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha1={}", hex(&mac.finalize().into_bytes()))
}

fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
        .into_bytes()
}

/// A master with a web server and the given `change_hook_dialects` (and more config).
async fn master(dialects: &str, more: &str) -> TestMaster {
    TestMaster::start(&format!(
        r#"
local c = BuildmasterConfig
c['status'] = {{ status.WebStatus{{http_port="tcp:0:interface=127.0.0.1",
  change_hook_dialects={dialects}}} }}
{more}
"#
    ))
    .await
}

/// POSTs `body` to `path` with `headers`; the status and the JSON answer.
async fn post(
    master: &TestMaster,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}{path}", master.web_address.unwrap()))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let answer = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, answer)
}

async fn changes(master: &TestMaster) -> Vec<Value> {
    let answer = get_json(&format!(
        "http://{}/api/v2/changes",
        master.web_address.unwrap()
    ))
    .await;
    answer["changes"].as_array().unwrap().clone()
}

/// The fields a hook sets, without ids and sourcestamps.
fn fields(change: &Value) -> Value {
    let mut change = change.clone();
    for key in ["changeid", "sourcestamp", "parent_changeids"] {
        change.as_object_mut().unwrap().remove(key);
    }
    change
}

const JSON: (&str, &str) = ("content-type", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// What Buildbot's `test_hooks_github.py` expects of `gitJsonPayload`'s two commits.
fn github_push_changes(codebase: &str, project: &str) -> [Value; 2] {
    [
        json!({
            "author": "Fred Flinstone <fred@flinstone.org>",
            "committer": "Freddy Flinstone <freddy@flinstone.org>",
            "comments": "okay i give in",
            "branch": "master",
            "revision": "41a212ee83ca127e3c8cf465891ab7216a705f59",
            "revlink": "http://github.com/defunkt/github/commit/41a212ee83ca127e3c8cf465891ab7216a705f59",
            "when_timestamp": 1203116237,
            "category": null,
            "repository": "http://github.com/defunkt/github",
            "codebase": codebase,
            "project": project,
            "files": ["filepath.rb"],
            "properties": {"github_distinct": [true, "Change"], "event": ["push", "Change"]},
        }),
        json!({
            "author": "Fred Flinstone <fred@flinstone.org>",
            "committer": "Freddy Flinstone <freddy@flinstone.org>",
            "comments": "update pricing a tad",
            "branch": "master",
            "revision": "de8251ff97ee194a289832576287d6f8ad74e3d0",
            "revlink": "http://github.com/defunkt/github/commit/de8251ff97ee194a289832576287d6f8ad74e3d0",
            "when_timestamp": 1203114994,
            "category": null,
            "repository": "http://github.com/defunkt/github",
            "codebase": codebase,
            "project": project,
            "files": ["modfile", "removedFile"],
            "properties": {"github_distinct": [true, "Change"], "event": ["push", "Change"]},
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_github_push_as_json_or_form_makes_buildbots_two_changes() {
    let master = master("{github={secret='s3cret', strict=true}}", "").await;
    let body = payload("github_push.json");
    let (status, answer) = post(
        &master,
        "/change_hook/github",
        &[
            JSON,
            ("x-github-event", "push"),
            ("x-hub-signature-256", &sha256("s3cret", &body)),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer),
        (StatusCode::ACCEPTED, json!({"changeids": [1, 2]}))
    );
    // The same push form-encoded, signed with the older SHA-1, for another project.
    let encoded = form(&[("payload", std::str::from_utf8(&body).unwrap())]);
    let (status, _) = post(
        &master,
        "/change_hook/github?project=flintstones",
        &[
            FORM,
            ("x-github-event", "push"),
            ("x-hub-signature", &sha1("s3cret", &encoded)),
        ],
        encoded,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let changes: Vec<Value> = changes(&master).await.iter().map(fields).collect();
    let [first, second] = github_push_changes("", "defunkt/github");
    let [third, fourth] = github_push_changes("", "flintstones");
    assert_eq!(changes, [first, second, third, fourth]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pushes_with_missing_wrong_or_mislabelled_signatures_make_no_change() {
    let master = master("{github={secret='s3cret', strict=true}}", "").await;
    let body = payload("github_push.json");
    let push = ("x-github-event", "push");
    let cases: [(Vec<(&str, String)>, &str); 5] = [
        (
            vec![],
            "the request has no X-Hub-Signature-256 or X-Hub-Signature, which strict mode requires",
        ),
        (
            vec![("x-hub-signature-256", sha256("guess", &body))],
            "hash mismatch: the signature does not match the secret",
        ),
        (
            vec![("x-hub-signature", sha1("guess", &body))],
            "hash mismatch: the signature does not match the secret",
        ),
        (
            vec![(
                "x-hub-signature-256",
                sha1("s3cret", &body).replace("sha1", "sha256"),
            )],
            "hash mismatch: the signature does not match the secret",
        ),
        (
            vec![("x-hub-signature-256", sha1("s3cret", &body))],
            "unknown hash type 'sha1' (expected sha256)",
        ),
    ];
    for (signatures, error) in cases {
        let mut headers = vec![JSON, push];
        headers.extend(signatures.iter().map(|(n, v)| (*n, v.as_str())));
        let (status, answer) = post(&master, "/change_hook/github", &headers, body.clone()).await;
        assert_eq!(
            (status, answer),
            (StatusCode::FORBIDDEN, json!({ "error": error })),
            "{signatures:?}"
        );
    }
    // A dialect that is not enabled.
    let (status, answer) = post(&master, "/change_hook/gitlab", &[JSON], body.clone()).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "the dialect 'gitlab' is not enabled in change_hook_dialects"})
        )
    );
    assert!(changes(&master).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_strict_an_unsigned_github_push_is_taken_but_a_wrong_signature_is_not() {
    let master = master("{github={secret='s3cret'}}", "").await;
    let body = payload("github_push.json");
    let (status, _) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "push")],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(
        &master,
        "/change_hook/github",
        &[
            JSON,
            ("x-github-event", "push"),
            ("x-hub-signature", &sha1("nope", &body)),
        ],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(changes(&master).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_github_requests_are_refused_and_pings_make_nothing() {
    let master = master("{github=true}", "").await;
    let body = payload("github_push.json");
    // Headers, body, and the answer expected.
    type Case = (
        Vec<(&'static str, &'static str)>,
        Vec<u8>,
        StatusCode,
        Value,
    );
    let cases: [Case; 6] = [
        (
            vec![JSON, ("x-github-event", "ping")],
            b"{\"zen\": \"Keep it logically awesome.\"}".to_vec(),
            StatusCode::ACCEPTED,
            json!({"changeids": []}),
        ),
        (
            vec![JSON, ("x-github-event", "push")],
            b"{\"ref\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            json!({"error": "the body is not JSON: EOF while parsing a value at line 1 column 8"}),
        ),
        (
            vec![("content-type", "text/plain"), ("x-github-event", "push")],
            body.clone(),
            StatusCode::BAD_REQUEST,
            json!({"error": "unknown content type 'text/plain' (send application/json or application/x-www-form-urlencoded)"}),
        ),
        (
            vec![JSON, ("x-github-event", "blah")],
            body.clone(),
            StatusCode::BAD_REQUEST,
            json!({"error": "unknown event 'blah'"}),
        ),
        (
            vec![FORM, ("x-github-event", "push")],
            form(&[("payload", "{}")]),
            StatusCode::BAD_REQUEST,
            json!({"error": "the payload has no 'ref'"}),
        ),
        (
            vec![FORM, ("x-github-event", "push")],
            form(&[("other", "{}")]),
            StatusCode::BAD_REQUEST,
            json!({"error": "the form has no 'payload' field"}),
        ),
    ];
    for (headers, body, status, answer) in cases {
        assert_eq!(
            post(&master, "/change_hook/github", &headers, body).await,
            (status, answer.clone()),
            "{answer}"
        );
    }
    assert!(changes(&master).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_codebase_functions_class_handlers_skips_and_pull_requests() {
    let master = master(
        r#"{github={
          codebase=function(payload) return payload.repository.name .. "-cb" end,
          class={
            handle_release=function(payload, event)
              return {{author=payload.sender.login, comments=event .. " " .. payload.release.tag_name,
                       files={}, when_timestamp=1500000000, branch=payload.release.tag_name,
                       properties={kind="release"}}}
            end,
            handle_broken=function(payload, event) return payload.nothing.here end,
            handle_bad=function(payload, event) return {{files=3}} end,
          },
        }}"#,
        "",
    )
    .await;
    // The codebase function applies to every change of a push.
    let body = payload("github_push.json");
    let headers = [JSON, ("x-github-event", "push")];
    assert_eq!(
        post(&master, "/change_hook/github", &headers, body.clone())
            .await
            .0,
        StatusCode::ACCEPTED
    );
    // A head commit asking to skip CI makes nothing.
    let mut skipped: Value = serde_json::from_slice(&body).unwrap();
    skipped["head_commit"]["message"] = json!("typo [ci skip]");
    let (status, answer) = post(
        &master,
        "/change_hook/github",
        &headers,
        skipped.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, answer),
        (StatusCode::ACCEPTED, json!({"changeids": []}))
    );
    // A Lua handler for an event the built-in handler does not take.
    let release = json!({"sender": {"login": "wilma"}, "release": {"tag_name": "v1.0"}});
    let (status, _) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "release")],
        release.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A handler that fails, or answers no changes, is named by its place.
    let (status, answer) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "broken")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "master.cfg.lua:12: function failed: master.cfg.lua:12: attempt to index a nil value"
        ),
        "{error}"
    );
    let (status, answer) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "bad")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["error"],
        "master.cfg.lua:13: handler for 'bad' returned a change 1 that is not one: \
         invalid type: integer `3`, expected a sequence"
    );
    // A pull request opened: one change of the pull request's head.
    let pull = json!({
        "action": "opened",
        "number": 50,
        "sender": {"login": "defunkt"},
        "repository": {"html_url": "https://github.com/defunkt/github", "name": "github",
                       "full_name": "defunkt/github"},
        "pull_request": {
            "title": "Update the README with new information",
            "body": "This is a pretty simple change that we need to pull into master.",
            "commits": 1,
            "created_at": "2014-10-10T00:09:50Z",
            "head": {"sha": "05c588ba8cd510ecbe112d020f215facb17817a7", "ref": "changes"},
            "base": {"ref": "master", "repo": {"full_name": "defunkt/github"}},
            "_links": {"html": {"href": "https://github.com/defunkt/github/pull/50"}},
        },
    });
    let (status, _) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "pull_request")],
        pull.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut closed = pull.clone();
    closed["action"] = json!("closed");
    let (status, answer) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "pull_request")],
        closed.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, answer),
        (StatusCode::ACCEPTED, json!({"changeids": []}))
    );

    let changes: Vec<Value> = changes(&master).await.iter().map(fields).collect();
    let [first, second] = github_push_changes("github-cb", "defunkt/github");
    assert_eq!(changes[..2], [first, second]);
    assert_eq!(
        changes[2],
        json!({
            "author": "wilma", "committer": null, "comments": "release v1.0", "branch": "v1.0",
            "revision": null, "revlink": "", "when_timestamp": 1500000000, "category": null,
            "repository": "", "codebase": "", "project": "", "files": [],
            "properties": {"kind": ["release", "Change"]},
        })
    );
    assert_eq!(
        changes[3],
        json!({
            "author": "defunkt", "committer": null,
            "comments": "GitHub Pull Request #50 (1 commit)\nUpdate the README with new information\n\
                         This is a pretty simple change that we need to pull into master.",
            "branch": "refs/pull/50/merge",
            "revision": "05c588ba8cd510ecbe112d020f215facb17817a7",
            "revlink": "https://github.com/defunkt/github/pull/50",
            "when_timestamp": 1412899790, "category": "pull",
            "repository": "https://github.com/defunkt/github", "codebase": "github-cb",
            "project": "defunkt/github", "files": [],
            "properties": {
                "pullrequesturl": ["https://github.com/defunkt/github/pull/50", "Change"],
                "event": ["pull_request", "Change"],
                "basename": ["master", "Change"],
            },
        })
    );
    assert_eq!(changes.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_push_needs_its_token_and_takes_project_and_codebase_from_the_url() {
    let master = master("{gitlab={secret='t0ken'}}", "").await;
    let body = payload("gitlab_push.json");
    let event = ("x-gitlab-event", "Push Hook");
    for (token, error) in [
        (
            None,
            "the request has no X-Gitlab-Token, which the secret requires",
        ),
        (Some("guess"), "invalid secret in X-Gitlab-Token"),
    ] {
        let mut headers = vec![JSON, event];
        headers.extend(token.map(|t| ("x-gitlab-token", t)));
        assert_eq!(
            post(&master, "/change_hook/gitlab", &headers, body.clone()).await,
            (StatusCode::FORBIDDEN, json!({ "error": error }))
        );
    }
    assert!(changes(&master).await.is_empty());
    let (status, _) = post(
        &master,
        "/change_hook/gitlab?project=Diaspora&codebase=web",
        &[JSON, event, ("x-gitlab-token", "t0ken")],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(
        &master,
        "/change_hook/gitlab",
        &[JSON, event, ("x-gitlab-token", "t0ken")],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let changes: Vec<Value> = changes(&master).await.iter().map(fields).collect();
    let change = |codebase: &str, n: usize| {
        let (author, comments, revision, when) = match n {
            0 => (
                "Jordi Mallach <jordi@softcatala.org>",
                "Update Catalan translation to e38cb41.",
                "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
                1323692851,
            ),
            _ => (
                "GitLab dev user <gitlabdev@dv6700.(none)>",
                "fixed readme",
                "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                1325626589,
            ),
        };
        json!({
            "author": author, "committer": null, "comments": comments, "branch": "master",
            "revision": revision,
            "revlink": format!("http://localhost/diaspora/commits/{revision}"),
            "when_timestamp": when, "category": "Push Hook",
            "repository": "git@localhost:diaspora.git", "codebase": codebase,
            "project": "Diaspora", "files": [],
            "properties": {"event": ["Push Hook", "Change"]},
        })
    };
    assert_eq!(
        changes,
        [
            change("web", 0),
            change("web", 1),
            change("", 0),
            change("", 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitbucket_posts_old_and_cloud_make_buildbots_changes() {
    let master = master("{bitbucket=true, bitbucketcloud={codebase='bb'}}", "").await;
    let old = payload("bitbucket_push.json");
    let encoded = form(&[("payload", std::str::from_utf8(&old).unwrap())]);
    let (status, _) = post(
        &master,
        "/change_hook/bitbucket?project=project-x",
        &[FORM, ("x-event-key", "repo:push")],
        encoded,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cloud = payload("bitbucketcloud_push.json");
    assert_eq!(
        post(
            &master,
            "/change_hook/bitbucketcloud",
            &[JSON],
            cloud.clone()
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "the request has no X-Event-Key"})
        )
    );
    let (status, _) = post(
        &master,
        "/change_hook/bitbucketcloud",
        &[JSON, ("x-event-key", "repo:push")],
        cloud,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let changes: Vec<Value> = changes(&master).await.iter().map(fields).collect();
    assert_eq!(
        changes,
        [
            json!({
                "author": "Marcus Bertrand <marcus@somedomain.com>", "committer": null,
                "comments": "Added some more things to somefile.py", "branch": "master",
                "revision": "620ade18607ac42d872b568bb92acaa9a28620e9",
                "revlink": "https://bitbucket.org/marcus/project-x/commits/620ade18607ac42d872b568bb92acaa9a28620e9",
                "when_timestamp": 1338350336, "category": null,
                "repository": "https://bitbucket.org/marcus/project-x/", "codebase": "",
                "project": "project-x", "files": ["somefile.py"],
                "properties": {"event": ["repo:push", "Change"]},
            }),
            json!({
                "author": "John Smith <John>", "committer": null,
                "comments": "Bitbucket Cloud commit 793d4754230023d85532f9a38dba3290f959beb4",
                "branch": "refs/heads/branch_1496411680",
                "revision": "793d4754230023d85532f9a38dba3290f959beb4",
                "revlink": "http://localhost:7990/projects/CI/repos/py-repo/commits/793d4754230023d85532f9a38dba3290f959beb4",
                "when_timestamp": changes[1]["when_timestamp"], "category": "push",
                "repository": "http://localhost:7990/projects/CI/repos/py-repo", "codebase": "bb",
                "project": "Continuous Integration", "files": [], "properties": {},
            }),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_code_needs_its_hmac_and_gitorious_and_base_read_their_forms() {
    let master = master(
        "{googlecode={secret_key='FSP3p-Ghdn4T0oqX', branch='trunk'}, gitorious=true, base=true}",
        "",
    )
    .await;
    let google = json!({
        "project_name": "moonbot", "repository_path": "https://moonbot.googlecode.com/svn/",
        "revision_count": 1,
        "revisions": [{"revision": 42, "url": "https://code.google.com/p/moonbot/source/detail?r=42",
                       "author": "barney", "timestamp": 1300000000, "message": "fix the build",
                       "path_count": 3, "added": ["b.c"], "modified": ["a.c"], "removed": ["a.c"]}],
    })
    .to_string()
    .into_bytes();
    let mut mac = Hmac::<md5::Md5>::new_from_slice(b"FSP3p-Ghdn4T0oqX").unwrap();
    mac.update(&google);
    let signature = hex(&mac.finalize().into_bytes());
    let header = "google-code-project-hosting-hook-hmac";
    assert_eq!(
        post(
            &master,
            "/change_hook/googlecode",
            &[JSON, (header, "00ff")],
            google.clone()
        )
        .await,
        (
            StatusCode::FORBIDDEN,
            json!({"error": "the HMAC does not match the project's secret_key"})
        )
    );
    let (status, _) = post(
        &master,
        "/change_hook/googlecode",
        &[JSON, (header, &signature)],
        google,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let gitorious = json!({
        "after": "df5744f7bc8663b39717f87742dc94f52ccbf4dd", "ref": "master",
        "project": {"name": "moonbot"},
        "repository": {"name": "mainline", "url": "http://gitorious.org/moonbot/mainline",
                       "owner": {"name": "fred"}},
        "commits": [{"id": "df5744f7bc8663b39717f87742dc94f52ccbf4dd",
                     "author": {"name": "Fred", "email": "fred@example.org"},
                     "message": "add the hooks", "timestamp": "2010-12-20T13:55:23-08:00",
                     "url": "http://gitorious.org/moonbot/mainline/commit/df5744f7"}],
    });
    let (status, _) = post(
        &master,
        "/change_hook/gitorious",
        &[FORM],
        form(&[("payload", &gitorious.to_string())]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut deleted = gitorious.clone();
    deleted["after"] = json!("0000000000000000000000000000000000000000");
    let (status, answer) = post(
        &master,
        "/change_hook/gitorious",
        &[FORM],
        form(&[("payload", &deleted.to_string())]),
    )
    .await;
    assert_eq!(
        (status, answer),
        (StatusCode::ACCEPTED, json!({"changeids": []}))
    );

    // `/change_hook` alone is the base dialect; a bad field makes nothing.
    let (status, answer) = post(
        &master,
        "/change_hook",
        &[FORM],
        form(&[("author", "betty"), ("files", "[not json")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("'files' is not a JSON list of strings"));
    let (status, _) = post(
        &master,
        "/change_hook/base",
        &[FORM],
        form(&[
            ("who", "betty"),
            ("committer", "bamm"),
            ("comments", "new rock"),
            ("files", "[\"rock.c\", \"quarry/README\"]"),
            ("revision", "r7"),
            ("when", "1400000000.5"),
            ("branch", "stone"),
            ("category", "geology"),
            ("revlink", "http://example.org/r7"),
            ("properties", "{\"weight\": 3, \"tags\": [\"hard\"]}"),
            ("repository", "svn://example.org/bedrock"),
            ("project", "bedrock"),
            ("codebase", "core"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let changes: Vec<Value> = changes(&master).await.iter().map(fields).collect();
    assert_eq!(
        changes,
        [
            json!({
                "author": "barney", "committer": null, "comments": "fix the build",
                "branch": "trunk", "revision": "42",
                "revlink": "https://code.google.com/p/moonbot/source/detail?r=42",
                "when_timestamp": 1300000000, "category": null,
                "repository": "https://moonbot.googlecode.com/svn/", "codebase": "",
                "project": "moonbot", "files": ["a.c", "b.c"], "properties": {},
            }),
            json!({
                "author": "Fred <fred@example.org>", "committer": null,
                "comments": "add the hooks", "branch": "master",
                "revision": "df5744f7bc8663b39717f87742dc94f52ccbf4dd",
                "revlink": "http://gitorious.org/moonbot/mainline/commit/df5744f7",
                "when_timestamp": 1292882123, "category": null,
                "repository": "http://gitorious.org/moonbot/mainline", "codebase": "",
                "project": "moonbot", "files": [], "properties": {},
            }),
            json!({
                "author": "betty", "committer": "bamm", "comments": "new rock",
                "branch": "stone", "revision": "r7", "revlink": "http://example.org/r7",
                "when_timestamp": 1400000000, "category": "geology",
                "repository": "svn://example.org/bedrock", "codebase": "core",
                "project": "bedrock", "files": ["rock.c", "quarry/README"],
                "properties": {"weight": [3, "Change"], "tags": [["hard"], "Change"]},
            }),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_hook_auth_asks_every_hook_for_a_user_of_its_file_or_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("changehook.passwd"),
        "# users of the hooks\nhookuser:hookpass\n",
    )
    .unwrap();
    let master = TestMaster::start_in(
        dir,
        r#"
local c = BuildmasterConfig
c['status'] = { status.WebStatus{http_port="tcp:0:interface=127.0.0.1",
  change_hook_dialects={base=true},
  change_hook_auth={"file:changehook.passwd", "memory:robot:beep"}} }
"#,
    )
    .await;
    let url = format!("http://{}/change_hook/base", master.web_address.unwrap());
    let client = reqwest::Client::new();
    let body = form(&[("author", "fred"), ("comments", "x")]);
    for (user, password) in [
        (None, None),
        (Some("hookuser"), Some("wrong")),
        (Some("hookuse"), Some("hookpass")),
        (Some("robot"), Some("hookpass")),
    ] {
        let mut request = client.post(&url).header(FORM.0, FORM.1).body(body.clone());
        if let Some(user) = user {
            request = request.basic_auth(user, password);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{user:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"moonbot change hooks\""
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer,
            json!({"error": "change hooks need a user name and password of change_hook_auth"})
        );
    }
    // Credentials are checked before the dialect, so nothing is told about dialects.
    let response = client
        .post(format!(
            "http://{}/change_hook/github",
            master.web_address.unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(changes(&master).await.is_empty());
    for (user, password) in [("hookuser", "hookpass"), ("robot", "beep")] {
        let response = client
            .post(&url)
            .header(FORM.0, FORM.1)
            .basic_auth(user, Some(password))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{user}");
    }
    assert_eq!(changes(&master).await.len(), 2);
}

fn git(repo: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "Pebbles")
        .env("GIT_AUTHOR_EMAIL", "pebbles@example.org")
        .env("GIT_COMMITTER_NAME", "Pebbles")
        .env("GIT_COMMITTER_EMAIL", "pebbles@example.org")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_hook_polls_named_or_all_pollers_within_those_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("upstream");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.c"), "int a;\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let url = repo.to_str().unwrap().to_string();
    let master = TestMaster::start_in(
        dir,
        &format!(
            r#"
local c = BuildmasterConfig
c['change_source'] = {{
  changes.GitPoller{{repourl="{url}", branches={{"main"}}, pollInterval=3600, workdir="gitpoller-work"}},
  changes.GitPoller{{repourl="{url}", name="other", branches={{"main"}}, pollInterval=3600,
                     workdir="other-work"}},
  changes.PBChangeSource{{port="tcp:0:interface=127.0.0.1"}},
}}
c['status'] = {{ status.WebStatus{{http_port="tcp:0:interface=127.0.0.1",
  change_hook_dialects={{poller={{allowed={{"{url}"}}}}}}}} }}
"#
        ),
    )
    .await;
    let get = |query: String| {
        let address = master.web_address.unwrap();
        async move {
            let response = reqwest::get(format!("http://{address}/change_hook/poller{query}"))
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        get("?poller=other".into()).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "could not find pollers: other"})
        )
    );
    assert_eq!(
        get("?poller=nowhere".into()).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "could not find pollers: nowhere"})
        )
    );
    // The first poll records where the branches are.
    let state = format!("GitPoller:{url}");
    assert_eq!(
        get(format!("?poller={url}")).await,
        (StatusCode::ACCEPTED, json!({"polled": [url]}))
    );
    let db = &master.context.db;
    tokio::time::timeout(WAIT, async {
        while db.get_state(&state, "lastRev").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the poll the hook asked for records the heads");
    assert!(
        db.get_state("GitPoller:other", "lastRev")
            .await
            .unwrap()
            .is_none(),
        "a poller that is not allowed did not poll"
    );
    std::fs::write(repo.join("b.c"), "int b;\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    // Without a name: every polling source that is allowed.
    assert_eq!(
        get(String::new()).await,
        (StatusCode::ACCEPTED, json!({"polled": [url]}))
    );
    let change = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(change) = changes(&master).await.pop() {
                return change;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the poll finds the new commit");
    assert_eq!(
        (&change["comments"], &change["files"], &change["branch"]),
        (&json!("second"), &json!(["b.c"]), &json!("main"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_push_starts_a_build_through_a_scheduler_that_waits_for_important_files() {
    let master = master(
        "{github=true}",
        r#"
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{command={"true"}})
c['builders'] = { util.BuilderConfig{name="ruby", workernames={"local"}, factory=f} }
c['schedulers'] = { schedulers.SingleBranchScheduler{name="on-push", branch="master",
  treeStableTimer=1, builderNames={"ruby"},
  fileIsImportant=function(change)
    for _, file in ipairs(change.files) do if file:match("%.rb$") then return true end end
    return false
  end} }
"#,
    )
    .await;
    let (status, _) = post(
        &master,
        "/change_hook/github",
        &[JSON, ("x-github-event", "push")],
        payload("github_push.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let address = master.web_address.unwrap();
    let build = tokio::time::timeout(WAIT, async {
        loop {
            let answer = get_json(&format!("http://{address}/api/v2/builds")).await;
            if let Some(build) = answer["builds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["complete"] == json!(true))
            {
                return build.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the push builds");
    assert_eq!(build["results"], 0);
    // One build, of the push's last commit: the tree-stable timer gathered both changes.
    let answer = get_json(&format!("http://{address}/api/v2/builds")).await;
    assert_eq!(answer["builds"].as_array().unwrap().len(), 1);
    let answer = get_json(&format!(
        "http://{address}/api/v2/builds/{}/changes",
        build["buildid"]
    ))
    .await;
    let revisions: Vec<&Value> = answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["revision"])
        .collect();
    assert_eq!(revisions, ["de8251ff97ee194a289832576287d6f8ad74e3d0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_changes_the_dialects_and_secrets_without_a_restart() {
    let mut master = master("{github={secret='old'}}", "").await;
    let body = payload("gitlab_push.json");
    let gitlab = [JSON, ("x-gitlab-event", "Push Hook")];
    assert_eq!(
        post(&master, "/change_hook/gitlab", &gitlab, body.clone())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        r#"
local c = BuildmasterConfig
c['status'] = { status.WebStatus{http_port="tcp:0:interface=127.0.0.1",
  change_hook_dialects={gitlab=true, github={secret='new'}}} }
"#,
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.errors.is_empty(), "{outcome:?}");
    assert_eq!(
        post(&master, "/change_hook/gitlab", &gitlab, body).await.0,
        StatusCode::ACCEPTED
    );
    let push = payload("github_push.json");
    let signed = |secret: &str| sha256(secret, &push);
    let old = signed("old");
    let new = signed("new");
    for (signature, status) in [(&old, StatusCode::FORBIDDEN), (&new, StatusCode::ACCEPTED)] {
        let headers = [
            JSON,
            ("x-github-event", "push"),
            ("x-hub-signature-256", signature.as_str()),
        ];
        assert_eq!(
            post(&master, "/change_hook/github", &headers, push.clone())
                .await
                .0,
            status
        );
    }
    assert_eq!(changes(&master).await.len(), 4);
}
