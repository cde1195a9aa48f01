//! The fault search's harness: one module per part of a run.
//!
//! A run ([`run_seed`]) is: a fresh store and one engine ([`world`]); a random phase of
//! faults ([`chaos`]); a quiescent phase that lets everything finish ([`quiesce`]); the checks
//! ([`invariants`]) against what the search did ([`ledger`]).

pub(crate) mod backend;
pub(crate) mod chaos;
pub(crate) mod fault_store;
pub(crate) mod invariants;
pub(crate) mod ledger;
pub(crate) mod quiesce;
pub(crate) mod seeds;
pub(crate) mod shapes;
pub(crate) mod world;

use backend::StoreKind;
use world::World;

/// The fewest and most random actions in a run.
const STEPS: std::ops::RangeInclusive<usize> = 40..=120;

/// Lines of the run's log shown with a failure.
const LOG_TAIL: usize = 80;

/// Runs one seed on a fresh store of `kind`; the error is the failure report.
pub(crate) async fn run_seed(kind: StoreKind, seed: u64) -> Result<(), String> {
    let began = std::time::Instant::now();
    let mut world = World::new(kind, seed).await;
    let steps = world.rng.usize(STEPS);
    chaos::run(&mut world, steps).await;
    let mut violations = quiesce::run(&mut world).await;
    let findings = invariants::check(&world).await;
    let checked = findings.instances;
    violations.extend(findings.violations);
    eprintln!(
        "seed {seed} on {}: {steps} actions, {} instances started and {checked} checked, \
         {} of {} events accepted, {} engine processes ({} killed, {} by their fuse), \
         {} lease expiries waited for, {} violations, {:.1?} so far",
        kind.test_name(),
        world.ledger.started.len(),
        world
            .ledger
            .raised
            .iter()
            .filter(|r| r.outcome.is_ok())
            .count(),
        world.ledger.raised.len(),
        world.processes(),
        world.kills,
        world.fuse_deaths,
        world.lease_waits,
        violations.len(),
        began.elapsed()
    );
    let report = (!violations.is_empty()).then(|| {
        let skip = world.log.len().saturating_sub(LOG_TAIL);
        format!(
            "seed {seed} on {store}: {n} violation(s)\n  {violations}\n\
             {journals}the run's last {shown} actions:\n  {log}\n\
             reproduce: DURAFLOW_FAULT_SEED={seed} cargo test -p duraflow --all-features \
             --test fault_search {store}",
            store = kind.test_name(),
            n = violations.len(),
            violations = violations.join("\n  "),
            journals = findings
                .journals
                .iter()
                .map(|j| format!("{j}\n"))
                .collect::<String>(),
            shown = world.log.len() - skip,
            log = world.log[skip..].join("\n  "),
        )
    });
    world.finish().await;
    report.map_or(Ok(()), Err)
}

/// Runs the seeds [`seeds::seeds`] names on `kind`, each in a task of its own so that a
/// panic is reported with its seed, and fails with every failing seed's report.
pub(crate) async fn search(kind: StoreKind) {
    crate::common::init_tracing();
    let seeds = seeds::seeds();
    let mut failures = Vec::new();
    for &seed in &seeds {
        eprintln!("fault search on {}: seed {seed}", kind.test_name());
        let failure = match tokio::spawn(run_seed(kind, seed)).await {
            Ok(Ok(())) => continue,
            Ok(Err(report)) => report,
            Err(e) => {
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                format!(
                    "seed {seed} on {}: the run panicked: {message}",
                    kind.test_name()
                )
            }
        };
        eprintln!("{failure}");
        failures.push((seed, failure));
    }
    let failing: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
    assert!(
        failures.is_empty(),
        "the fault search on {} failed {} of {} seeds: {failing:?}\n\n{}",
        kind.test_name(),
        failures.len(),
        seeds.len(),
        failures
            .into_iter()
            .map(|(_, f)| f)
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
