//! Delivering webhooks over real HTTP/1.1, as GitHub does: each burst
//! delivery on a connection of its own; the ingest run on keep-alive
//! connections, which is what a load balancer in front of the fleet sends.
//!
//! The client shares the machine's cores with the fleet it measures, so it
//! spends as little as it can: a request is written as the bytes GitHub
//! would send (head and body in one vectored write, the head serialised
//! once per delivery) and an answer is parsed with `httparse`, with no
//! connection task or request builder in between. What the workers get of
//! the CPU is then what they would get with the sender on another machine,
//! less this client's few microseconds per request.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::webhooks::Webhook;

/// How long one delivery may take, connect included, before the benchmark
/// counts it as failed: GitHub gives up after 10 s.
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);

/// The largest answer head the client reads before it gives up on the
/// answer as malformed.
const MAX_ANSWER_HEAD: usize = 16 * 1024;

/// The most header lines an answer may have.
const MAX_ANSWER_HEADERS: usize = 32;

/// A delivery signed once and sent any number of times. The signature
/// covers only the body, so a copy can carry another `X-GitHub-Delivery`
/// id, as a redelivery does.
#[derive(Clone)]
pub struct SignedDelivery {
    /// The header lines from the one after `Host` up to the
    /// `X-GitHub-Delivery` value.
    head_before_id: Bytes,
    delivery_id: String,
    /// The request head after the `X-GitHub-Delivery` value, blank line
    /// included.
    head_after_id: Bytes,
    body: Bytes,
}

impl SignedDelivery {
    pub fn new(webhook: &Webhook, secret: &str) -> SignedDelivery {
        let body = Bytes::from(webhook.body());
        let mut head_before_id = Vec::new();
        let mut head_after_id = Vec::new();
        let mut delivery_id = None;
        for (name, value) in webhook.headers(Some(secret.as_bytes())) {
            if name == "x-github-delivery" {
                head_before_id.extend_from_slice(b"x-github-delivery: ");
                delivery_id = Some(value);
                head_after_id.extend_from_slice(b"\r\n");
                continue;
            }
            let head = match delivery_id {
                None => &mut head_before_id,
                Some(_) => &mut head_after_id,
            };
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let delivery_id = delivery_id.expect("a webhook carries an X-GitHub-Delivery header");
        head_after_id
            .extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        SignedDelivery {
            head_before_id: Bytes::from(head_before_id),
            delivery_id,
            head_after_id: Bytes::from(head_after_id),
            body,
        }
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The request head for `address`, with `delivery_id` replacing the
    /// built one when given.
    fn head(&self, address: SocketAddr, delivery_id: Option<&str>) -> Vec<u8> {
        let delivery_id = delivery_id.unwrap_or(&self.delivery_id);
        let mut head = format!("POST / HTTP/1.1\r\nhost: {address}\r\n").into_bytes();
        head.extend_from_slice(&self.head_before_id);
        head.extend_from_slice(delivery_id.as_bytes());
        head.extend_from_slice(&self.head_after_id);
        head
    }
}

/// The bot's answer to one delivery.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// From the start of the send (connect included, for fresh connections)
    /// until the whole answer was read.
    pub took: Duration,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One delivery on a connection of its own.
pub async fn deliver(address: SocketAddr, delivery: &SignedDelivery) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let mut connection = Connection::open(address).await?;
    let (status, body) = connection.exchange(delivery, None).await?;
    Ok(Answer {
        status,
        body,
        took: started.elapsed(),
    })
}

/// A keep-alive HTTP/1.1 connection to the fleet.
pub struct Connection {
    address: SocketAddr,
    stream: TcpStream,
    /// Bytes read from the fleet and not yet parsed.
    received: Vec<u8>,
    /// The fleet answered `Connection: close`: no further request goes on
    /// this connection.
    closed_by_fleet: bool,
}

impl Connection {
    pub async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::time::timeout(ANSWER_PATIENCE, TcpStream::connect(address))
            .await
            .with_context(|| format!("connecting to the fleet at {address}: timed out"))?
            .with_context(|| format!("connecting to the fleet at {address}"))?;
        stream
            .set_nodelay(true)
            .context("disabling Nagle's algorithm")?;
        Ok(Connection {
            address,
            stream,
            received: Vec::with_capacity(1024),
            closed_by_fleet: false,
        })
    }

