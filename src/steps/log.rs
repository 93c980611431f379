//! Writing a step's log while the step runs: lines are buffered a little and stored in
//! chunks, so a chatty process costs a few database writes a second, not one per line.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::data::{announce_with, Resource};
use crate::db::DbResult;
use crate::runtime::Context;

/// Flush when this much text is buffered ...
const FLUSH_BYTES: usize = 64 * 1024;
/// ... or when the oldest buffered line is this old.
const FLUSH_AFTER: Duration = Duration::from_millis(200);

/// One log of a running step.
pub struct LogWriter {
    ctx: Context,
    pub logid: i64,
    stepid: i64,
    name: String,
    slug: String,
    num_lines: i64,
    /// Buildbot's type: `s` (stdio, each line prefixed by its channel) or `t`.
    stdio: bool,
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
            logid,
            stepid,
            name: name.to_string(),
            slug,
            num_lines: 0,
            stdio,
            buffer: String::new(),
            oldest: None,
        };
        writer.announce("new", false);
        writer
    }

    /// Adds one line (without its newline) on a stdio channel: `o`, `e` or `h`; the channel
    /// is ignored for text logs.
    pub async fn line(&mut self, channel: char, line: &str) -> DbResult<()> {
        if self.stdio {
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
        self.num_lines = self.ctx.db.append_log(self.logid, &lines).await?;
        self.announce("append", false);
        Ok(())
    }

    /// Stores what is buffered and marks the log complete, in one write; a last chunk is
    /// announced as `append` before `finished`, as a flush would have.
    pub async fn finish(mut self) -> DbResult<()> {
        let lines = std::mem::take(&mut self.buffer);
        self.num_lines = self.ctx.db.finish_log(self.logid, &lines).await?;
        if !lines.is_empty() {
            self.announce("append", false);
        }
        self.announce("finished", true);
        Ok(())
    }

    /// Publishes the log as it now is. The writer knows its row, so nothing is read back.
    fn announce(&self, event: &str, complete: bool) {
        let message = || {
            Ok(json!({
                "logid": self.logid,
                "name": self.name,
                "slug": self.slug,
                "stepid": self.stepid,
                "complete": complete,
                "num_lines": self.num_lines,
                "type": if self.stdio { "s" } else { "t" },
            }))
        };
        // Making the message cannot fail.
        let _ = announce_with(&self.ctx.bus, Resource::Log(self.logid), event, message);
    }
}
