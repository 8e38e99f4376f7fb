//! Who may use which key: clients with different uids, primary and
//! supplementary groups (run through `setpriv`) against keys with
//! different rules, for listing (`ssh-add -L`), user-authentication
//! signatures, SSHSIG namespaces and arbitrary data. Every cell is checked
//! both ways: allowed where the policy allows it, refused everywhere else.
//!
//! The decrypt and agree operations need X25519 keys, which this build
//! cannot generate yet; the library tests cover their policy checks.

mod common;
mod policy_support;

use common::{is_root, ssh_keygen_verify, Env};
use policy_support::{Client, SOCKET_GID};

const CONFIG: &str = r#"
[daemon]
socket_group = 4242

# Rule naming uid 1001 only: the daemon's own user (root here) loses it.
[[key]]
name = "ruled"
users = [1001]
operations = ["sign"]

# Any member of group 2000, primary or supplementary.
[[key]]
name = "deploy"
groups = [2000]
operations = ["sign"]

# Signing key limited by policy to user authentication.
[[key]]
name = "login"
users = [1001]
groups = [2001]
operations = ["ssh-auth"]

# Key whose purpose is ssh-auth; the rule grants "sign", the purpose narrows it.
[[key]]
name = "authkey"
users = [1002]
operations = ["sign"]

# SSHSIG in the "git" namespace only.
[[key]]
name = "git"
users = [1001, 1002]
operations = ["sshsig:git"]
"#;

/// What a client may do with one key: list it and each kind of signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    list: bool,
    userauth: bool,
    sshsig_git: bool,
    sshsig_file: bool,
    raw: bool,
}

const NONE: Access = Access { list: false, userauth: false, sshsig_git: false, sshsig_file: false, raw: false };
const ALL: Access = Access { list: true, userauth: true, sshsig_git: true, sshsig_file: true, raw: true };
const AUTH_ONLY: Access = Access { list: true, userauth: true, ..NONE };
const GIT_ONLY: Access = Access { list: true, sshsig_git: true, ..NONE };

#[test]
fn matrix_of_users_groups_keys_and_operations() {
    assert!(is_root(), "this test runs clients as other uids with setpriv and needs root");
    let env = Env::with_keys(&[("ed25519", "own"), ("ed25519", "ruled"), ("ed25519", "deploy"), ("ecdsa-p256", "login")]);
    env.keygen_with("ed25519", "authkey", &["--purpose", "ssh-auth"]);
    env.keygen("ecdsa-p256", "git");
    let config = env.write_config(CONFIG);
    let _daemon = env.start_daemon_with_config(&config);
    env.unseal();

    let root = Client::new(0, 0, &[]);
    let user_1001 = Client::new(1001, 1001, &[]);
    let primary_2000 = Client::new(1002, 2000, &[]);
    let supplementary = Client::new(1003, 1003, &[2000, 2001]);
    let outsider = Client::new(1004, 1004, &[]);

    let keys = ["own", "ruled", "deploy", "login", "authkey", "git"];
    let expected: &[(&Client, [Access; 6])] = &[
        //               own   ruled deploy login      authkey    git
        (&root, [ALL, NONE, NONE, NONE, NONE, NONE]),
        (&user_1001, [NONE, ALL, NONE, AUTH_ONLY, NONE, GIT_ONLY]),
        (&primary_2000, [NONE, NONE, ALL, NONE, AUTH_ONLY, GIT_ONLY]),
        (&supplementary, [NONE, NONE, ALL, AUTH_ONLY, NONE, NONE]),
        (&outsider, [NONE, NONE, NONE, NONE, NONE, NONE]),
    ];

    let blobs: Vec<String> = keys.iter().map(|key| env.public_key_base64(key)).collect();
    let mut failures = Vec::new();
    for (client, row) in expected {
        let listed = client.ssh_add_list(&env);
        for ((key, blob), want) in keys.iter().zip(&blobs).zip(row.iter()) {
            let public = env.path(&format!("{key}.pub"));
            let public = public.to_str().unwrap();
            let got = Access {
                list: listed.contains(blob),
                userauth: client.allowed(&env, &["sign", "userauth", public]),
                sshsig_git: client.allowed(&env, &["sign", "sshsig:git", public]),
                sshsig_file: client.allowed(&env, &["sign", "sshsig:file", public]),
                raw: client.allowed(&env, &["sign", "raw", public]),
            };
            if got != *want {
                failures.push(format!("uid {} gid {} groups {:?} ({SOCKET_GID} added), key {key}:\n  want {want:?}\n  got  {got:?}", client.uid, client.gid, client.groups));
            }
        }
    }
    assert!(failures.is_empty(), "policy matrix mismatches:\n{}", failures.join("\n"));
}

