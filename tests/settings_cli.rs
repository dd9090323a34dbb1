//! The command line for per-repository settings: `config check`, `config
//! --help` and `tasks --config`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_task-list-bot");

/// A settings file in its own temporary directory, removed on drop.
struct SettingsFile {
    dir: PathBuf,
    path: PathBuf,
}

impl SettingsFile {
    fn new(name: &str, text: &str) -> SettingsFile {
        let dir =
            std::env::temp_dir().join(format!("tlb-settings-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("task-list-completed.yml");
        std::fs::write(&path, text).unwrap();
        SettingsFile { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for SettingsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .expect("the binary runs");
    // A command that refuses its arguments may exit before it reads its
    // input; the pipe it closed is not what the test checks.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => panic!("writing the command's input: {error}"),
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn config_check_prints_the_effective_settings_of_a_valid_file() {
    let file = SettingsFile::new(
        "valid",
        "when_incomplete: failure\nmarkers:\n  skip: [WONTFIX]\nfirst_check_delay: 90s\n_extends: octo/base\n",
    );
    let output = run(&["config", "check", file.arg()], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for line in [
        "when_incomplete: failure",
        "  skip: [\"WONTFIX\"]",
        "  optional: [\"OPTIONAL\"]",
        "sources: [body, comments, reviews, review_comments]",
        "ignored_bots: [\"linear\", \"linear[bot]\", \"coderabbitai[bot]\"]",
        "first_check_delay: 1m30s",
        "check_name: \"task-list-completed\"",
        "# _extends: octo/base is merged under these",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
}

#[test]
fn config_check_lists_every_error_with_line_and_key_and_fails() {
    let file = SettingsFile::new(
        "broken",
        "when_incomplete: failed\nmarkers:\n  skip: []\n  opt: [X]\ncheck_name: \"\"\n",
    );
    let output = run(&["config", "check", file.arg()], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    let at = |line: &str| format!("{}:{line}", file.arg());
    for expected in [
        format!("{}: when_incomplete: \"failed\" is not one of", at("1:18")),
        format!("{}: markers.opt: unknown key", at("4:3")),
        format!("{}: check_name: must not be empty", at("5:13")),
        "3 errors in".to_owned(),
        "gets the defaults".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} in\n{stderr}");
    }
}

#[test]
fn config_check_reports_an_unreadable_file() {
    let output = run(&["config", "check", "/nonexistent/settings.yml"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read /nonexistent/settings.yml"));
}

#[test]
fn config_help_documents_the_schema_and_the_permission() {
    let output = run(&["config", "--help"], "");
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    for key in [
        "when_incomplete:",
        "skip:",
        "optional:",
        "case_sensitive:",
        "sources:",
        "ignored_bots:",
        "count_renovate_body:",
        "first_check_delay:",
        "check_name:",
        "_extends:",
        "owner's .github repository",
        "Single file",
        "push event",
    ] {
        assert!(stdout.contains(key), "{key:?} in\n{stdout}");
    }
}

#[test]
fn tasks_previews_a_body_under_a_settings_file() {
    let file = SettingsFile::new(
        "preview",
        "when_incomplete: action_required\nmarkers:\n  skip: [wontfix]\n  optional: [maybe]\n  case_sensitive: false\ncheck_name: tasks\n",
    );
    let body = "- [ ] WONTFIX: a\n- [ ] Maybe: b\n- [ ] N/A: c\n- [x] d\n";
    let output = run(&["tasks", "--config", file.arg()], body);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("Title:    1 / 2 tasks completed (+1 optional)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Check:    completed / action_required (tasks)"),
        "{stdout}"
    );
    assert!(stdout.contains("| N/A: c | **Incomplete** |"), "{stdout}");

    // Without the file: today's markers and check.
    let output = run(&["tasks"], body);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("Title:    1 / 3 tasks completed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Check:    in_progress (task-list-completed)"),
        "{stdout}"
    );

    let json = run(&["tasks", "--json", "--config", file.arg()], body);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["optional_tasks"][0]["text"], "Maybe: b");
}

#[test]
fn tasks_refuses_a_broken_settings_file() {
    let file = SettingsFile::new("refused", "sources: [everything]\n");
    let output = run(&["tasks", "--config", file.arg()], "- [ ] a\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        text(&output.stderr).contains("sources[0]: \"everything\" is not one of"),
        "{}",
        text(&output.stderr)
    );
}
