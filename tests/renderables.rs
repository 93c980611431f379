//! Every renderable form Buildbot documents, written in Lua and rendered against one set of
//! properties, sourcestamps and worker info.

use std::collections::BTreeMap;

use mlua::{AnyUserData, Lua};
use moonbot::config::prepared_vm;
use moonbot::model::{Properties, SourceStamp};
use moonbot::script::{RenderData, Renderable};
use serde_json::{json, Value};

fn data() -> RenderData {
    let properties = Properties::from_pairs(
        [
            ("a", json!("x")),
            ("empty", json!("")),
            ("f", json!(false)),
            ("t", json!(true)),
            ("zero", json!(0)),
            ("n", json!(5)),
            ("list", json!(["p", "q"])),
        ],
        "test",
    );
    let sourcestamps = vec![
        SourceStamp {
            codebase: String::new(),
            revision: Some("abc123".into()),
            branch: Some("main".into()),
            repository: "https://example.org/repo.git".into(),
            project: "proj".into(),
            ..Default::default()
        },
        SourceStamp {
            codebase: "lib".into(),
            revision: Some("def456".into()),
            ..Default::default()
        },
    ];
    let worker_info = BTreeMap::from([("os".to_string(), json!("linux"))]);
    RenderData {
        properties,
        sourcestamps,
        worker_info,
    }
}

/// Evaluates a Lua expression that yields a renderable.
fn renderable(lua: &Lua, expr: &str) -> Result<Renderable, String> {
    let value: mlua::Value = lua
        .load(format!("return {expr}"))
        .set_name("=test")
        .eval()
        .map_err(|e| e.to_string())?;
    let errors = lua
        .app_data_mut::<moonbot::config::Diagnostics>()
        .map(|mut d| std::mem::take(&mut d.errors))
        .unwrap_or_default();
    if let Some(error) = errors.first() {
        return Err(error.to_string());
    }
    let ud: AnyUserData = match value {
        mlua::Value::UserData(ud) => ud,
        other => return Err(format!("not a renderable: {other:?}")),
    };
    let r = ud
        .borrow::<Renderable>()
        .map_err(|e| e.to_string())?
        .clone();
    Ok(r)
}

