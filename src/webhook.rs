//! Receiving deliveries: headers, content type, signature, then payload.
//!
//! The signature is checked on the raw bytes before anything parses them.
//! A delivery is answered as soon as its work is recorded: GitHub gives up
//! on a delivery after 10 s and never retries it by itself, so nothing here
//! waits for GitHub or for a write slot.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt as _;
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::check::{CheckRunRequest, TaskSources};
use crate::event::{Event, PayloadSnapshot};
use crate::metrics::{self, DeliveryOutcome};
use crate::pending::{Added, WorkItem};
use crate::server::{AppState, ReceiveDeadline};

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;

/// Bodies up to this size use their own part of the body budget, so that
/// large uploads, stalled or not, never hold up ordinary deliveries (a
/// pull request event is tens of KiB).
pub const SMALL_BODY_BYTES: usize = 1024 * 1024;

/// Body bytes reserved before each read: no more than a connection's read
/// buffer holds.
const READ_AHEAD_BYTES: usize = crate::server::MAX_READ_BUFFER;

/// What a refused client is told to wait before it tries again.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Why a delivery was refused, with the status GitHub will record.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error(
        "unsupported content type {0:?}: send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedContentType(String),
    #[error("signature does not match the payload")]
    BadSignature,
    #[error("payload is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    MalformedPayload(String),
    #[error("cannot record the work: {0}")]
    StoreUnavailable(String),
    #[error("header {0} is not a well-formed value")]
    MalformedHeader(&'static str),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request did not arrive in time")]
    ReceiveTimeout,
    #[error("too many large bodies in flight: try again later")]
    BodyBudgetFull,
    #[error("the body could not be read: {0}")]
    BodyUnreadable(String),
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingHeader(_)
            | Rejection::MalformedHeader(_)
            | Rejection::MalformedJson(_)
            | Rejection::MalformedPayload(_)
            | Rejection::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::BadSignature => StatusCode::UNAUTHORIZED,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::ReceiveTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::StoreUnavailable(_) | Rejection::BodyBudgetFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Its kind, for the summary of refused requests.
    fn kind(&self) -> Refused {
        match self {
            Rejection::MissingHeader(_) | Rejection::MalformedHeader(_) => Refused::BadHeaders,
            Rejection::UnsupportedContentType(_) => Refused::ContentType,
            Rejection::BadSignature => Refused::BadSignature,
            Rejection::MalformedJson(_) | Rejection::MalformedPayload(_) => Refused::BadPayload,
            Rejection::TooLarge(_) => Refused::TooLarge,
            Rejection::ReceiveTimeout | Rejection::BodyUnreadable(_) => Refused::ReceiveTimeout,
            Rejection::BodyBudgetFull => Refused::BodyBudget,
            Rejection::StoreUnavailable(_) => Refused::StoreUnavailable,
        }
    }

    /// Whether the request body may be left unread, so that the connection
    /// cannot carry another request.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            Rejection::TooLarge(_)
                | Rejection::ReceiveTimeout
                | Rejection::BodyBudgetFull
                | Rejection::BodyUnreadable(_)
        )
    }

    /// How the metrics count this rejection.
    fn outcome(&self) -> DeliveryOutcome {
        match self {
            Rejection::MissingHeader(_) => DeliveryOutcome::Rejected("missing_header"),
            Rejection::MalformedHeader(_) => DeliveryOutcome::Rejected("malformed_header"),
            Rejection::UnsupportedContentType(_) => {
                DeliveryOutcome::Rejected("unsupported_content_type")
            }
            Rejection::BadSignature => DeliveryOutcome::Rejected("bad_signature"),
            Rejection::MalformedJson(_) => DeliveryOutcome::Rejected("malformed_json"),
            Rejection::MalformedPayload(_) => DeliveryOutcome::Rejected("malformed_payload"),
            Rejection::TooLarge(_) => DeliveryOutcome::Rejected("too_large"),
            Rejection::ReceiveTimeout | Rejection::BodyUnreadable(_) => {
                DeliveryOutcome::Rejected("receive_timeout")
            }
            Rejection::BodyBudgetFull => DeliveryOutcome::Rejected("body_budget"),
            Rejection::StoreUnavailable(_) => DeliveryOutcome::StoreError,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if self.closes_connection() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A delivery whose signature checked out.
#[derive(Debug)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    /// The JSON: the request body itself (not a copy) when it was sent as
    /// JSON.
    pub payload: Bytes,
}

enum ContentType {
    Json,
    Form,
}

/// Checks headers, content type and signature, and extracts the JSON.
pub fn verify(headers: &HeaderMap, body: &Bytes, secret: &[u8]) -> Result<Delivery, Rejection> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(Rejection::MissingHeader(name))
    };
    let event = header("x-github-event")?.to_owned();
    let id = header("x-github-delivery")?.to_owned();
    // Neither header is signed: only a shape that cannot smuggle anything
    // into logs passes.
    if !is_event_name(&event) {
        return Err(Rejection::MalformedHeader("x-github-event"));
    }
    if !is_delivery_id(&id) {
        return Err(Rejection::MalformedHeader("x-github-delivery"));
    }
    let signature = header("x-hub-signature-256")?;
    let content_type = content_type(headers)?;
    if !signature_matches(secret, body, signature) {
        return Err(Rejection::BadSignature);
    }
    let payload = match content_type {
        ContentType::Json => body.clone(),
        ContentType::Form => Bytes::from(form_payload(body)?),
    };
    Ok(Delivery { id, event, payload })
}

