//! The request dispatcher for the service socket, with no I/O: a frame body
//! and the connection's peer credentials in, a reply body out.
//!
//! The daemon's connection loop and the fuzz targets both drive this.
//! Policy and parsing run on the caller's thread; private-key work is
//! returned as a [`Work`] item so the caller can run it on any core while
//! keeping replies in request order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine as _;

use crate::agent::extensions::{self, FailureCode, ListedKey, State};
use crate::agent::session_bind::{Binding, SessionBind};
use crate::agent::{self, Identity, Request};
use crate::keys::signing::{purpose_allows, SignedData};
use crate::keys::{KeyType, LoadedKey, Purpose};
use crate::keystore::EntryMeta;
use crate::policy::{Peer, Policy};

mod mixmaster;
mod x25519;

/// Per-connection state.
#[derive(Debug)]
pub struct Connection {
    pub peer: Peer,
    /// Set by `session-bind@openssh.com` with `is_forwarding`: the peer is
    /// a remote host reached through `ssh -A`, not the local uid.
    pub forwarded: bool,
    /// The host `session-bind@openssh.com` bound the connection to.
    pub binding: Option<Binding>,
}

impl Connection {
    pub fn new(peer: Peer) -> Self {
        Connection { peer, forwarded: false, binding: None }
    }
}

/// How much CPU one piece of work takes, so the caller can choose where to
/// run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// Tens of microseconds (Ed25519, X25519): cheaper to run on the
    /// current thread than to hand to another one.
    Light,
    /// Hundreds of microseconds or more (RSA, ECDSA): run where it cannot
    /// delay the I/O of other connections.
    Heavy,
}

/// Private-key work to run off the connection's thread.
pub struct Work(WorkKind);

enum WorkKind {
    One { cost: Cost, run: Box<dyn FnOnce() -> Vec<u8> + Send> },
    Batch(Batch),
}

impl Work {
    fn one(cost: Cost, run: impl FnOnce() -> Vec<u8> + Send + 'static) -> Work {
        Work(WorkKind::One { cost, run: Box::new(run) })
    }

    /// Runs the work on this thread (a batch's items one after another)
    /// and returns the reply body.
    pub fn run(self) -> Vec<u8> {
        match self.into_job() {
            Job::One(one) => one.run(),
            Job::Batch(batch) => {
                let bodies = batch.items.into_iter().map(Reply::into_body).collect();
                Batch::finish(bodies)
            }
        }
    }

    /// Splits the work so the caller can run a batch's items in parallel.
    pub fn into_job(self) -> Job {
        match self.0 {
            WorkKind::One { cost, run } => Job::One(OneWork { cost, run }),
            WorkKind::Batch(batch) => Job::Batch(batch),
        }
    }

    /// Returns the cost of the work. A batch counts as heavy.
    pub fn cost(&self) -> Cost {
        match &self.0 {
            WorkKind::One { cost, .. } => *cost,
            WorkKind::Batch(_) => Cost::Heavy,
        }
    }
}

/// The parts of a [`Work`].
pub enum Job {
    /// One operation.
    One(OneWork),
    /// A `batch@keyward` request: independent items whose replies are
    /// joined in order by [`Batch::finish`].
    Batch(Batch),
}

/// One private-key operation.
pub struct OneWork {
    cost: Cost,
    run: Box<dyn FnOnce() -> Vec<u8> + Send>,
}

impl OneWork {
    pub fn cost(&self) -> Cost {
        self.cost
    }

    pub fn run(self) -> Vec<u8> {
        (self.run)()
    }
}

/// The items of a batch, each already past parsing and policy: a ready
/// reply (a refusal, say) or one operation.
pub struct Batch {
    items: Vec<Reply>,
}

impl Batch {
    /// Returns the items in request order. Run them anywhere, then pass
    /// their reply bodies, in the same order, to [`Batch::finish`].
    pub fn into_items(self) -> Vec<Reply> {
        self.items
    }

