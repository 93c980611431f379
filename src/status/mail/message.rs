//! The mail itself: the built-in message, the subject, the recipients, and the MIME text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::config::status::MailMode;
use crate::model::{BuildInfo, BuildResult, MasterInfo};

/// A message's text: what a `messageFormatter` returns, or the built-in message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText {
    pub body: String,
    /// `type='html'`; otherwise plain text.
    pub html: bool,
    /// The formatter's `subject`, which replaces the notifier's.
    pub subject: Option<String>,
}

/// A file attached to a mail: a log (`step.log`) or a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// `text/plain` for logs, `text/x-diff` for patches.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// A mail ready to be turned into RFC 5322 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: MessageText,
    /// `extraHeaders`, rendered.
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
}

/// Buildbot's built-in message (0.8's `defaultMessage`), followed by each step with its
/// result and log URLs. `previous` is the result of the build compared with for `change`
/// and `problem`, if there is one.
pub fn default_message(
    modes: &BTreeSet<MailMode>,
    name: &str,
    build: &BuildInfo,
    previous: Option<BuildResult>,
    master: &MasterInfo,
) -> MessageText {
    let mut text = String::new();
    let mut projects: Vec<&str> = Vec::new();
    for ss in &build.sourcestamps {
        if !ss.project.is_empty() && !projects.contains(&ss.project.as_str()) {
            projects.push(&ss.project);
        }
    }
    if projects.is_empty() {
        projects.push(&master.title);
    }
    let _ = writeln!(
        text,
        "{} on builder {name} while building {}.",
        intro(modes, build.results, previous),
        projects.join(", ")
    );

    // Without a buildbotURL there is no web UI to link to (Buildbot's getURLForThing is None).
    let linked = !master.buildbot_url.is_empty();
    if linked {
        let _ = writeln!(
            text,
            "Full details are available at:\n    {}",
            master.build_url(build.builder.id, build.number)
        );
    }
    text.push('\n');
    if linked {
        let _ = writeln!(text, "Buildbot URL: {}\n", master.buildbot_url);
    }
    let _ = writeln!(text, "Buildslave for this Build: {}\n", build.worker_name);
    let _ = writeln!(text, "Build Reason: {}", build.reason);
    for ss in &build.sourcestamps {
        let mut source = String::new();
        if let Some(branch) = &ss.branch {
            let _ = write!(source, "[branch {branch}] ");
        }
        source.push_str(ss.revision.as_deref().unwrap_or("HEAD"));
        if ss.patch.is_some() {
            source.push_str(" (plus patch)");
        }
        let codebase = if ss.codebase.is_empty() {
            String::new()
        } else {
            format!(" '{}'", ss.codebase)
        };
        let _ = writeln!(text, "Build Source Stamp{codebase}: {source}");
    }
    let _ = writeln!(text, "Blamelist: {}\n", build.responsible_users().join(","));

    let detail = if build.text.is_empty() {
        String::new()
    } else {
        format!(": {}", build.text.join(" "))
    };
    let _ = writeln!(text, "{}\n", outcome(build.results, &detail));

    if !build.steps.is_empty() {
        text.push_str("Steps:\n");
        for (number, step) in build.steps.iter().enumerate() {
            let result = step.results.map_or("not finished", BuildResult::name);
            let _ = writeln!(text, "    {}: {result}", step.name);
            for log in &step.logs {
                let url = master.log_url(build.builder.id, build.number, number, &log.slug());
                let _ = writeln!(text, "        {}: {url}", log.name);
            }
        }
    }
    text.push_str("\nsincerely,\n -The Buildbot\n\n");

    MessageText {
        body: text,
        html: false,
        subject: None,
    }
}

/// The message's first words: what kind of build this is, given the modes that made it
/// worth a mail.
fn intro(
    modes: &BTreeSet<MailMode>,
    results: Option<BuildResult>,
    previous: Option<BuildResult>,
) -> &'static str {
    let changed = modes.contains(&MailMode::Change)
        && previous.is_some_and(|previous| Some(previous) != results);
    match results {
        Some(BuildResult::Failure) => {
            let broke = modes.contains(&MailMode::Problem)
                && previous.is_some_and(|previous| previous != BuildResult::Failure);
            if changed || broke {
                "The Buildbot has detected a new failure"
            } else {
                "The Buildbot has detected a failed build"
            }
        }
        Some(BuildResult::Warnings) => "The Buildbot has detected a problem in the build",
        Some(BuildResult::Success) if changed => "The Buildbot has detected a restored build",
        Some(BuildResult::Success) => "The Buildbot has detected a passing build",
        Some(BuildResult::Exception) => "The Buildbot has detected a build exception",
        Some(BuildResult::Skipped) => "The Buildbot has detected a skipped build",
        Some(BuildResult::Retry) => "The Buildbot has detected a build to be retried",
        Some(BuildResult::Cancelled) => "The Buildbot has detected a cancelled build",
        None => "The Buildbot has detected a build still running",
    }
}

