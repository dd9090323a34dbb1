//! The only way out to GitHub.
//!
//! [`GitHub`] authenticates as the App (one JWT, signed rarely, mints and
//! renews one token per installation: see [`auth`]) and hands out
//! [`InstallationClient`]s that expose just the bot's operations. Every
//! request has an explicit timeout; 5xx answers, connection errors and
//! timeouts are retried a few times with short backoff (the worker
//! retries the whole item for much longer); rate-limit answers are
//! returned as [`GitHubError::RateLimited`] so that the caller pauses the
//! whole installation, not one request; answers that will not get better
//! say why ([`GitHubError::refusal`]). A refused installation token is
//! reported as GitHub's answer to the token request.
//!
//! Requests carry exactly one `User-Agent`, octocrab's: its builder always
//! sets one and appends, rather than replaces, any added with
//! `add_header`, so a second would make two. A renamed or transferred
//! repository answers 301 to GET (followed by octocrab's redirect layer)
//! and 307 to other methods, which that layer cannot replay with a body:
//! [`Requester::send`] sends those again itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes_body::collect;
use http::{HeaderMap, Method, StatusCode};
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::check::{CheckRunRequest, ExistingCheckRun};
use crate::config::AppCredentials;

mod auth;

use auth::{AppJwt, AuthFailure, InstallationToken};
pub use auth::{JWT_REUSE, TOKEN_RENEWAL_MARGIN};

/// A GitHub App installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstallationId(pub u64);

/// A repository's `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(pub String);

/// A pull request's number within its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PullNumber(pub u64);

/// One pull request, as seen through one installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PullRequestRef {
    pub installation: InstallationId,
    pub repo: RepoName,
    pub number: PullNumber,
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for PullRequestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.repo, self.number.0)
    }
}

/// Which of GitHub's limits an answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// The installation's hourly request budget is spent until
    /// `x-ratelimit-reset`.
    Primary,
    /// A secondary (abuse) limit: too many requests, or too much content
    /// created, in a short time. `Retry-After` may be absent.
    Secondary,
}

/// The most GitHub can ask us to wait that is taken at its word: a reset
/// time further away (a wrong clock, a garbled header) is cut to this.
pub const MAX_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(3600);

/// Why a GitHub call failed, for the causes callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub asked us to slow down (403/429 naming a secondary rate limit,
    /// with or without `retry-after`, or the primary limit exhausted).
    /// Nothing should be sent for this installation for a while:
    /// `retry_after` is what GitHub's headers asked for, if they did (at
    /// most [`MAX_RATE_LIMIT_PAUSE`]).
    #[error(
        "rate limited by GitHub ({limit:?} limit, retry after {retry_after:?}, status {status}, request id {request_id})"
    )]
    RateLimited {
        limit: RateLimit,
        retry_after: Option<Duration>,
        status: u16,
        request_id: String,
    },
    /// A final answer GitHub gave, after any retries.
    #[error("GitHub answered {status} to {method} {path}: {message} (request id {request_id})")]
    Status {
        method: Method,
        path: String,
        status: u16,
        message: String,
        request_id: String,
        /// GitHub's `x-accepted-github-permissions`: the permissions the
        /// endpoint needs, on a 403 for a missing one.
        accepted_permissions: Option<String>,
    },
    /// No answer in time, or no connection, after every retry.
    #[error("{method} {path} failed after {attempts} attempts: {cause}")]
    Unreachable {
        method: Method,
        path: String,
        attempts: u32,
        cause: String,
    },
    /// A 2xx answer whose body is not what GitHub documents.
    #[error("unexpected answer to {path}: {cause} (request id {request_id})")]
    Decode {
        path: String,
        cause: String,
        request_id: String,
    },
}

