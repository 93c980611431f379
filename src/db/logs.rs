//! Log storage: lines in chunks, compressed with zlib like Buildbot's `gz` method.
//!
//! A stdio log's lines each start with their channel (`o` stdout, `e` stderr, `h` header),
//! as in Buildbot; `/contents` shows them, `/raw` strips them.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use sqlx::Row;

use super::{Batch, Db, DbError, DbResult};

/// Chunks up to this size are stored as they are (Buildbot's default `logCompressionLimit`):
/// a compressor clears some 300 KiB of tables before it starts, far more work than the
/// few hundred bytes it would save on a command's header.
const COMPRESS_ABOVE: usize = 4096;

impl Db {
    /// Creates a log of a step; `log_type` is Buildbot's `s`, `t` or `h`.
    pub async fn add_log(
        &self,
        stepid: i64,
        name: &str,
        slug: &str,
        log_type: &str,
    ) -> DbResult<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO logs (name, slug, stepid, complete, num_lines, type) \
             VALUES ($1, $2, $3, 0, 0, $4) RETURNING id",
        )
        .bind(name)
        .bind(slug)
        .bind(stepid)
        .bind(log_type)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Appends complete lines (each ending in '\n') to a log as one chunk. Returns the
    /// log's line count after it.
    pub async fn append_log(&self, logid: i64, lines: &str) -> DbResult<i64> {
        self.write_log(logid, lines, false).await
    }

    /// Appends the last lines (maybe none) and marks the log complete, in one write.
    /// Returns the log's line count.
    pub async fn finish_log(&self, logid: i64, lines: &str) -> DbResult<i64> {
        self.write_log(logid, lines, true).await
    }

    async fn write_log(&self, logid: i64, lines: &str, complete: bool) -> DbResult<i64> {
        let mut batch = Batch::new();
        let index = push_log_write(&mut batch, logid, lines, complete)?;
        let rows = batch.run(self).await?;
        let end: i64 = rows[index]
            .first()
            .ok_or_else(|| DbError::NotFound(format!("log {logid}")))?
            .try_get(0)?;
        Ok(end)
    }

    /// Lines `first..=last` of a log (from 0), each ending in '\n', as stored (with the
    /// channel prefix of stdio logs).
    pub async fn log_lines(&self, logid: i64, first: i64, last: i64) -> DbResult<String> {
        let rows = sqlx::query(
            "SELECT first_line, content, compressed FROM logchunks \
             WHERE logid = $1 AND last_line >= $2 AND first_line <= $3 ORDER BY first_line",
        )
        .bind(logid)
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        let mut text = String::new();
        for row in rows {
            let chunk_first: i64 = row.try_get(0)?;
            let content: Vec<u8> = row.try_get(1)?;
            let chunk = decompress(content, row.try_get(2)?)?;
            for (offset, line) in chunk.split_inclusive('\n').enumerate() {
                let number = chunk_first + offset as i64;
                if (first..=last).contains(&number) {
                    text.push_str(line);
                }
            }
        }
        Ok(text)
    }
}

fn decompress(content: Vec<u8>, method: i64) -> DbResult<String> {
    let bytes = match method {
        0 => content,
        1 => {
            let mut out = Vec::new();
            ZlibDecoder::new(content.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| DbError::Corrupt(format!("a log chunk does not inflate: {e}")))?;
            out
        }
        other => return Err(DbError::Corrupt(format!("unknown log compression {other}"))),
    };
    String::from_utf8(bytes).map_err(|e| DbError::Corrupt(format!("a log chunk is not UTF-8: {e}")))
}

/// Pushes onto `batch` the write of `lines` (complete lines, maybe none) to log `logid`,
/// and with `complete` its end; answers the index of the statement whose row holds the
/// log's line count after it.
pub fn push_log_write(
    batch: &mut Batch,
    logid: i64,
    lines: &str,
    complete: bool,
) -> DbResult<usize> {
    let count = lines.bytes().filter(|&b| b == b'\n').count() as i64;
    if count == 0 {
        let sql = if complete {
            "UPDATE logs SET complete = 1 WHERE id = $1 RETURNING num_lines"
        } else {
            "SELECT num_lines FROM logs WHERE id = $1"
        };
        batch.push(sql, vec![logid.into()]);
        return Ok(batch.len() - 1);
    }
    let (content, compressed) = if lines.len() > COMPRESS_ABOVE {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
        encoder
            .write_all(lines.as_bytes())
            .and_then(|_| encoder.finish())
            .map(|bytes| (bytes, 1i64))
            .map_err(|e| DbError::Corrupt(format!("cannot compress a log chunk: {e}")))?
    } else {
        (lines.as_bytes().to_vec(), 0)
    };
    // Reserving the lines comes first: it takes SQLite's write lock and PostgreSQL's row
    // lock at once, so concurrent appends queue instead of reading the same line count.
    // The chunk then reads where its lines start from the row.
    let reserve = if complete {
        "UPDATE logs SET num_lines = num_lines + $1, complete = 1 WHERE id = $2 \
         RETURNING num_lines"
    } else {
        "UPDATE logs SET num_lines = num_lines + $1 WHERE id = $2 RETURNING num_lines"
    };
    batch.push(reserve, vec![count.into(), logid.into()]).push(
        "INSERT INTO logchunks (logid, first_line, last_line, content, compressed) \
             SELECT id, num_lines - $2, num_lines - 1, $3, $4 FROM logs WHERE id = $1",
        vec![
            logid.into(),
            count.into(),
            content.into(),
            compressed.into(),
        ],
    );
    Ok(batch.len() - 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_come_back_across_chunks_compressed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let logid = db.add_log(1, "stdio", "stdio", "s").await.unwrap();
        db.append_log(logid, "hecho hi\n").await.unwrap();
        let long: String = (0..1000).map(|i| format!("oline {i}\n")).collect();
        db.append_log(logid, &long).await.unwrap();
        assert_eq!(db.log_lines(logid, 0, 0).await.unwrap(), "hecho hi\n");
        assert_eq!(
            db.log_lines(logid, 1, 2).await.unwrap(),
            "oline 0\noline 1\n"
        );
        assert_eq!(
            db.log_lines(logid, 1000, 2000).await.unwrap(),
            "oline 999\n"
        );
        let compressed: i64 = sqlx::query_scalar("SELECT MAX(compressed) FROM logchunks")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(compressed, 1);
    }
}
