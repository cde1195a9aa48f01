//! The verbs that read: `list`, `show`, `history`, `stats`.

use duraflow::{Client, ClientError, Event, EventKind, InstanceInfo, InstanceStatus, ListFilter};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::output;

/// The filter `list` asks the store for.
pub(crate) fn filter(
    statuses: Vec<InstanceStatus>,
    name: Option<String>,
    queue: Option<String>,
    limit: usize,
    after: Option<String>,
) -> ListFilter {
    ListFilter {
        statuses,
        name,
        queue,
        limit,
        after,
        ..ListFilter::default()
    }
}

/// `list`: one page of instances. JSON: `{"instances": [..], "next": cursor or null}`.
pub(crate) async fn list(client: &Client, filter: ListFilter, json: bool) -> Result<(), CliError> {
    let page = client.list(filter).await?;
    if json {
        return output::json(&json!({ "instances": page.instances, "next": page.next }));
    }
    let rows: Vec<Vec<String>> = page
        .instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.name.clone(),
                i.status.to_string(),
                i.queue.clone(),
                i.attempt.to_string(),
                output::time(i.created_at),
                output::time(i.updated_at),
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "NAME", "STATUS", "QUEUE", "ATTEMPT", "CREATED", "UPDATED",
        ],
        &rows,
    );
    match page.next {
        Some(next) => output::message(&format!("{} shown; more with --after {next:?}", rows.len())),
        None if rows.is_empty() => output::message("no instances match"),
        None => {}
    }
    Ok(())
}

/// `show`: an instance, with its version, journal length and last event time. JSON: the
/// store's `InstanceInfo` as `Client::describe` reads it, with its children.
pub(crate) async fn show(client: &Client, id: &str, json: bool) -> Result<(), CliError> {
    let info = client.describe(id).await?;
    let children = children(client, id).await?;
    if json {
        let mut value = serde_json::to_value(&info)
            .map_err(|e| CliError::operational(format!("cannot write JSON: {e}")))?;
        if let Value::Object(fields) = &mut value {
            let children: Vec<Value> = children
                .iter()
                .map(|c| json!({ "id": c.id, "name": c.name, "detached": c.detached }))
                .collect();
            fields.insert("children".to_owned(), Value::Array(children));
        }
        return output::json(&value);
    }
    let mut fields = show_fields(&info);
    for child in &children {
        let detached = if child.detached { ", detached" } else { "" };
        fields.push(("child", format!("{} ({}{detached})", child.id, child.name)));
    }
    output::fields(&fields);
    Ok(())
}

/// A child workflow an instance started.
struct Child {
    id: String,
    name: String,
    detached: bool,
}

/// The children the current execution started, from its journal.
async fn children(client: &Client, id: &str) -> Result<Vec<Child>, CliError> {
    let journal = client.history(id, None).await?;
    Ok(journal
        .into_iter()
        .filter_map(|event| match event.kind {
            EventKind::ChildStarted {
                instance_id,
                name,
                detached,
                ..
            } => Some(Child {
                id: instance_id,
                name,
                detached,
            }),
            _ => None,
        })
        .collect())
}