/// The line that sums the build up; `detail` is `": "` and the build's text, or empty.
fn outcome(results: Option<BuildResult>, detail: &str) -> String {
    match results {
        Some(BuildResult::Success) => "Build succeeded!".to_string(),
        Some(BuildResult::Warnings) => format!("Build Had Warnings{detail}"),
        Some(BuildResult::Failure | BuildResult::Exception) => format!("BUILD FAILED{detail}"),
        Some(BuildResult::Skipped) => format!("Build Skipped{detail}"),
        Some(BuildResult::Retry) => format!("Build Interrupted, To Be Retried{detail}"),
        Some(BuildResult::Cancelled) => format!("BUILD CANCELLED{detail}"),
        None => format!("Build Still Running{detail}"),
    }
}

/// The notifier's `subject` with `%(builder)s`, `%(result)s`, `%(title)s` and
/// `%(projectName)s` filled in, as Python's `%` does (`%%` is a literal `%`).
pub fn render_subject(template: &str, builder: &str, results: BuildResult, title: &str) -> String {
    let value = |key: &str| match key {
        "builder" => Some(builder),
        "result" => Some(results.name()),
        "title" | "projectName" => Some(title),
        _ => None,
    };
    let mut subject = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        subject.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            subject.push('%');
            rest = after;
            continue;
        }
        // The config checked the template; anything else is kept as written.
        let placeholder = rest
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .and_then(|(key, after)| Some((value(key)?, after.strip_prefix('s')?)));
        match placeholder {
            Some((text, after)) => {
                subject.push_str(text);
                rest = after;
            }
            None => subject.push('%'),
        }
    }
    subject.push_str(rest);
    subject
}

/// To and Cc as Buildbot 0.8 addresses them: with interested users (and
/// `sendToInterestedUsers`) they go in To and the extra recipients in Cc; otherwise the
/// extras go in To. Each list is sorted, without duplicates; an invalid address is dropped
/// with a warning naming `notifier`.
pub fn recipients(
    notifier: &str,
    interested: &[String],
    extra: &[String],
    send_to_interested: bool,
) -> (Vec<String>, Vec<String>) {
    let interested = if send_to_interested {
        valid_mailboxes(notifier, interested)
    } else {
        BTreeMap::new()
    };
    let extra = valid_mailboxes(notifier, extra);
    if interested.is_empty() {
        return (sorted(extra), Vec::new());
    }
    let cc = extra
        .into_iter()
        .filter(|(address, _)| !interested.contains_key(address))
        .collect();
    (sorted(interested), sorted(cc))
}

/// The addresses that parse, keyed by their lowercased address part so that `Name <a@b>`
/// and `a@b` count once (the first one written wins).
fn valid_mailboxes(notifier: &str, addresses: &[String]) -> BTreeMap<String, Mailbox> {
    let mut valid = BTreeMap::new();
    for written in addresses {
        match parse_recipient(written) {
            Some(mailbox) => {
                valid
                    .entry(mailbox.email.to_string().to_lowercase())
                    .or_insert(mailbox);
            }
            None => tracing::warn!("MailNotifier {notifier}: dropping invalid address {written:?}"),
        }
    }
    valid
}

/// One address as written, or as Buildbot 0.8 repairs a git author that a lookup domain
/// was appended to (`User <user@foo.com>@foo.com`: the last `@...` goes).
fn parse_recipient(written: &str) -> Option<Mailbox> {
    let written = written.trim();
    written.parse().ok().or_else(|| {
        let (repaired, _) = written.rsplit_once('@')?;
        repaired.contains('@').then(|| repaired.parse().ok())?
    })
}

fn sorted(mailboxes: BTreeMap<String, Mailbox>) -> Vec<String> {
    let mut list: Vec<String> = mailboxes.into_values().map(|m| m.to_string()).collect();
    list.sort();
    list
}

