//! The shared tier: variants and source bytes in Redis (or a Redis Cluster), behind the memory
//! caches of every instance, and leases that let one instance make a new variant while the
//! others wait for its result.
//!
//! Redis is a cache of a cache here: every failure (down, slow, full, a foreign or corrupt
//! value) reads as a miss and the request goes on to upstream, so Redis costs speed, never
//! correctness. Writes happen after the response, in the background, bounded in number.

mod entry;
mod stats;
mod store;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use url::Url;

use crate::pipeline::FormatSet;
use crate::signing::KeyRing;
use crate::urls::Options;
pub(crate) use entry::Entry;
use entry::Kind;
use stats::{LeaseOutcome, Lookup, SharedStats, Tier, Write};
pub(crate) use store::StoreTimeouts;
pub(crate) use store::Target;
use store::{Store, StoreError};

/// Releases a lease only for the owner that holds it: the token must match.
const RELEASE: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Polling a lease starts this often and slows down to `POLL_MAX`.
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(50);

/// `[shared_cache]`, parsed.
#[derive(Debug, Clone)]
pub struct SharedCacheSettings {
    pub target: Target,
    /// PEM roots for TLS connections instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: Duration,
    pub ttl: Duration,
    pub max_entry_bytes: u64,
    pub lease_ttl: Duration,
    pub lease_wait: Duration,
    pub max_pending_writes: usize,
}

/// The keys of one variant: its value and its lease share a hash slot (the `{…}` tag), so a
/// cluster answers both from one node.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    value: String,
    lease: String,
}

/// What an instance does about a variant it lacks.
pub(crate) enum Claim {
    /// Another instance made it (before or while this one waited).
    Found(Entry),
    /// Make it; publish it through the lease when there is one (Redis may be unavailable, or
    /// the wait for another instance may have run out).
    Make(Option<Lease>),
}

/// The right to make one variant while other instances wait. Released by its owner once the
/// variant is stored, or when dropped unpublished (the work failed); it also ends by itself
/// after `lease_ttl`, should this instance die.
pub(crate) struct Lease {
    shared: Arc<Inner>,
    slot: Slot,
    token: String,
    released: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (shared, key, token) = (
            self.shared.clone(),
            self.slot.lease.clone(),
            std::mem::take(&mut self.token),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shared.release(key, token).await });
        }
    }
}

impl Lease {
    /// Stores `entry` in the background, then lets the waiting instances go.
    pub(crate) fn publish(mut self, mime: &'static str, etag: &str, body: Bytes) {
        self.released = true;
        let token = std::mem::take(&mut self.token);
        self.shared.write(
            Tier::Variants,
            self.slot.clone(),
            Some(token),
            mime,
            etag,
            body,
        );
    }
}

pub(crate) struct SharedCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    keys: KeyRing,
    settings: SharedCacheSettings,
    /// Names what makes a variant's bytes (formats tried, quality, limits), so instances
    /// configured differently never take each other's results.
    transform_id: [u8; 32],
    allow_svg: bool,
    writes: Arc<Semaphore>,
    stats: SharedStats,
}

impl SharedCache {
    /// Starts connecting in the background; until connected every lookup is a miss.
    /// `transform_id` describes the transform settings (see [`Inner::transform_id`]).
    pub(crate) fn start(
        settings: SharedCacheSettings,
        keys: KeyRing,
        transform_id: &str,
        allow_svg: bool,
    ) -> SharedCache {
        let store = Store::start(
            settings.target.clone(),
            settings.ca_pem.clone(),
            StoreTimeouts {
                command: settings.command_timeout,
                connect: settings.connect_timeout,
                retry: settings.retry,
            },
        );
        SharedCache {
            inner: Arc::new(Inner {
                store,
                keys,
                writes: Arc::new(Semaphore::new(settings.max_pending_writes)),
                transform_id: Sha256::digest(transform_id.as_bytes()).into(),
                allow_svg,
                settings,
                stats: SharedStats::default(),
            }),
        }
    }

    /// Waits (at most `connect_timeout`) for the first connection; whether it was made.
    pub(crate) async fn wait_connected(&self) -> bool {
        self.inner.store.wait_connected().await
    }

    /// Connected and answering.
    pub(crate) fn up(&self) -> bool {
        self.inner.store.up()
    }

    /// The keys of the variant `options` of `source` in `formats`.
    pub(crate) fn variant_slot(&self, source: &Url, options: &Options, formats: FormatSet) -> Slot {
        let digest = Sha256::new()
            .chain_update(b"variant\0")
            .chain_update(self.inner.transform_id)
            .chain_update(source.as_str())
            .chain_update(b"\0")
            .chain_update(options.to_string())
            .chain_update([0, formats.bits()])
            .finalize();
        let name = self.inner.key_name(&digest);
        Slot {
            value: format!("{name}:v"),
            lease: format!("{name}:l"),
        }
    }

