//! The feed: records appended with their turn's commit, in commit order, read from a cursor.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use duraflow_core::Timestamp;

use super::Manage;
use super::{
    assert_lease_lost, at, commit, commit_of, first_turn, journal_len, new_instance, payload,
    turn_of, user_event, LEASE, T0,
};
use crate::feed::{FeedEntry, FeedRecord};
use crate::store::Store;
use crate::types::{InstanceStatus, TurnCommit, TurnWork};

fn record(topic: &str, seq: u64) -> FeedRecord {
    FeedRecord {
        topic: topic.to_owned(),
        payload: payload(seq),
        seq,
    }
}

async fn all(store: &dyn Store, after: u64) -> Vec<FeedEntry> {
    store.read_feed(after, 10_000, None).await.unwrap()
}

/// A checkpoint of `work` (its lease kept) that appends nothing to the journal, at `now`,
/// carrying `feed`.
fn checkpoint(work: &TurnWork, now: Timestamp, feed: Vec<FeedRecord>) -> TurnCommit {
    let mut c = TurnCommit::unchanged(&work.instance, work.token, now);
    c.journal_base = journal_len(work);
    c.keep_lease = Some(LEASE);
    c.feed = feed;
    c
}

/// A commit's records are appended with it, in order, at increasing positions, with the
/// instance id and the commit's time.
pub async fn records_appear_with_their_commit(store: Arc<dyn Store>) {
    assert!(
        all(&*store, 0).await.is_empty(),
        "a new store's feed is empty"
    );
    let work = first_turn(&*store, "feed-a").await;
    let mut c = commit_of(&work, at(5));
    c.feed = vec![record("t.one", 1), record("t.two", 2)];
    commit(&*store, c).await.unwrap();
    let got = all(&*store, 0).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].position >= 1 && got[0].position < got[1].position);
    assert_eq!(got[0].instance_id, "feed-a");
    assert_eq!(
        (got[0].topic.as_str(), got[1].topic.as_str()),
        ("t.one", "t.two")
    );
    assert_eq!(got[1].payload, payload(2u64));
    assert_eq!(got[0].at, at(5));
    // A commit without records appends none.
    store.send(user_event("feed-a", "go", at(6))).await.unwrap();
    let work = turn_of(&*store, "feed-a", at(6)).await;
    commit(&*store, commit_of(&work, at(6))).await.unwrap();
    assert_eq!(all(&*store, 0).await.len(), 2);
}

/// A refused commit (its lease lost) appends none of its records.
pub async fn a_refused_commit_appends_nothing(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "feed-lost").await;
    let later = at(LEASE.as_millis() as i64 + 1);
    // The lease ran out and another turn took the instance.
    let again = store
        .fetch_turns(&crate::FetchFilter::default(), later, 10, LEASE, None)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let mut stale = commit_of(&work, later);
    stale.feed = vec![record("t.stale", 1)];
    assert_lease_lost(
        store.commit_turns(vec![stale]).await.unwrap().remove(0),
        "a commit with an expired lease",
    );
    assert!(
        all(&*store, 0).await.is_empty(),
        "nothing of it is appended"
    );
    let mut c = commit_of(&again[0], later);
    c.feed = vec![record("t.fresh", 1)];
    commit(&*store, c).await.unwrap();
    let got = all(&*store, 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, "t.fresh");
}

/// Reads return the records after a position, at most `limit`, and only the topics under a
/// prefix when one is given.
pub async fn reads_start_after_a_position_and_filter_by_prefix(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "feed-r").await;
    let mut c = commit_of(&work, T0);
    c.feed = (1..=6)
        .map(|i| record(if i % 2 == 0 { "even.n" } else { "odd.n" }, i))
        .collect();
    commit(&*store, c).await.unwrap();
    let every = all(&*store, 0).await;
    assert_eq!(every.len(), 6);
    let after = store.read_feed(every[1].position, 10, None).await.unwrap();
    assert_eq!(after, every[2..].to_vec());
    let two = store.read_feed(every[1].position, 2, None).await.unwrap();
    assert_eq!(two, every[2..4].to_vec());
    let even = store.read_feed(0, 10, Some("even.")).await.unwrap();
    assert_eq!(even.len(), 3);
    assert!(even.iter().all(|e| e.topic == "even.n"));
    let later_even = store
        .read_feed(even[0].position, 1, Some("even"))
        .await
        .unwrap();
    assert_eq!(later_even, vec![even[1].clone()]);
    assert!(store
        .read_feed(every[5].position, 10, None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .read_feed(0, 10, Some("none."))
        .await
        .unwrap()
        .is_empty());
}

