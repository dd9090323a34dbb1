//! An in-process fake of the slice of GitHub's REST API that `task-list-bot`
//! talks to, for integration tests, benchmarks and shell-driven end-to-end
//! runs (through `examples/fake_github.rs`).
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
//! One self-contained file: include it with
//! `#[path = "support/fake_github.rs"] mod fake_github;` (or as a child of a
//! `support` module). It uses no `crate::` paths. `webhooks.rs` beside it
//! expects to be a sibling module named `webhooks` of this one.
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
//! | `GET /repos/{o}/{r}/contents/{path}` (raw or JSON, `ETag`/`304`, permissions: `fake_contents.rs`) | installation token |
//!
//! Anything else is `404 {"message":"Not Found"}`.
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
//! | `POST /_fake/faults` | `{"endpoint": "create_check_run", "fault": {"kind": "server_error", "status": 503}, "times": 2}`; kinds: `server_error {status}`, `slow {millis}`, `secondary_rate_limit {retry_after_secs}`, `rate_limited_429 {retry_after_secs}`, `primary_rate_limit_exhausted {reset_in_secs}`, `expired_token`; endpoints: `access_token`, `get_pull`, `list_issue_comments`, `list_reviews`, `list_review_comments`, `create_check_run`, `list_check_runs_for_ref`, `list_deliveries`, `redeliver_attempt`, `any` |
//! | `GET /_fake/faults`, `DELETE /_fake/faults` | pending faults / drop them all |
//! | `GET /_fake/check-runs[?repo=o/r]` | recorded check-run POSTs in arrival order: `[{"id", "repo", "installation_id", "head_sha", "name", "received_ms", "body"}]` |
//! | `GET /_fake/requests` | every API request: `[{"method", "path", "status", "installation_id", "endpoint", "received_ms"}]` |
//! | `GET /_fake/tokens` | issued installation tokens: `[{"installation_id", "issued_ms", "expires_at"}]` |
//! | `POST /_fake/tokens/expire` | every issued token becomes invalid (401 `Bad credentials`) |
//! | `PUT /_fake/token-ttl` | `{"secs": 5}`: lifetime of tokens issued from now on |
//! | `PUT /_fake/rate-limit` | `{"installation_id": 7, "remaining": 0}` |
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
const RATE_WINDOW_SECS: u64 = 3600;
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
const DOCS_RATE_PRIMARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit";
const DOCS_RATE_SECONDARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

const MSG_BAD_CREDENTIALS: &str = "Bad credentials";
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
    /// 403 + `x-ratelimit-remaining: 0` + `x-ratelimit-reset` in that many
    /// seconds, as when the installation's hourly budget is spent.
    PrimaryRateLimitExhausted { reset_in_secs: u64 },
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
// The contents API (settings files): its own file, wired in below.
#[path = "fake_contents.rs"]
mod contents;
#[allow(unused_imports)] // Not every crate that includes the fake reads settings.
pub use contents::ContentsAccess;

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
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            app_id,
            key,
            addr: listener.local_addr()?,
            started: Instant::now(),
            model: Mutex::new(Model::new()),
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
        let urls = self.shared.urls();
        let model = self.shared.model();
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

    /// Sets what `x-ratelimit-remaining` will say next for an installation
    /// (0 makes its next request a 403 "API rate limit exceeded").
    pub fn set_rate_limit_remaining(&self, installation_id: u64, remaining: u32) {
        self.shared
            .model()
            .set_rate_remaining(Bucket::Installation(installation_id), remaining);
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

struct Model {
    contents: contents::Contents,
    next_id: u64,
    next_repo_id: u64,
    /// Keyed by [`repo_key`].
    repos: BTreeMap<String, Repo>,
    tokens: HashMap<String, Token>,
    token_ttl: Duration,
    issued: Vec<IssuedToken>,
    check_runs: Vec<StoredCheckRun>,
    /// Check runs before this index were recorded before the last
    /// `reset_records` and are no longer reported (but still listed by the API).
    check_run_records_from: usize,
    /// GitHub makes one check suite per app, repository and head SHA.
    suites: HashMap<(String, String), u64>,
    requests: Vec<RecordedRequest>,
    next_request_seq: u64,
    faults: VecDeque<PendingFault>,
    rate: HashMap<Bucket, RateWindow>,
    deliveries: Vec<Delivery>,
    redeliveries: Vec<RedeliveryAttempt>,
    redelivery_status_code: u16,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    installation_id: u64,
    created_at: DateTime<Utc>,
    base_sha: String,
    /// Every SHA that check runs may be created on.
    commits: BTreeSet<String>,
    /// Issues and pull requests share one number space, as on GitHub.
    threads: BTreeMap<u64, Thread>,
}

/// An issue or pull request with everything said on it.
struct Thread {
    number: u64,
    issue_id: u64,
    title: String,
    body: Option<String>,
    author: String,
    state: PrState,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    pull: Option<PullFields>,
    comments: Vec<IssueComment>,
    reviews: Vec<Review>,
    review_comments: Vec<ReviewComment>,
}

struct PullFields {
    id: u64,
    head_sha: String,
    head_ref: String,
    base_ref: String,
    merged: bool,
    merged_at: Option<DateTime<Utc>>,
    draft: bool,
}

struct IssueComment {
    id: u64,
    author: String,
    body: String,
    created_at: DateTime<Utc>,
}

struct Review {
    id: u64,
    author: String,
    body: String,
    state: ReviewState,
    commit_id: String,
    submitted_at: DateTime<Utc>,
}

struct ReviewComment {
    id: u64,
    review_id: u64,
    author: String,
    body: String,
    commit_id: String,
    created_at: DateTime<Utc>,
}

struct Token {
    installation_id: u64,
    expires_at: SystemTime,
    revoked: bool,
    /// `Some` when the token was scoped to some repositories ([`repo_key`]s).
    scope: Option<BTreeSet<String>>,
}

struct PendingFault {
    endpoint: Endpoint,
    fault: Fault,
    remaining: usize,
}

struct StoredCheckRun {
    id: u64,
    repo_key: String,
    repo_full_name: String,
    installation_id: u64,
    suite_id: u64,
    head_sha: String,
    run: ValidCheckRun,
    body: Value,
    received_at: Instant,
}

impl StoredCheckRun {
    fn record(&self) -> RecordedCheckRun {
        RecordedCheckRun {
            id: self.id,
            repo: self.repo_full_name.clone(),
            installation_id: self.installation_id,
            head_sha: self.head_sha.clone(),
            name: self.run.name.clone(),
            body: self.body.clone(),
            received_at: self.received_at,
        }
    }
}

/// Who a primary rate limit is counted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    Installation(u64),
    App,
    Anonymous,
}

impl Bucket {
    fn limit(self) -> u32 {
        match self {
            Bucket::Installation(_) => INSTALLATION_RATE_LIMIT,
            Bucket::App => APP_RATE_LIMIT,
            Bucket::Anonymous => ANONYMOUS_RATE_LIMIT,
        }
    }

    fn exceeded_message(self, app_id: u64) -> String {
        match self {
            Bucket::Installation(id) => {
                format!("API rate limit exceeded for installation ID {id}.")
            }
            Bucket::App => format!("API rate limit exceeded for app ID {app_id}."),
            Bucket::Anonymous => "API rate limit exceeded for 127.0.0.1.".to_owned(),
        }
    }
}

/// One hour of a bucket's budget, started by its first request.
struct RateWindow {
    reset_epoch: u64,
    used: u32,
}

/// What the `x-ratelimit-*` headers of one response say.
#[derive(Clone, Copy, Debug)]
struct RateSnapshot {
    limit: u32,
    used: u32,
    reset_epoch: u64,
}

impl RateSnapshot {
    fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

impl Model {
    fn new() -> Model {
        Model {
            contents: contents::Contents::default(),
            next_id: 1001,
            next_repo_id: 500_001,
            repos: BTreeMap::new(),
            tokens: HashMap::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            issued: Vec::new(),
            check_runs: Vec::new(),
            check_run_records_from: 0,
            suites: HashMap::new(),
            requests: Vec::new(),
            next_request_seq: 0,
            faults: VecDeque::new(),
            rate: HashMap::new(),
            deliveries: Vec::new(),
            redeliveries: Vec::new(),
            redelivery_status_code: 200,
        }
    }

    /// One id sequence for every kind of object keeps ids unique across
    /// kinds, so a test mixing up a comment id and a review id fails.
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, full_name: &str) -> Result<&Repo, ModelError> {
        match self.repos.get(&repo_key(full_name)) {
            Some(repo) => Ok(repo),
            None => model_error(format!("repository {full_name} was not added")),
        }
    }

    fn repo_mut(&mut self, full_name: &str) -> Result<&mut Repo, ModelError> {
        match self.repos.get_mut(&repo_key(full_name)) {
            Some(repo) => Ok(repo),
            None => model_error(format!("repository {full_name} was not added")),
        }
    }

    fn installation_exists(&self, installation_id: u64) -> bool {
        self.repos
            .values()
            .any(|r| r.installation_id == installation_id)
    }

