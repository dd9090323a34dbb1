//! [`run`]: serve webhooks on a listener until the shutdown future fires,
//! then stop accepting, answer every connection already accepted, and drain
//! the queued checks within the configured time.

mod connections;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
use crate::pending::{MemoryPendingSet, PendingSet, SqlitePendingSet};
use crate::webhook;
use crate::worker::{Stats, Worker};

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pending: Arc<dyn PendingSet>,
    pub stats: Arc<Stats>,
    /// Set once shutdown begins, so that health checks steer traffic away.
    pub draining: Arc<AtomicBool>,
}

/// The bot, assembled and ready to serve.
pub struct Bot {
    state: AppState,
    worker: Option<Arc<Worker>>,
    /// This worker's `/metrics` endpoint, bound, when metrics are on.
    metrics: Option<Exporter>,
}

impl Bot {
    /// Builds the bot from validated settings: the pending set is the
    /// shared store in the state directory, or in memory when there is none.
    pub fn new(config: Config) -> crate::Result<Bot> {
        let pending: Arc<dyn PendingSet> = match &config.state_directory {
            Some(dir) if !config.dry_run => Arc::new(SqlitePendingSet::open(dir)?),
            _ => Arc::new(MemoryPendingSet::new()),
        };
        Bot::with_pending(config, pending)
    }

    /// Builds the bot around a given pending set.
    pub fn with_pending(config: Config, pending: Arc<dyn PendingSet>) -> crate::Result<Bot> {
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
                    Arc::clone(&pending),
                    github,
                    config.write_quota(),
                    config.ignored_bots.clone(),
                    Arc::clone(&stats),
                ))
            }
            None => None,
        };
        Ok(Bot {
            state: AppState {
                config: Arc::new(config),
                pending,
                stats,
                draining: Arc::default(),
            },
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

    pub fn pending(&self) -> Arc<dyn PendingSet> {
        Arc::clone(&self.state.pending)
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
    tokio::spawn(async move {
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
        tracing::info!("stopping: no new connections, answering those in hand");
        signal.cancel();
    });
    connections::serve(listener, router, stop_accepting).await;
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

async fn health(State(state): State<AppState>) -> Response {
    let body = serde_json::json!({
        "status": if state.draining.load(Ordering::Relaxed) { "draining" } else { "ready" },
        "worker": state.config.worker,
        "pending": state.pending.len(),
    });
    let status = if state.draining.load(Ordering::Relaxed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