fn check(lua: &Lua, expr: &str, expected: Value) {
    let r = renderable(lua, expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let rendered = r
        .render(&data(), Some(lua))
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert_eq!(rendered, expected, "{expr}");
}

#[test]
fn interpolate_forms() {
    let lua = prepared_vm().unwrap();
    let cases = [
        (r#"util.Interpolate("%(prop:a)s")"#, "x"),
        (r#"util.Interpolate("%(prop:missing)s")"#, ""),
        (r#"util.Interpolate("%(prop:f)s")"#, "false"),
        (
            r#"util.Interpolate("%(prop:n)s and %(prop:n)d")"#,
            "5 and 5",
        ),
        (r#"util.Interpolate("[%(prop:list)s]")"#, r#"[["p","q"]]"#),
        // :- the default when the property is missing, not when it is false
        (r#"util.Interpolate("%(prop:missing:-dflt)s")"#, "dflt"),
        (r#"util.Interpolate("%(prop:empty:-dflt)s")"#, ""),
        (r#"util.Interpolate("%(prop:f:-dflt)s")"#, "false"),
        // :~ the default when missing or false
        (r#"util.Interpolate("%(prop:empty:~dflt)s")"#, "dflt"),
        (r#"util.Interpolate("%(prop:f:~dflt)s")"#, "dflt"),
        (r#"util.Interpolate("%(prop:zero:~dflt)s")"#, "dflt"),
        (r#"util.Interpolate("%(prop:a:~dflt)s")"#, "x"),
        // :+ the replacement when the property exists
        (r#"util.Interpolate("%(prop:a:+yes)s")"#, "yes"),
        (r#"util.Interpolate("%(prop:empty:+yes)s")"#, "yes"),
        (r#"util.Interpolate("%(prop:missing:+yes)s")"#, ""),
        // :? exists, :#? exists and true; any delimiter
        (r#"util.Interpolate("%(prop:a:?|yes|no)s")"#, "yes"),
        (r#"util.Interpolate("%(prop:missing:?|yes|no)s")"#, "no"),
        (r#"util.Interpolate("%(prop:empty:?|yes|no)s")"#, "yes"),
        (r#"util.Interpolate("%(prop:empty:#?|yes|no)s")"#, "no"),
        (r#"util.Interpolate("%(prop:t:#?/on/off)s")"#, "on"),
        // nested substitutions in defaults
        (r#"util.Interpolate("%(prop:missing:-%(prop:a)s!)s")"#, "x!"),
        (
            r#"util.Interpolate("%(prop:a:?|got %(prop:a)s|none)s")"#,
            "got x",
        ),
        // sourcestamps by codebase
        (
            r#"util.Interpolate("%(src::revision)s@%(src::branch)s")"#,
            "abc123@main",
        ),
        (
            r#"util.Interpolate("%(src::repository)s %(src::project)s")"#,
            "https://example.org/repo.git proj",
        ),
        (r#"util.Interpolate("%(src:lib:revision)s")"#, "def456"),
        // a sourcestamp's unset branch exists as None: `:-` keeps it (""), `:~` replaces it
        (r#"util.Interpolate("%(src:lib:branch:-none)s")"#, ""),
        (r#"util.Interpolate("%(src:lib:branch:~none)s")"#, "none"),
        (r#"util.Interpolate("%(src:nope:revision:-none)s")"#, "none"),
        // keywords, worker info, escapes
        (r#"util.Interpolate("%(kw:who)s", {who="me"})"#, "me"),
        (
            r#"util.Interpolate("%(kw:who)s", {who=util.Property("a")})"#,
            "x",
        ),
        (r#"util.Interpolate("%(kw:other:-d)s", {who="me"})"#, "d"),
        (
            r#"util.Interpolate("%(worker:os)s/%(slave:os)s")"#,
            "linux/linux",
        ),
        (r#"util.Interpolate("%(worker:arch:-any)s")"#, "any"),
        (r#"util.Interpolate("100%% of %(prop:a)s")"#, "100% of x"),
        // positional substitutions
        (
            r#"util.Interpolate("%s-%s", util.Property("a"), "lit")"#,
            "x-lit",
        ),
        (
            r#"util.Interpolate("%d items", util.Property("n"))"#,
            "5 items",
        ),
    ];
    for (expr, expected) in cases {
        check(&lua, expr, json!(expected));
    }
}

#[test]
fn property_with_properties_and_functions() {
    let lua = prepared_vm().unwrap();
    let cases = [
        (r#"util.Property("a")"#, json!("x")),
        (r#"util.Property("n")"#, json!(5)),
        (r#"util.Property("missing")"#, json!("")),
        (r#"util.Property("missing", "d")"#, json!("d")),
        (r#"util.Property("empty", "d")"#, json!("d")),
        (
            r#"util.Property("empty", {default="d", defaultWhenFalse=false})"#,
            json!(""),
        ),
        (
            r#"util.Property("f", {default="d", defaultWhenFalse=false})"#,
            json!(false),
        ),
        (
            r#"util.Property{name="missing", default=util.Interpolate("%(prop:a)s!")}"#,
            json!("x!"),
        ),
        (r#"util.WithProperties("%s/%s", "a", "n")"#, json!("x/5")),
        (r#"util.WithProperties("%(a)s")"#, json!("x")),
        (
            r#"util.WithProperties("%(missing:-z)s %(empty:~e)s %(a:+p)s")"#,
            json!("z e p"),
        ),
        (
            r#"util.WithProperties("%(now)s", {now=function(props) return props:getProperty("a") .. "@" end})"#,
            json!("x@"),
        ),
        (
            r#"util.renderer(function(props) return props:getProperty("a") .. "!" end)"#,
            json!("x!"),
        ),
        (
            r#"util.renderer(function(props) return props:getProperty("missing", "dflt") end)"#,
            json!("dflt"),
        ),
        (
            r#"util.renderer(function(props) return props:hasProperty("a") and props:render(util.Interpolate("%(src::revision)s")) end)"#,
            json!("abc123"),
        ),
        (
            r#"util.renderer(function(props, x, y) return x .. y end):withArgs("1", util.Property("a"))"#,
            json!("1x"),
        ),
        (
            r#"util.Transform(string.upper, util.Property("a"))"#,
            json!("X"),
        ),
        (
            r#"util.Transform(function(a, b) return a + b end, util.Property("n"), 2)"#,
            json!(7),
        ),
        (
            r#"util.FlattenList({"a", {"b", {util.Property("a")}}})"#,
            json!(["a", "b", "x"]),
        ),
    ];
    for (expr, expected) in cases {
        check(&lua, expr, expected);
    }
}

#[test]
fn renderables_inside_plain_tables_render_in_place() {
    let lua = prepared_vm().unwrap();
    let value: mlua::Value = lua
        .load(r#"return {"make", util.Interpolate("-j%(prop:n)s"), {env=util.Property("a")}}"#)
        .eval()
        .unwrap();
    let r = Renderable::from_lua_value(&lua, value).unwrap();
    assert!(!r.needs_lua());
    assert_eq!(
        r.render(&data(), None).unwrap(),
        json!(["make", "-j5", {"env": "x"}])
    );
}

#[test]
fn lua_backed_renderables_need_the_script_host() {
    let lua = prepared_vm().unwrap();
    let r = renderable(&lua, "util.renderer(function() return 1 end)").unwrap();
    assert!(r.needs_lua());
    assert_eq!(
        r.render(&data(), None).unwrap_err().to_string(),
        "util.renderer needs the script host to render"
    );
}

#[test]
fn a_failing_renderer_names_its_line() {
    let lua = prepared_vm().unwrap();
    let r = renderable(&lua, "util.renderer(function(props) error('boom') end)").unwrap();
    let err = r.render(&data(), Some(&lua)).unwrap_err().to_string();
    assert!(err.starts_with("test:1: "), "{err}");
    assert!(err.contains("boom"), "{err}");
}

#[test]
fn malformed_formats_and_arguments_are_config_errors_at_their_line() {
    let lua = prepared_vm().unwrap();
    let cases = [
        (r#"util.Interpolate("%(foo:x)s")"#, "test:1: util.Interpolate: invalid selector 'foo' in '%(foo:x)s' (use prop:, src:, kw: or worker:)"),
        (r#"util.Interpolate("%(prop)s")"#, "test:1: util.Interpolate: invalid substitution 'prop': no selector (use prop:, src:, kw: or worker:)"),
        (r#"util.Interpolate("%(prop:a:*x)s")"#, "test:1: util.Interpolate: invalid form ':*x' in '%(prop:a:*x)s' (use :-, :~, :+, :? or :#?)"),
        (r#"util.Interpolate("%(src:lib)s")"#, "test:1: util.Interpolate: '%(src:lib)s' must name both codebase and attribute (src:CODEBASE:ATTR)"),
        (r#"util.Interpolate("%(prop:a:?|yes)s")"#, "test:1: util.Interpolate: invalid ternary 'yes' with delimiter '|' in '%(prop:a:?|yes)s'"),
        (r#"util.Interpolate("%(prop:a")"#, "test:1: util.Interpolate: unbalanced parenthesis in '%(prop:a'"),
        (r#"util.Interpolate("%s and %s", "one")"#, "test:1: util.Interpolate: '%s and %s' has 2 %s placeholders but 1 argument was given"),
        (r#"util.Interpolate("%x")"#, "test:1: util.Interpolate: unsupported conversion '%x' in '%x' (use %s or %d)"),
        (r#"util.Interpolate(42)"#, "test:1: util.Interpolate: the format must be a string, got number 42"),
        (r#"util.Property{default="d"}"#, "test:1: util.Property: missing required option 'name'"),
        (r#"util.Property{name="a", defualt="d"}"#, "test:1: util.Property: unknown option 'defualt' (did you mean 'default'?)"),
        (r#"util.renderer(5)"#, "test:1: util.renderer: expects a function, got number 5"),
        (r#"util.Transform("x")"#, "test:1: util.Transform: the first argument must be a function, got string 'x'"),
        (r#"util.Transform(string.upper, print)"#, "test:1: util.Transform: argument must be a string, number, boolean, table or renderable (util.Interpolate, util.Property, ...), got function"),
    ];
    for (expr, expected) in cases {
        assert_eq!(renderable(&lua, expr).unwrap_err(), expected, "{expr}");
    }
}
