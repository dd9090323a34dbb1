//! [`run`]: serve webhooks on a listener until the shutdown future fires,
//! then stop accepting, answer every connection already accepted, and drain
//! the queued checks within the configured time.

mod connections;

pub use connections::{
    HANDLER_PATIENCE, MAX_READ_BUFFER, RESERVED_FILES, ReceiveDeadline, STOP_GRACE,
    reserve_open_files,
};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler as _;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::github::{GitHub, RetryPolicy};
use crate::metrics::{self, Exporter};
use crate::pending::{
    FleetCeiling, MemoryPendingSet, PendingSet, PgOptions, PostgresPendingSet, SqlitePendingSet,
    Store,
};
use crate::repo_settings::{
    RepoSettings, SettingsCache, cache::DEFAULT_MAX_AGE as SETTINGS_MAX_AGE,
};
use crate::webhook::{self, BodyBudget, RejectionLog};
use crate::worker::{RetryRules, Stats, Worker};

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pending: Store,
    pub stats: Arc<Stats>,
    /// Set once shutdown begins, so that health checks steer traffic away.
    pub draining: Arc<AtomicBool>,
    /// The bytes of request bodies this worker holds at once.
    pub body_budget: Arc<BodyBudget>,
    /// Refused requests, logged without letting senders flood the journal.
    pub rejections: Arc<RejectionLog>,
    /// The worker's per-repository settings, which `push` deliveries
    /// invalidate.
    pub settings: Arc<SettingsCache>,
}

/// The bot, assembled and ready to serve.
pub struct Bot {
    state: AppState,
    /// The set itself, for tests that look at it directly.
    set: Arc<dyn PendingSet>,
    worker: Option<Arc<Worker>>,
    /// This worker's `/metrics` endpoint, bound, when metrics are on.
    metrics: Option<Exporter>,
}

impl Bot {
    /// Builds the bot from validated settings: the pending set is the
    /// PostgreSQL database every host shares when `DATABASE_URL` names one,
    /// else the host's store in the state directory, else in memory.
    pub fn new(config: Config) -> crate::Result<Bot> {
        let pending: Arc<dyn PendingSet> = match (&config.database_url, &config.state_directory) {
            _ if config.dry_run => Arc::new(MemoryPendingSet::new()),
            (Some(url), _) => Arc::new(PostgresPendingSet::open(url, PgOptions::default())?),
            (None, Some(dir)) => Arc::new(SqlitePendingSet::open(dir)?),
            (None, None) => Arc::new(MemoryPendingSet::new()),
        };
        Bot::with_pending(config, pending)
    }

    /// Builds the bot around a given pending set.
    pub fn with_pending(config: Config, set: Arc<dyn PendingSet>) -> crate::Result<Bot> {
        let pending = Store::spawn(Arc::clone(&set))?;
        if let Some(rate) = config.fleet_write_rate {
            pending.set_fleet_ceiling(FleetCeiling::per_second(rate));
        }
        let stats = Arc::new(Stats::default());
        let metrics = config.metrics.as_ref().map(Exporter::bind).transpose()?;
        metrics::worker(&config.worker);
        let worker = match &config.app {
            Some(app) => {
                let github = GitHub::new(
                    &config.github_api_url,
                    app,
                    RetryPolicy::new(config.request_timeout),
                )?;
                Some(Worker::new(
                    pending.clone(),
                    github,
                    config.write_quota(),
                    config.ignored_bots.clone(),
                    Arc::clone(&stats),
                    RetryRules::from_config(&config),
                ))
            }
            None => None,
        };
        let settings = match &worker {
            Some(worker) => worker.settings(),
            None => Arc::new(SettingsCache::new(
                RepoSettings::with_ignored_bots(config.ignored_bots.clone()),
                SETTINGS_MAX_AGE,
            )),
        };
        Ok(Bot {
            state: AppState {
                settings,
                body_budget: Arc::new(BodyBudget::new(config.limits.body_budget)),
                config: Arc::new(config),
                pending,
                stats,
                draining: Arc::default(),
                rejections: Arc::default(),
            },
            set,
            worker,
            metrics,
        })
    }

    /// Where this worker serves its metrics, when it does.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(Exporter::local_addr)
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.state.stats)
    }

    /// The async handle every store call goes through.
    pub fn pending(&self) -> Store {
        self.state.pending.clone()
    }

    /// The pending set itself; its calls may block, so only for tests and
    /// tools, never on the runtime's threads of a serving process.
    pub fn pending_set(&self) -> Arc<dyn PendingSet> {
        Arc::clone(&self.set)
    }

    /// What the watchdog checks before each ping.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            store: self.state.pending.clone(),
            has_worker_loop: self.worker.is_some(),
        }
    }

    /// The body budget, so that tests can watch what it holds.
    pub fn body_budget(&self) -> Arc<BodyBudget> {
        Arc::clone(&self.state.body_budget)
    }

    /// The HTTP routes: the webhook plus Probot's default routes.
    pub fn router(&self) -> Router {
        let webhook_path = self.state.config.webhook_path.as_str();
        let router = Router::new()
            .route("/ping", get(|| async { "PONG" }))
            .route("/probot", get(info_page))
            .route("/health", get(health));
        let receive =
            webhook::receive.layer(axum::middleware::from_fn(metrics::time_acknowledgement));
        let router = if webhook_path == "/" {
            router.route("/", get(redirect_to_info).post(receive))
        } else {
            router
                .route("/", get(redirect_to_info))
                .route(webhook_path, post(receive))
        };
        router
            .layer(DefaultBodyLimit::max(webhook::MAX_PAYLOAD_BYTES))
            .with_state(self.state.clone())
    }
}

