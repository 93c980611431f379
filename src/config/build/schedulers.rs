//! Schedulers: `SingleBranchScheduler` (0.8 `Scheduler`), `AnyBranchScheduler`, `Periodic`,
//! `Nightly`, `Triggerable`, `Dependent`; `ForceScheduler` is in [`super::forcesched`].

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use super::changes::ChangeFilter;
use super::forcesched::ForceScheduler;
use super::values::{optional_seconds, read_args, Branch, Codebases, ValueOrFunction};
use crate::config::kwargs::{constructor, describe, FromOption, Kwargs, OneOrMany, OptionError};
use crate::config::{define, Location, Namespaces};
use crate::script::Callback;

/// One entry of `c['schedulers']`.
#[derive(Clone, Debug)]
pub enum SchedulerConfig {
    SingleBranch(BranchScheduler),
    AnyBranch(BranchScheduler),
    Force(Box<ForceScheduler>),
    Periodic(TimedScheduler),
    Nightly(TimedScheduler),
    Triggerable(TriggerableScheduler),
    Dependent(DependentScheduler),
}

impl UserData for SchedulerConfig {}
crate::config_object!(
    SchedulerConfig,
    "scheduler (schedulers.SingleBranchScheduler{...}, ...)"
);

impl SchedulerConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SchedulerConfig::SingleBranch(_) => "SingleBranchScheduler",
            SchedulerConfig::AnyBranch(_) => "AnyBranchScheduler",
            SchedulerConfig::Force(_) => "ForceScheduler",
            SchedulerConfig::Periodic(_) => "Periodic",
            SchedulerConfig::Nightly(_) => "Nightly",
            SchedulerConfig::Triggerable(_) => "Triggerable",
            SchedulerConfig::Dependent(_) => "Dependent",
        }
    }

    /// The options every scheduler has.
    pub fn base(&self) -> &SchedulerBase {
        match self {
            SchedulerConfig::SingleBranch(s) | SchedulerConfig::AnyBranch(s) => &s.base,
            SchedulerConfig::Force(s) => &s.base,
            SchedulerConfig::Periodic(s) | SchedulerConfig::Nightly(s) => &s.base,
            SchedulerConfig::Triggerable(s) => &s.base,
            SchedulerConfig::Dependent(s) => &s.base,
        }
    }

    pub fn name(&self) -> &str {
        &self.base().name
    }
    pub fn location(&self) -> &Location {
        &self.base().location
    }
    pub fn builder_names(&self) -> &[String] {
        &self.base().builder_names
    }
    /// For a Dependent scheduler, the name of its upstream scheduler.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            SchedulerConfig::Dependent(s) => Some(&s.upstream),
            _ => None,
        }
    }
}

/// The options of Buildbot's `BaseScheduler`.
#[derive(Clone, Debug)]
pub struct SchedulerBase {
    pub name: String,
    pub builder_names: Vec<String>,
    /// Set on every build this scheduler starts.
    pub properties: BTreeMap<String, serde_json::Value>,
    pub codebases: Codebases,
    /// The priority of its build requests, or `fn(builder_name, changes_by_codebase)`.
    pub priority: Option<ValueOrFunction<i64>>,
    pub location: Location,
}

/// Reads `name`, `builderNames` and (unless `with_defaults` is off, as for ForceScheduler,
/// whose `properties` and `codebases` mean something else) `properties`, `codebases` and
/// `priority`.
pub(super) fn base(kw: &mut Kwargs, with_defaults: bool) -> SchedulerBase {
    let name = match kw.required_opt::<String>("name") {
        Some(name) if name.is_empty() => {
            kw.error("the scheduler name must not be empty");
            name
        }
        name => name.unwrap_or_default(),
    };
    let builder_names = match kw.required_opt::<Vec<String>>("builderNames") {
        Some(names) if names.is_empty() => {
            kw.error("option 'builderNames' must name at least one builder");
            names
        }
        names => names.unwrap_or_default(),
    };
    let (properties, codebases, priority) = if with_defaults {
        (
            kw.optional("properties").unwrap_or_default(),
            kw.optional("codebases").unwrap_or_default(),
            kw.optional("priority"),
        )
    } else {
        Default::default()
    };
    SchedulerBase {
        name,
        builder_names,
        properties,
        codebases,
        priority,
        location: kw.location(),
    }
}