    fn add_repo(&mut self, installation_id: u64, full_name: &str) -> Result<RepoInfo, ModelError> {
        let Some((owner, name)) = full_name.split_once('/') else {
            return model_error(format!("{full_name:?} is not owner/name"));
        };
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return model_error(format!("{full_name:?} is not owner/name"));
        }
        if let Ok(repo) = self.repo_mut(full_name) {
            repo.installation_id = installation_id;
            return Ok(repo.info());
        }
        self.next_repo_id += 1;
        let base_sha = fake_sha(&format!("base:{}", repo_key(full_name)));
        let repo = Repo {
            id: self.next_repo_id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            installation_id,
            created_at: Utc::now(),
            commits: BTreeSet::from([base_sha.clone()]),
            base_sha,
            threads: BTreeMap::new(),
        };
        let info = repo.info();
        self.repos.insert(repo_key(full_name), repo);
        Ok(info)
    }

    fn upsert_pull(&mut self, full_name: &str, pull: PullRequest) -> Result<(), ModelError> {
        let issue_id = self.next_id();
        let pull_id = self.next_id();
        let repo = self.repo_mut(full_name)?;
        let now = Utc::now();
        let head_sha = if pull.head_sha.is_empty() {
            fake_sha(&format!("head:{}#{}", repo_key(full_name), pull.number))
        } else {
            pull.head_sha.clone()
        };
        let head_ref = if pull.head_ref.is_empty() {
            format!("pr-{}", pull.number)
        } else {
            pull.head_ref.clone()
        };
        // GitHub has no open-and-merged pull requests.
        let state = if pull.merged {
            PrState::Closed
        } else {
            pull.state
        };
        repo.commits.insert(head_sha.clone());
        let thread = repo
            .threads
            .entry(pull.number)
            .or_insert_with(|| Thread::new(pull.number, issue_id, &pull.author, now));
        let merged_at = match &thread.pull {
            Some(p) if p.merged && pull.merged => p.merged_at,
            _ if pull.merged => Some(now),
            _ => None,
        };
        let id = thread.pull.as_ref().map_or(pull_id, |p| p.id);
        thread.title = pull.title;
        thread.body = pull.body;
        thread.author = pull.author;
        thread.state = state;
        thread.updated_at = now;
        thread.closed_at = match state {
            // Closing keeps the time it was first closed.
            PrState::Closed => thread.closed_at.or(Some(now)),
            PrState::Open => None,
        };
        thread.pull = Some(PullFields {
            id,
            head_sha,
            head_ref,
            base_ref: pull.base_ref,
            merged: pull.merged,
            merged_at,
            draft: pull.draft,
        });
        Ok(())
    }

    fn add_issue(
        &mut self,
        full_name: &str,
        number: u64,
        title: &str,
        author: &str,
        body: &str,
    ) -> Result<(), ModelError> {
        let issue_id = self.next_id();
        let repo = self.repo_mut(full_name)?;
        let now = Utc::now();
        let thread = repo
            .threads
            .entry(number)
            .or_insert_with(|| Thread::new(number, issue_id, author, now));
        if thread.pull.is_some() {
            return model_error(format!("#{number} of {full_name} is a pull request"));
        }
        thread.title = title.to_owned();
        thread.author = author.to_owned();
        thread.body = Some(body.to_owned());
        thread.updated_at = now;
        Ok(())
    }

    fn thread_mut(&mut self, full_name: &str, number: u64) -> Result<&mut Thread, ModelError> {
        let repo = self.repo_mut(full_name)?;
        match repo.threads.get_mut(&number) {
            Some(thread) => Ok(thread),
            None => model_error(format!(
                "{full_name} has no issue or pull request #{number}"
            )),
        }
    }

    fn pull_thread_mut(&mut self, full_name: &str, number: u64) -> Result<&mut Thread, ModelError> {
        let thread = self.thread_mut(full_name, number)?;
        if thread.pull.is_none() {
            return model_error(format!(
                "#{number} of {full_name} is an issue, not a pull request"
            ));
        }
        Ok(thread)
    }

    fn add_issue_comment(
        &mut self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
    ) -> Result<u64, ModelError> {
        let id = self.next_id();
        let thread = self.thread_mut(full_name, number)?;
        let now = Utc::now();
        thread.comments.push(IssueComment {
            id,
            author: author.to_owned(),
            body: body.to_owned(),
            created_at: now,
        });
        thread.updated_at = now;
        Ok(id)
    }

    fn add_review(
        &mut self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
        state: ReviewState,
    ) -> Result<u64, ModelError> {
        let id = self.next_id();
        let thread = self.pull_thread_mut(full_name, number)?;
        let commit_id = thread.head_sha().to_owned();
        thread.reviews.push(Review {
            id,
            author: author.to_owned(),
            body: body.to_owned(),
            state,
            commit_id,
            submitted_at: Utc::now(),
        });
        Ok(id)
    }

    /// Returns `(comment id, review id)`.
    fn add_review_comment(
        &mut self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
    ) -> Result<(u64, u64), ModelError> {
        let review_id = self.add_review(full_name, number, author, "", ReviewState::Commented)?;
        let id = self.next_id();
        let thread = self.pull_thread_mut(full_name, number)?;
        let commit_id = thread.head_sha().to_owned();
        thread.review_comments.push(ReviewComment {
            id,
            review_id,
            author: author.to_owned(),
            body: body.to_owned(),
            commit_id,
            created_at: Utc::now(),
        });
        Ok((id, review_id))
    }

    fn add_commit(&mut self, full_name: &str, sha: &str) -> Result<(), ModelError> {
        self.repo_mut(full_name)?.commits.insert(sha.to_owned());
        Ok(())
    }

    // -- tokens -------------------------------------------------------------

    fn issue_token(
        &mut self,
        installation_id: u64,
        scope: Option<BTreeSet<String>>,
    ) -> IssuedToken {
        let token = format!("ghs_{}", random_alphanumeric(36));
        let expires = SystemTime::now() + self.token_ttl;
        self.tokens.insert(
            token.clone(),
            Token {
                installation_id,
                expires_at: expires,
                revoked: false,
                scope,
            },
        );
        let issued = IssuedToken {
            installation_id,
            token,
            issued_at: Instant::now(),
            expires_at: DateTime::<Utc>::from(expires),
        };
        self.issued.push(issued.clone());
        issued
    }

    fn valid_token(&self, token: &str) -> Option<&Token> {
        self.tokens
            .get(token)
            .filter(|t| !t.revoked && SystemTime::now() < t.expires_at)
    }

    // -- records --------------------------------------------------------------

    fn record_arrival(&mut self, method: &str, path: &str, received_at: Instant) -> u64 {
        self.next_request_seq += 1;
        self.requests.push(RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            status: 0,
            installation_id: None,
            endpoint: None,
            received_at,
            seq: self.next_request_seq,
        });
        self.next_request_seq
    }

    fn recorded_request(&mut self, seq: u64) -> Option<&mut RecordedRequest> {
        // Recent requests are at the end; search from there.
        self.requests.iter_mut().rev().find(|r| r.seq == seq)
    }

    fn record_route(&mut self, seq: u64, installation_id: Option<u64>, endpoint: Option<Endpoint>) {
        if let Some(request) = self.recorded_request(seq) {
            request.installation_id = installation_id;
            request.endpoint = endpoint;
        }
    }

    fn record_status(&mut self, seq: u64, status: u16) {
        if let Some(request) = self.recorded_request(seq) {
            request.status = status;
        }
    }

    fn check_run_records(&self) -> impl Iterator<Item = &StoredCheckRun> {
        self.check_runs.iter().skip(self.check_run_records_from)
    }

    fn reset_records(&mut self) {
        self.requests.clear();
        self.issued.clear();
        self.redeliveries.clear();
        self.check_run_records_from = self.check_runs.len();
    }

    // -- faults -------------------------------------------------------------

    fn take_fault(&mut self, endpoint: Option<Endpoint>) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.endpoint == Endpoint::Any || Some(f.endpoint) == endpoint)?;
        let pending = &mut self.faults[index];
        pending.remaining -= 1;
        let fault = pending.fault.clone();
        if pending.remaining == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }

    // -- rate limits --------------------------------------------------------

    fn rate_window(&mut self, bucket: Bucket) -> &mut RateWindow {
        let now = epoch_secs();
        let window = self.rate.entry(bucket).or_insert(RateWindow {
            reset_epoch: now + RATE_WINDOW_SECS,
            used: 0,
        });
        if now >= window.reset_epoch {
            *window = RateWindow {
                reset_epoch: now + RATE_WINDOW_SECS,
                used: 0,
            };
        }
        window
    }

    fn peek_rate(&mut self, bucket: Bucket) -> RateSnapshot {
        let window = self.rate_window(bucket);
        RateSnapshot {
            limit: bucket.limit(),
            used: window.used,
            reset_epoch: window.reset_epoch,
        }
    }

    /// Charges one request; `Err` (with the headers to send) when the budget
    /// of the window is already spent.
    fn charge_rate(&mut self, bucket: Bucket) -> Result<RateSnapshot, RateSnapshot> {
        let limit = bucket.limit();
        let window = self.rate_window(bucket);
        if window.used >= limit {
            return Err(RateSnapshot {
                limit,
                used: limit,
                reset_epoch: window.reset_epoch,
            });
        }
        window.used += 1;
        Ok(RateSnapshot {
            limit,
            used: window.used,
            reset_epoch: window.reset_epoch,
        })
    }

    fn set_rate_remaining(&mut self, bucket: Bucket, remaining: u32) {
        let limit = bucket.limit();
        self.rate_window(bucket).used = limit.saturating_sub(remaining);
    }

    // -- deliveries ---------------------------------------------------------

    fn add_delivery(&mut self, new: NewDelivery) -> Delivery {
        let id = self.next_id();
        let status = new
            .status
            .unwrap_or_else(|| delivery_status(new.status_code));
        let delivered_at = new.delivered_at.unwrap_or_else(|| {
            let age =
                chrono::Duration::seconds(i64::try_from(new.age_secs).unwrap_or(i64::MAX / 2));
            Utc::now() - age
        });
        let delivery = Delivery {
            id,
            guid: new.guid.unwrap_or_else(random_guid),
            delivered_at,
            redelivery: new.redelivery,
            duration: new.duration,
            status,
            status_code: new.status_code,
            event: new.event,
            action: new.action,
            installation_id: new.installation_id,
            repository_id: new.repository_id,
            payload: new.payload,
        };
        self.deliveries.push(delivery.clone());
        delivery
    }

    fn deliveries_newest_first(&self) -> Vec<Delivery> {
        let mut list = self.deliveries.clone();
        list.sort_by(|a, b| b.delivered_at.cmp(&a.delivered_at).then(b.id.cmp(&a.id)));
        list
    }

    /// Records a redelivery request and, as GitHub does once it has
    /// redelivered, lists the outcome as a new delivery with the same GUID.
    fn redeliver(&mut self, delivery_id: u64) -> Option<()> {
        let original = self
            .deliveries
            .iter()
            .find(|d| d.id == delivery_id)?
            .clone();
        self.redeliveries.push(RedeliveryAttempt {
            delivery_id,
            guid: original.guid.clone(),
            received_at: Instant::now(),
        });
        let status_code = self.redelivery_status_code;
        self.add_delivery(NewDelivery {
            guid: Some(original.guid),
            event: original.event,
            action: original.action,
            status_code,
            status: None,
            installation_id: original.installation_id,
            repository_id: original.repository_id,
            redelivery: true,
            delivered_at: None,
            age_secs: 0,
            duration: 0.05,
            payload: original.payload,
        });
        Some(())
    }
}

impl Repo {
    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn info(&self) -> RepoInfo {
        RepoInfo {
            id: self.id,
            full_name: self.full_name(),
            owner: self.owner.clone(),
            name: self.name.clone(),
            installation_id: self.installation_id,
            default_branch: "main".to_owned(),
        }
    }

    fn find_issue_comment(&self, id: u64) -> Option<(&Thread, &IssueComment)> {
        self.threads
            .values()
            .find_map(|t| t.comments.iter().find(|c| c.id == id).map(|c| (t, c)))
    }

    fn find_review(&self, id: u64) -> Option<(&Thread, &Review)> {
        self.threads
            .values()
            .find_map(|t| t.reviews.iter().find(|r| r.id == id).map(|r| (t, r)))
    }

    fn find_review_comment(&self, id: u64) -> Option<(&Thread, &ReviewComment)> {
        self.threads.values().find_map(|t| {
            t.review_comments
                .iter()
                .find(|c| c.id == id)
                .map(|c| (t, c))
        })
    }

    /// Resolves a ref as `GET .../commits/{ref}/check-runs` does: a known
    /// SHA, a branch (a pull request's head or base) or `heads/...`.
    fn resolve_ref(&self, git_ref: &str) -> Option<String> {
        if self.commits.contains(git_ref) {
            return Some(git_ref.to_owned());
        }
        let branch = git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| git_ref.strip_prefix("heads/"))
            .unwrap_or(git_ref);
        self.threads.values().find_map(|t| {
            let pull = t.pull.as_ref()?;
            if pull.head_ref == branch {
                Some(pull.head_sha.clone())
            } else if pull.base_ref == branch {
                Some(self.base_sha.clone())
            } else {
                None
            }
        })
    }
}

impl Thread {
    fn new(number: u64, issue_id: u64, author: &str, now: DateTime<Utc>) -> Thread {
        Thread {
            number,
            issue_id,
            title: String::new(),
            body: None,
            author: author.to_owned(),
            state: PrState::Open,
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull: None,
            comments: Vec::new(),
            reviews: Vec::new(),
            review_comments: Vec::new(),
        }
    }

    fn head_sha(&self) -> &str {
        self.pull.as_ref().map_or("", |p| p.head_sha.as_str())
    }

    fn as_pull(&self) -> Option<PullRequest> {
        let pull = self.pull.as_ref()?;
        Some(PullRequest {
            number: self.number,
            title: self.title.clone(),
            body: self.body.clone(),
            head_sha: pull.head_sha.clone(),
            head_ref: pull.head_ref.clone(),
            base_ref: pull.base_ref.clone(),
            author: self.author.clone(),
            state: self.state,
            merged: pull.merged,
            draft: pull.draft,
        })
    }
}

fn delivery_status(status_code: u16) -> String {
    match status_code {
        200..=299 => "OK".to_owned(),
        0 => "failed to connect to host".to_owned(),
        code => format!("Invalid HTTP Response: {code}"),
    }
}

// ---------------------------------------------------------------------------
// JSON representations (shapes follow GitHub's REST docs and what octocrab's
// models require)
// ---------------------------------------------------------------------------

/// Where URLs inside bodies and `Link` headers point.
struct Urls {
    api: String,
    web: String,
}

impl Urls {
    fn for_host(host: &str) -> Urls {
        Urls {
            api: format!("http://{host}/api/v3"),
            web: format!("http://{host}"),
        }
    }

    fn repo_api(&self, repo: &Repo) -> String {
        format!("{}/repos/{}", self.api, repo.full_name())
    }

    fn repo_web(&self, repo: &Repo) -> String {
        format!("{}/{}", self.web, repo.full_name())
    }
}

mod render {
    use super::*;

