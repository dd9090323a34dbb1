//! `task-list-bot receive -e EVENT -p payload.json`: one payload through
//! decoding and the write path against the fake GitHub, the dry run, and
//! the errors for payloads it cannot run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use support::bot::{APP_ID, PRIVATE_KEY, PUBLIC_KEY};
use support::fake_github::{FakeGitHub, PullRequest};
use support::webhooks;

const BINARY: &str = env!("CARGO_BIN_EXE_task-list-bot");
const INSTALLATION: u64 = 7;
const REPO: &str = "octo/hello";

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tlb-receive-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary in `dir` with only `env` set (no `.env` is picked up).
async fn receive(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let cwd = dir.0.clone();
    tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .arg("receive")
            .args(&args)
            .current_dir(cwd)
            .env_clear()
            .envs(env)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn fake_with_pull(body: &str) -> FakeGitHub {
    let github = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    github.add_repo(INSTALLATION, REPO);
    github.upsert_pull(REPO, PullRequest::new(1).body(body).head_sha("abc123"));
    github
}

fn credentials() -> Vec<(&'static str, String)> {
    vec![
        ("APP_ID", APP_ID.to_string()),
        ("PRIVATE_KEY", PRIVATE_KEY.to_owned()),
        ("REQUEST_TIMEOUT", "2".to_owned()),
        ("DRAIN_TIMEOUT", "10".to_owned()),
    ]
}

fn payload_file(dir: &TempDir, payload: &Value) -> PathBuf {
    dir.write("payload.json", &serde_json::to_vec(payload).unwrap())
}

fn as_str<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The payload's pull request gets its check, read from GitHub's current
/// state; a second run finds it unchanged and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_writes_the_check_with_the_apps_credentials() {
    let github = fake_with_pull("- [x] write code\n- [ ] write tests").await;
    let dir = TempDir::new("write");
    let payload = webhooks::pull_request_opened(&github, REPO, 1).payload;
    let file = payload_file(&dir, &payload);
    let env = credentials();
    let url = format!("http://{}", github.host());
    let args = [
        "-e",
        "pull_request",
        "-p",
        path_arg(&file),
        "--github-url",
        &url,
    ];

    let output = receive(&dir, &args, &as_str(&env)).await;
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("octo/hello#1: check run written"),
        "{stdout}"
    );
    assert!(stderr.contains("1 / 2 tasks completed"), "{stderr}");
    let runs = github.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].head_sha, "abc123");
    assert_eq!(runs[0].body["output"]["title"], "1 / 2 tasks completed");
    assert!(!stderr.contains("PRIVATE KEY"));

    let again = receive(&dir, &args, &as_str(&env)).await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("already says this; nothing written"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(github.check_runs(REPO).len(), 1);
}

/// A merge queue's request gets its immediate success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_answers_a_merge_group() {
    let github = fake_with_pull("- [ ] not yet").await;
    let dir = TempDir::new("merge");
    let payload =
        webhooks::merge_group_checks_requested(&github, REPO, 1, "fedcba987", "main").payload;
    let file = payload_file(&dir, &payload);
    let env = credentials();
    let url = format!("http://{}", github.host());
    let output = receive(
        &dir,
        &[
            "-e",
            "merge_group",
            "-p",
            path_arg(&file),
            "--github-url",
            &url,
        ],
        &as_str(&env),
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let runs = github.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].head_sha, "fedcba987");
    assert_eq!(runs[0].body["conclusion"], "success");
}