    /// The variant if another instance has it; otherwise a lease to make it, or, when another
    /// instance holds the lease, its result once it is there (up to `lease_wait`).
    pub(crate) async fn claim(&self, slot: Slot) -> Claim {
        let inner = &self.inner;
        match inner.get(Tier::Variants, &slot.value).await {
            Ok(Some(entry)) => return Claim::Found(entry),
            Ok(None) => {}
            Err(()) => return Claim::Make(None),
        }
        let Some(token) = lease_token() else {
            return Claim::Make(None);
        };
        let deadline = tokio::time::Instant::now() + inner.settings.lease_wait;
        let mut poll = POLL_MIN;
        let mut waited = false;
        loop {
            match inner.try_lease(&slot.lease, &token).await {
                Ok(true) => {
                    inner.stats.lease(if waited {
                        LeaseOutcome::TakenOver
                    } else {
                        LeaseOutcome::Acquired
                    });
                    return Claim::Make(Some(Lease {
                        shared: inner.clone(),
                        slot,
                        token,
                        released: false,
                    }));
                }
                Ok(false) => {}
                Err(()) => return Claim::Make(None),
            }
            // Another instance is making it: wait while its lease stands.
            waited = true;
            loop {
                if tokio::time::Instant::now() + poll > deadline {
                    inner.stats.lease(LeaseOutcome::WaitedInVain);
                    return Claim::Make(None);
                }
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(POLL_MAX);
                match inner.poll(&slot).await {
                    Ok((Some(entry), _)) => {
                        inner.stats.lease(LeaseOutcome::WaitedForResult);
                        return Claim::Found(entry);
                    }
                    // The lease ended without a result (its owner failed): take it over.
                    Ok((None, false)) => break,
                    Ok((None, true)) => {}
                    Err(()) => return Claim::Make(None),
                }
            }
        }
    }

    /// Stores a variant made without a lease.
    pub(crate) fn keep_variant(&self, slot: Slot, mime: &'static str, etag: &str, body: Bytes) {
        self.inner
            .write(Tier::Variants, slot, None, mime, etag, body);
    }

    /// The upstream bytes of `source`, if some instance stored them.
    pub(crate) async fn source(&self, source: &Url) -> Option<Bytes> {
        let key = self.source_key(source);
        match self.inner.get(Tier::Sources, &key).await {
            Ok(Some(entry)) => Some(entry.body),
            _ => None,
        }
    }

    /// Stores the upstream bytes of `source` in the background.
    pub(crate) fn keep_source(&self, source: &Url, body: Bytes) {
        let key = self.source_key(source);
        let slot = Slot {
            value: key,
            lease: String::new(),
        };
        self.inner.write(Tier::Sources, slot, None, "", "", body);
    }

    fn source_key(&self, source: &Url) -> String {
        let digest = Sha256::new()
            .chain_update(b"source\0")
            .chain_update(source.as_str())
            .finalize();
        format!("{}:s", self.inner.key_name(&digest))
    }

    /// Waits for the writes in flight, so an instance that stops leaves what it made to the
    /// others. Bounded: each write is two commands, each within the command timeout.
    pub(crate) async fn flush(&self) {
        let inner = &self.inner;
        let all = u32::try_from(inner.settings.max_pending_writes).unwrap_or(u32::MAX);
        let within = inner.settings.command_timeout * 2;
        let _ = tokio::time::timeout(within, inner.writes.acquire_many(all)).await;
    }

    /// Appends the tier's counters to a metrics page.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        self.inner.stats.render(self.up(), out);
    }
}

impl Inner {
    /// `{prefix}{hash}`: fixed length whatever the URL, and the braces pick the cluster slot.
    fn key_name(&self, digest: &[u8]) -> String {
        format!(
            "{}{{{}}}",
            self.settings.key_prefix,
            hex::encode(&digest[..16])
        )
    }

    fn kind(tier: Tier) -> Kind {
        match tier {
            Tier::Variants => Kind::Variant,
            Tier::Sources => Kind::Source,
        }
    }

    /// One lookup: `Ok(None)` for a miss (a corrupt value included), `Err` when Redis did not
    /// answer.
    async fn get(&self, tier: Tier, key: &str) -> Result<Option<Entry>, ()> {
        let value: Result<Option<Vec<u8>>, _> =
            self.store.query(redis::cmd("GET").arg(key).clone()).await;
        match value {
            Ok(value) => Ok(self.read(tier, key, value)),
            Err(e) => {
                self.failed(tier, &e);
                Err(())
            }
        }
    }

