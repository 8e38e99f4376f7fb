//! Connections on the service and admin sockets.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keyward::admin::{AdminReply, AdminRequest, MAX_ADMIN_FRAME};
use keyward::agent::{self, MAX_FRAME};
use keyward::policy::Peer;
use keyward::secret::{extend_wiped, Passphrase};
use keyward::service::{AuditEvent, AuditSink, Batch, Connection, Cost, Job, OneWork, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use zeroize::{Zeroize, Zeroizing};

use super::state::{DaemonState, Failure};
use crate::context;

/// Limits `connection-closed` audit lines to one a second.
static BROKEN_FRAMES: super::limits::RateLimit = super::limits::RateLimit::new(Duration::from_secs(1));

/// How long the rest of a frame may take once its first byte arrived. A
/// client that starts a frame and stalls loses its connection instead of
/// holding it forever.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// Reads the credentials the kernel recorded at `connect(2)`, before any
/// byte of the request is read.
pub fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let credentials = stream.peer_cred()?;
    let groups = keyward_protect::peer::peer_groups(stream.as_fd()).unwrap_or_default();
    let pid = credentials.pid();
    let exe = pid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok()).map(|path| path.display().to_string());
    Ok(Peer { uid: credentials.uid(), gid: credentials.gid(), groups, pid, exe })
}

enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// Too long, truncated, stalled or failed: close the connection.
    Broken,
}

async fn read_frame(stream: &mut UnixStream, max: usize) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut first = [0u8; 1];
    match stream.read(&mut first).await {
        Ok(0) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(_) => return Err(FrameError::Broken),
    }
    let rest = async {
        let mut length = [0u8; 3];
        stream.read_exact(&mut length).await.map_err(|_| FrameError::Broken)?;
        let length = u32::from_be_bytes([first[0], length[0], length[1], length[2]]) as usize;
        if length > max {
            return Err(FrameError::Broken);
        }
        let mut body = Zeroizing::new(vec![0u8; length]);
        stream.read_exact(&mut body).await.map_err(|_| FrameError::Broken)?;
        Ok(body)
    };
    match tokio::time::timeout(FRAME_DEADLINE, rest).await {
        Ok(result) => result,
        Err(_) => Err(FrameError::Broken),
    }
}

async fn write_frame(stream: &mut UnixStream, body: &[u8]) -> std::io::Result<()> {
    // Replies can carry age file keys and X25519 shared secrets, so the
    // framed copy is wiped as well.
    let frame = Zeroizing::new(agent::frame(body));
    stream.write_all(&frame).await
}

/// How much work of one connection may be in progress at once, in units
/// of weight: a small request weighs one, larger ones and batches more
/// (see [`WEIGHT_BYTES`]). A client that writes more before reading
/// replies waits, because the daemon stops reading its socket until it
/// has sent the oldest reply.
pub const IN_FLIGHT: usize = 64;

/// How long writing replies may take before the connection is closed. The
/// replies of a client that stops reading them stay in the daemon's
/// memory, and a client that reads nothing for this long is gone or
/// hostile.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// How much one read from a client takes at most.
const READ_CHUNK: usize = 8 * 1024;

/// Above this, an input buffer left empty is given back.
const KEEP_INPUT: usize = 64 * 1024;

/// A frame still incomplete this long after its first byte, with nothing
/// else of the connection in progress, is being trickled. From then on
/// the connection is read after pauses of 10 ms, doubling up to 80 ms,
/// each time taking everything that arrived, until that frame is
/// complete. Meanwhile the socket is out of the runtime's poller and its
/// bytes wait in the kernel. A client writing a byte at a time then wakes
/// the daemon about a dozen times a second instead of once per byte. A
/// client writing bytes as fast as it can blocks on its full socket
/// buffer. A client that writes whole messages, even 256 KiB ones,
/// usually finishes a frame well within 10 ms and is not paced.
const TRICKLE_AFTER: Duration = Duration::from_millis(10);
const TRICKLE_FIRST_PAUSE: Duration = Duration::from_millis(10);
const TRICKLE_LONGEST_PAUSE: Duration = Duration::from_millis(80);

