//! [`Store`]: the async face of a [`PendingSet`], whose calls run on a
//! thread of their own.
//!
//! A durable store may wait up to its busy timeout for another worker's
//! write lock. Were that wait on one of the runtime's two threads, a burst
//! across workers would freeze accepting and answering, and the watchdog,
//! which runs on the same threads, could not tell a slow store from a
//! wedged one. So every call is a job sent to the store thread, and async
//! code awaits its answer.
//!
//! The thread also makes acknowledgements cheap: deliveries that arrive
//! while it is busy, or within moments of each other, are recorded
//! together, in one transaction (group commit; see [`GroupCommit`]); and it
//! does the store's upkeep (pruning, reaping) between jobs, never on the
//! request path. `/health` and STATUS read the figures it keeps instead of
//! asking the store.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use super::{
    Added, Backlog, Changed, Claim, DroppedItem, FleetCeiling, Pause, PendingError, PendingSet,
    WorkItem, WorkerFigures,
};
use crate::github::InstallationId;

/// Deliveries recorded in one transaction at most.
const MAX_BATCH: usize = 256;

/// How long a delivery waits for others to share its transaction.
///
/// A transaction costs the store more than the rows it writes: every
/// commit appends the pages it touched to the write-ahead log again, and
/// takes and drops the file locks the workers share. The deliveries of a
/// burst reach the store a few hundred microseconds apart, so recording
/// only those already queued gives transactions of one or two deliveries
/// (17 transactions for a burst of 60 in the fleet benchmark); waiting a
/// moment for the next one lets most of a burst share a few.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// The transaction is recorded once no further delivery has come for
    /// this long...
    pub quiet: Duration,
    /// ...or once its first delivery has waited this long.
    pub window: Duration,
}

impl GroupCommit {
    /// A lone delivery waits 0.3 ms more for its answer; none waits more
    /// than 2 ms.
    pub const DEFAULT: GroupCommit = GroupCommit {
        quiet: Duration::from_micros(300),
        window: Duration::from_millis(2),
    };
}

/// How often the store thread does its upkeep and refreshes its figures.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// The first pause after a failed call from the worker loop; it doubles
/// with each failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A call to run on the store thread; it answers through its own channel.
type StoreCall = Box<dyn FnOnce(&dyn PendingSet) + Send>;

enum Job {
    Add {
        item: WorkItem,
        delivery_id: String,
        reply: oneshot::Sender<Result<Added, PendingError>>,
    },
    Other(OtherJob),
}

/// The jobs that are not deliveries.
enum OtherJob {
    Call(StoreCall),
    Release(oneshot::Sender<()>),
}

/// The async handle on the pending set; cheap to clone. The store thread
/// ends when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Job>,
    set: Arc<dyn PendingSet>,
    figures: Arc<Figures>,
    /// `FLEET_WRITE_RATE`, once set.
    fleet_ceiling: std::sync::OnceLock<FleetCeiling>,
}

/// What the store thread reports about itself, read without asking it.
struct Figures {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 when the job in hand began; 0 idle.
    busy_since: AtomicU64,
    /// Milliseconds since `epoch` of the worker loop's latest look for work.
    last_ready_poll: AtomicU64,
    pending: AtomicUsize,
    errors: AtomicU64,
    failures_in_a_row: AtomicU32,
    last_error: Mutex<Option<String>>,
    /// Transactions that recorded deliveries, and deliveries they recorded.
    batches: AtomicU64,
    batched: AtomicU64,
}

impl Figures {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn begin(&self) {
        self.busy_since.store(self.now() + 1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }
}

/// The store thread's health, for the watchdog, STATUS and `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// How long the job in hand has run, when there is one.
    pub busy_for: Option<Duration>,
    /// Since the worker loop last looked for ready work (it does at least
    /// once a second while it runs).
    pub since_worker_poll: Duration,
    /// Items waiting or being worked on, as of the latest refresh.
    pub pending: usize,
    /// Failed store calls since start, and the latest failure.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Whether the latest call failed.
    pub failing: bool,
}

impl StoreHealth {
    /// One short phrase for STATUS.
    pub fn summary(&self) -> String {
        match (&self.last_error, self.failing) {
            (Some(error), true) => format!("store failing ({} errors): {error}", self.errors),
            (Some(error), false) => format!("store ok ({} errors, last: {error})", self.errors),
            (None, _) => "store ok".to_owned(),
        }
    }
}

