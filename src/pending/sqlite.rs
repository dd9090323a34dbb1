//! The pending set shared by every worker of a host: SQLite in WAL mode, in
//! the state directory all instances share.
//!
//! Why SQLite: one file gives atomic, durable transactions across processes
//! (claims are a read and a write in one `BEGIN IMMEDIATE` transaction, so
//! two workers never claim the same item), and WAL lets readers proceed
//! while one process writes. A directory of files with renames could record
//! items, but claims, coalescing, pauses and delivery ids would each need a
//! protocol of their own.
//!
//! A claim names its owner. Each process holds an exclusive `flock` on
//! `owners/<owner>.lock` for as long as it lives; the kernel drops that lock
//! when the process dies, however it dies, so any other worker that can take
//! the lock knows the owner is gone, returns its claims to the pool and
//! removes the file. A process that exits normally removes its own.
//!
//! Every call may wait for another process's write lock (up to
//! [`BUSY_TIMEOUT`]), so none is made on an async runtime's threads: the
//! [`Store`](super::Store) runs them on a thread of their own.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::checkpoint::{CHECKPOINT_INTERVAL, COMMIT_CHECKPOINT_PAGES, Checkpointer};
use super::row::{item_from_row, key};
use super::wake::Waker;
use super::{
    Added, Backlog, Changed, Claim, DELIVERY_MEMORY, DroppedItem, Pause, PendingError, PendingSet,
    RECHECK_DELAY, REDELIVERY_WINDOW, WorkItem, WorkerFigures,
};
use crate::github::InstallationId;

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "pending.sqlite3";

/// How long a statement waits for another process's write lock before the
/// store counts as unavailable (and a delivery is answered 503, well within
/// GitHub's 10 s delivery timeout).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Between two tries for another process's write lock. SQLite's own busy
/// timeout backs off to 10-25 ms steps, which would hold a delivery's answer
/// far longer than the few hundred microseconds a transaction here takes.
const LOCK_RETRY: Duration = Duration::from_micros(200);

/// Rows forgotten per statement when old delivery ids and redelivery
/// requests are pruned: each batch holds the write lock only briefly.
const PRUNE_BATCH: i64 = 500;

/// SQLite's busy handler: retries every [`LOCK_RETRY`] until
/// [`BUSY_TIMEOUT`] has passed, then gives up (the store is unavailable).
fn wait_for_lock(tries: i32) -> bool {
    let waited = LOCK_RETRY * u32::try_from(tries).unwrap_or(u32::MAX);
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(LOCK_RETRY);
    true
}

/// Runs `step` again while another process holds the database, for up to
/// [`BUSY_TIMEOUT`].
fn retry_while_locked<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if matches!(
                    error.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            outcome => return outcome,
        }
    }
}

/// How often, at most, claims of dead owners are looked for.
const REAP_INTERVAL: Duration = Duration::from_millis(500);

/// A file in `owners/` that is not a finished lock file (one being created)
/// is swept only once it is this old.
const UNFINISHED_OWNER_FILE_AGE: Duration = Duration::from_secs(60);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    installation INTEGER NOT NULL,
    repo         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- 'pull_request', 'merge_group' or 'retire'
    target       TEXT    NOT NULL,   -- the pull request number, the merge commit, or reason:number:commit
    delivery_id  TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   INTEGER,            -- unix ms; NULL means now
    claimed_by   TEXT,               -- owner of the claim, NULL when waiting
    added_again  INTEGER NOT NULL DEFAULT 0,
    received_ms  INTEGER,            -- the earliest delivery the next claim answers
    again_received_ms INTEGER,       -- the first delivery recorded while claimed
    UNIQUE (installation, repo, kind, target)
);
CREATE INDEX IF NOT EXISTS pending_ready ON pending (installation, claimed_by, sequence);
CREATE TABLE IF NOT EXISTS pauses (
    installation INTEGER PRIMARY KEY,
    until_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id      TEXT PRIMARY KEY,
    seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS redeliveries (
    guid         TEXT PRIMARY KEY,
    requested_ms INTEGER NOT NULL,   -- the latest request
    requests     INTEGER NOT NULL DEFAULT 1,
    delivered_ms INTEGER NOT NULL DEFAULT 0  -- the original delivery
) WITHOUT ROWID;
";

/// Columns added since the first schema: (table, column, declaration).
const ADDED_COLUMNS: [(&str, &str, &str); 4] = [
    ("pending", "received_ms", "INTEGER"),
    ("pending", "again_received_ms", "INTEGER"),
    ("redeliveries", "requests", "INTEGER NOT NULL DEFAULT 1"),
    ("redeliveries", "delivered_ms", "INTEGER NOT NULL DEFAULT 0"),
];

/// Indexes that let old rows be pruned without a table scan.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS deliveries_seen ON deliveries (seen_ms);
CREATE INDEX IF NOT EXISTS redeliveries_delivered ON redeliveries (delivered_ms);
";

/// What the store remembers of the redeliveries it asked GitHub for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeliveryRecord {
    pub requests: u32,
    pub last_requested: SystemTime,
}

/// A [`PendingSet`] in a SQLite database shared by the workers of a host.
pub struct SqlitePendingSet {
    /// One connection per process; rusqlite's connection is not `Sync`, and
    /// every statement here is short, so a std Mutex serialises them.
    connection: Mutex<Connection>,
    owner: String,
    owners_dir: PathBuf,
    lock_path: PathBuf,
    /// Held (flocked) for the life of the process; see the module doc.
    _owner_lock: File,
    released: AtomicBool,
    waker: Waker,
    last_reap: Mutex<Instant>,
    /// Keeps checkpoints out of the commits (see `checkpoint.rs`); its
    /// thread stops when the set is dropped.
    _checkpointer: Checkpointer,
}