    /// Sends one delivery and returns the answer and how long it took.
    pub async fn send(
        &mut self,
        delivery: &SignedDelivery,
        delivery_id: &str,
    ) -> anyhow::Result<Answer> {
        let started = Instant::now();
        let (status, body) = self.exchange(delivery, Some(delivery_id)).await?;
        Ok(Answer {
            status,
            body,
            took: started.elapsed(),
        })
    }

    /// Sends one delivery with its own delivery id.
    pub async fn send_as_signed(&mut self, delivery: &SignedDelivery) -> anyhow::Result<Answer> {
        let started = Instant::now();
        let (status, body) = self.exchange(delivery, None).await?;
        Ok(Answer {
            status,
            body,
            took: started.elapsed(),
        })
    }

    /// One request and its whole answer, within [`ANSWER_PATIENCE`].
    async fn exchange(
        &mut self,
        delivery: &SignedDelivery,
        delivery_id: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        tokio::time::timeout(
            ANSWER_PATIENCE,
            self.exchange_unbounded(delivery, delivery_id),
        )
        .await
        .with_context(|| format!("no answer within {ANSWER_PATIENCE:?}"))?
    }

    async fn exchange_unbounded(
        &mut self,
        delivery: &SignedDelivery,
        delivery_id: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        if self.closed_by_fleet {
            bail!("the fleet closed this connection after its last answer");
        }
        let head = delivery.head(self.address, delivery_id);
        self.write_request(&head, &delivery.body)
            .await
            .context("sending a delivery")?;
        self.read_answer()
            .await
            .context("reading the answer to a delivery")
    }

    /// Writes head and body, as few system calls as the socket allows.
    async fn write_request(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<()> {
        let mut written = 0;
        while written < head.len() {
            let slices = [IoSlice::new(&head[written..]), IoSlice::new(body)];
            match self.stream.write_vectored(&slices).await? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => written += n,
            }
        }
        self.stream.write_all(&body[written - head.len()..]).await
    }

    /// Reads one answer: its head, then a body of the length it declares,
    /// or up to the end of the connection when it declares none.
    async fn read_answer(&mut self) -> anyhow::Result<(u16, String)> {
        let head = loop {
            if let Some(head) = parse_answer_head(&self.received)? {
                break head;
            }
            if self.received.len() > MAX_ANSWER_HEAD {
                bail!("the answer's head is longer than {MAX_ANSWER_HEAD} bytes");
            }
            if self.read_more().await? == 0 {
                bail!("the fleet closed the connection before answering");
            }
        };
        if head.closes {
            self.closed_by_fleet = true;
        }
        let body_end = match head.body_len {
            Some(length) => {
                let end = head.bytes + length;
                while self.received.len() < end {
                    if self.read_more().await? == 0 {
                        bail!("the fleet closed the connection within an answer's body");
                    }
                }
                end
            }
            None => {
                self.closed_by_fleet = true;
                while self.read_more().await? != 0 {}
                self.received.len()
            }
        };
        let body = String::from_utf8_lossy(&self.received[head.bytes..body_end]).into_owned();
        self.received.drain(..body_end);
        Ok((head.status, body))
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        self.received.reserve(4096);
        self.stream.read_buf(&mut self.received).await
    }
}

/// What the client needs of an answer's head.
struct AnswerHead {
    status: u16,
    /// The length of the head, blank line included.
    bytes: usize,
    /// The declared body length; none means up to the end of the connection.
    body_len: Option<usize>,
    /// The fleet closes the connection after this answer.
    closes: bool,
}

/// The head of the answer at the start of `received`, or `None` while it
/// is incomplete.
fn parse_answer_head(received: &[u8]) -> anyhow::Result<Option<AnswerHead>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let bytes = match answer
        .parse(received)
        .context("parsing the answer's head")?
    {
        httparse::Status::Complete(bytes) => bytes,
        httparse::Status::Partial => return Ok(None),
    };
    let status = answer.code.context("an answer without a status code")?;
    let mut body_len = None;
    let mut closes = false;
    for header in answer.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok();
            body_len = Some(
                value
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .with_context(|| format!("an unreadable Content-Length: {value:?}"))?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked answer, which the fleet never sends to a webhook");
        } else if header.name.eq_ignore_ascii_case("connection") {
            closes = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some(AnswerHead {
        status,
        bytes,
        body_len,
        closes,
    }))
}
