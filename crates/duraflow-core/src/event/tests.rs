//! Tests of the journal event model.

use super::*;

#[test]
fn an_activity_queue_is_journaled_only_when_chosen() {
    let scheduled = |queue: Option<&str>| Event {
        at: Timestamp(7),
        kind: EventKind::ActivityScheduled {
            op: OpId::new(None, 1),
            name: "render".into(),
            input: Payload::encode(&1).unwrap(),
            options: Box::new(ActivityOptions {
                queue: queue.map(str::to_owned),
                ..ActivityOptions::default()
            }),
        },
    };
    // Written before queues (and for the default queue): no field, the default queue.
    let old = scheduled(None).encode();
    assert!(!old.contains("queue"), "{old}");
    let read = Event::decode(&old, 2).unwrap();
    assert_eq!(read, scheduled(None));
    let EventKind::ActivityScheduled { options, .. } = read.kind else {
        unreachable!()
    };
    assert_eq!(options.queue_name(), DEFAULT_QUEUE);
    let gpu = scheduled(Some("gpu")).encode();
    assert!(gpu.contains(r#""queue":"gpu""#), "{gpu}");
    assert_eq!(Event::decode(&gpu, 2).unwrap(), scheduled(Some("gpu")));
}

#[test]
fn events_round_trip_and_versions_are_checked() {
    let ev = Event {
        at: Timestamp(42),
        kind: EventKind::ActivityScheduled {
            op: OpId::new(None, 1),
            name: "charge".into(),
            input: Payload::encode(&5).unwrap(),
            options: Box::new(ActivityOptions::default()),
        },
    };
    let json = ev.encode();
    assert!(json.contains("{\"activity_scheduled\":{"), "{json}");
    assert_eq!(Event::decode(&json, 1).unwrap(), ev);
    assert!(matches!(
        Event::decode(&json, JOURNAL_FORMAT_VERSION + 1),
        Err(EventDecodeError::NewerFormat { found, .. }) if found == JOURNAL_FORMAT_VERSION + 1
    ));
    assert!(matches!(
        Event::decode("{\"at\":1}", 1),
        Err(EventDecodeError::Corrupt(_))
    ));
    assert_eq!(ev.kind.describe(), "activity_scheduled \"charge\" (op 1)");
}

#[test]
fn each_primitive_is_issued_by_its_own_event_and_completed_by_its_own_results() {
    let op = OpId::new(None, 0);
    let payload = Payload::null();
    let failure = Failure::new(crate::FailureKind::Application, "no");
    let issued = [
        EventKind::ActivityScheduled {
            op: op.clone(),
            name: "a".into(),
            input: payload.clone(),
            options: Box::new(ActivityOptions::default()),
        },
        EventKind::TimerCreated {
            op: op.clone(),
            fire_at: Timestamp(0),
        },
        EventKind::StepStarted {
            op: op.clone(),
            name: "s".into(),
            attempt: 1,
        },
        EventKind::EventWaitStarted {
            op: op.clone(),
            name: "e".into(),
        },
        EventKind::ChildStarted {
            op: op.clone(),
            name: "c".into(),
            instance_id: "kid".into(),
            input: payload.clone(),
            detached: false,
            queue: None,
        },
    ];
    for event in &issued {
        let primitive = event.issues().unwrap();
        assert_eq!(primitive.issued_type(), event.type_name());
        assert_eq!(event.completes(), None);
    }
    let completions = [
        (
            EventKind::ActivityCompleted {
                op: op.clone(),
                output: payload.clone(),
            },
            Primitive::Activity,
        ),
        (
            EventKind::ActivityFailed {
                op: op.clone(),
                failure: Box::new(failure.clone()),
            },
            Primitive::Activity,
        ),
        (EventKind::TimerFired { op: op.clone() }, Primitive::Timer),
        (
            EventKind::StepCompleted {
                op: op.clone(),
                output: payload.clone(),
            },
            Primitive::Step,
        ),
        (
            EventKind::StepFailed {
                op: op.clone(),
                failure: Box::new(failure.clone()),
            },
            Primitive::Step,
        ),
        (
            EventKind::ChildCompleted {
                op: op.clone(),
                output: payload.clone(),
            },
            Primitive::Child,
        ),
        (
            EventKind::ChildFailed {
                op,
                failure: Box::new(failure),
            },
            Primitive::Child,
        ),
    ];
    for (event, primitive) in &completions {
        assert_eq!(event.completes(), Some(*primitive), "{}", event.type_name());
        assert_eq!(event.issues(), None);
    }
}

#[test]
fn a_heartbeat_timeout_is_written_only_when_set_and_read_as_none_when_absent() {
    // Options written before heartbeat timeouts (tasks and journals) have no such field.
    let old: ActivityOptions = serde_json::from_str(r#"{"attempt_timeout":5}"#).unwrap();
    assert_eq!(old.heartbeat_timeout, None);
    let none = serde_json::to_string(&ActivityOptions::default()).unwrap();
    assert!(!none.contains("heartbeat"), "{none}");
    let set = ActivityOptions {
        heartbeat_timeout: Some(Duration::from_millis(1_500)),
        ..ActivityOptions::default()
    };
    let text = serde_json::to_string(&set).unwrap();
    assert!(text.contains(r#""heartbeat_timeout":1500"#), "{text}");
    assert_eq!(serde_json::from_str::<ActivityOptions>(&text).unwrap(), set);
}

#[test]
fn a_workflow_version_is_journaled_only_when_registered() {
    let started = |version: Option<&str>| Event {
        at: Timestamp(9),
        kind: EventKind::WorkflowStarted {
            name: "order".into(),
            input: Payload::encode(&1).unwrap(),
            parent: None,
            headers: Default::default(),
            retry: None,
            version: version.map(str::to_owned),
        },
    };
    // Written before versions (or by an engine that registered none): no field, no version.
    let old = started(None).encode();
    assert!(!old.contains("version"), "{old}");
    assert_eq!(Event::decode(&old, 2).unwrap(), started(None));
    let v2 = started(Some("2")).encode();
    assert!(v2.contains(r#""version":"2""#), "{v2}");
    assert_eq!(Event::decode(&v2, 2).unwrap(), started(Some("2")));
}
