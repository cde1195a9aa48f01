//! Proptest strategies for journal events and JSON, and the mutations the decoding property
//! tests apply to valid encodings.

#![allow(dead_code)]

use std::time::Duration;

use duraflow_core::{
    ActivityOptions, EmitOutcome, Event, EventKind, Failure, FailureKind, OpId, ParentLink,
    Payload, RetryPolicy, Timestamp,
};
use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, a few levels deep, with awkward strings and numbers.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A payload holding any JSON value.
pub(crate) fn payload() -> impl Strategy<Value = Payload> {
    json_value().prop_map(|v| Payload::encode(&v).expect("a JSON value encodes"))
}

/// An operation id: usually small (so mutated journals name operations that exist), sometimes
/// nested or at the ends of the range.
pub(crate) fn op_id() -> impl Strategy<Value = OpId> {
    prop_oneof![
        4 => (0u32..6).prop_map(|seq| OpId::new(None, seq)),
        1 => prop::collection::vec(any::<u32>(), 1..4).prop_map(|path| {
            let mut id = OpId::new(None, path[0]);
            for seq in &path[1..] {
                id = OpId::new(Some(&id), *seq);
            }
            id
        }),
    ]
}

/// A name: usually one the test workflows use, sometimes anything.
pub(crate) fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c", "go", "x", "child", "s"]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn failure_kind() -> impl Strategy<Value = FailureKind> {
    prop::sample::select(vec![
        FailureKind::Application,
        FailureKind::ActivityTerminal,
        FailureKind::RetriesExhausted,
        FailureKind::Timeout,
        FailureKind::Cancelled,
        FailureKind::Terminated,
        FailureKind::Nondeterminism,
        FailureKind::Payload,
        FailureKind::UnknownWorkflow,
        FailureKind::UnknownActivity,
        FailureKind::ChildFailed,
        FailureKind::Panic,
        FailureKind::Internal,
    ])
}

/// Any failure record.
pub(crate) fn failure() -> impl Strategy<Value = Failure> {
    (
        failure_kind(),
        any::<String>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(op_id()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(kind, message, code, source, op, attempts)| Failure {
            kind,
            message,
            code,
            source,
            op,
            attempts,
            retry_after_ms: None,
        })
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

/// Any retry policy with finite numbers, as the builder methods make them.
pub(crate) fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        any::<u32>(),
        any::<u64>(),
        finite(),
        any::<u64>(),
        finite(),
        prop::collection::vec(any::<String>(), 0..3),
    )
        .prop_map(|(attempts, initial, coefficient, max, jitter, codes)| {
            let mut p = RetryPolicy::fixed(Duration::from_millis(initial))
                .max_attempts(attempts)
                .max_interval(Duration::from_millis(max))
                .non_retryable(codes);
            p.backoff_coefficient = coefficient;
            p.jitter = jitter;
            p
        })
}

/// Any activity options.
pub(crate) fn activity_options() -> impl Strategy<Value = ActivityOptions> {
    (
        retry_policy(),
        proptest::option::of(any::<u64>().prop_map(Duration::from_millis)),
        proptest::option::of(any::<u64>().prop_map(Duration::from_millis)),
        proptest::option::of(any::<u64>().prop_map(Duration::from_millis)),
    )
        .prop_map(
            |(retry, attempt_timeout, schedule_to_close, heartbeat_timeout)| ActivityOptions {
                retry,
                attempt_timeout,
                schedule_to_close,
                queue: None,
                heartbeat_timeout,
            },
        )
}