/// A record whose `(execution, seq)` the instance already has is left out (a replay derived it
/// again); a new execution numbers from 1 again.
pub async fn records_derived_again_are_appended_once(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "feed-d").await;
    let mut c = commit_of(&work, T0);
    c.feed = vec![record("t", 1), record("t", 2)];
    commit(&*store, c).await.unwrap();
    store.send(user_event("feed-d", "go", at(1))).await.unwrap();
    let work = turn_of(&*store, "feed-d", at(1)).await;
    let mut c = commit_of(&work, at(1));
    c.feed = vec![record("t", 2), record("t", 3)];
    c.continue_as_new = Some(payload("next"));
    commit(&*store, c).await.unwrap();
    let seqs: Vec<u64> = all(&*store, 0)
        .await
        .iter()
        .map(|e| e.payload.decode().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "seq 2 is appended once");
    store.send(user_event("feed-d", "go", at(2))).await.unwrap();
    let work = turn_of(&*store, "feed-d", at(2)).await;
    assert_eq!(work.instance.execution, 2);
    let mut c = commit_of(&work, at(2));
    c.feed = vec![record("t", 1)];
    commit(&*store, c).await.unwrap();
    assert_eq!(all(&*store, 0).await.len(), 4, "execution 2 numbers from 1");
}

/// A purged instance created again under its id publishes afresh.
pub async fn a_purged_instance_starts_afresh(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "feed-p").await;
    let mut c = commit_of(&work, T0);
    c.feed = vec![record("t", 1)];
    c.status = InstanceStatus::Completed;
    c.output = Some(payload("done"));
    commit(&*store, c).await.unwrap();
    assert!(store.manage().purge("feed-p").await.unwrap());
    let work = first_turn(&*store, "feed-p").await;
    let mut c = commit_of(&work, T0);
    c.feed = vec![record("t", 1)];
    commit(&*store, c).await.unwrap();
    assert_eq!(all(&*store, 0).await.len(), 2);
}

/// A subscriber's cursor is kept and never moves backwards.
pub async fn cursors_are_kept_and_never_move_backwards(store: Arc<dyn Store>) {
    assert_eq!(store.feed_cursor("projector").await.unwrap(), None);
    store.save_feed_cursor("projector", 5).await.unwrap();
    assert_eq!(store.feed_cursor("projector").await.unwrap(), Some(5));
    store.save_feed_cursor("projector", 3).await.unwrap();
    assert_eq!(store.feed_cursor("projector").await.unwrap(), Some(5));
    store.save_feed_cursor("projector", 9).await.unwrap();
    assert_eq!(store.feed_cursor("projector").await.unwrap(), Some(9));
    assert_eq!(store.feed_cursor("other").await.unwrap(), None);
    assert!(store.save_feed_cursor("", 1).await.is_err());
}

/// Writers commit records concurrently while a reader follows the feed with one cursor: the
/// reader sees every record exactly once, in position order, and none is appended later below
/// its cursor.
pub async fn concurrent_writers_and_a_reader_see_everything_once(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const COMMITS: u64 = 25;
    const PER_COMMIT: u64 = 3;
    for i in 0..WRITERS {
        store
            .create_instance(new_instance(&format!("feed-w{i}"), "wf"))
            .await
            .unwrap();
    }
    let works = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 1000, LEASE, None)
        .await
        .unwrap();
    assert_eq!(works.len(), WRITERS);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.read_feed(cursor, 50, None).await.unwrap();
                for e in &batch {
                    assert!(
                        e.position > cursor,
                        "positions increase: {cursor} then {e:?}"
                    );
                    cursor = e.position;
                }
                seen.extend(batch.into_iter().map(|e| (e.instance_id, e.topic)));
                if finished && store.read_feed(cursor, 1, None).await.unwrap().is_empty() {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = works
        .into_iter()
        .map(|work| {
            let store = store.clone();
            tokio::spawn(async move {
                for k in 0..COMMITS {
                    let feed = (1..=PER_COMMIT)
                        .map(|j| record(&format!("w.{k}.{j}"), k * PER_COMMIT + j))
                        .collect();
                    let results = store
                        .commit_turns(vec![checkpoint(&work, T0, feed)])
                        .await
                        .unwrap();
                    for r in results {
                        r.unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let total = WRITERS * (COMMITS * PER_COMMIT) as usize;
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no record is seen twice");
    assert_eq!(
        seen.len(),
        total,
        "the reader saw every record (a record committed below its cursor would be missed)"
    );
    assert_eq!(all(&*store, 0).await.len(), total);
}
