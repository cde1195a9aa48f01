//! The turn planner for queue-wide events: the messages that answer awaits and emits become
//! their deliveries (stale ones are dropped), and the journaled emits and awaits become the
//! commit's emits, awaits and await timers, in the instance's queue.

#![allow(clippy::expect_used)] // test helpers: a fixture that does not decode is a broken test

use duraflow_core::plan::{deliveries, TurnInstance};
use duraflow_core::{
    EmitOutcome, Event, EventKind, MessageKind, NewAwait, NewEmit, NewMessage, OpId, Payload,
    Timestamp, TurnPlan,
};

fn op(seq: u32) -> OpId {
    OpId::new(None, seq)
}

fn data(s: &str) -> Payload {
    Payload::encode(&s).expect("a string encodes")
}

/// Every option at its default.
static NO_OPTIONS: duraflow_core::InstanceOptions = duraflow_core::InstanceOptions::DEFAULT;

fn instance(input: &Payload) -> TurnInstance<'_> {
    TurnInstance {
        id: "wf-1",
        execution: 2,
        name: "herald",
        input,
        parent: None,
        queue: "news",
        options: &NO_OPTIONS,
    }
}

#[test]
fn answers_of_the_current_execution_are_delivered_and_older_ones_dropped() {
    let input = data("in");
    let messages = vec![
        MessageKind::QueueEvent {
            execution: 2,
            op: op(1),
            name: "opened".into(),
            data: data("doors"),
        },
        MessageKind::QueueEvent {
            execution: 1,
            op: op(1),
            name: "opened".into(),
            data: data("stale"),
        },
        MessageKind::EmitResult {
            execution: 2,
            op: op(0),
            outcome: EmitOutcome::AlreadyEmitted,
        },
        MessageKind::EmitResult {
            execution: 1,
            op: op(0),
            outcome: EmitOutcome::Emitted { woken: 2 },
        },
    ];
    let d = deliveries(instance(&input), false, messages);
    assert_eq!(
        d.events,
        vec![
            EventKind::QueueEventReceived {
                op: op(1),
                data: data("doors"),
            },
            EventKind::QueueEventEmitCompleted {
                op: op(0),
                outcome: EmitOutcome::AlreadyEmitted,
            },
        ]
    );
    assert_eq!(d.sources, vec![0, 2]);
}

#[test]
fn emits_and_awaits_go_to_the_instances_queue_and_a_timeout_is_a_timer_of_the_await() {
    let input = data("in");
    let new_events = vec![
        Event {
            at: Timestamp(10),
            kind: EventKind::QueueEventEmitStarted {
                op: op(0),
                name: "opened".into(),
                data: data("doors"),
            },
        },
        Event {
            at: Timestamp(10),
            kind: EventKind::QueueEventAwaitStarted {
                op: op(1),
                name: "closing".into(),
                timeout_at: Some(Timestamp(5_000)),
            },
        },
        Event {
            at: Timestamp(10),
            kind: EventKind::QueueEventAwaitStarted {
                op: op(2),
                name: "forever".into(),
                timeout_at: None,
            },
        },
    ];
    let mut plan = TurnPlan::new();
    plan.schedule(instance(&input), &new_events, &[]);
    assert_eq!(
        plan.emits,
        vec![NewEmit {
            instance_id: "wf-1".into(),
            execution: 2,
            op: op(0),
            queue: "news".into(),
            name: "opened".into(),
            data: data("doors"),
        }]
    );
    let awaits = |seq: u32, name: &str| NewAwait {
        instance_id: "wf-1".into(),
        execution: 2,
        op: op(seq),
        queue: "news".into(),
        name: name.into(),
    };
    assert_eq!(
        plan.awaits,
        vec![awaits(1, "closing"), awaits(2, "forever")]
    );
    assert_eq!(
        plan.messages,
        vec![NewMessage {
            instance_id: "wf-1".into(),
            kind: MessageKind::TimerFired {
                execution: 2,
                op: op(1),
            },
            visible_at: Timestamp(5_000),
        }]
    );
    assert!(plan.tasks.is_empty() && plan.callbacks.is_empty());
}
