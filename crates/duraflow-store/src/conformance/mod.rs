//! The conformance suite every [`Store`] must pass.
//!
//! Each test is a public async function taking a fresh, empty store (`Arc<dyn Store>`), grouped
//! by topic: [`instances`], [`turns`], [`checkpoints`], [`callbacks`], [`tasks`],
//! [`heartbeats`], [`claims`], [`sends`], [`direct`], [`admin`], [`management`], [`queues`],
//! [`queue_events`], [`flow_control`], [`feed`] and [`registry`] ([`optional`] holds cases for
//! what a store may offer beyond the contract, run by the stores that offer it). A backend runs the whole
//! suite from one integration test file with [`conformance_tests!`](crate::conformance_tests),
//! given an async expression that makes a fresh empty store (it is evaluated once per test):
//!
//! ```
//! use std::sync::Arc;
//! use duraflow_store::{MemoryStore, Store};
//!
//! duraflow_store::conformance_tests!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
//! # fn main() {}
//! ```
//!
//! The tests never sleep and never read a clock: every time is a fixed [`Timestamp`] passed as
//! `now`, starting at [`T0`]. They assume nothing about the values of ids and tokens beyond
//! what the contract promises (message ids increase in sending order; every fetch issues a new
//! token), and they accept `stats` with or without zero counts.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test suite")]

pub mod admin;
pub mod callbacks;
pub mod checkpoints;
pub mod claims;
pub mod direct;
pub mod feed;
pub mod flow_control;
pub mod heartbeats;
pub mod instances;
pub mod management;
pub mod optional;
pub mod queue_events;
pub mod queues;
pub mod registry;
pub mod sends;
pub mod tasks;
pub mod turns;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{
    ActivityOptions, Event, EventKind, Failure, FailureKind, OpId, ParentLink, Payload, Timestamp,
};
use serde::Serialize;

use crate::error::StoreResult;
use crate::management::Management;
use crate::store::Store;
use crate::types::{
    InstanceStatus, Journal, MessageKind, NewInstance, NewMessage, NewTask, StoreStats, TurnCommit,
    TurnWork,
};

/// The management extension of the store under test, which every store in the suite has.
pub(crate) trait Manage {
    /// The store's [`Management`]; panics (failing the test) when it has none.
    fn manage(&self) -> &dyn Management;
}

impl Manage for dyn Store {
    fn manage(&self) -> &dyn Management {
        self.management()
            .expect("the store under test has no management extension")
    }
}

/// The time the suite's tests start at (`now` for most calls).
pub const T0: Timestamp = Timestamp(1_000_000);

/// The lease the suite's tests take on turns and tasks.
pub const LEASE: Duration = Duration::from_secs(30);

/// [`LEASE`] in milliseconds.
pub(crate) const LEASE_MS: i64 = 30_000;

/// Runs one suite test on a fresh store from `factory`, on a multi-threaded tokio runtime (the
/// concurrency tests need one). Used by [`conformance_tests!`](crate::conformance_tests), so a
/// backend's test crate needs no tokio of its own.
#[doc(hidden)]
pub fn __run<F, T, Fut>(factory: F, test: T)
where
    F: Future<Output = Arc<dyn Store>>,
    T: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance test");
    runtime.block_on(async move {
        let store = factory.await;
        test(store).await;
    });
}

