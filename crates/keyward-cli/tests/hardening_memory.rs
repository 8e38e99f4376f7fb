//! Key material and passphrases in RAM, checked from outside: root reads
//! every readable mapping of the daemon through `/proc/PID/maps` and
//! `/proc/PID/mem` and looks for private keys the test made itself.
//!
//! Positive controls: the same scanner finds a canary on the heap of an
//! ordinary non-dumpable process, and finds the Ed25519 seed in a daemon
//! whose arena uses `mlock` (readable by root) while it is unsealed.

mod common;
mod hardening_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::{assert_success, ssh_keygen_sign_file, Env};
use hardening_support::{scan_process, Needle, Scan};
use sha2::{Digest, Sha512};

/// The keystore passphrase, with characters whose NFC and NFD forms differ.
const PASSPHRASE_NFC: &str = "Gr\u{fc}\u{df}e, \u{d6}l und \u{c4}pfel: kw-4711-pass";
const PASSPHRASE_NFD: &str = "Gru\u{308}\u{df}e, O\u{308}l und A\u{308}pfel: kw-4711-pass";
/// The passphrase the offline `passwd` test changes to.
const NEW_PASSPHRASE_NFC: &str = "Neue Gr\u{fc}\u{df}e aus K\u{f6}ln: kw-0815-neu";
const NEW_PASSPHRASE_NFD: &str = "Neue Gru\u{308}\u{df}e aus Ko\u{308}ln: kw-0815-neu";

/// The private material of the keys a test imported, as needles.
struct KnownKeys {
    ed25519: Vec<Needle>,
    rsa_big_endian: Vec<Needle>,
    rsa_little_endian: Vec<Needle>,
}

impl KnownKeys {
    fn all(&self) -> Vec<Needle> {
        [&self.ed25519, &self.rsa_big_endian, &self.rsa_little_endian].into_iter().flatten().cloned().collect()
    }
}

fn passphrase_needles(nfc: &str, nfd: &str) -> Vec<Needle> {
    assert_ne!(nfc, nfd, "the NFC and NFD forms must differ for the test to mean anything");
    let mut needles = Vec::new();
    for (form, text) in [("NFC", nfc), ("NFD", nfd)] {
        let bytes = text.as_bytes();
        needles.push(Needle::new(format!("passphrase ({form}) {text:?}"), bytes));
        // 16-byte windows find a prefix that a growing buffer left behind.
        let middle = bytes.len() / 2 - 8;
        for (place, start) in [("start", 0), ("middle", middle), ("end", bytes.len() - 16)] {
            needles.push(Needle::new(format!("passphrase ({form}, {place} 16 bytes)"), &bytes[start..start + 16]));
        }
    }
    needles
}

/// Makes an Ed25519 and an RSA-2048 key with ssh-keygen, imports them as
/// `ed` and `rsa` (through the daemon's admin socket when one is unsealed),
/// deletes the files and returns what to look for.
fn import_known_keys(env: &Env) -> KnownKeys {
    import_known_keys_with(env, |mut command, _| {
        let output = command.output().unwrap();
        assert_success(&output, "keyward import");
    })
}

