//! Re-spacing JSON text without parsing it into values: the pages the database writes are
//! spaced its own way, and the REST API answers compact JSON or JSON indented as
//! `serde_json::to_vec_pretty` (and Buildbot) indent it. Strings are copied as they are.
//! The input must be valid JSON.

/// `text` without the spaces between its tokens.
pub fn compact(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    respace(text.as_bytes(), None, &mut out);
    // Only ASCII spaces were left out of valid UTF-8, between whole tokens.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `text` indented two spaces a level, as `serde_json::to_vec_pretty` writes it.
pub fn write_pretty(text: &[u8], out: &mut Vec<u8>) {
    respace(text, Some(0), out);
}

/// Copies the tokens of `text` to `out`; with `indent` (the starting depth), each item and
/// member on its own line and `": "` after a key; empty arrays and objects stay `[]`, `{}`.
fn respace(text: &[u8], indent: Option<usize>, out: &mut Vec<u8>) {
    let mut depth = indent.unwrap_or(0);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        at += 1;
        match byte {
            b'"' => {
                let start = at - 1;
                // To the closing quote: the first one after no escaping backslash.
                loop {
                    let rest = text.get(at..).unwrap_or_default();
                    let Some(found) = memchr::memchr2(b'"', b'\\', rest) else {
                        at = text.len();
                        break;
                    };
                    at += found + 1;
                    if text[at - 1] == b'"' {
                        break;
                    }
                    at += 1;
                }
                at = at.min(text.len());
                out.extend_from_slice(&text[start..at]);
            }
            b' ' | b'\n' | b'\r' | b'\t' => {}
            b'{' | b'[' => {
                out.push(byte);
                let close = if byte == b'{' { b'}' } else { b']' };
                let next = text[at..]
                    .iter()
                    .position(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
                if let Some(skip) = next.filter(|&skip| text[at + skip] == close) {
                    out.push(close);
                    at += skip + 1;
                } else if indent.is_some() {
                    depth += 1;
                    newline(out, depth);
                }
            }
            b'}' | b']' => {
                if indent.is_some() {
                    depth = depth.saturating_sub(1);
                    newline(out, depth);
                }
                out.push(byte);
            }
            b',' => {
                out.push(b',');
                if indent.is_some() {
                    newline(out, depth);
                }
            }
            b':' => {
                out.push(b':');
                if indent.is_some() {
                    out.push(b' ');
                }
            }
            _ => out.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn respacing_writes_what_serde_json_writes() {
        let value = json!({
            "builds": [
                {"a": 1, "b": "x \"y\" \\ z\n{[,:]}", "c": [], "d": {}, "e": [true, null, -2]},
                {"a": 2, "nested": {"list": [{"k": "v"}, []]}}
            ],
            "meta": {"total": 2},
            "empty": []
        });
        let compact_text = serde_json::to_string(&value).unwrap();
        // As PostgreSQL spaces its JSON out.
        let spaced =
            "[{\"a\" : 1, \"b\" : \"x, [y] : {z} \\\" \"}, \n {\"c\" : [ ], \"d\" : {\t}}]";
        assert_eq!(
            compact(spaced),
            r#"[{"a":1,"b":"x, [y] : {z} \" "},{"c":[],"d":{}}]"#
        );
        assert_eq!(compact(&compact_text), compact_text);
        let mut pretty = Vec::new();
        write_pretty(compact_text.as_bytes(), &mut pretty);
        assert_eq!(
            String::from_utf8(pretty).unwrap(),
            serde_json::to_string_pretty(&value).unwrap()
        );
        let mut pretty = Vec::new();
        write_pretty(b"[]", &mut pretty);
        assert_eq!(pretty, b"[]");
    }
}