/// Why GitHub will never accept this work, as the operator needs to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 404: the pull request or repository is gone, or the App was removed
    /// from it.
    Gone,
    /// 403 "Resource not accessible by integration": the App lacks a
    /// permission.
    MissingPermission { permission: String },
    /// 403: the installation is suspended.
    Suspended,
    /// 422: GitHub refused the content.
    Unprocessable { message: String },
    /// Any other answer that will not get better.
    Other { status: u16, message: String },
    /// A 2xx answer the bot cannot read.
    Unreadable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Gone => f.write_str(
                "the pull request or repository is gone, or the App no longer has access to it (404)",
            ),
            Refusal::MissingPermission { permission } => write!(
                f,
                "the App lacks a permission: grant {permission} in the App's settings and accept it for the installation (403 Resource not accessible by integration)"
            ),
            Refusal::Suspended => f.write_str(
                "the installation is suspended: nothing is written until its owner unsuspends it (403)",
            ),
            Refusal::Unprocessable { message } => {
                write!(f, "GitHub refused the check run as unprocessable (422): {message}")
            }
            Refusal::Other { status, message } => {
                write!(f, "GitHub refused the request ({status}): {message}")
            }
            Refusal::Unreadable => f.write_str("GitHub's answer could not be read"),
        }
    }
}

impl GitHubError {
    /// GitHub's `X-GitHub-Request-Id`, when GitHub answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GitHubError::RateLimited { request_id, .. }
            | GitHubError::Status { request_id, .. }
            | GitHubError::Decode { request_id, .. } => Some(request_id),
            GitHubError::Unreachable { .. } => None,
        }
    }

    /// The kind of failure, for metrics: a closed set of names.
    pub fn cause(&self) -> &'static str {
        match self {
            GitHubError::RateLimited { .. } => "rate_limited",
            GitHubError::Status { status: 401, .. } => "unauthorized",
            GitHubError::Status { status, .. } if *status >= 500 => "server_error",
            GitHubError::Status { .. } => "client_error",
            GitHubError::Unreachable { .. } => "unreachable",
            GitHubError::Decode { .. } => "bad_answer",
        }
    }

    /// Whether this is GitHub's refusal of the installation's token, not
    /// an answer to the request itself: a 403 or 404 then says nothing of
    /// the resource asked for (the installation is suspended or gone).
    pub fn refused_the_token(&self) -> bool {
        matches!(self, GitHubError::Status { method, path, .. } if auth::mints_a_token(method, path))
    }

    /// Whether a later try could succeed: 5xx, timeouts, connection
    /// errors, a 401 (a token that went stale) and rate limits.
    pub fn is_transient(&self) -> bool {
        self.refusal().is_none()
    }

    /// The reason GitHub will never accept this work, or `None` when a
    /// later try could succeed.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            GitHubError::RateLimited { .. } | GitHubError::Unreachable { .. } => None,
            GitHubError::Decode { .. } => Some(Refusal::Unreadable),
            GitHubError::Status {
                status,
                message,
                path,
                method,
                accepted_permissions,
                ..
            } => match *status {
                401 | 408 | 500.. => None,
                404 => Some(Refusal::Gone),
                403 if message.to_ascii_lowercase().contains("suspended") => {
                    Some(Refusal::Suspended)
                }
                403 if message.contains("not accessible by integration") => {
                    Some(Refusal::MissingPermission {
                        permission: needed_permission(
                            method,
                            path,
                            accepted_permissions.as_deref(),
                        ),
                    })
                }
                422 => Some(Refusal::Unprocessable {
                    message: message.clone(),
                }),
                status => Some(Refusal::Other {
                    status,
                    message: message.clone(),
                }),
            },
        }
    }
}

/// The permission an endpoint needs, from GitHub's
/// `x-accepted-github-permissions` when it sent one, else from what the bot
/// asks of that endpoint.
fn needed_permission(method: &Method, path: &str, accepted: Option<&str>) -> String {
    if let Some(accepted) = accepted.map(str::trim).filter(|a| !a.is_empty()) {
        return format!("\"{accepted}\"");
    }
    if path.contains("/check-runs") {
        if *method == Method::GET {
            "\"checks=read\"".into()
        } else {
            "\"checks=write\"".into()
        }
    } else if path.contains("/pulls") || path.contains("/issues") {
        "\"pull_requests=read\"".into()
    } else {
        "the permission this endpoint needs".into()
    }
}