/// Like `import_known_keys`, with `run` running each import command
/// (passphrase on stdin already set) given the needles of its key.
fn import_known_keys_with(env: &Env, mut run: impl FnMut(Command, &[Needle])) -> KnownKeys {
    let ssh_keygen = common::require_program("ssh-keygen");
    let mut known = KnownKeys { ed25519: Vec::new(), rsa_big_endian: Vec::new(), rsa_little_endian: Vec::new() };
    for (name, args) in [("ed", &["-t", "ed25519"][..]), ("rsa", &["-t", "rsa", "-b", "2048"][..])] {
        let file = env.path(&format!("{name}.key"));
        let output = Command::new(&ssh_keygen).args(args).args(["-q", "-N", "", "-C", name, "-f"]).arg(&file).output().unwrap();
        assert_success(&output, "ssh-keygen");
        let text = std::fs::read_to_string(&file).unwrap();
        let key = ssh_key::PrivateKey::from_openssh(&text).expect("parse the ssh-keygen key");
        match key.key_data() {
            ssh_key::private::KeypairData::Ed25519(pair) => {
                let seed = pair.private.to_bytes();
                let hash = Sha512::digest(seed);
                let mut scalar: [u8; 32] = hash[..32].try_into().unwrap();
                scalar[0] &= 248;
                scalar[31] &= 127;
                scalar[31] |= 64;
                known.ed25519.push(Needle::new("Ed25519 seed", &seed));
                known.ed25519.push(Needle::new("Ed25519 expanded scalar", &scalar));
                known.ed25519.push(Needle::new("Ed25519 hash prefix", &hash[32..]));
            }
            ssh_key::private::KeypairData::Rsa(pair) => {
                for (label, value) in [("RSA d", &pair.private.d), ("RSA p", &pair.private.p), ("RSA q", &pair.private.q)] {
                    let big_endian = value.as_positive_bytes().unwrap().to_vec();
                    let little_endian: Vec<u8> = big_endian.iter().rev().copied().collect();
                    known.rsa_big_endian.extend(Needle::with_windows(&format!("{label} big-endian"), &big_endian));
                    known.rsa_little_endian.extend(Needle::with_windows(&format!("{label} little-endian"), &little_endian));
                }
            }
            other => panic!("unexpected key type {:?}", other.algorithm()),
        }
        let passphrase_file = env.path("import-passphrase");
        std::fs::write(&passphrase_file, PASSPHRASE_NFC).unwrap();
        let mut command = env.keyward();
        command
            .args(["import", "--name", name, "--passphrase-fd", "0"])
            .arg(&file)
            .stdin(std::fs::File::open(&passphrase_file).unwrap());
        let needles: Vec<Needle> = if name == "ed" {
            known.ed25519.clone()
        } else {
            known.rsa_big_endian.iter().chain(&known.rsa_little_endian).cloned().collect()
        };
        run(command, &needles);
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(file.with_extension("key.pub")).unwrap();
    }
    known
}

/// Makes signatures with each key through the agent socket (several, on
/// the daemon's pool of blocking threads), so the signing paths have run
/// before the scan.
fn sign_with_each_key(env: &Env) {
    let message = env.path("message.txt");
    std::fs::write(&message, b"scan me\n").unwrap();
    for name in ["ed", "rsa", "ed", "ed", "rsa", "ed", "ed"] {
        let public = env.pubkey_file(name);
        let output = ssh_keygen_sign_file(&env.agent_socket(), &public, &message);
        assert_success(&output, &format!("ssh-keygen -Y sign with {name}"));
        std::fs::remove_file(env.path("message.txt.sig")).unwrap();
    }
}

fn seal(env: &Env) {
    let output = env.run(&["seal"]);
    assert_success(&output, "keyward seal");
}

fn unseal(env: &Env) {
    // The client normalises to NFC; feeding NFD checks both forms.
    let output = env.run_with_given_passphrase(&["unseal"], PASSPHRASE_NFD.as_bytes());
    assert_success(&output, "keyward unseal");
}

fn assert_none_found(scan: &Scan, labels: &[&str], when: &str) {
    for label in labels {
        let hits = scan.found(label);
        assert!(hits.is_empty(), "{label} found in readable memory {when}:\n{}", scan.describe());
    }
}

/// Checks the positive control for every scan here: the same scanner finds
/// a canary on the heap of an ordinary non-dumpable process of root.
fn assert_scanner_finds_canary() {
    let canary = hardening_support::random_bytes(32);
    let command = hardening_support::helper_command(None, "helper_hold_canary", &hardening_support::to_hex(&canary));
    let (mut child, stdin, _stdout) = hardening_support::spawn_until_ready(command);
    let scan = scan_process(child.id(), &[Needle::new("canary", &canary)]);
    drop(stdin);
    child.wait().unwrap();
    assert!(!scan.found("canary").is_empty(), "the scanner did not find the canary in an ordinary process:\n{}", scan.describe());
}

