//! `/rss` and `/atom`: the failed builds (results FAILURE or EXCEPTION), newest first, as
//! feeds, chosen by the waterfall's query arguments; `numbuilds=` of them (the config's
//! `numbuilds` by default). Templates `rss.xml` and `atom.xml` may be replaced as the
//! pages' are. A feed `provide_feeds` leaves out is a 404.

use axum::extract::{RawQuery, State};
use serde_json::{json, Value};

use super::{
    arguments, builder_columns, builder_names, count, selected_builds, web_config,
    with_builder_name, PageError, PageResult, Pages,
};
use crate::model::BuildResult;

pub async fn rss(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    feed(&pages, &raw, "rss", "application/rss+xml").await
}

pub async fn atom(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    feed(&pages, &raw, "atom", "application/atom+xml").await
}

async fn feed(
    pages: &Pages,
    raw: &Option<String>,
    kind: &str,
    content_type: &'static str,
) -> PageResult {
    let web = web_config(&pages.context);
    if !web.provide_feeds.iter().any(|f| f == kind) {
        return Err(PageError::not_found(format!(
            "no page at /{kind}: provide_feeds leaves it out"
        )));
    }
    let args = arguments(raw);
    let limit = count(&args, "numbuilds", web.numbuilds, None)?;
    let columns = builder_columns(pages, &args).await?;
    let failed = [BuildResult::Failure.code(), BuildResult::Exception.code()];
    let builds = selected_builds(pages, &args, &columns, limit, true, &failed).await?;
    let names = builder_names(pages).await?;
    let url = pages.context.config.current().buildbot_url.clone();
    let entries: Vec<Value> = builds
        .into_iter()
        .map(|build| {
            let mut build = with_builder_name(build, &names);
            let complete_at = build["complete_at"].as_i64().unwrap_or_default();
            build["link"] = json!(format!(
                "{url}builders/{}/builds/{}",
                form_urlencoded::byte_serialize(
                    build["builder_name"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes()
                )
                .collect::<String>(),
                build["number"]
            ));
            build["rfc3339"] = json!(rfc3339(complete_at));
            build["rfc2822"] = json!(rfc2822(complete_at));
            build
        })
        .collect();
    let updated = entries
        .first()
        .and_then(|e| e["complete_at"].as_i64())
        .unwrap_or_default();
    pages
        .render_as(
            &format!("{kind}.xml"),
            content_type,
            json!({
                "url": url,
                "entries": entries,
                "updated_rfc3339": rfc3339(updated),
                "updated_rfc2822": rfc2822(updated),
            }),
        )
        .await
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn rfc2822(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}
