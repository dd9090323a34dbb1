//! Accepting and serving HTTP/1 connections: bounded, so that no sender can
//! take a worker down, and with a stop that loses no request yet waits for
//! no sender.
//!
//! The webhook port faces the internet. Every connection holds a task, a
//! file descriptor and a read buffer, so each one is bounded:
//!
//! - at most [`ServerLimits::max_connections`] at once: past it the worker
//!   stops accepting, and the other workers of the fleet take the
//!   connections from the shared socket (or they wait in its backlog);
//! - a whole request, headers and body, must arrive within
//!   [`ServerLimits::receive_timeout`] of its first byte (of the accept, for
//!   a connection's first request): the webhook handler answers 408 when a
//!   body is late, a connection whose headers are late is closed;
//! - an idle keep-alive connection is closed after
//!   [`ServerLimits::keep_alive_timeout`];
//! - the read buffer of a connection is at most [`MAX_READ_BUFFER`] bytes
//!   (the body budget in `webhook.rs` bounds the bodies).
//!
//! Workers share one listening socket, so a connection this worker accepted
//! a moment before SIGTERM may not have sent its request yet. Once stopping
//! begins, the worker accepts no more connections, and every connection it
//! holds gets [`STOP_GRACE`] to deliver its request; a request being handled
//! then (its body is in) is still answered, everything else is closed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::config::ServerLimits;
use crate::webhook::{Refused, RejectionLog};

/// How long a stopping worker gives the connections it holds to deliver
/// their request.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a stopping worker waits, after [`STOP_GRACE`], for handlers
/// that are recording a request whose body is in (a store lock wait).
pub const HANDLER_PATIENCE: Duration = Duration::from_secs(5);

/// The most a connection buffers before its bytes are handed on: headers
/// must fit (GitHub's are about 1 KiB; Node's limit is 16 KiB).
pub const MAX_READ_BUFFER: usize = 16 * 1024;

/// Time a handler has, past the receive deadline, to answer 408 itself
/// before the connection is closed without an answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// File descriptors kept for the worker's own work beside its connections:
/// GitHub connections (one per installation being written), the store and
/// its wake sockets, the journal, the runtime.
pub const RESERVED_FILES: u64 = 512;

/// The instant by which a request's body must have arrived, set on every
/// request by the connection that reads it.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveDeadline(pub Instant);

/// Accepts connections until `stop` fires, then gives the connections in
/// hand their grace as described above and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    rejections: Arc<RejectionLog>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Full: leave new connections in the shared socket's backlog
                // for the other workers until one of ours closes.
                rejections.refused(Refused::ConnectionCap, None);
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = stop.cancelled() => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly
                    // rather than spin; the other workers keep accepting.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let connection = Connection {
            router: router.clone(),
            limits,
            rejections: Arc::clone(&rejections),
            stop: stop.clone(),
            _slot: slot,
        };
        connections.spawn(connection.serve(stream));
    }
    // The listening socket stays open (systemd and the other workers own it
    // too); this worker only stops taking connections from it.
    connections.close();
    connections.wait().await;
}

/// Raises the soft limit of open files to the hard limit, and checks that
/// `max_connections` leaves [`RESERVED_FILES`] for the worker's own work.
/// Returns the limit in force.
pub fn reserve_open_files(max_connections: usize) -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(format!(
                "cannot read the open files limit: {}",
                io::Error::last_os_error()
            ));
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let needed = max_connections as u64 + RESERVED_FILES;
    if needed > limit.rlim_cur {
        return Err(format!(
            "{max_connections} connections and {RESERVED_FILES} files for GitHub and the store \
             need {needed} open files, but the limit is {} (raise LimitNOFILE= or lower \
             MAX_CONNECTIONS)",
            limit.rlim_cur
        ));
    }
    Ok(limit.rlim_cur)
}

