//! The OpenAPI 3.1 description served at `/openapi.json`.
//!
//! Written by hand rather than derived (with `utoipa`): the API's bodies are the store's and
//! the journal's own serde types (`InstanceInfo`, `Event` with its thirty-odd kinds), which
//! live in crates that know nothing of OpenAPI; deriving would put an OpenAPI dependency and
//! derives into the core crates, or duplicate those types here. The description names their
//! fields and leaves the journal events open (`type` tells them apart). A test
//! (`tests/serve.rs`) calls every path it lists, so a route cannot be missing from it.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut responses = serde_json::Map::new();
    for code in codes {
        responses.insert(
            (*code).to_owned(),
            json!({ "$ref": format!("#/components/responses/E{code}") }),
        );
    }
    Value::Object(responses)
}

fn with_errors(ok: Value, codes: &[&str]) -> Value {
    let mut responses = error_responses(codes);
    if let (Value::Object(all), Value::Object(ok)) = (&mut responses, ok) {
        all.extend(ok);
    }
    responses
}

fn ok(status: &str, description: &str, schema: &str) -> Value {
    json!({ status: {
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    }})
}

fn id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" },
            "description": "The instance id." })
}

fn execution_param() -> Value {
    json!({ "name": "execution", "in": "query", "schema": { "type": "integer", "minimum": 1 },
            "description": "The execution (default: the current one)." })
}

fn reason_body() -> Value {
    json!({ "required": false, "content": { "application/json": { "schema": {
        "type": "object", "additionalProperties": false,
        "properties": { "reason": { "type": "string" } } } } } })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The document.
pub(crate) fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "duraflow serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Start, inspect and operate the workflow instances of a duraflow \
                store. Errors are {\"error\": {\"code\", \"message\"}} with a stable code. \
                When the server has a token, every /v1 route needs Authorization: Bearer <token>."
        },
        "security": [ { "bearer": [] } ],
        "paths": merged(paths(), worker_paths()),
        "components": components(),
    })
}

fn paths() -> Value {
    json!({
        "/healthz": { "get": {
            "summary": "Liveness: 200 while the server runs.", "security": [],
            "responses": { "200": { "description": "ok" } }
        }},
        "/openapi.json": { "get": {
            "summary": "This document.", "security": [],
            "responses": { "200": { "description": "the OpenAPI description" } }
        }},
        "/metrics": { "get": {
            "summary": "The store's gauges (instances by status, messages, tasks, callbacks, each queue's depths) in the Prometheus text format (OpenMetrics), read now.",
            "responses": with_errors(
                json!({ "200": { "description": "the metrics", "content": {
                    "application/openmetrics-text": { "schema": { "type": "string" } } } } }),
                &["401", "503"]
            )
        }},
        "/v1/instances": {
            "get": {
                "summary": "List instances, ordered by id, a page at a time.",
                "parameters": [
                    { "name": "status", "in": "query", "schema": { "type": "string" },
                      "description": "Statuses, comma-separated (pending, running, completed, failed, cancelled, terminated)." },
                    { "name": "name", "in": "query", "schema": { "type": "string" }, "description": "Workflow name." },
                    { "name": "queue", "in": "query", "schema": { "type": "string" }, "description": "Queue." },
                    { "name": "cursor", "in": "query", "schema": { "type": "string" }, "description": "A previous page's next." },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 }, "description": "Page size (default 100)." }
                ],
                "responses": with_errors(ok("200", "a page", "Page"), &["400", "401", "503"])
            },
            "post": {
                "summary": "Start a workflow by name with JSON input.",
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/StartRequest" } } } },
                "responses": with_errors(
                    {
                        let mut r = ok("201", "created", "Started");
                        if let (Value::Object(r), Value::Object(o)) = (&mut r, ok("200", "the id existed: the existing instance", "Started")) {
                            r.extend(o);
                        }
                        r
                    },
                    &["400", "401", "404", "409", "413", "415", "503"])
            }
        },
        "/v1/instances/{id}": {
            "get": {
                "summary": "An instance: status, input, output or failure, parent, children.",
                "parameters": [ id_param(), { "name": "wait_ms", "in": "query", "required": false,
                    "schema": { "type": "integer", "minimum": 0, "maximum": super::instances::MAX_WAIT_MS },
                    "description": "Wait up to this many milliseconds for the instance to finish \
                        (completed, failed, cancelled or terminated) before answering; the answer \
                        comes as soon as it has. Without it, the answer is immediate." } ],
                "responses": with_errors(ok("200", "the instance", "Instance"), &["400", "401", "404", "503"])
            },
            "delete": {
                "summary": "Purge a finished instance and its history.",
                "parameters": [ id_param() ],
                "responses": with_errors(ok("200", "purged", "Done"), &["401", "404", "409", "503"])
            }
        },
        "/v1/instances/{id}/history": { "get": {
            "summary": "An execution's journal; each event has its index and type.",
            "parameters": [ id_param(), execution_param() ],
            "responses": with_errors(ok("200", "the journal", "History"), &["400", "401", "404", "503"])
        }},
        "/v1/instances/{id}/timeline": { "get": {
            "summary": "An execution's journal as operations (scheduled, finished, duration, attempts, failure).",
            "parameters": [ id_param(), execution_param() ],
            "responses": with_errors(ok("200", "the timeline", "Timeline"), &["400", "401", "404", "503"])
        }},
        "/v1/instances/{id}/events/{name}": { "post": {
            "summary": "Raise an external event; the body is its data (any JSON; empty for null).",
            "parameters": [ id_param(), { "name": "name", "in": "path", "required": true,
                "schema": { "type": "string" }, "description": "The event name." } ],
            "requestBody": { "required": false, "content": { "application/json": { "schema": {} } } },
            "responses": with_errors(ok("202", "raised", "Done"), &["400", "401", "404", "409", "413", "503"])
        }},
        "/v1/instances/{id}/cancel": { "post": {
            "summary": "Request cancellation: the instance ends as cancelled at its next turn.",
            "parameters": [ id_param() ], "requestBody": reason_body(),
            "responses": with_errors(ok("202", "requested", "Done"), &["400", "401", "404", "409", "413", "503"])
        }},
        "/v1/instances/{id}/terminate": { "post": {
            "summary": "Terminate without running any more of its code.",
            "parameters": [ id_param() ], "requestBody": reason_body(),
            "responses": with_errors(ok("202", "requested", "Done"), &["400", "401", "404", "409", "413", "503"])
        }},
        "/v1/stats": { "get": {
            "summary": "Counts of instances by status.",
            "responses": with_errors(ok("200", "the counts", "Stats"), &["401", "503"])
        }},
        "/v1/workflows": { "get": {
            "summary": "The workflows and activities engines have announced, by queue.",
            "responses": with_errors(ok("200", "the registrations", "Registrations"), &["401", "503"])
        }}
    })
}

