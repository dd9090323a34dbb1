//! Receiving deliveries: headers, content type, signature, then payload.
//!
//! The signature is checked on the raw bytes before anything parses them.
//! A delivery is answered as soon as its work is recorded: GitHub gives up
//! on a delivery after 10 s and never retries it by itself, so nothing here
//! waits for GitHub or for a write slot.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::check::{CheckRunRequest, TaskSources};
use crate::event::{Event, PayloadSnapshot};
use crate::metrics::{self, DeliveryOutcome};
use crate::pending::{Added, WorkItem};
use crate::server::AppState;

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;

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
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingHeader(_)
            | Rejection::MalformedJson(_)
            | Rejection::MalformedPayload(_) => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::BadSignature => StatusCode::UNAUTHORIZED,
            Rejection::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// How the metrics count this rejection.
    fn outcome(&self) -> DeliveryOutcome {
        match self {
            Rejection::MissingHeader(_) => DeliveryOutcome::Rejected("missing_header"),
            Rejection::UnsupportedContentType(_) => {
                DeliveryOutcome::Rejected("unsupported_content_type")
            }
            Rejection::BadSignature => DeliveryOutcome::Rejected("bad_signature"),
            Rejection::MalformedJson(_) => DeliveryOutcome::Rejected("malformed_json"),
            Rejection::MalformedPayload(_) => DeliveryOutcome::Rejected("malformed_payload"),
            Rejection::StoreUnavailable(_) => DeliveryOutcome::StoreError,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), axum::Json(body)).into_response()
    }
}

/// A delivery whose signature checked out.
#[derive(Debug)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub payload: Vec<u8>,
}

enum ContentType {
    Json,
    Form,
}

/// Checks headers, content type and signature, and extracts the JSON.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<Delivery, Rejection> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(Rejection::MissingHeader(name))
    };
    let event = header("x-github-event")?.to_owned();
    let id = header("x-github-delivery")?.to_owned();
    let signature = header("x-hub-signature-256")?;
    let content_type = content_type(headers)?;
    if !signature_matches(secret, body, signature) {
        return Err(Rejection::BadSignature);
    }
    let payload = match content_type {
        ContentType::Json => body.to_vec(),
        ContentType::Form => form_payload(body)?,
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
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let outcome = match accept(&state, &headers, &body) {
        Ok(Accepted::Answered(response)) => Ok(response),
        Ok(Accepted::Record(item, delivery_id)) => record(&state, item, delivery_id, event).await,
        Err(rejection) => Err(rejection),
    };
    match outcome {
        Ok(response) => response,
        Err(rejection) => {
            metrics::delivery(event, rejection.outcome());
            tracing::warn!(
                delivery_id = headers.get("x-github-delivery").and_then(|v| v.to_str().ok()).unwrap_or("-"),
                event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or("-"),
                status = rejection.status().as_u16(),
                reason = %rejection,
                "delivery rejected"
            );
            rejection.into_response()
        }
    }
}

/// What a verified delivery needs: nothing more, or its work recorded.
enum Accepted {
    Answered(Response),
    Record(WorkItem, String),
}

fn accept(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, Rejection> {
    let secret = crate::config::secret_bytes(&state.config.webhook_secret);
    let delivery = verify(headers, body, secret)?;
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
        Event::PullRequestChanged { snapshot, pull } if state.config.dry_run => {
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
        Event::PullRequestChanged { pull, .. } => WorkItem::PullRequest(pull),
        Event::MergeGroupChecksRequested {
            installation,
            repo,
            head_sha,
        } => WorkItem::MergeGroup {
            installation,
            repo,
            head_sha,
        },
    };
    Ok(Accepted::Record(item, delivery.id))
}

/// Records the work before answering. The store may wait on another
/// process's lock, so the call runs on the blocking pool, not on the
/// threads that serve requests.
async fn record(
    state: &AppState,
    item: WorkItem,
    delivery_id: String,
    event: &str,
) -> Result<Response, Rejection> {
    let pending = std::sync::Arc::clone(&state.pending);
    let id = delivery_id.clone();
    let added = tokio::task::spawn_blocking(move || pending.add(item, &id))
        .await
        .map_err(|e| Rejection::StoreUnavailable(e.to_string()))?
        .map_err(|e| Rejection::StoreUnavailable(e.to_string()))?;
    metrics::delivery(event, added.into());
    match added {
        Added::New => {}
        Added::Coalesced => tracing::debug!(delivery_id, "joined work already pending"),
        Added::DuplicateDelivery => {
            tracing::info!(delivery_id, "delivery already handled: not queued again");
            return Ok((StatusCode::OK, "duplicate delivery\n").into_response());
        }
    }
    Ok((StatusCode::ACCEPTED, "queued\n").into_response())
}

fn log_received(delivery: &Delivery, event: &Event) {
    let (installation, repository, pull_request) = match event {
        Event::PullRequestChanged { pull, .. } => {
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
    let sources = TaskSources {
        author: &snapshot.author,
        body: snapshot.body.as_deref(),
        discussion: snapshot
            .discussion
            .iter()
            .map(|(author, body)| (author.as_str(), body.as_str()))
            .collect(),
    };
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
        let body = b"{}";
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
        let delivery = verify(&map, body.as_bytes(), SECRET).unwrap();
        assert_eq!(delivery.payload, json.as_bytes());
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
        let error = verify(&map, b"x", SECRET).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
