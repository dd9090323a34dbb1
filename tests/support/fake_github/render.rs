use super::*;

// ---------------------------------------------------------------------------
// JSON representations (shapes follow GitHub's REST docs and what octocrab's
// models require)
// ---------------------------------------------------------------------------

/// Where URLs inside bodies and `Link` headers point.
pub(super) struct Urls {
    pub(super) api: String,
    pub(super) web: String,
    /// Lower-cased logins of deleted accounts, rendered as `null`.
    pub(super) deleted_users: BTreeSet<String>,
}

impl Urls {
    pub(super) fn for_host(host: &str) -> Urls {
        Urls {
            api: format!("http://{host}/api/v3"),
            web: format!("http://{host}"),
            deleted_users: BTreeSet::new(),
        }
    }

    /// The same, rendering the model's deleted accounts as `null`.
    pub(super) fn with_deleted(mut self, model: &Model) -> Urls {
        self.deleted_users.clone_from(&model.deleted_users);
        self
    }

    pub(super) fn repo_api(&self, repo: &Repo) -> String {
        format!("{}/repos/{}", self.api, repo.full_name())
    }

    pub(super) fn repo_web(&self, repo: &Repo) -> String {
        format!("{}/{}", self.web, repo.full_name())
    }
}

pub(super) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn ts_opt(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(ts(at)))
}

/// `[` and `]` of bot logins are escaped in URLs, as GitHub does.
pub(super) fn escape_login(login: &str) -> String {
    login.replace('[', "%5B").replace(']', "%5D")
}

/// A user as GitHub embeds it; `null` once the account is deleted.
pub(super) fn user(urls: &Urls, login: &str) -> Value {
    if urls.deleted_users.contains(&login.to_ascii_lowercase()) {
        return Value::Null;
    }
    account(
        urls,
        login,
        if login.ends_with("[bot]") {
            "Bot"
        } else {
            "User"
        },
    )
}

pub(super) fn account(urls: &Urls, login: &str, kind: &str) -> Value {
    let id = user_id(login);
    let esc = escape_login(login);
    let api = format!("{}/users/{esc}", urls.api);
    let html_url = match login.strip_suffix("[bot]") {
        Some(slug) => format!("{}/apps/{slug}", urls.web),
        None => format!("{}/{esc}", urls.web),
    };
    let prefix = match kind {
        "Bot" => "BOT_kgDO",
        "Organization" => "O_kgDO",
        _ => "U_kgDO",
    };
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(prefix, id),
        "avatar_url": format!("{}/avatars/u/{id}?", urls.web),
        "gravatar_id": "",
        "url": api,
        "html_url": html_url,
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

pub(super) fn author_association(repo: &Repo, login: &str) -> &'static str {
    if login.eq_ignore_ascii_case(&repo.owner) {
        "OWNER"
    } else if login.ends_with("[bot]") {
        "NONE"
    } else {
        "CONTRIBUTOR"
    }
}

pub(super) fn reactions(url: &str) -> Value {
    json!({
        "url": format!("{url}/reactions"),
        "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
        "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
    })
}

/// The `*_url` templates of a repository: `(key, path after the repo URL)`.
pub(super) const REPO_URL_TEMPLATES: [(&str, &str); 36] = [
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("hooks_url", "/hooks"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    (
        "notifications_url",
        "/notifications{?since,all,participating}",
    ),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
];

pub(super) fn repo(urls: &Urls, repo: &Repo) -> Value {
    let api = urls.repo_api(repo);
    let web = urls.repo_web(repo);
    let host = urls.web.trim_start_matches("http://");
    let open_issues = repo
        .threads
        .values()
        .filter(|t| t.state == PrState::Open)
        .count();
    let mut value = json!({
        "id": repo.id,
        "node_id": node_id("R_kgDO", repo.id),
        "name": repo.name,
        "full_name": repo.full_name(),
        "private": true,
        "owner": account(urls, &repo.owner, "Organization"),
        "html_url": web,
        "description": null,
        "fork": false,
        "url": api,
        "git_url": format!("git://{host}/{}.git", repo.full_name()),
        "ssh_url": format!("git@{host}:{}.git", repo.full_name()),
        "clone_url": format!("{web}.git"),
        "svn_url": web,
        "mirror_url": null,
        "homepage": null,
        "language": "Rust",
        "size": 108,
        "default_branch": "main",
        "visibility": "private",
        "pushed_at": ts(repo.created_at),
        "created_at": ts(repo.created_at),
        "updated_at": ts(repo.created_at),
    });
    let counters = json!({
        "forks_count": 0, "stargazers_count": 0, "watchers_count": 0,
        "open_issues_count": open_issues, "forks": 0, "open_issues": open_issues, "watchers": 0,
        "is_template": false, "topics": [], "has_issues": true, "has_projects": true,
        "has_wiki": false, "has_pages": false, "has_downloads": true, "has_discussions": false,
        "archived": false, "disabled": false, "allow_forking": true,
        "web_commit_signoff_required": false,
        "license": null, "network_count": 0, "subscribers_count": 0,
    });
    extend(&mut value, counters);
    for (key, suffix) in REPO_URL_TEMPLATES {
        value[key] = Value::String(format!("{api}{suffix}"));
    }
    value
}

pub(super) fn branch(urls: &Urls, repo: &Repo, git_ref: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{git_ref}", repo.owner),
        "ref": git_ref,
        "sha": sha,
        "user": account(urls, &repo.owner, "Organization"),
        "repo": self::repo(urls, repo),
    })
}

