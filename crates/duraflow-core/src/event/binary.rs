//! The journal's binary encoding (journal format version 4).
//!
//! A cold turn decodes the whole journal before it replays it, and with JSON that decoding was
//! the largest part of the turn: about 2,700 instructions an event for a step's two events
//! (`{"at":..,"event":{"step_started":{"op":"7","name":"op"}}}`), 54 M of the 130 M a cold
//! turn of 10,000 steps took on SQLite (callgrind; BENCHMARKS.md "A binary journal"). The
//! events a long workflow is made of (activities, steps, timers, waits for events) are
//! encoded here field by field: a tag byte, the time, then each field (integers as LEB128
//! varints, strings and payloads as a length and their bytes, an operation id as its depth and
//! sequence numbers). Every other event, and the rare parts of the common ones (an activity's
//! non-default options), is JSON inside the binary: tag [`JSON`] followed by the event's JSON,
//! or the options' JSON after their flag. So a new kind of event needs nothing here to be
//! stored; it is only slower to read until it has a tag of its own.
//!
//! Decoding never panics: a truncated event, an unknown tag, a string that is not UTF-8, a
//! payload that is not JSON or bytes left over are reported as
//! [`EventDecodeError::Corrupt`], naming what was wrong.

use super::{ActivityOptions, Event, EventDecodeError, EventKind};
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::time::Timestamp;

/// The tag of an event stored as JSON: the rest of the bytes are [`Event::encode`]'s text.
const JSON: u8 = 0;
const ACTIVITY_SCHEDULED: u8 = 1;
const ACTIVITY_COMPLETED: u8 = 2;
const TIMER_CREATED: u8 = 3;
const TIMER_FIRED: u8 = 4;
const STEP_STARTED: u8 = 5;
const STEP_COMPLETED: u8 = 6;
const EVENT_WAIT_STARTED: u8 = 7;
const EVENT_RAISED: u8 = 8;

/// An operation id may be at most this deep in a stored event (ids nest once per child context,
/// so real ones are a few levels deep; the bound keeps a corrupt depth from allocating).
const MAX_DEPTH: u64 = 1 << 16;

/// Encodes `event` in the binary journal encoding.
pub(super) fn encode(event: &Event) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(32));
    out.event(event);
    out.0
}

/// Decodes an event encoded by [`encode`].
pub(super) fn decode(bytes: &[u8]) -> Result<Event, EventDecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let tag = r.byte("the event's tag")?;
    if tag == JSON {
        let json = std::str::from_utf8(&bytes[1..])
            .map_err(|e| corrupt(format!("the event's JSON is not UTF-8: {e}")))?;
        return serde_json::from_str(json).map_err(|e| corrupt(e.to_string()));
    }
    let at = Timestamp(r.signed("the event's time")?);
    let kind = match tag {
        ACTIVITY_SCHEDULED => {
            let op = r.op()?;
            let name = r.str("the activity's name")?.to_owned();
            let input = r.payload("the activity's input")?;
            let options = match r.byte("the activity's options flag")? {
                0 => ActivityOptions::default(),
                1 => serde_json::from_str(r.str("the activity's options")?)
                    .map_err(|e| corrupt(format!("the activity's options: {e}")))?,
                other => return Err(corrupt(format!("options flag {other} is not 0 or 1"))),
            };
            EventKind::ActivityScheduled {
                op,
                name,
                input,
                options: Box::new(options),
            }
        }
        ACTIVITY_COMPLETED => EventKind::ActivityCompleted {
            op: r.op()?,
            output: r.payload("the activity's output")?,
        },
        TIMER_CREATED => EventKind::TimerCreated {
            op: r.op()?,
            fire_at: Timestamp(r.signed("the timer's fire time")?),
        },
        TIMER_FIRED => EventKind::TimerFired { op: r.op()? },
        STEP_STARTED => EventKind::StepStarted {
            op: r.op()?,
            name: r.str("the step's name")?.to_owned(),
            attempt: u32::try_from(r.varint("the step's attempt")?)
                .map_err(|_| corrupt("the step's attempt is out of range".into()))?,
        },
        STEP_COMPLETED => EventKind::StepCompleted {
            op: r.op()?,
            output: r.payload("the step's output")?,
        },
        EVENT_WAIT_STARTED => EventKind::EventWaitStarted {
            op: r.op()?,
            name: r.str("the awaited event's name")?.to_owned(),
        },
        EVENT_RAISED => EventKind::EventRaised {
            name: r.str("the raised event's name")?.to_owned(),
            data: r.payload("the raised event's data")?,
            taken_by: match r.byte("the raised event's taker flag")? {
                0 => None,
                1 => Some(r.op()?),
                other => return Err(corrupt(format!("taker flag {other} is not 0 or 1"))),
            },
        },
        other => return Err(corrupt(format!("unknown event tag {other}"))),
    };
    if r.at != bytes.len() {
        return Err(corrupt(format!(
            "{} bytes follow the event's last field",
            bytes.len() - r.at
        )));
    }
    Ok(Event { at, kind })
}

