//! Crash safety: SIGKILL at random moments during keystore writes, offline
//! and inside the daemon, never leaves a keystore that fails to open; it
//! holds the old content or the new.
//!
//! The kill delay is drawn uniformly from zero to a little more than one
//! uninterrupted run of the same command, in microseconds, so kills land
//! in start-up, in the KDF, in the write and after it. The seed is printed.

mod common;
mod robust_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{keyward_binary, Env, PASSPHRASE};
use keyward::keystore::{KdfPolicy, Unlocked};
use keyward::secret::Passphrase;
use robust_support::Rng;

const OTHER_PASSPHRASE: &str = "a different passphrase";

/// Opens the keystore with `passphrase` and returns its key names.
fn open_names(dir: &Path, passphrase: &str) -> Result<BTreeSet<String>, String> {
    let passphrase = Passphrase::from_text(passphrase).unwrap();
    let (_, entries) = Unlocked::open(dir, &passphrase, KdfPolicy::InsecureTest).map_err(|error| error.to_string())?;
    Ok(entries.into_iter().map(|entry| entry.meta.name).collect())
}

/// `keyward ARGS` with the passphrase on fd 3 and, for `passwd`, the new
/// one on fd 4, started through `sh -c exec` so the pid is keyward's.
fn spawn(env: &Env, args: &str, passphrase: &str, new_passphrase: Option<&str>) -> Child {
    let old_file = env.path("pw-old");
    std::fs::write(&old_file, passphrase).unwrap();
    let mut script = format!(
        "exec {} --keystore {} --socket-dir {} {args} --passphrase-fd 3 3<{}",
        keyward_binary().display(),
        env.keystore.display(),
        env.sockets.display(),
        old_file.display()
    );
    if let Some(new) = new_passphrase {
        let new_file = env.path("pw-new");
        std::fs::write(&new_file, new).unwrap();
        script.push_str(&format!(" --new-passphrase-fd 4 4<{}", new_file.display()));
    }
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("KEYWARD_TEST_INSECURE_KDF", "1")
        .env_remove("KEYWARD_KEYSTORE")
        .env_remove("KEYWARD_SOCKET_DIR")
        .env_remove("KEYWARD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Measures one uninterrupted run, in microseconds.
fn measure(env: &Env, args: &str, passphrase: &str, new_passphrase: Option<&str>) -> u64 {
    let started = Instant::now();
    let status = spawn(env, args, passphrase, new_passphrase).wait().unwrap();
    assert!(status.success(), "an uninterrupted `keyward {args}` failed");
    started.elapsed().as_micros() as u64
}

fn kill_after(child: &mut Child, delay_us: u64) -> bool {
    std::thread::sleep(Duration::from_micros(delay_us));
    let _ = child.kill();
    let status = child.wait().unwrap();
    // Whether the kill landed before the command finished.
    status.code().is_none()
}

/// Outcome counts for one operation, printed at the end.
#[derive(Default, Debug)]
struct Tally {
    runs: u32,
    killed: u32,
    /// Kills that left a temporary file: they landed inside a write.
    mid_write: u32,
    old: u32,
    new: u32,
}

/// Runs the command `step` returns `runs` times, killing it each time, and
/// checks after each kill that the keystore opens (with either passphrase
/// for `passwd`) and holds either the keys it held before or the keys
/// `step` expects after the command.
fn kill_loop(
    env: &Env,
    rng: &mut Rng,
    runs: u32,
    step: impl Fn(u32, &BTreeSet<String>) -> (String, BTreeSet<String>),
    passphrases: &mut (String, String),
    changes_passphrase: bool,
) -> Tally {
    let mut tally = Tally::default();
    let first = open_names(&env.keystore, &passphrases.0).unwrap();
    let full = measure(env, &step(u32::MAX, &first).0, &passphrases.0, changes_passphrase.then_some(passphrases.1.as_str()));
    if changes_passphrase {
        std::mem::swap(&mut passphrases.0, &mut passphrases.1);
    }
    for run in 0..runs {
        let before = open_names(&env.keystore, &passphrases.0).unwrap();
        let (command, expected_after) = step(run, &before);
        let mut child = spawn(env, &command, &passphrases.0, changes_passphrase.then_some(passphrases.1.as_str()));
        let delay = rng.below(full + full / 4);
        tally.runs += 1;
        if kill_after(&mut child, delay) {
            tally.killed += 1;
        }
        if has_temp_file(&env.keystore) {
            tally.mid_write += 1;
        }

        let with_old = open_names(&env.keystore, &passphrases.0);
        let with_new = if changes_passphrase { open_names(&env.keystore, &passphrases.1) } else { Err(String::new()) };
        let (names, new_passphrase) = match (with_old, with_new) {
            (Ok(names), _) => (names, false),
            (Err(_), Ok(names)) => (names, true),
            (Err(error), Err(other)) => {
                panic!("run {run} of `keyward {command}`, killed after {delay} us: the keystore does not open: {error} / {other}")
            }
        };
        if names == before && !new_passphrase && (changes_passphrase || names != expected_after) {
            tally.old += 1;
        } else if names == expected_after {
            tally.new += 1;
        } else {
            panic!("run {run} of `keyward {command}`, killed after {delay} us: keys {names:?}, neither {before:?} nor {expected_after:?}");
        }
        if new_passphrase {
            std::mem::swap(&mut passphrases.0, &mut passphrases.1);
        }
    }
    tally
}

fn has_temp_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| entry.unwrap().file_name().to_string_lossy().starts_with(".keystore.tmp-"))
}

