//! Which seeds a search runs: `DURAFLOW_FAULT_SEED` (the first, or the only one) and
//! `DURAFLOW_FAULT_SEEDS` (how many), with a small default for CI.

/// Seeds run when neither variable is set: a handful, so CI stays quick.
pub(crate) const CI_SEEDS: u64 = 10;

fn var(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|e| {
        panic!("{name}={value:?} is not a whole number ({e}); set it to a seed or a count")
    }))
}

/// The seeds to run, in order.
///
/// - neither set: seeds `1..=CI_SEEDS`;
/// - `DURAFLOW_FAULT_SEED=s`: seed `s` alone (to reproduce a failure);
/// - `DURAFLOW_FAULT_SEEDS=n`: seeds `1..=n`;
/// - both: `n` seeds from `s` on (`s`, `s+1`, ...), to search new ground.
pub(crate) fn seeds() -> Vec<u64> {
    match (var("DURAFLOW_FAULT_SEED"), var("DURAFLOW_FAULT_SEEDS")) {
        (Some(first), None) => vec![first],
        (Some(first), Some(count)) => (0..count).map(|i| first.wrapping_add(i)).collect(),
        (None, Some(count)) => (1..=count).collect(),
        (None, None) => (1..=CI_SEEDS).collect(),
    }
}
