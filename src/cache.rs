//! Byte-bounded sharded LRU caches with single-flight and brief negative caching.
//!
//! Two of these serve the image route: variants (resized results) and source bytes, so N sizes of
//! one picture cost one upstream fetch, and N concurrent requests for one variant cost one
//! transform.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::watch;

use crate::sync::lock;

/// Most shards a cache is split into; fewer when the budget is small, so that every shard can
/// still hold an entry of the largest allowed size.
const MAX_SHARDS: u64 = 16;
/// Bookkeeping bytes charged per entry on top of its key's and value's heap bytes: list node,
/// hash slot, `Arc` and `Bytes` headers, the ETag, allocator rounding. Measured with
/// benches/scaling.sh: 100,000 one-pixel variants with their sources held ~780 bytes per pair
/// in resident memory, about 400 of them beyond the payloads and keys.
const ENTRY_OVERHEAD: u64 = 384;
/// Failures remembered at most (each is small); the oldest are forgotten first.
const NEGATIVE_ENTRIES: usize = 4096;

/// How many heap bytes a cached key or value holds.
pub(crate) trait Weigh {
    fn weight(&self) -> u64;
}

impl Weigh for bytes::Bytes {
    fn weight(&self) -> u64 {
        self.len() as u64
    }
}

impl Weigh for String {
    fn weight(&self) -> u64 {
        self.len() as u64
    }
}

impl<T: Weigh> Weigh for std::sync::Arc<T> {
    fn weight(&self) -> u64 {
        (**self).weight()
    }
}

/// Counters of one cache, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Requests that waited for another request's work instead of doing it.
    pub coalesced: AtomicU64,
    pub evictions: AtomicU64,
    /// Values larger than the entry cap: served, not kept.
    pub oversize: AtomicU64,
    pub negative_hits: AtomicU64,
    /// Bytes held now (values plus per-entry overhead); never above the budget.
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
}

impl CacheStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

struct Shard<K, V> {
    lru: LruCache<K, (V, u64)>,
    used: u64,
}

/// A sharded LRU weighed in bytes.
pub(crate) struct ByteLru<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    shard_budget: u64,
    max_entry: u64,
    hasher: RandomState,
    stats: CacheStats,
}

impl<K: Hash + Eq + Weigh, V: Clone + Weigh> ByteLru<K, V> {
    /// `budget` bytes in total; values above `max_entry` bytes are never kept.
    pub(crate) fn new(budget: u64, max_entry: u64) -> ByteLru<K, V> {
        let per_entry = max_entry.saturating_add(ENTRY_OVERHEAD).max(1);
        let shards = (budget / per_entry).clamp(1, MAX_SHARDS);
        ByteLru {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::unbounded(),
                        used: 0,
                    })
                })
                .collect(),
            shard_budget: budget / shards,
            max_entry,
            hasher: RandomState::new(),
            stats: CacheStats::default(),
        }
    }

    pub(crate) fn budget(&self) -> u64 {
        self.shard_budget * self.shards.len() as u64
    }

    pub(crate) fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// A borrowed form of a key hashes as the key does, so it finds the same shard.
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<Shard<K, V>> {
        let i = self.hasher.hash_one(key) % self.shards.len() as u64;
        &self.shards[i as usize]
    }

    /// Looks `key` up, refreshing it. Counts nothing: callers decide what a hit is.
    pub(crate) fn peek_fresh<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(self.shard(key)).lru.get(key).map(|(v, _)| v.clone())
    }

    /// Looks `key` up and counts a hit or a miss.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let found = self.peek_fresh(key);
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        CacheStats::add(counter, 1);
        found
    }

    /// Keeps `value` unless it is larger than the entry cap; evicts least recently used entries
    /// until it fits. Returns whether it was kept.
    pub(crate) fn insert(&self, key: K, value: V) -> bool {
        let size = value.weight();
        let weight = size
            .saturating_add(key.weight())
            .saturating_add(ENTRY_OVERHEAD);
        if size > self.max_entry || weight > self.shard_budget {
            CacheStats::add(&self.stats.oversize, 1);
            return false;
        }
        let mut shard = lock(self.shard(&key));
        if let Some((_, old)) = shard.lru.pop(&key) {
            shard.used -= old;
            CacheStats::sub(&self.stats.bytes, old);
            CacheStats::sub(&self.stats.entries, 1);
        }
        while shard.used + weight > self.shard_budget {
            let Some((_, (_, w))) = shard.lru.pop_lru() else {
                break;
            };
            shard.used -= w;
            CacheStats::sub(&self.stats.bytes, w);
            CacheStats::sub(&self.stats.entries, 1);
            CacheStats::add(&self.stats.evictions, 1);
        }
        shard.used += weight;
        shard.lru.put(key, (value, weight));
        CacheStats::add(&self.stats.bytes, weight);
        CacheStats::add(&self.stats.entries, 1);
        true
    }
}