#[test]
#[ignore = "a helper process for the tests in this file, not a test"]
fn helper_hold_canary() {
    hardening_support::hold_canary_helper();
}

fn new_env_with_daemon(memory: Option<&str>) -> (Env, common::Daemon) {
    let env = Env::new();
    let output = env.run_with_given_passphrase(&["init"], PASSPHRASE_NFC.as_bytes());
    assert_success(&output, "keyward init");
    let daemon = env.start_daemon_with(|command| {
        if let Some(memory) = memory {
            command.env("KEYWARD_TEST_MEMORY", memory);
        }
    });
    (env, daemon)
}

const ED25519_LABELS: [&str; 3] = ["Ed25519 seed", "Ed25519 expanded scalar", "Ed25519 hash prefix"];
const RSA_LABELS: [&str; 3] = ["RSA d", "RSA p", "RSA q"];
const PASSPHRASE_LABELS: [&str; 1] = ["passphrase"];

#[test]
fn memfd_secret_daemon_key_scan() {
    if !common::is_root() {
        eprintln!("skipped: reading another process's memory needs root");
        return;
    }
    assert_scanner_finds_canary();
    let (env, daemon) = new_env_with_daemon(None);
    unseal(&env);
    let known = import_known_keys(&env);
    sign_with_each_key(&env);
    let mut needles = known.all();
    needles.extend(passphrase_needles(PASSPHRASE_NFC, PASSPHRASE_NFD));

    // Unsealed, keys imported through the admin socket.
    let scan = scan_process(daemon.pid(), &needles);
    assert!(scan.unreadable_secretmem() > 0, "no unreadable memfd_secret mapping: is the arena in use?\n{}", scan.describe());
    assert_none_found(&scan, &ED25519_LABELS, "while unsealed after an import");
    assert_none_found(&scan, &PASSPHRASE_LABELS, "after the unseal finished");
    // The known limit: OpenSSL keeps RSA BIGNUMs (limbs, so little-endian
    // on this machine) on its own heap.
    assert!(
        !scan.found("RSA d little-endian").is_empty(),
        "RSA d is no longer on OpenSSL's readable heap; update the RSA limit in SECURITY.md and this test\n{}",
        scan.describe()
    );

    seal(&env);
    let scan = scan_process(daemon.pid(), &needles);
    assert_none_found(&scan, &ED25519_LABELS, "after seal");
    assert_none_found(&scan, &RSA_LABELS, "after seal");
    assert_none_found(&scan, &PASSPHRASE_LABELS, "after seal");

    // Unsealed again, keys loaded from the keystore this time.
    unseal(&env);
    sign_with_each_key(&env);
    let scan = scan_process(daemon.pid(), &needles);
    assert_none_found(&scan, &ED25519_LABELS, "while unsealed from the keystore");
    assert_none_found(&scan, &PASSPHRASE_LABELS, "after the second unseal finished");

    seal(&env);
    let scan = scan_process(daemon.pid(), &needles);
    assert_none_found(&scan, &ED25519_LABELS, "after the second seal");
    assert_none_found(&scan, &RSA_LABELS, "after the second seal");
    assert_none_found(&scan, &PASSPHRASE_LABELS, "after the second seal");
}

#[test]
fn mlock_daemon_wipes_keys_on_seal() {
    if !common::is_root() {
        eprintln!("skipped: reading another process's memory needs root");
        return;
    }
    let (env, daemon) = new_env_with_daemon(Some("mlock"));
    unseal(&env);
    let known = import_known_keys(&env);
    sign_with_each_key(&env);
    let mut needles = known.all();
    needles.extend(passphrase_needles(PASSPHRASE_NFC, PASSPHRASE_NFD));

    // Positive control: root reads mlock'ed pages, so the seed in the
    // arena is found while unsealed.
    let scan = scan_process(daemon.pid(), &needles);
    assert_eq!(scan.unreadable_secretmem(), 0, "a memfd_secret mapping in mlock mode:\n{}", scan.describe());
    assert!(!scan.found("Ed25519 seed").is_empty(), "the Ed25519 seed is not in the readable mlock arena:\n{}", scan.describe());

    seal(&env);
    let scan = scan_process(daemon.pid(), &needles);
    assert_none_found(&scan, &ED25519_LABELS, "after seal (mlock arena)");
    assert_none_found(&scan, &RSA_LABELS, "after seal (mlock arena)");
    assert_none_found(&scan, &PASSPHRASE_LABELS, "after seal (mlock arena)");
}

