//! The turn planner without I/O: messages in, deliveries out; journal events and outcomes in,
//! tasks, messages, child instances and the instance's end out.

#![allow(clippy::expect_used)] // test helpers: a fixture that does not decode is a broken test

use duraflow_core::plan::{
    deliveries, started_children, unknown_workflow, ExistingInstance, TurnInstance,
};
use duraflow_core::{
    ActivityOptions, Event, EventKind, Failure, FailureKind, MessageKind, NewInstance, NewMessage,
    NewTask, OpId, OpResult, Outcome, ParentLink, Payload, Timestamp, TurnEnd, TurnPlan,
};

fn p(json: &str) -> Payload {
    Payload::from_json(json).expect("valid json")
}

fn op(seq: u32) -> OpId {
    OpId::new(None, seq)
}

fn link(instance: &str, execution: u32, seq: u32) -> ParentLink {
    ParentLink {
        instance_id: instance.to_owned(),
        execution,
        op: op(seq),
    }
}

struct Fixture {
    input: Payload,
    parent: Option<ParentLink>,
    execution: u32,
    options: duraflow_core::InstanceOptions,
}

impl Fixture {
    fn new(execution: u32) -> Self {
        Fixture {
            input: p("\"order-7\""),
            parent: None,
            execution,
            options: Default::default(),
        }
    }

    fn child_of(mut self, parent: ParentLink) -> Self {
        self.parent = Some(parent);
        self
    }

    fn instance(&self) -> TurnInstance<'_> {
        TurnInstance {
            id: "wf-1",
            execution: self.execution,
            name: "fulfil",
            input: &self.input,
            parent: self.parent.as_ref(),
            queue: "default",
            options: &self.options,
        }
    }
}

fn at(ms: i64, kind: EventKind) -> Event {
    Event {
        at: Timestamp(ms),
        kind,
    }
}

fn event(name: &str, data: &str) -> MessageKind {
    MessageKind::Event {
        name: name.to_owned(),
        data: p(data),
    }
}

fn raised(name: &str, data: &str) -> EventKind {
    EventKind::EventRaised {
        name: name.to_owned(),
        data: p(data),
        taken_by: None,
    }
}

fn activity_result(execution: u32, seq: u32, output: &str) -> MessageKind {
    MessageKind::ActivityResult {
        execution,
        op: op(seq),
        result: OpResult::Ok(p(output)),
    }
}

// ---- deliveries ----

#[test]
fn a_turn_that_begins_an_execution_delivers_the_start_first_then_what_it_carried_then_the_inbox() {
    let f = Fixture::new(2).child_of(link("parent", 1, 4));
    let messages = vec![
        // Sent while the previous execution's last turn ran: queued ahead of the start.
        event("late", "1"),
        MessageKind::Start {
            execution: 2,
            carried: vec![
                event("early", "0"),
                MessageKind::Cancel {
                    reason: "stop".into(),
                },
            ],
            retry: None,
        },
        MessageKind::Terminate {
            reason: "now".into(),
        },
    ];
    let delivered = deliveries(f.instance(), true, messages).events;
    assert_eq!(
        delivered,
        vec![
            EventKind::WorkflowStarted {
                name: "fulfil".into(),
                input: p("\"order-7\""),
                parent: Some(Box::new(link("parent", 1, 4))),
                headers: Default::default(),
                retry: None,
                version: None,
            },
            raised("early", "0"),
            EventKind::CancelRequested {
                reason: "stop".into()
            },
            raised("late", "1"),
            EventKind::TerminateRequested {
                reason: "now".into()
            },
        ]
    );
}

#[test]
fn results_for_another_execution_are_taken_but_not_delivered() {
    let f = Fixture::new(3);
    let messages = vec![
        activity_result(2, 1, "\"old\""),
        activity_result(3, 1, "\"new\""),
        MessageKind::TimerFired {
            execution: 2,
            op: op(2),
        },
        MessageKind::TimerFired {
            execution: 3,
            op: op(2),
        },
        MessageKind::ChildResult {
            execution: 1,
            op: op(3),
            result: OpResult::Err(Failure::new(FailureKind::Application, "stale")),
        },
        MessageKind::ChildResult {
            execution: 3,
            op: op(3),
            result: OpResult::Err(Failure::new(FailureKind::Application, "fresh")),
        },
    ];
    let delivered = deliveries(f.instance(), false, messages).events;
    assert_eq!(
        delivered,
        vec![
            EventKind::ActivityCompleted {
                op: op(1),
                output: p("\"new\""),
            },
            EventKind::TimerFired { op: op(2) },
            EventKind::ChildFailed {
                op: op(3),
                failure: Box::new(Failure::new(FailureKind::Application, "fresh")),
            },
        ]
    );
}