    fn ts(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn ts_opt(at: Option<DateTime<Utc>>) -> Value {
        at.map_or(Value::Null, |at| Value::String(ts(at)))
    }

    /// `[` and `]` of bot logins are escaped in URLs, as GitHub does.
    fn escape_login(login: &str) -> String {
        login.replace('[', "%5B").replace(']', "%5D")
    }

    pub(super) fn user(urls: &Urls, login: &str) -> Value {
        account(
            urls,
            login,
            if login.ends_with("[bot]") {
                "Bot"
            } else {
                "User"
            },
        )
    }

    pub(super) fn account(urls: &Urls, login: &str, kind: &str) -> Value {
        let id = user_id(login);
        let esc = escape_login(login);
        let api = format!("{}/users/{esc}", urls.api);
        let html_url = match login.strip_suffix("[bot]") {
            Some(slug) => format!("{}/apps/{slug}", urls.web),
            None => format!("{}/{esc}", urls.web),
        };
        let prefix = match kind {
            "Bot" => "BOT_kgDO",
            "Organization" => "O_kgDO",
            _ => "U_kgDO",
        };
        json!({
            "login": login,
            "id": id,
            "node_id": node_id(prefix, id),
            "avatar_url": format!("{}/avatars/u/{id}?", urls.web),
            "gravatar_id": "",
            "url": api,
            "html_url": html_url,
            "followers_url": format!("{api}/followers"),
            "following_url": format!("{api}/following{{/other_user}}"),
            "gists_url": format!("{api}/gists{{/gist_id}}"),
            "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/subscriptions"),
            "organizations_url": format!("{api}/orgs"),
            "repos_url": format!("{api}/repos"),
            "events_url": format!("{api}/events{{/privacy}}"),
            "received_events_url": format!("{api}/received_events"),
            "type": kind,
            "user_view_type": "public",
            "site_admin": false,
        })
    }

    fn author_association(repo: &Repo, login: &str) -> &'static str {
        if login.eq_ignore_ascii_case(&repo.owner) {
            "OWNER"
        } else if login.ends_with("[bot]") {
            "NONE"
        } else {
            "CONTRIBUTOR"
        }
    }

    fn reactions(url: &str) -> Value {
        json!({
            "url": format!("{url}/reactions"),
            "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
            "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
        })
    }

    /// The `*_url` templates of a repository: `(key, path after the repo URL)`.
    const REPO_URL_TEMPLATES: [(&str, &str); 36] = [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ];

    pub(super) fn repo(urls: &Urls, repo: &Repo) -> Value {
        let api = urls.repo_api(repo);
        let web = urls.repo_web(repo);
        let host = urls.web.trim_start_matches("http://");
        let open_issues = repo
            .threads
            .values()
            .filter(|t| t.state == PrState::Open)
            .count();
        let mut value = json!({
            "id": repo.id,
            "node_id": node_id("R_kgDO", repo.id),
            "name": repo.name,
            "full_name": repo.full_name(),
            "private": true,
            "owner": account(urls, &repo.owner, "Organization"),
            "html_url": web,
            "description": null,
            "fork": false,
            "url": api,
            "git_url": format!("git://{host}/{}.git", repo.full_name()),
            "ssh_url": format!("git@{host}:{}.git", repo.full_name()),
            "clone_url": format!("{web}.git"),
            "svn_url": web,
            "mirror_url": null,
            "homepage": null,
            "language": "Rust",
            "size": 108,
            "default_branch": "main",
            "visibility": "private",
            "pushed_at": ts(repo.created_at),
            "created_at": ts(repo.created_at),
            "updated_at": ts(repo.created_at),
        });
        let counters = json!({
            "forks_count": 0, "stargazers_count": 0, "watchers_count": 0,
            "open_issues_count": open_issues, "forks": 0, "open_issues": open_issues, "watchers": 0,
            "is_template": false, "topics": [], "has_issues": true, "has_projects": true,
            "has_wiki": false, "has_pages": false, "has_downloads": true, "has_discussions": false,
            "archived": false, "disabled": false, "allow_forking": true,
            "web_commit_signoff_required": false,
        });
        extend(&mut value, counters);
        for (key, suffix) in REPO_URL_TEMPLATES {
            value[key] = Value::String(format!("{api}{suffix}"));
        }
        value
    }

    fn branch(urls: &Urls, repo: &Repo, git_ref: &str, sha: &str) -> Value {
        json!({
            "label": format!("{}:{git_ref}", repo.owner),
            "ref": git_ref,
            "sha": sha,
            "user": account(urls, &repo.owner, "Organization"),
            "repo": self::repo(urls, repo),
        })
    }

    pub(super) fn pull(urls: &Urls, repo: &Repo, thread: &Thread) -> Value {
        let Some(pull) = &thread.pull else {
            return Value::Null;
        };
        let api = urls.repo_api(repo);
        let web = urls.repo_web(repo);
        let n = thread.number;
        let url = format!("{api}/pulls/{n}");
        let html_url = format!("{web}/pull/{n}");
        let issue_url = format!("{api}/issues/{n}");
        let statuses_url = format!("{api}/statuses/{}", pull.head_sha);
        let links = json!({
            "self": {"href": url},
            "html": {"href": html_url},
            "issue": {"href": issue_url},
            "comments": {"href": format!("{issue_url}/comments")},
            "review_comments": {"href": format!("{url}/comments")},
            "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{url}/commits")},
            "statuses": {"href": statuses_url},
        });
        let open = thread.state == PrState::Open;
        let mut value = json!({
            "url": url,
            "id": pull.id,
            "node_id": node_id("PR_kwDO", pull.id),
            "html_url": html_url,
            "diff_url": format!("{html_url}.diff"),
            "patch_url": format!("{html_url}.patch"),
            "issue_url": issue_url,
            "commits_url": format!("{url}/commits"),
            "review_comments_url": format!("{url}/comments"),
            "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
            "comments_url": format!("{issue_url}/comments"),
            "statuses_url": statuses_url,
            "number": n,
            "state": thread.state.as_str(),
            "locked": false,
            "title": thread.title,
            "user": user(urls, &thread.author),
            "body": thread.body,
            "created_at": ts(thread.created_at),
            "updated_at": ts(thread.updated_at),
            "closed_at": ts_opt(thread.closed_at),
            "merged_at": ts_opt(pull.merged_at),
            "merge_commit_sha": pull.merged.then(|| fake_sha(&format!("merge:{}", pull.head_sha))),
            "head": branch(urls, repo, &pull.head_ref, &pull.head_sha),
            "base": branch(urls, repo, &pull.base_ref, &repo.base_sha),
            "_links": links,
        });
        let rest = json!({
            "labels": [],
            "milestone": null,
            "active_lock_reason": null,
            "assignee": null,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "author_association": author_association(repo, &thread.author),
            "auto_merge": null,
            "draft": pull.draft,
            "merged": pull.merged,
            "mergeable": if open { json!(true) } else { Value::Null },
            "rebaseable": if open { json!(true) } else { Value::Null },
            "mergeable_state": if open { "clean" } else { "unknown" },
            "merged_by": if pull.merged { user(urls, &repo.owner) } else { Value::Null },
            "comments": thread.comments.len(),
            "review_comments": thread.review_comments.len(),
            "maintainer_can_modify": false,
            "commits": 1,
            "additions": 3,
            "deletions": 1,
            "changed_files": 1,
        });
        extend(&mut value, rest);
        value
    }

    /// Adds the keys of `more` to the object `value` (keeps `json!` calls
    /// under the macro recursion limit).
    fn extend(value: &mut Value, more: Value) {
        if let (Some(object), Value::Object(more)) = (value.as_object_mut(), more) {
            object.extend(more);
        }
    }

    pub(super) fn issue(urls: &Urls, repo: &Repo, thread: &Thread) -> Value {
        let api = urls.repo_api(repo);
        let web = urls.repo_web(repo);
        let n = thread.number;
        let url = format!("{api}/issues/{n}");
        let mut issue = json!({
            "url": url,
            "repository_url": api,
            "labels_url": format!("{url}/labels{{/name}}"),
            "comments_url": format!("{url}/comments"),
            "events_url": format!("{url}/events"),
            "html_url": format!("{web}/{}/{n}", if thread.pull.is_some() { "pull" } else { "issues" }),
            "id": thread.issue_id,
            "node_id": node_id(if thread.pull.is_some() { "PR_kwDO" } else { "I_kwDO" }, thread.issue_id),
            "number": n,
            "title": thread.title,
            "user": user(urls, &thread.author),
            "labels": [],
            "state": thread.state.as_str(),
            "locked": false,
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "comments": thread.comments.len(),
            "created_at": ts(thread.created_at),
            "updated_at": ts(thread.updated_at),
            "closed_at": ts_opt(thread.closed_at),
            "author_association": author_association(repo, &thread.author),
            "active_lock_reason": null,
            "body": thread.body,
            "closed_by": null,
            "reactions": reactions(&url),
            "timeline_url": format!("{url}/timeline"),
            "performed_via_github_app": null,
            "state_reason": if thread.state == PrState::Closed { json!("completed") } else { Value::Null },
        });
        if let Some(pull) = &thread.pull {
            let html = format!("{web}/pull/{n}");
            issue["draft"] = json!(pull.draft);
            issue["pull_request"] = json!({
                "url": format!("{api}/pulls/{n}"),
                "html_url": html,
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "merged_at": ts_opt(pull.merged_at),
            });
        }
        issue
    }

    pub(super) fn issue_comment(
        urls: &Urls,
        repo: &Repo,
        thread: &Thread,
        c: &IssueComment,
    ) -> Value {
        let api = urls.repo_api(repo);
        let web = urls.repo_web(repo);
        let url = format!("{api}/issues/comments/{}", c.id);
        let kind = if thread.pull.is_some() {
            "pull"
        } else {
            "issues"
        };
        json!({
            "url": url,
            "html_url": format!("{web}/{kind}/{}#issuecomment-{}", thread.number, c.id),
            "issue_url": format!("{api}/issues/{}", thread.number),
            "id": c.id,
            "node_id": node_id("IC_kwDO", c.id),
            "user": user(urls, &c.author),
            "created_at": ts(c.created_at),
            "updated_at": ts(c.created_at),
            "author_association": author_association(repo, &c.author),
            "body": c.body,
            "reactions": reactions(&url),
            "performed_via_github_app": null,
        })
    }

    pub(super) fn review(urls: &Urls, repo: &Repo, thread: &Thread, r: &Review) -> Value {
        let api = urls.repo_api(repo);
        let web = urls.repo_web(repo);
        let html_url = format!("{web}/pull/{}#pullrequestreview-{}", thread.number, r.id);
        let pull_url = format!("{api}/pulls/{}", thread.number);
        let mut review = json!({
            "id": r.id,
            "node_id": node_id("PRR_kwDO", r.id),
            "user": user(urls, &r.author),
            "body": r.body,
            "state": r.state.as_str(),
            "html_url": html_url,
            "pull_request_url": pull_url,
            "author_association": author_association(repo, &r.author),
            "_links": {
                "html": {"href": html_url},
                "pull_request": {"href": pull_url},
            },
            "commit_id": r.commit_id,
        });
        // Pending reviews have not been submitted, so GitHub omits the time.
        if r.state != ReviewState::Pending {
            review["submitted_at"] = json!(ts(r.submitted_at));
        }
        review
    }

    pub(super) fn review_comment(
        urls: &Urls,
        repo: &Repo,
        thread: &Thread,
        c: &ReviewComment,
    ) -> Value {
        let api = urls.repo_api(repo);
        let web = urls.repo_web(repo);
        let url = format!("{api}/pulls/comments/{}", c.id);
        let html_url = format!("{web}/pull/{}#discussion_r{}", thread.number, c.id);
        let pull_url = format!("{api}/pulls/{}", thread.number);
        json!({
            "url": url,
            "pull_request_review_id": c.review_id,
            "id": c.id,
            "node_id": node_id("PRRC_kwDO", c.id),
            "diff_hunk": "@@ -1,3 +1,4 @@\n # Notes\n+- [ ] follow-up",
            "path": "README.md",
            "position": 2,
            "original_position": 2,
            "commit_id": c.commit_id,
            "original_commit_id": c.commit_id,
            "user": user(urls, &c.author),
            "body": c.body,
            "created_at": ts(c.created_at),
            "updated_at": ts(c.created_at),
            "html_url": html_url,
            "pull_request_url": pull_url,
            "author_association": author_association(repo, &c.author),
            "_links": {
                "self": {"href": url},
                "html": {"href": html_url},
                "pull_request": {"href": pull_url},
            },
            "reactions": reactions(&url),
            "start_line": null,
            "original_start_line": null,
            "start_side": null,
            "line": 2,
            "original_line": 2,
            "side": "RIGHT",
            "subject_type": "line",
        })
    }

    pub(super) fn app(urls: &Urls, app_id: u64) -> Value {
        json!({
            "id": app_id,
            "slug": APP_SLUG,
            "node_id": node_id("A_kwHO", app_id),
            "client_id": format!("Iv1.{:016x}", app_id),
            "owner": account(urls, "task-list-org", "Organization"),
            "name": APP_SLUG,
            "description": "Keeps a task-list-completed check on every pull request",
            "external_url": "https://example.invalid/task-list-bot",
            "html_url": format!("{}/apps/{APP_SLUG}", urls.web),
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": permissions(),
            "events": ["issue_comment", "merge_group", "pull_request", "pull_request_review", "pull_request_review_comment"],
            "installations_count": 1,
        })
    }

    pub(super) fn permissions() -> Value {
        json!({"checks": "write", "issues": "read", "metadata": "read", "pull_requests": "read"})
    }

    pub(super) fn installation(
        urls: &Urls,
        app_id: u64,
        installation_id: u64,
        account_login: &str,
    ) -> Value {
        json!({
            "id": installation_id,
            "account": account(urls, account_login, "Organization"),
            "repository_selection": "selected",
            "access_tokens_url": format!("{}/app/installations/{installation_id}/access_tokens", urls.api),
            "repositories_url": format!("{}/installation/repositories", urls.api),
            "html_url": format!("{}/organizations/{account_login}/settings/installations/{installation_id}", urls.web),
            "app_id": app_id,
            "app_slug": APP_SLUG,
            "client_id": format!("Iv1.{:016x}", app_id),
            "target_id": user_id(account_login),
            "target_type": "Organization",
            "permissions": permissions(),
            "events": ["issue_comment", "merge_group", "pull_request", "pull_request_review", "pull_request_review_comment"],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "single_file_name": null,
            "has_multiple_single_files": false,
            "single_file_paths": [],
            "suspended_by": null,
            "suspended_at": null,
        })
    }

    /// The short pull-request references GitHub puts in a check run.
    fn check_run_pulls(urls: &Urls, repo: &Repo, head_sha: &str) -> Vec<Value> {
        let repo_min = json!({"id": repo.id, "url": urls.repo_api(repo), "name": repo.name});
        repo.threads
            .values()
            .filter(|t| t.state == PrState::Open)
            .filter_map(|t| t.pull.as_ref().map(|p| (t, p)))
            .filter(|(_, p)| p.head_sha == head_sha)
            .map(|(t, p)| {
                json!({
                    "url": format!("{}/pulls/{}", urls.repo_api(repo), t.number),
                    "id": p.id,
                    "number": t.number,
                    "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": repo_min},
                    "base": {"ref": p.base_ref, "sha": repo.base_sha, "repo": repo_min},
                })
            })
            .collect()
    }

    pub(super) fn check_run(
        urls: &Urls,
        app_id: u64,
        repo: &Repo,
        stored: &StoredCheckRun,
    ) -> Value {
        let run = &stored.run;
        let url = format!("{}/check-runs/{}", urls.repo_api(repo), stored.id);
        let html_url = format!("{}/runs/{}", urls.repo_web(repo), stored.id);
        let output = match &run.output {
            Some(o) => json!({
                "title": o.title, "summary": o.summary, "text": o.text,
                "annotations_count": o.annotations_count,
                "annotations_url": format!("{url}/annotations"),
            }),
            None => json!({
                "title": null, "summary": null, "text": null,
                "annotations_count": 0,
                "annotations_url": format!("{url}/annotations"),
            }),
        };
        json!({
            "id": stored.id,
            "head_sha": stored.head_sha,
            "node_id": node_id("CR_kwDO", stored.id),
            "external_id": run.external_id.clone().unwrap_or_default(),
            "url": url,
            "html_url": html_url,
            "details_url": run.details_url.clone().unwrap_or_else(|| "https://example.invalid/task-list-bot".to_owned()),
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": ts(run.started_at),
            "completed_at": ts_opt(run.completed_at),
            "output": output,
            "name": run.name,
            "check_suite": {"id": stored.suite_id},
            "app": app(urls, app_id),
            "pull_requests": check_run_pulls(urls, repo, &stored.head_sha),
        })
    }

    pub(super) fn delivery(d: &Delivery) -> Value {
        json!({
            "id": d.id,
            "guid": d.guid,
            "delivered_at": ts(d.delivered_at),
            "redelivery": d.redelivery,
            "duration": d.duration,
            "status": d.status,
            "status_code": d.status_code,
            "event": d.event,
            "action": d.action,
            "installation_id": d.installation_id,
            "repository_id": d.repository_id,
            "throttled_at": null,
        })
    }

    pub(super) fn delivery_detail(urls: &Urls, d: &Delivery) -> Value {
        let mut detail = delivery(d);
        detail["url"] = json!(format!("{}/webhook", urls.web));
        detail["request"] = json!({
            "headers": {
                "Accept": "*/*",
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/fake",
                "X-GitHub-Delivery": d.guid,
                "X-GitHub-Event": d.event,
            },
            "payload": d.payload,
        });
        detail["response"] = json!({"headers": {}, "payload": null});
        detail
    }
}

