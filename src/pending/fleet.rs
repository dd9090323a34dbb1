//! What the workers of a host tell the operator through the shared store:
//! each worker's figures (the `workers` table) and the items given up on
//! (the `dropped` table), and the read-only queries `task-list-bot status`
//! answers from.
//!
//! Both tables stay small: a worker rewrites its one row every few seconds
//! (rows of workers gone for [`WORKER_ROW_KEEP`] are pruned), and dropped
//! items are kept for [`DROPPED_KEEP`], at most [`DROPPED_MAX_ROWS`] of them.
//! Pruning rides on the heartbeat's own transaction, so it never takes the
//! write lock on its own.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, params};

use crate::github::InstallationId;

use super::WorkItem;

/// The tables of this module; created with the store's own schema.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workers (
    owner        TEXT PRIMARY KEY,   -- the owner lock's name, owners/<owner>.lock
    name         TEXT    NOT NULL,   -- WORKER, e.g. bot@1
    pid          INTEGER NOT NULL,
    started_ms   INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    deliveries   INTEGER NOT NULL DEFAULT 0,
    writes       INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    dropped      INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS workers_heartbeat ON workers (heartbeat_ms);
CREATE TABLE IF NOT EXISTS dropped (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
    installation INTEGER NOT NULL,
    repo         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- as in pending: 'pull_request', 'merge_group' or 'retire'
    target       TEXT    NOT NULL,   -- the pull request number or the merge commit
    cause        TEXT    NOT NULL,
    worker       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS dropped_at ON dropped (at_ms);
";

/// How long the row of a worker that stopped heartbeating stays visible
/// (as not alive) before it is pruned.
pub const WORKER_ROW_KEEP: Duration = Duration::from_secs(3600);

/// How long a dropped item is remembered.
pub const DROPPED_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Dropped items remembered at most, however many were dropped in a day.
pub const DROPPED_MAX_ROWS: i64 = 1000;

/// One worker's figures as it records them in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFigures {
    /// The worker's name (`WORKER`, e.g. `bot@1`).
    pub name: String,
    pub pid: u32,
    pub started: SystemTime,
    pub deliveries: u64,
    pub writes: u64,
    pub unchanged: u64,
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// An item the worker gave up on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedItem {
    pub item: WorkItem,
    pub cause: String,
    pub at: SystemTime,
}

/// Writes `figures` as `owner`'s row, with `now` as its heartbeat, and
/// prunes rows of long-gone workers and old dropped items.
pub(super) fn record_worker(
    connection: &mut Connection,
    owner: &str,
    figures: &WorkerFigures,
    now: SystemTime,
) -> rusqlite::Result<()> {
    let now_ms = millis(now);
    let transaction = connection.transaction()?;
    transaction
        .prepare_cached(
            "INSERT INTO workers (owner, name, pid, started_ms, heartbeat_ms, deliveries, writes,
                 unchanged, dropped, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (owner) DO UPDATE SET name = excluded.name, pid = excluded.pid,
                 started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms,
                 deliveries = excluded.deliveries, writes = excluded.writes,
                 unchanged = excluded.unchanged, dropped = excluded.dropped,
                 last_error = excluded.last_error",
        )?
        .execute(params![
            owner,
            figures.name,
            figures.pid,
            millis(figures.started),
            now_ms,
            figures.deliveries as i64,
            figures.writes as i64,
            figures.unchanged as i64,
            figures.dropped as i64,
            figures.last_error,
        ])?;
    transaction
        .prepare_cached("DELETE FROM workers WHERE heartbeat_ms < ?1")?
        .execute(params![now_ms - WORKER_ROW_KEEP.as_millis() as i64])?;
    transaction
        .prepare_cached(
            "DELETE FROM dropped WHERE at_ms < ?1
                 OR id <= (SELECT max(id) FROM dropped) - ?2",
        )?
        .execute(params![
            now_ms - DROPPED_KEEP.as_millis() as i64,
            DROPPED_MAX_ROWS
        ])?;
    transaction.commit()
}

/// Remembers that `owner` gave up on `dropped`, under the worker's name
/// when it has recorded one.
pub(super) fn record_dropped(
    connection: &Connection,
    owner: &str,
    dropped: &DroppedItem,
) -> rusqlite::Result<()> {
    let (installation, repo, kind, target) = super::row::key(&dropped.item);
    connection
        .prepare_cached(
            "INSERT INTO dropped (at_ms, installation, repo, kind, target, cause, worker)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                 coalesce((SELECT name FROM workers WHERE owner = ?7), ?7))",
        )?
        .execute(params![
            millis(dropped.at),
            installation,
            repo,
            kind,
            target,
            dropped.cause,
            owner
        ])?;
    Ok(())
}

