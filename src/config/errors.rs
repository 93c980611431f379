//! Config errors are collected, not raised one at a time, so `checkconfig` lists all of them.

use std::fmt;

use mlua::Lua;

/// A place in the user's config: the chunk name Lua reports and a line number.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

impl Location {
    /// Where the Lua code that called the running Rust function stands.
    pub fn of_caller(lua: &Lua) -> Location {
        // Level 0 is the Rust function itself; level 1 is the Lua line calling it.
        lua.inspect_stack(1)
            .map(|debug| {
                let file = debug
                    .source()
                    .short_src
                    .map(|s| s.into_owned())
                    .unwrap_or_default();
                Location {
                    file,
                    line: u32::try_from(debug.curr_line()).unwrap_or(0),
                }
            })
            .unwrap_or_default()
    }

    /// Where a Lua function was defined.
    pub fn of_function(function: &mlua::Function) -> Location {
        let info = function.info();
        Location {
            file: info.short_src.unwrap_or_default(),
            line: info
                .line_defined
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(0),
        }
    }
}

/// Left out while [`super::same_options`] compares two configs.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if super::compare::ignoring_places() {
            return Ok(());
        }
        f.debug_struct("Location")
            .field("file", &self.file)
            .field("line", &self.line)
            .finish()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One problem in a config, with the place it points at when there is one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl ConfigError {
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        ConfigError {
            location: Some(location),
            message: message.into(),
        }
    }

    pub fn global(message: impl Into<String>) -> Self {
        ConfigError {
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every error of one load, sorted by place (errors without a place come last).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn sorted(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by(|a, b| match (&a.location, &b.location) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        errors.dedup();
        ConfigErrors(errors)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What one evaluation has found so far; kept in the VM's app data so that constructors
/// called from Lua can report problems and let evaluation go on.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<ConfigError>,
    /// Documented options that parse but do not work yet: `checkconfig` warns, `start` refuses.
    pub unimplemented: Vec<ConfigError>,
}

/// Records an error in the VM's diagnostics.
pub fn report(lua: &Lua, error: ConfigError) {
    if let Some(mut diagnostics) = lua.app_data_mut::<Diagnostics>() {
        diagnostics.errors.push(error);
    }
}

/// Records a documented option that is accepted but not implemented yet.
pub fn report_unimplemented(lua: &Lua, warning: ConfigError) {
    if let Some(mut diagnostics) = lua.app_data_mut::<Diagnostics>() {
        diagnostics.unimplemented.push(warning);
    }
}

/// "did you mean" for a misspelt name, by Jaro-Winkler similarity as WezTerm does.
pub fn suggest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(wrong, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// `unknown option 'x' (did you mean 'y'?)`
pub fn unknown(what: &str, wrong: &str, known: &[&str]) -> String {
    match suggest(wrong, known.iter().copied()) {
        Some(candidate) => format!("unknown {what} '{wrong}' (did you mean '{candidate}'?)"),
        None => format!("unknown {what} '{wrong}'"),
    }
}
