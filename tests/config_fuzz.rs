//! Mutants of the sample config and of every example (deleted, duplicated and swapped
//! tokens and lines, values of the wrong type, made-up option names, the odd endless loop),
//! seeded so a failure repeats: evaluating one never panics, never runs past its limit, and
//! every error it reports starts with `file:line: `.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moonbot::config::{classes, load_with, EvaluationLimits};

const MUTANTS_PER_FILE: usize = 30;
const LIMITS: EvaluationLimits = EvaluationLimits {
    timeout: Duration::from_millis(500),
    memory_limit: 64 * 1024 * 1024,
};

fn sources() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    files.sort();
    files.push(root.join("master.cfg.lua"));
    files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

/// Byte ranges of Lua's tokens, roughly: names, numbers, quoted strings, single
/// punctuation; comments and whitespace are skipped.
fn tokens(source: &str) -> Vec<Range<usize>> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if source[i..].starts_with("--") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else {
            i += source[i..].chars().next().unwrap().len_utf8();
        }
        out.push(start..i);
    }
    out
}

const WRONG_VALUES: &[&str] = &[
    "42",
    "true",
    "{}",
    "nil",
    "function() end",
    "{ 1, { 2 } }",
    "'x'",
    "util.Interpolate('%(prop:x)s')",
    "-1.5",
];

const HOSTILE: &[&str] = &[
    "while true do end",
    "pcall(function() while true do end end)",
    "coroutine.wrap(function() while true do end end)()",
    "error()",
    "error({ code = 1 })",
    "os.exit(1)",
    "local t = setmetatable({}, { __gc = function() end })",
    "x = {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
    "util.renderer(5)",
    "util.Transform('x')",
];

/// One mutation of `source`.
fn mutate(rng: &mut fastrand::Rng, source: &str, option_names: &[&str]) -> String {
    let toks = tokens(source);
    let lines: Vec<&str> = source.lines().collect();
    let pick = |rng: &mut fastrand::Rng| toks[rng.usize(..toks.len())].clone();
    let splice = |range: Range<usize>, with: &str| {
        format!("{}{with}{}", &source[..range.start], &source[range.end..])
    };
    match rng.u8(..9) {
        0 => splice(pick(rng), ""),
        1 => {
            let t = pick(rng);
            let copy = format!("{} ", &source[t.clone()]);
            splice(t.start..t.start, &copy)
        }
        2 => {
            let i = rng.usize(..toks.len() - 1);
            let (a, b) = (toks[i].clone(), toks[i + 1].clone());
            format!(
                "{}{}{}{}{}",
                &source[..a.start],
                &source[b.clone()],
                &source[a.end..b.start],
                &source[a],
                &source[b.end..]
            )
        }
        3 => {
            let drop = rng.usize(..lines.len());
            lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, l)| format!("{l}\n"))
                .collect()
        }
        4 => {
            let twice = rng.usize(..lines.len());
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i == twice {
                        format!("{l}\n{l}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect()
        }
        5 | 6 => {
            // A value of the wrong type where a string, number or table stood.
            let values: Vec<_> = toks
                .iter()
                .filter(|t| {
                    let first = source.as_bytes()[t.start];
                    first == b'"' || first == b'\'' || first.is_ascii_digit() || first == b'{'
                })
                .collect();
            match values.get(rng.usize(..values.len().max(1))) {
                Some(t) => splice((*t).clone(), WRONG_VALUES[rng.usize(..WRONG_VALUES.len())]),
                None => source.to_string(),
            }
        }
        7 => {
            // An option name that is misspelt or belongs elsewhere.
            let names: Vec<_> = toks
                .windows(2)
                .filter(|w| {
                    source.as_bytes()[w[0].start].is_ascii_alphabetic()
                        && &source[w[1].clone()] == "="
                        && source.as_bytes().get(w[1].end) != Some(&b'=')
                })
                .map(|w| w[0].clone())
                .collect();
            let Some(t) = names.get(rng.usize(..names.len().max(1))) else {
                return source.to_string();
            };
            let name = &source[t.clone()];
            let replacement = if rng.bool() {
                option_names[rng.usize(..option_names.len())].to_string()
            } else {
                let mut chars: Vec<char> = name.chars().collect();
                let at = rng.usize(..chars.len());
                if rng.bool() && chars.len() > 1 {
                    chars.remove(at);
                } else {
                    chars.insert(at, rng.lowercase());
                }
                chars.into_iter().collect()
            };
            splice(t.clone(), &replacement)
        }
        _ => {
            let at = rng.usize(..=lines.len());
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out.insert(at, HOSTILE[rng.usize(..HOSTILE.len())].to_string());
            out.join("\n") + "\n"
        }
    }
}

/// `name:LINE: ` with LINE a number.
fn starts_with_place(line: &str, name: &str) -> bool {
    line.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|rest| rest.split_once(": "))
        .is_some_and(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn mutated_configs_fail_with_every_error_at_its_line_and_never_hang_or_panic() {
    let option_names: Vec<&str> = classes().iter().flat_map(|c| c.options).copied().collect();
    let mut rng = fastrand::Rng::with_seed(0x6d6f6f6e626f74);
    let mut failures = Vec::new();
    let mut evaluated = 0;
    let mut refused = 0;
    for (name, source) in sources() {
        for _ in 0..MUTANTS_PER_FILE {
            let mut mutant = source.clone();
            for _ in 0..rng.usize(1..=3) {
                mutant = mutate(&mut rng, &mutant, &option_names);
            }
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| {
                load_with(&name, mutant.as_bytes(), Path::new("."), LIMITS).map(|_| ())
            }));
            let took = started.elapsed();
            evaluated += 1;
            let problem = match result {
                Err(_) => Some("panicked".to_string()),
                Ok(_) if took > LIMITS.timeout + Duration::from_secs(5) => {
                    Some(format!("took {took:?}"))
                }
                Ok(Ok(())) => None,
                Ok(Err(errors)) => {
                    refused += 1;
                    let text = errors.to_string();
                    text.lines()
                        .find(|line| !starts_with_place(line, &name))
                        .map(|line| format!("an error without its place: {line}"))
                }
            };
            if let Some(problem) = problem {
                failures.push(format!("{name}: {problem}\n--- mutant:\n{mutant}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {evaluated} mutants went wrong; the first:\n{}",
        failures.len(),
        failures[0]
    );
    // The mutations must bite: most mutants are refused.
    assert!(
        refused * 2 > evaluated,
        "only {refused} of {evaluated} refused"
    );
}
