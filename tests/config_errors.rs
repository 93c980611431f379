//! Golden tests for what users read when a config is wrong: each `tests/configs/bad/NAME.lua`
//! must fail with exactly the text in `NAME.err`. Run with `MOONBOT_BLESS=1` to rewrite
//! the `.err` files, then review the diff.

use std::path::Path;

#[path = "support/golden.rs"]
mod golden;

#[test]
fn bad_configs_fail_with_their_golden_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for config in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
    {
        let name = config.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(config).unwrap();
        let errors = match moonbot::config::load_source(&name, &source, &dir) {
            Ok(_) => panic!("{name} loaded without errors"),
            Err(errors) => errors.to_string(),
        };
        golden::check(config.with_extension("err"), &errors);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} bad configs found");
}
