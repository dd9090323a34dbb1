//! The pending set shared by every worker of every host: PostgreSQL, chosen
//! by `DATABASE_URL` (or the `database-url` credential).
//!
//! The semantics are the SQLite store's (see `sqlite.rs`), across hosts:
//!
//! - `add` commits before the delivery is answered; deliveries that arrive
//!   together share one transaction (the store thread's group commit). An
//!   item is one row, inserted or coalesced by one `INSERT … ON CONFLICT DO
//!   UPDATE`, so that two hosts recording the same pull request never race.
//! - `claim` takes the oldest ready row with `FOR UPDATE SKIP LOCKED`: two
//!   workers never wait for each other and never take the same row.
//! - A claim names its owner, and an owner lives by a **lease**: a row in
//!   `owners` whose `lease_until` a heartbeat task pushes forward every
//!   [`PgOptions::heartbeat`]. Every worker's upkeep returns the claims of
//!   owners whose lease ran out (the host died, froze, or lost the network)
//!   to the pool, within about [`PgOptions::lease`]. A lease rather than a
//!   session-level advisory lock: a lock lives on one connection, so it ties
//!   liveness to that connection rather than to the process (a pooler in
//!   transaction mode, or a reconnect, silently drops it), and a connection
//!   that is half-open stays "alive" until TCP keep-alives give up, minutes
//!   later. The lease compares the database's own clock with itself, so
//!   hosts' clocks need not agree.
//! - Pauses are rows every worker of every host reads before claiming.
//! - Wake-ups: `NOTIFY` in the transaction that adds work (PostgreSQL
//!   delivers it on commit) and `LISTEN` on a connection of its own; the
//!   worker loop's one-second poll stays as the backstop.
//! - The schema is migrated at start by refinery, under an advisory lock so
//!   that workers starting together apply each migration once.
//!
//! The trait is synchronous and its calls come from the store thread (see
//! [`Store`](super::Store)); this store runs its async client on a small
//! runtime of its own and waits for each answer, for at most
//! [`CALL_TIMEOUT`], so that a database that does not answer turns into an
//! error (a 503 for a delivery) well within GitHub's 10 s.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_postgres::NoTls;

use super::fleet::{
    ClaimedItem, DROPPED_KEEP, DROPPED_MAX_ROWS, DroppedRow, FleetSnapshot, InstallationBacklog,
    LISTED_MAX, PauseRow, WORKER_ROW_KEEP, WorkerRow,
};
use super::row::{item_from_row, key};
use super::{
    Added, Backlog, Changed, Claim, DELIVERY_MEMORY, DroppedItem, FleetCeiling, Pause,
    PendingError, PendingSet, RECHECK_DELAY, WorkItem, WorkerFigures,
};
use crate::github::InstallationId;

mod embedded {
    refinery::embed_migrations!("src/pending/postgres_migrations");
}

/// How long one store call may take, connection included, before it
/// counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may go without an answer from the server before
/// it counts as dead.
const DEAD_PEER: Duration = Duration::from_secs(15);

/// Connections per worker process: the store thread uses one at a time;
/// the heartbeat and a call that outlived its timeout may hold others.
/// `LISTEN` has a connection of its own besides.
pub const POOL_SIZE: usize = 4;

/// The channel `NOTIFY` wakes workers on.
const CHANNEL: &str = "task_list_bot_pending";

/// The advisory lock key migrations run under ("tlb-migr" in ASCII).
const MIGRATION_LOCK: i64 = 0x746c_622d_6d69_6772;

/// Rows forgotten per statement when old delivery ids are pruned.
const PRUNE_BATCH: i64 = 500;

/// Tries of a transaction that PostgreSQL aborted for a deadlock or a
/// serialization failure (two hosts recording overlapping batches).
const TRANSACTION_TRIES: u32 = 3;

/// How a worker's liveness is kept; tests shorten both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// How long claims stay with an owner that stopped heartbeating.
    pub lease: Duration,
    /// How often the lease is renewed.
    pub heartbeat: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://` or
