//! Tests of the fake GitHub itself: it is test infrastructure, and a fake
//! that accepts what GitHub refuses (or answers in shapes GitHub does not
//! use) would make every other test meaningless.
//!
//! Most tests go through octocrab, the client the bot uses, so a shape that
//! octocrab's models cannot deserialise fails here first. Header-level
//! details (Link, rate limits, Retry-After) are checked with a tiny raw
//! HTTP/1.1 client, which also lets a test choose the `Host` header.

#[path = "support/fake_github/mod.rs"]
mod fake_github;
#[path = "support/webhooks.rs"]
mod webhooks;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fake_github::{
    Endpoint, FakeGitHub, Fault, NewDelivery, PrState, PullRequest, Resource, ReviewState, Scope,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use octocrab::Octocrab;
use octocrab::models::{AppId, HookDeliveryId, InstallationId};
use octocrab::params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 71;
const OTHER_INSTALLATION: u64 = 72;
const REPO: &str = "octo-org/widgets";
const OTHER_REPO: &str = "other-org/gadgets";
const HEAD: &str = "1111111111111111111111111111111111111111";

/// An RSA key that is *not* the app's: JWTs signed with it must be refused.
const OTHER_PRIVATE_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAxZkqovpMN/pWVJc+MI9849Eulkjq6t6tFHgtUT3eUsI5VDcQ
xsgODkI2VQwD2ZaqT36GdSwkekBzCr2+m41W+/1Fv2AF6GnnvVFrVfx7k46OOasT
E9nSkVJXs0CZQ4gFTv/RrduTlJDeukqGx0cAqjSnYw+gCttS1LCVUWN5xYd8b44d
nL2AreQkCvAMEknr12CEi7RPCr2BymX9jGpRUN+o+VHJ/iPVKqVVsGmHvsky6d0b
Mrp/mxeYbifS3z2RIeGGKlMyX1cWLFI5JQoIlGs8X4Z2rO9EESYbUuxanB1XDJaO
jHZ2wd5ObYMrQn98c7hVXM+/ZDtXEUa7YtXHtwIDAQABAoIBAAw+gnrY4bIyS/kv
6gWeTpHbW3SqjgwBwl3bWIuJNuaP7HeAdgSrTtupVK6OcQqhoGoOoAxQsO32YmqO
+WmwJ2yz9Ad4zsTpExgTHICWhZ3OHpgKNsNrIvYoURDldtnNau7LQVXxnkJ9e5+1
kIZ2qt7hJmIoDLW/g3F0g7woWtpXf/gubEmW53tBWSjlRukCnxPXyct56kjlqgRa
L6eH62OSCwTqLwiu+7/TR0nQWesCltfUmaOAE+m/hLOiBPknNKP2TwuhAtC+KFIX
nVi/xOdq9oBzSsSsU9RT5rzYkYdhxGs49OgArxW1FlH6jpKCUhvffmykTvvpzUC9
2Mg2w/kCgYEA8UcaIRgrOdE0rAcwfticWFFFMBHEASucl1lsPzlEjeR7XWLW4VYf
ELg9simGYH8XIbKYxAvgTmqX1tPjGgM4KzzquAaUiLRjgcssg4w4KJoGmIbVYZqs
iutJvNQKkROORwW1vxF836RL+KGn3JJQ+iRdKSw1QIc0PcJiY27OyJMCgYEA0afE
NH7SooKdKVO3frVTjTDS6+DmK4cA9enO0E8DidaVri7U7ma1oGadZ1G0lat1r3rA
4BC+XbSp9rwTIrDD6fMmpq5tIDIrzlv7ch9manZV5OBVGFn+GwFxApnoASL8Ic3u
OsZU/aedjeWFafrTgVopKgm5uSkAuLLdcHiwbs0CgYEA1H7RhWoaz83vvL6MOHsf
nyzcaYyL+pflTuqjyj7uoKUk/UdKhqTpsTkCpUGrJptnzPbVUnw/LfD1D3AHqGZD
dtksw6yP7qIorSw6ZRT+dMvKmVTO4yptYd/9Tj/VmpYFjYl62u9U8kZp3mzJQRrg
FJ4oKlXUBKPPH8FuE7KIjd8CgYEAw3iGn2crHednfnOWXqXS+43s6Y1rLGQXyi+u
6lrw8p/GOHtjfc73QlDKKt1r4CvXcr+heodB5f4ehXP+51Ylo0dX3wo7pkwAucra
2iFajKI+HUHnNOga2bTzV7iFLiIfL6lflx75ePHBHN5FEHWSo0Sbop0ksvT+vjXN
7iIoZXUCgYBWe5ZiHWvzVoTHCEz3lq1fGhJ+IYZ78EkyDtLkYzcapfvucmgDMBEV
4aI1GgLyDFztdimc617KGY+qep+ya+VHPQgZsT4LiDzToUQW/f9TTXBREFds/Xqc
9Re7bH6bzrEqN8paNgxH9sckqoSPj0CiBuGHawto+2yvnRVBzao1PQ==
-----END RSA PRIVATE KEY-----
";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn app_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&data("test-app-key.pem")).expect("test app key")
}

async fn start() -> FakeGitHub {
    let fake = FakeGitHub::start(APP_ID, &data("test-app-key.pub.pem")).await;
    fake.add_repo(INSTALLATION, REPO);
    fake.add_repo(OTHER_INSTALLATION, OTHER_REPO);
    fake
}

fn app_client(fake: &FakeGitHub) -> Octocrab {
    Octocrab::builder()
        .base_uri(fake.base_url())
        .expect("base uri")
        .app(AppId(APP_ID), app_key())
        .build()
        .expect("octocrab")
}

fn installation_client(fake: &FakeGitHub, installation: u64) -> Octocrab {
    app_client(fake)
        .installation(InstallationId(installation))
        .expect("installation client")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn jwt_with(claims: Value, key: &EncodingKey, algorithm: Algorithm) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).expect("encode JWT")
}

/// A JWT like octocrab's: issued a minute ago, nine minutes to live.
fn good_jwt() -> String {
    let now = now();
    jwt_with(
        json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}),
        &app_key(),
        Algorithm::RS256,
    )
}

/// The status and message of an octocrab error from GitHub.
fn github_error(err: octocrab::Error) -> (u16, String) {
    match err {
        octocrab::Error::GitHub { source, .. } => (source.status_code.as_u16(), source.message),
        other => panic!("expected a GitHub error, got {other:?}"),
    }
}

/// A response read by [`raw`].
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.body))
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection. `headers` may override `host`.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Mints an installation token with a hand-made JWT.
async fn mint_token(fake: &FakeGitHub, installation: u64) -> String {
    let bearer = format!("Bearer {}", good_jwt());
    let path = format!("/api/v3/app/installations/{installation}/access_tokens");
    let response = raw(
        fake.addr(),
        "POST",
        &path,
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()["token"].as_str().expect("token").to_owned()
}

async fn get_with_token(fake: &FakeGitHub, token: &str, path: &str) -> Raw {
    let auth = format!("token {token}");
    raw(fake.addr(), "GET", path, &[("authorization", &auth)], None).await
}

async fn post_with_token(fake: &FakeGitHub, token: &str, path: &str, body: &str) -> Raw {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    raw(fake.addr(), "POST", path, &headers, Some(body)).await
}

/// Polls `check` until it gives a value; fails the test after 10 s.
async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Parses a `Link` header into `(rel, url)` pairs, in order.
fn links(header: &str) -> Vec<(String, String)> {
    header
        .split(", ")
        .map(|part| {
            let (url, rel) = part.split_once("; ").expect("url; rel");
            let url = url.trim_start_matches('<').trim_end_matches('>').to_owned();
            let rel = rel
                .trim_start_matches("rel=\"")
                .trim_end_matches('"')
                .to_owned();
            (rel, url)
        })
        .collect()
}

fn seed_pull(fake: &FakeGitHub) {
    fake.upsert_pull(
        REPO,
        PullRequest::new(7)
            .title("Add widgets")
            .body("- [x] design\n- [ ] tests")
            .head_sha(HEAD)
            .author("alice"),
    );
}

// ---------------------------------------------------------------------------
// App authentication
// ---------------------------------------------------------------------------

#[tokio::test]
async fn octocrab_installation_reads_the_pull_request_and_its_discussion() {
    let fake = start().await;
    seed_pull(&fake);
    fake.add_issue_comment(REPO, 7, "bob", "- [ ] from a comment");
    fake.add_review(REPO, 7, "carol", "looks good");
    fake.add_review_comment(REPO, 7, "dave", "- [ ] nit");
    let client = installation_client(&fake, INSTALLATION);
    let (owner, name) = REPO.split_once('/').unwrap();

    let pull = client.pulls(owner, name).get(7).await.expect("get pull");
    assert_eq!(pull.number, 7);
    assert_eq!(pull.body.as_deref(), Some("- [x] design\n- [ ] tests"));
    assert_eq!(pull.head.sha, HEAD);
    assert_eq!(pull.user.as_ref().map(|u| u.login.as_str()), Some("alice"));
    assert_eq!(pull.merged, Some(false));

    let comments = client
        .issues(owner, name)
        .list_comments(7)
        .send()
        .await
        .expect("comments");
    assert_eq!(comments.items.len(), 1);
    assert_eq!(
        comments.items[0].body.as_deref(),
        Some("- [ ] from a comment")
    );
    assert_eq!(comments.items[0].user.login, "bob");

    // The standalone review comment brought its own empty COMMENTED review.
    let reviews = client
        .pulls(owner, name)
        .list_reviews(7)
        .send()
        .await
        .expect("reviews");
    let bodies: Vec<_> = reviews
        .items
        .iter()
        .map(|r| r.body.clone().unwrap_or_default())
        .collect();
    assert_eq!(bodies, ["looks good", ""]);

    let review_comments = client
        .pulls(owner, name)
        .list_comments(Some(7))
        .send()
        .await
        .expect("review comments");
    assert_eq!(review_comments.items.len(), 1);
    assert_eq!(review_comments.items[0].body, "- [ ] nit");
    assert_eq!(
        review_comments.items[0]
            .pull_request_review_id
            .map(|id| id.0),
        Some(reviews.items[1].id.0)
    );

    // One token was minted (octocrab caches it) and every request used it.
    let tokens = fake.tokens_issued();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].installation_id, INSTALLATION);
    let requests = fake.requests();
    assert_eq!(requests.len(), 5);
    assert!(
        requests
            .iter()
            .all(|r| r.installation_id == Some(INSTALLATION))
    );
    assert_eq!(requests[0].endpoint, Some(Endpoint::AccessToken));
    assert_eq!(requests[0].status, 201);
    assert_eq!(requests[1].endpoint, Some(Endpoint::GetPull));
}

