//! `task-list-bot-generator`: turns `/etc/default/task-list-bot` into units.
//!
//! systemd runs every file in `/usr/lib/systemd/system-generators/` at boot and
//! on each `systemctl daemon-reload`, before it loads units, as
//! `GENERATOR NORMAL_DIR EARLY_DIR LATE_DIR` (see systemd.generator(7)). The
//! package links `task-list-bot-generator` to the bot's binary, which then
//! calls [`run`] with `NORMAL_DIR` (`/run/systemd/generator`) and
//! [`CONFIG_PATH`]. From the settings file it writes, into `NORMAL_DIR` only:
//!
//! - `bot.target.wants/bot@1.service` … `bot@N.service`, links to the
//!   template, N = `WEB_CONCURRENCY` (default [`DEFAULT_WORKERS`], at most
//!   [`MAX_WORKERS`]). Starting `bot.target` starts exactly these workers.
//! - `bot@.service.d/50-workers.conf`: a condition that keeps instances
//!   beyond N from starting, so that lowering N, `daemon-reload` and
//!   `systemctl restart bot.target` stops the surplus workers (the restart
//!   reaches every running worker through `PartOf=bot.target`; the ones whose
//!   link is gone are stopped and skip their start again).
//! - `bot@.service.d/50-restart-backoff.conf` when the running systemd is
//!   254 or later: exponential restart back-off (`RestartSteps=`,
//!   `RestartMaxDelaySec=`), which older versions would warn about.
//! - `bot.socket.d/50-listen.conf` when `PORT` and/or `HOST` is set:
//!   `ListenStream=` for the shared socket, which cannot read an
//!   `EnvironmentFile=` itself.
//!
//! A generator runs early and delays boot: this one reads one small file,
//! never fails on bad configuration (it reports the value to the kernel log,
//! where generators log, and uses the default), and only fails when it cannot
//! write its output.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The settings file shared with `bot@.service` (`EnvironmentFile=`).
pub const CONFIG_PATH: &str = "/etc/default/task-list-bot";

/// Where the package installs the worker template; the `.wants/` links point
/// here (systemd only uses the link's name, `bot@N.service`, to find the unit;
/// the target is for people reading the directory).
pub const TEMPLATE_PATH: &str = "/usr/lib/systemd/system/bot@.service";

/// Workers started when `WEB_CONCURRENCY` is unset, empty or invalid.
pub const DEFAULT_WORKERS: NonZeroU32 = NonZeroU32::new(4).unwrap();

/// Upper bound for `WEB_CONCURRENCY`. Each worker is a whole process with its
/// own runtime and its own GitHub write quota (`WRITE_RATE` per installation),
/// so a typo such as `400` would start hundreds of processes and multiply the
/// write rate; 64 is far above what one host needs.
pub const MAX_WORKERS: u32 = 64;

/// The port in `bot.socket` (and the binary's default `PORT`).
pub const DEFAULT_PORT: u16 = 3000;

/// Name used in the kernel log and in the header of generated files.
const NAME: &str = "task-list-bot-generator";

/// A setting in the configuration file that the generator cannot use; the
/// generator reports it and falls back to the default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("WEB_CONCURRENCY={0:?} is not a whole number from 1 to {MAX_WORKERS}")]
    Workers(String),
    #[error("PORT={0:?} is not a port number from 1 to 65535")]
    Port(String),
    #[error("HOST={0:?} is not an IP address (nor \"localhost\")")]
    Host(String),
}

/// What the configuration asks for, after defaults and fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How many `bot@N` workers `bot.target` starts.
    pub workers: NonZeroU32,
    /// `ListenStream=` value for `bot.socket`, when the file sets `HOST` or
    /// `PORT`; `None` leaves the unit's own `ListenStream=3000`.
    pub listen: Option<String>,
}

