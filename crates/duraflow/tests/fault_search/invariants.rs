//! The checks at the end of a run: journals well formed and replayable, results recorded
//! once, and every event the search raised accounted for.

use std::collections::{BTreeMap, HashMap, HashSet};

use duraflow::{
    check_replay, Event, EventKind, InstanceInfo, InstanceStatus, OpId, Outcome, Payload,
};

use crate::harness::ledger::Raised;
use crate::harness::quiesce::all_instances;
use crate::harness::shapes::Shape;
use crate::harness::world::World;

/// Where an event the search raised shows up: (instance, execution) per `event_raised`.
type Sightings = HashMap<u64, Vec<(String, u32)>>;

/// What the checks found at the end of a run.
pub(crate) struct Findings {
    /// How many instances the store holds.
    pub(crate) instances: usize,
    /// Every violation.
    pub(crate) violations: Vec<String>,
    /// The journals of the instances the violations name, described.
    pub(crate) journals: Vec<String>,
}

/// Checks the store at the end of a run.
pub(crate) async fn check(world: &World) -> Findings {
    let store = world.observer.as_ref();
    let mut violations = Vec::new();
    let instances = all_instances(store).await;
    let by_id: HashMap<&str, &InstanceInfo> =
        instances.iter().map(|i| (i.id.as_str(), i)).collect();
    for (id, _) in &world.ledger.started {
        if !by_id.contains_key(id.as_str()) {
            violations.push(format!(
                "instance {id:?} was started but is not in the store"
            ));
        }
    }
    let mut sightings = Sightings::new();
    // (instance, execution, event) for the events an execution carried over to the next.
    let mut carried: HashSet<(String, u32, u64)> = HashSet::new();
    // What each parent's journal says its children returned: (where, child, output or None
    // for a failure).
    let mut child_results: Vec<(String, String, Option<Payload>)> = Vec::new();
    // Every journal, described, to show with the violations that name its instance.
    let mut journals: Vec<(String, u32, String)> = Vec::new();
    for info in &instances {
        let Some(shape) = Shape::from_name(&info.name) else {
            violations.push(format!(
                "instance {:?} runs {:?}, which the search never starts",
                info.id, info.name
            ));
            continue;
        };
        if let Some(parent) = &info.parent {
            if !by_id.contains_key(parent.instance_id.as_str()) {
                violations.push(format!(
                    "instance {:?} reports to {:?}, which is not in the store",
                    info.id, parent.instance_id
                ));
            }
        }
        for execution in 1..=info.execution {
            let at = format!("instance {:?} execution {execution}", info.id);
            let journal = match store.journal(&info.id, Some(execution)).await {
                Ok(journal) => journal,
                Err(e) => {
                    violations.push(format!("{at}: the journal cannot be read: {e}"));
                    continue;
                }
            };
            journals.push((info.id.clone(), execution, describe_with_events(&journal)));
            let current = execution == info.execution;
            let problems = well_formed(&journal, info, current);
            violations.extend(problems.iter().map(|p| format!("{at}: {p}")));
            let mut children: HashMap<&OpId, &str> = HashMap::new();
            for event in &journal {
                match &event.kind {
                    EventKind::EventRaised { name, data, .. } => match data.decode::<u64>() {
                        Ok(seq) => sightings
                            .entry(seq)
                            .or_default()
                            .push((info.id.clone(), execution)),
                        Err(_) => violations.push(format!(
                            "{at}: event {name:?} carries {}, which the search never raised",
                            data.as_json()
                        )),
                    },
                    EventKind::ChildStarted {
                        op, instance_id, ..
                    } => {
                        children.insert(op, instance_id);
                    }
                    EventKind::ChildCompleted { op, output } => {
                        if let Some(child) = children.get(op) {
                            child_results.push((
                                at.clone(),
                                (*child).to_owned(),
                                Some(output.clone()),
                            ));
                        }
                    }
                    EventKind::ChildFailed { op, .. } => {
                        if let Some(child) = children.get(op) {
                            child_results.push((at.clone(), (*child).to_owned(), None));
                        }
                    }
                    _ => {}
                }
            }
            if !problems.is_empty() {
                continue;
            }
            let report = check_replay(shape.workflow(), &info.id, execution, journal.clone());
            if !report.new_events.is_empty() {
                violations.push(format!(
                    "{at}: replaying the journal issues operations it does not hold: {}",
                    describe(&report.new_events)
                ));
            }
            if !outcome_matches(journal.last(), report.outcome.as_ref()) {
                violations.push(format!(
                    "{at}: the journal ends with {} but replaying it ends with {:?}",
                    journal
                        .last()
                        .map_or("nothing".into(), |e| e.kind.describe()),
                    report.outcome
                ));
            }
            if let Some(Outcome::ContinuedAsNew { carried_events, .. }) = &report.outcome {
                for (_, data) in carried_events {
                    if let Ok(seq) = data.decode::<u64>() {
                        carried.insert((info.id.clone(), execution, seq));
                    }
                }
            }
        }
    }
    for (at, child, output) in &child_results {
        violations.extend(child_result(
            at,
            child,
            output.as_ref(),
            by_id.get(child.as_str()).copied(),
        ));
    }
    for raised in &world.ledger.raised {
        let seen = sightings.remove(&raised.seq).unwrap_or_default();
        let info = by_id.get(raised.instance.as_str()).copied();
        violations.extend(account(raised, &seen, info, &carried));
    }
    for (seq, seen) in sightings {
        violations.push(format!(
            "event #{seq} was delivered ({seen:?}) but the search never raised it"
        ));
    }
    let named: Vec<String> = journals
        .into_iter()
        .filter(|(id, _, _)| {
            let quoted = format!("{id:?}");
            violations.iter().any(|v| v.contains(&quoted))
        })
        .map(|(id, execution, journal)| {
            format!("journal of {id:?} execution {execution}: [{journal}]")
        })
        .collect();
    Findings {
        instances: instances.len(),
        violations,
        journals: named,
    }
}