/// How hard to try before giving up on one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Whole-request timeout, connection included.
    pub timeout: Duration,
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// First backoff; doubled on every retry.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub fn new(timeout: Duration) -> RetryPolicy {
        RetryPolicy {
            timeout,
            attempts: 4,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let exponential = self.first_backoff.saturating_mul(1 << retry.min(16));
        // Up to 25% jitter so that workers retrying together spread out.
        let jitter = exponential.mul_f64(0.25 * random_fraction());
        (exponential + jitter).min(self.max_backoff)
    }
}

fn random_fraction() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// The App's connection to GitHub.
#[derive(Clone)]
pub struct GitHub {
    app: Arc<AppJwt>,
    policy: RetryPolicy,
    /// Each installation's token, minted on first use. A std Mutex: held
    /// only to look up or insert, never across I/O.
    installations: Arc<Mutex<HashMap<InstallationId, Arc<InstallationToken>>>>,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("app_id", &self.app_id())
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// A client for the REST API at `api_url` (`https://api.github.com`, or
    /// `{protocol}://{host}/api/v3` for GitHub Enterprise and the fake).
    pub fn new(
        api_url: &str,
        credentials: &AppCredentials,
        policy: RetryPolicy,
    ) -> crate::Result<GitHub> {
        use anyhow::Context as _;
        let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(
            credentials.private_key.expose_secret().as_bytes(),
        )
        .map_err(|_| anyhow::anyhow!("the App's private key is not a valid RSA key"))?;
        let bare = Octocrab::builder()
            .base_uri(api_url)
            .with_context(|| format!("GitHub API URL {api_url:?}"))?
            .set_connect_timeout(Some(policy.timeout.min(Duration::from_secs(5))))
            .set_read_timeout(Some(policy.timeout))
            .set_write_timeout(Some(policy.timeout))
            .build()
            .context("building the GitHub client")?;
        Ok(GitHub {
            app: Arc::new(AppJwt::new(credentials.app_id, key, bare)),
            policy,
            installations: Arc::default(),
        })
    }

    pub fn app_id(&self) -> u64 {
        self.app.app_id()
    }

    /// The client for one installation; its token is minted on first use.
    pub fn installation(&self, id: InstallationId) -> InstallationClient {
        let token = Arc::clone(
            self.installations
                .lock()
                .expect("installations lock poisoned")
                .entry(id)
                .or_insert_with(|| Arc::new(InstallationToken::new(id, Arc::clone(&self.app)))),
        );
        InstallationClient {
            http: Requester {
                credential: Credential::Installation(token),
                policy: self.policy.clone(),
            },
            installation: id,
        }
    }

    /// A requester authenticated as the App itself (JWT), for the
    /// `/app/...` endpoints.
    pub fn as_app(&self) -> Requester {
        Requester {
            credential: Credential::App(Arc::clone(&self.app)),
            policy: self.policy.clone(),
        }
    }
}

/// An answer from GitHub, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The rate limit this refusal reports, if it is one (primary or
    /// secondary, with or without `Retry-After`).
    fn rate_limited(&self) -> Option<GitHubError> {
        let message = error_message(&self.body);
        let (limit, retry_after) =
            rate_limit(self.status, &self.headers, &message, SystemTime::now())?;
        Some(GitHubError::RateLimited {
            limit,
            retry_after,
            status: self.status.as_u16(),
            request_id: self.request_id(),
        })
    }

    pub fn request_id(&self) -> String {
        header_str(&self.headers, "x-github-request-id")
            .unwrap_or("-")
            .to_owned()
    }

    fn json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitHubError> {
        serde_json::from_slice(&self.body).map_err(|e| GitHubError::Decode {
            path: path.to_owned(),
            cause: e.to_string(),
            request_id: self.request_id(),
        })
    }

    /// The `rel="next"` target of the `Link` header, as a path and query.
    pub fn next_page(&self) -> Option<String> {
        let link = header_str(&self.headers, "link")?;
        next_link(link)
    }
}

/// Finds `rel="next"` in a Link header and keeps only its path and query:
/// requests must stay relative so that octocrab adds the credentials.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        if !is_next {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let uri: http::Uri = target.parse().ok()?;
        uri.path_and_query().map(|pq| pq.as_str().to_owned())
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sends requests with the timeout, retry and rate-limit rules above.
#[derive(Clone)]
pub struct Requester {
    credential: Credential,
    policy: RetryPolicy,
}

