//! Task lists in pull-request markdown, and the `task-list-completed` check
//! run output built from them.
//!
//! [`TaskList::parse`] finds every checkbox GitHub would render (a GFM
//! task-list item) in a markdown document; [`TaskList::extend_from`] adds the
//! tasks of further documents (the PR body first, then its comments, in
//! order). [`TaskList::render`] produces the check run's title, summary and
//! text with exactly the strings of the Node.js app this bot replaces
//! (stilliard/github-task-list-completed), because users rely on them.
//!
//! This module does no I/O: it turns strings into values and back.
//!
//! # What counts as a task
//!
//! Markdown is parsed with pulldown-cmark's task-list support, never with
//! regexes, so a checkbox counts exactly where it is rendered: in `-`, `*`,
//! `+` and ordered lists, at any depth, inside blockquotes (and in markdown
//! between HTML tags such as `<details>`); not in fenced or indented code
//! blocks, nor in HTML comments, nor in plain list items.
//!
//! A task's text is the item's *own* inline content: the text of its
//! paragraphs (including inline code, emphasis, link text and image alt
//! text, but not link URLs or inline HTML), not the text of nested lists, code blocks or other
//! blocks under it. A marker with nothing after it on its line (`- [ ]`
//! alone, trailing spaces included) is not a task: GitHub shows it as the
//! literal text `[ ]`. Runs of whitespace (and line breaks) collapse to one
//! space; several own paragraphs join with one space; NUL becomes U+FFFD.
//!
//! # Markers (case-sensitive, matched against the task's own text)
//!
//! * `OPTIONAL`: the task never blocks. A checked optional task still counts
//!   as a completed task in the title, as the old app documents ("skipped
//!   unless checked"); an unchecked one only shows up as "(+n optional)".
//!   Both are listed in the optional table.
//! * `POST-MERGE` or `N/A`: the task is skipped, unless it is also
//!   `OPTIONAL`, in which case it is optional.
//!
//! These are the defaults: a repository's settings may choose other markers
//! and case-insensitive matching ([`Markers`], [`TaskList::parse_with`]).

use pulldown_cmark::{Event, Options, Parser, Tag};
use serde::{Deserialize, Serialize};

/// Marks a task that may stay unchecked.
const OPTIONAL_MARKER: &str = "OPTIONAL";

/// Markers of tasks that are not counted at all (unless also optional).
const SKIP_MARKERS: [&str; 2] = ["POST-MERGE", "N/A"];

/// The markers a repository's settings may replace: which words make a task
/// skipped or optional, and whether case matters. The default is the old
/// app's fixed markers, matched case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Markers {
    /// A task whose text contains one of these is not counted.
    pub skip: Vec<String>,
    /// A task whose text contains one of these never blocks.
    pub optional: Vec<String>,
    pub case_sensitive: bool,
}

impl Default for Markers {
    fn default() -> Markers {
        Markers {
            skip: SKIP_MARKERS.iter().map(|m| (*m).to_owned()).collect(),
            optional: vec![OPTIONAL_MARKER.to_owned()],
            case_sensitive: true,
        }
    }
}

impl Markers {
    /// How a task with this text counts. Optional markers are looked for
    /// first: the old app kept optional items in its optional list even when
    /// they also said `N/A` or `POST-MERGE`.
    fn kind(&self, text: &str) -> TaskKind {
        let folded;
        let text = if self.case_sensitive {
            text
        } else {
            folded = text.to_lowercase();
            &folded
        };
        let found = |markers: &[String]| {
            markers.iter().any(|marker| {
                if self.case_sensitive {
                    text.contains(marker.as_str())
                } else {
                    text.contains(marker.to_lowercase().as_str())
                }
            })
        };
        if found(&self.optional) {
            TaskKind::Optional
        } else if found(&self.skip) {
            TaskKind::Skipped
        } else {
            TaskKind::Required
        }
    }
}

/// The default markers, built once.
static DEFAULT_MARKERS: std::sync::LazyLock<Markers> = std::sync::LazyLock::new(Markers::default);

/// Status column values of the old app's tables.
const STATUS_COMPLETED: &str = "Completed";
const STATUS_INCOMPLETE: &str = "**Incomplete**";

/// One checkbox: its own text (see the module docs) and whether it is ticked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub text: String,
    pub checked: bool,
}

impl Task {
    /// The value of this task's `Status` column.
    fn status(&self) -> &'static str {
        if self.checked {
            STATUS_COMPLETED
        } else {
            STATUS_INCOMPLETE
        }
    }
}

/// Tasks of one or more markdown documents, split by kind; skipped items are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskList {
    /// Tasks that must be checked before the check passes, in document order.
    pub required: Vec<Task>,
    /// Tasks marked `OPTIONAL`, in document order.
    pub optional: Vec<Task>,
}

/// The numbers behind the check run output.
///
/// `total` and `remaining` are the numbers of the title:
/// `"{total - remaining} / {total} tasks completed"`. Following the old app,
/// `total` counts every required task plus every *checked* optional task, and
/// `remaining` counts unchecked required tasks only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub total: usize,
    pub remaining: usize,
    pub optional_total: usize,
    pub optional_remaining: usize,
}

impl TaskCounts {
    /// Tasks shown as done in the title. Saturating, so hand-built counts
    /// with `remaining > total` cannot panic.
    pub fn completed(&self) -> usize {
        self.total.saturating_sub(self.remaining)
    }
}

/// The `output` object of a check run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    pub text: String,
}

/// JSON shape of `task-list-bot tasks --json`, serialised with serde_json:
/// `{"total","remaining","optional_total","optional_remaining","tasks":[{"text","checked"}],"optional_tasks":[{"text","checked"}],"title","summary","text"}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReport {
    pub total: usize,
    pub remaining: usize,
    pub optional_total: usize,
    pub optional_remaining: usize,
    /// The required tasks.
    pub tasks: Vec<Task>,
    pub optional_tasks: Vec<Task>,
    pub title: String,
    pub summary: String,
    pub text: String,
}

