//! The loop that spends write slots.
//!
//! For every installation with pending work, one task at a time claims an
//! item, reads the pull request's current state, computes its check, and
//! writes it only when it differs from the latest one. Writes go through a
//! per-installation limiter (governor), so a burst on one installation never
//! delays another's, and reads are never gated by it.
//!
//! # When GitHub fails
//!
//! Work answered 202 is dropped for a failure that can pass only after
//! [`RetryRules::retry_for`]: 5xx answers, timeouts, connection errors and
//! token-mint failures are retried with capped exponential back-off. After
//! a failure the whole installation is paused in the store for a back-off
//! that grows while its failures continue, so that during an outage one
//! item per installation probes GitHub and the others wait; the failed item
//! waits at least until just after that pause, so items take turns and one
//! that GitHub cannot serve does not hold up the rest. Rate limits pause
//! the installation for every worker of the host and do not count against
//! the item. Answers that will not get better
//! ([`Refusal`](crate::github::Refusal)) end the item with one ERROR line
//! naming the cause.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::DefaultKeyedRateLimiter;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::check::{CheckRunRequest, TaskSources};
use crate::config::{Config, MAX_SECONDARY_PAUSE};
use crate::github::{
    GitHub, GitHubError, InstallationClient, InstallationId, MAX_RATE_LIMIT_PAUSE, RateLimit,
};
use crate::metrics::{self, CheckRunOutcome};
use crate::pending::{Claim, DroppedItem, PendingError, Retirement, Store, WorkItem};
use crate::repo_settings::cache::DEFAULT_MAX_AGE as SETTINGS_MAX_AGE;
use crate::repo_settings::{ContentsSource, Effective, RepoSettings, SettingsCache};

/// How long no new work must arrive before a woken worker claims.
const BURST_QUIET: Duration = Duration::from_millis(5);
/// The longest a woken worker waits for a burst of deliveries to end.
const BURST_SETTLE: Duration = Duration::from_millis(50);

/// How long and how often the worker tries again.
#[derive(Debug, Clone)]
pub struct RetryRules {
    /// How long an item is retried through transient failures (`RETRY_FOR`),
    /// measured by the back-offs its failed attempts have waited.
    pub retry_for: Duration,
    /// The back-off after an item's first failure; doubled on each further
    /// one.
    pub first_backoff: Duration,
    /// The longest back-off.
    pub backoff_cap: Duration,
    /// The shortest pause after a secondary rate limit; doubled on repeats.
    pub min_secondary_pause: Duration,
    /// The longest pause repeated secondary limits grow to (a `Retry-After`
    /// may ask for more, up to [`MAX_RATE_LIMIT_PAUSE`]).
    pub max_secondary_pause: Duration,
}

impl RetryRules {
    pub fn from_config(config: &Config) -> RetryRules {
        RetryRules {
            retry_for: config.retry_for,
            first_backoff: config.first_retry_backoff,
            backoff_cap: config.retry_backoff_cap,
            min_secondary_pause: config.min_secondary_pause,
            max_secondary_pause: MAX_SECONDARY_PAUSE,
        }
    }

    /// The back-off after `failures` failures (one or more), before jitter.
    fn nominal_backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first_backoff
            .saturating_mul(1 << doublings)
            .min(self.backoff_cap)
    }

    /// The back-off after `failures` failures, with up to 25% taken off at
    /// random so that items and workers failing together spread out.
    pub fn backoff(&self, failures: u32) -> Duration {
        self.nominal_backoff(failures)
            .mul_f64(1.0 - 0.25 * random_fraction())
    }

    /// Whether an item that has failed `failures` times has been retried
    /// for `retry_for`: the sum of the back-offs it waited (nominal, so
    /// that every worker of the host reaches the same answer from the
    /// count the store keeps).
    pub fn retried_long_enough(&self, failures: u32) -> bool {
        let mut waited = Duration::ZERO;
        for failure in 1..failures {
            waited = waited.saturating_add(self.nominal_backoff(failure));
            if waited >= self.retry_for {
                return true;
            }
        }
        false
    }

    /// The pause after the `repeats`-th secondary rate limit in a row (the
    /// first is 1). What GitHub asked for in `Retry-After` (or until its
    /// reset) is honoured as asked; without it, as GitHub advises, at least
    /// the minimum, doubling on repeats up to the maximum.
    pub fn secondary_pause(&self, repeats: u32, asked: Option<Duration>) -> Duration {
        let doublings = repeats.saturating_sub(1).min(30);
        let grown = self
            .min_secondary_pause
            .saturating_mul(1 << doublings)
            .min(self.max_secondary_pause);
        asked.unwrap_or(grown).min(MAX_RATE_LIMIT_PAUSE)
    }
}