/// `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with its password (in the authority or as a `password=`
/// parameter) replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = redacted.find("://") {
        let rest = scheme_end + 3;
        let authority_end = redacted[rest..]
            .find(['/', '?', '#'])
            .map_or(redacted.len(), |i| rest + i);
        if let Some(at) = redacted[rest..authority_end].rfind('@') {
            let userinfo = &redacted[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                redacted.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    let mut out = String::with_capacity(redacted.len());
    let mut remaining = redacted.as_str();
    while let Some(found) = remaining.to_ascii_lowercase().find("password=") {
        let value_start = found + "password=".len();
        out.push_str(&remaining[..value_start]);
        out.push_str("***");
        let value_end = remaining[value_start..]
            .find(['&', ' '])
            .map_or(remaining.len(), |i| value_start + i);
        remaining = &remaining[value_end..];
    }
    out.push_str(remaining);
    out
}

/// A [`PendingSet`] in a PostgreSQL database shared by the workers of
/// every host.
pub struct PostgresPendingSet {
    shared: Arc<Shared>,
    /// Runs the client, the heartbeat and `LISTEN`; `None` once shut down.
    runtime: Option<tokio::runtime::Runtime>,
    released: AtomicBool,
}

struct Shared {
    pool: Pool,
    owner: String,
    host: String,
    options: PgOptions,
    changed: Notify,
}

impl PostgresPendingSet {
    /// Connects to `url`, migrates the schema, registers this process as an
    /// owner and starts its heartbeat and `LISTEN`.
    pub fn open(url: &SecretString, options: PgOptions) -> crate::Result<PostgresPendingSet> {
        use anyhow::Context as _;
        let shown = redact_url(url.expose_secret());
        let mut config = tokio_postgres::Config::from_str(url.expose_secret())
            .map_err(|e| anyhow::anyhow!("DATABASE_URL {shown}: {e}"))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            anyhow::bail!(
                "DATABASE_URL {shown}: sslmode=require, but the bot connects without TLS; \
                 reach the database over a private network, a Unix socket or a tunnel \
                 and leave sslmode out"
            );
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CALL_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("task-list-bot");
        }
        // A connection whose peer vanished (a host or network gone, no
        // reset) must fail in seconds, not after TCP's two hours: unanswered
        // sends give up after DEAD_PEER, idle connections are probed.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEAD_PEER);
        }
        if config.get_keepalives_interval().is_none() {
            config
                .keepalives_idle(DEAD_PEER)
                .keepalives_interval(Duration::from_secs(5))
                .keepalives_retries(3);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pending-postgres")
            .enable_all()
            .build()
            .context("starting the PostgreSQL client's runtime")?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Last in, first out: a burst's batches go to the connection used
        // last, whose statements are prepared and whose server process has
        // the tables' catalog at hand, not to a cold one in turn.
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .build()
            .context("building the PostgreSQL connection pool")?;
        let shared = Arc::new(Shared {
            pool,
            owner: owner_name(),
            host: host_name(),
            options,
            changed: Notify::new(),
        });
        let migrate_config = config.clone();
        let setup = Arc::clone(&shared);
        block_on(&runtime, CALL_TIMEOUT * 6, async move {
            migrate(&migrate_config).await?;
            setup.renew_lease().await?;
            // An empty batch prepares the recording statements and runs
            // the two that read, so that the first deliveries after a start
            // do not wait for the server to load the tables' catalog
            // (several milliseconds on a fresh connection).
            let client = setup.client().await?;
            record_all(client, &[]).await.map_err(db_error)?;
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("PostgreSQL at {shown}: {}", e.0))?;
        runtime.spawn(heartbeat(Arc::clone(&shared)));
        runtime.spawn(listen(config, Arc::clone(&shared)));
        Ok(PostgresPendingSet {
            shared,
            runtime: Some(runtime),
            released: AtomicBool::new(false),
        })
    }

    /// This process's name in claims.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// Runs `work` on this store's runtime and waits for its answer.
    fn run<T, F>(&self, work: impl FnOnce(Arc<Shared>) -> F) -> Result<T, PendingError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PendingError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(PendingError("the PostgreSQL store is shut down".into()));
        };
        block_on(runtime, CALL_TIMEOUT, work(Arc::clone(&self.shared)))
    }

    /// Returns the claims of owners whose lease ran out to the pool and
    /// forgets those owners; returns how many claims came back.
    pub fn reap_dead_owners(&self) -> Result<u64, PendingError> {
        self.run(|shared| async move { shared.reap().await })
    }

    /// Stops this process's heartbeat and closes its connections without
    /// giving anything back, as a crashed or frozen host would.
    #[doc(hidden)]
    pub fn crash_for_test(mut self) {
        self.released.store(true, Ordering::Relaxed);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Records `count` delivery ids seen at `seen`, for tests of the pruning.
    #[doc(hidden)]
    pub fn remember_deliveries_for_test(
        &self,
        prefix: &str,
        count: usize,
        seen: SystemTime,
    ) -> Result<(), PendingError> {
        let prefix = prefix.to_owned();
        self.run(move |shared| async move {
            let client = shared.client().await?;
            client
                .execute(
                    "INSERT INTO deliveries (id, seen_ms)
                     SELECT $1 || '-' || i, $2 FROM generate_series(1, $3::bigint) AS i
                     ON CONFLICT (id) DO NOTHING",
                    &[&prefix, &millis(seen), &(count as i64)],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    /// Delivery ids remembered, for tests of the pruning.
    pub fn remembered_deliveries(&self) -> Result<usize, PendingError> {
        self.run(|shared| async move {
            let client = shared.client().await?;
            let row = client
                .query_one("SELECT count(*) FROM deliveries", &[])
                .await
                .map_err(db_error)?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }
}

/// Reads what `task-list-bot status` shows from the fleet's database, in
/// one read-only transaction: nothing is created, migrated or locked. A
/// worker is alive while its lease holds; workers are named `host/WORKER`.
pub fn read_fleet(url: &SecretString, now: SystemTime) -> Result<FleetSnapshot, PendingError> {
    let config = tokio_postgres::Config::from_str(url.expose_secret())
        .map_err(|e| PendingError(format!("not a PostgreSQL URL: {e}")))?;
    // A thread of its own: the caller may be on an async runtime.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PendingError(format!("starting a runtime: {e}")))?;
        runtime.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, read_snapshot(&config, now))
                .await
                .unwrap_or_else(|_| {
                    Err(PendingError(format!(
                        "the database did not answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    )))
                })
        })
    })
    .join()
    .unwrap_or_else(|_| Err(PendingError("reading the fleet panicked".into())))
}

async fn read_snapshot(
    config: &tokio_postgres::Config,
    now: SystemTime,
) -> Result<FleetSnapshot, PendingError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(db_error)?;
    let driver = tokio::spawn(connection);
    let transaction = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(db_error)?;
    let now_ms = millis(now);
    let workers = transaction
        .query(
            "SELECT w.owner, w.host || '/' || w.name, w.pid, w.started_ms, w.heartbeat_ms,
                 w.deliveries, w.writes, w.unchanged, w.dropped, w.last_error,
                 EXISTS (SELECT 1 FROM owners o
                         WHERE o.owner = w.owner AND o.lease_until >= now())
             FROM workers w ORDER BY w.host, w.name, w.started_ms",
            &[],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| WorkerRow {
            owner: row.get(0),
            figures: WorkerFigures {
                name: row.get(1),
                pid: row.get::<_, i64>(2) as u32,
                started: from_millis(row.get(3)),
                deliveries: row.get::<_, i64>(5) as u64,
                writes: row.get::<_, i64>(6) as u64,
                unchanged: row.get::<_, i64>(7) as u64,
                dropped: row.get::<_, i64>(8) as u64,
                last_error: row.get(9),
            },
            heartbeat: from_millis(row.get(4)),
            lock_held: row.get(10),
        })
        .collect();
    let backlog = transaction
        .query(
            "SELECT installation, count(*), count(claimed_by), min(coalesce(received_ms, $1))
             FROM pending GROUP BY installation ORDER BY installation",
            &[&now_ms],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| InstallationBacklog {
            installation: InstallationId(row.get::<_, i64>(0) as u64),
            items: row.get::<_, i64>(1) as u64,
            claimed: row.get::<_, i64>(2) as u64,
            oldest: from_millis(row.get(3)),
        })
        .collect();
    let claimed = transaction
        .query(
            "SELECT installation, repo, kind, target,
                 coalesce((SELECT host || '/' || name FROM workers
                           WHERE owner = pending.claimed_by), claimed_by)
             FROM pending WHERE claimed_by IS NOT NULL
             ORDER BY installation, sequence LIMIT $1",
            &[&LISTED_MAX],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| ClaimedItem {
            installation: InstallationId(row.get::<_, i64>(0) as u64),
            repo: row.get(1),
            kind: row.get(2),
            target: row.get(3),
            worker: row.get(4),
        })
        .collect();
    let pauses = transaction
        .query(
            "SELECT installation, until_ms FROM pauses WHERE until_ms > $1 ORDER BY installation",
            &[&now_ms],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| PauseRow {
            installation: InstallationId(row.get::<_, i64>(0) as u64),
            until: from_millis(row.get(1)),
        })
        .collect();
    let dropped = transaction
        .query(
            "SELECT at_ms, installation, repo, kind, target, cause, worker FROM dropped
             WHERE at_ms >= $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
            &[&(now_ms - DROPPED_KEEP.as_millis() as i64), &LISTED_MAX],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| DroppedRow {
            at: from_millis(row.get(0)),
            installation: InstallationId(row.get::<_, i64>(1) as u64),
            repo: row.get(2),
            kind: row.get(3),
            target: row.get(4),
            cause: row.get(5),
            worker: row.get(6),
        })
        .collect();
    transaction.commit().await.map_err(db_error)?;
    drop(client);
    let _ = driver.await;
    Ok(FleetSnapshot {
        workers,
        backlog,
        claimed,
        pauses,
        dropped,
    })
}

/// Runs `future` on `runtime`, waiting at most `limit`. Works from any
/// thread, an async runtime's included (the caller's thread only waits).
fn block_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    limit: Duration,
    future: impl Future<Output = Result<T, PendingError>> + Send + 'static,
) -> Result<T, PendingError> {
    let (answer, answered) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let outcome = tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| {
                Err(PendingError(format!(
                    "the database did not answer within {} s",
                    limit.as_secs()
                )))
            });
        let _ = answer.send(outcome);
    });
    answered
        .recv()
        .unwrap_or_else(|_| Err(PendingError("the PostgreSQL store is shut down".into())))
}