/// Whom a requester's requests speak for.
#[derive(Clone)]
enum Credential {
    App(Arc<AppJwt>),
    Installation(Arc<InstallationToken>),
}

impl Credential {
    async fn client(&self) -> Result<Arc<Octocrab>, AuthFailure> {
        match self {
            Credential::App(jwt) => jwt.client().await,
            Credential::Installation(token) => token.client().await,
        }
    }

    /// GitHub answered 401 to a request sent with `used`.
    async fn refused(&self, used: &Arc<Octocrab>) {
        match self {
            Credential::App(jwt) => jwt.refused(used).await,
            Credential::Installation(token) => token.refused(used).await,
        }
    }
}

/// Redirects followed for one request before giving up: GitHub redirects
/// a renamed repository once, a chain means something is wrong.
const MAX_REDIRECTS: u32 = 5;

/// What one attempt came back with, before the rules above are applied.
enum Attempt {
    Answer(Answer),
    /// No credential to send the request with.
    NoCredential(AuthFailure),
    /// No answer at all.
    Failed(String),
}

impl Requester {
    /// Sends one request; retries what may succeed soon; follows a
    /// temporary redirect with the same method and body; returns the 2xx
    /// answer or the reason there is none.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GitHubError> {
        self.exchange(method, path, body, None).await
    }

    /// A GET with extra request headers (an `Accept` media type,
    /// `If-None-Match`). When they make it a conditional request, its
    /// `304 Not Modified` is an answer, not an error. Otherwise as
    /// [`Requester::send`].
    pub async fn get_conditional(
        &self,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Answer, GitHubError> {
        self.exchange(Method::GET, path, None, Some(headers)).await
    }

    /// The rules of [`Requester::send`], for a request with or without
    /// extra headers.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: Option<&HeaderMap>,
    ) -> Result<Answer, GitHubError> {
        let conditional = headers.is_some_and(|headers| {
            headers.contains_key(http::header::IF_NONE_MATCH)
                || headers.contains_key(http::header::IF_MODIFIED_SINCE)
        });
        let mut retry = 0;
        let mut redirects = 0;
        let mut target = path.to_owned();
        loop {
            let started = std::time::Instant::now();
            let outcome = tokio::time::timeout(
                self.policy.timeout,
                self.attempt(&method, &target, body, headers),
            )
            .await;
            crate::metrics::github_request(
                &method,
                &target,
                request_status(&outcome),
                started.elapsed(),
            );
            let unreachable = |cause| GitHubError::Unreachable {
                method: method.clone(),
                path: target.clone(),
                attempts: retry + 1,
                cause,
            };
            let failure = match outcome {
                Ok(Attempt::Answer(answer))
                    if answer.status.is_success()
                        || (conditional && answer.status == StatusCode::NOT_MODIFIED) =>
                {
                    return Ok(answer);
                }
                Ok(Attempt::Answer(answer)) if answer.status.is_redirection() => {
                    let Some(next) = redirect_target(&answer).filter(|_| redirects < MAX_REDIRECTS)
                    else {
                        return Err(status_error(&method, &target, &answer));
                    };
                    tracing::debug!(%method, from = %target, to = %next, status = answer.status.as_u16(), "following GitHub's redirect");
                    redirects += 1;
                    target = next;
                    continue;
                }
                Ok(Attempt::Answer(answer)) => retryable(&method, &target, &answer)?,
                // The token's refusal is reported as what it is: GitHub's
                // answer to the token request.
                Ok(Attempt::NoCredential(AuthFailure::Refused {
                    path: token_path,
                    answer,
                })) => retryable(&Method::POST, &token_path, &answer)?,
                Ok(Attempt::NoCredential(AuthFailure::Failed(cause)) | Attempt::Failed(cause)) => {
                    unreachable(cause)
                }
                Err(_elapsed) => unreachable(format!("no answer within {:?}", self.policy.timeout)),
            };
            retry += 1;
            if retry >= self.policy.attempts {
                return Err(failure);
            }
            let pause = self.policy.backoff(retry - 1);
            tracing::debug!(%method, path = %target, %failure, ?pause, "retrying GitHub request");
            tokio::time::sleep(pause).await;
        }
    }

    /// One request, sent with the current credential; if GitHub answers
    /// 401, once more with a fresh one (an installation token can be
    /// revoked or expire early).
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: Option<&HeaderMap>,
    ) -> Attempt {
        let mut refreshed = false;
        loop {
            let crab = match self.credential.client().await {
                Ok(crab) => crab,
                Err(failure) => return Attempt::NoCredential(failure),
            };
            let response = match (method, headers) {
                (&Method::GET, None) => crab._get(path).await,
                (&Method::GET, Some(headers)) => {
                    crab._get_with_headers(path, Some(headers.clone())).await
                }
                (&Method::POST, None) => crab._post(path, body).await,
                (&Method::PATCH, None) => crab._patch(path, body).await,
                _ => return Attempt::Failed(format!("method {method} is not used by the bot")),
            };
            let response = match response {
                Ok(response) => response,
                Err(error) => return Attempt::Failed(describe_octocrab_error(error)),
            };
            if response.status() == StatusCode::UNAUTHORIZED && !refreshed {
                self.credential.refused(&crab).await;
                refreshed = true;
                continue;
            }
            let (parts, body) = response.into_parts();
            return match collect(body).await {
                Ok(body) => Attempt::Answer(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }),
                Err(e) => Attempt::Failed(format!("reading the answer: {e}")),
            };
        }
    }

    /// GETs every page of a list endpoint, following `Link: rel="next"`.
    pub async fn get_all_pages<T: DeserializeOwned>(
        &self,
        first: &str,
    ) -> Result<Vec<T>, GitHubError> {
        /// A guard against a server that links pages in a circle.
        const MAX_PAGES: usize = 500;
        let mut items = Vec::new();
        let mut next = Some(first.to_owned());
        let mut pages = 0;
        while let Some(path) = next {
            let answer = self.send(Method::GET, &path, None).await?;
            let page: Vec<T> = answer.json(&path)?;
            items.extend(page);
            next = answer.next_page();
            pages += 1;
            if pages >= MAX_PAGES && next.is_some() {
                tracing::warn!(path = first, pages, "stopped following pagination");
                break;
            }
        }
        Ok(items)
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitHubError> {
        self.send(Method::GET, path, None).await?.json(path)
    }
}

