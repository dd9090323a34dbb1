//! Stopping loses no request: a connection the worker accepted before the
//! stop is still answered, while new connections are left to other workers.

mod support;

use std::time::Duration;

use support::bot::{PATIENCE, SECRET, TestBot};
use support::fake_github::PullRequest;
use support::webhooks;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_connection_accepted_before_the_stop_still_gets_its_answer() {
    let mut bot = TestBot::start().await;
    bot.github.add_repo(1, "octo/a");
    bot.github
        .upsert_pull("octo/a", PullRequest::new(1).body("- [ ] a"));
    let webhook = webhooks::pull_request_opened(&bot.github, "octo/a", 1);

    // Connected, but the request is not sent yet.
    let mut connection = tokio::net::TcpStream::connect(bot.address).await.unwrap();
    // Connections are accepted in the order they arrived: once a later one
    // is answered, this one has been accepted too.
    let mut probe = answered_probe(&bot).await;
    bot.begin_shutdown();
    stop_seen(&mut probe).await;

    let body = webhook.body();
    let mut request = format!(
        "POST / HTTP/1.1\r\nhost: bot\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in webhook.headers(Some(SECRET.as_bytes())) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    connection.write_all(request.as_bytes()).await.unwrap();
    connection.write_all(&body).await.unwrap();

    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        connection.read_to_string(&mut answer),
    )
    .await
    .expect("answered, then closed")
    .expect("no reset");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // The queued check is still written during the drain.
    bot.check_runs_arrived("octo/a", 1).await;
}

#[tokio::test]
async fn a_stopping_worker_accepts_no_new_connection() {
    let mut bot = TestBot::start().await;
    let address = bot.address;
    let mut probe = answered_probe(&bot).await;
    bot.begin_shutdown();
    stop_seen(&mut probe).await;
    // The listener is not accepting: the connection is not served (a shared
    // socket would hand it to another worker).
    let outcome = tokio::time::timeout(Duration::from_millis(500), async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nhost: bot\r\n\r\n")
            .await?;
        let mut buffer = [0u8; 64];
        stream.read(&mut buffer).await
    })
    .await;
    assert!(
        !matches!(outcome, Ok(Ok(n)) if n > 0),
        "a stopping worker answered: {outcome:?}"
    );
}

/// A keep-alive connection whose first request has been answered.
async fn answered_probe(bot: &TestBot) -> tokio::net::TcpStream {
    let mut probe = tokio::net::TcpStream::connect(bot.address).await.unwrap();
    probe
        .write_all(b"GET /ping HTTP/1.1\r\nhost: bot\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 256];
    tokio::time::timeout(PATIENCE, async {
        while !answer.ends_with(b"PONG") {
            let n = probe.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the probe was closed: {answer:?}");
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("the probe is answered");
    probe
}

/// Waits until the stopping worker closes the idle `probe`, which it does
/// once the stop has reached its connections.
async fn stop_seen(probe: &mut tokio::net::TcpStream) {
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, probe.read(&mut buffer))
        .await
        .expect("the stopping worker closes idle connections");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