impl TaskList {
    /// The tasks of one markdown document, with the default markers.
    pub fn parse(markdown: &str) -> TaskList {
        TaskList::parse_with(markdown, &DEFAULT_MARKERS)
    }

    /// The tasks of one markdown document, with a repository's markers.
    pub fn parse_with(markdown: &str, markers: &Markers) -> TaskList {
        let mut list = TaskList::default();
        list.extend_from_with(markdown, markers);
        list
    }

    /// Adds another document's tasks after the ones already here, so the
    /// tables list the PR body's tasks first, then each comment's in order.
    pub fn extend_from(&mut self, markdown: &str) {
        self.extend_from_with(markdown, &DEFAULT_MARKERS);
    }

    /// [`TaskList::extend_from`] with a repository's markers.
    pub fn extend_from_with(&mut self, markdown: &str, markers: &Markers) {
        for task in extract_tasks(markdown) {
            match markers.kind(&task.text) {
                TaskKind::Required => self.required.push(task),
                TaskKind::Optional => self.optional.push(task),
                TaskKind::Skipped => {}
            }
        }
    }

    pub fn counts(&self) -> TaskCounts {
        let checked_optional = count_checked(&self.optional);
        TaskCounts {
            total: self.required.len() + checked_optional,
            remaining: self.required.len() - count_checked(&self.required),
            optional_total: self.optional.len(),
            optional_remaining: self.optional.len() - checked_optional,
        }
    }

    /// True when no required task is unchecked; optional tasks never block.
    pub fn is_complete(&self) -> bool {
        self.required.iter().all(|task| task.checked)
    }

    /// Title, summary and text exactly as the old app wrote them.
    pub fn render(&self) -> CheckOutput {
        let counts = self.counts();
        CheckOutput {
            title: title(&counts),
            summary: summary(&counts),
            text: tables(self, &counts),
        }
    }

    pub fn report(&self) -> TaskReport {
        let counts = self.counts();
        let output = self.render();
        TaskReport {
            total: counts.total,
            remaining: counts.remaining,
            optional_total: counts.optional_total,
            optional_remaining: counts.optional_remaining,
            tasks: self.required.clone(),
            optional_tasks: self.optional.clone(),
            title: output.title,
            summary: output.summary,
            text: output.text,
        }
    }
}

fn count_checked(tasks: &[Task]) -> usize {
    tasks.iter().filter(|task| task.checked).count()
}

/// How a task is counted, decided by the markers in its own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskKind {
    Required,
    Optional,
    Skipped,
}

// ---------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------

/// The GitHub-flavoured extensions GitHub renders in PR bodies and comments.
/// Tables, strikethrough and footnotes change what is a paragraph or text,
/// so they are on to see the document's structure the way GitHub does.
fn markdown_options() -> Options {
    Options::ENABLE_TASKLISTS
        | Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_GFM
}

/// Every checkbox of `markdown` in document order (a parent before the
/// tasks nested under it), with its own text.
fn extract_tasks(markdown: &str) -> Vec<Task> {
    let mut collector = TaskCollector::default();
    for (event, range) in Parser::new_ext(markdown, markdown_options()).into_offset_iter() {
        if matches!(event, Event::TaskListMarker(_))
            && nothing_follows_on_its_line(markdown, range.end)
        {
            // GitHub renders a marker with nothing after it as the literal
            // text "[ ]", not as a checkbox; pulldown-cmark still reports a
            // marker when a space or a line break follows it.
            continue;
        }
        collector.handle(event);
    }
    collector.finish()
}

/// Whether the line holding a task marker that ends at `end` has nothing
/// but whitespace after it.
fn nothing_follows_on_its_line(markdown: &str, end: usize) -> bool {
    markdown
        .get(end..)
        .and_then(|rest| rest.split('\n').next())
        .is_none_or(|line| line.trim().is_empty())
}

/// What an open tag is, as far as task text is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    /// A list item: its own text is collected into the innermost `OpenItem`.
    Item,
    /// Emphasis, links, images and the like: part of the surrounding text.
    Inline,
    /// Any other block: paragraphs, code blocks, lists, quotes, tables...
    Block,
}

/// One open tag. The parser's start and end events are balanced, so every
/// start pushes a frame and every end pops one: no need to match tag kinds.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: FrameKind,
    /// Whether text directly inside this tag is the innermost item's own
    /// text. Decided once when the frame opens, so each text event is O(1)
    /// however deep the document nests.
    own_text: bool,
}

/// A list item whose end has not been seen yet.
#[derive(Debug, Default)]
struct OpenItem {
    /// Where its task sits in `TaskCollector::tasks`, once its checkbox has
    /// been seen. Reserving the slot at the checkbox keeps document order,
    /// although the text is only complete at the item's end.
    task_index: Option<usize>,
    /// Raw own text, whitespace not yet collapsed.
    text: String,
}

/// Turns the parser's event stream into tasks, with explicit stacks (no
/// recursion) so that no input nesting can overflow the call stack.
#[derive(Debug, Default)]
struct TaskCollector {
    frames: Vec<Frame>,
    open_items: Vec<OpenItem>,
    tasks: Vec<Task>,
}

