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
//! the lock knows the owner is gone and returns its claims to the pool.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::wake::Waker;
use super::{
    Added, Changed, Claim, DELIVERY_MEMORY, PendingError, PendingSet, RECHECK_DELAY, WorkItem,
};
use crate::github::{InstallationId, PullNumber, PullRequestRef, RepoName};

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "pending.sqlite3";

/// How long a statement waits for another process's write lock before the
/// store counts as unavailable (and a delivery is answered 503, well within
/// GitHub's 10 s delivery timeout).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Between two tries for another process's write lock. SQLite's own busy
/// timeout backs off to 10-25 ms steps, which would hold a delivery's answer
/// far longer than the few hundred microseconds a transaction here takes.
const LOCK_RETRY: Duration = Duration::from_micros(200);

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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    installation INTEGER NOT NULL,
    repo         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- 'pull_request' or 'merge_group'
    target       TEXT    NOT NULL,   -- the pull request number or the merge commit
    delivery_id  TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   INTEGER,            -- unix ms; NULL means now
    claimed_by   TEXT,               -- owner of the claim, NULL when waiting
    added_again  INTEGER NOT NULL DEFAULT 0,
    received_ms  INTEGER,            -- unix ms of the oldest delivery not yet answered
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
    requested_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A [`PendingSet`] in a SQLite database shared by the workers of a host.
pub struct SqlitePendingSet {
    /// One connection per process; rusqlite's connection is not `Sync`, and
    /// every statement here is short, so a std Mutex serialises them.
    connection: Mutex<Connection>,
    owner: String,
    owners_dir: PathBuf,
    /// Held (flocked) for the life of the process; see the module doc.
    _owner_lock: File,
    waker: Waker,
    last_reap: Mutex<Instant>,
}

impl SqlitePendingSet {
    /// Opens (creating if needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> crate::Result<SqlitePendingSet> {
        use anyhow::Context as _;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let path = state_dir.join(DATABASE_FILE);
        let connection =
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
        retry_while_locked(|| connection.execute_batch(SCHEMA))
            .with_context(|| format!("creating tables in {}", path.display()))?;
        retry_while_locked(|| add_received_column(&connection))
            .with_context(|| format!("adding received_ms to {}", path.display()))?;

