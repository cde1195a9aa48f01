//! The verbs that change instances: `raise`, `cancel`, `terminate`, `purge`.

use std::io::{BufRead, IsTerminal, Write};

use duraflow::{Client, ClientError};
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
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(CliError::usage(format!(
                "refusing to purge instance {id:?} without confirmation: stdin is not a \
                 terminal; pass --yes to purge it"
            )));
        }
        eprint!(
            "purge instance {id:?} ({} {}) and all its history? [y/N] ",
            info.name, info.status
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        stdin
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CliError::operational(format!("cannot read the answer: {e}")))?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(CliError::operational(format!(
                "not confirmed: instance {id:?} was not purged"
            )));
        }
    }
    client.purge(id).await?;
    done(
        json,
        json!({ "id": id, "purged": true }),
        format!("purged instance {id:?}"),
    )
}
