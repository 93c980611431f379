//! A minimal SMTP sink in the bench's own process, so mail figures are the master's cost,
//! not a mail server's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(300);

/// An SMTP server that accepts everything and counts the messages.
pub struct Sink {
    pub port: u16,
    received: Arc<AtomicUsize>,
}

impl Sink {
    pub async fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, counter.clone()));
            }
        });
        Ok(Sink { port, received })
    }

    pub async fn wait_for(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while self.received.load(Ordering::SeqCst) < count {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {count} mails arrived",
                self.received.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// One SMTP session: every command is accepted; a message ends at a lone `.`.
async fn serve(stream: tokio::net::TcpStream, received: Arc<AtomicUsize>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader);
    writer.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" {
                in_data = false;
                received.fetch_add(1, Ordering::SeqCst);
                writer.write_all(b"250 queued\r\n").await?;
            }
            continue;
        }
        let command = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let answer: &[u8] = match &command[..] {
            b"EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
            b"DATA" => {
                in_data = true;
                b"354 go on\r\n"
            }
            b"QUIT" => {
                writer.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 ok\r\n",
        };
        writer.write_all(answer).await?;
    }
}
