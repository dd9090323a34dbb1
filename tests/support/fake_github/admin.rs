use super::*;

#[derive(Deserialize)]
pub(super) struct AddRepo {
    pub(super) installation_id: u64,
    pub(super) full_name: String,
}

#[derive(Deserialize)]
pub(super) struct AddIssue {
    #[serde(default)]
    pub(super) title: String,
    #[serde(default)]
    pub(super) body: String,
    #[serde(default = "default_author")]
    pub(super) author: String,
}

#[derive(Deserialize)]
pub(super) struct AddComment {
    #[serde(default = "default_author")]
    pub(super) author: String,
    pub(super) body: String,
    #[serde(default)]
    pub(super) state: ReviewState,
}

#[derive(Deserialize)]
pub(super) struct AddCommit {
    pub(super) sha: String,
}

#[derive(Deserialize)]
pub(super) struct AddFault {
    pub(super) endpoint: Endpoint,
    pub(super) fault: FaultSpec,
    #[serde(default = "one")]
    pub(super) times: usize,
}

/// [`Fault`] as JSON: `{"kind": "server_error", "status": 503}`.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum FaultSpec {
    ServerError {
        #[serde(default = "default_server_error")]
        status: u16,
    },
    Slow {
        millis: u64,
    },
    SecondaryRateLimit {
        #[serde(default = "sixty")]
        retry_after_secs: u64,
    },
    #[serde(rename = "rate_limited_429", alias = "rate_limited429")]
    RateLimited429 {
        #[serde(default = "sixty")]
        retry_after_secs: u64,
    },
    ExpiredToken,
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Fault {
        match spec {
            FaultSpec::ServerError { status } => Fault::ServerError(status),
            FaultSpec::Slow { millis } => Fault::Slow(Duration::from_millis(millis)),
            FaultSpec::SecondaryRateLimit { retry_after_secs } => {
                Fault::SecondaryRateLimit { retry_after_secs }
            }
            FaultSpec::RateLimited429 { retry_after_secs } => {
                Fault::RateLimited429 { retry_after_secs }
            }
            FaultSpec::ExpiredToken => Fault::ExpiredToken,
        }
    }
}

pub(super) fn fault_json(fault: &Fault) -> Value {
    match fault {
        Fault::ServerError(status) => json!({"kind": "server_error", "status": status}),
        Fault::Slow(d) => json!({"kind": "slow", "millis": d.as_millis()}),
        Fault::SecondaryRateLimit { retry_after_secs } => {
            json!({"kind": "secondary_rate_limit", "retry_after_secs": retry_after_secs})
        }
        Fault::RateLimited429 { retry_after_secs } => {
            json!({"kind": "rate_limited_429", "retry_after_secs": retry_after_secs})
        }
        Fault::ExpiredToken => json!({"kind": "expired_token"}),
    }
}

#[derive(Deserialize)]
pub(super) struct TokenTtl {
    pub(super) secs: u64,
}

#[derive(Deserialize)]
pub(super) struct PrimaryLimit {
    pub(super) installation_id: u64,
    #[serde(default = "default_limit")]
    pub(super) limit: u32,
    pub(super) remaining: u32,
    #[serde(default = "hour_ms")]
    pub(super) reset_in_ms: u64,
}

fn default_limit() -> u32 {
    INSTALLATION_RATE_LIMIT
}
fn hour_ms() -> u64 {
    3_600_000
}

#[derive(Deserialize)]
pub(super) struct SecondaryLimit {
    pub(super) scope: Scope,
    pub(super) status: u16,
    pub(super) retry_after_ms: Option<u64>,
    pub(super) lasts_ms: u64,
}

