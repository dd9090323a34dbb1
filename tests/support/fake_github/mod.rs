//! An in-process fake of the slice of GitHub's REST API that `task-list-bot`
//! talks to, for integration tests, benchmarks and shell-driven end-to-end
//! runs (through `standalone.rs`, the example `fake_github`).
//!
//! The fake is deliberately *not* a yes-machine: it checks what GitHub checks
//! (RS256 app JWTs and their claims, installation tokens and their expiry,
//! which installation may see which repository, check-run payload
//! validation), answers with GitHub's status codes, JSON shapes and headers
//! (`x-ratelimit-*`, `x-github-request-id`, `Link`, `Retry-After`), so a
//! client that works against it has a fair chance of working against GitHub.
//!
//! # Layout
//!
//! Laid out by area of GitHub's API, as octocrab is: this file holds the
//! public API (the model types and [`FakeGitHub`]); `apps.rs` app JWTs,
//! installation tokens and installations; `pulls.rs` repositories, pull
//! requests, issues, comments and reviews; `checks.rs` check runs;
//! `contents.rs` repository files (settings files);
//! `deliveries.rs` the app's hook deliveries and redelivery; `limits.rs`
//! primary and secondary rate limits, outages and injected faults;
//! `validate.rs` what GitHub checks in request bodies; `admin.rs` the
//! `/_fake/...` endpoints; `model.rs` the state; `render.rs` the JSON
//! representations; `routes.rs` the route table; `server.rs` the HTTP
//! pipeline. Include it with
//! `#[path = "support/fake_github/mod.rs"] mod fake_github;` (or as a child
//! of a `support` module). It uses no `crate::` paths. `webhooks.rs` beside
//! the directory expects to be a sibling module named `webhooks` of this one.
//!
//! # REST endpoints
//!
//! All are served under `/api/v3` (GitHub Enterprise style; clients are
//! configured with `base_uri = http://127.0.0.1:PORT/api/v3`) and also without
//! the prefix.
//!
//! | endpoint | auth |
//! | --- | --- |
//! | `POST /app/installations/{id}/access_tokens` | app JWT |
//! | `GET /app`, `GET /app/installations/{id}`, `GET /repos/{o}/{r}/installation` | app JWT |
//! | `GET /app/hook/deliveries` (cursor paginated), `GET /app/hook/deliveries/{id}` | app JWT |
//! | `POST /app/hook/deliveries/{id}/attempts` | app JWT |
//! | `GET /repos/{o}/{r}`, `GET /repos/{o}/{r}/pulls/{n}`, `GET /repos/{o}/{r}/issues/{n}` | installation token |
//! | `GET /repos/{o}/{r}/issues/{n}/comments`, `.../pulls/{n}/reviews`, `.../pulls/{n}/comments` (page paginated) | installation token |
//! | `POST /repos/{o}/{r}/check-runs`, `GET /repos/{o}/{r}/check-runs/{id}` | installation token |
//! | `GET /repos/{o}/{r}/commits/{ref}/check-runs` (page paginated) | installation token |
//! | `GET /rate_limit` (does not count against the limit, as on GitHub) | installation token |
//! | `GET /repos/{o}/{r}/contents/{path}` (raw or JSON; `ETag`, and a `304` that does not count against the limit; `contents` or `single_file` permission: `contents.rs`) | installation token |
//!
//! Every `/repos/{o}/{r}/...` route is also served as `/repositories/{id}/...`
//! (the form of GitHub's `Link` headers and redirects). Anything else is
//! `404 {"message":"Not Found"}`.
//!
//! # OpenAPI conformance
//!
//! `tests/data/openapi/endpoints.json` holds GitHub's OpenAPI description of
//! these endpoints (request and response schemas, extracted from
//! `@octokit/openapi` by `tests/data/openapi/extract.py`). The fake checks
//! every request's path, query parameters and JSON body against it and
//! records what breaks it ([`FakeGitHub::openapi_violations`]);
//! [`openapi_response_violations`] checks an answer (`tests/openapi.rs` runs
//! it over every endpoint and status the fake gives).
//!
//! # How strict it is
//!
//! Besides the checks above, as GitHub does:
//!
//! | rule | answer |
//! | --- | --- |
//! | a repeated `User-Agent`, `Authorization`, `Content-Type` or `Host` header | 400 (switch: [`FakeGitHub::set_strict_headers`]) |
//! | check-run `output.summary`/`output.text` over 65,535 bytes of UTF-8 | 422 |
//! | more than 80 content-creating requests (check-run creations) of one installation in a minute, or 500 in an hour | 403, secondary rate limit (switch: [`FakeGitHub::set_content_creation_limits`]) |
//! | the primary limit spent | 403 with `x-ratelimit-remaining: 0` until `x-ratelimit-reset` |
//! | a renamed or transferred repository's old name | 301 (GET, HEAD) or 307, `Location: .../repositories/{id}/...` |
//! | an installation without the permission an endpoint needs | 403 "Resource not accessible by integration" |
//! | a token for a suspended installation | 403 "This installation has been suspended" |
//! | redelivery of a delivery older than GitHub keeps them | 422 |
//!
//! A request refused by any of these (or by an outage or a fault) is still
//! recorded in [`FakeGitHub::requests`] with the status it got, so tests can
//! count attempts.
//!
//! # Test-control API
//!
//! | method | what it does |
//! | --- | --- |
//! | [`FakeGitHub::secondary_limit`]`(scope, status, retry_after, lasts)` | requests in [`Scope`] get 403/429 with GitHub's secondary-limit message (and `Retry-After` if given) for `lasts` |
//! | [`FakeGitHub::set_content_creation_limits`]`(enabled)` | GitHub's content-creation limit on (default) or off |
//! | [`FakeGitHub::outage`]`(scope, status, lasts)`, [`FakeGitHub::end_outage`] | requests in [`Scope`] get `status` (502, 503, 504 with GitHub's bodies) until the end |
//! | [`FakeGitHub::set_primary_limit`]`(installation, limit, remaining, reset_in)` | an installation's primary window |
//! | [`FakeGitHub::rename_repo`]`(old, new)` | the old name redirects to `/repositories/{id}` |
//! | [`FakeGitHub::revoke_permission`]`(installation, permission)`, [`FakeGitHub::grant_permission`] | `checks`, `pull_requests`, `issues`, `contents`, `metadata` |
//! | [`FakeGitHub::suspend_installation`]`(installation)` | token mints get 403, its tokens stop working |
//! | [`FakeGitHub::delete_user`]`(login)` | `"user": null` wherever the account authored something |
//! | [`FakeGitHub::set_strict_headers`]`(strict)` | the repeated-header rule on (default) or off |
//! | [`FakeGitHub::openapi_violations`]`()` | requests that broke GitHub's OpenAPI description |
//! | [`FakeGitHub::inject`]`(endpoint, fault, times)` | one-shot faults: server errors, slowness, secondary limits, expired tokens |
//!
//! # Admin endpoints (`/_fake/...`, JSON in and out, no auth)
//!
//! They exist so that shell scripts driving the example binary can do what
//! Rust tests do through the in-process API.
//!
//! | request | body / answer |
//! | --- | --- |
//! | `GET /_fake/health` | `{"base_url": "...", "app_id": N}` |
//! | `POST /_fake/repos` | `{"installation_id": 7, "full_name": "octo/repo"}` → 201 repo info |
//! | `PUT /_fake/repos/{o}/{r}/pulls/{n}` | `{"title"?, "body"?, "head_sha"?, "head_ref"?, "base_ref"?, "author"?, "state"?: "open"\|"closed", "merged"?, "draft"?}` → 200 the REST pull object |
//! | `POST /_fake/repos/{o}/{r}/issues/{n}` | `{"title"?, "body"?, "author"?}`: a plain (non-PR) issue → 201 |
//! | `POST /_fake/repos/{o}/{r}/pulls/{n}/issue-comments` | `{"author", "body"}` → 201 `{"id": N}` (works for plain issues too) |
//! | `POST /_fake/repos/{o}/{r}/pulls/{n}/reviews` | `{"author", "body", "state"?: "COMMENTED"\|"APPROVED"\|...}` → 201 `{"id": N}` |
//! | `POST /_fake/repos/{o}/{r}/pulls/{n}/review-comments` | `{"author", "body"}` → 201 `{"id": N, "review_id": M}` |
//! | `POST /_fake/repos/{o}/{r}/commits` | `{"sha": "..."}`: makes a SHA known (for merge-queue heads) |
//! | `POST /_fake/faults` | `{"endpoint": "create_check_run", "fault": {"kind": "server_error", "status": 503}, "times": 2}`; kinds: `server_error {status}`, `slow {millis}`, `secondary_rate_limit {retry_after_secs}`, `rate_limited_429 {retry_after_secs}`, `expired_token`; endpoints: `access_token`, `get_pull`, `list_issue_comments`, `list_reviews`, `list_review_comments`, `create_check_run`, `list_check_runs_for_ref`, `list_deliveries`, `redeliver_attempt`, `any` |
//! | `GET /_fake/faults`, `DELETE /_fake/faults` | pending faults / drop them all |
//! | `GET /_fake/check-runs[?repo=o/r]` | recorded check-run POSTs in arrival order: `[{"id", "repo", "installation_id", "head_sha", "name", "received_ms", "body"}]` |
//! | `GET /_fake/requests` | every API request: `[{"method", "path", "status", "installation_id", "endpoint", "received_ms"}]` |
//! | `GET /_fake/tokens` | issued installation tokens: `[{"installation_id", "issued_ms", "expires_at"}]` |
//! | `POST /_fake/tokens/expire` | every issued token becomes invalid (401 `Bad credentials`) |
//! | `PUT /_fake/token-ttl` | `{"secs": 5}`: lifetime of tokens issued from now on |
//! | `PUT /_fake/primary-limit` (alias `/_fake/rate-limit`) | `{"installation_id": 7, "limit"?: 5000, "remaining": 0, "reset_in_ms"?: 3600000}`: [`FakeGitHub::set_primary_limit`] |
//! | `POST /_fake/secondary-limit`, `DELETE /_fake/secondary-limit` | `{"scope": "all"\|"writes"\|"check_run_creation", "status": 403, "retry_after_ms"?: 2000, "lasts_ms": 5000}`: [`FakeGitHub::secondary_limit`] / lift them all |
//! | `PUT /_fake/content-creation-limits` | `{"enabled": false}`: [`FakeGitHub::set_content_creation_limits`] |
//! | `POST /_fake/outage`, `DELETE /_fake/outage` | `{"scope": "all", "status": 502, "lasts_ms"?: 3000}`: [`FakeGitHub::outage`] / [`FakeGitHub::end_outage`] |
//! | `POST /_fake/renames` | `{"from": "octo/old", "to": "octo/new"}`: [`FakeGitHub::rename_repo`] |
//! | `POST /_fake/installations/{id}/revoke` | `{"permission": "checks"}`: [`FakeGitHub::revoke_permission`] → the permissions left |
//! | `POST /_fake/installations/{id}/suspend` | [`FakeGitHub::suspend_installation`] |
//! | `DELETE /_fake/users/{login}` | [`FakeGitHub::delete_user`] |
//! | `PUT /_fake/strict-headers` | `{"enabled": false}`: [`FakeGitHub::set_strict_headers`] |
//! | `GET /_fake/openapi-violations` | `["..."]`: [`FakeGitHub::openapi_violations`] |
//! | `POST /_fake/deliveries` | a [`NewDelivery`] as JSON, e.g. `{"event": "pull_request", "action": "opened", "status_code": 503}` → 201 the delivery |
//! | `GET /_fake/deliveries` | all deliveries, newest first |
//! | `GET /_fake/redeliveries` | `[{"delivery_id", "guid", "received_ms"}]` |
//! | `PUT /_fake/redelivery-status` | `{"status_code": 200}`: outcome recorded for later redeliveries |
//! | `POST /_fake/reset-records` | forget recorded requests, check-run records, issued-token records and redelivery attempts (state such as check runs visible through the API is kept) |
//!
//! `received_ms` counts milliseconds since the fake started.

