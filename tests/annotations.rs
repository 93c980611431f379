//! The LuaLS annotations in `lua/types/` must declare exactly the options the parser accepts:
//! each constructor's options class (`---@class buildbot.status.MailNotifierOptions`) has one
//! `---@field` per accepted option, no more and no fewer. And they must hold for real configs:
//! a LuaLS-compatible checker finds nothing to warn about in the sample and the examples.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Options class name -> declared fields, from every `lua/types/*.lua`.
fn declared() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua/types");
    let mut classes = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("---@class ") {
                let name = rest.split([' ', ':']).next().unwrap().to_string();
                current = name.ends_with("Options").then(|| name.clone());
                if let Some(name) = &current {
                    classes.entry(name.clone()).or_insert_with(BTreeSet::new);
                }
            } else if let Some(rest) = line.strip_prefix("---@field ") {
                if let Some(class) = &current {
                    let field = rest.split([' ', '?']).next().unwrap().to_string();
                    classes.get_mut(class).unwrap().insert(field);
                }
            } else if !line.starts_with("---") {
                current = None;
            }
        }
    }
    classes
}

#[test]
fn annotations_declare_exactly_the_accepted_options() {
    let declared = declared();
    let mut problems = Vec::new();
    for class in moonbot::config::classes() {
        let key = format!("buildbot.{}Options", class.name);
        let accepted: BTreeSet<String> = class.options.iter().map(|s| s.to_string()).collect();
        match declared.get(&key) {
            None => problems.push(format!("{key}: no ---@class in lua/types")),
            Some(fields) => {
                for missing in accepted.difference(fields) {
                    problems.push(format!("{key}: option '{missing}' is not declared"));
                }
                for extra in fields.difference(&accepted) {
                    problems.push(format!(
                        "{key}: declares '{extra}', which the parser does not accept"
                    ));
                }
            }
        }
    }
    let known: BTreeSet<String> = moonbot::config::classes()
        .iter()
        .map(|c| format!("buildbot.{}Options", c.name))
        .collect();
    for class in declared.keys().filter(|k| !known.contains(*k)) {
        problems.push(format!(
            "{class}: declared, but no constructor has these options"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(moonbot::config::classes().len() >= 2);
}

/// The checker `scripts/test` installs (`cargo install --locked emmylua_check`).
const CHECKER: &str = "emmylua_check";

#[test]
fn the_sample_and_every_example_check_against_the_annotations_without_a_warning() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A workspace of just these files, with lua/types/ as the library, as an editor sees them.
    let workspace = tempfile::tempdir().unwrap();
    let mut configs = vec![root.join("master.cfg.lua")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lua") {
            configs.push(path);
        }
    }
    assert!(configs.len() >= 10, "only {} configs", configs.len());
    for config in &configs {
        std::fs::copy(config, workspace.path().join(config.file_name().unwrap())).unwrap();
    }
    let settings = serde_json::json!({
        "workspace": { "library": [root.join("lua/types")] }
    });
    std::fs::write(workspace.path().join(".emmyrc.json"), settings.to_string()).unwrap();
    let output = match Command::new(CHECKER)
        .args(["--severity", "warn", "--warnings-as-errors"])
        .arg(workspace.path())
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run {CHECKER} ({error}): install it with `cargo install --locked {CHECKER}` \
             (scripts/test does)"
        ),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && !report.contains("warning:") && !report.contains("error:"),
        "{CHECKER} found problems with lua/types/:\n{report}"
    );
}
