//! Prometheus metrics: one process-wide registry, one function per event,
//! and an exporter that serves them on an endpoint of this worker's own.
//!
//! Why an endpoint per worker: the workers of a fleet share one listening
//! socket, so a scrape of the webhook port would reach a random worker.
//! Each worker serves `/metrics` on its own address instead
//! ([`crate::config::MetricsEndpoint`]: loopback unless told otherwise, off
//! unless `METRICS_PORT` is set), and Prometheus scrapes every one of them;
//! its `instance` label tells the workers apart.
//!
//! Why a process-wide registry: a process is one worker, and the events
//! happen deep in the webhook handler, the worker and the GitHub client;
//! `metrics::delivery(event, outcome)` is one line where an argument
//! threaded through every constructor would be many.
//!
//! Every label value comes from a closed set (an enum, a `&'static str`
//! chosen here, an HTTP status code, or at most [`MAX_INSTALLATIONS`]
//! installation ids), never from a raw event name or path a sender chose,
//! so that no sender can grow the number of series.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

use crate::config::MetricsEndpoint;
use crate::github::InstallationId;
use crate::pending::{Added, Store};

/// Every metric's name starts with this (and `_`).
pub const PREFIX: &str = "task_list_bot";

/// Installations that get a series of their own in the per-installation
/// write counter; writes of any further installation count under
/// `installation="other"`.
pub const MAX_INSTALLATIONS: usize = 500;

/// Webhook events that get their own `event` label value; GitHub's names
/// for what the bot subscribes to, and what GitHub sends every App anyway.
const KNOWN_EVENTS: &[&str] = &[
    "ping",
    "pull_request",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "merge_group",
    "installation",
    "installation_repositories",
    "installation_target",
    "github_app_authorization",
    "check_run",
    "check_suite",
    "meta",
];

/// The GitHub REST routes the bot calls, as `METHOD template`.
const ROUTES: &[&str] = &[
    "GET /repos/{owner}/{repo}/pulls/{number}",
    "GET /repos/{owner}/{repo}/pulls/{number}/reviews",
    "GET /repos/{owner}/{repo}/pulls/{number}/comments",
    "GET /repos/{owner}/{repo}/issues/{number}/comments",
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
    "POST /repos/{owner}/{repo}/check-runs",
    // Settings files; `{path*}` is one or more segments.
    "GET /repos/{owner}/{repo}/contents/{path*}",
    // GitHub's `Link` headers point to the next page by repository id.
    "GET /repositories/{id}/pulls/{number}/reviews",
    "GET /repositories/{id}/pulls/{number}/comments",
    "GET /repositories/{id}/issues/{number}/comments",
    "GET /app/hook/deliveries",
    "GET /app/hook/deliveries/{id}",
    "POST /app/hook/deliveries/{id}/attempts",
    "POST /app/installations/{id}/access_tokens",
];

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Recorded as new pending work (202).
    Queued,
    /// Joined work already pending for the same pull request (202).
    Coalesced,
    /// A delivery id already recorded (200).
    Duplicate,
    /// An event or action the bot does not act on (200).
    Ignored,
    /// Dry-run mode: the check was only logged (200).
    DryRun,
    /// Refused for this reason (4xx); `reason` is the rejection's kind.
    Rejected(&'static str),
    /// The pending set could not record it (503).
    StoreError,
}

impl From<Added> for DeliveryOutcome {
    fn from(added: Added) -> Self {
        match added {
            Added::New => DeliveryOutcome::Queued,
            Added::Coalesced => DeliveryOutcome::Coalesced,
            Added::DuplicateDelivery => DeliveryOutcome::Duplicate,
        }
    }
}

impl DeliveryOutcome {
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            DeliveryOutcome::Queued => ("queued", ""),
            DeliveryOutcome::Coalesced => ("coalesced", ""),
            DeliveryOutcome::Duplicate => ("duplicate", ""),
            DeliveryOutcome::Ignored => ("ignored", ""),
            DeliveryOutcome::DryRun => ("dry_run", ""),
            DeliveryOutcome::Rejected(reason) => ("rejected", reason),
            DeliveryOutcome::StoreError => ("store_error", ""),
        }
    }
}

