//! `duraflow`: list, inspect and operate the workflow instances in a duraflow store.
//!
//! ```text
//! duraflow --db sqlite:orders.db list --status running
//! duraflow show order-42
//! duraflow history order-42 --json
//! duraflow raise order-42 approved --data '{"by": "carol"}'
//! duraflow cancel order-42 --reason "customer asked"
//! duraflow terminate order-42 --reason "code is gone"
//! duraflow purge order-42 --yes
//! duraflow purge --status completed --finished-before 30d --yes
//! duraflow stats
//! duraflow migrate --check
//! duraflow serve --listen 127.0.0.1:8080
//! ```
//!
//! The store is `--db URL`, or else `DURAFLOW_DATABASE_URL` (`sqlite:PATH` or
//! `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, parsed by `duraflow::env`). Every verb takes
//! `--json`. Data goes to stdout; messages and errors go to stderr.
//!
//! `serve` runs the HTTP/JSON API and the web dashboard (module `serve`) until Ctrl-C or
//! SIGTERM; it prints the address it listens on to stderr.
//!
//! Exit codes:
//!
//! - `0`: done.
//! - `1`: an operational error: the store could not be opened or answered with an error, the
//!   instance has finished (raise, cancel, terminate) or is still running (purge), a purge
//!   was not confirmed, or `migrate --check` found the schema missing or behind.
//! - `2`: a usage error: bad arguments, a malformed `--db` URL or `--data` JSON, no store
//!   named, or `purge` without `--yes` when stdin is not a terminal; `serve` on an address that
//!   is not loopback without a token.
//! - `3`: no instance with the given id (or no such execution of it, for `history`).

mod connect;
mod error;
mod inspect;
mod migrate;
mod operate;
mod output;
mod serve;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use duraflow::{InstanceStatus, ListFilter, Timestamp};

use crate::error::CliError;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  operational error: the store could not be opened or failed, the instance has finished
     (raise, cancel, terminate) or is still running (purge), a purge was not confirmed, or
     migrate --check found the schema missing or behind
  2  usage error: bad arguments, a malformed --db URL or --data JSON, no store named, or
     purge without --yes when stdin is not a terminal, or serve on an address that is not
     loopback without a token
  3  not found: no instance with that id (or no such execution of it)";

/// List, inspect and operate the workflow instances in a duraflow store.
#[derive(Debug, Parser)]
#[command(name = "duraflow", version, after_long_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every verb takes.
#[derive(Debug, Args)]
struct Global {
    /// The store: sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// [default: $DURAFLOW_DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    db: Option<String>,
    /// Print data as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List instances (ordered by id), a page at a time.
    List {
        /// Only instances in this status (pending, running, completed, failed, cancelled,
        /// terminated); repeat for several.
        #[arg(long, value_name = "S", value_parser = parse_status)]
        status: Vec<InstanceStatus>,
        /// Only instances of this workflow name.
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// Only instances in this queue.
        #[arg(long, value_name = "Q")]
        queue: Option<String>,
        /// At most this many (the store caps it at 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Continue after this cursor (printed when there are more).
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
    },
    /// Show an instance: status, name, queue, attempt, times, input, output or failure,
    /// options, children.
    Show {
        /// The instance id.
        id: String,
    },
    /// Show an execution's journal as a timeline.
    History {
        /// The instance id.
        id: String,
        /// The execution (1, then one more after each continue-as-new) [default: the
        /// current one].
        #[arg(long, value_name = "N")]
        execution: Option<u32>,
    },
    /// Raise an external event on an instance.
    Raise {
        /// The instance id.
        id: String,
        /// The event name.
        name: String,
        /// The event's data, as JSON.
        #[arg(long, value_name = "JSON", default_value = "null")]
        data: String,
    },
    /// Request cancellation: the instance ends as cancelled at its next turn.
    Cancel {
        /// The instance id.
        id: String,
        /// Why (recorded in the instance's failure).
        #[arg(
            long,
            value_name = "R",
            default_value = "cancelled with the duraflow CLI"
        )]
        reason: String,
    },
    /// Terminate an instance without running any more of its code.
    Terminate {
        /// The instance id.
        id: String,
        /// Why (recorded in the instance's failure).
        #[arg(
            long,
            value_name = "R",
            default_value = "terminated with the duraflow CLI"
        )]
        reason: String,
    },
    /// Delete a finished instance and its history.
    /// Delete finished instances and their history: one by id, or every one a filter selects
    /// (in batches, with progress on stderr).
    Purge {
        /// The instance id (or give filters instead).
        #[arg(required_unless_present_any = ["status", "name", "queue", "finished_before"])]
        id: Option<String>,
        /// Only finished instances in this status (completed, failed, cancelled, terminated);
        /// repeat for several [default: every finished status].
        #[arg(long, value_name = "S", value_parser = parse_finished_status, conflicts_with = "id")]
        status: Vec<InstanceStatus>,
        /// Only instances of this workflow name.
        #[arg(long, value_name = "N", conflicts_with = "id")]
        name: Option<String>,
        /// Only instances in this queue.
        #[arg(long, value_name = "Q", conflicts_with = "id")]
        queue: Option<String>,
        /// Only instances that finished before this time: an RFC 3339 time
        /// (2026-12-01T00:00:00Z) or an age (30d, 12h, 90m).
        #[arg(long, value_name = "TIME", value_parser = parse_before, conflicts_with = "id")]
        finished_before: Option<Timestamp>,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Count the instances in each status.
    Stats,
    /// Create the store's schema or apply the migrations it lacks (an engine opening the store
    /// does the same); with --check, change nothing and exit 1 unless it is up to date.
    Migrate {
        /// Only check the schema's version.
        #[arg(long)]
        check: bool,
    },
    /// Serve the HTTP/JSON API (under /v1, described at /openapi.json) and the web dashboard
    /// (at /) until Ctrl-C or SIGTERM.
    Serve {
        /// The address to listen on; port 0 picks a free one (the address is printed on
        /// stderr).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        listen: String,
        /// The bearer token every /v1 request must present [default: $DURAFLOW_TOKEN];
        /// required to listen on an address that is not loopback.
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// The largest request body accepted, in bytes (larger ones get 413).
        #[arg(long, value_name = "BYTES", default_value_t = serve::DEFAULT_MAX_BODY)]
        max_body: usize,
        /// How often a worker's waiting claim looks at the store for tasks, in milliseconds
        /// (1 to 1000): the most a new task waits for a waiting worker when no in-process
        /// wakeup tells the server of it.
        #[arg(long, value_name = "MS", default_value_t = 50,
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        claim_poll_ms: u64,
    },
}