/// Serves until `shutdown` completes, then drains. Returns once every
/// accepted request is answered and the queue is written or logged.
pub async fn run(
    listener: TcpListener,
    mut bot: Bot,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let router = bot.router();
    // Metrics are served until the drain is over, so that it can be watched.
    let stop_metrics = CancellationToken::new();
    let metrics = bot
        .metrics
        .take()
        .map(|exporter| tokio::spawn(exporter.serve(bot.pending(), stop_metrics.clone())));
    let stop_worker = CancellationToken::new();
    let worker = bot.worker.clone().map(|worker| {
        let stop = stop_worker.clone();
        let drain = bot.state.config.drain_timeout;
        tokio::spawn(worker.run(stop, drain))
    });
    let stop_accepting = CancellationToken::new();
    let draining = Arc::clone(&bot.state.draining);
    let signal = stop_accepting.clone();
    // With a shared store the worker stops claiming at once: the other
    // workers (or the next start) take what is left. A private store is
    // drained, so its worker stops only once every connection is answered.
    let stop_worker_at_once = bot.state.pending.is_shared().then(|| stop_worker.clone());
    tokio::spawn(async move {
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
        tracing::info!("stopping: no new connections, answering those in hand");
        signal.cancel();
        if let Some(stop_worker) = stop_worker_at_once {
            stop_worker.cancel();
        }
    });
    let rejections = Arc::clone(&bot.state.rejections);
    let summaries = {
        let rejections = Arc::clone(&rejections);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                rejections.flush_if_due();
            }
        })
    };
    let limits = bot.state.config.limits;
    connections::serve(listener, router, limits, rejections, stop_accepting).await;
    summaries.abort();
    stop_worker.cancel();
    if let Some(worker) = worker {
        worker
            .await
            .map_err(|e| anyhow::anyhow!("worker task: {e}"))?;
    }
    stop_metrics.cancel();
    if let Some(metrics) = metrics {
        metrics
            .await
            .map_err(|e| anyhow::anyhow!("metrics task: {e}"))??;
    }
    Ok(())
}

async fn info_page(State(state): State<AppState>) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>task-list-bot</title></head><body>\
         <h1>task-list-bot</h1><p>version {}</p><p>worker {}</p>\
         <p>Keeps a <code>task-list-completed</code> check on every pull request.</p></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        html_escape(&state.config.worker),
    ))
}

async fn redirect_to_info() -> Redirect {
    Redirect::to("/probot")
}

/// Answers from figures the store thread keeps: never waits for the store.
async fn health(State(state): State<AppState>) -> Response {
    let store = state.pending.health();
    let body = serde_json::json!({
        "status": if state.draining.load(Ordering::Relaxed) { "draining" } else { "ready" },
        "worker": state.config.worker,
        "pending": store.pending,
        "store": {
            "ok": !store.failing,
            "errors": store.errors,
            "last_error": store.last_error,
        },
    });
    let status = if state.draining.load(Ordering::Relaxed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

/// Longest a single store call may run before the store thread counts as
/// wedged: a call waits at most its busy timeout (2 s) per statement.
pub const STORE_STALL: Duration = Duration::from_secs(15);

/// Longest the worker loop may go without looking for work: it looks at
/// least once a second, plus a slow store's busy timeout and back-off.
pub const WORKER_LOOP_STALL: Duration = Duration::from_secs(20);

/// Whether the parts a watchdog cannot see from the runtime make progress:
/// the store thread finishes its calls, and the worker loop turns. (The
/// runtime's own progress is the watchdog task running at all.)
#[derive(Clone)]
pub struct Liveness {
    store: Store,
    has_worker_loop: bool,
}

impl Liveness {
    /// `Err` names what is stuck.
    pub fn check(&self) -> Result<(), String> {
        let health = self.store.health();
        if let Some(busy) = health.busy_for.filter(|busy| *busy > STORE_STALL) {
            return Err(format!(
                "the store thread has been in one call for {busy:?}"
            ));
        }
        if self.has_worker_loop && health.since_worker_poll > WORKER_LOOP_STALL {
            return Err(format!(
                "the worker loop has not looked for work for {:?}",
                health.since_worker_poll
            ));
        }
        Ok(())
    }

    /// The store's health, for STATUS.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
