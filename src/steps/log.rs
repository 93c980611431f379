//! Writing a step's log while the step runs: lines are buffered a little and stored in
//! chunks, so a chatty process costs a few database writes a second, not one per line.

use std::time::{Duration, Instant};

use crate::data::builds::{LogEnd, LogHead};
use crate::db::DbResult;
use crate::runtime::Context;

/// Flush when this much text is buffered ...
const FLUSH_BYTES: usize = 64 * 1024;
/// ... or when the oldest buffered line is this old.
const FLUSH_AFTER: Duration = Duration::from_millis(200);

/// One log of a running step.
pub struct LogWriter {
    ctx: Context,
    head: LogHead,
    num_lines: i64,
    buffer: String,
    oldest: Option<Instant>,
}

impl LogWriter {
    pub async fn create(
        ctx: &Context,
        stepid: i64,
        name: &str,
        stdio: bool,
    ) -> DbResult<LogWriter> {
        let slug = crate::model::LogInfo::slug_of(name);
        let logid = ctx
            .db
            .add_log(stepid, name, &slug, if stdio { "s" } else { "t" })
            .await?;
        Ok(LogWriter::opened(ctx, stepid, name, slug, logid, stdio))
    }

    /// A stdio log stored already (with its step, [`crate::data::builds::AddedStep`]):
    /// announced `new` now, as the step opens it.
    pub fn stored(ctx: &Context, stepid: i64, name: &str, logid: i64) -> LogWriter {
        let slug = crate::model::LogInfo::slug_of(name);
        LogWriter::opened(ctx, stepid, name, slug, logid, true)
    }

    /// The writer of stored log `logid`, announced `new`.
    fn opened(
        ctx: &Context,
        stepid: i64,
        name: &str,
        slug: String,
        logid: i64,
        stdio: bool,
    ) -> LogWriter {
        let writer = LogWriter {
            ctx: ctx.clone(),
            head: LogHead {
                logid,
                stepid,
                name: name.to_string(),
                slug,
                stdio,
            },
            num_lines: 0,
            buffer: String::new(),
            oldest: None,
        };
        writer.announce("new", false);
        writer
    }

    /// Adds one line (without its newline) on a stdio channel: `o`, `e` or `h`; the channel
    /// is ignored for text logs.
    pub async fn line(&mut self, channel: char, line: &str) -> DbResult<()> {
        if self.head.stdio {
            self.buffer.push(channel);
        }
        self.buffer.push_str(line);
        self.buffer.push('\n');
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        if self.buffer.len() >= FLUSH_BYTES || oldest.elapsed() >= FLUSH_AFTER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Adds text that may hold several lines.
    pub async fn text(&mut self, channel: char, text: &str) -> DbResult<()> {
        for line in text.lines() {
            self.line(channel, line).await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> DbResult<()> {
        self.oldest = None;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.buffer);
        self.num_lines = self.ctx.db.append_log(self.head.logid, &lines).await?;
        self.announce("append", false);
        Ok(())
    }

    /// Stores what is buffered and marks the log complete, in one write; a last chunk is
    /// announced as `append` before `finished`, as a flush would have.
    pub async fn finish(mut self) -> DbResult<()> {
        let lines = std::mem::take(&mut self.buffer);
        self.num_lines = self.ctx.db.finish_log(self.head.logid, &lines).await?;
        if !lines.is_empty() {
            self.announce("append", false);
        }
        self.announce("finished", true);
        Ok(())
    }

    /// What is buffered and the log's end, left for the step's end to store in its round
    /// trip, which announces them.
    pub fn end(mut self) -> LogEnd {
        LogEnd {
            lines: std::mem::take(&mut self.buffer),
            head: self.head,
        }
    }

    /// Publishes the log as it now is. The writer knows its row, so nothing is read back.
    fn announce(&self, event: &str, complete: bool) {
        self.head
            .announce(&self.ctx.bus, event, complete, self.num_lines);
    }
}
