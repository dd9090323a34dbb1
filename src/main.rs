//! The `task-list-bot` command: parses arguments, sets up logging, takes the
//! listener and hands everything to the library.

mod systemd;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use task_list_bot::config::{Config, CredentialFiles, SECRET_VARIABLES, Settings};
use task_list_bot::repo_settings::{self, RepoSettings, WhenIncomplete};
use task_list_bot::server::{self, Bot};
use task_list_bot::tasklist::TaskList;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The name systemd calls the generator by (a link to this binary).
const GENERATOR_NAME: &str = "task-list-bot-generator";

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate a settings file and print the settings it gives (or its
    /// errors, with exit status 1). `_extends` is not followed.
    Check { file: PathBuf },
}

/// Runtime threads per worker process: the fleet, not the process, is what
/// scales, and these machines are small.
const RUNTIME_THREADS: usize = 2;

#[derive(Debug, Parser)]
#[command(
    name = "task-list-bot",
    version,
    about = "Keeps a task-list-completed check on every pull request"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve GitHub webhooks (settings from the environment, a .env file or flags).
    Serve(Box<Settings>),
    /// Print the tasks, counts and check text a markdown document produces.
    Tasks {
        /// Markdown file to read; standard input when absent or "-".
        file: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Count under this per-repository settings file (its markers, and
        /// what an incomplete check says).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Per-repository settings (.github/task-list-completed.yml).
    #[command(long_about = repo_settings::SCHEMA_HELP)]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Ask GitHub to redeliver recent deliveries that never got a 2xx answer.
    Redeliver {
        #[command(flatten)]
        settings: Box<Settings>,
        /// How far back to look, in hours (GitHub keeps deliveries for 3 days).
        #[arg(long, default_value_t = 24)]
        since_hours: u64,
    },
    /// Print the man page (roff) to standard output.
    #[command(hide = true)]
    Man,
    /// Run as a systemd generator: write bot.target's wants for WEB_CONCURRENCY workers.
    Generator {
        normal_dir: PathBuf,
        early_dir: Option<PathBuf>,
        late_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    if invoked_as_generator() {
        let normal_dir = std::env::args_os().nth(1).map(PathBuf::from);
        return generate(normal_dir.as_deref());
    }
    // A .env in the working directory fills in what the environment lacks,
    // as Probot does.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => serve(*settings),
        Command::Tasks { file, json, config } => tasks(file.as_deref(), json, config.as_deref()),
        Command::Config {
            action: ConfigAction::Check { file },
        } => config_check(&file),
        Command::Generator { normal_dir, .. } => generate(Some(&normal_dir)),
        Command::Redeliver {
            settings,
            since_hours,
        } => redeliver(*settings, since_hours),
        Command::Man => man_page(),
    }
}

fn invoked_as_generator() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|path| path.file_name().map(|name| name == GENERATOR_NAME))
        .unwrap_or(false)
}

