//! [`SharedListener`]: takes connections from the listening socket the
//! fleet shares, waking one worker per connection instead of all of them.
//!
//! Every worker of a host accepts from the one socket `bot.socket` owns.
//! Were each to wait for it in its runtime's epoll, every connection would
//! wake all the workers and all but one would find nothing to accept: with
//! four workers, three wasted wake-ups per delivery, on the cores that the
//! answers need. So each worker waits for the socket on a thread of its
//! own, in an epoll instance on which the socket is registered with
//! `EPOLLEXCLUSIVE` (Linux 4.5 and later): the kernel wakes one waiting
//! worker per connection, and passes over the workers that are not waiting
//! (busy accepting, or at their connection cap).
//!
//! The same epoll instance waits on an eventfd, so that [`Interrupt::raise`]
//! wakes the thread at once: a stopping worker leaves new connections in
//! the socket's backlog for the others.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Tags of the two files the epoll instance waits on.
const LISTENER: u64 = 0;
const INTERRUPT: u64 = 1;

/// A listening socket, possibly shared with other processes, accepted
/// from by one blocking thread.
pub struct SharedListener {
    listener: TcpListener,
    epoll: OwnedFd,
    interrupt: Arc<Interrupt>,
}

/// Stops a [`SharedListener`]'s accepting, from any thread.
pub struct Interrupt {
    eventfd: OwnedFd,
    raised: AtomicBool,
}

impl SharedListener {
    /// Takes `listener`, which must be in non-blocking mode (as systemd's
    /// socket is for every worker, and as tokio leaves a listener it gives
    /// back): the mode belongs to the socket, which all workers share.
    pub fn new(listener: TcpListener) -> io::Result<SharedListener> {
        // SAFETY: epoll_create1 and eventfd take no pointers; each returned
        // descriptor is new and owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let eventfd = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        register(&epoll, eventfd.as_raw_fd(), libc::EPOLLIN, INTERRUPT)?;
        let exclusive = libc::EPOLLIN | libc::EPOLLEXCLUSIVE;
        if let Err(error) = register(&epoll, listener.as_raw_fd(), exclusive, LISTENER) {
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(error);
            }
            // A kernel without EPOLLEXCLUSIVE: every worker wakes, one
            // accepts.
            register(&epoll, listener.as_raw_fd(), libc::EPOLLIN, LISTENER)?;
        }
        Ok(SharedListener {
            listener,
            epoll,
            interrupt: Arc::new(Interrupt {
                eventfd,
                raised: AtomicBool::new(false),
            }),
        })
    }

    /// What stops [`SharedListener::accept`].
    pub fn interrupt(&self) -> Arc<Interrupt> {
        Arc::clone(&self.interrupt)
    }

    /// Blocks until a connection is accepted, or returns `None` once the
    /// interrupt is raised or `stopped` says so (checked before every
    /// accept; only the interrupt wakes a waiting thread). The connection is
    /// in blocking mode.
    pub fn accept(&self, stopped: impl Fn() -> bool) -> io::Result<Option<TcpStream>> {
        loop {
            if self.interrupt.is_raised() || stopped() {
                return Ok(None);
            }
            match self.listener.accept() {
                Ok((stream, _peer)) => return Ok(Some(stream)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // The peer gave up before it was accepted: take the next.
                Err(error) if error.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(error) => return Err(error),
            }
            self.wait()?;
        }
    }

    /// Sleeps for `pause` (after a failed accept) unless the interrupt is
    /// raised first.
    pub fn pause(&self, pause: Duration) {
        let mut interrupt = libc::pollfd {
            fd: self.interrupt.eventfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = i32::try_from(pause.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, and its count. An error (EINTR) only
        // shortens the pause.
        unsafe { libc::poll(&mut interrupt, 1, timeout) };
    }

    /// Waits for a connection or the interrupt.
    fn wait(&self) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        loop {
            // SAFETY: `events` is valid for the count given.
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    -1,
                )
            };
            match cvt(ready) {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl Interrupt {
    /// Wakes the accepting thread and makes every later `accept` return
    /// `None`.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer. The counter never
        // overflows (it is never read, and each raise adds one), and a
        // failed write leaves the flag, which `accept` checks first.
        unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }
}

/// Adds `fd` to `epoll`, level-triggered: a connection left in the backlog
/// wakes the next wait again.
fn register(epoll: &OwnedFd, fd: RawFd, events: i32, tag: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: events as u32,
        u64: tag,
    };
    // SAFETY: both descriptors are open; `event` outlives the call.
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) })
        .map(drop)
}