#[test]
fn a_start_is_delivered_only_by_the_turn_that_begins_its_execution() {
    let f = Fixture::new(2);
    // An execution that has begun: a start (even its own) is a duplicate, and what it carries
    // was delivered by the turn that began it.
    let again = vec![
        MessageKind::Start {
            execution: 2,
            carried: vec![event("x", "1")],
            retry: None,
        },
        event("y", "2"),
    ];
    assert_eq!(
        deliveries(f.instance(), false, again).events,
        vec![raised("y", "2")]
    );
    // The start of another execution carries nothing into this one.
    let own_start = MessageKind::Start {
        execution: 2,
        carried: Vec::new(),
        retry: None,
    };
    let other = vec![
        MessageKind::Start {
            execution: 1,
            carried: vec![event("x", "1")],
            retry: None,
        },
        own_start.clone(),
    ];
    let d = deliveries(f.instance(), true, other);
    assert!(!d.start_missing);
    assert_eq!(d.events.len(), 1);
    assert!(matches!(d.events[0], EventKind::WorkflowStarted { .. }));
    assert!(!deliveries(f.instance(), false, vec![event("y", "2")]).start_missing);
}

#[test]
fn a_turn_that_begins_without_its_start_is_flagged() {
    let f = Fixture::new(2);
    // Fetched before the start of execution 2 was visible: an event sent after the start's
    // carried one is there, the start (and what it carries) is not.
    let early = vec![event("late", "3")];
    assert!(deliveries(f.instance(), true, early).start_missing);
    // A stale start of an earlier execution is not this execution's start.
    let stale = vec![MessageKind::Start {
        execution: 1,
        carried: vec![event("x", "1")],
        retry: None,
    }];
    assert!(deliveries(f.instance(), true, stale).start_missing);
    let with_start = vec![
        event("late", "3"),
        MessageKind::Start {
            execution: 2,
            carried: vec![event("early", "2")],
            retry: None,
        },
    ];
    let d = deliveries(f.instance(), true, with_start);
    assert!(!d.start_missing);
    assert_eq!(d.events[1..], [raised("early", "2"), raised("late", "3")]);
}

// ---- side effects of issued events ----

#[test]
fn issued_operations_become_tasks_timer_messages_and_child_instances_in_journal_order() {
    let f = Fixture::new(1);
    let options = ActivityOptions::default();
    let events = vec![
        at(
            10,
            EventKind::ActivityScheduled {
                op: op(1),
                name: "charge".into(),
                input: p("5"),
                options: Box::new(options.clone()),
            },
        ),
        at(
            11,
            EventKind::TimerCreated {
                op: op(2),
                fire_at: Timestamp(60_011),
            },
        ),
        at(
            12,
            EventKind::ChildStarted {
                op: op(3),
                name: "ship".into(),
                instance_id: "wf-1-ship".into(),
                input: p("null"),
                detached: false,
                queue: None,
            },
        ),
        at(
            13,
            EventKind::ChildStarted {
                op: op(4),
                name: "audit".into(),
                instance_id: "audit-1".into(),
                input: p("null"),
                detached: true,
                queue: None,
            },
        ),
        at(14, raised("ignored", "0")),
    ];
    assert_eq!(
        started_children(&events).collect::<Vec<_>>(),
        vec!["wf-1-ship", "audit-1"]
    );
    let mut plan = TurnPlan::new();
    plan.schedule(f.instance(), &events, &[]);
    assert_eq!(
        plan.tasks,
        vec![NewTask {
            instance_id: "wf-1".into(),
            execution: 1,
            op: op(1),
            name: "charge".into(),
            input: p("5"),
            options,
            scheduled_at: Timestamp(10),
        }]
    );
    assert_eq!(
        plan.messages,
        vec![NewMessage {
            instance_id: "wf-1".into(),
            kind: MessageKind::TimerFired {
                execution: 1,
                op: op(2),
            },
            visible_at: Timestamp(60_011),
        }]
    );
    assert_eq!(
        plan.instances,
        vec![
            NewInstance {
                id: "wf-1-ship".into(),
                name: "ship".into(),
                input: p("null"),
                parent: Some(link("wf-1", 1, 3)),
                queue: "default".into(),
                created_at: Timestamp(12),
                start_at: None,
                options: Default::default(),
            },
            NewInstance {
                id: "audit-1".into(),
                name: "audit".into(),
                input: p("null"),
                parent: None,
                queue: "default".into(),
                created_at: Timestamp(13),
                start_at: None,
                options: Default::default(),
            },
        ]
    );
    assert_eq!(plan.end, TurnEnd::Running);
}

