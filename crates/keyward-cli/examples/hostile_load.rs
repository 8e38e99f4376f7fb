//! Load generator for `scripts/load.sh`: hostile clients against one
//! daemon while an honest client signs, reporting the honest client's
//! latency.
//!
//! Runs as root: each client thread switches its own credentials (Linux
//! keeps them per thread under the C library), so the attackers and the
//! honest client connect under different uids from one process. Talks only
//! to the unix socket it is given.
//!
//! Usage: hostile_load SOCKET SECONDS HONEST_UID ATTACKER_UIDS GID
//! (ATTACKER_UIDS comma-separated; GID is the socket's group, given to
//! every client). Settings by environment: LOAD_IDLE (1000),
//! LOAD_GARBAGE (4 threads), LOAD_STALLED (100 connections),
//! LOAD_CHURN (4 threads).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Gid, Uid};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: hostile_load SOCKET SECONDS HONEST_UID ATTACKER_UIDS GID");
        std::process::exit(2);
    }
    let socket = PathBuf::from(&args[1]);
    let seconds: u64 = args[2].parse().expect("SECONDS is a number");
    let honest_uid: u32 = args[3].parse().expect("HONEST_UID is a number");
    let attackers: Vec<u32> = args[4].split(',').map(|uid| uid.parse().expect("ATTACKER_UIDS are numbers")).collect();
    let gid: u32 = args[5].parse().expect("GID is a number");
    let setting = |name: &str, default: usize| std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default);
    let idle = setting("LOAD_IDLE", 1000);
    let garbage_threads = setting("LOAD_GARBAGE", 4);
    let stalled = setting("LOAD_STALLED", 100);
    let churn_threads = setting("LOAD_CHURN", 4);

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(AttackStats::default());
    let mut threads = Vec::new();

    // Idle connections, spread over all attacker uids but the last, which
    // runs the active attacks; so each uid stays under the per-uid cap.
    let idle_uids = if attackers.len() > 1 { &attackers[..attackers.len() - 1] } else { &attackers[..] };
    let active_uid = attackers[attackers.len() - 1];
    let per_uid = idle.div_ceil(idle_uids.len());
    for (index, &uid) in idle_uids.iter().enumerate() {
        let count = per_uid.min(idle.saturating_sub(index * per_uid));
        let (socket, stop, stats) = (socket.clone(), stop.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            become_uid(uid, gid);
            let mut held = Vec::new();
            for _ in 0..count {
                match UnixStream::connect(&socket) {
                    Ok(stream) => held.push(stream),
                    Err(_) => {
                        stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            stats.idle.fetch_add(held.len() as u64, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }

    for thread in 0..garbage_threads {
        let uid = active_uid;
        let (socket, stop, stats) = (socket.clone(), stop.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            become_uid(uid, gid);
            garbage(&socket, &stop, &stats, thread as u64 + 1);
        }));
    }

    if stalled > 0 {
        let uid = active_uid;
        let (socket, stop, stats) = (socket.clone(), stop.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            become_uid(uid, gid);
            stall(&socket, &stop, &stats, stalled);
        }));
    }

    for _ in 0..churn_threads {
        let uid = active_uid;
        let (socket, stop, stats) = (socket.clone(), stop.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            become_uid(uid, gid);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(stream) = UnixStream::connect(&socket) {
                    drop(stream);
                    stats.churned.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Let the attackers take their places before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let honest = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || {
            become_uid(honest_uid, gid);
            honest_client(&socket, &stop)
        })
    };

    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let honest = honest.join().expect("the honest client panicked");
    for thread in threads {
        let _ = thread.join();
    }
    report(&honest, &stats, seconds);
}

#[derive(Default)]
struct AttackStats {
    idle: AtomicU64,
    garbage_frames: AtomicU64,
    stalled_closed: AtomicU64,
    churned: AtomicU64,
    connect_failures: AtomicU64,
}

struct HonestResult {
    latencies: Vec<Duration>,
    failures: u64,
    first_failure: Option<String>,
}

fn become_uid(uid: u32, gid: u32) {
    rustix::thread::set_thread_groups(&[Gid::from_raw(gid)]).expect("set groups (run as root)");
    rustix::thread::set_thread_res_gid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid)).expect("set gid (run as root)");
    rustix::thread::set_thread_res_uid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid)).expect("set uid (run as root)");
}

fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    string(body)
}