/// Any event kind, every variant.
pub(crate) fn event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (
            name(),
            payload(),
            proptest::option::of((any::<String>(), any::<u32>(), op_id())),
            proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3)
        )
            .prop_map(
                |(name, input, parent, headers)| EventKind::WorkflowStarted {
                    name,
                    input,
                    parent: parent.map(|(instance_id, execution, op)| Box::new(ParentLink {
                        instance_id,
                        execution,
                        op
                    })),
                    headers,
                    retry: None,
                    version: None,
                }
            ),
        (op_id(), name(), payload(), activity_options()).prop_map(|(op, name, input, options)| {
            EventKind::ActivityScheduled {
                op,
                name,
                input,
                options: Box::new(options),
            }
        }),
        (op_id(), payload()).prop_map(|(op, output)| EventKind::ActivityCompleted { op, output }),
        (op_id(), failure()).prop_map(|(op, failure)| EventKind::ActivityFailed {
            op,
            failure: Box::new(failure)
        }),
        (op_id(), any::<i64>()).prop_map(|(op, t)| EventKind::TimerCreated {
            op,
            fire_at: Timestamp(t)
        }),
        op_id().prop_map(|op| EventKind::TimerFired { op }),
        (op_id(), name()).prop_map(|(op, name)| EventKind::StepStarted {
            op,
            name,
            attempt: 1
        }),
        (op_id(), payload()).prop_map(|(op, output)| EventKind::StepCompleted { op, output }),
        (op_id(), failure()).prop_map(|(op, failure)| EventKind::StepFailed {
            op,
            failure: Box::new(failure)
        }),
        (op_id(), name()).prop_map(|(op, name)| EventKind::EventWaitStarted { op, name }),
        (name(), payload()).prop_map(|(name, data)| EventKind::EventRaised {
            name,
            data,
            taken_by: None
        }),
        (op_id(), name(), any::<String>(), payload(), any::<bool>()).prop_map(
            |(op, name, instance_id, input, detached)| EventKind::ChildStarted {
                op,
                name,
                instance_id,
                input,
                detached,
                queue: None,
            }
        ),
        (op_id(), payload()).prop_map(|(op, output)| EventKind::ChildCompleted { op, output }),
        (op_id(), failure()).prop_map(|(op, failure)| EventKind::ChildFailed {
            op,
            failure: Box::new(failure)
        }),
        any::<String>().prop_map(|reason| EventKind::CancelRequested { reason }),
        any::<String>().prop_map(|reason| EventKind::TerminateRequested { reason }),
        payload().prop_map(|output| EventKind::WorkflowCompleted { output }),
        failure().prop_map(|failure| EventKind::WorkflowFailed {
            failure: Box::new(failure)
        }),
        payload().prop_map(|input| EventKind::ContinuedAsNew { input }),
        (op_id(), name(), payload())
            .prop_map(|(op, name, data)| EventKind::QueueEventEmitStarted { op, name, data }),
        (op_id(), proptest::option::of(any::<u64>())).prop_map(|(op, woken)| {
            EventKind::QueueEventEmitCompleted {
                op,
                outcome: woken.map_or(EmitOutcome::AlreadyEmitted, |woken| EmitOutcome::Emitted {
                    woken,
                }),
            }
        }),
        (op_id(), name(), proptest::option::of(any::<i64>())).prop_map(|(op, name, t)| {
            EventKind::QueueEventAwaitStarted {
                op,
                name,
                timeout_at: t.map(Timestamp),
            }
        }),
        (op_id(), payload()).prop_map(|(op, data)| EventKind::QueueEventReceived { op, data }),
    ]
}

/// Any event.
pub(crate) fn event() -> impl Strategy<Value = Event> {
    (any::<i64>(), event_kind()).prop_map(|(at, kind)| Event {
        at: Timestamp(at),
        kind,
    })
}

/// A change to the bytes of an encoding.
#[derive(Clone, Debug)]
pub(crate) enum ByteEdit {
    /// Sets the byte at this index (modulo the length) to this value.
    Set(usize, u8),
    /// Removes this many bytes from this index.
    Remove(usize, usize),
    /// Inserts these bytes at this index.
    Insert(usize, Vec<u8>),
    /// Keeps only this many bytes.
    Truncate(usize),
    /// Repeats a range of bytes in place.
    Repeat(usize, usize),
}

/// A byte-level change.
pub(crate) fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| ByteEdit::Remove(i, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Repeat(i, n)),
    ]
}