/// A paced connection whose socket held at least this much after a pause,
/// in reads of [`TRICKLE_BULK_READ`] bytes or more on average, is read
/// normally again. A client writing single bytes cannot get near it: the
/// kernel charges each write several hundred bytes of socket buffer, so
/// about 280 of them fill it. A client writing whole messages that was
/// slow to start fills the buffer with them.
const TRICKLE_BULK: usize = 32 * 1024;
const TRICKLE_BULK_READ: usize = 1024;

/// Most reads of a paced connection after one pause, so that a client
/// writing single bytes as fast as the daemon reads them cannot keep one
/// drain going.
const TRICKLE_MAX_READS: usize = 64;

/// Bytes a client sent that are not yet handled. Kept in memory that is
/// wiped before it is freed or reused, also when it grows.
struct Input {
    bytes: Zeroizing<Vec<u8>>,
    start: usize,
}

enum Frame {
    /// No complete frame yet.
    Incomplete,
    /// A frame body of this length follows its 4-byte length at `start`.
    Complete(usize),
}

impl Input {
    fn new() -> Self {
        Input { bytes: Zeroizing::new(Vec::new()), start: 0 }
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn is_empty(&self) -> bool {
        self.start == self.bytes.len()
    }

    fn extend(&mut self, data: &[u8]) {
        if self.start > 0 {
            let remaining = self.bytes.len() - self.start;
            self.bytes.copy_within(self.start.., 0);
            self.bytes[remaining..].zeroize();
            self.bytes.truncate(remaining);
            self.start = 0;
        }
        extend_wiped(&mut self.bytes, data);
    }

    /// Looks at the next frame; `Err` when its length is over `max`.
    fn peek(&self, max: usize) -> Result<Frame, &'static str> {
        let pending = self.pending();
        let Some(length) = pending.get(..4) else { return Ok(Frame::Incomplete) };
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        if length > max {
            return Err("frame too long");
        }
        if pending.len() < 4 + length {
            return Ok(Frame::Incomplete);
        }
        Ok(Frame::Complete(length))
    }

    fn consume(&mut self, length: usize) {
        self.start += 4 + length;
        if self.is_empty() {
            self.bytes.as_mut_slice().zeroize();
            self.bytes.clear();
            self.start = 0;
            if self.bytes.capacity() > KEEP_INPUT {
                self.bytes = Zeroizing::new(Vec::new());
            }
        }
    }
}

/// A reply body. Replies can carry age file keys and X25519 shared
/// secrets, so each is wiped when dropped, also when its connection ends
/// before it is sent.
type Body = Zeroizing<Vec<u8>>;

/// A spawned task that is cancelled when its handle is dropped, so work
/// a client queued does not outlive its connection. Work that is already
/// running on the blocking pool finishes.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for Task<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(context)
    }
}

fn spawn<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> Task<T> {
    Task(tokio::spawn(future))
}

/// One request, or a group of consecutive requests, in progress. The
/// queue of them keeps arrival order. Each entry has a weight, which
/// counts against [`IN_FLIGHT`].
enum Pending {
    /// Reply bodies to send, in request order.
    Ready(Vec<Body>, usize),
    /// Work running on another task. It yields the reply bodies of this
    /// many requests.
    Running(Task<Vec<Body>>, usize, usize),
    /// Light work not started yet; [`launch`] groups it with its
    /// neighbours.
    Queued(OneWork, usize),
}

impl Pending {
    fn weight(&self) -> usize {
        match self {
            Pending::Ready(_, weight) | Pending::Running(_, _, weight) | Pending::Queued(_, weight) => *weight,
        }
    }
}

/// Reply bytes that one unit of weight stands for. A request weighs one
/// unit plus one for each 4 KiB of its frame, because its reply is of a
/// similar size (or under 1 KiB for a signature). A reply known at once
/// weighs one unit plus one for each 4 KiB of it. So the 64 units in
/// flight bound a connection's replies to about 256 KiB, besides batches.
const WEIGHT_BYTES: usize = 4096;