fn content_type(headers: &HeaderMap) -> Result<ContentType, Rejection> {
    let raw = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(ContentType::Json),
        "application/x-www-form-urlencoded" => Ok(ContentType::Form),
        _ => Err(Rejection::UnsupportedContentType(raw.to_owned())),
    }
}

/// GitHub's form-encoded deliveries carry the JSON in a `payload` field.
fn form_payload(body: &[u8]) -> Result<Vec<u8>, Rejection> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or_else(|| {
            Rejection::MalformedPayload("form-encoded delivery has no payload field".into())
        })
}

/// GitHub's event names: `pull_request`, `issue_comment`, …
fn is_event_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// GitHub's delivery ids are GUIDs; test senders use short names.
fn is_delivery_id(id: &str) -> bool {
    id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// HMAC-SHA256 of the raw body, compared in constant time by `hmac`.
pub fn signature_matches(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `POST {WEBHOOK_PATH}`.
pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let deadline = parts
        .extensions
        .get::<ReceiveDeadline>()
        .map(|deadline| deadline.0)
        .unwrap_or_else(|| Instant::now() + state.config.limits.receive_timeout);
    let outcome = match read_body(body, &headers, &state.body_budget, deadline).await {
        Ok((body, _room)) => match accept(&state, &headers, &body) {
            Ok(Accepted::Answered(response)) => Ok(response),
            Ok(Accepted::Record(items, delivery_id)) => {
                record(&state, items, delivery_id, &event).await
            }
            Err(rejection) => Err(rejection),
        },
        Err(rejection) => Err(rejection),
    };
    match outcome {
        Ok(response) => response,
        Err(rejection) => {
            metrics::delivery(&event, rejection.outcome());
            state.rejections.refused(
                rejection.kind(),
                Some(&RefusedRequest {
                    headers: &headers,
                    status: rejection.status(),
                    reason: &rejection.to_string(),
                }),
            );
            rejection.into_response()
        }
    }
}

/// The bytes of request bodies one worker holds in memory at once, in two
/// parts: a quarter for bodies up to [`SMALL_BODY_BYTES`], the rest for
/// larger ones. Bytes are counted as they arrive (a declared length costs
/// nothing until it is sent), and a body waits for room before each read,
/// so what is not read stays in the kernel's socket buffer.
pub struct BodyBudget {
    small: Arc<Semaphore>,
    small_bytes: usize,
    large: Arc<Semaphore>,
    large_bytes: usize,
}

impl BodyBudget {
    pub fn new(total_bytes: usize) -> BodyBudget {
        let small_bytes = total_bytes / 4;
        let large_bytes = total_bytes - small_bytes;
        BodyBudget {
            small: Arc::new(Semaphore::new(small_bytes)),
            small_bytes,
            large: Arc::new(Semaphore::new(large_bytes)),
            large_bytes,
        }
    }

    /// The part a body of the declared length draws from, and its size.
    fn lane(&self, declared: Option<usize>) -> (&Arc<Semaphore>, usize) {
        match declared {
            Some(length) if length <= SMALL_BODY_BYTES => (&self.small, self.small_bytes),
            _ => (&self.large, self.large_bytes),
        }
    }

    /// Bytes in use now, for tests and status.
    pub fn in_use(&self) -> usize {
        (self.small_bytes - self.small.available_permits())
            + (self.large_bytes - self.large.available_permits())
    }
}

/// Reads a whole body within the budget and the deadline. The returned
/// permit holds the body's share of the budget until it is dropped.
async fn read_body(
    mut body: axum::body::Body,
    headers: &HeaderMap,
    budget: &BodyBudget,
    deadline: Instant,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Rejection> {
    let declared = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(Rejection::MalformedHeader("content-length"))?,
        ),
    };
    let (lane, lane_bytes) = budget.lane(declared);
    let most = MAX_PAYLOAD_BYTES.min(lane_bytes);
    if let Some(length) = declared.filter(|length| *length > most) {
        let _ = length;
        return Err(Rejection::TooLarge(most));
    }
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let ahead = match declared {
            Some(length) => length.saturating_sub(total).min(READ_AHEAD_BYTES),
            None => READ_AHEAD_BYTES,
        };
        let mut room = reserve(lane, ahead, deadline).await?;
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| Rejection::ReceiveTimeout)?;
        let data = match frame {
            None => break,
            Some(Err(error)) => return Err(Rejection::BodyUnreadable(error.to_string())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        total += data.len();
        if total > most {
            return Err(Rejection::TooLarge(most));
        }
        // Keep exactly the frame's size of the budget.
        if data.len() > ahead {
            if let Some(more) = reserve(lane, data.len() - ahead, deadline).await? {
                merge(&mut room, more);
            }
        } else if let Some(permit) = room.as_mut() {
            room = permit.split(data.len());
        }
        if let Some(permit) = room {
            merge(&mut held, permit);
        }
        if !data.is_empty() {
            chunks.push(data);
        }
    }
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut whole = Vec::with_capacity(total);
            for chunk in &chunks {
                whole.extend_from_slice(chunk);
            }
            Bytes::from(whole)
        }
    };
    Ok((body, held))
}

