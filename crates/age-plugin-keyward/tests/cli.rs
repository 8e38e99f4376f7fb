//! The plugin binary's own command line. Having an integration test also
//! makes `cargo test --workspace` build the binary, which the end-to-end
//! tests in keyward-cli hand to `age` and `rage`.

use std::process::Command;

fn plugin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_age-plugin-keyward"))
}

#[test]
fn version_prints_name_and_version() {
    let output = plugin().arg("--version").output().unwrap();

    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.trim(), format!("age-plugin-keyward {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_explains_identity_line() {
    let output = plugin().output().unwrap();

    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("keyward pubkey NAME --format age-plugin"), "{text}");
}

#[test]
fn unknown_argument_is_usage_error() {
    let output = plugin().arg("--frobnicate").output().unwrap();

    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument"));
}

#[test]
fn recipient_state_machine_is_not_offered() {
    let output = plugin().arg("--age-plugin=recipient-v1").output().unwrap();

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("recipient-v1"));
}