// ---------------------------------------------------------------------------
// HTTP: one dispatcher, a route table, and a fixed pipeline
// ---------------------------------------------------------------------------

/// A response before the common headers are added.
struct Reply {
    status: StatusCode,
    body: Value,
    headers: Vec<(HeaderName, String)>,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// GitHub's error body: `{"message", "documentation_url", "status"}`.
    fn error(status: StatusCode, message: &str, documentation_url: &str) -> Reply {
        Reply::json(
            status,
            json!({
                "message": message,
                "documentation_url": documentation_url,
                "status": status.as_str(),
            }),
        )
    }

    fn not_found(docs: &str) -> Reply {
        Reply::error(StatusCode::NOT_FOUND, "Not Found", docs)
    }

    fn unprocessable(message: &str, docs: &str) -> Reply {
        Reply::error(StatusCode::UNPROCESSABLE_ENTITY, message, docs)
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers
            .push((HeaderName::from_static(name), value.into()));
        self
    }
}

/// What the pipeline learned about a request, for its headers and record.
struct Exchange {
    /// The request's record in [`Model::requests`].
    seq: u64,
    installation_id: Option<u64>,
    endpoint: Option<Endpoint>,
    bucket: Bucket,
    rate: Option<RateSnapshot>,
    /// The installation token presented, if it was valid.
    token: Option<String>,
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let reply = Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
                DOCS_REST,
            );
            return plain_response(reply);
        }
    };
    if path == "/_fake" || path.starts_with("/_fake/") {
        return admin::handle(&shared, &parts, &body);
    }

    let received_at = Instant::now();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let seq = shared
        .model()
        .record_arrival(parts.method.as_str(), &path_and_query, received_at);

    let mut exchange = Exchange {
        seq,
        installation_id: None,
        endpoint: None,
        bucket: Bucket::Anonymous,
        rate: None,
        token: None,
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| shared.addr.to_string(), str::to_owned);
    let call = Call {
        shared: &shared,
        urls: Urls::for_host(&host),
        query: parse_query(parts.uri.query()),
        headers: &parts.headers,
        body: &body,
    };
    let api_path = path.strip_prefix("/api/v3").unwrap_or(&path);
    let reply = serve_api(&call, parts.method.as_str(), api_path, &mut exchange).await;

    let mut model = shared.model();
    let rate = match exchange.rate {
        Some(rate) => rate,
        None => model.peek_rate(exchange.bucket),
    };
    model.record_status(seq, reply.status.as_u16());
    drop(model);
    github_response(reply, rate)
}

/// Everything a handler may look at.
struct Call<'a> {
    shared: &'a Shared,
    urls: Urls,
    query: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Call<'_> {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The pipeline: route → authenticate → injected fault → primary rate
/// limit → handler. Faults come after authentication so that they only hit
/// requests a correctly configured client would have had answered.
async fn serve_api(call: &Call<'_>, method: &str, path: &str, ex: &mut Exchange) -> Reply {
    let Some(route) = Route::parse(method, path) else {
        return Reply::not_found(DOCS_REST);
    };
    ex.endpoint = route.endpoint();
    if let Route::AccessToken { installation_id } = route {
        ex.installation_id = Some(installation_id);
    }
    let authenticated = authenticate(call, &route, ex);
    // Recorded now, so that a request whose client hangs up before the
    // answer (say, during a slow fault) still shows what it was for.
    call.shared
        .model()
        .record_route(ex.seq, ex.installation_id, ex.endpoint);
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(reply) => return reply,
    };

    let fault = call.shared.model().take_fault(ex.endpoint);
    if let Some(fault) = fault {
        if let Fault::Slow(delay) = fault {
            tokio::time::sleep(delay).await;
        }
        if let Some(reply) = fault_reply(call, fault, ex) {
            return reply;
        }
    }

    if !matches!(route, Route::RateLimit) && !contents::not_modified(call, &route) {
        let charged = call.shared.model().charge_rate(ex.bucket);
        match charged {
            Ok(rate) => ex.rate = Some(rate),
            Err(rate) => {
                ex.rate = Some(rate);
                let message = ex.bucket.exceeded_message(call.shared.app_id);
                return Reply::error(StatusCode::FORBIDDEN, &message, DOCS_RATE_PRIMARY);
            }
        }
    }
    route.handle(call, &caller)
}

/// Adds the headers GitHub sends on every API response.
fn github_response(reply: Reply, rate: RateSnapshot) -> Response {
    let mut response = plain_response(reply);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-github-request-id", request_id());
    set("x-github-api-version-selected", "2022-11-28".to_owned());
    set("x-github-media-type", "github.v3; format=json".to_owned());
    set("x-ratelimit-limit", rate.limit.to_string());
    set("x-ratelimit-remaining", rate.remaining().to_string());
    set("x-ratelimit-used", rate.used.to_string());
    set("x-ratelimit-reset", rate.reset_epoch.to_string());
    set("x-ratelimit-resource", "core".to_owned());
    response
}

/// The reply as a response with a JSON body and its own headers.
fn plain_response(reply: Reply) -> Response {
    let body = if matches!(
        reply.status,
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    ) {
        Body::empty()
    } else if let (true, Value::String(raw)) = (contents::is_raw(&reply), &reply.body) {
        Body::from(raw.clone())
    } else {
        Body::from(reply.body.to_string())
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// The answer a fault gives instead of the real one; `None` for
/// [`Fault::Slow`], which only delays the real answer.
fn fault_reply(call: &Call<'_>, fault: Fault, ex: &mut Exchange) -> Option<Reply> {
    let secondary = || {
        format!(
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. \
             If you reach out to GitHub Support for help, please include the request ID {}.",
            request_id()
        )
    };
    let reply = match fault {
        Fault::ServerError(code) => {
            // Only error statuses make sense here; anything else becomes 500.
            let status = StatusCode::from_u16(code)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match status.as_u16() {
                500 | 502 => "Server Error",
                503 => "Service Unavailable",
                504 => {
                    "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request and contact us if the problem persists."
                }
                _ => status.canonical_reason().unwrap_or("Server Error"),
            };
            Reply::error(status, message, DOCS_REST)
        }
        Fault::SecondaryRateLimit { retry_after_secs } => {
            Reply::error(StatusCode::FORBIDDEN, &secondary(), DOCS_RATE_SECONDARY)
                .header("retry-after", retry_after_secs.to_string())
        }
        Fault::RateLimited429 { retry_after_secs } => Reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            &secondary(),
            DOCS_RATE_SECONDARY,
        )
        .header("retry-after", retry_after_secs.to_string()),
        Fault::PrimaryRateLimitExhausted { reset_in_secs } => {
            let limit = ex.bucket.limit();
            ex.rate = Some(RateSnapshot {
                limit,
                used: limit,
                reset_epoch: epoch_secs() + reset_in_secs,
            });
            let message = ex.bucket.exceeded_message(call.shared.app_id);
            Reply::error(StatusCode::FORBIDDEN, &message, DOCS_RATE_PRIMARY)
        }
        Fault::ExpiredToken => {
            if let Some(token) = &ex.token {
                if let Some(token) = call.shared.model().tokens.get_mut(token) {
                    token.revoked = true;
                }
            }
            Reply::error(StatusCode::UNAUTHORIZED, MSG_BAD_CREDENTIALS, DOCS_REST)
        }
        Fault::Slow(_) => return None,
    };
    Some(reply)
}

// -- routing ------------------------------------------------------------------

/// How a path names a repository: `/repos/{owner}/{name}/...` or, as in
/// the `Link` headers GitHub sends, `/repositories/{id}/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RepoPath {
    Named(String),
    Id(u64),
}