fn closed() -> PendingError {
    PendingError("the store thread has stopped".into())
}

impl Store {
    /// Starts the store thread for `set`, grouping deliveries by
    /// [`GroupCommit::DEFAULT`].
    pub fn spawn(set: Arc<dyn PendingSet>) -> crate::Result<Store> {
        Store::spawn_grouping(set, GroupCommit::DEFAULT)
    }

    /// Starts the store thread for `set`, grouping deliveries by `grouping`.
    pub fn spawn_grouping(set: Arc<dyn PendingSet>, grouping: GroupCommit) -> crate::Result<Store> {
        let (jobs, receiver) = mpsc::channel();
        let figures = Arc::new(Figures {
            epoch: Instant::now(),
            busy_since: AtomicU64::new(0),
            last_ready_poll: AtomicU64::new(0),
            // The thread's first act is its upkeep, which counts them.
            pending: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            last_error: Mutex::new(None),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
        });
        let thread_set = Arc::clone(&set);
        let thread_figures = Arc::clone(&figures);
        std::thread::Builder::new()
            .name("pending-store".into())
            .spawn(move || serve(&*thread_set, &receiver, &thread_figures, grouping))
            .map_err(|e| anyhow::anyhow!("starting the store thread: {e}"))?;
        Ok(Store {
            inner: Arc::new(Inner {
                jobs,
                set,
                figures,
                fleet_ceiling: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Records a delivery's work; answers once it is durable. Deliveries
    /// that arrive together share one transaction.
    pub async fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .send(Job::Add {
                item,
                delivery_id: delivery_id.to_owned(),
                reply,
            })
            .map_err(|_| closed())?;
        let outcome = answer.await.unwrap_or_else(|_| Err(closed()));
        self.note(&outcome);
        outcome
    }

    /// Runs `call` on the store thread.
    async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn PendingSet) -> Result<T, PendingError> + Send + 'static,
    ) -> Result<T, PendingError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .send(Job::Other(OtherJob::Call(Box::new(move |set| {
                let _ = reply.send(call(set));
            }))))
            .map_err(|_| closed())?;
        let outcome = answer.await.unwrap_or_else(|_| Err(closed()));
        self.note(&outcome);
        outcome
    }

    /// Like [`call`](Self::call), for the worker loop: a failure is
    /// answered only after a pause that grows while failures continue, so
    /// that a failing store never turns the loop into a hot one.
    async fn worker_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn PendingSet) -> Result<T, PendingError> + Send + 'static,
    ) -> Result<T, PendingError> {
        let outcome = self.call(call).await;
        if outcome.is_err() {
            let failures = self.inner.figures.failures_in_a_row.load(Ordering::Relaxed);
            tokio::time::sleep(backoff(failures)).await;
        }
        outcome
    }

    fn note<T>(&self, outcome: &Result<T, PendingError>) {
        let figures = &self.inner.figures;
        match outcome {
            Ok(_) => figures.failures_in_a_row.store(0, Ordering::Relaxed),
            Err(error) => {
                figures.errors.fetch_add(1, Ordering::Relaxed);
                figures.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
                *figures.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(error.to_string());
            }
        }
    }

    /// Sets the fleet-wide write ceiling every write waits for (see
    /// [`wait_for_fleet_write_slot`](Self::wait_for_fleet_write_slot));
    /// only the first call counts.
    pub fn set_fleet_ceiling(&self, ceiling: FleetCeiling) {
        let _ = self.inner.fleet_ceiling.set(ceiling);
    }

    /// Waits until the fleet-wide ceiling grants `installation` a write,
    /// when one is set. A store that cannot be asked grants it: the write
    /// then goes at this worker's own pace (its limiter still holds), since
    /// holding every write back for a store outage would stall the fleet.
    pub async fn wait_for_fleet_write_slot(&self, installation: InstallationId) {
        let Some(ceiling) = self.inner.fleet_ceiling.get().copied() else {
            return;
        };
        loop {
            match self
                .call(move |set| set.fleet_write_slot(installation, &ceiling))
                .await
            {
                Ok(None) => return,
                Ok(Some(wait)) => tokio::time::sleep(wait).await,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        installation_id = installation.0,
                        "cannot ask the fleet-wide write ceiling; writing at this worker's pace"
                    );
                    return;
                }
            }
        }
    }

    /// Resolves when work may have been added, by this process or another.
    pub fn changed(&self) -> Changed<'_> {
        self.inner.set.changed()
    }

    /// Whether other processes work on this set too.
    pub fn is_shared(&self) -> bool {
        self.inner.set.is_shared()
    }

    pub async fn pause(
        &self,
        installation: InstallationId,
        until: SystemTime,
    ) -> Result<(), PendingError> {
        self.worker_call(move |set| set.pause(installation, until))
            .await
    }

    pub async fn paused_until(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, PendingError> {
        self.call(move |set| Ok(set.paused_until(installation, now)))
            .await
    }

    pub async fn claim(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<Claim>, PendingError> {
        self.worker_call(move |set| set.claim(installation, now))
            .await
    }

    pub async fn done(&self, claim: &Claim) -> Result<(), PendingError> {
        let claim = claim.clone();
        self.worker_call(move |set| set.done(&claim)).await
    }

    pub async fn retry_later(
        &self,
        claim: &Claim,
        not_before: SystemTime,
    ) -> Result<(), PendingError> {
        let claim = claim.clone();
        self.worker_call(move |set| set.retry_later(&claim, not_before))
            .await
    }

    /// Installations with an item ready at `now`. The worker loop asks at
    /// least once a second, so each ask also counts as its heartbeat.
    pub async fn ready_installations(
        &self,
        now: SystemTime,
    ) -> Result<Vec<InstallationId>, PendingError> {
        let figures = &self.inner.figures;
        figures
            .last_ready_poll
            .store(figures.now(), Ordering::Relaxed);
        self.worker_call(move |set| set.ready_installations(now))
            .await
    }

    /// The earliest time a retry or a pause ends; `None` also when the
    /// store cannot answer (the caller polls again soon anyway).
    pub async fn next_retry(&self) -> Option<SystemTime> {
        self.call(|set| Ok(set.next_retry())).await.ok().flatten()
    }

    /// Items waiting or being worked on, asked of the store now.
    pub async fn len(&self) -> Result<usize, PendingError> {
        self.call(|set| Ok(set.len())).await
    }

    pub async fn is_empty(&self) -> Result<bool, PendingError> {
        Ok(self.len().await? == 0)
    }

    /// Pending items per installation, with the oldest delivery they answer.
    pub async fn backlog(&self) -> Result<Vec<Backlog>, PendingError> {
        self.call(|set| set.backlog()).await
    }

    /// Installations paused at `now`.
    pub async fn pauses(&self, now: SystemTime) -> Result<Vec<Pause>, PendingError> {
        self.call(move |set| set.pauses(now)).await
    }

    /// Records this worker's figures and heartbeat for `task-list-bot
    /// status`, on the store thread.
    pub async fn record_worker(&self, figures: WorkerFigures) -> Result<(), PendingError> {
        self.call(move |set| set.record_worker(&figures, SystemTime::now()))
            .await
    }

    /// Remembers an item given up on, for `task-list-bot status`.
    pub async fn record_dropped(&self, dropped: DroppedItem) -> Result<(), PendingError> {
        self.call(move |set| set.record_dropped(&dropped)).await
    }

    /// Items waiting or being worked on, as of the store thread's latest
    /// refresh (at most about a second old); never waits.
    pub fn cached_len(&self) -> usize {
        self.inner.figures.pending.load(Ordering::Relaxed)
    }

    /// The store thread's health; never waits.
    pub fn health(&self) -> StoreHealth {
        let figures = &self.inner.figures;
        let now = figures.now();
        let busy_since = figures.busy_since.load(Ordering::Relaxed);
        let last_poll = figures.last_ready_poll.load(Ordering::Relaxed);
        StoreHealth {
            busy_for: (busy_since > 0)
                .then(|| Duration::from_millis(now.saturating_sub(busy_since - 1))),
            since_worker_poll: Duration::from_millis(now.saturating_sub(last_poll)),
            pending: figures.pending.load(Ordering::Relaxed),
            errors: figures.errors.load(Ordering::Relaxed),
            last_error: figures
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            failing: figures.failures_in_a_row.load(Ordering::Relaxed) > 0,
        }
    }

    /// Transactions that recorded deliveries, and the deliveries they
    /// recorded: more deliveries than transactions shows group commit.
    pub fn commit_counts(&self) -> (u64, u64) {
        let figures = &self.inner.figures;
        (
            figures.batches.load(Ordering::Relaxed),
            figures.batched.load(Ordering::Relaxed),
        )
    }

    /// Gives up this process's place in a shared store (its owner lock
    /// file), after every job sent before. Call once, as the process exits.
    pub async fn release(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .jobs
            .send(Job::Other(OtherJob::Release(reply)))
            .is_ok()
        {
            let _ = done.await;
        }
    }
}

fn backoff(failures_in_a_row: u32) -> Duration {
    let doublings = failures_in_a_row.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// The store thread: answers jobs in order, recording the deliveries that
/// wait together in one transaction, and does upkeep between them.
fn serve(
    set: &dyn PendingSet,
    jobs: &mpsc::Receiver<Job>,
    figures: &Figures,
    grouping: GroupCommit,
) {
    let mut last_upkeep: Option<Instant> = None;
    loop {
        let wait = last_upkeep.map_or(Duration::ZERO, |last| {
            HOUSEKEEPING_INTERVAL.saturating_sub(last.elapsed())
        });
        match jobs.recv_timeout(wait) {
            Ok(first) => {
                figures.begin();
                let batch = gather(first, jobs, grouping);
                run_jobs(set, batch, figures);
                figures.end();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_upkeep.is_none_or(|last| last.elapsed() >= HOUSEKEEPING_INTERVAL) {
            figures.begin();
            if let Err(error) = guarded(|| set.housekeeping(SystemTime::now())) {
                tracing::warn!(%error, "store upkeep failed; will try again");
            }
            if let Ok(pending) = guarded(|| Ok(set.len())) {
                figures.pending.store(pending, Ordering::Relaxed);
            }
            figures.end();
            last_upkeep = Some(Instant::now());
        }
    }
}

/// The jobs to run together, starting with `first`: every job already
/// queued and, while the batch holds a delivery, those that follow it
/// closely (see [`GroupCommit`]). A batch of calls from the worker loop
/// alone waits for nothing.
fn gather(first: Job, jobs: &mpsc::Receiver<Job>, grouping: GroupCommit) -> Vec<Job> {
    let started = Instant::now();
    let mut holds_a_delivery = false;
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        holds_a_delivery |= matches!(job, Job::Add { .. });
        batch.push(job);
        if batch.len() == MAX_BATCH {
            break;
        }
        next = match jobs.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) if holds_a_delivery => {
                let left = grouping.window.saturating_sub(started.elapsed());
                if left.is_zero() {
                    None
                } else {
                    jobs.recv_timeout(grouping.quiet.min(left)).ok()
                }
            }
            Err(TryRecvError::Empty) => None,
        };
    }
    batch
}

/// Runs `work`, turning a panic into an error so that the thread lives on.
fn guarded<T>(work: impl FnOnce() -> Result<T, PendingError>) -> Result<T, PendingError> {
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(PendingError("a store call panicked".into())))
}

