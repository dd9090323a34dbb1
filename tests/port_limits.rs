//! The webhook port faces the internet: what one sender can make a worker
//! hold is bounded (connections, time, body bytes), and a valid delivery
//! still gets through while others stall.

mod support;

use std::time::{Duration, Instant};

use support::bot::{Options, SECRET, TestBot};
use support::fake_github::FakeGitHub;
use support::webhooks::sign;
use task_list_bot::config::ServerLimits;
use task_list_bot::server::Bot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bot with these limits in place of the defaults.
async fn bot_with(limits: ServerLimits) -> TestBot {
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    let mut config = TestBot::config_for(&github, &Options::default());
    config.limits = limits;
    let bot = Bot::new(config).expect("bot builds");
    TestBot::serve(github, bot).await
}

/// The head of a signed ping delivery whose body is `body`.
fn ping_head(body: &[u8], declared: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nhost: bot\r\ncontent-type: application/json\r\n\
         x-github-event: ping\r\nx-github-delivery: limits-1\r\n\
         x-hub-signature-256: {}\r\ncontent-length: {declared}\r\n\r\n",
        sign(SECRET.as_bytes(), body)
    )
}

/// Reads until the peer closes (or `patience` passes): what it answered.
async fn answer_of(stream: &mut TcpStream, patience: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Whether the connection is closed by the peer within `patience`.
async fn closed_within(stream: &mut TcpStream, patience: Duration) -> bool {
    answer_of(stream, patience).await.is_some()
}

/// A valid delivery, sent on a fresh connection, and how long it took.
async fn valid_ping(bot: &TestBot) -> (u16, Duration) {
    let answer = bot
        .deliver("ping", &serde_json::json!({"zen": "x", "hook_id": 1}))
        .await;
    (answer.status, answer.took)
}

#[tokio::test]
async fn past_the_connection_cap_the_worker_stops_accepting_until_a_slot_frees() {
    let bot = bot_with(ServerLimits {
        max_connections: 2,
        ..ServerLimits::default()
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(bot.address).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: b")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // The third connection waits in the backlog (another worker of the
    // fleet would take it): no answer while both slots are held.
    let mut third = TcpStream::connect(bot.address).await.unwrap();
    third
        .write_all(b"GET /ping HTTP/1.1\r\nhost: bot\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        answer_of(&mut third, Duration::from_millis(700)).await,
        None
    );
    // One stalled sender gives up: its slot goes to the waiting connection.
    drop(stalled.pop());
    let answer = answer_of(&mut third, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("PONG"),
        "{answer}"
    );
    bot.shutdown().await;
}

#[tokio::test]
async fn a_whole_request_must_arrive_within_the_receive_timeout() {
    let receive_timeout = Duration::from_secs(1);
    let bot = bot_with(ServerLimits {
        receive_timeout,
        ..ServerLimits::default()
    })
    .await;

    // Headers dripped a byte at a time: activity does not extend the deadline.
    let started = Instant::now();
    let mut drip = TcpStream::connect(bot.address).await.unwrap();
    let head = ping_head(b"{}", 2);
    let mut closed = false;
    for byte in head.as_bytes() {
        if drip.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > receive_timeout * 4 {
            break;
        }
    }
    assert!(
        closed || closed_within(&mut drip, Duration::from_secs(3)).await,
        "a dripping sender kept its connection"
    );
    assert!(started.elapsed() >= receive_timeout);

    // Headers complete, the body stalls: 408, then the connection closes.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(bot.address).await.unwrap();
    stalled
        .write_all(ping_head(b"{}", 100).as_bytes())
        .await
        .unwrap();
    stalled.write_all(b"{\"zen\":").await.unwrap();
    let answer = answer_of(&mut stalled, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let took = started.elapsed();
    assert!(
        took >= receive_timeout && took < receive_timeout * 3,
        "{took:?}"
    );

    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(bot.address).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(4)).await);
    // Meanwhile valid deliveries are served.
    assert_eq!(valid_ping(&bot).await.0, 200);
    bot.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let keep_alive_timeout = Duration::from_millis(500);
    let bot = bot_with(ServerLimits {
        keep_alive_timeout,
        ..ServerLimits::default()
    })
    .await;
    let mut stream = TcpStream::connect(bot.address).await.unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: bot\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].ends_with(b"PONG"));
    let answered = Instant::now();
    // The same connection serves a second request while it is kept alive.
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: bot\r\n\r\n")
        .await
        .unwrap();
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].ends_with(b"PONG"));
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
    assert!(answered.elapsed() >= keep_alive_timeout);
    bot.shutdown().await;
}

