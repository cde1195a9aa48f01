//! The random phase: starts, raises, cancels and terminates at random moments, the clock
//! moved, engine processes killed (at once, or at a random store write) and started again.

use std::time::Duration;

use crate::harness::shapes::{Shape, EVENT};
use crate::harness::world::{World, SLOTS};

/// Runs `steps` random actions.
pub(crate) async fn run(world: &mut World, steps: usize) {
    for _ in 0..steps {
        match world.rng.u32(0..100) {
            0..=13 => start(world).await,
            14..=35 => raise(world, 1).await,
            36..=40 => {
                let n = world.rng.usize(2..=4);
                raise(world, n).await;
            }
            41..=42 => stop(world, false).await,
            43 => stop(world, true).await,
            44..=58 => {
                let secs = world.rng.u64(1..=20);
                world.clock.advance(Duration::from_secs(secs));
                world.note(format!("clock +{secs}s"));
            }
            59..=60 => world.expire_leases(),
            61..=78 => {
                let n = world.rng.usize(1..=2_000);
                for _ in 0..n {
                    tokio::task::yield_now().await;
                }
            }
            79..=84 => crash(world).await,
            85..=90 => arm(world),
            _ => {
                if let Some(slot) = (0..SLOTS).find(|s| world.slots[*s].is_none()) {
                    world.start_engine(slot).await;
                }
            }
        }
        world.reap().await;
    }
}

async fn start(world: &mut World) {
    let shape = Shape::ALL[world.rng.usize(0..Shape::ALL.len())];
    let input = match shape {
        Shape::Looper | Shape::Racer => world.rng.u32(0..2),
        _ => world.rng.u32(0..40),
    };
    let id = format!("{}-{}", shape.name(), world.ledger.next_id());
    let Some(live) = world.any_live() else { return };
    let (client, name) = (live.client.clone(), live.name.clone());
    match client.start(shape.name(), &input).id(&id).await {
        Ok(run) if !run.existed => {
            world.ledger.started.push((id.clone(), shape));
            world.note(format!("{name}: start {id}({input})"));
        }
        Ok(_) => world.note(format!("{name}: start {id}: it existed")),
        Err(e) => world.note(format!("{name}: start {id} refused: {e}")),
    }
}

/// Raises `n` events back to back on one instance.
async fn raise(world: &mut World, n: usize) {
    if world.ledger.started.is_empty() {
        return start(world).await;
    }
    let target = world.ledger.started[world.rng.usize(0..world.ledger.started.len())]
        .0
        .clone();
    for _ in 0..n {
        raise_on(world, &target).await;
    }
}

/// Raises one event on `target` through a running engine's client and records what its
/// sender was told.
pub(crate) async fn raise_on(world: &mut World, target: &str) {
    let seq = world.ledger.next_seq();
    let Some(live) = world.any_live() else { return };
    let (client, name) = (live.client.clone(), live.name.clone());
    let outcome = client
        .raise_event(target, EVENT, &seq)
        .await
        .map_err(|e| e.to_string());
    world.note(match &outcome {
        Ok(()) => format!("{name}: raise #{seq} on {target}"),
        Err(e) => format!("{name}: raise #{seq} on {target} refused: {e}"),
    });
    world.ledger.raised.push(crate::harness::ledger::Raised {
        instance: target.to_owned(),
        seq,
        outcome,
    });
}

/// Cancels (or terminates) a started instance.
async fn stop(world: &mut World, terminate: bool) {
    if world.ledger.started.is_empty() {
        return;
    }
    let target = world.ledger.started[world.rng.usize(0..world.ledger.started.len())]
        .0
        .clone();
    let Some(live) = world.any_live() else { return };
    let (client, name) = (live.client.clone(), live.name.clone());
    let (verb, result) = if terminate {
        ("terminate", client.terminate(&target, "fault search").await)
    } else {
        ("cancel", client.cancel(&target, "fault search").await)
    };
    world.note(match result {
        Ok(()) => format!("{name}: {verb} {target}"),
        Err(e) => format!("{name}: {verb} {target} refused: {e}"),
    });
}

/// Kills a running process; maybe moves the clock past its leases, maybe starts another.
async fn crash(world: &mut World) {
    let live = world.live_slots();
    let slot = live[world.rng.usize(0..live.len())];
    world.kill(slot);
    if world.rng.bool() {
        world.expire_leases();
    }
    if world.rng.u32(0..10) < 7 {
        world.start_engine(slot).await;
    }
}

/// Arms a running process's fuse: it dies at one of its next store writes.
fn arm(world: &mut World) {
    let live = world.live_slots();
    let slot = live[world.rng.usize(0..live.len())];
    let writes = world.rng.u64(1..=30);
    let apply_last = world.rng.bool();
    if let Some(live) = &world.slots[slot] {
        live.store.arm(writes, apply_last);
        let name = live.name.clone();
        world.note(format!(
            "{name} dies at its write #{writes} from now{}",
            if apply_last {
                ", after applying it"
            } else {
                ""
            }
        ));
    }
}
