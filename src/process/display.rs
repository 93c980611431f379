//! The text Buildbot's worker writes about a command in a step's header, so our logs read
//! the same: the command quoted as a shell would re-read it, Python-style reprs of the argv
//! and watched log files, and durations in whole seconds where they are whole.

use std::path::PathBuf;
use std::time::Duration;

use super::CommandLine;

/// The command as a shell would re-read it: a shell string as written, an argv quoted word
/// by word (Python's `shlex.quote`, with `""` for an empty word as Buildbot does).
pub(super) fn command_line(command: &CommandLine) -> String {
    match command {
        CommandLine::Shell(script) => script.clone(),
        CommandLine::Argv(argv) => argv
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The command as Buildbot's `argv:` header and timeout messages show it: a Python repr of
/// the list, or of the string for a shell command.
pub(super) fn command_repr(command: &CommandLine) -> String {
    match command {
        CommandLine::Shell(script) => py_repr(script),
        CommandLine::Argv(argv) => {
            let words: Vec<String> = argv.iter().map(|word| py_repr(word)).collect();
            format!("[{}]", words.join(", "))
        }
    }
}

/// The watched log files as Buildbot prints its `logfiles` dict.
pub(super) fn logfiles_repr(logfiles: &[(String, PathBuf, bool)]) -> String {
    let entries: Vec<String> = logfiles
        .iter()
        .map(|(name, path, follow)| {
            let file = py_repr(&path.to_string_lossy());
            let value = if *follow {
                format!("{{'filename': {file}, 'follow': True}}")
            } else {
                file
            };
            format!("{}: {value}", py_repr(name))
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// Seconds as the user configured them: `1200` for whole seconds, `0.5` otherwise.
pub(super) fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        duration.as_secs_f64().to_string()
    }
}

fn shell_quote(word: &str) -> String {
    if word.is_empty() {
        return "\"\"".to_owned();
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

/// Python's `repr` of a string: single quotes unless the text holds a single quote and no
/// double quote, control characters escaped.
fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut repr = String::with_capacity(text.len() + 2);
    repr.push(quote);
    for c in text.chars() {
        match c {
            '\\' => repr.push_str("\\\\"),
            '\n' => repr.push_str("\\n"),
            '\r' => repr.push_str("\\r"),
            '\t' => repr.push_str("\\t"),
            c if c == quote => {
                repr.push('\\');
                repr.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                repr.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => repr.push(c),
        }
    }
    repr.push(quote);
    repr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_like_shlex() {
        let argv = CommandLine::Argv(vec![
            "echo".into(),
            "".into(),
            "a b".into(),
            "it's".into(),
            "--opt=x,y/z".into(),
        ]);
        assert_eq!(
            command_line(&argv),
            r#"echo "" 'a b' 'it'"'"'s' --opt=x,y/z"#
        );
    }

    #[test]
    fn reprs_match_python() {
        let argv = CommandLine::Argv(vec!["make".into(), "it's".into(), "a\tb\\".into()]);
        assert_eq!(command_repr(&argv), r#"['make', "it's", 'a\tb\\']"#);
        let both = CommandLine::Shell("echo 'x' \"y\"".into());
        assert_eq!(command_repr(&both), r#"'echo \'x\' "y"'"#);
        let logfiles = vec![
            ("test".to_owned(), PathBuf::from("test.log"), false),
            ("trace".to_owned(), PathBuf::from("out/trace.txt"), true),
        ];
        assert_eq!(
            logfiles_repr(&logfiles),
            "{'test': 'test.log', 'trace': {'filename': 'out/trace.txt', 'follow': True}}"
        );
        assert_eq!(logfiles_repr(&[]), "{}");
    }

    #[test]
    fn seconds_are_whole_when_whole() {
        assert_eq!(seconds(Duration::from_secs(1200)), "1200");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
    }
}
