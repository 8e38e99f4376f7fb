//! The main job with real OpenSSH clients: `ssh-add -L` lists the daemon's
//! keys and `ssh-keygen -Y sign` through the daemon makes signatures that
//! `ssh-keygen -Y verify` accepts, for every SSH key type.

mod common;

use common::{assert_success, ssh_keygen_sign_file, ssh_keygen_verify, stderr, with_agent, Env};

const SSH_TYPES: &[(&str, &str)] = &[
    ("ed25519", "ed"),
    ("ecdsa-p256", "ec"),
    ("rsa-2048", "rsa2k"),
    ("rsa-3072", "rsa3k"),
    ("rsa-4096", "rsa4k"),
];

#[test]
fn ssh_add_lists_every_key() {
    let (env, _daemon) = Env::running(SSH_TYPES);
    let output = with_agent("ssh-add", &env.agent_socket()).arg("-L").output().unwrap();
    assert_success(&output, "ssh-add -L");
    let listed = String::from_utf8(output.stdout).unwrap();
    for (_, name) in SSH_TYPES {
        let public = std::fs::read_to_string(env.pubkey_file(name)).unwrap();
        let key = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        assert!(listed.contains(&key), "ssh-add -L does not list {name}:\n{listed}");
    }
}

#[test]
fn ssh_keygen_signatures_verify_for_every_type() {
    let (env, _daemon) = Env::running(SSH_TYPES);
    let message = env.path("message.txt");
    std::fs::write(&message, b"release 1.0\n").unwrap();

    for (_, name) in SSH_TYPES {
        let public = env.pubkey_file(name);
        let output = ssh_keygen_sign_file(&env.agent_socket(), &public, &message);
        assert_success(&output, &format!("ssh-keygen -Y sign with {name}"));
        let signature = env.path("message.txt.sig");
        verify(&env, name, &public, &message, &signature);
        std::fs::remove_file(&signature).unwrap();

        let output = env.run(&["sign", "--key", name, message.to_str().unwrap()]);
        assert_success(&output, &format!("keyward sign with {name}"));
        let own = env.path(&format!("{name}.keyward.sig"));
        std::fs::write(&own, &output.stdout).unwrap();
        verify(&env, name, &public, &message, &own);
    }
}

fn verify(env: &Env, name: &str, public: &std::path::Path, message: &std::path::Path, signature: &std::path::Path) {
    let key = std::fs::read_to_string(public).unwrap();
    let output = ssh_keygen_verify(env.root.path(), key.trim_end(), "file", message, signature);
    assert!(output.status.success(), "ssh-keygen -Y verify rejected the {name} signature: {}", stderr(&output));
}
