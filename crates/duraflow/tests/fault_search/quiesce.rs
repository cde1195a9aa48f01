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

/// Looks in a row without any change in the open instances' journals after which the phase
/// stops waiting for the running engines and moves the clock past their leases too: work a
/// running engine dropped while holding its lease (a result refused by mistake, a turn whose
/// store write failed) comes back only then. Each time is a violation: no store write of a
/// running engine fails in this phase, so nothing should be left to a lease's expiry.
const STALLED: u32 = 200;

/// Every instance in the store, paged.
pub(crate) async fn all_instances(store: &dyn Store) -> Vec<InstanceInfo> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .management()
            .unwrap()
            .list(ListFilter {
                limit: 1_000,
                after,
                ..ListFilter::default()
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

/// Runs the phase; returns a violation for each instance that did not finish and each time
/// the clock had to pass a running engine's lease.
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
    // What the open instances' journals looked like, and for how many looks.
    let mut last_look: Vec<(String, u32, usize, String)> = Vec::new();
    let mut unchanged = 0;
    let mut violations = Vec::new();
    loop {
        let open: Vec<InstanceInfo> = all_instances(world.observer.as_ref())
            .await
            .into_iter()
            .filter(|i| !i.status.is_terminal())
            .collect();
        if open.is_empty() {
            return violations;
        }
        if tokio::time::Instant::now() >= deadline {
            for info in &open {
                violations.push(stranded(world.observer.as_ref(), info).await);
            }
            return violations;
        }
        let mut look = Vec::new();
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
            look.push((
                info.id.clone(),
                info.execution,
                journal.len(),
                journal
                    .last()
                    .map(|e| e.kind.describe())
                    .unwrap_or_default(),
            ));
        }
        if look == last_look {
            unchanged += 1;
        } else {
            unchanged = 0;
            last_look = look;
        }
        // Fire the next timer or retry; leases of the running engines are left alone unless
        // nothing has moved for a while.
        let now = world.clock.now();
        if let Ok(due) = world.observer.next_due(now).await {
            if let Some(at) = due.turn.into_iter().chain(due.task).min() {
                if at <= now.plus(LEASE / 2) {
                    world.clock.set(at);
                } else if unchanged >= STALLED {
                    world.clock.set(at);
                    world.lease_waits += 1;
                    unchanged = 0;
                    let waiting: Vec<String> = last_look
                        .iter()
                        .map(|(id, execution, _, last)| format!("{id}/{execution} at {last}"))
                        .collect();
                    let stall = format!(
                        "no progress in {STALLED} looks of the quiescent phase: the clock had to \
                         move {:?} on, past a running engine's lease, for work it held to go on \
                         (turns due {:?}, tasks due {:?}; open: {})",
                        at.since(now),
                        due.turn.map(|t| t.since(now)),
                        due.task.map(|t| t.since(now)),
                        waiting.join(", ")
                    );
                    world.note(stall.clone());
                    violations.push(stall);
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