/// Encodes events stored together (one commit's events of one execution, kept in one row) as
/// one run: each event's encoding behind its length.
pub(super) fn encode_run(events: &[Event]) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(events.len() * 24));
    // Each event is encoded into one reused buffer, then copied behind its length.
    let mut one = Writer(Vec::with_capacity(64));
    for event in events {
        one.0.clear();
        one.event(event);
        out.varint(one.0.len() as u64);
        out.0.extend_from_slice(&one.0);
    }
    out.0
}

/// Decodes a run of `count` events encoded by [`encode_run`], appending them to `out`; on
/// failure, the index in the run of the event that does not decode (or is missing), with why.
pub(super) fn decode_run(
    bytes: &[u8],
    count: usize,
    out: &mut Vec<Event>,
) -> Result<(), (usize, EventDecodeError)> {
    let mut r = Reader { bytes, at: 0 };
    for i in 0..count {
        let one = r.str_bytes("the event's length").map_err(|e| (i, e))?;
        out.push(decode(one).map_err(|e| (i, e))?);
    }
    if r.at != bytes.len() {
        return Err((
            count.saturating_sub(1),
            corrupt(format!(
                "{} bytes follow the last of the row's {count} events",
                bytes.len() - r.at
            )),
        ));
    }
    Ok(())
}

fn corrupt(what: String) -> EventDecodeError {
    EventDecodeError::Corrupt(what)
}

/// Appends fields to an encoded event.
struct Writer(Vec<u8>);

impl Writer {
    /// Appends `event`: its tag, its time and its fields, or tag [`JSON`] and its JSON.
    fn event(&mut self, event: &Event) {
        match &event.kind {
            EventKind::ActivityScheduled {
                op,
                name,
                input,
                options,
            } => {
                self.head(ACTIVITY_SCHEDULED, event);
                self.op(op);
                self.str(name);
                self.str(input.as_json());
                if **options == ActivityOptions::default() {
                    self.0.push(0);
                } else {
                    self.0.push(1);
                    // Plain data with string keys: serialising cannot fail.
                    let json = serde_json::to_string(options)
                        .unwrap_or_else(|e| unreachable!("activity options encode: {e}"));
                    self.str(&json);
                }
            }
            EventKind::ActivityCompleted { op, output } => {
                self.head(ACTIVITY_COMPLETED, event);
                self.op(op);
                self.str(output.as_json());
            }
            EventKind::StepCompleted { op, output } => {
                self.head(STEP_COMPLETED, event);
                self.op(op);
                self.str(output.as_json());
            }
            EventKind::TimerCreated { op, fire_at } => {
                self.head(TIMER_CREATED, event);
                self.op(op);
                self.signed(fire_at.0);
            }
            EventKind::TimerFired { op } => {
                self.head(TIMER_FIRED, event);
                self.op(op);
            }
            EventKind::StepStarted { op, name, attempt } => {
                self.head(STEP_STARTED, event);
                self.op(op);
                self.str(name);
                self.varint(u64::from(*attempt));
            }
            EventKind::EventWaitStarted { op, name } => {
                self.head(EVENT_WAIT_STARTED, event);
                self.op(op);
                self.str(name);
            }
            EventKind::EventRaised {
                name,
                data,
                taken_by,
            } => {
                self.head(EVENT_RAISED, event);
                self.str(name);
                self.str(data.as_json());
                match taken_by {
                    None => self.0.push(0),
                    Some(op) => {
                        self.0.push(1);
                        self.op(op);
                    }
                }
            }
            _ => {
                self.0.push(JSON);
                self.0.extend_from_slice(event.encode().as_bytes());
            }
        }
    }