fn merged(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn task_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" },
            "description": "The task id a claim returned." })
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": {
        "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

/// A `POST /v1/tasks/{id}/...` report with a body of `schema`, answering 200 with `answer`.
fn task_report(summary: &str, schema: &str, answer: (&str, &str)) -> Value {
    json!({ "post": {
        "summary": summary,
        "parameters": [ task_param() ], "requestBody": body(schema),
        "responses": with_errors(ok("200", answer.0, answer.1), &["400", "401", "404", "409", "413", "415", "503"])
    }})
}

/// The worker protocol (docs/WORKER_PROTOCOL.md) and the callback routes.
fn worker_paths() -> Value {
    let reports = json!({
        "/v1/tasks/{id}/heartbeat": task_report(
            "Extend the task's lease and record progress details; says when to stop.",
            "HeartbeatRequest", ("the lease, or cancelled: true", "Heartbeat")),
        "/v1/tasks/{id}/complete": task_report(
            "Record the activity's output. A stale lease token gets 409 lease_lost and changes nothing.",
            "CompleteRequest", ("recorded (or the attempt had timed out)", "Done")),
        "/v1/tasks/{id}/fail": task_report(
            "The attempt failed: the task's retry policy decides between a retry and a final failure.",
            "FailRequest", ("outcome retry (with retry_at) or failed", "Done")),
        "/v1/tasks/{id}/release": task_report(
            "Hand the task back without a result (shutdown); the attempt does not count.",
            "TokenRequest", ("released", "Done")),
    });
    merged(
        reports,
        json!({
            "/v1/workers/{queue}/claim": { "post": {
                "summary": "Claim up to max activity tasks of the named activities on a queue, waiting up to wait_ms for one (long polling). Announces the activity names.",
                "parameters": [ { "name": "queue", "in": "path", "required": true,
                    "schema": { "type": "string" }, "description": "The queue." } ],
                "requestBody": body("ClaimRequest"),
                "responses": with_errors(ok("200", "the tasks leased (none when the wait ran out)", "Claimed"), &["400", "401", "413", "415", "503"])
            }},
            "/v1/callbacks/{token}/complete": { "post": {
                "summary": "Complete the callback with this token; the waiting workflow receives value.",
                "parameters": [ { "name": "token", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "properties": { "value": {} } } } } },
                "responses": with_errors(ok("200", "resolved", "Done"), &["400", "401", "404", "409", "413", "415", "503"])
            }},
            "/v1/callbacks/{token}/fail": { "post": {
                "summary": "Fail the callback with this token with an error type and message.",
                "parameters": [ { "name": "token", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["type", "message"],
                    "properties": { "type": { "type": "string" }, "message": { "type": "string" } } } } } },
                "responses": with_errors(ok("200", "resolved", "Done"), &["400", "401", "404", "409", "413", "415", "503"])
            }}
        }),
    )
}