/// What became of one claimed item, other than a written check
/// ([`check_run_written`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRunOutcome {
    /// The latest check already says the same: no write.
    Unchanged,
    /// The pull request is closed or merged: no write.
    Closed,
    /// Not written yet; the item waits for another try. The cause names the
    /// kind of failure (`GitHubError::cause`).
    Retried(&'static str),
    /// Given up on, for this cause.
    Dropped(&'static str),
}

/// How one request to GitHub ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// GitHub answered with this HTTP status.
    Answered(u16),
    /// No connection, or the connection broke.
    Unreachable,
    /// No answer within the request timeout.
    Timeout,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    event: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckRunLabels {
    result: &'static str,
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstallationLabels {
    installation: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The registry and every metric in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    worker: Family<WorkerLabels, Gauge>,
    deliveries: Family<DeliveryLabels, Counter>,
    acknowledgement: Histogram,
    check_runs: Family<CheckRunLabels, Counter>,
    written_by_installation: Family<InstallationLabels, Counter>,
    /// Installations with a series of their own, at most [`MAX_INSTALLATIONS`].
    labelled_installations: Mutex<HashSet<InstallationId>>,
    lag: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    pauses: Counter,
    paused: Counter<f64, AtomicU64>,
    pending: Gauge,
    oldest_pending: Gauge<f64, AtomicU64>,
}

/// From half a millisecond to 10 s: GitHub gives up on a delivery at 10 s.
const ACKNOWLEDGEMENT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// From a tenth of a second to two hours: a rate-limit pause can last an hour.
const LAG_BUCKETS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0,
];

const REQUEST_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and no sample yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let worker = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "worker_info",
            "This worker's name (WORKER) and version; always 1",
            worker.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Webhook deliveries by event and outcome (queued, coalesced, duplicate, ignored, dry_run, rejected with a reason, store_error)",
            deliveries.clone(),
        );
        let acknowledgement = Histogram::new(ACKNOWLEDGEMENT_BUCKETS);
        registry.register_with_unit(
            "acknowledgement_duration",
            "From a delivery's request to the answer GitHub gets",
            Unit::Seconds,
            acknowledgement.clone(),
        );
        let check_runs = Family::<CheckRunLabels, Counter>::default();
        registry.register(
            "check_runs",
            "Claimed items by result (written, unchanged, closed, retried, dropped) and the cause of a retry or drop",
            check_runs.clone(),
        );
        let written_by_installation = Family::<InstallationLabels, Counter>::default();
        registry.register(
            "check_runs_written_by_installation",
            "Check runs written, per installation: GitHub allows an installation 80 content-creating requests a minute and 500 an hour",
            written_by_installation.clone(),
        );
        let lag = Histogram::new(LAG_BUCKETS);
        registry.register_with_unit(
            "delivery_to_check",
            "From the oldest delivery a written check answers being recorded to the check being written",
            Unit::Seconds,
            lag.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "github_requests",
            "Requests to GitHub (every attempt) by route template and status (an HTTP status, unreachable or timeout)",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        registry.register_with_unit(
            "github_request_duration",
            "Time of one request to GitHub, by route template",
            Unit::Seconds,
            request_duration.clone(),
        );
        let pauses = Counter::default();
        registry.register(
            "rate_limit_pauses",
            "Times GitHub asked to slow down and this worker paused the installation",
            pauses.clone(),
        );
        let paused = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "rate_limit_paused",
            "Time GitHub asked this worker to pause installations for, added up",
            Unit::Seconds,
            paused.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "pending_items",
            "Items waiting or being worked on in the pending set (shared by the workers of a host: every worker reports the same set)",
            pending.clone(),
        );
        let oldest_pending = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "oldest_pending_age",
            "Age of the oldest delivery still waiting for its check; 0 when nothing waits",
            Unit::Seconds,
            oldest_pending.clone(),
        );
        Metrics {
            registry,
            worker,
            deliveries,
            acknowledgement,
            check_runs,
            written_by_installation,
            labelled_installations: Mutex::default(),
            lag,
            requests,
            request_duration,
            pauses,
            paused,
            pending,
            oldest_pending,
        }
    }

    pub fn worker(&self, name: &str) {
        self.worker
            .get_or_create(&WorkerLabels {
                worker: name.chars().take(64).collect(),
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
    }

    pub fn delivery(&self, event: &str, outcome: DeliveryOutcome) {
        let (outcome, reason) = outcome.labels();
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event: event_label(event),
                outcome,
                reason,
            })
            .inc();
    }

    pub fn acknowledged(&self, took: Duration) {
        self.acknowledgement.observe(took.as_secs_f64());
    }

    pub fn check_run(&self, outcome: CheckRunOutcome) {
        let (result, cause) = match outcome {
            CheckRunOutcome::Unchanged => ("unchanged", ""),
            CheckRunOutcome::Closed => ("closed", ""),
            CheckRunOutcome::Retried(cause) => ("retried", cause),
            CheckRunOutcome::Dropped(cause) => ("dropped", cause),
        };
        self.check_runs
            .get_or_create(&CheckRunLabels { result, cause })
            .inc();
    }

    pub fn check_run_written(&self, installation: InstallationId, received_at: SystemTime) {
        self.check_runs
            .get_or_create(&CheckRunLabels {
                result: "written",
                cause: "",
            })
            .inc();
        let labelled = {
            let mut labelled = self
                .labelled_installations
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            labelled.contains(&installation)
                || (labelled.len() < MAX_INSTALLATIONS && labelled.insert(installation))
        };
        let labels = InstallationLabels {
            installation: if labelled {
                Cow::Owned(installation.0.to_string())
            } else {
                Cow::Borrowed("other")
            },
        };
        self.written_by_installation.get_or_create(&labels).inc();
        let lag = SystemTime::now()
            .duration_since(received_at)
            .unwrap_or_default();
        self.lag.observe(lag.as_secs_f64());
    }

    pub fn github_request(
        &self,
        method: &Method,
        path: &str,
        status: RequestStatus,
        took: Duration,
    ) {
        let route = route_label(method, path);
        let status = match status {
            RequestStatus::Answered(code) => Cow::Owned(code.to_string()),
            RequestStatus::Unreachable => Cow::Borrowed("unreachable"),
            RequestStatus::Timeout => Cow::Borrowed("timeout"),
        };
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    pub fn rate_limit_pause(&self, pause: Duration) {
        self.pauses.inc();
        self.paused.inc_by(pause.as_secs_f64());
    }

    /// Reads the pending set's size and oldest delivery into the gauges,
    /// through the store's own thread (never blocking the runtime).
    pub async fn observe_pending(
        &self,
        pending: &Store,
    ) -> Result<(), crate::pending::PendingError> {
        let backlog = pending.backlog().await?;
        let items: usize = backlog.iter().map(|b| b.items).sum();
        self.pending.set(i64::try_from(items).unwrap_or(i64::MAX));
        let now = SystemTime::now();
        let age = backlog
            .iter()
            .map(|b| b.oldest_age(now))
            .max()
            .unwrap_or_default();
        self.oldest_pending.set(age.as_secs_f64());
        Ok(())
    }

    /// The OpenMetrics text exposition (what Prometheus asks for first).
    pub fn openmetrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The Prometheus text exposition, version 0.0.4 (for other clients).
    pub fn prometheus_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The `event` label of a delivery's `X-GitHub-Event` header: GitHub's
/// event names the bot knows, `other` for any other, `none` for no header.
pub fn event_label(event: &str) -> &'static str {
    if event.is_empty() {
        return "none";
    }
    KNOWN_EVENTS
        .iter()
        .find(|known| **known == event)
        .copied()
        .unwrap_or("other")
}