/// Returns the weight of a request or reply of `bytes` bytes.
fn weight_of(bytes: usize) -> usize {
    1 + bytes / WEIGHT_BYTES
}

/// The weight of a `batch@keyward` request: its reply may be up to
/// 256 KiB whatever the size of the request, so at most four batches of
/// one connection are in progress at once.
const BATCH_WEIGHT: usize = IN_FLIGHT / 4;

/// Most light requests one task runs in a row. Sixteen Ed25519 signatures
/// take about 0.3 ms, so other connections get the cores in between.
const MAX_GROUP: usize = 16;

/// Returns the number of cores, read once: each reading opens cgroup files.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |cores| cores.get()))
}

/// Returns the permits for heavy work (RSA, ECDSA) on the blocking pool,
/// shared by all connections. Two per core keep every core busy, and
/// pipelined RSA requests cannot grow the pool to its limit of 512
/// threads.
fn heavy_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(cores() * 2))
}

/// Runs heavy work on the blocking pool once a permit is free. The permit
/// goes with the work, so it is held until the work ends even when the
/// waiting task is cancelled.
async fn run_heavy<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let permit = heavy_permits().acquire().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .ok()
}

fn failures(count: usize) -> Vec<Body> {
    (0..count).map(|_| Zeroizing::new(agent::failure())).collect()
}

/// Sorts the reply to a request of `length` bytes into the queue. Heavy
/// work and batches start at once on other tasks and never hold up this
/// connection; light work waits for [`launch`].
fn start(reply: Reply, length: usize) -> Pending {
    let work = match reply {
        Reply::Ready(body) => {
            let weight = weight_of(body.len());
            return Pending::Ready(vec![Zeroizing::new(body)], weight);
        }
        Reply::Work(work) => work,
    };
    let weight = weight_of(length);
    match work.into_job() {
        Job::One(one) => match one.cost() {
            Cost::Light => Pending::Queued(one, weight),
            Cost::Heavy => Pending::Running(
                spawn(async move { run_heavy(move || vec![Zeroizing::new(one.run())]).await.unwrap_or_else(|| failures(1)) }),
                1,
                weight,
            ),
        },
        Job::Batch(batch) => Pending::Running(spawn(async move { vec![Zeroizing::new(run_batch(batch).await)] }), 1, BATCH_WEIGHT),
    }
}

/// Starts the light work in the queue. A lone request, with nothing else
/// in progress, runs right here: handing it to another thread would cost
/// more than it saves. Consecutive light requests are split into groups,
/// at least two per core. The first group runs here and the others go to
/// the runtime's workers, so that several cores serve one connection
/// while each hand-over carries many requests.
fn launch(pending: &mut VecDeque<Pending>) {
    if !pending.iter().any(|entry| matches!(entry, Pending::Queued(..))) {
        return;
    }
    if pending.len() == 1 {
        if let Some(Pending::Queued(one, weight)) = pending.pop_front() {
            pending.push_back(Pending::Ready(vec![Zeroizing::new(one.run())], weight));
        }
        return;
    }
    let mut run = Vec::new();
    for entry in std::mem::take(pending) {
        match entry {
            Pending::Queued(one, weight) => run.push((one, weight)),
            other => {
                spawn_groups(std::mem::take(&mut run), pending);
                pending.push_back(other);
            }
        }
    }
    spawn_groups(run, pending);
}

/// Splits `items` into groups of at most `max_size`, and at least two per core
/// when there are enough items, so that a core that finishes early takes
/// over work.
fn split_groups<T>(items: Vec<T>, max_size: usize) -> Vec<Vec<T>> {
    let size = items.len().div_ceil(cores() * 2).clamp(1, max_size);
    let mut items = items.into_iter();
    std::iter::from_fn(|| {
        let group: Vec<T> = items.by_ref().take(size).collect();
        (!group.is_empty()).then_some(group)
    })
    .collect()
}