fn worker_schemas() -> Value {
    json!({
        "ClaimRequest": { "type": "object", "required": ["worker", "activities"], "additionalProperties": false,
            "properties": {
                "worker": { "type": "string", "description": "Who claims (1 to 200 bytes), for diagnostics." },
                "activities": { "type": "array", "minItems": 1, "items": { "type": "string" },
                    "description": "The activity names the worker runs on this queue." },
                "max": { "type": "integer", "minimum": 1, "maximum": 100, "description": "Tasks at most (default 1)." },
                "wait_ms": { "type": "integer", "minimum": 0, "maximum": 60000,
                    "description": "How long to wait for a task when none is visible (default 0)." },
                "lease_ms": { "type": "integer", "minimum": 1000, "maximum": 600000,
                    "description": "The lease each heartbeat extends (default 30000; a task's heartbeat timeout shortens it)." } } },
        "Claimed": { "type": "object", "properties": { "tasks": { "type": "array", "items": {
            "$ref": "#/components/schemas/Task" } } } },
        "Task": { "type": "object", "properties": {
            "id": { "type": "integer" }, "token": { "type": "string", "description": "The lease token; send it with every report." },
            "name": { "type": "string" }, "instance_id": { "type": "string" }, "execution": { "type": "integer" },
            "op": { "type": "string" }, "attempt": { "type": "integer" }, "max_attempts": { "type": "integer" },
            "input": {}, "heartbeat_details": { "description": "The latest heartbeat details of an earlier attempt, or null." },
            "last_failure": { "type": ["object", "null"] },
            "scheduled_at": { "type": "integer" }, "lease_until": { "type": "integer" },
            "lease_ms": { "type": "integer", "description": "Heartbeat well within this (the SDKs every third of it)." },
            "deadline": { "type": ["integer", "null"], "description": "When the attempt times out (ms since the epoch)." } } },
        "HeartbeatRequest": { "type": "object", "required": ["token"], "additionalProperties": false,
            "properties": { "token": { "type": "string" }, "details": { "description": "Progress, any JSON; the next attempt reads it." },
                "lease_ms": { "type": "integer", "minimum": 1000, "maximum": 600000, "description": "Extend the lease by this much (the claim's lease by default)." } } },
        "Heartbeat": { "type": "object", "properties": {
            "cancelled": { "type": "boolean" }, "reason": { "type": "string", "enum": ["timed_out", "instance_finished"] },
            "lease_until": { "type": "integer" } } },
        "CompleteRequest": { "type": "object", "required": ["token"], "additionalProperties": false,
            "properties": { "token": { "type": "string" }, "output": { "description": "Any JSON (default null)." } } },
        "FailRequest": { "type": "object", "required": ["token", "message"], "additionalProperties": false,
            "properties": { "token": { "type": "string" }, "message": { "type": "string" },
                "retryable": { "type": "boolean", "description": "Default true." },
                "type": { "type": "string", "description": "The error type (the failure's code; a policy's non_retryable codes match it)." },
                "retry_after_ms": { "type": "integer", "description": "Wait this long before the retry, instead of the policy's backoff." } } },
        "TokenRequest": { "type": "object", "required": ["token"], "additionalProperties": false,
            "properties": { "token": { "type": "string" } } }
    })
}

fn components() -> Value {
    let mut components = json!({
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        "responses": {
            "E400": error_response("malformed_json, invalid_request"),
            "E401": error_response("unauthorized: no bearer token, or the wrong one"),
            "E404": error_response("instance_not_found, execution_not_found, workflow_not_found, task_not_found, callback_not_found, route_not_found"),
            "E409": error_response("instance_exists, instance_finished, instance_running, lease_lost, lease_unknown, callback_closed"),
            "E413": error_response("body_too_large"),
            "E415": error_response("unsupported_media_type"),
            "E503": error_response("store_unavailable")
        }
    });
    if let Value::Object(c) = &mut components {
        c.insert("schemas".to_owned(), merged(schemas(), worker_schemas()));
    }
    components
}

