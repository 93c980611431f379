//! The LuaLS annotations in `lua/types/` must declare exactly the options the parser accepts:
//! each constructor's options class (`---@class buildbot.status.MailNotifierOptions`) has one
//! `---@field` per accepted option, no more and no fewer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
