//! Decoding never panics: journal events, payloads and operation ids decoded from random bytes
//! and from random mutations of valid encodings give a value or a clear error.
//!
//! The case count is proptest's (`PROPTEST_CASES`, 256 by default here); run many more with
//! `PROPTEST_CASES=20000 cargo test -p duraflow-core --test decode_props`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::arb::*;
use duraflow_core::{Event, EventData, EventDecodeError, OpId, Payload, JOURNAL_FORMAT_VERSION};
use proptest::prelude::*;
use serde_json::Value;

/// Decodes `text` as a stored event and checks the error is one a person can act on.
fn decode_checked(text: &str, format: u32) -> Result<Event, EventDecodeError> {
    let result = Event::decode(text, format);
    match &result {
        Ok(ev) => {
            // Whatever decodes is an event this build writes back and reads again unchanged.
            assert!(format <= JOURNAL_FORMAT_VERSION, "format {format} accepted");
            let again = Event::decode(&ev.encode(), JOURNAL_FORMAT_VERSION).unwrap();
            assert_eq!(&again, ev);
        }
        Err(EventDecodeError::NewerFormat { found, supported }) => {
            assert_eq!((*found, *supported), (format, JOURNAL_FORMAT_VERSION));
        }
        Err(e @ EventDecodeError::Corrupt(msg)) => {
            assert!(format <= JOURNAL_FORMAT_VERSION);
            assert!(!msg.is_empty());
            assert!(e.to_string().starts_with("corrupt journal event: "), "{e}");
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
    result
}

proptest! {
    #[test]
    fn every_event_round_trips(ev in event()) {
        let json = ev.encode();
        prop_assert_eq!(Event::decode(&json, JOURNAL_FORMAT_VERSION).unwrap(), ev.clone());
        // Older formats are read too; newer ones are refused whatever the bytes.
        prop_assert_eq!(Event::decode(&json, 0).unwrap(), ev);
        let newer = Event::decode(&json, JOURNAL_FORMAT_VERSION + 1);
        prop_assert!(
            matches!(newer, Err(EventDecodeError::NewerFormat { .. })),
            "{:?}",
            newer
        );
    }

    #[test]
    fn random_bytes_never_decode_to_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), format in any::<u32>()) {
        let _ = decode_checked(&String::from_utf8_lossy(&bytes), format);
    }

    #[test]
    fn random_text_never_decodes_to_a_panic(text in any::<String>(), format in 0..=JOURNAL_FORMAT_VERSION) {
        let _ = decode_checked(&text, format);
    }

    #[test]
    fn byte_mutations_of_valid_events_decode_or_say_why(
        ev in event(),
        edits in prop::collection::vec(byte_edit(), 1..5),
    ) {
        let bytes = apply_byte_edits(ev.encode().into_bytes(), &edits);
        let _ = decode_checked(&String::from_utf8_lossy(&bytes), JOURNAL_FORMAT_VERSION);
    }

    #[test]
    fn structural_mutations_of_valid_events_decode_or_say_why(
        ev in event(),
        edits in prop::collection::vec(json_edit(), 1..4),
    ) {
        let doc: Value = serde_json::from_str(&ev.encode()).unwrap();
        let mutated = apply_json_edits(doc, &edits).to_string();
        let _ = decode_checked(&mutated, JOURNAL_FORMAT_VERSION);
    }

    #[test]
    fn payload_text_is_checked_and_errors_show_a_short_preview(text in any::<String>()) {
        match Payload::from_json(&text) {
            Ok(p) => {
                // Only well-formed JSON is accepted, and it is kept as it was written.
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok());
                prop_assert_eq!(p.as_json(), text.as_str());
                let _ = p.decode::<Value>();
            }
            Err(e) => {
                prop_assert!(e.0.starts_with("not valid JSON ("), "{}", e);
                // The preview is at most 80 bytes of the text and an ellipsis.
                prop_assert!(e.0.len() <= 200 + text.len().min(84), "{}", e);
            }
        }
    }

    #[test]
    fn payloads_decode_into_any_type_or_name_it(
        value in json_value(),
        edits in prop::collection::vec(byte_edit(), 0..3),
    ) {
        let text = String::from_utf8_lossy(&apply_byte_edits(value.to_string().into_bytes(), &edits)).into_owned();
        let Ok(p) = Payload::from_json(&text) else { return Ok(()) };
        fn check<T: serde::de::DeserializeOwned>(p: &Payload) {
            if let Err(e) = p.decode::<T>() {
                assert!(e.0.contains(std::any::type_name::<T>()), "{e}");
            }
        }
        check::<u32>(&p);
        check::<i64>(&p);
        check::<f32>(&p);
        check::<String>(&p);
        check::<Vec<u8>>(&p);
        check::<(u32, String)>(&p);
        check::<Option<std::collections::BTreeMap<String, u64>>>(&p);
        check::<duraflow_core::Failure>(&p);
        check::<Value>(&p);
    }

    #[test]
    fn any_decoded_retry_policy_gives_a_delay_or_none(
        options in activity_options(),
        coefficient in any::<f64>(),
        jitter in any::<f64>(),
        failed in any::<u32>(),
        sample in any::<f64>(),
    ) {
        // Options come back from task rows; the worker asks them for the wait before a retry.
        let json = serde_json::to_string(&options).unwrap();
        let mut policy = serde_json::from_str::<duraflow_core::ActivityOptions>(&json).unwrap().retry;
        for (c, j) in [(policy.backoff_coefficient, policy.jitter), (coefficient, jitter)] {
            policy.backoff_coefficient = c;
            policy.jitter = j;
            if let Some(wait) = policy.delay_after(failed, sample) {
                // Never longer than the cap (up to the rounding of seconds as a float).
                let cap = policy.max_interval.as_secs_f64();
                prop_assert!(wait.as_secs_f64() <= cap * (1.0 + 1e-12), "{:?} > {:?}", wait, cap);
            }
        }
    }

    #[test]
    fn operation_ids_parse_or_say_why(text in "[0-9.+ -]{0,12}|\\PC{0,12}") {
        match text.parse::<OpId>() {
            Ok(op) => {
                prop_assert!(!op.path().is_empty());
                prop_assert_eq!(op.to_string().parse::<OpId>().unwrap(), op);
            }
            Err(e) => prop_assert!(e.to_string().contains("invalid operation id"), "{}", e),
        }
    }
}

