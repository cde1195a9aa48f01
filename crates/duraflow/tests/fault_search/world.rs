//! One run's world: the store, the virtual clock, up to two engine processes on the store, and
//! what the search did.

use std::sync::Arc;
use std::time::Duration;

use duraflow::prelude::*;
use duraflow::{Clock, EngineOptions, ManualClock, Store, Timestamp};

use crate::common;
use crate::harness::backend::{Backend, StoreKind};
use crate::harness::fault_store::FaultStore;
use crate::harness::ledger::Ledger;
use crate::harness::shapes;

/// Turn and task leases. The search moves the clock by seconds to fire timers, which leaves
/// leases alone; it moves it past a lease on purpose (after a crash, or to take work from a
/// live engine).
pub(crate) const LEASE: Duration = Duration::from_secs(600);

/// How many engine processes may run at once on the store.
pub(crate) const SLOTS: usize = 2;

/// A running engine process.
pub(crate) struct Live {
    /// The engine.
    pub(crate) engine: Engine,
    /// Its view of the store, which can kill it.
    pub(crate) store: Arc<FaultStore>,
    /// A client of the engine.
    pub(crate) client: Client,
    /// Its name in the log (`p3`: the third process started).
    pub(crate) name: String,
}

/// Everything one run works with.
pub(crate) struct World {
    /// Every random choice of the run comes from here.
    pub(crate) rng: fastrand::Rng,
    /// Engine time, shared by every engine.
    pub(crate) clock: Arc<ManualClock>,
    /// The store.
    pub(crate) backend: Backend,
    /// The harness's own opening of the store, for reads.
    pub(crate) observer: Arc<dyn Store>,
    /// The engine processes, running or not.
    pub(crate) slots: Vec<Option<Live>>,
    /// What the search asked of the clients.
    pub(crate) ledger: Ledger,
    /// What happened, in order, for the failure report.
    pub(crate) log: Vec<String>,
    origin: Timestamp,
    processes: u32,
    /// Processes killed by the search, and by their fuse.
    pub(crate) kills: u32,
    pub(crate) fuse_deaths: u32,
    /// Times the quiescent phase found no progress and moved the clock past a running
    /// engine's lease.
    pub(crate) lease_waits: u32,
}

impl World {
    /// A fresh store and one engine.
    pub(crate) async fn new(kind: StoreKind, seed: u64) -> World {
        let backend = Backend::new(kind, seed);
        let observer = backend.open().await;
        let clock = common::virtual_clock();
        let mut world = World {
            rng: fastrand::Rng::with_seed(seed),
            origin: clock.now(),
            clock,
            backend,
            observer,
            slots: (0..SLOTS).map(|_| None).collect(),
            ledger: Ledger::default(),
            log: Vec::new(),
            processes: 0,
            kills: 0,
            fuse_deaths: 0,
            lease_waits: 0,
        };
        world.start_engine(0).await;
        world
    }

    /// Adds a line to the log, stamped with the virtual time.
    pub(crate) fn note(&mut self, line: impl Into<String>) {
        let at = self.clock.now().since(self.origin);
        self.log
            .push(format!("[t+{:>7.1}s] {}", at.as_secs_f64(), line.into()));
    }

    /// Starts an engine process in `slot` (which must be empty), with settings drawn from the
    /// run's random source.
    pub(crate) async fn start_engine(&mut self, slot: usize) {
        self.processes += 1;
        let name = format!("p{}", self.processes);
        let options = EngineOptions {
            workflow_concurrency: self.rng.usize(1..=8),
            activity_concurrency: self.rng.usize(1..=8),
            fetch_batch: self.rng.usize(1..=4),
            commit_batch: self.rng.usize(1..=16),
            turn_lease: LEASE,
            task_lease: LEASE,
            poll_interval: Duration::from_millis(20),
            store_retry_initial: Duration::from_millis(5),
            shutdown_grace: Duration::from_secs(5),
            warm_instances: [0, 2, 1_000][self.rng.usize(0..3)],
            ..EngineOptions::default()
        };
        // Some processes read the time early (see `FaultStore::lag_clock`).
        let lag = Duration::from_millis([0, 0, 300, 2_000][self.rng.usize(0..4)]);
        let note = format!(
            "start {name} in slot {slot} (turns {}, activities {}, fetch {}, commit {}, warm {}, \
             clock lag {lag:?})",
            options.workflow_concurrency,
            options.activity_concurrency,
            options.fetch_batch,
            options.commit_batch,
            options.warm_instances
        );
        let store = Arc::new(FaultStore::new(self.backend.open().await, &name));
        store.lag_clock(lag);
        let engine = shapes::register(Engine::builder())
            .shared_store(store.clone())
            .clock(self.clock.clone())
            .options(options)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting engine {name}: {e}"));
        let client = engine.client();
        self.note(note);
        self.slots[slot] = Some(Live {
            engine,
            store,
            client,
            name,
        });
    }

    /// Kills the process in `slot`: its store calls fail from now on, and its engine is
    /// dropped without shutdown.
    pub(crate) fn kill(&mut self, slot: usize) {
        if let Some(live) = self.slots[slot].take() {
            live.store.kill();
            let name = live.name.clone();
            drop(live);
            self.kills += 1;
            self.note(format!("kill {name}"));
        }
    }

    /// Drops the processes whose fuse blew, and makes sure one process runs.
    pub(crate) async fn reap(&mut self) {
        for slot in 0..SLOTS {
            if self.slots[slot]
                .as_ref()
                .is_some_and(|live| live.store.is_dead())
            {
                let name = self.slots[slot].as_ref().map(|l| l.name.clone());
                self.kill(slot);
                self.kills -= 1;
                self.fuse_deaths += 1;
                self.note(format!("{} died at its fuse", name.unwrap_or_default()));
            }
        }
        if self.live_slots().is_empty() {
            self.start_engine(0).await;
        }
    }

    /// How many engine processes the run has started.
    pub(crate) fn processes(&self) -> u32 {
        self.processes
    }

    /// The slots with a running process.
    pub(crate) fn live_slots(&self) -> Vec<usize> {
        (0..SLOTS).filter(|s| self.slots[*s].is_some()).collect()
    }

    /// A running process, drawn at random (there is always one after [`World::reap`]).
    pub(crate) fn any_live(&mut self) -> Option<&Live> {
        let live = self.live_slots();
        let slot = *live.get(self.rng.usize(0..live.len().max(1)))?;
        self.slots[slot].as_ref()
    }

    /// Moves the clock past every lease.
    pub(crate) fn expire_leases(&mut self) {
        self.clock.advance(LEASE + Duration::from_secs(1));
        self.note("clock moved past every lease");
    }

    /// Shuts the running engines down and removes the store.
    pub(crate) async fn finish(mut self) {
        for slot in 0..SLOTS {
            if let Some(live) = self.slots[slot].take() {
                live.store.disarm();
                live.engine.shutdown().await;
            }
        }
        self.backend.clean_up().await;
    }
}
