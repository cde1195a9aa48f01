//! A commit batch in one statement, committed by itself: one round trip where the batch path
//! ([`super::commit_batch`]) takes three (`BEGIN` with the lock statement, the write
//! statement, `COMMIT`).
//!
//! The statement is the batch path's write statement in the form
//! `write_statement::Form::OneStatement`: it locks the batch's instance rows
//! and its direct turns' tasks, checks in SQL what the batch path checks in Rust against the
//! locked rows, and writes only if every commit passes. A batch it refuses wrote nothing and
//! goes the batch path, which finds out which commit is refused and why. Only batches whose
//! writes need nothing but the locked rows' checks take it ([`eligible`]): no children,
//! callbacks, queue events or feed records, no messages to other instances, no journal due a
//! merge into a run, and (checked in SQL) no instance with callbacks, queue-event waiters or
//! room held under a limit.
//!
//! A batch of one commit, the commonest (a sequential workflow's every step), takes the
//! statement's form `write_statement::Form::Single`: the same parts and checks, with the
//! commit's columns read as scalars and its rows found by equality, which PostgreSQL sets up
//! for each execution in about a quarter less of its time per commit.
//!
//! The statement reads its snapshot from when it began, before it waited for its locks; the
//! inboxes it computes due times from are read by `instance_inboxes` (migration 0020), which takes
//! a snapshot of its own after the locks were granted, so a message whose sender held an
//! instance's row while the statement waited is counted (`crate::races`).

use std::collections::{HashMap, HashSet};

use duraflow_store::{check_commit, Committed, InstanceStatus, Notifier, StoreResult, TurnCommit};
use sqlx::{PgConnection, Row};

use super::runs::Runs;
use super::writes::Writes;
use super::{bind_writes, claimed_tasks};
use crate::codec::instance_row;
use crate::error::OpResult;
use crate::ops::Wake;

/// The most commits a batch committed in one statement holds. The round trips the statement
/// saves are most of a small batch's time and little of a large one's; and a commit that
/// returns sooner leaves fewer commits waiting for the next batch, so the engine's batches
/// get smaller and more numerous, each with its own statement's fixed cost on the server.
/// With every batch in one statement, a loop of awaited starts (`throughput --starts loop`,
/// batches of 4 to 16 commits) made a third more batches for a fifth more of the server's
/// time, and 6% fewer activities a second; with batches of at most 4, as many as the batch
/// path (BENCHMARKS.md, "PostgreSQL: a commit in one statement").
pub(crate) const MOST_COMMITS: usize = 4;

/// Whether `commits` can be committed in one statement: at most [`MOST_COMMITS`], each
/// instance once, and nothing that the batch path writes in statements of its own or checks
/// against rows other than the commits' own instances and tasks.
pub(crate) fn eligible(commits: &[TurnCommit]) -> bool {
    if commits.len() > MOST_COMMITS {
        return false;
    }
    let mut ids = HashSet::new();
    commits.iter().all(|c| {
        ids.insert(c.instance_id.as_str())
            && !c.instance_id.contains('\0')
            && c.new_instances.is_empty()
            && c.callbacks.is_empty()
            && c.closed_callbacks.is_empty()
            && c.emits.is_empty()
            && c.awaits.is_empty()
            && c.cancelled_awaits.is_empty()
            && c.feed.is_empty()
            && c.messages.iter().all(|m| m.instance_id == c.instance_id)
            && !Runs::wants(c)
            && check_commit(c).is_ok()
    })
}

