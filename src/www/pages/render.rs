//! Rendering: the template environment (built-in templates, replaced by files of the same
//! name in the template directories), the filters pages use, and the links a change gets
//! from `revlink`, `changecommentlink`, `projects` and `repositories`.

use std::path::PathBuf;

use minijinja::{AutoEscape, Environment, Value as JinjaValue};
use serde_json::{json, Value};

use crate::config::status::{CommentLink, CommentLinkRule, RevLink, UrlMap, WebStatusConfig};
use crate::model::BuildResult;
use crate::runtime::Context;
use crate::script::{Arg, Callback};

/// The stylesheet served as `/default.css` unless `public_html` has one.
pub const STYLESHEET: &str = include_str!("templates/default.css");

/// `robots.txt` unless `public_html` has one: crawlers stay off the logs.
pub const ROBOTS: &str = include_str!("templates/robots.txt");

/// The built-in templates, by name.
const BUILT_IN: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("root.html", include_str!("templates/root.html")),
    ("about.html", include_str!("templates/about.html")),
    ("builders.html", include_str!("templates/builders.html")),
    ("builder.html", include_str!("templates/builder.html")),
    ("build.html", include_str!("templates/build.html")),
    ("log.html", include_str!("templates/log.html")),
    ("changes.html", include_str!("templates/changes.html")),
    ("change.html", include_str!("templates/change.html")),
    ("workers.html", include_str!("templates/workers.html")),
    ("worker.html", include_str!("templates/worker.html")),
    ("login.html", include_str!("templates/login.html")),
    ("users.html", include_str!("templates/users.html")),
    ("ping.html", include_str!("templates/ping.html")),
    ("shutdown.html", include_str!("templates/shutdown.html")),
    ("waterfall.html", include_str!("templates/waterfall.html")),
    (
        "one_line_per_build.html",
        include_str!("templates/one_line_per_build.html"),
    ),
    ("console.html", include_str!("templates/console.html")),
    ("grid.html", include_str!("templates/grid.html")),
    ("tgrid.html", include_str!("templates/tgrid.html")),
    ("step.html", include_str!("templates/step.html")),
    (
        "buildstatus.html",
        include_str!("templates/buildstatus.html"),
    ),
    (
        "one_box_per_builder.html",
        include_str!("templates/one_box_per_builder.html"),
    ),
    ("rss.xml", include_str!("templates/rss.xml")),
    ("atom.xml", include_str!("templates/atom.xml")),
    ("jsonhelp.html", include_str!("templates/jsonhelp.html")),
];

/// The template environment; each template is read and compiled once, on first use.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Templates are looked up in `dirs` in order, then among the built-in ones.
    pub fn new(dirs: Vec<PathBuf>) -> Templates {
        let mut env = Environment::new();
        env.set_loader(move |name| {
            for dir in &dirs {
                let path = dir.join(name);
                match std::fs::read_to_string(&path) {
                    Ok(text) => return Ok(Some(text)),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("cannot read template {}: {error}", path.display()),
                        ))
                    }
                }
            }
            Ok(BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| text.to_string()))
        });
        env.set_formatter(html_formatter);
        env.add_filter("time", time);
        env.add_filter("duration", duration);
        env.add_filter("eta", eta);
        env.add_filter("result", result_name);
        env.add_function("results_class", results_class);
        env.add_function("empty_cells", empty_cells);
        Templates { env }
    }

    pub fn render(&self, name: &str, values: Value) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(JinjaValue::from_serialize(&values))
    }
}