// Each test crate, bench and example that includes this file uses a
// different subset of it; without this every one of them would warn.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[path = "../fake_manifest.rs"]
pub mod manifest;

mod admin;
mod apps;
mod checks;
mod contents;
mod deliveries;
mod limits;
mod model;
mod pulls;
mod render;
mod routes;
mod server;
mod util;
mod validate;

use apps::*;
use checks::*;
use contents::*;
#[allow(unused_imports)] // Not every crate that includes the fake reads settings.
pub use contents::{ContentsAccess, SETTINGS_PATH};
use deliveries::*;
use limits::*;
use model::*;
use pulls::*;
use render::Urls;
use routes::*;
use server::*;
use util::*;
use validate::*;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// The primary rate limit of an installation (GitHub's floor for apps).
const INSTALLATION_RATE_LIMIT: u32 = 5000;
/// The primary rate limit of requests authenticated as the app (JWT).
const APP_RATE_LIMIT: u32 = 5000;
/// The primary rate limit of unauthenticated requests.
const ANONYMOUS_RATE_LIMIT: u32 = 60;
/// Length of one rate-limit window.
const RATE_WINDOW: Duration = Duration::from_secs(3600);
/// Default lifetime of installation tokens, as on GitHub.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on a JWT's `iat`, as GitHub does.
const JWT_IAT_SKEW_SECS: i64 = 60;
/// GitHub refuses app JWTs that live longer than ten minutes.
const JWT_MAX_LIFETIME_SECS: i64 = 600;
/// Page size used when `per_page` is absent, and its ceiling.
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
/// GitHub's limit on a check run's `output.summary` and `output.text`.
const MAX_OUTPUT_CHARS: usize = 65535;
/// GitHub's limit on annotations per check-run request.
const MAX_ANNOTATIONS: usize = 50;
/// Request bodies larger than this are refused (GitHub's own cap is 25 MB).
const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// The app's slug as it appears in check runs and installations.
const APP_SLUG: &str = "task-list-bot";