    /// Encodes the batch reply from the items' reply bodies, in order. A
    /// reply too long for one frame becomes an invalid-request failure.
    /// Wipes the items' bodies afterwards: they can carry age file keys and
    /// X25519 shared secrets.
    pub fn finish(mut bodies: Vec<Vec<u8>>) -> Vec<u8> {
        let reply = extensions::batch_response(&bodies)
            .unwrap_or_else(|| extensions::failure(FailureCode::InvalidRequest));
        for body in &mut bodies {
            zeroize::Zeroize::zeroize(body);
        }
        reply
    }
}

/// The outcome of [`Service::handle`].
pub enum Reply {
    /// The reply body, ready to send.
    Ready(Vec<u8>),
    /// A private-key operation; its result is the reply body.
    Work(Work),
}

impl Reply {
    /// Runs any work inline and returns the reply body.
    pub fn into_body(self) -> Vec<u8> {
        match self {
            Reply::Ready(body) => body,
            Reply::Work(work) => work.run(),
        }
    }
}

/// A record for the audit trail. It never contains payloads or key bytes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEvent<'a> {
    pub event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

impl<'a> AuditEvent<'a> {
    pub fn new(event: &'a str) -> Self {
        AuditEvent { event, uid: None, gid: None, pid: None, exe: None, key: None, fingerprint: None, operation: None, reason: None }
    }

    pub fn peer(mut self, peer: &'a Peer) -> Self {
        self.uid = Some(peer.uid);
        self.gid = Some(peer.gid);
        self.pid = peer.pid;
        self.exe = peer.exe.as_deref();
        self
    }
}

/// A destination for audit events. The daemon writes them as JSON lines.
pub trait AuditSink: Send + Sync {
    /// Records a lifecycle event or a refusal.
    fn record(&self, event: &AuditEvent<'_>);

    /// Records a successful request. Returns false when the line could not
    /// be written and the request must be refused (fail-closed mode).
    fn record_success(&self, _event: &AuditEvent<'_>) -> bool {
        true
    }

    /// Whether requests may be served now (false while a fail-closed
    /// request log cannot be written).
    fn accepting(&self) -> bool {
        true
    }
}

/// An audit sink that drops everything, for tests and fuzzing.
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _event: &AuditEvent<'_>) {}
}

/// Public information on one key, available while sealed.
#[derive(Clone, Debug)]
pub struct PublicKeyInfo {
    pub meta: EntryMeta,
    /// `None` for a type this version does not know.
    pub key_type: Option<KeyType>,
    pub purpose: Option<Purpose>,
    pub fingerprint: String,
}

impl PublicKeyInfo {
    pub fn from_meta(meta: EntryMeta) -> Self {
        let key_type = KeyType::parse(&meta.key_type).ok();
        let purpose = Purpose::parse(&meta.purpose).ok();
        let fingerprint = crate::keys::fingerprint(&meta.public_key);
        PublicKeyInfo { meta, key_type, purpose, fingerprint }
    }
}

/// The unsealed keys, immutable once built and shared without locks.
pub struct KeySet {
    keys: Vec<LoadedKey>,
    by_blob: HashMap<Vec<u8>, usize>,
    by_name: HashMap<String, usize>,
    by_fingerprint: HashMap<[u8; 32], usize>,
    /// Set when the daemon seals: work that has not started yet refuses.
    retired: std::sync::atomic::AtomicBool,
}