impl RepoPath {
    fn find<'m>(&self, model: &'m Model) -> Option<&'m Repo> {
        match self {
            RepoPath::Named(full_name) => model.repo(full_name).ok(),
            RepoPath::Id(id) => model.repos.values().find(|r| r.id == *id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    AccessToken { installation_id: u64 },
    GetApp,
    GetInstallation(u64),
    GetRepoInstallation(RepoPath),
    ListDeliveries,
    GetDelivery(u64),
    RedeliverAttempt(u64),
    RateLimit,
    GetRepo(RepoPath),
    GetPull(RepoPath, u64),
    GetIssue(RepoPath, u64),
    ListIssueComments(RepoPath, u64),
    ListReviews(RepoPath, u64),
    ListReviewComments(RepoPath, u64),
    CreateCheckRun(RepoPath),
    GetCheckRun(RepoPath, u64),
    ListCheckRunsForRef(RepoPath, String),
    GetContents(RepoPath, String),
}

/// How a route must be authenticated.
enum AuthKind {
    AppJwt,
    InstallationToken,
}

/// Who is calling, once authenticated.
enum Caller {
    App,
    Installation {
        id: u64,
        scope: Option<BTreeSet<String>>,
    },
}

impl Route {
    /// `path` is without the `/api/v3` prefix and without the query.
    fn parse(method: &str, path: &str) -> Option<Route> {
        let segments: Vec<String> = path
            .strip_prefix('/')?
            .split('/')
            .map(percent_decode)
            .collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let num = |text: &str| text.parse::<u64>().ok();
        let (repo, rest) = match s.as_slice() {
            ["repos", owner, name, rest @ ..] => (RepoPath::Named(format!("{owner}/{name}")), rest),
            ["repositories", id, rest @ ..] => (RepoPath::Id(num(id)?), rest),
            _ => return Self::parse_app(method, &s),
        };
        let route = match (method, rest) {
            ("GET", []) => Route::GetRepo(repo),
            ("GET", ["installation"]) => Route::GetRepoInstallation(repo),
            ("GET", ["pulls", n]) => Route::GetPull(repo, num(n)?),
            ("GET", ["issues", n]) => Route::GetIssue(repo, num(n)?),
            ("GET", ["issues", n, "comments"]) => Route::ListIssueComments(repo, num(n)?),
            ("GET", ["pulls", n, "reviews"]) => Route::ListReviews(repo, num(n)?),
            ("GET", ["pulls", n, "comments"]) => Route::ListReviewComments(repo, num(n)?),
            ("POST", ["check-runs"]) => Route::CreateCheckRun(repo),
            ("GET", ["check-runs", id]) => Route::GetCheckRun(repo, num(id)?),
            ("GET", ["commits", git_ref @ .., "check-runs"]) if !git_ref.is_empty() => {
                Route::ListCheckRunsForRef(repo, git_ref.join("/"))
            }
            _ => return contents::route(repo, method, rest),
        };
        Some(route)
    }

    /// Routes that are not about one repository.
    fn parse_app(method: &str, segments: &[&str]) -> Option<Route> {
        let num = |text: &str| text.parse::<u64>().ok();
        let route = match (method, segments) {
            ("POST", ["app", "installations", id, "access_tokens"]) => Route::AccessToken {
                installation_id: num(id)?,
            },
            ("GET", ["app"]) => Route::GetApp,
            ("GET", ["app", "installations", id]) => Route::GetInstallation(num(id)?),
            ("GET", ["app", "hook", "deliveries"]) => Route::ListDeliveries,
            ("GET", ["app", "hook", "deliveries", id]) => Route::GetDelivery(num(id)?),
            ("POST", ["app", "hook", "deliveries", id, "attempts"]) => {
                Route::RedeliverAttempt(num(id)?)
            }
            ("GET", ["rate_limit"]) => Route::RateLimit,
            _ => return None,
        };
        Some(route)
    }

    fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Route::AccessToken { .. } => Some(Endpoint::AccessToken),
            Route::GetPull(..) => Some(Endpoint::GetPull),
            Route::ListIssueComments(..) => Some(Endpoint::ListIssueComments),
            Route::ListReviews(..) => Some(Endpoint::ListReviews),
            Route::ListReviewComments(..) => Some(Endpoint::ListReviewComments),
            Route::CreateCheckRun(_) => Some(Endpoint::CreateCheckRun),
            Route::ListCheckRunsForRef(..) => Some(Endpoint::ListCheckRunsForRef),
            Route::ListDeliveries => Some(Endpoint::ListDeliveries),
            Route::RedeliverAttempt(_) => Some(Endpoint::RedeliverAttempt),
            _ => None,
        }
    }

    fn auth_kind(&self) -> AuthKind {
        match self {
            Route::AccessToken { .. }
            | Route::GetApp
            | Route::GetInstallation(_)
            | Route::GetRepoInstallation(_)
            | Route::ListDeliveries
            | Route::GetDelivery(_)
            | Route::RedeliverAttempt(_) => AuthKind::AppJwt,
            _ => AuthKind::InstallationToken,
        }
    }

    /// The page of GitHub's docs its errors point to.
    fn docs(&self) -> &'static str {
        match self {
            Route::AccessToken { .. } => {
                "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
            }
            Route::GetApp => "https://docs.github.com/rest/apps/apps#get-the-authenticated-app",
            Route::GetInstallation(_) => {
                "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app"
            }
            Route::GetRepoInstallation(_) => {
                "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app"
            }
            Route::ListDeliveries => {
                "https://docs.github.com/rest/apps/webhooks#list-deliveries-for-an-app-webhook"
            }
            Route::GetDelivery(_) => {
                "https://docs.github.com/rest/apps/webhooks#get-a-delivery-for-an-app-webhook"
            }
            Route::RedeliverAttempt(_) => {
                "https://docs.github.com/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook"
            }
            Route::RateLimit => {
                "https://docs.github.com/rest/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user"
            }
            Route::GetRepo(_) => "https://docs.github.com/rest/repos/repos#get-a-repository",
            Route::GetPull(..) => "https://docs.github.com/rest/pulls/pulls#get-a-pull-request",
            Route::GetIssue(..) => "https://docs.github.com/rest/issues/issues#get-an-issue",
            Route::ListIssueComments(..) => {
                "https://docs.github.com/rest/issues/comments#list-issue-comments"
            }
            Route::ListReviews(..) => {
                "https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request"
            }
            Route::ListReviewComments(..) => {
                "https://docs.github.com/rest/pulls/comments#list-review-comments-on-a-pull-request"
            }
            Route::CreateCheckRun(_) => {
                "https://docs.github.com/rest/checks/runs#create-a-check-run"
            }
            Route::GetCheckRun(..) => "https://docs.github.com/rest/checks/runs#get-a-check-run",
            Route::ListCheckRunsForRef(..) => {
                "https://docs.github.com/rest/checks/runs#list-check-runs-for-a-git-reference"
            }
            Route::GetContents(..) => contents::docs(),
        }
    }

    fn repo_path(&self) -> Option<&RepoPath> {
        match self {
            Route::GetRepo(r)
            | Route::GetRepoInstallation(r)
            | Route::GetPull(r, _)
            | Route::GetIssue(r, _)
            | Route::ListIssueComments(r, _)
            | Route::ListReviews(r, _)
            | Route::ListReviewComments(r, _)
            | Route::CreateCheckRun(r)
            | Route::GetCheckRun(r, _)
            | Route::ListCheckRunsForRef(r, _)
            | Route::GetContents(r, _) => Some(r),
            _ => None,
        }
    }

    fn handle(&self, call: &Call<'_>, caller: &Caller) -> Reply {
        let docs = self.docs();
        // A repository the caller may not see is indistinguishable from one
        // that does not exist: GitHub answers 404 to both.
        if let (Some(path), Caller::Installation { id, scope }) = (self.repo_path(), caller) {
            let model = call.shared.model();
            let visible = path.find(&model).is_some_and(|repo| {
                repo.installation_id == *id
                    && scope
                        .as_ref()
                        .is_none_or(|s| s.contains(&repo_key(&repo.full_name())))
            });
            if !visible {
                return Reply::not_found(docs);
            }
        }
        match self {
            Route::AccessToken { installation_id } => {
                handlers::access_token(call, *installation_id, docs)
            }
            Route::GetApp => {
                Reply::json(StatusCode::OK, render::app(&call.urls, call.shared.app_id))
            }
            Route::GetInstallation(id) => handlers::installation(call, *id, docs),
            Route::GetRepoInstallation(repo) => handlers::repo_installation(call, repo, docs),
            Route::ListDeliveries => handlers::list_deliveries(call),
            Route::GetDelivery(id) => handlers::get_delivery(call, *id, docs),
            Route::RedeliverAttempt(id) => handlers::redeliver(call, *id, docs),
            Route::RateLimit => handlers::rate_limit(call, caller),
            Route::GetRepo(repo) => handlers::get_repo(call, repo, docs),
            Route::GetPull(repo, n) => handlers::get_pull(call, repo, *n, docs),
            Route::GetIssue(repo, n) => handlers::get_issue(call, repo, *n, docs),
            Route::ListIssueComments(repo, n) => {
                handlers::list_thread_items(call, repo, *n, ThreadItems::IssueComments, docs)
            }
            Route::ListReviews(repo, n) => {
                handlers::list_thread_items(call, repo, *n, ThreadItems::Reviews, docs)
            }
            Route::ListReviewComments(repo, n) => {
                handlers::list_thread_items(call, repo, *n, ThreadItems::ReviewComments, docs)
            }
            Route::CreateCheckRun(repo) => handlers::create_check_run(call, repo, caller, docs),
            Route::GetCheckRun(repo, id) => handlers::get_check_run(call, repo, *id, docs),
            Route::ListCheckRunsForRef(repo, git_ref) => {
                handlers::list_check_runs(call, repo, git_ref, docs)
            }
            Route::GetContents(repo, path) => contents::get(call, repo, path, caller),
        }
    }
}

// -- authentication -------------------------------------------------------------

/// The credential of an `Authorization: Bearer X` or `token X` header.
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        Some(rest.trim())
    } else {
        None
    }
}

fn authenticate(call: &Call<'_>, route: &Route, ex: &mut Exchange) -> Result<Caller, Reply> {
    let unauthorized = |message: &str| Reply::error(StatusCode::UNAUTHORIZED, message, DOCS_REST);
    let Some(credential) = credential(call.headers) else {
        return Err(unauthorized(MSG_REQUIRES_AUTH));
    };
    match route.auth_kind() {
        AuthKind::AppJwt => {
            verify_app_jwt(call.shared, credential).map_err(unauthorized)?;
            ex.bucket = Bucket::App;
            Ok(Caller::App)
        }
        AuthKind::InstallationToken => {
            let model = call.shared.model();
            let Some(token) = model.valid_token(credential) else {
                return Err(unauthorized(MSG_BAD_CREDENTIALS));
            };
            ex.installation_id = Some(token.installation_id);
            ex.bucket = Bucket::Installation(token.installation_id);
            ex.token = Some(credential.to_owned());
            Ok(Caller::Installation {
                id: token.installation_id,
                scope: token.scope.clone(),
            })
        }
    }
}

