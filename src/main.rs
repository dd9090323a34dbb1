//! The `task-list-bot` command: parses arguments, sets up logging, takes the
//! listener and hands everything to the library.

mod man;
mod systemd;

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{FromArgMatches as _, Parser, Subcommand};
use task_list_bot::config::{Config, CredentialFiles, LogFormat, SECRET_VARIABLES, Settings};
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
/// How long a stopping worker waits for its blocking tasks (minting an
/// installation token) once its runtime has stopped.
const BLOCKING_TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

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
        /// How far back to look, in hours (GitHub redelivers deliveries of the past 3 days).
        #[arg(long, default_value_t = 24)]
        since_hours: u64,
    },
    /// Register the GitHub App from a manifest (a page on localhost) and store its credentials.
    Setup(Box<task_list_bot::setup::SetupArgs>),
    /// Run one payload from a file through decoding and the write path (Probot's receive).
    Receive(Box<task_list_bot::receive::ReceiveArgs>),
    /// Show the host's fleet at a glance: workers, pending work, pauses, dropped items.
    ///
    /// Reads the store in the state directory read-only (run as root, or as
    /// the fleet's user). Exit status: 0 when the fleet is healthy; 1 when no
    /// worker is alive or pending work is older than --max-age; 2 for a usage
    /// error or a store that cannot be read.
    Status {
        /// Print one JSON document instead of tables (fields: state_directory,
        /// generated_at, healthy, problems, max_age_seconds, workers, pending,
        /// pauses, dropped; see the README).
        #[arg(long)]
        json: bool,
        /// Pending work older than this makes the fleet unhealthy: seconds,
        /// or a number with s, m or h.
        #[arg(long, default_value = "10m", value_parser = task_list_bot::status::parse_max_age)]
        max_age: std::time::Duration,
        /// The fleet's state directory. Default: /var/lib/task-list-bot when
        /// it exists, else $XDG_STATE_HOME/task-list-bot or
        /// ~/.local/state/task-list-bot.
        #[arg(long, env = "STATE_DIRECTORY")]
        state_directory: Option<PathBuf>,
        /// The fleet's PostgreSQL database, when the pending set lives
        /// there (read instead of the state directory). Default: the URL in
        /// /etc/task-list-bot/database-url when that file is readable.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<secrecy::SecretString>,
    },
    /// Print this manual page (roff) to standard output.
    #[command(hide = true)]
    Man,
    /// Run as a systemd generator: write bot.target's wants for WEB_CONCURRENCY workers.
    Generator {
        /// Where the generated units go (systemd passes /run/systemd/generator).
        normal_dir: PathBuf,
        /// Passed by systemd; not used.
        early_dir: Option<PathBuf>,
        /// Passed by systemd; not used.
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
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|error| error.exit());
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
        Command::Setup(args) => task_list_bot::setup::command(*args),
        Command::Receive(args) => task_list_bot::receive::command(*args, &credential_files()),
        Command::Status {
            json,
            max_age,
            state_directory,
            database_url,
        } => match database_url.or_else(packaged_database_url) {
            Some(url) => fleet_status(&url, max_age, json),
            None => status(state_directory, max_age, json),
        },
        Command::Man => man_page(),
    }
}

/// The settings `redeliver` reads; it accepts the others (it shares the
/// workers' environment file) but does not list them.
const REDELIVER_SETTINGS: [&str; 9] = [
    "app_id",
    "private_key",
    "private_key_path",
    "ghe_host",
    "ghe_protocol",
    "request_timeout",
    "state_directory",
    "log_level",
    "log_format",
];