/// Runs a client whose first stderr message blocks it, scans it there,
/// then lets it finish. Returns the scan and what it wrote to stderr.
fn scan_client_at_first_message(command: Command, needles: &[Needle]) -> (Scan, String) {
    let mut scan = None;
    let (status, message) = hardening_support::run_paused_at_first_message(command, |pid| scan = Some(scan_process(pid, needles)));
    assert!(status.success(), "the client failed: {message}");
    (scan.unwrap(), message)
}

#[test]
fn unseal_client_forgets_passphrase() {
    if !common::is_root() {
        eprintln!("skipped: reading another process's memory needs root");
        return;
    }
    let (env, _daemon) = new_env_with_daemon(None);
    let file = env.path("passphrase");
    std::fs::write(&file, PASSPHRASE_NFD).unwrap();
    let mut command = env.keyward();
    command.args(["unseal", "--passphrase-fd", "0"]).stdin(std::fs::File::open(&file).unwrap());

    // The client's only message, "unsealed: N keys", comes after the reply:
    // it has sent the passphrase and is done with it.
    let (scan, message) = scan_client_at_first_message(command, &passphrase_needles(PASSPHRASE_NFC, PASSPHRASE_NFD));
    assert!(message.starts_with("unsealed"), "the scan did not happen at the final message: {message:?}");
    assert!(scan.bytes_read > 0, "nothing read from the client:\n{}", scan.describe());
    assert_none_found(&scan, &PASSPHRASE_LABELS, "in the unseal client after it sent the passphrase");
}

/// The terminal prompt reads into memory it wipes: typed at `keyward
/// unseal`'s prompt on a pseudo-terminal, the passphrase is gone from the
/// client by the time it reports the unseal. The control: the same scan
/// finds it in the script that typed it.
#[test]
fn prompt_client_forgets_typed_passphrase() {
    if !common::is_root() {
        eprintln!("skipped: reading another process's memory needs root");
        return;
    }
    let (env, _daemon) = new_env_with_daemon(None);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/type_on_terminal.py");
    let mut command = env.keyward();
    command.arg("unseal");
    common::wrap_with(&mut command, &common::require_program("python3"), &[script.as_os_str(), "--keep-output".as_ref()]);
    // The client's messages go to a full pipe, so its first one blocks it.
    let (reader, writer) = hardening_support::full_pipe();
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::from(writer));
    let mut typist = command.spawn().unwrap();
    drop(command);
    typist.stdin.take().unwrap().write_all(format!("{PASSPHRASE_NFD}\n").as_bytes()).unwrap();
    let mut script_output = BufReader::new(typist.stdout.take().unwrap());
    let mut line = String::new();
    script_output.read_line(&mut line).unwrap();
    let client: u32 = line.trim().parse().unwrap_or_else(|_| panic!("no pid from the typing script: {line:?}"));
    // What the terminal showed comes last; read it so the script can finish.
    let terminal_text = std::thread::spawn(move || {
        let mut text = String::new();
        script_output.read_to_string(&mut text).unwrap();
        text
    });

    hardening_support::wait_blocked_in_pipe_write(client);
    let needles = passphrase_needles(PASSPHRASE_NFC, PASSPHRASE_NFD);
    let scan = scan_process(client, &needles);
    let control = scan_process(typist.id(), &needles);
    let drained = hardening_support::drain_full_pipe(reader);
    let status = common::wait_timeout(&mut typist, std::time::Duration::from_secs(60));
    let message = drained.join().unwrap();
    let terminal_text = terminal_text.join().unwrap();
    assert!(terminal_text.contains("Keystore passphrase: "), "no prompt on the terminal: {terminal_text:?}");

    assert!(status.success(), "unseal on a terminal failed: {message}");
    assert!(message.starts_with("unsealed"), "the scan did not happen at the final message: {message:?}");
    assert!(!control.found("passphrase (NFD)").is_empty(), "the scan missed the passphrase in the typing script:\n{}", control.describe());
    assert!(scan.bytes_read > 0, "nothing read from the client:\n{}", scan.describe());
    assert_none_found(&scan, &PASSPHRASE_LABELS, "in the unseal client after a typed passphrase");
}

