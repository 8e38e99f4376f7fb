//! Reload, idle sealing and unseal backoff against a running daemon.

mod common;
mod policy_support;

use std::time::{Duration, Instant};

use common::{assert_success, is_root, stderr, wait_until, with_agent, Env};
use policy_support::Client;

fn rule_for(uid: u32) -> String {
    format!("[daemon]\nsocket_group = 4242\n\n[[key]]\nname = \"k\"\nusers = [{uid}]\noperations = [\"sign\"]\n")
}

#[test]
fn reload_keeps_or_replaces_policy() {
    assert!(is_root(), "this test runs clients as other uids with setpriv and needs root");
    let env = Env::with_keys(&[("ed25519", "k")]);
    let config = env.write_config(&rule_for(1001));
    let daemon = env.start_daemon_with_config(&config);
    env.unseal();
    let public = env.pubkey_file("k");
    let public = public.to_str().unwrap();
    let first = Client::new(1001, 1001, &[]);
    let second = Client::new(1002, 1002, &[]);
    assert!(first.allowed(&env, &["sign", "raw", public]));
    assert!(!second.allowed(&env, &["sign", "raw", public]));

    // A broken file: `keyward reload` fails naming the line, the old policy stays.
    std::fs::write(&config, "[daemon]\nsocket_group = 4242\nsocket_grup = 1\n\n[[key]]\nname = \"k\"\nusers = [1002]\noperations = [\"sign\"]\n").unwrap();
    let output = env.run(&["reload"]);
    assert_eq!(output.status.code(), Some(1), "reload of a broken file: {}", stderr(&output));
    assert!(stderr(&output).contains("line 3"), "the error does not name the line: {}", stderr(&output));
    assert!(stderr(&output).contains("previous configuration stays in force"), "{}", stderr(&output));
    assert!(first.allowed(&env, &["sign", "raw", public]), "a failed reload changed the policy");
    assert!(!second.allowed(&env, &["sign", "raw", public]), "a failed reload changed the policy");

    // The same through SIGHUP.
    daemon.signal(rustix::process::Signal::HUP);
    let logged = wait_until(Duration::from_secs(10), || daemon.log_text().matches("reload-failed").count() >= 2);
    assert!(logged, "no reload-failed line after SIGHUP:\n{}", daemon.log_text());
    assert!(first.allowed(&env, &["sign", "raw", public]), "a failed SIGHUP reload changed the policy");

    // A good file with a new rule applies to new requests, without sealing.
    std::fs::write(&config, rule_for(1002)).unwrap();
    let output = env.run(&["reload"]);
    assert_success(&output, "keyward reload");
    assert!(second.allowed(&env, &["sign", "raw", public]), "the new rule was not applied");
    assert!(!first.allowed(&env, &["sign", "raw", public]), "the old rule is still in force");
    assert_eq!(env.status_json()["state"], "unsealed", "reload sealed the daemon");

    // SIGHUP applies a good file too.
    std::fs::write(&config, rule_for(1001)).unwrap();
    daemon.signal(rustix::process::Signal::HUP);
    let applied = wait_until(Duration::from_secs(10), || first.allowed(&env, &["sign", "raw", public]));
    assert!(applied, "SIGHUP did not apply the new rule:\n{}", daemon.log_text());
    assert!(!second.allowed(&env, &["sign", "raw", public]));
    assert_eq!(env.status_json()["state"], "unsealed", "SIGHUP sealed the daemon");
}

#[test]
fn idle_daemon_seals_after_configured_time() {
    let env = Env::with_keys(&[("ed25519", "k")]);
    let daemon = env.start_daemon_with(|command| {
        command.env("KEYWARD_TEST_IDLE_SECONDS", "2");
    });
    env.unseal();

    // Requests keep it unsealed past the idle time.
    let busy_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < busy_until {
        let output = with_agent("ssh-add", &env.agent_socket()).arg("-L").output().unwrap();
        assert_success(&output, "ssh-add -L");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(env.status_json()["state"], "unsealed", "the daemon sealed while requests arrived");

    // Without requests it seals within the idle time plus the one-second check.
    let idle_from = Instant::now();
    let sealed = wait_until(Duration::from_secs(10), || env.status_json()["state"] == "sealed");
    assert!(sealed, "the daemon did not seal when idle:\n{}", daemon.log_text());
    let waited = idle_from.elapsed();
    assert!(waited >= Duration::from_millis(1500), "sealed after {waited:?}, before the idle time");
    assert!(daemon.log_text().contains("\"reason\":\"idle\""), "no audit line for the idle seal:\n{}", daemon.log_text());
    println!("sealed {waited:?} after the last request (idle time 2 s)");
}

#[test]
fn failed_unseal_delays_admin_but_not_service_clients() {
    let env = Env::with_keys(&[("ed25519", "k")]);
    let _daemon = env.start_daemon();

    // Returns when the attempt finished.
    let wrong_unseal = |env: &Env| {
        let output = env.run_with_input(&["unseal", "--passphrase-fd", "0"], b"wrong passphrase");
        assert_eq!(output.status.code(), Some(1), "a wrong passphrase: {}", stderr(&output));
        Instant::now()
    };
    let started = Instant::now();
    let first_done = wrong_unseal(&env);
    let first = first_done - started;

    let sockets_env = Env { root: tempfile::tempdir().unwrap(), keystore: env.keystore.clone(), sockets: env.sockets.clone() };
    let second = std::thread::spawn(move || wrong_unseal(&sockets_env));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let output = with_agent("ssh-add", &env.agent_socket()).arg("-L").output().unwrap();
    let listing = started.elapsed();
    assert_success(&output, "ssh-add -L during a delayed unseal");
    let second = second.join().unwrap() - first_done;

    println!("first wrong unseal {first:?}, second {second:?}, ssh-add -L meanwhile {listing:?}");
    assert!(second >= Duration::from_secs(1), "the second wrong unseal took {second:?}, less than the 1 s delay");
    assert!(listing < Duration::from_millis(500), "ssh-add -L took {listing:?} while an unseal was delayed");

    // The right passphrase still works, after the doubled delay.
    let started = Instant::now();
    env.unseal();
    let third = started.elapsed();
    assert!(third >= Duration::from_secs(2), "the unseal after two failures took {third:?}, less than the 2 s delay");
}