#[test]
fn list_extension_shows_operations_per_peer() {
    assert!(is_root(), "this test runs clients as other uids with setpriv and needs root");
    let env = Env::with_keys(&[("ed25519", "own"), ("ecdsa-p256", "login")]);
    env.keygen_with("ed25519", "authkey", &["--purpose", "ssh-auth"]);
    env.keygen("ecdsa-p256", "git");
    let config = env.write_config(CONFIG);
    let _daemon = env.start_daemon_with_config(&config);
    env.unseal();

    let listed = |client: &Client| client.keyward_list(&env);
    let entries = |pairs: &[(&str, &str)]| pairs.iter().map(|(name, ops)| (name.to_string(), ops.to_string())).collect::<Vec<_>>();
    assert_eq!(listed(&Client::new(0, 0, &[])), entries(&[("own", "sign")]));
    assert_eq!(listed(&Client::new(1001, 1001, &[])), entries(&[("login", "ssh-auth"), ("git", "sshsig:git")]));
    assert_eq!(listed(&Client::new(1002, 1002, &[])), entries(&[("authkey", "ssh-auth"), ("git", "sshsig:git")]));
    assert_eq!(listed(&Client::new(1005, 1005, &[2001])), entries(&[("login", "ssh-auth")]));
    assert_eq!(listed(&Client::new(1004, 1004, &[])), entries(&[]));
}

#[test]
fn keyward_sign_uses_only_allowed_namespace() {
    assert!(is_root(), "this test runs clients as other uids with setpriv and needs root");
    let env = Env::with_keys(&[("ecdsa-p256", "git")]);
    let config = env.write_config("[daemon]\nsocket_group = 4242\n[[key]]\nname = \"git\"\nusers = [1001]\noperations = [\"sshsig:git\"]\n");
    let _daemon = env.start_daemon_with_config(&config);
    env.unseal();
    let message = env.path("message.txt");
    std::fs::write(&message, b"commit\n").unwrap();
    let client = Client::new(1001, 1001, &[]);

    // `keyward sign` finds the key through list@keyward, then signs.
    let sign = |namespace: &str| {
        client
            .command(&env, &common::keyward_binary())
            .arg("--socket-dir")
            .arg(&env.sockets)
            .args(["sign", "--key", "git", "--namespace", namespace])
            .arg(&message)
            .output()
            .unwrap()
    };
    let git = sign("git");
    assert!(git.status.success(), "signing in namespace git was refused: {}", String::from_utf8_lossy(&git.stderr));
    let signature = env.path("message.sig");
    std::fs::write(&signature, &git.stdout).unwrap();
    let verify = ssh_keygen_verify(env.root.path(), &env.public_key_line("git"), "git", &message, &signature);
    assert!(verify.status.success(), "ssh-keygen -Y verify rejected the signature: {}", String::from_utf8_lossy(&verify.stderr));

    let file = sign("file");
    assert_eq!(file.status.code(), Some(5), "namespace file with a git-only key: {}", String::from_utf8_lossy(&file.stderr));
}
