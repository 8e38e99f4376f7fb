//! The passphrase never shows in `/proc/PID/cmdline` or `/proc/PID/environ`
//! of the daemon or the unseal client, nor in the daemon's log (at trace
//! level) or audit file, after a failed and a successful unseal.

mod common;
mod hardening_support;

use std::process::{Command, Stdio};

use common::{assert_success, Env};

const PASSPHRASE_NFC: &str = "Gr\u{fc}\u{df}e, \u{d6}l und \u{c4}pfel: kw-4711-pass";
const PASSPHRASE_NFD: &str = "Gru\u{308}\u{df}e, O\u{308}l und A\u{308}pfel: kw-4711-pass";
const WRONG_PASSPHRASE: &str = "Falsche Gr\u{fc}\u{df}e: kw-9999-wrong";

/// Returns every form a passphrase could leak in: NFC, NFD, and the ASCII
/// tails, which survive escaping of the other characters.
fn forms() -> Vec<&'static str> {
    vec![PASSPHRASE_NFC, PASSPHRASE_NFD, WRONG_PASSPHRASE, "kw-4711-pass", "kw-9999-wrong"]
}

/// Returns the forms found in `bytes`.
fn leaked_in(bytes: &[u8]) -> Vec<&'static str> {
    forms().into_iter().filter(|form| memchr::memmem::find(bytes, form.as_bytes()).is_some()).collect()
}

/// Returns the forms found in the command line or environment of `pid`.
fn leaked_in_proc(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_else(|error| panic!("read /proc/{pid}/{file}: {error}"));
        assert!(!bytes.is_empty(), "/proc/{pid}/{file} is empty");
        found.extend(leaked_in(&bytes).into_iter().map(|form| format!("{form:?} in /proc/{pid}/{file}")));
    }
    found
}

#[test]
fn passphrase_absent_from_proc_and_logs() {
    if !common::is_root() {
        eprintln!("skipped: /proc/PID/wchan and environ of the non-dumpable client are readable only by root");
        return;
    }
    // Control: a process given the passphrase in its arguments and
    // environment is caught by the same check.
    let mut control = Command::new("/bin/sh")
        .args(["-c", "sleep 30; :", PASSPHRASE_NFC])
        .env("CONTROL_VALUE", WRONG_PASSPHRASE)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let caught = leaked_in_proc(control.id());
    let _ = control.kill();
    let _ = control.wait();
    assert!(caught.iter().any(|hit| hit.contains("cmdline")), "the check missed the passphrase in a command line: {caught:?}");
    assert!(caught.iter().any(|hit| hit.contains("environ")), "the check missed the passphrase in an environment: {caught:?}");

    let env = Env::new();
    let output = env.run_with_input(&["init", "--passphrase-fd", "0"], PASSPHRASE_NFC.as_bytes());
    assert_success(&output, "keyward init");
    let output = env.run_with_input(&["keygen", "--type", "ed25519", "--name", "ed", "--passphrase-fd", "0"], PASSPHRASE_NFC.as_bytes());
    assert_success(&output, "keyward keygen");
    let audit_log = env.path("audit.jsonl");
    let config = env.path("config.toml");
    std::fs::write(&config, format!("[daemon]\naudit = \"requests\"\naudit_log = \"{}\"\n", audit_log.display())).unwrap();
    let daemon = env.start_daemon_with(|command| {
        command.arg("--config").arg(&config).env("KEYWARD_LOG", "trace");
    });

    let output = env.run_with_input(&["unseal", "--passphrase-fd", "0"], WRONG_PASSPHRASE.as_bytes());
    assert!(!output.status.success(), "unseal with a wrong passphrase succeeded");
    let mut leaks: Vec<String> = leaked_in(&output.stderr).into_iter().map(|form| format!("{form:?} in the failed client's stderr")).collect();

    // The unseal client, checked while it runs (paused at its message).
    let file = env.path("passphrase");
    std::fs::write(&file, PASSPHRASE_NFD).unwrap();
    let mut command = env.keyward();
    command.args(["unseal", "--passphrase-fd", "0"]).stdin(Stdio::from(std::fs::File::open(&file).unwrap()));
    let mut client_leaks = Vec::new();
    let (status, message) = hardening_support::run_paused_at_first_message(command, |pid| client_leaks = leaked_in_proc(pid));
    assert!(status.success(), "unseal failed: {message}");
    leaks.extend(client_leaks);
    leaks.extend(leaked_in(message.as_bytes()).into_iter().map(|form| format!("{form:?} in the client's stderr")));

    leaks.extend(leaked_in_proc(daemon.pid()));
    let output = env.run(&["seal"]);
    assert_success(&output, "keyward seal");
    let log = daemon.log_text();
    drop(daemon);
    let audit = std::fs::read_to_string(&audit_log).expect("the audit log exists");

    // The log and audit file are the right ones: they recorded both attempts.
    assert!(audit.contains("unseal-failed"), "the audit file lacks the failed unseal:\n{audit}");
    assert!(audit.contains("\"unsealed\""), "the audit file lacks the unseal:\n{audit}");
    assert!(log.contains("unseal failed"), "the daemon log lacks the failed unseal:\n{log}");
    assert!(log.contains("unsealed"), "the daemon log lacks the unseal:\n{log}");
    leaks.extend(leaked_in(log.as_bytes()).into_iter().map(|form| format!("{form:?} in the daemon log")));
    leaks.extend(leaked_in(audit.as_bytes()).into_iter().map(|form| format!("{form:?} in the audit file")));
    assert!(leaks.is_empty(), "the passphrase leaked: {leaks:?}");
}
