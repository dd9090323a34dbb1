//! A store held locked by another process: unrelated requests are still
//! answered at once, the watchdog's checks still pass, deliveries that
//! need the store get no 2xx until their work is durable, and everything
//! recovers once the lock is gone.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::bot::{APP_ID, Options, PUBLIC_KEY, TestBot};
use support::fake_github::{FakeGitHub, PullRequest};
use support::webhooks;
use task_list_bot::pending::{BUSY_TIMEOUT, DATABASE_FILE, SqlitePendingSet};
use task_list_bot::server::Bot;

/// Runs only in the child process the test starts: opens a write
/// transaction on the database and holds it until its standard input closes.
#[test]
fn helper_hold_the_store_write_lock() {
    let Some(path) = std::env::var_os("TLB_HOLD_WRITE_LOCK") else {
        return;
    };
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.execute_batch("BEGIN IMMEDIATE").unwrap();
    // On a line of its own: the test harness may have begun one.
    println!("\n{HELD}");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    connection.execute_batch("ROLLBACK").unwrap();
}

/// What the helper prints once it holds the lock.
const HELD: &str = "store write lock held";

/// Another process holding the store's write lock, and its output.
struct LockHolder(Child, BufReader<std::process::ChildStdout>);

impl LockHolder {
    fn start(database: &Path) -> LockHolder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "helper_hold_the_store_write_lock",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("TLB_HOLD_WRITE_LOCK", database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim_end() != HELD {
            line.clear();
            let read = stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "the helper ended without taking the write lock");
        }
        LockHolder(child, stdout)
    }

    fn release(mut self) {
        drop(self.0.stdin.take());
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.1, &mut rest);
        assert!(self.0.wait().unwrap().success(), "{rest}");
    }
}

/// Far below the store's busy timeout, far above a quick answer on a busy
/// machine.
const QUICK: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_delays_no_unrelated_answer_and_no_watchdog_check() {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    github.add_repo(1, "octo/a");
    for number in 1..=2 {
        github.upsert_pull(
            "octo/a",
            PullRequest::new(number)
                .body("- [ ] a task")
                .author("alice"),
        );
    }
    let dir = std::env::temp_dir().join(format!("tlb-store-lock-{}", std::process::id()));
    let set = Arc::new(SqlitePendingSet::open(&dir).unwrap());
    let config = TestBot::config_for(&github, &Options::default());
    let bot = Bot::with_pending(config, set).unwrap();
    let liveness = bot.liveness();
    let store = bot.pending();
    let bot = TestBot::serve(github, bot).await;
    let opened = |number| webhooks::pull_request_opened(&bot.github, "octo/a", number);
    assert_eq!(bot.send(&opened(1)).await.status, 202);
    bot.check_runs_arrived("octo/a", 1).await;

    let holder = LockHolder::start(&dir.join(DATABASE_FILE));
    let locked_at = Instant::now();
    let second = opened(2);
    let needs_the_store = bot.send(&second);
    let probes = async {
        let mut slowest = Duration::ZERO;
        let mut probes = 0;
        // Until the store's busy timeout has run out, and then some.
        while locked_at.elapsed() < BUSY_TIMEOUT + Duration::from_secs(1) {
            let started = Instant::now();
            let (status, _, body) = bot.get("/ping").await;
            assert_eq!((status, body.as_str()), (200, "PONG"));
            slowest = slowest.max(started.elapsed());

            let ignored = bot
                .deliver("issues", &serde_json::json!({"action": "opened"}))
                .await;
            assert_eq!((ignored.status, ignored.body.as_str()), (200, "ignored\n"));
            slowest = slowest.max(ignored.took);

            let started = Instant::now();
            let (status, _, _) = bot.get("/health").await;
            assert_eq!(status, 200);
            slowest = slowest.max(started.elapsed());

            liveness
                .check()
                .expect("the watchdog would still ping while another process holds the lock");
            probes += 1;
            // Pacing between probes, not a wait for a condition.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (slowest, probes)
    };
    let (blocked, (slowest, probes)) = tokio::join!(needs_the_store, probes);
    holder.release();

    assert!(probes >= 5, "only {probes} probes");
    assert!(
        slowest < QUICK,
        "an unrelated answer took {slowest:?} while the store was locked"
    );
    assert_eq!(
        blocked.status, 503,
        "no 2xx before the work is durable: {blocked:?}"
    );
    assert!(
        blocked.took < Duration::from_secs(10),
        "answered within GitHub's 10 s delivery timeout: {blocked:?}"
    );
    let health = store.health();
    assert!(health.errors >= 1, "{health:?}");
    let (_, _, body) = bot.get("/health").await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(health["store"]["errors"].as_u64() >= Some(1), "{health}");

    // The lock is gone: GitHub's redelivery of the refused delivery works.
    assert_eq!(bot.send(&opened(2)).await.status, 202);
    bot.check_runs_arrived("octo/a", 2).await;
    liveness.check().unwrap();
    bot.shutdown().await;
    drop(store);
    std::fs::remove_dir_all(dir).unwrap();
}
