//! age files through the daemon: stock `age -d` (Debian's 1.1.1) and `rage
//! -d` with the `AGE-PLUGIN-KEYWARD-1…` identity, and `keyward decrypt`,
//! against files that stock `age` encrypted. Also raw key agreement on the
//! real socket.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_success, keyward_binary, require_program, ssh_keygen_new_key, stderr, stdout, Daemon, Env};
use keyward::agent::extensions::FailureCode;
use keyward::client::AgentClient;
use rand_core::{OsRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

/// A running, unsealed daemon with two x25519 keys, `age` and `age2`, and an
/// identity file naming both.
struct AgeEnv {
    env: Env,
    daemon: Option<Daemon>,
    recipient: String,
    second_recipient: String,
    identity: PathBuf,
}

impl AgeEnv {
    fn new() -> AgeEnv {
        let (env, daemon) = Env::running(&[("x25519", "age"), ("x25519", "age2")]);
        let recipient = pubkey(&env, "age", "age");
        let second_recipient = pubkey(&env, "age2", "age");
        let identity = env.path("identity.txt");
        let lines = format!("# keyward keys\n{}\n{}\n", pubkey(&env, "age", "age-plugin"), pubkey(&env, "age2", "age-plugin"));
        std::fs::write(&identity, lines).unwrap();
        AgeEnv { env, daemon: Some(daemon), recipient, second_recipient, identity }
    }

    /// Runs `age` or `rage` with the plugin on `PATH` and the daemon's socket
    /// directory in `KEYWARD_SOCKET_DIR`.
    fn with_plugin(&self, program: &str) -> Command {
        let mut command = Command::new(tool(program));
        command.env("PATH", path_with_plugin()).env("KEYWARD_SOCKET_DIR", &self.env.sockets);
        command
    }

    /// Decrypts with `program -d -i identity.txt FILE`.
    fn decrypt_with(&self, program: &str, file: &Path) -> Output {
        self.with_plugin(program).args(["-d", "-i"]).arg(&self.identity).arg(file).output().unwrap()
    }

    fn keyward_decrypt(&self, file: &Path) -> Output {
        self.env.keyward().arg("decrypt").arg(file).output().unwrap()
    }

    /// Encrypts `plaintext` with stock `age` and `arguments` (recipients,
    /// `-a`) into a file named `name`.
    fn encrypt(&self, name: &str, arguments: &[&str], plaintext: &[u8]) -> PathBuf {
        let input = self.env.path(&format!("{name}.plain"));
        let output = self.env.path(name);
        std::fs::write(&input, plaintext).unwrap();
        let result = Command::new(require_program("age")).args(arguments).arg("-o").arg(&output).arg(&input).output().unwrap();
        assert_success(&result, "age -e");
        output
    }
}

fn pubkey(env: &Env, name: &str, format: &str) -> String {
    let output = env.run(&["pubkey", name, "--format", format]);
    assert_success(&output, "keyward pubkey");
    stdout(&output).trim().to_owned()
}

/// Returns the directory containing the `age-plugin-keyward` binary of this build.
fn plugin_dir() -> PathBuf {
    let dir = keyward_binary().parent().unwrap().to_owned();
    assert!(
        dir.join("age-plugin-keyward").is_file(),
        "{} has no age-plugin-keyward; build it first: `cargo build -p age-plugin-keyward` (`cargo test --workspace` does)",
        dir.display()
    );
    dir
}

fn path_with_plugin() -> OsString {
    let mut dirs = vec![plugin_dir()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).unwrap()
}

/// `age` from the system; `rage` from `PATH`, where `.ci/run` puts the copy
/// it builds with `cargo install rage`.
fn tool(program: &str) -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| panic!("{program} is not installed; `.ci/run` installs age (apt-get) and rage (cargo install rage)"))
}

