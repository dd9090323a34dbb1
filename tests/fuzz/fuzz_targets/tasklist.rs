//! The task-list parser and the check run built from it, on any markdown.
//!
//! Input layout (the seeds in `tests/fuzz/seeds/tasklist/` follow it):
//! markdown documents separated by the byte 0x1E (record separator): the
//! pull request's body first, then its comments. Invalid UTF-8 is
//! replaced, as GitHub only ever sends strings. A first byte from 0xF1 to
//! 0xFF repeats the body 16 to 240 times, so that short inputs reach the
//! sizes where GitHub's limits matter.
//!
//! What must hold, whatever the markdown:
//!
//! - nothing panics, and nothing hangs (libFuzzer's `-timeout`);
//! - the counts agree with the tasks found;
//! - task texts are clean: one line, trimmed, no NUL;
//! - the check's summary and text stay within GitHub's limits, and every
//!   row of its tables ends in its status cell (no task text breaks a row);
//! - the request serialises, and a check run GitHub echoes back from it is
//!   recognised as saying the same (so an unchanged check is not rewritten).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use task_list_bot::check::{CheckRunRequest, ExistingCheckRun, TaskSources};
use task_list_bot::tasklist::TaskList;

/// GitHub refuses a check run whose `output.summary` or `output.text` is
/// longer than 65535 characters (counted here in bytes, which is never
/// fewer).
const GITHUB_MAX_OUTPUT: usize = 65_535;

/// GitHub documents no limit for the title; it is one short sentence.
const TITLE_SANITY_LIMIT: usize = 1024;

const SEPARATOR: char = '\u{1e}';

/// Who wrote each comment, in turn: people and an ignored bot.
const COMMENTERS: [&str; 3] = ["bob", "carol", "coderabbitai[bot]"];

fuzz_target!(|data: &[u8]| {
    let (repeats, data) = match data.split_first() {
        Some((&first, rest)) if first > 0xF0 => (usize::from(first - 0xF0) * 16, rest),
        _ => (1, data),
    };
    let text = String::from_utf8_lossy(data);
    let mut documents = text.split(SEPARATOR);
    let body = documents.next().unwrap_or("").repeat(repeats);
    let comments: Vec<&str> = documents.collect();

    let list = TaskList::parse(&body);
    check_list(&list);

    let discussion: Vec<(&str, &str)> = comments
        .iter()
        .enumerate()
        .map(|(i, comment)| (COMMENTERS[i % COMMENTERS.len()], *comment))
        .collect();
    let sources = TaskSources {
        author: "alice",
        body: Some(&body),
        discussion,
    };
    let ignored = vec!["coderabbitai[bot]".to_owned()];
    let all = sources.tasks(&ignored);
    check_list(&all);

    // Reading the documents one after the other is reading each alone.
    let mut expected = TaskList::parse(&body);
    for (i, comment) in comments.iter().enumerate() {
        if COMMENTERS[i % COMMENTERS.len()] != "coderabbitai[bot]" {
            let alone = TaskList::parse(comment);
            expected.required.extend(alone.required);
            expected.optional.extend(alone.optional);
        }
    }
    assert_eq!(all, expected);

    let now = chrono::Utc::now();
    let request = CheckRunRequest::for_tasks("0123abc", &all, now);
    assert_eq!(request.status == "completed", all.is_complete());
    let json = serde_json::to_value(&request).expect("a check run request serialises");

    // What GitHub answers for the check run it created from this request.
    let mut echoed = json.clone();
    echoed["id"] = 1.into();
    let existing: ExistingCheckRun =
        serde_json::from_value(echoed).expect("the request reads back as a check run");
    assert!(request.says_the_same_as(&existing));
});

fn check_list(list: &TaskList) {
    let counts = list.counts();
    let checked_optional = list.optional.iter().filter(|t| t.checked).count();
    assert_eq!(counts.total, list.required.len() + checked_optional);
    assert_eq!(
        counts.remaining,
        list.required.iter().filter(|t| !t.checked).count()
    );
    assert_eq!(counts.optional_total, list.optional.len());
    assert!(counts.remaining <= counts.total);
    assert_eq!(list.is_complete(), counts.remaining == 0);
    for task in list.required.iter().chain(&list.optional) {
        let text = &task.text;
        assert!(!text.contains(['\0', '\n', '\r']), "{text:?}");
        assert_eq!(text.trim(), text, "{text:?}");
    }

    let output = list.render();
    assert!(output.title.len() <= TITLE_SANITY_LIMIT, "{}", output.title);
    assert!(
        output.summary.len() <= GITHUB_MAX_OUTPUT,
        "summary of {} bytes",
        output.summary.len()
    );
    assert!(
        output.text.len() <= GITHUB_MAX_OUTPUT,
        "text of {} bytes for {} tasks",
        output.text.len(),
        list.required.len() + list.optional.len()
    );
    for (i, row) in table_rows(&output.text).iter().enumerate() {
        let header = ["Task", "Status"];
        let status_ok = matches!(
            row.last().map(String::as_str),
            Some("Completed" | "Incomplete")
        );
        assert!(
            row == &header || status_ok,
            "row {i} is broken: {row:?} in {:?}",
            output.text
        );
    }
    serde_json::to_string(&list.report()).expect("a report serialises");
}

/// The plain text of each cell of each table row (the header included) of
/// `markdown`, as a GitHub-flavoured renderer splits them.
fn table_rows(markdown: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut in_cell = false;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::TableHead | Tag::TableRow) => rows.push(Vec::new()),
            Event::Start(Tag::TableCell) => {
                in_cell = true;
                if let Some(row) = rows.last_mut() {
                    row.push(String::new());
                }
            }
            Event::End(TagEnd::TableCell) => in_cell = false,
            Event::Text(text) | Event::Code(text) if in_cell => {
                if let Some(cell) = rows.last_mut().and_then(|row| row.last_mut()) {
                    cell.push_str(&text);
                }
            }
            _ => {}
        }
    }
    rows
}