pub(super) fn pull(urls: &Urls, repo: &Repo, thread: &Thread) -> Value {
    let Some(pull) = &thread.pull else {
        return Value::Null;
    };
    let api = urls.repo_api(repo);
    let web = urls.repo_web(repo);
    let n = thread.number;
    let url = format!("{api}/pulls/{n}");
    let html_url = format!("{web}/pull/{n}");
    let issue_url = format!("{api}/issues/{n}");
    let statuses_url = format!("{api}/statuses/{}", pull.head_sha);
    let links = json!({
        "self": {"href": url},
        "html": {"href": html_url},
        "issue": {"href": issue_url},
        "comments": {"href": format!("{issue_url}/comments")},
        "review_comments": {"href": format!("{url}/comments")},
        "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
        "commits": {"href": format!("{url}/commits")},
        "statuses": {"href": statuses_url},
    });
    let open = thread.state == PrState::Open;
    let mut value = json!({
        "url": url,
        "id": pull.id,
        "node_id": node_id("PR_kwDO", pull.id),
        "html_url": html_url,
        "diff_url": format!("{html_url}.diff"),
        "patch_url": format!("{html_url}.patch"),
        "issue_url": issue_url,
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{issue_url}/comments"),
        "statuses_url": statuses_url,
        "number": n,
        "state": thread.state.as_str(),
        "locked": false,
        "title": thread.title,
        "user": user(urls, &thread.author),
        "body": thread.body,
        "created_at": ts(thread.created_at),
        "updated_at": ts(thread.updated_at),
        "closed_at": ts_opt(thread.closed_at),
        "merged_at": ts_opt(pull.merged_at),
        "merge_commit_sha": pull.merged.then(|| fake_sha(&format!("merge:{}", pull.head_sha))),
        "head": branch(urls, repo, &pull.head_ref, &pull.head_sha),
        "base": branch(urls, repo, &pull.base_ref, &repo.base_sha),
        "_links": links,
    });
    let rest = json!({
        "labels": [],
        "milestone": null,
        "active_lock_reason": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "author_association": author_association(repo, &thread.author),
        "auto_merge": null,
        "draft": pull.draft,
        "merged": pull.merged,
        "mergeable": if open { json!(true) } else { Value::Null },
        "rebaseable": if open { json!(true) } else { Value::Null },
        "mergeable_state": if open { "clean" } else { "unknown" },
        "merged_by": if pull.merged { user(urls, &repo.owner) } else { Value::Null },
        "comments": thread.comments.len(),
        "review_comments": thread.review_comments.len(),
        "maintainer_can_modify": false,
        "commits": 1,
        "additions": 3,
        "deletions": 1,
        "changed_files": 1,
    });
    extend(&mut value, rest);
    value
}

/// Adds the keys of `more` to the object `value` (keeps `json!` calls
/// under the macro recursion limit).
pub(super) fn extend(value: &mut Value, more: Value) {
    if let (Some(object), Value::Object(more)) = (value.as_object_mut(), more) {
        object.extend(more);
    }
}