/// Headers `compose` sets itself; `extraHeaders` cannot replace them (Buildbot skips those
/// with a warning too).
const OWN_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The mail as RFC 5322 bytes (MIME multipart when there are attachments), or why it
/// cannot be (an address or header that does not parse).
pub fn compose(mail: &Mail) -> Result<Vec<u8>, String> {
    if mail.to.is_empty() && mail.cc.is_empty() {
        return Err("mail has no recipients".into());
    }
    let mailbox = |role: &str, address: &str| {
        address
            .parse::<Mailbox>()
            .map_err(|e| format!("{role} address {address:?} does not parse: {e}"))
    };
    let mut builder = lettre::Message::builder()
        .from(mailbox("from", &mail.from)?)
        .subject(mail.subject.clone())
        .date_now()
        .message_id(None);
    for address in &mail.to {
        builder = builder.to(mailbox("to", address)?);
    }
    for address in &mail.cc {
        builder = builder.cc(mailbox("cc", address)?);
    }
    for (name, value) in &mail.headers {
        if OWN_HEADERS.iter().any(|own| own.eq_ignore_ascii_case(name)) {
            tracing::warn!("mail header {name:?} from extraHeaders is set by the notifier itself; not adding it");
            continue;
        }
        let header = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| format!("extra header name {name:?} is not a valid header name"))?;
        builder = builder.raw_header(HeaderValue::new(header, value.clone()));
    }

    let content_type = if mail.text.html {
        ContentType::TEXT_HTML
    } else {
        ContentType::TEXT_PLAIN
    };
    let body = SinglePart::builder()
        .header(content_type)
        .body(mail.text.body.clone());
    let message = if mail.attachments.is_empty() {
        builder.singlepart(body)
    } else {
        let mut parts = MultiPart::mixed().singlepart(body);
        for attachment in &mail.attachments {
            let content_type = ContentType::parse(&attachment.content_type).map_err(|e| {
                format!(
                    "attachment {:?} has a content type {:?} that does not parse: {e}",
                    attachment.filename, attachment.content_type
                )
            })?;
            // Base64 whatever the bytes: a log arrives exactly as it was written.
            let content = Body::new_with_encoding(
                attachment.content.clone(),
                ContentTransferEncoding::Base64,
            )
            .map_err(|_| format!("attachment {:?} cannot be encoded", attachment.filename))?;
            parts = parts.singlepart(
                lettre::message::Attachment::new(attachment.filename.clone())
                    .body(content, content_type),
            );
        }
        builder.multipart(parts)
    };
    message
        .map(|message| message.formatted())
        .map_err(|e| format!("mail cannot be built: {e}"))
}

