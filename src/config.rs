//! Settings: what the operator gives ([`Settings`], Probot's environment
//! variables or flags) and what the bot runs with ([`Config`], validated).
//!
//! Validation happens once, before anything listens, and every problem is
//! one line naming the setting. Secret values are never echoed back.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// The back-off after an item's first failure while GitHub fails.
pub const FIRST_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// The longest back-off between two tries of an item while GitHub fails.
pub const RETRY_BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);

/// GitHub's advice for a secondary rate limit without `Retry-After`: wait at
/// least a minute.
pub const MIN_SECONDARY_PAUSE: Duration = Duration::from_secs(60);

/// The longest pause repeated secondary rate limits grow to.
pub const MAX_SECONDARY_PAUSE: Duration = Duration::from_secs(15 * 60);

/// The longest `RETRY_FOR` accepted.
const MAX_RETRY_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Bots whose comments may carry checkboxes that are not the author's tasks.
pub const DEFAULT_IGNORED_BOTS: &str = "linear,linear[bot],coderabbitai[bot]";

/// The raw settings, as Probot's environment variables (a `.env` file in the
/// working directory included) or command-line flags. Everything is a string
/// here so that [`Config::from_settings`] can name the bad one clearly.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// The GitHub App's numeric id.
    #[arg(long, env = "APP_ID")]
    pub app_id: Option<String>,
    /// The App's private key: PEM (literal `\n` escapes allowed) or base64 of the PEM.
    #[arg(long, env = "PRIVATE_KEY", hide_env_values = true)]
    pub private_key: Option<SecretString>,
    /// Path of a file holding the App's private key in PEM.
    #[arg(long, env = "PRIVATE_KEY_PATH")]
    pub private_key_path: Option<PathBuf>,
    /// The secret GitHub signs webhook deliveries with.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretString>,
    /// Path of a file holding the webhook secret.
    #[arg(long, env = "WEBHOOK_SECRET_PATH")]
    pub webhook_secret_path: Option<PathBuf>,
    /// The path GitHub posts deliveries to.
    #[arg(long, env = "WEBHOOK_PATH", default_value = "/")]
    pub webhook_path: String,
    /// Address to bind when no listening socket is passed in (all interfaces when unset).
    #[arg(long, env = "HOST")]
    pub host: Option<String>,
    /// Port to bind when no listening socket is passed in.
    #[arg(long, env = "PORT", default_value = "3000")]
    pub port: String,
    /// trace, debug, info, warn, error or fatal.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log lines on standard error: pretty (for people; short is the same)
    /// or json (one JSON object a line). The journal always gets its own fields.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
    /// GitHub Enterprise host (`host[:port]`); the API is then {protocol}://{host}/api/v3.
    #[arg(long, env = "GHE_HOST")]
    pub ghe_host: Option<String>,
    /// Protocol for GHE_HOST: https or http.
    #[arg(long, env = "GHE_PROTOCOL", default_value = "https")]
    pub ghe_protocol: String,
    /// Check-run writes per second per installation, in this process.
    #[arg(long, env = "WRITE_RATE", default_value = "1")]
    pub write_rate: String,
    /// Comma-separated logins whose comments are ignored.
    #[arg(long, env = "IGNORED_BOTS", default_value = DEFAULT_IGNORED_BOTS)]
    pub ignored_bots: String,
    /// Seconds one GitHub request may take before it is abandoned and retried.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10")]
    pub request_timeout: String,
    /// Seconds a stopping worker spends writing queued checks before it exits.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "20")]
    pub drain_timeout: String,
    /// How long a check keeps being retried while GitHub fails (5xx, timeouts,
    /// no connection): seconds, or a number with s, m, h or d.
    #[arg(long, env = "RETRY_FOR", default_value = "24h")]
    pub retry_for: String,
    /// Connections one worker holds open at once; past it the worker stops
    /// accepting and the other workers of the fleet take them.
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "4096")]
    pub max_connections: String,
    /// Seconds a client may take to send a whole request, headers and body
    /// (GitHub gives up on a delivery after 10 s).
    #[arg(long, env = "RECEIVE_TIMEOUT", default_value = "10")]
    pub receive_timeout: String,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", default_value = "5")]
    pub keep_alive_timeout: String,
    /// MiB of request bodies one worker holds in memory at once; larger
    /// uploads wait for room, or get 503.
    #[arg(long, env = "BODY_BUDGET_MB", default_value = "64")]
    pub body_budget_mb: String,
    /// This worker's name in logs and status (systemd units set the instance).
    #[arg(long, env = "WORKER")]
    pub worker: Option<String>,
    /// Directory of the pending set shared by the workers of this host
    /// (systemd's StateDirectory= sets it). Default for a bare process:
    /// $XDG_STATE_HOME/task-list-bot, or ~/.local/state/task-list-bot.
    #[arg(long, env = "STATE_DIRECTORY")]
    pub state_directory: Option<PathBuf>,
    /// A PostgreSQL database (postgres://user:password@host/db) that holds
    /// the pending set of every host, instead of SQLite in the state
    /// directory. Under systemd, give it as the database-url credential.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Check-run writes per second per installation across every worker
    /// of every host sharing the database (needs DATABASE_URL). Unset: no
    /// fleet-wide ceiling, only WRITE_RATE per worker.
    #[arg(long, env = "FLEET_WRITE_RATE")]
    pub fleet_write_rate: Option<String>,
    /// Serve Prometheus metrics at /metrics on this port plus the worker's
    /// number (WORKER=N: METRICS_PORT+N; otherwise METRICS_PORT itself).
    /// Unset: no metrics endpoint.
    #[arg(long, env = "METRICS_PORT")]
    pub metrics_port: Option<String>,
    /// Address the metrics endpoint binds (loopback unless changed).
    #[arg(long, env = "METRICS_HOST", default_value = DEFAULT_METRICS_HOST)]
    pub metrics_host: String,
    /// Make no GitHub calls: compute checks from payloads and log them as JSON.
    #[arg(long)]
    pub dry_run: bool,
}