pub(super) fn issue(urls: &Urls, repo: &Repo, thread: &Thread) -> Value {
    let api = urls.repo_api(repo);
    let web = urls.repo_web(repo);
    let n = thread.number;
    let url = format!("{api}/issues/{n}");
    let mut issue = json!({
        "url": url,
        "repository_url": api,
        "labels_url": format!("{url}/labels{{/name}}"),
        "comments_url": format!("{url}/comments"),
        "events_url": format!("{url}/events"),
        "html_url": format!("{web}/{}/{n}", if thread.pull.is_some() { "pull" } else { "issues" }),
        "id": thread.issue_id,
        "node_id": node_id(if thread.pull.is_some() { "PR_kwDO" } else { "I_kwDO" }, thread.issue_id),
        "number": n,
        "title": thread.title,
        "user": user(urls, &thread.author),
        "labels": [],
        "state": thread.state.as_str(),
        "locked": false,
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "comments": thread.comments.len(),
        "created_at": ts(thread.created_at),
        "updated_at": ts(thread.updated_at),
        "closed_at": ts_opt(thread.closed_at),
        "author_association": author_association(repo, &thread.author),
        "active_lock_reason": null,
        "body": thread.body,
        "closed_by": null,
        "reactions": reactions(&url),
        "timeline_url": format!("{url}/timeline"),
        "performed_via_github_app": null,
        "state_reason": if thread.state == PrState::Closed { json!("completed") } else { Value::Null },
    });
    if let Some(pull) = &thread.pull {
        let html = format!("{web}/pull/{n}");
        issue["draft"] = json!(pull.draft);
        issue["pull_request"] = json!({
            "url": format!("{api}/pulls/{n}"),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "merged_at": ts_opt(pull.merged_at),
        });
    }
    issue
}

pub(super) fn issue_comment(urls: &Urls, repo: &Repo, thread: &Thread, c: &IssueComment) -> Value {
    let api = urls.repo_api(repo);
    let web = urls.repo_web(repo);
    let url = format!("{api}/issues/comments/{}", c.id);
    let kind = if thread.pull.is_some() {
        "pull"
    } else {
        "issues"
    };
    json!({
        "url": url,
        "html_url": format!("{web}/{kind}/{}#issuecomment-{}", thread.number, c.id),
        "issue_url": format!("{api}/issues/{}", thread.number),
        "id": c.id,
        "node_id": node_id("IC_kwDO", c.id),
        "user": user(urls, &c.author),
        "created_at": ts(c.created_at),
        "updated_at": ts(c.created_at),
        "author_association": author_association(repo, &c.author),
        "body": c.body,
        "reactions": reactions(&url),
        "performed_via_github_app": null,
    })
}

pub(super) fn review(urls: &Urls, repo: &Repo, thread: &Thread, r: &Review) -> Value {
    let api = urls.repo_api(repo);
    let web = urls.repo_web(repo);
    let html_url = format!("{web}/pull/{}#pullrequestreview-{}", thread.number, r.id);
    let pull_url = format!("{api}/pulls/{}", thread.number);
    let mut review = json!({
        "id": r.id,
        "node_id": node_id("PRR_kwDO", r.id),
        "user": user(urls, &r.author),
        "body": r.body,
        "state": r.state.as_str(),
        "html_url": html_url,
        "pull_request_url": pull_url,
        "author_association": author_association(repo, &r.author),
        "_links": {
            "html": {"href": html_url},
            "pull_request": {"href": pull_url},
        },
        "commit_id": r.commit_id,
    });
    // Pending reviews have not been submitted, so GitHub omits the time.
    if r.state != ReviewState::Pending {
        review["submitted_at"] = json!(ts(r.submitted_at));
    }
    review
}

pub(super) fn review_comment(
    urls: &Urls,
    repo: &Repo,
    thread: &Thread,
    c: &ReviewComment,
) -> Value {
    let api = urls.repo_api(repo);
    let web = urls.repo_web(repo);
    let url = format!("{api}/pulls/comments/{}", c.id);
    let html_url = format!("{web}/pull/{}#discussion_r{}", thread.number, c.id);
    let pull_url = format!("{api}/pulls/{}", thread.number);
    json!({
        "url": url,
        "pull_request_review_id": c.review_id,
        "id": c.id,
        "node_id": node_id("PRRC_kwDO", c.id),
        "diff_hunk": "@@ -1,3 +1,4 @@\n # Notes\n+- [ ] follow-up",
        "path": "README.md",
        "position": 2,
        "original_position": 2,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": user(urls, &c.author),
        "body": c.body,
        "created_at": ts(c.created_at),
        "updated_at": ts(c.created_at),
        "html_url": html_url,
        "pull_request_url": pull_url,
        "author_association": author_association(repo, &c.author),
        "_links": {
            "self": {"href": url},
            "html": {"href": html_url},
            "pull_request": {"href": pull_url},
        },
        "reactions": reactions(&url),
        "start_line": null,
        "original_start_line": null,
        "start_side": null,
        "line": 2,
        "original_line": 2,
        "side": "RIGHT",
        "subject_type": "line",
    })
}