#[tokio::test]
async fn access_token_answer_has_githubs_shape() {
    let fake = start().await;
    let token = app_client(&fake)
        .apps()
        .create_installation_access_token(
            InstallationId(INSTALLATION),
            &octocrab::models::apps::CreateInstallationAccessToken::default(),
        )
        .await
        .expect("token");
    assert!(
        token.token.starts_with("ghs_") && token.token.len() == 40,
        "{}",
        token.token
    );
    assert_eq!(token.repository_selection.as_deref(), Some("selected"));
    assert_eq!(token.permissions.checks.as_deref(), Some("write"));
    let expires = token.expires_at.expect("expires_at");
    assert!(expires.ends_with('Z'), "{expires}");
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).expect("RFC 3339");
    let ttl = expires.timestamp() - now();
    assert!((3590..=3600).contains(&ttl), "token lives {ttl} s");
}

#[tokio::test]
async fn jwt_signed_with_another_key_is_refused() {
    let fake = start().await;
    let other = EncodingKey::from_rsa_pem(OTHER_PRIVATE_KEY.as_bytes()).expect("other key");
    let client = Octocrab::builder()
        .base_uri(fake.base_url())
        .unwrap()
        .app(AppId(APP_ID), other)
        .build()
        .unwrap()
        .installation(InstallationId(INSTALLATION))
        .unwrap();
    let (owner, name) = REPO.split_once('/').unwrap();
    let err = client
        .pulls(owner, name)
        .get(7)
        .await
        .expect_err("must be refused");
    assert_eq!(
        github_error(err),
        (401, "A JSON web token could not be decoded".to_owned())
    );
    assert!(fake.tokens_issued().is_empty());
}

#[tokio::test]
async fn jwt_claims_are_checked_with_githubs_messages() {
    let fake = start().await;
    let key = app_key();
    let now = now();
    let exp_message = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            jwt_with(
                json!({"iat": now - 700, "exp": now - 100, "iss": APP_ID}),
                &key,
                Algorithm::RS256,
            ),
            401,
            exp_message,
        ),
        (
            "issued in the future",
            jwt_with(
                json!({"iat": now + 120, "exp": now + 300, "iss": APP_ID}),
                &key,
                Algorithm::RS256,
            ),
            401,
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        ),
        (
            "lives longer than ten minutes",
            jwt_with(
                json!({"iat": now - 30, "exp": now + 590, "iss": APP_ID}),
                &key,
                Algorithm::RS256,
            ),
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            "expires too far ahead",
            jwt_with(
                json!({"iat": now, "exp": now + 900, "iss": APP_ID}),
                &key,
                Algorithm::RS256,
            ),
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            "another app's id",
            jwt_with(
                json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID + 1}),
                &key,
                Algorithm::RS256,
            ),
            401,
            "A JSON web token could not be decoded",
        ),
        (
            "no exp",
            jwt_with(
                json!({"iat": now - 60, "iss": APP_ID}),
                &key,
                Algorithm::RS256,
            ),
            401,
            exp_message,
        ),
        (
            "HMAC instead of RSA",
            jwt_with(
                json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}),
                &EncodingKey::from_secret(b"secret"),
                Algorithm::HS256,
            ),
            401,
            "A JSON web token could not be decoded",
        ),
        (
            "garbage",
            "not.a.jwt".to_owned(),
            401,
            "A JSON web token could not be decoded",
        ),
        (
            "iss as a string is fine",
            jwt_with(
                json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID.to_string()}),
                &key,
                Algorithm::RS256,
            ),
            201,
            "",
        ),
        (
            "iat within the 60 s skew is fine",
            jwt_with(
                json!({"iat": now + 30, "exp": now + 500, "iss": APP_ID}),
                &key,
                Algorithm::RS256,
            ),
            201,
            "",
        ),
    ];
    let path = format!("/api/v3/app/installations/{INSTALLATION}/access_tokens");
    for (what, jwt, status, message) in cases {
        let bearer = format!("Bearer {jwt}");
        let response = raw(
            fake.addr(),
            "POST",
            &path,
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(response.status, status, "{what}: {}", response.body);
        if status == 401 {
            assert_eq!(response.message(), message, "{what}");
            assert_eq!(response.json()["status"], "401", "{what}");
        }
    }
    let response = raw(fake.addr(), "POST", &path, &[], None).await;
    assert_eq!(
        (response.status, response.message().as_str()),
        (401, "Requires authentication")
    );
    // Only the two acceptable JWTs minted tokens.
    assert_eq!(fake.tokens_issued().len(), 2);
}

#[tokio::test]
async fn unknown_installation_is_not_found() {
    let fake = start().await;
    let err = app_client(&fake)
        .apps()
        .create_installation_access_token(
            InstallationId(999),
            &octocrab::models::apps::CreateInstallationAccessToken::default(),
        )
        .await
        .expect_err("no such installation");
    assert_eq!(github_error(err).0, 404);
}

// ---------------------------------------------------------------------------
// Installation tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_cannot_see_another_installations_repository() {
    let fake = start().await;
    seed_pull(&fake);
    fake.upsert_pull(OTHER_REPO, PullRequest::new(1));
    let client = installation_client(&fake, OTHER_INSTALLATION);
    let err = client
        .pulls("octo-org", "widgets")
        .get(7)
        .await
        .expect_err("hidden");
    assert_eq!(github_error(err), (404, "Not Found".to_owned()));
    // ... while its own repository is readable.
    client
        .pulls("other-org", "gadgets")
        .get(1)
        .await
        .expect("own repo");
    // GitHub compares owner and repository names case-insensitively.
    let client = installation_client(&fake, INSTALLATION);
    client
        .pulls("Octo-Org", "Widgets")
        .get(7)
        .await
        .expect("case-insensitive");
}

#[tokio::test]
async fn tokens_scoped_to_repositories_see_only_those() {
    let fake = start().await;
    fake.add_repo(INSTALLATION, "octo-org/second");
    seed_pull(&fake);
    fake.upsert_pull("octo-org/second", PullRequest::new(1));
    let bearer = format!("Bearer {}", good_jwt());
    let path = format!("/api/v3/app/installations/{INSTALLATION}/access_tokens");
    let headers = [("authorization", bearer.as_str())];
    let body = r#"{"repositories":["second"]}"#;
    let response = raw(fake.addr(), "POST", &path, &headers, Some(body)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(
        response.json()["repositories"][0]["full_name"],
        "octo-org/second"
    );
    let token = response.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_with_token(&fake, &token, "/api/v3/repos/octo-org/second/pulls/1")
            .await
            .status,
        200
    );
    assert_eq!(
        get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/pulls/7")
            .await
            .status,
        404
    );

    let body = r#"{"repositories":["gadgets"]}"#;
    let response = raw(fake.addr(), "POST", &path, &headers, Some(body)).await;
    assert_eq!(response.status, 422);
    let response = raw(fake.addr(), "POST", &path, &headers, Some("{oops")).await;
    assert_eq!(
        (response.status, response.message().as_str()),
        (400, "Problems parsing JSON")
    );
}

#[tokio::test]
async fn expired_and_unknown_tokens_get_bad_credentials() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let path = "/api/v3/repos/octo-org/widgets/pulls/7";
    assert_eq!(get_with_token(&fake, &token, path).await.status, 200);

    let bad = get_with_token(&fake, "ghs_not_a_token", path).await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.json(),
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})
    );

    fake.expire_tokens();
    let expired = get_with_token(&fake, &token, path).await;
    assert_eq!(
        (expired.status, expired.message().as_str()),
        (401, "Bad credentials")
    );

    // A token minted with a zero TTL is dead on arrival.
    fake.set_token_ttl(Duration::ZERO);
    let token = mint_token(&fake, INSTALLATION).await;
    assert_eq!(get_with_token(&fake, &token, path).await.status, 401);
    fake.set_token_ttl(Duration::from_secs(3600));
    let token = mint_token(&fake, INSTALLATION).await;
    assert_eq!(get_with_token(&fake, &token, path).await.status, 200);

    let missing = raw(fake.addr(), "GET", path, &[], None).await;
    assert_eq!(
        (missing.status, missing.message().as_str()),
        (401, "Requires authentication")
    );
}

// ---------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------