impl SqlitePendingSet {
    /// Opens (creating if needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> crate::Result<SqlitePendingSet> {
        SqlitePendingSet::open_checkpointing(state_dir, CHECKPOINT_INTERVAL)
    }

    /// [`open`](Self::open), with the log checkpointed every `interval`.
    pub fn open_checkpointing(
        state_dir: &Path,
        interval: Duration,
    ) -> crate::Result<SqlitePendingSet> {
        use anyhow::Context as _;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let path = state_dir.join(DATABASE_FILE);
        let mut connection =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        connection
            .busy_handler(Some(wait_for_lock))
            .context("setting the busy handler")?;
        // Switching to WAL needs the database to itself; when several
        // workers create it at the same moment, SQLite may answer "locked"
        // at once rather than through the busy handler, so retry.
        retry_while_locked(|| connection.pragma_update(None, "journal_mode", "WAL"))
            .context("switching to WAL mode")?;
        // NORMAL in WAL mode: a commit survives the process being killed;
        // only a power loss or kernel crash can take back the last commits.
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous")?;
        // The set is small; a 256 KiB page cache keeps each worker lean.
        connection
            .pragma_update(None, "cache_size", -256)
            .context("setting the cache size")?;
        // The checkpointer copies the log into the database; a commit does
        // it only if the log has grown far past what that leaves.
        connection
            .pragma_update(None, "wal_autocheckpoint", COMMIT_CHECKPOINT_PAGES)
            .context("setting wal_autocheckpoint")?;
        connection.set_prepared_statement_cache_capacity(32);
        retry_while_locked(|| create_schema(&mut connection))
            .with_context(|| format!("creating tables in {}", path.display()))?;
        let checkpointer = Checkpointer::start(&path, interval)?;

        let owner = owner_name();
        let owners_dir = state_dir.join("owners");
        std::fs::create_dir_all(&owners_dir)
            .with_context(|| format!("creating {}", owners_dir.display()))?;
        let (owner_lock, lock_path) = create_owner_lock(&owners_dir, &owner)?;
        let waker = Waker::bind(&state_dir.join("wake"), &owner)
            .with_context(|| format!("binding the wake-up socket in {}", state_dir.display()))?;
        let store = SqlitePendingSet {
            connection: Mutex::new(connection),
            owner,
            owners_dir,
            lock_path,
            _owner_lock: owner_lock,
            released: AtomicBool::new(false),
            waker,
            last_reap: Mutex::new(Instant::now() - REAP_INTERVAL),
            _checkpointer: checkpointer,
        };
        store
            .reap_dead_owners()
            .context("returning claims of dead workers")?;
        Ok(store)
    }

    /// This process's name in claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the claims of owners whose lock is free (they died) to the
    /// pool, removes their lock files, and wakes the workers if any claim
    /// came back. Returns the number of claims returned.
    pub fn reap_dead_owners(&self) -> Result<usize, PendingError> {
        let mut owners: Vec<String> = {
            let connection = self.connection();
            let mut statement = connection
                .prepare_cached("SELECT DISTINCT claimed_by FROM pending WHERE claimed_by IS NOT NULL AND claimed_by != ?1")
                .map_err(store_error)?;
            let rows = statement
                .query_map(params![self.owner], |row| row.get(0))
                .map_err(store_error)?;
            rows.collect::<Result<_, _>>().map_err(store_error)?
        };
        let with_claims = owners.len();
        owners.extend(self.owner_files());
        let mut returned = 0;
        for (index, owner) in owners.into_iter().enumerate() {
            if owner == self.owner {
                continue;
            }
            let lock_path = self.owners_dir.join(format!("{owner}.lock"));
            // Held until the file is removed, so that the owner cannot be
            // judged alive and dead at once.
            let free_lock = match File::open(&lock_path) {
                Ok(file) if try_lock(&file) => Some(Some(file)),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(None),
                Err(_) => None,
            };
            let Some(_held) = free_lock else {
                continue;
            };
            if index < with_claims {
                let connection = self.connection();
                returned += connection
                    .prepare_cached(
                        "UPDATE pending SET claimed_by = NULL, added_again = 0, again_received_ms = NULL
                         WHERE claimed_by = ?1",
                    )
                    .and_then(|mut statement| statement.execute(params![owner]))
                    .map_err(store_error)?;
                tracing::warn!(owner, "returned the claims of a worker that died");
            }
            let _ = std::fs::remove_file(&lock_path);
        }
        self.sweep_unfinished_owner_files();
        if returned > 0 {
            self.waker.wake_all();
        }
        Ok(returned)
    }

    /// Owners with a lock file in `owners/`, other than this process.
    fn owner_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.owners_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let owner = name.strip_suffix(".lock")?;
                (owner != self.owner && !owner.starts_with('.')).then(|| owner.to_owned())
            })
            .collect()
    }

    /// Removes files a process left while creating its lock file, once
    /// they are old and unlocked.
    fn sweep_unfinished_owner_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.owners_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let unfinished = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with('.'));
            let old = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > UNFINISHED_OWNER_FILE_AGE);
            if unfinished && old && File::open(&path).is_ok_and(|file| try_lock(&file)) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn maybe_reap(&self) -> Result<(), PendingError> {
        {
            let mut last = self.last_reap.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < REAP_INTERVAL {
                return Ok(());
            }
            *last = Instant::now();
        }
        self.reap_dead_owners().map(|_| ())
    }

    /// Forgets delivery ids older than [`DELIVERY_MEMORY`] and redelivery
    /// requests for deliveries older than [`REDELIVERY_WINDOW`], at most
    /// one small batch of each; returns how many rows went.
    pub fn prune_once(&self, now: SystemTime) -> Result<usize, PendingError> {
        let now_ms = millis(now);
        let deliveries_horizon = now_ms - DELIVERY_MEMORY.as_millis() as i64;
        let redeliveries_horizon = now_ms - REDELIVERY_WINDOW.as_millis() as i64;
        let connection = self.connection();
        // Only a delete waits for the write lock; look first (a read never
        // waits in WAL mode), so that upkeep with nothing to do never
        // queues behind another worker's transaction.
        let anything_old: bool = connection
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE seen_ms < ?1)
                     OR EXISTS (SELECT 1 FROM redeliveries WHERE delivered_ms < ?2)
                     OR EXISTS (SELECT 1 FROM pauses WHERE until_ms <= ?3)",
            )
            .and_then(|mut statement| {
                statement.query_row(
                    params![deliveries_horizon, redeliveries_horizon, now_ms],
                    |row| row.get(0),
                )
            })
            .map_err(store_error)?;
        if !anything_old {
            return Ok(0);
        }
        let deliveries = connection
            .prepare_cached(
                "DELETE FROM deliveries WHERE id IN
                 (SELECT id FROM deliveries WHERE seen_ms < ?1 LIMIT ?2)",
            )
            .and_then(|mut statement| statement.execute(params![deliveries_horizon, PRUNE_BATCH]))
            .map_err(store_error)?;
        let redeliveries = connection
            .prepare_cached(
                "DELETE FROM redeliveries WHERE guid IN
                 (SELECT guid FROM redeliveries WHERE delivered_ms < ?1 LIMIT ?2)",
            )
            .and_then(|mut statement| statement.execute(params![redeliveries_horizon, PRUNE_BATCH]))
            .map_err(store_error)?;
        let pauses = connection
            .prepare_cached("DELETE FROM pauses WHERE until_ms <= ?1")
            .and_then(|mut statement| statement.execute(params![now_ms]))
            .map_err(store_error)?;
        Ok(deliveries + redeliveries + pauses)
    }

    /// Forgets every redelivery request for deliveries made before
    /// `delivered_before`, in small batches.
    pub fn prune_redeliveries(&self, delivered_before: SystemTime) -> Result<usize, PendingError> {
        let mut pruned = 0;
        loop {
            let connection = self.connection();
            let batch = connection
                .prepare_cached(
                    "DELETE FROM redeliveries WHERE guid IN
                     (SELECT guid FROM redeliveries WHERE delivered_ms < ?1 LIMIT ?2)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![millis(delivered_before), PRUNE_BATCH])
                })
                .map_err(store_error)?;
            pruned += batch;
            if batch < PRUNE_BATCH as usize {
                return Ok(pruned);
            }
        }
    }

    /// Records that a redelivery of `guid` (first delivered at
    /// `delivered_at`) was requested at `now`.
    pub fn record_redelivery(
        &self,
        guid: &str,
        delivered_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), PendingError> {
        let connection = self.connection();
        connection
            .prepare_cached(
                "INSERT INTO redeliveries (guid, requested_ms, requests, delivered_ms)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (guid) DO UPDATE SET requested_ms = excluded.requested_ms,
                     requests = requests + 1",
            )
            .and_then(|mut statement| {
                statement.execute(params![guid, millis(now), millis(delivered_at)])
            })
            .map_err(store_error)?;
        Ok(())
    }

    /// The redeliveries of `guid` requested so far, if any.
    pub fn redelivery_record(&self, guid: &str) -> Result<Option<RedeliveryRecord>, PendingError> {
        let connection = self.connection();
        connection
            .prepare_cached("SELECT requests, requested_ms FROM redeliveries WHERE guid = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row(params![guid], |row| {
                        Ok(RedeliveryRecord {
                            requests: row.get(0)?,
                            last_requested: from_millis(row.get(1)?),
                        })
                    })
                    .optional()
            })
            .map_err(store_error)
    }

    /// Delivery ids remembered, for tests of the pruning.
    pub fn remembered_deliveries(&self) -> Result<usize, PendingError> {
        let connection = self.connection();
        connection
            .query_row("SELECT count(*) FROM deliveries", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .map_err(store_error)
    }

    /// Records `count` delivery ids seen at `seen`, for tests of the pruning.
    #[doc(hidden)]
    pub fn remember_deliveries_for_test(
        &self,
        prefix: &str,
        count: usize,
        seen: SystemTime,
    ) -> Result<(), PendingError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(store_error)?;
        for i in 0..count {
            transaction
                .execute(
                    "INSERT OR IGNORE INTO deliveries (id, seen_ms) VALUES (?1, ?2)",
                    params![format!("{prefix}-{i}"), millis(seen)],
                )
                .map_err(store_error)?;
        }
        transaction.commit().map_err(store_error)
    }
}

