//! `task-list-bot receive -e EVENT -p payload.json` (Probot's `receive`):
//! one payload from a file through the same decoding and write path as a
//! delivery, without a webhook, a signature or a server. With `--dry-run`
//! it calls no GitHub API and prints the check the payload alone implies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::check::{CheckRunRequest, TaskSources};
use crate::config::{Config, CredentialFiles, Settings};
use crate::event::{Event, PayloadSnapshot};
use crate::github::{GitHub, RetryPolicy};
use crate::pending::{MemoryPendingSet, PendingSet, WorkItem};
use crate::setup::EVENTS;
use crate::worker::{Stats, Worker};

/// A payload that cannot be run, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("unknown event {event:?}: task-list-bot receives {}", EVENTS.join(", "))]
    UnknownEvent { event: String },
    #[error("cannot read the payload {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the payload {} is not valid JSON: {source}", path.display())]
    InvalidJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the payload {} is not a {event} payload: {source}", path.display())]
    WrongShape {
        path: PathBuf,
        event: String,
        source: serde_json::Error,
    },
    #[error(
        "the payload {} has no installation: GitHub App deliveries carry \"installation\": {{\"id\": N}}, which says whose credentials to use",
        path.display()
    )]
    NoInstallation { path: PathBuf },
}

/// Reads and decodes the payload at `path` as a delivery of `event`.
/// Payloads the bot does not act on decode to [`Event::Ignored`].
pub fn load(event: &str, path: &Path) -> Result<Event, ReceiveError> {
    if !EVENTS.contains(&event) {
        return Err(ReceiveError::UnknownEvent {
            event: event.to_owned(),
        });
    }
    let payload = std::fs::read(path).map_err(|source| ReceiveError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&payload).map_err(|source| {
        ReceiveError::InvalidJson {
            path: path.to_owned(),
            source,
        }
    })?;
    let decoded = Event::decode(event, &payload).map_err(|e| ReceiveError::WrongShape {
        path: path.to_owned(),
        event: event.to_owned(),
        source: e.source,
    })?;
    match decoded {
        Event::Ignored { reason } if reason == "no installation in payload" => {
            Err(ReceiveError::NoInstallation {
                path: path.to_owned(),
            })
        }
        other => Ok(other),
    }
}

/// What `--dry-run` prints: the check the payload alone implies.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// `owner/repo#N`, or `owner/repo merge group`.
    pub target: String,
    pub request: CheckRunRequest,
}

/// The check a dry run would write; `None` for an ignored event.
pub fn dry_run(event: &Event, ignored_bots: &[String]) -> Option<DryRun> {
    let now = chrono::Utc::now();
    match event {
        Event::PullRequestChanged { pull, snapshot, .. } => Some(DryRun {
            target: format!("{}#{}", pull.repo, pull.number.0),
            request: check_from_snapshot(snapshot, ignored_bots, now),
        }),
        Event::MergeGroupChecksRequested { repo, head_sha, .. } => Some(DryRun {
            target: format!("{repo} merge group"),
            request: CheckRunRequest::merge_group(head_sha, now),
        }),
        // What is written if the check on the head is still in progress.
        Event::PullRequestClosed {
            pull,
            head_sha,
            merged,
        } => Some(DryRun {
            target: format!("{}#{}", pull.repo, pull.number.0),
            request: CheckRunRequest::retired(
                head_sha,
                crate::check::CHECK_NAME,
                if *merged {
                    "pull request merged"
                } else {
                    "pull request closed"
                },
                now,
            ),
        }),
        Event::Ignored { .. } => None,
    }
}

fn check_from_snapshot(
    snapshot: &PayloadSnapshot,
    ignored_bots: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> CheckRunRequest {
    let sources = TaskSources::from_snapshot(snapshot);
    let tasks = sources.tasks(ignored_bots);
    let head_sha = snapshot
        .head_sha
        .as_deref()
        .unwrap_or("(not in this payload)");
    CheckRunRequest::for_tasks(head_sha, &tasks, now)
}

/// What the write path did with the payload's work.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub written: u64,
    pub unchanged: u64,
    pub dropped: u64,
    /// Work still pending when `DRAIN_TIMEOUT` ran out.
    pub left: usize,
    pub last_error: Option<String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.dropped == 0 && self.left == 0
    }
}