#[tokio::test]
async fn two_hundred_fifty_comments_make_three_pages_of_one_hundred() {
    let fake = start().await;
    seed_pull(&fake);
    let ids: Vec<u64> = (0..250)
        .map(|i| fake.add_issue_comment(REPO, 7, "bob", &format!("comment {i}")))
        .collect();
    let token = mint_token(&fake, INSTALLATION).await;
    let auth = format!("token {token}");
    let base = "/api/v3/repos/octo-org/widgets/issues/7/comments";
    // GitHub's links name the repository by id, and so do the fake's.
    let repo_id = fake.repo(REPO).unwrap().id;
    let url = |page: u32| {
        format!(
            "http://github.example:8443/api/v3/repositories/{repo_id}/issues/7/comments?per_page=100&page={page}"
        )
    };
    // Links are absolute URLs built from the request's Host header.
    let addr = fake.addr();
    let get = |page: u32| {
        let auth = auth.clone();
        async move {
            let path = format!("{base}?per_page=100&page={page}");
            let headers = [
                ("authorization", auth.as_str()),
                ("host", "github.example:8443"),
            ];
            raw(addr, "GET", &path, &headers, None).await
        }
    };

    let first = get(1).await;
    assert_eq!(first.json().as_array().map(Vec::len), Some(100));
    let rels = links(first.header("link").expect("link on page 1"));
    assert_eq!(
        rels,
        [("next".to_owned(), url(2)), ("last".to_owned(), url(3))]
    );

    let second = get(2).await;
    assert_eq!(second.json().as_array().map(Vec::len), Some(100));
    let rels = links(second.header("link").expect("link on page 2"));
    assert_eq!(
        rels,
        [
            ("prev".to_owned(), url(1)),
            ("next".to_owned(), url(3)),
            ("last".to_owned(), url(3)),
            ("first".to_owned(), url(1)),
        ]
    );

    let third = get(3).await;
    assert_eq!(third.json().as_array().map(Vec::len), Some(50));
    let rels = links(third.header("link").expect("link on page 3"));
    assert_eq!(
        rels,
        [("prev".to_owned(), url(2)), ("first".to_owned(), url(1))]
    );

    let beyond = get(4).await;
    assert_eq!(beyond.json(), json!([]));

    // octocrab follows the links and sees every comment once, in order.
    // It only sends credentials to api.github.com or to relative URIs, so
    // against GitHub Enterprise (and this fake) a client must strip the
    // scheme and host of GitHub's absolute `Link` URLs before following them.
    let relative = |uri: &Option<http::Uri>| {
        uri.as_ref()
            .and_then(|uri| uri.path_and_query())
            .map(|pq| pq.as_str().parse::<http::Uri>().expect("path and query"))
    };
    let client = installation_client(&fake, INSTALLATION);
    let mut page = client
        .issues("octo-org", "widgets")
        .list_comments(7)
        .per_page(100)
        .send()
        .await
        .expect("page 1");
    assert_eq!(page.number_of_pages(), Some(3));
    let absolute = client
        .get_page::<octocrab::models::issues::Comment>(&page.next)
        .await
        .expect_err("octocrab withholds the token from absolute URIs");
    assert_eq!(github_error(absolute).0, 401);
    let mut seen: Vec<u64> = page.items.iter().map(|c| c.id.0).collect();
    while let Some(next) = client
        .get_page::<octocrab::models::issues::Comment>(&relative(&page.next))
        .await
        .expect("next page")
    {
        seen.extend(next.items.iter().map(|c| c.id.0));
        page = next;
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn per_page_defaults_to_thirty_and_is_capped_at_one_hundred() {
    let fake = start().await;
    seed_pull(&fake);
    for i in 0..120 {
        fake.add_review(REPO, 7, "carol", &format!("review {i}"));
    }
    let token = mint_token(&fake, INSTALLATION).await;
    let base = "/api/v3/repos/octo-org/widgets/pulls/7/reviews";

    let default = get_with_token(&fake, &token, base).await;
    assert_eq!(default.json().as_array().map(Vec::len), Some(30));
    let rels = links(default.header("link").unwrap());
    assert_eq!(rels[1].0, "last");
    assert!(rels[1].1.ends_with("?page=4"), "{}", rels[1].1);

    let capped = get_with_token(&fake, &token, &format!("{base}?per_page=500")).await;
    assert_eq!(capped.json().as_array().map(Vec::len), Some(100));

    // Everything on one page: no Link header at all, as on GitHub.
    let few = get_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/issues/7/comments",
    )
    .await;
    assert_eq!(few.json(), json!([]));
    assert_eq!(few.header("link"), None);
}

// ---------------------------------------------------------------------------
// Check runs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn check_run_creation_is_validated_like_github() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let path = "/api/v3/repos/octo-org/widgets/check-runs";
    let long = "x".repeat(65_536);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no name",
            json!({"head_sha": HEAD}),
            "Invalid request.\n\n\"name\" wasn't supplied.",
        ),
        (
            "no head_sha",
            json!({"name": "c"}),
            "Invalid request.\n\n\"head_sha\" wasn't supplied.",
        ),
        (
            "nothing",
            json!({}),
            "Invalid request.\n\n\"name\", \"head_sha\" weren't supplied.",
        ),
        (
            "name not a string",
            json!({"name": 5, "head_sha": HEAD}),
            "Invalid request.\n\nFor 'properties/name', 5 is not a string.",
        ),
        (
            "unknown status",
            json!({"name": "c", "head_sha": HEAD, "status": "done"}),
            "Invalid request.\n\nFor 'properties/status', \"done\" is not one of [\"queued\", \"in_progress\", \"completed\", \"waiting\", \"requested\", \"pending\"].",
        ),
        (
            "unknown conclusion",
            json!({"name": "c", "head_sha": HEAD, "conclusion": "passed"}),
            "Invalid request.\n\nFor 'properties/conclusion', \"passed\" is not one of [\"action_required\", \"cancelled\", \"failure\", \"neutral\", \"success\", \"skipped\", \"stale\", \"timed_out\"].",
        ),
        (
            "completed without conclusion",
            json!({"name": "c", "head_sha": HEAD, "status": "completed"}),
            "Invalid request.\n\n\"conclusion\" wasn't supplied.",
        ),
        (
            "completed_at without conclusion",
            json!({"name": "c", "head_sha": HEAD, "completed_at": "2024-01-01T00:00:00Z"}),
            "Invalid request.\n\n\"conclusion\" wasn't supplied.",
        ),
        (
            "output without summary",
            json!({"name": "c", "head_sha": HEAD, "conclusion": "success", "output": {"title": "t"}}),
            "Invalid request.\n\n\"summary\" wasn't supplied.",
        ),
        (
            "summary too long",
            json!({"name": "c", "head_sha": HEAD, "conclusion": "success", "output": {"title": "t", "summary": long}}),
            "Invalid request.\n\nOnly 65535 characters are allowed; 65536 were supplied.",
        ),
        (
            "status only GitHub Actions may set",
            json!({"name": "c", "head_sha": HEAD, "status": "waiting"}),
            "Invalid request.\n\nOnly GitHub Actions can set a status of waiting, pending, or requested.",
        ),
        (
            "unknown commit",
            json!({"name": "c", "head_sha": "2222222222222222222222222222222222222222", "conclusion": "success"}),
            "No commit found for SHA: 2222222222222222222222222222222222222222",
        ),
    ];
    for (what, body, message) in cases {
        let response = post_with_token(&fake, &token, path, &body.to_string()).await;
        assert_eq!(response.status, 422, "{what}: {}", response.body);
        assert_eq!(response.message(), message, "{what}");
        assert_eq!(
            response.json()["documentation_url"],
            "https://docs.github.com/rest/checks/runs#create-a-check-run"
        );
    }
    let bad_json = post_with_token(&fake, &token, path, "{\"name\": ").await;
    assert_eq!(
        (bad_json.status, bad_json.message().as_str()),
        (400, "Problems parsing JSON")
    );
    let not_object = post_with_token(&fake, &token, path, "[]").await;
    assert_eq!(
        (not_object.status, not_object.message().as_str()),
        (400, "Body should be a JSON object")
    );

    assert!(
        fake.check_runs(REPO).is_empty(),
        "nothing invalid is recorded"
    );
    let summary_at_limit = json!({"name": "c", "head_sha": HEAD, "conclusion": "success",
        "output": {"title": "t", "summary": "x".repeat(65_535)}});
    let ok = post_with_token(&fake, &token, path, &summary_at_limit.to_string()).await;
    assert_eq!(ok.status, 201, "{}", ok.message());
}

#[tokio::test]
async fn created_check_run_is_recorded_and_answered_in_full() {
    let fake = start().await;
    seed_pull(&fake);
    let client = installation_client(&fake, INSTALLATION);
    let before = std::time::Instant::now();
    let run = client
        .checks("octo-org", "widgets")
        .create_check_run("task-list-completed", HEAD)
        .status(CheckRunStatus::InProgress)
        .conclusion(CheckRunConclusion::Failure)
        .output(CheckRunOutput {
            title: "1 of 2 tasks completed".to_owned(),
            summary: "- [ ] tests".to_owned(),
            text: None,
            annotations: Vec::new(),
            images: Vec::new(),
        })
        .send()
        .await
        .expect("create check run");
    // A conclusion makes the run completed, whatever status said.
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert!(run.completed_at.is_some());
    assert_eq!(run.head_sha, HEAD);
    assert_eq!(run.output.title.as_deref(), Some("1 of 2 tasks completed"));
    assert_eq!(run.pull_requests.len(), 1);
    assert_eq!(run.pull_requests[0].number, 7);

    let recorded = fake
        .latest_check_run(REPO, HEAD, "task-list-completed")
        .expect("recorded");
    assert_eq!(recorded.id, run.id.0);
    assert_eq!(recorded.installation_id, INSTALLATION);
    assert_eq!(
        recorded.body["status"], "in_progress",
        "the body is kept as sent"
    );
    assert_eq!(recorded.body["conclusion"], "failure");
    assert!(recorded.received_at >= before);
    assert_eq!(fake.check_runs(REPO).len(), 1);
    assert!(fake.check_runs(OTHER_REPO).is_empty());

    // The raw answer has the fields octocrab does not model, too.
    let token = mint_token(&fake, INSTALLATION).await;
    let body = json!({"name": "other", "head_sha": HEAD, "external_id": "x-1"});
    let answer = post_with_token(
        &fake,
        &token,
        "/repos/octo-org/widgets/check-runs",
        &body.to_string(),
    )
    .await;
    assert_eq!(answer.status, 201);
    let answer = answer.json();
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["conclusion"], Value::Null);
    assert_eq!(answer["completed_at"], Value::Null);
    assert_eq!(answer["external_id"], "x-1");
    assert_eq!(answer["app"]["id"], APP_ID);
    assert!(answer["check_suite"]["id"].is_u64());
    assert_eq!(answer["output"]["annotations_count"], 0);

    let fetched = client
        .checks("octo-org", "widgets")
        .get_check_run(run.id)
        .send()
        .await
        .expect("get check run");
    assert_eq!(fetched.id, run.id);
}

#[tokio::test]
async fn listing_check_runs_for_a_ref_keeps_the_latest_per_name() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let create = |body: Value| {
        let token = token.clone();
        let fake = fake.clone();
        async move {
            let r = post_with_token(
                &fake,
                &token,
                "/api/v3/repos/octo-org/widgets/check-runs",
                &body.to_string(),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.json()["id"].as_u64().unwrap()
        }
    };
    let a1 = create(json!({"name": "a", "head_sha": HEAD, "status": "in_progress"})).await;
    let b1 = create(json!({"name": "b", "head_sha": HEAD, "conclusion": "success"})).await;
    let a2 = create(json!({"name": "a", "head_sha": HEAD, "conclusion": "failure"})).await;

    let list = |query: &'static str| {
        let token = token.clone();
        let fake = fake.clone();
        async move {
            let path = format!("/api/v3/repos/octo-org/widgets/commits/{HEAD}/check-runs{query}");
            let r = get_with_token(&fake, &token, &path).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let json = r.json();
            let ids: Vec<u64> = json["check_runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_u64().unwrap())
                .collect();
            (json["total_count"].as_u64().unwrap(), ids)
        }
    };
    assert_eq!(list("").await, (2, vec![a2, b1]));
    assert_eq!(list("?filter=latest").await, (2, vec![a2, b1]));
    assert_eq!(list("?filter=all").await, (3, vec![a2, b1, a1]));
    assert_eq!(list("?filter=all&check_name=a").await, (2, vec![a2, a1]));
    assert_eq!(list("?check_name=a").await, (1, vec![a2]));
    assert_eq!(list("?filter=all&status=in_progress").await, (1, vec![a1]));
    assert_eq!(
        list(&*format!("?app_id={APP_ID}").leak()).await,
        (2, vec![a2, b1])
    );
    assert_eq!(list("?app_id=1").await, (0, vec![]));
    assert_eq!(list("?filter=all&per_page=2&page=2").await, (3, vec![a1]));

    // A branch name resolves to its head commit, as on GitHub.
    let by_branch = get_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/commits/pr-7/check-runs",
    )
    .await;
    assert_eq!(by_branch.json()["total_count"], 2);
    let unknown = get_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/commits/nope/check-runs",
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.message().as_str()),
        (422, "No commit found for SHA: nope")
    );
    let bad_filter = get_with_token(
        &fake,
        &token,
        &format!("/api/v3/repos/octo-org/widgets/commits/{HEAD}/check-runs?filter=newest"),
    )
    .await;
    assert_eq!(bad_filter.status, 422);

    // octocrab can read the list.
    let client = installation_client(&fake, INSTALLATION);
    let runs = client
        .checks("octo-org", "widgets")
        .list_check_runs_for_git_ref(HEAD.into())
        .send()
        .await
        .expect("list");
    assert_eq!(runs.total_count, 2);
    assert_eq!(runs.check_runs[0].id.0, a2);
}