/// The option list of a scheduler class: `BaseScheduler`'s, then its own.
macro_rules! scheduler_options {
    ($($extra:literal),* $(,)?) => {
        &["name", "builderNames", "properties", "codebases", "priority", $($extra,)*]
    };
}

/// `reason % {'name': ..., 'classname': ...}` as Buildbot formats it.
fn format_reason(reason: &str, name: &str, class: &str) -> String {
    reason
        .replace("%(name)s", name)
        .replace("%(classname)s", class)
        .replace("%%", "%")
}

// ---- SingleBranchScheduler and AnyBranchScheduler --------------------------------------

/// `SingleBranchScheduler` and `AnyBranchScheduler`: build when changes arrive.
#[derive(Clone, Debug)]
pub struct BranchScheduler {
    pub base: SchedulerBase,
    /// Which changes count; from `change_filter`, or made from `branch`/`branches` and
    /// `categories`. `None` (AnyBranchScheduler only) takes every change.
    pub change_filter: Option<ChangeFilter>,
    /// Seconds without new changes before building; `None` builds at once.
    pub tree_stable_timer: Option<u64>,
    /// `fn(change) -> bool`: whether a change alone is reason to build.
    pub file_is_important: Option<Callback>,
    /// Unimportant changes are left out of the build, not just not a reason for it.
    pub only_important: bool,
    pub reason: String,
    pub create_absolute_source_stamps: bool,
}

pub const SINGLE_BRANCH_OPTIONS: &[&str] = scheduler_options!(
    "branch",
    "change_filter",
    "categories",
    "treeStableTimer",
    "fileIsImportant",
    "onlyImportant",
    "reason",
    "createAbsoluteSourceStamps",
);
pub const ANY_BRANCH_OPTIONS: &[&str] = scheduler_options!(
    "branches",
    "change_filter",
    "categories",
    "treeStableTimer",
    "fileIsImportant",
    "onlyImportant",
    "reason",
);

const BASIC_REASON: &str = "The %(classname)s scheduler named '%(name)s' triggered this build";

/// `object` is the class name the user wrote (`Scheduler` for the 0.8 name): errors name it,
/// and so does the default reason, as in Buildbot.
fn single_branch(lua: &Lua, object: &str, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(
        lua,
        object,
        args,
        &["name"],
        &[],
        &[],
        SINGLE_BRANCH_OPTIONS,
    );
    let base = base(&mut kw, true);
    if !kw.has("branch") && !kw.has("change_filter") {
        kw.error("needs option 'branch' or 'change_filter'");
    }
    let branch: Option<Branch> = kw.optional("branch");
    let change_filter = filter(&mut kw, "branch", branch.map(|b| vec![b]));
    let scheduler = basic(&mut kw, base, change_filter, object);
    let scheduler = BranchScheduler {
        create_absolute_source_stamps: kw.optional_or("createAbsoluteSourceStamps", false),
        ..scheduler
    };
    kw.finish()
        .then_some(SchedulerConfig::SingleBranch(scheduler))
}

fn any_branch(lua: &Lua, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(
        lua,
        "AnyBranchScheduler",
        args,
        &["name"],
        &[],
        &[],
        ANY_BRANCH_OPTIONS,
    );
    let base = base(&mut kw, true);
    let branches = kw.optional::<OneOrMany<Branch>>("branches").map(|b| b.0);
    let change_filter = filter(&mut kw, "branches", branches);
    let scheduler = basic(&mut kw, base, change_filter, "AnyBranchScheduler");
    kw.finish().then_some(SchedulerConfig::AnyBranch(scheduler))
}