const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_REDIRECTS: &str =
    "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects";
const DOCS_RATE_PRIMARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit";
const DOCS_RATE_SECONDARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

const MSG_BAD_CREDENTIALS: &str = "Bad credentials";
const MSG_NOT_ACCESSIBLE_BY_INTEGRATION: &str = "Resource not accessible by integration";
const MSG_INSTALLATION_SUSPENDED: &str = "This installation has been suspended";
const MSG_REQUIRES_AUTH: &str = "Requires authentication";
const MSG_JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
const MSG_JWT_EXP: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const MSG_JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
const MSG_JWT_IAT: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

const CHECK_RUN_STATUSES: [&str; 6] = [
    "queued",
    "in_progress",
    "completed",
    "waiting",
    "requested",
    "pending",
];
const CHECK_RUN_CONCLUSIONS: [&str; 8] = [
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];
const ANNOTATION_LEVELS: [&str; 3] = ["notice", "warning", "failure"];

// ---------------------------------------------------------------------------
// Public model types
// ---------------------------------------------------------------------------

/// Whether a pull request is open or closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrState {
    #[default]
    Open,
    Closed,
}

impl PrState {
    fn as_str(self) -> &'static str {
        match self {
            PrState::Open => "open",
            PrState::Closed => "closed",
        }
    }
}

