use super::*;

impl Model {
    // -- tokens -------------------------------------------------------------

    pub(super) fn issue_token(
        &mut self,
        installation_id: u64,
        scope: Option<BTreeSet<String>>,
        app_jwt: &str,
    ) -> IssuedToken {
        let token = format!("ghs_{}", random_alphanumeric(36));
        let expires = SystemTime::now() + self.token_ttl;
        self.tokens.insert(
            token.clone(),
            Token {
                installation_id,
                expires_at: expires,
                revoked: false,
                scope,
            },
        );
        let issued = IssuedToken {
            installation_id,
            token,
            issued_at: Instant::now(),
            expires_at: DateTime::<Utc>::from(expires),
            app_jwt: app_jwt.to_owned(),
        };
        self.issued.push(issued.clone());
        issued
    }

    pub(super) fn valid_token(&self, token: &str) -> Option<&Token> {
        self.tokens
            .get(token)
            .filter(|t| !t.revoked && SystemTime::now() < t.expires_at)
    }
}

// -- authentication -------------------------------------------------------------

/// The credential of an `Authorization: Bearer X` or `token X` header.
pub(super) fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        Some(rest.trim())
    } else {
        None
    }
}

pub(super) fn authenticate(
    call: &Call<'_>,
    route: &Route,
    ex: &mut Exchange,
) -> Result<Caller, Reply> {
    let unauthorized = |message: &str| Reply::error(StatusCode::UNAUTHORIZED, message, DOCS_REST);
    let Some(credential) = credential(call.headers) else {
        return Err(unauthorized(MSG_REQUIRES_AUTH));
    };
    match route.auth_kind() {
        AuthKind::AppJwt => {
            verify_app_jwt(call.shared, credential).map_err(unauthorized)?;
            ex.bucket = Bucket::App;
            Ok(Caller::App)
        }
        AuthKind::InstallationToken => {
            let model = call.shared.model();
            let Some(token) = model.valid_token(credential) else {
                return Err(unauthorized(MSG_BAD_CREDENTIALS));
            };
            ex.installation_id = Some(token.installation_id);
            ex.bucket = Bucket::Installation(token.installation_id);
            ex.token = Some(credential.to_owned());
            Ok(Caller::Installation {
                id: token.installation_id,
                scope: token.scope.clone(),
            })
        }
    }
}

/// Checks an app JWT the way GitHub does, with GitHub's messages.
pub(super) fn verify_app_jwt(shared: &Shared, jwt: &str) -> Result<(), &'static str> {
    let mut validation = Validation::new(Algorithm::RS256);
    // The time claims are checked below, to answer with GitHub's messages.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(jwt, &shared.key, &validation)
        .map_err(|_| MSG_JWT_UNDECODABLE)?
        .claims;

    // A valid signature with another app's id is what a wrong app id looks
    // like to GitHub: the key of *that* app does not verify it.
    let issuer = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if issuer != Some(shared.app_id) {
        return Err(MSG_JWT_UNDECODABLE);
    }
    let now = i64::try_from(epoch_secs()).unwrap_or(i64::MAX);
    let time_claim = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    };
    let iat = time_claim("iat").ok_or(MSG_JWT_IAT)?;
    if iat > now + JWT_IAT_SKEW_SECS {
        return Err(MSG_JWT_IAT);
    }
    let exp = time_claim("exp").ok_or(MSG_JWT_EXP)?;
    if exp <= now {
        return Err(MSG_JWT_EXP);
    }
    if exp > now + JWT_MAX_LIFETIME_SECS || exp - iat > JWT_MAX_LIFETIME_SECS {
        return Err(MSG_JWT_EXP_TOO_FAR);
    }
    Ok(())
}

pub(super) fn access_token(call: &Call<'_>, installation_id: u64, docs: &str) -> Reply {
    let body = match json_body(call, docs) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let mut model = call.shared.model();
    if !model.installation_exists(installation_id) {
        return Reply::not_found(docs);
    }
    if model.suspended.contains(&installation_id) {
        return Reply::error(StatusCode::FORBIDDEN, MSG_INSTALLATION_SUSPENDED, docs);
    }
    // Optional scoping to some of the installation's repositories.
    let names = body.get("repositories").and_then(Value::as_array);
    let ids = body.get("repository_ids").and_then(Value::as_array);
    let mut scoped: Vec<&Repo> = Vec::new();
    if names.is_some() || ids.is_some() {
        let installation_repos: Vec<&Repo> = model
            .repos
            .values()
            .filter(|r| r.installation_id == installation_id)
            .collect();
        for wanted in names.into_iter().flatten() {
            let found = wanted.as_str().and_then(|w| {
                installation_repos
                    .iter()
                    .find(|r| r.name.eq_ignore_ascii_case(w))
            });
            match found {
                Some(repo) => scoped.push(repo),
                None => {
                    return Reply::unprocessable(
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                        docs,
                    );
                }
            }
        }
        for wanted in ids.into_iter().flatten() {
            let found = wanted
                .as_u64()
                .and_then(|w| installation_repos.iter().find(|r| r.id == w));
            match found {
                Some(repo) => scoped.push(repo),
                None => {
                    return Reply::unprocessable(
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                        docs,
                    );
                }
            }
        }
    }
    let scope = (!scoped.is_empty()).then(|| {
        scoped
            .iter()
            .map(|r| repo_key(&r.full_name()))
            .collect::<BTreeSet<_>>()
    });
    let repositories: Vec<Value> = scoped.iter().map(|r| render::repo(&call.urls, r)).collect();
    let permissions = match body.get("permissions") {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => json!(model.installation_permissions(installation_id)),
    };
    // Authentication has checked the JWT before this route runs.
    let app_jwt = credential(call.headers).unwrap_or_default();
    let issued = model.issue_token(installation_id, scope, app_jwt);
    let mut answer = json!({
        "token": issued.token,
        "expires_at": issued.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "permissions": permissions,
        "repository_selection": "selected",
    });
    if !repositories.is_empty() {
        answer["repositories"] = Value::Array(repositories);
    }
    Reply::json(StatusCode::CREATED, answer)
}

pub(super) fn installation(call: &Call<'_>, installation_id: u64, docs: &str) -> Reply {
    let model = call.shared.model();
    match model
        .repos
        .values()
        .find(|r| r.installation_id == installation_id)
    {
        Some(repo) => Reply::json(
            StatusCode::OK,
            render::installation(&call.urls, call.shared.app_id, installation_id, &repo.owner),
        ),
        None => Reply::not_found(docs),
    }
}

pub(super) fn repo_installation(call: &Call<'_>, path: &RepoPath, docs: &str) -> Reply {
    let model = call.shared.model();
    match path.find(&model) {
        Some(repo) => Reply::json(
            StatusCode::OK,
            render::installation(
                &call.urls,
                call.shared.app_id,
                repo.installation_id,
                &repo.owner,
            ),
        ),
        None => Reply::not_found(docs),
    }
}