fn random_fraction() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// What went wrong lately for one installation, in this process.
#[derive(Debug, Default, Clone, Copy)]
struct Trouble {
    /// Transient failures in a row, whichever item met them.
    failures: u32,
    /// Secondary rate limits in a row.
    secondary_limits: u32,
}

/// Live figures for the operator (systemd's STATUS=) and for tests.
#[derive(Debug)]
pub struct Stats {
    pub deliveries: AtomicU64,
    pub writes: AtomicU64,
    pub skipped_unchanged: AtomicU64,
    pub dropped: AtomicU64,
    pub waiting_on_limiter: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
    /// Why the last dropped item was dropped, for the operator.
    pub last_refusal: Mutex<Option<String>>,
    /// Counts finished claims (written, skipped, dropped or deferred), so
    /// that tests wait for processing instead of sleeping.
    finished: watch::Sender<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            deliveries: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            skipped_unchanged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            waiting_on_limiter: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            last_refusal: Mutex::new(None),
            finished: watch::Sender::new(0),
        }
    }
}

impl Stats {
    /// Waits until at least `count` claims have been finished.
    pub async fn finished_claims(&self, count: u64) {
        let mut receiver = self.finished.subscribe();
        // The sender lives in self, so the channel cannot close here.
        let _ = receiver.wait_for(|finished| *finished >= count).await;
    }

    pub fn finished_claims_now(&self) -> u64 {
        *self.finished.borrow()
    }

    fn record_error(&self, error: &GitHubError) {
        let line = error.to_string();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
    }

