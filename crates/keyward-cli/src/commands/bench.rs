//! `keyward bench`: a load generator speaking the ssh-agent protocol, to
//! size a node or compare agents. It works against any ssh-agent socket,
//! OpenSSH's included; the `batch` mode needs Keyward.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keyward::agent::{self, extensions, MAX_FRAME};
use keyward::keys::generate;
use keyward::keys::signing::FLAG_RSA_SHA2_256;
use keyward::keys::{KeyType, LoadedKey};
use keyward::keystore::{Entry, EntryMeta};
use keyward::wire::{Reader, Writer};

use crate::cli::{BenchArgs, BenchMode};
use crate::context::{self, Context};
use crate::error::{CliError, ExitCode, Result};

/// The data every request signs: 64 bytes, the size of a SHA-512 exchange hash.
const SIGNED_DATA: [u8; 64] = [0x5a; 64];

/// Results of one run.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    mode: &'static str,
    clients: usize,
    depth: usize,
    seconds: f64,
    /// Signatures made (batch items count one each).
    operations: u64,
    failures: u64,
    per_second: f64,
    /// Latency of one exchange (a request, or a whole batch), microseconds.
    p50_us: f64,
    p99_us: f64,
    /// Bytes the slow client managed to send, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_client_bytes: Option<u64>,
}

pub fn bench(context: &Context, args: &BenchArgs) -> Result<()> {
    if let Some(count) = args.populate {
        return populate(context, count, args);
    }
    let outcome = match args.mode {
        BenchMode::InProcess => in_process(args)?,
        _ => over_socket(args)?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&outcome).expect("plain data serialises"));
    } else {
        println!(
            "{} clients={} depth={} seconds={:.1}: {:.0} signatures/s, p50 {:.1} µs, p99 {:.1} µs, {} failures",
            outcome.mode, outcome.clients, outcome.depth, outcome.seconds, outcome.per_second, outcome.p50_us, outcome.p99_us, outcome.failures
        );
        if let Some(bytes) = outcome.slow_client_bytes {
            println!("slow client sent {bytes} bytes one at a time");
        }
    }
    Ok(())
}

fn mode_name(mode: BenchMode) -> &'static str {
    match mode {
        BenchMode::Sign => "sign",
        BenchMode::Pipeline => "pipeline",
        BenchMode::Batch => "batch",
        BenchMode::InProcess => "in-process",
    }
}

/// Reads the public-key blob from an OpenSSH public-key line.
fn key_blob(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).map_err(|error| CliError::failed(format!("cannot read {}: {error}", path.display())))?;
    let field = text.split_whitespace().nth(1).ok_or_else(|| CliError::failed(format!("{} is not an OpenSSH public-key line", path.display())))?;
    base64::engine::general_purpose::STANDARD
        .decode(field)
        .map_err(|_| CliError::failed(format!("{} contains invalid base64 in its key field", path.display())))
}

fn sign_request(blob: &[u8]) -> Vec<u8> {
    let mut algorithm = Reader::new(blob);
    let flags = match algorithm.string() {
        Ok(b"ssh-rsa") => FLAG_RSA_SHA2_256,
        _ => 0,
    };
    let mut body = vec![agent::SSH_AGENTC_SIGN_REQUEST];
    body.put_string(blob);
    body.put_string(&SIGNED_DATA);
    body.put_u32(flags);
    body
}

fn batch_request(sign: &[u8], depth: usize) -> Vec<u8> {
    let mut body = vec![agent::SSH_AGENTC_EXTENSION];
    body.put_string(extensions::BATCH.as_bytes());
    body.extend_from_slice(&extensions::batch_body(std::iter::repeat_n(sign, depth)));
    body
}

fn frame(body: &[u8]) -> Vec<u8> {
    agent::frame(body)
}

/// Signatures in one reply: 1 for a sign response, the successful items
/// of a batch reply, else 0.
fn successes(body: &[u8]) -> (u64, u64) {
    match body.first() {
        Some(&agent::SSH_AGENT_SIGN_RESPONSE) => (1, 0),
        Some(&agent::SSH_AGENT_EXTENSION_RESPONSE) => {
            let mut reader = Reader::new(&body[1..]);
            if reader.string().ok() != Some(extensions::BATCH.as_bytes()) {
                return (0, 1);
            }
            match extensions::parse_batch_reply(reader.rest()) {
                Ok(items) => {
                    let good = items.iter().filter(|item| item.first() == Some(&agent::SSH_AGENT_SIGN_RESPONSE)).count() as u64;
                    (good, items.len() as u64 - good)
                }
                Err(_) => (0, 1),
            }
        }
        _ => (0, 1),
    }
}