/// Nesting far deeper than any real payload neither overflows the stack nor hangs, wherever
/// the JSON is read: a payload keeps its text unparsed, and decoding it into a value stops at
/// the JSON parser's recursion limit with an error.
#[test]
fn deeply_nested_json_is_read_without_overflowing_the_stack() {
    for depth in [200, 10_000, 200_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        match Payload::from_json(&nested) {
            Ok(p) => {
                let err = p.decode::<Value>().unwrap_err();
                assert!(err.0.contains("recursion limit"), "{err}");
            }
            Err(e) => assert!(e.0.contains("recursion limit"), "{e}"),
        }
        let event =
            format!(r#"{{"at":1,"event":{{"event_raised":{{"name":"x","data":{nested}}}}}}}"#);
        match Event::decode(&event, JOURNAL_FORMAT_VERSION) {
            Ok(ev) => assert_eq!(ev.kind.type_name(), "event_raised"),
            Err(EventDecodeError::Corrupt(msg)) => {
                assert!(msg.contains("recursion limit"), "{msg}")
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
}

/// The error preview cuts long text at a character boundary, however wide its characters.
#[test]
fn payload_error_previews_cut_multibyte_text_at_a_character_boundary() {
    for filler in ["é", "€", "😀", "a"] {
        for prefix in 0..4 {
            let text = format!("{}{}", "x".repeat(prefix), filler.repeat(100));
            let err = Payload::from_json(&text).unwrap_err();
            assert!(err.0.ends_with('…'), "{err}");
        }
    }
}

/// Found by `every_event_round_trips`: serde_json's default float parsing may read a number
/// back one unit in the last place off, so a retry policy came back from the journal changed
/// (jitter `2.1819389565748469e74` read as `2.181938956574847e74`). The workspace enables
/// serde_json's `float_roundtrip`.
#[test]
fn floats_in_events_read_back_exactly() {
    let mut policy = duraflow_core::RetryPolicy::none();
    policy.jitter = 2.181_938_956_574_846_9e74;
    policy.backoff_coefficient = 1.188_795_657_928_584_5e-63;
    let ev = Event {
        at: duraflow_core::Timestamp(0),
        kind: duraflow_core::EventKind::ActivityScheduled {
            op: OpId::new(None, 0),
            name: "a".into(),
            input: Payload::null(),
            options: Box::new(duraflow_core::ActivityOptions {
                retry: policy,
                ..Default::default()
            }),
        },
    };
    assert_eq!(
        Event::decode(&ev.encode(), JOURNAL_FORMAT_VERSION).unwrap(),
        ev
    );
}

proptest! {
    /// Every event reads back from the binary encoding as itself, whether it has a tag of its
    /// own or is stored as JSON inside.
    #[test]
    fn every_event_round_trips_in_the_binary_encoding(ev in event()) {
        let bytes = ev.encode_binary();
        let decoded = Event::decode_stored(EventData::Binary(&bytes), JOURNAL_FORMAT_VERSION);
        prop_assert_eq!(decoded.unwrap(), ev);
    }

    /// A binary event changed byte by byte decodes to an event this build writes back
    /// unchanged, or is reported corrupt with a reason; it never panics.
    #[test]
    fn mutated_binary_events_decode_or_say_why(
        ev in event(),
        edits in prop::collection::vec(byte_edit(), 1..4),
    ) {
        let bytes = apply_byte_edits(ev.encode_binary(), &edits);
        match Event::decode_stored(EventData::Binary(&bytes), JOURNAL_FORMAT_VERSION) {
            Ok(decoded) => {
                let again = decoded.encode_binary();
                let reread = Event::decode_stored(EventData::Binary(&again), JOURNAL_FORMAT_VERSION);
                prop_assert_eq!(reread.unwrap(), decoded);
            }
            Err(e @ EventDecodeError::Corrupt(_)) => {
                prop_assert!(e.to_string().starts_with("corrupt journal event: "), "{}", e);
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