/// Commits an [`eligible`] batch in one statement on `conn` (outside a transaction: it commits
/// by itself). Returns each commit's result and whom to wake, with the finished instances
/// watched on `notifier` when the statement returned handed over (the statement returns the
/// new state of every instance the batch finishes or continues, at most [`MOST_COMMITS`]); or
/// `None` when a commit did not pass the checks, and nothing was written.
pub(crate) async fn commit(
    conn: &mut PgConnection,
    commits: &[TurnCommit],
    channel: &str,
    owner: Option<i32>,
    notifier: &Notifier,
) -> OpResult<Option<(Vec<StoreResult<Committed>>, Wake)>> {
    let committing: HashMap<&str, InstanceStatus> = commits
        .iter()
        .map(|c| (c.instance_id.as_str(), c.final_status()))
        .collect();
    let mut w = Writes::default();
    let mut executions = Vec::with_capacity(commits.len());
    let mut bases = Vec::with_capacity(commits.len());
    let mut tasks = Vec::with_capacity(commits.len());
    let mut task_tokens = Vec::with_capacity(commits.len());
    for c in commits {
        // The instances' only rows the writes read are the commits' own (`eligible`).
        w.add(c, &committing, &HashMap::new(), None)?;
        executions.push(i32::try_from(c.execution).unwrap_or(i32::MAX));
        bases.push(i64::try_from(c.journal_base).unwrap_or(i64::MAX));
        tasks.push(c.direct.map(|d| d.task.0));
        task_tokens.push(c.direct.map(|d| d.task_token.0));
    }
    let mut parts = w.parts();
    // A direct turn's task is deleted by the cancelled tasks' part, named by its lock's row.
    parts.cancelled |= commits
        .iter()
        .any(|c| c.direct.is_some() && !c.final_status().is_terminal());
    let rows = bind_writes(
        super::one_statement_sql(parts, commits.len() == 1),
        &w,
        channel,
        false,
        owner,
    )
    .bind(&executions)
    .bind(&bases)
    .bind(&tasks)
    .bind(&task_tokens)
    // Every instance the batch finishes or continues: whether a client watches it is
    // asked once the statement has returned, when one that called `wait` right after its
    // `start` has begun watching (it is often still on its way at the statement's start).
    .bind(&w.wake.instances)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Err(crate::error::OpError::from(
            duraflow_store::StoreError::Other("a commit of one statement returned no row".into()),
        ));
    };
    if !first.try_get::<bool, _>("ok")? {
        return Ok(None);
    }
    let mut wake = Wake::default();
    wake.turns |= first.try_get::<bool, _>("wake_turns")?;
    wake.tasks |= first.try_get::<bool, _>("wake_tasks")?;
    let mut results: Vec<StoreResult<Committed>> =
        commits.iter().map(|_| Ok(Committed::default())).collect();
    let accepted: Vec<&TurnCommit> = commits.iter().collect();
    claimed_tasks(first, &accepted, &mut results)?;
    let mut handed = Vec::new();
    for row in &rows {
        if row.try_get::<Option<String>, _>("id")?.is_some() {
            handed.push(instance_row(row)?);
        }
    }
    wake.merge(w.wake);
    let watched: HashSet<String> = wake.to_hand_over(notifier).into_iter().collect();
    for info in handed {
        if watched.contains(&info.id) {
            wake.hand_over(info);
        }
    }
    Ok(Some((results, wake)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::time::Duration;

    use duraflow_core::{ActivityOptions, OpId, Payload, Timestamp};
    use duraflow_store::{
        FetchFilter, LeaseToken, NewTask, Store, StoreError, TurnCommit, TurnWork,
    };

    use super::{commit, eligible};
    use crate::testing::{new_instance, test_store};
    use crate::PostgresStore;

    const T0: Timestamp = Timestamp(1_000_000);
    const LEASE: Duration = Duration::from_secs(30);

    /// A store with instances `ids` created and their first turns leased.
    async fn leased(ids: &[&str]) -> (PostgresStore, Vec<TurnWork>) {
        let store = test_store("dft_one").await.unwrap();
        for id in ids {
            store
                .create_instance(new_instance(id, "in", T0))
                .await
                .unwrap();
        }
        let mut work = store
            .fetch_turns(&FetchFilter::default(), T0, 10, LEASE, None)
            .await
            .unwrap();
        work.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
        assert_eq!(work.len(), ids.len());
        (store, work)
    }

    /// A commit of `work` that consumes its messages and schedules one activity.
    fn with_a_task(work: &TurnWork) -> TurnCommit {
        TurnCommit {
            tasks: vec![NewTask {
                instance_id: work.instance.id.clone(),
                execution: 1,
                op: OpId::new(None, 1),
                name: "act".into(),
                input: Payload::encode(&"task").unwrap(),
                options: ActivityOptions::default(),
                scheduled_at: T0,
            }],
            ..TurnCommit::consuming(work, T0)
        }
    }

    async fn tasks_of(store: &PostgresStore) -> Vec<String> {
        let mut tasks: Vec<String> = store
            .fetch_tasks(&FetchFilter::default(), T0, 10, LEASE)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.instance_id)
            .collect();
        tasks.sort();
        tasks
    }

    /// Commits that pass the checks are written by the one statement: their tasks are there,
    /// and their consumed inboxes leave nothing due. A lone commit (the statement's form
    /// `Single`) and a batch of two alike.
    #[tokio::test]
    async fn a_batch_that_passes_the_checks_commits_in_one_statement() {
        for ids in [&["a"][..], &["a", "b"]] {
            let (store, work) = leased(ids).await;
            let commits: Vec<TurnCommit> = work.iter().map(with_a_task).collect();
            assert!(eligible(&commits));
            let mut conn = store.pool().acquire().await.unwrap();
            let notifier = duraflow_store::Notifier::new();
            let (results, _) = commit(&mut conn, &commits, "unused", None, &notifier)
                .await
                .unwrap()
                .expect("the checks pass");
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            assert!(
                results.iter().all(|r| r.as_ref().unwrap().tasks.is_empty()),
                "no task was claimed"
            );
            assert_eq!(tasks_of(&store).await, ids);
            let due = store
                .fetch_turns(&FetchFilter::default(), T0, 10, LEASE, None)
                .await
                .unwrap();
            assert!(due.is_empty(), "{ids:?}: nothing is due after the commits");
        }
    }

    /// A lone commit that claims its tasks gets them back leased, in the order it added them,
    /// and a fetch finds none of them.
    #[tokio::test]
    async fn a_lone_commit_claims_its_tasks_in_order() {
        let (store, work) = leased(&["a"]).await;
        let mut c = with_a_task(&work[0]);
        let mut second = c.tasks[0].clone();
        second.op = OpId::new(None, 2);
        c.tasks.push(second);
        c.claim_tasks = Some(duraflow_store::TaskClaim {
            max: 2,
            lease: LEASE,
        });
        let mut conn = store.pool().acquire().await.unwrap();
        let notifier = duraflow_store::Notifier::new();
        let (results, _) = commit(&mut conn, &[c], "unused", None, &notifier)
            .await
            .unwrap()
            .expect("the checks pass");
        let claimed = &results[0].as_ref().unwrap().tasks;
        let ops: Vec<String> = claimed.iter().map(|t| t.op.to_string()).collect();
        assert_eq!(
            ops,
            vec![
                OpId::new(None, 1).to_string(),
                OpId::new(None, 2).to_string()
            ]
        );
        assert!(
            tasks_of(&store).await.is_empty(),
            "claimed tasks are leased"
        );
    }

    /// One commit of the batch fails the checks (its token is not the lease's): the statement
    /// writes nothing of any commit, and the store's batch path then commits the other and
    /// refuses that one as a lost lease.
    #[tokio::test]
    async fn a_refused_batch_writes_nothing_and_goes_the_batch_path() {
        // A lone commit with a stale token is refused alike.
        let (store, work) = leased(&["a"]).await;
        let mut lone = with_a_task(&work[0]);
        lone.token = LeaseToken(lone.token.0 + 1_000);
        let mut conn = store.pool().acquire().await.unwrap();
        let notifier = duraflow_store::Notifier::new();
        let out = commit(&mut conn, &[lone], "unused", None, &notifier)
            .await
            .unwrap();
        assert!(out.is_none(), "a lone commit with a stale token is refused");
        assert!(tasks_of(&store).await.is_empty(), "nothing was written");

        let (store, work) = leased(&["a", "b"]).await;
        let mut commits: Vec<TurnCommit> = work.iter().map(with_a_task).collect();
        commits[1].token = LeaseToken(commits[1].token.0 + 1_000);
        assert!(eligible(&commits));
        let mut conn = store.pool().acquire().await.unwrap();
        let notifier = duraflow_store::Notifier::new();
        let out = commit(&mut conn, &commits, "unused", None, &notifier)
            .await
            .unwrap();
        assert!(out.is_none(), "a commit with a stale token is refused");
        assert!(tasks_of(&store).await.is_empty(), "nothing was written");

        let results = store.commit_turns(commits).await.unwrap();
        assert!(results[0].is_ok(), "{results:?}");
        assert!(
            matches!(results[1], Err(StoreError::LeaseLost { .. })),
            "{results:?}"
        );
        assert_eq!(tasks_of(&store).await, vec!["a"]);
    }

    /// A finished instance's new state comes back with the statement, and is handed over to
    /// its watchers when one watches it once the statement has returned; equal to a read.
    #[tokio::test]
    async fn a_finished_instance_is_handed_over_when_watched() {
        let (store, work) = leased(&["a", "b"]).await;
        let finish = |w: &TurnWork| TurnCommit {
            status: duraflow_store::InstanceStatus::Completed,
            output: Some(Payload::encode(&"out").unwrap()),
            ..TurnCommit::consuming(w, T0)
        };
        let commits: Vec<TurnCommit> = work.iter().map(finish).collect();
        let notifier = duraflow_store::Notifier::new();
        let _watch = notifier.watch("a");
        let mut conn = store.pool().acquire().await.unwrap();
        let (results, wake) = commit(&mut conn, &commits, "unused", None, &notifier)
            .await
            .unwrap()
            .expect("the checks pass");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let handed: Vec<&str> = wake.finished.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            handed,
            vec!["a"],
            "only the watched instance is handed over"
        );
        let read = duraflow_store::Management::describe(&store, "a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            wake.finished[0],
            duraflow_store::InstanceInfo {
                journal_len: None,
                last_event_at: None,
                ..read
            }
        );
    }

    /// The statement's own check that it updated every instance row it commits fails the
    /// statement, so nothing of it is committed: two commits of one instance (which
    /// [`eligible`] keeps out) pass the checks one by one but update one row.
    #[tokio::test]
    async fn a_statement_that_updates_fewer_rows_than_it_commits_writes_nothing() {
        let (store, work) = leased(&["a"]).await;
        let plain = TurnCommit::consuming(&work[0], T0);
        assert_eq!(plain.consumed.len(), 1, "the start message");
        let mut conn = store.pool().acquire().await.unwrap();
        let notifier = duraflow_store::Notifier::new();
        let err = commit(
            &mut conn,
            &[plain.clone(), plain],
            "unused",
            None,
            &notifier,
        )
        .await
        .map(|_| ())
        .unwrap_err();
        let err = duraflow_store::StoreError::from(err).to_string();
        assert!(
            err.contains("updated 1 of its 2 instances") && err.contains("nothing was written"),
            "{err}"
        );
        let inbox: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE instance_id = 'a'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(inbox, 1, "the start message was not consumed");
    }

    /// What the one statement cannot write goes the batch path: a child, a message to another
    /// instance, an instance twice; and so does a batch of more than `MOST_COMMITS`.
    #[tokio::test]
    async fn batches_with_writes_of_their_own_statements_are_not_eligible() {
        let (_store, work) = leased(&["a", "b"]).await;
        let plain = TurnCommit::consuming(&work[0], T0);
        assert!(eligible(std::slice::from_ref(&plain)));
        assert!(
            !eligible(&[plain.clone(), plain.clone()]),
            "an instance twice"
        );
        let mut to_b = plain.clone();
        to_b.messages.push(duraflow_store::NewMessage {
            instance_id: "b".into(),
            kind: duraflow_store::MessageKind::Event {
                name: "e".into(),
                data: Payload::encode(&1).unwrap(),
            },
            visible_at: T0,
        });
        assert!(!eligible(&[to_b]), "a message to another instance");
        let mut child = plain;
        child.new_instances.push(new_instance("c", "in", T0));
        assert!(!eligible(&[child]), "a child");

        let (_store, work) = leased(&["a", "b", "c", "d", "e"]).await;
        let commits: Vec<TurnCommit> = work.iter().map(|w| TurnCommit::consuming(w, T0)).collect();
        assert_eq!(commits.len(), super::MOST_COMMITS + 1);
        assert!(!eligible(&commits), "one commit too many");
        assert!(eligible(&commits[..super::MOST_COMMITS]));
    }
}
