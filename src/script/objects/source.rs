//! `sourcestamp` and `change`: plain fields, as in Buildbot 0.8's SourceStamp and Change.

use std::fmt::Write;
use std::sync::Arc;

use mlua::{Lua, LuaSerdeExt, MetaMethod, Table, UserData, Value};

use crate::model::{Change, SourceStamp};
use crate::script::renderable::{display, lua_serialize_options};

/// A sourcestamp: fields `codebase branch revision repository project patch patch_info
/// changes`. `patch` is `{level, body, subdir}` and `patch_info` is `{author, comment}`, each
/// readable by position (as the Python tuples, but from 1) and by name.
#[derive(Clone)]
pub struct LuaSourceStamp(pub Arc<SourceStamp>);

/// A change: fields `number who author revision branch when files comments repository project
/// codebase category revlink properties`; methods `asText()` and `asDict()`.
#[derive(Clone)]
pub struct LuaChange(pub Arc<Change>);

/// A table readable both as a sequence and by name.
fn record(lua: &Lua, entries: &[(&str, Value)]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(entries.len(), entries.len())?;
    for (i, (name, value)) in entries.iter().enumerate() {
        table.raw_set(i + 1, value.clone())?;
        table.raw_set(*name, value.clone())?;
    }
    Ok(table)
}

fn text(lua: &Lua, s: Option<&str>) -> mlua::Result<Value> {
    s.map_or(Ok(Value::Nil), |s| lua.create_string(s).map(Value::String))
}

impl UserData for LuaSourceStamp {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("codebase", |_, this| Ok(this.0.codebase.clone()));
        fields.add_field_method_get("branch", |_, this| Ok(this.0.branch.clone()));
        fields.add_field_method_get("revision", |_, this| Ok(this.0.revision.clone()));
        fields.add_field_method_get("repository", |_, this| Ok(this.0.repository.clone()));
        fields.add_field_method_get("project", |_, this| Ok(this.0.project.clone()));
        fields.add_field_method_get("patch", |lua, this| {
            let Some(patch) = &this.0.patch else {
                return Ok(None);
            };
            record(
                lua,
                &[
                    ("level", Value::Integer(patch.level)),
                    ("body", Value::String(lua.create_string(&patch.body)?)),
                    ("subdir", text(lua, patch.subdir.as_deref())?),
                ],
            )
            .map(Some)
        });
        fields.add_field_method_get("patch_info", |lua, this| {
            let Some(patch) = &this.0.patch else {
                return Ok(None);
            };
            record(
                lua,
                &[
                    ("author", text(lua, patch.author.as_deref())?),
                    ("comment", text(lua, patch.comment.as_deref())?),
                ],
            )
            .map(Some)
        });
        fields.add_field_method_get("changes", |lua, this| {
            lua.create_sequence_from(
                this.0
                    .changes
                    .iter()
                    .map(|c| LuaChange(Arc::new(c.clone()))),
            )
        });
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!(
                "sourcestamp {}:{}",
                this.0.codebase,
                this.0.revision.as_deref().unwrap_or("HEAD")
            ))
        });
    }
}

fn change_properties(lua: &Lua, change: &Change) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for (name, value) in &change.properties {
        table.raw_set(
            name.as_str(),
            lua.to_value_with(value, lua_serialize_options())?,
        )?;
    }
    Ok(table)
}

impl UserData for LuaChange {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("number", |_, this| Ok(this.0.number));
        for name in ["who", "author"] {
            fields.add_field_method_get(name, |_, this| Ok(this.0.who.clone()));
        }
        fields.add_field_method_get("revision", |_, this| Ok(this.0.revision.clone()));
        fields.add_field_method_get("branch", |_, this| Ok(this.0.branch.clone()));
        fields.add_field_method_get("when", |_, this| Ok(this.0.when));
        fields.add_field_method_get("files", |_, this| Ok(this.0.files.clone()));
        fields.add_field_method_get("comments", |_, this| Ok(this.0.comments.clone()));
        fields.add_field_method_get("repository", |_, this| Ok(this.0.repository.clone()));
        fields.add_field_method_get("project", |_, this| Ok(this.0.project.clone()));
        fields.add_field_method_get("codebase", |_, this| Ok(this.0.codebase.clone()));
        fields.add_field_method_get("category", |_, this| Ok(this.0.category.clone()));
        fields.add_field_method_get("revlink", |_, this| Ok(this.0.revlink.clone()));
        fields.add_field_method_get("properties", |lua, this| change_properties(lua, &this.0));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("asText", |_, this, ()| Ok(as_text(&this.0)));
        methods.add_method("asDict", |lua, this, ()| as_dict(lua, &this.0));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("change {}", this.0.number))
        });
    }
}

