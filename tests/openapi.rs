//! The fake's answers and the bot's requests against GitHub's published
//! OpenAPI description (`tests/data/openapi/endpoints.json`, extracted from
//! `@octokit/openapi` by `tests/data/openapi/extract.py`): a fake that
//! answered in shapes GitHub does not use, or a bot that sent what GitHub
//! does not describe, would pass tests that mean nothing.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::bot::{APP_ID, PRIVATE_KEY, PUBLIC_KEY, TestBot};
use support::fake_github::{
    ContentsAccess, FakeGitHub, NewDelivery, PullRequest, SETTINGS_PATH, Scope,
    openapi_response_violations,
};
use support::webhooks;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INSTALLATION: u64 = 7;
const SUSPENDED: u64 = 8;
const LIMITED: u64 = 9;
const REPO: &str = "octo/hello";
const HEAD: &str = "2222222222222222222222222222222222222222";

fn jwt() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let key = EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).expect("test key");
    let claims = json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID});
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("JWT")
}

/// One HTTP/1.1 exchange on a fresh connection: status and JSON body.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    exchange_with(addr, method, path, authorization, "", body).await
}

/// [`exchange`] with extra header lines (each ending in `\r\n`).
async fn exchange_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: &str,
    extra_headers: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         authorization: {authorization}\r\ncontent-type: application/json\r\n\
         {extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|err| panic!("{path}: not JSON ({err}): {body}"))
    };
    (status, body)
}