/// The error a refusing answer to `method path` means: `Ok` when a later
/// attempt may succeed (5xx), `Err` when it is final (a rate limit, which
/// pauses the whole installation, or any other answer).
fn retryable(method: &Method, path: &str, answer: &Answer) -> Result<GitHubError, GitHubError> {
    if let Some(limited) = answer.rate_limited() {
        return Err(limited);
    }
    let error = status_error(method, path, answer);
    if answer.status.is_server_error() {
        Ok(error)
    } else {
        Err(error)
    }
}

fn request_status<E>(outcome: &Result<Attempt, E>) -> crate::metrics::RequestStatus {
    use crate::metrics::RequestStatus;
    match outcome {
        Ok(Attempt::Answer(answer))
        | Ok(Attempt::NoCredential(AuthFailure::Refused { answer, .. })) => {
            RequestStatus::Answered(answer.status.as_u16())
        }
        Ok(Attempt::NoCredential(AuthFailure::Failed(_)) | Attempt::Failed(_)) => {
            RequestStatus::Unreachable
        }
        Err(_) => RequestStatus::Timeout,
    }
}

/// octocrab's errors print their whole chain; keep the first line, which
/// names the cause without any request data.
fn describe_octocrab_error(error: octocrab::Error) -> String {
    let text = error.to_string();
    let mut source = std::error::Error::source(&error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        text
    } else {
        format!("{text}: {detail}")
    }
}

/// GitHub's `message` from an error body, or the start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect())
}

fn status_error(method: &Method, path: &str, answer: &Answer) -> GitHubError {
    GitHubError::Status {
        method: method.clone(),
        path: path.to_owned(),
        status: answer.status.as_u16(),
        message: error_message(&answer.body),
        request_id: answer.request_id(),
        accepted_permissions: header_str(&answer.headers, "x-accepted-github-permissions")
            .map(str::to_owned),
    }
}