fn with_name(names: &BTreeSet<String>, name: String) -> BTreeSet<String> {
    let mut names = names.clone();
    names.insert(name);
    names
}

#[test]
fn sigkill_during_offline_writes() {
    let mut rng = Rng::from_time();
    eprintln!("seed {}", rng.seed());
    let env = Env::with_keys(&[("ed25519", "base")]);
    let source = env.path("source-key");
    std::fs::write(&source, include_bytes!("data/import-ed25519")).unwrap();
    let mut passphrases = (PASSPHRASE.to_owned(), OTHER_PASSPHRASE.to_owned());

    let keygen = kill_loop(
        &env,
        &mut rng,
        80,
        |run, names| (format!("keygen --type ed25519 --name k{run}"), with_name(names, format!("k{run}"))),
        &mut passphrases,
        false,
    );
    eprintln!("keygen: {keygen:?}");

    let import = kill_loop(
        &env,
        &mut rng,
        60,
        |run, names| (format!("import --name i{run} {}", source.display()), with_name(names, format!("i{run}"))),
        &mut passphrases,
        false,
    );
    eprintln!("import: {import:?}");

    // Each run removes the first key left over from keygen and import;
    // top up first when kills left fewer keys than runs.
    let existing = open_names(&env.keystore, &passphrases.0).unwrap().len();
    for extra in existing..62 {
        let output = env.run_with_input(
            &["keygen", "--type", "ed25519", "--name", &format!("extra{extra}"), "--passphrase-fd", "0"],
            passphrases.0.as_bytes(),
        );
        common::assert_success(&output, "keygen of a key to remove");
    }
    let remove = kill_loop(
        &env,
        &mut rng,
        60,
        |_, names| {
            let victim = names.iter().find(|name| *name != "base").expect("a key to remove").clone();
            let mut after = names.clone();
            after.remove(&victim);
            (format!("remove {victim}"), after)
        },
        &mut passphrases,
        false,
    );
    eprintln!("remove: {remove:?}");

    let passwd = kill_loop(&env, &mut rng, 60, |_, names| ("passwd".to_owned(), names.clone()), &mut passphrases, true);
    eprintln!("passwd: {passwd:?}");

    for (name, tally) in [("keygen", &keygen), ("import", &import), ("remove", &remove), ("passwd", &passwd)] {
        assert!(tally.killed > 0, "{name}: no kill landed before the command finished: {tally:?}");
    }
}

#[test]
fn sigkill_daemon_during_keygen() {
    let mut rng = Rng::from_time();
    eprintln!("seed {}", rng.seed());
    let env = Env::with_keys(&[("ed25519", "base")]);

    let mut tally = Tally::default();
    let mut full = 0;
    for run in 0..30u32 {
        let mut daemon = env.start_daemon();
        env.unseal();
        let before = open_names(&env.keystore, PASSPHRASE).unwrap();
        let name = format!("d{run}");
        let started = Instant::now();
        let mut client = spawn(&env, &format!("keygen --type ed25519 --name {name}"), PASSPHRASE, None);
        if run == 0 {
            // Measure one uninterrupted keygen through the daemon.
            assert!(client.wait().unwrap().success());
            full = started.elapsed().as_micros() as u64;
            continue;
        }
        std::thread::sleep(Duration::from_micros(rng.below(full + full / 4)));
        daemon.signal(rustix::process::Signal::KILL);
        let status = daemon.child.wait().unwrap();
        let _ = client.wait();
        tally.runs += 1;
        if status.code().is_none() {
            tally.killed += 1;
        }
        if has_temp_file(&env.keystore) {
            tally.mid_write += 1;
        }
        std::mem::forget(daemon);

        let names = open_names(&env.keystore, PASSPHRASE).unwrap_or_else(|error| panic!("run {run}: the keystore does not open: {error}"));
        if names == before {
            tally.old += 1;
        } else if names == with_name(&before, name) {
            tally.new += 1;
        } else {
            panic!("run {run}: keys {names:?}, neither old nor new");
        }
    }
    eprintln!("daemon keygen: {tally:?}");
    assert_eq!(tally.killed, tally.runs);
}
