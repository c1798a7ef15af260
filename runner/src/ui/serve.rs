//! The page server's connections: at most `MAX_CONNECTIONS` at once, each closed when its
//! client takes longer than `HEADER_TIMEOUT` to send a request (also between requests) or
//! reads nothing of an answer for `WRITE_STALL`. Without these, clients that connect and send
//! nothing, or never read a download, held a file descriptor and memory each for ever, until
//! the run itself could not open its outputs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Connections served at once; a client past them waits in the kernel's queue until one
/// ends (a page holds two or three: its event stream and a request or two).
pub(super) const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's headers, counted from the connection's
/// start or the end of its last answer.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an answer may wait for its client to read before the connection is closed.
pub(super) const WRITE_STALL: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until the runtime stops.
pub(super) async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: the run's own files come first; try later.
                tracing::debug!("the live page could not accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(Stalling::new(stream, WRITE_STALL)), service);
            if let Err(e) = connection.await {
                tracing::debug!("a live page connection ended: {e}");
            }
            drop(slot);
        });
    }
}

/// A stream whose writes fail once they have waited `limit` for the other side to read.
struct Stalling<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Stalling<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Stalling {
            inner,
            limit,
            deadline: None,
        }
    }

    /// `poll` of a write or flush, with the deadline armed while it waits.
    fn waited<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalling<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalling<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.waited(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.waited(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.waited(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_that_waits_past_the_limit_fails_and_one_that_goes_on_does_not() {
        // A pipe whose reader never reads: its buffer fills, then writes wait until the limit.
        let (near, _far) = tokio::io::duplex(64);
        let mut stalling = Stalling::new(near, Duration::from_millis(100));
        stalling.write_all(&[0; 64]).await.unwrap();
        let err = stalling.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

        // A reader that reads in time: the deadline is disarmed after each write.
        let (near, mut far) = tokio::io::duplex(64);
        let mut moving = Stalling::new(near, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut sink)
                .await
                .unwrap();
            sink.len()
        });
        for _ in 0..10 {
            moving.write_all(&[1; 64]).await.unwrap();
        }
        drop(moving);
        assert_eq!(reader.await.unwrap(), 640);
    }
}