#[tokio::test]
async fn old_head_shas_stay_known_and_merge_queue_heads_can_be_added() {
    let fake = start().await;
    seed_pull(&fake);
    let new_head = "3333333333333333333333333333333333333333";
    fake.upsert_pull(REPO, fake.pull(REPO, 7).unwrap().head_sha(new_head));
    let token = mint_token(&fake, INSTALLATION).await;
    let path = "/api/v3/repos/octo-org/widgets/check-runs";
    for sha in [HEAD, new_head] {
        let body = json!({"name": "c", "head_sha": sha, "conclusion": "success"});
        assert_eq!(
            post_with_token(&fake, &token, path, &body.to_string())
                .await
                .status,
            201
        );
    }
    let queue_head = "4444444444444444444444444444444444444444";
    let body = json!({"name": "c", "head_sha": queue_head, "conclusion": "success"});
    assert_eq!(
        post_with_token(&fake, &token, path, &body.to_string())
            .await
            .status,
        422
    );
    fake.add_commit(REPO, queue_head);
    assert_eq!(
        post_with_token(&fake, &token, path, &body.to_string())
            .await
            .status,
        201
    );
}

// ---------------------------------------------------------------------------
// Faults and rate limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn faults_fire_exactly_the_number_of_times_asked() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.inject(Endpoint::GetPull, Fault::ServerError(503), 2);
    assert_eq!(fake.pending_faults(), 2);
    let pull = "/api/v3/repos/octo-org/widgets/pulls/7";
    let comments = "/api/v3/repos/octo-org/widgets/issues/7/comments";

    // Another endpoint is not affected.
    assert_eq!(get_with_token(&fake, &token, comments).await.status, 200);
    let first = get_with_token(&fake, &token, pull).await;
    assert_eq!(
        (first.status, first.message().as_str()),
        (503, "Service Unavailable")
    );
    assert_eq!(get_with_token(&fake, &token, pull).await.status, 503);
    assert_eq!(get_with_token(&fake, &token, pull).await.status, 200);
    assert_eq!(fake.pending_faults(), 0);

    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::GetPull))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);

    // `Any` matches every endpoint, and faults queue in order.
    fake.inject(Endpoint::Any, Fault::ServerError(500), 1);
    fake.inject(Endpoint::ListIssueComments, Fault::ServerError(502), 1);
    assert_eq!(get_with_token(&fake, &token, comments).await.status, 500);
    assert_eq!(get_with_token(&fake, &token, comments).await.status, 502);
    assert_eq!(get_with_token(&fake, &token, comments).await.status, 200);

    // Unauthenticated requests do not consume faults.
    fake.inject(Endpoint::GetPull, Fault::ServerError(500), 1);
    assert_eq!(get_with_token(&fake, "ghs_wrong", pull).await.status, 401);
    assert_eq!(fake.pending_faults(), 1);
}

#[tokio::test]
async fn rate_limit_faults_look_like_githubs() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let pull = "/api/v3/repos/octo-org/widgets/pulls/7";

    fake.inject(
        Endpoint::GetPull,
        Fault::SecondaryRateLimit {
            retry_after_secs: 42,
        },
        1,
    );
    let secondary = get_with_token(&fake, &token, pull).await;
    assert_eq!(secondary.status, 403);
    assert_eq!(secondary.header("retry-after"), Some("42"));
    assert!(
        secondary
            .message()
            .starts_with("You have exceeded a secondary rate limit"),
        "{}",
        secondary.body
    );
    assert_ne!(secondary.header("x-ratelimit-remaining"), Some("0"));

    fake.inject(
        Endpoint::GetPull,
        Fault::RateLimited429 {
            retry_after_secs: 7,
        },
        1,
    );
    let too_many = get_with_token(&fake, &token, pull).await;
    assert_eq!(too_many.status, 429);
    assert_eq!(too_many.header("retry-after"), Some("7"));

    fake.set_primary_limit(INSTALLATION, 5000, 0, Duration::from_secs(120));
    let exhausted = get_with_token(&fake, &token, pull).await;
    assert_eq!(exhausted.status, 403);
    assert_eq!(
        exhausted.message(),
        format!("API rate limit exceeded for installation ID {INSTALLATION}.")
    );
    assert_eq!(exhausted.header("x-ratelimit-remaining"), Some("0"));
    let reset: i64 = exhausted
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (now() + 115..=now() + 121).contains(&reset),
        "reset {reset}"
    );
    fake.set_primary_limit(INSTALLATION, 5000, 5000, Duration::from_secs(3600));

    // octocrab surfaces them as GitHub errors.
    fake.inject(
        Endpoint::GetPull,
        Fault::SecondaryRateLimit {
            retry_after_secs: 1,
        },
        1,
    );
    let client = installation_client(&fake, INSTALLATION);
    let err = client
        .pulls("octo-org", "widgets")
        .get(7)
        .await
        .expect_err("limited");
    assert_eq!(github_error(err).0, 403);
}

#[tokio::test]
async fn every_answer_carries_rate_limit_and_request_id_headers() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let pull = "/api/v3/repos/octo-org/widgets/pulls/7";
    let first = get_with_token(&fake, &token, pull).await;
    let second = get_with_token(&fake, &token, pull).await;
    for response in [&first, &second] {
        assert_eq!(response.header("x-ratelimit-limit"), Some("5000"));
        assert_eq!(response.header("x-ratelimit-resource"), Some("core"));
        assert_eq!(
            response.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let reset: i64 = response
            .header("x-ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset > now() && reset <= now() + 3601);
    }
    assert_eq!(first.header("x-ratelimit-remaining"), Some("4999"));
    assert_eq!(first.header("x-ratelimit-used"), Some("1"));
    assert_eq!(second.header("x-ratelimit-remaining"), Some("4998"));
    assert_ne!(
        first.header("x-github-request-id"),
        second.header("x-github-request-id")
    );

    // Installations have separate budgets.
    fake.upsert_pull(OTHER_REPO, PullRequest::new(1));
    let other = mint_token(&fake, OTHER_INSTALLATION).await;
    let response = get_with_token(&fake, &other, "/api/v3/repos/other-org/gadgets/pulls/1").await;
    assert_eq!(response.header("x-ratelimit-remaining"), Some("4999"));

    // Spending the budget gets GitHub's 403.
    fake.set_primary_limit(INSTALLATION, 5000, 1, Duration::from_secs(3600));
    assert_eq!(get_with_token(&fake, &token, pull).await.status, 200);
    let limited = get_with_token(&fake, &token, pull).await;
    assert_eq!(limited.status, 403);
    assert_eq!(
        limited.message(),
        format!("API rate limit exceeded for installation ID {INSTALLATION}.")
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));

    // Errors carry the headers too.
    let not_found = raw(fake.addr(), "GET", "/api/v3/nowhere", &[], None).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.message(), "Not Found");
    assert!(not_found.header("x-github-request-id").is_some());
    assert_eq!(not_found.header("x-ratelimit-limit"), Some("60"));
}

#[tokio::test]
async fn a_slow_fault_outlasts_a_client_timeout_once() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.inject(
        Endpoint::GetPull,
        Fault::Slow(Duration::from_millis(800)),
        1,
    );
    let pull = "/api/v3/repos/octo-org/widgets/pulls/7";
    let slow = tokio::time::timeout(
        Duration::from_millis(200),
        get_with_token(&fake, &token, pull),
    )
    .await;
    assert!(slow.is_err(), "the client should have timed out");
    // The request was recorded on arrival; it never got an answer because
    // the client hung up first, which the record shows as status 0.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let timed_out = fake.requests().last().cloned().expect("recorded");
    assert_eq!(
        (timed_out.endpoint, timed_out.status),
        (Some(Endpoint::GetPull), 0)
    );
    let started = std::time::Instant::now();
    assert_eq!(get_with_token(&fake, &token, pull).await.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(750),
        "only one request is slow"
    );
}

#[tokio::test]
async fn an_expired_token_fault_revokes_the_token() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.inject(Endpoint::GetPull, Fault::ExpiredToken, 1);
    let pull = "/api/v3/repos/octo-org/widgets/pulls/7";
    let expired = get_with_token(&fake, &token, pull).await;
    assert_eq!(
        (expired.status, expired.message().as_str()),
        (401, "Bad credentials")
    );
    assert_eq!(fake.pending_faults(), 0);
    // Like a really expired token, retrying with it does not help...
    assert_eq!(get_with_token(&fake, &token, pull).await.status, 401);
    // ... a new one does.
    let fresh = mint_token(&fake, INSTALLATION).await;
    assert_eq!(get_with_token(&fake, &fresh, pull).await.status, 200);

    // octocrab handles a 401 by minting a new token and retrying once.
    let client = installation_client(&fake, INSTALLATION);
    client
        .pulls("octo-org", "widgets")
        .get(7)
        .await
        .expect("first token");
    let minted = fake.tokens_issued().len();
    fake.inject(Endpoint::GetPull, Fault::ExpiredToken, 1);
    client
        .pulls("octo-org", "widgets")
        .get(7)
        .await
        .expect("retried with a new token");
    assert_eq!(fake.tokens_issued().len(), minted + 1);
}

#[tokio::test]
async fn access_token_faults_hit_token_minting() {
    let fake = start().await;
    seed_pull(&fake);
    fake.inject(Endpoint::AccessToken, Fault::ServerError(502), 1);
    let client = installation_client(&fake, INSTALLATION);
    let err = client
        .pulls("octo-org", "widgets")
        .get(7)
        .await
        .expect_err("502 while minting");
    assert_eq!(github_error(err), (502, "Server Error".to_owned()));
    client
        .pulls("octo-org", "widgets")
        .get(7)
        .await
        .expect("then fine");
    assert_eq!(fake.tokens_issued().len(), 1);
}

