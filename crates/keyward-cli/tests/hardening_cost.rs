//! What the memory protections cost: unseal time and sign latency for each
//! arena backing, with and without `mlockall`. It reports and never fails
//! on a number (2 shared cores are too noisy to gate on), so it is ignored
//! by default. Run it with
//! `cargo test -p keyward-cli --test hardening_cost -- --ignored --nocapture`.

mod common;
mod hardening_support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::agent::{frame, read_reply, sign_request, SIGN_RESPONSE};
use common::{assert_success, Daemon, Env};

const ED25519_SIGNATURES: usize = 400;
const RSA_SIGNATURES: usize = 100;
const UNSEALS: usize = 7;
const PRODUCTION_KDF_UNSEALS: usize = 3;

struct Setup {
    label: &'static str,
    memory: Option<&'static str>,
    unprivileged: bool,
}

fn start(env: &Env, setup: &Setup) -> Daemon {
    if setup.unprivileged {
        hardening_support::give_to_unprivileged(env);
    }
    let prlimit = common::require_program("prlimit");
    env.start_daemon_with(|command| {
        if let Some(memory) = setup.memory {
            command.env("KEYWARD_TEST_MEMORY", memory);
            if memory == "none" {
                command.arg("--allow-insecure-memory");
            }
        }
        if setup.unprivileged {
            hardening_support::wrap_unprivileged(env, command);
            hardening_support::wrap_daemon(env, command, &prlimit, &["--memlock=8388608".to_owned(), "--".to_owned()]);
        }
    })
}

/// Runs inside a helper process (as the daemon's uid, whom the default
/// policy lets use keys without a rule): signs on one connection and
/// prints `result MEDIAN_US P90_US`. The argument is
/// `SOCKET BLOB_HEX FLAGS COUNT`.
#[test]
#[ignore = "a helper process for the measurement, not a test"]
fn helper_sign_loop() {
    let Ok(argument) = std::env::var(hardening_support::HELPER_ARGUMENT) else { return };
    let words: Vec<&str> = argument.split(' ').collect();
    let blob: Vec<u8> = (0..words[1].len() / 2).map(|i| u8::from_str_radix(&words[1][2 * i..2 * i + 2], 16).unwrap()).collect();
    let flags: u32 = words[2].parse().unwrap();
    let count: usize = words[3].parse().unwrap();
    sign_latencies(std::path::Path::new(words[0]), &blob, flags, 20);
    let (median, p90) = median_and_p90(sign_latencies(std::path::Path::new(words[0]), &blob, flags, count));
    println!("result {median:.0} {p90:.0}");
}

/// Measures signing through `helper_sign_loop`, as the daemon's uid.
fn measure_signing(env: &Env, setup: &Setup, blob: &[u8], flags: u32, count: usize) -> (String, String) {
    let program = if setup.unprivileged {
        let mut setpriv = std::process::Command::new(common::require_program("setpriv"));
        setpriv.args(hardening_support::setpriv_args());
        Some(setpriv)
    } else {
        None
    };
    let argument = format!("{} {} {flags} {count}", env.agent_socket().display(), hardening_support::to_hex(blob));
    let output = hardening_support::helper_command(program, "helper_sign_loop", &argument).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = text.lines().find(|line| line.starts_with("result ")).unwrap_or_else(|| panic!("no result from the sign loop:\n{text}"));
    let mut values = line.split_whitespace().skip(1).map(str::to_owned);
    (values.next().unwrap(), values.next().unwrap())
}

/// Signs `count` times on one connection; returns each round trip.
fn sign_latencies(socket: &std::path::Path, blob: &[u8], flags: u32, count: usize) -> Vec<Duration> {
    let mut stream = UnixStream::connect(socket).unwrap();
    let request = frame(&sign_request(blob, b"cost measurement data, 32 bytes!", flags));
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        stream.write_all(&request).unwrap();
        let reply = read_reply(&mut stream).unwrap();
        latencies.push(started.elapsed());
        assert_eq!(reply[0], SIGN_RESPONSE, "the daemon did not sign (reply type {})", reply[0]);
    }
    latencies
}