#[test]
fn offline_passwd_forgets_passphrase() {
    if !common::is_root() {
        eprintln!("skipped: reading another process's memory needs root");
        return;
    }
    let env = Env::new();
    let output = env.run_with_given_passphrase(&["init"], PASSPHRASE_NFC.as_bytes());
    assert_success(&output, "keyward init");
    std::fs::write(env.path("old"), PASSPHRASE_NFD).unwrap();
    std::fs::write(env.path("new"), NEW_PASSPHRASE_NFD).unwrap();
    // Each passphrase on its own descriptor, opened by a shell that then
    // becomes the client.
    let script = format!(
        "exec \"$0\" --keystore {} passwd --passphrase-fd 3 --new-passphrase-fd 4 3<{} 4<{}",
        env.keystore.display(),
        env.path("old").display(),
        env.path("new").display()
    );
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script).arg(common::keyward_binary()).env("KEYWARD_TEST_INSECURE_KDF", "1");

    let mut needles = passphrase_needles(PASSPHRASE_NFC, PASSPHRASE_NFD);
    needles.extend(passphrase_needles(NEW_PASSPHRASE_NFC, NEW_PASSPHRASE_NFD));
    let (scan, message) = scan_client_at_first_message(command, &needles);
    assert!(message.starts_with("Changed the passphrase"), "the scan did not happen at the final message: {message:?}");
    assert_none_found(&scan, &["passphrase"], "in offline passwd after it re-keyed the keystore");

    // The change took effect: the new passphrase opens the keystore.
    let output = env.run_with_given_passphrase(&["keygen", "--type", "ed25519", "--name", "check"], NEW_PASSPHRASE_NFC.as_bytes());
    assert_success(&output, "keyward keygen with the new passphrase");
}


#[test]
fn import_clients_forget_keys() {
    if !common::is_root() {
        eprintln!("skipped: reading another process's memory needs root");
        return;
    }
    // Offline (no daemon), then through an unsealed daemon's admin socket.
    for through_daemon in [false, true] {
        let env = Env::new();
        let output = env.run_with_given_passphrase(&["init"], PASSPHRASE_NFC.as_bytes());
        assert_success(&output, "keyward init");
        let daemon = through_daemon.then(|| {
            let daemon = env.start_daemon();
            unseal(&env);
            daemon
        });
        let mut scans = Vec::new();
        import_known_keys_with(&env, |command, needles| {
            let mut needles = needles.to_vec();
            needles.extend(passphrase_needles(PASSPHRASE_NFC, PASSPHRASE_NFD));
            let mut scan = None;
            let (status, output) =
                hardening_support::run_paused_at_first_output(command, hardening_support::Stream::Stdout, |pid| scan = Some(scan_process(pid, &needles)));
            assert!(status.success(), "keyward import failed");
            assert!(output.lines().count() == 1 && output.contains("SHA256:"), "the scan did not happen at the summary line: {output:?}");
            scans.push(scan.unwrap());
        });
        let import_path = if through_daemon { "through the daemon" } else { "offline" };
        for scan in &scans {
            assert!(scan.bytes_read > 0, "nothing read from the import client");
            assert_none_found(scan, &ED25519_LABELS, &format!("in the import client ({import_path}) at its summary"));
            assert_none_found(scan, &RSA_LABELS, &format!("in the import client ({import_path}) at its summary"));
            assert_none_found(scan, &PASSPHRASE_LABELS, &format!("in the import client ({import_path}) at its summary"));
        }
        drop(daemon);
    }
}
