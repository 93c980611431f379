//! The environment a command runs with, built as Buildbot's worker builds it: the master's
//! own environment, minus the variables the step unsets, plus the step's values with
//! `${NAME}` expanded from the master's environment, and `PWD` set to the workdir.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::iter::Peekable;
use std::path::Path;
use std::sync::LazyLock;

use regex::{Captures, Regex};

static VARIABLE_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{([0-9a-zA-Z_]*)\}").expect("variable reference pattern"));

/// The master's own environment, read once: nothing changes it while the master runs, and
/// reading and sorting it again for each command cost more than the rest of its set-up.
static MASTER: LazyLock<BTreeMap<OsString, OsString>> =
    LazyLock::new(|| std::env::vars_os().collect());

/// A command's environment: the master's, with the step's changes (`None` unsets).
pub(super) struct Environ {
    changes: BTreeMap<OsString, Option<OsString>>,
}

impl Environ {
    /// The value of `name` for the child.
    pub(super) fn get(&self, name: &str) -> Option<&OsStr> {
        match self.changes.get(OsStr::new(name)) {
            Some(changed) => changed.as_deref(),
            None => MASTER.get(OsStr::new(name)).map(OsString::as_os_str),
        }
    }

    /// Sets the changes on `command`, which inherits the rest from the master: std then
    /// builds the child's environment once, where a cleared one filled with every variable
    /// was copied twice.
    pub(super) fn apply(&self, command: &mut tokio::process::Command) {
        for (name, value) in &self.changes {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
    }

    /// Every variable, sorted by name (the header lists them in this order).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        Merged {
            master: MASTER.iter().peekable(),
            changes: self.changes.iter().peekable(),
        }
    }
}

/// The master's variables and the changes, both sorted by name, merged in order.
struct Merged<'a, M, C>
where
    M: Iterator<Item = (&'a OsString, &'a OsString)>,
    C: Iterator<Item = (&'a OsString, &'a Option<OsString>)>,
{
    master: Peekable<M>,
    changes: Peekable<C>,
}

impl<'a, M, C> Iterator for Merged<'a, M, C>
where
    M: Iterator<Item = (&'a OsString, &'a OsString)>,
    C: Iterator<Item = (&'a OsString, &'a Option<OsString>)>,
{
    type Item = (&'a OsStr, &'a OsStr);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.master.peek(), self.changes.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((master, _)), Some((changed, _))) => master.cmp(changed),
            };
            if order == Ordering::Equal {
                // The change replaces the master's variable.
                self.master.next();
            }
            let from_master = order == Ordering::Less;
            if from_master {
                let (name, value) = self.master.next()?;
                return Some((name.as_os_str(), value.as_os_str()));
            }
            if let (name, Some(value)) = self.changes.next()? {
                return Some((name.as_os_str(), value.as_os_str()));
            }
        }
    }
}

/// The environment for the child: the master's, minus the variables the step unsets, plus
/// its values, and `PWD`.
pub(super) fn build(overrides: &[(String, Option<String>)], workdir: &Path) -> Environ {
    let mut changes: BTreeMap<OsString, Option<OsString>> = BTreeMap::new();
    for (name, value) in overrides {
        let value = value.as_ref().map(|value| {
            // Buildbot keeps the master's PYTHONPATH after the step's entries.
            let value = if name == "PYTHONPATH" {
                format!("{value}:${{PYTHONPATH}}")
            } else {
                value.clone()
            };
            OsString::from(expand(&value))
        });
        changes.insert(name.into(), value);
    }
    let pwd = std::path::absolute(workdir).unwrap_or_else(|_| workdir.to_path_buf());
    changes.insert("PWD".into(), Some(pwd.into_os_string()));
    Environ { changes }
}

/// Replaces each `${NAME}` with the master's value of NAME, or nothing when it is unset.
fn expand(value: &str) -> String {
    VARIABLE_REFERENCE
        .replace_all(value, |reference: &Captures| {
            MASTER
                .get(OsStr::new(&reference[1]))
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_from_the_master_environment() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand("${HOME}/bin"), format!("{home}/bin"));
        assert_eq!(expand("a${MOONBOT_SURELY_UNSET_VARIABLE}b"), "ab");
        assert_eq!(expand("$HOME and ${}"), "$HOME and ");
    }

    #[test]
    fn overrides_set_unset_and_keep_pwd() {
        let overrides = vec![
            ("MOONBOT_STEP_VAR".to_owned(), Some("x".to_owned())),
            ("PATH".to_owned(), None),
        ];
        let env = build(&overrides, Path::new("/tmp"));
        assert_eq!(env.get("MOONBOT_STEP_VAR"), Some(OsStr::new("x")));
        assert_eq!(env.get("PATH"), None);
        assert_eq!(env.get("PWD"), Some(OsStr::new("/tmp")));
        let listed: Vec<(&OsStr, &OsStr)> = env.iter().collect();
        assert!(
            listed.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "sorted, once each"
        );
        assert!(listed.contains(&(OsStr::new("MOONBOT_STEP_VAR"), OsStr::new("x"))));
        assert!(listed.contains(&(OsStr::new("PWD"), OsStr::new("/tmp"))));
        assert!(!listed.iter().any(|(name, _)| *name == "PATH"));
        let kept = MASTER
            .keys()
            .filter(|name| !["PATH", "PWD"].contains(&name.to_str().unwrap_or_default()));
        for name in kept {
            assert_eq!(
                env.get(name.to_str().unwrap_or_default()),
                MASTER.get(name).map(OsString::as_os_str)
            );
        }
    }
}
