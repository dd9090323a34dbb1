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

/// GitHub checks `output.summary` and `output.text` twice: the schema's
/// `maxLength` of 65,535 characters ([`validate_output`]), then a limit of
/// 65,535 bytes of UTF-8, answered as a "Validation Failed" 422.
pub(super) fn output_too_large(run: &ValidCheckRun, docs: &str) -> Option<Reply> {
    let output = run.output.as_ref()?;
    let field = [
        ("summary", Some(&output.summary)),
        ("text", output.text.as_ref()),
    ]
    .into_iter()
    .find(|(_, value)| value.is_some_and(|v| v.len() > MAX_OUTPUT_CHARS))?
    .0;
    Some(Reply::json(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "message": "Validation Failed",
            "errors": [{
                "resource": "CheckRun",
                "code": "custom",
                "field": field,
                "message": format!("{field} exceeds a maximum bytesize of {MAX_OUTPUT_CHARS}"),
            }],
            "documentation_url": docs,
            "status": "422",
        }),
    ))
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

// -- OpenAPI conformance ------------------------------------------------------

/// GitHub's OpenAPI description of the endpoints the fake serves, extracted
/// by `tests/data/openapi/extract.py` (which names the package version).
const OPENAPI_FIXTURE: &str = include_str!("../../data/openapi/endpoints.json");

/// The fixture with its schemas compiled, once per process.
pub(super) struct OpenApi {
    operations: Vec<Operation>,
    basic_error: jsonschema::Validator,
    validation_error: jsonschema::Validator,
}

struct Operation {
    id: String,
    method: String,
    /// `/repos/{owner}/{repo}/pulls/{pull_number}` split at `/`.
    template: Vec<String>,
    parameters: Vec<Parameter>,
    body: Option<(bool, jsonschema::Validator)>,
    responses: BTreeMap<u16, Option<jsonschema::Validator>>,
}

struct Parameter {
    name: String,
    location: String,
    required: bool,
    schema: Value,
    validator: jsonschema::Validator,
}

fn compile(schema: &Value, what: &str) -> jsonschema::Validator {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator,
        Err(err) => panic!("OpenAPI fixture: schema of {what} does not compile: {err}"),
    }
}

pub(super) fn openapi() -> &'static OpenApi {
    static OPENAPI: std::sync::OnceLock<OpenApi> = std::sync::OnceLock::new();
    OPENAPI.get_or_init(|| {
        let fixture: Value = match serde_json::from_str(OPENAPI_FIXTURE) {
            Ok(value) => value,
            Err(err) => panic!("tests/data/openapi/endpoints.json is not JSON: {err}"),
        };
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
        let operations = fixture["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let id = text(e, "operation_id");
                let parameters = e["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| Parameter {
                        name: text(p, "name"),
                        location: text(p, "in"),
                        required: p["required"].as_bool().unwrap_or(false),
                        schema: p["schema"].clone(),
                        validator: compile(&p["schema"], &format!("{id} {}", p["name"])),
                    })
                    .collect();
                let body = e["request_body"].as_object().map(|b| {
                    let required = b.get("required").and_then(Value::as_bool).unwrap_or(false);
                    let schema = b.get("schema").cloned().unwrap_or(json!({}));
                    (required, compile(&schema, &format!("{id} request body")))
                });
                let responses = e["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(status, schema)| {
                        let status = status.parse::<u16>().ok()?;
                        let validator =
                            (!schema.is_null()).then(|| compile(schema, &format!("{id} {status}")));
                        Some((status, validator))
                    })
                    .collect();
                Operation {
                    method: text(e, "method"),
                    template: text(e, "path")
                        .trim_start_matches('/')
                        .split('/')
                        .map(str::to_owned)
                        .collect(),
                    id,
                    parameters,
                    body,
                    responses,
                }
            })
            .collect();
        OpenApi {
            operations,
            basic_error: compile(&fixture["errors"]["basic-error"], "basic-error"),
            validation_error: compile(&fixture["errors"]["validation-error"], "validation-error"),
        }
    })
}

impl OpenApi {
    /// The operation a request is for and its path parameters. `path` is
    /// without `/api/v3` and the query; `/repositories/{id}/...` (the form of
    /// GitHub's `Link` headers, absent from the description) matches as the
    /// `/repos/{owner}/{repo}/...` endpoint, without owner and repo values.
    fn operation(&self, method: &str, path: &str) -> Option<(&Operation, Vec<(String, String)>)> {
        let mut segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let by_id = segments.first().is_some_and(|s| s == "repositories");
        if by_id && segments.len() >= 2 {
            segments.splice(0..2, ["repos".to_owned(), String::new(), String::new()]);
        }
        self.operations
            .iter()
            .filter(|op| op.method == method)
            .find_map(|op| {
                let params = match_template(&op.template, &segments)?;
                let params = params
                    .into_iter()
                    .filter(|(name, _)| !(by_id && matches!(name.as_str(), "owner" | "repo")))
                    .collect();
                Some((op, params))
            })
    }
}