/// Waits for `bytes` of room in `lane` until the deadline.
async fn reserve(
    lane: &Arc<Semaphore>,
    bytes: usize,
    deadline: Instant,
) -> Result<Option<OwnedSemaphorePermit>, Rejection> {
    if bytes == 0 {
        return Ok(None);
    }
    let permits = u32::try_from(bytes).map_err(|_| Rejection::TooLarge(bytes))?;
    match tokio::time::timeout_at(deadline, Arc::clone(lane).acquire_many_owned(permits)).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        Ok(Err(_closed)) => Err(Rejection::BodyBudgetFull),
        Err(_elapsed) => Err(Rejection::BodyBudgetFull),
    }
}

fn merge(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(permit),
        None => *held = Some(permit),
    }
}

/// Why a request was refused, as the summary of refusals counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    BadHeaders,
    ContentType,
    BadSignature,
    BadPayload,
    TooLarge,
    ReceiveTimeout,
    BodyBudget,
    ConnectionCap,
    StoreUnavailable,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::BadHeaders => "bad headers",
            Refused::ContentType => "unsupported content type",
            Refused::BadSignature => "bad signature",
            Refused::BadPayload => "bad payload",
            Refused::TooLarge => "too large",
            Refused::ReceiveTimeout => "receive timeout",
            Refused::BodyBudget => "body budget full",
            Refused::ConnectionCap => "connection cap reached",
            Refused::StoreUnavailable => "store unavailable",
        }
    }
}

/// What the log says about one refused request.
pub struct RefusedRequest<'a> {
    pub headers: &'a HeaderMap,
    pub status: StatusCode,
    pub reason: &'a str,
}

/// Logs refused requests without letting senders flood the journal: the
/// first few of each window are logged one by one, with every value a
/// sender wrote sanitised and truncated; the rest are counted and logged
/// as one summary line when the window ends.
pub struct RejectionLog {
    window: Duration,
    detailed_per_window: u32,
    state: Mutex<RejectionWindow>,
}

struct RejectionWindow {
    started: Instant,
    detailed: u32,
    suppressed: BTreeMap<Refused, u64>,
}

/// How much of a value a sender wrote reaches the log.
const LOGGED_VALUE_CHARS: usize = 64;

impl Default for RejectionLog {
    fn default() -> Self {
        RejectionLog::new(Duration::from_secs(10), 5)
    }
}

impl RejectionLog {
    pub fn new(window: Duration, detailed_per_window: u32) -> RejectionLog {
        RejectionLog {
            window,
            detailed_per_window,
            state: Mutex::new(RejectionWindow {
                started: Instant::now(),
                detailed: 0,
                suppressed: BTreeMap::new(),
            }),
        }
    }

