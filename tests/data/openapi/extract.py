#!/usr/bin/env python3
"""Extracts, from GitHub's published OpenAPI description, the endpoints the
fake GitHub serves (the bot's and the few the fake adds) into endpoints.json
beside this script: for each endpoint its path and query parameters, its
request body schema and one response schema per documented status, every
`$ref` resolved and OpenAPI 3.0's `nullable` turned into JSON Schema's
`"type": [..., "null"]`, so a plain JSON Schema validator can check the
fake's requests and answers against it.

Regenerate (needs npm; run from the repository root):

    tmp=$(mktemp -d) && (cd "$tmp" && npm pack @octokit/openapi@VERSION && tar xzf octokit-openapi-*.tgz) \
      && python3 tests/data/openapi/extract.py "$tmp/package" && rm -rf "$tmp"

The package version goes into the fixture (`source`).
"""

import json
import os
import sys

# (method, OpenAPI path): the endpoints the fake serves.
ENDPOINTS = [
    ("post", "/app/installations/{installation_id}/access_tokens"),
    ("get", "/app"),
    ("get", "/app/installations/{installation_id}"),
    ("get", "/repos/{owner}/{repo}/installation"),
    ("get", "/app/hook/deliveries"),
    ("get", "/app/hook/deliveries/{delivery_id}"),
    ("post", "/app/hook/deliveries/{delivery_id}/attempts"),
    ("get", "/rate_limit"),
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    ("post", "/repos/{owner}/{repo}/check-runs"),
    ("get", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("get", "/repos/{owner}/{repo}/contents/{path}"),
]

# Keys that only document; dropped to keep the fixture small.
DOC_KEYS = {"description", "example", "examples", "summary", "externalDocs", "x-github", "title"}


def resolve(spec, node, depth=0):
    if depth > 60:
        raise SystemExit("schema nests too deep (a recursive $ref?)")
    if isinstance(node, list):
        return [resolve(spec, item, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return resolve(spec, target, depth + 1)
    out = {}
    for key, value in node.items():
        if key in DOC_KEYS and not (key == "title" and isinstance(value, dict)):
            continue
        if key == "properties":
            # Property names are data, not keywords: never drop them.
            out[key] = {name: resolve(spec, schema, depth + 1) for name, schema in value.items()}
        else:
            out[key] = resolve(spec, value, depth + 1)
    return nullable_to_json_schema(out)


def nullable_to_json_schema(schema):
    if not schema.pop("nullable", False):
        return schema
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = schema["enum"] + [None]
        return schema
    # allOf/anyOf/oneOf without a type of their own.
    return {"anyOf": [schema, {"type": "null"}]}


def json_schema_of(content):
    media = content.get("application/json") or next(iter(content.values()), None)
    return media.get("schema") if media else None


def main():
    package = sys.argv[1]
    with open(os.path.join(package, "package.json")) as f:
        version = json.load(f)["version"]
    with open(os.path.join(package, "generated", "api.github.com.json")) as f:
        spec = json.load(f)
    endpoints = []
    for method, path in ENDPOINTS:
        operation = spec["paths"][path][method]
        parameters = []
        for parameter in operation.get("parameters", []):
            p = resolve(spec, parameter)
            parameters.append({"name": p["name"], "in": p["in"], "required": p.get("required", False), "schema": p.get("schema", {})})
        body = None
        if "requestBody" in operation:
            request = resolve(spec, operation["requestBody"])
            body = {"required": request.get("required", False), "schema": json_schema_of(request["content"])}
        responses = {}
        for status, response in operation["responses"].items():
            r = resolve(spec, response)
            responses[status] = json_schema_of(r["content"]) if "content" in r else None
        endpoints.append({
            "operation_id": operation["operationId"],
            "method": method.upper(),
            "path": path,
            "parameters": parameters,
            "request_body": body,
            "responses": responses,
        })
    # What GitHub answers with for statuses an operation does not list
    # (most 401, 403, 404 and 422 answers).
    errors = {name: resolve(spec, spec["components"]["schemas"][name]) for name in ("basic-error", "validation-error")}
    fixture = {
        "source": f"@octokit/openapi {version}, generated/api.github.com.json (OpenAPI {spec['openapi']})",
        "generator": "tests/data/openapi/extract.py",
        "endpoints": endpoints,
        "errors": errors,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "endpoints.json")
    with open(out, "w") as f:
        json.dump(fixture, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print(f"{out}: {len(endpoints)} endpoints from @octokit/openapi {version}")


if __name__ == "__main__":
    main()