    fn record_refusal(&self, cause: &dyn std::fmt::Display) {
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.to_string());
    }

    /// One line for `systemctl status`.
    pub fn status_line(&self, pending: usize) -> String {
        let read = |slot: &Mutex<Option<String>>| {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "none".into())
        };
        let last_error = read(&self.last_error);
        let last_refusal = read(&self.last_refusal);
        format!(
            "pending {pending}, waiting on limiter {}, deliveries {}, writes {}, unchanged {}, dropped {}, last dropped because: {last_refusal}, last GitHub error: {last_error}",
            self.waiting_on_limiter.load(Ordering::Relaxed),
            self.deliveries.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.skipped_unchanged.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Spends write slots on pending work.
pub struct Worker {
    pending: Store,
    github: GitHub,
    limiter: DefaultKeyedRateLimiter<InstallationId>,
    /// Each repository's settings file, read through the installation and
    /// kept for [`SETTINGS_MAX_AGE`] (or until a `push` changes it).
    settings: Arc<SettingsCache>,
    /// Broken settings already logged (files and errors), so that each
    /// version of a broken file is logged once, not on every check.
    logged_settings_errors: Mutex<HashSet<String>>,
    /// Wakes the loop when a driving task ends.
    driver_done: Notify,
    stats: Arc<Stats>,
    /// Installations that have a driving task; one per installation, so
    /// that its writes leave one after the other.
    driving: Mutex<HashSet<InstallationId>>,
    rules: RetryRules,
    /// Recent failures per installation, for growing back-offs and pauses.
    trouble: Mutex<HashMap<InstallationId, Trouble>>,
    /// Set when a worker of a shared store stops: it claims nothing more,
    /// the other workers take what is left.
    stopped_claiming: std::sync::atomic::AtomicBool,
}

impl Worker {
    pub fn new(
        pending: Store,
        github: GitHub,
        quota: governor::Quota,
        ignored_bots: Vec<String>,
        stats: Arc<Stats>,
        rules: RetryRules,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            pending,
            github,
            limiter: governor::RateLimiter::keyed(quota),
            settings: Arc::new(SettingsCache::new(
                RepoSettings::with_ignored_bots(ignored_bots),
                SETTINGS_MAX_AGE,
            )),
            logged_settings_errors: Mutex::default(),
            driver_done: Notify::new(),
            stats,
            driving: Mutex::default(),
            rules,
            trouble: Mutex::default(),
            stopped_claiming: Default::default(),
        })
    }

    /// The per-repository settings this worker keeps, for the webhook
    /// handler to invalidate on `push`.
    pub fn settings(&self) -> Arc<SettingsCache> {
        Arc::clone(&self.settings)
    }

    /// Runs until `stop` fires, then drains for at most `drain_timeout`:
    /// queued work keeps being written, at the limiter's pace, and whatever
    /// is left at the deadline is logged.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, drain_timeout: Duration) {
        let tracker = TaskTracker::new();
        let mut last_cleanup = Instant::now();
        while !stop.is_cancelled() {
            self.start_drivers(&tracker).await;
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                self.limiter.retain_recent();
                last_cleanup = Instant::now();
            }
            tokio::select! {
                _ = self.pending.changed() => self.let_the_burst_land().await,
                _ = self.driver_done.notified() => {}
                _ = tokio::time::sleep(self.until_next_retry().await) => {}
                _ = stop.cancelled() => {}
            }
        }

        let deadline = tokio::time::Instant::now() + drain_timeout;
        let shared = self.pending.is_shared();
        if shared {
            self.stopped_claiming
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let pending = self
            .pending
            .len()
            .await
            .unwrap_or_else(|_| self.pending.cached_len());
        if pending > 0 && !shared {
            tracing::info!(
                pending,
                ?drain_timeout,
                "draining queued checks before exit"
            );
        }
        loop {
            if !shared {
                self.start_drivers(&tracker).await;
            }
            if self.drained().await {
                break;
            }
            tokio::select! {
                _ = self.pending.changed() => {}
                _ = self.driver_done.notified() => {}
                _ = tokio::time::sleep(self.until_next_retry().await) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let left = self.pending.len().await.unwrap_or_else(|_| self.pending.cached_len());
                    tracing::warn!(
                        left,
                        "drain time is up: queued checks were not written"
                    );
                    break;
                }
            }
        }
        tracker.close();
    }

    /// Waits until new work stops arriving, for [`BURST_QUIET`] and at most
    /// [`BURST_SETTLE`] in all. Deliveries come in bursts (a pull request's
    /// events together, a burst spread over the fleet), and every one wakes
    /// every worker of the host: claiming at each wake-up would compete for
    /// the store and the CPU with the acknowledgements GitHub is waiting
    /// for. Work is paced at about a write a second anyway, so starting it
    /// a few milliseconds later costs nothing.
    async fn let_the_burst_land(&self) {
        let settled_by = tokio::time::Instant::now() + BURST_SETTLE;
        loop {
            let now = tokio::time::Instant::now();
            if now >= settled_by {
                return;
            }
            let quiet_by = settled_by.min(now + BURST_QUIET);
            if tokio::time::timeout_at(quiet_by, self.pending.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Whether a stopping worker may exit: it holds no claim, and nothing
    /// is left that only it could write. Items of a shared store stay there
    /// for the other workers; a private store must be empty.
    async fn drained(&self) -> bool {
        if !self.driving_now().is_empty() {
            return false;
        }
        // Items of a shared store that no claim holds stay for the others.
        self.pending.is_shared() || self.pending.is_empty().await.unwrap_or(false)
    }

    async fn until_next_retry(&self) -> Duration {
        const IDLE_POLL: Duration = Duration::from_secs(1);
        match self.pending.next_retry().await {
            Some(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(IDLE_POLL),
            None => IDLE_POLL,
        }
    }

    /// Starts a driving task for every installation with ready work and
    /// none yet.
    async fn start_drivers(self: &Arc<Self>, tracker: &TaskTracker) {
        let now = SystemTime::now();
        let ready = match self.pending.ready_installations(now).await {
            Ok(ready) => ready,
            Err(error) => {
                tracing::error!(%error, "cannot read pending work");
                return;
            }
        };
        let mut driving = self.driving_now();
        for installation in ready {
            if !driving.insert(installation) {
                continue;
            }
            let worker = Arc::clone(self);
            tracker.spawn(async move { worker.drive(installation).await });
        }
    }

    /// The installations being driven. A panic elsewhere cannot leave this
    /// set inconsistent (every change is one insert or remove).
    fn driving_now(&self) -> std::sync::MutexGuard<'_, HashSet<InstallationId>> {
        self.driving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works through one installation's items, one at a time. Each item is
    /// processed in a task of its own, so that a panic while processing it
    /// puts the item back instead of leaving it claimed by this live worker;
    /// the guard gives the installation back to the loop however this ends.
    async fn drive(self: Arc<Self>, installation: InstallationId) {
        let _driving = DrivingGuard {
            worker: Arc::clone(&self),
            installation,
        };
        loop {
            if self
                .stopped_claiming
                .load(std::sync::atomic::Ordering::Acquire)
            {
                break;
            }
            let claim = match self.pending.claim(installation, SystemTime::now()).await {
                Ok(Some(claim)) => claim,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, installation_id = installation.0, "cannot claim pending work");
                    break;
                }
            };
            let worker = Arc::clone(&self);
            let held = claim.clone();
            if let Err(failure) = tokio::spawn(async move { worker.process(claim).await }).await {
                tracing::error!(
                    delivery_id = %held.delivery_id,
                    installation_id = installation.0,
                    repository = %held.item.repo(),
                    pull_request = held.item.pull_number(),
                    %failure,
                    "processing a check failed unexpectedly; it is put back to be tried again"
                );
                let failures = held.attempts + 1;
                if self.rules.retried_long_enough(failures) {
                    // An item that makes the bot panic every time.
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .record_refusal(&"processing it failed unexpectedly for RETRY_FOR");
                    tracing::error!(
                        delivery_id = %held.delivery_id,
                        attempts = failures,
                        "giving up on this check: processing it failed for RETRY_FOR"
                    );
                    self.record_dropped(
                        &held,
                        "processing it failed unexpectedly for RETRY_FOR".to_owned(),
                    )
                    .await;
                    self.finish(&held).await;
                } else {
                    let retry_at = SystemTime::now() + self.rules.backoff(failures);
                    self.store("put the item back", || {
                        self.pending.retry_later(&held, retry_at)
                    })
                    .await;
                }
            }
            self.stats.finished.send_modify(|finished| *finished += 1);
        }
    }

    async fn process(&self, claim: Claim) {
        let installation = claim.item.installation();
        let client = self.github.installation(installation);
        let outcome = match &claim.item {
            WorkItem::PullRequest(_) => self.update_pull_request(&client, &claim).await,
            WorkItem::MergeGroup { repo, head_sha, .. } => {
                let request = CheckRunRequest::merge_group(head_sha, chrono::Utc::now());
                self.write(&client, &claim, repo, &request)
                    .await
                    .map(|()| Progress::Done)
            }
            WorkItem::Retire {
                pull,
                head_sha,
                reason,
            } => self
                .retire(&client, &claim, &pull.repo, head_sha, *reason)
                .await
                .map(|()| Progress::Done),
        };
        match outcome {
            Ok(progress) => {
                self.trouble_of(installation, |trouble| *trouble = Trouble::default());
                match progress {
                    Progress::Done => self.finish(&claim).await,
                    Progress::NotBefore(at) => self.defer(&claim, at).await,
                }
            }
            Err(error) => self.failed(&claim, error).await,
        }
    }

    /// The repository's settings, read through the installation when this
    /// worker has none fresh. A broken file gives the defaults, logged once
    /// per version of the file.
    async fn repo_settings(
        &self,
        client: &InstallationClient,
        repo: &crate::github::RepoName,
    ) -> Result<Arc<Effective>, GitHubError> {
        let source = ContentsSource::for_installation(client);
        let effective = self.settings.for_repo(&source, repo).await?;
        if !effective.errors.is_empty() {
            let key = format!("{repo} {:?} {:?}", effective.files, effective.errors);
            let first_time = {
                let mut logged = self
                    .logged_settings_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if logged.len() >= 10_000 {
                    logged.clear();
                }
                logged.insert(key)
            };
            if first_time {
                let errors: Vec<String> = effective.errors.iter().map(|e| e.to_string()).collect();
                tracing::warn!(
                    installation_id = client.installation().0,
                    repository = %repo,
                    errors = %errors.join("; "),
                    "settings file has errors: the defaults are used (the check says so)"
                );
            }
        }
        Ok(effective)
    }

    /// Puts a claim back until `at` without counting an attempt: the pull
    /// request's first check waits for `first_check_delay`.
    async fn defer(&self, claim: &Claim, at: SystemTime) {
        let uncounted = Claim {
            attempts: claim.attempts.saturating_sub(1),
            ..claim.clone()
        };
        tracing::debug!(
            delivery_id = %claim.delivery_id,
            repository = %claim.item.repo(),
            pull_request = claim.item.pull_number(),
            wait_ms = at.duration_since(SystemTime::now()).unwrap_or_default().as_millis() as u64,
            "first check waits for the repository's first_check_delay"
        );
        self.store("put the item back until its first check is due", || {
            self.pending.retry_later(&uncounted, at)
        })
        .await;
    }

    /// Completes, as neutral, the check this App left in progress on a
    /// commit that no longer heads an open pull request. Nothing is written
    /// when there is no such check or its latest run is completed.
    async fn retire(
        &self,
        client: &InstallationClient,
        claim: &Claim,
        repo: &crate::github::RepoName,
        head_sha: &str,
        reason: Retirement,
    ) -> Result<(), GitHubError> {
        let effective = self.repo_settings(client, repo).await?;
        let name = &effective.settings.check_name;
        let latest = client
            .latest_check_run(repo, head_sha, name, self.github.app_id())
            .await?;
        let Some(latest) = latest.filter(|run| run.status != "completed") else {
            self.stats.skipped_unchanged.fetch_add(1, Ordering::Relaxed);
            metrics::check_run(CheckRunOutcome::Unchanged);
            tracing::debug!(
                delivery_id = %claim.delivery_id,
                repository = %repo,
                pull_request = claim.item.pull_number(),
                head_sha,
                reason = reason.name(),
                "no check in progress on the old head: nothing to complete"
            );
            return Ok(());
        };
        let why = match reason {
            Retirement::Superseded => "superseded by a newer commit",
            Retirement::Closed => "pull request closed",
            Retirement::Merged => "pull request merged",
        };
        let request = CheckRunRequest::retired(head_sha, name, why, chrono::Utc::now());
        tracing::debug!(
            check_run_id = latest.id,
            head_sha,
            why,
            "completing a check left in progress"
        );
        self.write(client, claim, repo, &request).await
    }

    async fn update_pull_request(
        &self,
        client: &InstallationClient,
        claim: &Claim,
    ) -> Result<Progress, GitHubError> {
        let WorkItem::PullRequest(pull) = &claim.item else {
            unreachable!("only called for pull requests");
        };
        let state = client.pull_request_state(&pull.repo, pull.number).await?;
        if !state.pull.is_open() {
            metrics::check_run(CheckRunOutcome::Closed);
            tracing::debug!(
                delivery_id = %claim.delivery_id,
                installation_id = pull.installation.0,
                repository = %pull.repo,
                pull_request = pull.number.0,
                "pull request is closed: no check written"
            );
            return Ok(Progress::Done);
        }
        let effective = self.repo_settings(client, &pull.repo).await?;
        let settings = &effective.settings;
        let tasks = TaskSources::from_state_selected(&state, &settings.sources)
            .tasks_with(&settings.count_rules());
        let now = chrono::Utc::now();
        let mut request = CheckRunRequest::for_tasks_with(
            &state.pull.head.sha,
            &tasks,
            now,
            &settings.check_name,
            settings.when_incomplete.status_and_conclusion(),
        );
        request.prepend_text(&effective.error_report());
        let latest = client
            .latest_check_run(
                &pull.repo,
                &state.pull.head.sha,
                &settings.check_name,
                self.github.app_id(),
            )
            .await?;
        if latest.is_none() {
            if let Some(due) = first_check_due(&state.pull, settings.first_check_delay) {
                if due > SystemTime::now() {
                    return Ok(Progress::NotBefore(due));
                }
            }
        }
        if latest.is_some_and(|existing| request.says_the_same_as(&existing)) {
            self.stats.skipped_unchanged.fetch_add(1, Ordering::Relaxed);
            metrics::check_run(CheckRunOutcome::Unchanged);
            tracing::debug!(
                delivery_id = %claim.delivery_id,
                installation_id = pull.installation.0,
                repository = %pull.repo,
                pull_request = pull.number.0,
                title = %request.output.title,
                "check unchanged: no write"
            );
            return Ok(Progress::Done);
        }
        self.write(client, claim, &pull.repo, &request)
            .await
            .map(|()| Progress::Done)
    }

    /// Waits for a write slot of the installation, then creates the check.
    async fn write(
        &self,
        client: &InstallationClient,
        claim: &Claim,
        repo: &crate::github::RepoName,
        request: &CheckRunRequest,
    ) -> Result<(), GitHubError> {
        let installation = client.installation();
        self.stats
            .waiting_on_limiter
            .fetch_add(1, Ordering::Relaxed);
        self.limiter.until_key_ready(&installation).await;
        self.pending.wait_for_fleet_write_slot(installation).await;
        self.stats
            .waiting_on_limiter
            .fetch_sub(1, Ordering::Relaxed);
        let created = client.create_check_run(repo, request).await?;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        metrics::check_run_written(installation, claim.received_at);
        tracing::info!(
            delivery_id = %claim.delivery_id,
            installation_id = installation.0,
            repository = %repo,
            pull_request = claim.item.pull_number(),
            github_request_id = %created.request_id,
            check_run_id = created.id,
            status = created.status,
            title = %request.output.title,
            conclusion = request.conclusion.unwrap_or(request.status),
            "check run written"
        );
        Ok(())
    }

    /// Remembers in the store that `claim` was given up on, for
    /// `task-list-bot status`: call once wherever an item is dropped.
    async fn record_dropped(&self, claim: &Claim, cause: String) {
        let dropped = DroppedItem {
            item: claim.item.clone(),
            cause,
            at: SystemTime::now(),
        };
        if let Err(error) = self.pending.record_dropped(dropped).await {
            tracing::warn!(%error, "cannot record the dropped item for status");
        }
    }

    async fn finish(&self, claim: &Claim) {
        self.store("mark work done", || self.pending.done(claim))
            .await;
    }

    /// Runs a store operation until it succeeds: giving up would leave the
    /// claim held by this live worker, which no other worker may take.
    /// Logged once, then retried with back-off.
    async fn store<Operation, Outcome>(&self, what: &str, mut operation: Operation)
    where
        Operation: FnMut() -> Outcome,
        Outcome: std::future::Future<Output = Result<(), PendingError>>,
    {
        let mut wait = Duration::from_millis(50);
        let mut failures = 0u32;
        loop {
            match operation().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "the store recovered: could {what} again");
                    }
                    return;
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::error!(%error, "cannot {what}; retrying until the store answers");
                    } else {
                        tracing::debug!(%error, failures, "still cannot {what}");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Changes this installation's trouble record and returns the new one.
    fn trouble_of(
        &self,
        installation: InstallationId,
        change: impl FnOnce(&mut Trouble),
    ) -> Trouble {
        let mut trouble = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        let entry = trouble.entry(installation).or_default();
        change(entry);
        let now = *entry;
        if now.failures == 0 && now.secondary_limits == 0 {
            trouble.remove(&installation);
        }
        now
    }

    async fn failed(&self, claim: &Claim, error: GitHubError) {
        self.stats.record_error(&error);
        let installation = claim.item.installation();
        let now = SystemTime::now();
        let log_context = (
            claim.delivery_id.as_str(),
            installation.0,
            claim.item.repo().0.as_str(),
            claim.item.pull_number(),
        );
        if let Some(refusal) = error.refusal() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::check_run(CheckRunOutcome::Dropped(error.cause()));
            self.stats.record_refusal(&refusal);
            tracing::error!(
                delivery_id = log_context.0,
                installation_id = log_context.1,
                repository = log_context.2,
                pull_request = log_context.3,
                github_request_id = error.request_id().unwrap_or("-"),
                %error,
                "giving up on this check: {refusal}"
            );
            self.record_dropped(claim, refusal.to_string()).await;
            return self.finish(claim).await;
        }
        if let GitHubError::RateLimited {
            limit, retry_after, ..
        } = &error
        {
            return self.rate_limited(claim, *limit, *retry_after, &error).await;
        }
        let failures = claim.attempts + 1;
        if self.rules.retried_long_enough(failures) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::check_run(CheckRunOutcome::Dropped("attempts_exhausted"));
            self.stats.record_refusal(&format!(
                "GitHub kept failing for RETRY_FOR ({:?}, {failures} attempts): {error}",
                self.rules.retry_for
            ));
            tracing::error!(
                delivery_id = log_context.0,
                installation_id = log_context.1,
                repository = log_context.2,
                pull_request = log_context.3,
                github_request_id = error.request_id().unwrap_or("-"),
                attempts = failures,
                %error,
                "giving up on this check: GitHub kept failing for RETRY_FOR"
            );
            self.record_dropped(claim, format!("GitHub kept failing for RETRY_FOR: {error}"))
                .await;
            return self.finish(claim).await;
        }
        // The whole installation waits, for a back-off that grows with its
        // failures in a row (whichever item met them): during an outage one
        // item probes at a time.
        let trouble = self.trouble_of(installation, |t| t.failures = t.failures.saturating_add(1));
        let paused_until = now + self.rules.backoff(trouble.failures);
        self.store("pause the installation", || {
            self.pending.pause(installation, paused_until)
        })
        .await;
        // The item waits for its own back-off, and at least until just after
        // the pause, so that another item probes first: one pull request
        // GitHub cannot serve (a read that always times out) does not hold
        // up the installation's others.
        let retry_at =
            (now + self.rules.backoff(failures)).max(paused_until + Duration::from_millis(1));
        tracing::warn!(
            delivery_id = log_context.0,
            installation_id = log_context.1,
            repository = log_context.2,
            pull_request = log_context.3,
            github_request_id = error.request_id().unwrap_or("-"),
            attempts = failures,
            retry_in_ms = retry_at.duration_since(now).unwrap_or_default().as_millis() as u64,
            %error,
            "check not written yet; will retry"
        );
        metrics::check_run(CheckRunOutcome::Retried(error.cause()));
        self.store("reschedule work", || {
            self.pending.retry_later(claim, retry_at)
        })
        .await;
    }

    /// Pauses the installation for every worker of the host, logging once
    /// per pause, and puts the item back without counting an attempt.
    async fn rate_limited(
        &self,
        claim: &Claim,
        limit: RateLimit,
        retry_after: Option<Duration>,
        error: &GitHubError,
    ) {
        let installation = claim.item.installation();
        let now = SystemTime::now();
        let pause = match limit {
            RateLimit::Primary => retry_after
                .unwrap_or(self.rules.min_secondary_pause)
                .max(Duration::from_secs(1)),
            RateLimit::Secondary => {
                let trouble = self.trouble_of(installation, |t| {
                    t.secondary_limits = t.secondary_limits.saturating_add(1)
                });
                self.rules
                    .secondary_pause(trouble.secondary_limits, retry_after)
            }
        }
        .min(MAX_RATE_LIMIT_PAUSE);
        let until = now + pause;
        metrics::rate_limit_pause(pause);
        metrics::check_run(CheckRunOutcome::Retried(error.cause()));
        // Another request of this host may have paused it already.
        let already = self
            .pending
            .paused_until(installation, now)
            .await
            .ok()
            .flatten()
            .is_some_and(|paused| paused + Duration::from_secs(1) >= until);
        self.store("record the pause GitHub asked for", || {
            self.pending.pause(installation, until)
        })
        .await;
        if already {
            tracing::debug!(installation_id = installation.0, %error, "already paused");
        } else {
            tracing::warn!(
                installation_id = installation.0,
                github_request_id = error.request_id().unwrap_or("-"),
                limit = ?limit,
                pause_secs = pause.as_secs_f64(),
                "GitHub's rate limit: installation paused for every worker of this host"
            );
        }
        // The store counts one more attempt on retry_later; hand it one
        // fewer so that the pause does not count against the item.
        let uncounted = Claim {
            attempts: claim.attempts.saturating_sub(1),
            ..claim.clone()
        };
        self.store("reschedule work", || {
            self.pending.retry_later(&uncounted, until)
        })
        .await;
    }
}

