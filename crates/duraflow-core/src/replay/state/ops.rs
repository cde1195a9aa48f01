//! The operations of one execution, in one map keyed by operation id: for each, the slot its
//! future waits on and its state machine (a row of its primitive's transition table).
//!
//! The two used to be separate maps, and a replayed step looked its id up in each of them
//! about five times (issue, the delivery's check, its application, the future taking the
//! result): half the hashing of a replay. One entry holds both; it is removed when neither is
//! left, so the map holds only operations still in flight (a warm run's memory does not grow
//! with its journal).
//!
//! Most of the time only one or two operations are in flight (a workflow awaiting one step or
//! activity after another), and hashing an id cost more than the rest of a lookup: replaying
//! 10,000 inline steps spent about 8 M of its 37.5 M instructions in the map. So a few entries
//! are kept in a vector and found by comparing ids; past [`SMALL`] in flight (a fan-out) the
//! entries move to a hash map, and back once it is empty.

use foldhash::HashMap;

use super::Slot;
use crate::op_id::OpId;
use crate::primitive::Primitive;

/// An operation's primitive and the state it is in.
pub(crate) type Machine = (Primitive, &'static str);

/// What is known of one operation.
#[derive(Debug, Default)]
struct Op {
    /// Where its future stands, from the time it registers until it takes its result.
    slot: Option<Slot>,
    /// Its state machine, from its issue until it reaches a final state.
    machine: Option<Machine>,
}

/// The most operations kept in a vector before they move to a hash map.
const SMALL: usize = 8;

/// Operations by id: a few in a vector, more in a hash map (see the module docs).
#[derive(Debug)]
enum OpMap {
    Small(Vec<(OpId, Op)>),
    Large(HashMap<OpId, Op>),
}

impl Default for OpMap {
    fn default() -> Self {
        OpMap::Small(Vec::new())
    }
}

impl OpMap {
    fn get(&self, op: &OpId) -> Option<&Op> {
        match self {
            OpMap::Small(v) => v.iter().find(|(id, _)| id == op).map(|(_, o)| o),
            OpMap::Large(m) => m.get(op),
        }
    }

    fn get_mut(&mut self, op: &OpId) -> Option<&mut Op> {
        match self {
            OpMap::Small(v) => v.iter_mut().find(|(id, _)| id == op).map(|(_, o)| o),
            OpMap::Large(m) => m.get_mut(op),
        }
    }

    /// The entry of `op`, made empty if there is none.
    fn entry(&mut self, op: &OpId) -> &mut Op {
        if let OpMap::Small(v) = self {
            if v.len() >= SMALL && !v.iter().any(|(id, _)| id == op) {
                *self = OpMap::Large(std::mem::take(v).into_iter().collect());
            }
        }
        match self {
            OpMap::Small(v) => {
                let i = match v.iter().position(|(id, _)| id == op) {
                    Some(i) => i,
                    None => {
                        v.push((op.clone(), Op::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            OpMap::Large(m) => m.entry(op.clone()).or_default(),
        }
    }

    fn remove(&mut self, op: &OpId) {
        match self {
            OpMap::Small(v) => {
                if let Some(i) = v.iter().position(|(id, _)| id == op) {
                    v.swap_remove(i);
                }
            }
            OpMap::Large(m) => {
                m.remove(op);
                if m.is_empty() {
                    *self = OpMap::default();
                }
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &Op> {
        let (small, large) = match self {
            OpMap::Small(v) => (Some(v.iter().map(|(_, o)| o)), None),
            OpMap::Large(m) => (None, Some(m.values())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            OpMap::Small(v) => v.len(),
            OpMap::Large(m) => m.len(),
        }
    }
}

/// The operations in flight (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Ops {
    map: OpMap,
    /// How many entries have a slot.
    slots: usize,
    /// How many entries have a machine (operations issued and not in a final state).
    machines: usize,
}

impl Ops {
    /// The slot of `op`, if its future registered one and has not taken its result.
    pub(crate) fn slot(&self, op: &OpId) -> Option<&Slot> {
        self.map.get(op)?.slot.as_ref()
    }

    /// Sets the slot of `op`.
    pub(crate) fn set_slot(&mut self, op: &OpId, slot: Slot) {
        let entry = self.map.entry(op);
        if entry.slot.replace(slot).is_none() {
            self.slots += 1;
        }
    }

    /// Removes the slot of `op` and returns it.
    pub(crate) fn take_slot(&mut self, op: &OpId) -> Option<Slot> {
        let entry = self.map.get_mut(op)?;
        let slot = entry.slot.take()?;
        self.slots -= 1;
        if entry.machine.is_none() {
            self.map.remove(op);
        }
        Some(slot)
    }

    /// The slots of every operation.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.map.values().filter_map(|o| o.slot.as_ref())
    }

    /// How many operations have a slot.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots
    }

    /// The primitive and state of `op`, while it is issued and not in a final state.
    pub(crate) fn machine(&self, op: &OpId) -> Option<Machine> {
        self.map.get(op)?.machine
    }

    /// The slot and machine of `op`, in one lookup.
    pub(crate) fn get(&self, op: &OpId) -> (Option<&Slot>, Option<Machine>) {
        match self.map.get(op) {
            Some(o) => (o.slot.as_ref(), o.machine),
            None => (None, None),
        }
    }

    /// Starts (or replaces) the state machine of `op`. `state` is given the machine it had, if
    /// any, and returns the one to set.
    pub(crate) fn set_machine(
        &mut self,
        op: &OpId,
        state: impl FnOnce(Option<Machine>) -> Machine,
    ) {
        // An operation is most often new here: one lookup that inserts (cloning a shallow id
        // copies it, no more) rather than a lookup that misses and then an insert.
        let entry = self.map.entry(op);
        let had = entry.machine;
        entry.machine = Some(state(had));
        if had.is_none() {
            self.machines += 1;
        }
    }

    /// Forgets the state machine of `op` (its slot stays).
    pub(crate) fn remove_machine(&mut self, op: &OpId) {
        let Some(entry) = self.map.get_mut(op) else {
            return;
        };
        if entry.machine.take().is_some() {
            self.machines -= 1;
        }
        if entry.slot.is_none() {
            self.map.remove(op);
        }
    }

    /// Moves `op` along the row of its table for `event`; a machine that reaches a final state
    /// is forgotten. Returns whether the table had the row.
    pub(crate) fn advance(&mut self, op: &OpId, event: &str) -> bool {
        let Some(entry) = self.map.get_mut(op) else {
            return false;
        };
        let moved = step(entry, &mut self.machines, event);
        if entry.slot.is_none() && entry.machine.is_none() {
            self.map.remove(op);
        }
        moved
    }

    /// Moves `op` along its table for `event`, if one is given (as [`Ops::advance`]), and then,
    /// in the same lookup, hands its slot to `then`, which may change it. An entry left with
    /// neither slot nor machine is removed.
    pub(crate) fn update(
        &mut self,
        op: &OpId,
        event: Option<&str>,
        then: impl FnOnce(&mut Option<Slot>),
    ) {
        let Some(entry) = self.map.get_mut(op) else {
            return;
        };
        if let Some(event) = event {
            step(entry, &mut self.machines, event);
        }
        let had_slot = entry.slot.is_some();
        then(&mut entry.slot);
        match (had_slot, entry.slot.is_some()) {
            (true, false) => self.slots -= 1,
            (false, true) => self.slots += 1,
            _ => {}
        }
        if entry.slot.is_none() && entry.machine.is_none() {
            self.map.remove(op);
        }
    }

    /// How many operations are issued and not in a final state.
    pub(crate) fn open_count(&self) -> usize {
        self.machines
    }
}

/// Moves `entry`'s machine along the row of its table for `event`, forgetting a machine that
/// reaches a final state (`machines` counts those left). Returns whether the table had the row.
fn step(entry: &mut Op, machines: &mut usize, event: &str) -> bool {
    let Some((primitive, from)) = entry.machine else {
        return false;
    };
    let Some(to) = primitive.step(from, event) else {
        return false;
    };
    if primitive.is_final(to) {
        entry.machine = None;
        *machines -= 1;
    } else {
        entry.machine = Some((primitive, to));
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::replay::state::Completion;

    fn op(seq: u32) -> OpId {
        OpId::new(None, seq)
    }

    fn issue(ops: &mut Ops, id: &OpId) {
        ops.set_machine(id, |_| (Primitive::Step, Primitive::Step.initial()));
        ops.set_slot(id, Slot::Waiting(None));
    }

    #[test]
    fn an_operation_is_forgotten_once_it_is_final_and_its_result_taken() {
        let mut ops = Ops::default();
        let (a, b) = (op(0), op(1));
        issue(&mut ops, &a);
        issue(&mut ops, &b);
        assert_eq!((ops.open_count(), ops.slot_count()), (2, 2));

        // The result arrives: the machine ends, the slot holds the result.
        ops.update(&a, Some("step_completed"), |slot| {
            *slot = Some(Slot::Done(Completion::Fired));
        });
        assert_eq!(ops.machine(&a), None);
        assert!(matches!(ops.slot(&a), Some(Slot::Done(_))));
        assert_eq!((ops.open_count(), ops.slot_count()), (1, 2));

        // The future takes it: nothing of `a` is left.
        assert!(matches!(ops.take_slot(&a), Some(Slot::Done(_))));
        assert_eq!(ops.get(&a).0.map(|_| ()), None);
        assert_eq!((ops.open_count(), ops.slot_count()), (1, 1));
        assert_eq!(ops.map.len(), 1, "only `b` is held");

        // A row the table does not have leaves the machine where it was.
        assert!(!ops.advance(&b, "timer_fired"));
        assert_eq!(ops.machine(&b), Some((Primitive::Step, "running")));
        assert!(ops.advance(&b, "step_retrying"));
        assert_eq!(ops.machine(&b), Some((Primitive::Step, "backing_off")));
    }

    /// Past `SMALL` operations in flight the entries move to a hash map, every one still
    /// found, and back to a vector once the map is empty.
    #[test]
    fn a_fan_out_moves_the_entries_to_a_map_and_back() {
        let mut ops = Ops::default();
        let ids: Vec<OpId> = (0..3 * SMALL as u32).map(op).collect();
        for (n, id) in ids.iter().enumerate() {
            issue(&mut ops, id);
            assert_eq!(ops.map.len(), n + 1);
            assert_eq!(
                matches!(ops.map, OpMap::Large(_)),
                n >= SMALL,
                "{n} in flight"
            );
        }
        assert_eq!((ops.open_count(), ops.slot_count()), (ids.len(), ids.len()));
        assert_eq!(ops.slots().count(), ids.len());
        for id in &ids {
            assert_eq!(ops.machine(id), Some((Primitive::Step, "running")));
            ops.update(id, Some("step_completed"), |slot| {
                *slot = Some(Slot::Done(Completion::Fired));
            });
        }
        for id in ids.iter().rev() {
            assert!(matches!(ops.take_slot(id), Some(Slot::Done(_))));
            assert!(ops.take_slot(id).is_none(), "taken once");
        }
        assert_eq!(
            (ops.open_count(), ops.slot_count(), ops.map.len()),
            (0, 0, 0)
        );
        assert!(matches!(ops.map, OpMap::Small(_)));
        // A vector of `SMALL` entries takes a known id without moving to a map.
        for id in &ids[..SMALL] {
            issue(&mut ops, id);
        }
        ops.set_slot(&ids[0], Slot::Abandoned);
        assert!(matches!(ops.map, OpMap::Small(_)));
        assert!(matches!(ops.slot(&ids[0]), Some(Slot::Abandoned)));
    }

    #[test]
    fn a_machine_or_a_slot_alone_keeps_the_entry() {
        let mut ops = Ops::default();
        let a = op(3);
        issue(&mut ops, &a);
        // The slot goes first (a result taken before the table's end): the machine stays.
        ops.take_slot(&a);
        assert_eq!(ops.machine(&a), Some((Primitive::Step, "running")));
        assert_eq!((ops.open_count(), ops.slot_count()), (1, 0));
        ops.remove_machine(&a);
        assert_eq!(
            (ops.open_count(), ops.slot_count(), ops.map.len()),
            (0, 0, 0)
        );

        // An update that leaves a slot on an operation with no machine keeps it; one that
        // empties it drops the entry.
        ops.set_slot(&a, Slot::Abandoned);
        ops.update(&a, Some("step_completed"), |_| {});
        assert!(matches!(ops.slot(&a), Some(Slot::Abandoned)));
        ops.update(&a, None, |slot| *slot = None);
        assert_eq!((ops.slot_count(), ops.map.len()), (0, 0));

        // Operations nobody knows are left alone.
        ops.update(&op(9), Some("step_completed"), |slot| {
            *slot = Some(Slot::Abandoned);
        });
        assert!(!ops.advance(&op(9), "step_completed"));
        assert_eq!(ops.map.len(), 0);
    }
}
