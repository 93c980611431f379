//! Steps that move files between master and worker (`FileUpload`, `FileDownload`) or touch
//! the worker's file system (`MakeDirectory`, `RemoveDirectory`).

use mlua::{Lua, MultiValue, Value};

use super::steps::{common, finish, step_options, Defaults, StepConfig, StepKind, BASE};
use super::values::read_args;
use crate::config::kwargs::{constructor, mismatch, FromOption, Kwargs, OptionError};
use crate::config::{define, Namespaces};
use crate::script::Renderable;

/// A Unix file mode. Lua has no octal literals, so besides an integer (`420`) an octal
/// string (`"0644"`, `"644"`) is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FromOption for FileMode {
    fn expected() -> String {
        "a file mode (an integer such as 420, or an octal string such as '0644')".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let mode = match &value {
            Value::String(s) => u32::from_str_radix(&s.to_string_lossy(), 8).ok(),
            _ => u32::from_option(value.clone(), lua).ok(),
        };
        match mode {
            Some(mode) if mode <= 0o7777 => Ok(FileMode(mode)),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// `steps.FileUpload`: a file from the worker to the master.
#[derive(Clone, Debug)]
pub struct FileUpload {
    pub workersrc: Renderable,
    pub masterdest: Renderable,
    /// Bytes; a bigger file fails the step.
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    pub mode: Option<FileMode>,
    /// Keep the file's access and modification times.
    pub keepstamp: bool,
    /// A link added to the step, with its text.
    pub url: Option<Renderable>,
    pub url_text: Option<Renderable>,
}

/// `steps.FileDownload`: a file from the master to the worker.
#[derive(Clone, Debug)]
pub struct FileDownload {
    pub mastersrc: Renderable,
    pub workerdest: Renderable,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    pub mode: Option<FileMode>,
}

pub const FILE_UPLOAD_OPTIONS: &[&str] = step_options!(
    "workersrc",
    "slavesrc",
    "masterdest",
    "maxsize",
    "blocksize",
    "mode",
    "keepstamp",
    "url",
    "urlText",
);
pub const FILE_DOWNLOAD_OPTIONS: &[&str] = step_options!(
    "mastersrc",
    "workerdest",
    "slavedest",
    "maxsize",
    "blocksize",
    "mode",
);
pub const MAKE_DIRECTORY_OPTIONS: &[&str] = step_options!("dir");
pub const REMOVE_DIRECTORY_OPTIONS: &[&str] = step_options!("dir");

/// Buildbot's `_TransferBuildStep`: a failed transfer stops the build.
const UPLOAD: Defaults = Defaults {
    name: "upload",
    halt_on_failure: true,
    ..BASE
};
const DOWNLOAD: Defaults = Defaults {
    name: "download",
    ..UPLOAD
};
const MAKE_DIRECTORY: Defaults = Defaults {
    name: "MakeDirectory",
    description: &["Creating"],
    description_done: &["Created"],
    halt_on_failure: true,
    ..BASE
};
const REMOVE_DIRECTORY: Defaults = Defaults {
    name: "RemoveDirectory",
    description: &["Deleting"],
    description_done: &["Deleted"],
    ..MAKE_DIRECTORY
};

/// An option with a 0.8 spelling (`slavesrc` for `workersrc`) that must be given.
fn required_alias(kw: &mut Kwargs, names: &[&str]) -> Renderable {
    let given = names.iter().any(|n| kw.has(n));
    let value = kw.alias::<Renderable>(names);
    if !given {
        kw.error(format!("missing required option '{}'", names[0]));
    }
    value.unwrap_or_default()
}

fn file_upload(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "FileUpload",
        args,
        &["workersrc", "masterdest"],
        &[],
        &[],
        FILE_UPLOAD_OPTIONS,
    );
    let step = FileUpload {
        workersrc: required_alias(&mut kw, &["workersrc", "slavesrc"]),
        masterdest: kw.required("masterdest"),
        maxsize: kw.optional("maxsize"),
        blocksize: kw.optional_or("blocksize", 256 * 1024),
        mode: kw.optional("mode"),
        keepstamp: kw.optional_or("keepstamp", false),
        url: kw.optional("url"),
        url_text: kw.optional("urlText"),
    };
    // Step links are not shown yet.
    kw.unimplemented_when("url", step.url.is_some());
    kw.unimplemented_when("urlText", step.url_text.is_some());
    let common = common(&mut kw, &UPLOAD);
    finish(kw, common, StepKind::FileUpload(step))
}

fn file_download(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "FileDownload",
        args,
        &["mastersrc", "workerdest"],
        &[],
        &[],
        FILE_DOWNLOAD_OPTIONS,
    );
    let step = FileDownload {
        mastersrc: kw.required("mastersrc"),
        workerdest: required_alias(&mut kw, &["workerdest", "slavedest"]),
        maxsize: kw.optional("maxsize"),
        blocksize: kw.optional_or("blocksize", 16 * 1024),
        mode: kw.optional("mode"),
    };
    let common = common(&mut kw, &DOWNLOAD);
    finish(kw, common, StepKind::FileDownload(step))
}

fn make_directory(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "MakeDirectory",
        args,
        &["dir"],
        &[],
        &[],
        MAKE_DIRECTORY_OPTIONS,
    );
    let dir = kw.required("dir");
    let common = common(&mut kw, &MAKE_DIRECTORY);
    finish(kw, common, StepKind::MakeDirectory { dir })
}

fn remove_directory(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "RemoveDirectory",
        args,
        &["dir"],
        &[],
        &[],
        REMOVE_DIRECTORY_OPTIONS,
    );
    let dir = kw.required("dir");
    let common = common(&mut kw, &REMOVE_DIRECTORY);
    finish(kw, common, StepKind::RemoveDirectory { dir })
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    let steps = [
        (
            "FileUpload",
            file_upload as fn(&Lua, MultiValue) -> Option<StepConfig>,
        ),
        ("FileDownload", file_download),
        ("MakeDirectory", make_directory),
        ("RemoveDirectory", remove_directory),
    ];
    for (name, parse) in steps {
        define(&ns.steps, name, constructor(lua, "build step", parse)?)?;
    }
    Ok(())
}
