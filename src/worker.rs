//! The loop that spends write slots.
//!
//! For every installation with pending work, one task at a time claims an
//! item, reads the pull request's current state, computes its check, and
//! writes it only when it differs from the latest one. Writes go through a
//! per-installation limiter (governor), so a burst on one installation never
//! delays another's, and reads are never gated by it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::DefaultKeyedRateLimiter;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::check::{CHECK_NAME, CheckRunRequest, TaskSources};
use crate::github::{GitHub, GitHubError, InstallationClient, InstallationId};
use crate::pending::{Claim, DroppedItem, Store, WorkItem};

/// Failed attempts after which an item is dropped (and logged).
const MAX_ATTEMPTS: u32 = 5;

/// Live figures for the operator (systemd's STATUS=) and for tests.
#[derive(Debug)]
pub struct Stats {
    pub deliveries: AtomicU64,
    pub writes: AtomicU64,
    pub skipped_unchanged: AtomicU64,
    pub dropped: AtomicU64,
    pub waiting_on_limiter: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
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

    /// One line for `systemctl status`.
    pub fn status_line(&self, pending: usize) -> String {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "none".into());
        format!(
            "pending {pending}, waiting on limiter {}, deliveries {}, writes {}, unchanged {}, dropped {}, last GitHub error: {last_error}",
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
    ignored_bots: Vec<String>,
    /// Wakes the loop when a driving task ends.
    driver_done: Notify,
    stats: Arc<Stats>,
    /// Installations that have a driving task; one per installation, so
    /// that its writes leave one after the other.
    driving: Mutex<HashSet<InstallationId>>,
}

impl Worker {
    pub fn new(
        pending: Store,
        github: GitHub,
        quota: governor::Quota,
        ignored_bots: Vec<String>,
        stats: Arc<Stats>,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            pending,
            github,
            limiter: governor::RateLimiter::keyed(quota),
            ignored_bots,
            driver_done: Notify::new(),
            stats,
            driving: Mutex::default(),
        })
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
                _ = self.pending.changed() => {}
                _ = self.driver_done.notified() => {}
                _ = tokio::time::sleep(self.until_next_retry().await) => {}
                _ = stop.cancelled() => {}
            }
        }

        let deadline = tokio::time::Instant::now() + drain_timeout;
        let pending = self
            .pending
            .len()
            .await
            .unwrap_or_else(|_| self.pending.cached_len());
        if pending > 0 {
            tracing::info!(
                pending,
                ?drain_timeout,
                "draining queued checks before exit"
            );
        }
        loop {
            self.start_drivers(&tracker).await;
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

    /// Whether a stopping worker may exit: it holds no claim, and nothing
    /// is left that only it could write. Items of a shared store stay there
    /// for the other workers; a private store must be empty.
    async fn drained(&self) -> bool {
        if !self.driving.lock().expect("driving lock").is_empty() {
            return false;
        }
        if !self.pending.is_shared() {
            return self.pending.is_empty().await.unwrap_or(false);
        }
        self.pending
            .ready_installations(SystemTime::now())
            .await
            .is_ok_and(|ready| ready.is_empty())
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
        let mut driving = self.driving.lock().expect("driving lock");
        for installation in ready {
            if !driving.insert(installation) {
                continue;
            }
            let worker = Arc::clone(self);
            tracker.spawn(async move { worker.drive(installation).await });
        }
    }

    /// Works through one installation's items, one at a time.
    async fn drive(self: Arc<Self>, installation: InstallationId) {
        loop {
            let claim = match self.pending.claim(installation, SystemTime::now()).await {
                Ok(Some(claim)) => claim,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, installation_id = installation.0, "cannot claim pending work");
                    break;
                }
            };
            self.process(claim).await;
            self.stats.finished.send_modify(|finished| *finished += 1);
        }
        self.driving
            .lock()
            .expect("driving lock")
            .remove(&installation);
        // Work may have arrived between the last claim and now.
        self.driver_done.notify_one();
    }

    async fn process(&self, claim: Claim) {
        let installation = claim.item.installation();
        let client = match self.github.installation(installation) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, installation_id = installation.0, "no client for installation");
                return self.finish(&claim).await;
            }
        };
        let outcome = match &claim.item {
            WorkItem::PullRequest(_) => self.update_pull_request(&client, &claim).await,
            WorkItem::MergeGroup { repo, head_sha, .. } => {
                let request = CheckRunRequest::merge_group(head_sha, chrono::Utc::now());
                self.write(&client, &claim, repo, &request).await
            }
        };
        match outcome {
            Ok(()) => self.finish(&claim).await,
            Err(error) => self.failed(&claim, error).await,
        }
    }

    async fn update_pull_request(
        &self,
        client: &InstallationClient,
        claim: &Claim,
    ) -> Result<(), GitHubError> {
        let WorkItem::PullRequest(pull) = &claim.item else {
            unreachable!("only called for pull requests");
        };
        let state = client.pull_request_state(&pull.repo, pull.number).await?;
        if !state.pull.is_open() {
            tracing::debug!(
                delivery_id = %claim.delivery_id,
                installation_id = pull.installation.0,
                repository = %pull.repo,
                pull_request = pull.number.0,
                "pull request is closed: no check written"
            );
            return Ok(());
        }
        let tasks = TaskSources::from_state(&state).tasks(&self.ignored_bots);
        let request = CheckRunRequest::for_tasks(&state.pull.head.sha, &tasks, chrono::Utc::now());
        let latest = client
            .latest_check_run(
                &pull.repo,
                &state.pull.head.sha,
                CHECK_NAME,
                self.github.app_id(),
            )
            .await?;
        if latest.is_some_and(|existing| request.says_the_same_as(&existing)) {
            self.stats.skipped_unchanged.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                delivery_id = %claim.delivery_id,
                installation_id = pull.installation.0,
                repository = %pull.repo,
                pull_request = pull.number.0,
                title = %request.output.title,
                "check unchanged: no write"
            );
            return Ok(());
        }
        self.write(client, claim, &pull.repo, &request).await
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
        self.stats
            .waiting_on_limiter
            .fetch_sub(1, Ordering::Relaxed);
        let created = client.create_check_run(repo, request).await?;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            delivery_id = %claim.delivery_id,
            installation_id = installation.0,
            repository = %repo,
            pull_request = pull_number(&claim.item),
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
        if let Err(error) = self.pending.done(claim).await {
            tracing::error!(%error, "cannot mark work done");
        }
    }

    async fn failed(&self, claim: &Claim, error: GitHubError) {
        self.stats.record_error(&error);
        let installation = claim.item.installation();
        let now = SystemTime::now();
        let attempts = claim.attempts + 1;
        let log_context = (
            claim.delivery_id.as_str(),
            installation.0,
            claim.item.repo().0.as_str(),
            pull_number(&claim.item),
        );
        if !error.is_transient() || attempts >= MAX_ATTEMPTS {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                delivery_id = log_context.0,
                installation_id = log_context.1,
                repository = log_context.2,
                pull_request = log_context.3,
                github_request_id = error.request_id().unwrap_or("-"),
                attempts,
                %error,
                "giving up on this check"
            );
            self.record_dropped(claim, error.to_string()).await;
            return self.finish(claim).await;
        }
        let retry_at = match &error {
            GitHubError::RateLimited { retry_after, .. } => {
                let until = now + *retry_after;
                if let Err(store_error) = self.pending.pause(installation, until).await {
                    tracing::error!(%store_error, "cannot record the pause GitHub asked for");
                }
                until
            }
            _ => now + Duration::from_secs(1 << attempts.min(6)),
        };
        tracing::warn!(
            delivery_id = log_context.0,
            installation_id = log_context.1,
            repository = log_context.2,
            pull_request = log_context.3,
            github_request_id = error.request_id().unwrap_or("-"),
            attempts,
            retry_in_ms = retry_at.duration_since(now).unwrap_or_default().as_millis() as u64,
            %error,
            "check not written yet; will retry"
        );
        if let Err(store_error) = self.pending.retry_later(claim, retry_at).await {
            tracing::error!(%store_error, "cannot reschedule work");
        }
    }
}

fn pull_number(item: &WorkItem) -> u64 {
    match item {
        WorkItem::PullRequest(pull) => pull.number.0,
        WorkItem::MergeGroup { .. } => 0,
    }
}