/// Buildbot's `Change.asText()`, one line per item (Buildbot's "Comments:" line runs into
/// the next; ours ends with a newline).
fn as_text(change: &Change) -> String {
    let mut out = String::from("Files:\n");
    for file in &change.files {
        let _ = writeln!(out, " {file}");
    }
    if !change.repository.is_empty() {
        let _ = writeln!(out, "On: {}", change.repository);
    }
    if !change.project.is_empty() {
        let _ = writeln!(out, "For: {}", change.project);
    }
    let _ = writeln!(out, "At: {}", format_time(change.when));
    let _ = writeln!(out, "Changed By: {}", change.who);
    let _ = writeln!(out, "Comments: {}", change.comments);
    out.push_str("Properties: \n");
    for (name, value) in &change.properties {
        let _ = writeln!(out, "  {name}: {}", display(value));
    }
    out.push('\n');
    out
}

/// Buildbot's `Change.asDict()`: the fields plus `rev`, `at` (the time as text), `files` as
/// `{name=...}` tables sorted by name, and `properties` as `{name, value, source}` triples.
fn as_dict(lua: &Lua, change: &Change) -> mlua::Result<Table> {
    let dict = lua.create_table()?;
    dict.raw_set("number", change.number)?;
    dict.raw_set("branch", change.branch.as_deref())?;
    dict.raw_set("category", change.category.as_deref())?;
    dict.raw_set("who", change.who.as_str())?;
    dict.raw_set("comments", change.comments.as_str())?;
    dict.raw_set("revision", change.revision.as_deref())?;
    dict.raw_set("rev", change.revision.as_deref())?;
    dict.raw_set("when", change.when)?;
    dict.raw_set("at", format_time(change.when))?;
    let mut files: Vec<&str> = change.files.iter().map(String::as_str).collect();
    files.sort_unstable();
    let files = files
        .into_iter()
        .map(|name| {
            let file = lua.create_table()?;
            file.raw_set("name", name)?;
            Ok(file)
        })
        .collect::<mlua::Result<Vec<_>>>()?;
    dict.raw_set("files", files)?;
    dict.raw_set("revlink", change.revlink.as_deref())?;
    let properties = change
        .properties
        .iter()
        .map(|(name, value)| {
            lua.create_sequence_from([
                Value::String(lua.create_string(name)?),
                lua.to_value_with(value, lua_serialize_options())?,
                Value::String(lua.create_string("Change")?),
            ])
        })
        .collect::<mlua::Result<Vec<_>>>()?;
    dict.raw_set("properties", properties)?;
    dict.raw_set("repository", change.repository.as_str())?;
    dict.raw_set("codebase", change.codebase.as_str())?;
    dict.raw_set("project", change.project.as_str())?;
    Ok(dict)
}

/// `Tue 14 Nov 2023 22:13:20`, Buildbot's `Change.getTime()` format, in UTC (the master
/// runs as a service: its local time zone says little to the reader of a mail).
fn format_time(when: i64) -> String {
    if when == 0 {
        return "?".into();
    }
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = when.div_euclid(86_400);
    let secs = when.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {day:02} {} {year} {:02}:{:02}:{:02}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_time_matches_pythons_strftime_in_utc() {
        for (when, text) in [
            (1_700_000_000, "Tue 14 Nov 2023 22:13:20"),
            (951_782_400, "Tue 29 Feb 2000 00:00:00"),
            (-1, "Wed 31 Dec 1969 23:59:59"),
            (0, "?"),
        ] {
            assert_eq!(format_time(when), text, "{when}");
        }
    }
}