/// Expands to one test per conformance suite function, each on a fresh store.
///
/// The argument is an async expression (such as an `async` block) that makes a fresh, empty
/// `Arc<dyn Store>`; it is evaluated once per test, inside the test's tokio runtime. Invoke it
/// once at the top level of an integration test file; it defines the modules `instances`,
/// `turns`, `tasks` and `admin`, each with one `#[test]` per suite function (which runs on a
/// multi-threaded tokio runtime, like `#[tokio::test(flavor = "multi_thread")]`). Names used by
/// the expression are resolved in the file that invokes the macro.
///
/// ```
/// # use std::sync::Arc;
/// # use duraflow_store::{MemoryStore, Store};
/// duraflow_store::conformance_tests!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    // The suite, in one place: `$callback` is `emit` (tests) or `names` (their names).
    (@suite $callback:ident ($($args:tt)*)) => {
        $crate::conformance_tests! { @$callback ($($args)*)
            instances [
                create_instance_is_idempotent,
                create_instances_creates_a_batch,
                create_instances_claiming_leases_only_what_it_asked_for,
                create_instance_posts_a_start_message,
                send_to_an_unknown_instance_is_not_found,
                send_to_a_finished_instance_is_refused,
                unknown_instances_and_executions_are_reported,
                options_are_kept_with_the_instance,
                a_delayed_start_is_not_due_early,
            ]
            turns [
                fetch_turns_leases_exclusively,
                fetch_turns_takes_the_oldest_work_first,
                concurrent_fetch_turns_never_lease_twice,
                expired_turn_lease_is_fetched_again_and_fences_the_old_token,
                commit_after_lease_expiry_is_rejected,
                commit_applies_everything,
                rejected_commit_changes_nothing,
                a_commit_that_fails_part_way_leaves_nothing,
                journal_base_mismatch_is_rejected,
                a_journal_always_begins_with_its_start,
                commits_in_a_batch_are_independent,
                unconsumed_messages_are_fetched_again,
                delayed_messages_are_not_visible_early,
                messages_are_delivered_in_send_order,
                commit_drops_messages_to_unknown_or_finished_instances,
                commit_leaves_existing_child_instances_untouched,
                continue_as_new_starts_a_fresh_execution,
                a_retry_starts_the_next_attempt_after_its_backoff,
                a_new_execution_is_not_due_before_its_start,
                finishing_deletes_inbox_and_tasks,
                abandon_turn_delays_the_retry,
            ]
            tasks [
                fetch_tasks_leases_exclusively,
                concurrent_fetch_tasks_never_lease_twice,
                delayed_tasks_are_not_visible_early,
                renew_task_extends_the_lease,
                expired_task_lease_is_fetched_again_with_the_next_attempt,
                a_batch_completes_a_task_with_its_current_attempt_whatever_the_order,
                completion_after_lease_expiry_is_rejected,
                complete_tasks_posts_results_to_the_inbox,
                release_retry_counts_the_attempt,
                release_hand_back_does_not_count_the_attempt,
                gone_tasks_are_not_found,
                tasks_of_finished_instances_are_gone,
                cancelled_tasks_are_deleted,
            ]
            heartbeats [
                heartbeat_details_reach_the_next_attempt,
                heartbeat_details_survive_lease_expiry,
                a_stale_heartbeat_is_lease_lost_and_writes_nothing,
            ]
            checkpoints [
                a_checkpoint_keeps_and_extends_the_lease,
                a_checkpoint_that_ends_the_execution_is_refused,
                a_checkpoint_consumes_only_its_messages,
                a_checkpointed_turn_whose_lease_runs_out_is_redone,
                a_checkpointed_turn_that_is_abandoned_is_redone,
                renew_turn_extends_the_lease,
                renew_turn_fences_stale_tokens_and_unknown_instances,
            ]
            callbacks [
                completing_a_callback_posts_its_result,
                failing_a_callback_posts_an_error,
                an_unknown_token_is_not_found,
                a_callback_past_its_timeout_is_refused,
                callbacks_closed_by_a_turn_are_refused,
                a_heartbeat_keeps_the_callback_open,
                callbacks_of_a_finished_instance_are_not_found,
                continue_as_new_drops_the_old_executions_callbacks,
                refused_commits_open_no_callbacks,
            ]
            claims [
                long_journals_come_along_or_are_left_to_read,
                warm_journals_are_left_unread,
                commit_claims_its_new_tasks,
                claims_never_exceed_the_new_tasks,
                completion_claims_a_free_turn,
                completion_does_not_claim_a_leased_turn,
                creation_claims_the_first_turn,
                claims_in_a_batch_come_after_every_result,
            ]
            sends [
                a_sent_message_may_claim_a_free_turn,
                a_sent_message_claims_no_held_turn,
                a_sent_message_claims_nothing_for_others_or_for_later,
                a_sent_message_claims_no_turn_that_needs_admission,
                a_claiming_send_is_refused_as_a_send_is,
            ]
            direct [
                a_direct_turn_delivers_a_held_result_in_one_commit,
                a_direct_turn_is_refused_while_a_turn_holds_the_instance,
                a_direct_turn_is_refused_after_another_commit,
                a_direct_turn_needs_its_task_and_the_last_commit,
                a_direct_checkpoint_takes_the_lease,
                a_direct_turn_leaves_the_inbox_for_the_next_turn,
            ]
            admin [
                list_filters_by_status_and_name,
                list_filters_by_queue,
                list_pages_with_a_cursor,
                list_limit_defaults_to_100,
                purge_refuses_running_and_deletes_finished,
                next_due_reports_the_earliest_future_work,
                next_due_spans_every_queue_and_priority,
                stats_count_instances_messages_and_tasks,
                notifier_wakes_waiters,
                a_message_to_an_instance_already_due_wakes_turns,
                notifier_wakes_the_watchers_of_a_finished_instance,
                checkpoint_keeps_everything_and_the_store_goes_on,
            ]
            management [
                list_filters_by_creation_and_update_time,
                time_ranged_listings_come_in_time_order,
                purge_finished_takes_only_finished_instances_a_batch_at_a_time,
                queue_depths_count_the_work_of_each_queue,
                describe_reports_the_journal_length_and_last_event_time,
                the_started_version_is_kept_with_the_instance,
            ]
            queues [
                fetch_turns_takes_only_the_served_queues,
                fetch_turns_takes_only_the_served_workflows,
                fetch_tasks_takes_only_the_served_queues_and_activities,
                order_within_a_queue_is_unchanged,
                completion_claims_only_a_served_turn,
                queues_survive_continue_as_new_and_reach_children,
            ]
            queue_events [
                the_first_emit_wins,
                an_await_of_an_emitted_event_is_answered_at_once,
                one_emit_wakes_a_thousand_waiters,
                emits_stay_in_their_queue,
                waiters_of_finished_instances_are_gone,
                refused_commits_emit_and_await_nothing,
                concurrent_emits_and_awaits_never_miss_each_other,
                cancelled_awaits_lose_their_waiters,
            ]
            flow_control [
                higher_priority_is_leased_first,
                queue_concurrency_holds_under_concurrent_fetchers,
                key_concurrency_holds_under_concurrent_fetchers,
                keys_hold_back_only_their_own_key_and_queue,
                a_full_key_does_not_hide_other_keys_behind_it,
                rate_limit_admits_so_many_per_window,
                a_new_limit_counts_what_its_queue_admitted_before_it,
                limits_do_not_hold_back_running_turns,
                creation_claims_no_first_turn_that_needs_admission,
                a_batch_of_creations_claims_no_first_turn_that_needs_admission,
                configure_queue_upserts,
                task_concurrency_holds_under_concurrent_fetchers,
                task_limits_hold_back_only_their_queue,
                claims_take_no_task_of_a_limited_queue,
                an_expired_task_lease_frees_its_slot,
            ]
            feed [
                records_appear_with_their_commit,
                a_refused_commit_appends_nothing,
                reads_start_after_a_position_and_filter_by_prefix,
                records_derived_again_are_appended_once,
                a_purged_instance_starts_afresh,
                cursors_are_kept_and_never_move_backwards,
                concurrent_writers_and_a_reader_see_everything_once,
            ]
            registry [
                announcements_are_listed_in_order,
                announcing_again_keeps_the_latest_time,
                invalid_announcements_record_nothing,
                a_workflow_keeps_the_version_of_its_latest_announcement,
            ]
        }
    };
    (@emit ($factory:expr) $($module:ident [$($name:ident),* $(,)?])*) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;

                $(
                    #[test]
                    fn $name() {
                        $crate::conformance::__run(
                            async { $factory.await },
                            $crate::conformance::$module::$name,
                        );
                    }
                )*
            }
        )*
    };
    (@names () $($module:ident [$($name:ident),* $(,)?])*) => {
        &[$($(concat!(stringify!($module), "::", stringify!($name)),)*)*]
    };
    ($factory:expr $(,)?) => {
        $crate::conformance_tests! { @suite emit ($factory) }
    };
}