/// Checks an app JWT the way GitHub does, with GitHub's messages.
fn verify_app_jwt(shared: &Shared, jwt: &str) -> Result<(), &'static str> {
    let mut validation = Validation::new(Algorithm::RS256);
    // The time claims are checked below, to answer with GitHub's messages.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(jwt, &shared.key, &validation)
        .map_err(|_| MSG_JWT_UNDECODABLE)?
        .claims;

    // A valid signature with another app's id is what a wrong app id looks
    // like to GitHub: the key of *that* app does not verify it.
    let issuer = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if issuer != Some(shared.app_id) {
        return Err(MSG_JWT_UNDECODABLE);
    }
    let now = i64::try_from(epoch_secs()).unwrap_or(i64::MAX);
    let time_claim = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    };
    let iat = time_claim("iat").ok_or(MSG_JWT_IAT)?;
    if iat > now + JWT_IAT_SKEW_SECS {
        return Err(MSG_JWT_IAT);
    }
    let exp = time_claim("exp").ok_or(MSG_JWT_EXP)?;
    if exp <= now {
        return Err(MSG_JWT_EXP);
    }
    if exp > now + JWT_MAX_LIFETIME_SECS || exp - iat > JWT_MAX_LIFETIME_SECS {
        return Err(MSG_JWT_EXP_TOO_FAR);
    }
    Ok(())
}

// -- handlers -----------------------------------------------------------------

enum ThreadItems {
    IssueComments,
    Reviews,
    ReviewComments,
}

mod handlers {
    use super::*;