/// The metrics endpoint answers on loopback only unless told otherwise.
pub const DEFAULT_METRICS_HOST: &str = "127.0.0.1";

/// Where this worker serves its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsEndpoint {
    pub host: String,
    pub port: u16,
}

/// A setting that stops start-up, with the name the operator knows it by.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(name: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            name,
            reason: reason.into(),
        }
    }
}

/// The GitHub App's identity: everything needed to mint tokens.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    /// PEM text of the RSA private key, checked to parse.
    pub private_key: SecretString,
}

/// Validated settings the bot runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` only in dry-run mode, where GitHub is never called.
    pub app: Option<AppCredentials>,
    pub webhook_secret: SecretString,
    pub webhook_path: String,
    pub host: Option<String>,
    pub port: u16,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    /// Base of the REST API, without a trailing slash.
    pub github_api_url: String,
    /// Writes per second per installation.
    pub write_rate: f64,
    pub ignored_bots: Vec<String>,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    /// How long an item is retried through transient failures ([`RETRY_FOR`](Settings::retry_for)).
    pub retry_for: Duration,
    /// The back-off after an item's first failure, doubled on each further
    /// one; not a setting (tests shorten it).
    pub first_retry_backoff: Duration,
    /// The longest back-off between retries of an item; not a setting
    /// (tests shorten it).
    pub retry_backoff_cap: Duration,
    /// The shortest pause after a secondary rate limit, doubled on repeats
    /// up to [`MAX_SECONDARY_PAUSE`]; not a setting (tests shorten it).
    pub min_secondary_pause: Duration,
    /// What one worker accepts from senders: connections, time, body bytes.
    pub limits: ServerLimits,
    pub worker: String,
    /// Where the durable pending set lives; `None` keeps it in memory.
    pub state_directory: Option<PathBuf>,
    /// The PostgreSQL database shared by every host, which then holds the
    /// pending set instead of the state directory.
    pub database_url: Option<SecretString>,
    /// The fleet-wide ceiling on writes per second per installation.
    pub fleet_write_rate: Option<f64>,
    /// This worker's metrics endpoint; `None`: no metrics served.
    pub metrics: Option<MetricsEndpoint>,
    pub dry_run: bool,
}

/// Bounds on what senders can make one worker hold: the webhook port faces
/// the internet, so no sender may exhaust its file descriptors, tasks or
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at once; past it the worker stops accepting.
    pub max_connections: usize,
    /// Time for a whole request (headers and body), from its first byte
    /// (from the accept for a connection's first request).
    pub receive_timeout: Duration,
    /// Time an idle keep-alive connection stays open.
    pub keep_alive_timeout: Duration,
    /// Bytes of request bodies held in memory at once.
    pub body_budget: usize,
}

impl ServerLimits {
    /// The smallest body budget: one delivery of GitHub's largest size
    /// must fit in the part of the budget large bodies may use.
    pub const MIN_BODY_BUDGET_MB: usize = 34;
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            receive_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            body_budget: 64 * 1024 * 1024,
        }
    }
}