fn schemas() -> Value {
    json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": { "type": "string", "description": "Stable; clients branch on it." },
                "message": { "type": "string", "description": "What went wrong and what to do." } } } } },
        "StartRequest": { "type": "object", "required": ["workflow"], "additionalProperties": false,
            "properties": {
                "workflow": { "type": "string", "description": "The registered workflow name." },
                "input": { "description": "Any JSON (default null)." },
                "id": { "type": "string", "description": "The instance id (default: a new UUID)." },
                "queue": { "type": "string", "description": "The queue (default \"default\")." },
                "if_exists": { "type": "string", "enum": ["return_existing", "fail"],
                    "description": "When the id is taken (default return_existing)." } } },
        "Started": { "type": "object", "properties": {
            "id": { "type": "string" }, "existed": { "type": "boolean" } } },
        "Done": { "type": "object", "description": "The id and what was done." },
        "Instance": { "type": "object", "properties": {
            "id": { "type": "string" }, "name": { "type": "string" },
            "status": { "type": "string", "enum": ["pending", "running", "completed", "failed", "cancelled", "terminated"] },
            "execution": { "type": "integer" }, "attempt": { "type": "integer" },
            "queue": { "type": "string" }, "input": {}, "output": {},
            "failure": { "type": ["object", "null"] },
            "parent": { "type": ["object", "null"], "properties": {
                "instance_id": { "type": "string" }, "execution": { "type": "integer" }, "op": { "type": "string" } } },
            "options": { "type": "object" },
            "created_at": { "type": "integer", "description": "Milliseconds since the Unix epoch." },
            "updated_at": { "type": "integer" },
            "version": { "type": ["string", "null"],
                "description": "The version of the workflow's code that started the current execution, as its engine registered it; null when none was." },
            "journal_len": { "type": ["integer", "null"],
                "description": "Events in the current execution's journal (GET /v1/instances/{id} only; null in lists)." },
            "last_event_at": { "type": ["integer", "null"],
                "description": "When the current execution's last journal event was appended, ms since the epoch (GET /v1/instances/{id} only; null in lists and while the journal is empty)." },
            "waiting_for": { "type": ["string", "null"] },
            "children": { "type": "array", "items": { "type": "object", "properties": {
                "id": { "type": "string" }, "name": { "type": "string" }, "detached": { "type": "boolean" } } } } } },
        "Page": { "type": "object", "properties": {
            "instances": { "type": "array", "items": { "$ref": "#/components/schemas/Instance" } },
            "next": { "type": ["string", "null"], "description": "The cursor of the next page." } } },
        "History": { "type": "object", "properties": {
            "id": { "type": "string" }, "execution": { "type": "integer" },
            "events": { "type": "array", "items": { "type": "object", "properties": {
                "index": { "type": "integer" }, "type": { "type": "string" },
                "at": { "type": "integer" }, "event": { "type": "object" } } } } } },
        "Timeline": { "type": "object", "properties": {
            "id": { "type": "string" }, "execution": { "type": "integer" },
            "operations": { "type": "array", "items": { "type": "object", "properties": {
                "op": { "type": "string" }, "kind": { "type": "string" }, "name": { "type": ["string", "null"] },
                "scheduled_at": { "type": "integer" }, "finished_at": { "type": ["integer", "null"] },
                "duration_ms": { "type": ["integer", "null"] },
                "outcome": { "type": "string", "enum": ["open", "completed", "failed", "timed_out"] },
                "attempts": { "type": "integer" }, "retries": { "type": "integer" },
                "failure": { "type": ["string", "null"] }, "child": { "type": ["string", "null"] },
                "events": { "type": "array", "items": { "type": "integer" } } } } },
            "marks": { "type": "array", "items": { "type": "object" } } } },
        "Stats": { "type": "object", "properties": {
            "instances": { "type": "object", "additionalProperties": { "type": "integer" } },
            "total": { "type": "integer" } } },
        "Registrations": { "type": "object", "properties": {
            "registrations": { "type": "array", "items": { "type": "object", "properties": {
                "kind": { "type": "string", "enum": ["workflow", "activity"] },
                "queue": { "type": "string" }, "name": { "type": "string" },
                "version": { "type": "string",
                    "description": "A workflow's version in its latest announcement; absent when it has none." },
                "last_seen": { "type": "integer" } } } } } }
    })
}