    /// Notes one refusal; logs it, or counts it for the summary.
    pub fn refused(&self, why: Refused, request: Option<&RefusedRequest<'_>>) {
        let detailed = {
            let mut state = self.state.lock().expect("rejection log lock");
            self.roll(&mut state);
            if state.detailed < self.detailed_per_window {
                state.detailed += 1;
                true
            } else {
                *state.suppressed.entry(why).or_default() += 1;
                false
            }
        };
        if !detailed {
            return;
        }
        match request {
            Some(request) => {
                let value = |name: &str| {
                    request
                        .headers
                        .get(name)
                        .map_or_else(|| "-".to_owned(), |v| sanitise(v.as_bytes()))
                };
                tracing::warn!(
                    refused = why.label(),
                    status = request.status.as_u16(),
                    reason = sanitise(request.reason.as_bytes()),
                    delivery_id = value("x-github-delivery"),
                    event = value("x-github-event"),
                    content_type = value("content-type"),
                    content_length = value("content-length"),
                    user_agent = value("user-agent"),
                    "request refused"
                );
            }
            None => tracing::warn!(refused = why.label(), "request refused"),
        }
    }

    /// Logs the summary of a window that has ended; called on every
    /// refusal and from time to time, so that a quiet period still ends it.
    pub fn flush_if_due(&self) {
        let mut state = self.state.lock().expect("rejection log lock");
        self.roll(&mut state);
    }

    /// How many refusals the current window counts without logging them.
    pub fn suppressed(&self) -> u64 {
        let state = self.state.lock().expect("rejection log lock");
        state.suppressed.values().sum()
    }

    fn roll(&self, state: &mut RejectionWindow) {
        let elapsed = state.started.elapsed();
        if elapsed < self.window {
            return;
        }
        if !state.suppressed.is_empty() {
            let total: u64 = state.suppressed.values().sum();
            let counts = state
                .suppressed
                .iter()
                .map(|(why, count)| format!("{} {count}", why.label()))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(
                suppressed = total,
                seconds = elapsed.as_secs(),
                counts,
                "more requests refused, not logged one by one"
            );
        }
        *state = RejectionWindow {
            started: Instant::now(),
            detailed: 0,
            suppressed: BTreeMap::new(),
        };
    }
}

/// A value a sender wrote, fit for a log line: printable ASCII only (every
/// other byte, control characters and newlines included, becomes `?`), at
/// most [`LOGGED_VALUE_CHARS`] characters.
pub fn sanitise(raw: &[u8]) -> String {
    let mut text: String = raw
        .iter()
        .take(LOGGED_VALUE_CHARS)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if raw.len() > LOGGED_VALUE_CHARS {
        text.push_str("...");
    }
    text
}

/// What a verified delivery needs: nothing more, or its work recorded.
enum Accepted {
    Answered(Response),
    /// The delivery's work items (at least one) and its id.
    Record(Vec<WorkItem>, String),
}