impl Plan {
    /// Reads the settings from the text of the configuration file. Bad values
    /// are returned beside the plan, which then holds the default for them.
    pub fn from_config(config_text: &str) -> (Plan, Vec<BadValue>) {
        let vars = parse_env_file(config_text);
        let get = |key: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let mut problems = Vec::new();
        let workers = match get("WEB_CONCURRENCY").map(worker_count) {
            None => DEFAULT_WORKERS,
            Some(Ok(n)) => n,
            Some(Err(bad)) => {
                problems.push(bad);
                DEFAULT_WORKERS
            }
        };
        let (listen, listen_problems) = listen_address(get("HOST"), get("PORT"));
        problems.extend(listen_problems);
        (Plan { workers, listen }, problems)
    }
}

/// Parses `WEB_CONCURRENCY`: a whole number from 1 to [`MAX_WORKERS`].
pub fn worker_count(value: &str) -> Result<NonZeroU32, BadValue> {
    let bad = || BadValue::Workers(value.to_owned());
    // Digits only: `u32::from_str` would also take a leading `+`.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= MAX_WORKERS)
        .and_then(NonZeroU32::new)
        .ok_or_else(bad)
}

/// The socket address for `HOST` and `PORT`, as `ListenStream=` takes it:
/// `PORT` alone (every address, IPv6 and IPv4), `1.2.3.4:PORT` or
/// `[::1]:PORT`. `HOST=localhost` means 127.0.0.1, since a socket unit binds
/// addresses, not names. A bad value is reported and replaced by its default
/// (port 3000, every address); `None` when neither is set.
pub fn listen_address(host: Option<&str>, port: Option<&str>) -> (Option<String>, Vec<BadValue>) {
    if host.is_none() && port.is_none() {
        return (None, Vec::new());
    }
    let mut problems = Vec::new();
    let port = match port {
        None => DEFAULT_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(p) if p != 0 && text.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => {
                problems.push(BadValue::Port(text.to_owned()));
                DEFAULT_PORT
            }
        },
    };
    let host = match host {
        None => None,
        Some("localhost") => Some(IpAddr::from([127, 0, 0, 1])),
        Some(text) => match text.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(BadValue::Host(text.to_owned()));
                None
            }
        },
    };
    let listen = match host {
        None => port.to_string(),
        Some(IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
    };
    (Some(listen), problems)
}

/// Parses a file in the format of systemd's `EnvironmentFile=` (see
/// systemd.exec(5)) into `(KEY, VALUE)` pairs in file order (the last one
/// wins): blank lines and lines starting with `#` or `;` are ignored, so are
/// lines without `=`; whitespace around the key and around the value is
/// dropped; a value may be `'single'` (verbatim) or `"double"` quoted
/// (backslash keeps `"\`$`), unquoted backslashes escape the next character
/// and a trailing backslash continues the line.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    #[derive(Clone, Copy)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    let mut vars = Vec::new();
    let mut state = State::PreKey;
    let mut key = String::new();
    let mut value = String::new();
    // Length of `value` without trailing unquoted, unescaped whitespace.
    let mut keep = 0;
    let is_blank = |c: char| matches!(c, ' ' | '\t' | '\r');
    let is_newline = |c: char| c == '\n';
    let mut push = |key: &mut String, value: &mut String, keep: &mut usize| {
        value.truncate(*keep);
        let k = key.trim_end_matches(is_blank).to_owned();
        if is_env_name(&k) {
            vars.push((k, std::mem::take(value)));
        }
        key.clear();
        value.clear();
        *keep = 0;
    };
    for c in text.chars() {
        state = match state {
            State::PreKey if is_blank(c) || is_newline(c) => State::PreKey,
            State::PreKey if c == '#' || c == ';' => State::Comment,
            State::PreKey => {
                key.push(c);
                State::Key
            }
            State::Key if is_newline(c) => {
                // No `=`: ignored, as systemd does.
                key.clear();
                State::PreKey
            }
            State::Key if c == '=' => State::PreValue,
            State::Key => {
                key.push(c);
                State::Key
            }
            State::PreValue if is_newline(c) => {
                push(&mut key, &mut value, &mut keep);
                State::PreKey
            }
            State::PreValue if is_blank(c) => State::PreValue,
            State::PreValue if c == '\'' => State::Single,
            State::PreValue if c == '"' => State::Double,
            State::PreValue | State::Value if c == '\\' => State::ValueEscape,
            State::PreValue | State::Value if is_newline(c) => {
                push(&mut key, &mut value, &mut keep);
                State::PreKey
            }
            State::PreValue | State::Value => {
                value.push(c);
                if !is_blank(c) {
                    keep = value.len();
                }
                State::Value
            }
            State::ValueEscape => {
                if !is_newline(c) {
                    value.push(c);
                    keep = value.len();
                }
                State::Value
            }
            State::Single if c == '\'' => State::PreValue,
            State::Single => {
                value.push(c);
                keep = value.len();
                State::Single
            }
            State::Double if c == '"' => State::PreValue,
            State::Double if c == '\\' => State::DoubleEscape,
            State::Double => {
                value.push(c);
                keep = value.len();
                State::Double
            }
            State::DoubleEscape => {
                if !is_newline(c) {
                    if !matches!(c, '"' | '\\' | '`' | '$') {
                        value.push('\\');
                    }
                    value.push(c);
                    keep = value.len();
                }
                State::Double
            }
            State::Comment if c == '\\' => State::CommentEscape,
            State::Comment if is_newline(c) => State::PreKey,
            State::Comment => State::Comment,
            State::CommentEscape => State::Comment,
        };
    }
    // A last line without newline (an unterminated quote keeps what it has).
    if !matches!(
        state,
        State::PreKey | State::Key | State::Comment | State::CommentEscape
    ) {
        push(&mut key, &mut value, &mut keep);
    }
    vars
}