impl KeySet {
    pub fn new(keys: Vec<LoadedKey>) -> Self {
        let mut set = KeySet {
            by_blob: HashMap::new(),
            by_name: HashMap::new(),
            by_fingerprint: HashMap::new(),
            keys: Vec::new(),
            retired: std::sync::atomic::AtomicBool::new(false),
        };
        for (index, key) in keys.iter().enumerate() {
            set.by_blob.insert(key.public_blob().to_vec(), index);
            set.by_name.insert(key.name().to_owned(), index);
            set.by_fingerprint.insert(key.fingerprint_bytes, index);
        }
        set.keys = keys;
        set
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Marks the set as sealed away. Work holding it that has not started
    /// refuses as sealed instead of using a key.
    pub fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Returns whether the daemon sealed since this set was unsealed.
    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn by_blob(&self, blob: &[u8]) -> Option<&LoadedKey> {
        self.by_blob.get(blob).map(|&index| &self.keys[index])
    }

    pub fn by_name(&self, name: &str) -> Option<&LoadedKey> {
        self.by_name.get(name).map(|&index| &self.keys[index])
    }

    pub fn by_fingerprint(&self, fingerprint: &[u8; 32]) -> Option<&LoadedKey> {
        self.by_fingerprint.get(fingerprint).map(|&index| &self.keys[index])
    }

    pub fn iter(&self) -> impl Iterator<Item = &LoadedKey> {
        self.keys.iter()
    }

    /// Takes the keys out, to build a changed set.
    pub fn into_keys(self) -> Vec<LoadedKey> {
        self.keys
    }
}

/// Request and refusal counters, by reason, key and uid.
///
/// The service keeps several of these, one per shard, so threads counting
/// at the same time rarely share a lock; [`Service::counters`] adds them up.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    pub requests: u64,
    pub refusals: u64,
    pub refusals_by_reason: BTreeMap<String, u64>,
    pub per_key: BTreeMap<String, KeyCounters>,
    pub per_uid: BTreeMap<u32, KeyCounters>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KeyCounters {
    pub requests: u64,
    pub refusals: u64,
}

impl KeyCounters {
    fn add(&mut self, other: &KeyCounters) {
        self.requests += other.requests;
        self.refusals += other.refusals;
    }
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.refusals += other.refusals;
        for (reason, count) in &other.refusals_by_reason {
            *self.refusals_by_reason.entry(reason.clone()).or_default() += count;
        }
        for (key, counters) in &other.per_key {
            self.per_key.entry(key.clone()).or_default().add(counters);
        }
        for (uid, counters) in &other.per_uid {
            self.per_uid.entry(*uid).or_default().add(counters);
        }
    }

    fn record(&mut self, uid: u32, key: Option<&str>, refusal: Option<&str>) {
        self.requests += 1;
        let refused = u64::from(refusal.is_some());
        let per_uid = self.per_uid.entry(uid).or_default();
        per_uid.requests += 1;
        per_uid.refusals += refused;
        if let Some(key) = key {
            // Allocate the name only on this shard's first count for the key.
            let per_key = match self.per_key.get_mut(key) {
                Some(per_key) => per_key,
                None => self.per_key.entry(key.to_owned()).or_default(),
            };
            per_key.requests += 1;
            per_key.refusals += refused;
        }
        if let Some(reason) = refusal {
            self.refusals += 1;
            match self.refusals_by_reason.get_mut(reason) {
                Some(count) => *count += 1,
                None => {
                    self.refusals_by_reason.insert(reason.to_owned(), 1);
                }
            }
        }
    }
}

/// The number of counter shards, more than the cores a daemon usually
/// runs on.
const COUNTER_SHARDS: usize = 16;

/// One shard on its own cache lines, so shards do not slow each other.
#[repr(align(128))]
#[derive(Default)]
struct CounterShard(Mutex<Counters>);

/// Returns the shard the current thread counts in. Threads take shards in
/// turn.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % COUNTER_SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// The service: public view, unsealed keys, policy, counters.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    public: ArcSwap<Vec<PublicKeyInfo>>,
    keys: ArcSwapOption<KeySet>,
    policy: ArcSwap<Policy>,
    counters: Box<[CounterShard]>,
    audit: Arc<dyn AuditSink>,
    /// When the service was created; `last_request` counts from here.
    created: Instant,
    /// The last time a request arrived, in milliseconds since `created`,
    /// for idle sealing.
    last_request: AtomicU64,
    /// When the keys were unsealed (seconds since the epoch), for per-key
    /// lifetimes.
    unsealed_at: std::sync::atomic::AtomicU64,
}

/// Extensions every client may call; `query` lists them.
const EXTENSIONS: &[&str] = &[
    extensions::QUERY,
    extensions::STATUS,
    extensions::LIST,
    extensions::BATCH,
    crate::mixmaster::EXTENSION,
    crate::agent::x25519::UNWRAP,
    crate::agent::x25519::AGREE,
];

