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
    /// The bucket's limit; [`FakeGitHub::set_primary_limit`] may change it.
    pub(super) limit: u32,
    pub(super) reset_at: SystemTime,
    pub(super) used: u32,
}

impl RateWindow {
    fn snapshot(&self) -> RateSnapshot {
        RateSnapshot {
            limit: self.limit,
            used: self.used.min(self.limit),
            reset_epoch: epoch_secs_ceil(self.reset_at),
        }
    }
}

/// `x-ratelimit-reset` is in whole seconds; rounding up keeps a client that
/// waits until then from coming back before the window has really reset.
fn epoch_secs_ceil(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
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

/// GitHub's secondary limits and the outages a test switches on.
pub(super) struct Limits {
    pub(super) secondary: Vec<SecondaryWindow>,
    /// GitHub's content-creation limit, on unless a test switches it off.
    pub(super) content_creation: bool,
    /// When each installation's recent content-creating requests arrived
    /// (the last hour's, oldest first).
    pub(super) created: HashMap<u64, VecDeque<Instant>>,
    pub(super) outage: Option<Outage>,
}

/// A secondary limit a test imposed.
pub(super) struct SecondaryWindow {
    pub(super) scope: Scope,
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) until: Instant,
}

pub(super) struct Outage {
    pub(super) scope: Scope,
    pub(super) status: u16,
    pub(super) until: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            secondary: Vec::new(),
            content_creation: true,
            created: HashMap::new(),
            outage: None,
        }
    }
}

impl Limits {
    pub(super) fn add_secondary(
        &mut self,
        scope: Scope,
        status: u16,
        retry_after: Option<Duration>,
        lasts: Duration,
    ) {
        self.secondary.push(SecondaryWindow {
            scope,
            status,
            retry_after,
            until: Instant::now() + lasts,
        });
    }

    pub(super) fn start_outage(&mut self, scope: Scope, status: u16, lasts: Option<Duration>) {
        self.outage = Some(Outage {
            scope,
            status,
            until: lasts.map(|lasts| Instant::now() + lasts),
        });
    }

    /// The outage answer for a request, if one is under way and covers it.
    fn outage_reply(&mut self, method: &str, route: Option<&Route>) -> Option<Reply> {
        let now = Instant::now();
        if self
            .outage
            .as_ref()
            .is_some_and(|o| o.until.is_some_and(|until| now >= until))
        {
            self.outage = None;
        }
        let outage = self.outage.as_ref()?;
        outage
            .scope
            .covers(method, route)
            .then(|| server_error(outage.status))
    }

    /// The secondary-limit answer for a request, if a window imposed by a
    /// test covers it or it would exceed the content-creation limit.
    fn secondary_reply(
        &mut self,
        method: &str,
        route: &Route,
        installation_id: Option<u64>,
    ) -> Option<Reply> {
        let now = Instant::now();
        self.secondary.retain(|w| w.until > now);
        if let Some(window) = self
            .secondary
            .iter()
            .find(|w| w.scope.covers(method, Some(route)))
        {
            let status = StatusCode::from_u16(window.status)
                .ok()
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::FORBIDDEN);
            let reply = Reply::error(status, &secondary_message(), DOCS_RATE_SECONDARY);
            return Some(match window.retry_after {
                Some(after) => reply.header("retry-after", ceil_secs(after).to_string()),
                None => reply,
            });
        }
        if !self.content_creation || !route.creates_content() {
            return None;
        }
        let installation_id = installation_id?;
        let created = self.created.entry(installation_id).or_default();
        while created
            .front()
            .is_some_and(|at| now.duration_since(*at) >= CONTENT_HOUR)
        {
            created.pop_front();
        }
        let last_minute = created
            .iter()
            .filter(|at| now.duration_since(**at) < CONTENT_MINUTE)
            .count();
        if last_minute >= CONTENT_PER_MINUTE || created.len() >= CONTENT_PER_HOUR {
            return Some(Reply::error(
                StatusCode::FORBIDDEN,
                &content_creation_message(),
                DOCS_RATE_SECONDARY,
            ));
        }
        created.push_back(now);
        None
    }
}