    /// The tag and time every event but a JSON one begins with.
    fn head(&mut self, tag: u8, event: &Event) {
        self.0.push(tag);
        self.signed(event.at.0);
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A signed integer, zigzag-encoded so that small negative values stay short.
    fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn op(&mut self, op: &OpId) {
        let path = op.path();
        self.varint(path.len() as u64);
        for seq in path {
            self.varint(u64::from(*seq));
        }
    }
}

/// The most bytes a varint of a `u64` takes (7 bits each).
const MAX_VARINT_LEN: usize = 10;

/// Reads the fields of an encoded event; `what` names the field for the error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &str) -> Result<u8, EventDecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| corrupt(format!("the event ends before {what}")))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &str) -> Result<u64, EventDecodeError> {
        // Most numbers in a journal (depths, sequence numbers, lengths) fit one byte.
        if let Some(&b) = self.bytes.get(self.at) {
            if b < 0x80 {
                self.at += 1;
                return Ok(u64::from(b));
            }
        }
        // Longer ones (times are six bytes) are read from the slice in one loop, with no
        // bounds check or error path per byte.
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(MAX_VARINT_LEN).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.at += i + 1;
                return Ok(v);
            }
        }
        Err(if rest.len() < MAX_VARINT_LEN {
            corrupt(format!("the event ends before {what}"))
        } else {
            corrupt(format!("{what} is not a valid number"))
        })
    }

    fn signed(&mut self, what: &str) -> Result<i64, EventDecodeError> {
        let v = self.varint(what)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A length and that many bytes.
    fn str_bytes(&mut self, what: &str) -> Result<&'a [u8], EventDecodeError> {
        let len = self.varint(what)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.at.checked_add(len))
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt(format!("the event ends inside {what}")))?;
        let bytes = &self.bytes[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn str(&mut self, what: &str) -> Result<&'a str, EventDecodeError> {
        std::str::from_utf8(self.str_bytes(what)?)
            .map_err(|e| corrupt(format!("{what} is not UTF-8: {e}")))
    }

    fn payload(&mut self, what: &str) -> Result<Payload, EventDecodeError> {
        Payload::from_json(self.str(what)?).map_err(|e| corrupt(format!("{what}: {e}")))
    }

    fn op(&mut self) -> Result<OpId, EventDecodeError> {
        const WHAT: &str = "the operation id";
        let depth = self.varint(WHAT)?;
        if depth == 0 || depth > MAX_DEPTH {
            return Err(corrupt(format!("an operation id {depth} levels deep")));
        }
        let mut seq = || {
            u32::try_from(self.varint(WHAT)?)
                .map_err(|_| corrupt("an operation id's number is out of range".into()))
        };
        if depth == 1 {
            // The common case: an operation of the workflow's own body.
            return Ok(OpId::new(None, seq()?));
        }
        let depth = depth as usize;
        if depth <= 4 {
            let mut path = [0u32; 4];
            for slot in &mut path[..depth] {
                *slot = seq()?;
            }
            return Ok(OpId::from_path(&path[..depth]));
        }
        let path = (0..depth).map(|_| seq()).collect::<Result<Vec<u32>, _>>()?;
        Ok(OpId::from_path(&path))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::failure::{Failure, FailureKind};
    use crate::{EventData, JOURNAL_FORMAT_VERSION};

    fn payload(json: &str) -> Payload {
        Payload::from_json(json).unwrap()
    }

    /// One event of each kind with a tag of its own, with their optional parts both ways,
    /// and kinds stored as JSON inside the binary.
    fn samples() -> Vec<Event> {
        let op = OpId::from_path(&[7]);
        let deep = OpId::from_path(&[1, 2, 3, 4, 5, 6]);
        let kinds = vec![
            EventKind::ActivityScheduled {
                op: op.clone(),
                name: "charge".into(),
                input: payload(r#"{"amount":5,"note":"ünïcode \"quoted\""}"#),
                options: Box::default(),
            },
            EventKind::ActivityScheduled {
                op: deep.clone(),
                name: "render".into(),
                input: payload("null"),
                options: Box::new(ActivityOptions {
                    queue: Some("gpu".into()),
                    attempt_timeout: Some(Duration::from_millis(1500)),
                    ..ActivityOptions::default()
                }),
            },
            EventKind::ActivityCompleted {
                op: op.clone(),
                output: payload("[1,2,3]"),
            },
            EventKind::TimerCreated {
                op: op.clone(),
                fire_at: Timestamp(-5),
            },
            EventKind::TimerFired { op: deep.clone() },
            EventKind::StepStarted {
                op: op.clone(),
                name: "op".into(),
                attempt: 1,
            },
            EventKind::StepStarted {
                op: deep.clone(),
                name: String::new(),
                attempt: u32::MAX,
            },
            EventKind::StepCompleted {
                op: OpId::from_path(&[u32::MAX]),
                output: payload("18446744073709551615"),
            },
            EventKind::EventWaitStarted {
                op: op.clone(),
                name: "approved".into(),
            },
            EventKind::EventRaised {
                name: "approved".into(),
                data: payload("true"),
                taken_by: None,
            },
            EventKind::EventRaised {
                name: "approved".into(),
                data: payload("{}"),
                taken_by: Some(deep.clone()),
            },
            EventKind::ActivityFailed {
                op: op.clone(),
                failure: Box::new(Failure::new(FailureKind::Application, "no")),
            },
            EventKind::WorkflowCompleted {
                output: payload("1"),
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                at: Timestamp([0, 1, -1, i64::MIN, i64::MAX, 1_796_483_530_010][i % 6]),
                kind,
            })
            .collect()
    }

    #[test]
    fn every_sample_round_trips_and_the_common_ones_are_not_json() {
        for ev in samples() {
            let bytes = ev.encode_binary();
            assert_eq!(decode(&bytes), Ok(ev.clone()), "{bytes:?}");
            let stored = Event::decode_stored(EventData::Binary(&bytes), JOURNAL_FORMAT_VERSION);
            assert_eq!(stored, Ok(ev.clone()));
            let json_inside = bytes[0] == JSON;
            let tagged = !matches!(
                ev.kind,
                EventKind::ActivityFailed { .. } | EventKind::WorkflowCompleted { .. }
            );
            assert_eq!(json_inside, !tagged, "{:?}", ev.kind);
        }
    }

    #[test]
    fn a_step_is_a_few_bytes() {
        let ev = Event {
            at: Timestamp(1_796_483_530_010),
            kind: EventKind::StepCompleted {
                op: OpId::from_path(&[9_999]),
                output: payload("9999"),
            },
        };
        // Tag, 6-byte time, depth and a 2-byte number, length and 4 bytes of output.
        assert_eq!(ev.encode_binary().len(), 1 + 6 + 3 + 5);
        assert!(ev.encode().len() > 60);
    }

    /// Whatever the bytes, decoding returns an event or says what is wrong; it never panics.
    /// Every proper prefix of an encoded event is corrupt.
    #[test]
    fn truncated_and_damaged_events_are_corrupt() {
        for ev in samples() {
            let bytes = ev.encode_binary();
            for end in 0..bytes.len() {
                if bytes[0] == JSON && end > 1 {
                    // A prefix of JSON is cut JSON; also corrupt, said by serde_json.
                    assert!(decode(&bytes[..end]).is_err());
                    continue;
                }
                let err = decode(&bytes[..end]).unwrap_err().to_string();
                assert!(err.starts_with("corrupt journal event"), "{err}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(
                decode(&longer).is_err(),
                "trailing byte after {:?}",
                ev.kind
            );
        }
        let said = |bytes: &[u8]| decode(bytes).unwrap_err().to_string();
        assert!(said(&[200, 0]).contains("unknown event tag 200"));
        assert!(said(&[TIMER_FIRED, 0, 0]).contains("0 levels deep"));
        assert!(said(&[TIMER_FIRED, 0, 1, 1, 9]).contains("1 bytes follow"));
        assert!(said(&[TIMER_FIRED, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x7f]).contains("out of range"));
        assert!(said(&[EVENT_WAIT_STARTED, 0, 1, 1, 2, 0xc3, 0x28]).contains("not UTF-8"));
        assert!(said(&[STEP_COMPLETED, 0, 1, 1, 2, b'{', b'x']).contains("not valid JSON"));
        assert!(said(&[EVENT_RAISED, 0, 0, 1, b'1', 2]).contains("taker flag 2"));
        assert!(said(&[JSON, b'{']).starts_with("corrupt journal event"));
        let eleven_bytes = [0xffu8; 11];
        let mut overlong = vec![TIMER_FIRED];
        overlong.extend_from_slice(&eleven_bytes);
        assert!(said(&overlong).contains("not a valid number"));
    }

    #[test]
    fn a_run_of_events_round_trips_and_names_the_event_that_does_not_decode() {
        let events = samples();
        let bytes = Event::encode_binary_run(&events);
        let mut out = Vec::new();
        Event::decode_binary_run(&bytes, events.len(), JOURNAL_FORMAT_VERSION, &mut out).unwrap();
        assert_eq!(out, events);

        // Cut inside the third event: the first two are read, the third is named.
        let first_two = Event::encode_binary_run(&events[..2]).len();
        let mut out = Vec::new();
        let (at, err) = decode_run(&bytes[..first_two + 3], events.len(), &mut out).unwrap_err();
        assert_eq!((at, out.len()), (2, 2));
        assert!(
            err.to_string().starts_with("corrupt journal event"),
            "{err}"
        );
        // A row that claims more events than it holds, or holds more than it claims.
        let (at, _) = decode_run(&bytes, events.len() + 1, &mut Vec::new()).unwrap_err();
        assert_eq!(at, events.len());
        let (at, err) = decode_run(&bytes, events.len() - 1, &mut Vec::new()).unwrap_err();
        assert_eq!(at, events.len() - 2);
        assert!(
            err.to_string().contains("follow the last of the row's"),
            "{err}"
        );
        assert_eq!(decode_run(&[], 0, &mut Vec::new()), Ok(()));
        // The run's format is checked as a single event's is.
        let old = Event::decode_binary_run(&bytes, events.len(), 3, &mut Vec::new());
        assert!(matches!(old, Err((0, EventDecodeError::Corrupt(_)))));
    }

    #[test]
    fn binary_events_check_their_format_version() {
        let bytes = samples()[0].encode_binary();
        let newer = Event::decode_stored(EventData::Binary(&bytes), JOURNAL_FORMAT_VERSION + 1);
        assert!(matches!(newer, Err(EventDecodeError::NewerFormat { .. })));
        let older = Event::decode_stored(EventData::Binary(&bytes), 3).unwrap_err();
        assert!(
            older
                .to_string()
                .contains("from before the binary encoding"),
            "{older}"
        );
    }

    fn op_ids() -> impl Strategy<Value = OpId> {
        prop::collection::vec(any::<u32>(), 1..8).prop_map(|p| OpId::from_path(&p))
    }

    fn payloads() -> impl Strategy<Value = Payload> {
        prop_oneof![
            any::<i64>().prop_map(|n| Payload::encode(&n).unwrap()),
            ".*".prop_map(|s| Payload::encode(&s).unwrap()),
            prop::collection::vec(any::<f32>(), 0..4).prop_map(|v| Payload::encode(&v).unwrap()),
        ]
    }

    fn kinds() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            (op_ids(), ".*", payloads(), prop::option::of("[a-z]{1,8}")).prop_map(
                |(op, name, input, queue)| EventKind::ActivityScheduled {
                    op,
                    name,
                    input,
                    options: Box::new(ActivityOptions {
                        queue,
                        ..ActivityOptions::default()
                    }),
                }
            ),
            (op_ids(), payloads())
                .prop_map(|(op, output)| EventKind::ActivityCompleted { op, output }),
            (op_ids(), any::<i64>()).prop_map(|(op, t)| EventKind::TimerCreated {
                op,
                fire_at: Timestamp(t)
            }),
            op_ids().prop_map(|op| EventKind::TimerFired { op }),
            (op_ids(), ".*", any::<u32>()).prop_map(|(op, name, attempt)| EventKind::StepStarted {
                op,
                name,
                attempt
            }),
            (op_ids(), payloads()).prop_map(|(op, output)| EventKind::StepCompleted { op, output }),
            (op_ids(), ".*").prop_map(|(op, name)| EventKind::EventWaitStarted { op, name }),
            (".*", payloads(), prop::option::of(op_ids())).prop_map(|(name, data, taken_by)| {
                EventKind::EventRaised {
                    name,
                    data,
                    taken_by,
                }
            }),
            (op_ids(), ".*").prop_map(|(op, message)| EventKind::StepFailed {
                op,
                failure: Box::new(Failure::new(FailureKind::Application, message)),
            }),
        ]
    }

    proptest! {
        /// Any event decodes to itself, and to what its JSON decodes to.
        #[test]
        fn events_round_trip(at in any::<i64>(), kind in kinds()) {
            let ev = Event { at: Timestamp(at), kind };
            let decoded = decode(&ev.encode_binary()).unwrap();
            prop_assert_eq!(&decoded, &ev);
            prop_assert_eq!(Event::decode(&ev.encode(), JOURNAL_FORMAT_VERSION).unwrap(), decoded);
        }

        /// Any bytes decode to an event or to a corrupt-event error, without panicking.
        #[test]
        fn any_bytes_decode_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&bytes);
        }
    }
}