/// Applies the embedded migrations, one worker at a time.
async fn migrate(config: &tokio_postgres::Config) -> Result<(), PendingError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(db_error)?;
    let driver = tokio::spawn(connection);
    // Session-level: released by the unlock below, or by PostgreSQL when
    // this connection ends, however it ends.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    let outcome = embedded::migrations::runner()
        .set_migration_table_name("task_list_bot_migrations")
        .run_async(&mut client)
        .await
        .map_err(|e| PendingError(format!("migrating the schema: {e}")));
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = driver.await;
    outcome.map(|report| {
        for migration in report.applied_migrations() {
            tracing::info!(migration = %migration, "applied a schema migration");
        }
    })
}

/// Renews this process's lease until the runtime stops.
async fn heartbeat(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(shared.options.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match tokio::time::timeout(CALL_TIMEOUT, shared.renew_lease()).await {
            Ok(Ok(())) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("the lease on this worker's claims is renewed again");
                }
            }
            Ok(Err(PendingError(error))) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cannot renew the lease on this worker's claims");
                }
            }
            Err(_) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!("the database did not answer the heartbeat in time");
                }
            }
        }
    }
}

/// Wakes this process's workers when another process adds work: `LISTEN`
/// on a connection of its own, reconnecting when it breaks.
async fn listen(config: tokio_postgres::Config, shared: Arc<Shared>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let listening = async {
                    client
                        .batch_execute(&format!("LISTEN {CHANNEL}"))
                        .await
                        .map_err(db_error)
                };
                // The connection must be polled for LISTEN to be answered.
                let mut listening = std::pin::pin!(listening);
                let ready = loop {
                    tokio::select! {
                        outcome = &mut listening => break outcome,
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                            if !matches!(message, Some(Ok(_))) {
                                break Err(PendingError("the LISTEN connection closed".into()));
                            }
                        }
                    }
                };
                if ready.is_ok() {
                    // Anything added while not listening is found now.
                    shared.changed.notify_waiters();
                    while let Some(Ok(message)) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        if matches!(message, tokio_postgres::AsyncMessage::Notification(_)) {
                            shared.changed.notify_waiters();
                        }
                    }
                }
            }
            Err(error) => {
                tracing::debug!(error = %db_error(error), "LISTEN connection failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Shared {
    async fn client(&self) -> Result<deadpool_postgres::Object, PendingError> {
        self.pool
            .get()
            .await
            .map_err(|e| PendingError(format!("no database connection: {e}")))
    }

    async fn renew_lease(&self) -> Result<(), PendingError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO owners (owner, host, lease_until)
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond')
                 ON CONFLICT (owner) DO UPDATE SET lease_until = EXCLUDED.lease_until",
            )
            .await
            .map_err(db_error)?;
        let lease_ms = self.options.lease.as_millis() as f64;
        client
            .execute(&statement, &[&self.owner, &self.host, &lease_ms])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn reap(&self) -> Result<u64, PendingError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "WITH gone AS (DELETE FROM owners WHERE lease_until < now() RETURNING owner)
                 UPDATE pending SET claimed_by = NULL, added_again = false, again_received_ms = NULL
                 WHERE claimed_by IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM owners WHERE owners.owner = pending.claimed_by
                     AND owners.lease_until >= now())",
            )
            .await
            .map_err(db_error)?;
        let returned = client.execute(&statement, &[]).await.map_err(db_error)?;
        if returned > 0 {
            tracing::warn!(
                claims = returned,
                "returned the claims of workers whose lease ran out"
            );
            client
                .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .await
                .map_err(db_error)?;
        }
        Ok(returned)
    }
}