impl TaskCollector {
    fn handle(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.open(&tag),
            Event::End(_) => self.close(),
            Event::TaskListMarker(checked) => self.mark_task(checked),
            Event::Text(text) | Event::Code(text) => self.push_text(&text),
            Event::SoftBreak | Event::HardBreak => self.push_text(" "),
            // Inline HTML (comments included), footnote references, rules and
            // anything else carry no task text.
            _ => {}
        }
    }

    fn open(&mut self, tag: &Tag<'_>) {
        let parent = self.frames.last().copied();
        let frame = match tag {
            Tag::Item => Frame {
                kind: FrameKind::Item,
                own_text: true,
            },
            // A paragraph is an item's own text only directly under the item;
            // one inside a quote or nested list under it belongs elsewhere.
            Tag::Paragraph => Frame {
                kind: FrameKind::Block,
                own_text: parent.is_some_and(|frame| frame.kind == FrameKind::Item),
            },
            tag if is_inline(tag) => Frame {
                kind: FrameKind::Inline,
                own_text: parent.is_some_and(|frame| frame.own_text),
            },
            _ => Frame {
                kind: FrameKind::Block,
                own_text: false,
            },
        };
        if frame.kind != FrameKind::Inline {
            self.separate_blocks();
        }
        if frame.kind == FrameKind::Item {
            self.open_items.push(OpenItem::default());
        }
        self.frames.push(frame);
    }

    fn close(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        match frame.kind {
            FrameKind::Inline => {}
            FrameKind::Block => self.separate_blocks(),
            FrameKind::Item => self.close_item(),
        }
    }

    /// Puts a space at every block boundary inside an item, so text before
    /// and after a block never runs together: in a tight list, text after a
    /// code block is not wrapped in a paragraph.
    fn separate_blocks(&mut self) {
        if let Some(item) = self.open_items.last_mut() {
            item.text.push(' ');
        }
    }

    fn close_item(&mut self) {
        let Some(item) = self.open_items.pop() else {
            return;
        };
        let Some(index) = item.task_index else {
            return;
        };
        if let Some(task) = self.tasks.get_mut(index) {
            task.text = clean_task_text(&item.text);
        }
    }

    /// The parser only emits a marker at the very start of an item, so it
    /// belongs to the innermost open item; a second one is ignored.
    fn mark_task(&mut self, checked: bool) {
        let Some(item) = self.open_items.last_mut() else {
            return;
        };
        if item.task_index.is_none() {
            item.task_index = Some(self.tasks.len());
            self.tasks.push(Task {
                text: String::new(),
                checked,
            });
        }
    }

    fn push_text(&mut self, text: &str) {
        if !self.frames.last().is_some_and(|frame| frame.own_text) {
            return;
        }
        if let Some(item) = self.open_items.last_mut() {
            item.text.push_str(text);
        }
    }

    /// The tasks found. Items still open (the parser closes them all, this
    /// is only defensive) are finished first so no task keeps an empty text.
    fn finish(mut self) -> Vec<Task> {
        while !self.open_items.is_empty() {
            self.close_item();
        }
        self.tasks
    }
}

/// Tags that live inside a paragraph and whose text is part of it.
fn is_inline(tag: &Tag<'_>) -> bool {
    matches!(
        tag,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. }
    )
}

/// Collapses every run of whitespace (line breaks included) to one space,
/// trims the ends, and replaces NUL with U+FFFD as CommonMark requires (the
/// parser passes it through; GitHub would reject or drop it in a check run).
fn clean_task_text(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\0', "\u{fffd}")
}

// ---------------------------------------------------------------------------
// Rendering: every string here is the old app's, character for character.
// ---------------------------------------------------------------------------

/// `" (+n optional)"` while optional tasks are unchecked, else nothing.
fn optional_suffix(counts: &TaskCounts) -> String {
    if counts.optional_remaining > 0 {
        format!(" (+{} optional)", counts.optional_remaining)
    } else {
        String::new()
    }
}

/// `"{done} / {total} tasks completed"`: always "tasks", even for one.
fn title(counts: &TaskCounts) -> String {
    format!(
        "{} / {} tasks completed{}",
        counts.completed(),
        counts.total,
        optional_suffix(counts)
    )
}

/// Singular only for exactly one remaining task, as the old app's `> 1` test.
fn summary(counts: &TaskCounts) -> String {
    let lead = match counts.remaining {
        0 => "All tasks have been completed".to_string(),
        1 => "1 task still to be completed".to_string(),
        n => format!("{n} tasks still to be completed"),
    };
    lead + &optional_suffix(counts)
}

/// The most bytes GitHub accepts in a check run's `output.summary` and
/// `output.text` (it answers 422 to more); its documented limit of 65535
/// characters is counted in bytes of UTF-8.
pub const MAX_OUTPUT_BYTES: usize = 65_535;

/// The check run text: a required table when the title total is non-zero and
/// an optional table when there are optional tasks; empty without tasks.
///
/// The required section depends on the title total, not on the number of
/// required tasks, because that is what the old app did: with only checked
/// optional tasks it shows the required heading over an empty table.
///
/// Tables that would exceed [`MAX_OUTPUT_BYTES`] are cut after the last row
/// that fits, and a final line says how many tasks are not listed.
fn tables(list: &TaskList, counts: &TaskCounts) -> String {
    let sections = table_sections(list, counts);
    let text: String = sections
        .iter()
        .map(|(heading, tasks)| table_section(heading, tasks))
        .collect();
    if text.len() <= MAX_OUTPUT_BYTES {
        return text;
    }
    fitted_tables(&sections, MAX_OUTPUT_BYTES)
}

/// The (heading, tasks) of each table the text shows, in order.
fn table_sections<'a>(list: &'a TaskList, counts: &TaskCounts) -> Vec<(&'static str, &'a [Task])> {
    let mut sections = Vec::new();
    if counts.total > 0 {
        sections.push(("Required Tasks", list.required.as_slice()));
    }
    if counts.optional_total > 0 {
        sections.push(("Optional Tasks", list.optional.as_slice()));
    }
    sections
}

/// The tables cut at a row so that they and the closing note stay within
/// `limit` bytes. Rows keep their order; a row too long for what is left
/// ends the listing.
fn fitted_tables(sections: &[(&str, &[Task])], limit: usize) -> String {
    let all_rows: usize = sections.iter().map(|(_, tasks)| tasks.len()).sum();
    // The note is reserved at its longest, for when no row fits.
    let budget = limit.saturating_sub(not_listed_note(all_rows).len());
    let mut text = String::new();
    let mut listed = 0;
    'sections: for (heading, tasks) in sections {
        let mut section = table_header(heading);
        let mut rows = 0;
        let mut full = false;
        for task in *tasks {
            let row = table_row(task);
            // Every row is followed by a line break.
            if text.len() + section.len() + row.len() + 1 > budget {
                full = true;
                break;
            }
            section.push_str(&row);
            section.push('\n');
            rows += 1;
        }
        if rows == 0 {
            if full || text.len() + section.len() + 1 > budget {
                break 'sections;
            }
            // An empty table, as the old app writes it.
            section.push('\n');
        }
        text.push_str(&section);
        listed += rows;
        if full {
            break;
        }
    }
    text.push_str(&not_listed_note(all_rows - listed));
    text
}