/// The scheduler's change filter: `change_filter`, or one made from the branch option and
/// `categories`, which cannot be given with it.
fn filter(
    kw: &mut Kwargs,
    branch_option: &str,
    branches: Option<Vec<Branch>>,
) -> Option<ChangeFilter> {
    let categories = kw.optional::<OneOrMany<String>>("categories").map(|c| c.0);
    let given: Option<ChangeFilter> = kw.optional("change_filter");
    if given.is_some() {
        for (option, present) in [
            (branch_option, branches.is_some()),
            ("categories", categories.is_some()),
        ] {
            if present {
                kw.error(format!(
                    "options '{option}' and 'change_filter' cannot be given together"
                ));
            }
        }
        return given;
    }
    ChangeFilter::from_scheduler(branches, categories, kw.location())
}

/// The options SingleBranchScheduler and AnyBranchScheduler share (`BaseBasicScheduler`).
fn basic(
    kw: &mut Kwargs,
    base: SchedulerBase,
    change_filter: Option<ChangeFilter>,
    class: &str,
) -> BranchScheduler {
    let reason = kw
        .optional::<String>("reason")
        .unwrap_or_else(|| BASIC_REASON.into());
    BranchScheduler {
        change_filter,
        tree_stable_timer: optional_seconds(kw, "treeStableTimer", None),
        file_is_important: kw.optional("fileIsImportant"),
        only_important: kw.optional_or("onlyImportant", false),
        reason: format_reason(&reason, &base.name, class),
        create_absolute_source_stamps: false,
        base,
    }
}

// ---- Periodic and Nightly --------------------------------------------------------------

/// `Periodic` and `Nightly`: build on a clock.
#[derive(Clone, Debug)]
pub struct TimedScheduler {
    pub base: SchedulerBase,
    pub schedule: Schedule,
    /// The branch built; `None` leaves it to the codebases.
    pub branch: Option<Branch>,
    /// Which changes `onlyIfChanged` looks at.
    pub change_filter: Option<ChangeFilter>,
    /// Skip the build when no important change arrived since the last one.
    pub only_if_changed: bool,
    pub file_is_important: Option<Callback>,
    pub only_important: bool,
    pub reason: String,
    pub create_absolute_source_stamps: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every this many seconds (`periodicBuildTimer`, rounded up to whole seconds).
    Periodic { seconds: u64 },
    Nightly {
        at: Box<CronTimes>,
        /// When set, also build at these times even without changes.
        force_at: Option<Box<CronTimes>>,
    },
}

/// The fields of a cron line, as Nightly takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronTimes {
    pub minute: CronField,
    pub hour: CronField,
    pub day_of_month: CronField,
    pub month: CronField,
    /// 0 is Monday, as in Python.
    pub day_of_week: CronField,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CronField {
    /// `"*"`.
    Any,
    Values(Vec<u32>),
}

macro_rules! timed_options {
    ($($extra:literal),* $(,)?) => {
        scheduler_options!(
            $($extra,)*
            "reason",
            "createAbsoluteSourceStamps",
            "onlyIfChanged",
            "branch",
            "change_filter",
            "fileIsImportant",
            "onlyImportant",
        )
    };
}

pub const PERIODIC_OPTIONS: &[&str] = timed_options!("periodicBuildTimer");
pub const NIGHTLY_OPTIONS: &[&str] = timed_options!(
    "minute",
    "hour",
    "dayOfMonth",
    "month",
    "dayOfWeek",
    "force_at_minute",
    "force_at_hour",
    "force_at_day_of_month",
    "force_at_month",
    "force_at_day_of_week",
);

/// The options Periodic and Nightly share (`Timed`); `class` names it in the reason.
fn timed(kw: &mut Kwargs, base: SchedulerBase, schedule: Schedule, class: &str) -> TimedScheduler {
    let reason = kw
        .optional::<String>("reason")
        .unwrap_or_else(|| format!("The {class} scheduler named '%(name)s' triggered this build"));
    TimedScheduler {
        schedule,
        branch: kw.optional("branch"),
        change_filter: kw.optional("change_filter"),
        only_if_changed: kw.optional_or("onlyIfChanged", false),
        file_is_important: kw.optional("fileIsImportant"),
        only_important: kw.optional_or("onlyImportant", false),
        create_absolute_source_stamps: kw.optional_or("createAbsoluteSourceStamps", false),
        reason: format_reason(&reason, &base.name, class),
        base,
    }
}