struct ClientResult {
    operations: u64,
    failures: u64,
    latencies_ns: Vec<u64>,
}

/// Reads one reply frame body from `buffer`, reading more as needed.
async fn read_reply(stream: &mut tokio::net::UnixStream, buffer: &mut Vec<u8>, body: &mut Vec<u8>) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    loop {
        if has_complete_frame(buffer) {
            let length = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
            body.clear();
            body.extend_from_slice(&buffer[4..4 + length]);
            buffer.drain(..4 + length);
            return Ok(());
        }
        if buffer.len() >= 4 && u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize > MAX_FRAME {
            return Err(std::io::Error::other("reply too long"));
        }
        buffer.reserve(64 * 1024);
        if stream.read_buf(buffer).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the agent closed the connection"));
        }
    }
}

/// Keeps `depth` requests in flight on one connection until `stop`. All
/// clients are tasks on one thread, so the generator takes as little CPU
/// from the agent under test as it can.
async fn client(socket: PathBuf, request: Arc<Vec<u8>>, depth: usize, start: Arc<tokio::sync::Barrier>, stop: Arc<AtomicBool>) -> std::io::Result<ClientResult> {
    use tokio::io::AsyncWriteExt;
    let connected = tokio::net::UnixStream::connect(&socket).await;
    // Reach the start line even when the connection failed, so the
    // others are not left waiting.
    start.wait().await;
    let mut stream = connected?;
    let one = frame(&request);
    let mut result = ClientResult { operations: 0, failures: 0, latencies_ns: Vec::with_capacity(1 << 16) };
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut body = Vec::new();
    let mut burst = Vec::with_capacity(one.len() * depth);

    let mut to_send = depth;
    loop {
        burst.clear();
        for _ in 0..to_send {
            burst.extend_from_slice(&one);
        }
        let now = Instant::now();
        sent.extend(std::iter::repeat_n(now, to_send));
        stream.write_all(&burst).await?;

        read_reply(&mut stream, &mut buffer, &mut body).await?;
        let done = Instant::now();
        to_send = 0;
        loop {
            let (good, bad) = successes(&body);
            result.operations += good;
            result.failures += bad;
            if let Some(at) = sent.pop_front() {
                result.latencies_ns.push((done - at).as_nanos() as u64);
            }
            to_send += 1;
            // Take every reply already received before writing again, so
            // one write refills the window.
            if !has_complete_frame(&buffer) {
                break;
            }
            read_reply(&mut stream, &mut buffer, &mut body).await?;
        }
        if stop.load(Ordering::Relaxed) {
            // Drain what is still in flight, uncounted.
            while sent.pop_front().is_some() {
                read_reply(&mut stream, &mut buffer, &mut body).await?;
            }
            return Ok(result);
        }
    }
}

fn has_complete_frame(buffer: &[u8]) -> bool {
    match buffer.get(..4) {
        Some(length) => buffer.len() - 4 >= u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize,
        None => false,
    }
}

