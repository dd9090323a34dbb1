//! How the bot copes with what GitHub really answers: long outages,
//! secondary rate limits without `Retry-After`, the primary limit's window,
//! huge task lists, renamed repositories, missing permissions, suspended
//! installations, strict header checks, and a store that fails or panics
//! under the worker. One scenario per rule.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use support::bot::{APP_ID, Options, PATIENCE, PUBLIC_KEY, TestBot};
use support::fake_github::{FakeGitHub, PullRequest, Scope};
use support::webhooks;
use task_list_bot::config::Config;
use task_list_bot::github::InstallationId;
use task_list_bot::pending::{
    Added, Backlog, Changed, Claim, MemoryPendingSet, Pause, PendingError, PendingSet, WorkItem,
};
use task_list_bot::server::Bot;

/// A bot whose configuration the test adjusts first (production defaults
/// otherwise), against a fresh fake.
async fn start(adjust: impl FnOnce(&mut Config)) -> TestBot {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    let mut config = TestBot::config_for(&github, &Options::default());
    adjust(&mut config);
    let bot = Bot::new(config).expect("bot builds");
    TestBot::serve(github, bot).await
}

fn seed(github: &FakeGitHub, installation: u64, repo: &str, pulls: std::ops::RangeInclusive<u64>) {
    github.add_repo(installation, repo);
    for number in pulls {
        github.upsert_pull(
            repo,
            PullRequest::new(number)
                .body("- [ ] a task\n- [x] a done one")
                .author("alice"),
        );
    }
}