/// The names of the suite's tests (`module::function`), as [`conformance_tests!`] runs them.
///
/// [`conformance_tests!`]: crate::conformance_tests
pub const TESTS: &[&str] = crate::conformance_tests! { @suite names () };

// ---- fixtures shared by the suite ----

/// `T0` moved by `ms` milliseconds.
pub(crate) fn at(ms: i64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

/// A payload holding `value`.
pub(crate) fn payload<T: Serialize>(value: T) -> Payload {
    Payload::encode(&value).unwrap()
}

/// A failure with `message`.
pub(crate) fn failure(message: &str) -> Failure {
    Failure::new(FailureKind::Application, message)
}

/// The start of an execution (input `seq`): the first event of every journal.
pub(crate) fn started(seq: u32) -> Event {
    Event {
        at: T0,
        kind: EventKind::WorkflowStarted {
            name: "wf".into(),
            input: payload(seq),
            parent: None,
            headers: Default::default(),
            retry: None,
            version: None,
        },
    }
}

/// A delivered event (a step's result) for operation `seq`, for any journal position but the
/// first.
pub(crate) fn event(seq: u32) -> Event {
    Event {
        at: T0,
        kind: EventKind::StepCompleted {
            op: OpId::new(None, seq),
            output: payload(seq),
        },
    }
}

/// Instance `id` of workflow `name`, created at `T0`.
pub(crate) fn new_instance(id: &str, name: &str) -> NewInstance {
    NewInstance {
        id: id.to_owned(),
        name: name.to_owned(),
        input: payload(format!("input of {id}")),
        parent: None,
        queue: "default".into(),
        created_at: T0,
        start_at: None,
        options: Default::default(),
    }
}

/// A parent link to operation `seq` of execution 1 of `parent`.
pub(crate) fn parent_link(parent: &str, seq: u32) -> ParentLink {
    ParentLink {
        instance_id: parent.to_owned(),
        execution: 1,
        op: OpId::new(None, seq),
    }
}

/// An external event `name` for `id`, visible at `visible_at`.
pub(crate) fn user_event(id: &str, name: &str, visible_at: Timestamp) -> NewMessage {
    NewMessage {
        instance_id: id.to_owned(),
        kind: MessageKind::Event {
            name: name.to_owned(),
            data: payload(name),
        },
        visible_at,
    }
}

/// The name of an external event message, `None` for other kinds.
pub(crate) fn event_name(kind: &MessageKind) -> Option<&str> {
    match kind {
        MessageKind::Event { name, .. } => Some(name),
        _ => None,
    }
}

/// An activity task for operation `seq` of execution 1 of `id`, scheduled at `scheduled_at`.
pub(crate) fn new_task(id: &str, seq: u32, scheduled_at: Timestamp) -> NewTask {
    NewTask {
        instance_id: id.to_owned(),
        execution: 1,
        op: OpId::new(None, seq),
        name: format!("activity-{seq}"),
        input: payload(seq),
        options: ActivityOptions {
            attempt_timeout: Some(Duration::from_secs(u64::from(seq) + 1)),
            ..ActivityOptions::default()
        },
        scheduled_at,
    }
}

/// A commit of `work` that consumes all its messages and changes nothing else (status Running;
/// a cached journal's length is the caller's to know, so tests that cache set `journal_base`).
pub(crate) fn commit_of(work: &TurnWork, now: Timestamp) -> TurnCommit {
    TurnCommit::consuming(work, now)
}

/// Starts instance `id` with tasks for operations 1 and 2 and leases both, in that order.
pub(crate) async fn two_leased_tasks(
    store: &dyn Store,
    id: &str,
) -> (crate::TaskWork, crate::TaskWork) {
    start(store, id, vec![new_task(id, 1, T0), new_task(id, 2, T0)]).await;
    let mut tasks = store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 2, "both tasks of {id} are leased");
    tasks.sort_by_key(|t| t.op != OpId::new(None, 1));
    let second = tasks.pop().unwrap();
    let first = tasks.pop().unwrap();
    (first, second)
}

