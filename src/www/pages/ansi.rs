//! Log lines as HTML: the channel of each stdio line (stdout, stderr, header) as a class,
//! and ANSI colour codes rendered on the server as `<span class="ansi-...">`, so a log's
//! colours never depend on how much of it a browser script has read.

use std::fmt::Write as _;

/// SGR state carried from one line to the next within a page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sgr {
    bold: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Sgr {
    fn classes(&self) -> String {
        let mut classes = Vec::new();
        if self.bold {
            classes.push("ansi-bold".to_string());
        }
        if let Some(fg) = self.fg {
            classes.push(format!("ansi-fg{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("ansi-bg{bg}"));
        }
        classes.join(" ")
    }

    /// Applies one `ESC [ params m` sequence.
    fn apply(&mut self, params: &str) {
        let codes: Vec<u32> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut codes = codes.into_iter();
        while let Some(code) = codes.next() {
            match code {
                0 => *self = Sgr::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                49 => self.bg = None,
                // 256 colours: the first 16 map to the classes, the rest are dropped.
                38 | 48 if codes.next() == Some(5) => {
                    let index = codes.next().unwrap_or(0);
                    let colour = (index < 16).then_some(index as u8);
                    if code == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Appends `text` escaped for HTML, with its SGR sequences turned into spans (other
/// escape sequences are dropped); `state` is the colour at its start and is left at its end.
pub fn push_ansi_html(out: &mut String, text: &str, state: &mut Sgr) {
    let mut open = open_span(out, state);
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        push_escaped(out, &rest[..at]);
        rest = &rest[at + 1..];
        let Some(body) = rest.strip_prefix('[') else {
            continue;
        };
        // A CSI sequence: parameters, then one final byte in @..~.
        let end = body.char_indices().find(|(_, c)| ('@'..='~').contains(c));
        let Some((end, last)) = end else {
            rest = "";
            break;
        };
        if last == 'm' {
            state.apply(&body[..end]);
            if open {
                out.push_str("</span>");
            }
            open = open_span(out, state);
        }
        rest = &body[end + 1..];
    }
    push_escaped(out, rest);
    if open {
        out.push_str("</span>");
    }
}

fn open_span(out: &mut String, state: &Sgr) -> bool {
    let classes = state.classes();
    if classes.is_empty() {
        return false;
    }
    let _ = write!(out, "<span class=\"{classes}\">");
    true
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\r' => {}
            c => out.push(c),
        }
    }
}

/// `text` without its escape sequences, for the plain text of a log.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(body) = rest.strip_prefix('[') {
            match body.find(|c: char| ('@'..='~').contains(&c)) {
                Some(end) => rest = &body[end + 1..],
                None => rest = "",
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lines of a stored log as HTML, one `<span class="CHANNEL">` per line; stdio lines
/// (`log_type` `s`) start with their channel letter (`o`, `e`, `h`).
pub fn log_html(text: &str, log_type: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut state = Sgr::default();
    for line in text.split_inclusive('\n') {
        let (class, body) = if log_type == "s" {
            let mut chars = line.chars();
            let class = match chars.next() {
                Some('e') => "stderr",
                Some('h') => "header",
                _ => "stdout",
            };
            (class, chars.as_str())
        } else {
            ("stdout", line)
        };
        let _ = write!(out, "<span class=\"{class}\">");
        push_ansi_html(&mut out, body, &mut state);
        out.push_str("</span>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_carry_over_lines_and_reset() {
        let html = log_html("o\x1b[31mred\nored too\x1b[0m plain\n", "s");
        assert_eq!(
            html,
            "<span class=\"stdout\"><span class=\"ansi-fg1\">red\n</span></span>\
             <span class=\"stdout\"><span class=\"ansi-fg1\">red too</span> plain\n</span>"
        );
    }

    #[test]
    fn channels_are_told_apart_and_text_escaped() {
        let html = log_html("hcmd\noout <b>\neerr & more\n", "s");
        assert_eq!(
            html,
            "<span class=\"header\">cmd\n</span><span class=\"stdout\">out &lt;b&gt;\n</span>\
             <span class=\"stderr\">err &amp; more\n</span>"
        );
    }

    #[test]
    fn bold_bright_and_256_colours_become_classes() {
        let mut out = String::new();
        push_ansi_html(
            &mut out,
            "\x1b[1;92mok\x1b[38;5;4mblue\x1b[2K",
            &mut Sgr::default(),
        );
        assert_eq!(
            out,
            "<span class=\"ansi-bold ansi-fg10\">ok</span><span class=\"ansi-bold ansi-fg4\">blue</span>"
        );
    }

    #[test]
    fn plain_text_loses_every_escape_sequence() {
        assert_eq!(
            strip_ansi("\x1b[1;31merror\x1b[0m: \x1b[Kdone"),
            "error: done"
        );
    }
}