/// Waits until `condition` holds, failing after `patience`.
async fn eventually(what: &str, patience: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn title(check: &support::fake_github::RecordedCheckRun) -> String {
    check.body["output"]["title"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn requests_answered(bot: &TestBot, status: u16) -> usize {
    bot.github
        .requests()
        .iter()
        .filter(|r| r.status == status)
        .count()
}

fn check_run_posts(bot: &TestBot) -> Vec<support::fake_github::RecordedRequest> {
    bot.github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/check-runs"))
        .collect()
}

/// GitHub answers 502 to everything across several back-off doublings
/// (on a shortened clock: back-offs from 0.5 s, capped at 2 s), while pull
/// requests of three installations wait. Afterwards every check is
/// written, nothing was dropped, and during the outage each installation
/// sent a bounded number of requests: one item probes, the others wait.
#[tokio::test]
async fn a_long_outage_loses_nothing_and_makes_few_requests() {
    const OUTAGE: Duration = Duration::from_secs(10);
    let bot = start(|config| {
        // 0.5 s, 1 s, then 2 s: three doublings within the outage.
        config.first_retry_backoff = Duration::from_millis(500);
        config.retry_backoff_cap = Duration::from_secs(2);
    })
    .await;
    let repos = [(11, "one/repo"), (12, "two/repo"), (13, "three/repo")];
    for (installation, repo) in repos {
        seed(&bot.github, installation, repo, 1..=4);
    }
    bot.github.outage(Scope::All, 502, Some(OUTAGE));
    let outage_began = Instant::now();
    for (_, repo) in repos {
        for number in 1..=4 {
            let answer = bot
                .send(&webhooks::pull_request_opened(&bot.github, repo, number))
                .await;
            assert_eq!(answer.status, 202);
        }
    }
    eventually("all twelve checks", OUTAGE + PATIENCE, || {
        bot.github.all_check_runs().len() >= 12
    })
    .await;
    assert!(
        outage_began.elapsed() >= OUTAGE,
        "written during the outage?"
    );
    for (_, repo) in repos {
        let checks = bot.github.check_runs(repo);
        assert_eq!(checks.len(), 4, "{repo}: one check per pull request");
        for check in &checks {
            assert_eq!(title(check), "1 / 2 tasks completed", "{repo}");
        }
    }
    eventually("the store to empty", PATIENCE, || bot.pending_is_empty()).await;
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 0);

    let failed = bot
        .github
        .requests()
        .into_iter()
        .filter(|r| r.status == 502)
        .collect::<Vec<_>>();
    // Per installation: probes at most every 0.375 s, 0.75 s, then 1.5 s
    // (the back-offs less their jitter), about eight in 10 s, each tried at
    // most four times at once. Twelve items each retrying alone would send
    // several times that.
    let bound_per_installation = 12 * 4;
    assert!(!failed.is_empty(), "the outage was seen");
    assert!(
        failed.len() <= 3 * bound_per_installation,
        "{} requests during the outage",
        failed.len()
    );
    assert!(
        bot.github.openapi_violations().is_empty(),
        "{:?}",
        bot.github.openapi_violations()
    );
}

/// GitHub failing for longer than `RETRY_FOR` (here 5 s): the item is
/// given up with that cause, shown in the status line, and no sooner.
#[tokio::test]
async fn an_item_is_given_up_only_after_retry_for() {
    let bot = start(|config| {
        config.first_retry_backoff = Duration::from_millis(500);
        config.retry_for = Duration::from_millis(500);
    })
    .await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.github.outage(Scope::All, 503, None);
    let began = Instant::now();
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    eventually("the item to be given up", PATIENCE, || {
        bot.stats.dropped.load(Ordering::Relaxed) == 1
    })
    .await;
    // A back-off of 0.5 s, less at most a quarter of jitter: given up at
    // the second failure, not at the first. Each failure is a request
    // tried four times.
    assert!(
        began.elapsed() >= Duration::from_millis(375),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(requests_answered(&bot, 503), 2 * 4, "two failed attempts");
    let status = bot.stats.status_line(0);
    assert!(
        status.contains("GitHub kept failing for RETRY_FOR"),
        "{status}"
    );
    eventually("the store to empty", PATIENCE, || bot.pending_is_empty()).await;
    assert!(bot.github.check_runs("octo/a").is_empty());
}

/// A secondary rate limit answered with `status` and no `Retry-After` for
/// 8 s on every check-run creation: the bot pauses the installation
/// (here from 1.25 s, doubling) instead of hammering, and writes every check
/// once the limit is over.
async fn a_headerless_secondary_limit_pauses_writes(status: u16) {
    const LIMIT: Duration = Duration::from_secs(8);
    let bot = start(|config| config.min_secondary_pause = Duration::from_millis(1250)).await;
    seed(&bot.github, 1, "octo/a", 1..=3);
    bot.github
        .secondary_limit(Scope::CheckRunCreation, status, None, LIMIT);
    let limited = Instant::now();
    for number in 1..=3 {
        bot.send(&webhooks::pull_request_opened(
            &bot.github,
            "octo/a",
            number,
        ))
        .await;
    }
    eventually("three checks", LIMIT + PATIENCE + PATIENCE, || {
        bot.github.check_runs("octo/a").len() >= 3
    })
    .await;
    let posts = check_run_posts(&bot);
    let refused = posts.iter().filter(|p| p.status == status).count();
    // Pauses of 1.25, 2.5 and 5 s cover 8 s with three refused writes.
    assert!(
        (1..=4).contains(&refused),
        "{refused} writes attempted during the limit"
    );
    assert!(
        posts
            .iter()
            .filter(|p| p.status == 201)
            .all(|p| p.received_at >= limited + LIMIT),
        "written only after the limit"
    );
    eventually("the store to empty", PATIENCE, || bot.pending_is_empty()).await;
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_secondary_limit_403_without_retry_after_pauses_writes() {
    a_headerless_secondary_limit_pauses_writes(403).await;
}

#[tokio::test]
async fn a_secondary_limit_429_without_retry_after_pauses_writes() {
    a_headerless_secondary_limit_pauses_writes(429).await;
}

/// The primary limit spent until a reset a few seconds away: one refused
/// request, then a pause until the reset, then the check.
#[tokio::test]
async fn a_spent_primary_limit_waits_for_its_window() {
    let bot = start(|_| {}).await;
    seed(&bot.github, 1, "octo/a", 1..=2);
    let reset_in = Duration::from_secs(3);
    bot.github.set_primary_limit(1, 5000, 0, reset_in);
    let spent = Instant::now();
    for number in 1..=2 {
        bot.send(&webhooks::pull_request_opened(
            &bot.github,
            "octo/a",
            number,
        ))
        .await;
    }
    bot.check_runs_arrived("octo/a", 2).await;
    for check in bot.github.check_runs("octo/a") {
        assert!(check.received_at >= spent + reset_in - Duration::from_millis(50));
    }
    let refused = bot
        .github
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .count();
    assert!(
        refused <= 2,
        "{refused} requests refused: the bot kept asking"
    );
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 0);
}

/// 3,000 tasks of non-ASCII text make tables far over GitHub's 65,535
/// bytes: the check is still written, its title counts every task, and its
/// summary and text fit.
#[tokio::test]
async fn three_thousand_non_ascii_tasks_get_a_check_that_fits() {
    let bot = start(|_| {}).await;
    bot.github.add_repo(1, "octo/a");
    let body: String = (0..3_000)
        .map(|i| {
            format!(
                "- [{}] tâche numéro {i}: vérifier ✓ ü ß\n",
                if i % 3 == 0 { 'x' } else { ' ' }
            )
        })
        .collect();
    bot.github
        .upsert_pull("octo/a", PullRequest::new(1).body(&body).author("alice"));
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    let check = &bot.github.check_runs("octo/a")[0];
    assert_eq!(title(check), "1000 / 3000 tasks completed");
    assert_eq!(check.body["status"], "in_progress");
    let summary = check.body["output"]["summary"].as_str().unwrap();
    let text = check.body["output"]["text"].as_str().unwrap();
    assert_eq!(summary, "2000 tasks still to be completed");
    assert!(text.len() <= 65_535, "{} bytes", text.len());
    assert!(text.len() > 60_000, "as much as fits is listed");
    assert!(
        text.trim_end()
            .ends_with("not listed: GitHub limits a check run's text to 65535 bytes."),
        "{}",
        &text[text.len() - 200..]
    );
    assert!(text.contains("| tâche numéro 0: vérifier ✓ ü ß | Completed |"));
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 0);
}

/// A repository renamed after the delivery was sent: GitHub answers 301
/// to the reads and 307 to the write, and the check lands on the renamed
/// repository.
#[tokio::test]
async fn a_renamed_repository_is_followed_for_reads_and_the_write() {
    let bot = start(|_| {}).await;
    seed(&bot.github, 1, "octo/old-name", 1..=1);
    let webhook = webhooks::pull_request_opened(&bot.github, "octo/old-name", 1);
    bot.github.rename_repo("octo/old-name", "octo/new-name");
    bot.send(&webhook).await;
    bot.check_runs_arrived("octo/new-name", 1).await;
    assert_eq!(
        title(&bot.github.check_runs("octo/new-name")[0]),
        "1 / 2 tasks completed"
    );
    assert!(requests_answered(&bot, 301) >= 1, "reads were redirected");
    assert!(
        requests_answered(&bot, 307) >= 1,
        "the write was redirected"
    );
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 0);
}

/// An installation without the checks permission: the item ends at once
/// with its cause and the permission to grant, shown in the status line;
/// nothing is retried.
#[tokio::test]
async fn a_missing_permission_ends_the_item_and_names_it() {
    let bot = start(|_| {}).await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.github.revoke_permission(1, "checks");
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.processed(1).await;
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 1);
    assert!(bot.pending_is_empty());
    let status = bot.stats.status_line(0);
    assert!(
        status.contains("the App lacks a permission: grant"),
        "{status}"
    );
    assert!(status.contains("checks"), "{status}");
    assert_eq!(requests_answered(&bot, 403), 1, "refused once, not retried");
}