/// The last line of cut tables, after a blank line so that it is not read
/// as one more table row.
fn not_listed_note(not_listed: usize) -> String {
    let tasks = if not_listed == 1 {
        "task is"
    } else {
        "tasks are"
    };
    format!(
        "\n{not_listed} more {tasks} not listed: GitHub limits a check run's text to {MAX_OUTPUT_BYTES} bytes.\n"
    )
}

fn table_header(heading: &str) -> String {
    format!("\n## {heading}\n| Task | Status |\n| ---- | ------ |\n")
}

/// `"\n## {heading}\n| Task | Status |\n| ---- | ------ |\n{rows}\n"`, rows
/// joined by newlines.
fn table_section(heading: &str, tasks: &[Task]) -> String {
    let rows: Vec<String> = tasks.iter().map(table_row).collect();
    format!("{}{}\n", table_header(heading), rows.join("\n"))
}

fn table_row(task: &Task) -> String {
    format!("| {} | {} |", escape_table_cell(&task.text), task.status())
}

/// Makes text safe inside one table cell: `|` would end the cell and a line
/// break the row. Backslashes are escaped too, since `\` before an escaped
/// pipe (`\\|`) would otherwise turn it back into a cell delimiter; a
/// backslash-escaped backslash renders as the backslash it was.
fn escape_table_cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '|' => escaped.push_str("\\|"),
            '\r' => {
                // CRLF is one line break: one space.
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                escaped.push(' ');
            }
            '\n' => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(text: &str, checked: bool) -> Task {
        Task {
            text: text.to_string(),
            checked,
        }
    }

    fn tasks(expected: &[(&str, bool)]) -> Vec<Task> {
        expected
            .iter()
            .map(|&(text, checked)| task(text, checked))
            .collect()
    }

    fn counts(
        total: usize,
        remaining: usize,
        optional_total: usize,
        optional_remaining: usize,
    ) -> TaskCounts {
        TaskCounts {
            total,
            remaining,
            optional_total,
            optional_remaining,
        }
    }

    /// The old app's test suite (tests/index.test.js), same fixtures.
    #[test]
    fn counts_match_the_old_app_test_suite() {
        let cases = [
            (
                "outstanding tasks found",
                "\nHello World\n- [ ] testing\n- [x] 123\n",
                counts(2, 1, 0, 0),
            ),
            (
                "no outstanding tasks",
                "\nHello World\n- [x] testing\n- [x] 123\n",
                counts(2, 0, 0, 0),
            ),
            ("no tasks", "\nHello World\n", counts(0, 0, 0, 0)),
            (
                "normal lists are not counted",
                "\nHello World\n- normal\n- [x] task 1\n- [ ] task 2\n",
                counts(2, 1, 0, 0),
            ),
            (
                "nested lists",
                "\nHello World\n- [x] normal\n- section1\n   - [x] task 1-1\n   - [ ] task 1-2\n- section2\n   - [ ] task 2-1\n   - [x] task 2-2\n",
                counts(5, 2, 0, 0),
            ),
            (
                "skipped items",
                "\nHello World\n- normal\n- [ ] task one\n- [ ] POST-MERGE: abc\n- [ ] this is not a post-merge test\n- [ ] N/A skipped\n- [x] n/a not skipped\n",
                counts(3, 2, 0, 0),
            ),
            (
                "optional items",
                "\nHello World\n- normal\n- [x] OPTIONAL: one\n- [ ] OPTIONAL: two\n- [x] this is not an optional test\n",
                counts(2, 0, 2, 1),
            ),
        ];
        for (name, markdown, expected) in cases {
            assert_eq!(TaskList::parse(markdown).counts(), expected, "{name}");
        }
    }

    /// The old app's end-to-end test: a PR body with one open task.
    #[test]
    fn title_for_one_open_task_matches_the_old_app() {
        let output = TaskList::parse("- [ ] human task").render();
        assert_eq!(output.title, "0 / 1 tasks completed");
    }

    /// (name, markdown, required tasks, optional tasks)
    type ExtractCase = (
        &'static str,
        &'static str,
        &'static [(&'static str, bool)],
        &'static [(&'static str, bool)],
    );

    fn check_extraction(cases: &[ExtractCase]) {
        for &(name, markdown, required, optional) in cases {
            let list = TaskList::parse(markdown);
            assert_eq!(list.required, tasks(required), "{name}: required");
            assert_eq!(list.optional, tasks(optional), "{name}: optional");
        }
    }

    #[test]
    fn a_task_is_a_rendered_checkbox_in_any_kind_of_list() {
        check_extraction(&[
            (
                "dash bullets",
                "- [ ] a\n- [x] b",
                &[("a", false), ("b", true)],
                &[],
            ),
            (
                "star bullets",
                "* [ ] a\n* [x] b",
                &[("a", false), ("b", true)],
                &[],
            ),
            (
                "plus bullets",
                "+ [ ] a\n+ [x] b",
                &[("a", false), ("b", true)],
                &[],
            ),
            (
                "ordered with dot",
                "1. [ ] a\n2. [x] b",
                &[("a", false), ("b", true)],
                &[],
            ),
            (
                "ordered with paren",
                "1) [ ] a\n2) [x] b",
                &[("a", false), ("b", true)],
                &[],
            ),
            ("capital X is checked", "- [X] a", &[("a", true)], &[]),
            ("blockquote", "> - [ ] quoted", &[("quoted", false)], &[]),
            (
                "nested blockquote",
                "> > 1. [x] deep",
                &[("deep", true)],
                &[],
            ),
            (
                "list inside a blockquote inside a list",
                "- [ ] outer\n  > - [x] inner",
                &[("outer", false), ("inner", true)],
                &[],
            ),
            (
                "every nesting depth, in document order",
                "- [ ] 1\n  - [ ] 1.1\n    - [x] 1.1.1\n- [x] 2",
                &[("1", false), ("1.1", false), ("1.1.1", true), ("2", true)],
                &[],
            ),
            (
                "CRLF line endings",
                "- [ ] a\r\n- [x] b\r\n",
                &[("a", false), ("b", true)],
                &[],
            ),
            (
                "markdown between HTML tags still counts",
                "<details>\n\n- [ ] hidden but rendered\n\n</details>",
                &[("hidden but rendered", false)],
                &[],
            ),
            (
                "loose list",
                "- [ ] a\n\n- [x] b\n",
                &[("a", false), ("b", true)],
                &[],
            ),
        ]);
    }

    #[test]
    fn things_that_are_not_rendered_as_checkboxes_are_not_tasks() {
        check_extraction(&[
            (
                "plain list item",
                "- plain\n- [x] task",
                &[("task", true)],
                &[],
            ),
            (
                "brackets outside a list",
                "[ ] not a task\n\n[x] neither",
                &[],
                &[],
            ),
            ("no space after the bullet", "-[ ] not a task", &[], &[]),
            (
                "other character in the box",
                "- [-] not a task\n- [y] nor this",
                &[],
                &[],
            ),
            ("fenced code block", "```\n- [ ] code\n```", &[], &[]),
            (
                "tilde fenced code block",
                "~~~md\n- [ ] code\n~~~",
                &[],
                &[],
            ),
            ("indented code block", "    - [ ] code", &[], &[]),
            ("HTML comment", "<!-- - [ ] x -->", &[], &[]),
            (
                "multi-line HTML comment",
                "<!--\n- [ ] x\n- [x] y\n-->",
                &[],
                &[],
            ),
            ("unclosed fence runs to the end", "```\n- [ ] x", &[], &[]),
            ("marker alone at the end", "- [ ]", &[], &[]),
            ("marker alone with a trailing space", "- [ ] ", &[], &[]),
            ("marker alone with trailing spaces", "- [x]   ", &[], &[]),
            ("marker alone with a trailing tab", "- [ ]\t", &[], &[]),
            ("ordered marker alone", "1. [x]", &[], &[]),
            (
                "ordered marker alone, CRLF",
                "1. [x]\r\n2. [ ] b\r\n",
                &[("b", false)],
                &[],
            ),
            (
                "marker alone among tasks",
                "- [ ] a\n- [ ]\n- [x] b",
                &[("a", false), ("b", true)],
                &[],
            ),
            (
                "marker alone on its line, text on the next",
                "- [ ]\n  next line",
                &[],
                &[],
            ),
            (
                "marker alone in a blockquote",
                "> - [x] \n> - [ ] a",
                &[("a", false)],
                &[],
            ),
            (
                "nested marker alone",
                "- [ ] parent\n  - [ ]\n  - [x] child",
                &[("parent", false), ("child", true)],
                &[],
            ),
        ]);
    }

    #[test]
    fn a_task_text_is_its_own_inline_content() {
        check_extraction(&[
            (
                "nested list is not part of the parent text",
                "- [ ] parent\n  - [x] child\n  - plain child",
                &[("parent", false), ("child", true)],
                &[],
            ),
            (
                "second paragraph is joined with a space",
                "- [ ] first\n\n  second\n- [x] other",
                &[("first second", false), ("other", true)],
                &[],
            ),
            (
                "code block under the item still counts, without its code",
                "- [ ] run\n  ```sh\n  make test\n  ```\n  then check",
                &[("run then check", false)],
                &[],
            ),
            (
                "indented code in a loose item is excluded",
                "- [x] before\n\n      - [ ] code\n\n  after",
                &[("before after", true)],
                &[],
            ),
            (
                "link text kept, URL dropped",
                "- [ ] read [the docs](https://example.com/docs \"title\")",
                &[("read the docs", false)],
                &[],
            ),
            (
                "autolink text is the link",
                "- [ ] see <https://x.test>",
                &[("see https://x.test", false)],
                &[],
            ),
            (
                "inline code, emphasis, strong and strikethrough text kept",
                "- [ ] `cargo test` *now* **really** ~~later~~",
                &[("cargo test now really later", false)],
                &[],
            ),
            (
                "image alt text kept",
                "- [ ] ![screenshot](a.png) ok",
                &[("screenshot ok", false)],
                &[],
            ),
            (
                "inline HTML and comments dropped",
                "- [ ] ship <!-- hidden --> it <br> now",
                &[("ship it now", false)],
                &[],
            ),
            (
                "soft and hard breaks collapse to one space",
                "- [ ] one\n  two  \n  three\\\n  four",
                &[("one two three four", false)],
                &[],
            ),
            (
                "tabs and runs of spaces collapse",
                "- [ ] a \t  b",
                &[("a b", false)],
                &[],
            ),
        ]);
    }

    #[test]
    fn markers_decide_how_a_task_counts() {
        check_extraction(&[
            (
                "POST-MERGE is skipped",
                "- [ ] POST-MERGE: deploy",
                &[],
                &[],
            ),
            ("N/A is skipped", "- [ ] N/A: no docs", &[], &[]),
            (
                "N/A anywhere in the text",
                "- [x] docs updated (N/A)",
                &[],
                &[],
            ),
            (
                "post-merge is case-sensitive",
                "- [ ] post-merge deploy",
                &[("post-merge deploy", false)],
                &[],
            ),
            (
                "n/a is case-sensitive",
                "- [x] n/a here",
                &[("n/a here", true)],
                &[],
            ),
            (
                "OPTIONAL is optional",
                "- [ ] OPTIONAL: polish",
                &[],
                &[("OPTIONAL: polish", false)],
            ),
            (
                "optional is case-sensitive",
                "- [ ] optional polish",
                &[("optional polish", false)],
                &[],
            ),
            (
                "OPTIONAL wins over N/A",
                "- [ ] OPTIONAL N/A",
                &[],
                &[("OPTIONAL N/A", false)],
            ),
            (
                "OPTIONAL wins over POST-MERGE",
                "- [x] POST-MERGE OPTIONAL",
                &[],
                &[("POST-MERGE OPTIONAL", true)],
            ),
            (
                "a child's marker does not affect its parent",
                "- [ ] parent\n  - [ ] N/A child\n  - [ ] OPTIONAL child",
                &[("parent", false)],
                &[("OPTIONAL child", false)],
            ),
            (
                "marker in a link URL is ignored",
                "- [ ] see [docs](https://x.test/N/A)",
                &[("see docs", false)],
                &[],
            ),
            (
                "marker in an HTML comment is ignored",
                "- [ ] deploy <!-- N/A -->",
                &[("deploy", false)],
                &[],
            ),
            ("marker in inline code counts", "- [ ] `N/A`", &[], &[]),
            (
                "marker in link text counts",
                "- [ ] [OPTIONAL](https://x.test)",
                &[],
                &[("OPTIONAL", false)],
            ),
        ]);
    }

    #[test]
    fn a_repository_may_choose_its_markers() {
        let markers = Markers {
            skip: vec!["WONTFIX".into()],
            optional: vec!["nice-to-have".into()],
            case_sensitive: true,
        };
        let list = TaskList::parse_with(
            "- [ ] WONTFIX: a\n- [ ] nice-to-have: b\n- [ ] N/A c\n- [ ] OPTIONAL d",
            &markers,
        );
        assert_eq!(list.optional, tasks(&[("nice-to-have: b", false)]));
        assert_eq!(
            list.required,
            tasks(&[("N/A c", false), ("OPTIONAL d", false)])
        );
    }

    #[test]
    fn markers_may_ignore_case() {
        let insensitive = Markers {
            case_sensitive: false,
            ..Markers::default()
        };
        let text = "- [ ] n/a: docs\n- [ ] Optional: polish\n- [ ] post-merge deploy";
        let list = TaskList::parse_with(text, &insensitive);
        assert!(list.required.is_empty(), "{list:?}");
        assert_eq!(list.optional, tasks(&[("Optional: polish", false)]));
        // The default stays case-sensitive.
        assert_eq!(TaskList::parse(text).required.len(), 3);
        assert_eq!(
            TaskList::parse(text),
            TaskList::parse_with(text, &Markers::default())
        );
    }

    #[test]
    fn counts_follow_the_old_app_formula() {
        // total = required + checked optional; remaining = unchecked required.
        let cases = [
            ("no tasks", "", counts(0, 0, 0, 0)),
            (
                "checked optional counts as done",
                "- [x] OPTIONAL a",
                counts(1, 0, 1, 0),
            ),
            (
                "unchecked optional is only in the suffix",
                "- [ ] OPTIONAL a",
                counts(0, 0, 1, 1),
            ),
            (
                "mixed",
                "- [ ] r1\n- [x] r2\n- [x] OPTIONAL o1\n- [ ] OPTIONAL o2\n- [ ] OPTIONAL o3\n- [ ] N/A s",
                counts(3, 1, 3, 2),
            ),
        ];
        for (name, markdown, expected) in cases {
            assert_eq!(TaskList::parse(markdown).counts(), expected, "{name}");
        }
    }

    #[test]
    fn only_unchecked_required_tasks_block() {
        let cases = [
            ("no tasks", "", true),
            ("all required checked", "- [x] a\n- [X] b", true),
            ("one required open", "- [x] a\n- [ ] b", false),
            ("only optional open", "- [x] a\n- [ ] OPTIONAL b", true),
            ("only skipped open", "- [ ] N/A a\n- [ ] POST-MERGE b", true),
        ];
        for (name, markdown, expected) in cases {
            assert_eq!(TaskList::parse(markdown).is_complete(), expected, "{name}");
        }
    }

    const REQUIRED_HEADER: &str = "\n## Required Tasks\n| Task | Status |\n| ---- | ------ |\n";
    const OPTIONAL_HEADER: &str = "\n## Optional Tasks\n| Task | Status |\n| ---- | ------ |\n";

    #[test]
    fn render_produces_the_old_app_strings() {
        // (name, markdown, title, summary, text)
        let cases: [(&str, &str, &str, &str, String); 8] = [
            (
                "no tasks: empty text",
                "Hello World",
                "0 / 0 tasks completed",
                "All tasks have been completed",
                String::new(),
            ),
            (
                "one open task: singular",
                "- [ ] a",
                "0 / 1 tasks completed",
                "1 task still to be completed",
                format!("{REQUIRED_HEADER}| a | **Incomplete** |\n"),
            ),
            (
                "two open tasks: plural",
                "- [ ] a\n- [ ] b\n- [x] c",
                "1 / 3 tasks completed",
                "2 tasks still to be completed",
                format!(
                    "{REQUIRED_HEADER}| a | **Incomplete** |\n| b | **Incomplete** |\n| c | Completed |\n"
                ),
            ),
            (
                "all complete",
                "- [x] a\n- [X] b",
                "2 / 2 tasks completed",
                "All tasks have been completed",
                format!("{REQUIRED_HEADER}| a | Completed |\n| b | Completed |\n"),
            ),
            (
                "old app optional fixture: suffix and both tables",
                "\nHello World\n- normal\n- [x] OPTIONAL: one\n- [ ] OPTIONAL: two\n- [x] this is not an optional test\n",
                "2 / 2 tasks completed (+1 optional)",
                "All tasks have been completed (+1 optional)",
                format!(
                    "{REQUIRED_HEADER}| this is not an optional test | Completed |\n{OPTIONAL_HEADER}| OPTIONAL: one | Completed |\n| OPTIONAL: two | **Incomplete** |\n"
                ),
            ),
            (
                "open required and optional tasks",
                "- [ ] a\n- [x] b\n- [ ] OPTIONAL c\n- [ ] OPTIONAL d",
                "1 / 2 tasks completed (+2 optional)",
                "1 task still to be completed (+2 optional)",
                format!(
                    "{REQUIRED_HEADER}| a | **Incomplete** |\n| b | Completed |\n{OPTIONAL_HEADER}| OPTIONAL c | **Incomplete** |\n| OPTIONAL d | **Incomplete** |\n"
                ),
            ),
            (
                "only unchecked optional: no required table",
                "- [ ] OPTIONAL a",
                "0 / 0 tasks completed (+1 optional)",
                "All tasks have been completed (+1 optional)",
                format!("{OPTIONAL_HEADER}| OPTIONAL a | **Incomplete** |\n"),
            ),
            (
                "only checked optional: empty required table, as the old app",
                "- [x] OPTIONAL a",
                "1 / 1 tasks completed",
                "All tasks have been completed",
                format!("{REQUIRED_HEADER}\n{OPTIONAL_HEADER}| OPTIONAL a | Completed |\n"),
            ),
        ];
        for (name, markdown, title, summary, text) in cases {
            let expected = CheckOutput {
                title: title.to_string(),
                summary: summary.to_string(),
                text,
            };
            assert_eq!(TaskList::parse(markdown).render(), expected, "{name}");
        }
    }

    #[test]
    fn table_cells_are_escaped() {
        let cases = [
            ("pipe", "a | b", "a \\| b"),
            ("backslash", "C:\\dir", "C:\\\\dir"),
            ("backslash before pipe", "a\\|b", "a\\\\\\|b"),
            ("newline", "a\nb", "a b"),
            ("carriage return", "a\rb", "a b"),
            ("CRLF", "a\r\nb", "a b"),
            ("plain text untouched", "just *text*", "just *text*"),
        ];
        for (name, text, expected) in cases {
            assert_eq!(escape_table_cell(text), expected, "{name}");
        }
    }

    /// Renders the tables and reads them back with a markdown parser: every
    /// row must still have exactly two cells, the first holding the task.
    #[test]
    fn escaped_rows_never_break_the_table() {
        let texts = [
            "a | b",
            "a\\|b",
            "ends with \\",
            "a\nb",
            "a\r\nb | c",
            "||",
            "\\",
        ];
        let list = TaskList {
            required: texts.iter().map(|text| task(text, false)).collect(),
            optional: Vec::new(),
        };
        let rows = table_rows(&list.render().text);
        assert_eq!(rows.len(), texts.len() + 1, "header plus one row per task");
        for (row, text) in rows[1..].iter().zip(texts) {
            let expected = text.replace("\r\n", " ").replace('\n', " ");
            assert_eq!(row, &vec![expected, "Incomplete".to_string()], "{text:?}");
        }
    }

    /// The plain text of each cell of each table row in `markdown`.
    fn table_rows(markdown: &str) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
            match event {
                Event::Start(Tag::TableHead | Tag::TableRow) => rows.push(Vec::new()),
                Event::Start(Tag::TableCell) => {
                    if let Some(row) = rows.last_mut() {
                        row.push(String::new());
                    }
                }
                Event::Text(text) | Event::Code(text) => {
                    if let Some(cell) = rows.last_mut().and_then(|row| row.last_mut()) {
                        cell.push_str(&text);
                    }
                }
                _ => {}
            }
        }
        rows
    }

    #[test]
    fn task_text_in_tables_comes_from_the_markdown() {
        let output = TaskList::parse("- [ ] use `a|b` and [x](https://u)").render();
        assert_eq!(
            output.text,
            format!("{REQUIRED_HEADER}| use a\\|b and x | **Incomplete** |\n")
        );
    }

    #[test]
    fn extend_from_adds_documents_in_order() {
        let mut list = TaskList::parse("PR body\n- [x] body task\n- [ ] OPTIONAL body extra");
        list.extend_from("- [ ] comment task");
        list.extend_from("no tasks here");
        list.extend_from("- [x] OPTIONAL comment extra\n- [ ] N/A skipped");

        assert_eq!(
            list.required,
            tasks(&[("body task", true), ("comment task", false)])
        );
        assert_eq!(
            list.optional,
            tasks(&[
                ("OPTIONAL body extra", false),
                ("OPTIONAL comment extra", true)
            ])
        );
        assert_eq!(list.counts(), counts(3, 1, 2, 1));
        assert_eq!(list.render().title, "2 / 3 tasks completed (+1 optional)");
        assert_eq!(
            list.render().summary,
            "1 task still to be completed (+1 optional)"
        );
        assert!(!list.is_complete());
    }

    #[test]
    fn extend_from_equals_parsing_the_documents_separately() {
        // Separate documents: a list in one cannot continue in the next.
        let mut list = TaskList::parse("- [ ] a\n  ```");
        list.extend_from("- [ ] b");
        assert_eq!(list.required, tasks(&[("a", false), ("b", false)]));
    }

    #[test]
    fn report_serialises_to_the_documented_json_shape() {
        let list = TaskList::parse("- [x] a\n- [ ] b\n- [ ] OPTIONAL c");
        let json = serde_json::to_string(&list.report()).expect("report serialises");
        let expected = concat!(
            r#"{"total":2,"remaining":1,"optional_total":1,"optional_remaining":1,"#,
            r#""tasks":[{"text":"a","checked":true},{"text":"b","checked":false}],"#,
            r#""optional_tasks":[{"text":"OPTIONAL c","checked":false}],"#,
            r#""title":"1 / 2 tasks completed (+1 optional)","#,
            r#""summary":"1 task still to be completed (+1 optional)","#,
            r#""text":"\n## Required Tasks\n| Task | Status |\n| ---- | ------ |\n| a | Completed |\n| b | **Incomplete** |\n\n## Optional Tasks\n| Task | Status |\n| ---- | ------ |\n| OPTIONAL c | **Incomplete** |\n"}"#,
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn check_output_round_trips_through_json() {
        let output = TaskList::parse("- [ ] a | b").render();
        let json = serde_json::to_string(&output).expect("output serialises");
        let back: CheckOutput = serde_json::from_str(&json).expect("output deserialises");
        assert_eq!(back, output);
    }

    #[test]
    fn hand_built_counts_never_underflow() {
        assert_eq!(counts(1, 5, 0, 0).completed(), 0);
    }

    /// Parsing, rendering and reporting must not panic on any input.
    #[test]
    fn odd_inputs_do_not_panic() {
        let mut inputs: Vec<String> = [
            "",
            "[",
            "]",
            "- [",
            "- [ ",
            "- [x",
            "- []",
            "- [ ]",
            "- [x]",
            "[ ] ",
            "- [ ]\u{0}",
            "\u{0}",
            "- [ ] \u{0} nul",
            "\r",
            "\r\n",
            "- [ ] a\r- [x] b\r",
            "- [ ] a\r\n\r\n  b\r\n",
            "```",
            "~~~\n- [ ] x",
            "<!--",
            "<!-- - [ ] x",
            "- [ ] <!--\n- [ ] x",
            "> - [",
            ">>>>",
            "- [ ] [link](",
            "- [ ] [^1]\n\n[^1]: - [ ] in a footnote",
            "| a |\n|---|\n| - [ ] x |",
            "- [ ] \u{2028}\u{feff}\u{200b}",
            "1. [x]\n2. [X]\n3. [ ]",
            "- - - [ ] x",
            "* * *",
        ]
        .iter()
        .map(|input| input.to_string())
        .collect();
        inputs.push(nested_list(300));
        inputs.push(format!("{} - [ ] deep quote", ">".repeat(10_000)));
        inputs.push(format!("- [ ] {}x{}", "*".repeat(5_000), "*".repeat(5_000)));
        inputs.push(format!("- [ ] {}x", "[".repeat(10_000)));
        inputs.push("- [ ] a\n".repeat(10_000));

        for input in &inputs {
            let mut list = TaskList::parse(input);
            list.extend_from(input);
            let counts = list.counts();
            assert!(counts.remaining <= counts.total, "{input:?}");
            assert!(
                counts.optional_remaining <= counts.optional_total,
                "{input:?}"
            );
            let report = list.report();
            assert!(serde_json::to_string(&report).is_ok(), "{input:?}");
        }
    }

    /// `depth` levels of task lists, each nested in the one before.
    fn nested_list(depth: usize) -> String {
        (0..depth)
            .map(|level| format!("{}- [ ] level {level}\n", "  ".repeat(level)))
            .collect()
    }

    #[test]
    fn large_and_deep_lists_are_counted() {
        let many = "- [ ] a\n- [x] b\n".repeat(5_000);
        assert_eq!(TaskList::parse(&many).counts(), counts(10_000, 5_000, 0, 0));

        let deep = TaskList::parse(&nested_list(100));
        assert_eq!(deep.required.len(), 100);
        assert_eq!(deep.required[99], task("level 99", false));
    }

    /// `n` required tasks of `text`, every other one ticked.
    fn many(n: usize, text: &str) -> TaskList {
        TaskList {
            required: (0..n)
                .map(|i| task(&format!("{text} {i}"), i % 2 == 0))
                .collect(),
            optional: Vec::new(),
        }
    }

    #[test]
    fn output_over_the_limit_is_cut_at_a_row_and_says_what_is_missing() {
        // 3,000 tasks of non-ASCII text: well over 65,535 bytes, fewer characters.
        let mut list = many(3_000, "vérifier l'entrée ✓ ü");
        list.optional = vec![task("OPTIONAL ünd", false)];
        let output = list.render();
        assert_eq!(output.title, "1500 / 3000 tasks completed (+1 optional)");
        assert_eq!(
            output.summary,
            "1500 tasks still to be completed (+1 optional)"
        );
        assert!(
            output.text.len() <= MAX_OUTPUT_BYTES,
            "{}",
            output.text.len()
        );
        assert!(output.summary.len() <= MAX_OUTPUT_BYTES);
        let rows = table_rows(&output.text);
        let listed = rows.len() - 1;
        assert!(listed > 1_000 && listed < 3_000, "{listed} rows listed");
        for (i, row) in rows[1..].iter().enumerate() {
            assert_eq!(
                row[0],
                format!("vérifier l'entrée ✓ ü {i}"),
                "rows stay in order, whole"
            );
        }
        let not_listed = 3_001 - listed;
        assert!(
            output.text.ends_with(&format!(
                "|\n\n{not_listed} more tasks are not listed: GitHub limits a check run's text to 65535 bytes.\n"
            )),
            "{}",
            &output.text[output.text.len() - 200..]
        );
        assert!(
            !output.text.contains("Optional Tasks"),
            "the cut comes before it"
        );
    }

    #[test]
    fn output_at_the_limit_is_left_whole() {
        let list = many(10, "short");
        assert_eq!(list.render().text, tables(&list, &list.counts()));
        let row_bytes = table_row(&task("x", true)).len() + 1;
        let fits = (MAX_OUTPUT_BYTES - REQUIRED_HEADER.len() - 1) / row_bytes;
        let exact = TaskList {
            required: vec![task("x", true); fits],
            optional: Vec::new(),
        };
        assert!(!exact.render().text.contains("not listed"));
        let over = TaskList {
            required: vec![task("x", true); fits + 1],
            optional: Vec::new(),
        };
        let text = over.render().text;
        assert!(text.len() <= MAX_OUTPUT_BYTES);
        assert!(text.ends_with("bytes.\n"), "{}", &text[text.len() - 100..]);
    }

    #[test]
    fn one_task_longer_than_the_limit_is_counted_but_not_listed() {
        let list = TaskList {
            required: vec![
                task("a", false),
                task(&"é".repeat(40_000), false),
                task("c", true),
            ],
            optional: Vec::new(),
        };
        let text = list.render().text;
        assert!(text.len() <= MAX_OUTPUT_BYTES);
        assert_eq!(
            text,
            format!(
                "{REQUIRED_HEADER}| a | **Incomplete** |\n\n2 more tasks are not listed: GitHub limits a check run's text to 65535 bytes.\n"
            )
        );
        assert_eq!(list.render().title, "1 / 3 tasks completed");
    }

    #[test]
    fn nul_bytes_and_crlf_do_not_leak_into_task_text() {
        let list = TaskList::parse("- [ ] a\u{0}b\r\n- [x] c\r\n  d\r\n");
        assert_eq!(
            list.required,
            tasks(&[("a\u{fffd}b", false), ("c d", true)])
        );
    }
}
