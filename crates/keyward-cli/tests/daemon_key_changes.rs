//! `keyward keygen` and `keyward remove` against an unsealed daemon change
//! the keys inside the daemon: no passphrase is asked and clients see the
//! change at once.

mod common;

use common::{assert_success, listed_keys, stderr, stdout, with_agent, Env};

fn ssh_add_keys(env: &Env) -> Vec<String> {
    listed_keys(&with_agent("ssh-add", &env.agent_socket()).arg("-L").output().unwrap())
}

fn listed_names(env: &Env) -> Vec<String> {
    let output = env.run(&["list", "--json"]);
    assert_success(&output, "keyward list --json");
    let keys: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    keys.as_array().unwrap().iter().map(|key| key["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn keygen_and_remove_act_inside_unsealed_daemon() {
    let (env, _daemon) = Env::running(&[("ed25519", "existing")]);
    let existing = env.public_key_line("existing");

    // No passphrase on stdin and no terminal: only the daemon can do this.
    let output = env.run(&["keygen", "--type", "ecdsa-p256", "--name", "fresh"]);
    assert_success(&output, "keyward keygen through the daemon");
    assert!(stdout(&output).starts_with("fresh "), "keygen did not report the new key: {}", stdout(&output));
    let fresh = env.public_key_line("fresh");
    let listed = ssh_add_keys(&env);
    assert!(listed.contains(&fresh), "ssh-add -L does not list the new key at once: {listed:?}");
    assert!(listed.contains(&existing), "ssh-add -L lost the existing key: {listed:?}");
    assert_eq!(listed_names(&env), vec!["existing", "fresh"], "keyward list does not show both keys");

    let output = env.run(&["remove", "fresh"]);
    assert_success(&output, "keyward remove through the daemon");
    let listed = ssh_add_keys(&env);
    assert!(!listed.contains(&fresh), "ssh-add -L still lists the removed key: {listed:?}");
    assert_eq!(listed, vec![existing.clone()], "ssh-add -L does not list exactly the remaining key");
    assert_eq!(listed_names(&env), vec!["existing"], "keyward list still shows the removed key");

    // Control: while sealed the same keygen needs the passphrase and fails
    // without one, so the success above came from the daemon.
    assert_success(&env.run(&["seal"]), "keyward seal");
    let output = env.run(&["keygen", "--type", "ed25519", "--name", "offline"]);
    assert_eq!(output.status.code(), Some(1), "keygen without a passphrase on a sealed daemon did not fail: {}", stderr(&output));
    assert!(stderr(&output).contains("passphrase"), "the failure does not mention the passphrase: {}", stderr(&output));
    assert_eq!(listed_names(&env), vec!["existing"], "a failed keygen changed the keystore");
}