/// A suspended installation: minting its token is refused, and the item
/// ends with that cause instead of being retried for a day.
#[tokio::test]
async fn a_suspended_installation_ends_the_item_and_says_so() {
    let bot = start(|_| {}).await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.github.suspend_installation(1);
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.processed(1).await;
    assert_eq!(bot.stats.dropped.load(Ordering::Relaxed), 1);
    let status = bot.stats.status_line(0);
    assert!(status.contains("the installation is suspended"), "{status}");
    assert!(bot.github.check_runs("octo/a").is_empty());
}

/// GitHub refuses a request that repeats `User-Agent` with 400; every
/// request the bot sends carries exactly one, so the check is written.
#[tokio::test]
async fn every_request_carries_a_single_user_agent() {
    let bot = start(|_| {}).await;
    bot.github.set_strict_headers(true);
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    assert_eq!(requests_answered(&bot, 400), 0);
}

/// A store that fails, then panics, under the worker: a failed `done` is
/// retried until it succeeds, a panic puts the item back and frees the
/// installation, and later work of that installation is still done.
#[tokio::test]
async fn store_failures_and_a_panic_never_strand_a_claim() {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    let config = TestBot::config_for(&github, &Options::default());
    let store = Arc::new(FlakyStore::default());
    store.failing_dones.store(3, Ordering::SeqCst);
    store.panicking_dones.store(1, Ordering::SeqCst);
    let pending: Arc<dyn PendingSet> = store.clone();
    let bot = TestBot::serve(
        github,
        Bot::with_pending(config, pending).expect("bot builds"),
    )
    .await;
    seed(&bot.github, 1, "octo/a", 1..=2);

    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    eventually("the first item to be done", PATIENCE, || {
        bot.pending_is_empty()
    })
    .await;
    assert_eq!(
        store.panicking_dones.load(Ordering::SeqCst),
        0,
        "it panicked"
    );
    assert_eq!(store.failing_dones.load(Ordering::SeqCst), 0, "it failed");

    // The installation is free again: its next pull request gets a check.
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 2))
        .await;
    bot.check_runs_arrived("octo/a", 2).await;
    eventually("the second item to be done", PATIENCE, || {
        bot.pending_is_empty()
    })
    .await;
}

