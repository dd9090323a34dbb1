use super::*;

pub(super) enum ThreadItems {
    IssueComments,
    Reviews,
    ReviewComments,
}

pub(super) fn get_repo(call: &Call<'_>, path: &RepoPath, docs: &str) -> Reply {
    let model = call.shared.model();
    match path.find(&model) {
        Some(repo) => Reply::json(StatusCode::OK, render::repo(&call.urls, repo)),
        None => Reply::not_found(docs),
    }
}

pub(super) fn get_pull(call: &Call<'_>, path: &RepoPath, number: u64, docs: &str) -> Reply {
    let model = call.shared.model();
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    match repo.threads.get(&number) {
        Some(thread) if thread.pull.is_some() => {
            Reply::json(StatusCode::OK, render::pull(&call.urls, repo, thread))
        }
        _ => Reply::not_found(docs),
    }
}

pub(super) fn get_issue(call: &Call<'_>, path: &RepoPath, number: u64, docs: &str) -> Reply {
    let model = call.shared.model();
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    match repo.threads.get(&number) {
        Some(thread) => Reply::json(StatusCode::OK, render::issue(&call.urls, repo, thread)),
        None => Reply::not_found(docs),
    }
}

pub(super) fn list_thread_items(
    call: &Call<'_>,
    path: &RepoPath,
    number: u64,
    items: ThreadItems,
    docs: &str,
) -> Reply {
    let model = call.shared.model();
    let Some(repo) = path.find(&model) else {
        return Reply::not_found(docs);
    };
    let Some(thread) = repo.threads.get(&number) else {
        return Reply::not_found(docs);
    };
    let urls = &call.urls;
    let all: Vec<Value> = match items {
        ThreadItems::IssueComments => thread
            .comments
            .iter()
            .map(|c| render::issue_comment(urls, repo, thread, c))
            .collect(),
        // Reviews and review comments exist only on pull requests.
        _ if thread.pull.is_none() => return Reply::not_found(docs),
        ThreadItems::Reviews => thread
            .reviews
            .iter()
            .map(|r| render::review(urls, repo, thread, r))
            .collect(),
        ThreadItems::ReviewComments => thread
            .review_comments
            .iter()
            .map(|c| render::review_comment(urls, repo, thread, c))
            .collect(),
    };
    let list_path = match items {
        // GitHub's links name the repository by id.
        ThreadItems::IssueComments => {
            format!("/repositories/{}/issues/{number}/comments", repo.id)
        }
        ThreadItems::Reviews => format!("/repositories/{}/pulls/{number}/reviews", repo.id),
        ThreadItems::ReviewComments => {
            format!("/repositories/{}/pulls/{number}/comments", repo.id)
        }
    };
    let page = Pagination::from_query(call);
    let (slice, link) = page.apply(&all, call, &list_path);
    let reply = Reply::json(StatusCode::OK, Value::Array(slice.to_vec()));
    match link {
        Some(link) => reply.header("link", link),
        None => reply,
    }
}