fn cvt(result: i32) -> io::Result<i32> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    /// Accepts on its own thread until interrupted, sending `tag` for every
    /// connection (kept open) on `accepted`. Returns the thread and its id.
    fn accept_on_a_thread(
        listener: Arc<SharedListener>,
        tag: usize,
        accepted: mpsc::Sender<(usize, TcpStream)>,
    ) -> (thread::JoinHandle<()>, libc::pid_t) {
        let (id_sender, id) = mpsc::channel();
        let thread = thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            id_sender.send(unsafe { libc::gettid() }).unwrap();
            while let Some(stream) = listener.accept(|| false).expect("accept") {
                if accepted.send((tag, stream)).is_err() {
                    return;
                }
            }
        });
        (thread, id.recv().unwrap())
    }

    /// How many times a thread of this process went to sleep: once per
    /// wake-up, for a thread that only waits for connections.
    fn sleeps(thread: libc::pid_t) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/self/task/{thread}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("voluntary_ctxt_switches in /proc")
    }

    fn shared_pair() -> (
        Arc<SharedListener>,
        Arc<SharedListener>,
        std::net::SocketAddr,
    ) {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let address = socket.local_addr().unwrap();
        // Like the workers of a fleet: two descriptors of one socket.
        let other = socket.try_clone().unwrap();
        (
            Arc::new(SharedListener::new(socket).unwrap()),
            Arc::new(SharedListener::new(other).unwrap()),
            address,
        )
    }

    #[test]
    fn each_connection_wakes_one_of_the_workers_waiting_on_a_shared_socket() {
        let (first, second, address) = shared_pair();
        let (sender, accepted) = mpsc::channel();
        let (first_thread, first_id) = accept_on_a_thread(Arc::clone(&first), 0, sender.clone());
        let (second_thread, second_id) = accept_on_a_thread(Arc::clone(&second), 1, sender);
        let before = sleeps(first_id) + sleeps(second_id);
        const CONNECTIONS: u64 = 60;
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            let client = std::net::TcpStream::connect(address).unwrap();
            held.push((client, accepted.recv().unwrap()));
        }
        // One wake-up per connection (plus each thread's first wait); were
        // both woken for every connection, nearly twice as many.
        let wakes = sleeps(first_id) + sleeps(second_id) - before;
        assert!(
            wakes <= CONNECTIONS * 5 / 4,
            "{wakes} wake-ups for {CONNECTIONS} connections"
        );
        first.interrupt().raise();
        second.interrupt().raise();
        first_thread.join().unwrap();
        second_thread.join().unwrap();
    }

    #[test]
    fn an_interrupted_listener_leaves_new_connections_to_the_others() {
        let (stopping, staying, address) = shared_pair();
        let (sender, accepted) = mpsc::channel();
        let (waiting, _) = accept_on_a_thread(Arc::clone(&stopping), 0, sender.clone());
        // Interrupted while it waits: the thread ends without a connection.
        stopping.interrupt().raise();
        waiting.join().unwrap();
        assert!(accepted.try_recv().is_err());

        // A connection waits: neither an interrupted listener nor one told
        // to stop takes it.
        let _client = std::net::TcpStream::connect(address).unwrap();
        assert_eq!(stopping.accept(|| false).unwrap().map(|_| ()), None);
        assert_eq!(staying.accept(|| true).unwrap().map(|_| ()), None);
        let (peer, _) = accept_on_a_thread(Arc::clone(&staying), 1, sender);
        let (tag, _stream) = accepted.recv().unwrap();
        assert_eq!(tag, 1, "the connection went to the worker still accepting");
        staying.interrupt().raise();
        peer.join().unwrap();
    }

    #[test]
    fn a_pause_ends_early_when_interrupted() {
        let (listener, _other, _address) = shared_pair();
        listener.interrupt().raise();
        let started = std::time::Instant::now();
        listener.pause(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