/// What processing an item came to, short of an error.
enum Progress {
    /// Written, or nothing to write: the item is done.
    Done,
    /// Not yet: the item waits until then (a first check's delay).
    NotBefore(SystemTime),
}

/// When a pull request's first check is due: `delay` after it was opened.
/// `None` without a delay or without a readable creation time.
fn first_check_due(pull: &crate::github::PullRequest, delay: Duration) -> Option<SystemTime> {
    if delay.is_zero() {
        return None;
    }
    let created = chrono::DateTime::parse_from_rfc3339(pull.created_at.as_deref()?).ok()?;
    let created = SystemTime::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(created.timestamp_millis()).ok()?);
    Some(created + delay)
}

/// Gives the installation back to the worker's loop when its driving task
/// ends, however it ends.
struct DrivingGuard {
    worker: Arc<Worker>,
    installation: InstallationId,
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        self.worker.driving_now().remove(&self.installation);
        // Work may have arrived between the last claim and now.
        self.worker.driver_done.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::Refusal;

    fn rules() -> RetryRules {
        RetryRules {
            retry_for: Duration::from_secs(24 * 3600),
            first_backoff: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
            min_secondary_pause: Duration::from_secs(60),
            max_secondary_pause: MAX_SECONDARY_PAUSE,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let rules = rules();
        assert_eq!(rules.nominal_backoff(1), Duration::from_secs(2));
        assert_eq!(rules.nominal_backoff(2), Duration::from_secs(4));
        assert_eq!(rules.nominal_backoff(8), Duration::from_secs(256));
        assert_eq!(rules.nominal_backoff(9), Duration::from_secs(300));
        assert_eq!(rules.nominal_backoff(u32::MAX), Duration::from_secs(300));
        for failures in [1, 5, 40] {
            let nominal = rules.nominal_backoff(failures);
            let actual = rules.backoff(failures);
            assert!(
                actual <= nominal && actual >= nominal.mul_f64(0.75),
                "{actual:?}"
            );
        }
    }

    #[test]
    fn an_item_is_retried_for_about_retry_for() {
        let rules = rules();
        // 2+4+...+256 = 510 s in 8 back-offs, then 300 s each.
        let needed = 9 + (24 * 3600 - 510_u32).div_ceil(300);
        assert!(!rules.retried_long_enough(needed - 1));
        assert!(rules.retried_long_enough(needed + 1));
        assert!(!rules.retried_long_enough(0) && !rules.retried_long_enough(1));
        let short = RetryRules {
            retry_for: Duration::from_secs(5),
            ..rules
        };
        assert!(!short.retried_long_enough(2), "2 s waited");
        assert!(short.retried_long_enough(3), "6 s waited");
    }

    #[test]
    fn secondary_pauses_double_from_a_minute_to_fifteen_and_honour_retry_after() {
        let rules = rules();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(rules.secondary_pause(1, None), minutes(1));
        assert_eq!(rules.secondary_pause(2, None), minutes(2));
        assert_eq!(rules.secondary_pause(4, None), minutes(8));
        assert_eq!(rules.secondary_pause(5, None), minutes(15));
        assert_eq!(rules.secondary_pause(u32::MAX, None), minutes(15));
        let asked = Duration::from_secs(2);
        assert_eq!(rules.secondary_pause(3, Some(asked)), asked);
        assert_eq!(
            rules.secondary_pause(1, Some(Duration::MAX)),
            MAX_RATE_LIMIT_PAUSE
        );
    }

    #[test]
    fn the_status_line_names_the_last_cause_of_a_drop() {
        let stats = Stats::default();
        assert!(stats.status_line(0).contains("last dropped because: none"));
        stats.record_refusal(&Refusal::MissingPermission {
            permission: "\"checks=write\"".into(),
        });
        let line = stats.status_line(3);
        assert!(
            line.contains(
                "last dropped because: the App lacks a permission: grant \"checks=write\""
            ),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
