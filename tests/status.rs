//! `task-list-bot status`: a fleet of two in-process workers sharing one
//! store, plus one that is gone, read back by the real command.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::bot::{Options, PATIENCE, TestBot};
use support::fake_github::{FakeGitHub, PullRequest};
use support::webhooks;
use task_list_bot::github::{InstallationId, PullNumber, PullRequestRef, RepoName};
use task_list_bot::pending::fleet::read_fleet;
use task_list_bot::pending::{PendingSet, SqlitePendingSet, WorkItem, WorkerFigures};
use task_list_bot::server::Bot;
use task_list_bot::status;
use task_list_bot::worker::Stats;

const BINARY: &str = env!("CARGO_BIN_EXE_task-list-bot");

/// A temporary state directory, removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tlb-status-{name}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run_status(dir: &Path, args: &[&str]) -> Outcome {
    let output = tokio::process::Command::new(BINARY)
        .arg("status")
        .arg("--state-directory")
        .arg(dir)
        .args(args)
        .env_remove("STATE_DIRECTORY")
        .output()
        .await
        .expect("status runs");
    Outcome {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn start_worker(github: &FakeGitHub, dir: &Path, name: &str) -> TestBot {
    let mut config = TestBot::config_for(github, &Options::default());
    config.state_directory = Some(dir.to_owned());
    config.worker = name.to_owned();
    let bot = Bot::new(config).expect("bot builds");
    let store = bot.pending();
    let heartbeat = status::spawn_heartbeat(store, name.to_owned(), bot.stats());
    assert!(heartbeat.is_some(), "a shared store gets heartbeats");
    TestBot::serve(github.clone(), bot).await
}

/// Polls the store until `done` holds for what it reads.
async fn wait_for_fleet(
    dir: &Path,
    what: &str,
    done: impl Fn(&task_list_bot::pending::fleet::FleetSnapshot) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snapshot = read_fleet(dir, SystemTime::now(), Duration::from_secs(1)).unwrap();
        if done(&snapshot) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {snapshot:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pull(installation: u64, repo: &str, number: u64) -> WorkItem {
    WorkItem::PullRequest(PullRequestRef {
        installation: InstallationId(installation),
        repo: RepoName(repo.into()),
        number: PullNumber(number),
    })
}

fn worker<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no worker {name} in {report:#}"))
}

fn assert_figures(report: &Value, name: &str, stats: &Stats) {
    let row = worker(report, name);
    assert_eq!(row["pid"], std::process::id(), "{name}");
    assert_eq!(row["alive"], true, "{name}");
    assert_eq!(row["lock_held"], true, "{name}");
    assert!(row["heartbeat_age_seconds"].as_u64().unwrap() < 30, "{row}");
    for (field, figure) in [
        ("deliveries", &stats.deliveries),
        ("writes", &stats.writes),
        ("unchanged", &stats.skipped_unchanged),
        ("dropped", &stats.dropped),
    ] {
        assert_eq!(row[field], figure.load(Ordering::Relaxed), "{name} {field}");
    }
    let last_error = stats.last_error.lock().unwrap().clone();
    assert_eq!(row["last_github_error"], serde_json::json!(last_error));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_fleet_its_work_pauses_and_drops() {
    let dir = TempDir::new("fleet");
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    github.add_repo(1, "octo/a");
    for number in 1..=2 {
        github.upsert_pull(
            "octo/a",
            PullRequest::new(number)
                .body("- [ ] a task")
                .author("alice"),
        );
    }
    // A repository of another installation answers 404 to installation 1:
    // that will not get better, so the item is dropped.
    github.add_repo(2, "other/repo");
    github.upsert_pull("other/repo", PullRequest::new(9).body("- [ ] x"));

    // A worker that ran and is gone: its row stays, not alive.
    {
        let gone = SqlitePendingSet::open(&dir.0).unwrap();
        let figures = WorkerFigures {
            name: "bot@3".into(),
            pid: 4_000_000,
            started: SystemTime::now() - Duration::from_secs(60),
            deliveries: 7,
            writes: 5,
            unchanged: 1,
            dropped: 0,
            last_error: Some("GitHub answered 502".into()),
        };
        gone.record_worker(&figures, SystemTime::now()).unwrap();
    }
    let one = start_worker(&github, &dir.0, "bot@1").await;
    let two = start_worker(&github, &dir.0, "bot@2").await;

    // Work no worker can take: installation 7 paused, and an item of
    // installation 8 claimed by a tool holding the store.
    let holder = SqlitePendingSet::open(&dir.0).unwrap();
    let paused_until = SystemTime::now() + Duration::from_secs(3600);
    holder.pause(InstallationId(7), paused_until).unwrap();
    holder.add(pull(7, "octo/paused", 3), "p1").unwrap();
    holder.pause(InstallationId(8), paused_until).unwrap();
    holder.add(pull(8, "octo/held", 4), "h1").unwrap();
    // The tool's clock is past the pause; the workers' is not.
    let held = holder
        .claim(InstallationId(8), paused_until + Duration::from_secs(1))
        .unwrap()
        .expect("claimed");
    assert_eq!(held.item, pull(8, "octo/held", 4));

    one.send(&webhooks::pull_request_opened(&github, "octo/a", 1))
        .await;
    two.send(&webhooks::pull_request_opened(&github, "octo/a", 2))
        .await;
    let mut doomed = webhooks::pull_request_opened(&github, "other/repo", 9);
    doomed.payload["installation"]["id"] = 1.into();
    assert_eq!(one.send(&doomed).await.status, 202);
    one.check_runs_arrived("octo/a", 2).await;
    wait_for_fleet(&dir.0, "the dropped item is recorded", |fleet| {
        fleet.dropped.len() == 1 && fleet.backlog.iter().all(|b| b.installation.0 >= 7)
    })
    .await;
    // The figures as they are now, recorded at once rather than at the
    // next beat.
    let started = SystemTime::now();
    for (bot, name) in [(&one, "bot@1"), (&two, "bot@2")] {
        let figures = status::worker_figures(name, started, &bot.stats);
        bot.pending
            .record_worker(&figures, SystemTime::now())
            .unwrap();
    }

    let json = run_status(&dir.0, &["--json"]).await;
    assert_eq!(json.code, 0, "{}{}", json.stdout, json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["healthy"], true);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["max_age_seconds"], 600);
    assert_eq!(report["state_directory"], dir.0.to_str().unwrap());
    assert_eq!(report["workers"].as_array().unwrap().len(), 3);
    assert_figures(&report, "bot@1", &one.stats);
    assert_figures(&report, "bot@2", &two.stats);
    let deliveries: u64 = ["bot@1", "bot@2"]
        .iter()
        .map(|name| worker(&report, name)["deliveries"].as_u64().unwrap())
        .sum();
    assert_eq!(deliveries, 3);
    let writes: u64 = ["bot@1", "bot@2"]
        .iter()
        .map(|name| worker(&report, name)["writes"].as_u64().unwrap())
        .sum();
    assert_eq!(writes, 2);
    let gone = worker(&report, "bot@3");
    assert_eq!(gone["alive"], false);
    assert_eq!(gone["lock_held"], false);
    assert_eq!(gone["pid"], 4_000_000);
    assert_eq!(gone["deliveries"], 7);
    assert_eq!(gone["writes"], 5);
    assert_eq!(gone["unchanged"], 1);
    assert_eq!(gone["last_github_error"], "GitHub answered 502");

    let pending = &report["pending"];
    assert_eq!(pending["items"], 2);
    assert_eq!(pending["claimed"], 1);
    assert!(pending["oldest_age_seconds"].as_u64().unwrap() < 60);
    let claimed = pending["claimed_items"].as_array().unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["installation"], 8);
    assert_eq!(claimed[0]["repository"], "octo/held");
    assert_eq!(claimed[0]["target"], "4");
    assert_eq!(claimed[0]["kind"], "pull_request");
    assert_eq!(claimed[0]["worker"], holder.owner());
    let installations = pending["installations"].as_array().unwrap();
    assert_eq!(installations.len(), 2);
    assert_eq!(installations[0]["installation"], 7);
    assert_eq!(installations[0]["items"], 1);
    assert_eq!(installations[0]["claimed"], 0);
    assert!(installations[0]["oldest_age_seconds"].as_u64().unwrap() < 60);
    assert_eq!(installations[1]["installation"], 8);
    assert_eq!(installations[1]["claimed"], 1);
    let pauses = report["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 2);
    assert_eq!(pauses[0]["installation"], 7);
    assert!(pauses[0]["remaining_seconds"].as_u64().unwrap() > 3500);
    assert_eq!(pauses[0]["reason"], Value::Null);

    let dropped = report["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["installation"], 1);
    assert_eq!(dropped[0]["repository"], "other/repo");
    assert_eq!(dropped[0]["target"], "9");
    assert_eq!(dropped[0]["kind"], "pull_request");
    assert!(
        dropped[0]["cause"].as_str().unwrap().contains("404"),
        "{}",
        dropped[0]
    );
    assert!(dropped[0]["age_seconds"].as_u64().unwrap() < 60);
    let dropped_by = dropped[0]["worker"].as_str().unwrap().to_owned();
    assert!(
        dropped_by == "bot@1" || dropped_by == "bot@2",
        "{dropped_by}"
    );

    let dropped_worker = if dropped_by == "bot@1" { &one } else { &two };
    assert_eq!(dropped_worker.stats.dropped.load(Ordering::Relaxed), 1);

    let text = run_status(&dir.0, &[]).await;
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    let out = &text.stdout;
    assert!(
        out.starts_with(&format!("Fleet in {}: healthy\n", dir.0.display())),
        "{out}"
    );
    assert!(out.contains("Workers: 2 alive of 3"), "{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("bot@3")[1..3], ["4000000", "no"]);
    assert_eq!(line("bot@1")[2], "yes");
    assert!(out.contains("Pending: 2 items, 1 claimed, oldest"), "{out}");
    assert!(
        out.contains(&format!(
            "claimed: octo/held#4 (installation 8) by {}",
            holder.owner()
        )),
        "{out}"
    );
    assert!(out.contains("Paused: 2"), "{out}");
    assert!(out.contains("Dropped in the last 24 h: 1"), "{out}");
    let dropped_line = line("0s ago").join(" ");
    assert!(dropped_line.contains("other/repo#9"), "{out}");

    let stale = run_status(&dir.0, &["--max-age", "0"]).await;
    assert_eq!(stale.code, 1, "{}{}", stale.stdout, stale.stderr);
    assert!(
        stale.stdout.contains("UNHEALTHY: pending work has waited"),
        "{}",
        stale.stdout
    );

    drop(holder);
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn no_live_worker_is_unhealthy() {
    let dir = TempDir::new("dead");
    {
        let gone = SqlitePendingSet::open(&dir.0).unwrap();
        let figures = WorkerFigures {
            name: "bot@1".into(),
            pid: 1,
            started: SystemTime::now(),
            deliveries: 0,
            writes: 0,
            unchanged: 0,
            dropped: 0,
            last_error: None,
        };
        gone.record_worker(&figures, SystemTime::now()).unwrap();
    }
    let json = run_status(&dir.0, &["--json"]).await;
    assert_eq!(json.code, 1, "{}{}", json.stdout, json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["healthy"], false);
    assert_eq!(
        report["problems"],
        serde_json::json!(["no worker is alive"])
    );
    assert_eq!(report["workers"][0]["alive"], false);
    assert_eq!(report["pending"]["oldest_age_seconds"], Value::Null);
    let text = run_status(&dir.0, &[]).await;
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("UNHEALTHY: no worker is alive"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn a_missing_store_is_a_clear_error() {
    let dir = TempDir::new("missing");
    let outcome = run_status(&dir.0, &["--json"]).await;
    assert_eq!(outcome.code, 2);
    assert!(outcome.stdout.is_empty());
    let path = dir.0.join(task_list_bot::pending::DATABASE_FILE);
    assert!(
        outcome
            .stderr
            .contains(&format!("no store at {}", path.display())),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("STATE_DIRECTORY"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn a_store_that_is_not_a_database_is_a_clear_error() {
    let dir = TempDir::new("garbage");
    let path = dir.0.join(task_list_bot::pending::DATABASE_FILE);
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let outcome = run_status(&dir.0, &[]).await;
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .contains(&format!("cannot read {}", path.display())),
        "{}",
        outcome.stderr
    );
}

/// Run by a user who may not read the state directory, as an operator who
/// forgot sudo would: the message names the path and says to run as root.
/// Needs root to switch users (the tests run as root in CI).
#[tokio::test]
async fn a_store_the_user_may_not_read_says_to_run_as_root() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the command as another user");
        return;
    }
    let dir = TempDir::new("private");
    drop(SqlitePendingSet::open(&dir.0).unwrap());
    let private = dir.0.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::rename(
        dir.0.join(task_list_bot::pending::DATABASE_FILE),
        private.join(task_list_bot::pending::DATABASE_FILE),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BINARY,
            "status",
            "--state-directory",
        ])
        .arg(&private)
        .env_remove("STATE_DIRECTORY")
        .output()
        .await
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let path = private.join(task_list_bot::pending::DATABASE_FILE);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("run as root"), "{stderr}");
}

/// A worker in the middle of a write transaction does not hold `status`
/// up, and `status` leaves the write lock to the workers.
#[tokio::test]
async fn status_reads_while_a_worker_holds_the_write_lock() {
    let dir = TempDir::new("locked");
    let store = SqlitePendingSet::open(&dir.0).unwrap();
    store.add(pull(1, "octo/a", 1), "d1").unwrap();
    let writer =
        rusqlite::Connection::open(dir.0.join(task_list_bot::pending::DATABASE_FILE)).unwrap();
    writer
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM pending;")
        .unwrap();
    let started = Instant::now();
    let outcome = run_status(&dir.0, &["--json"]).await;
    assert!(started.elapsed() < Duration::from_secs(2), "not held up");
    assert_eq!(outcome.code, 1, "no worker alive: {}", outcome.stderr);
    let report: Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(report["pending"]["items"], 1, "the committed state");
    writer.execute_batch("COMMIT").unwrap();
    assert!(store.is_empty(), "the writer was not blocked");
}
