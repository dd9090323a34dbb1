//! Copying the SQLite store's write-ahead log back into the database, on a
//! thread and connection of its own.
//!
//! SQLite checkpoints by default inside the commit that takes the log past
//! 1,000 pages: that commit copies the log into the database and syncs
//! both files (milliseconds on a virtual disk), and every delivery waiting
//! for the store thread waits with it. Here the store's connection leaves
//! checkpoints to the [`Checkpointer`], which runs a passive checkpoint
//! (one that waits for no reader and no writer, and that writers do not
//! wait for) every [`CHECKPOINT_INTERVAL`]. A checkpoint with nothing new
//! in the log does nothing and syncs nothing, so an idle store costs one
//! after each heartbeat; the commit after a whole checkpoint starts the
//! log again and syncs its header (under a millisecond here), as SQLite
//! does on every restart of the log. The log then stays at what is
//! written between two checkpoints. It starts again only when a commit
//! finds it all copied, which commits that follow each other without a
//! pause (thousands a second, under sustained load) never do: such a log,
//! like one whose checkpointer keeps failing, grows to
//! [`COMMIT_CHECKPOINT_PAGES`], and the commit that passes it checkpoints
//! in line as SQLite always did, so the disk it takes stays bounded.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the log is checkpointed while it has pages to copy.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// The log size, in pages (4 KiB each), past which a commit on the store's
/// own connection checkpoints after all: about 40 MB.
pub const COMMIT_CHECKPOINT_PAGES: u32 = 10_000;

/// What a passive checkpoint found: pages in the log, and how many of them
/// are in the database now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub log_pages: i64,
    pub copied_pages: i64,
}

impl Checkpoint {
    /// Every page of the log is in the database: the next writer starts
    /// the log from its beginning again.
    pub fn is_complete(&self) -> bool {
        self.copied_pages >= self.log_pages
    }
}

/// Runs a passive checkpoint on `connection`. `None` when another
/// connection was checkpointing at that moment (its checkpoint does the
/// work).
pub fn checkpoint(connection: &Connection) -> rusqlite::Result<Option<Checkpoint>> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        let done = Checkpoint {
            log_pages: row.get(1)?,
            copied_pages: row.get(2)?,
        };
        Ok((busy == 0).then_some(done))
    })
}

/// The thread that checkpoints the log; stopped and joined when dropped.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    #[cfg(test)]
    completed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection of its own to the database at `path` and starts
    /// checkpointing every `interval`.
    pub fn start(path: &Path, interval: Duration) -> crate::Result<Checkpointer> {
        use anyhow::Context as _;
        let connection = Connection::open(path)
            .with_context(|| format!("opening {} to checkpoint it", path.display()))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let completed = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn({
                let stop = Arc::clone(&stop);
                let completed = Arc::clone(&completed);
                move || run(&connection, interval, &stop, &completed)
            })
            .context("starting the checkpoint thread")?;
        Ok(Checkpointer {
            stop,
            #[cfg(test)]
            completed,
            thread: Some(thread),
        })
    }

    /// Checkpoints that left the whole log in the database, so far.
    #[cfg(test)]
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    connection: &Connection,
    interval: Duration,
    stop: &(Mutex<bool>, Condvar),
    completed: &AtomicU64,
) {
    let (stopped, wake) = stop;
    let mut failing = false;
    loop {
        {
            let guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) = wake
                .wait_timeout_while(guard, interval, |stopped| !*stopped)
                .unwrap_or_else(|p| p.into_inner());
            if *guard {
                return;
            }
        }
        match checkpoint(connection) {
            Ok(done) => {
                if failing {
                    tracing::info!("the store's log is checkpointed again");
                    failing = false;
                }
                if done.is_some_and(|done| done.is_complete()) {
                    completed.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Commits checkpoint past the bound meanwhile; one line per
            // run of failures.
            Err(error) if !failing => {
                tracing::warn!(
                    %error,
                    "checkpointing the store's log failed: commits checkpoint it past {COMMIT_CHECKPOINT_PAGES} pages"
                );
                failing = true;
            }
            Err(_) => {}
        }
    }
}