/// Matches path segments against a template; `{ref}` and `{path}` may span
/// segments (`heads/feature/x`, `.github/task-list-completed.yml`), as
/// GitHub reads them.
fn match_template(template: &[String], segments: &[String]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut at = 0;
    for (i, part) in template.iter().enumerate() {
        let name = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
        match name {
            Some(name @ ("ref" | "path")) => {
                let after = template.len() - i - 1;
                let end = segments.len().checked_sub(after)?;
                if end <= at {
                    return None;
                }
                params.push((name.to_owned(), segments[at..end].join("/")));
                at = end;
            }
            Some(name) => {
                params.push((name.to_owned(), segments.get(at)?.clone()));
                at += 1;
            }
            None => {
                if segments.get(at)? != part {
                    return None;
                }
                at += 1;
            }
        }
    }
    (at == segments.len()).then_some(params)
}

/// A parameter's text as the JSON value its schema describes.
fn typed(schema: &Value, text: &str) -> Value {
    match schema["type"].as_str() {
        Some("integer") => text
            .parse::<i64>()
            .map_or_else(|_| json!(text), |n| json!(n)),
        Some("number") => text
            .parse::<f64>()
            .map_or_else(|_| json!(text), |n| json!(n)),
        Some("boolean") => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(text),
        },
        _ => json!(text),
    }
}

fn errors_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|err| {
            let at = err.instance_path().to_string();
            if at.is_empty() {
                err.to_string()
            } else {
                format!("{at}: {err}")
            }
        })
        .collect()
}

/// How a request breaks the request side of its endpoint's description:
/// path parameters, query parameters (unknown ones are ignored, as GitHub
/// does), and the JSON body. Empty when it conforms or the endpoint is not
/// in the description.
pub(super) fn request_violations(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Vec<String> {
    let Some((op, path_params)) = openapi().operation(method, path) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for parameter in &op.parameters {
        let value = match parameter.location.as_str() {
            "path" => path_params
                .iter()
                .find(|(name, _)| *name == parameter.name)
                .map(|(_, v)| v.as_str()),
            "query" => query
                .iter()
                .find(|(name, _)| *name == parameter.name)
                .map(|(_, v)| v.as_str()),
            _ => continue,
        };
        match value {
            None if parameter.required && parameter.location == "query" => {
                found.push(format!("query parameter {} is required", parameter.name));
            }
            None => {}
            Some(text) => {
                let value = typed(&parameter.schema, text);
                for err in errors_of(&parameter.validator, &value) {
                    found.push(format!(
                        "{} parameter {}: {err}",
                        parameter.location, parameter.name
                    ));
                }
            }
        }
    }
    match &op.body {
        Some((required, validator)) => {
            if body.iter().all(u8::is_ascii_whitespace) {
                if *required {
                    found.push("a request body is required".to_owned());
                }
            } else {
                match serde_json::from_slice::<Value>(body) {
                    Ok(value) => {
                        for err in errors_of(validator, &value) {
                            found.push(format!("body: {err}"));
                        }
                    }
                    Err(err) => found.push(format!("body is not JSON: {err}")),
                }
            }
        }
        None if !body.iter().all(u8::is_ascii_whitespace) => {
            found.push("the endpoint takes no request body".to_owned());
        }
        None => {}
    }
    found
        .into_iter()
        .map(|v| format!("{method} {path} ({}): {v}", op.id))
        .collect()
}

/// How an answer breaks the response side of its endpoint's description:
/// the schema of its status, or GitHub's error schema for an error status
/// the description does not list. `Err` when the endpoint is not in the
/// description at all.
pub(super) fn response_violations(
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<Vec<String>, String> {
    let api = openapi();
    let Some((op, _)) = api.operation(method, path) else {
        return Err(format!("{method} {path} is not in the OpenAPI fixture"));
    };
    let errors = match op.responses.get(&status) {
        Some(Some(validator)) => errors_of(validator, body),
        Some(None) => Vec::new(),
        // Redirects and errors the operation does not list have GitHub's
        // error shape.
        None if status >= 300 => {
            let schema = if body.get("errors").is_some() {
                &api.validation_error
            } else {
                &api.basic_error
            };
            errors_of(schema, body)
        }
        None => {
            return Ok(vec![format!(
                "{method} {path} ({}): status {status} is not documented",
                op.id
            )]);
        }
    };
    Ok(errors
        .into_iter()
        .map(|e| format!("{method} {path} ({}) {status}: {e}", op.id))
        .collect())
}

/// Checks a request against the request side of GitHub's OpenAPI
/// description of its endpoint and records what does not conform in
/// [`Model::openapi_violations`]. GitHub answers many such requests anyway,
/// so this only records: tests assert there are none.
pub(super) fn validate_request(call: &Call<'_>, route: &Route, method: &str, path: &str) {
    let _ = route;
    let found = request_violations(method, path, &call.query, call.body);
    if !found.is_empty() {
        call.shared.model().openapi_violations.extend(found);
    }
}