/// Where a 3xx answer sends us, as a path and query for octocrab (which
/// adds the base URL and credentials): GitHub redirects within its API.
fn redirect_target(answer: &Answer) -> Option<String> {
    let location: http::Uri = header_str(&answer.headers, "location")?.parse().ok()?;
    location.path_and_query().map(|pq| pq.as_str().to_owned())
}

/// Whether an answer is a rate-limit answer, which limit, and how long its
/// headers ask us to wait, following octokit's plugin-throttling: a 403 or
/// 429 whose message names a "secondary rate" limit is one, with or without
/// `retry-after` (GitHub may omit it); `x-ratelimit-remaining: 0` is the
/// primary limit until `x-ratelimit-reset` (epoch seconds, plus one second
/// as GitHub advises); any other 429, or a 403 with `retry-after`, is
/// treated as a secondary limit. Waits are at most
/// [`MAX_RATE_LIMIT_PAUSE`].
pub fn rate_limit(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<(RateLimit, Option<Duration>)> {
    if !matches!(status.as_u16(), 403 | 429) {
        return None;
    }
    let retry_after = header_str(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RATE_LIMIT_PAUSE));
    let until_reset = || {
        let reset = header_str(headers, "x-ratelimit-reset")?
            .trim()
            .parse::<u64>()
            .ok()?;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let wait = reset.saturating_sub(now).saturating_add(1);
        Some(Duration::from_secs(wait).min(MAX_RATE_LIMIT_PAUSE))
    };
    let exhausted = header_str(headers, "x-ratelimit-remaining").map(str::trim) == Some("0");
    if says_secondary_rate_limit(message) {
        let wait = retry_after.or_else(|| exhausted.then(until_reset).flatten());
        return Some((RateLimit::Secondary, wait));
    }
    if exhausted {
        return Some((RateLimit::Primary, until_reset().or(retry_after)));
    }
    if retry_after.is_some() || status == StatusCode::TOO_MANY_REQUESTS {
        return Some((RateLimit::Secondary, retry_after));
    }
    None
}

/// octokit's test: the message contains the words "secondary rate", in
/// any case ("You have exceeded a secondary rate limit...").
fn says_secondary_rate_limit(message: &str) -> bool {
    message.to_ascii_lowercase().contains("secondary rate")
}

/// A pull request as the bot needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub state: String,
    /// When the pull request was opened (ISO 8601), for
    /// `first_check_delay`; absent from older fixtures.
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub merged: bool,
    pub body: Option<String>,
    pub user: User,
    pub head: Head,
}

impl PullRequest {
    pub fn is_open(&self) -> bool {
        self.state == "open" && !self.merged
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    pub sha: String,
}

/// An issue comment, review or review comment: who wrote what.
#[derive(Debug, Clone, Deserialize)]
pub struct Authored {
    /// Deleted accounts ("ghost") come back as `null`.
    pub user: Option<User>,
    pub body: Option<String>,
}

impl Authored {
    pub fn login(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.login.as_str())
    }
}

/// Everything a pull request's check is computed from.
#[derive(Debug, Clone)]
pub struct PullRequestState {
    pub pull: PullRequest,
    pub issue_comments: Vec<Authored>,
    pub reviews: Vec<Authored>,
    pub review_comments: Vec<Authored>,
}

/// A created check run: its id and GitHub's request id, for the logs.
#[derive(Debug, Clone)]
pub struct CreatedCheckRun {
    pub id: u64,
    pub status: u16,
    pub request_id: String,
}

/// The bot's operations on behalf of one installation.
#[derive(Clone)]
pub struct InstallationClient {
    http: Requester,
    installation: InstallationId,
}

impl InstallationClient {
    pub fn installation(&self) -> InstallationId {
        self.installation
    }

    /// The requester behind this client, for reads other modules shape
    /// themselves (settings files).
    pub fn requester(&self) -> &Requester {
        &self.http
    }

