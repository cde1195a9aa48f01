//! The verbs that change instances: `raise`, `cancel`, `terminate`, `purge` (by id or by
//! filter).

use std::io::{BufRead, IsTerminal, Write};

use duraflow::{Client, ClientError, ListFilter};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::output;

/// Parses `raise --data`: any JSON value.
pub(crate) fn parse_data(data: &str) -> Result<Value, CliError> {
    serde_json::from_str(data).map_err(|e| {
        CliError::usage(format!(
            "--data is not valid JSON ({e}); pass a JSON value, e.g. --data '{{\"approved\": \
             true}}', --data '\"text\"' or --data 42"
        ))
    })
}

/// Reports a change: a message on stderr, or a JSON object on stdout.
fn done(json: bool, value: Value, message: String) -> Result<(), CliError> {
    if json {
        output::json(&value)
    } else {
        output::message(&message);
        Ok(())
    }
}

/// `raise ID NAME --data JSON`.
pub(crate) async fn raise(
    client: &Client,
    id: &str,
    name: &str,
    data: &Value,
    json: bool,
) -> Result<(), CliError> {
    client.raise_event(id, name, data).await?;
    done(
        json,
        json!({ "id": id, "raised": name, "data": data }),
        format!("raised event {name:?} on instance {id:?}"),
    )
}

/// `cancel ID [--reason R]`.
pub(crate) async fn cancel(
    client: &Client,
    id: &str,
    reason: &str,
    json: bool,
) -> Result<(), CliError> {
    client.cancel(id, reason).await?;
    done(
        json,
        json!({ "id": id, "cancel_requested": true, "reason": reason }),
        format!("cancellation of instance {id:?} requested; it ends at its next turn"),
    )
}

/// `terminate ID [--reason R]`.
pub(crate) async fn terminate(
    client: &Client,
    id: &str,
    reason: &str,
    json: bool,
) -> Result<(), CliError> {
    client.terminate(id, reason).await?;
    done(
        json,
        json!({ "id": id, "terminate_requested": true, "reason": reason }),
        format!("termination of instance {id:?} requested; it ends at its next turn"),
    )
}

/// How many instances one store call of `purge` by filter deletes (one transaction on SQLite
/// and PostgreSQL).
const PURGE_BATCH: usize = 500;

/// `purge ID [--yes]`: asks for confirmation on a terminal; refuses without `--yes`
/// otherwise.
pub(crate) async fn purge(
    client: &Client,
    id: &str,
    yes: bool,
    json: bool,
) -> Result<(), CliError> {
    // An unknown or running instance is reported before anything is asked.
    let info = client.status(id).await?;
    if !info.status.is_terminal() {
        return Err(ClientError::InstanceRunning(id.to_owned()).into());
    }
    if !yes {
        confirm(
            &format!(
                "purge instance {id:?} ({} {}) and all its history?",
                info.name, info.status
            ),
            &format!("instance {id:?}"),
            &format!("not confirmed: instance {id:?} was not purged"),
        )?;
    }
    client.purge(id).await?;
    done(
        json,
        json!({ "id": id, "purged": true }),
        format!("purged instance {id:?}"),
    )
}

/// `purge --status S --name N --queue Q --finished-before T [--yes]`: purges every finished
/// instance the filter selects, a batch at a time, with progress on stderr. JSON:
/// `{"purged": n}`.
pub(crate) async fn purge_where(
    client: &Client,
    filter: ListFilter,
    yes: bool,
    json: bool,
) -> Result<(), CliError> {
    let what = describe(&filter);
    if !yes {
        confirm(
            &format!("purge {what} and all their history?"),
            &what,
            "not confirmed: nothing was purged",
        )?;
    }
    let mut purged = 0usize;
    loop {
        let batch = client.purge_finished(filter.clone(), PURGE_BATCH).await;
        let batch = match batch {
            Ok(batch) => batch,
            // What was purged is gone: say how far it got.
            Err(e) if purged > 0 => {
                return Err(CliError::operational(format!(
                    "{e}; {purged} instances were purged before the error"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if batch.is_empty() {
            break;
        }
        purged += batch.len();
        if batch.len() == PURGE_BATCH {
            output::message(&format!("purged {purged} so far"));
        }
    }
    done(
        json,
        json!({ "purged": purged }),
        format!("purged {purged} {what}"),
    )
}

/// The instances `filter` selects for a purge, in words.
fn describe(filter: &ListFilter) -> String {
    let statuses = if filter.statuses.is_empty() {
        "finished".to_owned()
    } else {
        let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        names.join(" or ")
    };
    let mut what = format!("{statuses} instances");
    if let Some(name) = &filter.name {
        what.push_str(&format!(" of workflow {name:?}"));
    }
    if let Some(queue) = &filter.queue {
        what.push_str(&format!(" in queue {queue:?}"));
    }
    if let Some(before) = filter.updated_before {
        what.push_str(&format!(" finished before {}", output::time(before)));
    }
    what
}

/// Asks `question` on a terminal and fails with `refusal` unless the answer is yes; without a
/// terminal, refuses and asks for `--yes` (naming `what` would be purged).
fn confirm(question: &str, what: &str, refusal: &str) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(format!(
            "refusing to purge {what} without confirmation: stdin is not a terminal; pass \
             --yes to purge"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::operational(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::operational(refusal.to_owned()))
    }
}