/// How log lines are written to standard error (Probot's `LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event for people to read (`pretty`, or `short` as older
    /// Probot versions called it).
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where files handed over by the service manager live (systemd's
/// `$CREDENTIALS_DIRECTORY`); the caller finds it, the library only reads it.
#[derive(Debug, Clone, Default)]
pub struct CredentialFiles {
    pub directory: Option<PathBuf>,
}

impl CredentialFiles {
    fn read(&self, id: &str) -> Result<Option<String>, std::io::Error> {
        let Some(dir) = &self.directory else {
            return Ok(None);
        };
        match std::fs::read_to_string(dir.join(id)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Config {
    /// Validates `settings`. Credentials named `private-key` and
    /// `webhook-secret` in `credentials` take precedence over the variables.
    pub fn from_settings(
        settings: &Settings,
        credentials: &CredentialFiles,
    ) -> Result<Config, ConfigError> {
        let webhook_secret = webhook_secret(settings, credentials)?;
        let app = if settings.dry_run {
            None
        } else {
            Some(app_credentials(settings, credentials)?)
        };
        let port = settings.port.trim().parse::<u16>().map_err(|_| {
            ConfigError::new("PORT", format!("{:?} is not a port number", settings.port))
        })?;
        let write_rate = parse_write_rate(&settings.write_rate)?;
        let request_timeout = parse_positive_seconds("REQUEST_TIMEOUT", &settings.request_timeout)?;
        let drain_timeout = parse_seconds("DRAIN_TIMEOUT", &settings.drain_timeout)?;
        let retry_for = parse_duration("RETRY_FOR", &settings.retry_for)?;
        if drain_timeout > MAX_DRAIN_TIMEOUT {
            // A stopping worker asks systemd for this much time
            // (EXTEND_TIMEOUT_USEC); more than an hour is a typo.
            return Err(ConfigError::new(
                "DRAIN_TIMEOUT",
                format!(
                    "{:?} is more than {} seconds",
                    settings.drain_timeout,
                    MAX_DRAIN_TIMEOUT.as_secs()
                ),
            ));
        }
        let limits = server_limits(settings)?;
        if !settings.webhook_path.starts_with('/') {
            return Err(ConfigError::new(
                "WEBHOOK_PATH",
                format!("{:?} must start with '/'", settings.webhook_path),
            ));
        }
        let worker = settings
            .worker
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| std::process::id().to_string());
        let metrics = metrics_endpoint(settings, &worker)?;
        let database_url = database_url(settings, credentials)?;
        let fleet_write_rate = match &settings.fleet_write_rate {
            Some(text) if !text.trim().is_empty() => {
                if database_url.is_none() {
                    return Err(ConfigError::new(
                        "FLEET_WRITE_RATE",
                        "needs DATABASE_URL: the ceiling is kept in the database every host shares",
                    ));
                }
                Some(parse_positive_f64("FLEET_WRITE_RATE", text)?)
            }
            _ => None,
        };
        Ok(Config {
            app,
            webhook_secret,
            webhook_path: settings.webhook_path.clone(),
            host: settings.host.clone().filter(|h| !h.trim().is_empty()),
            port,
            log_level: parse_log_level(&settings.log_level)?,
            log_format: parse_log_format(&settings.log_format)?,
            github_api_url: github_api_url(settings)?,
            write_rate,
            ignored_bots: settings
                .ignored_bots
                .split(',')
                .map(str::trim)
                .filter(|login| !login.is_empty())
                .map(str::to_owned)
                .collect(),
            request_timeout,
            drain_timeout,
            retry_for,
            first_retry_backoff: FIRST_RETRY_BACKOFF,
            retry_backoff_cap: RETRY_BACKOFF_CAP,
            min_secondary_pause: MIN_SECONDARY_PAUSE,
            limits,
            worker,
            state_directory: state_directory(settings)?,
            database_url,
            fleet_write_rate,
            metrics,
            dry_run: settings.dry_run,
        })
    }

    /// The write quota per installation as governor wants it.
    pub fn write_quota(&self) -> governor::Quota {
        let period = Duration::from_secs_f64(1.0 / self.write_rate);
        governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
    }
}

/// Names of the environment variables that hold secrets, so that the binary
/// can remove them before anything could hand its environment on.
pub const SECRET_VARIABLES: [&str; 3] = ["PRIVATE_KEY", "WEBHOOK_SECRET", "DATABASE_URL"];

/// The database URL: the `database-url` credential, else `DATABASE_URL`.
/// Errors show the URL with its password replaced.
fn database_url(
    settings: &Settings,
    credentials: &CredentialFiles,
) -> Result<Option<SecretString>, ConfigError> {
    let from_credential = credentials
        .read("database-url")
        .map_err(|e| ConfigError::new("DATABASE_URL", format!("credential database-url: {e}")))?;
    let url = match (from_credential, &settings.database_url) {
        (Some(text), _) => text,
        (None, Some(text)) => text.expose_secret().to_owned(),
        (None, None) => return Ok(None),
    };
    let url = url.trim().to_owned();
    if url.is_empty() {
        return Ok(None);
    }
    if !crate::pending::is_postgres_url(&url) {
        return Err(ConfigError::new(
            "DATABASE_URL",
            format!(
                "{} is not a PostgreSQL URL (postgres://user:password@host/database)",
                crate::pending::redact_url(&url)
            ),
        ));
    }
    Ok(Some(SecretString::from(url)))
}

fn webhook_secret(
    settings: &Settings,
    credentials: &CredentialFiles,
) -> Result<SecretString, ConfigError> {
    let from_credential = credentials.read("webhook-secret").map_err(|e| {
        ConfigError::new("WEBHOOK_SECRET", format!("credential webhook-secret: {e}"))
    })?;
    let secret = match (
        from_credential,
        &settings.webhook_secret,
        &settings.webhook_secret_path,
    ) {
        (Some(text), _, _) => text,
        (None, Some(text), _) => text.expose_secret().to_owned(),
        (None, None, Some(path)) => read_secret_file("WEBHOOK_SECRET_PATH", path)?,
        (None, None, None) => {
            return Err(ConfigError::new(
                "WEBHOOK_SECRET",
                "missing: set WEBHOOK_SECRET (or WEBHOOK_SECRET_PATH, or the webhook-secret credential)",
            ));
        }
    };
    // Files usually end in a newline that is not part of the secret.
    let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(ConfigError::new("WEBHOOK_SECRET", "is empty"));
    }
    Ok(SecretString::from(secret))
}

fn app_credentials(
    settings: &Settings,
    credentials: &CredentialFiles,
) -> Result<AppCredentials, ConfigError> {
    let app_id = match settings.app_id.as_deref().map(str::trim) {
        None | Some("") => return Err(ConfigError::new("APP_ID", "missing")),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                ConfigError::new("APP_ID", format!("{text:?} is not a positive integer"))
            })?,
    };
    let from_credential = credentials
        .read("private-key")
        .map_err(|e| ConfigError::new("PRIVATE_KEY", format!("credential private-key: {e}")))?;
    let (name, raw) = match (
        from_credential,
        &settings.private_key,
        &settings.private_key_path,
    ) {
        (Some(text), _, _) => ("PRIVATE_KEY", text),
        (None, Some(text), _) => ("PRIVATE_KEY", text.expose_secret().to_owned()),
        (None, None, Some(path)) => (
            "PRIVATE_KEY_PATH",
            read_secret_file("PRIVATE_KEY_PATH", path)?,
        ),
        (None, None, None) => {
            return Err(ConfigError::new(
                "PRIVATE_KEY",
                "missing: set PRIVATE_KEY or PRIVATE_KEY_PATH (or the private-key credential)",
            ));
        }
    };
    let pem = decode_private_key(&raw)
        .ok_or_else(|| ConfigError::new(name, "is neither a PEM private key nor base64 of one"))?;
    check_signs_jwts(&pem).map_err(|reason| ConfigError::new(name, reason))?;
    Ok(AppCredentials {
        app_id,
        private_key: SecretString::from(pem),
    })
}

