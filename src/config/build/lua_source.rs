//! `changes.PollingChangeSource` and `changes.ChangeSource`: change sources written in Lua,
//! as "Writing Change Sources" describes them. The declaring table is the source's `self`
//! (with the methods of `lua/sources.lua`); fields that are not options are the user's own.

use std::fmt;

use mlua::{Lua, LuaSerdeExt, MultiValue, Value};

use super::changes::ChangeSourceConfig;
use crate::config::kwargs::Kwargs;
use crate::config::status::LuaHandle;
use crate::config::Location;
use crate::script::session::make_self;
use crate::script::Callback;

pub const CHANGE_SOURCE_OPTIONS: &[&str] = &[
    "name",
    "describe",
    "startService",
    "stopService",
    "handleRequest",
    "compare_attrs",
];

pub const POLLING_CHANGE_SOURCE_OPTIONS: &[&str] = &[
    "name",
    "describe",
    "startService",
    "stopService",
    "handleRequest",
    "compare_attrs",
    "poll",
    "pollInterval",
    "pollAtLaunch",
    "pollRandomDelayMin",
    "pollRandomDelayMax",
];

/// When a Lua poller polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollTiming {
    /// Seconds between polls.
    pub interval: u64,
    pub at_launch: bool,
    /// Each poll is delayed by a random number of seconds in this range.
    pub random_delay_min: u64,
    pub random_delay_max: u64,
}

/// A change source written in Lua.
#[derive(Clone, Debug)]
pub struct LuaSource {
    /// Unique among change sources: the key of its state in storage.
    pub name: String,
    /// `Some` for a `PollingChangeSource`, with its `poll` function.
    pub polling: Option<(PollTiming, Callback)>,
    pub describe: Option<Callback>,
    pub start_service: Option<Callback>,
    pub stop_service: Option<Callback>,
    /// `fn(self, request) -> response`, for requests to `/change_source/NAME`.
    pub handle_request: Option<Callback>,
    /// What the functions receive as `self`.
    pub this: LuaHandle,
    /// The `compare_attrs` fields with their values, in the order listed.
    pub compared: Vec<(String, Compared)>,
    pub location: Location,
}

/// A `compare_attrs` field's value, as a reconfig compares it.
#[derive(Clone)]
pub enum Compared {
    Data(serde_json::Value),
    /// Compared by its code (see [`crate::config::same_options`]).
    Function(Callback),
    /// Anything else, compared by kind only.
    Other(&'static str),
}

impl fmt::Debug for Compared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compared::Data(value) => write!(f, "{value}"),
            Compared::Function(callback) => write!(f, "{callback:?}"),
            Compared::Other(kind) => write!(f, "<{kind}>"),
        }
    }
}

impl LuaSource {
    pub fn kind(&self) -> &'static str {
        match self.polling {
            Some(_) => "PollingChangeSource",
            None => "ChangeSource",
        }
    }

    /// What decides whether a reconfig restarts the source, as Buildbot's `compare_attrs`
    /// do: its kind, name and timing, and the fields it lists. Its functions and other
    /// fields are taken from the new config without a restart.
    pub fn identity(&self) -> impl fmt::Debug + '_ {
        (
            self.kind(),
            &self.name,
            self.polling.as_ref().map(|(timing, _)| timing),
            &self.compared,
        )
    }
}

pub fn polling_change_source(lua: &Lua, args: MultiValue) -> Option<ChangeSourceConfig> {
    lua_source(lua, args, true)
}

pub fn change_source(lua: &Lua, args: MultiValue) -> Option<ChangeSourceConfig> {
    lua_source(lua, args, false)
}

