//! The environment a command runs with, built as Buildbot's worker builds it: the master's
//! own environment, minus the variables the step unsets, plus the step's values with
//! `${NAME}` expanded from the master's environment, and `PWD` set to the workdir.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::LazyLock;

use regex::{Captures, Regex};

static VARIABLE_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{([0-9a-zA-Z_]*)\}").expect("variable reference pattern"));

/// The full environment for the child, sorted by name (the header lists it in this order).
pub(super) fn build(
    overrides: &[(String, Option<String>)],
    workdir: &Path,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (name, value) in overrides {
        match value {
            None => {
                env.remove(&OsString::from(name));
            }
            Some(value) => {
                // Buildbot keeps the master's PYTHONPATH after the step's entries.
                let value = if name == "PYTHONPATH" {
                    format!("{value}:${{PYTHONPATH}}")
                } else {
                    value.clone()
                };
                env.insert(name.into(), expand(&value).into());
            }
        }
    }
    let pwd = std::path::absolute(workdir).unwrap_or_else(|_| workdir.to_path_buf());
    env.insert("PWD".into(), pwd.into_os_string());
    env
}

/// Replaces each `${NAME}` with the master's value of NAME, or nothing when it is unset.
fn expand(value: &str) -> String {
    VARIABLE_REFERENCE
        .replace_all(value, |reference: &Captures| {
            std::env::var_os(&reference[1])
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
        assert_eq!(
            env.get(&OsString::from("MOONBOT_STEP_VAR")),
            Some(&"x".into())
        );
        assert!(!env.contains_key(&OsString::from("PATH")));
        assert_eq!(env.get(&OsString::from("PWD")), Some(&"/tmp".into()));
    }
}