/// The command line as `--help` and the man page show it: each subcommand
/// lists only the options it uses, and an environment hint names the
/// variable without echoing its value (`[env: APP_ID]`, never `APP_ID=`).
fn command() -> clap::Command {
    use clap::CommandFactory as _;
    let settings: Vec<String> =
        <Settings as clap::Args>::augment_args(clap::Command::new("settings"))
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect();
    Cli::command().mut_subcommands(|mut subcommand| {
        if subcommand.get_name() == "redeliver" {
            for id in settings
                .iter()
                .filter(|id| !REDELIVER_SETTINGS.contains(&id.as_str()))
            {
                subcommand = subcommand.mut_arg(id, |arg| arg.hide(true));
            }
        }
        subcommand.mut_args(|arg| arg.hide_env_values(true))
    })
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
    if let Err(reason) = server::reserve_open_files(config.limits.max_connections) {
        eprintln!("task-list-bot: invalid setting MAX_CONNECTIONS: {reason}");
        return ExitCode::from(2);
    }
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
    let outcome = runtime.block_on(run(config, listener, from_systemd));
    // An installation token still being minted on a blocking thread is not
    // waited for past this: the stop stays within its bound.
    runtime.shutdown_timeout(BLOCKING_TASKS_GRACE);
    match outcome {
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
    // What a stop may take: the connections' grace, then the drain.
    let stop_time = server::STOP_GRACE + server::HANDLER_PATIENCE + config.drain_timeout;
    let webhook_path = config.webhook_path.clone();
    let shutdown = shutdown_signal(stop_time)?;
    let bot = Bot::new(config)?;
    let metrics = bot.metrics_address();
    let store = bot.pending();
    systemd::spawn_watchdog(bot.liveness());
    systemd::spawn_status(bot.stats(), bot.liveness());
    let heartbeat =
        task_list_bot::status::spawn_heartbeat(store.clone(), worker.clone(), bot.stats());
    let stats = bot.stats();
    let started = std::time::SystemTime::now();
    #[cfg(feature = "fault-injection")]
    systemd::spawn_test_fault(RUNTIME_THREADS);
    warn_if_webhook_proxy_set(address.port(), &webhook_path);
    tracing::info!(
        %address,
        metrics = metrics.map(|a| format!("http://{a}/metrics")),
        from_systemd,
        dry_run,
        worker,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    systemd::notify_ready(&format!("listening on {address}"));
    let outcome = server::run(listener, bot, shutdown).await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
        // The final figures, for `status` after this worker is gone.
        let _ = task_list_bot::status::record_heartbeat(&store, &worker, started, &stats).await;
    }
    // Leave no owner lock file behind: the state directory must not grow
    // with restarts.
    store.release().await;
    outcome
}

/// Probot forwards deliveries from a smee.io channel when
/// `WEBHOOK_PROXY_URL` is set; this bot does not, so an operator who
/// relies on it would see deliveries vanish without a word. Said once, at
/// start-up; the URL is not logged (whoever knows it can read the channel).
fn warn_if_webhook_proxy_set(port: u16, webhook_path: &str) {
    if std::env::var_os("WEBHOOK_PROXY_URL").is_some_and(|url| !url.is_empty()) {
        tracing::warn!(
            "WEBHOOK_PROXY_URL is set but ignored: task-list-bot does not read a webhook proxy channel. \
             Forward the channel to it with smee-client: \
             npx smee-client --url \"$WEBHOOK_PROXY_URL\" --target http://127.0.0.1:{port}{webhook_path}"
        );
    }
}

/// A future that resolves on SIGTERM or SIGINT, after telling systemd we
/// are stopping and asking for `stop_time` (more than the unit's stop
/// timeout, when DRAIN_TIMEOUT is long). The handlers are installed here, at
/// once: a signal that arrives before the future is first polled is still
/// caught, not left to the default action (which would kill the worker
/// without a drain).
fn shutdown_signal(
    stop_time: std::time::Duration,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        systemd::notify_stopping(stop_time);
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
                "deliveries seen {}, never answered 2xx {}, redelivered {}, asked recently {}, too old to redeliver {}, forgotten {}, errors {}",
                report.attempts_seen,
                report.failed_deliveries,
                report.redelivered,
                report.already_requested,
                report.out_of_window,
                report.forgotten,
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

/// Where the packaged fleet keeps its state (systemd's StateDirectory=).
const PACKAGED_STATE_DIRECTORY: &str = "/var/lib/task-list-bot";

fn status(state_directory: Option<PathBuf>, max_age: std::time::Duration, json: bool) -> ExitCode {
    use task_list_bot::pending::fleet::FleetReadError;
    let Some(directory) = state_directory
        .filter(|dir| !dir.as_os_str().is_empty())
        .or_else(|| {
            let packaged = PathBuf::from(PACKAGED_STATE_DIRECTORY);
            packaged.exists().then_some(packaged)
        })
        .or_else(default_state_directory)
    else {
        eprintln!(
            "task-list-bot status: no state directory: set STATE_DIRECTORY or --state-directory"
        );
        return ExitCode::from(2);
    };
    match task_list_bot::status::check(&directory, max_age, std::time::SystemTime::now()) {
        Ok(report) => print_status(&report, json),
        Err(error) => {
            let hint = match &error {
                FleetReadError::Missing(_) => format!(
                    "no worker has used this state directory; point STATE_DIRECTORY or \
                     --state-directory at the fleet's ({PACKAGED_STATE_DIRECTORY} under the package)"
                ),
                FleetReadError::Busy(_) => {
                    "the workers were not held up; run the command again".to_owned()
                }
                FleetReadError::Unreadable { .. } | FleetReadError::Sqlite { .. } => {
                    "the store belongs to the fleet's user: run as root \
                     (sudo task-list-bot status) or as that user"
                        .to_owned()
                }
            };
            eprintln!("task-list-bot status: {error}\n{hint}");
            ExitCode::from(2)
        }
    }
}

/// Where the package's hosts keep the database URL (the workers' credential).
const PACKAGED_DATABASE_URL: &str = "/etc/task-list-bot/database-url";

fn packaged_database_url() -> Option<secrecy::SecretString> {
    let text = std::fs::read_to_string(PACKAGED_DATABASE_URL).ok()?;
    let url = text.trim();
    (!url.is_empty()).then(|| secrecy::SecretString::from(url.to_owned()))
}

/// `status` of a fleet whose pending set is in PostgreSQL.
fn fleet_status(url: &secrecy::SecretString, max_age: std::time::Duration, json: bool) -> ExitCode {
    use secrecy::ExposeSecret as _;
    let shown = task_list_bot::pending::redact_url(url.expose_secret());
    let now = std::time::SystemTime::now();
    match task_list_bot::pending::read_fleet(url, now) {
        Ok(snapshot) => print_status(
            &task_list_bot::status::Report::new(Path::new(&shown), &snapshot, max_age, now),
            json,
        ),
        Err(error) => {
            eprintln!("task-list-bot status: {shown}: {error}");
            ExitCode::from(2)
        }
    }
}

fn man_page() -> ExitCode {
    match man::render(command(), &mut std::io::stdout().lock()) {
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

fn credential_files() -> CredentialFiles {
    CredentialFiles {
        directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
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

/// Logs go to the journal with native fields when stderr is the journal;
/// otherwise to stderr as `LOG_FORMAT` says, coloured only on a terminal
/// and never when `NO_COLOR` is set (no-color.org), so that files and
/// pipes get plain text.
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
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    match config.log_format {
        LogFormat::Pretty => registry.with(lines.with_ansi(use_colour())).init(),
        LogFormat::Json => registry
            .with(
                lines
                    .with_ansi(false)
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .init(),
    }
}

/// Colour only for a person at a terminal who has not asked for none.
fn use_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_color
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

/// Prints a `status` report as text or JSON; its exit code says how the
/// fleet is.
fn print_status(report: &task_list_bot::status::Report, json: bool) -> ExitCode {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    ExitCode::from(report.exit_code())
}
