//! Passphrases typed on a terminal: `keyward` prompts on its controlling
//! terminal with echo off and prompts twice for a new passphrase, and the
//! typed passphrase opens the keystore. A script runs each command on a
//! pseudo-terminal and types the replies.

mod common;

use std::process::{Output, Stdio};

use common::{assert_success, output_with_input, require_program, stderr, stdout, wrap_with, Env, PASSPHRASE};

/// Runs `keyward ARGS` on a new terminal, typing `replies` at its prompts.
fn typed(env: &Env, args: &[&str], replies: &[&str]) -> Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/type_on_terminal.py");
    let mut command = env.keyward();
    command.args(args);
    wrap_with(&mut command, &require_program("python3"), &[script]);
    output_with_input(command, replies.join("\n").as_bytes())
}

#[test]
fn init_asks_twice_without_echo() {
    let env = Env::new();
    let output = typed(&env, &["init"], &[PASSPHRASE, PASSPHRASE]);
    let transcript = stdout(&output);
    assert_success(&output, &format!("init on a terminal:\n{transcript}"));
    assert!(transcript.contains("New keystore passphrase: "), "{transcript}");
    assert!(transcript.contains("Repeat the passphrase: "), "{transcript}");
    assert!(!transcript.contains(PASSPHRASE), "the passphrase was echoed:\n{transcript}");

    // The typed passphrase is the keystore's, both on a descriptor and typed.
    env.keygen("ed25519", "on-fd");
    let output = typed(&env, &["keygen", "--type", "ed25519", "--name", "typed"], &[PASSPHRASE]);
    let transcript = stdout(&output);
    assert_success(&output, &format!("keygen on a terminal:\n{transcript}"));
    assert!(transcript.contains("Keystore passphrase: "), "{transcript}");
    assert!(!transcript.contains(PASSPHRASE), "the passphrase was echoed:\n{transcript}");
    let listing = stdout(&env.run(&["list"]));
    assert!(listing.contains("on-fd"), "{listing}");
    assert!(listing.contains("typed"), "{listing}");
}

#[test]
fn init_with_differing_repeat_creates_nothing() {
    let env = Env::new();
    let output = typed(&env, &["init"], &[PASSPHRASE, "something else"]);
    let transcript = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{transcript}{}", stderr(&output));
    assert!(transcript.contains("the two passphrases differ"), "{transcript}");
    assert!(!env.keystore.join("keystore").exists(), "a keystore file was written");
    assert!(std::fs::read_dir(&env.keystore).map_or(true, |mut entries| entries.next().is_none()), "the keystore directory is not empty");
}

#[test]
fn wrong_typed_passphrase_changes_nothing() {
    let env = Env::new();
    env.init();
    let before = stdout(&env.run(&["list", "--json"]));
    let output = typed(&env, &["keygen", "--type", "ed25519", "--name", "k"], &["not the passphrase"]);
    let transcript = stdout(&output);
    assert_ne!(output.status.code(), Some(0), "{transcript}");
    assert!(!transcript.contains("not the passphrase"), "the passphrase was echoed:\n{transcript}");
    assert!(transcript.contains("passphrase"), "no message about the passphrase:\n{transcript}");
    assert_eq!(stdout(&env.run(&["list", "--json"])), before);
}

#[test]
fn prompt_without_terminal_fails_clearly() {
    let env = Env::new();
    // setsid starts the command in a new session, which has no
    // controlling terminal even when the tests run in one.
    let mut command = env.keyward();
    command.arg("init");
    wrap_with(&mut command, &require_program("setsid"), &[] as &[&str]);
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no terminal to prompt on"), "{}", stderr(&output));
    assert!(stderr(&output).contains("--passphrase-fd"), "{}", stderr(&output));
}

/// Ctrl-C at the prompt ends the command by SIGINT, and the terminal
/// echoes again afterwards: the handler puts the settings back first.
#[test]
fn interrupt_at_prompt_restores_echo() {
    let env = Env::new();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/interrupt_prompt.py");
    let mut command = env.keyward();
    command.arg("init");
    wrap_with(&mut command, &require_program("python3"), &[script]);
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert_success(&output, "the interrupting script");
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["before"], true, "{report}");
    assert_eq!(report["during"], false, "echo was on at the prompt: {report}");
    assert_eq!(report["signal"], 2, "not ended by SIGINT: {report}");
    assert_eq!(report["after"], true, "echo stayed off after Ctrl-C: {report}");
    assert!(!env.keystore.join("keystore").exists(), "a keystore file was written");
}

/// Ctrl-D at the prompt is no passphrase, not an empty one.
#[test]
fn end_of_input_at_prompt_is_an_error() {
    let env = Env::new();
    let output = typed(&env, &["init"], &["\u{4}"]);
    let transcript = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{transcript}");
    assert!(transcript.contains("no passphrase was entered"), "{transcript}");
    assert!(!env.keystore.join("keystore").exists(), "a keystore file was written");
}

/// The terminal drops what is typed past 4,095 bytes on one line, so a
/// line that long is refused rather than taken as the passphrase.
#[test]
fn typed_line_at_terminal_limit_is_refused() {
    let env = Env::new();
    let long = "x".repeat(5000);
    let output = typed(&env, &["init"], &[&long]);
    let transcript = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{transcript}");
    assert!(transcript.contains("line limit of 4095 bytes"), "{transcript}");
    assert!(transcript.contains("--passphrase-fd"), "{transcript}");
    assert!(!env.keystore.join("keystore").exists(), "a keystore file was written");
}

/// `daemon --foreground` on a terminal prompts for the unseal passphrase
/// before it creates its sockets: clients meanwhile find no daemon rather
/// than one that does not answer, and Ctrl-C there leaves no socket.
#[test]
fn daemon_prompts_before_binding_sockets() {
    let env = Env::new();
    env.init();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/interrupt_prompt.py");
    let mut command = env.keyward();
    command.args(["daemon", "--foreground"]).env("PROBE_PATH", env.agent_socket());
    wrap_with(&mut command, &require_program("python3"), &[script]);
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert_success(&output, "the interrupting script");
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(report["transcript"].as_str().unwrap().contains("to unseal now"), "{report}");
    assert_eq!(report["probe_existed"], false, "the service socket existed at the prompt: {report}");
    assert_eq!(report["signal"], 2, "not ended by SIGINT: {report}");
    assert_eq!(report["after"], true, "echo stayed off after Ctrl-C: {report}");
    assert!(!env.agent_socket().exists(), "the service socket was left behind");
    assert!(!env.admin_socket().exists(), "the admin socket was left behind");
}