/// The `route` label of a request: its method and the template of its path
/// (`GET /repos/{owner}/{repo}/pulls/{number}`), `other` for a path the bot
/// does not call. The query and a GitHub Enterprise `/api/v3` prefix do not
/// count.
pub fn route_label(method: &Method, path: &str) -> &'static str {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    ROUTES
        .iter()
        .copied()
        .find(|route| {
            let (route_method, template) = route.split_once(' ').expect("METHOD template");
            let template: Vec<&str> = template.trim_matches('/').split('/').collect();
            let rest = template.last() == Some(&"{path*}");
            let lengths_fit = if rest {
                segments.len() >= template.len()
            } else {
                segments.len() == template.len()
            };
            route_method == method.as_str()
                && lengths_fit
                && template.iter().zip(&segments).all(|(expected, actual)| {
                    if expected.starts_with('{') {
                        !actual.is_empty()
                    } else {
                        expected == actual
                    }
                })
        })
        .unwrap_or("other")
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Names this worker in `task_list_bot_worker_info`.
pub fn worker(name: &str) {
    global().worker(name);
}

/// A delivery whose `X-GitHub-Event` header said `event` ended so.
pub fn delivery(event: &str, outcome: DeliveryOutcome) {
    global().delivery(event, outcome);
}

/// A delivery was answered `took` after its request arrived.
pub fn acknowledged(took: Duration) {
    global().acknowledged(took);
}