    /// Parses a JSON request body; an empty body counts as `{}`.
    fn json_body(call: &Call<'_>, docs: &str) -> Result<Value, Reply> {
        if call.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        match serde_json::from_slice::<Value>(call.body) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Body should be a JSON object",
                docs,
            )),
            Err(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Problems parsing JSON",
                docs,
            )),
        }
    }

    pub(super) fn access_token(call: &Call<'_>, installation_id: u64, docs: &str) -> Reply {
        let body = match json_body(call, docs) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let mut model = call.shared.model();
        if !model.installation_exists(installation_id) {
            return Reply::not_found(docs);
        }
        // Optional scoping to some of the installation's repositories.
        let names = body.get("repositories").and_then(Value::as_array);
        let ids = body.get("repository_ids").and_then(Value::as_array);
        let mut scoped: Vec<&Repo> = Vec::new();
        if names.is_some() || ids.is_some() {
            let installation_repos: Vec<&Repo> = model
                .repos
                .values()
                .filter(|r| r.installation_id == installation_id)
                .collect();
            for wanted in names.into_iter().flatten() {
                let found = wanted.as_str().and_then(|w| {
                    installation_repos
                        .iter()
                        .find(|r| r.name.eq_ignore_ascii_case(w))
                });
                match found {
                    Some(repo) => scoped.push(repo),
                    None => {
                        return Reply::unprocessable(
                            "There is at least one repository that does not exist or is not accessible to the parent installation.",
                            docs,
                        );
                    }
                }
            }
            for wanted in ids.into_iter().flatten() {
                let found = wanted
                    .as_u64()
                    .and_then(|w| installation_repos.iter().find(|r| r.id == w));
                match found {
                    Some(repo) => scoped.push(repo),
                    None => {
                        return Reply::unprocessable(
                            "There is at least one repository that does not exist or is not accessible to the parent installation.",
                            docs,
                        );
                    }
                }
            }
        }
        let scope = (!scoped.is_empty()).then(|| {
            scoped
                .iter()
                .map(|r| repo_key(&r.full_name()))
                .collect::<BTreeSet<_>>()
        });
        let repositories: Vec<Value> = scoped.iter().map(|r| render::repo(&call.urls, r)).collect();
        let permissions = match body.get("permissions") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => render::permissions(),
        };
        let issued = model.issue_token(installation_id, scope);
        let mut answer = json!({
            "token": issued.token,
            "expires_at": issued.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "permissions": permissions,
            "repository_selection": "selected",
        });
        if !repositories.is_empty() {
            answer["repositories"] = Value::Array(repositories);
        }
        Reply::json(StatusCode::CREATED, answer)
    }

    pub(super) fn installation(call: &Call<'_>, installation_id: u64, docs: &str) -> Reply {
        let model = call.shared.model();
        match model
            .repos
            .values()
            .find(|r| r.installation_id == installation_id)
        {
            Some(repo) => Reply::json(
                StatusCode::OK,
                render::installation(&call.urls, call.shared.app_id, installation_id, &repo.owner),
            ),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn repo_installation(call: &Call<'_>, path: &RepoPath, docs: &str) -> Reply {
        let model = call.shared.model();
        match path.find(&model) {
            Some(repo) => Reply::json(
                StatusCode::OK,
                render::installation(
                    &call.urls,
                    call.shared.app_id,
                    repo.installation_id,
                    &repo.owner,
                ),
            ),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn rate_limit(call: &Call<'_>, caller: &Caller) -> Reply {
        let bucket = match caller {
            Caller::Installation { id, .. } => Bucket::Installation(*id),
            Caller::App => Bucket::App,
        };
        let rate = call.shared.model().peek_rate(bucket);
        let core = json!({
            "limit": rate.limit, "used": rate.used, "remaining": rate.remaining(), "reset": rate.reset_epoch,
        });
        Reply::json(
            StatusCode::OK,
            json!({"resources": {"core": core}, "rate": core}),
        )
    }

    pub(super) fn get_repo(call: &Call<'_>, path: &RepoPath, docs: &str) -> Reply {
        let model = call.shared.model();
        match path.find(&model) {
            Some(repo) => Reply::json(StatusCode::OK, render::repo(&call.urls, repo)),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn get_pull(call: &Call<'_>, path: &RepoPath, number: u64, docs: &str) -> Reply {
        let model = call.shared.model();
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        match repo.threads.get(&number) {
            Some(thread) if thread.pull.is_some() => {
                Reply::json(StatusCode::OK, render::pull(&call.urls, repo, thread))
            }
            _ => Reply::not_found(docs),
        }
    }

    pub(super) fn get_issue(call: &Call<'_>, path: &RepoPath, number: u64, docs: &str) -> Reply {
        let model = call.shared.model();
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        match repo.threads.get(&number) {
            Some(thread) => Reply::json(StatusCode::OK, render::issue(&call.urls, repo, thread)),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn list_thread_items(
        call: &Call<'_>,
        path: &RepoPath,
        number: u64,
        items: ThreadItems,
        docs: &str,
    ) -> Reply {
        let model = call.shared.model();
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        let Some(thread) = repo.threads.get(&number) else {
            return Reply::not_found(docs);
        };
        let urls = &call.urls;
        let all: Vec<Value> = match items {
            ThreadItems::IssueComments => thread
                .comments
                .iter()
                .map(|c| render::issue_comment(urls, repo, thread, c))
                .collect(),
            // Reviews and review comments exist only on pull requests.
            _ if thread.pull.is_none() => return Reply::not_found(docs),
            ThreadItems::Reviews => thread
                .reviews
                .iter()
                .map(|r| render::review(urls, repo, thread, r))
                .collect(),
            ThreadItems::ReviewComments => thread
                .review_comments
                .iter()
                .map(|c| render::review_comment(urls, repo, thread, c))
                .collect(),
        };
        let list_path = match items {
            // GitHub's links name the repository by id.
            ThreadItems::IssueComments => {
                format!("/repositories/{}/issues/{number}/comments", repo.id)
            }
            ThreadItems::Reviews => format!("/repositories/{}/pulls/{number}/reviews", repo.id),
            ThreadItems::ReviewComments => {
                format!("/repositories/{}/pulls/{number}/comments", repo.id)
            }
        };
        let page = Pagination::from_query(call);
        let (slice, link) = page.apply(&all, call, &list_path);
        let reply = Reply::json(StatusCode::OK, Value::Array(slice.to_vec()));
        match link {
            Some(link) => reply.header("link", link),
            None => reply,
        }
    }

    pub(super) fn create_check_run(
        call: &Call<'_>,
        path: &RepoPath,
        caller: &Caller,
        docs: &str,
    ) -> Reply {
        let body = match json_body(call, docs) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let run = match validate_check_run(&body) {
            Ok(run) => run,
            Err(message) => return Reply::unprocessable(&message, docs),
        };
        let Caller::Installation {
            id: installation_id,
            ..
        } = caller
        else {
            return Reply::not_found(docs);
        };
        let mut model = call.shared.model();
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        let key = repo_key(&repo.full_name());
        if !repo.commits.contains(&run.head_sha) {
            return Reply::unprocessable(
                &format!("No commit found for SHA: {}", run.head_sha),
                docs,
            );
        }
        let repo_full_name = repo.full_name();
        let id = model.next_id();
        let next_suite = model.next_id();
        let suite_id = *model
            .suites
            .entry((key.clone(), run.head_sha.clone()))
            .or_insert(next_suite);
        let stored = StoredCheckRun {
            id,
            repo_key: key,
            repo_full_name,
            installation_id: *installation_id,
            suite_id,
            head_sha: run.head_sha.clone(),
            run,
            body,
            received_at: Instant::now(),
        };
        // Found above; looked up again because the ids were taken since.
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        let answer = render::check_run(&call.urls, call.shared.app_id, repo, &stored);
        model.check_runs.push(stored);
        Reply::json(StatusCode::CREATED, answer)
    }

    pub(super) fn get_check_run(call: &Call<'_>, path: &RepoPath, id: u64, docs: &str) -> Reply {
        let model = call.shared.model();
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        let key = repo_key(&repo.full_name());
        match model
            .check_runs
            .iter()
            .find(|r| r.id == id && r.repo_key == key)
        {
            Some(run) => Reply::json(
                StatusCode::OK,
                render::check_run(&call.urls, call.shared.app_id, repo, run),
            ),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn list_check_runs(
        call: &Call<'_>,
        path: &RepoPath,
        git_ref: &str,
        docs: &str,
    ) -> Reply {
        let filter = call.query("filter").unwrap_or("latest");
        if !matches!(filter, "latest" | "all") {
            return Reply::unprocessable(
                &format!(
                    "Invalid request.\n\nFor 'filter', {} is not one of [\"latest\", \"all\"].",
                    json!(filter)
                ),
                docs,
            );
        }
        let status = call.query("status");
        if let Some(status) =
            status.filter(|s| !matches!(*s, "queued" | "in_progress" | "completed"))
        {
            return Reply::unprocessable(
                &format!(
                    "Invalid request.\n\nFor 'status', {} is not one of [\"queued\", \"in_progress\", \"completed\"].",
                    json!(status)
                ),
                docs,
            );
        }
        let app_id = call.query("app_id").map(|a| a.parse::<u64>().ok());
        let check_name = call.query("check_name");

        let model = call.shared.model();
        let Some(repo) = path.find(&model) else {
            return Reply::not_found(docs);
        };
        let key = repo_key(&repo.full_name());
        let Some(sha) = repo.resolve_ref(git_ref) else {
            return Reply::unprocessable(&format!("No commit found for SHA: {git_ref}"), docs);
        };
        // Newest first; `latest` keeps the most recent run of each name.
        let mut seen = BTreeSet::new();
        let runs: Vec<&StoredCheckRun> = model
            .check_runs
            .iter()
            .rev()
            .filter(|r| r.repo_key == key && r.head_sha == sha)
            .filter(|r| filter == "all" || seen.insert(r.run.name.clone()))
            .filter(|r| check_name.is_none_or(|n| r.run.name == n))
            .filter(|r| status.is_none_or(|s| r.run.status == s))
            .filter(|_| app_id.is_none_or(|a| a == Some(call.shared.app_id)))
            .collect();
        let all: Vec<Value> = runs
            .iter()
            .map(|r| render::check_run(&call.urls, call.shared.app_id, repo, r))
            .collect();
        // GitHub's links name the repository by id.
        let list_path = format!("/repositories/{}/commits/{git_ref}/check-runs", repo.id);
        let page = Pagination::from_query(call);
        let (slice, link) = page.apply(&all, call, &list_path);
        let reply = Reply::json(
            StatusCode::OK,
            json!({"total_count": all.len(), "check_runs": slice}),
        );
        match link {
            Some(link) => reply.header("link", link),
            None => reply,
        }
    }

    pub(super) fn list_deliveries(call: &Call<'_>) -> Reply {
        let per_page = Pagination::from_query(call).per_page;
        let redelivery = match call.query("redelivery") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        let all: Vec<Delivery> = call
            .shared
            .model()
            .deliveries_newest_first()
            .into_iter()
            .filter(|d| redelivery.is_none_or(|r| d.redelivery == r))
            .collect();
        // The cursor names the first delivery of the page (`v1_{id}`).
        let start = match call.query("cursor") {
            None => 0,
            Some(cursor) => {
                let position = cursor
                    .strip_prefix("v1_")
                    .and_then(|id| id.parse::<u64>().ok())
                    .and_then(|id| all.iter().position(|d| d.id == id));
                match position {
                    Some(position) => position,
                    None => {
                        return Reply::error(
                            StatusCode::BAD_REQUEST,
                            "Invalid cursor",
                            "https://docs.github.com/rest/apps/webhooks#list-deliveries-for-an-app-webhook",
                        );
                    }
                }
            }
        };
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(per_page)
            .map(render::delivery)
            .collect();
        let reply = Reply::json(StatusCode::OK, Value::Array(page));
        match all.get(start + per_page) {
            Some(next) => {
                let query = with_param(&call.query, "cursor", &format!("v1_{}", next.id));
                reply.header(
                    "link",
                    format!(
                        "<{}/app/hook/deliveries?{query}>; rel=\"next\"",
                        call.urls.api
                    ),
                )
            }
            None => reply,
        }
    }

    pub(super) fn get_delivery(call: &Call<'_>, id: u64, docs: &str) -> Reply {
        let model = call.shared.model();
        match model.deliveries.iter().find(|d| d.id == id) {
            Some(d) => Reply::json(StatusCode::OK, render::delivery_detail(&call.urls, d)),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn redeliver(call: &Call<'_>, id: u64, docs: &str) -> Reply {
        match call.shared.model().redeliver(id) {
            Some(()) => Reply::json(StatusCode::ACCEPTED, json!({})),
            None => Reply::not_found(docs),
        }
    }
}

// -- check-run validation -------------------------------------------------------

/// A check-run request that passed validation.
struct ValidCheckRun {
    name: String,
    head_sha: String,
    status: String,
    conclusion: Option<String>,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    details_url: Option<String>,
    external_id: Option<String>,
    output: Option<CheckRunOutput>,
}

struct CheckRunOutput {
    title: String,
    summary: String,
    text: Option<String>,
    annotations_count: usize,
}

fn invalid(detail: &str) -> String {
    format!("Invalid request.\n\n{detail}")
}

fn not_supplied(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    match quoted.as_slice() {
        [one] => invalid(&format!("{one} wasn't supplied.")),
        many => invalid(&format!("{} weren't supplied.", many.join(", "))),
    }
}

/// An optional string property (`null` counts as absent).
fn opt_string(object: &Value, field: &str, pointer: &str) -> Result<Option<String>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(&format!(
            "For '{pointer}', {other} is not a string."
        ))),
    }
}

fn one_of(
    value: Option<String>,
    allowed: &[&str],
    pointer: &str,
) -> Result<Option<String>, String> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => {
            let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            Err(invalid(&format!(
                "For '{pointer}', {} is not one of [{}].",
                json!(v),
                list.join(", ")
            )))
        }
        other => Ok(other),
    }
}

fn timestamp(object: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    let pointer = format!("properties/{field}");
    match opt_string(object, field, &pointer)? {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                invalid(&format!(
                    "For '{pointer}', {} is not a timestamp.",
                    json!(text)
                ))
            }),
    }
}

/// Validates `POST /repos/{o}/{r}/check-runs` as GitHub does; the error is
/// the message of a 422.
fn validate_check_run(body: &Value) -> Result<ValidCheckRun, String> {
    let missing: Vec<&str> = ["name", "head_sha"]
        .into_iter()
        .filter(|f| body.get(*f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(not_supplied(&missing));
    }
    let name = opt_string(body, "name", "properties/name")?.unwrap_or_default();
    let head_sha = opt_string(body, "head_sha", "properties/head_sha")?.unwrap_or_default();
    let status = one_of(
        opt_string(body, "status", "properties/status")?,
        &CHECK_RUN_STATUSES,
        "properties/status",
    )?;
    let conclusion = one_of(
        opt_string(body, "conclusion", "properties/conclusion")?,
        &CHECK_RUN_CONCLUSIONS,
        "properties/conclusion",
    )?;
    let details_url = opt_string(body, "details_url", "properties/details_url")?;
    let external_id = opt_string(body, "external_id", "properties/external_id")?;
    let started_at = timestamp(body, "started_at")?;
    let completed_at = timestamp(body, "completed_at")?;
    let output = match body.get("output") {
        None | Some(Value::Null) => None,
        Some(output @ Value::Object(_)) => Some(validate_output(output)?),
        Some(other) => {
            return Err(invalid(&format!(
                "For 'properties/output', {other} is not an object."
            )));
        }
    };
    if let Some(actions) = body.get("actions").filter(|a| !a.is_array()) {
        return Err(invalid(&format!(
            "For 'properties/actions', {actions} is not an array."
        )));
    }

    // "Providing conclusion will automatically set the status parameter to
    // completed"; a completed run, in turn, needs a conclusion.
    let status = if conclusion.is_some() {
        "completed".to_owned()
    } else {
        status.unwrap_or_else(|| "queued".to_owned())
    };
    if conclusion.is_none() && (status == "completed" || completed_at.is_some()) {
        return Err(not_supplied(&["conclusion"]));
    }
    if matches!(status.as_str(), "waiting" | "requested" | "pending") {
        return Err(invalid(
            "Only GitHub Actions can set a status of waiting, pending, or requested.",
        ));
    }
    let now = Utc::now();
    Ok(ValidCheckRun {
        name,
        head_sha,
        completed_at: if status == "completed" {
            completed_at.or(Some(now))
        } else {
            None
        },
        status,
        conclusion,
        started_at: started_at.unwrap_or(now),
        details_url,
        external_id,
        output,
    })
}

fn validate_output(output: &Value) -> Result<CheckRunOutput, String> {
    let missing: Vec<&str> = ["title", "summary"]
        .into_iter()
        .filter(|f| output.get(*f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(not_supplied(&missing));
    }
    let title =
        opt_string(output, "title", "properties/output/properties/title")?.unwrap_or_default();
    let summary =
        opt_string(output, "summary", "properties/output/properties/summary")?.unwrap_or_default();
    let text = opt_string(output, "text", "properties/output/properties/text")?;
    for field in [Some(&summary), text.as_ref()].into_iter().flatten() {
        let chars = field.chars().count();
        if chars > MAX_OUTPUT_CHARS {
            return Err(invalid(&format!(
                "Only {MAX_OUTPUT_CHARS} characters are allowed; {chars} were supplied."
            )));
        }
    }
    let annotations = match output.get("annotations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(other) => {
            return Err(invalid(&format!(
                "For 'properties/output/properties/annotations', {other} is not an array."
            )));
        }
    };
    if annotations.len() > MAX_ANNOTATIONS {
        return Err(invalid(&format!(
            "Only {MAX_ANNOTATIONS} annotations are allowed per request; {} were supplied.",
            annotations.len()
        )));
    }
    for annotation in &annotations {
        let missing: Vec<&str> = [
            "path",
            "start_line",
            "end_line",
            "annotation_level",
            "message",
        ]
        .into_iter()
        .filter(|f| annotation.get(*f).is_none_or(Value::is_null))
        .collect();
        if !missing.is_empty() {
            return Err(not_supplied(&missing));
        }
        let pointer = "properties/output/properties/annotations/items/properties/annotation_level";
        one_of(
            opt_string(annotation, "annotation_level", pointer)?,
            &ANNOTATION_LEVELS,
            pointer,
        )?;
    }
    Ok(CheckRunOutput {
        title,
        summary,
        text,
        annotations_count: annotations.len(),
    })
}

// -- pagination -----------------------------------------------------------------

/// `per_page` / `page` as GitHub reads them: invalid values fall back to the
/// defaults and `per_page` is capped at 100.
struct Pagination {
    per_page: usize,
    page: usize,
}

impl Pagination {
    fn from_query(call: &Call<'_>) -> Pagination {
        let number = |name: &str| {
            call.query(name)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        Pagination {
            per_page: number("per_page")
                .unwrap_or(DEFAULT_PER_PAGE)
                .min(MAX_PER_PAGE),
            page: number("page").unwrap_or(1),
        }
    }

    /// The page's items and its `Link` header (absent when everything fits
    /// on one page, as on GitHub).
    fn apply<'v>(
        &self,
        all: &'v [Value],
        call: &Call<'_>,
        list_path: &str,
    ) -> (&'v [Value], Option<String>) {
        let last = all.len().div_ceil(self.per_page).max(1);
        let start = (self.page - 1).saturating_mul(self.per_page).min(all.len());
        let end = start.saturating_add(self.per_page).min(all.len());
        let link_to = |page: usize, rel: &str| {
            let query = with_param(&call.query, "page", &page.to_string());
            format!("<{}{list_path}?{query}>; rel=\"{rel}\"", call.urls.api)
        };
        let mut links = Vec::new();
        if self.page > 1 {
            links.push(link_to((self.page - 1).min(last), "prev"));
        }
        if self.page < last {
            links.push(link_to(self.page + 1, "next"));
            links.push(link_to(last, "last"));
        }
        if self.page > 1 {
            links.push(link_to(1, "first"));
        }
        let link = (!links.is_empty()).then(|| links.join(", "));
        (&all[start..end], link)
    }
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The request's query with `name` set to `value` (moved to the end, as
/// GitHub's links put `page` last).
fn with_param(query: &[(String, String)], name: &str, value: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.iter().filter(|(k, _)| k != name) {
        out.append_pair(k, v);
    }
    out.append_pair(name, value);
    out.finish()
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Admin endpoints
// ---------------------------------------------------------------------------

mod admin {
    use super::*;

    #[derive(Deserialize)]
    struct AddRepo {
        installation_id: u64,
        full_name: String,
    }

    #[derive(Deserialize)]
    struct AddIssue {
        #[serde(default)]
        title: String,
        #[serde(default)]
        body: String,
        #[serde(default = "default_author")]
        author: String,
    }

    #[derive(Deserialize)]
    struct AddComment {
        #[serde(default = "default_author")]
        author: String,
        body: String,
        #[serde(default)]
        state: ReviewState,
    }

    #[derive(Deserialize)]
    struct AddCommit {
        sha: String,
    }

    #[derive(Deserialize)]
    struct AddFault {
        endpoint: Endpoint,
        fault: FaultSpec,
        #[serde(default = "one")]
        times: usize,
    }

    /// [`Fault`] as JSON: `{"kind": "server_error", "status": 503}`.
    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum FaultSpec {
        ServerError {
            #[serde(default = "default_server_error")]
            status: u16,
        },
        Slow {
            millis: u64,
        },
        SecondaryRateLimit {
            #[serde(default = "sixty")]
            retry_after_secs: u64,
        },
        #[serde(rename = "rate_limited_429", alias = "rate_limited429")]
        RateLimited429 {
            #[serde(default = "sixty")]
            retry_after_secs: u64,
        },
        PrimaryRateLimitExhausted {
            #[serde(default = "sixty")]
            reset_in_secs: u64,
        },
        ExpiredToken,
    }

    impl From<FaultSpec> for Fault {
        fn from(spec: FaultSpec) -> Fault {
            match spec {
                FaultSpec::ServerError { status } => Fault::ServerError(status),
                FaultSpec::Slow { millis } => Fault::Slow(Duration::from_millis(millis)),
                FaultSpec::SecondaryRateLimit { retry_after_secs } => {
                    Fault::SecondaryRateLimit { retry_after_secs }
                }
                FaultSpec::RateLimited429 { retry_after_secs } => {
                    Fault::RateLimited429 { retry_after_secs }
                }
                FaultSpec::PrimaryRateLimitExhausted { reset_in_secs } => {
                    Fault::PrimaryRateLimitExhausted { reset_in_secs }
                }
                FaultSpec::ExpiredToken => Fault::ExpiredToken,
            }
        }
    }

    fn fault_json(fault: &Fault) -> Value {
        match fault {
            Fault::ServerError(status) => json!({"kind": "server_error", "status": status}),
            Fault::Slow(d) => json!({"kind": "slow", "millis": d.as_millis()}),
            Fault::SecondaryRateLimit { retry_after_secs } => {
                json!({"kind": "secondary_rate_limit", "retry_after_secs": retry_after_secs})
            }
            Fault::RateLimited429 { retry_after_secs } => {
                json!({"kind": "rate_limited_429", "retry_after_secs": retry_after_secs})
            }
            Fault::PrimaryRateLimitExhausted { reset_in_secs } => {
                json!({"kind": "primary_rate_limit_exhausted", "reset_in_secs": reset_in_secs})
            }
            Fault::ExpiredToken => json!({"kind": "expired_token"}),
        }
    }

    #[derive(Deserialize)]
    struct TokenTtl {
        secs: u64,
    }

    #[derive(Deserialize)]
    struct RateLimit {
        installation_id: u64,
        remaining: u32,
    }

    #[derive(Deserialize)]
    struct RedeliveryStatus {
        status_code: u16,
    }

    fn default_author() -> String {
        "octocat".to_owned()
    }
    fn one() -> usize {
        1
    }
    fn sixty() -> u64 {
        60
    }
    fn default_server_error() -> u16 {
        500
    }

    fn answer(status: StatusCode, body: Value) -> Response {
        plain_response(Reply::json(status, body))
    }

    fn refuse(status: StatusCode, message: impl fmt::Display) -> Response {
        answer(status, json!({"message": message.to_string()}))
    }

    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(body)
    }

    fn bad_json(err: &serde_json::Error) -> Response {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("Problems parsing JSON: {err}"),
        )
    }

    fn model_result<T: Serialize>(status: StatusCode, result: Result<T, ModelError>) -> Response {
        match result {
            Ok(value) => answer(status, json!(value)),
            Err(err) => refuse(StatusCode::NOT_FOUND, err),
        }
    }

    pub(super) fn handle(
        shared: &Arc<Shared>,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Response {
        let segments: Vec<String> = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .skip(1)
            .map(percent_decode)
            .collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = parse_query(parts.uri.query());
        match (parts.method.as_str(), s.as_slice()) {
            ("GET", ["health"]) => answer(
                StatusCode::OK,
                json!({"base_url": format!("http://{}/api/v3", shared.addr), "app_id": shared.app_id}),
            ),
            ("POST", ["repos"]) => match parse::<AddRepo>(body) {
                Ok(req) => model_result(
                    StatusCode::CREATED,
                    shared.model().add_repo(req.installation_id, &req.full_name),
                ),
                Err(err) => bad_json(&err),
            },
            ("PUT", ["repos", o, r, "pulls", n]) => put_pull(shared, &format!("{o}/{r}"), n, body),
            ("POST", ["repos", o, r, "issues", n]) => {
                let Ok(number) = n.parse::<u64>() else {
                    return refuse(StatusCode::NOT_FOUND, "not an issue number");
                };
                match parse::<AddIssue>(body) {
                    Ok(req) => model_result(
                        StatusCode::CREATED,
                        shared
                            .model()
                            .add_issue(
                                &format!("{o}/{r}"),
                                number,
                                &req.title,
                                &req.author,
                                &req.body,
                            )
                            .map(|()| json!({"number": number})),
                    ),
                    Err(err) => bad_json(&err),
                }
            }
            (
                "POST",
                [
                    "repos",
                    o,
                    r,
                    "pulls" | "issues",
                    n,
                    kind @ ("issue-comments" | "comments" | "reviews" | "review-comments"),
                ],
            ) => add_comment(shared, &format!("{o}/{r}"), n, kind, body),
            ("POST", ["repos", o, r, "commits"]) => match parse::<AddCommit>(body) {
                Ok(req) => model_result(
                    StatusCode::CREATED,
                    shared
                        .model()
                        .add_commit(&format!("{o}/{r}"), &req.sha)
                        .map(|()| json!({"sha": req.sha})),
                ),
                Err(err) => bad_json(&err),
            },
            ("POST", ["faults"]) => match parse::<AddFault>(body) {
                Ok(req) => {
                    let fault = Fault::from(req.fault);
                    let echo = json!({"endpoint": req.endpoint, "fault": fault_json(&fault), "times": req.times});
                    handle_of(shared).inject(req.endpoint, fault, req.times);
                    answer(StatusCode::CREATED, echo)
                }
                Err(err) => bad_json(&err),
            },
            ("GET", ["faults"]) => {
                let model = shared.model();
                let list: Vec<Value> = model
                    .faults
                    .iter()
                    .map(|f| json!({"endpoint": f.endpoint, "fault": fault_json(&f.fault), "remaining": f.remaining}))
                    .collect();
                answer(StatusCode::OK, Value::Array(list))
            }
            ("DELETE", ["faults"]) => {
                shared.model().faults.clear();
                answer(StatusCode::OK, json!({}))
            }
            ("GET", ["check-runs"]) => {
                let wanted = query
                    .iter()
                    .find(|(k, _)| k == "repo")
                    .map(|(_, v)| repo_key(v));
                let model = shared.model();
                let list: Vec<Value> = model
                    .check_run_records()
                    .filter(|r| wanted.as_ref().is_none_or(|w| *w == r.repo_key))
                    .map(|r| {
                        json!({
                            "id": r.id,
                            "repo": r.repo_full_name,
                            "installation_id": r.installation_id,
                            "head_sha": r.head_sha,
                            "name": r.run.name,
                            "received_ms": shared.millis_since_start(r.received_at),
                            "body": r.body,
                        })
                    })
                    .collect();
                answer(StatusCode::OK, Value::Array(list))
            }
            ("GET", ["requests"]) => {
                let model = shared.model();
                let list: Vec<Value> = model
                    .requests
                    .iter()
                    .map(|r| {
                        json!({
                            "method": r.method,
                            "path": r.path,
                            "status": r.status,
                            "installation_id": r.installation_id,
                            "endpoint": r.endpoint,
                            "received_ms": shared.millis_since_start(r.received_at),
                        })
                    })
                    .collect();
                answer(StatusCode::OK, Value::Array(list))
            }
            ("GET", ["tokens"]) => {
                let model = shared.model();
                let list: Vec<Value> = model
                    .issued
                    .iter()
                    .map(|t| {
                        json!({
                            "installation_id": t.installation_id,
                            "issued_ms": shared.millis_since_start(t.issued_at),
                            "expires_at": t.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        })
                    })
                    .collect();
                answer(StatusCode::OK, Value::Array(list))
            }
            ("POST", ["tokens", "expire"]) => {
                handle_of(shared).expire_tokens();
                answer(StatusCode::OK, json!({}))
            }
            ("PUT", ["token-ttl"]) => match parse::<TokenTtl>(body) {
                Ok(req) => {
                    shared.model().token_ttl = Duration::from_secs(req.secs);
                    answer(StatusCode::OK, json!({"secs": req.secs}))
                }
                Err(err) => bad_json(&err),
            },
            ("PUT", ["rate-limit"]) => match parse::<RateLimit>(body) {
                Ok(req) => {
                    shared.model().set_rate_remaining(
                        Bucket::Installation(req.installation_id),
                        req.remaining,
                    );
                    answer(
                        StatusCode::OK,
                        json!({"installation_id": req.installation_id, "remaining": req.remaining}),
                    )
                }
                Err(err) => bad_json(&err),
            },
            ("POST", ["deliveries"]) => match parse::<NewDelivery>(body) {
                Ok(req) => {
                    let delivery = shared.model().add_delivery(req);
                    answer(StatusCode::CREATED, render::delivery(&delivery))
                }
                Err(err) => bad_json(&err),
            },
            ("GET", ["deliveries"]) => {
                let list: Vec<Value> = shared
                    .model()
                    .deliveries_newest_first()
                    .iter()
                    .map(render::delivery)
                    .collect();
                answer(StatusCode::OK, Value::Array(list))
            }
            ("GET", ["redeliveries"]) => {
                let model = shared.model();
                let list: Vec<Value> = model
                    .redeliveries
                    .iter()
                    .map(|a| {
                        json!({
                            "delivery_id": a.delivery_id,
                            "guid": a.guid,
                            "received_ms": shared.millis_since_start(a.received_at),
                        })
                    })
                    .collect();
                answer(StatusCode::OK, Value::Array(list))
            }
            ("PUT", ["redelivery-status"]) => match parse::<RedeliveryStatus>(body) {
                Ok(req) => {
                    shared.model().redelivery_status_code = req.status_code;
                    answer(StatusCode::OK, json!({"status_code": req.status_code}))
                }
                Err(err) => bad_json(&err),
            },
            ("POST", ["reset-records"]) => {
                shared.model().reset_records();
                answer(StatusCode::OK, json!({}))
            }
            _ => refuse(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    fn handle_of(shared: &Arc<Shared>) -> FakeGitHub {
        FakeGitHub {
            shared: Arc::clone(shared),
        }
    }

    fn put_pull(shared: &Shared, full_name: &str, number: &str, body: &[u8]) -> Response {
        let Ok(number) = number.parse::<u64>() else {
            return refuse(StatusCode::NOT_FOUND, "not a pull request number");
        };
        let mut pull = match parse::<PullRequest>(body) {
            Ok(pull) => pull,
            Err(err) => return bad_json(&err),
        };
        pull.number = number;
        let mut model = shared.model();
        if let Err(err) = model.upsert_pull(full_name, pull) {
            return refuse(StatusCode::NOT_FOUND, err);
        }
        let urls = shared.urls();
        match model.repo(full_name) {
            Ok(repo) => match repo.threads.get(&number) {
                Some(thread) => answer(StatusCode::OK, render::pull(&urls, repo, thread)),
                None => refuse(StatusCode::NOT_FOUND, "Not Found"),
            },
            Err(err) => refuse(StatusCode::NOT_FOUND, err),
        }
    }

    fn add_comment(
        shared: &Shared,
        full_name: &str,
        number: &str,
        kind: &str,
        body: &[u8],
    ) -> Response {
        let Ok(number) = number.parse::<u64>() else {
            return refuse(StatusCode::NOT_FOUND, "not an issue number");
        };
        let req = match parse::<AddComment>(body) {
            Ok(req) => req,
            Err(err) => return bad_json(&err),
        };
        let mut model = shared.model();
        let result = match kind {
            "reviews" => model
                .add_review(full_name, number, &req.author, &req.body, req.state)
                .map(|id| json!({"id": id})),
            "review-comments" => model
                .add_review_comment(full_name, number, &req.author, &req.body)
                .map(|(id, review_id)| json!({"id": id, "review_id": review_id})),
            _ => model
                .add_issue_comment(full_name, number, &req.author, &req.body)
                .map(|id| json!({"id": id})),
        };
        model_result(StatusCode::CREATED, result)
    }
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Randomness without a `rand` dependency: std's `RandomState` is seeded
/// from the OS per process and perturbed per instance; mixing in a counter
/// and the clock makes successive values distinct.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bits = random_u64();
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
            bits /= ALPHABET.len() as u64;
        }
    }
    out
}

fn random_guid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// GitHub-looking request ids (`XXXX:XXXX:XXXXXX:XXXXXX:XXXXXXXX`); the last
/// part is a process-wide counter, so ids never repeat.
fn request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let r = random_u64();
    format!(
        "{:04X}:{:04X}:{:06X}:{:06X}:{:08X}",
        (r >> 48) & 0xffff,
        (r >> 32) & 0xffff,
        (r >> 8) & 0xff_ffff,
        r & 0xff_ffff,
        SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff
    )
}

/// A stable 40-hex-digit "commit SHA" for a seed.
fn fake_sha(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    hex::encode(digest)[..40].to_owned()
}

/// A stable user id per login, so one login is one user everywhere.
fn user_id(login: &str) -> u64 {
    // FNV-1a: stable across processes and Rust versions, unlike `Hash`.
    let hash = login
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    1_000_000 + hash % 90_000_000
}

/// Installations still have a classic (v1) node id in webhook payloads:
/// base64 of `023:IntegrationInstallation{id}`.
fn installation_node_id(id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("023:IntegrationInstallation{id}"))
}

fn node_id(prefix: &str, id: u64) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes());
    format!("{prefix}{encoded}")
}