// ---------------------------------------------------------------------------
// Webhook deliveries
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deliveries_are_cursor_paginated_newest_first() {
    let fake = start().await;
    let ids: Vec<u64> = (0..5u64)
        .map(|age| {
            let status_code = if age % 2 == 0 { 200 } else { 503 };
            fake.add_delivery(NewDelivery {
                age_secs: age * 60,
                status_code,
                installation_id: Some(INSTALLATION),
                ..NewDelivery::default()
            })
            .id
        })
        .collect();
    let bearer = format!("Bearer {}", good_jwt());
    let mut path = "/api/v3/app/hook/deliveries?per_page=2".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = raw(
            fake.addr(),
            "GET",
            &path,
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
        pages += 1;
        for delivery in response.json().as_array().unwrap() {
            seen.push(delivery["id"].as_u64().unwrap());
            let expected = if delivery["status_code"] == 200 {
                "OK"
            } else {
                "Invalid HTTP Response: 503"
            };
            assert_eq!(delivery["status"], expected);
        }
        let Some(link) = response.header("link") else {
            break;
        };
        let rels = links(link);
        assert_eq!(rels[0].0, "next");
        assert!(rels[0].1.contains("cursor="), "{}", rels[0].1);
        path = rels[0]
            .1
            .trim_start_matches(&format!("http://{}", fake.host()))
            .to_owned();
    }
    assert_eq!(pages, 3);
    // Newest first: the delivery with age 0 was added first.
    assert_eq!(seen, ids);

    // octocrab's model reads them.
    let app = app_client(&fake);
    let listed = app
        .apps()
        .webhook_deliveries()
        .per_page(10u8)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[1].status_code, 503);

    // An installation token is not an app JWT.
    let token = mint_token(&fake, INSTALLATION).await;
    let wrong = get_with_token(&fake, &token, "/api/v3/app/hook/deliveries").await;
    assert_eq!(
        (wrong.status, wrong.message().as_str()),
        (401, "A JSON web token could not be decoded")
    );
    let bad_cursor = raw(
        fake.addr(),
        "GET",
        "/api/v3/app/hook/deliveries?cursor=zzz",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(bad_cursor.status, 400);
}

#[tokio::test]
async fn redelivery_requests_are_accepted_and_recorded() {
    let fake = start().await;
    let failed = fake.add_delivery(NewDelivery {
        status_code: 502,
        event: "issue_comment".to_owned(),
        action: Some("created".to_owned()),
        ..NewDelivery::default()
    });
    fake.set_redelivery_status_code(200);
    let app = app_client(&fake);
    app.apps()
        .redeliver_webhook_delivery(HookDeliveryId(failed.id))
        .await
        .expect("redeliver");
    let bearer = format!("Bearer {}", good_jwt());
    let path = format!("/api/v3/app/hook/deliveries/{}/attempts", failed.id);
    let response = raw(
        fake.addr(),
        "POST",
        &path,
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!((response.status, response.json()), (202, json!({})));
    let missing = raw(
        fake.addr(),
        "POST",
        "/api/v3/app/hook/deliveries/1/attempts",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(missing.status, 404);

    let attempts = fake.redelivery_attempts();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|a| a.delivery_id == failed.id && a.guid == failed.guid)
    );
    // GitHub redelivers afterwards, then lists each redelivery as a new
    // delivery of the same GUID.
    let deliveries = eventually(|| {
        let deliveries = fake.deliveries();
        (deliveries.len() == 3).then_some(deliveries)
    })
    .await;
    assert!(deliveries[0].redelivery && deliveries[0].guid == failed.guid);
    assert_eq!(deliveries[0].status, "OK");
    assert_eq!(deliveries[0].event, "issue_comment");
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::RedeliverAttempt))
            .count(),
        3
    );
}

// ---------------------------------------------------------------------------
// Routes, issues and the admin API
// ---------------------------------------------------------------------------

#[tokio::test]
async fn routes_work_with_and_without_the_enterprise_prefix() {
    let fake = start().await;
    seed_pull(&fake);
    fake.add_issue(REPO, 8, "A plain issue", "erin", "- [ ] not a PR");
    let token = mint_token(&fake, INSTALLATION).await;
    let with = get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/pulls/7").await;
    let without = get_with_token(&fake, &token, "/repos/octo-org/widgets/pulls/7").await;
    assert_eq!((with.status, without.status), (200, 200));
    assert_eq!(with.json()["id"], without.json()["id"]);
    assert!(
        with.json()["url"]
            .as_str()
            .unwrap()
            .starts_with(&fake.base_url())
    );

    // A PR is an issue with a `pull_request` key; a plain issue has none.
    let pr_issue = get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/issues/7")
        .await
        .json();
    assert!(
        pr_issue["pull_request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/pulls/7")
    );
    let issue = get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/issues/8")
        .await
        .json();
    assert_eq!(issue.get("pull_request"), None);
    let issue: octocrab::models::issues::Issue =
        serde_json::from_value(issue).expect("octocrab Issue");
    assert_eq!(issue.body.as_deref(), Some("- [ ] not a PR"));
    assert_eq!(
        get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/pulls/8")
            .await
            .status,
        404
    );
    assert_eq!(
        get_with_token(
            &fake,
            &token,
            "/api/v3/repos/octo-org/widgets/pulls/8/reviews"
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/pulls/99")
            .await
            .status,
        404
    );
    assert_eq!(
        get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/pulls/abc")
            .await
            .status,
        404
    );

    // GitHub's `Link` headers name repositories by id; those paths work too,
    // with the same visibility rules.
    let by_id = format!(
        "/api/v3/repositories/{}/pulls/7",
        fake.repo(REPO).unwrap().id
    );
    assert_eq!(
        get_with_token(&fake, &token, &by_id).await.json()["number"],
        7
    );
    let other_id = format!("/api/v3/repositories/{}", fake.repo(OTHER_REPO).unwrap().id);
    assert_eq!(get_with_token(&fake, &token, &other_id).await.status, 404);

    let unknown = get_with_token(&fake, &token, "/api/v3/repos/octo-org/widgets/teleport").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json()["documentation_url"],
        "https://docs.github.com/rest"
    );
}