/// What GitHub refuses ends the command with its reason and status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_github_refuses_fails_the_command() {
    let github = fake_with_pull("- [ ] task").await;
    let dir = TempDir::new("refused");
    let mut payload = webhooks::pull_request_opened(&github, REPO, 1).payload;
    // A pull request GitHub does not have: it answers 404.
    payload["number"] = json!(2);
    payload["pull_request"]["number"] = json!(2);
    let file = payload_file(&dir, &payload);
    let env = credentials();
    let url = format!("http://{}", github.host());
    let output = receive(
        &dir,
        &[
            "-e",
            "pull_request",
            "-p",
            path_arg(&file),
            "--github-url",
            &url,
        ],
        &as_str(&env),
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "octo/hello#2: check not written: GitHub answered 404 to GET /repos/octo/hello/pulls/2"
        ),
        "{stderr}"
    );
    assert!(github.check_runs(REPO).is_empty());
}

fn opened_payload() -> Value {
    json!({
        "action": "opened",
        "number": 1,
        "pull_request": {
            "number": 1,
            "body": "- [x] write code\n- [ ] write tests\n- [ ] OPTIONAL: benchmark",
            "user": {"login": "alice"},
            "head": {"sha": "0123abc"}
        },
        "repository": {"full_name": "octo/hello"},
        "installation": {"id": 1}
    })
}

/// `--dry-run` needs no credentials and calls nothing: it prints the
/// check's title and the check run as JSON.
#[tokio::test]
async fn dry_run_prints_the_check_it_would_write() {
    let dir = TempDir::new("dry");
    let file = payload_file(&dir, &opened_payload());
    let output = receive(
        &dir,
        &["-e", "pull_request", "-p", path_arg(&file), "--dry-run"],
        &[],
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let (first, json) = stdout.split_once('\n').unwrap();
    assert_eq!(
        first,
        "octo/hello#1: 1 / 2 tasks completed (+1 optional) [in_progress]"
    );
    let check: Value = serde_json::from_str(json).expect("the rest is the check run as JSON");
    assert_eq!(check["name"], "task-list-completed");
    assert_eq!(check["head_sha"], "0123abc");
    assert_eq!(check["status"], "in_progress");
    assert_eq!(
        check["output"]["title"],
        "1 / 2 tasks completed (+1 optional)"
    );
}

/// Each kind of bad input gets one clear line and status 2; an action the
/// bot does not act on is reported, not an error.
#[tokio::test]
async fn bad_input_is_named() {
    let dir = TempDir::new("errors");
    let good = payload_file(&dir, &opened_payload());
    let mut no_installation = opened_payload();
    no_installation
        .as_object_mut()
        .unwrap()
        .remove("installation");
    let no_installation = dir.write(
        "no-installation.json",
        &serde_json::to_vec(&no_installation).unwrap(),
    );
    let not_json = dir.write("broken.json", b"{\"action\": \"opened\",");
    let wrong_shape = dir.write(
        "wrong.json",
        br#"{"action":"opened","installation":{"id":1},"repository":{"full_name":"o/r"}}"#,
    );
    let missing = dir.0.join("missing.json");
    let cases: [(&str, &Path, &str); 5] = [
        ("pull_requests", &good, "unknown event \"pull_requests\""),
        ("pull_request", &missing, "cannot read the payload"),
        ("pull_request", &not_json, "is not valid JSON"),
        (
            "pull_request",
            &wrong_shape,
            "is not a pull_request payload",
        ),
        ("pull_request", &no_installation, "has no installation"),
    ];
    for (event, path, expected) in cases {
        let output = receive(&dir, &["-e", event, "-p", path_arg(path), "--dry-run"], &[]).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{event} {path:?}: {stderr}");
        assert!(stderr.contains(expected), "{event} {path:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    let mut labeled = opened_payload();
    labeled["action"] = json!("labeled");
    let labeled = dir.write("labeled.json", &serde_json::to_vec(&labeled).unwrap());
    let output = receive(&dir, &["-e", "pull_request", "-p", path_arg(&labeled)], &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("ignored: pull_request.labeled is not handled"));

    // Without --dry-run, credentials are needed.
    let output = receive(&dir, &["-e", "pull_request", "-p", path_arg(&good)], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("APP_ID"),
        "{}",
        text(&output.stderr)
    );
}
