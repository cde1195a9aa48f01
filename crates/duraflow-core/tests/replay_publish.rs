//! `ctx.publish`: records are queued only by code running live past the journal's end, and
//! numbered by their place among the execution's publishes, so a cold replay numbers the
//! records it derives again as the first run did (and the store leaves those out).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::IntoFuture;

use common::*;
use duraflow_core::{workflow_fn, FeedRecord, WorkflowContext, WorkflowError, WorkflowFn};

/// Publishes twice, runs two activities at once and publishes when the first ends (the
/// second is still awaited: nothing is journaled after the first's result), then publishes
/// once both have ended.
fn publisher() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        ctx.publish("t.a", &1)?;
        ctx.publish("t.b", &2)?;
        let first = ctx.activity::<()>("work", &1).into_future();
        let second = ctx.activity::<()>("work", &2).into_future();
        let c = ctx.clone();
        let after_first = async move {
            first.await?;
            c.publish("t.c", &3)
        };
        let (a, b) = futures::join!(after_first, second);
        a?;
        b?;
        ctx.publish("t.d", &4)?;
        Ok::<_, WorkflowError>(())
    })
}

fn seqs(records: &[FeedRecord]) -> Vec<(String, u64)> {
    records.iter().map(|r| (r.topic.clone(), r.seq)).collect()
}

#[test]
fn only_live_code_publishes_and_replays_number_records_alike() {
    let mut run = Driver::start("pub-1", publisher(), &());
    assert_eq!(
        seqs(&run.run.take_feed()),
        [("t.a".to_owned(), 1), ("t.b".to_owned(), 2)]
    );
    assert!(run.deliver(activity_completed("0", &())));
    assert_eq!(seqs(&run.run.take_feed()), [("t.c".to_owned(), 3)]);
    assert!(run.run.take_feed().is_empty(), "taken once");

    // A cold replay of the journal so far: the code before the last journaled event publishes
    // nothing; the code after it runs again and derives record 3 again, numbered as before.
    let mut cold = Driver::resume("pub-1", publisher(), run.journal.clone());
    assert_eq!(seqs(&cold.run.take_feed()), [("t.c".to_owned(), 3)]);
    assert!(cold.deliver(activity_completed("1", &())));
    assert_eq!(seqs(&cold.run.take_feed()), [("t.d".to_owned(), 4)]);
    assert!(cold.outcome().is_some());
}

/// Publishing journals nothing: the finished journal replays cleanly with the same code.
#[test]
fn publishing_leaves_the_journal_alone() {
    let mut run = Driver::start("pub-2", publisher(), &());
    assert!(run.deliver(activity_completed("0", &())));
    assert!(run.deliver(activity_completed("1", &())));
    let report = run.check();
    assert!(report.nondeterminism().is_none(), "{report:?}");
    assert!(report.new_events.is_empty(), "{report:?}");
    assert!(report.outcome.is_some());
}