#[test]
fn a_child_id_taken_by_another_instance_fails_the_child_at_once() {
    let f = Fixture::new(1);
    let events = vec![
        at(
            20,
            EventKind::ChildStarted {
                op: op(1),
                name: "ship".into(),
                instance_id: "taken".into(),
                input: p("null"),
                detached: false,
                queue: None,
            },
        ),
        at(
            21,
            EventKind::ChildStarted {
                op: op(2),
                name: "audit".into(),
                instance_id: "taken-too".into(),
                input: p("null"),
                detached: true,
                queue: None,
            },
        ),
        // The same child, created by an earlier attempt at this turn: left as it is.
        at(
            22,
            EventKind::ChildStarted {
                op: op(3),
                name: "ship".into(),
                instance_id: "mine".into(),
                input: p("null"),
                detached: false,
                queue: None,
            },
        ),
    ];
    let existing = [
        ExistingInstance {
            id: "taken".into(),
            parent: None,
        },
        ExistingInstance {
            id: "taken-too".into(),
            parent: Some(link("someone-else", 1, 1)),
        },
        ExistingInstance {
            id: "mine".into(),
            parent: Some(link("wf-1", 1, 3)),
        },
    ];
    let mut plan = TurnPlan::new();
    plan.schedule(f.instance(), &events, &existing);
    // The attached child's parent hears of it; the detached one has no parent to tell.
    assert_eq!(plan.messages.len(), 1);
    let refusal = &plan.messages[0];
    assert_eq!(refusal.instance_id, "wf-1");
    assert_eq!(refusal.visible_at, Timestamp(20));
    let MessageKind::ChildResult {
        execution: 1,
        op: refused_op,
        result: OpResult::Err(failure),
    } = &refusal.kind
    else {
        panic!("expected a failed child result, got {:?}", refusal.kind);
    };
    assert_eq!(*refused_op, op(1));
    assert_eq!(failure.kind, FailureKind::Application);
    assert!(failure.message.contains("\"taken\" is already in use"));
    assert_eq!(
        plan.instances
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        vec!["mine"]
    );
}

// ---- the end of an execution ----

fn end(f: &Fixture, outcome: Option<Outcome>, open_children: &[&str]) -> TurnPlan {
    let mut plan = TurnPlan::new();
    plan.end(
        f.instance(),
        outcome,
        None,
        open_children.iter().map(|c| (*c).to_owned()).collect(),
        std::iter::empty(),
        Timestamp(500),
    );
    plan
}

#[test]
fn an_execution_that_goes_on_writes_nothing_more() {
    let plan = end(&Fixture::new(1), None, &["child"]);
    assert_eq!(plan, TurnPlan::new());
    assert!(!plan.end.is_finished());
}

#[test]
fn a_completed_child_reports_to_its_parent_and_cancels_its_own_open_children() {
    let f = Fixture::new(1).child_of(link("parent", 2, 7));
    let plan = end(&f, Some(Outcome::Completed(p("42"))), &["c1", "c2"]);
    assert_eq!(plan.end, TurnEnd::Completed(p("42")));
    assert!(plan.end.is_finished());
    let cancel = MessageKind::Cancel {
        reason: "the parent workflow completed".into(),
    };
    assert_eq!(
        plan.messages,
        vec![
            NewMessage {
                instance_id: "parent".into(),
                kind: MessageKind::ChildResult {
                    execution: 2,
                    op: op(7),
                    result: OpResult::Ok(p("42")),
                },
                visible_at: Timestamp(500),
            },
            NewMessage {
                instance_id: "c1".into(),
                kind: cancel.clone(),
                visible_at: Timestamp(500),
            },
            NewMessage {
                instance_id: "c2".into(),
                kind: cancel,
                visible_at: Timestamp(500),
            },
        ]
    );
}

#[test]
fn the_parent_link_of_the_run_wins_over_the_instances() {
    let f = Fixture::new(1).child_of(link("stored", 1, 1));
    let mut plan = TurnPlan::new();
    let failure = Failure::new(FailureKind::Application, "no stock");
    plan.end(
        f.instance(),
        Some(Outcome::Failed(failure.clone())),
        Some(link("run", 1, 2)),
        vec!["c".into()],
        std::iter::empty(),
        Timestamp(9),
    );
    assert_eq!(plan.end, TurnEnd::Failed(failure.clone()));
    assert_eq!(plan.messages[0].instance_id, "run");
    assert_eq!(
        plan.messages[0].kind,
        MessageKind::ChildResult {
            execution: 1,
            op: op(2),
            result: OpResult::Err(failure),
        }
    );
    assert_eq!(
        plan.messages[1].kind,
        MessageKind::Cancel {
            reason: "the parent workflow failed".into()
        }
    );
}