    /// Reads the pull request and all of its discussion, every page.
    pub async fn pull_request_state(
        &self,
        repo: &RepoName,
        number: PullNumber,
    ) -> Result<PullRequestState, GitHubError> {
        let base = format!("/repos/{}/", repo.0);
        let n = number.0;
        let pull_path = format!("{base}pulls/{n}");
        let comments_path = format!("{base}issues/{n}/comments?per_page=100");
        let reviews_path = format!("{base}pulls/{n}/reviews?per_page=100");
        let review_comments_path = format!("{base}pulls/{n}/comments?per_page=100");
        // The pull request first, alone: an answer that ends the read (a
        // missing pull request, a refusal) comes before its discussion's
        // three lists are asked for. (The installation token is minted once
        // either way: requests that find it missing together wait for one.)
        let pull: PullRequest = self.http.get_json(&pull_path).await?;
        let (issue_comments, reviews, review_comments) = tokio::try_join!(
            self.http.get_all_pages(&comments_path),
            self.http.get_all_pages(&reviews_path),
            self.http.get_all_pages(&review_comments_path),
        )?;
        Ok(PullRequestState {
            pull,
            issue_comments,
            reviews,
            review_comments,
        })
    }

    /// Just the pull request, for deciding whether it still needs a check.
    pub async fn pull_request(
        &self,
        repo: &RepoName,
        number: PullNumber,
    ) -> Result<PullRequest, GitHubError> {
        self.http
            .get_json(&format!("/repos/{}/pulls/{}", repo.0, number.0))
            .await
    }

    /// The newest check run called `name` that this App made on `head_sha`.
    pub async fn latest_check_run(
        &self,
        repo: &RepoName,
        head_sha: &str,
        name: &str,
        app_id: u64,
    ) -> Result<Option<ExistingCheckRun>, GitHubError> {
        #[derive(Deserialize)]
        struct List {
            check_runs: Vec<ExistingCheckRun>,
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("check_name", name)
            .append_pair("filter", "latest")
            .append_pair("app_id", &app_id.to_string())
            .append_pair("per_page", "1")
            .finish();
        let path = format!("/repos/{}/commits/{}/check-runs?{query}", repo.0, head_sha);
        let list: List = self.http.get_json(&path).await?;
        Ok(list.check_runs.into_iter().next())
    }

    /// Creates a check run. The caller has taken a write slot.
    pub async fn create_check_run(
        &self,
        repo: &RepoName,
        request: &CheckRunRequest,
    ) -> Result<CreatedCheckRun, GitHubError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let path = format!("/repos/{}/check-runs", repo.0);
        let body = serde_json::to_value(request).expect("a check run request always serialises");
        let answer = self.http.send(Method::POST, &path, Some(&body)).await?;
        let created: Created = answer.json(&path)?;
        Ok(CreatedCheckRun {
            id: created.id,
            status: answer.status.as_u16(),
            request_id: answer.request_id(),
        })
    }
}

/// Collecting a hyper body without naming hyper in our signatures.
mod bytes_body {
    use http_body_util::BodyExt as _;

    pub async fn collect<B>(body: B) -> Result<Vec<u8>, B::Error>
    where
        B: http_body::Body,
    {
        Ok(body.collect().await?.to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> Answer {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Vec::new(),
        }
    }

    #[test]
    fn next_link_keeps_path_and_query_of_rel_next() {
        let link = r#"<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("/repositories/1/issues/2/comments?per_page=100&page=2")
        );
        let last_page =
            r#"<http://h/api/v3/x?page=1>; rel="first", <http://h/api/v3/x?page=2>; rel="prev""#;
        assert_eq!(next_link(last_page), None);
    }

    type Limit = Option<(RateLimit, Option<Duration>)>;

    fn limit_of(status: u16, headers: &[(&str, &str)], message: &str) -> Limit {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let answer = answer(status, headers);
        rate_limit(answer.status, &answer.headers, message, now)
    }

    const SECONDARY: &str =
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

