//! The manual page, task-list-bot(1): one page for the whole program, so that
//! `man task-list-bot` answers every question without pointing at pages the
//! package does not ship.
//!
//! Each command's synopsis and options come from the clap definitions (through
//! clap_mangen), so they cannot drift from `--help`; the rest (environment,
//! files, exit status) is written here, next to the code that decides it.

use std::io::{self, Write};

use clap_mangen::Man;
use roff::{Roff, bold, italic, roman};

/// The lines clap_mangen puts at the top of every piece it renders; the page
/// needs them once.
const APOSTROPHE_PREAMBLE: [&str; 2] = [r".ie \n(.g .ds Aq \(aq", ".el .ds Aq '"];

/// Writes the page for `command` (the binary's whole command line, already
/// adjusted as `--help` shows it) to `out`.
pub fn render(command: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let subcommands: Vec<clap::Command> = command.get_subcommands().cloned().collect();
    let root = Man::new(command);

    let mut page = String::new();
    page.push_str(&piece(|w| root.render_title(w))?);
    page.push_str(&without_preamble(&piece(|w| root.render_name_section(w))?));

    page.push_str(".SH SYNOPSIS\n");
    for (i, subcommand) in subcommands.iter().enumerate() {
        if i > 0 {
            page.push_str(".br\n");
        }
        page.push_str(&section_body(&piece(|w| {
            Man::new(subcommand.clone()).render_synopsis_section(w)
        })?));
    }
    page.push_str(".br\n");
    page.push_str(&Roff::new().text(generator_synopsis()).to_roff());

    page.push_str(&description().to_roff());

    page.push_str(".SH COMMANDS\n");
    for subcommand in &subcommands {
        page.push_str(&command_section(subcommand)?);
    }

    page.push_str(&environment().to_roff());
    page.push_str(&files().to_roff());
    page.push_str(&exit_status().to_roff());
    page.push_str(&see_also().to_roff());
    out.write_all(page.as_bytes())
}

/// One subcommand: its synopsis, what it does, and its options.
fn command_section(subcommand: &clap::Command) -> io::Result<String> {
    let man = Man::new(subcommand.clone());
    let mut text = Roff::new().control("SS", [subcommand.get_name()]).to_roff();
    text.push_str(&section_body(&piece(|w| man.render_synopsis_section(w))?));
    text.push_str(".PP\n");
    text.push_str(&section_body(&piece(|w| {
        man.render_description_section(w)
    })?));
    if subcommand.get_name() == "generator" {
        text.push_str(
            &Roff::new()
                .control("PP", [])
                .text([
                    roman("systemd runs it at boot and on "),
                    bold("systemctl daemon-reload"),
                    roman(" through the link "),
                    italic("/usr/lib/systemd/system-generators/task-list-bot-generator"),
                    roman(" (the binary acts as the generator when called by that name). It reads "),
                    bold("WEB_CONCURRENCY"),
                    roman(", "),
                    bold("HOST"),
                    roman(" and "),
                    bold("PORT"),
                    roman(" from "),
                    italic("/etc/default/task-list-bot"),
                    roman(" and writes into "),
                    italic("NORMAL_DIR"),
                    roman(" the links that make "),
                    bold("bot.target"),
                    roman(" start that many workers, and the socket's listening address. Bad values are reported to the kernel log and replaced by defaults."),
                ])
                .to_roff(),
        );
    }
    let has_options = subcommand.get_arguments().any(|arg| !arg.is_hide_set());
    if has_options {
        text.push_str(&section_body(&piece(|w| man.render_options_section(w))?));
    }
    Ok(text)
}

fn generator_synopsis() -> Vec<roff::Inline> {
    vec![
        bold("task-list-bot-generator"),
        roman(" "),
        italic("NORMAL_DIR"),
        roman(" ["),
        italic("EARLY_DIR"),
        roman(" "),
        italic("LATE_DIR"),
        roman("]"),
    ]
}

fn description() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"])
        .text([
            bold("task-list-bot"),
            roman(" is a GitHub App that keeps a "),
            bold("task-list-completed"),
            roman(" check run on every pull request. It counts the markdown task-list items ("),
            bold("- [ ]"),
            roman(" and "),
            bold("- [x]"),
            roman(") in the pull request's body, comments, reviews and review comments; the check is in progress while required tasks remain and a success once every one is ticked. Items containing "),
            bold("OPTIONAL"),
            roman(" never block; items containing "),
            bold("POST-MERGE"),
            roman(" or "),
            bold("N/A"),
            roman(" are not counted."),
        ])
        .control("PP", [])
        .text([
            roman("A delivery is answered as soon as the pull request is recorded in the pending set; the check is written later, at the pace GitHub asks for, from the pull request's state at that moment. Under systemd, "),
            bold("bot.target"),
            roman(" runs workers "),
            bold("bot@1"),
            roman(" ... "),
            bold("bot@N"),
            roman(" that share "),
            bold("bot.socket"),
            roman(" and one pending set."),
        ])
        .control("PP", [])
        .text([
            roman("Settings come from environment variables (the names Probot uses), a "),
            italic(".env"),
            roman(" file in the working directory, or the equivalent options. A missing or malformed setting stops start-up with one line naming it. Secrets never appear in logs or error messages."),
        ]);
    roff
}

/// A `.TP` entry: a bold tag, then its text.
fn entry(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []).text([bold(tag)]).text([roman(text)]);
}