#[test]
fn cancellation_and_termination_cascade_with_the_original_reason_named_once() {
    let f = Fixture::new(1).child_of(link("parent", 1, 1));
    let plan = end(
        &f,
        Some(Outcome::Cancelled(
            "the parent workflow was cancelled: the customer cancelled".into(),
        )),
        &["grandchild"],
    );
    let TurnEnd::Cancelled(failure) = &plan.end else {
        panic!("expected cancelled, got {:?}", plan.end);
    };
    assert_eq!(failure.kind, FailureKind::Cancelled);
    assert_eq!(
        plan.messages[1].kind,
        MessageKind::Cancel {
            reason: "the parent workflow was cancelled: the customer cancelled".into()
        }
    );

    let plan = end(
        &Fixture::new(1),
        Some(Outcome::Terminated("stop".into())),
        &["child"],
    );
    let TurnEnd::Terminated(failure) = &plan.end else {
        panic!("expected terminated, got {:?}", plan.end);
    };
    assert_eq!(failure.kind, FailureKind::Terminated);
    assert_eq!(failure.message, "stop");
    // No parent: the only message is the child's.
    assert_eq!(
        plan.messages,
        vec![NewMessage {
            instance_id: "child".into(),
            kind: MessageKind::Terminate {
                reason: "the parent workflow was terminated: stop".into()
            },
            visible_at: Timestamp(500),
        }]
    );
}

#[test]
fn continue_as_new_starts_the_next_execution_carrying_what_was_not_taken_in_send_order() {
    let f = Fixture::new(4).child_of(link("parent", 1, 1));
    let undelivered = vec![
        raised("c", "3"),
        // A result for the ending execution is stale in the next one.
        EventKind::ActivityCompleted {
            op: op(1),
            output: p("0"),
        },
        EventKind::CancelRequested {
            reason: "enough".into(),
        },
        EventKind::TerminateRequested {
            reason: "really".into(),
        },
    ];
    let mut plan = TurnPlan::new();
    plan.end(
        f.instance(),
        Some(Outcome::ContinuedAsNew {
            input: p("\"next\""),
            carried_events: vec![("a".into(), p("1")), ("b".into(), p("2"))],
        }),
        None,
        vec!["child-goes-on".into()],
        undelivered.into_iter(),
        Timestamp(77),
    );
    assert_eq!(plan.end, TurnEnd::ContinuedAsNew(p("\"next\"")));
    assert!(!plan.end.is_finished());
    // Neither the parent nor the children hear of it: the instance goes on.
    assert_eq!(
        plan.messages,
        vec![NewMessage {
            instance_id: "wf-1".into(),
            kind: MessageKind::Start {
                execution: 5,
                carried: vec![
                    event("a", "1"),
                    event("b", "2"),
                    event("c", "3"),
                    MessageKind::Cancel {
                        reason: "enough".into()
                    },
                    MessageKind::Terminate {
                        reason: "really".into()
                    },
                ],
                retry: None,
            },
            visible_at: Timestamp(77),
        }]
    );
}

// ---- an unknown workflow ----

#[test]
fn an_unknown_workflow_fails_unless_it_is_cancelled_or_terminated() {
    let f = Fixture::new(1);
    let registered = vec!["greet".to_owned(), "ship".to_owned()];
    let delivered = deliveries(f.instance(), true, vec![event("x", "1")]).events;
    let mut events = Vec::new();
    let outcome = unknown_workflow(
        f.instance(),
        true,
        &delivered,
        &registered,
        Timestamp(3),
        &mut events,
    );
    let Some(Outcome::Failed(failure)) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_eq!(failure.kind, FailureKind::UnknownWorkflow);
    assert!(failure.message.contains("\"fulfil\""));
    assert!(failure.message.contains("greet, ship"));
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0].kind, EventKind::WorkflowStarted { .. }));
    assert!(matches!(events[1].kind, EventKind::WorkflowFailed { .. }));

    let mut events = Vec::new();
    let delivered = vec![
        raised("x", "1"),
        EventKind::TerminateRequested {
            reason: "bye".into(),
        },
    ];
    let outcome = unknown_workflow(
        f.instance(),
        false,
        &delivered,
        &registered,
        Timestamp(3),
        &mut events,
    );
    assert_eq!(outcome, Some(Outcome::Terminated("bye".into())));
    assert_eq!(events, vec![at(3, delivered[1].clone())]);

    let mut events = Vec::new();
    let outcome = unknown_workflow(
        f.instance(),
        false,
        &[],
        &registered,
        Timestamp(3),
        &mut events,
    );
    assert_eq!(outcome, None);
    assert!(events.is_empty());
}
