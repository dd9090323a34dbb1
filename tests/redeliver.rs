//! The redelivery job against the fake GitHub: it asks once for every
//! delivery that never got a 2xx, and never again on later runs.

mod support;

use std::time::Duration;

use support::bot::{APP_ID, PRIVATE_KEY, PUBLIC_KEY};
use support::fake_github::{FakeGitHub, NewDelivery};
use support::temp_dir::TempDir;
use task_list_bot::config::AppCredentials;
use task_list_bot::github::{GitHub, RetryPolicy};
use task_list_bot::pending::SqlitePendingSet;

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

#[tokio::test]
async fn failed_deliveries_are_redelivered_once_across_runs() {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    github.add_delivery(delivery("answered", 202, false, 60));
    github.add_delivery(delivery("refused", 503, false, 50));
    github.add_delivery(delivery("unreachable", 0, false, 40));
    github.add_delivery(delivery("fixed", 502, false, 30));
    github.add_delivery(delivery("fixed", 200, true, 20));
    github.add_delivery(delivery("too-old", 503, false, 3 * 24 * 3600));
    // Enough successes to need more than one page of 100.
    for i in 0..150 {
        github.add_delivery(delivery(&format!("ok-{i}"), 200, false, 10));
    }

    let app = AppCredentials {
        app_id: APP_ID,
        private_key: PRIVATE_KEY.into(),
    };
    let client = GitHub::new(
        &github.base_url(),
        &app,
        RetryPolicy::new(Duration::from_secs(5)),
    )
    .unwrap();
    let dir = TempDir::new("redeliver");
    let store = SqlitePendingSet::open(dir.path()).unwrap();

    let since = Duration::from_secs(24 * 3600);
    let first = task_list_bot::redeliver::run(&client, &store, since)
        .await
        .unwrap();
    assert_eq!(first.failed_deliveries, 2);
    assert_eq!(first.redelivered, 2);
    let mut asked: Vec<String> = github
        .redelivery_attempts()
        .into_iter()
        .map(|a| a.guid)
        .collect();
    asked.sort();
    assert_eq!(asked, ["refused", "unreachable"]);

    let second = task_list_bot::redeliver::run(&client, &store, since)
        .await
        .unwrap();
    assert_eq!(second.redelivered, 0, "idempotent across runs");
    assert_eq!(github.redelivery_attempts().len(), 2);
}