/// Runs `event`'s work through the worker, as a delivery's would be, and
/// waits until it is written, found unchanged, or given up on (at most
/// `config.drain_timeout`).
pub async fn write(config: &Config, event: Event) -> crate::Result<Outcome> {
    let app = config
        .app
        .as_ref()
        .context("receive needs APP_ID and PRIVATE_KEY (or --dry-run)")?;
    let items = WorkItem::from_event(event);
    if items.is_empty() {
        return Ok(Outcome::default());
    }
    let pending: Arc<dyn PendingSet> = Arc::new(MemoryPendingSet::new());
    for (index, item) in items.into_iter().enumerate() {
        pending
            .add(item, &WorkItem::delivery_id_of("receive", index))
            .map_err(|e| anyhow::anyhow!("recording the work: {e}"))?;
    }
    let github = GitHub::new(
        &config.github_api_url,
        app,
        RetryPolicy::new(config.request_timeout),
    )?;
    let stats = Arc::new(Stats::default());
    let store = crate::pending::Store::spawn(Arc::clone(&pending))?;
    let worker = Worker::new(
        store,
        github,
        config.write_quota(),
        config.ignored_bots.clone(),
        Arc::clone(&stats),
        crate::worker::RetryRules::from_config(config),
    );
    // A stopped worker drains what is queued and returns.
    let stop = CancellationToken::new();
    stop.cancel();
    worker.run(stop, config.drain_timeout).await;
    Ok(Outcome {
        written: stats.writes.load(Ordering::Relaxed),
        unchanged: stats.skipped_unchanged.load(Ordering::Relaxed),
        dropped: stats.dropped.load(Ordering::Relaxed),
        left: pending.len(),
        last_error: stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    })
}

/// `task-list-bot receive`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReceiveArgs {
    /// The event name, as GitHub's X-GitHub-Event header gives it (e.g. pull_request).
    #[arg(short = 'e', long)]
    pub event: String,
    /// The payload: a JSON file as GitHub delivers it.
    #[arg(short = 'p', long = "payload-path", visible_alias = "payload")]
    pub payload: PathBuf,
    /// A GitHub laid out as GitHub Enterprise Server is, by URL: its API is {URL}/api/v3.
    #[arg(long)]
    pub github_url: Option<String>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Runs `task-list-bot receive` to its end: the exit code to return.
pub fn command(args: ReceiveArgs, credentials: &CredentialFiles) -> ExitCode {
    let event = match load(&args.event, &args.payload) {
        Ok(event) => event,
        Err(error) => {
            eprintln!("task-list-bot receive: {error}");
            return ExitCode::from(2);
        }
    };
    if let Event::Ignored { reason } = &event {
        println!("ignored: {reason}");
        return ExitCode::SUCCESS;
    }
    let mut settings = args.settings;
    // Nothing is verified: the payload comes from a file, not a delivery.
    if settings.webhook_secret.is_none() && settings.webhook_secret_path.is_none() {
        settings.webhook_secret = Some("unused".into());
    }
    let mut config = match Config::from_settings(&settings, credentials) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("task-list-bot receive: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(url) = &args.github_url {
        config.github_api_url = format!("{}/api/v3", url.trim_end_matches('/'));
    }
    if config.dry_run {
        let Some(dry) = dry_run(&event, &config.ignored_bots) else {
            return ExitCode::SUCCESS;
        };
        let state = dry.request.conclusion.unwrap_or(dry.request.status);
        println!("{}: {} [{state}]", dry.target, dry.request.output.title);
        let json = serde_json::to_string_pretty(&dry.request).expect("a check run serialises");
        println!("{json}");
        return ExitCode::SUCCESS;
    }
    let target = dry_run(&event, &[]).map(|d| d.target).unwrap_or_default();
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("task-list-bot receive: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(write(&config, event)) {
        Ok(outcome) if !outcome.succeeded() => {
            let why = outcome.last_error.as_deref().unwrap_or("no answer");
            if outcome.left > 0 {
                eprintln!(
                    "task-list-bot receive: {target}: check not written within DRAIN_TIMEOUT ({:?}): {why}",
                    config.drain_timeout
                );
            } else {
                eprintln!("task-list-bot receive: {target}: check not written: {why}");
            }
            ExitCode::FAILURE
        }
        Ok(outcome) => {
            if outcome.written > 0 {
                println!("{target}: check run written");
            } else if outcome.unchanged > 0 {
                println!("{target}: the latest check already says this; nothing written");
            } else {
                println!("{target}: no check written (the pull request is closed)");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("task-list-bot receive: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error, where the worker's "check run written" line
/// (with the check's title) shows what happened.
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,task_list_bot={}",
        config.log_level.as_str().to_ascii_lowercase()
    ));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