#[tokio::test]
async fn pull_request_fields_follow_the_model() {
    let fake = start().await;
    fake.upsert_pull(
        REPO,
        PullRequest::new(3).no_body().author("dependabot[bot]"),
    );
    fake.upsert_pull(REPO, PullRequest::new(4).merged());
    let client = installation_client(&fake, INSTALLATION);
    let three = client
        .pulls("octo-org", "widgets")
        .get(3)
        .await
        .expect("pull 3");
    assert_eq!(three.body, None);
    let user = three.user.expect("user");
    assert_eq!(user.r#type, "Bot");
    assert_eq!(user.login, "dependabot[bot]");
    assert_eq!(three.head.ref_field, "pr-3");
    assert_eq!(three.base.ref_field, "main");
    assert_eq!(three.head.sha.len(), 40);
    let four = client
        .pulls("octo-org", "widgets")
        .get(4)
        .await
        .expect("pull 4");
    assert_eq!(four.merged, Some(true));
    assert_eq!(four.state, Some(octocrab::models::IssueState::Closed));
    assert!(four.merged_at.is_some() && four.closed_at.is_some());
    assert_ne!(three.head.sha, four.head.sha);
    assert_eq!(fake.pull(REPO, 4).unwrap().state, PrState::Closed);
}

#[tokio::test]
async fn admin_endpoints_seed_state_and_report_what_arrived() {
    let fake = FakeGitHub::start(APP_ID, &data("test-app-key.pub.pem")).await;
    let addr = fake.addr();
    let json_header = [("content-type", "application/json")];
    let admin = |method: &'static str, path: &'static str, body: Option<&'static str>| async move {
        raw(addr, method, path, &json_header, body).await
    };

    let health = admin("GET", "/_fake/health", None).await;
    assert_eq!(health.json()["base_url"], fake.base_url());
    let repo = admin(
        "POST",
        "/_fake/repos",
        Some(r#"{"installation_id": 9, "full_name": "acme/app"}"#),
    )
    .await;
    assert_eq!(repo.status, 201, "{}", repo.body);
    let pull = admin(
        "PUT",
        "/_fake/repos/acme/app/pulls/5",
        Some(r#"{"body": "- [ ] one", "head_sha": "5555555555555555555555555555555555555555", "author": "zed"}"#),
    )
    .await;
    assert_eq!(pull.status, 200, "{}", pull.body);
    assert_eq!(pull.json()["number"], 5);
    for (path, body) in [
        (
            "/_fake/repos/acme/app/pulls/5/issue-comments",
            r#"{"author": "a", "body": "c"}"#,
        ),
        (
            "/_fake/repos/acme/app/pulls/5/reviews",
            r#"{"author": "b", "body": "r", "state": "APPROVED"}"#,
        ),
        (
            "/_fake/repos/acme/app/pulls/5/review-comments",
            r#"{"author": "c", "body": "rc"}"#,
        ),
    ] {
        let response = admin("POST", path, Some(body)).await;
        assert_eq!(response.status, 201, "{path}: {}", response.body);
        assert!(response.json()["id"].is_u64());
    }
    let fault = admin(
        "POST",
        "/_fake/faults",
        Some(r#"{"endpoint": "create_check_run", "fault": {"kind": "server_error", "status": 503}, "times": 1}"#),
    )
    .await;
    assert_eq!(fault.status, 201, "{}", fault.body);
    assert_eq!(fake.pending_faults(), 1);

    let client = installation_client(&fake, 9);
    let reviews = client
        .pulls("acme", "app")
        .list_reviews(5)
        .send()
        .await
        .expect("reviews");
    assert_eq!(
        reviews.items[0].state,
        Some(octocrab::models::pulls::ReviewState::Approved)
    );
    let checks = client.checks("acme", "app");
    let create = || {
        checks
            .create_check_run(
                "task-list-completed",
                "5555555555555555555555555555555555555555",
            )
            .conclusion(CheckRunConclusion::Success)
            .send()
    };
    assert_eq!(github_error(create().await.expect_err("injected")).0, 503);
    create().await.expect("created");

    let runs = admin("GET", "/_fake/check-runs", None).await.json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["installation_id"], 9);
    assert_eq!(runs[0]["repo"], "acme/app");
    assert_eq!(runs[0]["body"]["conclusion"], "success");
    assert!(runs[0]["received_ms"].is_u64());
    let requests = admin("GET", "/_fake/requests", None).await.json();
    let statuses: Vec<&Value> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(201), &json!(200), &json!(503), &json!(201)]
    );
    assert_eq!(
        admin("GET", "/_fake/tokens", None)
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let delivery = admin(
        "POST",
        "/_fake/deliveries",
        Some(r#"{"event": "pull_request", "status_code": 503}"#),
    )
    .await;
    assert_eq!(delivery.status, 201);
    assert_eq!(delivery.json()["status"], "Invalid HTTP Response: 503");
    assert_eq!(
        admin("GET", "/_fake/redeliveries", None).await.json(),
        json!([])
    );

    assert_eq!(
        admin("POST", "/_fake/reset-records", None).await.status,
        200
    );
    assert_eq!(
        admin("GET", "/_fake/check-runs", None).await.json(),
        json!([])
    );
    assert_eq!(
        admin("GET", "/_fake/requests", None).await.json(),
        json!([])
    );
    // ... but the check run is still there for the API.
    let listed = client
        .checks("acme", "app")
        .list_check_runs_for_git_ref("5555555555555555555555555555555555555555".into())
        .send()
        .await
        .expect("list");
    assert_eq!(listed.total_count, 1);

    assert_eq!(
        admin("POST", "/_fake/repos", Some("{nope")).await.status,
        400
    );
    assert_eq!(
        admin("PUT", "/_fake/repos/acme/none/pulls/1", Some("{}"))
            .await
            .status,
        404
    );
    assert_eq!(admin("GET", "/_fake/unknown", None).await.status, 404);
    assert_eq!(
        admin(
            "POST",
            "/_fake/faults",
            Some(r#"{"endpoint": "get_pull", "fault": {"kind": "meteor"}}"#)
        )
        .await
        .status,
        400
    );
}

// ---------------------------------------------------------------------------
// Webhook payloads
// ---------------------------------------------------------------------------

#[test]
fn signatures_match_githubs_documented_example() {
    // The test vector of GitHub's "Validating webhook deliveries" docs.
    assert_eq!(
        webhooks::sign(b"It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[tokio::test]
async fn pull_request_webhooks_carry_the_models_pull_request() {
    let fake = start().await;
    seed_pull(&fake);
    let opened = webhooks::pull_request_opened(&fake, REPO, 7);
    assert_eq!(opened.event, "pull_request");
    let p = &opened.payload;
    assert_eq!(p["action"], "opened");
    assert_eq!(p["number"], 7);
    assert_eq!(p["pull_request"]["number"], 7);
    assert_eq!(p["pull_request"]["state"], "open");
    assert_eq!(p["pull_request"]["body"], "- [x] design\n- [ ] tests");
    assert_eq!(p["pull_request"]["head"]["sha"], HEAD);
    assert_eq!(p["pull_request"]["head"]["ref"], "pr-7");
    assert_eq!(p["pull_request"]["base"]["ref"], "main");
    assert_eq!(p["pull_request"]["user"]["login"], "alice");
    assert_eq!(p["repository"]["full_name"], REPO);
    assert_eq!(p["repository"]["name"], "widgets");
    assert_eq!(p["repository"]["owner"]["login"], "octo-org");
    assert_eq!(p["repository"]["id"], fake.repo(REPO).unwrap().id);
    assert_eq!(p["installation"]["id"], INSTALLATION);
    assert_eq!(p["sender"]["login"], "alice");
    assert_eq!(
        p["pull_request"],
        fake.resource_json(REPO, Resource::Pull(7)).unwrap()
    );
    // Octocrab's webhook model accepts it.
    let event = octocrab::models::webhook_events::WebhookEvent::try_from_header_and_body(
        "pull_request",
        &opened.body(),
    )
    .expect("octocrab parses the payload");
    assert_eq!(event.installation.map(|i| i.id().0), Some(INSTALLATION));

    let headers = opened.headers(Some(b"s3cret"));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-github-event").as_deref(), Some("pull_request"));
    assert_eq!(
        header("x-github-delivery"),
        Some(opened.delivery_id.clone())
    );
    assert_eq!(
        header("x-hub-signature-256"),
        Some(webhooks::sign(b"s3cret", &opened.body()))
    );
    assert_eq!(
        header("x-github-hook-installation-target-id"),
        Some(APP_ID.to_string())
    );
    assert!(
        opened
            .headers(None)
            .iter()
            .all(|(k, _)| *k != "x-hub-signature-256")
    );
    assert_ne!(
        webhooks::pull_request_opened(&fake, REPO, 7).delivery_id,
        opened.delivery_id
    );

    fake.upsert_pull(
        REPO,
        fake.pull(REPO, 7)
            .unwrap()
            .body("- [x] design\n- [x] tests"),
    );
    let edited =
        webhooks::pull_request_edited(&fake, REPO, 7, Some("- [x] design\n- [ ] tests"), None);
    assert_eq!(edited.action(), Some("edited"));
    assert_eq!(
        edited.payload["changes"],
        json!({"body": {"from": "- [x] design\n- [ ] tests"}})
    );
    assert_eq!(
        edited.payload["pull_request"]["body"],
        "- [x] design\n- [x] tests"
    );

    let new_head = "6666666666666666666666666666666666666666";
    fake.upsert_pull(REPO, fake.pull(REPO, 7).unwrap().head_sha(new_head));
    let pushed = webhooks::pull_request_synchronize(&fake, REPO, 7, HEAD);
    assert_eq!(
        (
            pushed.payload["before"].as_str(),
            pushed.payload["after"].as_str()
        ),
        (Some(HEAD), Some(new_head))
    );

    fake.upsert_pull(REPO, fake.pull(REPO, 7).unwrap().merged());
    let closed = webhooks::pull_request_closed(&fake, REPO, 7);
    assert_eq!(closed.payload["pull_request"]["state"], "closed");
    assert_eq!(closed.payload["pull_request"]["merged"], true);
    fake.upsert_pull(REPO, fake.pull(REPO, 7).unwrap().state(PrState::Open));
    let reopened = webhooks::pull_request_reopened(&fake, REPO, 7);
    assert_eq!(reopened.action(), Some("reopened"));
}

#[tokio::test]
async fn comment_and_review_webhooks_name_their_objects() {
    let fake = start().await;
    seed_pull(&fake);
    fake.add_issue(REPO, 8, "Plain", "erin", "issue body");
    let on_pr = fake.add_issue_comment(REPO, 7, "bob", "- [ ] on the PR");
    let on_issue = fake.add_issue_comment(REPO, 8, "bob", "- [ ] on the issue");

    let hook = webhooks::issue_comment_created(&fake, REPO, 7, on_pr);
    assert_eq!(
        (hook.event, hook.action()),
        ("issue_comment", Some("created"))
    );
    assert_eq!(hook.payload["comment"]["id"], on_pr);
    assert_eq!(hook.payload["comment"]["body"], "- [ ] on the PR");
    assert_eq!(hook.payload["issue"]["number"], 7);
    assert!(hook.payload["issue"]["pull_request"].is_object());
    assert_eq!(hook.payload["sender"]["login"], "bob");
    let hook = webhooks::issue_comment_created(&fake, REPO, 8, on_issue);
    assert_eq!(hook.payload["issue"].get("pull_request"), None);

    let review = fake.add_review_with_state(
        REPO,
        7,
        "carol",
        "- [x] checked",
        ReviewState::ChangesRequested,
    );
    let hook = webhooks::pull_request_review_submitted(&fake, REPO, 7, review);
    assert_eq!(
        (hook.event, hook.action()),
        ("pull_request_review", Some("submitted"))
    );
    assert_eq!(hook.payload["review"]["id"], review);
    assert_eq!(hook.payload["review"]["state"], "CHANGES_REQUESTED");
    assert_eq!(hook.payload["pull_request"]["number"], 7);

    let comment = fake.add_review_comment(REPO, 7, "dave", "- [ ] nit");
    let hook = webhooks::pull_request_review_comment_created(&fake, REPO, 7, comment);
    assert_eq!(
        (hook.event, hook.action()),
        ("pull_request_review_comment", Some("created"))
    );
    assert_eq!(hook.payload["comment"]["id"], comment);
    assert_eq!(hook.payload["comment"]["body"], "- [ ] nit");

    for (event, body) in [
        (
            "issue_comment",
            webhooks::issue_comment_created(&fake, REPO, 7, on_pr).body(),
        ),
        (
            "pull_request_review",
            webhooks::pull_request_review_submitted(&fake, REPO, 7, review).body(),
        ),
        (
            "pull_request_review_comment",
            webhooks::pull_request_review_comment_created(&fake, REPO, 7, comment).body(),
        ),
    ] {
        octocrab::models::webhook_events::WebhookEvent::try_from_header_and_body(event, &body)
            .unwrap_or_else(|err| panic!("octocrab cannot parse {event}: {err}"));
    }
}

#[tokio::test]
async fn merge_group_webhook_makes_its_head_a_known_commit() {
    let fake = start().await;
    seed_pull(&fake);
    let queue_head = "7777777777777777777777777777777777777777";
    let hook = webhooks::merge_group_checks_requested(&fake, REPO, 7, queue_head, "main");
    assert_eq!(
        (hook.event, hook.action()),
        ("merge_group", Some("checks_requested"))
    );
    let group = &hook.payload["merge_group"];
    assert_eq!(group["head_sha"], queue_head);
    assert_eq!(group["base_ref"], "refs/heads/main");
    assert!(
        group["head_ref"]
            .as_str()
            .unwrap()
            .starts_with("refs/heads/gh-readonly-queue/main/pr-7-")
    );
    assert_eq!(group["base_sha"].as_str().map(str::len), Some(40));
    assert_eq!(hook.payload["installation"]["id"], INSTALLATION);
    octocrab::models::webhook_events::WebhookEvent::try_from_header_and_body(
        "merge_group",
        &hook.body(),
    )
    .expect("octocrab parses merge_group");

    let token = mint_token(&fake, INSTALLATION).await;
    let body =
        json!({"name": "task-list-completed", "head_sha": queue_head, "conclusion": "success"});
    let created = post_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/check-runs",
        &body.to_string(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

// ---------------------------------------------------------------------------
// Stricter rules: headers, output sizes, limits, outages, renames,
// permissions, suspension, deleted accounts, redelivery
// ---------------------------------------------------------------------------

const CHECK_RUNS: &str = "/api/v3/repos/octo-org/widgets/check-runs";
const PULL: &str = "/api/v3/repos/octo-org/widgets/pulls/7";

fn check_run_body(name: &str) -> String {
    json!({"name": name, "head_sha": HEAD, "status": "in_progress"}).to_string()
}

#[tokio::test]
async fn a_repeated_singleton_header_gets_400() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let auth = format!("token {token}");
    let host = fake.host();
    let cases: [&[(&str, &str)]; 4] = [
        &[
            ("authorization", &auth),
            ("user-agent", "a"),
            ("user-agent", "b"),
        ],
        &[("authorization", &auth), ("authorization", &auth)],
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-type", "application/json"),
        ],
        &[("authorization", &auth), ("host", &host), ("host", &host)],
    ];
    for headers in cases {
        let response = raw(fake.addr(), "GET", PULL, headers, None).await;
        assert_eq!(response.status, 400, "{headers:?}: {}", response.body);
    }
    let once = raw(
        fake.addr(),
        "GET",
        PULL,
        &[("authorization", &auth), ("user-agent", "a")],
        None,
    )
    .await;
    assert_eq!(once.status, 200);
    assert!(fake.requests().iter().filter(|r| r.status == 400).count() >= 3);

    fake.set_strict_headers(false);
    let lenient = raw(fake.addr(), "GET", PULL, cases[0], None).await;
    assert_eq!(lenient.status, 200);
}

#[tokio::test]
async fn check_run_output_is_limited_to_65535_bytes_of_utf8() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let with_output = |summary: &str, text: Option<&str>| {
        json!({
            "name": "tasks", "head_sha": HEAD, "status": "in_progress",
            "output": {"title": "t", "summary": summary, "text": text},
        })
        .to_string()
    };
    let ascii_max = "a".repeat(65_535);
    let fits = post_with_token(&fake, &token, CHECK_RUNS, &with_output(&ascii_max, None)).await;
    assert_eq!(fits.status, 201, "{}", fits.body);

    // 40,000 characters, 80,000 bytes: GitHub counts bytes.
    let wide = "é".repeat(40_000);
    for (summary, text, field) in [
        (wide.as_str(), None, "summary"),
        ("ok", Some(wide.as_str()), "text"),
    ] {
        let refused = post_with_token(&fake, &token, CHECK_RUNS, &with_output(summary, text)).await;
        assert_eq!(refused.status, 422, "{}", refused.body);
        let body = refused.json();
        assert_eq!(body["message"], "Validation Failed");
        assert_eq!(
            body["errors"][0],
            json!({
                "resource": "CheckRun",
                "code": "custom",
                "field": field,
                "message": format!("{field} exceeds a maximum bytesize of 65535"),
            })
        );
    }

    // Past 65,535 characters the schema refuses it first.
    let too_long = post_with_token(
        &fake,
        &token,
        CHECK_RUNS,
        &with_output(&"a".repeat(65_536), None),
    )
    .await;
    assert_eq!(too_long.status, 422);
    assert_eq!(
        too_long.message(),
        "Invalid request.\n\nOnly 65535 characters are allowed; 65536 were supplied."
    );
}

#[tokio::test]
async fn check_runs_need_a_name_and_head_sha_and_a_conclusion_completes_them() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let post = |body: Value| {
        let token = token.clone();
        let fake = fake.clone();
        async move { post_with_token(&fake, &token, CHECK_RUNS, &body.to_string()).await }
    };
    let no_name = post(json!({"head_sha": HEAD})).await;
    assert_eq!(no_name.status, 422);
    assert_eq!(
        no_name.message(),
        "Invalid request.\n\n\"name\" wasn't supplied."
    );
    let neither = post(json!({"status": "queued"})).await;
    assert_eq!(
        neither.message(),
        "Invalid request.\n\n\"name\", \"head_sha\" weren't supplied."
    );
    // "Required if you provide completed_at or a status of completed."
    let no_conclusion =
        post(json!({"name": "tasks", "head_sha": HEAD, "status": "completed"})).await;
    assert_eq!(no_conclusion.status, 422);
    assert_eq!(
        no_conclusion.message(),
        "Invalid request.\n\n\"conclusion\" wasn't supplied."
    );
    // "Providing conclusion will automatically set the status parameter to
    // completed", whatever status was sent.
    for status in [None, Some("in_progress"), Some("queued")] {
        let mut body = json!({"name": "tasks", "head_sha": HEAD, "conclusion": "success"});
        if let Some(status) = status {
            body["status"] = json!(status);
        }
        let created = post(body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.json()["status"], "completed");
        assert!(created.json()["completed_at"].is_string());
    }
}

#[tokio::test]
async fn secondary_limits_answer_403_or_429_with_githubs_message() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.secondary_limit(
        Scope::Writes,
        403,
        Some(Duration::from_millis(1500)),
        Duration::from_secs(60),
    );
    let refused = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused
            .message()
            .starts_with("You have exceeded a secondary rate limit. Please wait a few minutes before you try again."),
        "{}",
        refused.message()
    );
    assert_eq!(refused.header("retry-after"), Some("2"));
    // Reads are outside the scope; token mints are writes.
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);
    let bearer = format!("Bearer {}", good_jwt());
    let mint = raw(
        fake.addr(),
        "POST",
        &format!("/api/v3/app/installations/{INSTALLATION}/access_tokens"),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(mint.status, 403);

    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.secondary_limit(Scope::All, 429, None, Duration::from_millis(400));
    let too_many = get_with_token(&fake, &token, PULL).await;
    assert_eq!(too_many.status, 429);
    assert!(
        too_many
            .message()
            .starts_with("You have exceeded a secondary rate limit")
    );
    assert_eq!(too_many.header("retry-after"), None);
    // The window ends by itself.
    let mut attempts = 1;
    loop {
        attempts += 1;
        let answer = get_with_token(&fake, &token, PULL).await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 429);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused requests are recorded with their status.
    let pulls: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::GetPull))
        .map(|r| r.status)
        .collect();
    assert_eq!(pulls.len(), attempts);
    assert_eq!(pulls.iter().filter(|s| **s == 429).count(), attempts - 1);
}