fn random_bytes(length: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn age_keygen_recipient(env: &Env, name: &str) -> String {
    let path = env.path(name);
    let output = Command::new(require_program("age-keygen")).arg("-o").arg(&path).output().unwrap();
    assert_success(&output, "age-keygen");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines().find_map(|line| line.strip_prefix("# public key: ")).unwrap().to_owned()
}

fn ssh_public_key(env: &Env) -> PathBuf {
    ssh_keygen_new_key(&env.path("ssh_ed25519"), "ed25519", &[]);
    env.path("ssh_ed25519.pub")
}

fn assert_no_panic(output: &Output, what: &str) {
    let text = stderr(output);
    assert_ne!(output.status.code(), Some(101), "{what} panicked:\n{text}");
    assert!(!text.contains("panicked"), "{what} panicked:\n{text}");
}

/// Decrypts `file` with age, rage and `keyward decrypt` and checks each
/// output is byte-identical to `plaintext`.
fn assert_all_decrypt(age_env: &AgeEnv, label: &str, file: &Path, plaintext: &[u8]) {
    for program in ["age", "rage"] {
        let output = age_env.decrypt_with(program, file);
        assert_success(&output, &format!("{program} -d ({label})"));
        assert!(output.stdout == plaintext, "{program} -d ({label}): output differs from the plaintext");
    }
    let output = age_env.keyward_decrypt(file);
    assert_success(&output, &format!("keyward decrypt ({label})"));
    assert!(output.stdout == plaintext, "keyward decrypt ({label}): output differs from the plaintext");
}

#[test]
fn age_and_rage_decrypt_every_file_shape() {
    let age_env = AgeEnv::new();
    let recipient = age_env.recipient.clone();
    let stranger = age_keygen_recipient(&age_env.env, "stranger.txt");
    let other_stranger = age_keygen_recipient(&age_env.env, "stranger2.txt");
    let ssh_public = ssh_public_key(&age_env.env);
    let ssh_public = ssh_public.to_str().unwrap();
    let small = random_bytes(1000);
    let large = random_bytes(10 * 1024 * 1024);

    let cases: Vec<(&str, Vec<&str>, &[u8])> = vec![
        ("empty", vec!["-r", &recipient], b""),
        ("small", vec!["-r", &recipient], &small),
        ("10 MiB", vec!["-r", &recipient], &large),
        ("armored", vec!["-a", "-r", &recipient], &small),
        ("armored 10 MiB", vec!["-a", "-r", &recipient], &large),
        ("several recipients", vec!["-r", &stranger, "-r", &recipient, "-r", &other_stranger], &small),
        ("ssh recipient too", vec!["-R", ssh_public, "-r", &recipient], &small),
        ("second identity", vec!["-r", &stranger, "-r", &age_env.second_recipient], &small),
    ];
    for (index, (label, arguments, plaintext)) in cases.into_iter().enumerate() {
        let file = age_env.encrypt(&format!("case{index}.age"), &arguments, plaintext);
        assert_all_decrypt(&age_env, label, &file, plaintext);
    }
}

#[test]
fn keyward_decrypt_reads_stdin_and_named_key() {
    let age_env = AgeEnv::new();
    let plaintext = random_bytes(70_000);
    let file = age_env.encrypt("stdin.age", &["-a", "-r", &age_env.second_recipient], &plaintext);

    let from_stdin = age_env.env.run_with_input(&["decrypt", "--key", "age2"], &std::fs::read(&file).unwrap());
    let wrong_key = age_env.env.keyward().args(["decrypt", "--key", "age"]).arg(&file).output().unwrap();
    let missing_key = age_env.env.keyward().args(["decrypt", "--key", "nope"]).arg(&file).output().unwrap();

    assert_success(&from_stdin, "keyward decrypt --key age2 < file");
    assert!(from_stdin.stdout == plaintext, "output differs from the plaintext");
    assert_eq!(wrong_key.status.code(), Some(1), "{}", stderr(&wrong_key));
    assert!(stderr(&wrong_key).contains("no key in the daemon matches"), "{}", stderr(&wrong_key));
    assert_eq!(missing_key.status.code(), Some(5), "{}", stderr(&missing_key));
}

#[test]
fn file_for_other_key_matches_no_identity() {
    let age_env = AgeEnv::new();
    let stranger = age_keygen_recipient(&age_env.env, "stranger.txt");
    let file = age_env.encrypt("other.age", &["-r", &stranger], b"not for us");

    let age = age_env.decrypt_with("age", &file);
    let rage = age_env.decrypt_with("rage", &file);
    let keyward = age_env.keyward_decrypt(&file);

    assert!(!age.status.success());
    assert!(stderr(&age).contains("no identity matched"), "age: {}", stderr(&age));
    assert!(!rage.status.success());
    assert!(stderr(&rage).to_lowercase().contains("no matching keys"), "rage: {}", stderr(&rage));
    assert_eq!(keyward.status.code(), Some(1));
    assert!(stderr(&keyward).contains("no key in the daemon matches this file"), "{}", stderr(&keyward));
    for output in [&age, &rage, &keyward] {
        assert!(output.stdout.is_empty());
        assert_no_panic(output, "decrypt");
    }
}

#[test]
fn sealed_daemon_fails_with_unseal_hint() {
    let age_env = AgeEnv::new();
    let file = age_env.encrypt("sealed.age", &["-r", &age_env.recipient], b"secret");
    assert_success(&age_env.env.run(&["seal"]), "keyward seal");

    for program in ["age", "rage"] {
        let output = age_env.decrypt_with(program, &file);
        assert!(!output.status.success(), "{program} succeeded while sealed");
        assert!(stderr(&output).contains("is sealed"), "{program}: {}", stderr(&output));
        assert!(stderr(&output).contains("keyward unseal"), "{program}: {}", stderr(&output));
        assert!(output.stdout.is_empty());
    }
    let keyward = age_env.keyward_decrypt(&file);
    assert_eq!(keyward.status.code(), Some(4), "{}", stderr(&keyward));
    assert!(stderr(&keyward).contains("sealed"));
}

#[test]
fn missing_daemon_names_the_socket() {
    let mut age_env = AgeEnv::new();
    let file = age_env.encrypt("nodaemon.age", &["-r", &age_env.recipient], b"secret");
    age_env.daemon.take().unwrap().stop();

    let age = age_env.decrypt_with("age", &file);
    let keyward = age_env.keyward_decrypt(&file);

    assert!(!age.status.success());
    let expected = format!("no Keyward daemon at {}", age_env.env.agent_socket().display());
    assert!(stderr(&age).contains(&expected), "age: {}", stderr(&age));
    assert!(stderr(&age).contains("KEYWARD_SOCKET_DIR"), "age: {}", stderr(&age));
    assert_eq!(keyward.status.code(), Some(3), "{}", stderr(&keyward));
}

/// Rewrites the first X25519 stanza of a binary age file.
fn tamper(file: &Path, out: &Path, change: impl Fn(&str, &str) -> (String, String)) {
    let bytes = std::fs::read(file).unwrap();
    let header_end = bytes.windows(4).position(|window| window == b"\n---").unwrap();
    let header = std::str::from_utf8(&bytes[..header_end]).unwrap();
    let mut lines: Vec<String> = header.lines().map(str::to_owned).collect();
    let index = lines.iter().position(|line| line.starts_with("-> X25519 ")).unwrap();
    let share = lines[index].trim_start_matches("-> X25519 ").to_owned();
    let (new_share, new_body) = change(&share, &lines[index + 1]);
    lines[index] = format!("-> X25519 {new_share}");
    lines[index + 1] = new_body;
    let mut tampered = lines.join("\n").into_bytes();
    tampered.extend_from_slice(&bytes[header_end..]);
    std::fs::write(out, tampered).unwrap();
}

#[test]
fn malformed_stanzas_fail_clearly() {
    let age_env = AgeEnv::new();
    let file = age_env.encrypt("good.age", &["-r", &age_env.recipient], b"payload");
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    let non_canonical = |share: &str, body: &str| {
        // The last character of 32 bytes in base64 has two unused bits;
        // setting one changes the text but not the bytes.
        let mut share = share.to_owned();
        let last = share.pop().unwrap();
        share.push(alphabet.as_bytes()[alphabet.find(last).unwrap() | 1] as char);
        (share, body.to_owned())
    };
    // 31 bytes encode to 42 characters of canonical base64.
    let short_body = |share: &str, body: &str| (share.to_owned(), body[..41].to_owned() + "A");
    let low_order = |_: &str, body: &str| ("A".repeat(43), body.to_owned());

    type Change<'a> = &'a dyn Fn(&str, &str) -> (String, String);
    let cases: [(&str, Change, &str); 3] = [
        ("non-canonical share", &non_canonical, "canonical unpadded base64"),
        ("short body", &short_body, "expected 32 bytes, got 31"),
        ("low-order share", &low_order, "low-order point"),
    ];
    for (label, change, expected) in cases {
        let tampered = age_env.env.path("tampered.age");
        tamper(&file, &tampered, change);

        let age = age_env.decrypt_with("age", &tampered);
        let keyward = age_env.keyward_decrypt(&tampered);

        assert!(!age.status.success(), "age accepted the {label}");
        assert!(stderr(&age).contains(expected), "age, {label}: {}", stderr(&age));
        assert_eq!(keyward.status.code(), Some(1), "keyward, {label}: {}", stderr(&keyward));
        assert!(stderr(&keyward).contains(expected), "keyward, {label}: {}", stderr(&keyward));
        assert_no_panic(&age, label);
        assert_no_panic(&keyward, label);
        // rage may reject the header on its own terms; it must fail and not
        // hand out plaintext.
        let rage = age_env.decrypt_with("rage", &tampered);
        assert!(!rage.status.success(), "rage accepted the {label}");
        assert!(rage.stdout.is_empty());
    }
}

#[test]
fn imported_age_identity_decrypts_through_plugin() {
    let (env, _daemon) = Env::running(&[]);
    let key_file = env.path("age-key.txt");
    let output = Command::new(require_program("age-keygen")).arg("-o").arg(&key_file).output().unwrap();
    assert_success(&output, "age-keygen");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let expected_recipient = text.lines().find_map(|line| line.strip_prefix("# public key: ")).unwrap().to_owned();

    let import = env.run_with_passphrase(&["import", "--format", "age", "--name", "imported", key_file.to_str().unwrap()]);
    assert_success(&import, "keyward import --format age");
    assert_eq!(pubkey(&env, "imported", "age"), expected_recipient);

    let plain = env.path("plain");
    let encrypted = env.path("imported.age");
    std::fs::write(&plain, b"imported key works").unwrap();
    let output =
        Command::new(require_program("age")).args(["-r", &expected_recipient, "-o"]).arg(&encrypted).arg(&plain).output().unwrap();
    assert_success(&output, "age -e");
    let identity = env.path("imported-identity.txt");
    std::fs::write(&identity, pubkey(&env, "imported", "age-plugin") + "\n").unwrap();

    let output = Command::new(require_program("age"))
        .env("PATH", path_with_plugin())
        .env("KEYWARD_SOCKET_DIR", &env.sockets)
        .args(["-d", "-i"])
        .arg(&identity)
        .arg(&encrypted)
        .output()
        .unwrap();
    assert_success(&output, "age -d with the imported key");
    assert_eq!(output.stdout, b"imported key works");
}

#[test]
fn agree_on_socket_matches_x25519_dalek() {
    let (env, _daemon) = Env::running(&[]);
    env.keygen_with("x25519", "agree", &["--purpose", "agree"]);
    env.keygen("x25519", "decrypt-only");
    let public_of = |name: &str| {
        let recipient = pubkey(&env, name, "age");
        keyward::x25519::X25519Public::from_age_recipient(&recipient).unwrap()
    };
    let daemon_public = public_of("agree");
    let mut client = AgentClient::connect(&env.agent_socket()).unwrap();

    for count in [1usize, 2, 1000] {
        let peers: Vec<StaticSecret> = (0..count).map(|_| StaticSecret::random_from_rng(OsRng)).collect();
        let publics: Vec<[u8; 32]> = peers.iter().map(|peer| PublicKey::from(peer).to_bytes()).collect();

        let results = client.x25519_agree(&daemon_public.fingerprint(), &publics).unwrap().expect("agree was refused");

        assert_eq!(results.len(), count);
        for (index, (peer, result)) in peers.iter().zip(&results).enumerate() {
            let expected = peer.diffie_hellman(&PublicKey::from(daemon_public.0));
            assert_eq!(&**result.as_ref().unwrap(), expected.as_bytes(), "peer {index} of {count}");
        }
    }

    // u = 0 and u = 1 are points of order 2 and 1.
    let mut one = [0u8; 32];
    one[0] = 1;
    let mixed = client.x25519_agree(&daemon_public.fingerprint(), &[[0; 32], one, [9; 32]]).unwrap().ok().unwrap();
    assert!(mixed[0].is_none(), "an all-zero result must be rejected");
    assert!(mixed[1].is_none(), "an all-zero result must be rejected");
    assert!(mixed[2].is_some(), "a valid peer in the same batch must still be served");

    let decrypt_only = public_of("decrypt-only").fingerprint();
    let refused = client.x25519_agree(&decrypt_only, &[[9; 32]]).unwrap();
    assert_eq!(refused.err(), Some(Some(FailureCode::Refused)));
}

#[test]
fn policy_decides_which_uid_may_decrypt() {
    if !common::is_root() {
        eprintln!("skipped: running clients as other uids needs root");
        return;
    }
    let env = Env::with_keys(&[("x25519", "allowed"), ("x25519", "denied")]);
    let config = "[daemon]\nsocket_group = 4242\n\n[[key]]\nname = \"allowed\"\nusers = [4242]\noperations = [\"decrypt\"]\n";
    std::fs::write(env.keystore.join("keyward.toml"), config).unwrap();
    let _daemon = env.start_daemon();
    env.unseal();

    let mut files = Vec::new();
    for name in ["allowed", "denied"] {
        let identity = env.path(&format!("{name}-identity.txt"));
        std::fs::write(&identity, pubkey(&env, name, "age-plugin") + "\n").unwrap();
        let plain = env.path(&format!("{name}.plain"));
        let encrypted = env.path(&format!("{name}.age"));
        std::fs::write(&plain, format!("for {name}")).unwrap();
        let recipient = pubkey(&env, name, "age");
        let output = Command::new(require_program("age")).args(["-r", &recipient, "-o"]).arg(&encrypted).arg(&plain).output().unwrap();
        assert_success(&output, "age -e");
        files.push((identity, encrypted));
    }
    // Runs `age -d` as `uid`, whose only group is `uid` too.
    let age_as = |uid: u32, (identity, file): &(PathBuf, PathBuf)| {
        let id = uid.to_string();
        Command::new(require_program("setpriv"))
            .args([format!("--reuid={id}"), format!("--regid={id}"), "--clear-groups".to_owned()])
            .arg(require_program("age"))
            .args(["-d", "-i"])
            .arg(identity)
            .arg(file)
            .env("PATH", path_with_plugin())
            .env("KEYWARD_SOCKET_DIR", &env.sockets)
            .env("HOME", "/tmp")
            .output()
            .unwrap()
    };

    let allowed = age_as(4242, &files[0]);
    let denied = age_as(4242, &files[1]);
    let outsider = age_as(4243, &files[0]);

    assert_success(&allowed, "age -d as the allowed uid");
    assert_eq!(allowed.stdout, b"for allowed");
    assert!(!denied.status.success());
    assert!(stderr(&denied).contains("refused by policy"), "{}", stderr(&denied));
    assert!(denied.stdout.is_empty());
    assert!(!outsider.status.success());
    assert!(stderr(&outsider).contains("permission denied"), "{}", stderr(&outsider));
}
