//! How writes are paced, coalesced, retried and kept apart per
//! installation, and how GitHub's failures and rate limits are honoured.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::bot::{Options, TestBot};
use support::fake_github::{Endpoint, FakeGitHub, Fault, PullRequest};
use support::temp_dir::TempDir;
use support::webhooks;
use task_list_bot::pending::SqlitePendingSet;
use task_list_bot::server::Bot;

fn seed(github: &FakeGitHub, installation: u64, repo: &str, pulls: std::ops::RangeInclusive<u64>) {
    github.add_repo(installation, repo);
    for number in pulls {
        github.upsert_pull(
            repo,
            PullRequest::new(number)
                .body("- [ ] a task")
                .author("alice"),
        );
    }
}

fn slow_writes() -> Options {
    Options {
        write_rate: 1.0,
        ..Options::default()
    }
}

#[tokio::test]
async fn the_webhook_answer_does_not_wait_for_the_write_queue() {
    let bot = TestBot::start_with(Options {
        write_rate: 0.5,
        ..Options::default()
    })
    .await;
    seed(&bot.github, 1, "octo/a", 1..=5);
    for number in 1..=5 {
        let answer = bot
            .send(&webhooks::pull_request_opened(
                &bot.github,
                "octo/a",
                number,
            ))
            .await;
        assert_eq!(answer.status, 202);
    }
    // At 0.5 writes/s the five writes take eight seconds whatever the load
    // on the machine; every delivery was answered before they were done.
    assert!(bot.github.check_runs("octo/a").len() < 5);
    bot.check_runs_arrived("octo/a", 5).await;
}

#[tokio::test]
async fn writes_of_one_installation_are_paced_by_the_limiter() {
    let bot = TestBot::start_with(slow_writes()).await;
    seed(&bot.github, 1, "octo/a", 1..=4);
    for number in 1..=4 {
        bot.send(&webhooks::pull_request_opened(
            &bot.github,
            "octo/a",
            number,
        ))
        .await;
    }
    bot.check_runs_arrived("octo/a", 4).await;
    let arrivals: Vec<Instant> = bot
        .github
        .check_runs("octo/a")
        .iter()
        .map(|c| c.received_at)
        .collect();
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(900),
            "writes {gap:?} apart at 1/s"
        );
    }
}

#[tokio::test]
async fn a_busy_installation_does_not_delay_another() {
    let bot = TestBot::start_with(slow_writes()).await;
    seed(&bot.github, 1, "busy/repo", 1..=5);
    seed(&bot.github, 2, "quiet/repo", 1..=1);
    for number in 1..=5 {
        bot.send(&webhooks::pull_request_opened(
            &bot.github,
            "busy/repo",
            number,
        ))
        .await;
    }
    let sent_quiet = Instant::now();
    bot.send(&webhooks::pull_request_opened(&bot.github, "quiet/repo", 1))
        .await;
    bot.check_runs_arrived("quiet/repo", 1).await;
    let quiet_write = bot.github.check_runs("quiet/repo")[0].received_at;
    // Waiting behind the busy installation's pace (1/s) would put the quiet
    // write after the busy ones still queued; a slot that came due at that
    // very moment may slip in first, no more.
    let busy_in_between = bot
        .github
        .check_runs("busy/repo")
        .iter()
        .filter(|run| run.received_at > sent_quiet && run.received_at < quiet_write)
        .count();
    assert!(
        busy_in_between <= 1,
        "the quiet installation waited for {busy_in_between} busy writes ({:?})",
        quiet_write - sent_quiet
    );
    assert!(
        bot.github.check_runs("busy/repo").len() < 5,
        "the busy one is still queued"
    );
}

#[tokio::test]
async fn many_events_for_one_pull_request_while_it_waits_make_one_write() {
    let bot = TestBot::start_with(Options {
        write_rate: 0.5,
        ..Options::default()
    })
    .await;
    seed(&bot.github, 1, "octo/a", 1..=2);
    // The first write takes the slot; pull request 2 then waits two seconds.
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    for _ in 0..10 {
        let comment = bot
            .github
            .add_issue_comment("octo/a", 2, "bob", "no tasks here");
        assert_eq!(
            bot.send(&webhooks::issue_comment_created(
                &bot.github,
                "octo/a",
                2,
                comment
            ))
            .await
            .status,
            202
        );
    }
    bot.check_runs_arrived("octo/a", 2).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !bot.pending_is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("queue drains");
    let writes_for_2 = bot
        .github
        .check_runs("octo/a")
        .iter()
        .filter(|c| c.head_sha == bot.github.pull("octo/a", 2).unwrap().head_sha)
        .count();
    assert_eq!(writes_for_2, 1, "ten events, one write");
}