/// Environment variable names systemd accepts: letters, digits and `_`, not
/// starting with a digit.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

/// Runs the generator: reads `config_path` (a missing file means defaults),
/// reports bad settings to the kernel log and writes the units into
/// `normal_dir`. Errors only when the output cannot be written.
pub fn run(normal_dir: &Path, config_path: &Path) -> anyhow::Result<()> {
    generate(normal_dir, config_path, &mut kmsg_warning)
}

/// [`run`] with the reporting of bad settings passed in (tests collect them).
pub fn generate(
    normal_dir: &Path,
    config_path: &Path,
    report: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let (config_text, source) = match fs::read(config_path) {
        Ok(bytes) => (
            String::from_utf8_lossy(&bytes).into_owned(),
            Some(config_path),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => {
            report(&format!(
                "cannot read {}: {e}; using the defaults ({DEFAULT_WORKERS} workers, port {DEFAULT_PORT})",
                config_path.display()
            ));
            (String::new(), None)
        }
    };
    let (plan, problems) = Plan::from_config(&config_text);
    for problem in &problems {
        let fallback = match problem {
            BadValue::Workers(_) => format!("starting {DEFAULT_WORKERS} workers"),
            BadValue::Port(_) => format!("using port {DEFAULT_PORT}"),
            BadValue::Host(_) => "listening on every address".to_owned(),
        };
        report(&format!("{}: {problem}; {fallback}", config_path.display()));
    }
    write_units(normal_dir, &plan, source)?;
    write_restart_backoff(normal_dir, running_systemd_version(), source)
}

/// The first systemd that knows `RestartSteps=` and `RestartMaxDelaySec=`;
/// older ones warn about unknown keys, so the unit cannot carry them itself.
pub const RESTART_BACKOFF_SINCE: u32 = 254;

/// On systemd 254 and later, `bot@.service.d/50-restart-backoff.conf`: a
/// crash-looping worker is retried with growing delays (2 s up to 60 s)
/// instead of every 2 s. Older systemd gets no file, and no warning.
pub fn write_restart_backoff(
    normal_dir: &Path,
    systemd_version: Option<u32>,
    source: Option<&Path>,
) -> anyhow::Result<()> {
    if systemd_version.is_none_or(|version| version < RESTART_BACKOFF_SINCE) {
        return Ok(());
    }
    let conf = format!(
        "{}\
         # systemd {RESTART_BACKOFF_SINCE}+: restart a failing worker after 2 s, then\n\
         # longer and longer, at most 60 s apart.\n\
         [Service]\n\
         RestartSteps=5\n\
         RestartMaxDelaySec=60s\n",
        header(source)
    );
    write_file(
        &normal_dir.join("bot@.service.d"),
        "50-restart-backoff.conf",
        &conf,
    )
}

/// The version of the running systemd (PID 1), or of the installed one.
fn running_systemd_version() -> Option<u32> {
    ["/proc/1/exe", "systemctl"].iter().find_map(|program| {
        let output = std::process::Command::new(program)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        parse_systemd_version(&String::from_utf8_lossy(&output.stdout))
    })
}

/// `systemd 252 (252.39-1~deb12u2)` → 252.
pub fn parse_systemd_version(text: &str) -> Option<u32> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix("systemd ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Writes the links and drop-ins for `plan` into `normal_dir`. Safe to call
/// again on the same directory (systemd empties it before each run anyway):
/// links for workers beyond the new count are removed.
pub fn write_units(normal_dir: &Path, plan: &Plan, source: Option<&Path>) -> anyhow::Result<()> {
    let normal_dir = std::path::absolute(normal_dir)
        .with_context(|| format!("cannot resolve {}", normal_dir.display()))?;
    let header = header(source);

    let wants = normal_dir.join("bot.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("cannot create {}", wants.display()))?;
    let wanted: Vec<String> = (1..=plan.workers.get())
        .map(|i| format!("bot@{i}.service"))
        .collect();
    for entry in fs::read_dir(&wants).with_context(|| format!("cannot list {}", wants.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("bot@") && !wanted.iter().any(|w| *w == name) {
            let path = wants.join(&*name);
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for name in &wanted {
        let link = wants.join(name);
        match fs::symlink_metadata(&link) {
            Ok(_) => fs::remove_file(&link)
                .with_context(|| format!("cannot replace {}", link.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", link.display())),
        }
        std::os::unix::fs::symlink(TEMPLATE_PATH, &link)
            .with_context(|| format!("cannot create {}", link.display()))?;
    }

    let link = format!("{}/%n", unit_escape(&wants.to_string_lossy()));
    let workers_conf = format!(
        "{header}\
         # WEB_CONCURRENCY={n}: bot.target starts bot@1 … bot@{n}. An instance\n\
         # without a link in bot.target.wants does not start, so that after the\n\
         # count is lowered `systemctl daemon-reload && systemctl restart bot.target`\n\
         # leaves only the configured workers running.\n\
         [Unit]\n\
         ConditionPathIsSymbolicLink={link}\n",
        n = plan.workers,
    );
    write_file(
        &normal_dir.join("bot@.service.d"),
        "50-workers.conf",
        &workers_conf,
    )?;

    if let Some(listen) = &plan.listen {
        let listen_conf = format!(
            "{header}\
             # HOST/PORT from the settings file. After a change: stop bot.target and\n\
             # bot.socket, `systemctl daemon-reload`, start bot.target.\n\
             [Socket]\n\
             ListenStream=\n\
             ListenStream={listen}\n",
        );
        write_file(
            &normal_dir.join("bot.socket.d"),
            "50-listen.conf",
            &listen_conf,
        )?;
    }
    Ok(())
}

fn header(source: Option<&Path>) -> String {
    match source {
        Some(path) => format!(
            "# Automatically generated by {NAME} from {}.\n",
            path.display()
        ),
        None => format!("# Automatically generated by {NAME} ({CONFIG_PATH} absent: defaults).\n"),
    }
}

/// Escapes `%` (unit specifiers) for a path written into a unit file.
fn unit_escape(path: &str) -> String {
    path.replace('%', "%%")
}

fn write_file(dir: &Path, name: &str, contents: &str) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path: PathBuf = dir.join(name);
    fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Generators log to the kernel log (systemd.generator(7)); `<4>` is the
/// warning level. Where /dev/kmsg cannot be written (a container), the
/// message goes to /dev/console, as systemd's own generators do, and to
/// stderr as a last resort (PID 1 runs generators with stderr on /dev/null).
fn kmsg_warning(message: &str) {
    let line = Line(message);
    let write = |path: &str, text: String| {
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut device| device.write_all(text.as_bytes()))
    };
    if write("/dev/kmsg", format!("<4>{line}\n")).is_err()
        && write("/dev/console", format!("{line}\n")).is_err()
    {
        eprintln!("{line}");
    }
}

/// One kernel-log line: the generator's name, then the message with any
/// newline flattened (each write to /dev/kmsg is one record).
struct Line<'a>(&'a str);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME}: {}", self.0.replace('\n', " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "task-list-bot-generator-test-{}-{name}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn vars(text: &str) -> Vec<(String, String)> {
        parse_env_file(text)
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// Runs the generator on `config` (None: no file) and returns the output
    /// directory, the config directory and the reported messages.
    fn generate_with(config: Option<&str>) -> (TempDir, TempDir, Vec<String>) {
        let out = TempDir::new("out");
        let etc = TempDir::new("etc");
        let config_path = etc.0.join("task-list-bot");
        if let Some(text) = config {
            fs::write(&config_path, text).unwrap();
        }
        let mut reported = Vec::new();
        generate(&out.0, &config_path, &mut |m| reported.push(m.to_owned())).unwrap();
        (out, etc, reported)
    }

    fn links(dir: &Path) -> Vec<(String, PathBuf)> {
        let mut links: Vec<_> = fs::read_dir(dir.join("bot.target.wants"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_link(e.path()).unwrap(),
                )
            })
            .collect();
        links.sort_by_key(|(name, _)| {
            name.trim_start_matches("bot@")
                .trim_end_matches(".service")
                .parse::<u32>()
                .unwrap()
        });
        links
    }

    fn link_names(dir: &Path) -> Vec<String> {
        links(dir).into_iter().map(|(name, _)| name).collect()
    }

    #[test]
    fn env_file_plain_values_comments_and_blank_lines() {
        let text = "# comment\n; also a comment\n\nAPP_ID=1\n  WEB_CONCURRENCY = 8  \nPORT=3001";
        assert_eq!(
            vars(text),
            vec![
                pair("APP_ID", "1"),
                pair("WEB_CONCURRENCY", "8"),
                pair("PORT", "3001")
            ]
        );
    }

    #[test]
    fn env_file_quotes_and_escapes() {
        let text = concat!(
            "A=\"6\"\n",
            "B='it''s'\n",
            "C=\"say \\\"hi\\\" \\n\"\n",
            "D=a\\ b\\\\\n",
            "E=  spaced   value  \n",
            "F='  kept  '\n",
            "G=one\\\ntwo\n",
            "H=# not a comment\n",
        );
        assert_eq!(
            vars(text),
            vec![
                pair("A", "6"),
                pair("B", "its"),
                pair("C", "say \"hi\" \\n"),
                pair("D", "a b\\"),
                pair("E", "spaced   value"),
                pair("F", "  kept  "),
                pair("G", "onetwo"),
                pair("H", "# not a comment"),
            ]
        );
    }

    #[test]
    fn env_file_ignores_lines_without_equals_and_bad_names() {
        assert_eq!(
            vars("JUST_A_WORD\n1BAD=x\nexport X=1\nOK=\n"),
            vec![pair("OK", "")]
        );
    }

    #[test]
    fn env_file_comment_continues_after_backslash() {
        assert_eq!(
            vars("# comment \\\nSTILL=comment\nA=1\n"),
            vec![pair("A", "1")]
        );
    }

    #[test]
    fn worker_count_accepts_1_to_64() {
        for (text, n) in [("1", 1), ("4", 4), ("08", 8), ("64", 64)] {
            assert_eq!(
                worker_count(text),
                Ok(NonZeroU32::new(n).unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn worker_count_rejects_everything_else() {
        for text in [
            "0",
            "65",
            "-1",
            "+4",
            "4.0",
            "four",
            " 4",
            "4 workers",
            "99999999999",
            "",
        ] {
            assert_eq!(
                worker_count(text),
                Err(BadValue::Workers(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn plan_defaults_without_settings() {
        let (plan, problems) = Plan::from_config("APP_ID=1\n");
        assert_eq!(
            plan,
            Plan {
                workers: DEFAULT_WORKERS,
                listen: None
            }
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn plan_last_assignment_wins_and_empty_means_default() {
        let (plan, _) = Plan::from_config("WEB_CONCURRENCY=2\nWEB_CONCURRENCY=6\n");
        assert_eq!(plan.workers.get(), 6);
        let (plan, problems) = Plan::from_config("WEB_CONCURRENCY=2\nWEB_CONCURRENCY=\n");
        assert_eq!(plan.workers, DEFAULT_WORKERS);
        assert!(problems.is_empty());
    }

    #[test]
    fn plan_bad_worker_count_falls_back_to_default() {
        let (plan, problems) = Plan::from_config("WEB_CONCURRENCY=0\n");
        assert_eq!(plan.workers, DEFAULT_WORKERS);
        assert_eq!(problems, vec![BadValue::Workers("0".to_owned())]);
    }

    #[test]
    fn listen_address_forms() {
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (None, None, None),
            (None, Some("8080"), Some("8080")),
            (Some("127.0.0.1"), Some("8080"), Some("127.0.0.1:8080")),
            (Some("127.0.0.1"), None, Some("127.0.0.1:3000")),
            (Some("::1"), Some("8080"), Some("[::1]:8080")),
            (Some("0.0.0.0"), Some("80"), Some("0.0.0.0:80")),
            (Some("localhost"), Some("8080"), Some("127.0.0.1:8080")),
        ];
        for &(host, port, want) in cases {
            let (listen, problems) = listen_address(host, port);
            assert_eq!(listen.as_deref(), want, "{host:?} {port:?}");
            assert!(problems.is_empty(), "{host:?} {port:?}: {problems:?}");
        }
    }

    #[test]
    fn listen_address_bad_values_fall_back_separately() {
        assert_eq!(
            listen_address(Some("10.0.0.1"), Some("70000")),
            (
                Some("10.0.0.1:3000".to_owned()),
                vec![BadValue::Port("70000".to_owned())]
            )
        );
        assert_eq!(
            listen_address(None, Some("0")),
            (
                Some("3000".to_owned()),
                vec![BadValue::Port("0".to_owned())]
            )
        );
        assert_eq!(
            listen_address(Some("example.org"), Some("8080")),
            (
                Some("8080".to_owned()),
                vec![BadValue::Host("example.org".to_owned())]
            )
        );
    }

    #[test]
    fn missing_config_writes_default_workers_and_no_socket_drop_in() {
        let (out, _etc, reported) = generate_with(None);
        assert_eq!(
            links(&out.0),
            (1..=4)
                .map(|i| (format!("bot@{i}.service"), PathBuf::from(TEMPLATE_PATH)))
                .collect::<Vec<_>>()
        );
        assert!(!out.0.join("bot.socket.d").exists());
        let conf = fs::read_to_string(out.0.join("bot@.service.d/50-workers.conf")).unwrap();
        assert!(
            conf.starts_with("# Automatically generated by task-list-bot-generator"),
            "{conf}"
        );
        assert!(
            conf.contains("(/etc/default/task-list-bot absent: defaults)"),
            "{conf}"
        );
        assert!(reported.is_empty(), "{reported:?}");
    }

    #[test]
    fn config_sets_workers_and_listen_address() {
        let (out, etc, reported) =
            generate_with(Some("WEB_CONCURRENCY=6\nHOST=127.0.0.1\nPORT=38080\n"));
        assert_eq!(
            link_names(&out.0),
            (1..=6)
                .map(|i| format!("bot@{i}.service"))
                .collect::<Vec<_>>()
        );
        let socket = fs::read_to_string(out.0.join("bot.socket.d/50-listen.conf")).unwrap();
        let source = format!(
            "# Automatically generated by task-list-bot-generator from {}.\n",
            etc.0.join("task-list-bot").display()
        );
        assert!(
            socket.contains("[Socket]\nListenStream=\nListenStream=127.0.0.1:38080\n"),
            "{socket}"
        );
        assert!(socket.starts_with(&source), "{socket}");
        let workers = fs::read_to_string(out.0.join("bot@.service.d/50-workers.conf")).unwrap();
        let condition = format!(
            "ConditionPathIsSymbolicLink={}/bot.target.wants/%n\n",
            out.0.display()
        );
        assert!(workers.contains(&condition), "{workers}");
        assert!(workers.starts_with(&source), "{workers}");
        assert!(reported.is_empty(), "{reported:?}");
    }

    #[test]
    fn bad_config_reports_and_keeps_defaults() {
        let (out, etc, reported) = generate_with(Some("WEB_CONCURRENCY=lots\nPORT=http\n"));
        assert_eq!(link_names(&out.0).len(), 4);
        let socket = fs::read_to_string(out.0.join("bot.socket.d/50-listen.conf")).unwrap();
        assert!(socket.contains("ListenStream=3000\n"), "{socket}");
        let path = etc.0.join("task-list-bot");
        assert_eq!(
            reported,
            vec![
                format!(
                    "{}: WEB_CONCURRENCY=\"lots\" is not a whole number from 1 to 64; starting 4 workers",
                    path.display()
                ),
                format!(
                    "{}: PORT=\"http\" is not a port number from 1 to 65535; using port 3000",
                    path.display()
                ),
            ]
        );
    }

    #[test]
    fn unreadable_config_is_reported_and_defaults_used() {
        // A directory in place of the file: reading fails with something
        // other than NotFound, even as root.
        let out = TempDir::new("out");
        let etc = TempDir::new("etc");
        let mut reported = Vec::new();
        generate(&out.0, &etc.0, &mut |m| reported.push(m.to_owned())).unwrap();
        assert_eq!(link_names(&out.0).len(), 4);
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(
            reported[0].starts_with(&format!("cannot read {}", etc.0.display())),
            "{reported:?}"
        );
    }

    #[test]
    fn rerun_on_same_directory_drops_surplus_links() {
        let out = TempDir::new("out");
        let six = Plan {
            workers: NonZeroU32::new(6).unwrap(),
            listen: None,
        };
        let two = Plan {
            workers: NonZeroU32::new(2).unwrap(),
            listen: None,
        };
        write_units(&out.0, &six, None).unwrap();
        write_units(&out.0, &six, None).unwrap();
        assert_eq!(link_names(&out.0).len(), 6);
        write_units(&out.0, &two, None).unwrap();
        assert_eq!(link_names(&out.0), vec!["bot@1.service", "bot@2.service"]);
    }

    #[test]
    fn unwritable_output_is_an_error() {
        let etc = TempDir::new("etc");
        let file = etc.0.join("not-a-dir");
        fs::write(&file, "").unwrap();
        let err = generate(&file, &etc.0.join("missing"), &mut |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
    }

    #[test]
    fn kernel_log_line_is_one_line() {
        assert_eq!(Line("a\nb").to_string(), "task-list-bot-generator: a b");
    }

    #[test]
    fn restart_backoff_only_for_a_systemd_that_knows_it() {
        assert_eq!(
            parse_systemd_version("systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT"),
            Some(252)
        );
        assert_eq!(
            parse_systemd_version("systemd 256~rc1 (256~rc1)"),
            Some(256)
        );
        assert_eq!(parse_systemd_version("bash: no"), None);
        let dir = std::env::temp_dir().join(format!("tlb-backoff-{}", std::process::id()));
        let conf = dir.join("bot@.service.d/50-restart-backoff.conf");
        for version in [None, Some(252), Some(253)] {
            write_restart_backoff(&dir, version, None).unwrap();
            assert!(!conf.exists(), "{version:?}");
        }
        write_restart_backoff(&dir, Some(254), None).unwrap();
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.contains("RestartSteps=5") && text.contains("RestartMaxDelaySec=60s"));
        fs::remove_dir_all(dir).unwrap();
    }
}