fn generate(normal_dir: Option<&Path>) -> ExitCode {
    let Some(normal_dir) = normal_dir else {
        eprintln!("{GENERATOR_NAME}: expected NORMAL_DIR [EARLY_DIR LATE_DIR]");
        return ExitCode::from(2);
    };
    let config = std::env::var_os("TASK_LIST_BOT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(systemd::generator::CONFIG_PATH));
    match systemd::generator::run(normal_dir, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{GENERATOR_NAME}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(mut settings: Settings) -> ExitCode {
    limit_malloc_arenas();
    if settings.state_directory.is_none() {
        settings.state_directory = default_state_directory();
    }
    let credentials = CredentialFiles {
        directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
    };
    let config = match Config::from_settings(&settings, &credentials) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("task-list-bot: {error}");
            return ExitCode::from(2);
        }
    };
    drop(settings);
    for name in SECRET_VARIABLES {
        // SAFETY: no other thread exists yet; the runtime starts below.
        unsafe { std::env::remove_var(name) };
    }
    let (listener, from_systemd) = match systemd::take_listener(config.host.as_deref(), config.port)
    {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("task-list-bot: {error:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, listener, from_systemd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "stopped on error");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Config,
    listener: std::net::TcpListener,
    from_systemd: bool,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let address = listener.local_addr()?;
    let dry_run = config.dry_run;
    let worker = config.worker.clone();
    let shutdown = shutdown_signal()?;
    let bot = Bot::new(config)?;
    systemd::spawn_watchdog();
    systemd::spawn_status(bot.stats(), bot.pending());
    systemd::spawn_test_fault(RUNTIME_THREADS);
    tracing::info!(
        %address,
        from_systemd,
        dry_run,
        worker,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    systemd::notify_ready(&format!("listening on {address}"));
    server::run(listener, bot, shutdown).await
}

/// A future that resolves on SIGTERM or SIGINT, after telling systemd we
/// are stopping. The handlers are installed here, at once: a signal that
/// arrives before the future is first polled is still caught, not left to
/// the default action (which would kill the worker without a drain).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        systemd::notify_stopping();
    })
}

fn redeliver(mut settings: Settings, since_hours: u64) -> ExitCode {
    if settings.state_directory.is_none() {
        settings.state_directory = default_state_directory();
    }
    let credentials = CredentialFiles {
        directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
    };
    // The webhook secret is not needed to list deliveries.
    if settings.webhook_secret.is_none() && settings.webhook_secret_path.is_none() {
        settings.webhook_secret = Some("unused".into());
    }
    let config = match Config::from_settings(&settings, &credentials) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("task-list-bot: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("task-list-bot: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let since = std::time::Duration::from_secs(since_hours.saturating_mul(3600));
    match runtime.block_on(redeliver_once(config, since)) {
        Ok(report) => {
            println!(
                "deliveries seen {}, never answered 2xx {}, redelivered {}, already requested {}, errors {}",
                report.attempts_seen,
                report.failed_deliveries,
                report.redelivered,
                report.already_requested,
                report.errors
            );
            if report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("task-list-bot redeliver: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn redeliver_once(
    config: Config,
    since: std::time::Duration,
) -> anyhow::Result<task_list_bot::redeliver::Report> {
    use anyhow::Context as _;
    let app = config
        .app
        .as_ref()
        .context("redeliver needs APP_ID and PRIVATE_KEY")?;
    let github = task_list_bot::github::GitHub::new(
        &config.github_api_url,
        app,
        task_list_bot::github::RetryPolicy::new(config.request_timeout),
    )?;
    let directory = config
        .state_directory
        .as_deref()
        .context("redeliver needs STATE_DIRECTORY to remember what it asked for")?;
    let store = task_list_bot::pending::SqlitePendingSet::open(directory)?;
    task_list_bot::redeliver::run(&github, &store, since).await
}

fn man_page() -> ExitCode {
    use clap::CommandFactory as _;
    let page = clap_mangen::Man::new(Cli::command());
    match page.render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("task-list-bot man: {error}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates its own malloc arena; a worker
/// runs a handful of threads and needs no more than two, and each arena
/// holds memory of its own.
fn limit_malloc_arenas() {
    // SAFETY: called before any other thread exists; mallopt only tunes
    // the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Where a process not started by systemd keeps its pending set.
fn default_state_directory() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(base.join("task-list-bot"))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,task_list_bot={}",
        config.log_level.as_str().to_ascii_lowercase()
    ));
    let registry = tracing_subscriber::registry().with(filter);
    if systemd::stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("task-list-bot".into())
                    .with_custom_fields([("WORKER", config.worker.as_str())]);
                registry.with(layer).init();
                return;
            }
            Err(error) => {
                eprintln!("task-list-bot: journald unavailable, logging to stderr: {error}")
            }
        }
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .init();
}

/// Reads and validates one settings file: the settings it gives over the
/// defaults, or the exit code after its errors were printed.
fn settings_file(command: &str, path: &Path) -> Result<RepoSettings, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!(
            "task-list-bot {command}: cannot read {}: {e}",
            path.display()
        );
        ExitCode::from(2)
    })?;
    let (layer, errors) = repo_settings::parse::parse(&path.display().to_string(), &text);
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("{error}");
        }
        let n = errors.len();
        eprintln!(
            "task-list-bot {command}: {n} error{} in {}; a repository with this file gets the defaults",
            if n == 1 { "" } else { "s" },
            path.display()
        );
        return Err(ExitCode::FAILURE);
    }
    Ok(repo_settings::resolve::merge(
        &RepoSettings::default(),
        [layer],
    ))
}

fn config_check(path: &Path) -> ExitCode {
    let settings = match settings_file("config check", path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    println!("# {} is valid. The settings it gives:", path.display());
    print!("{}", settings.to_yaml());
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (layer, _) = repo_settings::parse::parse("", &text);
    if let Some(extends) = layer.extends {
        let target = match (&extends.owner, &extends.path) {
            (Some(owner), Some(path)) => format!("{owner}/{}:{path}", extends.repo),
            (Some(owner), None) => format!("{owner}/{}", extends.repo),
            (None, Some(path)) => format!("{}:{path}", extends.repo),
            (None, None) => extends.repo.clone(),
        };
        println!(
            "# _extends: {target} is merged under these when the bot reads the repository; not here."
        );
    }
    ExitCode::SUCCESS
}

fn tasks(file: Option<&Path>, json: bool, config: Option<&Path>) -> ExitCode {
    let settings = match config.map(|path| settings_file("tasks", path)).transpose() {
        Ok(settings) => settings.unwrap_or_default(),
        Err(code) => return code,
    };
    let markdown = match read_input(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("task-list-bot tasks: {error}");
            return ExitCode::from(2);
        }
    };
    let tasks = TaskList::parse_with(&markdown, &settings.markers);
    if json {
        let report = serde_json::to_string_pretty(&tasks.report()).expect("reports serialise");
        println!("{report}");
        return ExitCode::SUCCESS;
    }
    let counts = tasks.counts();
    let output = tasks.render();
    println!("Title:    {}", output.title);
    println!("Summary:  {}", output.summary);
    println!(
        "Required: {} ({} remaining); optional: {} ({} remaining)",
        counts.total, counts.remaining, counts.optional_total, counts.optional_remaining
    );
    let check = match settings.when_incomplete {
        _ if tasks.is_complete() => "completed / success".to_owned(),
        WhenIncomplete::InProgress => "in_progress".to_owned(),
        other => format!("completed / {}", other.name()),
    };
    println!("Check:    {check} ({})", settings.check_name);
    if !output.text.is_empty() {
        println!("{}", output.text.trim_end());
    }
    ExitCode::SUCCESS
}

fn read_input(file: Option<&Path>) -> Result<String, String> {
    match file {
        Some(path) if path != Path::new("-") => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(text)
        }
    }
}