/// Creates instance `id` (workflow `wf`) and leases its first turn at `T0`.
pub(crate) async fn first_turn(store: &dyn Store, id: &str) -> TurnWork {
    store.create_instance(new_instance(id, "wf")).await.unwrap();
    turn_of(store, id, T0).await
}

/// Commits one turn and returns its own result.
pub(crate) async fn commit(store: &dyn Store, commit: TurnCommit) -> StoreResult<()> {
    let mut results = store
        .commit_turns(vec![commit])
        .await
        .expect("commit_turns reaches the store");
    assert_eq!(results.len(), 1, "one result per commit");
    results.remove(0).map(|_| ())
}

/// The length of a fetched turn's journal (which the suite never caches).
pub(crate) fn journal_len(work: &TurnWork) -> usize {
    match &work.journal {
        Ok(Journal::Events(events)) => events.len(),
        other => panic!("the suite passes no journal cache, so the journal is read: {other:?}"),
    }
}

/// Fetches the turn of instance `id` (in the default queue) at `now`; other instances fetched
/// along with it are abandoned, fetchable again at once.
pub(crate) async fn turn_of(store: &dyn Store, id: &str, now: Timestamp) -> TurnWork {
    turn_in(store, id, &crate::FetchFilter::default(), now).await
}

/// Fetches the turn of instance `id` through `filter` at `now`, as [`turn_of`] does.
pub(crate) async fn turn_in(
    store: &dyn Store,
    id: &str,
    filter: &crate::FetchFilter,
    now: Timestamp,
) -> TurnWork {
    let fetched = store
        .fetch_turns(filter, now, 1000, LEASE, None)
        .await
        .unwrap();
    let mut found = None;
    for work in fetched {
        if work.instance.id == id {
            found = Some(work);
        } else {
            store
                .abandon_turn(&work.instance.id, work.token, now)
                .await
                .unwrap();
        }
    }
    found.unwrap_or_else(|| panic!("instance {id:?} should have a turn at {now}"))
}

