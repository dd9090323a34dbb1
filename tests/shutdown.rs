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
    // Answered, and then closed (read_to_string saw the end): whether the
    // answer also says `connection: close` depends on whether the stop
    // reached this connection before or after its request was read.
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
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

#[tokio::test]
async fn a_stop_with_stalled_connections_ends_after_a_short_grace() {
    let bot = TestBot::start().await;
    let address = bot.address;
    let mut stalled = Vec::new();
    for i in 0..60 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        match i % 3 {
            // Connected, silent.
            0 => {}
            // Half a request head.
            1 => stream
                .write_all(b"POST / HTTP/1.1\r\nhost: b")
                .await
                .unwrap(),
            // A whole head, a body that never comes.
            _ => stream
                .write_all(
                    b"POST / HTTP/1.1\r\nhost: bot\r\ncontent-type: application/json\r\n\
                      x-github-event: ping\r\nx-github-delivery: s\r\n\
                      x-hub-signature-256: sha256=00\r\ncontent-length: 1000\r\n\r\n{",
                )
                .await
                .unwrap(),
        }
        stalled.push(stream);
    }
    // Every connection has been accepted (a request served after them
    // proves the accept loop reached it).
    assert_eq!(bot.get("/ping").await.0, 200);
    let started = std::time::Instant::now();
    tokio::time::timeout(
        task_list_bot::server::STOP_GRACE + Duration::from_secs(3),
        bot.shutdown(),
    )
    .await
    .expect("the worker stops after the grace, not when the senders please");
    let took = started.elapsed();
    assert!(took >= task_list_bot::server::STOP_GRACE, "{took:?}");
    // Every stalled connection was closed.
    for mut stream in stalled {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "still open");
    }
}

/// A worker of a shared store stops claiming at once and only finishes the
/// claims it holds; the rest stays in the store for the next worker.
#[tokio::test]
async fn a_stopping_worker_of_a_shared_store_leaves_unclaimed_work_to_others() {
    use std::sync::Arc;
    use support::bot::Options;
    use support::fake_github::FakeGitHub;
    use task_list_bot::pending::{PendingSet, SqlitePendingSet};
    use task_list_bot::server::Bot;

    let dir = std::env::temp_dir().join(format!("tlb-stop-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    github.add_repo(1, "octo/a");
    for number in 1..=6 {
        github.upsert_pull("octo/a", PullRequest::new(number).body("- [ ] a"));
    }
    let options = Options {
        // One write a second: the drain of a private store would take 6 s.
        write_rate: 1.0,
        drain_timeout: Duration::from_secs(20),
        ..Options::default()
    };
    let start = |github: FakeGitHub| {
        let config = TestBot::config_for(&github, &options);
        let store = Arc::new(SqlitePendingSet::open(&dir).unwrap());
        TestBot::serve(github, Bot::with_pending(config, store).unwrap())
    };
    let first = start(github.clone()).await;
    for number in 1..=6 {
        let answer = first
            .send(&webhooks::pull_request_opened(&github, "octo/a", number))
            .await;
        assert_eq!(answer.status, 202);
    }
    let started = std::time::Instant::now();
    first.shutdown().await;
    let took = started.elapsed();
    let written = github.check_runs("octo/a").len();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(
        written < 6,
        "the stopping worker drained everything: {written}"
    );
    let store = SqlitePendingSet::open(&dir).unwrap();
    assert_eq!(store.len(), 6 - written, "the rest stays in the store");
    drop(store);

    let second = start(github.clone()).await;
    second.check_runs_arrived("octo/a", 6).await;
    second.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
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