fn median_and_p90(mut values: Vec<Duration>) -> (f64, f64) {
    values.sort();
    let micros = |value: Duration| value.as_secs_f64() * 1e6;
    (micros(values[values.len() / 2]), micros(values[values.len() * 9 / 10]))
}

/// Creates a keystore with the production KDF parameters (calibrated by
/// `init` to about a second on this machine) and one Ed25519 key, shared
/// by every setup so that all unseal the same Argon2id parameters.
fn production_keystore() -> Env {
    let env = Env::new();
    let output = env
        .keyward()
        .env_remove("KEYWARD_TEST_INSECURE_KDF")
        .args(["init", "--passphrase-fd", "0"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(common::PASSPHRASE.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert_success(&output, "keyward init with the production KDF");
    println!("production KDF: {}", String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default());
    env.keygen("ed25519", "ed");
    env
}

/// Measures the median unseal time of a copy of `template`'s keystore, in µs.
fn production_kdf_unseal(template: &Env, setup: &Setup) -> f64 {
    let env = Env::new();
    let status = std::process::Command::new("cp").arg("-a").arg(&template.keystore).arg(&env.keystore).status().unwrap();
    assert!(status.success(), "cp -a of the keystore failed");
    let _daemon = start(&env, setup);
    median_and_p90(time_unseals(&env, PRODUCTION_KDF_UNSEALS)).0
}

/// Unseals and seals the daemon `count` times; returns each unseal's wall
/// time.
fn time_unseals(env: &Env, count: usize) -> Vec<Duration> {
    let mut unseals = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        env.unseal();
        unseals.push(started.elapsed());
        assert_success(&env.run(&["seal"]), "keyward seal");
    }
    unseals
}

#[test]
#[ignore = "a measurement that reports figures; run it by hand"]
fn protection_costs() {
    if !common::is_root() {
        eprintln!("skipped: the setups switch uids and need root");
        return;
    }
    let setups = [
        Setup { label: "memfd_secret + mlockall (root)", memory: None, unprivileged: false },
        Setup { label: "mlock + mlockall (root)", memory: Some("mlock"), unprivileged: false },
        Setup { label: "none + mlockall (root)", memory: Some("none"), unprivileged: false },
        Setup { label: "memfd_secret, no mlockall (uid 4242)", memory: None, unprivileged: true },
        Setup { label: "mlock, no mlockall (uid 4242)", memory: Some("mlock"), unprivileged: true },
        Setup { label: "none, no mlockall (uid 4242)", memory: Some("none"), unprivileged: true },
    ];
    let template = production_keystore();
    println!("| setup | status memory / mlockall | unseal median ms (test KDF / production KDF) | Ed25519 sign median / p90 µs | RSA-2048 sign median / p90 µs |");
    println!("|---|---|---|---|---|");
    for setup in &setups {
        let env = Env::with_keys(&[("ed25519", "ed"), ("rsa-2048", "rsa")]);
        let ed = env.public_key_blob("ed");
        let rsa = env.public_key_blob("rsa");
        let _daemon = start(&env, setup);

        let unseals = time_unseals(&env, UNSEALS);
        env.unseal();
        let status = env.status_json();
        let protections = &status["protections"];

        let real_kdf = production_kdf_unseal(&template, setup);
        let (ed_median, ed_p90) = measure_signing(&env, setup, &ed, 0, ED25519_SIGNATURES);
        let (rsa_median, rsa_p90) = measure_signing(&env, setup, &rsa, 4, RSA_SIGNATURES);
        let (unseal_median, _) = median_and_p90(unseals);
        println!(
            "| {} | {} / {} | {:.1} / {:.0} | {} / {} | {} / {} |",
            setup.label,
            protections["memory"],
            protections["mlockall"],
            unseal_median / 1000.0,
            real_kdf / 1000.0,
            ed_median,
            ed_p90,
            rsa_median,
            rsa_p90
        );
    }
    println!("(unseal: `keyward unseal` wall time with the test-only cheap KDF, client start included; signatures over one agent connection)");
}