pub(super) fn app(urls: &Urls, app_id: u64) -> Value {
    json!({
        "id": app_id,
        "slug": APP_SLUG,
        "node_id": node_id("A_kwHO", app_id),
        "client_id": format!("Iv1.{:016x}", app_id),
        "owner": account(urls, "task-list-org", "Organization"),
        "name": APP_SLUG,
        "description": "Keeps a task-list-completed check on every pull request",
        "external_url": "https://example.invalid/task-list-bot",
        "html_url": format!("{}/apps/{APP_SLUG}", urls.web),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": permissions(),
        "events": ["issue_comment", "merge_group", "pull_request", "pull_request_review", "pull_request_review_comment"],
        "installations_count": 1,
    })
}

pub(super) fn permissions() -> Value {
    json!({"checks": "write", "issues": "read", "metadata": "read", "pull_requests": "read"})
}

pub(super) fn installation(
    urls: &Urls,
    app_id: u64,
    installation_id: u64,
    account_login: &str,
) -> Value {
    json!({
        "id": installation_id,
        "account": account(urls, account_login, "Organization"),
        "repository_selection": "selected",
        "access_tokens_url": format!("{}/app/installations/{installation_id}/access_tokens", urls.api),
        "repositories_url": format!("{}/installation/repositories", urls.api),
        "html_url": format!("{}/organizations/{account_login}/settings/installations/{installation_id}", urls.web),
        "app_id": app_id,
        "app_slug": APP_SLUG,
        "client_id": format!("Iv1.{:016x}", app_id),
        "target_id": user_id(account_login),
        "target_type": "Organization",
        "permissions": permissions(),
        "events": ["issue_comment", "merge_group", "pull_request", "pull_request_review", "pull_request_review_comment"],
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}

/// The short pull-request references GitHub puts in a check run.
pub(super) fn check_run_pulls(urls: &Urls, repo: &Repo, head_sha: &str) -> Vec<Value> {
    let repo_min = json!({"id": repo.id, "url": urls.repo_api(repo), "name": repo.name});
    repo.threads
        .values()
        .filter(|t| t.state == PrState::Open)
        .filter_map(|t| t.pull.as_ref().map(|p| (t, p)))
        .filter(|(_, p)| p.head_sha == head_sha)
        .map(|(t, p)| {
            json!({
                "url": format!("{}/pulls/{}", urls.repo_api(repo), t.number),
                "id": p.id,
                "number": t.number,
                "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": repo_min},
                "base": {"ref": p.base_ref, "sha": repo.base_sha, "repo": repo_min},
            })
        })
        .collect()
}

pub(super) fn check_run(urls: &Urls, app_id: u64, repo: &Repo, stored: &StoredCheckRun) -> Value {
    let run = &stored.run;
    let url = format!("{}/check-runs/{}", urls.repo_api(repo), stored.id);
    let html_url = format!("{}/runs/{}", urls.repo_web(repo), stored.id);
    let output = match &run.output {
        Some(o) => json!({
            "title": o.title, "summary": o.summary, "text": o.text,
            "annotations_count": o.annotations_count,
            "annotations_url": format!("{url}/annotations"),
        }),
        None => json!({
            "title": null, "summary": null, "text": null,
            "annotations_count": 0,
            "annotations_url": format!("{url}/annotations"),
        }),
    };
    json!({
        "id": stored.id,
        "head_sha": stored.head_sha,
        "node_id": node_id("CR_kwDO", stored.id),
        "external_id": run.external_id.clone().unwrap_or_default(),
        "url": url,
        "html_url": html_url,
        "details_url": run.details_url.clone().unwrap_or_else(|| "https://example.invalid/task-list-bot".to_owned()),
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": ts(run.started_at),
        "completed_at": ts_opt(run.completed_at),
        "output": output,
        "name": run.name,
        "check_suite": {"id": stored.suite_id},
        "app": app(urls, app_id),
        "pull_requests": check_run_pulls(urls, repo, &stored.head_sha),
    })
}

pub(super) fn delivery(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "guid": d.guid,
        "delivered_at": ts(d.delivered_at),
        "redelivery": d.redelivery,
        "duration": d.duration,
        "status": d.status,
        "status_code": d.status_code,
        "event": d.event,
        "action": d.action,
        "installation_id": d.installation_id,
        "repository_id": d.repository_id,
        "throttled_at": null,
    })
}

pub(super) fn delivery_detail(urls: &Urls, d: &Delivery) -> Value {
    let mut detail = delivery(d);
    detail["url"] = json!(format!("{}/webhook", urls.web));
    detail["request"] = json!({
        "headers": {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Delivery": d.guid,
            "X-GitHub-Event": d.event,
        },
        "payload": d.payload,
    });
    detail["response"] = json!({"headers": {}, "payload": null});
    detail
}
