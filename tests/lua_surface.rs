//! The rules of the Lua surface that every config relies on (design.md section 1).

use std::path::Path;

use moonbot::config::load_source;

fn load(source: &str) -> Result<moonbot::config::LoadedConfig, String> {
    load_source("master.cfg.lua", source, Path::new(".")).map_err(|e| e.to_string())
}

fn load_err(source: &str) -> String {
    match load(source) {
        Ok(_) => panic!("{source}: loaded without errors"),
        Err(e) => e,
    }
}

fn status_count(source: &str) -> usize {
    load(source)
        .unwrap_or_else(|e| panic!("{source}\n{e}"))
        .config
        .status
        .len()
}

#[test]
fn list_keys_take_append_extend_and_table_insert_however_assigned() {
    let pb = "status.PBListener(9988)";
    let cases = [
        format!("c = BuildmasterConfig; c['status']:append({pb})"),
        format!("c = BuildmasterConfig; c['status'] = {{}}; c['status']:append({pb})"),
        format!("c = BuildmasterConfig; c.status = {{}}; table.insert(c.status, {pb})"),
        format!("c = BuildmasterConfig; c['services']:extend({{{pb}}})"),
        format!("c = BuildmasterConfig; c['status'] = {{{pb}}}"),
        format!("BuildmasterConfig = {{status = {{{pb}}}}}"),
    ];
    for source in cases {
        assert_eq!(status_count(&source), 1, "{source}");
    }
}

#[test]
fn namespaces_are_globals_fields_of_buildbot_and_the_plugins_module() {
    let source = r#"
        local plugins = require("buildbot.plugins")
        assert(plugins == buildbot)
        for _, name in ipairs({"status", "util", "steps", "schedulers", "changes", "worker", "buildslave"}) do
          assert(_G[name] == buildbot[name], name)
          assert(plugins[name] == buildbot[name], name)
        end
        assert(buildslave.BuildSlave and worker.Worker and worker.LocalWorker)
    "#;
    load(source).unwrap();
}

#[test]
fn results_are_indexed_by_code_from_zero() {
    let source = r#"
        assert(util.Results[0] == "success")
        assert(util.Results[2] == "failure")
        assert(util.Results[6] == "cancelled")
        assert(util.SUCCESS == 0 and util.WARNINGS == 1 and util.FAILURE == 2 and util.SKIPPED == 3)
        assert(util.EXCEPTION == 4 and util.RETRY == 5 and util.CANCELLED == 6)
        assert(util.Results[util.FAILURE]:title() == "Failure")
        assert(util.Results[util.EXCEPTION]:upper() == "EXCEPTION")
    "#;
    load(source).unwrap();
}

#[test]
fn an_endless_config_is_stopped_with_its_line() {
    let err = load_err("local c = BuildmasterConfig\nwhile true do end\n");
    assert!(
        err.starts_with(
            "master.cfg.lua:2: evaluating the config took longer than 10 s (an endless loop?)"
        ),
        "{err}"
    );
}

#[test]
fn unknown_names_in_a_namespace_are_errors_with_a_suggestion() {
    let err = load_err("c = BuildmasterConfig\nc['workers']:append(worker.LocalWorkr('w'))");
    assert_eq!(
        err,
        "master.cfg.lua:2: buildbot.worker has no 'LocalWorkr' (did you mean 'LocalWorker'?)\n"
    );
}

#[test]
fn a_plain_table_cannot_pass_for_a_status_target() {
    let err = load_err("c = BuildmasterConfig\nc['status'] = {{fromaddr = 'a@b'}}");
    assert!(
        err.starts_with("master.cfg.lua:2: c['status'] item 1 must be a status target"),
        "{err}"
    );
}