/// Signs a throw-away JWT with the key, as every token request will: a
/// public key parses as PEM too, and would otherwise fail every request.
fn check_signs_jwts(pem: &str) -> Result<(), &'static str> {
    use octocrab::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    if !pem.contains("PRIVATE KEY-----") {
        return Err("is not a private key (a public key or certificate?)");
    }
    let key =
        EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| "is not a valid RSA private key")?;
    let claims = serde_json::json!({ "iat": 0, "exp": 60, "iss": "0" });
    encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map(drop)
        .map_err(|_| "cannot sign with this key (not an RSA private key)")
}

/// Accepts the forms Probot accepts: PEM text, PEM with literal `\n`
/// escapes (as a one-line environment variable holds it), or base64 of PEM.
pub fn decode_private_key(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.contains("-----BEGIN") {
        return Some(raw.replace("\\n", "\n"));
    }
    let compact: String = raw.split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.contains("-----BEGIN").then_some(text)
}

/// The metrics endpoint: `METRICS_PORT` plus the worker's number, so that
/// the workers of a fleet (WORKER=1 … N) each get a port of their own from
/// one setting; a worker not named by a number takes `METRICS_PORT` itself.
fn metrics_endpoint(
    settings: &Settings,
    worker: &str,
) -> Result<Option<MetricsEndpoint>, ConfigError> {
    let Some(text) = settings
        .metrics_port
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let base = text
        .parse::<u16>()
        .map_err(|_| ConfigError::new("METRICS_PORT", format!("{text:?} is not a port number")))?;
    let offset = worker.parse::<u16>().unwrap_or(0);
    let port = if base == 0 {
        // Port 0: the system picks a free port for each worker.
        0
    } else {
        base.checked_add(offset).ok_or_else(|| {
            ConfigError::new(
                "METRICS_PORT",
                format!("{base} plus worker number {offset} is beyond port 65535"),
            )
        })?
    };
    let host = settings.metrics_host.trim();
    if host.is_empty() || host.contains(['/', ' ', '?', '#']) {
        return Err(ConfigError::new(
            "METRICS_HOST",
            format!("{host:?} is not a host name or address"),
        ));
    }
    Ok(Some(MetricsEndpoint {
        host: host.to_owned(),
        port,
    }))
}