    /// A stored value checked and counted.
    fn read(&self, tier: Tier, key: &str, value: Option<Vec<u8>>) -> Option<Entry> {
        let Some(value) = value else {
            self.stats.lookup(tier, Lookup::Miss);
            return None;
        };
        match entry::open(
            &self.keys,
            key,
            Self::kind(tier),
            Bytes::from(value),
            self.allow_svg,
        ) {
            Ok(entry) => {
                self.stats.lookup(tier, Lookup::Hit);
                Some(entry)
            }
            Err(why) => {
                tracing::warn!(key, reason = %why, "shared cache: unusable entry ignored");
                self.stats.lookup(tier, Lookup::Corrupt);
                None
            }
        }
    }

    fn failed(&self, tier: Tier, e: &StoreError) {
        match e {
            StoreError::Resting | StoreError::Unconnected => {
                self.stats.lookup(tier, Lookup::Skipped);
            }
            StoreError::Timeout(_) | StoreError::Redis(_) => {
                tracing::warn!(error = %crate::cause::chain(e), "shared cache unavailable");
                self.stats.lookup(tier, Lookup::Error);
            }
        }
    }

    async fn try_lease(&self, key: &str, token: &str) -> Result<bool, ()> {
        let ttl = u64::try_from(self.settings.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let set: Result<Option<String>, _> = self
            .store
            .query(
                redis::cmd("SET")
                    .arg(key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .clone(),
            )
            .await;
        set.map(|reply| reply.is_some()).map_err(|e| {
            self.failed(Tier::Variants, &e);
            self.stats.lease(LeaseOutcome::Error);
        })
    }

    /// The variant if it is there now, and whether its lease still stands.
    async fn poll(&self, slot: &Slot) -> Result<(Option<Entry>, bool), ()> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(&slot.value)
            .cmd("EXISTS")
            .arg(&slot.lease);
        let reply: Result<(Option<Vec<u8>>, bool), _> = self
            .store
            .run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await;
        match reply {
            Ok((None, leased)) => Ok((None, leased)),
            Ok((value, leased)) => Ok((self.read(Tier::Variants, &slot.value, value), leased)),
            Err(e) => {
                self.failed(Tier::Variants, &e);
                Err(())
            }
        }
    }

    async fn release(&self, key: String, token: String) {
        let script = redis::Script::new(RELEASE);
        let released: Result<i64, _> =
            self.store
                .run(|mut conn| async move {
                    script.key(&key).arg(&token).invoke_async(&mut conn).await
                })
                .await;
        if let Err(e) = released {
            tracing::debug!(error = %crate::cause::chain(&e), "shared cache: lease not released; it expires by itself");
        }
    }

    /// Stores `body` under `slot` in the background, then releases `lease` if given. Writes
    /// beyond `max_pending_writes` are dropped: a response never waits for one.
    fn write(
        self: &Arc<Self>,
        tier: Tier,
        slot: Slot,
        lease: Option<String>,
        mime: &'static str,
        etag: &str,
        body: Bytes,
    ) {
        let oversize = body.len() as u64 > self.settings.max_entry_bytes;
        let permit = if oversize {
            self.stats.write(tier, Write::Oversize);
            None
        } else {
            let permit = self.writes.clone().try_acquire_owned().ok();
            if permit.is_none() {
                self.stats.write(tier, Write::Dropped);
            }
            permit
        };
        if permit.is_none() && lease.is_none() {
            return;
        }
        let etag = etag.to_owned();
        let inner = self.clone();
        tokio::spawn(async move {
            // Sealed here, not on the request's path.
            let value = permit.as_ref().and_then(|_| {
                entry::seal(
                    &inner.keys,
                    &slot.value,
                    Self::kind(tier),
                    mime,
                    &etag,
                    &body,
                )
            });
            if let Some(value) = value {
                let ttl = u64::try_from(inner.settings.ttl.as_millis()).unwrap_or(u64::MAX);
                let set: Result<(), _> = inner
                    .store
                    .query(
                        redis::cmd("SET")
                            .arg(&slot.value)
                            .arg(value)
                            .arg("PX")
                            .arg(ttl)
                            .clone(),
                    )
                    .await;
                inner.stats.write(
                    tier,
                    match &set {
                        Ok(()) => Write::Stored,
                        Err(_) => Write::Error,
                    },
                );
                if let Err(e) = set {
                    tracing::debug!(error = %crate::cause::chain(&e), "shared cache: write failed");
                }
            }
            if let Some(token) = lease {
                inner.release(slot.lease, token).await;
            }
            // Held to the end, so that `flush` sees this write through.
            drop(permit);
        });
    }
}

/// A random token naming this lease's owner.
fn lease_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}
