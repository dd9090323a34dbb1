use super::*;

// ---------------------------------------------------------------------------
// HTTP: one dispatcher, a route table, and a fixed pipeline
// ---------------------------------------------------------------------------

/// A response before the common headers are added.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// GitHub's error body: `{"message", "documentation_url", "status"}`.
    pub(super) fn error(status: StatusCode, message: &str, documentation_url: &str) -> Reply {
        Reply::json(
            status,
            json!({
                "message": message,
                "documentation_url": documentation_url,
                "status": status.as_str(),
            }),
        )
    }

    pub(super) fn not_found(docs: &str) -> Reply {
        Reply::error(StatusCode::NOT_FOUND, "Not Found", docs)
    }

    pub(super) fn unprocessable(message: &str, docs: &str) -> Reply {
        Reply::error(StatusCode::UNPROCESSABLE_ENTITY, message, docs)
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers
            .push((HeaderName::from_static(name), value.into()));
        self
    }
}

/// What the pipeline learned about a request, for its headers and record.
pub(super) struct Exchange {
    /// The request's record in [`Model::requests`].
    pub(super) seq: u64,
    pub(super) installation_id: Option<u64>,
    pub(super) endpoint: Option<Endpoint>,
    pub(super) bucket: Bucket,
    pub(super) rate: Option<RateSnapshot>,
    /// The installation token presented, if it was valid.
    pub(super) token: Option<String>,
}

pub(super) async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let reply = Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
                DOCS_REST,
            );
            return plain_response(reply);
        }
    };
    if path == "/_fake" || path.starts_with("/_fake/") {
        return admin::handle(&shared, &parts, &body);
    }
    if let Some(response) = manifest::handle(&shared.manifests, shared.app_id, &parts, &body) {
        return response;
    }

    let received_at = Instant::now();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let seq = shared
        .model()
        .record_arrival(parts.method.as_str(), &path_and_query, received_at);

    let mut exchange = Exchange {
        seq,
        installation_id: None,
        endpoint: None,
        bucket: Bucket::Anonymous,
        rate: None,
        token: None,
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| shared.addr.to_string(), str::to_owned);
    let call = Call {
        shared: &shared,
        urls: Urls::for_host(&host).with_deleted(&shared.model()),
        query: parse_query(parts.uri.query()),
        headers: &parts.headers,
        body: &body,
    };
    let api_path = path.strip_prefix("/api/v3").unwrap_or(&path);
    let reply = serve_api(&call, parts.method.as_str(), api_path, &mut exchange).await;

    let mut model = shared.model();
    let rate = match exchange.rate {
        Some(rate) => rate,
        None => model.peek_rate(exchange.bucket),
    };
    model.record_status(seq, reply.status.as_u16());
    drop(model);
    github_response(reply, rate)
}

/// Everything a handler may look at.
pub(super) struct Call<'a> {
    pub(super) shared: &'a Shared,
    pub(super) urls: Urls,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a [u8],
}

impl Call<'_> {
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The pipeline: duplicated headers → outage → route → authenticate →
/// renamed repository → permission → injected fault → secondary limits →
/// primary rate limit → handler. Faults come after authentication so that
/// they only hit requests a correctly configured client would have had
/// answered; an outage hits everything in its scope, as a down front end
/// does.
pub(super) async fn serve_api(
    call: &Call<'_>,
    method: &str,
    path: &str,
    ex: &mut Exchange,
) -> Reply {
    if call.shared.model().strict_headers {
        if let Some(reply) = duplicated_header(call.headers) {
            return reply;
        }
    }
    let route = Route::parse(method, path);
    let outage = call.shared.model().outage_reply(method, route.as_ref());
    if let Some(reply) = outage {
        return reply;
    }
    let Some(route) = route else {
        return Reply::not_found(DOCS_REST);
    };
    ex.endpoint = route.endpoint();
    if let Route::AccessToken { installation_id } = route {
        ex.installation_id = Some(installation_id);
    }
    let authenticated = authenticate(call, &route, ex);
    // Recorded now, so that a request whose client hangs up before the
    // answer (say, during a slow fault) still shows what it was for.
    call.shared
        .model()
        .record_route(ex.seq, ex.installation_id, ex.endpoint);
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(reply) => return reply,
    };
    if let Some(reply) = redirect_renamed(call, &route, method, path) {
        return reply;
    }
    validate_request(call, &route, method, path);

    let fault = call.shared.model().take_fault(ex.endpoint);
    if let Some(fault) = fault {
        if let Fault::Slow(delay) = fault {
            tokio::time::sleep(delay).await;
        }
        if let Some(reply) = fault_reply(call, fault, ex) {
            return reply;
        }
    }

    let secondary = call
        .shared
        .model()
        .secondary_reply(method, &route, ex.installation_id);
    if let Some(reply) = secondary {
        return reply;
    }

    // GitHub does not count `/rate_limit`, nor a conditional request
    // answered 304, against the primary limit.
    if !matches!(route, Route::RateLimit) && !not_modified(call, &route) {
        let charged = call.shared.model().charge_rate(ex.bucket);
        match charged {
            Ok(rate) => ex.rate = Some(rate),
            Err(rate) => {
                ex.rate = Some(rate);
                let message = ex.bucket.exceeded_message(call.shared.app_id);
                return Reply::error(StatusCode::FORBIDDEN, &message, DOCS_RATE_PRIMARY);
            }
        }
    }
    route.handle(call, &caller)
}