/// Runs a batch of jobs: its deliveries first, in one transaction, then
/// the worker loop's calls in order. A delivery waits for no claim or
/// completion queued beside it; the calls lose nothing by coming after, as
/// a delivery recorded during a claim is what the store's `added_again`
/// already handles.
fn run_jobs(set: &dyn PendingSet, batch: Vec<Job>, figures: &Figures) {
    let mut adds = Vec::new();
    let mut others = Vec::new();
    for job in batch {
        match job {
            Job::Add {
                item,
                delivery_id,
                reply,
            } => adds.push((item, delivery_id, reply)),
            Job::Other(other) => others.push(other),
        }
    }
    record(set, &mut adds, figures);
    for job in others {
        match job {
            OtherJob::Call(call) => {
                // A panicking call drops its reply: the caller sees an error.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| call(set)));
            }
            OtherJob::Release(reply) => {
                set.release();
                let _ = reply.send(());
            }
        }
    }
}

type PendingAdd = (
    WorkItem,
    String,
    oneshot::Sender<Result<Added, PendingError>>,
);

/// Records `adds` in one transaction and answers each.
fn record(set: &dyn PendingSet, adds: &mut Vec<PendingAdd>, figures: &Figures) {
    if adds.is_empty() {
        return;
    }
    let (batch, replies): (Vec<(WorkItem, String)>, Vec<_>) = adds
        .drain(..)
        .map(|(item, delivery_id, reply)| ((item, delivery_id), reply))
        .unzip();
    let outcome = guarded(|| set.add_many(&batch));
    figures.batches.fetch_add(1, Ordering::Relaxed);
    figures
        .batched
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    match outcome {
        Ok(added) if added.len() == replies.len() => {
            for (reply, added) in replies.into_iter().zip(added) {
                let _ = reply.send(Ok(added));
            }
        }
        Ok(_) => {
            for reply in replies {
                let _ = reply.send(Err(PendingError(
                    "the store answered a different number of deliveries".into(),
                )));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(PendingError(error.0.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{PullNumber, PullRequestRef, RepoName};
    use crate::pending::{MemoryPendingSet, SqlitePendingSet};
    use std::future::Future as _;

    fn pull(number: u64) -> WorkItem {
        WorkItem::PullRequest(PullRequestRef {
            installation: InstallationId(1),
            repo: RepoName("octo/repo".into()),
            number: PullNumber(number),
        })
    }

    /// Occupies the store thread with a call until the returned sender
    /// sends (or drops); returns once the call has begun.
    async fn hold_the_thread(
        store: &Store,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), PendingError>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, holding) = oneshot::channel();
        let holding_store = store.clone();
        let holder = tokio::spawn(async move {
            holding_store
                .call(move |_| {
                    let _ = started.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
        });
        holding.await.unwrap();
        (release, holder)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_that_wait_together_share_one_transaction() {
        let dir = std::env::temp_dir().join(format!("tlb-group-{}", std::process::id()));
        let store = Store::spawn(Arc::new(SqlitePendingSet::open(&dir).unwrap())).unwrap();
        // Hold the store thread, so that the deliveries queue up behind it.
        let (release, holder) = hold_the_thread(&store).await;
        let (batches_before, _) = store.commit_counts();
        let mut adds: Vec<_> = (0..40u64)
            .map(|i| {
                let store = store.clone();
                Box::pin(async move { store.add(pull(i % 30), &format!("d{i}")).await })
            })
            .collect();
        // Polled once, each add has sent its job and waits for the answer.
        for add in &mut adds {
            std::future::poll_fn(|cx| {
                assert!(add.as_mut().poll(cx).is_pending(), "the thread is held");
                std::task::Poll::Ready(())
            })
            .await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for add in adds {
            outcomes.push(add.await.unwrap());
        }
        assert_eq!(outcomes.iter().filter(|a| **a == Added::New).count(), 30);
        let (batches, batched) = store.commit_counts();
        assert_eq!(batched, 40);
        assert_eq!(
            batches - batches_before,
            1,
            "40 deliveries that waited together make one transaction"
        );
        assert_eq!(store.len().await.unwrap(), 30);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A delivery that comes a moment after another joins its transaction
    /// instead of starting one of its own; the transaction is recorded once
    /// no other delivery follows, long before the window ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_a_moment_after_another_shares_its_transaction() {
        let grouping = GroupCommit {
            quiet: Duration::from_secs(1),
            window: Duration::from_secs(60),
        };
        let store = Store::spawn_grouping(Arc::new(MemoryPendingSet::new()), grouping).unwrap();
        let (batches_before, _) = store.commit_counts();
        let started = Instant::now();
        let first_store = store.clone();
        let first = tokio::spawn(async move { first_store.add(pull(1), "d1").await });
        // Part of the scenario, not a wait for a condition: the second
        // delivery comes after the store thread has taken the first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.add(pull(2), "d2").await.unwrap(), Added::New);
        assert_eq!(first.await.unwrap().unwrap(), Added::New);
        let (batches, batched) = store.commit_counts();
        assert_eq!(batched, 2);
        assert_eq!(
            batches - batches_before,
            1,
            "a delivery 100 ms after another, within the quiet time, shares its transaction"
        );
        assert!(
            started.elapsed() < grouping.window / 2,
            "recorded after the quiet time, not at the window's end: {:?}",
            started.elapsed()
        );
    }

    /// However long the quiet time, no delivery waits for company longer
    /// than the window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_delivery_waits_for_others_longer_than_the_window() {
        let grouping = GroupCommit {
            quiet: Duration::from_secs(120),
            window: Duration::from_millis(200),
        };
        let store = Store::spawn_grouping(Arc::new(MemoryPendingSet::new()), grouping).unwrap();
        let started = Instant::now();
        assert_eq!(store.add(pull(1), "d1").await.unwrap(), Added::New);
        assert!(
            started.elapsed() < grouping.quiet / 2,
            "a lone delivery is recorded at the window's end: {:?}",
            started.elapsed()
        );
    }

    /// A claim queued before a delivery does not hold the delivery up:
    /// the batch records the delivery first, and the claim then finds it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_is_recorded_before_calls_queued_beside_it() {
        let store = Store::spawn(Arc::new(MemoryPendingSet::new())).unwrap();
        let (release, holder) = hold_the_thread(&store).await;
        let claim_store = store.clone();
        let mut claim = Box::pin(async move {
            claim_store
                .claim(InstallationId(1), SystemTime::now())
                .await
        });
        let add_store = store.clone();
        let mut add = Box::pin(async move { add_store.add(pull(1), "d").await });
        // Polled once, in this order, each has sent its job.
        std::future::poll_fn(|cx| {
            assert!(claim.as_mut().poll(cx).is_pending(), "the thread is held");
            assert!(add.as_mut().poll(cx).is_pending(), "the thread is held");
            std::task::Poll::Ready(())
        })
        .await;
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert_eq!(add.await.unwrap(), Added::New);
        let claimed = claim.await.unwrap().expect("the claim finds the delivery");
        assert_eq!(claimed.item, pull(1));
    }

    /// A set whose every call fails, as a store on a full disk would.
    struct FailingSet(MemoryPendingSet);

    impl PendingSet for FailingSet {
        fn add(&self, _: WorkItem, _: &str) -> Result<Added, PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn changed(&self) -> Changed<'_> {
            self.0.changed()
        }
        fn pause(&self, _: InstallationId, _: SystemTime) -> Result<(), PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn paused_until(&self, _: InstallationId, _: SystemTime) -> Option<SystemTime> {
            None
        }
        fn claim(&self, _: InstallationId, _: SystemTime) -> Result<Option<Claim>, PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn done(&self, _: &Claim) -> Result<(), PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn retry_later(&self, _: &Claim, _: SystemTime) -> Result<(), PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn ready_installations(&self, _: SystemTime) -> Result<Vec<InstallationId>, PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn next_retry(&self) -> Option<SystemTime> {
            None
        }
        fn len(&self) -> usize {
            0
        }
        fn backlog(&self) -> Result<Vec<Backlog>, PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn pauses(&self, _: SystemTime) -> Result<Vec<Pause>, PendingError> {
            Err(PendingError("disk full".into()))
        }
        fn is_shared(&self) -> bool {
            false
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_backs_off_and_says_so() {
        let store = Store::spawn(Arc::new(FailingSet(MemoryPendingSet::new()))).unwrap();
        let started = tokio::time::Instant::now();
        for _ in 0..4 {
            assert!(store.ready_installations(SystemTime::now()).await.is_err());
        }
        // 100 + 200 + 400 + 800 ms of back-off, on tokio's paused clock.
        assert!(started.elapsed() >= Duration::from_millis(1500));
        let health = store.health();
        assert!(health.failing);
        assert_eq!(health.errors, 4);
        assert_eq!(health.last_error.as_deref(), Some("pending set: disk full"));
        assert!(health.summary().contains("disk full"));

        let answered = tokio::time::Instant::now();
        assert!(store.add(pull(1), "d").await.is_err());
        assert_eq!(
            answered.elapsed(),
            Duration::ZERO,
            "a delivery's answer never waits for a back-off"
        );
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn a_panicking_call_fails_alone_and_the_thread_serves_on() {
        let store = Store::spawn(Arc::new(MemoryPendingSet::new())).unwrap();
        let panicked = store
            .call::<()>(|_| panic!("a bug in one call"))
            .await
            .unwrap_err();
        assert!(panicked.0.contains("stopped"), "{panicked}");
        assert_eq!(store.add(pull(1), "d").await.unwrap(), Added::New);
    }
}