/// Queues `run`, consecutive light requests with their weights, in
/// groups: the first runs here, the others on tasks of their own.
fn spawn_groups(run: Vec<(OneWork, usize)>, pending: &mut VecDeque<Pending>) {
    let run_group = |group: Vec<(OneWork, usize)>| group.into_iter().map(|(one, _)| Zeroizing::new(one.run())).collect::<Vec<Body>>();
    let weight_sum = |group: &[(OneWork, usize)]| group.iter().map(|(_, weight)| weight).sum::<usize>();
    let mut groups = split_groups(run, MAX_GROUP).into_iter();
    let Some(first) = groups.next() else { return };
    // The other groups start on the workers before the first runs here.
    let spawned: Vec<Pending> = groups
        .map(|group| {
            let (count, weight) = (group.len(), weight_sum(&group));
            Pending::Running(spawn(async move { run_group(group) }), count, weight)
        })
        .collect();
    let weight = weight_sum(&first);
    pending.push_back(Pending::Ready(run_group(first), weight));
    pending.extend(spawned);
}

/// Runs a batch's items in groups spread over the cores, then joins the
/// replies in item order.
async fn run_batch(batch: Batch) -> Vec<u8> {
    let items = batch.into_items();
    let count = items.len();
    // At most 64 items in a group. All groups run on the blocking pool with
    // a heavy-work permit, so batches from many connections cannot fill the
    // runtime's queues ahead of other connections' tasks.
    let groups: Vec<Task<Vec<Body>>> = split_groups(items, 64)
        .into_iter()
        .map(|group| {
            let length = group.len();
            let run = move || group.into_iter().map(|item| Zeroizing::new(item.into_body())).collect::<Vec<Body>>();
            spawn(async move { run_heavy(run).await.unwrap_or_else(|| failures(length)) })
        })
        .collect();
    let mut bodies = Vec::with_capacity(count);
    for group in groups {
        match group.await {
            // Batch::finish wipes the bodies taken out here.
            Ok(replies) => bodies.extend(replies.into_iter().map(|mut body| std::mem::take(&mut *body))),
            Err(_) => return agent::failure(),
        }
    }
    Batch::finish(bodies)
}

/// Waits for the oldest pending entry; only called when it is running.
async fn oldest(pending: &mut VecDeque<Pending>) -> Vec<Body> {
    match pending.front_mut() {
        Some(Pending::Running(handle, count, _)) => {
            let count = *count;
            handle.await.unwrap_or_else(|_| failures(count))
        }
        _ => std::future::pending().await,
    }
}

/// The time an incomplete frame has taken, counted only while the daemon
/// waits to read: not while it writes replies or is at the in-flight cap.
struct FrameClock {
    /// Whether a frame is incomplete.
    open: bool,
    /// The time left to complete it before the connection is closed.
    left: Duration,
    /// The time waited since it started or last arrived in bulk, which
    /// shows a trickle.
    waited: Duration,
}

impl FrameClock {
    fn new() -> Self {
        FrameClock { open: false, left: FRAME_DEADLINE, waited: Duration::ZERO }
    }

    /// Records whether a frame is incomplete now; a new one gets the whole
    /// deadline.
    fn track(&mut self, incomplete: bool) {
        if incomplete && !self.open {
            self.left = FRAME_DEADLINE;
            self.waited = Duration::ZERO;
        }
        self.open = incomplete;
    }

    /// Sets `deadline` to when the frame's time runs out, if the daemon
    /// waits from `now` on.
    fn arm(&self, deadline: std::pin::Pin<&mut tokio::time::Sleep>, now: tokio::time::Instant) {
        deadline.reset(now + self.left);
    }

    /// Counts the time waited since `began`.
    fn count_since(&mut self, began: tokio::time::Instant) {
        let spent = began.elapsed();
        self.left = self.left.saturating_sub(spent);
        self.waited += spent;
    }