async fn token(fake: &FakeGitHub, installation: u64) -> String {
    let path = format!("/api/v3/app/installations/{installation}/access_tokens");
    let (status, body) = exchange(
        fake.addr(),
        "POST",
        &path,
        &format!("Bearer {}", jwt()),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    format!("token {}", body["token"].as_str().expect("token"))
}

/// A fake with something behind every endpoint the bot uses.
async fn seeded() -> FakeGitHub {
    let fake = FakeGitHub::start(APP_ID, PUBLIC_KEY.as_bytes()).await;
    fake.add_repo(INSTALLATION, REPO);
    fake.add_repo(INSTALLATION, "octo/old-name");
    fake.add_repo(SUSPENDED, "paused/repo");
    fake.add_repo(LIMITED, "busy/repo");
    fake.upsert_pull(
        REPO,
        PullRequest::new(1)
            .body("- [ ] a")
            .head_sha(HEAD)
            .author("alice"),
    );
    fake.upsert_pull("busy/repo", PullRequest::new(1));
    fake.add_issue(REPO, 2, "An issue", "bob", "text");
    fake.add_issue_comment(REPO, 1, "bob", "- [x] b");
    fake.add_issue_comment(REPO, 1, "gone", "- [ ] c");
    fake.add_review(REPO, 1, "carol", "- [ ] d");
    fake.add_review_comment(REPO, 1, "carol", "- [ ] e");
    fake.delete_user("gone");
    fake.put_file(REPO, SETTINGS_PATH, "when_incomplete: failure\n");
    fake.add_delivery(NewDelivery {
        status_code: 502,
        installation_id: Some(INSTALLATION),
        ..NewDelivery::default()
    });
    fake.add_delivery(NewDelivery {
        age_secs: 4 * 24 * 3600,
        ..NewDelivery::default()
    });
    fake
}

#[tokio::test]
async fn every_answer_of_the_fake_conforms_to_githubs_description() {
    let fake = seeded().await;
    let app = format!("Bearer {}", jwt());
    let inst = token(&fake, INSTALLATION).await;
    let limited = token(&fake, LIMITED).await;
    let check_run = json!({"name": "tasks", "head_sha": HEAD, "status": "in_progress",
        "started_at": "2024-01-01T00:00:00Z",
        "output": {"title": "0 / 1", "summary": "s", "text": "t"}});
    let (_, created) = exchange(
        fake.addr(),
        "POST",
        "/api/v3/repos/octo/hello/check-runs",
        &inst,
        Some(&check_run),
    )
    .await;
    let run_id = created["id"].as_u64().expect("check run id");
    let deliveries = fake.deliveries();
    let (recent, old) = (deliveries[0].id, deliveries[1].id);
    fake.rename_repo("octo/old-name", "octo/new-name");

    let bad_app = "Bearer not-a-jwt".to_owned();
    let bad_token = "token ghs_unknown".to_owned();
    let completed = json!({"name": "tasks", "head_sha": HEAD, "conclusion": "success"});
    let unknown_sha =
        json!({"name": "tasks", "head_sha": "3333333333333333333333333333333333333333"});
    let mut cases: Vec<(&str, String, &String, Option<Value>, u16)> = vec![
        (
            "POST",
            format!("/app/installations/{INSTALLATION}/access_tokens"),
            &app,
            None,
            201,
        ),
        (
            "POST",
            format!("/app/installations/{INSTALLATION}/access_tokens"),
            &app,
            Some(json!({"repositories": ["hello"], "permissions": {"checks": "write"}})),
            201,
        ),
        (
            "POST",
            format!("/app/installations/{INSTALLATION}/access_tokens"),
            &app,
            Some(json!({"repositories": ["nowhere"]})),
            422,
        ),
        (
            "POST",
            "/app/installations/999/access_tokens".into(),
            &app,
            None,
            404,
        ),
        (
            "POST",
            format!("/app/installations/{INSTALLATION}/access_tokens"),
            &bad_app,
            None,
            401,
        ),
        ("GET", "/app".into(), &app, None, 200),
        (
            "GET",
            format!("/app/installations/{INSTALLATION}"),
            &app,
            None,
            200,
        ),
        ("GET", "/app/installations/999".into(), &app, None, 404),
        (
            "GET",
            "/repos/octo/hello/installation".into(),
            &app,
            None,
            200,
        ),
        (
            "GET",
            "/repos/octo/nowhere/installation".into(),
            &app,
            None,
            404,
        ),
        (
            "GET",
            "/app/hook/deliveries?per_page=1".into(),
            &app,
            None,
            200,
        ),
        (
            "GET",
            "/app/hook/deliveries?cursor=bogus".into(),
            &app,
            None,
            400,
        ),
        (
            "GET",
            format!("/app/hook/deliveries/{recent}"),
            &app,
            None,
            200,
        ),
        ("GET", "/app/hook/deliveries/1".into(), &app, None, 404),
        (
            "POST",
            format!("/app/hook/deliveries/{recent}/attempts"),
            &app,
            None,
            202,
        ),
        (
            "POST",
            format!("/app/hook/deliveries/{old}/attempts"),
            &app,
            None,
            422,
        ),
        (
            "POST",
            "/app/hook/deliveries/1/attempts".into(),
            &app,
            None,
            404,
        ),
        ("GET", "/rate_limit".into(), &inst, None, 200),
        ("GET", "/repos/octo/hello".into(), &inst, None, 200),
        ("GET", "/repos/octo/old-name".into(), &inst, None, 301),
        ("GET", "/repos/octo/nowhere".into(), &inst, None, 404),
        ("GET", "/repos/octo/hello".into(), &bad_token, None, 401),
        ("GET", "/repos/octo/hello/pulls/1".into(), &inst, None, 200),
        ("GET", "/repos/octo/hello/pulls/2".into(), &inst, None, 404),
        (
            "GET",
            "/repos/busy/repo/pulls/1".into(),
            &limited,
            None,
            403,
        ),
        ("GET", "/repos/octo/hello/issues/1".into(), &inst, None, 200),
        ("GET", "/repos/octo/hello/issues/2".into(), &inst, None, 200),
        ("GET", "/repos/octo/hello/issues/3".into(), &inst, None, 404),
        (
            "GET",
            "/repos/octo/hello/issues/1/comments?per_page=1".into(),
            &inst,
            None,
            200,
        ),
        (
            "GET",
            "/repos/octo/hello/issues/3/comments".into(),
            &inst,
            None,
            404,
        ),
        (
            "GET",
            "/repos/octo/hello/pulls/1/reviews".into(),
            &inst,
            None,
            200,
        ),
        (
            "GET",
            "/repos/octo/hello/pulls/1/comments".into(),
            &inst,
            None,
            200,
        ),
        (
            "GET",
            format!(
                "/repos/octo/hello/commits/{HEAD}/check-runs?check_name=tasks&filter=latest&per_page=1"
            ),
            &inst,
            None,
            200,
        ),
        (
            "GET",
            "/repos/octo/hello/commits/unknown/check-runs".into(),
            &inst,
            None,
            422,
        ),
        (
            "GET",
            format!("/repos/octo/hello/check-runs/{run_id}"),
            &inst,
            None,
            200,
        ),
        (
            "GET",
            "/repos/octo/hello/check-runs/1".into(),
            &inst,
            None,
            404,
        ),
        (
            "POST",
            "/repos/octo/hello/check-runs".into(),
            &inst,
            Some(completed),
            201,
        ),
        (
            "POST",
            "/repos/octo/hello/check-runs".into(),
            &inst,
            Some(unknown_sha),
            422,
        ),
        (
            "POST",
            "/repos/octo/hello/check-runs".into(),
            &inst,
            Some(json!({"name": "x"})),
            422,
        ),
        (
            "POST",
            "/repos/octo/old-name/check-runs".into(),
            &inst,
            Some(check_run.clone()),
            307,
        ),
        (
            "POST",
            "/repos/octo/nowhere/check-runs".into(),
            &inst,
            Some(check_run.clone()),
            404,
        ),
    ];
    let contents = format!("/repos/{REPO}/contents/{SETTINGS_PATH}");
    cases.push(("GET", contents.clone(), &inst, None, 200));
    cases.push((
        "GET",
        format!("/repos/{REPO}/contents/.github/missing.yml"),
        &inst,
        None,
        404,
    ));
    fake.set_primary_limit(LIMITED, 5000, 0, Duration::from_secs(600));
    let mut violations = Vec::new();
    for (method, path, auth, body, expected) in std::mem::take(&mut cases) {
        let (status, answer) = exchange(
            fake.addr(),
            method,
            &format!("/api/v3{path}"),
            auth,
            body.as_ref(),
        )
        .await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        let bare = path.split('?').next().unwrap_or(&path);
        match openapi_response_violations(method, bare, status, &answer) {
            Ok(found) => violations.extend(found),
            Err(err) => panic!("{err}"),
        }
    }

    // Refusals that apply to any endpoint: permissions, secondary limits,
    // outages, suspension.
    fake.suspend_installation(SUSPENDED);
    let path = format!("/app/installations/{SUSPENDED}/access_tokens");
    let (status, answer) =
        exchange(fake.addr(), "POST", &format!("/api/v3{path}"), &app, None).await;
    assert_eq!(status, 403);
    violations.extend(openapi_response_violations("POST", &path, status, &answer).unwrap());

    fake.revoke_permission(INSTALLATION, "checks");
    let (status, answer) = exchange(
        fake.addr(),
        "POST",
        "/api/v3/repos/octo/hello/check-runs",
        &inst,
        Some(&check_run),
    )
    .await;
    assert_eq!(status, 403);
    violations.extend(
        openapi_response_violations("POST", "/repos/octo/hello/check-runs", status, &answer)
            .unwrap(),
    );
    fake.grant_permission(INSTALLATION, "checks", "write");
    // The contents API: a conditional request answered 304 (no body), and
    // a path outside the single-file permission.
    let etag = fake.file_etag(REPO, SETTINGS_PATH).expect("settings file");
    let (status, answer) = exchange_with(
        fake.addr(),
        "GET",
        &format!("/api/v3{contents}"),
        &inst,
        &format!("if-none-match: {etag}\r\n"),
        None,
    )
    .await;
    assert_eq!((status, &answer), (304, &Value::Null));
    violations.extend(openapi_response_violations("GET", &contents, status, &answer).unwrap());
    fake.set_contents_access(INSTALLATION, ContentsAccess::SingleFile(vec![]));
    let (status, answer) = exchange(
        fake.addr(),
        "GET",
        &format!("/api/v3{contents}"),
        &inst,
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    violations.extend(openapi_response_violations("GET", &contents, status, &answer).unwrap());
    fake.set_contents_access(INSTALLATION, ContentsAccess::Read);
    fake.secondary_limit(
        Scope::Writes,
        429,
        Some(Duration::from_secs(1)),
        Duration::from_secs(60),
    );
    let (status, answer) = exchange(
        fake.addr(),
        "POST",
        "/api/v3/repos/octo/hello/check-runs",
        &inst,
        Some(&check_run),
    )
    .await;
    assert_eq!(status, 429);
    violations.extend(
        openapi_response_violations("POST", "/repos/octo/hello/check-runs", status, &answer)
            .unwrap(),
    );
    fake.outage(Scope::All, 502, None);
    let (status, answer) = exchange(
        fake.addr(),
        "GET",
        "/api/v3/repos/octo/hello/pulls/1",
        &inst,
        None,
    )
    .await;
    assert_eq!(status, 502);
    violations.extend(
        openapi_response_violations("GET", "/repos/octo/hello/pulls/1", status, &answer).unwrap(),
    );
    fake.end_outage();
    assert!(violations.is_empty(), "{violations:#?}");
    // The one request above that breaks the request side, on purpose.
    assert_eq!(
        fake.openapi_violations(),
        [
            "POST /repos/octo/hello/check-runs (checks/create): body: \"head_sha\" is a required property"
        ]
    );
}

/// The bot through a normal life: opened, commented, reviewed, edited and
/// ticked, then a merge-queue run. Every request it made conforms to
/// GitHub's description.
#[tokio::test]
async fn the_bots_requests_conform_to_githubs_description() {
    let bot = TestBot::start().await;
    let github = &bot.github;
    github.add_repo(INSTALLATION, REPO);
    github.upsert_pull(
        REPO,
        PullRequest::new(1)
            .body("- [ ] one\n- [x] two")
            .author("alice"),
    );
    bot.send(&webhooks::pull_request_opened(github, REPO, 1))
        .await;
    bot.check_runs_arrived(REPO, 1).await;

    let comment = github.add_issue_comment(REPO, 1, "bob", "- [ ] three");
    bot.send(&webhooks::issue_comment_created(github, REPO, 1, comment))
        .await;
    let review = github.add_review(REPO, 1, "carol", "- [x] four");
    bot.send(&webhooks::pull_request_review_submitted(
        github, REPO, 1, review,
    ))
    .await;
    let inline = github.add_review_comment(REPO, 1, "carol", "- [ ] five");
    bot.send(&webhooks::pull_request_review_comment_created(
        github, REPO, 1, inline,
    ))
    .await;
    github.upsert_pull(
        REPO,
        PullRequest::new(1)
            .body("- [x] one\n- [x] two")
            .author("alice"),
    );
    bot.send(&webhooks::pull_request_edited(
        github,
        REPO,
        1,
        Some("- [ ] one\n- [x] two"),
        None,
    ))
    .await;
    let queued = "4444444444444444444444444444444444444444";
    bot.send(&webhooks::merge_group_checks_requested(
        github, REPO, 1, queued, "main",
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bot.pending_is_empty() || bot.github.all_check_runs().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bot did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(
        github
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.status == 201),
        "the bot wrote check runs"
    );
    assert_eq!(github.openapi_violations(), Vec::<String>::new());
}