/// Golden files, shared with the integration tests.
#[cfg(test)]
#[path = "../../../tests/support/golden.rs"]
mod golden;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mailparse::MailHeaderMap;
    use serde_json::json;

    use super::*;
    use crate::model::{
        BuilderInfo, Change, LogInfo, LogSource, Patch, Properties, SourceStamp, StepInfo,
    };

    struct NoText;

    impl LogSource for NoText {
        fn text(&self) -> anyhow::Result<String> {
            Ok(String::new())
        }
    }

    fn log(name: &str) -> LogInfo {
        LogInfo {
            name: name.into(),
            finished: true,
            source: Arc::new(NoText),
        }
    }

    fn step(name: &str, results: Option<BuildResult>, logs: &[&str]) -> StepInfo {
        StepInfo {
            name: name.into(),
            results,
            complete_at: results.map(|_| 1_700_000_300.0),
            logs: logs.iter().map(|name| log(name)).collect(),
            ..StepInfo::default()
        }
    }

    fn master() -> MasterInfo {
        MasterInfo {
            title: "Example".into(),
            title_url: "https://example.org/".into(),
            buildbot_url: "http://ci.example.org/".into(),
            builders: Vec::new(),
        }
    }

    /// linux #17 on worker1, one sourcestamp of project demo with a change by alice; git
    /// passed and compile ended with `results`.
    fn build(results: BuildResult, text: &[&str]) -> BuildInfo {
        BuildInfo {
            builder: BuilderInfo {
                id: 3,
                name: "linux".into(),
                tags: Vec::new(),
            },
            number: 17,
            reason: "The SingleBranchScheduler scheduler named 'main' triggered this build".into(),
            results: Some(results),
            text: text.iter().map(|s| s.to_string()).collect(),
            started_at: 1_700_000_100.0,
            complete_at: Some(1_700_000_400.0),
            worker_name: "worker1".into(),
            sourcestamps: vec![SourceStamp {
                branch: Some("master".into()),
                revision: Some("abc123".into()),
                repository: "https://example.org/repo.git".into(),
                project: "demo".into(),
                changes: vec![Change {
                    who: "Alice <alice@example.org>".into(),
                    ..Change::default()
                }],
                ..SourceStamp::default()
            }],
            steps: vec![
                step("git", Some(BuildResult::Success), &["stdio"]),
                step("compile", Some(results), &["stdio"]),
            ],
            ..BuildInfo::default()
        }
    }

    fn modes(list: &[MailMode]) -> BTreeSet<MailMode> {
        list.iter().copied().collect()
    }

    /// Compares `actual` with `tests/golden/mail/<name>.txt`.
    fn golden(name: &str, actual: &str) {
        golden::check(format!("tests/golden/mail/{name}.txt"), actual);
    }

    fn message(
        list: &[MailMode],
        build: &BuildInfo,
        previous: Option<BuildResult>,
        master: &MasterInfo,
    ) -> String {
        let text = default_message(&modes(list), &build.builder.name, build, previous, master);
        assert!(!text.html);
        assert_eq!(text.subject, None);
        text.body
    }

    #[test]
    fn new_failure_after_a_success() {
        let mut failed = build(BuildResult::Failure, &["failed", "compile"]);
        failed.steps[1].logs.push(log("test results.xml"));
        failed.steps.push(step("upload", None, &["stdio"]));
        let body = message(
            &[MailMode::Change],
            &failed,
            Some(BuildResult::Success),
            &master(),
        );
        golden("failure_new", &body);
        // `problem` says the same when the previous build did not fail.
        let problem = message(
            &[MailMode::Problem],
            &failed,
            Some(BuildResult::Warnings),
            &master(),
        );
        assert_eq!(problem, body);
    }

    #[test]
    fn failure_again_is_a_failed_build() {
        let failed = build(BuildResult::Failure, &["failed", "compile"]);
        let body = message(
            &[MailMode::Change, MailMode::Problem, MailMode::Failing],
            &failed,
            Some(BuildResult::Failure),
            &master(),
        );
        golden("failure_again", &body);
    }

    #[test]
    fn warnings_show_the_build_text() {
        let warned = build(BuildResult::Warnings, &["warnings", "compile"]);
        let body = message(&[MailMode::Warnings], &warned, None, &master());
        golden("warnings", &body);
    }

    #[test]
    fn success_after_a_failure_is_restored() {
        let passed = build(BuildResult::Success, &[]);
        let body = message(
            &[MailMode::Change],
            &passed,
            Some(BuildResult::Failure),
            &master(),
        );
        golden("success_restored", &body);
    }

    #[test]
    fn exception() {
        let broken = build(BuildResult::Exception, &["exception", "interrupted"]);
        let body = message(&[MailMode::Exception], &broken, None, &master());
        golden("exception", &body);
    }

    #[test]
    fn codebases_with_a_patch_and_owners() {
        let mut try_build = build(BuildResult::Failure, &["failed", "test"]);
        try_build.sourcestamps = vec![
            SourceStamp {
                codebase: "app".into(),
                branch: Some("feature".into()),
                revision: Some("1111111".into()),
                project: "app".into(),
                patch: Some(Patch {
                    level: 1,
                    body: b"--- a\n+++ b\n".to_vec(),
                    author: Some("carol".into()),
                    ..Patch::default()
                }),
                ..SourceStamp::default()
            },
            SourceStamp {
                codebase: "lib".into(),
                project: "lib".into(),
                ..SourceStamp::default()
            },
            SourceStamp {
                codebase: "docs".into(),
                revision: Some("2222222".into()),
                project: "app".into(),
                ..SourceStamp::default()
            },
        ];
        try_build.properties = Properties::from_pairs([("owner", json!("dave"))], "Build");
        let body = message(&[MailMode::Failing], &try_build, None, &master());
        golden("codebases_patch", &body);
    }

    #[test]
    fn without_sources_steps_or_web_ui() {
        let mut bare = build(BuildResult::Cancelled, &["cancelled"]);
        bare.sourcestamps.clear();
        bare.steps.clear();
        let master = MasterInfo {
            buildbot_url: String::new(),
            ..master()
        };
        let body = message(&[MailMode::Failing], &bare, None, &master);
        golden("bare_cancelled", &body);
    }

    #[test]
    fn intro_follows_the_modes_and_the_previous_result() {
        use BuildResult::*;
        use MailMode::{Change, Failing, Passing, Problem};
        let first_line = |list: &[MailMode], results, previous| {
            let body = message(list, &build(results, &[]), previous, &master());
            let line = body.lines().next().unwrap().to_string();
            line.split(" on builder ").next().unwrap().to_string()
        };
        let cases = [
            (&[Change][..], Failure, Some(Success), "a new failure"),
            (&[Change], Failure, Some(Exception), "a new failure"),
            (&[Change], Failure, None, "a failed build"),
            (&[Change], Failure, Some(Failure), "a failed build"),
            (&[Problem], Failure, Some(Success), "a new failure"),
            (&[Problem], Failure, Some(Failure), "a failed build"),
            (&[Failing], Failure, Some(Success), "a failed build"),
            (&[Change], Success, Some(Warnings), "a restored build"),
            (&[Change], Success, Some(Success), "a passing build"),
            (&[Passing], Success, Some(Failure), "a passing build"),
            (&[Change], Warnings, Some(Success), "a problem in the build"),
            (&[MailMode::Exception], Exception, None, "a build exception"),
            (&[Failing], Skipped, None, "a skipped build"),
            (&[Failing], Retry, None, "a build to be retried"),
        ];
        for (list, results, previous, expected) in cases {
            assert_eq!(
                first_line(list, results, previous),
                format!("The Buildbot has detected {expected}"),
                "{list:?} {results:?} after {previous:?}"
            );
        }
    }

    #[test]
    fn subject_fills_placeholders_like_python() {
        assert_eq!(
            render_subject(
                "%(projectName)s: %(builder)s is %(result)s (100%%) in %(title)s",
                "linux",
                BuildResult::Failure,
                "Example"
            ),
            "Example: linux is failure (100%) in Example"
        );
        assert_eq!(
            render_subject("buildbot %(result)s", "linux", BuildResult::Warnings, "X"),
            "buildbot warnings"
        );
        // A template the config would have refused keeps its unknown part as written.
        assert_eq!(
            render_subject(
                "%(nope)s 5% %(builder)s",
                "linux",
                BuildResult::Success,
                "X"
            ),
            "%(nope)s 5% linux"
        );
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn interested_users_go_in_to_and_extras_in_cc() {
        let (to, cc) = recipients(
            "mn",
            &strings(&[
                "zed@example.org",
                "Alice <alice@example.org>",
                "ALICE@example.org",
                "not an address",
                "Bob <bob@example.org>@example.org",
            ]),
            &strings(&["list@example.org", "bob@example.org", "admin@example.org"]),
            true,
        );
        assert_eq!(
            to,
            [
                "Alice <alice@example.org>",
                "Bob <bob@example.org>",
                "zed@example.org"
            ]
        );
        // bob is already in To.
        assert_eq!(cc, ["admin@example.org", "list@example.org"]);
    }

    #[test]
    fn extras_go_in_to_without_interested_users() {
        let extra = strings(&["list@example.org", "admin@example.org", "list@example.org"]);
        for (interested, send) in [
            (strings(&["alice@example.org"]), false),
            (strings(&["@@@", ""]), true),
            (Vec::new(), true),
        ] {
            let (to, cc) = recipients("mn", &interested, &extra, send);
            assert_eq!(
                to,
                ["admin@example.org", "list@example.org"],
                "{interested:?}"
            );
            assert!(cc.is_empty());
        }
        assert_eq!(
            recipients("mn", &[], &strings(&["bad"]), true),
            (Vec::new(), Vec::new())
        );
    }

    fn mail(attachments: Vec<Attachment>) -> Mail {
        Mail {
            from: "Buildbot <buildbot@example.org>".into(),
            to: strings(&["Alice <alice@example.org>", "zed@example.org"]),
            cc: strings(&["list@example.org"]),
            subject: "buildbot failure in Exämple on linux".into(),
            text: MessageText {
                body: "The Buildbot has detected a new failure.\nBuild: ✓\n".into(),
                html: false,
                subject: None,
            },
            headers: vec![
                ("X-Buildbot-Builder".into(), "linux".into()),
                ("Precedence".into(), "bulk\r\nBcc: evil@example.org".into()),
                ("Subject".into(), "replaced?".into()),
            ],
            attachments,
        }
    }

    #[test]
    fn compose_writes_headers_and_a_plain_body() {
        let bytes = compose(&mail(Vec::new())).unwrap();
        let parsed = mailparse::parse_mail(&bytes).unwrap();
        let header = |name: &str| parsed.headers.get_first_value(name);
        assert_eq!(
            header("From").as_deref(),
            Some("Buildbot <buildbot@example.org>")
        );
        assert_eq!(
            header("To").as_deref(),
            Some("Alice <alice@example.org>, zed@example.org")
        );
        assert_eq!(header("Cc").as_deref(), Some("list@example.org"));
        assert_eq!(
            header("Subject").as_deref(),
            Some("buildbot failure in Exämple on linux")
        );
        assert!(header("Date").is_some());
        assert!(header("Message-ID").is_some_and(|id| id.starts_with('<')));
        assert_eq!(header("X-Buildbot-Builder").as_deref(), Some("linux"));
        // A value cannot smuggle in a header, and the notifier's own headers stay.
        assert_eq!(header("Bcc"), None);
        assert_eq!(
            header("Precedence").as_deref(),
            Some("bulk\r\nBcc: evil@example.org")
        );
        assert_eq!(parsed.headers.get_all_values("Subject").len(), 1);
        assert_eq!(parsed.ctype.mimetype, "text/plain");
        assert_eq!(parsed.ctype.charset, "utf-8");
        assert!(parsed.subparts.is_empty());
        // Lines end in CRLF on the wire; the part ends with one more.
        assert_eq!(
            parsed.get_body().unwrap(),
            "The Buildbot has detected a new failure.\r\nBuild: ✓\r\n\r\n"
        );
    }

    #[test]
    fn compose_attaches_files_after_the_body() {
        let log: Vec<u8> = (0..2000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut with_files = mail(vec![
            Attachment {
                filename: "compile.stdio".into(),
                content_type: "text/plain".into(),
                content: log.clone(),
            },
            Attachment {
                filename: "patch.diff".into(),
                content_type: "text/x-diff".into(),
                content: b"--- a\n+++ b\n\xff".to_vec(),
            },
        ]);
        with_files.text.html = true;
        with_files.text.body = "<h4>Build status: FAILURE</h4>".into();
        let bytes = compose(&with_files).unwrap();
        let parsed = mailparse::parse_mail(&bytes).unwrap();
        assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
        let parts = &parsed.subparts;
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].ctype.mimetype, "text/html");
        assert_eq!(
            parts[0].get_body().unwrap(),
            "<h4>Build status: FAILURE</h4>"
        );
        assert_eq!(
            parts[0].get_content_disposition().disposition,
            mailparse::DispositionType::Inline
        );
        for (part, (filename, mimetype, content)) in parts[1..].iter().zip([
            ("compile.stdio", "text/plain", &log),
            ("patch.diff", "text/x-diff", &b"--- a\n+++ b\n\xff".to_vec()),
        ]) {
            let disposition = part.get_content_disposition();
            assert_eq!(
                disposition.disposition,
                mailparse::DispositionType::Attachment
            );
            assert_eq!(
                disposition.params.get("filename").map(String::as_str),
                Some(filename)
            );
            assert_eq!(part.ctype.mimetype, mimetype);
            assert_eq!(
                part.headers
                    .get_first_value("Content-Transfer-Encoding")
                    .as_deref(),
                Some("base64")
            );
            assert_eq!(&part.get_body_raw().unwrap(), content, "{filename}");
        }
    }

    #[test]
    fn compose_names_what_does_not_parse() {
        let no_one = Mail {
            to: Vec::new(),
            cc: Vec::new(),
            ..mail(Vec::new())
        };
        assert_eq!(compose(&no_one).unwrap_err(), "mail has no recipients");

        let bad_from = Mail {
            from: "buildbot at example".into(),
            ..mail(Vec::new())
        };
        let error = compose(&bad_from).unwrap_err();
        assert!(
            error.starts_with("from address \"buildbot at example\" does not parse"),
            "{error}"
        );

        let mut bad_header = mail(Vec::new());
        bad_header.headers = vec![("X Bad".into(), "1".into())];
        assert_eq!(
            compose(&bad_header).unwrap_err(),
            "extra header name \"X Bad\" is not a valid header name"
        );

        let bad_type = mail(vec![Attachment {
            filename: "x.log".into(),
            content_type: "not a type".into(),
            content: Vec::new(),
        }]);
        let error = compose(&bad_type).unwrap_err();
        assert!(
            error.starts_with("attachment \"x.log\" has a content type \"not a type\""),
            "{error}"
        );
    }
}