/// A claimed item ended without a written check.
pub fn check_run(outcome: CheckRunOutcome) {
    global().check_run(outcome);
}

/// A check run was written for `installation`, answering deliveries the
/// oldest of which was recorded at `received_at`.
pub fn check_run_written(installation: InstallationId, received_at: SystemTime) {
    global().check_run_written(installation, received_at);
}

/// One request (one attempt) to GitHub ended so.
pub fn github_request(method: &Method, path: &str, status: RequestStatus, took: Duration) {
    global().github_request(method, path, status, took);
}

/// GitHub asked for a pause of this length.
pub fn rate_limit_pause(pause: Duration) {
    global().rate_limit_pause(pause);
}

/// Middleware for the webhook route: times each delivery from its request
/// to its answer.
pub async fn time_acknowledgement(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    acknowledged(started.elapsed());
    response
}

/// The `/metrics` endpoint of this worker, bound and ready to serve.
#[derive(Debug)]
pub struct Exporter {
    listener: TcpListener,
    address: SocketAddr,
}

impl Exporter {
    /// Binds `endpoint` now, so that a port already taken stops start-up
    /// with a clear error instead of leaving a worker without metrics.
    pub fn bind(endpoint: &MetricsEndpoint) -> crate::Result<Exporter> {
        use anyhow::Context as _;
        let what = || format!("metrics endpoint {}:{}", endpoint.host, endpoint.port);
        let address = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving the {}", what()))?
            .next()
            .with_context(|| format!("the {} has no address", what()))?;
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding the {} (METRICS_HOST, METRICS_PORT)", what()))?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("making the {} non-blocking", what()))?;
        let address = listener.local_addr().context("the metrics address")?;
        Ok(Exporter { listener, address })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves `GET /metrics` until `stop` fires. The pending set's gauges
    /// are read at each scrape.
    pub async fn serve(self, pending: Store, stop: CancellationToken) -> crate::Result<()> {
        use anyhow::Context as _;
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .context("serving the metrics endpoint")?;
        let router = Router::new()
            .route("/metrics", get(scrape))
            .with_state(pending);
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("serving the metrics endpoint")
    }
}

async fn scrape(State(pending): State<Store>, headers: HeaderMap) -> Response {
    if let Err(error) = global().observe_pending(&pending).await {
        tracing::warn!(%error, "cannot read the pending set for metrics");
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            global().openmetrics_text(),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            global().prometheus_text(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples of `text` as (name with labels, value).
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("name value");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        samples(text)
            .into_iter()
            .find(|(name, _)| name == series)
            .map(|(_, value)| value)
    }

    /// The count of a histogram's bucket whose bound is `le`.
    fn bucket(text: &str, histogram: &str, le: f64) -> f64 {
        let prefix = format!("{histogram}_bucket{{le=\"");
        samples(text)
            .into_iter()
            .find_map(|(series, value)| {
                let bound = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                (bound.parse::<f64>().ok()? == le).then_some(value)
            })
            .unwrap_or_else(|| panic!("no bucket {le} of {histogram} in {text}"))
    }

    #[test]
    fn routes_are_templates_and_unknown_paths_are_other() {
        let get = Method::GET;
        assert_eq!(
            route_label(&get, "/repos/octo/hello/pulls/12"),
            "GET /repos/{owner}/{repo}/pulls/{number}"
        );
        assert_eq!(
            route_label(&get, "/repos/octo/hello/issues/12/comments?per_page=100"),
            "GET /repos/{owner}/{repo}/issues/{number}/comments"
        );
        assert_eq!(
            route_label(&get, "/api/v3/repositories/1/pulls/2/reviews?page=3"),
            "GET /repositories/{id}/pulls/{number}/reviews"
        );
        assert_eq!(
            route_label(
                &get,
                "/repos/o/r/commits/abc123/check-runs?check_name=task-list-completed"
            ),
            "GET /repos/{owner}/{repo}/commits/{ref}/check-runs"
        );
        assert_eq!(
            route_label(&Method::POST, "/repos/o/r/check-runs"),
            "POST /repos/{owner}/{repo}/check-runs"
        );
        assert_eq!(
            route_label(&get, "/repos/o/r/contents/.github/task-list-completed.yml"),
            "GET /repos/{owner}/{repo}/contents/{path*}"
        );
        assert_eq!(route_label(&get, "/repos/o/r/contents"), "other");
        assert_eq!(route_label(&Method::POST, "/repos/o/r/pulls/1"), "other");
        assert_eq!(route_label(&get, "/repos/o/r/pulls/1/x/y"), "other");
        assert_eq!(route_label(&get, "/repos//r/pulls/1"), "other");
    }

    #[test]
    fn unknown_events_share_one_label() {
        assert_eq!(event_label("pull_request"), "pull_request");
        assert_eq!(event_label("Pull_Request"), "other");
        assert_eq!(event_label("x".repeat(1000).as_str()), "other");
        assert_eq!(event_label(""), "none");
    }

    #[test]
    fn counters_and_histograms_show_in_both_formats() {
        let metrics = Metrics::new();
        metrics.delivery("pull_request", DeliveryOutcome::Queued);
        metrics.delivery("pull_request", DeliveryOutcome::Queued);
        metrics.delivery("zzz", DeliveryOutcome::Rejected("bad_signature"));
        metrics.check_run_written(
            InstallationId(9),
            SystemTime::now() - Duration::from_secs(3),
        );
        metrics.rate_limit_pause(Duration::from_secs(30));
        for text in [metrics.openmetrics_text(), metrics.prometheus_text()] {
            assert_eq!(
                value(
                    &text,
                    r#"task_list_bot_deliveries_total{event="pull_request",outcome="queued",reason=""}"#
                ),
                Some(2.0),
                "{text}"
            );
            assert_eq!(
                value(
                    &text,
                    r#"task_list_bot_deliveries_total{event="other",outcome="rejected",reason="bad_signature"}"#
                ),
                Some(1.0)
            );
            assert_eq!(
                value(
                    &text,
                    r#"task_list_bot_check_runs_written_by_installation_total{installation="9"}"#
                ),
                Some(1.0)
            );
            assert_eq!(
                value(&text, "task_list_bot_delivery_to_check_seconds_count"),
                Some(1.0)
            );
            assert_eq!(
                bucket(&text, "task_list_bot_delivery_to_check_seconds", 2.0),
                0.0
            );
            assert_eq!(
                bucket(&text, "task_list_bot_delivery_to_check_seconds", 5.0),
                1.0
            );
            assert_eq!(
                value(&text, "task_list_bot_rate_limit_paused_seconds_total"),
                Some(30.0)
            );
        }
    }

    #[test]
    fn installations_beyond_the_cap_count_as_other() {
        let metrics = Metrics::new();
        let now = SystemTime::now();
        for id in 0..(MAX_INSTALLATIONS as u64 + 20) {
            metrics.check_run_written(InstallationId(id), now);
        }
        metrics.check_run_written(InstallationId(1), now);
        let text = metrics.prometheus_text();
        let series = samples(&text)
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with("task_list_bot_check_runs_written_by_installation")
            })
            .count();
        assert_eq!(series, MAX_INSTALLATIONS + 1);
        assert_eq!(
            value(
                &text,
                r#"task_list_bot_check_runs_written_by_installation_total{installation="other"}"#
            ),
            Some(20.0)
        );
        assert_eq!(
            value(
                &text,
                r#"task_list_bot_check_runs_written_by_installation_total{installation="1"}"#
            ),
            Some(2.0),
            "an installation that has a series keeps it"
        );
    }
}