fn periodic(lua: &Lua, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(lua, "Periodic", args, &["name"], &[], &[], PERIODIC_OPTIONS);
    let base = base(&mut kw, true);
    let seconds = match kw.required_opt::<f64>("periodicBuildTimer") {
        Some(seconds) if seconds <= 0.0 => {
            kw.error("option 'periodicBuildTimer' must be positive");
            0
        }
        seconds => seconds.map_or(0, |s| s.ceil() as u64),
    };
    let scheduler = timed(&mut kw, base, Schedule::Periodic { seconds }, "Periodic");
    kw.finish().then_some(SchedulerConfig::Periodic(scheduler))
}

fn nightly(lua: &Lua, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(lua, "Nightly", args, &["name"], &[], &[], NIGHTLY_OPTIONS);
    let base = base(&mut kw, true);
    let at = cron_times(&mut kw, "");
    let force_names = [
        "force_at_minute",
        "force_at_hour",
        "force_at_day_of_month",
        "force_at_month",
        "force_at_day_of_week",
    ];
    let forced = force_names.iter().any(|n| kw.has(n));
    let force_at = cron_times(&mut kw, "force_at_");
    let scheduler = timed(
        &mut kw,
        base,
        Schedule::Nightly {
            at: Box::new(at),
            force_at: forced.then(|| Box::new(force_at)),
        },
        "Nightly",
    );
    kw.finish().then_some(SchedulerConfig::Nightly(scheduler))
}

/// The five cron fields, named as Nightly's options (`hour`) or their `force_at_` forms
/// (`force_at_hour`, `force_at_day_of_month`).
fn cron_times(kw: &mut Kwargs, prefix: &str) -> CronTimes {
    let name = |camel: &'static str, snake: &'static str| -> String {
        if prefix.is_empty() {
            camel.to_string()
        } else {
            format!("{prefix}{snake}")
        }
    };
    CronTimes {
        minute: cron_field(
            kw,
            &name("minute", "minute"),
            CronField::Values(vec![0]),
            0,
            59,
        ),
        hour: cron_field(kw, &name("hour", "hour"), CronField::Any, 0, 23),
        day_of_month: cron_field(
            kw,
            &name("dayOfMonth", "day_of_month"),
            CronField::Any,
            1,
            31,
        ),
        month: cron_field(kw, &name("month", "month"), CronField::Any, 1, 12),
        day_of_week: cron_field(kw, &name("dayOfWeek", "day_of_week"), CronField::Any, 0, 6),
    }
}

/// One cron field: an integer, a list of them, or `"*"`.
fn cron_field(kw: &mut Kwargs, name: &str, default: CronField, min: u32, max: u32) -> CronField {
    let Some(value) = kw.raw(name) else {
        return default;
    };
    if matches!(&value, Value::String(s) if s.as_bytes() == b"*") {
        return CronField::Any;
    }
    let values = match OneOrMany::<i64>::from_option(value.clone(), kw.lua()) {
        Ok(values) if !values.0.is_empty() => values.0,
        _ => {
            kw.error(format!(
                "option '{name}' must be an integer, a list of integers or '*', got {}",
                describe(&value)
            ));
            return default;
        }
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match u32::try_from(v).ok().filter(|v| (min..=max).contains(v)) {
            Some(v) => out.push(v),
            None => {
                kw.error(format!(
                    "option '{name}' must be from {min} to {max}, got {v}"
                ));
                return default;
            }
        }
    }
    CronField::Values(out)
}

// ---- Triggerable and Dependent ---------------------------------------------------------

/// `Triggerable`: builds when a Trigger step fires it.
#[derive(Clone, Debug)]
pub struct TriggerableScheduler {
    pub base: SchedulerBase,
    /// `None` uses the Trigger step's description.
    pub reason: Option<String>,
}

pub const TRIGGERABLE_OPTIONS: &[&str] = scheduler_options!("reason");

fn triggerable(lua: &Lua, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(
        lua,
        "Triggerable",
        args,
        &["name"],
        &[],
        &[],
        TRIGGERABLE_OPTIONS,
    );
    let scheduler = TriggerableScheduler {
        base: base(&mut kw, true),
        reason: kw.optional("reason"),
    };
    kw.finish()
        .then_some(SchedulerConfig::Triggerable(scheduler))
}