    /// Returns whether the frame in progress is being trickled.
    fn trickling(&self) -> bool {
        self.open && self.waited >= TRICKLE_AFTER
    }
}

/// The outcome of reading a paced connection's socket.
enum Drained {
    /// The frame is still incomplete, and the client still trickles.
    Waiting,
    /// The frame is still incomplete, but the client wrote in bulk during
    /// the pause.
    Bulk,
    /// The frame is complete, or its length is over the limit.
    Frame,
    /// The client closed its end.
    Closed,
    /// Reading failed.
    Failed,
}

/// Reads what a paced connection's socket holds, without waiting, until
/// the frame in progress is complete, nothing is left, or
/// [`TRICKLE_MAX_READS`] reads are done.
fn read_available(stream: &std::os::unix::net::UnixStream, chunk: &mut [u8], input: &mut Input) -> Drained {
    use std::io::Read as _;
    let (mut total, mut reads) = (0, 0);
    while reads < TRICKLE_MAX_READS {
        match (&*stream).read(chunk) {
            Ok(0) => return Drained::Closed,
            Ok(count) => {
                input.extend(&chunk[..count]);
                total += count;
                reads += 1;
                if !matches!(input.peek(MAX_FRAME), Ok(Frame::Incomplete)) {
                    return Drained::Frame;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Drained::Failed,
        }
    }
    if total >= TRICKLE_BULK && total >= TRICKLE_BULK_READ * reads {
        Drained::Bulk
    } else {
        Drained::Waiting
    }
}

/// Serves one service-socket connection until the client leaves.
///
/// Requests may be written back to back (pipelined). Parsing and policy
/// run here one request at a time in arrival order, so a request that
/// changes the connection's state (`session-bind@openssh.com`) applies to
/// every later one. The private-key work of up to [`IN_FLIGHT`] requests
/// runs concurrently, and replies go out in request order.
pub async fn serve_agent(mut stream: UnixStream, state: Arc<DaemonState>) {
    let peer = match peer_of(&stream) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(%error, "cannot read the peer credentials; closing the connection");
            return;
        }
    };
    let mut connection = Connection::new(peer);
    let mut input = Input::new();
    let mut chunk = Zeroizing::new(vec![0u8; READ_CHUNK]);
    let mut output = Zeroizing::new(Vec::new());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // The weight of the entries in `pending`.
    let mut in_flight = 0usize;
    // One timer per connection closes it when a frame's time is up. It is
    // set when the daemon starts waiting, so a paced client trickling
    // bytes costs no timer work per byte.
    let mut clock = FrameClock::new();
    let deadline = tokio::time::sleep(FRAME_DEADLINE);
    tokio::pin!(deadline);
    let mut reading = true;
    // Why the connection closes once the pending requests are answered.
    let mut closing: Option<&'static str> = None;

    let broken = |connection: &Connection, why: &'static str| {
        // A hostile client can break frames as fast as it can connect, so
        // at most one line a second goes to the audit trail.
        let Some(held_back) = BROKEN_FRAMES.check(std::time::Instant::now()) else { return };
        let mut event = AuditEvent::new("connection-closed").peer(&connection.peer);
        event.reason = Some(why);
        state.audit.record(&event);
        if held_back > 0 {
            tracing::warn!(held_back, "connection-closed audit lines held back in the last second");
        }
    };

    loop {
        // Handle every complete frame there is room for, in order.
        let mut added = false;
        while closing.is_none() && in_flight < IN_FLIGHT {
            let length = match input.peek(MAX_FRAME) {
                Ok(Frame::Complete(length)) => length,
                Ok(Frame::Incomplete) => break,
                Err(why) => {
                    // Answer the requests before the bad frame, then close.
                    closing = Some(why);
                    reading = false;
                    break;
                }
            };
            // An empty frame has no message type; it gets FAILURE like
            // any malformed request.
            let reply = state.service.handle(&mut connection, &input.pending()[4..4 + length], context::now());
            input.consume(length);
            clock.track(false);
            let entry = start(reply, length);
            in_flight += entry.weight();
            pending.push_back(entry);
            added = true;
        }
        if added {
            launch(&mut pending);
        }
        // The deadline runs only while a frame is incomplete, not while a
        // complete one waits for room.
        let incomplete = closing.is_none() && !input.is_empty() && matches!(input.peek(MAX_FRAME), Ok(Frame::Incomplete));
        clock.track(incomplete);

        // Send every reply that is ready at the front, in one write.
        while let Some(front) = pending.front_mut() {
            let weight = front.weight();
            let bodies = match front {
                Pending::Ready(bodies, _) => std::mem::take(bodies),
                Pending::Running(handle, ..) if handle.0.is_finished() => oldest(&mut pending).await,
                Pending::Running(..) | Pending::Queued(..) => break,
            };
            pending.pop_front();
            in_flight -= weight;
            for body in bodies {
                extend_wiped(&mut output, &(body.len() as u32).to_be_bytes());
                extend_wiped(&mut output, &body);
            }
        }
        if !output.is_empty() {
            let written = tokio::time::timeout(WRITE_STALL, stream.write_all(&output)).await;
            output.as_mut_slice().zeroize();
            output.clear();
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => return broken(&connection, "replies not read"),
            }
        }
        // Replies sent above made room: handle the frames that waited for
        // it before waiting for anything, since the client may have sent
        // everything already.
        if closing.is_none() && in_flight < IN_FLIGHT && matches!(input.peek(MAX_FRAME), Ok(Frame::Complete(_))) {
            continue;
        }
        if !reading && pending.is_empty() {
            if let Some(why) = closing {
                broken(&connection, why);
            } else if !input.is_empty() {
                broken(&connection, "truncated frame");
            }
            return;
        }

        if reading && clock.trickling() && pending.is_empty() {
            // Take the socket out of the runtime's poller while paced, so
            // that the bytes arriving meanwhile wake no thread.
            let Ok(quiet) = stream.into_std() else { return };
            let began = tokio::time::Instant::now();
            clock.arm(deadline.as_mut(), began);
            let mut pause = TRICKLE_FIRST_PAUSE;
            let drained = loop {
                tokio::select! {
                    () = tokio::time::sleep(pause) => pause = (pause * 2).min(TRICKLE_LONGEST_PAUSE),
                    () = &mut deadline => return broken(&connection, "frame deadline passed"),
                }
                match read_available(&quiet, &mut chunk, &mut input) {
                    Drained::Waiting => continue,
                    drained => break drained,
                }
            };
            clock.count_since(began);
            match drained {
                Drained::Closed => reading = false,
                Drained::Failed => return broken(&connection, "read failed"),
                // The client writes in bulk again: read it as usual, and
                // pace it again only after another trickle.
                Drained::Bulk => clock.waited = Duration::ZERO,
                Drained::Waiting | Drained::Frame => {}
            }
            stream = match UnixStream::from_std(quiet) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "failed to register a paced connection with the runtime again; closing it");
                    return;
                }
            };
            continue;
        }
        let running = matches!(pending.front(), Some(Pending::Running(..)));
        // The frame's clock runs only while the daemon waits to read.
        let timed = clock.open && reading && in_flight < IN_FLIGHT;
        let began = tokio::time::Instant::now();
        if timed {
            clock.arm(deadline.as_mut(), began);
        }
        tokio::select! {
            bodies = oldest(&mut pending), if running => {
                if let Some(front) = pending.front_mut() {
                    let weight = front.weight();
                    *front = Pending::Ready(bodies, weight);
                }
            }
            read = stream.read(&mut chunk), if reading && in_flight < IN_FLIGHT => match read {
                Ok(0) => reading = false,
                Ok(count) => input.extend(&chunk[..count]),
                Err(_) => {
                    if !input.is_empty() {
                        broken(&connection, "read failed");
                    }
                    reading = false;
                    if pending.is_empty() {
                        return;
                    }
                }
            },
            () = &mut deadline, if timed => {
                return broken(&connection, "frame deadline passed");
            }
        }
        if timed {
            clock.count_since(began);
        }
    }
}