fn db_error(error: tokio_postgres::Error) -> PendingError {
    match error.as_db_error() {
        Some(db) => PendingError(format!(
            "database error {}: {}",
            db.code().code(),
            db.message()
        )),
        None => PendingError(format!("database: {error}")),
    }
}

/// Whether PostgreSQL aborted the transaction only because another one
/// got in its way: trying again is right.
fn worth_retrying(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Remembers a batch's delivery ids; returns those not seen before.
const REMEMBER_DELIVERIES: &str = "
    INSERT INTO deliveries (id, seen_ms) SELECT unnest($1::text[]), $2
    ON CONFLICT (id) DO NOTHING
    RETURNING id";

/// Locks the rows a batch touches, in one order for every host, and says
/// which of them are claimed. Rows another transaction inserts meanwhile
/// are not seen here; the upsert below then waits for that transaction and
/// updates the row it committed.
const LOCK_PENDING: &str = "
    SELECT p.installation, p.repo, p.kind, p.target, p.claimed_by IS NOT NULL
    FROM pending p
    JOIN unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS k(installation, repo, kind, target)
      USING (installation, repo, kind, target)
    ORDER BY p.installation, p.repo, p.kind, p.target
    FOR UPDATE OF p";

/// Records the batch's work, one row per key, in arrival order (claims are
/// first come, first served): a new row waits; a waiting one takes the
/// latest delivery; a claimed one is marked to be done again, since its
/// claimer may have read the state before this delivery.
const UPSERT_PENDING: &str = "
    INSERT INTO pending (installation, repo, kind, target, delivery_id, received_ms)
    SELECT installation, repo, kind, target, delivery_id, $6
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
         WITH ORDINALITY AS batch(installation, repo, kind, target, delivery_id, position)
    ORDER BY position
    ON CONFLICT (installation, repo, kind, target) DO UPDATE SET
        delivery_id = EXCLUDED.delivery_id,
        added_again = pending.claimed_by IS NOT NULL,
        again_received_ms = CASE WHEN pending.claimed_by IS NULL
            THEN pending.again_received_ms
            ELSE coalesce(pending.again_received_ms, EXCLUDED.received_ms) END";

/// A row key: installation, repo, kind, target.
type RowKey<'a> = (i64, &'a str, &'a str, &'a str);

/// Row keys as the four arrays the statements take.
fn key_columns<'a>(keys: &[RowKey<'a>]) -> (Vec<i64>, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    (
        keys.iter().map(|k| k.0).collect(),
        keys.iter().map(|k| k.1).collect(),
        keys.iter().map(|k| k.2).collect(),
        keys.iter().map(|k| k.3).collect(),
    )
}

/// What the batch finds and leaves in one row, delivery by delivery.
struct RowState<'a> {
    exists: bool,
    claimed: bool,
    /// The delivery the row ends up with, when the batch writes it.
    written_by: Option<&'a str>,
}