/// A pull request as the tests describe it; the fake derives everything else
/// (ids, URLs, timestamps, the base SHA) from it.
///
/// Build one with [`PullRequest::new`] and the chained setters, or with
/// `PullRequest { number: 3, ..Default::default() }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    /// `None` is GitHub's `"body": null` (a PR opened with an empty description).
    pub body: Option<String>,
    /// Empty means "derive a stable SHA from the repository and number".
    pub head_sha: String,
    /// Empty means `pr-{number}`.
    pub head_ref: String,
    pub base_ref: String,
    pub author: String,
    pub state: PrState,
    /// A merged pull request is always closed; `upsert_pull` enforces that.
    pub merged: bool,
    pub draft: bool,
}

impl Default for PullRequest {
    fn default() -> Self {
        PullRequest {
            number: 1,
            title: "Update the task list".to_owned(),
            body: None,
            head_sha: String::new(),
            head_ref: String::new(),
            base_ref: "main".to_owned(),
            author: "octocat".to_owned(),
            state: PrState::Open,
            merged: false,
            draft: false,
        }
    }
}

impl PullRequest {
    pub fn new(number: u64) -> Self {
        PullRequest {
            number,
            ..Default::default()
        }
    }
    pub fn title(mut self, title: &str) -> Self {
        self.title = title.to_owned();
        self
    }
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }
    pub fn no_body(mut self) -> Self {
        self.body = None;
        self
    }
    pub fn head_sha(mut self, sha: &str) -> Self {
        self.head_sha = sha.to_owned();
        self
    }
    pub fn head_ref(mut self, head_ref: &str) -> Self {
        self.head_ref = head_ref.to_owned();
        self
    }
    pub fn base_ref(mut self, base_ref: &str) -> Self {
        self.base_ref = base_ref.to_owned();
        self
    }
    pub fn author(mut self, login: &str) -> Self {
        self.author = login.to_owned();
        self
    }
    pub fn state(mut self, state: PrState) -> Self {
        self.state = state;
        self
    }
    pub fn closed(self) -> Self {
        self.state(PrState::Closed)
    }
    /// Merged, and therefore closed.
    pub fn merged(mut self) -> Self {
        self.merged = true;
        self.state = PrState::Closed;
        self
    }
    pub fn draft(mut self, draft: bool) -> Self {
        self.draft = draft;
        self
    }
}

/// A pull request review's state, spelled as GitHub does on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    #[default]
    Commented,
    Dismissed,
    Pending,
}

impl ReviewState {
    fn as_str(self) -> &'static str {
        match self {
            ReviewState::Approved => "APPROVED",
            ReviewState::ChangesRequested => "CHANGES_REQUESTED",
            ReviewState::Commented => "COMMENTED",
            ReviewState::Dismissed => "DISMISSED",
            ReviewState::Pending => "PENDING",
        }
    }
}

/// Which requests an injected [`Fault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    AccessToken,
    GetPull,
    ListIssueComments,
    ListReviews,
    ListReviewComments,
    CreateCheckRun,
    ListCheckRunsForRef,
    ListDeliveries,
    RedeliverAttempt,
    /// Every API request (including endpoints not named above).
    Any,
}

/// A failure to answer with instead of the real response.
///
/// Faults fire only on requests that passed authentication (so they count
/// real attempts by a correctly configured client), before the primary rate
/// limit is charged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// That status (e.g. 500/502/503) with a GitHub-like JSON body; a
    /// status that is not an error status becomes 500.
    ServerError(u16),
    /// Sleep this long, then answer normally (to exceed a client timeout).
    Slow(Duration),
    /// 403 + `Retry-After` + GitHub's secondary-rate-limit message.
    SecondaryRateLimit { retry_after_secs: u64 },
    /// 429 + `Retry-After` + the same message.
    RateLimited429 { retry_after_secs: u64 },
    /// 401 `Bad credentials`, as for an expired installation token. Like a
    /// really expired token, the token presented is revoked too, so a client
    /// that retries with the same token keeps getting 401 until it mints a
    /// new one. (octocrab does that by itself: on a 401 it drops its cached
    /// token, mints another and retries once.)
    ExpiredToken,
}

/// A check-run creation request that the fake accepted, as sent.
#[derive(Clone, Debug)]
pub struct RecordedCheckRun {
    pub id: u64,
    /// `owner/name` as registered with [`FakeGitHub::add_repo`].
    pub repo: String,
    pub installation_id: u64,
    pub head_sha: String,
    pub name: String,
    /// The request body exactly as the client sent it.
    pub body: Value,
    pub received_at: Instant,
}