/// Serves one admin-socket connection.
pub async fn serve_admin(mut stream: UnixStream, state: Arc<DaemonState>) {
    let peer = match peer_of(&stream) {
        Ok(peer) => peer,
        Err(_) => return,
    };
    if !state.service.policy().is_admin(&peer) {
        let mut event = AuditEvent::new("refused").peer(&peer);
        event.operation = Some("admin");
        event.reason = Some("not-an-admin");
        state.audit.record(&event);
        let reply = AdminReply::Error { code: 5, message: "not allowed: this user is not an admin of the daemon".into() };
        let _ = write_frame(&mut stream, &reply.encode()).await;
        return;
    }
    loop {
        let body = match read_frame(&mut stream, MAX_ADMIN_FRAME).await {
            Ok(body) => body,
            Err(_) => return,
        };
        let reply = match AdminRequest::parse(&body) {
            Ok(request) => handle_admin(request, &state, &peer).await,
            Err(error) => AdminReply::Error { code: 1, message: format!("malformed admin request: {error}") },
        };
        drop(body);
        if write_frame(&mut stream, &reply.encode()).await.is_err() {
            return;
        }
    }
}

fn reply_of(result: Result<String, Failure>) -> AdminReply {
    match result {
        Ok(text) => AdminReply::Ok(text),
        Err(failure) => AdminReply::Error { code: failure.code, message: failure.message },
    }
}