#[tokio::test]
async fn check_run_creation_scope_hits_only_check_runs() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.secondary_limit(
        Scope::CheckRunCreation,
        429,
        Some(Duration::from_secs(3)),
        Duration::from_secs(60),
    );
    let refused = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(
        (refused.status, refused.header("retry-after")),
        (429, Some("3"))
    );
    mint_token(&fake, INSTALLATION).await;
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);
}

#[tokio::test]
async fn content_creation_is_limited_to_80_a_minute_per_installation() {
    let fake = start().await;
    seed_pull(&fake);
    fake.upsert_pull(OTHER_REPO, PullRequest::new(1).head_sha(HEAD));
    let token = mint_token(&fake, INSTALLATION).await;
    for i in 0..80 {
        let created =
            post_with_token(&fake, &token, CHECK_RUNS, &check_run_body(&format!("c{i}"))).await;
        assert_eq!(created.status, 201, "creation {i}: {}", created.body);
    }
    let refused = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("over")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.message(),
        "You have exceeded a secondary rate limit and have been temporarily blocked from content creation. \
         Please retry your request again later."
    );
    // Reads and other installations are not affected.
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);
    let other = mint_token(&fake, OTHER_INSTALLATION).await;
    let elsewhere = post_with_token(
        &fake,
        &other,
        "/api/v3/repos/other-org/gadgets/check-runs",
        &check_run_body("c"),
    )
    .await;
    assert_eq!(elsewhere.status, 201);

    fake.set_content_creation_limits(false);
    let unlimited = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("off")).await;
    assert_eq!(unlimited.status, 201);
}

#[tokio::test]
async fn a_spent_primary_limit_refuses_every_call_until_the_reset() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.set_primary_limit(INSTALLATION, 3, 2, Duration::from_secs(3600));
    for remaining in ["1", "0"] {
        let answer = get_with_token(&fake, &token, PULL).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(answer.header("x-ratelimit-remaining"), Some(remaining));
    }
    let spent = get_with_token(&fake, &token, PULL).await;
    assert_eq!(spent.status, 403);

    fake.set_primary_limit(INSTALLATION, 5000, 0, Duration::from_millis(1200));
    let mut refusals = 0;
    loop {
        let answer = get_with_token(&fake, &token, PULL).await;
        if answer.status == 200 {
            assert_eq!(answer.header("x-ratelimit-remaining"), Some("4999"));
            break;
        }
        refusals += 1;
        assert_eq!(answer.status, 403);
        assert_eq!(
            answer.message(),
            format!("API rate limit exceeded for installation ID {INSTALLATION}.")
        );
        assert_eq!(answer.header("x-ratelimit-remaining"), Some("0"));
        let reset: i64 = answer.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((now() - 1..=now() + 3).contains(&reset), "reset {reset}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refusals >= 5, "refused {refusals} times before the reset");
}

#[tokio::test]
async fn outages_answer_githubs_errors_until_they_end() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.outage(Scope::All, 502, None);
    let down = get_with_token(&fake, &token, PULL).await;
    assert_eq!(
        (down.status, down.message()),
        (502, "Server Error".to_owned())
    );
    let unknown = get_with_token(&fake, &token, "/api/v3/nowhere").await;
    assert_eq!(unknown.status, 502);
    fake.end_outage();
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);

    fake.outage(
        Scope::CheckRunCreation,
        503,
        Some(Duration::from_millis(300)),
    );
    let refused = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(
        (refused.status, refused.message()),
        (503, "Service Unavailable".to_owned())
    );
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);
    loop {
        let answer = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
        if answer.status == 201 {
            break;
        }
        assert_eq!(answer.status, 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fake.requests().iter().any(|r| r.status == 502));
}

#[tokio::test]
async fn a_renamed_repository_redirects_to_its_id() {
    let fake = start().await;
    seed_pull(&fake);
    let id = fake.repo(REPO).unwrap().id;
    let token = mint_token(&fake, INSTALLATION).await;
    fake.rename_repo(REPO, "octo-org/gizmos");

    let moved = get_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/issues/7/comments?per_page=5",
    )
    .await;
    assert_eq!(moved.status, 301);
    let location = format!(
        "http://{}/api/v3/repositories/{id}/issues/7/comments?per_page=5",
        fake.host()
    );
    assert_eq!(moved.header("location"), Some(location.as_str()));
    assert_eq!(moved.json()["message"], "Moved Permanently");
    assert_eq!(moved.json()["url"], location.as_str());
    // The location is served.
    let path = location.trim_start_matches(&format!("http://{}", fake.host()));
    assert_eq!(get_with_token(&fake, &token, path).await.status, 200);

    // Other methods get 307, so that clients repeat the method and body.
    let post = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(post.status, 307);
    let check_runs = format!("http://{}/api/v3/repositories/{id}/check-runs", fake.host());
    assert_eq!(post.header("location"), Some(check_runs.as_str()));
    let path = check_runs.trim_start_matches(&format!("http://{}", fake.host()));
    let created = post_with_token(&fake, &token, path, &check_run_body("a")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json()["url"],
        format!(
            "{}/repos/octo-org/gizmos/check-runs/{}",
            fake.base_url(),
            created.json()["id"]
        )
    );

    let renamed = get_with_token(&fake, &token, "/api/v3/repos/octo-org/gizmos/pulls/7").await;
    assert_eq!(renamed.status, 200);
    assert_eq!(
        renamed.json()["base"]["repo"]["full_name"],
        "octo-org/gizmos"
    );
    assert_eq!(fake.check_runs("octo-org/gizmos").len(), 1);
}