fn state_directory(settings: &Settings) -> Result<Option<PathBuf>, ConfigError> {
    match &settings.state_directory {
        // systemd may list several directories separated by ':'; ours is one.
        Some(path) if path.as_os_str().is_empty() => Ok(None),
        Some(path) if path.is_relative() => Err(ConfigError::new(
            "STATE_DIRECTORY",
            format!("{} must be an absolute path", path.display()),
        )),
        Some(path) => Ok(Some(path.clone())),
        None => Ok(None),
    }
}

fn read_secret_file(name: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(name, format!("cannot read {}: {e}", path.display())))
}

fn github_api_url(settings: &Settings) -> Result<String, ConfigError> {
    let protocol = settings.ghe_protocol.trim();
    if protocol != "https" && protocol != "http" {
        return Err(ConfigError::new(
            "GHE_PROTOCOL",
            format!("{protocol:?} must be https or http"),
        ));
    }
    match settings.ghe_host.as_deref().map(str::trim) {
        None | Some("") => Ok("https://api.github.com".to_owned()),
        Some(host) => {
            let valid = !host.contains(['/', ' ', '?', '#'])
                && format!("{protocol}://{host}/").parse::<http::Uri>().is_ok();
            if !valid {
                return Err(ConfigError::new(
                    "GHE_HOST",
                    format!("{host:?} is not a host name (host[:port], no scheme or path)"),
                ));
            }
            Ok(format!("{protocol}://{host}/api/v3"))
        }
    }
}

fn parse_log_level(text: &str) -> Result<tracing::Level, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(tracing::Level::TRACE),
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" => Ok(tracing::Level::WARN),
        // Probot (pino) also knows "fatal"; tracing's most severe level is error.
        "error" | "fatal" => Ok(tracing::Level::ERROR),
        other => Err(ConfigError::new(
            "LOG_LEVEL",
            format!("{other:?} is not one of trace, debug, info, warn, error, fatal"),
        )),
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "pretty" | "short" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::new(
            "LOG_FORMAT",
            format!("{other:?} is not one of pretty, short, json"),
        )),
    }
}

fn parse_positive_f64(name: &'static str, text: &str) -> Result<f64, ConfigError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| ConfigError::new(name, format!("{text:?} is not a positive number")))
}

/// The longest drain a stopping worker may ask systemd for.
const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// One write per day at the least: a smaller rate is a typo, and its
/// period would not fit in a `Duration`.
const MIN_WRITE_RATE: f64 = 1.0 / 86_400.0;

fn parse_write_rate(text: &str) -> Result<f64, ConfigError> {
    let rate = parse_positive_f64("WRITE_RATE", text)?;
    if rate < MIN_WRITE_RATE {
        return Err(ConfigError::new(
            "WRITE_RATE",
            format!("{text:?} is below one write per day ({MIN_WRITE_RATE:.7})"),
        ));
    }
    Ok(rate)
}

fn parse_positive_seconds(name: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let duration = parse_seconds(name, text)?;
    if duration < Duration::from_millis(1) {
        return Err(ConfigError::new(
            name,
            format!("{text:?} must be more than zero seconds"),
        ));
    }
    Ok(duration)
}

fn parse_count(
    name: &'static str,
    text: &str,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ConfigError::new(
                name,
                format!("{text:?} is not a whole number from {min} to {max}"),
            )
        })
}