#[tokio::test]
async fn stalled_large_uploads_cannot_take_the_memory_of_small_deliveries() {
    // 1 MiB for small bodies, 3 MiB for large ones.
    let budget = 4 * 1024 * 1024;
    let bot = bot_with(ServerLimits {
        body_budget: budget,
        receive_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    })
    .await;

    // A body that can never fit is refused at once.
    let mut huge = TcpStream::connect(bot.address).await.unwrap();
    huge.write_all(ping_head(b"{}", 5 * 1024 * 1024).as_bytes())
        .await
        .unwrap();
    let answer = answer_of(&mut huge, Duration::from_secs(2))
        .await
        .expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Three uploads declare 2.5 MiB, send 2 MiB and stall.
    let declared = 5 * 512 * 1024;
    let chunk = vec![b' '; 64 * 1024];
    let mut uploads = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(bot.address).await.unwrap();
        stream
            .write_all(ping_head(b"{}", declared).as_bytes())
            .await
            .unwrap();
        uploads.push(stream);
    }
    let writers: Vec<_> = uploads
        .into_iter()
        .map(|mut stream| {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                // What the worker does not read waits in the socket buffers.
                for _ in 0..32 {
                    let write = stream.write_all(&chunk);
                    if tokio::time::timeout(Duration::from_secs(5), write)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                stream
            })
        })
        .collect();

    // A small signed delivery is answered meanwhile, and fast.
    let (status, took) = valid_ping(&bot).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");

    let mut answers = Vec::new();
    for writer in writers {
        let mut stream = writer.await.unwrap();
        answers.push(
            answer_of(&mut stream, Duration::from_secs(6))
                .await
                .expect("answered"),
        );
    }
    let statuses: Vec<&str> = answers.iter().map(|a| &a[9..12]).collect();
    // Each upload either waited for room until its deadline (503, with
    // Retry-After) or for its missing bytes (408); none got more room than
    // the budget has.
    assert!(
        statuses.iter().all(|s| *s == "503" || *s == "408"),
        "{statuses:?}"
    );
    assert!(statuses.contains(&"503"), "{statuses:?}");
    for answer in answers.iter().filter(|a| a.starts_with("HTTP/1.1 503")) {
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 5"),
            "{answer}"
        );
    }
    bot.shutdown().await;
}

#[tokio::test]
async fn the_body_budget_is_never_exceeded_and_is_returned() {
    let budget = 4 * 1024 * 1024;
    let github = FakeGitHub::start(support::bot::APP_ID, support::bot::PUBLIC_KEY.as_bytes()).await;
    let mut config = TestBot::config_for(&github, &Options::default());
    config.limits.body_budget = budget;
    config.limits.receive_timeout = Duration::from_secs(2);
    let bot = Bot::new(config).expect("bot builds");
    let body_budget = bot.body_budget();
    let bot = TestBot::serve(github, bot).await;

    let declared = 3 * 1024 * 1024;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(bot.address).await.unwrap();
        stream
            .write_all(ping_head(b"{}", declared).as_bytes())
            .await
            .unwrap();
        streams.push(stream);
    }
    let senders: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..40 {
                    let write = stream.write_all(&chunk);
                    if tokio::time::timeout(Duration::from_secs(3), write)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                stream
            })
        })
        .collect();
    // The large part of the budget fills up, and no further.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut most = 0;
    while most < budget * 3 / 4 - 64 * 1024 {
        assert!(Instant::now() < deadline, "only {most} bytes in use");
        most = most.max(body_budget.in_use());
        assert!(most <= budget * 3 / 4, "{most} bytes in use");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for sender in senders {
        let mut stream = sender.await.unwrap();
        answer_of(&mut stream, Duration::from_secs(6))
            .await
            .expect("answered");
    }
    // Everything is given back once the requests are answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while body_budget.in_use() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still held",
            body_budget.in_use()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bot.shutdown().await;
}

#[tokio::test]
async fn unsigned_headers_that_could_smuggle_log_lines_are_refused() {
    let bot = TestBot::start().await;
    let body = br#"{"zen":"x","hook_id":1}"#.to_vec();
    let signature = sign(SECRET.as_bytes(), &body);
    for (name, value) in [
        ("x-github-delivery", "id\tinjected=1"),
        ("x-github-delivery", &"d".repeat(200)),
        ("x-github-event", "Ping Pong"),
    ] {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-github-event", "ping"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", signature.as_str()),
        ];
        headers.retain(|(k, _)| *k != name);
        headers.push((name, value));
        let answer = bot.post(&headers, body.clone()).await;
        assert_eq!(answer.status, 400, "{name}: {value}");
        assert!(answer.body.contains(name), "{}", answer.body);
    }
    bot.shutdown().await;
}