/// Creates instance `id` and runs its first turn at `T0` (status Running, empty inbox), with
/// `tasks` scheduled by it.
pub(crate) async fn start(store: &dyn Store, id: &str, tasks: Vec<NewTask>) {
    store.create_instance(new_instance(id, "wf")).await.unwrap();
    let work = turn_of(store, id, T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = tasks;
    commit(store, c).await.unwrap();
}

/// Sends `id` a message and finishes it in the resulting turn at `now` with `status`.
pub(crate) async fn finish(store: &dyn Store, id: &str, now: Timestamp, status: InstanceStatus) {
    store.send(user_event(id, "finish", now)).await.unwrap();
    let work = turn_of(store, id, now).await;
    let mut c = commit_of(&work, now);
    c.status = status;
    if status == InstanceStatus::Completed {
        c.output = Some(payload("done"));
    } else {
        c.failure = Some(failure("it ended"));
    }
    commit(store, c).await.unwrap();
}

/// Asserts that `result` is a `LeaseLost` refusal.
pub(crate) fn assert_lease_lost<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(crate::error::StoreError::LeaseLost { .. }) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// The number of instances with `status` (missing counts as zero).
pub(crate) fn count(stats: &StoreStats, status: InstanceStatus) -> u64 {
    stats
        .instances
        .iter()
        .filter(|(s, _)| *s == status)
        .map(|(_, n)| n)
        .sum()
}

/// Whether an enabled `Notified` future has fired, without waiting (for stores' own tests of
/// their wakeups too).
pub fn fired<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
    crate::notify::fired(future)
}

#[cfg(test)]
mod tests {
    use super::TESTS;

    /// Every `pub async fn` in the suite's modules is run by `conformance_tests!`.
    #[test]
    fn the_macro_runs_every_suite_function() {
        let sources = [
            ("instances", include_str!("instances.rs")),
            ("turns", include_str!("turns.rs")),
            ("tasks", include_str!("tasks.rs")),
            ("heartbeats", include_str!("heartbeats.rs")),
            ("admin", include_str!("admin.rs")),
            ("management", include_str!("management.rs")),
            ("claims", include_str!("claims.rs")),
            ("sends", include_str!("sends.rs")),
            ("direct", include_str!("direct.rs")),
            ("checkpoints", include_str!("checkpoints.rs")),
            ("callbacks", include_str!("callbacks.rs")),
            ("queues", include_str!("queues.rs")),
            ("queue_events", include_str!("queue_events.rs")),
            ("flow_control", include_str!("flow_control.rs")),
            ("feed", include_str!("feed.rs")),
            ("registry", include_str!("registry.rs")),
        ];
        let mut defined = Vec::new();
        for (module, source) in sources {
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split('(').next().unwrap_or(rest);
                    defined.push(format!("{module}::{name}"));
                }
            }
        }
        for name in &defined {
            assert!(
                TESTS.contains(&name.as_str()),
                "{name} is not in conformance_tests!"
            );
        }
        assert_eq!(
            defined.len(),
            TESTS.len(),
            "conformance_tests! lists a missing function"
        );
    }
}