/// `Dependent`: builds when a buildset of its upstream scheduler succeeds.
#[derive(Clone, Debug)]
pub struct DependentScheduler {
    pub base: SchedulerBase,
    /// The upstream scheduler's name.
    pub upstream: String,
}

pub const DEPENDENT_OPTIONS: &[&str] = scheduler_options!("upstream");

/// `upstream`: the scheduler object, as in Buildbot, or its name.
struct Upstream(String);

impl FromOption for Upstream {
    fn expected() -> String {
        "a scheduler or a scheduler name".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => Ok(Upstream(s.to_string_lossy())),
            _ => SchedulerConfig::from_option(value.clone(), lua)
                .map(|s| Upstream(s.name().to_string()))
                .map_err(|e| match e {
                    OptionError::Wrong(_) => crate::config::kwargs::mismatch::<Self>(&value),
                    reported => reported,
                }),
        }
    }
}

fn dependent(lua: &Lua, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(
        lua,
        "Dependent",
        args,
        &["name", "upstream", "builderNames"],
        &["builderNames"],
        &[],
        DEPENDENT_OPTIONS,
    );
    let base = base(&mut kw, true);
    let upstream = kw.required_opt::<Upstream>("upstream");
    let scheduler = DependentScheduler {
        base,
        upstream: upstream.map(|u| u.0).unwrap_or_default(),
    };
    kw.finish().then_some(SchedulerConfig::Dependent(scheduler))
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.schedulers,
        "SingleBranchScheduler",
        constructor(lua, "scheduler", |lua, args| {
            single_branch(lua, "SingleBranchScheduler", args)
        })?,
    )?;
    define(
        &ns.schedulers,
        "Scheduler",
        constructor(lua, "scheduler", |lua, args| {
            single_branch(lua, "Scheduler", args)
        })?,
    )?;
    let schedulers = [
        (
            "AnyBranchScheduler",
            any_branch as fn(&Lua, MultiValue) -> Option<SchedulerConfig>,
        ),
        ("Periodic", periodic),
        ("Nightly", nightly),
        ("Triggerable", triggerable),
        ("Dependent", dependent),
    ];
    for (name, parse) in schedulers {
        define(&ns.schedulers, name, constructor(lua, "scheduler", parse)?)?;
    }
    super::forcesched::register(lua, ns)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;

    #[test]
    fn single_branch_scheduler_takes_every_option() {
        let s = scheduler(
            r#"schedulers.SingleBranchScheduler("sbs", {builderNames={"b", "b2"}, branch="main",
  treeStableTimer=60, fileIsImportant=function(change) return true end, onlyImportant=true,
  properties={owner="ci"}, codebases={lib={repository="r", branch="dev"}}, priority=5,
  reason="%(name)s saw a change", createAbsoluteSourceStamps=true})"#,
        );
        assert_eq!(s.kind(), "SingleBranchScheduler");
        assert_eq!(s.name(), "sbs");
        assert_eq!(s.builder_names(), ["b", "b2"]);
        assert_eq!(s.location().line, 1);
        assert_eq!(s.upstream(), None);
        let SchedulerConfig::SingleBranch(sbs) = &s else {
            panic!()
        };
        let filter = sbs.change_filter.as_ref().unwrap();
        assert_eq!(filter.branch.eq, Some(vec![Branch::Named("main".into())]));
        assert_eq!(sbs.tree_stable_timer, Some(60));
        assert!(sbs.file_is_important.is_some() && sbs.only_important);
        assert!(sbs.create_absolute_source_stamps);
        assert_eq!(sbs.reason, "sbs saw a change");
        assert_eq!(
            sbs.base.properties,
            BTreeMap::from([("owner".into(), json!("ci"))])
        );
        assert_eq!(
            sbs.base.codebases,
            Codebases(BTreeMap::from([(
                "lib".into(),
                CodebaseDefaults {
                    branch: Some("dev".into()),
                    repository: Some("r".into()),
                    revision: None
                }
            )]))
        );
        assert!(matches!(sbs.base.priority, Some(ValueOrFunction::Value(5))));
    }

    #[test]
    fn single_branch_scheduler_defaults_and_old_forms() {
        let s = scheduler(
            r#"schedulers.Scheduler{name="old", builderNames={"b"}, branch=false, categories="web"}"#,
        );
        let SchedulerConfig::SingleBranch(sbs) = &s else {
            panic!()
        };
        let filter = sbs.change_filter.as_ref().unwrap();
        assert_eq!(filter.branch.eq, Some(vec![Branch::Default]));
        assert_eq!(filter.category.eq, Some(vec!["web".to_string()]));
        assert_eq!(sbs.tree_stable_timer, None);
        assert!(!sbs.only_important && !sbs.create_absolute_source_stamps);
        assert_eq!(
            sbs.reason,
            "The Scheduler scheduler named 'old' triggered this build"
        );
        assert_eq!(sbs.base.codebases, Codebases::default());
        assert!(sbs.base.properties.is_empty() && sbs.base.priority.is_none());

        let s = scheduler(
            r#"schedulers.SingleBranchScheduler{name="f", builderNames={"b"},
  change_filter=util.ChangeFilter{branch={"main", "dev"}}, codebases={"a", "b"}}"#,
        );
        let SchedulerConfig::SingleBranch(sbs) = &s else {
            panic!()
        };
        assert_eq!(
            sbs.change_filter.as_ref().unwrap().branch.eq,
            Some(vec![
                Branch::Named("main".into()),
                Branch::Named("dev".into())
            ])
        );
        assert_eq!(sbs.base.codebases.0.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            sbs.reason,
            "The SingleBranchScheduler scheduler named 'f' triggered this build"
        );
    }

    #[test]
    fn any_branch_scheduler() {
        let s = scheduler(
            r#"schedulers.AnyBranchScheduler{name="any", builderNames={"b"}, branches={"main", "dev"},
  treeStableTimer=false, onlyImportant=true, reason="r"}"#,
        );
        assert_eq!(s.kind(), "AnyBranchScheduler");
        let SchedulerConfig::AnyBranch(any) = &s else {
            panic!()
        };
        assert_eq!(
            any.change_filter
                .as_ref()
                .unwrap()
                .branch
                .eq
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(any.tree_stable_timer, None);
        assert_eq!(any.reason, "r");
        let s = scheduler(r#"schedulers.AnyBranchScheduler{name="all", builderNames={"b"}}"#);
        let SchedulerConfig::AnyBranch(any) = &s else {
            panic!()
        };
        assert!(any.change_filter.is_none());
    }

    #[test]
    fn periodic_and_nightly() {
        let s = scheduler(
            r#"schedulers.Periodic{name="p", builderNames={"b"}, periodicBuildTimer=3600, branch="main",
  onlyIfChanged=true, onlyImportant=true, createAbsoluteSourceStamps=true,
  change_filter=util.ChangeFilter{project="x"}, fileIsImportant=function() return true end}"#,
        );
        assert_eq!(s.kind(), "Periodic");
        let SchedulerConfig::Periodic(p) = &s else {
            panic!()
        };
        assert_eq!(p.schedule, Schedule::Periodic { seconds: 3600 });
        assert_eq!(p.branch, Some(Branch::Named("main".into())));
        assert!(p.only_if_changed && p.only_important && p.create_absolute_source_stamps);
        assert!(p.change_filter.is_some() && p.file_is_important.is_some());
        assert_eq!(
            p.reason,
            "The Periodic scheduler named 'p' triggered this build"
        );

        let s = scheduler(
            r#"schedulers.Nightly{name="n", builderNames={"b"}, minute={0, 30}, hour=3, dayOfMonth="*",
  month={1, 7}, dayOfWeek=0, force_at_hour=4, force_at_day_of_week={5, 6}, reason="nightly %(name)s"}"#,
        );
        let SchedulerConfig::Nightly(n) = &s else {
            panic!()
        };
        use CronField::*;
        assert_eq!(
            n.schedule,
            Schedule::Nightly {
                at: Box::new(CronTimes {
                    minute: Values(vec![0, 30]),
                    hour: Values(vec![3]),
                    day_of_month: Any,
                    month: Values(vec![1, 7]),
                    day_of_week: Values(vec![0]),
                }),
                force_at: Some(Box::new(CronTimes {
                    minute: Values(vec![0]),
                    hour: Values(vec![4]),
                    day_of_month: Any,
                    month: Any,
                    day_of_week: Values(vec![5, 6]),
                })),
            }
        );
        assert_eq!(n.reason, "nightly n");
        assert!(!n.only_if_changed && n.branch.is_none());

        let s = scheduler(r#"schedulers.Nightly{name="d", builderNames={"b"}}"#);
        let SchedulerConfig::Nightly(n) = &s else {
            panic!()
        };
        let Schedule::Nightly { at, force_at } = &n.schedule else {
            panic!()
        };
        assert_eq!(at.minute, Values(vec![0]));
        assert_eq!((&at.hour, &at.day_of_week), (&Any, &Any));
        assert!(force_at.is_none());
    }

    #[test]
    fn triggerable_and_dependent() {
        let s = scheduler(
            r#"schedulers.Triggerable{name="trig", builderNames={"b"}, reason="asked", properties={a=1}}"#,
        );
        assert_eq!(s.kind(), "Triggerable");
        let SchedulerConfig::Triggerable(t) = &s else {
            panic!()
        };
        assert_eq!(t.reason.as_deref(), Some("asked"));
        let loaded = load(
            r#"c = BuildmasterConfig
c.workers = {worker.LocalWorker("w")}
c.builders = {util.BuilderConfig{name="b", workernames="w", factory=util.BuildFactory()}}
local up = schedulers.Triggerable{name="up", builderNames={"b"}}
c.schedulers = {up, schedulers.Dependent("d1", up, {"b"}),
  schedulers.Dependent{name="d2", upstream="up", builderNames={"b"}}}"#,
        );
        let s = &loaded.config.schedulers;
        assert_eq!(s[1].kind(), "Dependent");
        assert_eq!(s[1].upstream(), Some("up"));
        assert_eq!(s[1].builder_names(), ["b"]);
        assert_eq!(s[2].upstream(), Some("up"));
        assert_eq!(
            errors(
                r#"c = BuildmasterConfig
c.workers = {worker.LocalWorker("w")}
c.builders = {util.BuilderConfig{name="b", workernames="w", factory=util.BuildFactory()}}
c.schedulers = {schedulers.Dependent{name="d", upstream="nope", builderNames={"b"}}}"#
            ),
            "master.cfg.lua:4: scheduler 'd': no upstream scheduler named 'nope' (known: d)\n"
        );
    }

    #[test]
    fn scheduler_errors() {
        let b = "builderNames={'b'}";
        let cases: Vec<(String, &str)> = vec![
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}}}"),
            "SingleBranchScheduler: needs option 'branch' or 'change_filter'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch='m', change_filter=util.ChangeFilter{{}}}}"),
            "SingleBranchScheduler: options 'branch' and 'change_filter' cannot be given together",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, categories='c', change_filter=util.ChangeFilter{{}}}}"),
            "SingleBranchScheduler: options 'categories' and 'change_filter' cannot be given together",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branches={{'m'}}}}"),
            "SingleBranchScheduler: needs option 'branch' or 'change_filter'\n\
             SingleBranchScheduler: unknown option 'branches' (did you mean 'branch'?)",
        ),
        (
            "schedulers.SingleBranchScheduler{name='s', builderNames={}, branch='m'}".into(),
            "SingleBranchScheduler: option 'builderNames' must name at least one builder",
        ),
        (
            "schedulers.SingleBranchScheduler{name='s', branch='m'}".into(),
            "SingleBranchScheduler: missing required option 'builderNames'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{{b}, branch='m'}}"),
            "SingleBranchScheduler: missing required option 'name'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='', {b}, branch='m'}}"),
            "SingleBranchScheduler: the scheduler name must not be empty",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch=3}}"),
            "SingleBranchScheduler: option 'branch' must be a branch name or false (the default branch), got number 3",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch='m', codebases={{a={{tag='x'}}}}}}"),
            "SingleBranchScheduler: option 'codebases' entry 'a': unknown key 'tag'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch='m', priority='high'}}"),
            "SingleBranchScheduler: option 'priority' must be an integer or a function, got string 'high'",
        ),
        (
            format!("schedulers.AnyBranchScheduler{{name='s', {b}, branches={{'m'}}, change_filter=util.ChangeFilter{{}}}}"),
            "AnyBranchScheduler: options 'branches' and 'change_filter' cannot be given together",
        ),
        (
            format!("schedulers.Periodic{{name='p', {b}, periodicBuildTimer=0}}"),
            "Periodic: option 'periodicBuildTimer' must be positive",
        ),
        (
            format!("schedulers.Periodic{{name='p', {b}}}"),
            "Periodic: missing required option 'periodicBuildTimer'",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, hour=24}}"),
            "Nightly: option 'hour' must be from 0 to 23, got 24",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, dayOfMonth={{0}}}}"),
            "Nightly: option 'dayOfMonth' must be from 1 to 31, got 0",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, hour='x'}}"),
            "Nightly: option 'hour' must be an integer, a list of integers or '*', got string 'x'",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, force_at_month=13}}"),
            "Nightly: option 'force_at_month' must be from 1 to 12, got 13",
        ),
        (
            format!("schedulers.Dependent{{name='d', {b}, upstream=5}}"),
            "Dependent: option 'upstream' must be a scheduler or a scheduler name, got number 5",
        ),
        (
            format!("schedulers.Dependent{{name='d', {b}}}"),
            "Dependent: missing required option 'upstream'",
        ),
        (
            format!("schedulers.ForceScheduler{{name='a b', {b}}}"),
            "ForceScheduler: the name 'a b' must be an identifier (letters, digits, '_' and '-', not starting with a digit)",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, codebases={{}}}}"),
            "ForceScheduler: option 'codebases' must not be empty (use {util.CodebaseParameter{codebase='', hide=true}})",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, codebases={{'a'}}, branch='x'}}"),
            "ForceScheduler: options 'branch' and 'codebases' cannot be given together: give the codebase's fields in util.CodebaseParameter",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, codebases={{5}}}}"),
            "ForceScheduler: option 'codebases' item 1 must be a codebase name or a util.CodebaseParameter, got number 5",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, priority=util.StringParameter{{name='p'}}}}"),
            "ForceScheduler: option 'priority' must be a util.IntParameter",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, reason='x'}}"),
            "ForceScheduler: option 'reason' must be a force parameter (util.StringParameter{...}, ...), got string 'x'",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, properties={{util.ChangeFilter{{}}}}}}"),
            "ForceScheduler: option 'properties' item 1 must be a force parameter (util.StringParameter{...}, ...), got a ChangeFilter",
        ),
        ("util.StringParameter{label='x'}".into(), "StringParameter: missing required option 'name'"),
        (
            "util.IntParameter{name='n', default='x'}".into(),
            "IntParameter: option 'default' must be an integer, got string 'x'",
        ),
        (
            "util.StringParameter{name='owner'}".into(),
            "StringParameter: 'owner' cannot be a parameter name: the force form uses it",
        ),
        (
            "util.ChoiceStringParameter{name='c', choices={'a'}, multiple=true, default='a'}".into(),
            "ChoiceStringParameter: option 'default' must be a list of strings, got string 'a'",
        ),
        (
            "util.StringParameter{name='s', regex='['}".into(),
            "StringParameter: option 'regex' is not a valid regular expression ('['): unclosed character class",
        ),
        (
            "util.StringParameter{name='s', value='x'}".into(),
            "StringParameter: unknown option 'value'",
        ),
        (
            "util.CodebaseParameter{codebase='', branch=5}".into(),
            "CodebaseParameter: option 'branch' must be a force parameter, a fixed value (a string) or false, got number 5",
        ),
        ("util.CodebaseParameter{}".into(), "CodebaseParameter: missing required option 'codebase'"),
    ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        check_errors(&cases);
    }
}
