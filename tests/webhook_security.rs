//! What the webhook endpoint refuses, with which status, and the routes load
//! balancers rely on.

mod support;

use support::bot::{SECRET, TestBot};
use support::fake_github::PullRequest;
use support::webhooks::{self, sign};

fn signed_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("x-github-event", "pull_request".into()),
        ("x-github-delivery", "sec-1".into()),
        ("x-hub-signature-256", sign(SECRET.as_bytes(), body)),
    ]
}

fn as_refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn each_missing_header_is_a_400_naming_it() {
    let bot = TestBot::start().await;
    let body = br#"{"action":"opened"}"#.to_vec();
    for missing in ["x-github-event", "x-github-delivery", "x-hub-signature-256"] {
        let headers: Vec<_> = signed_headers(&body)
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let answer = bot.post(&as_refs(&headers), body.clone()).await;
        assert_eq!(answer.status, 400, "{missing}");
        assert!(answer.body.contains(missing), "{missing}: {}", answer.body);
    }
}

#[tokio::test]
async fn a_wrong_signature_is_a_401_and_queues_nothing() {
    let bot = TestBot::start().await;
    bot.github.add_repo(1, "octo/a");
    bot.github
        .upsert_pull("octo/a", PullRequest::new(1).body("- [ ] a"));
    let webhook = webhooks::pull_request_opened(&bot.github, "octo/a", 1);
    let mut headers = webhook.headers(Some(b"not the secret"));
    let answer = bot.post(&as_refs(&headers), webhook.body()).await;
    assert_eq!(answer.status, 401);
    // A correct signature over different bytes fails too.
    headers.retain(|(k, _)| *k != "x-hub-signature-256");
    headers.push(("x-hub-signature-256", sign(SECRET.as_bytes(), b"{}")));
    assert_eq!(
        bot.post(&as_refs(&headers), webhook.body()).await.status,
        401
    );
    assert!(bot.pending_is_empty());
    assert!(bot.github.requests().is_empty());
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let bot = TestBot::start().await;
    let body = b"{not json".to_vec();
    let answer = bot.post(&as_refs(&signed_headers(&body)), body).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("not valid JSON"), "{}", answer.body);
    // JSON of the wrong shape for its event is a 400 too.
    let body = br#"{"action":"opened","installation":{"id":1},"pull_request":"nope"}"#.to_vec();
    let answer = bot.post(&as_refs(&signed_headers(&body)), body).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("malformed pull_request payload"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn unsupported_content_types_are_a_415_and_form_encoding_works() {
    let bot = TestBot::start().await;
    let body = br#"{"zen":"x"}"#.to_vec();
    let mut headers = signed_headers(&body);
    headers[0].1 = "text/plain".into();
    assert_eq!(bot.post(&as_refs(&headers), body).await.status, 415);

    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", r#"{"zen":"Design for failure.","hook_id":1}"#)
        .finish();
    let mut headers = signed_headers(form.as_bytes());
    headers[0].1 = "application/x-www-form-urlencoded".into();
    headers[1].1 = "ping".into();
    let answer = bot.post(&as_refs(&headers), form.into_bytes()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ignored\n"));
}

#[tokio::test]
async fn payloads_above_githubs_25_mb_cap_are_a_413() {
    let bot = TestBot::start().await;
    let body = vec![b' '; 25 * 1024 * 1024 + 1];
    let answer = bot.post(&as_refs(&signed_headers(&body)), body).await;
    assert_eq!(answer.status, 413);
}

#[tokio::test]
async fn probot_routes_answer_for_health_checks() {
    let bot = TestBot::start().await;
    assert_eq!(bot.get("/ping").await, (200, None, "PONG".to_owned()));
    let (status, location, _) = bot.get("/").await;
    assert_eq!((status, location.as_deref()), (303, Some("/probot")));
    let (status, _, page) = bot.get("/probot").await;
    assert_eq!(status, 200);
    assert!(page.contains("task-list-bot") && page.contains(env!("CARGO_PKG_VERSION")));
    let (status, _, health) = bot.get("/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ready");
}