#[tokio::test]
async fn a_missing_permission_gets_resource_not_accessible_by_integration() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.revoke_permission(INSTALLATION, "checks");
    let refused = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.message(), "Resource not accessible by integration");
    let list = get_with_token(
        &fake,
        &token,
        &format!("/api/v3/repos/octo-org/widgets/commits/{HEAD}/check-runs"),
    )
    .await;
    assert_eq!(list.status, 403);
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);

    fake.revoke_permission(INSTALLATION, "pull_requests");
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 403);
    let reviews = get_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/pulls/7/reviews",
    )
    .await;
    assert_eq!(reviews.message(), "Resource not accessible by integration");
    // Another installation keeps its permissions; a token minted now shows
    // what is left.
    let other = mint_token(&fake, OTHER_INSTALLATION).await;
    assert_eq!(
        get_with_token(&fake, &other, "/api/v3/repos/other-org/gadgets")
            .await
            .status,
        200
    );
    let bearer = format!("Bearer {}", good_jwt());
    let minted = raw(
        fake.addr(),
        "POST",
        &format!("/api/v3/app/installations/{INSTALLATION}/access_tokens"),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(
        minted.json()["permissions"],
        json!({"contents": "read", "issues": "read", "metadata": "read"})
    );

    fake.grant_permission(INSTALLATION, "checks", "read");
    assert_eq!(list_status(&fake, &token).await, 200);
    let still = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(still.status, 403, "read is not write");
}

async fn list_status(fake: &FakeGitHub, token: &str) -> u16 {
    get_with_token(
        fake,
        token,
        &format!("/api/v3/repos/octo-org/widgets/commits/{HEAD}/check-runs"),
    )
    .await
    .status
}

#[tokio::test]
async fn a_suspended_installation_gets_no_tokens() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    fake.suspend_installation(INSTALLATION);
    let bearer = format!("Bearer {}", good_jwt());
    let refused = raw(
        fake.addr(),
        "POST",
        &format!("/api/v3/app/installations/{INSTALLATION}/access_tokens"),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.message(), "This installation has been suspended");
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 401);
    mint_token(&fake, OTHER_INSTALLATION).await;
}

#[tokio::test]
async fn deleted_accounts_are_null_in_answers_and_webhooks() {
    let fake = start().await;
    seed_pull(&fake);
    let comment = fake.add_issue_comment(REPO, 7, "bob", "- [ ] from bob");
    let review = fake.add_review(REPO, 7, "bob", "- [ ] review");
    let review_comment = fake.add_review_comment(REPO, 7, "bob", "- [ ] inline");
    fake.delete_user("alice");
    fake.delete_user("Bob");
    let token = mint_token(&fake, INSTALLATION).await;
    let pull = get_with_token(&fake, &token, PULL).await.json();
    assert_eq!(pull["user"], Value::Null);
    for path in ["issues/7/comments", "pulls/7/reviews", "pulls/7/comments"] {
        let list = get_with_token(
            &fake,
            &token,
            &format!("/api/v3/repos/octo-org/widgets/{path}"),
        )
        .await
        .json();
        let users: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|item| &item["user"])
            .collect();
        assert!(
            !users.is_empty() && users.iter().all(|u| u.is_null()),
            "{path}: {users:?}"
        );
    }
    assert_eq!(
        fake.resource_json(REPO, Resource::Review(review)).unwrap()["user"],
        Value::Null
    );
    assert_eq!(
        fake.resource_json(REPO, Resource::ReviewComment(review_comment))
            .unwrap()["user"],
        Value::Null
    );

    let hook = webhooks::issue_comment_created(&fake, REPO, 7, comment);
    assert_eq!(hook.payload["comment"]["user"], Value::Null);
    assert_eq!(hook.payload["issue"]["user"], Value::Null);
    assert_eq!(hook.payload["sender"]["login"], webhooks::GHOST);
    let opened = webhooks::pull_request_opened(&fake, REPO, 7);
    assert_eq!(opened.payload["pull_request"]["user"], Value::Null);
}

#[tokio::test]
async fn redelivery_happens_afterwards_and_only_within_three_days() {
    let fake = start().await;
    let recent = fake.add_delivery(NewDelivery {
        status_code: 502,
        age_secs: 3 * 24 * 3600 - 60,
        ..NewDelivery::default()
    });
    let old = fake.add_delivery(NewDelivery {
        status_code: 502,
        age_secs: 3 * 24 * 3600 + 60,
        ..NewDelivery::default()
    });
    let bearer = format!("Bearer {}", good_jwt());
    let attempt = |id: u64| {
        let bearer = bearer.clone();
        let addr = fake.addr();
        async move {
            let path = format!("/api/v3/app/hook/deliveries/{id}/attempts");
            raw(addr, "POST", &path, &[("authorization", &bearer)], None).await
        }
    };
    let accepted = attempt(recent.id).await;
    assert_eq!(accepted.status, 202);
    // Not listed yet: GitHub redelivers after answering.
    assert_eq!(fake.deliveries().len(), 2);
    let redelivered = eventually(|| fake.deliveries().into_iter().find(|d| d.redelivery)).await;
    assert_eq!(redelivered.guid, recent.guid);

    let refused = attempt(old.id).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["message"], "Validation Failed");
    assert_eq!(fake.redelivery_attempts().len(), 1);
}

#[tokio::test]
async fn admin_endpoints_drive_the_stricter_rules() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    let admin = |method: &'static str, path: String, body: Value| {
        let addr = fake.addr();
        async move {
            let body = body.to_string();
            raw(
                addr,
                method,
                &path,
                &[("content-type", "application/json")],
                Some(&body),
            )
            .await
        }
    };
    let ok = |r: &Raw| {
        assert!(
            r.status == 200 || r.status == 201,
            "{}: {}",
            r.status,
            r.body
        )
    };

    ok(&admin(
        "POST",
        "/_fake/outage".into(),
        json!({"scope": "all", "status": 504}),
    )
    .await);
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 504);
    ok(&admin("DELETE", "/_fake/outage".into(), json!({})).await);

    ok(&admin(
        "POST",
        "/_fake/secondary-limit".into(),
        json!({"scope": "writes", "status": 429, "retry_after_ms": 1000, "lasts_ms": 60000}),
    )
    .await);
    let limited = post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("a")).await;
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("1"))
    );
    ok(&admin("DELETE", "/_fake/secondary-limit".into(), json!({})).await);

    ok(&admin("PUT", "/_fake/primary-limit".into(), json!({"installation_id": INSTALLATION, "limit": 100, "remaining": 0, "reset_in_ms": 60000})).await);
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 403);
    ok(&admin(
        "PUT",
        "/_fake/primary-limit".into(),
        json!({"installation_id": INSTALLATION, "remaining": 5000}),
    )
    .await);
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 200);

    ok(&admin(
        "PUT",
        "/_fake/content-creation-limits".into(),
        json!({"enabled": false}),
    )
    .await);
    ok(&admin(
        "PUT",
        "/_fake/strict-headers".into(),
        json!({"enabled": false}),
    )
    .await);
    let auth = format!("token {token}");
    let twice = raw(
        fake.addr(),
        "GET",
        PULL,
        &[("authorization", &auth), ("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(twice.status, 200);

    ok(&admin(
        "POST",
        format!("/_fake/installations/{INSTALLATION}/revoke"),
        json!({"permission": "pull_requests"}),
    )
    .await);
    assert_eq!(get_with_token(&fake, &token, PULL).await.status, 403);

    ok(&admin("DELETE", "/_fake/users/alice".into(), json!({})).await);
    assert_eq!(
        fake.resource_json(REPO, Resource::Pull(7)).unwrap()["user"],
        Value::Null
    );

    ok(&admin(
        "POST",
        "/_fake/renames".into(),
        json!({"from": REPO, "to": "octo-org/renamed"}),
    )
    .await);
    assert!(fake.repo("octo-org/renamed").is_some());

    ok(&admin(
        "POST",
        format!("/_fake/installations/{INSTALLATION}/suspend"),
        json!({}),
    )
    .await);
    assert_eq!(
        get_with_token(&fake, &token, "/api/v3/repos/octo-org/renamed")
            .await
            .status,
        401
    );

    let violations = admin("GET", "/_fake/openapi-violations".into(), json!({})).await;
    assert_eq!(violations.status, 200);
    assert!(violations.json().is_array());
}

#[tokio::test]
async fn requests_that_break_the_openapi_description_are_recorded() {
    let fake = start().await;
    seed_pull(&fake);
    let token = mint_token(&fake, INSTALLATION).await;
    assert_eq!(
        get_with_token(
            &fake,
            &token,
            "/api/v3/repos/octo-org/widgets/issues/7/comments?per_page=100&page=2"
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_with_token(&fake, &token, CHECK_RUNS, &check_run_body("fine"))
            .await
            .status,
        201
    );
    assert_eq!(fake.openapi_violations(), Vec::<String>::new());

    get_with_token(
        &fake,
        &token,
        "/api/v3/repos/octo-org/widgets/issues/7/comments?per_page=many",
    )
    .await;
    get_with_token(
        &fake,
        &token,
        &format!("/api/v3/repos/octo-org/widgets/commits/{HEAD}/check-runs?filter=newest"),
    )
    .await;
    post_with_token(
        &fake,
        &token,
        CHECK_RUNS,
        &json!({"name": "x", "head_sha": HEAD, "status": "in_progress", "output": {"title": "t"}})
            .to_string(),
    )
    .await;
    let violations = fake.openapi_violations();
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(
        violations[0].contains("query parameter per_page"),
        "{}",
        violations[0]
    );
    assert!(
        violations[1].contains("query parameter filter"),
        "{}",
        violations[1]
    );
    assert!(
        violations[2].contains("checks/create") && violations[2].contains("summary"),
        "{}",
        violations[2]
    );
}