fn server_limits(settings: &Settings) -> Result<ServerLimits, ConfigError> {
    let budget_mb = parse_count(
        "BODY_BUDGET_MB",
        &settings.body_budget_mb,
        ServerLimits::MIN_BODY_BUDGET_MB,
        4096,
    )?;
    Ok(ServerLimits {
        max_connections: parse_count("MAX_CONNECTIONS", &settings.max_connections, 1, 1_000_000)?,
        receive_timeout: parse_positive_seconds("RECEIVE_TIMEOUT", &settings.receive_timeout)?,
        keep_alive_timeout: parse_positive_seconds(
            "KEEP_ALIVE_TIMEOUT",
            &settings.keep_alive_timeout,
        )?,
        body_budget: budget_mb * 1024 * 1024,
    })
}

fn parse_seconds(name: &'static str, text: &str) -> Result<Duration, ConfigError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ConfigError::new(name, format!("{text:?} is not a number of seconds")))
}

/// A positive duration: seconds, or a number followed by s, m, h or d
/// (`90`, `90s`, `15m`, `24h`, `2d`), at most 30 days.
fn parse_duration(name: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let trimmed = text.trim();
    let (number, unit) = match trimmed.char_indices().last() {
        Some((at, 's')) => (&trimmed[..at], 1.0),
        Some((at, 'm')) => (&trimmed[..at], 60.0),
        Some((at, 'h')) => (&trimmed[..at], 3600.0),
        Some((at, 'd')) => (&trimmed[..at], 86_400.0),
        _ => (trimmed, 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * unit)
        .filter(|secs| secs.is_finite() && *secs > 0.0 && *secs <= MAX_RETRY_FOR.as_secs_f64())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            ConfigError::new(
                name,
                format!("{text:?} is not a duration (seconds, or a number with s, m, h or d; at most 30d)"),
            )
        })
}

impl Settings {
    /// Settings for tests and tools: only what has no default is unset.
    pub fn with_defaults() -> Settings {
        Settings {
            webhook_path: "/".into(),
            port: "3000".into(),
            log_level: "info".into(),
            log_format: "pretty".into(),
            ghe_protocol: "https".into(),
            write_rate: "1".into(),
            ignored_bots: DEFAULT_IGNORED_BOTS.into(),
            request_timeout: "10".into(),
            drain_timeout: "20".into(),
            retry_for: "24h".into(),
            max_connections: "4096".into(),
            receive_timeout: "10".into(),
            keep_alive_timeout: "5".into(),
            body_budget_mb: "64".into(),
            metrics_host: DEFAULT_METRICS_HOST.into(),
            ..Settings::default()
        }
    }
}