/// A journal's events, with the number each raised event carries and each event's time.
fn describe_with_events(journal: &[Event]) -> String {
    journal
        .iter()
        .enumerate()
        .map(|(at, e)| match &e.kind {
            EventKind::EventRaised { data, .. } => {
                format!(
                    "{at}: event_raised #{} @{}",
                    data.as_json(),
                    e.at.as_millis()
                )
            }
            kind => format!("{at}: {} @{}", kind.describe(), e.at.as_millis()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The violation, if the result a parent recorded for `child` is not the child's own.
fn child_result(
    at: &str,
    child: &str,
    output: Option<&Payload>,
    info: Option<&InstanceInfo>,
) -> Option<String> {
    let status = info.map(|i| i.status);
    let agrees = match output {
        Some(output) => {
            status == Some(InstanceStatus::Completed)
                && info.and_then(|i| i.output.as_ref()) == Some(output)
        }
        // A failure also stands for a child that could not be started.
        None => !matches!(status, Some(InstanceStatus::Completed)),
    };
    (!agrees).then(|| {
        format!(
            "{at}: the parent recorded {} for child {child:?}, which is {:?} with output {:?}",
            output.map_or("a failure".into(), |o| format!(
                "the output {}",
                o.as_json()
            )),
            status,
            info.and_then(|i| i.output.as_ref())
                .map(|o| o.as_json().to_owned())
        )
    })
}

fn describe(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| e.kind.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a journal's last event says about how its execution ended, against the status.
fn terminal_matches(status: InstanceStatus, last: &EventKind) -> bool {
    matches!(
        (status, last),
        (
            InstanceStatus::Completed,
            EventKind::WorkflowCompleted { .. }
        ) | (InstanceStatus::Failed, EventKind::WorkflowFailed { .. })
            | (InstanceStatus::Cancelled, EventKind::CancelRequested { .. })
            | (
                InstanceStatus::Terminated,
                EventKind::TerminateRequested { .. }
            )
    )
}

/// The journal's problems: it begins with its one `workflow_started`, has at most one
/// terminal event and that one last (a `continued_as_new` for every execution but the
/// current one, the one the status names for a finished instance, none for a running one),
/// issues each operation once, and records each result once, for an operation of its kind
/// issued before it.
fn well_formed(journal: &[Event], info: &InstanceInfo, current: bool) -> Vec<String> {
    let mut problems = Vec::new();
    match journal.first().map(|e| &e.kind) {
        Some(EventKind::WorkflowStarted { name, .. }) if *name == info.name => {}
        Some(other) => problems.push(format!(
            "the journal begins with {} instead of workflow_started {:?}: [{}]",
            other.describe(),
            info.name,
            describe(journal)
        )),
        None if current && !info.status.is_terminal() => {}
        None => problems.push("the journal is empty".into()),
    }
    let starts = journal
        .iter()
        .filter(|e| matches!(e.kind, EventKind::WorkflowStarted { .. }))
        .count();
    if starts > 1 {
        problems.push(format!("workflow_started appears {starts} times"));
    }
    let terminals: Vec<usize> = (0..journal.len())
        .filter(|i| journal[*i].kind.is_terminal())
        .collect();
    if terminals.len() > 1 {
        problems.push(format!(
            "{} terminal events (at {terminals:?}): [{}]",
            terminals.len(),
            describe(journal)
        ));
    } else if let Some(&at) = terminals.first() {
        if at + 1 != journal.len() {
            problems.push(format!(
                "the terminal event {} at {at} is not last: [{}]",
                journal[at].kind.describe(),
                describe(journal)
            ));
        }
    }
    let last = journal.last().map(|e| &e.kind);
    if !current {
        if !matches!(last, Some(EventKind::ContinuedAsNew { .. })) {
            problems.push(format!(
                "a later execution exists but this one does not end with continued_as_new: [{}]",
                describe(journal)
            ));
        }
    } else if info.status.is_terminal() {
        if !last.is_some_and(|k| terminal_matches(info.status, k)) {
            problems.push(format!(
                "the instance is {:?} but its journal ends with {}",
                info.status,
                last.map_or("nothing".into(), |k| k.describe())
            ));
        }
    } else if let Some(&at) = terminals.first() {
        problems.push(format!(
            "the instance is {:?} but its journal holds the terminal event {} at {at}",
            info.status,
            journal[at].kind.describe()
        ));
    }
    problems.extend(operations(journal));
    problems
}

/// The kind of operation an event issues or answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Activity,
    Timer,
    Step,
    EventWait,
    Child { detached: bool },
}

/// Each operation issued once; each result answers an earlier operation of its kind, once.
fn operations(journal: &[Event]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut issued: BTreeMap<OpId, Op> = BTreeMap::new();
    let mut answered: HashSet<OpId> = HashSet::new();
    for (at, event) in journal.iter().enumerate() {
        let kind = &event.kind;
        let Some(op) = kind.op() else { continue };
        let issues = match kind {
            EventKind::ActivityScheduled { .. } => Some(Op::Activity),
            EventKind::TimerCreated { .. } => Some(Op::Timer),
            EventKind::StepStarted { .. } => Some(Op::Step),
            EventKind::EventWaitStarted { .. } => Some(Op::EventWait),
            EventKind::ChildStarted { detached, .. } => Some(Op::Child {
                detached: *detached,
            }),
            _ => None,
        };
        if let Some(what) = issues {
            if issued.insert(op.clone(), what).is_some() {
                problems.push(format!("operation {op} is issued twice ({kind} at {at})"));
            }
            continue;
        }
        let answers = match kind {
            EventKind::ActivityCompleted { .. } | EventKind::ActivityFailed { .. } => Op::Activity,
            EventKind::TimerFired { .. } => Op::Timer,
            EventKind::StepCompleted { .. } | EventKind::StepFailed { .. } => Op::Step,
            _ => Op::Child { detached: false },
        };
        match issued.get(op) {
            Some(what) if *what == answers => {}
            Some(what) => problems.push(format!(
                "{kind} at {at} answers operation {op}, which is a {what:?}"
            )),
            None => problems.push(format!(
                "{kind} at {at} answers operation {op}, which was not issued before it"
            )),
        }
        if !answered.insert(op.clone()) {
            problems.push(format!(
                "a result for operation {op} is recorded twice ({kind} at {at})"
            ));
        }
    }
    problems
}

/// Whether the replayed outcome is the one the journal's last event records.
fn outcome_matches(last: Option<&Event>, outcome: Option<&Outcome>) -> bool {
    match (last.map(|e| &e.kind), outcome) {
        (Some(EventKind::WorkflowCompleted { output }), Some(Outcome::Completed(o))) => o == output,
        (Some(EventKind::WorkflowFailed { .. }), Some(Outcome::Failed(_))) => true,
        (
            Some(EventKind::ContinuedAsNew { input }),
            Some(Outcome::ContinuedAsNew { input: i, .. }),
        ) => i == input,
        (Some(EventKind::CancelRequested { .. }), Some(Outcome::Cancelled(_))) => true,
        (Some(EventKind::TerminateRequested { .. }), Some(Outcome::Terminated(_))) => true,
        (Some(k), None) => !k.is_terminal(),
        (None, None) => true,
        _ => false,
    }
}

/// The violations of one raised event's accounting.
///
/// A refused event (its sender got an error) is never delivered. An accepted one is delivered
/// to its instance: in one execution's journal, once, and again in the next execution's only
/// when the execution before carried it over untaken (continue-as-new), and never carried
/// over into nothing. An accepted event that no journal shows is acceptable only on a
/// finished instance: an instance that finishes drops its inbox, and an event raised before
/// the finishing turn committed may have been waiting there.
fn account(
    raised: &Raised,
    seen: &[(String, u32)],
    info: Option<&InstanceInfo>,
    carried: &HashSet<(String, u32, u64)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let seq = raised.seq;
    let id = &raised.instance;
    if let Some((other, execution)) = seen.iter().find(|(i, _)| i != id) {
        problems.push(format!(
            "event #{seq} raised on {id:?} was delivered to {other:?} (execution {execution})"
        ));
    }
    if let Err(error) = &raised.outcome {
        if !seen.is_empty() {
            problems.push(format!(
                "event #{seq} on {id:?} was refused to its sender ({error}) but delivered: \
                 {seen:?}"
            ));
        }
        return problems;
    }
    let mut executions: Vec<u32> = seen.iter().map(|(_, e)| *e).collect();
    executions.sort_unstable();
    for pair in executions.windows(2) {
        if pair[0] == pair[1] {
            problems.push(format!(
                "event #{seq} on {id:?} is delivered twice in execution {}",
                pair[0]
            ));
        } else if pair[1] != pair[0] + 1 {
            problems.push(format!(
                "event #{seq} on {id:?} is delivered in executions {} and {} but not between",
                pair[0], pair[1]
            ));
        }
    }
    executions.dedup();
    let Some(info) = info else {
        return problems;
    };
    let Some(&last) = executions.last() else {
        if !info.status.is_terminal() {
            problems.push(format!(
                "event #{seq} was accepted for {id:?}, which is still {:?} at execution {}, \
                 but no journal holds it",
                info.status, info.execution
            ));
        }
        return problems;
    };
    for &execution in &executions[..executions.len() - 1] {
        if !carried.contains(&(id.clone(), execution, seq)) {
            problems.push(format!(
                "event #{seq} on {id:?} was taken in execution {execution} and delivered again \
                 in execution {}",
                execution + 1
            ));
        }
    }
    if last < info.execution && carried.contains(&(id.clone(), last, seq)) {
        problems.push(format!(
            "event #{seq} on {id:?} was carried over from execution {last} but execution {} \
             never received it",
            last + 1
        ));
    }
    problems
}

/// The checks themselves must catch what they are for: each is shown a journal or an event
/// history with the fault it looks for.
#[cfg(test)]
mod tests {
    use duraflow::{ActivityOptions, Timestamp};

    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            at: Timestamp(0),
            kind,
        }
    }

    fn info(status: InstanceStatus, execution: u32) -> InstanceInfo {
        InstanceInfo {
            id: "i".into(),
            name: "looper".into(),
            status,
            execution,
            input: Payload::null(),
            output: None,
            failure: None,
            parent: None,
            queue: "default".into(),
            options: Default::default(),
            attempt: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            version: None,
            journal_len: None,
            last_event_at: None,
        }
    }

    fn started() -> Event {
        ev(EventKind::WorkflowStarted {
            name: "looper".into(),
            input: Payload::null(),
            parent: None,
            headers: Default::default(),
            retry: None,
            version: None,
        })
    }

    fn raised(seq: u64) -> Event {
        ev(EventKind::EventRaised {
            name: "e".into(),
            data: Payload::encode(&seq).unwrap(),
            taken_by: None,
        })
    }

    fn op(n: u32) -> OpId {
        OpId::new(None, n)
    }

    fn scheduled(n: u32) -> Event {
        ev(EventKind::ActivityScheduled {
            op: op(n),
            name: "work".into(),
            input: Payload::null(),
            options: Box::new(ActivityOptions::default()),
        })
    }

    fn completed(n: u32) -> Event {
        ev(EventKind::ActivityCompleted {
            op: op(n),
            output: Payload::null(),
        })
    }

    fn done() -> Event {
        ev(EventKind::WorkflowCompleted {
            output: Payload::null(),
        })
    }

    #[test]
    fn a_well_formed_journal_passes() {
        let journal = [started(), scheduled(1), raised(1), completed(1), done()];
        let problems = well_formed(&journal, &info(InstanceStatus::Completed, 1), true);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_journal_that_begins_with_an_event_is_caught() {
        let journal = [raised(1), started()];
        let problems = well_formed(&journal, &info(InstanceStatus::Running, 2), true);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("begins with event_raised"),
            "{problems:?}"
        );
    }

    #[test]
    fn results_recorded_twice_or_for_nothing_are_caught() {
        let twice = [started(), scheduled(1), completed(1), completed(1)];
        let problems = well_formed(&twice, &info(InstanceStatus::Running, 1), true);
        assert!(
            problems.iter().any(|p| p.contains("recorded twice")),
            "{problems:?}"
        );
        let unissued = [started(), completed(1)];
        let problems = well_formed(&unissued, &info(InstanceStatus::Running, 1), true);
        assert!(
            problems.iter().any(|p| p.contains("not issued")),
            "{problems:?}"
        );
        let wrong_kind = [
            started(),
            ev(EventKind::TimerCreated {
                op: op(1),
                fire_at: Timestamp(5),
            }),
            completed(1),
        ];
        let problems = well_formed(&wrong_kind, &info(InstanceStatus::Running, 1), true);
        assert!(problems.iter().any(|p| p.contains("Timer")), "{problems:?}");
    }

    #[test]
    fn terminal_events_out_of_place_are_caught() {
        let not_last = [started(), done(), scheduled(1)];
        let problems = well_formed(&not_last, &info(InstanceStatus::Completed, 1), true);
        assert!(
            problems.iter().any(|p| p.contains("not last")),
            "{problems:?}"
        );
        let running_but_done = [started(), done()];
        let problems = well_formed(&running_but_done, &info(InstanceStatus::Running, 1), true);
        assert!(!problems.is_empty());
        let earlier_not_continued = [started(), done()];
        let problems = well_formed(
            &earlier_not_continued,
            &info(InstanceStatus::Running, 2),
            false,
        );
        assert!(
            problems.iter().any(|p| p.contains("continued_as_new")),
            "{problems:?}"
        );
    }

    fn accepted(seq: u64) -> Raised {
        Raised {
            instance: "i".into(),
            seq,
            outcome: Ok(()),
        }
    }

    #[test]
    fn events_are_accounted_for() {
        let none = HashSet::new();
        let running = info(InstanceStatus::Running, 1);
        let finished = info(InstanceStatus::Completed, 2);
        // Accepted and nowhere: lost on a running instance, dropped with a finished one's inbox.
        assert_eq!(account(&accepted(1), &[], Some(&running), &none).len(), 1);
        assert!(account(&accepted(1), &[], Some(&finished), &none).is_empty());
        // Delivered twice in one execution.
        let twice = [("i".to_owned(), 1), ("i".to_owned(), 1)];
        assert_eq!(
            account(&accepted(1), &twice, Some(&running), &none).len(),
            1
        );
        // Carried over from execution 1 and delivered to 2: fine; not carried: delivered again.
        let both = [("i".to_owned(), 1), ("i".to_owned(), 2)];
        let carried: HashSet<_> = [("i".to_owned(), 1, 1)].into_iter().collect();
        assert!(account(&accepted(1), &both, Some(&finished), &carried).is_empty());
        assert_eq!(
            account(&accepted(1), &both, Some(&finished), &none).len(),
            1
        );
        // Carried over from execution 1 into nothing.
        let first = [("i".to_owned(), 1)];
        assert_eq!(
            account(&accepted(1), &first, Some(&finished), &carried).len(),
            1
        );
        // Refused to its sender, yet delivered.
        let refused = Raised {
            outcome: Err("instance finished".into()),
            ..accepted(1)
        };
        assert_eq!(account(&refused, &first, Some(&finished), &none).len(), 1);
        assert!(account(&refused, &[], Some(&finished), &none).is_empty());
    }
}