impl Scope {
    /// Whether a request is within the scope; `route` is `None` for paths
    /// the fake does not serve.
    pub(super) fn covers(self, method: &str, route: Option<&Route>) -> bool {
        match self {
            Scope::All => true,
            Scope::Writes => matches!(method, "POST" | "PATCH" | "PUT" | "DELETE"),
            Scope::CheckRunCreation => matches!(route, Some(Route::CreateCheckRun(_))),
        }
    }
}

/// GitHub's content-creation limit: "no more than 80 content-generating
/// requests per minute and no more than 500 content-generating requests per
/// hour".
const CONTENT_PER_MINUTE: usize = 80;
const CONTENT_PER_HOUR: usize = 500;
const CONTENT_MINUTE: Duration = Duration::from_secs(60);
const CONTENT_HOUR: Duration = Duration::from_secs(3600);

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// GitHub's answer to a request over a secondary rate limit.
pub(super) fn secondary_message() -> String {
    format!(
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. \
         If you reach out to GitHub Support for help, please include the request ID {}.",
        request_id()
    )
}

/// GitHub's answer to a request over the content-creation limit (it names
/// no request ID, unlike the other secondary limits).
pub(super) fn content_creation_message() -> String {
    "You have exceeded a secondary rate limit and have been temporarily blocked from content creation. \
     Please retry your request again later."
        .to_owned()
}

/// GitHub's answer for an error status of its own (an outage, a fault).
pub(super) fn server_error(code: u16) -> Reply {
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
        let now = SystemTime::now();
        let window = self.rate.entry(bucket).or_insert(RateWindow {
            limit: bucket.limit(),
            reset_at: now + RATE_WINDOW,
            used: 0,
        });
        if now >= window.reset_at {
            window.reset_at = now + RATE_WINDOW;
            window.used = 0;
        }
        window
    }

    pub(super) fn peek_rate(&mut self, bucket: Bucket) -> RateSnapshot {
        self.rate_window(bucket).snapshot()
    }

    /// Charges one request; `Err` (with the headers to send) when the budget
    /// of the window is already spent: every request fails until the reset.
    pub(super) fn charge_rate(&mut self, bucket: Bucket) -> Result<RateSnapshot, RateSnapshot> {
        let window = self.rate_window(bucket);
        if window.used >= window.limit {
            return Err(window.snapshot());
        }
        window.used += 1;
        Ok(window.snapshot())
    }

    pub(super) fn set_primary_limit(
        &mut self,
        bucket: Bucket,
        limit: u32,
        remaining: u32,
        reset_in: Duration,
    ) {
        let reset_at = SystemTime::now() + reset_in;
        let window = self.rate_window(bucket);
        window.limit = limit;
        window.used = limit.saturating_sub(remaining);
        window.reset_at = reset_at;
    }

    /// Outage, then secondary limits: `Some` is the answer instead of the
    /// real one.
    pub(super) fn outage_reply(&mut self, method: &str, route: Option<&Route>) -> Option<Reply> {
        self.limits.outage_reply(method, route)
    }

    pub(super) fn secondary_reply(
        &mut self,
        method: &str,
        route: &Route,
        installation_id: Option<u64>,
    ) -> Option<Reply> {
        self.limits.secondary_reply(method, route, installation_id)
    }
}

/// The answer a fault gives instead of the real one; `None` for
/// [`Fault::Slow`], which only delays the real answer.
pub(super) fn fault_reply(call: &Call<'_>, fault: Fault, ex: &mut Exchange) -> Option<Reply> {
    let reply = match fault {
        Fault::ServerError(code) => server_error(code),
        Fault::SecondaryRateLimit { retry_after_secs } => Reply::error(
            StatusCode::FORBIDDEN,
            &secondary_message(),
            DOCS_RATE_SECONDARY,
        )
        .header("retry-after", retry_after_secs.to_string()),
        Fault::RateLimited429 { retry_after_secs } => Reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            &secondary_message(),
            DOCS_RATE_SECONDARY,
        )
        .header("retry-after", retry_after_secs.to_string()),
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
    // The search budget is its own; the fake serves no search, so it is
    // always whole.
    let search = json!({"limit": 30, "used": 0, "remaining": 30, "reset": epoch_secs() + 60});
    Reply::json(
        StatusCode::OK,
        json!({"resources": {"core": core, "search": search}, "rate": core}),
    )
}