fn parse_finished_status(s: &str) -> Result<InstanceStatus, String> {
    match parse_status(s)? {
        status if status.is_terminal() => Ok(status),
        status => Err(format!(
            "{status} instances cannot be purged: only finished ones (completed, failed, \
             cancelled, terminated); cancel or terminate them first"
        )),
    }
}

/// An RFC 3339 time, or an age before now (`30d`, `12h`).
fn parse_before(s: &str) -> Result<Timestamp, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(at) => at,
        Err(_) => {
            let age = humantime::parse_duration(s).map_err(|_| {
                "expected an RFC 3339 time (2026-12-01T00:00:00Z) or an age (30d, 12h, 90m)"
                    .to_owned()
            })?;
            std::time::SystemTime::now()
                .checked_sub(age)
                .ok_or_else(|| format!("{s} ago is before the start of time"))?
        }
    };
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s} is before 1970"))?
        .as_millis();
    Ok(Timestamp(
        i64::try_from(ms).map_err(|_| format!("{s} is too far ahead"))?,
    ))
}

fn parse_status(s: &str) -> Result<InstanceStatus, String> {
    s.parse::<InstanceStatus>().map_err(|_| {
        "expected one of pending, running, completed, failed, cancelled, terminated".to_owned()
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server answers requests on every core; the other verbs make a few calls.
    let runtime = if matches!(cli.command, Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_OPERATIONAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.global.json;
    // Arguments are checked before the store is opened.
    let data = match &cli.command {
        Command::Raise { data, .. } => Some(operate::parse_data(data)?),
        _ => None,
    };
    let serve = match &cli.command {
        Command::Serve {
            listen,
            token,
            max_body,
            claim_poll_ms,
        } => Some(serve::ServeOptions {
            listen: listen.clone(),
            token: serve::token(token.clone())?,
            max_body: *max_body,
            claim_poll: std::time::Duration::from_millis(*claim_poll_ms),
        }),
        _ => None,
    };
    if let Some(options) = serve {
        let store = connect::store(cli.global.db.as_deref()).await?;
        return serve::serve(store, options).await;
    }
    if let Command::Migrate { check } = cli.command {
        return migrate::migrate(cli.global.db.as_deref(), check, json).await;
    }
    let client = connect::client(cli.global.db.as_deref()).await?;
    match cli.command {
        Command::List {
            status,
            name,
            queue,
            limit,
            after,
        } => {
            let filter = inspect::filter(status, name, queue, limit, after);
            inspect::list(&client, filter, json).await
        }
        Command::Show { id } => inspect::show(&client, &id, json).await,
        Command::History { id, execution } => inspect::history(&client, &id, execution, json).await,
        Command::Raise { id, name, .. } => {
            let data = data.unwrap_or(serde_json::Value::Null);
            operate::raise(&client, &id, &name, &data, json).await
        }
        Command::Cancel { id, reason } => operate::cancel(&client, &id, &reason, json).await,
        Command::Terminate { id, reason } => operate::terminate(&client, &id, &reason, json).await,
        Command::Purge {
            id: Some(id), yes, ..
        } => operate::purge(&client, &id, yes, json).await,
        Command::Purge {
            id: None,
            status,
            name,
            queue,
            finished_before,
            yes,
        } => {
            let filter = ListFilter {
                statuses: status,
                name,
                queue,
                updated_before: finished_before,
                ..ListFilter::default()
            };
            operate::purge_where(&client, filter, yes, json).await
        }
        Command::Stats => inspect::stats(&client, json).await,
        Command::Serve { .. } | Command::Migrate { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
