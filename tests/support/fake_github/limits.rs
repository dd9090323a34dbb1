use super::*;

/// Who a primary rate limit is counted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Bucket {
    Installation(u64),
    App,
    Anonymous,
}

impl Bucket {
    pub(super) fn limit(self) -> u32 {
        match self {
            Bucket::Installation(_) => INSTALLATION_RATE_LIMIT,
            Bucket::App => APP_RATE_LIMIT,
            Bucket::Anonymous => ANONYMOUS_RATE_LIMIT,
        }
    }

    pub(super) fn exceeded_message(self, app_id: u64) -> String {
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
pub(super) struct RateWindow {
    pub(super) reset_epoch: u64,
    pub(super) used: u32,
}

/// What the `x-ratelimit-*` headers of one response say.
#[derive(Clone, Copy, Debug)]
pub(super) struct RateSnapshot {
    pub(super) limit: u32,
    pub(super) used: u32,
    pub(super) reset_epoch: u64,
}

impl RateSnapshot {
    pub(super) fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

impl Model {
    // -- faults -------------------------------------------------------------

    pub(super) fn take_fault(&mut self, endpoint: Option<Endpoint>) -> Option<Fault> {
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

    pub(super) fn rate_window(&mut self, bucket: Bucket) -> &mut RateWindow {
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

    pub(super) fn peek_rate(&mut self, bucket: Bucket) -> RateSnapshot {
        let window = self.rate_window(bucket);
        RateSnapshot {
            limit: bucket.limit(),
            used: window.used,
            reset_epoch: window.reset_epoch,
        }
    }

    /// Charges one request; `Err` (with the headers to send) when the budget
    /// of the window is already spent.
    pub(super) fn charge_rate(&mut self, bucket: Bucket) -> Result<RateSnapshot, RateSnapshot> {
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

    pub(super) fn set_rate_remaining(&mut self, bucket: Bucket, remaining: u32) {
        let limit = bucket.limit();
        self.rate_window(bucket).used = limit.saturating_sub(remaining);
    }
}

/// The answer a fault gives instead of the real one; `None` for
/// [`Fault::Slow`], which only delays the real answer.
pub(super) fn fault_reply(call: &Call<'_>, fault: Fault, ex: &mut Exchange) -> Option<Reply> {
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