        let owner = owner_name();
        let owners_dir = state_dir.join("owners");
        std::fs::create_dir_all(&owners_dir)
            .with_context(|| format!("creating {}", owners_dir.display()))?;
        let lock_path = owners_dir.join(format!("{owner}.lock"));
        let owner_lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        if !try_lock(&owner_lock) {
            anyhow::bail!("cannot lock {}", lock_path.display());
        }
        let waker = Waker::bind(&state_dir.join("wake"), &owner)
            .with_context(|| format!("binding the wake-up socket in {}", state_dir.display()))?;
        let store = SqlitePendingSet {
            connection: Mutex::new(connection),
            owner,
            owners_dir,
            _owner_lock: owner_lock,
            waker,
            last_reap: Mutex::new(Instant::now() - REAP_INTERVAL),
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
    /// pool, and wakes the workers if there were any.
    pub fn reap_dead_owners(&self) -> Result<usize, PendingError> {
        let owners: Vec<String> = {
            let connection = self.connection();
            let mut statement = connection
                .prepare_cached("SELECT DISTINCT claimed_by FROM pending WHERE claimed_by IS NOT NULL AND claimed_by != ?1")
                .map_err(store_error)?;
            let rows = statement
                .query_map(params![self.owner], |row| row.get(0))
                .map_err(store_error)?;
            rows.collect::<Result<_, _>>().map_err(store_error)?
        };
        let mut returned = 0;
        for owner in owners {
            let lock_path = self.owners_dir.join(format!("{owner}.lock"));
            let dead = match File::open(&lock_path) {
                Ok(file) => try_lock(&file),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            if !dead {
                continue;
            }
            let connection = self.connection();
            returned += connection
                .execute(
                    "UPDATE pending SET claimed_by = NULL, added_again = 0 WHERE claimed_by = ?1",
                    params![owner],
                )
                .map_err(store_error)?;
            let _ = std::fs::remove_file(&lock_path);
            tracing::warn!(owner, "returned the claims of a worker that died");
        }
        if returned > 0 {
            self.waker.wake_all();
        }
        Ok(returned)
    }

    fn maybe_reap(&self) {
        {
            let mut last = self.last_reap.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < REAP_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        if let Err(error) = self.reap_dead_owners() {
            tracing::warn!(%error, "cannot look for claims of dead workers");
        }
    }

    /// Records that a redelivery of `guid` was requested; false when one
    /// already was.
    pub fn record_redelivery(&self, guid: &str) -> Result<bool, PendingError> {
        let connection = self.connection();
        let inserted = connection
            .execute(
                "INSERT OR IGNORE INTO redeliveries (guid, requested_ms) VALUES (?1, ?2)",
                params![guid, millis(SystemTime::now())],
            )
            .map_err(store_error)?;
        Ok(inserted == 1)
    }

    /// Whether a redelivery of `guid` was already requested.
    pub fn redelivery_requested(&self, guid: &str) -> Result<bool, PendingError> {
        let connection = self.connection();
        connection
            .query_row(
                "SELECT 1 FROM redeliveries WHERE guid = ?1",
                params![guid],
                |_| Ok(()),
            )
            .optional()
            .map(|row| row.is_some())
            .map_err(store_error)
    }
}

impl PendingSet for SqlitePendingSet {
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError> {
        let (installation, repo, kind, target) = key(&item);
        let now = millis(SystemTime::now());
        let added = {
            let mut connection = self.connection();
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_error)?;
            let first_time = transaction
                .execute(
                    "INSERT OR IGNORE INTO deliveries (id, seen_ms) VALUES (?1, ?2)",
                    params![delivery_id, now],
                )
                .map_err(store_error)?;
            if first_time == 0 {
                return Ok(Added::DuplicateDelivery);
            }
            let inserted = transaction
                .execute(
                    "INSERT OR IGNORE INTO pending (installation, repo, kind, target, delivery_id, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![installation, repo, kind, target, delivery_id, now],
                )
                .map_err(store_error)?;
            let added = if inserted == 1 {
                Added::New
            } else {
                transaction
                    .execute(
                        "UPDATE pending SET delivery_id = ?5,
                             added_again = CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END,
                             received_ms = CASE WHEN claimed_by IS NULL OR added_again = 1
                                 THEN received_ms ELSE ?6 END
                         WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4",
                        params![installation, repo, kind, target, delivery_id, now],
                    )
                    .map_err(store_error)?;
                Added::Coalesced
            };
            // Forget old delivery ids now and then, at almost no cost.
            if now % 64 == 0 {
                let horizon = now - DELIVERY_MEMORY.as_millis() as i64;
                transaction
                    .execute(
                        "DELETE FROM deliveries WHERE seen_ms < ?1",
                        params![horizon],
                    )
                    .map_err(store_error)?;
            }
            transaction.commit().map_err(store_error)?;
            added
        };
        if added == Added::New {
            self.waker.wake_all();
        }
        Ok(added)
    }

    fn changed(&self) -> Changed<'_> {
        Box::pin(self.waker.woken())
    }

    fn pause(&self, installation: InstallationId, until: SystemTime) -> Result<(), PendingError> {
        let connection = self.connection();
        connection
            .execute(
                "INSERT INTO pauses (installation, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (installation) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)",
                params![installation.0 as i64, millis(until)],
            )
            .map_err(store_error)?;
        Ok(())
    }

    fn paused_until(&self, installation: InstallationId, now: SystemTime) -> Option<SystemTime> {
        let connection = self.connection();
        let until: Option<i64> = connection
            .query_row(
                "SELECT until_ms FROM pauses WHERE installation = ?1 AND until_ms > ?2",
                params![installation.0 as i64, millis(now)],
                |row| row.get(0),
            )
            .optional()
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
            .query_row(
                "SELECT until_ms FROM pauses WHERE installation = ?1 AND until_ms > ?2",
                params![installation.0 as i64, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(store_error)?;
        if paused.is_some() {
            return Ok(None);
        }
        let row = transaction
            .query_row(
                "SELECT sequence, repo, kind, target, delivery_id, attempts, coalesce(received_ms, ?2) FROM pending
                 WHERE installation = ?1 AND claimed_by IS NULL AND (not_before IS NULL OR not_before <= ?2)
                 ORDER BY sequence LIMIT 1",
                params![installation.0 as i64, now],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, u32>(5)?,
                        row.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(store_error)?;
        let Some((sequence, repo, kind, target, delivery_id, attempts, received_ms)) = row else {
            return Ok(None);
        };
        transaction
            .execute(
                "UPDATE pending SET claimed_by = ?1, added_again = 0 WHERE sequence = ?2",
                params![self.owner, sequence],
            )
            .map_err(store_error)?;
        transaction.commit().map_err(store_error)?;
        let item = item_from_row(installation, repo, &kind, target)?;
        Ok(Some(Claim {
            item,
            delivery_id,
            attempts,
            received_at: from_millis(received_ms),
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
                .execute(
                    "DELETE FROM pending WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4
                     AND claimed_by = ?5 AND added_again = 0",
                    params![installation, repo, kind, target, self.owner],
                )
                .map_err(store_error)?;
            let requeued = if deleted == 0 {
                transaction
                    .execute(
                        "UPDATE pending SET claimed_by = NULL, added_again = 0, attempts = 0, not_before = ?6
                         WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4 AND claimed_by = ?5",
                        params![
                            installation,
                            repo,
                            kind,
                            target,
                            self.owner,
                            millis(SystemTime::now() + RECHECK_DELAY)
                        ],
                    )
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
            .execute(
                "UPDATE pending SET claimed_by = NULL, added_again = 0, attempts = ?6, not_before = ?7
                 WHERE installation = ?1 AND repo = ?2 AND kind = ?3 AND target = ?4 AND claimed_by = ?5",
                params![
                    installation,
                    repo,
                    kind,
                    target,
                    self.owner,
                    claim.attempts + 1,
                    millis(not_before)
                ],
            )
            .map_err(store_error)?;
        Ok(())
    }

    fn ready_installations(&self, now: SystemTime) -> Result<Vec<InstallationId>, PendingError> {
        self.maybe_reap();
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT DISTINCT installation FROM pending
                 WHERE claimed_by IS NULL AND (not_before IS NULL OR not_before <= ?1)
                 AND installation NOT IN (SELECT installation FROM pauses WHERE until_ms > ?1)",
            )
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
            .query_row(
                "SELECT min(t) FROM (
                     SELECT min(not_before) AS t FROM pending WHERE claimed_by IS NULL AND not_before > ?1
                     UNION ALL SELECT min(until_ms) FROM pauses WHERE until_ms > ?1)",
                params![now],
                |row| row.get::<_, Option<i64>>(0),
            )
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
            .query_row("SELECT count(*) FROM pending", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .unwrap_or(0)
    }

    fn oldest_received(&self) -> Option<SystemTime> {
        let connection = self.connection();
        connection
            .query_row("SELECT min(received_ms) FROM pending", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten()
            .map(from_millis)
    }
}

/// Stores created before `received_ms` existed get the column; inside a
/// write transaction, so that workers opening the store together add it once.
fn add_received_column(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let outcome = (|| {
        let present: bool = connection.query_row(
            "SELECT count(*) FROM pragma_table_info('pending') WHERE name = 'received_ms'",
            [],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !present {
            connection.execute_batch("ALTER TABLE pending ADD COLUMN received_ms INTEGER")?;
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => connection.execute_batch("COMMIT"),
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn key(item: &WorkItem) -> (i64, &str, &'static str, String) {
    match item {
        WorkItem::PullRequest(pull) => (
            pull.installation.0 as i64,
            pull.repo.0.as_str(),
            "pull_request",
            pull.number.0.to_string(),
        ),
        WorkItem::MergeGroup {
            installation,
            repo,
            head_sha,
        } => (
            installation.0 as i64,
            repo.0.as_str(),
            "merge_group",
            head_sha.clone(),
        ),
    }
}

fn item_from_row(
    installation: InstallationId,
    repo: String,
    kind: &str,
    target: String,
) -> Result<WorkItem, PendingError> {
    let repo = RepoName(repo);
    match kind {
        "pull_request" => {
            let number = target.parse().map_err(|_| {
                PendingError(format!("bad pull request number {target:?} in store"))
            })?;
            Ok(WorkItem::PullRequest(PullRequestRef {
                installation,
                repo,
                number: PullNumber(number),
            }))
        }
        "merge_group" => Ok(WorkItem::MergeGroup {
            installation,
            repo,
            head_sha: target,
        }),
        other => Err(PendingError(format!("unknown kind {other:?} in store"))),
    }
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
    fn a_delivery_id_is_handled_once() {
        let dir = temp_dir("dedupe");
        let store = SqlitePendingSet::open(&dir).unwrap();
        assert_eq!(store.add(pull(1, 1), "same").unwrap(), Added::New);
        let claim = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        store.done(&claim).unwrap();
        assert_eq!(
            store.add(pull(1, 1), "same").unwrap(),
            Added::DuplicateDelivery
        );
        assert!(store.is_empty());
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
    fn a_claim_counts_from_the_oldest_delivery_it_answers() {
        let dir = temp_dir("received");
        let store = SqlitePendingSet::open(&dir).unwrap();
        store.add(pull(1, 7), "d1").unwrap();
        let first_seen = store.oldest_received().expect("one item waits");
        std::thread::sleep(Duration::from_millis(5));
        store.add(pull(1, 7), "d2").unwrap();
        let claim = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(claim.received_at, first_seen, "coalescing keeps the first");
        std::thread::sleep(Duration::from_millis(5));
        store.add(pull(1, 7), "d3").unwrap();
        let during_claim = store.oldest_received().unwrap();
        assert!(during_claim > first_seen, "the next turn answers d3");
        store.add(pull(1, 7), "d4").unwrap();
        store.done(&claim).unwrap();
        let again = store
            .claim(InstallationId(1), SystemTime::now() + RECHECK_DELAY)
            .unwrap()
            .unwrap();
        assert_eq!(again.received_at, during_claim);
        store.done(&again).unwrap();
        assert_eq!(store.oldest_received(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_store_from_before_received_ms_gets_the_column() {
        let dir = temp_dir("migrate");
        {
            let connection = Connection::open(dir.join(DATABASE_FILE)).unwrap();
            connection
                .execute_batch(&SCHEMA.replace(
                    "received_ms  INTEGER,            -- unix ms of the oldest delivery not yet answered\n",
                    "",
                ))
                .unwrap();
            connection
                .execute(
                    "INSERT INTO pending (installation, repo, kind, target, delivery_id)
                     VALUES (1, 'octo/repo', 'pull_request', '3', 'old')",
                    [],
                )
                .unwrap();
        }
        let store = SqlitePendingSet::open(&dir).unwrap();
        let before = SystemTime::now() - Duration::from_millis(1);
        let claim = store
            .claim(InstallationId(1), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(claim.delivery_id, "old");
        assert!(
            claim.received_at >= before,
            "unknown arrival counts from the claim"
        );
        store.done(&claim).unwrap();
        drop(store);
        SqlitePendingSet::open(&dir).expect("reopens once migrated");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