fn lua_source(lua: &Lua, args: MultiValue, polling: bool) -> Option<ChangeSourceConfig> {
    let (object, options) = match polling {
        true => ("PollingChangeSource", POLLING_CHANGE_SOURCE_OPTIONS),
        false => ("ChangeSource", CHANGE_SOURCE_OPTIONS),
    };
    let fields = match args.front() {
        Some(Value::Table(table)) if args.len() == 1 => Some(table.clone()),
        _ => None,
    };
    let mut kw = Kwargs::new(lua, object, args, &[], options);
    let Some(fields) = fields else {
        kw.error("takes one table: {name=..., ...}");
        return None;
    };
    let name: String = kw.required("name");
    let describe_fn = kw.optional("describe");
    let start_service = kw.optional("startService");
    let stop_service = kw.optional("stopService");
    let handle_request = kw.optional("handleRequest");
    let compare_attrs: Vec<String> = kw.optional("compare_attrs").unwrap_or_default();
    let polling = match polling {
        true => {
            let poll: Option<Callback> = kw.required_opt("poll");
            let timing = PollTiming {
                interval: kw.optional_or("pollInterval", 10 * 60),
                at_launch: kw.optional_or("pollAtLaunch", false),
                random_delay_min: kw.optional_or("pollRandomDelayMin", 0),
                random_delay_max: kw.optional_or("pollRandomDelayMax", 0),
            };
            if timing.interval == 0 {
                kw.error("option 'pollInterval' must be at least 1 second");
            }
            if timing.random_delay_min > timing.random_delay_max {
                kw.error(format!(
                    "option 'pollRandomDelayMin' ({}) must not exceed 'pollRandomDelayMax' ({})",
                    timing.random_delay_min, timing.random_delay_max
                ));
            }
            if timing.random_delay_max > 0 && timing.random_delay_max >= timing.interval {
                kw.error(format!(
                    "option 'pollRandomDelayMax' ({}) must be less than 'pollInterval' ({})",
                    timing.random_delay_max, timing.interval
                ));
            }
            poll.map(|poll| (timing, poll))
        }
        false => None,
    };
    // The user's own fields: any name but one a letter away from an option (two for a
    // long one), ignoring case.
    for (field, _) in kw.rest() {
        let near = |option: &&str| {
            let distance = strsim::levenshtein(&field.to_lowercase(), &option.to_lowercase());
            distance <= 1 || (distance == 2 && option.len() >= 8)
        };
        if let Some(option) = options.iter().copied().find(near) {
            kw.error(format!(
                "unknown option '{field}' (did you mean '{option}'?); a field of the source's own must not look like an option"
            ));
        }
    }
    let mut compared = Vec::new();
    for attr in compare_attrs {
        let value: Value = fields.raw_get(attr.as_str()).unwrap_or(Value::Nil);
        let value = match value {
            Value::Function(f) => match Callback::new(lua, &f) {
                Ok(callback) => Compared::Function(callback),
                Err(_) => Compared::Other("function"),
            },
            Value::UserData(_) | Value::Thread(_) | Value::LightUserData(_) => {
                Compared::Other(value.type_name())
            }
            value => match lua.from_value::<serde_json::Value>(value.clone()) {
                Ok(data) => Compared::Data(data),
                Err(_) => Compared::Other(value.type_name()),
            },
        };
        compared.push((attr, value));
    }
    let this = match make_self(lua, fields).and_then(|this| LuaHandle::new(lua, this)) {
        Ok(this) => this,
        Err(e) => {
            kw.error(format!("cannot make the source's self: {e}"));
            return None;
        }
    };
    if polling.is_none() && object == "PollingChangeSource" {
        // `poll` was missing or not a function: reported already.
        kw.finish();
        return None;
    }
    let source = LuaSource {
        name,
        polling,
        describe: describe_fn,
        start_service,
        stop_service,
        handle_request,
        this,
        compared,
        location: kw.location(),
    };
    kw.finish()
        .then(|| ChangeSourceConfig::Lua(Box::new(source)))
}

#[cfg(test)]
mod tests {
    use crate::config::build::testing::*;
    use crate::config::build::*;
    use crate::config::same_options;

    /// The Lua source a config of one change source declares, with the file's text around it.
    fn lua_source(source: &str) -> LuaSource {
        let loaded = load(&format!(
            "local function poll(self) end
local function one() return 1 end
local function two() return 2 end
BuildmasterConfig.change_source = {{{source}}}"
        ));
        match &loaded.config.change_sources[0] {
            ChangeSourceConfig::Lua(source) => source.as_ref().clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_polling_source_polls_every_ten_minutes_unless_told_and_keeps_its_own_fields() {
        let source = lua_source(r#"changes.PollingChangeSource{name="p", poll=poll, url="u"}"#);
        assert_eq!(source.kind(), "PollingChangeSource");
        let (timing, _) = source.polling.as_ref().unwrap();
        assert_eq!(
            *timing,
            PollTiming {
                interval: 600,
                at_launch: false,
                random_delay_min: 0,
                random_delay_max: 0
            }
        );
        let push = lua_source(r#"changes.ChangeSource{name="h", handleRequest=poll}"#);
        assert_eq!(push.kind(), "ChangeSource");
        assert!(push.polling.is_none() && push.handle_request.is_some());
    }

    #[test]
    fn only_compare_attrs_and_timing_decide_whether_a_source_changed() {
        let same = |a: &str, b: &str| {
            let (a, b) = (lua_source(a), lua_source(b));
            let same = same_options(&a.identity(), &b.identity());
            same
        };
        let with = |fields: &str| {
            format!(
                r#"changes.PollingChangeSource{{name="p", compare_attrs={{"url", "check"}}, {fields}}}"#
            )
        };
        let base = with(r#"url="u", note="a", poll=poll, check=one"#);
        // Another field, another poll function: the same source.
        assert!(same(
            &base,
            &with(r#"url="u", note="b", poll=function(self) end, check=one"#)
        ));
        // A listed field, a listed function's code, the interval: another source.
        assert!(!same(
            &base,
            &with(r#"url="v", note="a", poll=poll, check=one"#)
        ));
        assert!(!same(
            &base,
            &with(r#"url="u", note="a", poll=poll, check=two"#)
        ));
        assert!(!same(
            &base,
            &with(r#"url="u", note="a", poll=poll, check=one, pollInterval=60"#)
        ));
    }
}
