use super::*;

pub(super) fn create_check_run(
    call: &Call<'_>,
    path: &RepoPath,
    caller: &Caller,
    docs: &str,
) -> Reply {
    let body = match json_body(call, docs) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let run = match validate_check_run(&body) {
        Ok(run) => run,
        Err(message) => return Reply::unprocessable(&message, docs),
    };
    if let Some(reply) = output_too_large(&run, docs) {
        return reply;
    }
    let Caller::Installation {
        id: installation_id,
        ..
    } = caller
    else {
        return Reply::not_found(docs);
    };
    let mut model = call.shared.model();
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    let key = repo_key(&repo.full_name());
    if !repo.commits.contains(&run.head_sha) {
        return Reply::unprocessable(&format!("No commit found for SHA: {}", run.head_sha), docs);
    }
    let repo_full_name = repo.full_name();
    let id = model.next_id();
    let next_suite = model.next_id();
    let suite_id = *model
        .suites
        .entry((key.clone(), run.head_sha.clone()))
        .or_insert(next_suite);
    let stored = StoredCheckRun {
        id,
        repo_key: key,
        repo_full_name,
        installation_id: *installation_id,
        suite_id,
        head_sha: run.head_sha.clone(),
        run,
        body,
        received_at: Instant::now(),
    };
    // Found above; looked up again because the ids were taken since.
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    let answer = render::check_run(&call.urls, call.shared.app_id, repo, &stored);
    model.check_runs.push(stored);
    Reply::json(StatusCode::CREATED, answer)
}

pub(super) fn get_check_run(call: &Call<'_>, path: &RepoPath, id: u64, docs: &str) -> Reply {
    let model = call.shared.model();
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    let key = repo_key(&repo.full_name());
    match model
        .check_runs
        .iter()
        .find(|r| r.id == id && r.repo_key == key)
    {
        Some(run) => Reply::json(
            StatusCode::OK,
            render::check_run(&call.urls, call.shared.app_id, repo, run),
        ),
        None => Reply::not_found(docs),
    }
}

pub(super) fn list_check_runs(
    call: &Call<'_>,
    path: &RepoPath,
    git_ref: &str,
    docs: &str,
) -> Reply {
    let filter = call.query("filter").unwrap_or("latest");
    if !matches!(filter, "latest" | "all") {
        return Reply::unprocessable(
            &format!(
                "Invalid request.\n\nFor 'filter', {} is not one of [\"latest\", \"all\"].",
                json!(filter)
            ),
            docs,
        );
    }
    let status = call.query("status");
    if let Some(status) = status.filter(|s| !matches!(*s, "queued" | "in_progress" | "completed")) {
        return Reply::unprocessable(
            &format!(
                "Invalid request.\n\nFor 'status', {} is not one of [\"queued\", \"in_progress\", \"completed\"].",
                json!(status)
            ),
            docs,
        );
    }
    let app_id = call.query("app_id").map(|a| a.parse::<u64>().ok());
    let check_name = call.query("check_name");

    let model = call.shared.model();
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    let key = repo_key(&repo.full_name());
    let Some(sha) = repo.resolve_ref(git_ref) else {
        return Reply::unprocessable(&format!("No commit found for SHA: {git_ref}"), docs);
    };
    // Newest first; `latest` keeps the most recent run of each name.
    let mut seen = BTreeSet::new();
    let runs: Vec<&StoredCheckRun> = model
        .check_runs
        .iter()
        .rev()
        .filter(|r| r.repo_key == key && r.head_sha == sha)
        .filter(|r| filter == "all" || seen.insert(r.run.name.clone()))
        .filter(|r| check_name.is_none_or(|n| r.run.name == n))
        .filter(|r| status.is_none_or(|s| r.run.status == s))
        .filter(|_| app_id.is_none_or(|a| a == Some(call.shared.app_id)))
        .collect();
    let all: Vec<Value> = runs
        .iter()
        .map(|r| render::check_run(&call.urls, call.shared.app_id, repo, r))
        .collect();
    // GitHub's links name the repository by id.
    let list_path = format!("/repositories/{}/commits/{git_ref}/check-runs", repo.id);
    let page = Pagination::from_query(call);
    let (slice, link) = page.apply(&all, call, &list_path);
    let reply = Reply::json(
        StatusCode::OK,
        json!({"total_count": all.len(), "check_runs": slice}),
    );
    match link {
        Some(link) => reply.header("link", link),
        None => reply,
    }
}
