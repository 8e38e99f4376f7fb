//! Who may use the service socket: the kernel's peer credentials decide,
//! not the socket's file mode. Clients run as other uids through
//! `setpriv`; no users need to exist.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{agent, as_user, assert_success, listed_keys, parse_audit_lines, require_program, root_or_skip, ssh_keygen_verify, stderr, stdout, Env};

const NOBODY: u32 = 65534;
const DAEMON_UID: u32 = 4242;
const SOCKET_GID: u32 = 4343;
const CLIENT_UID: u32 = 5000;
const OTHER_CLIENT_UID: u32 = 6000;

/// An OpenSSH tool run as `uid` (primary group `uid`, supplementary
/// `groups`) against the daemon's service socket.
fn tool_as(env: &Env, uid: u32, groups: &[u32], program: &str) -> Command {
    let mut command = as_user(uid, uid, groups, &require_program(program));
    command.env("SSH_AUTH_SOCK", env.agent_socket()).env("HOME", "/nonexistent").stdin(Stdio::null());
    command
}

fn list_as(env: &Env, uid: u32, groups: &[u32]) -> Output {
    tool_as(env, uid, groups, "ssh-add").arg("-L").output().unwrap()
}

/// `ssh-keygen -Y sign` as `uid` with the key in `public`, signing
/// `message` (on stdin; the signature comes back on stdout).
fn sign_as(env: &Env, uid: u32, groups: &[u32], public: &Path, message: &Path) -> Output {
    tool_as(env, uid, groups, "ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(public)
        .stdin(std::fs::File::open(message).unwrap())
        .output()
        .unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let output = Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(path).output().unwrap();
    assert_success(&output, "chown -R");
}

const HELPER_SOCKET: &str = "KEYWARD_TEST_HELPER_SOCKET";
const HELPER_KEY: &str = "KEYWARD_TEST_HELPER_KEY";
const HELPER_RESULT: &str = "helper-result: ";

/// Sends one sign request for `public_line` (an OpenSSH public key line)
/// as `uid`, by running this test binary's helper under `setpriv`.
/// Returns what the helper printed: `reply: [bytes]`, `closed`, or
/// `cannot connect: ...`.
fn raw_sign_as(env: &Env, uid: u32, groups: &[u32], public_line: &str) -> String {
    let helper = env.reachable_copy(&std::env::current_exe().unwrap());
    let output = as_user(uid, uid, groups, &helper)
        .args(["--exact", "raw_sign_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HELPER_SOCKET, env.agent_socket())
        .env(HELPER_KEY, public_line)
        .output()
        .unwrap();
    assert_success(&output, "the raw sign helper");
    // The test harness may print its own text on the same line first.
    let text = stdout(&output);
    let result = text.lines().find_map(|line| line.split_once(HELPER_RESULT).map(|(_, result)| result.to_owned()));
    result.unwrap_or_else(|| panic!("the raw sign helper printed no result:\n{text}"))
}

#[test]
#[ignore = "helper that raw_sign_as runs as another uid; it needs its inputs in the environment"]
fn raw_sign_helper() {
    use base64::Engine as _;
    use std::io::Write;

    let socket = std::env::var_os(HELPER_SOCKET).expect("KEYWARD_TEST_HELPER_SOCKET is set");
    let line = std::env::var(HELPER_KEY).expect("KEYWARD_TEST_HELPER_KEY is set");
    let blob = base64::engine::general_purpose::STANDARD.decode(line.split_whitespace().nth(1).unwrap()).unwrap();
    let frame = agent::frame(&agent::sign_request(&blob, b"data a policy must refuse", 0));

    let mut stream = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(error) => {
            println!("{HELPER_RESULT}cannot connect: {error}");
            return;
        }
    };
    stream.write_all(&frame).unwrap();
    let Ok(reply) = agent::read_reply(&mut stream) else {
        println!("{HELPER_RESULT}closed");
        return;
    };
    println!("{HELPER_RESULT}reply: {reply:?}");
}

#[test]
fn other_uid_is_refused_even_with_open_socket() {
    if !root_or_skip("other_uid_is_refused_even_with_open_socket") {
        return;
    }
    let (env, daemon) = Env::running(&[("ed25519", "mine")]);
    let public = env.pubkey_file("mine");
    let message = env.path("message.txt");
    std::fs::write(&message, b"to be signed\n").unwrap();

    // Control: the daemon's own user sees the key.
    let own = common::with_agent("ssh-add", &env.agent_socket()).arg("-L").output().unwrap();
    assert_eq!(listed_keys(&own), vec![env.public_key_line("mine")], "the daemon's user does not see its key");

    // With the modes the daemon set, another uid cannot even connect.
    let listing = list_as(&env, NOBODY, &[]);
    assert!(listed_keys(&listing).is_empty(), "uid {NOBODY} sees keys:\n{}", stdout(&listing));
    let signing = sign_as(&env, NOBODY, &[], &public, &message);
    assert!(!signing.status.success(), "uid {NOBODY} signed through the default socket mode");
    assert!(!stdout(&signing).contains("BEGIN SSH SIGNATURE"), "uid {NOBODY} got a signature");
    let reply = raw_sign_as(&env, NOBODY, &[], &env.public_key_line("mine"));
    assert!(reply.starts_with("cannot connect"), "uid {NOBODY} connected through the default socket mode: {reply}");

    // Open the socket and its directory to everyone: the peer credentials
    // still keep uid 65534 out.
    chmod(&env.sockets, 0o777);
    chmod(&env.agent_socket(), 0o777);
    let listing = list_as(&env, NOBODY, &[]);
    assert!(listed_keys(&listing).is_empty(), "uid {NOBODY} sees keys through an open socket:\n{}", stdout(&listing));
    assert!(
        stdout(&listing).contains("no identities") || stderr(&listing).contains("no identities"),
        "uid {NOBODY} could not connect, so the open socket tested nothing: {}",
        stderr(&listing)
    );
    let signing = sign_as(&env, NOBODY, &[], &public, &message);
    assert!(!signing.status.success(), "uid {NOBODY} signed through an open socket");
    assert!(!stdout(&signing).contains("BEGIN SSH SIGNATURE"), "uid {NOBODY} got a signature through an open socket");

    // OpenSSH tools list the agent's keys before they sign and stop when
    // the key is not listed, so send a sign request directly as well.
    let reply = raw_sign_as(&env, NOBODY, &[], &env.public_key_line("mine"));
    assert_eq!(reply.trim(), "reply: [5]", "a raw sign request as uid {NOBODY} was not answered FAILURE");

    let log = daemon.log_text();
    let refusals: Vec<_> = parse_audit_lines(&log)
        .into_iter()
        .filter(|line| line["event"] == "refused" && line["uid"] == NOBODY)
        .collect();
    assert!(!refusals.is_empty(), "no audit line records a refusal for uid {NOBODY}:\n{log}");
    assert!(
        refusals.iter().any(|line| line["key"] == "mine"),
        "the refusals for uid {NOBODY} do not name the key:\n{log}"
    );
}

#[test]
fn socket_group_and_rules_limit_unprivileged_daemon() {
    if !root_or_skip("socket_group_and_rules_limit_unprivileged_daemon") {
        return;
    }
    let env = Env::with_keys(&[("ed25519", "for-client"), ("ed25519", "for-other"), ("ed25519", "no-rule")]);
    std::fs::write(
        env.keystore.join("keyward.toml"),
        format!(
            "[daemon]\nsocket_group = {SOCKET_GID}\n\n\
             [[key]]\nname = \"for-client\"\nusers = [{CLIENT_UID}]\noperations = [\"sign\"]\n\n\
             [[key]]\nname = \"for-other\"\nusers = [{OTHER_CLIENT_UID}]\noperations = [\"sign\"]\n"
        ),
    )
    .unwrap();
    chown_tree(&env.keystore, DAEMON_UID, DAEMON_UID);
    std::fs::create_dir(&env.sockets).unwrap();
    chmod(&env.sockets, 0o755);
    chown_tree(&env.sockets, DAEMON_UID, DAEMON_UID);

    // The daemon's user is a member of the socket group, as a system
    // daemon's user would be; otherwise it may not give the socket to it.
    let mut command = env.keyward_as(DAEMON_UID, DAEMON_UID, &[SOCKET_GID]);
    command.args(["daemon", "--foreground"]);
    let daemon = env.start_daemon_command(command);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let uids = status.lines().find(|line| line.starts_with("Uid:")).unwrap().split_whitespace().skip(1).collect::<Vec<_>>();
    assert_eq!(uids, vec![DAEMON_UID.to_string(); 4], "the daemon does not run as uid {DAEMON_UID}");
    env.unseal();

    let socket = std::fs::metadata(env.agent_socket()).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o660, "the service socket's mode is not 0660");
    assert_eq!(socket.gid(), SOCKET_GID, "the service socket does not belong to group {SOCKET_GID}");
    assert_eq!(socket.uid(), DAEMON_UID, "the service socket does not belong to the daemon's user");

    let client_key = env.public_key_line("for-client");
    let listing = list_as(&env, CLIENT_UID, &[SOCKET_GID]);
    assert_eq!(listed_keys(&listing), vec![client_key.clone()], "uid {CLIENT_UID} does not see exactly its key: {}", stderr(&listing));

    let other = list_as(&env, OTHER_CLIENT_UID, &[SOCKET_GID]);
    assert_eq!(listed_keys(&other), vec![env.public_key_line("for-other")], "uid {OTHER_CLIENT_UID} does not see exactly its key");

    // Outside the socket group the file mode keeps the client out.
    let outsider = list_as(&env, CLIENT_UID, &[]);
    assert!(listed_keys(&outsider).is_empty(), "uid {CLIENT_UID} outside group {SOCKET_GID} sees keys");

    // ssh-keygen needs a passwd entry for its uid, which 5000 lacks;
    // `keyward sign` makes the same SSHSIG signature without one.
    let message = env.path("message.txt");
    std::fs::write(&message, b"signed by uid 5000\n").unwrap();
    let sign = |name: &str| {
        env.keyward_as(CLIENT_UID, CLIENT_UID, &[SOCKET_GID]).args(["sign", "--key", name]).arg(&message).output().unwrap()
    };
    let signing = sign("for-client");
    assert_success(&signing, "keyward sign as uid 5000 with its key");
    let signature = env.path("message.txt.sig");
    std::fs::write(&signature, &signing.stdout).unwrap();
    let verified = ssh_keygen_verify(env.root.path(), &client_key, "file", &message, &signature);
    assert!(verified.status.success(), "the signature uid 5000 made does not verify: {}", stderr(&verified));

    for name in ["no-rule", "for-other"] {
        let signing = sign(name);
        assert_eq!(signing.status.code(), Some(5), "keyward sign as uid {CLIENT_UID} with {name} did not exit 5: {}", stderr(&signing));
        assert!(!stdout(&signing).contains("BEGIN SSH SIGNATURE"), "uid {CLIENT_UID} got a signature from {name}");
    }

    // A sign request sent directly, without listing first, is refused too.
    let reply = raw_sign_as(&env, CLIENT_UID, &[SOCKET_GID], &env.public_key_line("no-rule"));
    assert_eq!(reply.trim(), "reply: [5]", "a raw sign request with no-rule as uid {CLIENT_UID} was not answered FAILURE");
    drop(daemon);
}