/// Records `batch` in one transaction, in two round trips to the database
/// and three statements over arrays, whatever its size: a burst's
/// acknowledgements wait for this, and on a busy host every round trip
/// also waits for the database's process to be scheduled. Each delivery's
/// outcome is the one it would have had recorded alone, after the
/// deliveries before it: a delivery seen before (in the database or earlier
/// in the batch) whose work still waits is a duplicate and adds nothing;
/// otherwise it creates its row or joins it. Two hosts recording
/// overlapping batches can deadlock; PostgreSQL then aborts one transaction
/// and the caller tries it again.
async fn record_all(
    client: deadpool_postgres::Object,
    batch: &[(WorkItem, String)],
) -> Result<Vec<Added>, tokio_postgres::Error> {
    let now = millis(SystemTime::now());
    let keys: Vec<_> = batch.iter().map(|(item, _)| key(item)).collect();
    let keys: Vec<RowKey<'_>> = keys
        .iter()
        .map(|(installation, repo, kind, target)| (*installation, *repo, *kind, target.as_str()))
        .collect();
    let mut unique_keys: Vec<RowKey<'_>> = Vec::new();
    let mut rows: HashMap<RowKey<'_>, RowState<'_>> = HashMap::new();
    for row_key in &keys {
        rows.entry(*row_key).or_insert_with(|| {
            unique_keys.push(*row_key);
            RowState {
                exists: false,
                claimed: false,
                written_by: None,
            }
        });
    }
    let mut unique_ids: Vec<&str> = Vec::new();
    let mut listed = HashSet::new();
    for (_, delivery_id) in batch {
        if listed.insert(delivery_id.as_str()) {
            unique_ids.push(delivery_id);
        }
    }

    let remember = client.prepare_cached(REMEMBER_DELIVERIES).await?;
    let lock = client.prepare_cached(LOCK_PENDING).await?;
    let upsert = client.prepare_cached(UPSERT_PENDING).await?;
    let notify = client.prepare_cached("SELECT pg_notify($1, '')").await?;
    let transaction = Uncommitted::new(client);
    let client = transaction.client();
    let (installations, repos, kinds, targets) = key_columns(&unique_keys);
    // Sent together, with BEGIN; they run in this order.
    let (_, remembered, found) = futures_util::future::try_join3(
        client.batch_execute("BEGIN"),
        client.query(&remember, &[&unique_ids, &now]),
        client.query(&lock, &[&installations, &repos, &kinds, &targets]),
    )
    .await?;
    let mut unseen: HashSet<&str> = remembered.iter().map(|row| row.get::<_, &str>(0)).collect();
    for row in &found {
        let row_key: RowKey<'_> = (row.get(0), row.get(1), row.get(2), row.get(3));
        if let Some(state) = rows.get_mut(&row_key) {
            state.exists = true;
            state.claimed = row.get(4);
        }
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    for (row_key, (_, delivery_id)) in keys.iter().zip(batch) {
        // A delivery id is new only the first time the batch names it.
        let first_sight = unseen.remove(delivery_id.as_str());
        let state = rows.get_mut(row_key).expect("every key has a state");
        if !first_sight && state.exists && !state.claimed {
            outcomes.push(Added::DuplicateDelivery);
            continue;
        }
        outcomes.push(if state.exists {
            Added::Coalesced
        } else {
            Added::New
        });
        state.exists = true;
        state.written_by = Some(delivery_id);
    }

    let writes: Vec<(RowKey<'_>, &str)> = unique_keys
        .iter()
        .filter_map(|row_key| rows[row_key].written_by.map(|id| (*row_key, id)))
        .collect();
    // The writes and COMMIT, sent together too: should a write fail, the
    // transaction is aborted, COMMIT rolls it back, and the write's error
    // is what this returns.
    let written_keys: Vec<RowKey<'_>> = writes.iter().map(|(k, _)| *k).collect();
    let (installations, repos, kinds, targets) = key_columns(&written_keys);
    let delivery_ids: Vec<&str> = writes.iter().map(|(_, id)| *id).collect();
    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &installations,
        &repos,
        &kinds,
        &targets,
        &delivery_ids,
        &now,
    ];
    let recorded = async {
        if !writes.is_empty() {
            client.execute(&upsert, &parameters).await?;
        }
        Ok(())
    };
    let notified = async {
        if outcomes.contains(&Added::New) {
            client.execute(&notify, &[&CHANNEL]).await?;
        }
        Ok(())
    };
    futures_util::future::try_join3(recorded, notified, client.batch_execute("COMMIT")).await?;
    transaction.committed();
    Ok(outcomes)
}

/// A pooled connection inside a transaction begun by hand (so that BEGIN
/// and COMMIT travel with the statements). Unless the transaction is
/// marked committed, the connection is taken out of the pool when this is
/// dropped, by an error or a timeout: it never goes back to the pool with
/// a transaction open.
struct Uncommitted {
    client: Option<deadpool_postgres::Object>,
    committed: bool,
}

impl Uncommitted {
    fn new(client: deadpool_postgres::Object) -> Uncommitted {
        Uncommitted {
            client: Some(client),
            committed: false,
        }
    }

    fn client(&self) -> &deadpool_postgres::Object {
        self.client.as_ref().expect("held until dropped")
    }

    fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for Uncommitted {
    fn drop(&mut self) {
        if !self.committed {
            if let Some(client) = self.client.take() {
                // Detached from the pool, the connection closes.
                drop(deadpool_postgres::Object::take(client));
            }
        }
    }
}

impl Drop for PostgresPendingSet {
    fn drop(&mut self) {
        self.release();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PendingSet for PostgresPendingSet {
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError> {
        let added = self.add_many(&[(item, delivery_id.to_owned())])?;
        Ok(added[0])
    }

    fn add_many(&self, batch: &[(WorkItem, String)]) -> Result<Vec<Added>, PendingError> {
        let batch = batch.to_vec();
        self.run(move |shared| async move {
            let mut tries = 0;
            loop {
                tries += 1;
                let client = shared.client().await?;
                match record_all(client, &batch).await {
                    Ok(outcomes) => return Ok(outcomes),
                    Err(error) if worth_retrying(&error) && tries < TRANSACTION_TRIES => {}
                    Err(error) => return Err(db_error(error)),
                }
            }
        })
    }

    fn changed(&self) -> Changed<'_> {
        Box::pin(self.shared.changed.notified())
    }

    fn pause(&self, installation: InstallationId, until: SystemTime) -> Result<(), PendingError> {
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO pauses (installation, until_ms) VALUES ($1, $2)
                     ON CONFLICT (installation) DO UPDATE
                     SET until_ms = greatest(pauses.until_ms, EXCLUDED.until_ms)",
                )
                .await
                .map_err(db_error)?;
            client
                .execute(&statement, &[&(installation.0 as i64), &millis(until)])
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn paused_until(&self, installation: InstallationId, now: SystemTime) -> Option<SystemTime> {
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT until_ms FROM pauses WHERE installation = $1 AND until_ms > $2",
                )
                .await
                .map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&(installation.0 as i64), &millis(now)])
                .await
                .map_err(db_error)?;
            Ok(row.map(|row| from_millis(row.get(0))))
        })
        .ok()
        .flatten()
    }

    fn claim(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<Claim>, PendingError> {
        let now = millis(now);
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let statement = client
                .prepare_cached(concat!(
                    "UPDATE pending SET claimed_by = $3, added_again = false
                     WHERE sequence = (
                         SELECT sequence FROM pending
                         WHERE installation = $1 AND claimed_by IS NULL
                           AND (not_before IS NULL OR not_before <= $2)
                           AND NOT EXISTS (SELECT 1 FROM pauses
                                           WHERE installation = $1 AND until_ms > $2)",
                    retirement_not_blocked!(),
                    " ORDER BY sequence LIMIT 1
                         FOR UPDATE SKIP LOCKED)
                     RETURNING repo, kind, target, delivery_id, attempts, received_ms",
                ))
                .await
                .map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&(installation.0 as i64), &now, &shared.owner])
                .await
                .map_err(db_error)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let kind: String = row.get(1);
            let item = item_from_row(installation, row.get(0), &kind, row.get(2))?;
            Ok(Some(Claim {
                item,
                delivery_id: row.get(3),
                attempts: row.get::<_, i32>(4).max(0) as u32,
                received_at: from_millis(row.get::<_, Option<i64>>(5).unwrap_or(now)),
            }))
        })
    }

    fn done(&self, claim: &Claim) -> Result<(), PendingError> {
        let item = claim.item.clone();
        self.run(move |shared| async move {
            let (installation, repo, kind, target) = key(&item);
            let mut client = shared.client().await?;
            let transaction = client.transaction().await.map_err(db_error)?;
            let delete = transaction
                .prepare_cached(
                    "DELETE FROM pending
                     WHERE installation = $1 AND repo = $2 AND kind = $3 AND target = $4
                       AND claimed_by = $5 AND NOT added_again",
                )
                .await
                .map_err(db_error)?;
            let deleted = transaction
                .execute(
                    &delete,
                    &[&installation, &repo, &kind, &target, &shared.owner],
                )
                .await
                .map_err(db_error)?;
            if deleted == 0 {
                let requeue = transaction
                    .prepare_cached(
                        "UPDATE pending SET claimed_by = NULL, added_again = false, attempts = 0,
                             not_before = $6,
                             received_ms = coalesce(again_received_ms, received_ms),
                             again_received_ms = NULL
                         WHERE installation = $1 AND repo = $2 AND kind = $3 AND target = $4
                           AND claimed_by = $5",
                    )
                    .await
                    .map_err(db_error)?;
                let requeued = transaction
                    .execute(
                        &requeue,
                        &[
                            &installation,
                            &repo,
                            &kind,
                            &target,
                            &shared.owner,
                            &millis(SystemTime::now() + RECHECK_DELAY),
                        ],
                    )
                    .await
                    .map_err(db_error)?;
                if requeued > 0 {
                    transaction
                        .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                        .await
                        .map_err(db_error)?;
                }
            }
            transaction.commit().await.map_err(db_error)
        })
    }

    fn retry_later(&self, claim: &Claim, not_before: SystemTime) -> Result<(), PendingError> {
        let item = claim.item.clone();
        let attempts = claim.attempts.saturating_add(1).min(i32::MAX as u32) as i32;
        self.run(move |shared| async move {
            let (installation, repo, kind, target) = key(&item);
            let client = shared.client().await?;
            let statement = client
                .prepare_cached(
                    "UPDATE pending SET claimed_by = NULL, added_again = false,
                         again_received_ms = NULL, attempts = $6, not_before = $7
                     WHERE installation = $1 AND repo = $2 AND kind = $3 AND target = $4
                       AND claimed_by = $5",
                )
                .await
                .map_err(db_error)?;
            client
                .execute(
                    &statement,
                    &[
                        &installation,
                        &repo,
                        &kind,
                        &target,
                        &shared.owner,
                        &attempts,
                        &millis(not_before),
                    ],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn ready_installations(&self, now: SystemTime) -> Result<Vec<InstallationId>, PendingError> {
        let now = millis(now);
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let statement = client
                .prepare_cached(concat!(
                    "SELECT DISTINCT installation FROM pending
                     WHERE claimed_by IS NULL AND (not_before IS NULL OR not_before <= $1)
                       AND installation NOT IN (SELECT installation FROM pauses WHERE until_ms > $1)",
                    retirement_not_blocked!(),
                    " ORDER BY installation",
                ))
                .await
                .map_err(db_error)?;
            let rows = client.query(&statement, &[&now]).await.map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|row| InstallationId(row.get::<_, i64>(0) as u64))
                .collect())
        })
    }

    fn next_retry(&self) -> Option<SystemTime> {
        let now = millis(SystemTime::now());
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT least(
                         (SELECT min(not_before) FROM pending
                          WHERE claimed_by IS NULL AND not_before > $1),
                         (SELECT min(until_ms) FROM pauses WHERE until_ms > $1))",
                )
                .await
                .map_err(db_error)?;
            let row = client
                .query_one(&statement, &[&now])
                .await
                .map_err(db_error)?;
            Ok(row.get::<_, Option<i64>>(0).map(from_millis))
        })
        .ok()
        .flatten()
    }

    fn len(&self) -> usize {
        self.run(|shared| async move {
            let client = shared.client().await?;
            let row = client
                .query_one("SELECT count(*) FROM pending", &[])
                .await
                .map_err(db_error)?;
            Ok(row.get::<_, i64>(0) as usize)
        })
        .unwrap_or(0)
    }

    fn backlog(&self) -> Result<Vec<Backlog>, PendingError> {
        let now = millis(SystemTime::now());
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let rows = client
                .query(
                    "SELECT installation, count(*), min(coalesce(received_ms, $1)) FROM pending
                     GROUP BY installation ORDER BY installation",
                    &[&now],
                )
                .await
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|row| Backlog {
                    installation: InstallationId(row.get::<_, i64>(0) as u64),
                    items: row.get::<_, i64>(1) as usize,
                    oldest: from_millis(row.get(2)),
                })
                .collect())
        })
    }

    fn pauses(&self, now: SystemTime) -> Result<Vec<Pause>, PendingError> {
        let now = millis(now);
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let rows = client
                .query(
                    "SELECT installation, until_ms FROM pauses WHERE until_ms > $1
                     ORDER BY installation",
                    &[&now],
                )
                .await
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|row| Pause {
                    installation: InstallationId(row.get::<_, i64>(0) as u64),
                    until: from_millis(row.get(1)),
                })
                .collect())
        })
    }

    fn record_worker(&self, figures: &WorkerFigures, now: SystemTime) -> Result<(), PendingError> {
        let figures = figures.clone();
        self.run(move |shared| async move {
            let now_ms = millis(now);
            let mut client = shared.client().await?;
            let transaction = client.transaction().await.map_err(db_error)?;
            let upsert = transaction
                .prepare_cached(
                    "INSERT INTO workers (owner, name, host, pid, started_ms, heartbeat_ms,
                         deliveries, writes, unchanged, dropped, last_error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (owner) DO UPDATE SET name = EXCLUDED.name,
                         host = EXCLUDED.host, pid = EXCLUDED.pid,
                         started_ms = EXCLUDED.started_ms, heartbeat_ms = EXCLUDED.heartbeat_ms,
                         deliveries = EXCLUDED.deliveries, writes = EXCLUDED.writes,
                         unchanged = EXCLUDED.unchanged, dropped = EXCLUDED.dropped,
                         last_error = EXCLUDED.last_error",
                )
                .await
                .map_err(db_error)?;
            transaction
                .execute(
                    &upsert,
                    &[
                        &shared.owner,
                        &figures.name,
                        &shared.host,
                        &i64::from(figures.pid),
                        &millis(figures.started),
                        &now_ms,
                        &(figures.deliveries as i64),
                        &(figures.writes as i64),
                        &(figures.unchanged as i64),
                        &(figures.dropped as i64),
                        &figures.last_error,
                    ],
                )
                .await
                .map_err(db_error)?;
            transaction
                .execute(
                    "DELETE FROM workers WHERE heartbeat_ms < $1",
                    &[&(now_ms - WORKER_ROW_KEEP.as_millis() as i64)],
                )
                .await
                .map_err(db_error)?;
            transaction
                .execute(
                    "DELETE FROM dropped WHERE at_ms < $1
                         OR id <= (SELECT max(id) FROM dropped) - $2",
                    &[
                        &(now_ms - DROPPED_KEEP.as_millis() as i64),
                        &DROPPED_MAX_ROWS,
                    ],
                )
                .await
                .map_err(db_error)?;
            transaction.commit().await.map_err(db_error)
        })
    }

    fn record_dropped(&self, dropped: &DroppedItem) -> Result<(), PendingError> {
        let dropped = dropped.clone();
        self.run(move |shared| async move {
            let (installation, repo, kind, target) = key(&dropped.item);
            let client = shared.client().await?;
            client
                .execute(
                    "INSERT INTO dropped (at_ms, installation, repo, kind, target, cause, worker)
                     VALUES ($1, $2, $3, $4, $5, $6,
                         coalesce((SELECT host || '/' || name FROM workers
                                   WHERE owner = $7), $7))",
                    &[
                        &millis(dropped.at),
                        &installation,
                        &repo,
                        &kind,
                        &target,
                        &dropped.cause,
                        &shared.owner,
                    ],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn fleet_write_slot(
        &self,
        installation: InstallationId,
        ceiling: &FleetCeiling,
    ) -> Result<Option<Duration>, PendingError> {
        let interval = ceiling.interval.as_secs_f64();
        let tolerance = ceiling.tolerance().as_secs_f64();
        self.run(move |shared| async move {
            let client = shared.client().await?;
            // GCRA: a write may go when the theoretical arrival time, less
            // the burst tolerance, is not in the future; it then moves the
            // time one interval on. One statement, so that two hosts can
            // never both take the same slot.
            let statement = client
                .prepare_cached(
                    "WITH clock AS (SELECT clock_timestamp() AS now),
                     granted AS (
                         INSERT INTO fleet_write_rate AS w (installation, tat)
                         SELECT $1, clock.now + $2 * interval '1 second' FROM clock
                         ON CONFLICT (installation) DO UPDATE
                         SET tat = greatest(w.tat, (SELECT now FROM clock)) + $2 * interval '1 second'
                         WHERE w.tat - $3 * interval '1 second' <= (SELECT now FROM clock)
                         RETURNING 1)
                     SELECT EXISTS (SELECT 1 FROM granted),
                         (SELECT extract(epoch FROM w.tat - $3 * interval '1 second' - clock.now)::float8
                          FROM fleet_write_rate w, clock WHERE w.installation = $1)",
                )
                .await
                .map_err(db_error)?;
            let row = client
                .query_one(&statement, &[&(installation.0 as i64), &interval, &tolerance])
                .await
                .map_err(db_error)?;
            if row.get::<_, bool>(0) {
                return Ok(None);
            }
            let wait = row.get::<_, Option<f64>>(1).unwrap_or(interval);
            Ok(Some(Duration::from_secs_f64(wait.clamp(0.001, interval.max(0.001)))))
        })
    }

    fn housekeeping(&self, now: SystemTime) -> Result<(), PendingError> {
        self.reap_dead_owners()?;
        let now_ms = millis(now);
        self.run(move |shared| async move {
            let client = shared.client().await?;
            let prune = client
                .prepare_cached(
                    "DELETE FROM deliveries WHERE id IN
                     (SELECT id FROM deliveries WHERE seen_ms < $1 LIMIT $2)",
                )
                .await
                .map_err(db_error)?;
            client
                .execute(
                    &prune,
                    &[&(now_ms - DELIVERY_MEMORY.as_millis() as i64), &PRUNE_BATCH],
                )
                .await
                .map_err(db_error)?;
            client
                .execute("DELETE FROM pauses WHERE until_ms <= $1", &[&now_ms])
                .await
                .map_err(db_error)?;
            // A slot time long past says nothing GCRA needs.
            client
                .execute(
                    "DELETE FROM fleet_write_rate WHERE tat < now() - interval '1 hour'",
                    &[],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn release(&self) {
        if self.released.swap(true, Ordering::Relaxed) {
            return;
        }
        let outcome = self.run(|shared| async move {
            let mut client = shared.client().await?;
            let transaction = client.transaction().await.map_err(db_error)?;
            let returned = transaction
                .execute(
                    "UPDATE pending SET claimed_by = NULL, added_again = false,
                         again_received_ms = NULL
                     WHERE claimed_by = $1",
                    &[&shared.owner],
                )
                .await
                .map_err(db_error)?;
            transaction
                .execute("DELETE FROM owners WHERE owner = $1", &[&shared.owner])
                .await
                .map_err(db_error)?;
            if returned > 0 {
                transaction
                    .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                    .await
                    .map_err(db_error)?;
            }
            transaction.commit().await.map_err(db_error)
        });
        if let Err(error) = outcome {
            tracing::warn!(%error, "could not give back this worker's claims; its lease will");
        }
    }

    fn is_shared(&self) -> bool {
        true
    }
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// This machine's host name, which names its workers (`host/N`) and
/// owners. From gethostname(2) rather than /proc/sys/kernel/hostname:
/// `bot@.service` has `ProcSubset=pid`, which hides /proc/sys, and every
/// host would then be "unknown".
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its whole length, which is
    // what gethostname is told it may fill.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).trim().to_owned();
    if result != 0 || name.is_empty() {
        "unknown".to_owned()
    } else {
        name
    }
}

/// A name no other live process of the fleet has: host, pid, start time.
fn owner_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{}-{:x}", host_name(), std::process::id(), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_shown_url() {
        for (url, shown) in [
            (
                "postgres://bot:s3cret@db.example:5432/tlb",
                "postgres://bot:***@db.example:5432/tlb",
            ),
            (
                "postgresql://bot:p@ss@db/tlb?sslmode=require",
                "postgresql://bot:***@db/tlb?sslmode=require",
            ),
            ("postgres://bot@db/tlb", "postgres://bot@db/tlb"),
            (
                "postgresql:///tlb?host=/run/postgresql&password=s3cret&user=bot",
                "postgresql:///tlb?host=/run/postgresql&password=***&user=bot",
            ),
            (
                "host=db user=bot PASSWORD=s3cret dbname=tlb",
                "host=db user=bot PASSWORD=*** dbname=tlb",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("s3cret"));
        }
    }

    #[test]
    fn the_host_name_is_the_kernels() {
        // What `uname -n` prints: the same system call's answer, which
        // the unit's ProcSubset=pid does not hide.
        let uname = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .expect("running uname -n");
        let expected = String::from_utf8_lossy(&uname.stdout).trim().to_owned();
        assert!(!expected.is_empty());
        assert_eq!(host_name(), expected);
        assert!(owner_name().starts_with(&format!("{expected}-")));
    }

    #[test]
    fn only_postgres_urls_choose_this_store() {
        assert!(is_postgres_url("postgres://h/db"));
        assert!(is_postgres_url("PostgreSQL://h/db"));
        assert!(!is_postgres_url("sqlite:///var/lib/x"));
        assert!(!is_postgres_url("/var/lib/task-list-bot"));
    }
}
