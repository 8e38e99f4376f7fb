//! A sealed daemon lists public keys but signs nothing; unsealing needs the
//! right passphrase, and sealing or a restart takes the keys away again.

mod common;

use common::{assert_success, listed_keys, ssh_keygen_sign, ssh_keygen_verify, stderr, stdout, with_agent, Env};

fn assert_sealed(env: &Env, when: &str) {
    let public = env.pubkey_file("ed");
    let message = env.path("message.txt");

    let output = ssh_keygen_sign(&env.agent_socket(), &public, &message);
    assert!(!output.status.success(), "ssh-keygen -Y sign succeeded {when}");
    assert!(!stdout(&output).contains("BEGIN SSH SIGNATURE"), "ssh-keygen got a signature {when}");

    let output = env.run(&["sign", "--key", "ed", message.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(4), "keyward sign did not exit 4 {when}: {}", stderr(&output));
    assert!(stderr(&output).contains("sealed"), "keyward sign does not say the daemon is sealed {when}: {}", stderr(&output));

    let output = env.run(&["status"]);
    assert_eq!(output.status.code(), Some(4), "keyward status did not exit 4 {when}: {}", stderr(&output));

    let output = with_agent("ssh-add", &env.agent_socket()).arg("-L").output().unwrap();
    assert_eq!(listed_keys(&output), vec![env.public_key_line("ed")], "ssh-add -L does not list the key {when}");
}

fn assert_unsealed(env: &Env, when: &str) {
    let public = env.pubkey_file("ed");
    let message = env.path("message.txt");
    let line = env.public_key_line("ed");

    let output = env.run(&["status"]);
    assert_eq!(output.status.code(), Some(0), "keyward status did not exit 0 {when}: {}", stderr(&output));

    let output = ssh_keygen_sign(&env.agent_socket(), &public, &message);
    assert_success(&output, &format!("ssh-keygen -Y sign {when}"));
    let signature = env.path("ssh-keygen.sig");
    std::fs::write(&signature, &output.stdout).unwrap();
    let verified = ssh_keygen_verify(env.root.path(), &line, "file", &message, &signature);
    assert!(verified.status.success(), "the ssh-keygen signature {when} does not verify: {}", stderr(&verified));

    let output = env.run(&["sign", "--key", "ed", message.to_str().unwrap()]);
    assert_success(&output, &format!("keyward sign {when}"));
    let signature = env.path("keyward.sig");
    std::fs::write(&signature, &output.stdout).unwrap();
    let verified = ssh_keygen_verify(env.root.path(), &line, "file", &message, &signature);
    assert!(verified.status.success(), "the keyward signature {when} does not verify: {}", stderr(&verified));
}

#[test]
fn sealed_daemon_signs_only_after_unseal() {
    let env = Env::with_keys(&[("ed25519", "ed"), ("ed25519", "theirs")]);
    // A rule for another user takes "theirs" away from the daemon's user.
    std::fs::write(
        env.keystore.join("keyward.toml"),
        "[[key]]\nname = \"theirs\"\nusers = [5000]\noperations = [\"sign\"]\n",
    )
    .unwrap();
    std::fs::write(env.path("message.txt"), b"release notes\n").unwrap();

    let daemon = env.start_daemon();
    assert_sealed(&env, "after start");

    let output = env.run_with_input(&["unseal", "--passphrase-fd", "0"], b"not the passphrase");
    assert_eq!(output.status.code(), Some(1), "unseal with a wrong passphrase did not exit 1: {}", stderr(&output));
    assert!(
        stderr(&output).contains("incorrect passphrase"),
        "unseal with a wrong passphrase gave no clear message: {}",
        stderr(&output)
    );
    assert_sealed(&env, "after a wrong passphrase");

    env.unseal();
    assert_unsealed(&env, "after unseal");

    let message = env.path("message.txt");
    for name in ["theirs", "no-such-key"] {
        let output = env.run(&["sign", "--key", name, message.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(5), "keyward sign with {name} did not exit 5: {}", stderr(&output));
        assert!(output.stdout.is_empty(), "keyward sign with {name} printed a signature");
    }

    let output = env.run(&["seal"]);
    assert_success(&output, "keyward seal");
    assert_sealed(&env, "after keyward seal");

    let status = daemon.stop();
    assert!(status.success(), "the daemon did not stop cleanly: {status:?}");
    let daemon = env.start_daemon();
    assert_sealed(&env, "after a restart");
    env.unseal();
    assert_unsealed(&env, "after unsealing the restarted daemon");
    drop(daemon);
}