/// A worker's row as `status` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    pub owner: String,
    pub figures: WorkerFigures,
    pub heartbeat: SystemTime,
    /// Whether its owner lock is held right now: the process lives.
    pub lock_held: bool,
}

/// Pending items of one installation as `status` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationBacklog {
    pub installation: InstallationId,
    pub items: u64,
    pub claimed: u64,
    pub oldest: SystemTime,
}

/// An item a worker is working on right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedItem {
    pub installation: InstallationId,
    pub repo: String,
    pub kind: String,
    pub target: String,
    /// The claiming worker's name, or its owner name if it has no row.
    pub worker: String,
}

/// A pause as `status` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRow {
    pub installation: InstallationId,
    pub until: SystemTime,
}

/// A dropped item as `status` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedRow {
    pub at: SystemTime,
    pub installation: InstallationId,
    pub repo: String,
    pub kind: String,
    pub target: String,
    pub cause: String,
    pub worker: String,
}

/// Everything `status` shows, read in one read transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSnapshot {
    pub workers: Vec<WorkerRow>,
    pub backlog: Vec<InstallationBacklog>,
    pub claimed: Vec<ClaimedItem>,
    pub pauses: Vec<PauseRow>,
    pub dropped: Vec<DroppedRow>,
}

/// Claimed items and dropped items listed at most.
pub const LISTED_MAX: i64 = 100;

/// Why the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FleetReadError {
    #[error("no store at {0}")]
    Missing(std::path::PathBuf),
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the store at {0} stayed busy; try again")]
    Busy(std::path::PathBuf),
    #[error("cannot read {path}: {source}")]
    Sqlite {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
}

/// Reads the fleet's state from the store in `state_dir`, read-only: it
/// takes no write lock and creates nothing but SQLite's shared-memory
/// index when it is missing. A store busy for longer than `patience`
/// (another process recovering the journal) is reported as busy.
pub fn read_fleet(
    state_dir: &Path,
    now: SystemTime,
    patience: Duration,
) -> Result<FleetSnapshot, FleetReadError> {
    let path = state_dir.join(super::DATABASE_FILE);
    match std::fs::metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FleetReadError::Missing(path));
        }
        Err(source) => return Err(FleetReadError::Unreadable { path, source }),
    }
    // Opening a file SQLite cannot read only fails at the first statement;
    // a plain open tells permission problems apart.
    if let Err(source) = File::open(&path) {
        return Err(FleetReadError::Unreadable { path, source });
    }
    let sqlite_error = |source: rusqlite::Error| match &source {
        rusqlite::Error::SqliteFailure(error, _)
            if matches!(
                error.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            FleetReadError::Busy(path.clone())
        }
        _ => FleetReadError::Sqlite {
            path: path.clone(),
            source,
        },
    };
    let mut connection = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    connection.busy_timeout(patience).map_err(sqlite_error)?;
    let transaction = connection.transaction().map_err(sqlite_error)?;
    let snapshot = read_all(&transaction, state_dir, now).map_err(sqlite_error)?;
    drop(transaction);
    Ok(snapshot)
}