fn accept(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Accepted, Rejection> {
    let secret = crate::config::secret_bytes(&state.config.webhook_secret);
    let delivery = verify(headers, body, secret)?;
    if delivery.event == "push" {
        return push(state, &delivery);
    }
    let event = Event::decode(&delivery.event, &delivery.payload).map_err(|e| {
        // The first pass reads the whole document, so bad JSON shows as a
        // syntax error, apart from JSON of the wrong shape.
        if e.source.is_syntax() || e.source.is_eof() {
            Rejection::MalformedJson(e.source.to_string())
        } else {
            Rejection::MalformedPayload(e.to_string())
        }
    })?;
    state.stats.deliveries.fetch_add(1, Ordering::Relaxed);
    log_received(&delivery, &event);

    let item = match event {
        Event::Ignored { reason } => {
            metrics::delivery(&delivery.event, DeliveryOutcome::Ignored);
            tracing::debug!(delivery_id = %delivery.id, event = %delivery.event, %reason, "ignored");
            return Ok(Accepted::Answered(
                (StatusCode::OK, "ignored\n").into_response(),
            ));
        }
        Event::PullRequestChanged { snapshot, pull, .. } if state.config.dry_run => {
            metrics::delivery(&delivery.event, DeliveryOutcome::DryRun);
            dry_run(state, &delivery, &pull.to_string(), &snapshot);
            return Ok(Accepted::Answered(
                (StatusCode::OK, "dry run\n").into_response(),
            ));
        }
        Event::MergeGroupChecksRequested { head_sha, .. } if state.config.dry_run => {
            metrics::delivery(&delivery.event, DeliveryOutcome::DryRun);
            let request = CheckRunRequest::merge_group(&head_sha, chrono::Utc::now());
            log_dry_run(&delivery, "merge group", &request);
            return Ok(Accepted::Answered(
                (StatusCode::OK, "dry run\n").into_response(),
            ));
        }
        Event::PullRequestClosed { .. } if state.config.dry_run => {
            metrics::delivery(&delivery.event, DeliveryOutcome::DryRun);
            return Ok(Accepted::Answered(
                (StatusCode::OK, "dry run\n").into_response(),
            ));
        }
        handled => WorkItem::from_event(handled),
    };
    debug_assert!(!item.is_empty(), "ignored events are answered above");
    Ok(Accepted::Record(item, delivery.id))
}

/// A `push`: it changes no check, but one that touches a settings file on
/// a default branch drops the settings this worker keeps for the
/// repositories that read it, so that the next check reads them afresh.
/// (Other workers of the host refresh theirs after the cache's age.)
fn push(state: &AppState, delivery: &Delivery) -> Result<Accepted, Rejection> {
    let push = crate::event::Push::decode(&delivery.payload).map_err(|e| {
        if e.source.is_syntax() || e.source.is_eof() {
            Rejection::MalformedJson(e.source.to_string())
        } else {
            Rejection::MalformedPayload(e.to_string())
        }
    })?;
    state.stats.deliveries.fetch_add(1, Ordering::Relaxed);
    metrics::delivery(&delivery.event, DeliveryOutcome::Ignored);
    let dropped = state.settings.invalidate_push(&push);
    if dropped > 0 {
        tracing::info!(
            delivery_id = %delivery.id,
            repository = %push.repo,
            repositories = dropped,
            "settings file changed: settings will be read again"
        );
    } else {
        tracing::debug!(delivery_id = %delivery.id, repository = %push.repo, "push: no settings kept from it");
    }
    Ok(Accepted::Answered(
        (StatusCode::OK, "push noted\n").into_response(),
    ))
}

/// Records the work before answering: a 2xx means it is durable. The store
/// may wait on another process's lock, so the call runs on the store
/// thread, which records deliveries arriving together in one transaction;
/// the threads that serve requests only await its answer.
async fn record(
    state: &AppState,
    items: Vec<WorkItem>,
    delivery_id: String,
    event: &str,
) -> Result<Response, Rejection> {
    // The first item is the delivery's main work and decides the answer;
    // the others (a superseded head's retirement) are recorded under ids
    // of their own, each deduplicated when GitHub redelivers.
    let mut added = None;
    for (index, item) in items.into_iter().enumerate() {
        let id = WorkItem::delivery_id_of(&delivery_id, index);
        let outcome = state
            .pending
            .add(item, &id)
            .await
            .map_err(|e| Rejection::StoreUnavailable(e.to_string()))?;
        added.get_or_insert(outcome);
    }
    let added = added.unwrap_or(Added::DuplicateDelivery);
    metrics::delivery(event, added.into());
    match added {
        Added::New => {}
        Added::Coalesced => tracing::debug!(delivery_id, "joined work already pending"),
        Added::DuplicateDelivery => {
            tracing::info!(
                delivery_id,
                "delivery seen before and its work is waiting: nothing to add"
            );
            return Ok((StatusCode::OK, "duplicate delivery\n").into_response());
        }
    }
    Ok((StatusCode::ACCEPTED, "queued\n").into_response())
}

fn log_received(delivery: &Delivery, event: &Event) {
    let (installation, repository, pull_request) = match event {
        Event::PullRequestChanged { pull, .. } | Event::PullRequestClosed { pull, .. } => {
            (pull.installation.0, pull.repo.0.as_str(), pull.number.0)
        }
        Event::MergeGroupChecksRequested {
            installation, repo, ..
        } => (installation.0, repo.0.as_str(), 0),
        Event::Ignored { .. } => (0, "", 0),
    };
    tracing::info!(
        delivery_id = %delivery.id,
        event = %delivery.event,
        installation_id = installation,
        repository,
        pull_request,
        "Request received"
    );
}

/// Dry-run mode: the check that the payload alone implies, logged as JSON.
fn dry_run(state: &AppState, delivery: &Delivery, pull: &str, snapshot: &PayloadSnapshot) {
    let sources = TaskSources::from_snapshot(snapshot);
    let tasks = sources.tasks(&state.config.ignored_bots);
    let head_sha = snapshot
        .head_sha
        .as_deref()
        .unwrap_or("(not in this payload)");
    let request = CheckRunRequest::for_tasks(head_sha, &tasks, chrono::Utc::now());
    log_dry_run(delivery, pull, &request);
}

fn log_dry_run(delivery: &Delivery, target: &str, request: &CheckRunRequest) {
    let json = serde_json::to_string(request).expect("a check run request always serialises");
    tracing::info!(delivery_id = %delivery.id, target, check_run = %json, "dry run: would create check run");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    /// GitHub's documented example: this secret and body give this signature.
    #[test]
    fn githubs_documented_signature_example_verifies() {
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_matches(SECRET, b"Hello, World!", header));
        assert!(!signature_matches(SECRET, b"Hello, World?", header));
        assert!(!signature_matches(b"other", b"Hello, World!", header));
        assert!(!signature_matches(
            SECRET,
            b"Hello, World!",
            "sha1=757107ea"
        ));
        assert!(!signature_matches(SECRET, b"Hello, World!", "sha256=zz"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn each_missing_header_is_named() {
        let body = &Bytes::from_static(b"{}");
        let signature = sign(body);
        let all = [
            ("x-github-event", "ping"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", signature.as_str()),
            ("content-type", "application/json"),
        ];
        for missing in ["x-github-event", "x-github-delivery", "x-hub-signature-256"] {
            let present: Vec<_> = all.iter().copied().filter(|(k, _)| *k != missing).collect();
            match verify(&headers(&present), body, SECRET) {
                Err(Rejection::MissingHeader(name)) => assert_eq!(name, missing),
                other => panic!("{missing}: {other:?}"),
            }
        }
        assert!(verify(&headers(&all), body, SECRET).is_ok());
    }

    #[test]
    fn a_json_payload_is_the_body_itself_not_a_copy() {
        let body = Bytes::from(r#"{"action":"labeled"}"#);
        let signature = sign(&body);
        let map = headers(&[
            ("x-github-event", "pull_request"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", &signature),
            ("content-type", "application/json"),
        ]);
        let delivery = verify(&map, &body, SECRET).unwrap();
        assert_eq!(delivery.payload, body);
        assert_eq!(delivery.payload.as_ptr(), body.as_ptr());
    }

    #[test]
    fn form_encoded_deliveries_are_signed_over_the_raw_form() {
        let json = r#"{"zen":"Design for failure."}"#;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        let signature = sign(body.as_bytes());
        let map = headers(&[
            ("x-github-event", "ping"),
            ("x-github-delivery", "d-2"),
            ("x-hub-signature-256", &signature),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        let delivery = verify(&map, &Bytes::from(body), SECRET).unwrap();
        assert_eq!(delivery.payload, json.as_bytes());
    }

    #[test]
    fn logged_values_are_printable_ascii_and_truncated() {
        assert_eq!(sanitise(b"d-1"), "d-1");
        let hostile = b"x\r\nINJECTED=1\n\x1b[31m\x00\xff\xc3\xa9";
        let clean = sanitise(hostile);
        assert!(
            clean.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{clean:?}"
        );
        assert!(clean.starts_with("x??INJECTED=1??[31m"), "{clean:?}");
        let long = sanitise(&[b'a'; 1000]);
        assert_eq!(long.len(), LOGGED_VALUE_CHARS + 3);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn refusals_past_a_few_per_window_are_counted_not_logged() {
        let log = RejectionLog::new(Duration::from_secs(3600), 2);
        for _ in 0..7 {
            log.refused(Refused::BadSignature, None);
        }
        log.refused(Refused::TooLarge, None);
        assert_eq!(log.suppressed(), 6);
        // A window that has ended starts over (after its summary line).
        let log = RejectionLog::new(Duration::ZERO, 2);
        for _ in 0..7 {
            log.refused(Refused::BadSignature, None);
        }
        assert_eq!(log.suppressed(), 0);
    }

    #[test]
    fn other_content_types_are_unsupported() {
        let signature = sign(b"x");
        let map = headers(&[
            ("x-github-event", "ping"),
            ("x-github-delivery", "d-3"),
            ("x-hub-signature-256", &signature),
            ("content-type", "text/plain"),
        ]);
        let error = verify(&map, &Bytes::from_static(b"x"), SECRET).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
