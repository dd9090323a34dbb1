//! Wake-ups between the worker processes of a host.
//!
//! Each process binds a Unix datagram socket in a shared directory. Whoever
//! adds work sends one byte to every other socket there, so idle workers
//! learn of new work at once, without polling the store. A socket whose
//! process is gone refuses the byte and is removed.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::sync::Notify;

pub struct Waker {
    directory: PathBuf,
    own_path: PathBuf,
    socket: UnixDatagram,
    /// The same socket registered with tokio, made on first use inside the
    /// runtime (the store itself may be built outside one).
    registered: OnceLock<tokio::net::UnixDatagram>,
    /// Wake-ups from this process to itself.
    local: Notify,
}

impl Waker {
    pub fn bind(directory: &Path, owner: &str) -> io::Result<Waker> {
        std::fs::create_dir_all(directory)?;
        let own_path = directory.join(format!("{owner}.sock"));
        let _ = std::fs::remove_file(&own_path);
        let socket = UnixDatagram::bind(&own_path)?;
        socket.set_nonblocking(true)?;
        Ok(Waker {
            directory: directory.to_owned(),
            own_path,
            socket,
            registered: OnceLock::new(),
            local: Notify::new(),
        })
    }

    /// Wakes this process and every other one sharing the directory.
    pub fn wake_all(&self) {
        self.local.notify_one();
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
        let _ = std::fs::remove_file(&self.own_path);
    }
}