/// One API request (admin requests are not recorded).
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as received (including any `/api/v3` prefix).
    pub path: String,
    /// The status answered; 0 while the answer is pending or when the client
    /// went away first (for example a client timeout during [`Fault::Slow`]).
    pub status: u16,
    /// The installation of the token used, or the one named in the path of
    /// an access-token request.
    pub installation_id: Option<u64>,
    /// The endpoint matched, if it is one of [`Endpoint`]'s named ones.
    pub endpoint: Option<Endpoint>,
    #[serde(skip)]
    pub received_at: Instant,
    #[serde(skip)]
    seq: u64,
}

/// An installation access token the fake minted.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub installation_id: u64,
    pub token: String,
    pub issued_at: Instant,
    pub expires_at: DateTime<Utc>,
    /// The App JWT the token was asked for with.
    pub app_jwt: String,
}

/// What to record as a webhook delivery of the app (see
/// [`FakeGitHub::add_delivery`]). Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewDelivery {
    /// Defaults to a fresh random GUID.
    pub guid: Option<String>,
    pub event: String,
    pub action: Option<String>,
    /// The HTTP status the receiver answered (0: it could not be reached).
    pub status_code: u16,
    /// Defaults to `"OK"` for 2xx and `"Invalid HTTP Response: {code}"` else.
    pub status: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    pub redelivery: bool,
    /// Defaults to now minus `age_secs`.
    pub delivered_at: Option<DateTime<Utc>>,
    /// How long ago the delivery happened when `delivered_at` is absent.
    pub age_secs: u64,
    /// Seconds the receiver took.
    pub duration: f64,
    /// The webhook payload, shown by `GET /app/hook/deliveries/{id}`.
    pub payload: Option<Value>,
}

impl Default for NewDelivery {
    fn default() -> Self {
        NewDelivery {
            guid: None,
            event: "pull_request".to_owned(),
            action: Some("opened".to_owned()),
            status_code: 200,
            status: None,
            installation_id: None,
            repository_id: None,
            redelivery: false,
            delivered_at: None,
            age_secs: 0,
            duration: 0.12,
            payload: None,
        }
    }
}

/// A webhook delivery as GitHub lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    pub id: u64,
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    pub redelivery: bool,
    pub duration: f64,
    pub status: String,
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    #[serde(skip)]
    pub payload: Option<Value>,
}

/// A `POST /app/hook/deliveries/{id}/attempts` the fake accepted.
#[derive(Clone, Debug)]
pub struct RedeliveryAttempt {
    pub delivery_id: u64,
    pub guid: String,
    pub received_at: Instant,
}

/// Which requests a secondary limit or an outage hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every API request.
    All,
    /// `POST`, `PATCH`, `PUT` and `DELETE` requests, token mints included.
    Writes,
    /// `POST /repos/{o}/{r}/check-runs` only.
    CheckRunCreation,
}

/// A repository registered with the fake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepoInfo {
    pub id: u64,
    pub full_name: String,
    pub owner: String,
    pub name: String,
    pub installation_id: u64,
    pub default_branch: String,
}

/// An object whose REST representation [`FakeGitHub::resource_json`] renders
/// (webhook payloads embed the same representations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Repository,
    /// The issue view of a number (a PR's has a `pull_request` key).
    Issue(u64),
    Pull(u64),
    IssueComment(u64),
    Review(u64),
    ReviewComment(u64),
    /// The installation owning the repository, as webhook payloads show it.
    Installation,
}

// ---------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------

/// A running fake. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct FakeGitHub {
    shared: Arc<Shared>,
}

/// Everything the server task and the handle share.
struct Shared {
    app_id: u64,
    key: DecodingKey,
    addr: SocketAddr,
    started: Instant,
    /// A std (not tokio) mutex: every critical section is a few map
    /// operations and is never held across an `.await`, so a blocking mutex
    /// is both cheaper and lets the inspection methods of [`FakeGitHub`]
    /// stay synchronous (callable from sync test code, asserts, `Drop`).
    model: Mutex<Model>,
    /// The App-manifest registration flow (`fake_manifest.rs`).
    manifests: manifest::ManifestFlow,
}

impl Shared {
    /// Locks the model. A test that panicked while holding the lock (say, on
    /// a failed assertion in a helper) must not take the server down with
    /// it, so poisoning is ignored: the model is valid after every mutation.
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn urls(&self) -> Urls {
        Urls::for_host(&self.addr.to_string())
    }

    fn millis_since_start(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.started).as_millis()
    }
}

impl FakeGitHub {
    /// Binds `127.0.0.1:0` and serves in a tokio task.
    ///
    /// # Panics
    /// If the key is not an RSA public key in PEM or the port cannot be bound:
    /// test infrastructure should fail loudly and early.
    pub async fn start(app_id: u64, public_key_pem: &[u8]) -> FakeGitHub {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        match Self::start_on(addr, app_id, public_key_pem).await {
            Ok(fake) => fake,
            Err(err) => panic!("FakeGitHub::start: {err}"),
        }
    }

