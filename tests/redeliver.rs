//! Redelivery against the fake GitHub: the job keeps asking, spaced out,
//! for every delivery that still has no 2xx answer within GitHub's window,
//! and a redelivered delivery (same id) is handled again by the bot.

mod support;

use std::time::{Duration, SystemTime};

use support::bot::{APP_ID, PRIVATE_KEY, PUBLIC_KEY, TestBot};
use support::fake_github::{FakeGitHub, NewDelivery, PullRequest};
use support::webhooks;
use task_list_bot::config::AppCredentials;
use task_list_bot::github::{GitHub, RetryPolicy};
use task_list_bot::pending::SqlitePendingSet;
use task_list_bot::redeliver::Policy;

fn delivery(guid: &str, status_code: u16, redelivery: bool, age_secs: u64) -> NewDelivery {
    NewDelivery {
        guid: Some(guid.into()),
        status_code,
        redelivery,
        age_secs,
        installation_id: Some(1),
        ..NewDelivery::default()
    }
}

fn client(github: &FakeGitHub) -> GitHub {
    let app = AppCredentials {
        app_id: APP_ID,
        private_key: PRIVATE_KEY.into(),
    };
    GitHub::new(
        &github.base_url(),
        &app,
        RetryPolicy::new(Duration::from_secs(5)),
    )
    .unwrap()
}

fn asked(github: &FakeGitHub) -> Vec<String> {
    let mut asked: Vec<String> = github
        .redelivery_attempts()
        .into_iter()
        .map(|a| a.guid)
        .collect();
    asked.sort();
    asked
}

#[tokio::test]
async fn failed_deliveries_are_asked_for_again_spaced_out_until_one_succeeds() {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    github.add_delivery(delivery("answered", 202, false, 60));
    github.add_delivery(delivery("refused", 503, false, 50));
    github.add_delivery(delivery("unreachable", 0, false, 40));
    github.add_delivery(delivery("fixed", 502, false, 30));
    github.add_delivery(delivery("fixed", 200, true, 20));
    github.add_delivery(delivery("too-old", 503, false, 3 * 24 * 3600 + 60));
    // Inside GitHub's 3-day window now, outside it 10 minutes later.
    github.add_delivery(delivery("nearly-too-old", 503, false, 3 * 24 * 3600 - 120));
    // Enough successes to need more than one page of 100.
    for i in 0..150 {
        github.add_delivery(delivery(&format!("ok-{i}"), 200, false, 10));
    }
    // Redeliveries fail too, for now: the bot is still down.
    github.set_redelivery_status_code(503);
    let client = client(&github);
    let dir = std::env::temp_dir().join(format!("tlb-redeliver-{}", std::process::id()));
    let store = SqlitePendingSet::open(&dir).unwrap();
    let policy = Policy::default();
    let since = Duration::from_secs(4 * 24 * 3600);
    let now = SystemTime::now();

    let first = task_list_bot::redeliver::run_with(&client, &store, since, &policy, now)
        .await
        .unwrap();
    assert_eq!(first.failed_deliveries, 3);
    assert_eq!(first.redelivered, 3);
    assert_eq!(asked(&github), ["nearly-too-old", "refused", "unreachable"]);

    let soon = now + Duration::from_secs(60);
    let second = task_list_bot::redeliver::run_with(&client, &store, since, &policy, soon)
        .await
        .unwrap();
    assert_eq!(second.redelivered, 0, "spaced out: not again at once");
    assert_eq!(second.already_requested, 3);

    // After the first spacing, still without a 2xx: asked again.
    // (A minute more: GitHub stamps its redelivery attempts a little after
    // `now`.)
    let later = now + policy.first_spacing + Duration::from_secs(60);
    let third = task_list_bot::redeliver::run_with(&client, &store, since, &policy, later)
        .await
        .unwrap();
    assert_eq!(third.redelivered, 2);
    assert_eq!(
        third.out_of_window, 1,
        "GitHub redelivers only deliveries of the past 3 days"
    );
    assert_eq!(third.forgotten, 1);
    assert_eq!(store.redelivery_record("nearly-too-old").unwrap(), None);
    assert_eq!(github.redelivery_attempts().len(), 5);

    // The bot is back: the next redelivery succeeds, and then nothing is
    // asked for any more.
    github.set_redelivery_status_code(202);
    let even_later = later + policy.spacing(2) + Duration::from_secs(60);
    let fourth = task_list_bot::redeliver::run_with(&client, &store, since, &policy, even_later)
        .await
        .unwrap();
    assert_eq!(fourth.redelivered, 2);
    // GitHub redelivers asynchronously: wait until both outcomes are listed.
    redeliveries_listed(&github, 2, 202).await;
    let fifth = task_list_bot::redeliver::run_with(
        &client,
        &store,
        since,
        &policy,
        even_later + policy.max_spacing,
    )
    .await
    .unwrap();
    assert_eq!(fifth.failed_deliveries, 0);
    assert_eq!(fifth.redelivered, 0);
    assert_eq!(github.redelivery_attempts().len(), 7);

    // Once the deliveries leave GitHub's window, what was asked is forgotten.
    let gone = now + policy.window + Duration::from_secs(3600);
    let sixth = task_list_bot::redeliver::run_with(&client, &store, since, &policy, gone)
        .await
        .unwrap();
    assert_eq!(sixth.forgotten, 2, "nearly-too-old went on the third run");
    assert_eq!(store.redelivery_record("refused").unwrap(), None);
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}

/// GitHub's "Redeliver" button sends the same delivery, with the same id,
/// again: after the pull request changed, the check follows the change.
#[tokio::test]
async fn a_delivery_redelivered_after_the_pull_request_changed_updates_the_check() {
    let bot = TestBot::start().await;
    bot.github.add_repo(1, "octo/a");
    bot.github.upsert_pull(
        "octo/a",
        PullRequest::new(1).body("- [ ] a task").author("alice"),
    );
    let webhook = webhooks::pull_request_opened(&bot.github, "octo/a", 1);
    assert_eq!(bot.send(&webhook).await.status, 202);
    bot.check_runs_arrived("octo/a", 1).await;
    let first = bot.github.check_runs("octo/a")[0].body.clone();
    assert_eq!(first["status"], "in_progress", "{first}");

    bot.github.upsert_pull(
        "octo/a",
        PullRequest::new(1).body("- [x] a task").author("alice"),
    );
    let again = bot.send(&webhook).await;
    assert_eq!((again.status, again.body.as_str()), (202, "queued\n"));
    bot.check_runs_arrived("octo/a", 2).await;
    let second = bot.github.check_runs("octo/a")[1].body.clone();
    assert_eq!(second["conclusion"], "success", "{second}");
    bot.shutdown().await;
}

/// Waits until `count` redeliveries answered `status_code` are listed.
async fn redeliveries_listed(github: &FakeGitHub, count: usize, status_code: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = github
            .deliveries()
            .iter()
            .filter(|d| d.redelivery && d.status_code == status_code)
            .count();
        if listed >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listed} of {count} redeliveries listed after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