/// Sends a maximal frame one byte at a time, `interval` apart, and starts
/// over on a new connection whenever the daemon closes this one.
fn slow_client(socket: &Path, interval: Duration, stop: &AtomicBool, sent: &AtomicU64) {
    let length = (MAX_FRAME as u32).to_be_bytes();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = UnixStream::connect(socket) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut position = 0usize;
        while !stop.load(Ordering::Relaxed) && position < 4 + MAX_FRAME {
            let byte = if position < 4 { length[position] } else if position == 4 { agent::SSH_AGENTC_SIGN_REQUEST } else { 0 };
            if stream.write_all(&[byte]).is_err() {
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            position += 1;
            if !interval.is_zero() {
                std::thread::sleep(interval);
            }
        }
    }
}

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn over_socket(args: &BenchArgs) -> Result<Outcome> {
    let socket = args.socket.clone().ok_or_else(|| CliError::with_code(ExitCode::Usage, "--socket is required"))?;
    let blob_file = args.key_blob_from.as_ref().ok_or_else(|| CliError::with_code(ExitCode::Usage, "--key-blob-from is required"))?;
    let blob = key_blob(blob_file)?;
    let sign = sign_request(&blob);
    let (request, depth) = match args.mode {
        BenchMode::Sign => (sign, 1),
        BenchMode::Pipeline => (sign, args.depth.max(1)),
        BenchMode::Batch => (batch_request(&sign, args.depth.clamp(1, extensions::MAX_BATCH_ITEMS)), 1),
        BenchMode::InProcess => unreachable!("handled by in_process"),
    };
    let clients = args.clients.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let slow_sent = Arc::new(AtomicU64::new(0));
    let request = Arc::new(request);

    let slow = args.slow_client.then(|| {
        let socket = args.slow_socket.clone().unwrap_or_else(|| socket.clone());
        let (stop, sent) = (stop.clone(), slow_sent.clone());
        let interval = Duration::from_micros(args.slow_interval_us);
        std::thread::spawn(move || slow_client(&socket, interval, &stop, &sent))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failed(format!("cannot start the runtime: {error}")))?;
    let seconds = args.seconds;
    let (results, began) = runtime.block_on(async {
        let start = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(client(socket.clone(), request.clone(), depth, start.clone(), stop.clone())))
            .collect();
        start.wait().await;
        let began = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut results = Vec::with_capacity(clients);
        for task in tasks {
            results.push(task.await.unwrap_or_else(|_| Err(std::io::Error::other("a client task panicked"))));
        }
        (results, began)
    });
    let mut operations = 0;
    let mut failures = 0;
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(result) => {
                operations += result.operations;
                failures += result.failures;
                latencies.extend(result.latencies_ns);
            }
            Err(error) => errors.push(error.to_string()),
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    if let Some(slow) = slow {
        let _ = slow.join();
    }
    if !errors.is_empty() {
        return Err(CliError::failed(format!("{} clients failed: {}", errors.len(), errors[0])));
    }
    latencies.sort_unstable();
    let depth_reported = if args.mode == BenchMode::Sign { 1 } else { args.depth.max(1) };
    Ok(Outcome {
        mode: mode_name(args.mode),
        clients,
        depth: depth_reported,
        seconds: elapsed,
        operations,
        failures,
        per_second: operations as f64 / elapsed,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        slow_client_bytes: args.slow_client.then(|| slow_sent.load(Ordering::Relaxed)),
    })
}

/// Measures the ceiling: Ed25519 signatures made in this process with the
/// same code the daemon runs, on `--clients` threads.
fn in_process(args: &BenchArgs) -> Result<Outcome> {
    super::keys::harden()?;
    let generated = generate::generate(KeyType::Ed25519).map_err(|error| CliError::failed(error.to_string()))?;
    let meta = bench_meta("in-process".to_owned(), generated.public_blob, 0);
    let key = Arc::new(LoadedKey::load(meta, generated.private).map_err(|error| CliError::failed(error.to_string()))?);
    let threads = args.clients.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (key, stop, start) = (key.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        let signature = key.sign(&SIGNED_DATA, 0, false);
                        std::hint::black_box(&signature);
                    }
                    count += 64;
                }
                count
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let operations: u64 = workers.into_iter().map(|worker| worker.join().expect("a signing thread panicked")).sum();
    let elapsed = began.elapsed().as_secs_f64();
    Ok(Outcome {
        mode: "in-process",
        clients: threads,
        depth: 1,
        seconds: elapsed,
        operations,
        failures: 0,
        per_second: operations as f64 / elapsed,
        p50_us: 0.0,
        p99_us: 0.0,
        slow_client_bytes: None,
    })
}

fn bench_meta(name: String, public_key: Vec<u8>, created: u64) -> EntryMeta {
    EntryMeta {
        name,
        key_type: KeyType::Ed25519.to_string(),
        purpose: KeyType::Ed25519.default_purpose().to_string(),
        public_key,
        comment: String::new(),
        created,
        not_before: None,
        not_after: None,
        attributes: Vec::new(),
    }
}

/// Adds `count` generated Ed25519 keys, named `bench-NNNNN`, to the
/// keystore in one write, offline, to measure a daemon holding many keys.
fn populate(context: &Context, count: usize, args: &BenchArgs) -> Result<()> {
    let dir = context.keystore_dir()?;
    let (mut unlocked, existing) = super::keys::open(&dir, args.passphrase)?;
    let now = context::now();
    let mut entries = Vec::with_capacity(count);
    for index in 0..count {
        let generated = generate::generate(KeyType::Ed25519).map_err(|error| CliError::failed(error.to_string()))?;
        let meta = bench_meta(format!("bench-{:05}", index + existing.len()), generated.public_blob, now);
        entries.push(Entry { meta, private: generated.private });
    }
    unlocked.add(entries)?;
    println!("added {count} Ed25519 keys");
    Ok(())
}