/// Exposes the webhook secret's bytes to the one place that needs them.
pub(crate) fn secret_bytes(secret: &SecretString) -> &[u8] {
    secret.expose_secret().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../tests/data/test-app-key.pem");
    const PUBLIC_KEY: &str = include_str!("../tests/data/test-app-key.pub.pem");

    fn valid() -> Settings {
        Settings {
            app_id: Some("42".into()),
            private_key: Some(KEY.into()),
            webhook_secret: Some("s3cret".into()),
            ..Settings::with_defaults()
        }
    }

    fn error_of(settings: &Settings) -> ConfigError {
        Config::from_settings(settings, &CredentialFiles::default()).unwrap_err()
    }

    #[test]
    fn valid_settings_resolve_with_probot_defaults() {
        let config = Config::from_settings(&valid(), &CredentialFiles::default()).unwrap();
        assert_eq!(config.app.as_ref().unwrap().app_id, 42);
        assert_eq!(config.port, 3000);
        assert_eq!(config.webhook_path, "/");
        assert_eq!(config.github_api_url, "https://api.github.com");
        assert_eq!(
            config.ignored_bots,
            ["linear", "linear[bot]", "coderabbitai[bot]"]
        );
        assert_eq!(config.write_rate, 1.0);
        assert_eq!(config.retry_for, Duration::from_secs(24 * 3600));
        assert_eq!(config.retry_backoff_cap, Duration::from_secs(300));
        assert_eq!(config.min_secondary_pause, Duration::from_secs(60));
        assert_eq!(config.limits, ServerLimits::default());
    }

    #[test]
    fn retry_for_takes_seconds_or_a_unit() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("24h", 86_400),
            (" 2d ", 172_800),
        ] {
            let settings = Settings {
                retry_for: text.into(),
                ..valid()
            };
            let config = Config::from_settings(&settings, &CredentialFiles::default()).unwrap();
            assert_eq!(config.retry_for, Duration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn private_key_is_accepted_escaped_and_base64() {
        let escaped = KEY.trim().replace('\n', "\\n");
        assert_eq!(decode_private_key(&escaped).unwrap(), KEY.trim());
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        assert_eq!(decode_private_key(&b64).unwrap(), KEY);
        for raw in [escaped, b64] {
            let settings = Settings {
                private_key: Some(raw.into()),
                ..valid()
            };
            assert!(Config::from_settings(&settings, &CredentialFiles::default()).is_ok());
        }
    }

    #[test]
    fn each_bad_setting_is_named_and_secrets_are_not_echoed() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    app_id: None,
                    ..valid()
                },
                "APP_ID",
            ),
            (
                Settings {
                    app_id: Some("x1".into()),
                    ..valid()
                },
                "APP_ID",
            ),
            (
                Settings {
                    private_key: None,
                    ..valid()
                },
                "PRIVATE_KEY",
            ),
            (
                Settings {
                    private_key: Some("not-a-key-hunter2".into()),
                    ..valid()
                },
                "PRIVATE_KEY",
            ),
            (
                Settings {
                    webhook_secret: None,
                    ..valid()
                },
                "WEBHOOK_SECRET",
            ),
            (
                Settings {
                    port: "70000".into(),
                    ..valid()
                },
                "PORT",
            ),
            (
                Settings {
                    write_rate: "0".into(),
                    ..valid()
                },
                "WRITE_RATE",
            ),
            (
                Settings {
                    log_level: "loud".into(),
                    ..valid()
                },
                "LOG_LEVEL",
            ),
            (
                Settings {
                    log_format: "bunyan".into(),
                    ..valid()
                },
                "LOG_FORMAT",
            ),
            (
                Settings {
                    ghe_protocol: "ftp".into(),
                    ..valid()
                },
                "GHE_PROTOCOL",
            ),
            (
                Settings {
                    ghe_host: Some("http://x/y".into()),
                    ..valid()
                },
                "GHE_HOST",
            ),
            (
                Settings {
                    webhook_path: "hooks".into(),
                    ..valid()
                },
                "WEBHOOK_PATH",
            ),
            (
                Settings {
                    drain_timeout: "-1".into(),
                    ..valid()
                },
                "DRAIN_TIMEOUT",
            ),
            (
                Settings {
                    retry_for: "0".into(),
                    ..valid()
                },
                "RETRY_FOR",
            ),
            (
                Settings {
                    retry_for: "1w".into(),
                    ..valid()
                },
                "RETRY_FOR",
            ),
            (
                Settings {
                    retry_for: "31d".into(),
                    ..valid()
                },
                "RETRY_FOR",
            ),
            (
                Settings {
                    drain_timeout: "7200".into(),
                    ..valid()
                },
                "DRAIN_TIMEOUT",
            ),
            (
                Settings {
                    request_timeout: "0".into(),
                    ..valid()
                },
                "REQUEST_TIMEOUT",
            ),
            (
                Settings {
                    // 1/rate seconds would overflow a Duration.
                    write_rate: "1e-300".into(),
                    ..valid()
                },
                "WRITE_RATE",
            ),
            (
                Settings {
                    private_key: Some(PUBLIC_KEY.into()),
                    ..valid()
                },
                "PRIVATE_KEY",
            ),
            (
                Settings {
                    max_connections: "0".into(),
                    ..valid()
                },
                "MAX_CONNECTIONS",
            ),
            (
                Settings {
                    receive_timeout: "0".into(),
                    ..valid()
                },
                "RECEIVE_TIMEOUT",
            ),
            (
                Settings {
                    keep_alive_timeout: "soon".into(),
                    ..valid()
                },
                "KEEP_ALIVE_TIMEOUT",
            ),
            (
                Settings {
                    // Too small for one 25 MB delivery.
                    body_budget_mb: "16".into(),
                    ..valid()
                },
                "BODY_BUDGET_MB",
            ),
        ];
        for (settings, name) in cases {
            let error = error_of(&settings);
            assert_eq!(error.name, name, "{error}");
            let line = error.to_string();
            assert!(
                line.starts_with(&format!("invalid setting {name}: ")),
                "{line}"
            );
            assert!(
                !line.contains("hunter2") && !line.contains("s3cret"),
                "{line}"
            );
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn metrics_are_off_by_default_and_each_worker_gets_its_own_loopback_port() {
        let config = Config::from_settings(&valid(), &CredentialFiles::default()).unwrap();
        assert_eq!(config.metrics, None);
        let endpoint = |port: &str, worker: Option<&str>| {
            let settings = Settings {
                metrics_port: Some(port.into()),
                worker: worker.map(str::to_owned),
                ..valid()
            };
            Config::from_settings(&settings, &CredentialFiles::default()).map(|c| c.metrics)
        };
        let third = endpoint("9910", Some("3")).unwrap().unwrap();
        assert_eq!(third.host, "127.0.0.1");
        assert_eq!(third.port, 9913);
        assert_eq!(endpoint("9910", Some("web")).unwrap().unwrap().port, 9910);
        assert_eq!(endpoint("0", Some("3")).unwrap().unwrap().port, 0);
        assert_eq!(endpoint(" ", Some("3")).unwrap(), None);
        assert_eq!(
            endpoint("65535", Some("1")).unwrap_err().name,
            "METRICS_PORT"
        );
        assert_eq!(endpoint("nine", None).unwrap_err().name, "METRICS_PORT");
        let settings = Settings {
            metrics_port: Some("9910".into()),
            metrics_host: "a b".into(),
            ..valid()
        };
        assert_eq!(error_of(&settings).name, "METRICS_HOST");
    }

    #[test]
    fn dry_run_needs_no_app_credentials() {
        let settings = Settings {
            app_id: None,
            private_key: None,
            dry_run: true,
            ..valid()
        };
        let config = Config::from_settings(&settings, &CredentialFiles::default()).unwrap();
        assert!(config.app.is_none());
    }

    #[test]
    fn enterprise_host_gives_api_v3_base() {
        let settings = Settings {
            ghe_host: Some("127.0.0.1:8080".into()),
            ghe_protocol: "http".into(),
            ..valid()
        };
        let config = Config::from_settings(&settings, &CredentialFiles::default()).unwrap();
        assert_eq!(config.github_api_url, "http://127.0.0.1:8080/api/v3");
    }

    #[test]
    fn credentials_directory_wins_and_trailing_newline_is_dropped() {
        let dir = std::env::temp_dir().join(format!("tlb-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("webhook-secret"), "from-credential\n").unwrap();
        std::fs::write(dir.join("private-key"), KEY).unwrap();
        let settings = Settings {
            private_key: None,
            ..valid()
        };
        let credentials = CredentialFiles {
            directory: Some(dir.clone()),
        };
        let config = Config::from_settings(&settings, &credentials).unwrap();
        assert_eq!(config.webhook_secret.expose_secret(), "from-credential");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_database_url_credential_wins_and_bad_urls_never_show_a_password() {
        let dir = std::env::temp_dir().join(format!("tlb-db-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("database-url"),
            "postgres://bot:from-credential@db/tlb\n",
        )
        .unwrap();
        let settings = Settings {
            database_url: Some("postgres://bot:from-env@db/tlb".into()),
            ..valid()
        };
        let credentials = CredentialFiles {
            directory: Some(dir.clone()),
        };
        let config = Config::from_settings(&settings, &credentials).unwrap();
        assert_eq!(
            config.database_url.as_ref().unwrap().expose_secret(),
            "postgres://bot:from-credential@db/tlb"
        );
        assert!(!format!("{config:?}").contains("from-credential"));
        std::fs::remove_dir_all(dir).unwrap();

        let from_env = Config::from_settings(&settings, &CredentialFiles::default()).unwrap();
        assert_eq!(
            from_env.database_url.unwrap().expose_secret(),
            "postgres://bot:from-env@db/tlb"
        );

        let mysql = Settings {
            database_url: Some("mysql://bot:s3cret-db@db/tlb".into()),
            ..valid()
        };
        let error = error_of(&mysql);
        assert_eq!(error.name, "DATABASE_URL");
        assert!(!error.to_string().contains("s3cret-db"), "{error}");
        assert!(
            error.to_string().contains("mysql://bot:***@db/tlb"),
            "{error}"
        );
    }

    #[test]
    fn the_fleet_write_rate_needs_the_shared_database() {
        let alone = Settings {
            fleet_write_rate: Some("2".into()),
            ..valid()
        };
        assert_eq!(error_of(&alone).name, "FLEET_WRITE_RATE");
        let shared = Settings {
            database_url: Some("postgresql://bot@db/tlb".into()),
            ..alone
        };
        let config = Config::from_settings(&shared, &CredentialFiles::default()).unwrap();
        assert_eq!(config.fleet_write_rate, Some(2.0));
        let off = Config::from_settings(&valid(), &CredentialFiles::default()).unwrap();
        assert_eq!(
            (off.fleet_write_rate, off.database_url.is_none()),
            (None, true)
        );
        let zero = Settings {
            fleet_write_rate: Some("0".into()),
            ..shared
        };
        assert_eq!(error_of(&zero).name, "FLEET_WRITE_RATE");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = Config::from_settings(&valid(), &CredentialFiles::default()).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"));
        assert!(!debug.contains("BEGIN RSA"));
    }
}