    #[test]
    fn rate_limit_answers_are_recognised_with_and_without_headers() {
        let secs = |s| Some(Duration::from_secs(s));
        let cases: Vec<(&str, Limit)> = vec![
            (
                "secondary with retry-after",
                limit_of(403, &[("retry-after", "30")], SECONDARY),
            ),
            (
                "secondary 403 without headers",
                limit_of(403, &[], SECONDARY),
            ),
            (
                "secondary 429 without headers",
                limit_of(429, &[], SECONDARY),
            ),
            (
                "secondary, any case",
                limit_of(403, &[], "SECONDARY RATE limit exceeded"),
            ),
            (
                "primary exhausted",
                limit_of(
                    403,
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", "1090"),
                    ],
                    "API rate limit exceeded for installation ID 1.",
                ),
            ),
            ("429 without anything", limit_of(429, &[], "")),
            (
                "forbidden with budget left",
                limit_of(
                    403,
                    &[("x-ratelimit-remaining", "4000")],
                    "Resource not accessible by integration",
                ),
            ),
            (
                "server error with retry-after",
                limit_of(503, &[("retry-after", "5")], SECONDARY),
            ),
        ];
        let expected = [
            Some((RateLimit::Secondary, secs(30))),
            Some((RateLimit::Secondary, None)),
            Some((RateLimit::Secondary, None)),
            Some((RateLimit::Secondary, None)),
            Some((RateLimit::Primary, secs(91))),
            Some((RateLimit::Secondary, None)),
            None,
            None,
        ];
        for ((name, got), expected) in cases.into_iter().zip(expected) {
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn pauses_far_in_the_future_are_capped_without_overflow() {
        let capped = Some(MAX_RATE_LIMIT_PAUSE);
        let huge_reset = u64::MAX.to_string();
        let cases = [
            limit_of(403, &[("retry-after", "18446744073709551615")], SECONDARY),
            limit_of(429, &[("retry-after", "99999999")], ""),
            limit_of(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &huge_reset),
                ],
                "",
            ),
        ];
        for case in cases {
            assert_eq!(case.and_then(|(_, wait)| wait), capped);
        }
        // A reset in the past still waits a second; a garbled one waits for
        // the caller's minimum.
        assert_eq!(
            limit_of(
                403,
                &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")],
                ""
            ),
            Some((RateLimit::Primary, Some(Duration::from_secs(1))))
        );
        assert_eq!(
            limit_of(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], ""),
            Some((RateLimit::Secondary, None))
        );
    }

    fn status(status: u16, method: Method, path: &str, message: &str) -> GitHubError {
        GitHubError::Status {
            method,
            path: path.into(),
            status,
            message: message.into(),
            request_id: "R".into(),
            accepted_permissions: None,
        }
    }

    #[test]
    fn answers_that_will_not_get_better_name_their_cause() {
        let post = |code, message| status(code, Method::POST, "/repos/o/r/check-runs", message);
        let get = |code, message| status(code, Method::GET, "/repos/o/r/pulls/1", message);
        assert_eq!(get(404, "Not Found").refusal(), Some(Refusal::Gone));
        assert_eq!(
            post(403, "Resource not accessible by integration").refusal(),
            Some(Refusal::MissingPermission {
                permission: "\"checks=write\"".into()
            })
        );
        assert_eq!(
            get(403, "Resource not accessible by integration").refusal(),
            Some(Refusal::MissingPermission {
                permission: "\"pull_requests=read\"".into()
            })
        );
        let mut with_header = get(403, "Resource not accessible by integration");
        if let GitHubError::Status {
            accepted_permissions,
            ..
        } = &mut with_header
        {
            *accepted_permissions = Some("checks=write".into());
        }
        assert!(
            with_header
                .refusal()
                .unwrap()
                .to_string()
                .contains("grant \"checks=write\"")
        );
        assert_eq!(
            post(403, "This installation has been suspended").refusal(),
            Some(Refusal::Suspended)
        );
        assert!(matches!(
            post(422, "Invalid request").refusal(),
            Some(Refusal::Unprocessable { .. })
        ));
        for transient in [get(500, ""), get(502, ""), get(401, "Bad credentials")] {
            assert!(transient.is_transient(), "{transient}");
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let policy = RetryPolicy::new(Duration::from_secs(10));
        let first = policy.backoff(0);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(313));
        assert!(policy.backoff(2) >= Duration::from_secs(1));
        assert_eq!(policy.backoff(30), policy.max_backoff);
    }
}