/// One accepted connection and what it needs to be served.
struct Connection {
    router: Router,
    limits: ServerLimits,
    rejections: Arc<RejectionLog>,
    stop: CancellationToken,
    /// Returned to the accept loop when the connection closes.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let progress = Arc::new(Progress::new());
        let io = Watched {
            stream,
            progress: Arc::clone(&progress),
        };
        let service = {
            let progress = Arc::clone(&progress);
            let router = self.router.clone();
            let receive_timeout = self.limits.receive_timeout;
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let started = progress.request_began();
                let (mut parts, body) = request.into_parts();
                parts
                    .extensions
                    .insert(ReceiveDeadline(started + receive_timeout));
                if body.is_end_stream() {
                    progress.body_done();
                }
                let body = Tracked {
                    inner: body,
                    progress: Arc::clone(&progress),
                };
                let request = Request::from_parts(parts, axum::body::Body::new(body));
                let progress = Arc::clone(&progress);
                let answer = router.clone().oneshot(request);
                async move {
                    let response = answer.await;
                    progress.answered();
                    response
                }
            })
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // A backstop only: the deadlines below are shorter.
            .header_read_timeout(self.limits.receive_timeout + ANSWER_MARGIN)
            .max_buf_size(MAX_READ_BUFFER)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);

        let mut grace_end: Option<Instant> = None;
        let mut closing = false;
        loop {
            let (phase, since) = progress.now();
            if grace_end.is_some()
                && !closing
                && matches!(phase, Phase::Idle | Phase::ReadingBody | Phase::Handling)
            {
                // Answers the request in hand with `connection: close`, or
                // closes an idle keep-alive connection at once.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            let deadline = self.deadline(phase, since, grace_end);
            let changed = progress.changed.notified();
            tokio::select! {
                result = connection.as_mut() => return log_connection_end(result),
                _ = changed => continue,
                _ = self.stop.cancelled(), if grace_end.is_none() => {
                    grace_end = Some(Instant::now() + STOP_GRACE);
                    continue;
                }
                _ = sleep_until(deadline) => {}
            }
            // The deadline passed: close without waiting for the sender.
            let stopping = grace_end.is_some_and(|end| Instant::now() >= end);
            match phase {
                Phase::Idle => {}
                _ if stopping => tracing::debug!(?phase, "stopping: connection closed"),
                Phase::Fresh | Phase::Receiving | Phase::ReadingBody => {
                    self.rejections.refused(Refused::ReceiveTimeout, None)
                }
                Phase::Handling => {
                    tracing::warn!("a request was still being handled at the deadline")
                }
            }
            return;
        }
    }

    /// When the connection is closed in `phase`, entered at `since`.
    fn deadline(
        &self,
        phase: Phase,
        since: Instant,
        grace_end: Option<Instant>,
    ) -> Option<Instant> {
        let receive = since + self.limits.receive_timeout;
        let own = match phase {
            Phase::Fresh | Phase::Receiving => Some(receive),
            Phase::ReadingBody => Some(receive + ANSWER_MARGIN),
            Phase::Handling => None,
            Phase::Idle => Some(since + self.limits.keep_alive_timeout),
        };
        match (grace_end, phase) {
            (None, _) => own,
            (Some(end), Phase::Handling) => Some(end + HANDLER_PATIENCE),
            (Some(end), _) => Some(own.map_or(end, |own| own.min(end))),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Where a connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing read yet. Its first request counts from the accept.
    Fresh,
    /// The first bytes of a request are in; its headers are not complete.
    Receiving,
    /// Headers complete, the body is being read.
    ReadingBody,
    /// The body is in; the handler works on the answer.
    Handling,
    /// Answered; waiting for another request on the same connection.
    Idle,
}

/// A connection's phase and when it began, shared by the socket wrapper,
/// the service and the task that serves the connection.
struct Progress {
    state: Mutex<(Phase, Instant)>,
    /// Wakes the serving task on every change of phase.
    changed: Notify,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            state: Mutex::new((Phase::Fresh, Instant::now())),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> (Phase, Instant) {
        *self.state.lock().expect("progress lock")
    }

    fn update(&self, change: impl FnOnce(&mut (Phase, Instant)) -> bool) {
        let changed = change(&mut self.state.lock().expect("progress lock"));
        if changed {
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: a new request begins if none was under way.
    fn bytes_read(&self) {
        self.update(|state| match state.0 {
            // The first request keeps counting from the accept.
            Phase::Fresh => {
                state.0 = Phase::Receiving;
                true
            }
            Phase::Idle => {
                *state = (Phase::Receiving, Instant::now());
                true
            }
            _ => false,
        });
    }

    /// The headers are complete; returns when the request began.
    fn request_began(&self) -> Instant {
        let mut began = Instant::now();
        self.update(|state| {
            // (Only when the socket saw no byte of it, which hyper rules out.)
            if state.0 == Phase::Idle {
                state.1 = Instant::now();
            }
            began = state.1;
            state.0 = Phase::ReadingBody;
            true
        });
        began
    }

    fn body_done(&self) {
        self.update(|state| {
            let reading = state.0 == Phase::ReadingBody;
            if reading {
                state.0 = Phase::Handling;
            }
            reading
        });
    }

    fn answered(&self) {
        self.update(|state| {
            *state = (Phase::Idle, Instant::now());
            true
        });
    }
}

/// The socket, noting when a new request's first bytes arrive.
struct Watched {
    stream: TcpStream,
    progress: Arc<Progress>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A request body, noting when its last byte arrives.
struct Tracked {
    inner: Incoming,
    progress: Arc<Progress>,
}

impl hyper::body::Body for Tracked {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.progress.body_done();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_cap_beyond_the_open_files_limit_is_refused() {
        let limit = reserve_open_files(1).expect("one connection fits");
        assert!(limit > RESERVED_FILES);
        let error = reserve_open_files(limit as usize).unwrap_err();
        assert!(
            error.contains("LimitNOFILE") && error.contains("MAX_CONNECTIONS"),
            "{error}"
        );
    }
}