/// Leader id and the channel its result is published on.
type Flight<V> = (u64, watch::Receiver<Option<V>>);

/// Runs one piece of work per key at a time; concurrent callers share its result.
///
/// The work runs in a task of its own: once started it finishes and publishes its result even
/// when every caller has gone away (a client that hangs up cannot make the server throw work
/// away, nor start it again and again).
pub(crate) struct SingleFlight<K, V> {
    inflight: Mutex<HashMap<K, Flight<V>>>,
    next_id: AtomicU64,
    /// Work that finished with nobody waiting for it.
    abandoned: AtomicU64,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }
    }
}

/// Removes a flight's entry when its work ends, or dies half way (a panic), so that its
/// followers elect a new leader instead of waiting forever.
struct LeaderGuard<K: Hash + Eq, V> {
    flight: Arc<SingleFlight<K, V>>,
    key: Option<K>,
    id: u64,
}

impl<K: Hash + Eq, V> Drop for LeaderGuard<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut map = lock(&self.flight.inflight);
            if map.get(&key).is_some_and(|(id, _)| *id == self.id) {
                map.remove(&key);
            }
        }
    }
}

enum Role<V> {
    Leader(u64, watch::Sender<Option<V>>),
    Follower(watch::Receiver<Option<V>>),
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Number of keys being worked on now.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// Work that finished after every caller waiting for it had left.
    pub(crate) fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Returns the result of `work` for `key`, starting it only when no other caller is already
    /// running it; the flag tells whether this caller started it. `None` when the work this
    /// caller started died without a result (it panicked).
    pub(crate) async fn run<F, Fut>(self: &Arc<Self>, key: K, work: F) -> Option<(V, bool)>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut work = Some(work);
        loop {
            let role = {
                let mut map = lock(&self.inflight);
                match map.get(&key) {
                    Some((_, rx)) => Role::Follower(rx.clone()),
                    None => {
                        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                        let (tx, rx) = watch::channel(None);
                        map.insert(key.clone(), (id, rx));
                        Role::Leader(id, tx)
                    }
                }
            };
            let (mut rx, led) = match role {
                Role::Leader(id, tx) => {
                    let rx = tx.subscribe();
                    let guard = LeaderGuard {
                        flight: self.clone(),
                        key: Some(key.clone()),
                        id,
                    };
                    // Only a caller that still holds its work can lead: a follower whose
                    // leader died leads with its own work.
                    let work = work.take()?;
                    tokio::spawn(async move {
                        let value = work().await;
                        let _ = tx.send(Some(value));
                        let flight = guard.flight.clone();
                        drop(guard);
                        if tx.receiver_count() == 0 {
                            flight.abandoned.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    (rx, true)
                }
                Role::Follower(rx) => (rx, false),
            };
            if let Ok(v) = rx.wait_for(Option::is_some).await {
                if let Some(value) = v.as_ref() {
                    return Some((value.clone(), led));
                }
            }
            if led {
                return None;
            }
            // The leader's work died before finishing: try again, maybe as leader.
        }
    }
}

/// Failures remembered for a short time.
pub(crate) struct NegativeCache<K: Hash + Eq, E> {
    entries: Mutex<LruCache<K, (Instant, E)>>,
    ttl: Duration,
}

impl<K: Hash + Eq, E: Clone> NegativeCache<K, E> {
    pub(crate) fn new(ttl: Duration) -> NegativeCache<K, E> {
        NegativeCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(NEGATIVE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            ttl,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<E> {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some((at, e)) if at.elapsed() < self.ttl => Some(e.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, error: E) {
        if !self.ttl.is_zero() {
            lock(&self.entries).put(key, (Instant::now(), error));
        }
    }
}

/// How a value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Already cached (or a remembered failure).
    Hit,
    /// This caller did the work.
    Miss,
    /// Another caller was doing the work; this one waited for it.
    Coalesced,
}

/// Errors that a cache may remember for `negative_ttl`.
pub(crate) trait Remember {
    /// False for failures that say nothing about the key (e.g. the server being busy).
    fn remember(&self) -> bool;
    /// The answer when the work died without a result (a panic).
    fn lost() -> Self;
}

/// What a cache's work tasks share with the cache.
struct Store<K: Hash + Eq, V, E> {
    lru: ByteLru<K, V>,
    negative: NegativeCache<K, E>,
}

/// A byte-bounded LRU in front of single-flight work, with negative caching.
pub(crate) struct Cache<K: Hash + Eq, V, E> {
    store: Arc<Store<K, V, E>>,
    flight: Arc<SingleFlight<K, Result<V, E>>>,
}

impl<K, V, E> Cache<K, V, E>
where
    K: Hash + Eq + Clone + Weigh + Send + Sync + 'static,
    V: Clone + Weigh + Send + Sync + 'static,
    E: Clone + Remember + Send + Sync + 'static,
{
    pub(crate) fn new(budget: u64, max_entry: u64, negative_ttl: Duration) -> Cache<K, V, E> {
        Cache {
            store: Arc::new(Store {
                lru: ByteLru::new(budget, max_entry),
                negative: NegativeCache::new(negative_ttl),
            }),
            flight: Arc::default(),
        }
    }

    pub(crate) fn stats(&self) -> &CacheStats {
        self.store.lru.stats()
    }

    pub(crate) fn budget(&self) -> u64 {
        self.store.lru.budget()
    }

    /// Keys whose work is running now.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.flight.in_flight()
    }

    /// Work that finished (and was cached) after every request waiting for it had gone.
    pub(crate) fn abandoned(&self) -> u64 {
        self.flight.abandoned()
    }

    /// The cached value for `key` if there is one, counted as a hit. A miss counts nothing: the
    /// [`Cache::get_or_compute`] that follows it does.
    pub(crate) fn hit<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let v = self.store.lru.peek_fresh(key)?;
        CacheStats::add(&self.stats().hits, 1);
        Some(v)
    }

    /// The cached value for `key`, or the result of `work` run once for all concurrent callers.
    /// The work runs to its end and fills the cache even when every caller has gone.
    pub(crate) async fn get_or_compute<F, Fut>(&self, key: K, work: F) -> (Result<V, E>, Lookup)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        if let Some(v) = self.store.lru.get(&key) {
            return (Ok(v), Lookup::Hit);
        }
        if let Some(e) = self.store.negative.get(&key) {
            CacheStats::add(&self.stats().negative_hits, 1);
            return (Err(e), Lookup::Hit);
        }
        let store = self.store.clone();
        let flight_key = key.clone();
        let ran = self
            .flight
            .run(flight_key, move || async move {
                // A previous leader may have filled the cache between our miss and now.
                if let Some(v) = store.lru.peek_fresh(&key) {
                    return Ok(v);
                }
                let result = work().await;
                match &result {
                    Ok(v) => {
                        store.lru.insert(key, v.clone());
                    }
                    Err(e) if e.remember() => store.negative.insert(key, e.clone()),
                    Err(_) => {}
                }
                result
            })
            .await;
        let Some((result, led)) = ran else {
            return (Err(E::lost()), Lookup::Miss);
        };
        if led {
            (result, Lookup::Miss)
        } else {
            CacheStats::add(&self.stats().coalesced, 1);
            (result, Lookup::Coalesced)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys the tests use hold no heap bytes.
    macro_rules! weightless {
        ($($t:ty),*) => {$(
            impl Weigh for $t {
                fn weight(&self) -> u64 {
                    0
                }
            }
        )*};
    }
    weightless!(u8, u32, &str);
    use bytes::Bytes;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[derive(Debug, Clone, PartialEq)]
    struct Fail(bool);
    impl Remember for Fail {
        fn remember(&self) -> bool {
            self.0
        }
        fn lost() -> Self {
            Fail(false)
        }
    }

    #[test]
    fn never_exceeds_budget_and_evicts_oldest() {
        let lru: ByteLru<u32, Bytes> = ByteLru::new(10_000, 1_000);
        for i in 0..1_000u32 {
            let size = 100 + (i as usize * 37) % 900;
            assert!(lru.insert(i, Bytes::from(vec![0u8; size])));
            let held = CacheStats::get(&lru.stats().bytes);
            assert!(held <= 10_000, "{held} bytes held after {i} inserts");
        }
        assert!(CacheStats::get(&lru.stats().evictions) > 900);
        assert!(lru.peek_fresh(&999).is_some());
        assert!(lru.peek_fresh(&0).is_none());
    }

    #[test]
    fn keys_count_against_the_budget() {
        let lru: ByteLru<String, Bytes> = ByteLru::new(100_000, 1_000);
        assert!(lru.insert("k".repeat(100), Bytes::from(vec![0u8; 10])));
        let bytes = CacheStats::get(&lru.stats().bytes);
        assert_eq!(bytes, 10 + 100 + ENTRY_OVERHEAD);
    }

    #[test]
    fn oversize_entries_are_not_kept() {
        let lru: ByteLru<u32, Bytes> = ByteLru::new(10_000, 1_000);
        assert!(!lru.insert(1, Bytes::from(vec![0u8; 1_001])));
        assert!(lru.get(&1).is_none());
        assert_eq!(CacheStats::get(&lru.stats().oversize), 1);
        // A budget smaller than the entry cap still bounds what is kept.
        let tiny: ByteLru<u32, Bytes> = ByteLru::new(300 + ENTRY_OVERHEAD, 1_000);
        assert!(!tiny.insert(1, Bytes::from(vec![0u8; 301])));
        assert!(tiny.insert(2, Bytes::from(vec![0u8; 300])));
    }

    #[test]
    fn replacing_a_key_does_not_leak_bytes() {
        let lru: ByteLru<u32, Bytes> = ByteLru::new(100_000, 10_000);
        for _ in 0..10 {
            lru.insert(7, Bytes::from(vec![0u8; 1_000]));
        }
        assert_eq!(CacheStats::get(&lru.stats().entries), 1);
        assert_eq!(CacheStats::get(&lru.stats().bytes), 1_000 + ENTRY_OVERHEAD);
    }

    #[tokio::test]
    async fn concurrent_misses_do_the_work_once() {
        let cache: Arc<Cache<&'static str, Bytes, Fail>> =
            Arc::new(Cache::new(1 << 20, 1 << 16, Duration::from_secs(30)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, runs) = (cache.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("k", move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Bytes::from_static(b"v"))
                    })
                    .await
            }));
        }
        let mut misses = 0;
        for t in tasks {
            let (v, how) = t.await.unwrap();
            assert_eq!(v.unwrap(), Bytes::from_static(b"v"));
            misses += usize::from(how == Lookup::Miss);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1);
        let (_, how) = cache
            .get_or_compute("k", || async { Err(Fail(true)) })
            .await;
        assert_eq!(how, Lookup::Hit);
    }

    #[tokio::test]
    async fn a_leader_that_leaves_does_not_cancel_the_work() {
        let cache: Arc<Cache<u8, Bytes, Fail>> =
            Arc::new(Cache::new(1 << 20, 1 << 16, Duration::from_secs(30)));
        let runs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (cache.clone(), runs.clone());
        let leader = tokio::spawn(async move {
            c.get_or_compute(1, move || async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                r.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::from_static(b"first"))
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        // Nobody waits now; the work still finishes and fills the cache.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cache.abandoned(), 1);
        assert_eq!(cache.in_flight(), 0);
        let (v, how) = cache
            .get_or_compute(1, || async { Ok(Bytes::from_static(b"second")) })
            .await;
        assert_eq!(
            (v.unwrap(), how),
            (Bytes::from_static(b"first"), Lookup::Hit)
        );
    }

    #[tokio::test]
    async fn a_panicking_work_does_not_wedge_followers() {
        let cache: Arc<Cache<u8, Bytes, Fail>> =
            Arc::new(Cache::new(1 << 20, 1 << 16, Duration::from_secs(30)));
        let c = cache.clone();
        let leader = tokio::spawn(async move {
            c.get_or_compute(1, || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("work dies on purpose")
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let c = cache.clone();
        let follower = tokio::spawn(async move {
            c.get_or_compute(1, || async { Ok(Bytes::from_static(b"second")) })
                .await
        });
        let (v, how) = tokio::time::timeout(Duration::from_secs(5), leader)
            .await
            .expect("leader must not hang")
            .unwrap();
        assert_eq!((v, how), (Err(Fail(false)), Lookup::Miss));
        let (v, how) = tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("follower must not hang")
            .unwrap();
        assert_eq!(v.unwrap(), Bytes::from_static(b"second"));
        assert_eq!(how, Lookup::Miss);
        assert_eq!(cache.in_flight(), 0);
    }

    #[tokio::test]
    async fn failures_are_remembered_only_when_asked() {
        let cache: Cache<u8, Bytes, Fail> = Cache::new(1 << 20, 1 << 16, Duration::from_secs(30));
        let (r, _) = cache.get_or_compute(1, || async { Err(Fail(true)) }).await;
        assert_eq!(r, Err(Fail(true)));
        let (r, how) = cache
            .get_or_compute(1, || async { Ok(Bytes::from_static(b"x")) })
            .await;
        assert_eq!((r, how), (Err(Fail(true)), Lookup::Hit));

        let (_, _) = cache.get_or_compute(2, || async { Err(Fail(false)) }).await;
        let (r, how) = cache
            .get_or_compute(2, || async { Ok(Bytes::from_static(b"x")) })
            .await;
        assert_eq!((r, how), (Ok(Bytes::from_static(b"x")), Lookup::Miss));
    }
}
