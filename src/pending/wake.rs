//! Wake-ups between the worker processes of a host.
//!
//! Each process binds a Unix datagram socket in a shared directory. Whoever
//! adds work sends one byte to every other socket there, so idle workers
//! learn of new work at once, without polling the store. A socket whose
//! process is gone refuses the byte and is removed.
//!
//! The bytes go from a thread of their own, at most one round every
//! [`COALESCE`]: a burst of deliveries is recorded in many small
//! transactions, and a wake-up for each would wake every other worker, on
//! the CPU the burst's answers need, many times over. The other workers
//! wait for new work to stop arriving before they claim (for longer than
//! [`COALESCE`]), so one wake-up at the start of a burst and one at the end
//! of each round tell them all they act on.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Notify;

/// The shortest time between two rounds of wake-ups to the other
/// processes. Shorter than a woken worker's quiet time (5 ms), so that a
/// burst that goes on keeps them waiting for its end.
pub const COALESCE: Duration = Duration::from_millis(3);

pub struct Waker {
    own_path: PathBuf,
    socket: UnixDatagram,
    /// The same socket registered with tokio, made on first use inside the
    /// runtime (the store itself may be built outside one).
    registered: OnceLock<tokio::net::UnixDatagram>,
    /// Wake-ups from this process to itself.
    local: Notify,
    /// Wake-ups owed to the other processes.
    outbox: Arc<Outbox>,
    sender: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutboxState {
    /// Work was added since the last round went out.
    owed: bool,
    /// The waker is being dropped: send what is owed, then end.
    closing: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Waker {
    pub fn bind(directory: &Path, owner: &str) -> io::Result<Waker> {
        std::fs::create_dir_all(directory)?;
        let own_path = directory.join(format!("{owner}.sock"));
        let _ = std::fs::remove_file(&own_path);
        let socket = UnixDatagram::bind(&own_path)?;
        socket.set_nonblocking(true)?;
        let outbox = Arc::new(Outbox::default());
        let others = Others {
            directory: directory.to_owned(),
            own_path: own_path.clone(),
            socket: socket.try_clone()?,
        };
        let sender = std::thread::Builder::new()
            .name("fleet-waker".into())
            .spawn({
                let outbox = Arc::clone(&outbox);
                move || others.send_rounds(&outbox)
            })?;
        Ok(Waker {
            own_path,
            socket,
            registered: OnceLock::new(),
            local: Notify::new(),
            outbox,
            sender: Some(sender),
        })
    }

    /// Wakes this process at once, and every other one sharing the
    /// directory within [`COALESCE`].
    pub fn wake_all(&self) {
        self.local.notify_one();
        let mut state = self.outbox.lock();
        if !state.owed {
            state.owed = true;
            self.outbox.changed.notify_one();
        }
    }

    /// Resolves on the next wake-up, from this process or another.
    pub async fn woken(&self) {
        let Some(socket) = self.registered() else {
            return self.local.notified().await;
        };
        let mut buffer = [0u8; 64];
        tokio::select! {
            _ = self.local.notified() => {}
            _ = socket.recv(&mut buffer) => {
                // Several wake-ups mean the same as one.
                while socket.try_recv(&mut buffer).is_ok() {}
            }
        }
    }

    fn registered(&self) -> Option<&tokio::net::UnixDatagram> {
        if let Some(socket) = self.registered.get() {
            return Some(socket);
        }
        let clone = self.socket.try_clone().ok()?;
        let socket = tokio::net::UnixDatagram::from_std(clone).ok()?;
        Some(self.registered.get_or_init(|| socket))
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.outbox.lock().closing = true;
        self.outbox.changed.notify_one();
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
        let _ = std::fs::remove_file(&self.own_path);
    }
}

/// The other processes' sockets, as the sending thread reaches them.
struct Others {
    directory: PathBuf,
    own_path: PathBuf,
    socket: UnixDatagram,
}

impl Others {
    /// Sends a round of wake-ups whenever one is owed, then lets at least
    /// [`COALESCE`] pass before the next; ends once the waker is dropped,
    /// after sending what it still owed.
    fn send_rounds(&self, outbox: &Outbox) {
        loop {
            {
                let mut state = outbox
                    .changed
                    .wait_while(outbox.lock(), |state| !state.owed && !state.closing)
                    .unwrap_or_else(PoisonError::into_inner);
                if !state.owed {
                    return;
                }
                state.owed = false;
            }
            self.wake_each();
            // Holds the next round back, unless the waker is being dropped.
            let _held_back = outbox
                .changed
                .wait_timeout_while(outbox.lock(), COALESCE, |state| !state.closing)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn wake_each(&self) {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == self.own_path || path.extension().is_none_or(|ext| ext != "sock") {
                continue;
            }
            match self.socket.send_to(&[1], &path) {
                Ok(_) => {}
                // Its receive buffer is full: it has wake-ups waiting anyway.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Nobody listens there any more: the process is gone.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                    ) =>
                {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot wake a worker")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Another process's socket in the wake-up directory.
    struct Peer(UnixDatagram);

    impl Peer {
        fn bind(directory: &Path) -> Peer {
            let socket = UnixDatagram::bind(directory.join("peer.sock")).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Peer(socket)
        }

        /// Waits for the next wake-up; fails after 10 s without one.
        fn next(&self) {
            let mut buffer = [0u8; 8];
            self.0.recv(&mut buffer).expect("a wake-up should arrive");
        }

        /// The wake-ups that arrive within `window`.
        fn count_within(&self, window: Duration) -> usize {
            let mut buffer = [0u8; 8];
            let deadline = Instant::now() + window;
            let mut count = 0;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return count;
                }
                self.0.set_read_timeout(Some(left)).unwrap();
                if self.0.recv(&mut buffer).is_ok() {
                    count += 1;
                }
            }
        }
    }

    fn directory(name: &str) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("wake-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[test]
    fn a_burst_of_additions_wakes_another_process_a_few_times_not_once_each() {
        let directory = directory("burst");
        let peer = Peer::bind(&directory);
        let waker = Waker::bind(&directory, "me").unwrap();
        let started = Instant::now();
        for _ in 0..1000 {
            waker.wake_all();
        }
        let took = started.elapsed();
        peer.next();
        let more = peer.count_within(COALESCE * 5);
        // At most one round per COALESCE while the burst lasted, and the
        // round owed at its end.
        let rounds_allowed = (took.as_micros() / COALESCE.as_micros()) as usize + 2;
        assert!(
            more < rounds_allowed,
            "{} wake-ups for 1000 additions within {took:?}",
            more + 1
        );
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn work_added_while_a_round_is_held_back_is_still_announced() {
        let directory = directory("trailing");
        let peer = Peer::bind(&directory);
        let waker = Waker::bind(&directory, "me").unwrap();
        waker.wake_all();
        peer.next();
        // The first round has gone out: this one waits for the next.
        waker.wake_all();
        peer.next();
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn what_is_owed_at_the_drop_is_sent_before_it_returns() {
        let directory = directory("drop");
        let peer = Peer::bind(&directory);
        let waker = Waker::bind(&directory, "me").unwrap();
        waker.wake_all();
        peer.next();
        waker.wake_all();
        drop(waker);
        peer.0.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 8];
        assert!(
            peer.0.recv(&mut buffer).is_ok(),
            "the wake-up owed went out before the drop returned"
        );
        assert!(
            !directory.join("me.sock").exists(),
            "the socket file is removed"
        );
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn a_process_that_is_gone_has_its_socket_removed() {
        let directory = directory("gone");
        drop(UnixDatagram::bind(directory.join("gone.sock")).unwrap());
        let peer = Peer::bind(&directory);
        let waker = Waker::bind(&directory, "me").unwrap();
        waker.wake_all();
        peer.next();
        // Dropping the waker waits for its round to end.
        drop(waker);
        assert!(!directory.join("gone.sock").exists());
        let _ = std::fs::remove_dir_all(&directory);
    }
}