/// Headers a request may carry once. GitHub's front end refuses a request
/// that repeats one with 400 before looking any further.
const SINGLETON_HEADERS: [http::header::HeaderName; 4] = [
    http::header::USER_AGENT,
    http::header::AUTHORIZATION,
    http::header::CONTENT_TYPE,
    http::header::HOST,
];

fn duplicated_header(headers: &HeaderMap) -> Option<Reply> {
    let name = SINGLETON_HEADERS
        .iter()
        .find(|name| headers.get_all(*name).iter().count() > 1)?;
    Some(Reply::error(
        StatusCode::BAD_REQUEST,
        &format!("Bad Request: the {name} header must not be repeated"),
        DOCS_REST,
    ))
}

/// A request naming a repository by an old name (renamed or transferred):
/// 301 for GET and HEAD, 307 for other methods (so that clients repeat the
/// method and body), with `Location` naming the repository by id.
fn redirect_renamed(call: &Call<'_>, route: &Route, method: &str, path: &str) -> Option<Reply> {
    let RepoPath::Named(full_name) = route.repo_path()? else {
        return None;
    };
    let model = call.shared.model();
    if model.repo(full_name).is_ok() {
        return None;
    }
    let id = *model.renamed.get(&repo_key(full_name))?;
    // `/repos/{owner}/{name}` and what follows it.
    let rest: String = path.split('/').skip(4).map(|s| format!("/{s}")).collect();
    let mut location = format!("{}/repositories/{id}{rest}", call.urls.api);
    if !call.query.is_empty() {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(call.query.iter());
        location = format!("{location}?{}", query.finish());
    }
    let (status, message) = if matches!(method, "GET" | "HEAD") {
        (StatusCode::MOVED_PERMANENTLY, "Moved Permanently")
    } else {
        (StatusCode::TEMPORARY_REDIRECT, "Temporary Redirect")
    };
    let reply = Reply::json(
        status,
        json!({
            "message": message,
            "url": location,
            "documentation_url": DOCS_REDIRECTS,
        }),
    );
    Some(reply.header("location", location))
}

/// Adds the headers GitHub sends on every API response.
pub(super) fn github_response(reply: Reply, rate: RateSnapshot) -> Response {
    let mut response = plain_response(reply);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-github-request-id", request_id());
    set("x-github-api-version-selected", "2022-11-28".to_owned());
    set("x-github-media-type", "github.v3; format=json".to_owned());
    set("x-ratelimit-limit", rate.limit.to_string());
    set("x-ratelimit-remaining", rate.remaining().to_string());
    set("x-ratelimit-used", rate.used.to_string());
    set("x-ratelimit-reset", rate.reset_epoch.to_string());
    set("x-ratelimit-resource", "core".to_owned());
    response
}

/// The reply as a response with a JSON body and its own headers.
pub(super) fn plain_response(reply: Reply) -> Response {
    let body = if matches!(
        reply.status,
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    ) {
        Body::empty()
    } else if let (true, Value::String(raw)) = (is_raw(&reply), &reply.body) {
        Body::from(raw.clone())
    } else {
        Body::from(reply.body.to_string())
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// Parses a JSON request body; an empty body counts as `{}`.
pub(super) fn json_body(call: &Call<'_>, docs: &str) -> Result<Value, Reply> {
    if call.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(call.body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "Body should be a JSON object",
            docs,
        )),
        Err(_) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            docs,
        )),
    }
}

// -- pagination -----------------------------------------------------------------

/// `per_page` / `page` as GitHub reads them: invalid values fall back to the
/// defaults and `per_page` is capped at 100.
pub(super) struct Pagination {
    pub(super) per_page: usize,
    pub(super) page: usize,
}

impl Pagination {
    pub(super) fn from_query(call: &Call<'_>) -> Pagination {
        let number = |name: &str| {
            call.query(name)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        Pagination {
            per_page: number("per_page")
                .unwrap_or(DEFAULT_PER_PAGE)
                .min(MAX_PER_PAGE),
            page: number("page").unwrap_or(1),
        }
    }

    /// The page's items and its `Link` header (absent when everything fits
    /// on one page, as on GitHub).
    pub(super) fn apply<'v>(
        &self,
        all: &'v [Value],
        call: &Call<'_>,
        list_path: &str,
    ) -> (&'v [Value], Option<String>) {
        let last = all.len().div_ceil(self.per_page).max(1);
        let start = (self.page - 1).saturating_mul(self.per_page).min(all.len());
        let end = start.saturating_add(self.per_page).min(all.len());
        let link_to = |page: usize, rel: &str| {
            let query = with_param(&call.query, "page", &page.to_string());
            format!("<{}{list_path}?{query}>; rel=\"{rel}\"", call.urls.api)
        };
        let mut links = Vec::new();
        if self.page > 1 {
            links.push(link_to((self.page - 1).min(last), "prev"));
        }
        if self.page < last {
            links.push(link_to(self.page + 1, "next"));
            links.push(link_to(last, "last"));
        }
        if self.page > 1 {
            links.push(link_to(1, "first"));
        }
        let link = (!links.is_empty()).then(|| links.join(", "));
        (&all[start..end], link)
    }
}

pub(super) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The request's query with `name` set to `value` (moved to the end, as
/// GitHub's links put `page` last).
pub(super) fn with_param(query: &[(String, String)], name: &str, value: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.iter().filter(|(k, _)| k != name) {
        out.append_pair(k, v);
    }
    out.append_pair(name, value);
    out.finish()
}

pub(super) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