fn show_fields(info: &InstanceInfo) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", info.id.clone()),
        ("name", info.name.clone()),
        ("status", info.status.to_string()),
        ("queue", info.queue.clone()),
        ("execution", info.execution.to_string()),
        ("attempt", info.attempt.to_string()),
        ("created", output::time(info.created_at)),
        ("updated", output::time(info.updated_at)),
    ];
    if let Some(version) = &info.version {
        fields.push(("version", version.clone()));
    }
    if let Some(len) = info.journal_len {
        fields.push(("journal", format!("{len} events")));
    }
    if let Some(at) = info.last_event_at {
        fields.push(("last event", output::time(at)));
    }
    if let Some(waiting) = info.waiting_for() {
        fields.push(("waiting", waiting));
    }
    if let Some(parent) = &info.parent {
        fields.push((
            "parent",
            format!(
                "{} (execution {}, op {})",
                parent.instance_id, parent.execution, parent.op
            ),
        ));
    }
    fields.push(("input", info.input.as_json().to_owned()));
    if let Some(out) = &info.output {
        fields.push(("output", out.as_json().to_owned()));
    }
    if let Some(failure) = &info.failure {
        let mut text = format!("{}: {}", failure.kind, failure.message);
        if let Some(code) = &failure.code {
            text.push_str(&format!(" (code {code})"));
        }
        if let Some(source) = &failure.source {
            text.push_str(&format!(" (from {source})"));
        }
        if let Some(op) = &failure.op {
            text.push_str(&format!(" (op {op})"));
        }
        fields.push(("failure", text));
    }
    let options = &info.options;
    if options.priority != 0 {
        fields.push(("priority", options.priority.to_string()));
    }
    if let Some(key) = &options.concurrency_key {
        fields.push(("concurrency key", key.clone()));
    }
    for (name, value) in &options.headers {
        fields.push(("header", format!("{name}={value}")));
    }
    if let Some(retry) = &options.retry {
        fields.push(("retry", format!("{retry:?}")));
    }
    if let Some(cancellation) = &options.cancellation {
        fields.push(("cancellation", format!("{cancellation:?}")));
    }
    fields
}

/// `history`: the journal as a timeline. JSON: the events, each with its `index`.
pub(crate) async fn history(
    client: &Client,
    id: &str,
    execution: Option<u32>,
    json: bool,
) -> Result<(), CliError> {
    let events = match client.history(id, execution).await {
        Ok(events) => events,
        // The client says "no instance" for an execution that does not exist either.
        Err(ClientError::NotFound(_)) if execution.is_some() => {
            let info = client.status(id).await?;
            return Err(CliError::not_found(format!(
                "instance {id:?} has no execution {}: it has executions 1 to {}",
                execution.unwrap_or_default(),
                info.execution
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        let events = output::events_json(&events);
        return output::json(&events);
    }
    let Some(first) = events.first().map(|e| e.at) else {
        output::message(&format!("instance {id:?} has no events in that execution"));
        return Ok(());
    };
    let rows: Vec<Vec<String>> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            vec![
                index.to_string(),
                output::time(event.at),
                output::elapsed(event.at.since(first)),
                event.kind.type_name().to_owned(),
                event.kind.op().map(ToString::to_string).unwrap_or_default(),
                detail(event),
            ]
        })
        .collect();
    output::table(
        &["#", "TIME", "SINCE START", "EVENT", "OP", "DETAIL"],
        &rows,
    );
    Ok(())
}

/// What a timeline row says besides the event's kind: the name it carries and, for a
/// failure, its message.
fn detail(event: &Event) -> String {
    let mut parts = Vec::new();
    if let Some(name) = event.kind.name() {
        parts.push(format!("{name:?}"));
    }
    // Failures are read from the event's JSON, which holds them under every kind that has
    // one (`{"activity_failed": {"failure": {..}}}`).
    let value = serde_json::to_value(&event.kind).unwrap_or(Value::Null);
    if let Some(message) = value
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|body| body.get("failure").or_else(|| body.get("reason")))
        .and_then(|f| f.get("message").or(Some(f)))
        .and_then(Value::as_str)
    {
        parts.push(output::clip(message, 80));
    }
    parts.join(" ")
}

/// `stats`: how many instances there are in each status. JSON: `{"pending": n, ..}`.
pub(crate) async fn stats(client: &Client, json: bool) -> Result<(), CliError> {
    let counts = client.count_by_status().await?;
    if json {
        let object: serde_json::Map<String, Value> = counts
            .iter()
            .map(|(status, n)| (status.to_string(), json!(n)))
            .collect();
        return output::json(&object);
    }
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(status, n)| vec![status.to_string(), n.to_string()])
        .collect();
    output::table(&["STATUS", "COUNT"], &rows);
    Ok(())
}