/// Escapes strings as [`escape`] does, leaving `/` as it is (minijinja writes `&#x2f;`,
/// which makes every URL of a page unreadable in its source).
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &JinjaValue,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if !value.is_safe() && state.auto_escape() != AutoEscape::None => {
            out.write_str(&escape(text)).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// `{{ t | time }}`: seconds since the epoch as a UTC date and time.
fn time(value: JinjaValue) -> String {
    let Some(seconds) = i64::try_from(value).ok() else {
        return String::new();
    };
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `{{ start | duration(end) }}`: how long from one time to the other, `2 min 5 s`.
fn duration(start: JinjaValue, end: JinjaValue) -> String {
    let (Ok(start), Ok(end)) = (i64::try_from(start), i64::try_from(end)) else {
        return String::new();
    };
    let seconds = (end - start).max(0);
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// `{{ seconds | eta }}`: how long until something is expected, `in 2 min 5 s`.
fn eta(seconds: JinjaValue) -> String {
    format!("in {}", duration(JinjaValue::from(0), seconds))
}

/// `{{ code | result }}`: a result code's name (`success`), or empty for none.
fn result_name(value: JinjaValue) -> String {
    i64::try_from(value)
        .ok()
        .and_then(BuildResult::from_code)
        .map(|r| r.name().to_string())
        .unwrap_or_default()
}

/// `results_class(item)`: the CSS class of a build or step: its result, or `running`, or
/// `pending` before it started.
fn results_class(item: JinjaValue) -> String {
    let complete = item.get_attr("complete").ok().is_some_and(|v| v.is_true());
    if complete {
        let code = item.get_attr("results").unwrap_or_default();
        let name = result_name(code);
        return if name.is_empty() {
            "success".into()
        } else {
            name
        };
    }
    let started = item
        .get_attr("started_at")
        .ok()
        .is_some_and(|v| !v.is_none() && !v.is_undefined());
    if started { "running" } else { "pending" }.into()
}

/// `empty_cells(n)`: `n` empty table cells, for the columns a waterfall row leaves empty:
/// written at once instead of a template loop over every column of every row, which was
/// most of a waterfall's cost.
fn empty_cells(count: i64) -> JinjaValue {
    JinjaValue::from_safe_string("<td></td>".repeat(usize::try_from(count).unwrap_or(0)))
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A change with what the page links: `revlink` (URL of its revision), `comments_html`
/// (its comments escaped, tickets linked by `changecommentlink`), `project_url` and
/// `repository_url`. Options given as Lua functions are called on the script host, under
/// its deadline; one that fails, or answers something else than a string (or nil), is
/// logged with its `file:line` and the page shows the plain text.
pub async fn change_links(context: &Context, web: &WebStatusConfig, change: &Value) -> Value {
    let text = |name: &str| change[name].as_str().unwrap_or_default().to_string();
    let (revision, repository, project) = (text("revision"), text("repository"), text("project"));
    let revlink = match &web.revlink {
        Some(RevLink::Format(format)) if !revision.is_empty() => {
            Some(format.replacen("%s", &url_encode(&revision), 1))
        }
        Some(RevLink::PerRepository(formats)) if !revision.is_empty() => formats
            .get(&repository)
            .map(|format| format.replacen("%s", &url_encode(&revision), 1)),
        Some(RevLink::Function(function)) if !revision.is_empty() => {
            let args = vec![Arg::from(revision.as_str()), Arg::from(repository.as_str())];
            call_for_text(context, "revlink", function, args).await
        }
        _ => None,
    };
    let comments = text("comments");
    let comments_html = match &web.changecommentlink {
        Some(CommentLink::Rule(rule)) => link_tickets(rule, &comments),
        Some(CommentLink::PerProject(rules)) => match rules.get(&project) {
            Some(rule) => link_tickets(rule, &comments),
            None => escape(&comments),
        },
        Some(CommentLink::Function(function)) => {
            let args = vec![Arg::from(escape(&comments)), Arg::from(project.as_str())];
            call_for_text(context, "changecommentlink", function, args)
                .await
                .unwrap_or_else(|| escape(&comments))
        }
        None => escape(&comments),
    };
    let mut change = change.clone();
    change["revlink"] = json!(revlink);
    change["comments_html"] = json!(comments_html);
    change["project_url"] = json!(url_of(context, "projects", &web.projects, &project).await);
    change["repository_url"] =
        json!(url_of(context, "repositories", &web.repositories, &repository).await);
    change
}

/// The URL `projects` or `repositories` gives a name, if any.
async fn url_of(
    context: &Context,
    option: &str,
    map: &Option<UrlMap>,
    name: &str,
) -> Option<String> {
    match map {
        Some(UrlMap::Table(urls)) => urls.get(name).cloned(),
        Some(UrlMap::Function(function)) if !name.is_empty() => {
            call_for_text(context, option, function, vec![Arg::from(name)]).await
        }
        _ => None,
    }
}

/// A link option's Lua function called with `args`: the string it answers, or `None` for
/// nil, a failure or anything else (logged).
async fn call_for_text(
    context: &Context,
    option: &str,
    function: &Callback,
    args: Vec<Arg>,
) -> Option<String> {
    match context.script.call::<Value>(function, args).await {
        Ok(Value::String(text)) => Some(text),
        Ok(Value::Null) => None,
        Ok(other) => {
            tracing::warn!(
                "{}: WebStatus {option}: function returned {other}, not a string; the page shows plain text",
                function.location()
            );
            None
        }
        Err(error) => {
            tracing::warn!("WebStatus {option}: {error}; the page shows plain text");
            None
        }
    }
}

/// The comments escaped, each match of the rule's regex a link to its replacement URL
/// (Python's `\1` and `\g<name>` references, as Buildbot's re.sub reads them).
fn link_tickets(rule: &CommentLinkRule, comments: &str) -> String {
    let Ok(regex) = regex::Regex::new(&rule.regex) else {
        return escape(comments);
    };
    let replacement = python_replacement(&rule.replacement);
    let mut out = String::new();
    let mut at = 0;
    for captures in regex.captures_iter(comments) {
        let whole = captures.get(0).expect("a match has group 0");
        out.push_str(&escape(&comments[at..whole.start()]));
        let mut url = String::new();
        captures.expand(&replacement, &mut url);
        out.push_str(&format!(
            "<a href=\"{}\" title=\"{}\">{}</a>",
            escape(&url),
            escape(&rule.title),
            escape(whole.as_str())
        ));
        at = whole.end();
    }
    out.push_str(&escape(&comments[at..]));
    out
}

/// Python's replacement syntax (`\1`, `\g<1>`, `\g<name>`) in the regex crate's (`${1}`).
fn python_replacement(python: &str) -> String {
    let group = regex::Regex::new(r"\\g<(\w+)>|\\(\d+)|\$").expect("a valid regex");
    group
        .replace_all(python, |c: &regex::Captures| match (c.get(1), c.get(2)) {
            (Some(name), _) | (None, Some(name)) => format!("${{{}}}", name.as_str()),
            _ => "$$".to_string(),
        })
        .into_owned()
}

fn url_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_references_become_links_with_python_group_syntax() {
        let rule = CommentLinkRule {
            regex: r"#(\d+)".into(),
            replacement: r"http://trac/ticket/\1".into(),
            title: "Trac Ticket".into(),
        };
        assert_eq!(
            link_tickets(&rule, "fix #12 & <b>"),
            "fix <a href=\"http://trac/ticket/12\" title=\"Trac Ticket\">#12</a> &amp; &lt;b&gt;"
        );
    }

    #[test]
    fn durations_read_in_seconds_minutes_and_hours() {
        assert_eq!(duration(JinjaValue::from(0), JinjaValue::from(5)), "5 s");
        assert_eq!(
            duration(JinjaValue::from(0), JinjaValue::from(125)),
            "2 min 5 s"
        );
        assert_eq!(
            duration(JinjaValue::from(0), JinjaValue::from(7260)),
            "2 h 1 min"
        );
    }
}