fn read_all(
    connection: &Connection,
    state_dir: &Path,
    now: SystemTime,
) -> rusqlite::Result<FleetSnapshot> {
    let has_fleet_tables: i64 = connection.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('workers', 'dropped')",
        [],
        |row| row.get(0),
    )?;
    let owners_dir = state_dir.join("owners");
    let workers = if has_fleet_tables == 2 {
        let mut statement = connection.prepare(
            "SELECT owner, name, pid, started_ms, heartbeat_ms, deliveries, writes, unchanged,
                 dropped, last_error
             FROM workers ORDER BY name, started_ms",
        )?;
        let rows = statement.query_map([], |row| {
            let owner: String = row.get(0)?;
            Ok(WorkerRow {
                lock_held: lock_is_held(&owners_dir.join(format!("{owner}.lock"))),
                owner,
                figures: WorkerFigures {
                    name: row.get(1)?,
                    pid: row.get(2)?,
                    started: from_millis(row.get(3)?),
                    deliveries: row.get::<_, i64>(5)? as u64,
                    writes: row.get::<_, i64>(6)? as u64,
                    unchanged: row.get::<_, i64>(7)? as u64,
                    dropped: row.get::<_, i64>(8)? as u64,
                    last_error: row.get(9)?,
                },
                heartbeat: from_millis(row.get(4)?),
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    let now_ms = millis(now);
    let backlog = {
        let mut statement = connection.prepare(
            "SELECT installation, count(*), count(claimed_by), min(coalesce(received_ms, ?1))
             FROM pending GROUP BY installation ORDER BY installation",
        )?;
        let rows = statement.query_map(params![now_ms], |row| {
            Ok(InstallationBacklog {
                installation: InstallationId(row.get::<_, i64>(0)? as u64),
                items: row.get::<_, i64>(1)? as u64,
                claimed: row.get::<_, i64>(2)? as u64,
                oldest: from_millis(row.get(3)?),
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let worker_name = if has_fleet_tables == 2 {
        "coalesce((SELECT name FROM workers WHERE owner = pending.claimed_by), claimed_by)"
    } else {
        "claimed_by"
    };
    let claimed = {
        let mut statement = connection.prepare(&format!(
            "SELECT installation, repo, kind, target, {worker_name} FROM pending
             WHERE claimed_by IS NOT NULL ORDER BY installation, sequence LIMIT ?1"
        ))?;
        let rows = statement.query_map(params![LISTED_MAX], |row| {
            Ok(ClaimedItem {
                installation: InstallationId(row.get::<_, i64>(0)? as u64),
                repo: row.get(1)?,
                kind: row.get(2)?,
                target: row.get(3)?,
                worker: row.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let pauses = {
        let mut statement = connection.prepare(
            "SELECT installation, until_ms FROM pauses WHERE until_ms > ?1 ORDER BY installation",
        )?;
        let rows = statement.query_map(params![now_ms], |row| {
            Ok(PauseRow {
                installation: InstallationId(row.get::<_, i64>(0)? as u64),
                until: from_millis(row.get(1)?),
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let dropped = if has_fleet_tables == 2 {
        let mut statement = connection.prepare(
            "SELECT at_ms, installation, repo, kind, target, cause, worker FROM dropped
             WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(
            params![now_ms - DROPPED_KEEP.as_millis() as i64, LISTED_MAX],
            |row| {
                Ok(DroppedRow {
                    at: from_millis(row.get(0)?),
                    installation: InstallationId(row.get::<_, i64>(1)? as u64),
                    repo: row.get(2)?,
                    kind: row.get(3)?,
                    target: row.get(4)?,
                    cause: row.get(5)?,
                    worker: row.get(6)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(FleetSnapshot {
        workers,
        backlog,
        claimed,
        pauses,
        dropped,
    })
}

/// Whether some process holds the lock on `path`. A shared lock is tried
/// (and let go at once): it fails only while a worker holds its exclusive
/// one, and it never takes a worker's place.
fn lock_is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // SAFETY: flock on an fd we own; closing the file releases the lock.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{PullNumber, PullRequestRef, RepoName};
    use crate::pending::{PendingSet, SqlitePendingSet};

    fn figures(name: &str) -> WorkerFigures {
        WorkerFigures {
            name: name.into(),
            pid: 1,
            started: SystemTime::now(),
            deliveries: 0,
            writes: 0,
            unchanged: 0,
            dropped: 0,
            last_error: None,
        }
    }

    fn dropped(number: u64, at: SystemTime) -> DroppedItem {
        DroppedItem {
            item: WorkItem::PullRequest(PullRequestRef {
                installation: InstallationId(1),
                repo: RepoName("octo/repo".into()),
                number: PullNumber(number),
            }),
            cause: "gone".into(),
            at,
        }
    }

    #[test]
    fn rows_of_gone_workers_and_old_or_surplus_drops_are_pruned_by_the_heartbeat() {
        let dir = std::env::temp_dir().join(format!(
            "tlb-fleet-prune-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let store = SqlitePendingSet::open(&dir).unwrap();
        let now = SystemTime::now();
        let long_ago = now - WORKER_ROW_KEEP - Duration::from_secs(1);
        {
            let gone = SqlitePendingSet::open(&dir).unwrap();
            gone.record_worker(&figures("bot@9"), long_ago).unwrap();
            gone.record_worker(&figures("bot@8"), now).unwrap();
        }
        store.record_worker(&figures("bot@1"), now).unwrap();
        store
            .record_dropped(&dropped(1, now - DROPPED_KEEP - Duration::from_secs(1)))
            .unwrap();
        for number in 0..DROPPED_MAX_ROWS as u64 + 5 {
            store.record_dropped(&dropped(number, now)).unwrap();
        }
        store.record_worker(&figures("bot@1"), now).unwrap();

        let fleet = read_fleet(&dir, now, Duration::from_secs(1)).unwrap();
        let names: Vec<&str> = fleet
            .workers
            .iter()
            .map(|w| w.figures.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["bot@1", "bot@8"],
            "a recent dead worker stays visible"
        );
        assert!(fleet.workers[0].lock_held && !fleet.workers[1].lock_held);
        assert_eq!(fleet.dropped.len(), LISTED_MAX as usize, "listed, bounded");
        assert_eq!(
            fleet.dropped[0].worker, "bot@1",
            "named after its worker row"
        );
        let kept: i64 = Connection::open(dir.join(crate::pending::DATABASE_FILE))
            .unwrap()
            .query_row("SELECT count(*) FROM dropped", [], |row| row.get(0))
            .unwrap();
        assert_eq!(kept, DROPPED_MAX_ROWS, "kept, bounded by count and age");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