    /// Like [`FakeGitHub::start`] on a chosen address.
    pub async fn start_on(
        addr: SocketAddr,
        app_id: u64,
        public_key_pem: &[u8],
    ) -> std::io::Result<FakeGitHub> {
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not an RSA public key in PEM: {err}"),
            )
        })?;
        // Compiles the OpenAPI schemas now rather than on the first request,
        // which would otherwise take noticeably longer than the others.
        validate::openapi();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            app_id,
            key,
            addr: listener.local_addr()?,
            started: Instant::now(),
            model: Mutex::new(Model::new()),
            manifests: Default::default(),
        });
        let router = axum::Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            // The fake lives as long as the runtime; an accept error there is
            // not something a test can act on.
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeGitHub { shared })
    }

    /// `http://127.0.0.1:PORT/api/v3`
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v3", self.shared.addr)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn app_id(&self) -> u64 {
        self.shared.app_id
    }

    /// The manifest flow's state (`fake_manifest.rs`).
    pub fn manifests(&self) -> &manifest::ManifestFlow {
        &self.shared.manifests
    }

    /// When the fake started; `received_at` instants are comparable to it.
    pub fn started_at(&self) -> Instant {
        self.shared.started
    }

    /// Registers `owner/name` under an installation (created if needed).
    /// Registering it again under another installation moves it there.
    ///
    /// # Panics
    /// If `full_name` is not `owner/name`.
    pub fn add_repo(&self, installation_id: u64, full_name: &str) -> RepoInfo {
        let result = self.shared.model().add_repo(installation_id, full_name);
        expect(result, "add_repo")
    }

    /// Creates or replaces a pull request (its comments and reviews are kept,
    /// as when a PR is edited or pushed to). Its head SHA becomes a known
    /// commit of the repository, and stays one after later pushes.
    ///
    /// # Panics
    /// If the repository was not added.
    pub fn upsert_pull(&self, full_name: &str, pull: PullRequest) {
        expect(
            self.shared.model().upsert_pull(full_name, pull),
            "upsert_pull",
        );
    }

    /// Creates or replaces a plain issue (not a pull request).
    ///
    /// # Panics
    /// If the repository was not added or the number is a pull request.
    pub fn add_issue(&self, full_name: &str, number: u64, title: &str, author: &str, body: &str) {
        let result = self
            .shared
            .model()
            .add_issue(full_name, number, title, author, body);
        expect(result, "add_issue");
    }

    /// Adds an issue comment (to a pull request or plain issue); returns its id.
    ///
    /// # Panics
    /// If the repository or the issue/pull request does not exist.
    pub fn add_issue_comment(&self, full_name: &str, number: u64, author: &str, body: &str) -> u64 {
        let result = self
            .shared
            .model()
            .add_issue_comment(full_name, number, author, body);
        expect(result, "add_issue_comment")
    }

    /// Adds a submitted `COMMENTED` review; returns its id.
    ///
    /// # Panics
    /// If the repository or the pull request does not exist.
    pub fn add_review(&self, full_name: &str, number: u64, author: &str, body: &str) -> u64 {
        self.add_review_with_state(full_name, number, author, body, ReviewState::Commented)
    }

    /// Adds a review in the given state; returns its id.
    ///
    /// # Panics
    /// If the repository or the pull request does not exist.
    pub fn add_review_with_state(
        &self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
        state: ReviewState,
    ) -> u64 {
        let result = self
            .shared
            .model()
            .add_review(full_name, number, author, body, state);
        expect(result, "add_review")
    }

    /// Adds a review comment; returns its id. As on GitHub, a standalone
    /// review comment comes with its own `COMMENTED` review whose body is
    /// empty, so it also shows up in the list of reviews.
    ///
    /// # Panics
    /// If the repository or the pull request does not exist.
    pub fn add_review_comment(
        &self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
    ) -> u64 {
        let result = self
            .shared
            .model()
            .add_review_comment(full_name, number, author, body);
        expect(result, "add_review_comment").0
    }

    /// Makes a commit SHA known to the repository without a pull request
    /// (e.g. a merge-queue head), so check runs can be created on it.
    ///
    /// # Panics
    /// If the repository was not added.
    pub fn add_commit(&self, full_name: &str, sha: &str) {
        expect(self.shared.model().add_commit(full_name, sha), "add_commit");
    }

    pub fn repo(&self, full_name: &str) -> Option<RepoInfo> {
        let model = self.shared.model();
        model.repo(full_name).ok().map(Repo::info)
    }

    pub fn pull(&self, full_name: &str, number: u64) -> Option<PullRequest> {
        let model = self.shared.model();
        let repo = model.repo(full_name).ok()?;
        let thread = repo.threads.get(&number)?;
        thread.as_pull()
    }

    /// The REST representation of an object, with URLs pointing at this fake.
    pub fn resource_json(&self, full_name: &str, resource: Resource) -> Option<Value> {
        let model = self.shared.model();
        let urls = self.shared.urls().with_deleted(&model);
        let repo = model.repo(full_name).ok()?;
        let app_id = self.shared.app_id;
        match resource {
            Resource::Repository => Some(render::repo(&urls, repo)),
            Resource::Issue(n) => Some(render::issue(&urls, repo, repo.threads.get(&n)?)),
            Resource::Pull(n) => {
                let thread = repo.threads.get(&n)?;
                thread.pull.as_ref()?;
                Some(render::pull(&urls, repo, thread))
            }
            Resource::IssueComment(id) => {
                let (thread, c) = repo.find_issue_comment(id)?;
                Some(render::issue_comment(&urls, repo, thread, c))
            }
            Resource::Review(id) => {
                let (thread, r) = repo.find_review(id)?;
                Some(render::review(&urls, repo, thread, r))
            }
            Resource::ReviewComment(id) => {
                let (thread, c) = repo.find_review_comment(id)?;
                Some(render::review_comment(&urls, repo, thread, c))
            }
            Resource::Installation => Some(json!({
                "id": repo.installation_id,
                "node_id": installation_node_id(repo.installation_id),
                "app_id": app_id,
            })),
        }
    }

    /// A user as API answers embed it (`null` once [`FakeGitHub::delete_user`]
    /// deleted the account).
    pub fn user_json(&self, login: &str) -> Value {
        let model = self.shared.model();
        render::user(&self.shared.urls().with_deleted(&model), login)
    }

    /// Accepted check-run creations for the repository, in arrival order.
    pub fn check_runs(&self, full_name: &str) -> Vec<RecordedCheckRun> {
        let key = repo_key(full_name);
        self.shared
            .model()
            .check_run_records()
            .filter(|run| run.repo_key == key)
            .map(StoredCheckRun::record)
            .collect()
    }

    /// Every accepted check-run creation, in arrival order.
    pub fn all_check_runs(&self) -> Vec<RecordedCheckRun> {
        self.shared
            .model()
            .check_run_records()
            .map(StoredCheckRun::record)
            .collect()
    }

    /// The most recent accepted creation of check `name` on `head_sha`.
    pub fn latest_check_run(
        &self,
        full_name: &str,
        head_sha: &str,
        name: &str,
    ) -> Option<RecordedCheckRun> {
        let key = repo_key(full_name);
        self.shared
            .model()
            .check_run_records()
            .filter(|r| r.repo_key == key && r.head_sha == head_sha && r.run.name == name)
            .last()
            .map(StoredCheckRun::record)
    }

    /// Every API request, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.model().requests.clone()
    }

    pub fn tokens_issued(&self) -> Vec<IssuedToken> {
        self.shared.model().issued.clone()
    }

    /// The next `times` requests matching `endpoint` get `fault`. Faults
    /// queue: each request consumes at most one, oldest first.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        if times > 0 {
            self.shared.model().faults.push_back(PendingFault {
                endpoint,
                fault,
                remaining: times,
            });
        }
    }

    pub fn clear_faults(&self) {
        self.shared.model().faults.clear();
    }

    /// How many injected faults have not fired yet, all endpoints together.
    pub fn pending_faults(&self) -> usize {
        self.shared.model().faults.iter().map(|f| f.remaining).sum()
    }

    /// Lifetime of tokens minted from now on (default 1 h, as GitHub).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.model().token_ttl = ttl;
    }

    /// Every token minted so far becomes invalid (401 `Bad credentials`).
    pub fn expire_tokens(&self) {
        for token in self.shared.model().tokens.values_mut() {
            token.revoked = true;
        }
    }

    /// Sets an installation's primary rate limit window: `limit` requests an
    /// hour, `remaining` of them left until `reset_in` from now. Once
    /// `x-ratelimit-remaining` is 0, every request of the installation gets
    /// 403 "API rate limit exceeded for installation ID N." (with
    /// `x-ratelimit-remaining: 0` and `x-ratelimit-reset`) until the reset;
    /// then a fresh window of `limit` requests starts.
    pub fn set_primary_limit(
        &self,
        installation_id: u64,
        limit: u32,
        remaining: u32,
        reset_in: Duration,
    ) {
        self.shared.model().set_primary_limit(
            Bucket::Installation(installation_id),
            limit,
            remaining,
            reset_in,
        );
    }

    /// For `lasts` from now, requests within `scope` get `status` (403 or
    /// 429) with GitHub's secondary-rate-limit message, and a `Retry-After`
    /// header when `retry_after` is given (rounded up to whole seconds, as
    /// GitHub sends it).
    pub fn secondary_limit(
        &self,
        scope: Scope,
        status: u16,
        retry_after: Option<Duration>,
        lasts: Duration,
    ) {
        self.shared
            .model()
            .limits
            .add_secondary(scope, status, retry_after, lasts);
    }

    /// Switches GitHub's content-creation limit (80 content-creating requests
    /// a minute and 500 an hour per installation; on by default).
    pub fn set_content_creation_limits(&self, enabled: bool) {
        self.shared.model().limits.content_creation = enabled;
    }

    /// Until [`FakeGitHub::end_outage`] or for `lasts`, requests within
    /// `scope` get `status` (e.g. 502, 503, 504) with GitHub's body for it.
    pub fn outage(&self, scope: Scope, status: u16, lasts: Option<Duration>) {
        self.shared
            .model()
            .limits
            .start_outage(scope, status, lasts);
    }

    pub fn end_outage(&self) {
        self.shared.model().limits.outage = None;
    }

    /// Renames or transfers a repository: `old_full_name` now answers 301
    /// (GET) or 307 (other methods) with a `Location` at
    /// `/repositories/{id}/...`; `new_full_name` serves it.
    ///
    /// # Panics
    /// If the old repository was not added or the new name is taken.
    pub fn rename_repo(&self, old_full_name: &str, new_full_name: &str) {
        let result = self
            .shared
            .model()
            .rename_repo(old_full_name, new_full_name);
        expect(result, "rename_repo");
    }

    /// Takes a permission (`checks`, `pull_requests`, `issues`, `contents`,
    /// ...) from an installation: endpoints that need it answer 403
    /// "Resource not accessible by integration".
    pub fn revoke_permission(&self, installation_id: u64, permission: &str) {
        self.shared
            .model()
            .revoke_permission(installation_id, permission);
    }

    /// Gives a permission back (or grants a new one) at `level` (`read`,
    /// `write`).
    pub fn grant_permission(&self, installation_id: u64, permission: &str, level: &str) {
        self.shared
            .model()
            .installation_permissions_mut(installation_id)
            .insert(permission.to_owned(), level.to_owned());
    }

    /// Suspends an installation: minting a token for it gets 403 "This
    /// installation has been suspended", and the tokens it holds stop
    /// working (401 `Bad credentials`).
    pub fn suspend_installation(&self, installation_id: u64) {
        self.shared.model().suspend_installation(installation_id);
    }

    /// Lifts a suspension: tokens can be minted again. GitHub documents
    /// only that the suspension is removed, not whether tokens that the
    /// suspension stopped work again; here they stay revoked, the
    /// stricter reading.
    pub fn unsuspend_installation(&self, installation_id: u64) {
        self.shared.model().unsuspend_installation(installation_id);
    }

    /// Deletes an account: wherever it authored something, API answers and
    /// webhook payloads show `"user": null`.
    pub fn delete_user(&self, login: &str) {
        self.shared
            .model()
            .deleted_users
            .insert(login.to_ascii_lowercase());
    }

    /// Whether a request repeating a header that must appear once
    /// (`User-Agent`, `Authorization`, `Content-Type`, `Host`) gets 400, as on
    /// GitHub (default `true`).
    pub fn set_strict_headers(&self, strict: bool) {
        self.shared.model().strict_headers = strict;
    }

    /// Every way a request received so far broke GitHub's OpenAPI description
    /// of its endpoint (path, query parameters, JSON body), one line each.
    pub fn openapi_violations(&self) -> Vec<String> {
        self.shared.model().openapi_violations.clone()
    }

    /// Records a webhook delivery of the app and returns it.
    pub fn add_delivery(&self, delivery: NewDelivery) -> Delivery {
        self.shared.model().add_delivery(delivery)
    }

    /// All deliveries, newest first (as the API lists them).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.model().deliveries_newest_first()
    }

    /// Accepted redelivery requests, in arrival order.
    pub fn redelivery_attempts(&self) -> Vec<RedeliveryAttempt> {
        self.shared.model().redeliveries.clone()
    }

    /// Each accepted redelivery request adds a delivery with
    /// `redelivery: true` and this receiver status (default 200), as GitHub
    /// lists the outcome of the redelivery.
    pub fn set_redelivery_status_code(&self, status_code: u16) {
        self.shared.model().redelivery_status_code = status_code;
    }

    /// Forgets recorded requests, check-run records, issued-token records and
    /// redelivery attempts. State visible through the API (repos, tokens,
    /// check runs listed for a ref, deliveries) is kept.
    pub fn reset_records(&self) {
        self.shared.model().reset_records();
    }
}

/// How an answer of the fake (or anyone) breaks GitHub's OpenAPI description
/// of the endpoint (`path` without `/api/v3` and the query) and status, one
/// line each; `Err` when the endpoint is not in the fixture
/// `tests/data/openapi/endpoints.json`.
pub fn openapi_response_violations(
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<Vec<String>, String> {
    validate::response_violations(method, path, status, body)
}

fn expect<T>(result: Result<T, ModelError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("FakeGitHub::{what}: {err}"),
    }
}

// ---------------------------------------------------------------------------
// Internal model
// ---------------------------------------------------------------------------

/// A refusal from the model, in words a test author can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelError(String);

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn model_error<T>(message: impl Into<String>) -> Result<T, ModelError> {
    Err(ModelError(message.into()))
}

/// GitHub compares owner and repository names case-insensitively.
fn repo_key(full_name: &str) -> String {
    full_name.to_ascii_lowercase()
}
