//! Delivering webhooks over real HTTP/1.1, as GitHub does: each burst
//! delivery on a connection of its own; the ingest run on keep-alive
//! connections, which is what a load balancer in front of the fleet sends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::webhooks::Webhook;

/// How long one delivery may take, connect included, before the benchmark
/// counts it as failed: GitHub gives up after 10 s.
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);

/// A delivery signed once and sent any number of times. The signature
/// covers only the body, so a copy can carry another `X-GitHub-Delivery`
/// id, as a redelivery does.
#[derive(Clone)]
pub struct SignedDelivery {
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl SignedDelivery {
    pub fn new(webhook: &Webhook, secret: &str) -> SignedDelivery {
        SignedDelivery {
            headers: webhook.headers(Some(secret.as_bytes())),
            body: Bytes::from(webhook.body()),
        }
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The POST, with `delivery_id` replacing the built one when given.
    fn request(
        &self,
        address: SocketAddr,
        delivery_id: Option<&str>,
    ) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let mut builder = hyper::Request::post("/").header("host", address.to_string());
        for (name, value) in &self.headers {
            let value = match (*name, delivery_id) {
                ("x-github-delivery", Some(id)) => id,
                _ => value.as_str(),
            };
            builder = builder.header(*name, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .context("building a delivery request")
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
    sender: SendRequest<Full<Bytes>>,
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
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake with the fleet")?;
        // Ends by itself when the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(Connection { address, sender })
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
        let request = delivery.request(self.address, delivery_id)?;
        self.sender
            .ready()
            .await
            .context("the connection to the fleet closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("sending a delivery")?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer to a delivery")?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
