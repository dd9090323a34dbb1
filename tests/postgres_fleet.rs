//! The real handler and worker on the fleet's PostgreSQL pending set,
//! against the fake GitHub: checks are written through the database, a
//! delivery the database cannot record is refused with 503 (GitHub
//! redelivers it), checks left in progress on a superseded head or a merged
//! pull request are completed, and `FLEET_WRITE_RATE` paces an
//! installation's writes.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use support::bot::{APP_ID, Options, PUBLIC_KEY, TestBot};
use support::fake_github::{FakeGitHub, PullRequest};
use support::postgres as pg;
use support::webhooks;
use task_list_bot::pending::{PgOptions, PostgresPendingSet};
use task_list_bot::server::Bot;

fn database_name(url: &secrecy::SecretString) -> String {
    let text = url.expose_secret();
    let path = text.split("///").nth(1).unwrap();
    path.split('?').next().unwrap().to_owned()
}

async fn github_with_pulls(count: u64) -> FakeGitHub {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    github.add_repo(1, "octo/a");
    for number in 1..=count {
        github.upsert_pull(
            "octo/a",
            PullRequest::new(number)
                .body("- [ ] a task")
                .author("alice"),
        );
    }
    github
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_recorded_in_the_database_and_refused_while_it_is_unreachable() {
    let github = github_with_pulls(2).await;
    let url = pg::fresh_database();
    let set = Arc::new(PostgresPendingSet::open(&url, PgOptions::default()).unwrap());
    let config = TestBot::config_for(&github, &Options::default());
    let bot = TestBot::serve(github, Bot::with_pending(config, set).unwrap()).await;
    let opened = |number| webhooks::pull_request_opened(&bot.github, "octo/a", number);
    assert_eq!(bot.send(&opened(1)).await.status, 202);
    bot.check_runs_arrived("octo/a", 1).await;

    let name = database_name(&url);
    let server = pg::server();
    server.psql(
        "postgres",
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    );
    server.psql(
        "postgres",
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    );
    let refused = bot.send(&opened(2)).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.took < Duration::from_secs(10),
        "answered within GitHub's delivery timeout: {refused:?}"
    );
    let (status, _, _) = bot.get("/ping").await;
    assert_eq!(status, 200, "the worker itself stays up");

    server.psql(
        "postgres",
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    );
    // GitHub's redelivery, once the database is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = bot.send(&opened(2)).await;
        if answer.status == 202 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(Instant::now() < deadline, "the database never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bot.check_runs_arrived("octo/a", 2).await;
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_write_rate_paces_an_installations_writes() {
    const PULLS: u64 = 5;
    let github = github_with_pulls(PULLS).await;
    let url = pg::fresh_database();
    let set = Arc::new(PostgresPendingSet::open(&url, PgOptions::default()).unwrap());
    let mut config = TestBot::config_for(&github, &Options::default());
    config.database_url = Some(url);
    config.fleet_write_rate = Some(4.0);
    let bot = TestBot::serve(github, Bot::with_pending(config, set).unwrap()).await;
    let started = Instant::now();
    for number in 1..=PULLS {
        let answer = bot
            .send(&webhooks::pull_request_opened(
                &bot.github,
                "octo/a",
                number,
            ))
            .await;
        assert_eq!(answer.status, 202);
    }
    bot.check_runs_arrived("octo/a", PULLS as usize).await;
    // WRITE_RATE is 50 per second here; the ceiling of 4 per second sets the
    // pace: the first write at once, each next one a quarter second later.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250 * (PULLS - 1) - 50),
        "{PULLS} writes in {took:?}"
    );
    bot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_left_in_progress_on_an_old_head_or_a_merged_pull_request_are_completed() {
    const OLD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const NEW: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    github.add_repo(1, "octo/a");
    let pull = |head| {
        PullRequest::new(1)
            .body("- [ ] a task")
            .author("alice")
            .head_sha(head)
    };
    github.upsert_pull("octo/a", pull(OLD));
    let url = pg::fresh_database();
    let set = Arc::new(PostgresPendingSet::open(&url, PgOptions::default()).unwrap());
    let config = TestBot::config_for(&github, &Options::default());
    let bot = TestBot::serve(github, Bot::with_pending(config, set).unwrap()).await;
    let on = |head: &str| -> Vec<serde_json::Value> {
        let runs = bot.github.check_runs("octo/a");
        runs.into_iter()
            .filter(|run| run.head_sha == head)
            .map(|run| run.body)
            .collect()
    };

    let opened = webhooks::pull_request_opened(&bot.github, "octo/a", 1);
    assert_eq!(bot.send(&opened).await.status, 202);
    bot.check_runs_arrived("octo/a", 1).await;
    bot.github.upsert_pull("octo/a", pull(NEW));
    let pushed = webhooks::pull_request_synchronize(&bot.github, "octo/a", 1, OLD);
    assert_eq!(bot.send(&pushed).await.status, 202);
    bot.check_runs_arrived("octo/a", 3).await;
    let old = on(OLD);
    assert_eq!(old.len(), 2, "{old:#?}");
    assert_eq!(
        (old[1]["status"].as_str(), old[1]["conclusion"].as_str()),
        (Some("completed"), Some("neutral"))
    );
    assert_eq!(on(NEW)[0]["status"], "in_progress");

    bot.github.upsert_pull("octo/a", pull(NEW).merged());
    let merged = webhooks::pull_request_closed(&bot.github, "octo/a", 1);
    assert_eq!(bot.send(&merged).await.status, 202);
    bot.check_runs_arrived("octo/a", 4).await;
    let new = on(NEW);
    assert_eq!(new[1]["conclusion"], "neutral");
    assert_eq!(
        new[1]["output"]["title"],
        "Not checked: pull request merged"
    );
    bot.shutdown().await;
}