/// A panic in the driving task itself (here the store's `claim`) frees
/// the installation: its work is taken up again.
#[tokio::test]
async fn a_driving_task_that_panics_frees_its_installation() {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    let config = TestBot::config_for(&github, &Options::default());
    let store = Arc::new(FlakyStore::default());
    store.panicking_claims.store(1, Ordering::SeqCst);
    let pending: Arc<dyn PendingSet> = store.clone();
    let bot = TestBot::serve(
        github,
        Bot::with_pending(config, pending).expect("bot builds"),
    )
    .await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    assert_eq!(
        store.panicking_claims.load(Ordering::SeqCst),
        0,
        "it panicked"
    );
    eventually("the item to be done", PATIENCE, || bot.pending_is_empty()).await;
}

/// A [`MemoryPendingSet`] whose `claim` or `done` panics, or whose `done`
/// fails, a given number of times.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryPendingSet,
    panicking_claims: AtomicU32,
    panicking_dones: AtomicU32,
    failing_dones: AtomicU32,
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl PendingSet for FlakyStore {
    fn add(&self, item: WorkItem, delivery_id: &str) -> Result<Added, PendingError> {
        self.inner.add(item, delivery_id)
    }
    fn changed(&self) -> Changed<'_> {
        self.inner.changed()
    }
    fn pause(&self, installation: InstallationId, until: SystemTime) -> Result<(), PendingError> {
        self.inner.pause(installation, until)
    }
    fn paused_until(&self, installation: InstallationId, now: SystemTime) -> Option<SystemTime> {
        self.inner.paused_until(installation, now)
    }
    fn claim(
        &self,
        installation: InstallationId,
        now: SystemTime,
    ) -> Result<Option<Claim>, PendingError> {
        if take_one(&self.panicking_claims) {
            panic!("the store broke while claiming work");
        }
        self.inner.claim(installation, now)
    }
    fn done(&self, claim: &Claim) -> Result<(), PendingError> {
        if take_one(&self.panicking_dones) {
            panic!("the store broke while marking work done");
        }
        if take_one(&self.failing_dones) {
            return Err(PendingError("disk I/O error".into()));
        }
        self.inner.done(claim)
    }
    fn retry_later(&self, claim: &Claim, not_before: SystemTime) -> Result<(), PendingError> {
        self.inner.retry_later(claim, not_before)
    }
    fn ready_installations(&self, now: SystemTime) -> Result<Vec<InstallationId>, PendingError> {
        self.inner.ready_installations(now)
    }
    fn next_retry(&self) -> Option<SystemTime> {
        self.inner.next_retry()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn is_shared(&self) -> bool {
        false
    }
    fn backlog(&self) -> Result<Vec<Backlog>, PendingError> {
        self.inner.backlog()
    }
    fn pauses(&self, now: SystemTime) -> Result<Vec<Pause>, PendingError> {
        self.inner.pauses(now)
    }
}
