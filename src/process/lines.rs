//! Splitting one output channel's bytes into the lines a log stores.

use memchr::memchr2;

/// The longest line kept whole; longer ones are cut, so output without newlines cannot grow
/// a line without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Turns the chunks of one channel (stdout, stderr, a log file) into complete lines.
///
/// A line ends at `\n`, `\r\n`, or a lone `\r` (how progress bars redraw; Buildbot's
/// `LineBoundaryFinder` splits there too). The last, unfinished line waits for more data or
/// [`LineBuffer::flush`]. Invalid UTF-8 becomes U+FFFD. A line longer than the cap comes out
/// in cap-sized pieces, cut between characters.
#[derive(Debug)]
pub struct LineBuffer {
    partial: Vec<u8>,
    max_line: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    /// A buffer cutting lines at [`MAX_LINE_BYTES`].
    pub fn new() -> Self {
        Self::with_max_line(MAX_LINE_BYTES)
    }

    /// A buffer cutting lines at `max_line` bytes (at least 4, one UTF-8 character).
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_line: max_line.max(4),
        }
    }

    /// Adds a chunk; returns the lines it completed, without their line endings.
    pub fn push(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = data;
        // A `\r` ending the previous chunk waited to see whether `\n` follows.
        if self.partial.last() == Some(&b'\r') && !rest.is_empty() {
            self.partial.pop();
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.finish_line(&[], &mut lines);
        }
        while let Some(end) = memchr2(b'\n', b'\r', rest) {
            let ending = match (rest[end], rest.get(end + 1)) {
                (b'\r', None) => break,
                (b'\r', Some(b'\n')) => 2,
                _ => 1,
            };
            self.finish_line(&rest[..end], &mut lines);
            rest = &rest[end + ending..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() > self.max_line {
            let cut = char_boundary(&self.partial, self.max_line);
            lines.push(String::from_utf8_lossy(&self.partial[..cut]).into_owned());
            self.partial.drain(..cut);
        }
        lines
    }

    /// Ends the stream: returns the unfinished last line, if any.
    pub fn flush(&mut self) -> Option<String> {
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        } else if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(line)
    }

    /// Completes the pending partial line with `tail` and emits it, cut to the cap.
    fn finish_line(&mut self, tail: &[u8], lines: &mut Vec<String>) {
        if self.partial.is_empty() {
            push_capped(tail, self.max_line, lines);
        } else {
            self.partial.extend_from_slice(tail);
            push_capped(&self.partial, self.max_line, lines);
            self.partial.clear();
        }
    }
}

fn push_capped(mut line: &[u8], max_line: usize, lines: &mut Vec<String>) {
    while line.len() > max_line {
        let cut = char_boundary(line, max_line);
        lines.push(String::from_utf8_lossy(&line[..cut]).into_owned());
        line = &line[cut..];
    }
    lines.push(String::from_utf8_lossy(line).into_owned());
}

/// The cut point at or up to three bytes before `max`, so a UTF-8 character stays whole.
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |i: usize| bytes.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&cut| cut > 0 && !is_continuation(cut))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max_line: usize) -> Vec<String> {
        let mut buffer = LineBuffer::with_max_line(max_line);
        let mut lines: Vec<String> = chunks.iter().flat_map(|c| buffer.push(c)).collect();
        lines.extend(buffer.flush());
        lines
    }

    #[test]
    fn line_endings() {
        assert_eq!(split(&[b"a\nb\r\nc\rd"], 100), ["a", "b", "c", "d"]);
        assert_eq!(split(&[b"a\r", b"\nb\r", b"c\r"], 100), ["a", "b", "c"]);
        assert_eq!(split(&[b"", b"\n\n"], 100), ["", ""]);
    }

    #[test]
    fn partial_lines_wait_for_more() {
        let mut buffer = LineBuffer::new();
        assert!(buffer.push(b"hel").is_empty());
        assert_eq!(buffer.push(b"lo\nwor"), ["hello"]);
        assert!(buffer.push(b"ld\r").is_empty());
        assert_eq!(buffer.flush().as_deref(), Some("world"));
        assert_eq!(buffer.flush(), None);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            split(&[b"ok \xff\xfe end\n"], 100),
            ["ok \u{fffd}\u{fffd} end"]
        );
    }

    #[test]
    fn long_lines_are_cut_between_characters() {
        assert_eq!(split(&[b"abcdefghij\n"], 4), ["abcd", "efgh", "ij"]);
        assert_eq!(split(&[b"abc", b"defgh", b"ij"], 4), ["abcd", "efgh", "ij"]);
        // "é" is two bytes: the cut moves back rather than split it
        assert_eq!(split(&["abcéd\n".as_bytes()], 4), ["abc", "éd"]);
    }
}
