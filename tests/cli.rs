//! The command line as a newcomer meets it: `tasks` for template authors and
//! the README's examples, `serve` refusing bad settings with one clear line
//! before it listens, help and the man page, and how logs look in a terminal,
//! a pipe or a log collector.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use task_list_bot::tasklist::TaskList;

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

// ---------------------------------------------------------------------------
// The README's quick start: the `tasks` examples run as written
// ---------------------------------------------------------------------------

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Every `cargo run -q -- tasks ...` line of the README, as arguments and
/// the file its standard input is redirected from (if any).
fn readme_tasks_commands() -> Vec<(Vec<String>, Option<String>)> {
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| line.trim().strip_prefix("cargo run -q -- tasks"))
        .map(|rest| {
            // Drop a trailing comment, then split off `< FILE`.
            let command = rest.split(" #").next().unwrap_or("").trim();
            let (args, stdin) = match command.split_once('<') {
                Some((args, file)) => (args, Some(file.trim().to_owned())),
                None => (command, None),
            };
            let mut args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
            args.insert(0, "tasks".into());
            (args, stdin)
        })
        .collect()
}

#[test]
fn the_readme_tasks_examples_run_on_the_shipped_template() {
    let commands = readme_tasks_commands();
    assert!(commands.len() >= 2, "README examples: {commands:?}");
    let template = format!("{REPO}/.github/pull_request_template.md");
    let markdown = std::fs::read_to_string(&template).expect("the template is shipped");
    for (args, stdin) in commands {
        for arg in args.iter().skip(1).filter(|arg| !arg.starts_with('-')) {
            assert!(
                std::path::Path::new(REPO).join(arg).is_file(),
                "the README names {arg}, which does not exist"
            );
        }
        let input = match &stdin {
            Some(file) => std::fs::read_to_string(format!("{REPO}/{file}"))
                .unwrap_or_else(|e| panic!("the README redirects from {file}: {e}")),
            None => String::new(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = Command::new(BINARY)
            .args(&args)
            .current_dir(REPO)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(input.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let title = TaskList::parse(&markdown).render().title;
        assert!(
            stdout.contains(&title),
            "{args:?} printed no {title:?}: {stdout}"
        );
    }
    // The piped form of the first example: `... | cargo run -q -- tasks`.
    let piped = run_with_stdin(&["tasks"], &markdown);
    assert!(piped.status.success());
    assert!(
        String::from_utf8(piped.stdout)
            .unwrap()
            .contains("tasks completed")
    );
}

#[test]
fn the_shipped_template_has_required_and_optional_tasks() {
    let markdown =
        std::fs::read_to_string(format!("{REPO}/.github/pull_request_template.md")).unwrap();
    let tasks = TaskList::parse(&markdown);
    assert!(tasks.required.len() >= 3, "{tasks:?}");
    assert!(!tasks.optional.is_empty(), "{tasks:?}");
    assert!(!tasks.is_complete());
}

#[test]
fn a_local_env_file_is_never_committed() {
    let ignore = std::fs::read_to_string(format!("{REPO}/.gitignore")).unwrap();
    assert!(
        ignore
            .lines()
            .any(|line| line.trim() == ".env" || line.trim() == "/.env"),
        ".gitignore: {ignore}"
    );
}

// ---------------------------------------------------------------------------
// Help and the man page
// ---------------------------------------------------------------------------

fn stdout_of(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Options only `serve` uses: `redeliver` must not list them.
const SERVE_ONLY: [&str; 10] = [
    "--webhook-secret",
    "--webhook-secret-path",
    "--webhook-path",
    "--host",
    "--port",
    "--write-rate",
    "--ignored-bots",
    "--drain-timeout",
    "--worker",
    "--dry-run",
];

fn listed_options(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn each_subcommand_help_lists_only_its_own_options() {
    let redeliver = listed_options(&stdout_of(&["redeliver", "--help"], &[]));
    for option in [
        "--app-id",
        "--private-key",
        "--private-key-path",
        "--ghe-host",
        "--state-directory",
        "--since-hours",
        "--log-level",
        "--log-format",
    ] {
        assert!(
            redeliver.iter().any(|o| o == option),
            "redeliver lacks {option}: {redeliver:?}"
        );
    }
    for option in SERVE_ONLY {
        assert!(
            !redeliver.iter().any(|o| o == option),
            "redeliver lists {option}"
        );
    }
    let serve = listed_options(&stdout_of(&["serve", "--help"], &[]));
    for option in SERVE_ONLY {
        assert!(
            serve.iter().any(|o| o == option),
            "serve lacks {option}: {serve:?}"
        );
    }
    assert!(!serve.iter().any(|o| o == "--since-hours"));
    let tasks = listed_options(&stdout_of(&["tasks", "--help"], &[]));
    assert_eq!(tasks, ["--json", "--config", "--help"]);
}

#[test]
fn redeliver_still_accepts_the_shared_settings_file() {
    // The workers' environment file sets serve-only variables too; redeliver
    // reads the same file and must not trip over them.
    let output = Command::new(BINARY)
        .arg("redeliver")
        .env_clear()
        .envs([
            ("PORT", "3000"),
            ("WRITE_RATE", "1"),
            ("DRAIN_TIMEOUT", "20"),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("invalid setting APP_ID: missing"),
        "{stderr}"
    );
}

#[test]
fn environment_hints_name_the_variable_and_never_its_value() {
    for subcommand in ["serve", "redeliver"] {
        let help = stdout_of(
            &[subcommand, "--help"],
            &[("APP_ID", "424242"), ("GHE_HOST", "ghe.example")],
        );
        assert!(help.contains("[env: APP_ID]"), "{help}");
        assert!(help.contains("[env: GHE_HOST]"), "{help}");
        assert!(!help.contains("=]"), "an empty-looking value: {help}");
        assert!(
            !help.contains("424242") && !help.contains("ghe.example"),
            "{help}"
        );
    }
}

fn man_page() -> String {
    stdout_of(&["man"], &[])
}

#[test]
fn the_man_page_covers_every_command_option_variable_file_and_exit_status() {
    let page = man_page();
    assert!(page.contains(".TH task-list-bot 1"), "{page}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "ENVIRONMENT",
        "FILES",
        "\"EXIT STATUS\"",
        "\"SEE ALSO\"",
    ] {
        assert!(
            page.contains(&format!(".SH {section}\n")),
            "no section {section}"
        );
    }
    for subcommand in ["serve", "tasks", "redeliver", "man", "generator"] {
        assert!(
            page.contains(&format!(".SS {subcommand}\n")),
            "no command {subcommand}"
        );
        let help = stdout_of(&[subcommand, "--help"], &[]);
        for option in listed_options(&help) {
            let roff = option.replace('-', "\\-");
            assert!(
                page.contains(&roff),
                "{subcommand} {option} is not in the page"
            );
        }
        for line in help.lines() {
            if let Some(start) = line.find("[env: ") {
                let variable = &line[start + 6..line[start..].find(']').unwrap() + start];
                assert!(page.contains(variable), "{variable} is not in the page");
            }
        }
    }
    for variable in [
        "LOG_FORMAT",
        "NO_COLOR",
        "WEBHOOK_PROXY_URL",
        "CREDENTIALS_DIRECTORY",
        "STATE_DIRECTORY",
        "WEB_CONCURRENCY",
        "LISTEN_FDS",
    ] {
        assert!(page.contains(variable), "{variable} is not in the page");
    }
    for file in [
        ".env",
        "/etc/default/task\\-list\\-bot",
        "/etc/task\\-list\\-bot/private\\-key.pem",
        "pending.sqlite3",
        "bot.socket",
        "task\\-list\\-bot\\-generator",
    ] {
        assert!(page.contains(file), "{file} is not in the page");
    }
    for status in ["0", "1", "2", "243"] {
        assert!(
            page.contains(&format!(".TP\n\\fB{status}\\fR\n")),
            "exit status {status}"
        );
    }
    // Only pages that exist elsewhere: no task-list-bot-serve(1) and the like.
    assert!(!page.contains("task\\-list\\-bot\\-serve"), "{page}");
    assert!(
        !page.contains("\\-help(1)") && !page.contains("serve(1)"),
        "{page}"
    );
}

#[test]
fn the_man_page_renders_without_warnings() {
    let groff = Command::new("groff").arg("--version").output();
    if !groff.is_ok_and(|output| output.status.success()) {
        eprintln!("groff is not installed: only the roff source is checked");
        return;
    }
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(man_page().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// `cargo deb` packages packaging/task-list-bot.1 as it is in the tree, so
/// it must be the page this binary prints.
#[test]
fn the_packaged_man_page_is_current() {
    let path = format!("{REPO}/packaging/task-list-bot.1");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == man_page(),
        "{path} is out of date: cargo run -q -- man > packaging/task-list-bot.1"
    );
}

// ---------------------------------------------------------------------------
// Logs: colour only on a terminal, NO_COLOR, LOG_FORMAT, WEBHOOK_PROXY_URL
// ---------------------------------------------------------------------------

/// How long a `serve` may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A dry-run `serve` on an ephemeral loopback port with `env` added.
fn serve_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--dry-run"])
        .env_clear()
        .envs([
            ("WEBHOOK_SECRET", "development"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
        ])
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Reads `log` until a line says the server is listening, then stops the
/// server; returns everything read (start-up logs).
fn start_up_log(mut child: std::process::Child, log: impl Read + Send + 'static) -> String {
    let (lines, received) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let reader = BufReader::new(log);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            if lines
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut text = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains("listening") {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not say it was listening: {text:?}");
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    text
}

fn start_up_log_through_a_pipe(env: &[(&str, &str)]) -> String {
    let mut child = serve_command(env).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    start_up_log(child, stderr)
}

/// The same, with standard error a terminal (a pseudo-terminal).
fn start_up_log_on_a_terminal(env: &[(&str, &str)]) -> String {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-parameters for two fds; no name, termios or size.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two open fds that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let child = serve_command(env)
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    start_up_log(child, std::fs::File::from(master))
}

const ESC: char = '\u{1b}';

#[test]
fn logs_written_to_a_pipe_have_no_colour_codes() {
    let log = start_up_log_through_a_pipe(&[]);
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains(ESC), "{log:?}");
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    let coloured = start_up_log_on_a_terminal(&[]);
    assert!(coloured.contains(ESC), "{coloured:?}");
    let plain = start_up_log_on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(plain.contains("listening"), "{plain}");
    assert!(!plain.contains(ESC), "{plain:?}");
    // An empty NO_COLOR does not count (no-color.org).
    let empty = start_up_log_on_a_terminal(&[("NO_COLOR", "")]);
    assert!(empty.contains(ESC), "{empty:?}");
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    for format in ["json", "JSON"] {
        let log = start_up_log_on_a_terminal(&[("LOG_FORMAT", format)]);
        assert!(!log.contains(ESC), "{log:?}");
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|line| serde_json::from_str(line.trim_end_matches('\r')).expect(line))
            .collect();
        let listening = lines
            .iter()
            .find(|line| line["message"] == "listening")
            .unwrap_or_else(|| panic!("{log}"));
        assert_eq!(listening["level"], "INFO");
        assert_eq!(listening["dry_run"], true);
        assert!(
            listening["address"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        assert!(listening["timestamp"].is_string());
    }
}

#[test]
fn log_format_pretty_and_short_are_lines_for_people() {
    for format in ["pretty", "short"] {
        let log = start_up_log_through_a_pipe(&[("LOG_FORMAT", format)]);
        let line = log.lines().find(|line| line.contains("listening")).unwrap();
        assert!(line.contains(" INFO "), "{line}");
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "{line}"
        );
    }
}

#[test]
fn an_unknown_log_format_is_refused_naming_it() {
    let output = serve_command(&[("LOG_FORMAT", "bunyan")])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("invalid setting LOG_FORMAT: \"bunyan\""),
        "{stderr}"
    );
}

#[test]
fn a_webhook_proxy_url_is_warned_about_once_with_what_to_use_instead() {
    let channel = "https://smee.io/a-private-channel";
    let log = start_up_log_through_a_pipe(&[("WEBHOOK_PROXY_URL", channel)]);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WEBHOOK_PROXY_URL"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{log}");
    assert!(warnings[0].contains("smee-client"), "{log}");
    assert!(
        !log.contains("a-private-channel"),
        "the channel is not logged: {log}"
    );

    let without = start_up_log_through_a_pipe(&[]);
    assert!(!without.contains("WEBHOOK_PROXY_URL"), "{without}");
}
