//! Reading Lua's error messages: where they point, and what a raised value that is no
//! message was.

/// `error()` and `error({...})` raise values that are no message: Lua prints them as `nil`
/// or `table: 0x5583...`; say what they were instead.
pub fn describe_error_object(message: String) -> String {
    let kind = match message.as_str() {
        "nil" => Some("nil"),
        "true" | "false" => Some("a boolean"),
        _ => message.split_once(": 0x").and_then(|(kind, address)| {
            let is_address = address.bytes().all(|b| b.is_ascii_hexdigit());
            let kind = match kind {
                "table" => "a table",
                "function" => "a function",
                "thread" => "a coroutine",
                _ => "a userdata",
            };
            is_address.then_some(kind)
        }),
    };
    match kind {
        Some(kind) => format!("error raised with {kind} instead of a message"),
        None => message,
    }
}

/// The leading `file:line: ` of a Lua message. The file may hold colons itself
/// (`[string "a:b"]:1: ...`): the place ends at the first `:DIGITS:`.
pub fn split_place(text: &str) -> Option<(&str, u32, &str)> {
    let mut search = 0;
    while let Some(colon) = text[search..].find(':').map(|i| i + search) {
        let after = &text[colon + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if colon > 0 && digits > 0 && after[digits..].starts_with(':') {
            let line = after[..digits].parse().ok()?;
            return Some((&text[..colon], line, after[digits + 1..].trim_start()));
        }
        search = colon + 1;
    }
    None
}

/// The first frame of a Lua traceback that is Lua code (`file:line`), not a C function.
pub fn first_lua_frame(traceback: &str) -> Option<&str> {
    traceback
        .lines()
        .map(str::trim)
        .find(|line| !line.starts_with("[C]") && line.contains(": in "))
        .and_then(|line| line.split(": in ").next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_found_even_in_chunk_names_with_colons() {
        assert_eq!(
            split_place("master.cfg.lua:12: boom"),
            Some(("master.cfg.lua", 12, "boom"))
        );
        assert_eq!(
            split_place("[string \"a:b\"]:3: x: 4: y"),
            Some(("[string \"a:b\"]", 3, "x: 4: y"))
        );
        assert_eq!(split_place("no place: 12 here"), None);
    }

    #[test]
    fn values_raised_instead_of_messages_are_named() {
        assert_eq!(
            describe_error_object("table: 0x55d0c0ffee00".into()),
            "error raised with a table instead of a message"
        );
        assert_eq!(
            describe_error_object("nil".into()),
            "error raised with nil instead of a message"
        );
        assert_eq!(describe_error_object("42".into()), "42");
        assert_eq!(describe_error_object("x: 0xzz".into()), "x: 0xzz");
    }
}
