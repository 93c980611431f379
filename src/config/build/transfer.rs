//! Steps that move files between master and worker (`FileUpload`, `FileDownload`,
//! `DirectoryUpload`, `MultipleFileUpload`, the string downloads) or touch the worker's file
//! system (`MakeDirectory`, `RemoveDirectory`, `CopyDirectory`).

use mlua::{Lua, MultiValue, Value};

use super::steps::{common, finish, step_options, Defaults, StepConfig, StepKind, BASE};
use super::values::{optional_seconds, read_args};
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

/// `steps.DirectoryUpload`: a directory from the worker to the master, as a tar archive.
#[derive(Clone, Debug)]
pub struct DirectoryUpload {
    pub workersrc: Renderable,
    pub masterdest: Renderable,
    /// Bytes of the archive; a bigger one fails the step.
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    pub compress: Option<Compression>,
}

/// How a directory's archive is compressed on its way (Buildbot's `compress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
}

impl Compression {
    /// Buildbot's name for it, which the worker's `upload_directory` takes.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gz",
            Compression::Bzip2 => "bz2",
        }
    }
}

impl FromOption for Compression {
    fn expected() -> String {
        "'gz' or 'bz2'".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match String::from_option(value.clone(), lua).as_deref() {
            Ok("gz") => Ok(Compression::Gzip),
            Ok("bz2") => Ok(Compression::Bzip2),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// `steps.MultipleFileUpload`: files and directories from the worker into one directory of
/// the master.
#[derive(Clone, Debug)]
pub struct MultipleFileUpload {
    /// A list of paths (or one), relative to the step's workdir.
    pub workersrcs: Renderable,
    pub masterdest: Renderable,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    /// The sources are patterns, expanded on the worker.
    pub glob: bool,
    pub mode: Option<FileMode>,
    pub compress: Option<Compression>,
    pub keepstamp: bool,
}

/// What a string download writes on the worker.
#[derive(Clone, Debug)]
pub enum DownloadSource {
    /// `StringDownload`'s string.
    String(Renderable),
    /// `JSONStringDownload`'s value, written as JSON.
    Json(Renderable),
    /// `JSONPropertiesDownload`: the build's properties and sourcestamps as JSON.
    Properties,
}

/// `steps.StringDownload`, `JSONStringDownload` and `JSONPropertiesDownload`: bytes made on
/// the master, written to a file on the worker.
#[derive(Clone, Debug)]
pub struct StringDownload {
    pub source: DownloadSource,
    pub workerdest: Renderable,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    pub mode: Option<FileMode>,
}

/// `steps.CopyDirectory`: a directory copied on the worker (its `cpdir` command).
#[derive(Clone, Debug)]
pub struct CopyDirectory {
    pub src: Renderable,
    pub dest: Renderable,
    /// Seconds without output before the copy is killed.
    pub timeout: Option<u64>,
    pub max_time: Option<u64>,
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
pub const DIRECTORY_UPLOAD_OPTIONS: &[&str] = step_options!(
    "workersrc",
    "slavesrc",
    "masterdest",
    "maxsize",
    "blocksize",
    "compress",
    "url",
    "urlText",
);
pub const MULTIPLE_FILE_UPLOAD_OPTIONS: &[&str] = step_options!(
    "workersrcs",
    "slavesrcs",
    "masterdest",
    "maxsize",
    "blocksize",
    "glob",
    "mode",
    "compress",
    "keepstamp",
    "url",
    "urlText",
);
pub const STRING_DOWNLOAD_OPTIONS: &[&str] = step_options!(
    "s",
    "workerdest",
    "slavedest",
    "maxsize",
    "blocksize",
    "mode",
);
pub const JSON_STRING_DOWNLOAD_OPTIONS: &[&str] = step_options!(
    "o",
    "workerdest",
    "slavedest",
    "maxsize",
    "blocksize",
    "mode",
);
pub const JSON_PROPERTIES_DOWNLOAD_OPTIONS: &[&str] =
    step_options!("workerdest", "slavedest", "maxsize", "blocksize", "mode",);
pub const COPY_DIRECTORY_OPTIONS: &[&str] = step_options!("src", "dest", "timeout", "maxTime");
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
const COPY_DIRECTORY: Defaults = Defaults {
    name: "CopyDirectory",
    description: &["Copying"],
    description_done: &["Copied"],
    halt_on_failure: true,
    ..BASE
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

/// Step links are not shown yet.
fn links_unimplemented(kw: &mut Kwargs) {
    for option in ["url", "urlText"] {
        let given = kw.has(option);
        kw.unimplemented_when(option, given);
    }
}

fn directory_upload(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "DirectoryUpload",
        args,
        &["workersrc", "masterdest"],
        &[],
        &[],
        DIRECTORY_UPLOAD_OPTIONS,
    );
    let step = DirectoryUpload {
        workersrc: required_alias(&mut kw, &["workersrc", "slavesrc"]),
        masterdest: kw.required("masterdest"),
        maxsize: kw.optional("maxsize"),
        blocksize: kw.optional_or("blocksize", 16 * 1024),
        compress: kw.optional("compress"),
    };
    let _: Option<Renderable> = kw.optional("url");
    let _: Option<Renderable> = kw.optional("urlText");
    links_unimplemented(&mut kw);
    let common = common(&mut kw, &UPLOAD);
    finish(kw, common, StepKind::DirectoryUpload(step))
}

fn multiple_file_upload(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "MultipleFileUpload",
        args,
        &["workersrcs", "masterdest"],
        &["workersrcs"],
        &[],
        MULTIPLE_FILE_UPLOAD_OPTIONS,
    );
    let step = MultipleFileUpload {
        workersrcs: required_alias(&mut kw, &["workersrcs", "slavesrcs"]),
        masterdest: kw.required("masterdest"),
        maxsize: kw.optional("maxsize"),
        blocksize: kw.optional_or("blocksize", 16 * 1024),
        glob: kw.optional_or("glob", false),
        mode: kw.optional("mode"),
        compress: kw.optional("compress"),
        keepstamp: kw.optional_or("keepstamp", false),
    };
    let _: Option<Renderable> = kw.optional("url");
    let _: Option<Renderable> = kw.optional("urlText");
    links_unimplemented(&mut kw);
    let common = common(&mut kw, &UPLOAD);
    finish(kw, common, StepKind::MultipleFileUpload(step))
}

/// The string downloads: `source` from the step's own option, the rest shared.
fn string_download(
    lua: &Lua,
    args: MultiValue,
    object: &str,
    positional: &'static [&'static str],
    options: &'static [&'static str],
    name: &'static str,
    source: fn(&mut Kwargs) -> DownloadSource,
) -> Option<StepConfig> {
    let mut kw = read_args(lua, object, args, positional, &[], &["o"], options);
    let step = StringDownload {
        source: source(&mut kw),
        workerdest: required_alias(&mut kw, &["workerdest", "slavedest"]),
        maxsize: kw.optional("maxsize"),
        blocksize: kw.optional_or("blocksize", 16 * 1024),
        mode: kw.optional("mode"),
    };
    let common = common(&mut kw, &Defaults { name, ..DOWNLOAD });
    finish(kw, common, StepKind::StringDownload(step))
}

fn copy_directory(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "CopyDirectory",
        args,
        &["src", "dest"],
        &[],
        &[],
        COPY_DIRECTORY_OPTIONS,
    );
    let step = CopyDirectory {
        src: kw.required("src"),
        dest: kw.required("dest"),
        timeout: optional_seconds(&mut kw, "timeout", Some(120)),
        max_time: optional_seconds(&mut kw, "maxTime", None),
    };
    let common = common(&mut kw, &COPY_DIRECTORY);
    finish(kw, common, StepKind::CopyDirectory(step))
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
        ("DirectoryUpload", directory_upload),
        ("MultipleFileUpload", multiple_file_upload),
        ("StringDownload", |lua, args| {
            string_download(
                lua,
                args,
                "StringDownload",
                &["s", "workerdest"],
                STRING_DOWNLOAD_OPTIONS,
                "string_download",
                |kw| DownloadSource::String(kw.required("s")),
            )
        }),
        ("JSONStringDownload", |lua, args| {
            string_download(
                lua,
                args,
                "JSONStringDownload",
                &["o", "workerdest"],
                JSON_STRING_DOWNLOAD_OPTIONS,
                "json_download",
                |kw| DownloadSource::Json(kw.required("o")),
            )
        }),
        ("JSONPropertiesDownload", |lua, args| {
            string_download(
                lua,
                args,
                "JSONPropertiesDownload",
                &["workerdest"],
                JSON_PROPERTIES_DOWNLOAD_OPTIONS,
                "json_properties_download",
                |_| DownloadSource::Properties,
            )
        }),
        ("CopyDirectory", copy_directory),
        ("RemoveDirectory", remove_directory),
    ];
    for (name, parse) in steps {
        define(&ns.steps, name, constructor(lua, "build step", parse)?)?;
    }
    Ok(())
}