fn environment() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]).text([roman(
        "Every option of serve and redeliver has a variable, named in its description above. Besides those:",
    )]);
    for (name, text) in [
        (
            "LOG_FORMAT",
            "pretty (the default; short is the same) or json: how log lines are written to standard error. JSON lines carry the message and every field of the event. Ignored when standard error is the journal, which gets native fields (DELIVERY_ID, INSTALLATION_ID, REPOSITORY, PULL_REQUEST, WORKER, ...).",
        ),
        (
            "NO_COLOR",
            "When set and not empty, log lines are never coloured. Without it they are coloured only when standard error is a terminal.",
        ),
        (
            "WEBHOOK_PROXY_URL",
            "Probot's smee.io channel. Not read: the bot warns once at start-up. Forward a channel with smee-client instead: npx smee-client --url \"$WEBHOOK_PROXY_URL\" --target http://127.0.0.1:3000/",
        ),
        (
            "CREDENTIALS_DIRECTORY",
            "Set by systemd (LoadCredential=). The files private-key and webhook-secret in it take precedence over PRIVATE_KEY, PRIVATE_KEY_PATH, WEBHOOK_SECRET and WEBHOOK_SECRET_PATH; database-url, when present, over DATABASE_URL.",
        ),
        (
            "XDG_STATE_HOME, HOME",
            "Without STATE_DIRECTORY, the pending set lives in $XDG_STATE_HOME/task-list-bot, or ~/.local/state/task-list-bot.",
        ),
        (
            "LISTEN_FDS, LISTEN_PID",
            "Set by systemd for socket activation: the worker serves the one listening socket passed in and ignores HOST and PORT.",
        ),
        (
            "NOTIFY_SOCKET, WATCHDOG_USEC",
            "Set by systemd (Type=notify, WatchdogSec=): the worker reports READY, STOPPING and a STATUS line, and pings the watchdog.",
        ),
        (
            "JOURNAL_STREAM",
            "Set by systemd when standard error is the journal; logs then go to the journal with native fields.",
        ),
        (
            "WEB_CONCURRENCY",
            "Read by the generator from /etc/default/task-list-bot: the number of workers, 1 to 64, default 4.",
        ),
        (
            "TASK_LIST_BOT_CONFIG",
            "The settings file the generator reads instead of /etc/default/task-list-bot (for tests).",
        ),
    ] {
        entry(&mut roff, name, text);
    }
    roff
}

fn files() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, text) in [
        (
            ".env",
            "In the working directory: KEY=VALUE lines that fill in variables the environment lacks, as Probot reads it.",
        ),
        (
            "/etc/default/task-list-bot",
            "The fleet's settings (EnvironmentFile= of the workers and the redelivery job; read by the generator). Every setting is listed there, commented, with its default.",
        ),
        (
            "/etc/task-list-bot/private-key.pem, /etc/task-list-bot/webhook-secret",
            "The App's private key and the webhook secret, readable by root only, handed to the workers with LoadCredential=.",
        ),
        (
            "/etc/task-list-bot/database-url",
            "Optional: the PostgreSQL URL (with its password) of a pending set shared by several hosts, readable by root only, handed to the workers as the database-url credential by a drop-in (README, Several hosts).",
        ),
        (
            "/var/lib/task-list-bot/pending.sqlite3",
            "The pending set shared by the workers of the host (StateDirectory=; a link to /var/lib/private/task-list-bot). Outside systemd: pending.sqlite3 in STATE_DIRECTORY.",
        ),
        (
            "/usr/lib/systemd/system/bot.socket, bot@.service, bot.target",
            "The listening socket, one worker, and the fleet that systemctl enable, start, stop and restart act on.",
        ),
        (
            "/usr/lib/systemd/system/bot-redeliver.service, bot-redeliver.timer",
            "Runs task-list-bot redeliver every 10 minutes.",
        ),
        (
            "/usr/lib/systemd/system-generators/task-list-bot-generator",
            "A link to the binary: the generator.",
        ),
        (
            "/run/systemd/generator/",
            "What the generator writes: bot.target.wants/bot@N.service, bot@.service.d/50-workers.conf and bot.socket.d/50-listen.conf.",
        ),
        (
            "/usr/share/doc/task-list-bot/README.md",
            "Installation, registering the GitHub App, running and upgrading the fleet.",
        ),
    ] {
        entry(&mut roff, path, text);
    }
    roff
}

fn exit_status() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (status, text) in [
        (
            "0",
            "Success; for serve, a stop by SIGTERM or SIGINT after the queued checks were drained.",
        ),
        (
            "1",
            "serve stopped on an error after start-up; redeliver could not list deliveries or a redelivery request failed; the generator could not write its output.",
        ),
        (
            "2",
            "A bad setting or command line (one line on standard error names it), a listening socket that cannot be used, or a tasks input that cannot be read. systemd does not restart a worker that exits with 2.",
        ),
        (
            "243",
            "Not the binary's own: systemd's status when a LoadCredential= file is missing or unreadable (243/CREDENTIALS); the worker is not restarted.",
        ),
    ] {
        entry(&mut roff, status, text);
    }
    roff
}

fn see_also() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]).text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("systemd.socket"),
        roman("(5), "),
        bold("systemd.generator"),
        roman("(7)"),
    ]);
    roff
}

/// What one clap_mangen renderer writes, as text.
fn piece(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<String> {
    let mut buffer = Vec::new();
    render(&mut buffer)?;
    String::from_utf8(buffer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn without_preamble(text: &str) -> String {
    text.lines()
        .filter(|line| !APOSTROPHE_PREAMBLE.contains(line))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A rendered section without its preamble and `.SH` heading.
fn section_body(text: &str) -> String {
    without_preamble(text)
        .lines()
        .filter(|line| !line.starts_with(".SH "))
        .map(|line| format!("{line}\n"))
        .collect()
}