fn read_reply(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// A small xorshift generator for garbage bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends random frames: random message types and bodies, over-long length
/// headers and raw noise, reconnecting whenever the daemon closes.
fn garbage(socket: &Path, stop: &AtomicBool, stats: &AttackStats, seed: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = UnixStream::connect(socket) else {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok();
        for _ in 0..32 {
            let length = (rng.next() % 300) as usize;
            let body: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
            let bytes = match rng.next() % 4 {
                0 => body,
                1 => [&(1u32 << 30).to_be_bytes()[..], &body].concat(),
                _ => frame(&body),
            };
            if stream.write_all(&bytes).is_err() || read_reply(&mut stream).is_err() {
                break;
            }
            stats.garbage_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Keeps `count` connections that sent half a frame and stall; replaces
/// each one the daemon closes.
fn stall(socket: &Path, stop: &AtomicBool, stats: &AttackStats, count: usize) {
    let half_frame = &frame(&[13, 0, 0, 1, 0])[..6];
    let mut open: Vec<UnixStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        open.retain_mut(|stream| {
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Ok(0) => {
                    stats.stalled_closed.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => true,
                _ => false,
            }
        });
        while open.len() < count {
            let Ok(mut stream) = UnixStream::connect(socket) else {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                break;
            };
            if stream.write_all(half_frame).is_ok() && stream.set_nonblocking(true).is_ok() {
                open.push(stream);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Signs with the first key the daemon lists, one request at a time on
/// one connection, reconnecting after a failure.
fn honest_client(socket: &Path, stop: &AtomicBool) -> HonestResult {
    let mut result = HonestResult { latencies: Vec::new(), failures: 0, first_failure: None };
    let fail = |result: &mut HonestResult, what: String| {
        result.failures += 1;
        result.first_failure.get_or_insert(what);
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut connection: Option<(UnixStream, Vec<u8>)> = None;
    let mut counter = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if connection.is_none() {
            match connect_honest(socket) {
                Ok(ready) => connection = Some(ready),
                Err(error) => {
                    fail(&mut result, error);
                    continue;
                }
            }
        }
        let (stream, blob) = connection.as_mut().expect("connected above");
        counter += 1;
        let mut request = vec![13];
        request.extend(string(blob));
        request.extend(string(format!("load test message {counter}").as_bytes()));
        request.extend(0u32.to_be_bytes());
        let started = Instant::now();
        let outcome = stream.write_all(&frame(&request)).and_then(|()| read_reply(stream));
        let elapsed = started.elapsed();
        match outcome {
            Ok(reply) if reply.first() == Some(&14) => result.latencies.push(elapsed),
            Ok(reply) => fail(&mut result, format!("sign request refused (reply type {:?})", reply.first())),
            Err(error) => {
                fail(&mut result, format!("sign request failed: {error}"));
                connection = None;
            }
        }
    }
    result
}

fn connect_honest(socket: &Path) -> Result<(UnixStream, Vec<u8>), String> {
    let mut stream = UnixStream::connect(socket).map_err(|error| format!("connect failed: {error}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    stream.write_all(&frame(&[11])).map_err(|error| format!("request-identities failed: {error}"))?;
    let reply = read_reply(&mut stream).map_err(|error| format!("request-identities failed: {error}"))?;
    if reply.first() != Some(&12) || reply.len() < 9 {
        return Err(format!("unexpected identities reply of {} bytes", reply.len()));
    }
    let count = u32::from_be_bytes(reply[1..5].try_into().expect("4 bytes"));
    if count == 0 {
        return Err("the daemon lists no key for the honest uid; check its [[key]] rule".into());
    }
    let length = u32::from_be_bytes(reply[5..9].try_into().expect("4 bytes")) as usize;
    let blob = reply.get(9..9 + length).ok_or("truncated identities reply")?.to_vec();
    Ok((stream, blob))
}

fn report(honest: &HonestResult, stats: &AttackStats, seconds: u64) {
    let mut latencies = honest.latencies.clone();
    latencies.sort();
    let percentile = |p: f64| -> Duration {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index]
    };
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!("duration_s            {seconds}");
    println!("honest_signatures     {}", latencies.len());
    println!("honest_failures       {}", honest.failures);
    if let Some(first) = &honest.first_failure {
        println!("first_failure         {first}");
    }
    println!("honest_p50_ms         {:.3}", ms(percentile(0.50)));
    println!("honest_p99_ms         {:.3}", ms(percentile(0.99)));
    println!("honest_max_ms         {:.3}", ms(latencies.last().copied().unwrap_or_default()));
    println!("idle_connections      {}", stats.idle.load(Ordering::Relaxed));
    println!("garbage_frames        {}", stats.garbage_frames.load(Ordering::Relaxed));
    println!("stalled_closed        {}", stats.stalled_closed.load(Ordering::Relaxed));
    println!("connect_close_loops   {}", stats.churned.load(Ordering::Relaxed));
    println!("attacker_connect_fail {}", stats.connect_failures.load(Ordering::Relaxed));
    let goal_met = honest.failures == 0 && !latencies.is_empty() && percentile(0.99) < Duration::from_millis(5);
    println!("goal (p99 < 5 ms, no failures) {}", if goal_met { "met" } else { "NOT met" });
}