fn passphrase_of(bytes: &[u8]) -> Result<Passphrase, Failure> {
    match Passphrase::from_utf8(bytes) {
        Some(Ok(passphrase)) => Ok(passphrase),
        Some(Err(error)) => Err(Failure::failed(error.to_string())),
        None => Err(Failure::failed("the passphrase is not valid UTF-8")),
    }
}

/// Runs blocking work (KDF, key generation, file writes) off the runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| Err(Failure::failed("the operation failed unexpectedly")))
}

async fn handle_admin(request: AdminRequest, state: &Arc<DaemonState>, peer: &Peer) -> AdminReply {
    let mut event = AuditEvent::new("admin").peer(peer);
    let name = format!("{request:?}").to_lowercase();
    event.operation = Some(&name);
    state.audit.record(&event);

    let state = Arc::clone(state);
    match request {
        AdminRequest::Status => {
            AdminReply::Ok(super::status::document(&state, super::started()).to_string())
        }
        AdminRequest::Unseal { passphrase } => {
            // Failed attempts slow further ones (DaemonState::unseal waits
            // on a blocking thread), on the admin socket only.
            reply_of(
                blocking(move || {
                    let passphrase = passphrase_of(&passphrase)?;
                    state.unseal(&passphrase)
                })
                .await
                .map(|count| format!("unsealed: {count} keys")),
            )
        }
        AdminRequest::Seal => {
            reply_of(blocking(move || {
                state.seal("requested");
                Ok("sealed".to_owned())
            })
            .await)
        }
        AdminRequest::Reload => reply_of(blocking(move || state.reload().map(|()| "configuration reloaded".to_owned())).await),
        AdminRequest::Keygen { key_type, name, purpose, comment, not_before, not_after } => reply_of(
            blocking(move || state.keygen(&key_type, &name, &purpose, &comment, not_before, not_after)).await,
        ),
        AdminRequest::Remove { name } => reply_of(blocking(move || state.remove(&name).map(|()| String::new())).await),
        AdminRequest::Passwd { old, new } => reply_of(
            blocking(move || {
                let old = passphrase_of(&old)?;
                let new = passphrase_of(&new)?;
                state.passwd(&old, &new).map(|()| String::new())
            })
            .await,
        ),
        AdminRequest::Import { keys } => reply_of(blocking(move || state.import(keys).map(|()| String::new())).await),
    }
}
