//! The command line: `tasks` for template authors, and `serve` refusing bad
//! settings with one clear line before it listens.

use std::io::Write;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_task-list-bot");

fn run_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const TEMPLATE: &str = "\
## Checklist
- [x] Tests added
- [ ] Docs updated
  - [ ] nested task
- [ ] N/A: migration
- [ ] OPTIONAL: screenshots
```
- [ ] in a code block
```
";

#[test]
fn tasks_prints_the_title_summary_and_tables() {
    let output = run_with_stdin(&["tasks"], TEMPLATE);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("Title:    1 / 3 tasks completed (+1 optional)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Summary:  2 tasks still to be completed (+1 optional)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| Docs updated | **Incomplete** |"),
        "{stdout}"
    );
    assert!(stdout.contains("## Optional Tasks"), "{stdout}");
    assert!(!stdout.contains("code block"), "{stdout}");
}

#[test]
fn tasks_json_has_the_documented_shape() {
    let output = run_with_stdin(&["tasks", "--json"], TEMPLATE);
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["total"], 3);
    assert_eq!(report["remaining"], 2);
    assert_eq!(report["optional_total"], 1);
    assert_eq!(report["optional_remaining"], 1);
    assert_eq!(
        report["tasks"][0],
        serde_json::json!({"text": "Tests added", "checked": true})
    );
    assert_eq!(report["optional_tasks"][0]["text"], "OPTIONAL: screenshots");
    assert_eq!(report["title"], "1 / 3 tasks completed (+1 optional)");
    for key in ["summary", "text"] {
        assert!(report[key].is_string(), "{key}");
    }
}

#[test]
fn tasks_reports_an_unreadable_file() {
    let output = run_with_stdin(&["tasks", "/nonexistent/template.md"], "");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("cannot read /nonexistent/template.md"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_bad_setting_with_one_line_naming_it_and_no_secret() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("WEBHOOK_SECRET", "hunter2")],
            "invalid setting APP_ID: missing",
        ),
        (
            &[
                ("APP_ID", "1"),
                ("PRIVATE_KEY", "secret-key-material"),
                ("WEBHOOK_SECRET", "hunter2"),
            ],
            "invalid setting PRIVATE_KEY:",
        ),
        (
            &[
                ("APP_ID", "1"),
                ("PRIVATE_KEY_PATH", "/nonexistent.pem"),
                ("WEBHOOK_SECRET", "hunter2"),
                ("PORT", "0"),
            ],
            "invalid setting PRIVATE_KEY_PATH: cannot read /nonexistent.pem",
        ),
    ];
    for (env, expected) in cases {
        let output = Command::new(BINARY)
            .arg("serve")
            .env_clear()
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{expected}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("secret-key-material"),
            "{stderr}"
        );
    }
}
