use super::*;

// -- routing ------------------------------------------------------------------

/// How a path names a repository: `/repos/{owner}/{name}/...` or, as in
/// the `Link` headers GitHub sends, `/repositories/{id}/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RepoPath {
    Named(String),
    Id(u64),
}

impl RepoPath {
    pub(super) fn find<'m>(&self, model: &'m Model) -> Option<&'m Repo> {
        match self {
            RepoPath::Named(full_name) => model.repo(full_name).ok(),
            RepoPath::Id(id) => model.repos.values().find(|r| r.id == *id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    AccessToken { installation_id: u64 },
    GetApp,
    GetInstallation(u64),
    GetRepoInstallation(RepoPath),
    ListDeliveries,
    GetDelivery(u64),
    RedeliverAttempt(u64),
    RateLimit,
    GetRepo(RepoPath),
    GetPull(RepoPath, u64),
    GetIssue(RepoPath, u64),
    ListIssueComments(RepoPath, u64),
    ListReviews(RepoPath, u64),
    ListReviewComments(RepoPath, u64),
    CreateCheckRun(RepoPath),
    GetCheckRun(RepoPath, u64),
    ListCheckRunsForRef(RepoPath, String),
    GetContents(RepoPath, String),
}

/// How a route must be authenticated.
pub(super) enum AuthKind {
    AppJwt,
    InstallationToken,
}

/// Who is calling, once authenticated.
pub(super) enum Caller {
    App,
    Installation {
        id: u64,
        scope: Option<BTreeSet<String>>,
    },
}

impl Route {
    /// `path` is without the `/api/v3` prefix and without the query.
    pub(super) fn parse(method: &str, path: &str) -> Option<Route> {
        let segments: Vec<String> = path
            .strip_prefix('/')?
            .split('/')
            .map(percent_decode)
            .collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let num = |text: &str| text.parse::<u64>().ok();
        let (repo, rest) = match s.as_slice() {
            ["repos", owner, name, rest @ ..] => (RepoPath::Named(format!("{owner}/{name}")), rest),
            ["repositories", id, rest @ ..] => (RepoPath::Id(num(id)?), rest),
            _ => return Self::parse_app(method, &s),
        };
        let route = match (method, rest) {
            ("GET", []) => Route::GetRepo(repo),
            ("GET", ["installation"]) => Route::GetRepoInstallation(repo),
            ("GET", ["pulls", n]) => Route::GetPull(repo, num(n)?),
            ("GET", ["issues", n]) => Route::GetIssue(repo, num(n)?),
            ("GET", ["issues", n, "comments"]) => Route::ListIssueComments(repo, num(n)?),
            ("GET", ["pulls", n, "reviews"]) => Route::ListReviews(repo, num(n)?),
            ("GET", ["pulls", n, "comments"]) => Route::ListReviewComments(repo, num(n)?),
            ("POST", ["check-runs"]) => Route::CreateCheckRun(repo),
            ("GET", ["check-runs", id]) => Route::GetCheckRun(repo, num(id)?),
            ("GET", ["commits", git_ref @ .., "check-runs"]) if !git_ref.is_empty() => {
                Route::ListCheckRunsForRef(repo, git_ref.join("/"))
            }
            ("GET", ["contents", path @ ..]) if !path.is_empty() => {
                Route::GetContents(repo, path.join("/"))
            }
            _ => return None,
        };
        Some(route)
    }

    /// Routes that are not about one repository.
    pub(super) fn parse_app(method: &str, segments: &[&str]) -> Option<Route> {
        let num = |text: &str| text.parse::<u64>().ok();
        let route = match (method, segments) {
            ("POST", ["app", "installations", id, "access_tokens"]) => Route::AccessToken {
                installation_id: num(id)?,
            },
            ("GET", ["app"]) => Route::GetApp,
            ("GET", ["app", "installations", id]) => Route::GetInstallation(num(id)?),
            ("GET", ["app", "hook", "deliveries"]) => Route::ListDeliveries,
            ("GET", ["app", "hook", "deliveries", id]) => Route::GetDelivery(num(id)?),
            ("POST", ["app", "hook", "deliveries", id, "attempts"]) => {
                Route::RedeliverAttempt(num(id)?)
            }
            ("GET", ["rate_limit"]) => Route::RateLimit,
            _ => return None,
        };
        Some(route)
    }

    pub(super) fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Route::AccessToken { .. } => Some(Endpoint::AccessToken),
            Route::GetPull(..) => Some(Endpoint::GetPull),
            Route::ListIssueComments(..) => Some(Endpoint::ListIssueComments),
            Route::ListReviews(..) => Some(Endpoint::ListReviews),
            Route::ListReviewComments(..) => Some(Endpoint::ListReviewComments),
            Route::CreateCheckRun(_) => Some(Endpoint::CreateCheckRun),
            Route::ListCheckRunsForRef(..) => Some(Endpoint::ListCheckRunsForRef),
            Route::ListDeliveries => Some(Endpoint::ListDeliveries),
            Route::RedeliverAttempt(_) => Some(Endpoint::RedeliverAttempt),
            _ => None,
        }
    }

    /// GitHub's content-creation limit counts these.
    pub(super) fn creates_content(&self) -> bool {
        matches!(self, Route::CreateCheckRun(_))
    }

    /// The installation permission an endpoint needs, as GitHub's
    /// "Permissions required for GitHub Apps" lists it: `(name, level)`.
    pub(super) fn required_permission(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Route::GetPull(..) | Route::ListReviews(..) | Route::ListReviewComments(..) => {
                Some(("pull_requests", "read"))
            }
            Route::GetIssue(..) | Route::ListIssueComments(..) => Some(("issues", "read")),
            Route::CreateCheckRun(_) => Some(("checks", "write")),
            Route::GetCheckRun(..) | Route::ListCheckRunsForRef(..) => Some(("checks", "read")),
            Route::GetRepo(_) => Some(("metadata", "read")),
            _ => None,
        }
    }

    pub(super) fn auth_kind(&self) -> AuthKind {
        match self {
            Route::AccessToken { .. }
            | Route::GetApp
            | Route::GetInstallation(_)
            | Route::GetRepoInstallation(_)
            | Route::ListDeliveries
            | Route::GetDelivery(_)
            | Route::RedeliverAttempt(_) => AuthKind::AppJwt,
            _ => AuthKind::InstallationToken,
        }
    }

    /// The page of GitHub's docs its errors point to.
    pub(super) fn docs(&self) -> &'static str {
        match self {
            Route::AccessToken { .. } => {
                "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
            }
            Route::GetApp => "https://docs.github.com/rest/apps/apps#get-the-authenticated-app",
            Route::GetInstallation(_) => {
                "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app"
            }
            Route::GetRepoInstallation(_) => {
                "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app"
            }
            Route::ListDeliveries => {
                "https://docs.github.com/rest/apps/webhooks#list-deliveries-for-an-app-webhook"
            }
            Route::GetDelivery(_) => {
                "https://docs.github.com/rest/apps/webhooks#get-a-delivery-for-an-app-webhook"
            }
            Route::RedeliverAttempt(_) => {
                "https://docs.github.com/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook"
            }
            Route::RateLimit => {
                "https://docs.github.com/rest/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user"
            }
            Route::GetRepo(_) => "https://docs.github.com/rest/repos/repos#get-a-repository",
            Route::GetPull(..) => "https://docs.github.com/rest/pulls/pulls#get-a-pull-request",
            Route::GetIssue(..) => "https://docs.github.com/rest/issues/issues#get-an-issue",
            Route::ListIssueComments(..) => {
                "https://docs.github.com/rest/issues/comments#list-issue-comments"
            }
            Route::ListReviews(..) => {
                "https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request"
            }
            Route::ListReviewComments(..) => {
                "https://docs.github.com/rest/pulls/comments#list-review-comments-on-a-pull-request"
            }
            Route::CreateCheckRun(_) => {
                "https://docs.github.com/rest/checks/runs#create-a-check-run"
            }
            Route::GetCheckRun(..) => "https://docs.github.com/rest/checks/runs#get-a-check-run",
            Route::ListCheckRunsForRef(..) => {
                "https://docs.github.com/rest/checks/runs#list-check-runs-for-a-git-reference"
            }
            Route::GetContents(..) => DOCS_CONTENTS,
        }
    }

    pub(super) fn repo_path(&self) -> Option<&RepoPath> {
        match self {
            Route::GetRepo(r)
            | Route::GetRepoInstallation(r)
            | Route::GetPull(r, _)
            | Route::GetIssue(r, _)
            | Route::ListIssueComments(r, _)
            | Route::ListReviews(r, _)
            | Route::ListReviewComments(r, _)
            | Route::CreateCheckRun(r)
            | Route::GetCheckRun(r, _)
            | Route::ListCheckRunsForRef(r, _)
            | Route::GetContents(r, _) => Some(r),
            _ => None,
        }
    }

    pub(super) fn handle(&self, call: &Call<'_>, caller: &Caller) -> Reply {
        let docs = self.docs();
        // A repository the caller may not see is indistinguishable from one
        // that does not exist: GitHub answers 404 to both.
        if let (Some(path), Caller::Installation { id, scope }) = (self.repo_path(), caller) {
            let model = call.shared.model();
            let visible = path.find(&model).is_some_and(|repo| {
                repo.installation_id == *id
                    && scope
                        .as_ref()
                        .is_none_or(|s| s.contains(&repo_key(&repo.full_name())))
            });
            if !visible {
                return Reply::not_found(docs);
            }
        }
        if let (Some((permission, level)), Caller::Installation { id, .. }) =
            (self.required_permission(), caller)
        {
            let granted = call.shared.model().installation_permissions(*id);
            let enough = match granted.get(permission).map(String::as_str) {
                Some("write" | "admin") => true,
                Some("read") => level == "read",
                _ => false,
            };
            if !enough {
                return Reply::error(
                    StatusCode::FORBIDDEN,
                    MSG_NOT_ACCESSIBLE_BY_INTEGRATION,
                    docs,
                );
            }
        }
        match self {
            Route::AccessToken { installation_id } => access_token(call, *installation_id, docs),
            Route::GetApp => {
                Reply::json(StatusCode::OK, render::app(&call.urls, call.shared.app_id))
            }
            Route::GetInstallation(id) => installation(call, *id, docs),
            Route::GetRepoInstallation(repo) => repo_installation(call, repo, docs),
            Route::ListDeliveries => list_deliveries(call),
            Route::GetDelivery(id) => get_delivery(call, *id, docs),
            Route::RedeliverAttempt(id) => redeliver(call, *id, docs),
            Route::RateLimit => rate_limit(call, caller),
            Route::GetRepo(repo) => get_repo(call, repo, docs),
            Route::GetPull(repo, n) => get_pull(call, repo, *n, docs),
            Route::GetIssue(repo, n) => get_issue(call, repo, *n, docs),
            Route::ListIssueComments(repo, n) => {
                list_thread_items(call, repo, *n, ThreadItems::IssueComments, docs)
            }
            Route::ListReviews(repo, n) => {
                list_thread_items(call, repo, *n, ThreadItems::Reviews, docs)
            }
            Route::ListReviewComments(repo, n) => {
                list_thread_items(call, repo, *n, ThreadItems::ReviewComments, docs)
            }
            Route::CreateCheckRun(repo) => create_check_run(call, repo, caller, docs),
            Route::GetCheckRun(repo, id) => get_check_run(call, repo, *id, docs),
            Route::ListCheckRunsForRef(repo, git_ref) => list_check_runs(call, repo, git_ref, docs),
            Route::GetContents(repo, path) => get_contents(call, repo, path, caller),
        }
    }
}