/// Creates the tables, adds the columns an older schema lacks and the
/// indexes, in one transaction so that workers starting together agree.
fn create_schema(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute_batch(SCHEMA)?;
    for (table, column, declaration) in ADDED_COLUMNS {
        let present: i64 = transaction.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |row| row.get(0),
        )?;
        if present == 0 {
            transaction.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    transaction.execute_batch(INDEXES)?;
    transaction.execute_batch(super::fleet::SCHEMA)?;
    transaction.commit()
}

/// Creates and locks `owners/<owner>.lock`. The file is locked under a
/// temporary name first and then renamed into place, so that no other
/// worker ever sees the lock file unlocked and sweeps it.
fn create_owner_lock(owners_dir: &Path, owner: &str) -> crate::Result<(File, PathBuf)> {
    use anyhow::Context as _;
    let unfinished = owners_dir.join(format!(".{owner}.new"));
    let lock_path = owners_dir.join(format!("{owner}.lock"));
    let file =
        File::create(&unfinished).with_context(|| format!("creating {}", unfinished.display()))?;
    if !try_lock(&file) {
        anyhow::bail!("cannot lock {}", unfinished.display());
    }
    std::fs::rename(&unfinished, &lock_path)
        .with_context(|| format!("renaming {} into place", unfinished.display()))?;
    Ok((file, lock_path))
}

impl Drop for SqlitePendingSet {
    fn drop(&mut self) {
        self.release();
    }
}

impl PendingSet for SqlitePendingSet {
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError> {
        let added = self.add_many(&[(item, delivery_id.to_owned())])?;
        Ok(added[0])
    }

    fn add_many(&self, batch: &[(WorkItem, String)]) -> Result<Vec<Added>, PendingError> {
        let now = millis(SystemTime::now());
        let outcomes = {
            let mut connection = self.connection();
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let outcomes = record_all(&transaction, batch, now).map_err(store_error)?;
            transaction.commit().map_err(store_error)?;
            outcomes
        };
        if outcomes.contains(&Added::New) {
            self.waker.wake_all();
        }
        Ok(outcomes)
    }

    fn changed(&self) -> Changed<'_> {
        Box::pin(self.waker.woken())
    }

    fn pause(&self, installation: InstallationId, until: SystemTime) -> Result<(), PendingError> {
        let connection = self.connection();
        connection
            .prepare_cached(
                "INSERT INTO pauses (installation, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (installation) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)",
            )
            .and_then(|mut statement| {
                statement.execute(params![installation.0 as i64, millis(until)])
            })
            .map_err(store_error)?;
        Ok(())
    }

    fn paused_until(&self, installation: InstallationId, now: SystemTime) -> Option<SystemTime> {
        let connection = self.connection();
        let until: Option<i64> = connection
            .prepare_cached("SELECT until_ms FROM pauses WHERE installation = ?1 AND until_ms > ?2")
            .and_then(|mut statement| {
                statement
                    .query_row(params![installation.0 as i64, millis(now)], |row| {
                        row.get(0)
                    })
                    .optional()
            })
            .ok()
            .flatten();
        until.map(from_millis)
    }

    fn claim(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<Claim>, PendingError> {
        let now = millis(now);
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error)?;
        let paused: Option<i64> = transaction
            .prepare_cached("SELECT until_ms FROM pauses WHERE installation = ?1 AND until_ms > ?2")
            .and_then(|mut statement| {
                statement
                    .query_row(params![installation.0 as i64, now], |row| row.get(0))
                    .optional()
            })
            .map_err(store_error)?;
        if paused.is_some() {
            return Ok(None);
        }
        let row = transaction
            .prepare_cached(concat!(
                "SELECT sequence, repo, kind, target, delivery_id, attempts, received_ms FROM pending
                 WHERE installation = ?1 AND claimed_by IS NULL AND (not_before IS NULL OR not_before <= ?2)",
                retirement_not_blocked!(),
                " ORDER BY sequence LIMIT 1",
            ))
            .and_then(|mut statement| {
                statement
                    .query_row(params![installation.0 as i64, now], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, String>(4)?,
                            row.get::<_, u32>(5)?,
                            row.get::<_, Option<i64>>(6)?,
                        ))
                    })
                    .optional()
            })
            .map_err(store_error)?;
        let Some((sequence, repo, kind, target, delivery_id, attempts, received_ms)) = row else {
            return Ok(None);
        };
        transaction
            .prepare_cached(
                "UPDATE pending SET claimed_by = ?1, added_again = 0 WHERE sequence = ?2",
            )
            .and_then(|mut statement| statement.execute(params![self.owner, sequence]))
            .map_err(store_error)?;
        transaction.commit().map_err(store_error)?;
        let item = item_from_row(installation, repo, &kind, target)?;
        Ok(Some(Claim {
            item,
            delivery_id,
            attempts,
            received_at: from_millis(received_ms.unwrap_or(now)),
        }))
    }

    fn done(&self, claim: &Claim) -> Result<(), PendingError> {
        let (installation, repo, kind, target) = key(&claim.item);
        let requeued = {
            let mut connection = self.connection();
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let deleted = transaction
                .prepare_cached(
                    "DELETE FROM pending WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4
                     AND claimed_by = ?5 AND added_again = 0",
                )
                .and_then(|mut statement| {
                    statement.execute(params![installation, repo, kind, target, self.owner])
                })
                .map_err(store_error)?;
            let requeued = if deleted == 0 {
                transaction
                    .prepare_cached(
                        "UPDATE pending SET claimed_by = NULL, added_again = 0, attempts = 0, not_before = ?6,
                             received_ms = coalesce(again_received_ms, received_ms), again_received_ms = NULL
                         WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4 AND claimed_by = ?5",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![
                            installation,
                            repo,
                            kind,
                            target,
                            self.owner,
                            millis(SystemTime::now() + RECHECK_DELAY)
                        ])
                    })
                    .map_err(store_error)?
            } else {
                0
            };
            transaction.commit().map_err(store_error)?;
            requeued
        };
        if requeued > 0 {
            self.waker.wake_all();
        }
        Ok(())
    }

    fn retry_later(&self, claim: &Claim, not_before: SystemTime) -> Result<(), PendingError> {
        let (installation, repo, kind, target) = key(&claim.item);
        let connection = self.connection();
        connection
            .prepare_cached(
                "UPDATE pending SET claimed_by = NULL, added_again = 0, again_received_ms = NULL,
                     attempts = ?6, not_before = ?7
                 WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4 AND claimed_by = ?5",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    installation,
                    repo,
                    kind,
                    target,
                    self.owner,
                    claim.attempts + 1,
                    millis(not_before)
                ])
            })
            .map_err(store_error)?;
        Ok(())
    }

    fn ready_installations(&self, now: SystemTime) -> Result<Vec<InstallationId>, PendingError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(concat!(
                "SELECT DISTINCT installation FROM pending
                 WHERE claimed_by IS NULL AND (not_before IS NULL OR not_before <= ?1)
                 AND installation NOT IN (SELECT installation FROM pauses WHERE until_ms > ?1)",
                retirement_not_blocked!(),
            ))
            .map_err(store_error)?;
        let rows = statement
            .query_map(params![millis(now)], |row| row.get::<_, i64>(0))
            .map_err(store_error)?;
        rows.map(|row| row.map(|id| InstallationId(id as u64)))
            .collect::<Result<_, _>>()
            .map_err(store_error)
    }

    fn next_retry(&self) -> Option<SystemTime> {
        let connection = self.connection();
        let now = millis(SystemTime::now());
        connection
            .prepare_cached(
                "SELECT min(t) FROM (
                     SELECT min(not_before) AS t FROM pending WHERE claimed_by IS NULL AND not_before > ?1
                     UNION ALL SELECT min(until_ms) FROM pauses WHERE until_ms > ?1)",
            )
            .and_then(|mut statement| {
                statement.query_row(params![now], |row| row.get::<_, Option<i64>>(0))
            })
            .ok()
            .flatten()
            .map(from_millis)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        let connection = self.connection();
        connection
            .prepare_cached("SELECT count(*) FROM pending")
            .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
            .map(|n| n as usize)
            .unwrap_or(0)
    }

    fn backlog(&self) -> Result<Vec<Backlog>, PendingError> {
        let connection = self.connection();
        let now = millis(SystemTime::now());
        let mut statement = connection
            .prepare_cached(
                "SELECT installation, count(*), min(coalesce(received_ms, ?1)) FROM pending
                 GROUP BY installation ORDER BY installation",
            )
            .map_err(store_error)?;
        let rows = statement
            .query_map(params![now], |row| {
                Ok(Backlog {
                    installation: InstallationId(row.get::<_, i64>(0)? as u64),
                    items: row.get::<_, i64>(1)? as usize,
                    oldest: from_millis(row.get(2)?),
                })
            })
            .map_err(store_error)?;
        rows.collect::<Result<_, _>>().map_err(store_error)
    }

    fn pauses(&self, now: SystemTime) -> Result<Vec<Pause>, PendingError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT installation, until_ms FROM pauses WHERE until_ms > ?1 ORDER BY installation",
            )
            .map_err(store_error)?;
        let rows = statement
            .query_map(params![millis(now)], |row| {
                Ok(Pause {
                    installation: InstallationId(row.get::<_, i64>(0)? as u64),
                    until: from_millis(row.get(1)?),
                })
            })
            .map_err(store_error)?;
        rows.collect::<Result<_, _>>().map_err(store_error)
    }

    fn record_worker(&self, figures: &WorkerFigures, now: SystemTime) -> Result<(), PendingError> {
        super::fleet::record_worker(&mut self.connection(), &self.owner, figures, now)
            .map_err(store_error)
    }

    fn record_dropped(&self, dropped: &DroppedItem) -> Result<(), PendingError> {
        super::fleet::record_dropped(&self.connection(), &self.owner, dropped).map_err(store_error)
    }

    fn housekeeping(&self, now: SystemTime) -> Result<(), PendingError> {
        self.maybe_reap()?;
        self.prune_once(now).map(|_| ())
    }

    fn release(&self) {
        if !self.released.swap(true, Ordering::Relaxed) {
            // Removed while the lock is still held (the file closes after).
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

/// Records each delivery of `batch` inside one transaction.
fn record_all(
    transaction: &rusqlite::Transaction<'_>,
    batch: &[(WorkItem, String)],
    now: i64,
) -> rusqlite::Result<Vec<Added>> {
    let mut remember = transaction.prepare_cached(
        "INSERT INTO deliveries (id, seen_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
    )?;
    let mut waiting = transaction.prepare_cached(
        "SELECT claimed_by IS NULL FROM pending
         WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4",
    )?;
    let mut insert = transaction.prepare_cached(
        "INSERT INTO pending (installation, repo, kind, target, delivery_id, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (installation, repo, kind, target) DO NOTHING",
    )?;
    let mut coalesce = transaction.prepare_cached(
        "UPDATE pending SET delivery_id = ?5,
             added_again = CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END,
             again_received_ms = CASE WHEN claimed_by IS NULL THEN again_received_ms
                                      ELSE coalesce(again_received_ms, ?6) END
         WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4",
    )?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (item, delivery_id) in batch {
        let (installation, repo, kind, target) = key(item);
        let seen_before = remember.execute(params![delivery_id, now])? == 0;
        if seen_before {
            let is_waiting: Option<bool> = waiting
                .query_row(params![installation, repo, kind, target], |row| row.get(0))
                .optional()?;
            if is_waiting == Some(true) {
                outcomes.push(Added::DuplicateDelivery);
                continue;
            }
        }
        let inserted =
            insert.execute(params![installation, repo, kind, target, delivery_id, now])?;
        if inserted == 1 {
            outcomes.push(Added::New);
        } else {
            coalesce.execute(params![installation, repo, kind, target, delivery_id, now])?;
            outcomes.push(Added::Coalesced);
        }
    }
    Ok(outcomes)
}

fn store_error(error: rusqlite::Error) -> PendingError {
    PendingError(error.to_string())
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A name no other live process on this host has: pid plus start time.
fn owner_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{:x}", std::process::id(), nanos)
}

/// Takes an exclusive flock without waiting.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{PullNumber, PullRequestRef, RepoName};
    use crate::pending::Retirement;
    use crate::pending::checkpoint::checkpoint;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tlb-{name}-{}", owner_name()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pull(installation: u64, number: u64) -> WorkItem {
        WorkItem::PullRequest(PullRequestRef {
            installation: InstallationId(installation),
            repo: RepoName("octo/repo".into()),
            number: PullNumber(number),
        })
    }

    #[test]
    fn a_retirement_is_stored_and_claimed_back_whole() {
        let dir = temp_dir("retire");
        let store = SqlitePendingSet::open(&dir).unwrap();
        let retire = |reason, sha: &str| WorkItem::Retire {
            pull: PullRequestRef {
                installation: InstallationId(3),
                repo: RepoName("octo/repo".into()),
                number: PullNumber(12),
            },
            head_sha: sha.into(),
            reason,
        };
        let superseded = retire(Retirement::Superseded, "aaaa");
        assert_eq!(store.add(superseded.clone(), "d1/1").unwrap(), Added::New);
        assert_eq!(
            store.add(superseded.clone(), "d2/1").unwrap(),
            Added::Coalesced
        );
        assert_eq!(
            store.add(retire(Retirement::Merged, "aaaa"), "d3").unwrap(),
            Added::New
        );
        let now = SystemTime::now();
        let first = store.claim(InstallationId(3), now).unwrap().unwrap();
        assert_eq!(first.item, superseded);
        let second = store.claim(InstallationId(3), now).unwrap().unwrap();
        assert_eq!(second.item, retire(Retirement::Merged, "aaaa"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Frames in the log now, as a passive checkpoint from a connection of
    /// the test's own reports them, once no other checkpoint is running.
    fn log_pages(dir: &Path) -> i64 {
        let observer = Connection::open(dir.join(DATABASE_FILE)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(done) = checkpoint(&observer).unwrap() {
                return done.log_pages;
            }
            assert!(Instant::now() < deadline, "another checkpoint never ended");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A store in `dir`, checkpointed every `interval`, after 600 commits
    /// of one delivery each.
    fn with_600_commits(dir: &Path, interval: Duration) -> SqlitePendingSet {
        let store = SqlitePendingSet::open_checkpointing(dir, interval).unwrap();
        for number in 0..600 {
            store.add(pull(1, number), &format!("d{number}")).unwrap();
        }
        store
    }

    /// With SQLite's default, the commit that takes the log past 1,000
    /// pages checkpoints it, syncing the files while deliveries wait, and
    /// the next commit starts the log again.
    #[test]
    fn commits_leave_checkpoints_to_the_checkpointer() {
        let dir = temp_dir("commit-checkpoint");
        let idle_checkpointer = Duration::from_secs(3600);
        let store = with_600_commits(&dir, idle_checkpointer);
        let pages = log_pages(&dir);
        assert!(
            pages > 1_000,
            "600 commits are all still in the log: {pages} pages"
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_checkpointer_keeps_the_log_short() {
        let dir = temp_dir("checkpointer");
        let store = with_600_commits(&dir, Duration::from_millis(10));
        // A commit starts the log again only if no checkpoint is reading it
        // at that instant; one that meets the checkpointer (every 10 ms)
        // appends instead, and a later commit starts it again.
        let deadline = Instant::now() + Duration::from_secs(30);
        for number in 600.. {
            // The second whole checkpoint from now began after the last
            // commit.
            let after_commits = store._checkpointer.completed();
            while store._checkpointer.completed() < after_commits + 2 {
                assert!(Instant::now() < deadline, "no checkpoint completed");
                std::thread::sleep(Duration::from_millis(5));
            }
            // The log was all copied, so this commit may start it again.
            store.add(pull(1, number), &format!("d{number}")).unwrap();
            let pages = log_pages(&dir);
            if pages < 50 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no commit started the log again: {pages} pages"
            );
        }
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn two_processes_share_one_set_and_never_claim_the_same_item() {
        let dir = temp_dir("share");
        let a = SqlitePendingSet::open(&dir).unwrap();
        let b = SqlitePendingSet::open(&dir).unwrap();
        assert_eq!(a.add(pull(1, 1), "d1").unwrap(), Added::New);
        assert_eq!(b.add(pull(1, 1), "d2").unwrap(), Added::Coalesced);
        assert_eq!(b.add(pull(1, 2), "d3").unwrap(), Added::New);
        assert_eq!(a.len(), 2);
        let now = SystemTime::now();
        let first = b.claim(InstallationId(1), now).unwrap().unwrap();
        let second = a.claim(InstallationId(1), now).unwrap().unwrap();
        assert_ne!(first.item, second.item);
        assert_eq!(a.claim(InstallationId(1), now).unwrap(), None);
        b.done(&first).unwrap();
        a.done(&second).unwrap();
        assert!(a.is_empty() && b.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_delivery_seen_before_is_recorded_again_unless_its_item_is_waiting() {
        let dir = temp_dir("dedupe");
        let store = SqlitePendingSet::open(&dir).unwrap();
        assert_eq!(store.add(pull(1, 1), "same").unwrap(), Added::New);
        assert_eq!(
            store.add(pull(1, 1), "same").unwrap(),
            Added::DuplicateDelivery,
            "its item is waiting: nothing to add"
        );
        let claim = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(
            store.add(pull(1, 1), "same").unwrap(),
            Added::Coalesced,
            "claimed: the claimer may have read before, so it runs again"
        );
        store.done(&claim).unwrap();
        let again = store
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .expect("requeued");
        store.done(&again).unwrap();
        assert!(store.is_empty());
        assert_eq!(
            store.add(pull(1, 1), "same").unwrap(),
            Added::New,
            "a redelivery of finished work is recorded: the recompute is idempotent"
        );
        assert_eq!(store.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_batch_is_recorded_in_one_transaction_with_each_outcome() {
        let dir = temp_dir("batch");
        let store = SqlitePendingSet::open(&dir).unwrap();
        let batch = [
            (pull(1, 1), "a".to_owned()),
            (pull(1, 1), "b".to_owned()),
            (pull(1, 2), "c".to_owned()),
            (pull(1, 2), "c".to_owned()),
        ];
        assert_eq!(
            store.add_many(&batch).unwrap(),
            [
                Added::New,
                Added::Coalesced,
                Added::New,
                Added::DuplicateDelivery
            ]
        );
        assert_eq!(store.len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `SystemTime` as the store keeps it, to the millisecond.
    fn to_ms(at: SystemTime) -> SystemTime {
        from_millis(millis(at))
    }

    #[test]
    fn a_claim_carries_when_its_earliest_delivery_was_recorded() {
        let dir = temp_dir("received");
        let store = SqlitePendingSet::open(&dir).unwrap();
        let before_first = to_ms(SystemTime::now());
        store.add(pull(1, 1), "d1").unwrap();
        let after_first = SystemTime::now();
        store.add(pull(1, 1), "d2").unwrap();
        let claim = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(claim.delivery_id, "d2");
        assert!(
            before_first <= claim.received_at && claim.received_at <= after_first,
            "the first of the coalesced deliveries counts"
        );

        let before_again = to_ms(SystemTime::now());
        store.add(pull(1, 1), "d3").unwrap();
        store.add(pull(1, 1), "d4").unwrap();
        store.done(&claim).unwrap();
        let again = store
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .unwrap();
        assert!(
            again.received_at >= before_again,
            "the next turn answers the deliveries recorded during the claim"
        );
        store.retry_later(&again, SystemTime::now()).unwrap();
        let retried = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(
            retried.received_at, again.received_at,
            "kept across retries"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn backlog_and_pauses_are_reported_per_installation() {
        let dir = temp_dir("backlog");
        let store = SqlitePendingSet::open(&dir).unwrap();
        let start = to_ms(SystemTime::now());
        store.add(pull(2, 1), "a").unwrap();
        store.add(pull(1, 1), "b").unwrap();
        store.add(pull(1, 2), "c").unwrap();
        store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        let backlog = store.backlog().unwrap();
        let summary: Vec<(u64, usize)> = backlog
            .iter()
            .map(|b| (b.installation.0, b.items))
            .collect();
        assert_eq!(summary, [(1, 2), (2, 1)], "claimed items count too");
        assert!(backlog.iter().all(|b| b.oldest >= start));
        let later = SystemTime::now() + Duration::from_secs(5);
        assert!(backlog[0].oldest_age(later) >= Duration::from_secs(5));

        let now = SystemTime::now();
        let until = to_ms(now + Duration::from_secs(60));
        store.pause(InstallationId(2), until).unwrap();
        store
            .pause(InstallationId(3), now - Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            store.pauses(now).unwrap(),
            [Pause {
                installation: InstallationId(2),
                until
            }],
            "only pauses still in force"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn old_delivery_ids_are_pruned_in_small_batches_through_an_index() {
        let dir = temp_dir("prune");
        let store = SqlitePendingSet::open(&dir).unwrap();
        let now = SystemTime::now();
        let old = now - DELIVERY_MEMORY - Duration::from_secs(60);
        store
            .remember_deliveries_for_test("old", 1200, old)
            .unwrap();
        store.remember_deliveries_for_test("new", 10, now).unwrap();
        assert_eq!(store.prune_once(now).unwrap(), 500, "one batch at a time");
        store.housekeeping(now).unwrap();
        store.housekeeping(now).unwrap();
        assert_eq!(store.remembered_deliveries().unwrap(), 10);
        for (table, column) in [("deliveries", "seen_ms"), ("redeliveries", "delivered_ms")] {
            let plan: String = store
                .connection()
                .query_row(
                    &format!("EXPLAIN QUERY PLAN SELECT 1 FROM {table} WHERE {column} < 1"),
                    [],
                    |row| row.get(3),
                )
                .unwrap();
            assert!(plan.contains("USING"), "{table}: {plan}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn redelivery_requests_are_counted_and_forgotten_after_the_window() {
        let dir = temp_dir("redeliveries");
        let store = SqlitePendingSet::open(&dir).unwrap();
        let now = to_ms(SystemTime::now());
        let recent = now - Duration::from_secs(3600);
        let too_old = now - REDELIVERY_WINDOW - Duration::from_secs(1);
        assert_eq!(store.redelivery_record("g").unwrap(), None);
        store.record_redelivery("g", recent, now).unwrap();
        store
            .record_redelivery("g", recent, now + Duration::from_secs(1))
            .unwrap();
        store.record_redelivery("old", too_old, now).unwrap();
        assert_eq!(
            store.redelivery_record("g").unwrap(),
            Some(RedeliveryRecord {
                requests: 2,
                last_requested: now + Duration::from_secs(1)
            })
        );
        assert_eq!(
            store.prune_redeliveries(now - REDELIVERY_WINDOW).unwrap(),
            1
        );
        assert_eq!(store.redelivery_record("old").unwrap(), None);
        assert!(store.redelivery_record("g").unwrap().is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for sub in ["", "owners", "wake"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
                names.push(format!("{sub}/{}", entry.file_name().to_string_lossy()));
            }
        }
        names.sort();
        names
    }

    #[test]
    fn the_state_directory_does_not_grow_with_restarts() {
        let dir = temp_dir("hygiene");
        let survivor = SqlitePendingSet::open(&dir).unwrap();
        let before = entries(&dir);
        for i in 0..20 {
            let worker = SqlitePendingSet::open(&dir).unwrap();
            worker.add(pull(1, i), &format!("d{i}")).unwrap();
            assert_eq!(
                entries(&dir).len(),
                before.len() + 2,
                "a lock file and a socket"
            );
            drop(worker);
            survivor.reap_dead_owners().unwrap();
            assert_eq!(entries(&dir), before, "restart {i} left files behind");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lock_files_of_killed_workers_are_swept() {
        let dir = temp_dir("sweep");
        let survivor = SqlitePendingSet::open(&dir).unwrap();
        // What a killed worker leaves: its lock file, no longer locked, and
        // one that did not even get as far as renaming it into place.
        let leftover = dir.join("owners").join("12345-dead.lock");
        File::create(&leftover).unwrap();
        let unfinished = dir.join("owners").join(".12346-dead.new");
        let file = File::create(&unfinished).unwrap();
        file.set_modified(SystemTime::now() - 2 * UNFINISHED_OWNER_FILE_AGE)
            .unwrap();
        drop(file);
        // And one of a live worker, which must stay.
        let live = SqlitePendingSet::open(&dir).unwrap();
        survivor.reap_dead_owners().unwrap();
        assert!(!leftover.exists());
        assert!(!unfinished.exists());
        assert!(live.lock_path.exists());
        assert!(survivor.lock_path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_add_during_a_claim_requeues_after_done_and_survives_reopening() {
        let dir = temp_dir("requeue");
        {
            let store = SqlitePendingSet::open(&dir).unwrap();
            store.add(pull(1, 7), "d1").unwrap();
            let claim = store
                .claim(InstallationId(1), SystemTime::now())
                .unwrap()
                .unwrap();
            store.add(pull(1, 7), "d2").unwrap();
            store.done(&claim).unwrap();
        }
        let reopened = SqlitePendingSet::open(&dir).unwrap();
        let later = SystemTime::now() + RECHECK_DELAY;
        let claim = reopened.claim(InstallationId(1), later).unwrap().unwrap();
        assert_eq!(claim.delivery_id, "d2");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn claims_of_a_dead_owner_return_to_the_pool() {
        let dir = temp_dir("reap");
        let survivor = SqlitePendingSet::open(&dir).unwrap();
        {
            let doomed = SqlitePendingSet::open(&dir).unwrap();
            doomed.add(pull(1, 1), "d1").unwrap();
            doomed
                .claim(InstallationId(1), SystemTime::now())
                .unwrap()
                .unwrap();
            assert_eq!(
                survivor.reap_dead_owners().unwrap(),
                0,
                "its owner still lives"
            );
            // Dropping closes the lock file as a dying process would.
        }
        assert_eq!(
            survivor
                .claim(InstallationId(1), SystemTime::now())
                .unwrap(),
            None
        );
        assert_eq!(survivor.reap_dead_owners().unwrap(), 1);
        assert!(
            survivor
                .claim(InstallationId(1), SystemTime::now())
                .unwrap()
                .is_some()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pause_holds_every_process_back() {
        let dir = temp_dir("pause");
        let a = SqlitePendingSet::open(&dir).unwrap();
        let b = SqlitePendingSet::open(&dir).unwrap();
        a.add(pull(3, 1), "d1").unwrap();
        let now = SystemTime::now();
        a.pause(InstallationId(3), now + Duration::from_secs(60))
            .unwrap();
        assert_eq!(b.claim(InstallationId(3), now).unwrap(), None);
        assert!(b.ready_installations(now).unwrap().is_empty());
        assert!(b.paused_until(InstallationId(3), now).is_some());
        let later = now + Duration::from_secs(61);
        assert!(b.claim(InstallationId(3), later).unwrap().is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_add_in_one_process_wakes_another() {
        let dir = temp_dir("wake");
        let a = SqlitePendingSet::open(&dir).unwrap();
        let b = SqlitePendingSet::open(&dir).unwrap();
        let woken = b.changed();
        let started = Instant::now();
        a.add(pull(1, 1), "d1").unwrap();
        tokio::time::timeout(Duration::from_secs(1), woken)
            .await
            .expect("woken");
        assert!(started.elapsed() < Duration::from_millis(100));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_store_made_by_an_older_version_gains_the_new_columns() {
        let dir = temp_dir("migrate");
        {
            let old = Connection::open(dir.join(DATABASE_FILE)).unwrap();
            old.execute_batch(
                "CREATE TABLE pending (
                     sequence INTEGER PRIMARY KEY AUTOINCREMENT, installation INTEGER NOT NULL,
                     repo TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
                     delivery_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                     not_before INTEGER, claimed_by TEXT, added_again INTEGER NOT NULL DEFAULT 0,
                     UNIQUE (installation, repo, kind, target));
                 CREATE TABLE redeliveries (guid TEXT PRIMARY KEY, requested_ms INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO pending (installation, repo, kind, target, delivery_id)
                     VALUES (1, 'octo/repo', 'pull_request', '5', 'old');
                 INSERT INTO redeliveries VALUES ('g', 1);",
            )
            .unwrap();
        }
        let store = SqlitePendingSet::open(&dir).unwrap();
        let before = to_ms(SystemTime::now());
        let claim = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(claim.item, pull(1, 5));
        assert!(claim.received_at >= before, "unknown: counted from now");
        assert_eq!(store.redelivery_record("g").unwrap().unwrap().requests, 1);
        drop(store);
        let reopened = SqlitePendingSet::open(&dir).unwrap();
        assert_eq!(reopened.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