#[derive(Deserialize)]
pub(super) struct OutageSpec {
    pub(super) scope: Scope,
    pub(super) status: u16,
    pub(super) lasts_ms: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct Switch {
    pub(super) enabled: bool,
}

#[derive(Deserialize)]
pub(super) struct Rename {
    pub(super) from: String,
    pub(super) to: String,
}

#[derive(Deserialize)]
pub(super) struct Permission {
    pub(super) permission: String,
}

#[derive(Deserialize)]
pub(super) struct RedeliveryStatus {
    pub(super) status_code: u16,
}

pub(super) fn default_author() -> String {
    "octocat".to_owned()
}
pub(super) fn one() -> usize {
    1
}
pub(super) fn sixty() -> u64 {
    60
}
pub(super) fn default_server_error() -> u16 {
    500
}

pub(super) fn answer(status: StatusCode, body: Value) -> Response {
    plain_response(Reply::json(status, body))
}

pub(super) fn refuse(status: StatusCode, message: impl fmt::Display) -> Response {
    answer(status, json!({"message": message.to_string()}))
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

pub(super) fn bad_json(err: &serde_json::Error) -> Response {
    refuse(
        StatusCode::BAD_REQUEST,
        format!("Problems parsing JSON: {err}"),
    )
}

pub(super) fn model_result<T: Serialize>(
    status: StatusCode,
    result: Result<T, ModelError>,
) -> Response {
    match result {
        Ok(value) => answer(status, json!(value)),
        Err(err) => refuse(StatusCode::NOT_FOUND, err),
    }
}

pub(super) fn handle(shared: &Arc<Shared>, parts: &http::request::Parts, body: &[u8]) -> Response {
    let segments: Vec<String> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let query = parse_query(parts.uri.query());
    match (parts.method.as_str(), s.as_slice()) {
        ("GET", ["health"]) => answer(
            StatusCode::OK,
            json!({"base_url": format!("http://{}/api/v3", shared.addr), "app_id": shared.app_id}),
        ),
        ("POST", ["repos"]) => match parse::<AddRepo>(body) {
            Ok(req) => model_result(
                StatusCode::CREATED,
                shared.model().add_repo(req.installation_id, &req.full_name),
            ),
            Err(err) => bad_json(&err),
        },
        ("PUT", ["repos", o, r, "pulls", n]) => put_pull(shared, &format!("{o}/{r}"), n, body),
        ("POST", ["repos", o, r, "issues", n]) => {
            let Ok(number) = n.parse::<u64>() else {
                return refuse(StatusCode::NOT_FOUND, "not an issue number");
            };
            match parse::<AddIssue>(body) {
                Ok(req) => model_result(
                    StatusCode::CREATED,
                    shared
                        .model()
                        .add_issue(
                            &format!("{o}/{r}"),
                            number,
                            &req.title,
                            &req.author,
                            &req.body,
                        )
                        .map(|()| json!({"number": number})),
                ),
                Err(err) => bad_json(&err),
            }
        }
        (
            "POST",
            [
                "repos",
                o,
                r,
                "pulls" | "issues",
                n,
                kind @ ("issue-comments" | "comments" | "reviews" | "review-comments"),
            ],
        ) => add_comment(shared, &format!("{o}/{r}"), n, kind, body),
        ("POST", ["repos", o, r, "commits"]) => match parse::<AddCommit>(body) {
            Ok(req) => model_result(
                StatusCode::CREATED,
                shared
                    .model()
                    .add_commit(&format!("{o}/{r}"), &req.sha)
                    .map(|()| json!({"sha": req.sha})),
            ),
            Err(err) => bad_json(&err),
        },
        ("POST", ["faults"]) => match parse::<AddFault>(body) {
            Ok(req) => {
                let fault = Fault::from(req.fault);
                let echo = json!({"endpoint": req.endpoint, "fault": fault_json(&fault), "times": req.times});
                handle_of(shared).inject(req.endpoint, fault, req.times);
                answer(StatusCode::CREATED, echo)
            }
            Err(err) => bad_json(&err),
        },
        ("GET", ["faults"]) => {
            let model = shared.model();
            let list: Vec<Value> = model
                .faults
                .iter()
                .map(|f| json!({"endpoint": f.endpoint, "fault": fault_json(&f.fault), "remaining": f.remaining}))
                .collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        ("DELETE", ["faults"]) => {
            shared.model().faults.clear();
            answer(StatusCode::OK, json!({}))
        }
        ("GET", ["check-runs"]) => {
            let wanted = query
                .iter()
                .find(|(k, _)| k == "repo")
                .map(|(_, v)| repo_key(v));
            let model = shared.model();
            let list: Vec<Value> = model
                .check_run_records()
                .filter(|r| wanted.as_ref().is_none_or(|w| *w == r.repo_key))
                .map(|r| {
                    json!({
                        "id": r.id,
                        "repo": r.repo_full_name,
                        "installation_id": r.installation_id,
                        "head_sha": r.head_sha,
                        "name": r.run.name,
                        "received_ms": shared.millis_since_start(r.received_at),
                        "body": r.body,
                    })
                })
                .collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        ("GET", ["requests"]) => {
            let model = shared.model();
            let list: Vec<Value> = model
                .requests
                .iter()
                .map(|r| {
                    json!({
                        "method": r.method,
                        "path": r.path,
                        "status": r.status,
                        "installation_id": r.installation_id,
                        "endpoint": r.endpoint,
                        "received_ms": shared.millis_since_start(r.received_at),
                    })
                })
                .collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        ("GET", ["tokens"]) => {
            let model = shared.model();
            let list: Vec<Value> = model
                .issued
                .iter()
                .map(|t| {
                    json!({
                        "installation_id": t.installation_id,
                        "issued_ms": shared.millis_since_start(t.issued_at),
                        "expires_at": t.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    })
                })
                .collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        ("POST", ["tokens", "expire"]) => {
            handle_of(shared).expire_tokens();
            answer(StatusCode::OK, json!({}))
        }
        ("PUT", ["token-ttl"]) => match parse::<TokenTtl>(body) {
            Ok(req) => {
                shared.model().token_ttl = Duration::from_secs(req.secs);
                answer(StatusCode::OK, json!({"secs": req.secs}))
            }
            Err(err) => bad_json(&err),
        },
        ("PUT", ["primary-limit" | "rate-limit"]) => match parse::<PrimaryLimit>(body) {
            Ok(req) => {
                handle_of(shared).set_primary_limit(
                    req.installation_id,
                    req.limit,
                    req.remaining,
                    Duration::from_millis(req.reset_in_ms),
                );
                answer(
                    StatusCode::OK,
                    json!({"installation_id": req.installation_id, "limit": req.limit, "remaining": req.remaining, "reset_in_ms": req.reset_in_ms}),
                )
            }
            Err(err) => bad_json(&err),
        },
        ("POST", ["secondary-limit"]) => match parse::<SecondaryLimit>(body) {
            Ok(req) => {
                handle_of(shared).secondary_limit(
                    req.scope,
                    req.status,
                    req.retry_after_ms.map(Duration::from_millis),
                    Duration::from_millis(req.lasts_ms),
                );
                answer(StatusCode::CREATED, json!({}))
            }
            Err(err) => bad_json(&err),
        },
        ("DELETE", ["secondary-limit"]) => {
            shared.model().limits.secondary.clear();
            answer(StatusCode::OK, json!({}))
        }
        ("PUT", ["content-creation-limits"]) => match parse::<Switch>(body) {
            Ok(req) => {
                handle_of(shared).set_content_creation_limits(req.enabled);
                answer(StatusCode::OK, json!({"enabled": req.enabled}))
            }
            Err(err) => bad_json(&err),
        },
        ("PUT", ["strict-headers"]) => match parse::<Switch>(body) {
            Ok(req) => {
                handle_of(shared).set_strict_headers(req.enabled);
                answer(StatusCode::OK, json!({"enabled": req.enabled}))
            }
            Err(err) => bad_json(&err),
        },
        ("POST", ["outage"]) => match parse::<OutageSpec>(body) {
            Ok(req) => {
                handle_of(shared).outage(
                    req.scope,
                    req.status,
                    req.lasts_ms.map(Duration::from_millis),
                );
                answer(StatusCode::CREATED, json!({}))
            }
            Err(err) => bad_json(&err),
        },
        ("DELETE", ["outage"]) => {
            handle_of(shared).end_outage();
            answer(StatusCode::OK, json!({}))
        }
        ("POST", ["renames"]) => match parse::<Rename>(body) {
            Ok(req) => model_result(
                StatusCode::CREATED,
                shared
                    .model()
                    .rename_repo(&req.from, &req.to)
                    .map(|()| json!({"from": req.from, "to": req.to})),
            ),
            Err(err) => bad_json(&err),
        },
        ("POST", ["installations", id, "revoke"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return refuse(StatusCode::NOT_FOUND, "not an installation id");
            };
            match parse::<Permission>(body) {
                Ok(req) => {
                    handle_of(shared).revoke_permission(id, &req.permission);
                    let permissions = shared.model().installation_permissions(id);
                    answer(StatusCode::OK, json!({"permissions": permissions}))
                }
                Err(err) => bad_json(&err),
            }
        }
        ("POST", ["installations", id, "suspend"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return refuse(StatusCode::NOT_FOUND, "not an installation id");
            };
            handle_of(shared).suspend_installation(id);
            answer(StatusCode::OK, json!({"suspended": id}))
        }
        ("DELETE", ["users", login]) => {
            handle_of(shared).delete_user(login);
            answer(StatusCode::OK, json!({"deleted": login}))
        }
        ("GET", ["openapi-violations"]) => answer(
            StatusCode::OK,
            json!(handle_of(shared).openapi_violations()),
        ),
        ("POST", ["deliveries"]) => match parse::<NewDelivery>(body) {
            Ok(req) => {
                let delivery = shared.model().add_delivery(req);
                answer(StatusCode::CREATED, render::delivery(&delivery))
            }
            Err(err) => bad_json(&err),
        },
        ("GET", ["deliveries"]) => {
            let list: Vec<Value> = shared
                .model()
                .deliveries_newest_first()
                .iter()
                .map(render::delivery)
                .collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        ("GET", ["redeliveries"]) => {
            let model = shared.model();
            let list: Vec<Value> = model
                .redeliveries
                .iter()
                .map(|a| {
                    json!({
                        "delivery_id": a.delivery_id,
                        "guid": a.guid,
                        "received_ms": shared.millis_since_start(a.received_at),
                    })
                })
                .collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        ("PUT", ["redelivery-status"]) => match parse::<RedeliveryStatus>(body) {
            Ok(req) => {
                shared.model().redelivery_status_code = req.status_code;
                answer(StatusCode::OK, json!({"status_code": req.status_code}))
            }
            Err(err) => bad_json(&err),
        },
        ("POST", ["reset-records"]) => {
            shared.model().reset_records();
            answer(StatusCode::OK, json!({}))
        }
        _ => refuse(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub(super) fn handle_of(shared: &Arc<Shared>) -> FakeGitHub {
    FakeGitHub {
        shared: Arc::clone(shared),
    }
}

pub(super) fn put_pull(shared: &Shared, full_name: &str, number: &str, body: &[u8]) -> Response {
    let Ok(number) = number.parse::<u64>() else {
        return refuse(StatusCode::NOT_FOUND, "not a pull request number");
    };
    let mut pull = match parse::<PullRequest>(body) {
        Ok(pull) => pull,
        Err(err) => return bad_json(&err),
    };
    pull.number = number;
    let mut model = shared.model();
    if let Err(err) = model.upsert_pull(full_name, pull) {
        return refuse(StatusCode::NOT_FOUND, err);
    }
    let urls = shared.urls().with_deleted(&model);
    match model.repo(full_name) {
        Ok(repo) => match repo.threads.get(&number) {
            Some(thread) => answer(StatusCode::OK, render::pull(&urls, repo, thread)),
            None => refuse(StatusCode::NOT_FOUND, "Not Found"),
        },
        Err(err) => refuse(StatusCode::NOT_FOUND, err),
    }
}

pub(super) fn add_comment(
    shared: &Shared,
    full_name: &str,
    number: &str,
    kind: &str,
    body: &[u8],
) -> Response {
    let Ok(number) = number.parse::<u64>() else {
        return refuse(StatusCode::NOT_FOUND, "not an issue number");
    };
    let req = match parse::<AddComment>(body) {
        Ok(req) => req,
        Err(err) => return bad_json(&err),
    };
    let mut model = shared.model();
    let result = match kind {
        "reviews" => model
            .add_review(full_name, number, &req.author, &req.body, req.state)
            .map(|id| json!({"id": id})),
        "review-comments" => model
            .add_review_comment(full_name, number, &req.author, &req.body)
            .map(|(id, review_id)| json!({"id": id, "review_id": review_id})),
        _ => model
            .add_issue_comment(full_name, number, &req.author, &req.body)
            .map(|id| json!({"id": id})),
    };
    model_result(StatusCode::CREATED, result)
}