#[tokio::test]
async fn retry_after_is_honoured_before_writing_again() {
    let bot = TestBot::start().await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.github.inject(
        Endpoint::CreateCheckRun,
        Fault::SecondaryRateLimit {
            retry_after_secs: 2,
        },
        1,
    );
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    let posts: Vec<_> = bot
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/check-runs"))
        .collect();
    assert_eq!(posts.len(), 2, "one refused, one accepted");
    assert_eq!(posts[0].status, 403);
    let waited = posts[1].received_at - posts[0].received_at;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, asked for 2 s"
    );
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
}

#[tokio::test]
async fn an_exhausted_primary_limit_pauses_until_reset() {
    let bot = TestBot::start().await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.github
        .set_primary_limit(1, 5000, 0, Duration::from_secs(2));
    let sent = Instant::now();
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    let written = bot.github.check_runs("octo/a")[0].received_at;
    assert!(
        written - sent >= Duration::from_secs(1),
        "waited {:?} for the reset",
        written - sent
    );
}

#[tokio::test]
async fn an_expired_token_is_replaced_and_the_request_retried() {
    let bot = TestBot::start().await;
    seed(&bot.github, 1, "octo/a", 1..=2);
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    assert_eq!(
        bot.github.tokens_issued().len(),
        1,
        "one token, then cached"
    );

    bot.github.inject(Endpoint::GetPull, Fault::ExpiredToken, 1);
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 2))
        .await;
    bot.check_runs_arrived("octo/a", 2).await;
    assert_eq!(
        bot.github.tokens_issued().len(),
        2,
        "a fresh token after the 401"
    );
    assert!(bot.github.requests().iter().any(|r| r.status == 401));
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried() {
    // The timeout leaves every ordinary request room on a busy machine; the
    // slow answer outlasts it by far.
    let bot = TestBot::start_with(Options {
        request_timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    bot.github
        .inject(Endpoint::GetPull, Fault::ServerError(502), 2);
    bot.github.inject(
        Endpoint::CreateCheckRun,
        Fault::Slow(Duration::from_secs(6)),
        1,
    );
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    let pulls = bot
        .github
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pulls/1"))
        .count();
    assert_eq!(pulls, 3, "two 502s, then success");
    assert_eq!(bot.github.pending_faults(), 0);
}

#[tokio::test]
async fn a_final_failure_is_given_up_and_counted() {
    let bot = TestBot::start().await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    // A repository the installation cannot see answers 404: that will not get better.
    bot.github.add_repo(2, "other/repo");
    bot.github
        .upsert_pull("other/repo", PullRequest::new(1).body("- [ ] x"));
    let mut webhook = webhooks::pull_request_opened(&bot.github, "other/repo", 1);
    webhook.payload["installation"]["id"] = 1.into();
    bot.send(&webhook).await;
    bot.processed(1).await;
    assert_eq!(
        bot.stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(bot.pending_is_empty());
    let last_error = bot.stats.last_error.lock().unwrap().clone().unwrap();
    assert!(last_error.contains("404"), "{last_error}");
    assert!(last_error.contains("request id"), "{last_error}");
}

/// A delivery id seen before is recorded again (GitHub's "Redeliver"
/// button must work); the recompute is idempotent, so nothing is written
/// twice when nothing changed.
#[tokio::test]
async fn a_redelivered_delivery_is_recomputed_without_a_second_write() {
    let bot = TestBot::start().await;
    seed(&bot.github, 1, "octo/a", 1..=1);
    let webhook = webhooks::pull_request_opened(&bot.github, "octo/a", 1);
    assert_eq!(bot.send(&webhook).await.status, 202);
    bot.processed(1).await;
    let again = bot.send(&webhook).await;
    assert_eq!((again.status, again.body.as_str()), (202, "queued\n"));
    bot.processed(2).await;
    assert_eq!(bot.github.check_runs("octo/a").len(), 1);
    assert_eq!(
        bot.stats
            .skipped_unchanged
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(bot.pending_is_empty());
}

#[tokio::test]
async fn stopping_writes_every_queued_check_first() {
    let bot = TestBot::start_with(Options {
        write_rate: 4.0,
        drain_timeout: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    seed(&bot.github, 1, "octo/a", 1..=8);
    for number in 1..=8 {
        bot.send(&webhooks::pull_request_opened(
            &bot.github,
            "octo/a",
            number,
        ))
        .await;
    }
    let github = bot.github.clone();
    assert!(github.check_runs("octo/a").len() < 8);
    bot.shutdown().await;
    assert_eq!(
        github.check_runs("octo/a").len(),
        8,
        "all queued checks written before exit"
    );
}

/// Two workers sharing one store: the second writes what the first
/// accepted, and a pull request is never written by both.
#[tokio::test]
async fn workers_sharing_a_store_split_the_writes() {
    let dir = TempDir::new("shared");
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    seed(&github, 1, "octo/a", 1..=6);
    let options = slow_writes();
    let start = |github: FakeGitHub| {
        let dir = dir.path().to_owned();
        let options = options.clone();
        async move {
            let config = TestBot::config_for(&github, &options);
            let store = Arc::new(SqlitePendingSet::open(&dir).unwrap());
            TestBot::serve(github, Bot::with_pending(config, store).unwrap()).await
        }
    };
    let first = start(github.clone()).await;
    let second = start(github.clone()).await;
    // Every delivery goes to the first worker.
    for number in 1..=6 {
        assert_eq!(
            first
                .send(&webhooks::pull_request_opened(&github, "octo/a", number))
                .await
                .status,
            202
        );
    }
    first.check_runs_arrived("octo/a", 6).await;
    let writes = |bot: &TestBot| bot.stats.writes.load(std::sync::atomic::Ordering::Relaxed);
    // A worker counts a write once GitHub's answer is back, a moment after
    // the fake recorded the check run.
    let deadline = Instant::now() + support::bot::PATIENCE;
    while writes(&first) + writes(&second) < 6 {
        assert!(
            Instant::now() < deadline,
            "writes counted: {} + {}",
            writes(&first),
            writes(&second)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        writes(&second) >= 2,
        "the idle worker took part: {} + {}",
        writes(&first),
        writes(&second)
    );
    assert_eq!(
        writes(&first) + writes(&second),
        6,
        "no pull request written twice"
    );
    // Each worker paces its own writes (1/s), so a fair split is what makes
    // two workers write twice as fast; elapsed time would only measure the
    // machine's load.
    assert!(
        writes(&first) >= 2,
        "the accepting worker wrote too: {} + {}",
        writes(&first),
        writes(&second)
    );
    first.shutdown().await;
    second.shutdown().await;
    assert_eq!(
        github.check_runs("octo/a").len(),
        6,
        "nothing written twice"
    );
}

/// While the store cannot take the work (here: another process holds its
/// write lock past the busy timeout), deliveries are answered 503 so that
/// GitHub records a failure that redelivery recovers; never 2xx.
#[tokio::test]
async fn a_store_that_cannot_record_answers_503() {
    let dir = TempDir::new("locked");
    let dir = dir.path();
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    seed(&github, 1, "octo/a", 1..=1);
    let store = Arc::new(SqlitePendingSet::open(dir).unwrap());
    let config = TestBot::config_for(&github, &Options::default());
    let bot = TestBot::serve(github, Bot::with_pending(config, store).unwrap()).await;

    let blocker =
        rusqlite::Connection::open(dir.join(task_list_bot::pending::DATABASE_FILE)).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let answer = bot
        .send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body.contains("cannot record the work"),
        "{}",
        answer.body
    );
    assert!(bot.github.check_runs("octo/a").is_empty());

    blocker.execute_batch("ROLLBACK").unwrap();
    let retried = bot
        .send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    assert_eq!(retried.status, 202, "recorded once the store is back");
    bot.check_runs_arrived("octo/a", 1).await;
    bot.shutdown().await;
}

#[tokio::test]
async fn a_token_is_renewed_shortly_before_it_expires() {
    let bot = TestBot::start().await;
    // Tokens live 3 s longer than the margin the client renews them with.
    bot.github
        .set_token_ttl(task_list_bot::github::TOKEN_RENEWAL_MARGIN + Duration::from_secs(3));
    seed(&bot.github, 1, "octo/a", 1..=3);
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 1))
        .await;
    bot.check_runs_arrived("octo/a", 1).await;
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 2))
        .await;
    bot.check_runs_arrived("octo/a", 2).await;
    assert_eq!(bot.github.tokens_issued().len(), 1, "still fresh: reused");
    tokio::time::sleep(Duration::from_secs(4)).await;
    bot.send(&webhooks::pull_request_opened(&bot.github, "octo/a", 3))
        .await;
    bot.check_runs_arrived("octo/a", 3).await;
    assert_eq!(bot.github.tokens_issued().len(), 2, "renewed before expiry");
    assert!(
        bot.github.requests().iter().all(|r| r.status != 401),
        "never used an expired token"
    );
}

#[tokio::test]
async fn one_app_jwt_mints_every_installations_token() {
    let bot = TestBot::start().await;
    let check_written = |installation: u64| {
        let bot = &bot;
        async move {
            let repo = format!("octo/r{installation}");
            seed(&bot.github, installation, &repo, 1..=1);
            bot.send(&webhooks::pull_request_opened(&bot.github, &repo, 1))
                .await;
            bot.check_runs_arrived(&repo, 1).await;
        }
    };
    check_written(1).await;
    // A JWT's claims count whole seconds, and RSA signatures of the same
    // claims are alike: only a JWT signed in a later second differs.
    let first_signed_by = epoch_seconds();
    while epoch_seconds() == first_signed_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_written(2).await;
    check_written(3).await;

    let issued = bot.github.tokens_issued();
    let installations: Vec<u64> = issued.iter().map(|t| t.installation_id).collect();
    assert_eq!(installations, [1, 2, 3], "one token per installation");
    assert!(
        issued.iter().all(|t| t.app_jwt == issued[0].app_jwt),
        "every token was asked for with the same App JWT"
    );
}

fn epoch_seconds() -> u64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs()
}

/// Minting an installation token signs a JWT with the App's RSA key,
/// milliseconds of CPU (far more in a debug build). It happens on a
/// blocking thread: the runtime's one worker thread goes on running other
/// tasks meanwhile, as a worker's two go on answering webhooks.
///
/// What is measured is the CPU the runtime's thread spends on the whole
/// read, not how long it went unpolled: a thread preempted by other
/// processes goes unpolled too, but spends no CPU meanwhile.
#[test]
fn minting_a_token_does_not_hold_up_the_runtime() {
    use task_list_bot::config::AppCredentials;
    use task_list_bot::github::{GitHub, InstallationId, PullNumber, RepoName, RetryPolicy};

    // The fake on a runtime of its own, so that the client's runtime
    // thread runs the client's work alone.
    let fake_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let github = fake_runtime.block_on(FakeGitHub::start(
        support::bot::APP_ID,
        support::bot::PUBLIC_KEY.as_bytes(),
    ));
    seed(&github, 1, "octo/a", 1..=1);
    // What one signing takes on this machine, in this build: the least of
    // three, as noise only adds.
    let signing = {
        use octocrab::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let key = EncodingKey::from_rsa_pem(support::bot::PRIVATE_KEY.as_bytes()).unwrap();
        let claims = serde_json::json!({"iss": support::bot::APP_ID});
        (0..3)
            .map(|_| {
                let started = thread_cpu_time();
                encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
                thread_cpu_time() - started
            })
            .min()
            .unwrap()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (state, runtime_cpu) = runtime.block_on(async {
        let credentials = AppCredentials {
            app_id: support::bot::APP_ID,
            private_key: support::bot::PRIVATE_KEY.into(),
        };
        let client = GitHub::new(
            &github.base_url(),
            &credentials,
            RetryPolicy::new(Duration::from_secs(10)),
        )
        .unwrap();
        let installation = client.installation(InstallationId(1));
        // A spawned task runs on the runtime's one worker thread, never on
        // the thread that blocks on this future; so does every task the
        // read spawns.
        tokio::spawn(async move {
            let started = thread_cpu_time();
            let state = installation
                .pull_request_state(&RepoName("octo/a".into()), PullNumber(1))
                .await;
            (state, thread_cpu_time() - started)
        })
        .await
        .unwrap()
    });

    let state = state.expect("the pull request is read");
    assert_eq!(state.pull.number, 1);
    assert_eq!(github.tokens_issued().len(), 1, "a token was minted");
    // Signing in line would cost the thread a whole signing at least.
    assert!(
        runtime_cpu < signing * 3 / 4,
        "the runtime's thread spent {runtime_cpu:?} of CPU on the read; one signing takes {signing:?}"
    );
}

/// The CPU time the calling thread has used: the first field of
/// `/proc/thread-self/schedstat`, in nanoseconds.
fn thread_cpu_time() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("reading /proc/thread-self/schedstat");
    let nanoseconds = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("no CPU time in /proc/thread-self/schedstat: {schedstat:?}"));
    Duration::from_nanos(nanoseconds)
}
