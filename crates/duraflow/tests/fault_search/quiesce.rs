//! The quiescent phase: no more faults; everything an instance can wait for is made to happen
//! (an event raised for every wait, the clock moved to every timer and retry, activities left
//! to run) until every instance has finished, or the deadline passes.

use std::collections::HashSet;
use std::time::Duration;

use duraflow::{Clock, EventKind, InstanceInfo, InstanceStatus, ListFilter, Store};

use crate::harness::chaos::raise_on;
use crate::harness::world::{World, LEASE};

/// The longest the phase may take (real time) before the instances still running are
/// reported. Only a failing run waits this long.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Every instance in the store, paged.
pub(crate) async fn all_instances(store: &dyn Store) -> Vec<InstanceInfo> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(ListFilter {
                statuses: Vec::new(),
                name: None,
                limit: 1_000,
                after,
            })
            .await
            .unwrap_or_else(|e| panic!("listing the instances: {e}"));
        out.extend(page.instances);
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

/// Runs the phase; returns a violation for each instance that did not finish.
pub(crate) async fn run(world: &mut World) -> Vec<String> {
    for live in world.slots.iter().flatten() {
        live.store.disarm();
    }
    world.reap().await;
    world.note("quiescent phase");
    world.expire_leases();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // The waits an event was raised for: (instance, execution, how many waits it had begun).
    let mut answered: HashSet<(String, u32, usize)> = HashSet::new();
    loop {
        let open: Vec<InstanceInfo> = all_instances(world.observer.as_ref())
            .await
            .into_iter()
            .filter(|i| !i.status.is_terminal())
            .collect();
        if open.is_empty() {
            return Vec::new();
        }
        if tokio::time::Instant::now() >= deadline {
            let mut violations = Vec::new();
            for info in &open {
                violations.push(stranded(world.observer.as_ref(), info).await);
            }
            return violations;
        }
        for info in &open {
            let journal = world
                .observer
                .journal(&info.id, Some(info.execution))
                .await
                .unwrap_or_default();
            let count = |f: fn(&EventKind) -> bool| journal.iter().filter(|e| f(&e.kind)).count();
            let waits = count(|k| matches!(k, EventKind::EventWaitStarted { .. }));
            let raised = count(|k| matches!(k, EventKind::EventRaised { .. }));
            if waits > raised && answered.insert((info.id.clone(), info.execution, waits)) {
                raise_on(world, &info.id).await;
            }
        }
        // Fire the next timer or retry; leases of the running engines are left alone.
        let now = world.clock.now();
        if let Ok(due) = world.observer.next_due(now).await {
            if let Some(at) = due.turn.into_iter().chain(due.task).min() {
                if at <= now.plus(LEASE / 2) {
                    world.clock.set(at);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The violation for an instance that is still running after the phase.
async fn stranded(store: &dyn Store, info: &InstanceInfo) -> String {
    let journal = store
        .journal(&info.id, Some(info.execution))
        .await
        .map(|j| {
            j.iter()
                .map(|e| e.kind.describe())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|e| format!("unreadable: {e}"));
    let status = match info.status {
        InstanceStatus::Pending => "pending",
        _ => "running",
    };
    format!(
        "instance {:?} ({}) is still {status} at execution {} although the quiescent phase made \
         everything it can wait for happen (events raised for its waits, the clock past its \
         timers, retries and leases) for {DEADLINE:?}; its current journal: [{journal}]",
        info.id, info.name, info.execution
    )
}
