//! A worker's socket that acknowledges what it reads at once.
//!
//! buildbot-worker 4.3 leaves Nagle's algorithm on: autobahn asks for `TCP_NODELAY` before
//! its options are set, and the error is swallowed. So a frame the worker sends while an
//! earlier one is unacknowledged waits for that acknowledgement, and Linux delays it up to
//! 40 ms when the master has nothing to send back (after the response to `start_command`,
//! for instance). Every command's `update` and `complete` then waited about that long.
//! Re-arming `TCP_QUICKACK` after each read sends the acknowledgement right away; the
//! kernel leaves quick-ack mode by itself, hence once per read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A `TcpStream` that sends its ACKs as soon as it has read.
pub struct QuickAck(TcpStream);

impl QuickAck {
    pub fn new(stream: TcpStream) -> QuickAck {
        QuickAck(stream)
    }

    #[cfg(target_os = "linux")]
    fn acknowledge_now(&self) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is this stream's, open while `self` lives, and the option
        // value is a c_int of the size passed.
        let failed = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of_val(&on) as libc::socklen_t,
            )
        } != 0;
        if failed {
            // Only slower: the next frames may wait for a delayed ACK.
            tracing::debug!(
                "cannot set TCP_QUICKACK on a worker's socket: {}",
                io::Error::last_os_error()
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn acknowledge_now(&self) {}
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.acknowledge_now();
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