/// A refusal the dispatcher reports: the reason goes to the audit trail,
/// the client sees FAILURE.
struct Refusal {
    reason: &'static str,
}

impl Service {
    pub fn new(policy: Policy, public: Vec<PublicKeyInfo>, audit: Arc<dyn AuditSink>) -> Self {
        Service {
            inner: Arc::new(Inner {
                public: ArcSwap::from_pointee(public),
                keys: ArcSwapOption::empty(),
                policy: ArcSwap::from_pointee(policy),
                counters: (0..COUNTER_SHARDS).map(|_| CounterShard::default()).collect(),
                audit,
                created: Instant::now(),
                last_request: AtomicU64::new(0),
                unsealed_at: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn state(&self) -> State {
        if self.inner.keys.load().is_some() {
            State::Unsealed
        } else {
            State::Sealed
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.load_full()
    }

    pub fn set_policy(&self, policy: Policy) {
        self.inner.policy.store(Arc::new(policy));
    }

    pub fn public_keys(&self) -> Arc<Vec<PublicKeyInfo>> {
        self.inner.public.load_full()
    }

    pub fn set_public_keys(&self, public: Vec<PublicKeyInfo>) {
        self.inner.public.store(Arc::new(public));
    }

    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.inner.keys.load_full()
    }

    /// Returns a snapshot of the counters, all shards added up.
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for shard in self.inner.counters.iter() {
            total.add(&shard.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
        total
    }

    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.inner.audit
    }

    /// Returns the time since the last request on the service socket.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_request.load(Ordering::Relaxed));
        self.inner.created.elapsed().saturating_sub(last)
    }

    /// Notes that a request arrived. Writes the shared word at most once
    /// a millisecond, so cores serving requests do not fight over it.
    fn touch(&self) {
        let now = self.inner.created.elapsed().as_millis() as u64;
        if self.inner.last_request.load(Ordering::Relaxed) < now {
            self.inner.last_request.store(now, Ordering::Relaxed);
        }
    }

    /// Records when the daemon was unsealed (seconds since the epoch):
    /// keys with a lifetime may be used until that long after it.
    pub fn set_unsealed_at(&self, now: u64) {
        self.inner.unsealed_at.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns true when the key's lifetime after unsealing has passed at
    /// `now`. Every operation that uses a private key checks this.
    pub fn lifetime_expired(&self, policy: &Policy, key_name: &str, now: u64) -> bool {
        let Some(lifetime) = policy.lifetime(key_name) else { return false };
        let unsealed_at = self.inner.unsealed_at.load(std::sync::atomic::Ordering::Relaxed);
        now >= unsealed_at.saturating_add(lifetime)
    }

    /// Installs an unsealed key set and the public view that matches it.
    pub fn unseal(&self, keys: KeySet) {
        let public = keys.iter().map(|key| PublicKeyInfo::from_meta(key.meta.clone())).collect();
        self.inner.public.store(Arc::new(public));
        self.inner.keys.store(Some(Arc::new(keys)));
    }

    /// Seals: refuses new requests at once, makes accepted work that has
    /// not started refuse as sealed, waits up to `grace` for operations
    /// already running, then drops (and so wipes) the keys.
    ///
    /// Returns false if operations were still running after `grace`; their
    /// keys are then wiped when the last of them finishes.
    pub fn seal(&self, grace: Duration) -> bool {
        let Some(mut keys) = self.inner.keys.swap(None) else {
            return true;
        };
        keys.retire();
        let deadline = Instant::now() + grace;
        loop {
            match Arc::try_unwrap(keys) {
                Ok(set) => {
                    drop(set);
                    return true;
                }
                Err(shared) if Instant::now() < deadline => {
                    keys = shared;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => return false,
            }
        }
    }

    /// Handles one request frame body from `connection` at time `now`
    /// (seconds since the epoch).
    pub fn handle(&self, connection: &mut Connection, body: &[u8], now: u64) -> Reply {
        self.touch();

        // The operation a refusal names before the request is understood:
        // the message type.
        let message = || body.first().map(|message_type| format!("message-{message_type}"));
        let request = match Request::parse(body) {
            Ok(request) => request,
            Err(_) => return Reply::Ready(self.refuse(connection, None, "malformed", message().as_deref(), agent::failure())),
        };
        if !self.inner.audit.accepting() {
            return Reply::Ready(self.refuse(connection, None, "audit-unavailable", message().as_deref(), agent::failure()));
        }
        match request {
            Request::RequestIdentities => Reply::Ready(self.identities(connection)),
            Request::Sign { key_blob, data, flags } => self.sign(connection, key_blob, data, flags, now),
            Request::Extension { name, body } => self.extension(connection, name, body, now),
            Request::KeyManagement(_) => {
                Reply::Ready(self.refuse(connection, None, "key-management", message().as_deref(), agent::failure()))
            }
            Request::Unknown(_) => Reply::Ready(self.refuse(connection, None, "unknown-message", message().as_deref(), agent::failure())),
        }
    }

    fn identities(&self, connection: &Connection) -> Vec<u8> {
        if !self.served(connection, None, "request-identities") {
            return agent::failure();
        }
        let policy = self.inner.policy.load();
        let public = self.inner.public.load();
        let visible: Vec<&PublicKeyInfo> = public
            .iter()
            .filter(|key| key.key_type.is_some_and(KeyType::is_ssh))
            .filter(|key| {
                let Some(purpose) = key.purpose else { return false };
                if connection.forwarded {
                    return policy.forwarding_allowed(&connection.peer, &key.meta.name, purpose);
                }
                !policy.operations_for(&connection.peer, &key.meta.name, purpose).is_empty()
            })
            .collect();
        agent::identities_answer(
            visible.iter().map(|key| Identity { key_blob: &key.meta.public_key, comment: &key.meta.comment }).collect::<Vec<_>>().into_iter(),
        )
    }

    fn sign(&self, connection: &Connection, key_blob: &[u8], data: &[u8], flags: u32, now: u64) -> Reply {
        let failure = agent::failure;
        let signed = SignedData::classify(data);
        let operation = signed.operation();
        let Some(keys) = self.inner.keys.load_full() else {
            return Reply::Ready(self.refuse_sealed(connection, key_blob, &operation, failure()));
        };
        let Some(key) = keys.by_blob(key_blob) else {
            return Reply::Ready(self.refuse(connection, None, "unknown-key", Some(&operation), failure()));
        };
        let policy = self.inner.policy.load();

        // The client is checked first, so a peer probing keys it may not
        // use is logged as such whatever data it sends. Then come the key's
        // purpose and the rule's operations and forwarding.
        if !policy.may_use(&connection.peer, key.name()) {
            return Reply::Ready(self.refuse_key(connection, key, "not-allowed", &operation, failure()));
        }
        if !purpose_allows(key.purpose, &signed, key.public_blob()) {
            return Reply::Ready(self.refuse_key(connection, key, "purpose", &operation, failure()));
        }
        if !policy.permits(&connection.peer, key.name(), key.purpose, &operation, connection.forwarded) {
            let reason = if connection.forwarded { "forwarded" } else { "not-allowed" };
            return Reply::Ready(self.refuse_key(connection, key, reason, &operation, failure()));
        }
        if !key.is_valid_at(now) {
            return Reply::Ready(self.refuse_key(connection, key, "outside-validity", &operation, failure()));
        }
        if self.lifetime_expired(&policy, key.name(), now) {
            return Reply::Ready(self.refuse_key(connection, key, "lifetime-expired", &operation, failure()));
        }
        if !self.inner.audit.accepting() {
            return Reply::Ready(self.refuse_key(connection, key, "audit-unavailable", &operation, failure()));
        }

        let allow_sha1 = policy.allow_sha1;
        let cost = match key.key_type {
            KeyType::Ed25519 | KeyType::X25519 => Cost::Light,
            _ => Cost::Heavy,
        };
        let service = self.clone();
        let peer = connection.peer.clone();
        let blob = key_blob.to_vec();
        let data = data.to_vec();
        Reply::Work(Work::one(cost, move || {
            let key = keys.by_blob(&blob).expect("the key set is immutable");
            if keys.is_retired() {
                return service.refuse_key(&Connection::new(peer), key, "sealed", &operation, failure());
            }
            match key.sign(&data, flags, allow_sha1) {
                Ok(signature) => {
                    if !service.succeeded(&peer, key, &operation) {
                        return failure();
                    }
                    agent::sign_response(&signature)
                }
                Err(refusal) => {
                    let connection = Connection::new(peer);
                    service.refuse_key(&connection, key, refusal.as_str(), &operation, failure())
                }
            }
        }))
    }

    fn extension(&self, connection: &mut Connection, name: &[u8], body: &[u8], now: u64) -> Reply {
        let Ok(name) = std::str::from_utf8(name) else {
            return Reply::Ready(self.refuse(connection, None, "unknown-extension", Some("extension"), agent::failure()));
        };
        if connection.forwarded {
            // A forwarded agent gets user-authentication signatures and
            // nothing else.
            return Reply::Ready(self.refuse(connection, None, "forwarded", Some(name), agent::failure()));
        }
        match name {
            extensions::SESSION_BIND => Reply::Ready(self.session_bind(connection, body)),
            extensions::QUERY => {
                if !self.served(connection, None, name) {
                    return Reply::Ready(agent::failure());
                }
                Reply::Ready(extensions::response(name, &extensions::query_body(EXTENSIONS)))
            }
            extensions::STATUS => {
                if !self.served(connection, None, name) {
                    return Reply::Ready(agent::failure());
                }
                Reply::Ready(extensions::response(name, &extensions::status_body(self.state())))
            }
            extensions::LIST => {
                if !body.is_empty() {
                    let reply = extensions::failure(FailureCode::InvalidRequest);
                    return Reply::Ready(self.refuse(connection, None, "malformed", Some(name), reply));
                }
                if !self.served(connection, None, name) {
                    return Reply::Ready(extensions::failure(FailureCode::Refused));
                }
                Reply::Ready(extensions::response(name, &extensions::list_body(&self.list_for(&connection.peer))))
            }
            crate::mixmaster::EXTENSION => self.mixmaster_rsa(connection, body, now),
            crate::agent::x25519::UNWRAP => self.x25519_unwrap(connection, body, now),
            crate::agent::x25519::AGREE => self.x25519_agree(connection, body, now),
            extensions::BATCH => self.batch(connection, body, now),
            _ => Reply::Ready(self.refuse(connection, None, "unknown-extension", Some(name), agent::failure())),
        }
    }

    /// `batch@keyward`: each item is a whole request body, handled as if
    /// it had arrived alone on this connection, except that an item may
    /// not be another batch or change the connection's state.
    fn batch(&self, connection: &mut Connection, body: &[u8], now: u64) -> Reply {
        let name = extensions::BATCH;
        let items = match extensions::parse_batch_body(body) {
            Ok(items) => items,
            Err(_) => {
                let reply = extensions::failure(FailureCode::InvalidRequest);
                return Reply::Ready(self.refuse(connection, None, "malformed", Some(name), reply));
            }
        };
        self.count(connection, None, None);
        let items = items.into_iter().map(|item| self.batch_item(connection, item, now)).collect();
        Reply::Work(Work(WorkKind::Batch(Batch { items })))
    }

    fn batch_item(&self, connection: &mut Connection, item: &[u8], now: u64) -> Reply {
        match Request::parse(item) {
            Ok(Request::Extension { name, .. }) if name == extensions::BATCH.as_bytes() || name == extensions::SESSION_BIND.as_bytes() => {
                let name = std::str::from_utf8(name).ok();
                let reply = extensions::failure(FailureCode::InvalidRequest);
                Reply::Ready(self.refuse(connection, None, "not-in-batch", name, reply))
            }
            _ => self.handle(connection, item, now),
        }
    }

    /// Lists the keys `peer` may use, with the operations it may use them for.
    pub fn list_for(&self, peer: &Peer) -> Vec<ListedKey> {
        let policy = self.inner.policy.load();
        let public = self.inner.public.load();
        public
            .iter()
            .filter_map(|key| {
                let purpose = key.purpose?;
                let operations = policy.operations_for(peer, &key.meta.name, purpose);
                if operations.is_empty() {
                    return None;
                }
                Some(ListedKey {
                    name: key.meta.name.clone(),
                    key_type: key.meta.key_type.clone(),
                    purpose: key.meta.purpose.clone(),
                    fingerprint: key.fingerprint.clone(),
                    comment: key.meta.comment.clone(),
                    public_key: base64::engine::general_purpose::STANDARD.encode(&key.meta.public_key),
                    not_before: key.meta.not_before,
                    not_after: key.meta.not_after,
                    operations,
                })
            })
            .collect()
    }

    /// Handles `session-bind@openssh.com`: verifies the host key's
    /// signature over the session identifier and records the binding. A
    /// connection is bound once: OpenSSH's agent also refuses a second
    /// bind after one for authentication, and a forwarded connection
    /// never reaches here (it gets no extensions). Replies SUCCESS, which
    /// `ssh` expects, or FAILURE.
    fn session_bind(&self, connection: &mut Connection, body: &[u8]) -> Vec<u8> {
        let name = extensions::SESSION_BIND;
        let Ok(bind) = SessionBind::parse(body) else {
            return self.refuse(connection, None, "malformed", Some(name), agent::failure());
        };
        let host_key_fingerprint = crate::keys::fingerprint(bind.host_key);
        let refuse = |reason: &'static str| {
            self.count(connection, None, Some(reason));
            let mut event = AuditEvent::new("refused").peer(&connection.peer);
            event.fingerprint = Some(&host_key_fingerprint);
            event.operation = Some(name);
            event.reason = Some(reason);
            self.inner.audit.record(&event);
            agent::failure()
        };
        if connection.binding.is_some() {
            return refuse("already-bound");
        }
        if bind.verify().is_err() {
            return refuse("bad-host-signature");
        }
        let operation = if bind.is_forwarding { "session-bind-forwarding" } else { "session-bind" };
        let mut event = AuditEvent::new("request").peer(&connection.peer);
        event.fingerprint = Some(&host_key_fingerprint);
        event.operation = Some(operation);
        if !self.inner.audit.record_success(&event) {
            return refuse("audit-unavailable");
        }
        self.count(connection, None, None);
        connection.forwarded |= bind.is_forwarding;
        connection.binding = Some(Binding { host_key_fingerprint, forwarding: bind.is_forwarding });
        agent::success()
    }

    /// Refuses a request that names a key while sealed. The audit line
    /// names the key when the public view contains it.
    fn refuse_sealed(&self, connection: &Connection, key_blob: &[u8], operation: &str, reply: Vec<u8>) -> Vec<u8> {
        let public = self.inner.public.load();
        let known = public.iter().find(|key| key.meta.public_key == key_blob);
        let name = known.map(|key| key.meta.name.as_str());
        self.count(connection, name, Some("sealed"));
        let mut event = AuditEvent::new("refused").peer(&connection.peer);
        event.key = name;
        event.fingerprint = known.map(|key| key.fingerprint.as_str());
        event.operation = Some(operation);
        event.reason = Some("sealed");
        self.inner.audit.record(&event);
        reply
    }

    /// Records a successful request that uses no key (a line in `requests`
    /// audit mode, a count always). Returns false when the line could not
    /// be written in fail-closed mode: the request is then refused.
    fn served(&self, connection: &Connection, key: Option<&LoadedKey>, operation: &str) -> bool {
        let mut event = AuditEvent::new("request").peer(&connection.peer);
        event.key = key.map(LoadedKey::name);
        event.fingerprint = key.map(|key| key.fingerprint.as_str());
        event.operation = Some(operation);
        if !self.inner.audit.record_success(&event) {
            match key {
                Some(key) => self.refuse_key(connection, key, "audit-unavailable", operation, Vec::new()),
                None => self.refuse(connection, None, "audit-unavailable", Some(operation), Vec::new()),
            };
            return false;
        }
        self.count(connection, key.map(LoadedKey::name), None);
        true
    }

    /// Counts a request and, when `key` is given, attributes it.
    fn count(&self, connection: &Connection, key: Option<&str>, refusal: Option<&str>) {
        let shard = &self.inner.counters[shard_index()];
        shard.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).record(connection.peer.uid, key, refusal);
    }

    fn refuse(&self, connection: &Connection, key: Option<&str>, reason: &'static str, operation: Option<&str>, reply: Vec<u8>) -> Vec<u8> {
        let refusal = Refusal { reason };
        self.count(connection, key, Some(refusal.reason));
        let mut event = AuditEvent::new("refused").peer(&connection.peer);
        event.key = key;
        event.operation = operation;
        event.reason = Some(refusal.reason);
        self.inner.audit.record(&event);
        reply
    }

    fn refuse_key(&self, connection: &Connection, key: &LoadedKey, reason: &'static str, operation: &str, reply: Vec<u8>) -> Vec<u8> {
        self.count(connection, Some(key.name()), Some(reason));
        let mut event = AuditEvent::new("refused").peer(&connection.peer);
        event.key = Some(key.name());
        event.fingerprint = Some(&key.fingerprint);
        event.operation = Some(operation);
        event.reason = Some(reason);
        self.inner.audit.record(&event);
        reply
    }

    fn succeeded(&self, peer: &Peer, key: &LoadedKey, operation: &str) -> bool {
        self.served(&Connection::new(peer.clone()), Some(key), operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Reader, Writer};

    fn service() -> Service {
        Service::new(Policy::default_for(1000), Vec::new(), Arc::new(NoAudit))
    }

    fn peer() -> Peer {
        Peer { uid: 1000, gid: 1000, groups: Vec::new(), pid: None, exe: None }
    }

    fn extension(name: &str, rest: &[u8]) -> Vec<u8> {
        let mut body = vec![agent::SSH_AGENTC_EXTENSION];
        body.put_string(name.as_bytes());
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn counters_from_many_threads_add_up() {
        let service = service();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let service = service.clone();
                std::thread::spawn(move || {
                    let mut connection = Connection::new(peer());
                    for _ in 0..500 {
                        service.handle(&mut connection, &extension(extensions::STATUS, &[]), 0).into_body();
                        service.handle(&mut connection, &[200], 0).into_body();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let counters = service.counters();
        assert_eq!(counters.requests, 8000);
        assert_eq!(counters.refusals, 4000);
        assert_eq!(counters.refusals_by_reason["unknown-message"], 4000);
        assert_eq!(counters.per_uid[&1000].requests, 8000);
        assert_eq!(counters.per_uid[&1000].refusals, 4000);
    }

    #[test]
    fn batch_items_keep_order() {
        let service = service();
        let mut connection = Connection::new(peer());
        let status = extension(extensions::STATUS, &[]);
        let nested = extension(extensions::BATCH, &extensions::batch_body([status.as_slice()].into_iter()));
        let items: Vec<&[u8]> = vec![&status, &[200], &nested, &[agent::SSH_AGENTC_REQUEST_IDENTITIES]];
        let request = extension(extensions::BATCH, &extensions::batch_body(items.into_iter()));
        let reply = service.handle(&mut connection, &request, 0).into_body();

        let mut reader = Reader::new(&reply);
        assert_eq!(reader.u8().unwrap(), agent::SSH_AGENT_EXTENSION_RESPONSE);
        assert_eq!(reader.string().unwrap(), extensions::BATCH.as_bytes());
        let replies = extensions::parse_batch_reply(reader.rest()).unwrap();
        assert_eq!(replies.len(), 4);
        assert_eq!(replies[0], extensions::response(extensions::STATUS, &extensions::status_body(State::Sealed)));
        assert_eq!(replies[1], agent::failure());
        assert_eq!(replies[2], extensions::failure(FailureCode::InvalidRequest));
        assert_eq!(replies[3][0], agent::SSH_AGENT_IDENTITIES_ANSWER);
    }

    #[test]
    fn rejects_malformed_batch() {
        let service = service();
        let mut connection = Connection::new(peer());
        let reply = service.handle(&mut connection, &extension(extensions::BATCH, &[0, 0, 0, 5]), 0).into_body();
        assert_eq!(reply, extensions::failure(FailureCode::InvalidRequest));
    }
}
