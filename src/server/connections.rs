//! Accepting and serving HTTP/1 connections, with a shutdown that loses no
//! request.
//!
//! Workers share one listening socket, so a connection this worker accepted
//! a moment before SIGTERM may not have sent its request yet. A plain
//! graceful shutdown closes such an "idle" connection at once and the client
//! sees a reset. Here, once stopping begins, the worker accepts no more
//! connections (the others take them from the shared socket), and every
//! connection it already holds is served until its first request is
//! answered, or until [`FIRST_REQUEST_GRACE`] passes without one; only then
//! is it closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How long a stopping worker waits for the first request of a connection
/// it accepted but has not read from.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `stop` fires, then waits for the connections
/// in hand to be served as described above.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
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
        connections.spawn(serve_connection(stream, router.clone(), stop.clone()));
    }
    // The listening socket stays open (systemd and the other workers own it
    // too); this worker only stops taking connections from it.
    connections.close();
    connections.wait().await;
}

async fn serve_connection(stream: TcpStream, router: Router, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let first_request = Arc::new(FirstRequest::default());
    let seen = Arc::clone(&first_request);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        seen.arrived();
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);

    tokio::select! {
        result = connection.as_mut() => return log_connection_end(result),
        _ = stop.cancelled() => {}
    }
    if !first_request.has_arrived() {
        tokio::select! {
            result = connection.as_mut() => return log_connection_end(result),
            _ = first_request.wait() => {}
            _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
        }
    }
    // Finishes a request in progress (answering with `connection: close`),
    // closes an idle keep-alive connection.
    connection.as_mut().graceful_shutdown();
    log_connection_end(connection.await);
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Whether a connection has begun its first request.
#[derive(Default)]
struct FirstRequest {
    arrived: AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn arrived(&self) {
        if !self.arrived.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        if self.has_arrived() {
            return;
        }
        notified.await;
    }
}