/// Applies byte-level changes to `bytes`.
pub(crate) fn apply_byte_edits(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match edit {
            ByteEdit::Set(i, b) if len > 0 => bytes[i % len] = *b,
            ByteEdit::Set(..) => {}
            ByteEdit::Remove(i, n) => {
                let start = at(*i).min(len);
                let end = (start + n).min(len);
                bytes.drain(start..end);
            }
            ByteEdit::Insert(i, b) => {
                let start = at(*i);
                bytes.splice(start..start, b.iter().copied());
            }
            ByteEdit::Truncate(i) => bytes.truncate(at(*i)),
            ByteEdit::Repeat(i, n) => {
                let start = at(*i).min(len);
                let end = (start + n).min(len);
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

/// A replacement for one node of a JSON document: values of the wrong type, numbers out of
/// every range the decoders use, and unknown tags.
pub(crate) fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!(u32::MAX as u64 + 1)),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(-0.0)),
        Just(serde_json::json!(1e300)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("1..2")),
        Just(serde_json::json!("-1")),
        Just(serde_json::json!("4294967296")),
        Just(serde_json::json!({ "unknown_event": {} })),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        json_value(),
    ]
}

/// Where in a JSON document a change goes, and what it does there.
#[derive(Clone, Debug)]
pub(crate) enum JsonEdit {
    /// Replaces the `n`th node (in document order, modulo the count) with a value.
    Replace(usize, Value),
    /// Removes the `n`th object member.
    RemoveKey(usize),
    /// Adds a member with this key and value to the `n`th object.
    AddKey(usize, String, Value),
    /// Renames the `n`th object member.
    RenameKey(usize, String),
}

/// A structural change to a JSON document.
pub(crate) fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "at", "event", "op", "name", "input", "output", "failure", "kind", "options",
            "retry", "fire_at", "parent", "execution", "detached", "max_attempts", "jitter",
            "timer_fired", "workflow_started", "activity_completed",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    prop_oneof![
        (any::<usize>(), wrong_value()).prop_map(|(n, v)| JsonEdit::Replace(n, v)),
        any::<usize>().prop_map(JsonEdit::RemoveKey),
        (any::<usize>(), key.clone(), wrong_value())
            .prop_map(|(n, k, v)| JsonEdit::AddKey(n, k, v)),
        (any::<usize>(), key).prop_map(|(n, k)| JsonEdit::RenameKey(n, k)),
    ]
}

/// The JSON pointers of every node of `v` (objects only with `objects_only`), in document order.
fn pointers(v: &Value, at: String, objects_only: bool, out: &mut Vec<String>) {
    if !objects_only || v.is_object() {
        out.push(at.clone());
    }
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match v {
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), objects_only, out);
            }
        }
        Value::Object(o) => {
            for (k, c) in o {
                pointers(c, format!("{at}/{}", escape(k)), objects_only, out);
            }
        }
        _ => {}
    }
}

/// Applies structural changes to a JSON document.
pub(crate) fn apply_json_edits(mut doc: Value, edits: &[JsonEdit]) -> Value {
    for edit in edits {
        let mut found = Vec::new();
        let objects_only = !matches!(edit, JsonEdit::Replace(..));
        pointers(&doc, String::new(), objects_only, &mut found);
        let n = match edit {
            JsonEdit::Replace(n, _)
            | JsonEdit::RemoveKey(n)
            | JsonEdit::AddKey(n, _, _)
            | JsonEdit::RenameKey(n, _) => *n,
        };
        if found.is_empty() {
            continue;
        }
        let Some(node) = doc.pointer_mut(&found[n % found.len()]) else {
            continue;
        };
        match (edit, node) {
            (JsonEdit::Replace(_, value), node) => *node = value.clone(),
            (JsonEdit::AddKey(_, key, value), Value::Object(obj)) => {
                obj.insert(key.clone(), value.clone());
            }
            (JsonEdit::RemoveKey(_) | JsonEdit::RenameKey(..), Value::Object(obj)) => {
                let keys: Vec<String> = obj.keys().cloned().collect();
                if keys.is_empty() {
                    continue;
                }
                let key = &keys[n % keys.len()];
                let value = obj.remove(key);
                if let (JsonEdit::RenameKey(_, to), Some(value)) = (edit, value) {
                    obj.insert(to.clone(), value);
                }
            }
            _ => {}
        }
    }
    doc
}
