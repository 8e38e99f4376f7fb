//! The disk under the keystore: a full file system during a write, and the
//! order of the durability calls.

mod common;

use std::process::Command;

use common::{keyward_binary, require_program, stderr, Env, PASSPHRASE};
use keyward::keystore::{KdfPolicy, Unlocked};
use keyward::secret::Passphrase;

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let passphrase = Passphrase::from_text(PASSPHRASE).unwrap();
    let (_, entries) = Unlocked::open(dir, &passphrase, KdfPolicy::InsecureTest).expect("the keystore opens");
    entries.into_iter().map(|entry| entry.meta.name).collect()
}

/// Inside a private mount namespace: a 256 KiB tmpfs holding the keystore,
/// filled up, then a keygen. The keystore is copied out for checking.
const FULL_DISK_SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size=256k keyward-test "$MOUNT" || exit 90
K="$KEYWARD --keystore $MOUNT/ks --socket-dir $SOCKETS"
printf %s "$PASSPHRASE" > "$OUT/pw"
$K init --passphrase-fd 3 3<"$OUT/pw" || exit 91
$K keygen --type ed25519 --name old --passphrase-fd 3 3<"$OUT/pw" || exit 92
cp "$MOUNT/ks/keystore" "$OUT/before"
dd if=/dev/zero of="$MOUNT/fill" bs=4k 2>/dev/null
$K keygen --type ed25519 --name new --passphrase-fd 3 3<"$OUT/pw" 2>"$OUT/keygen.err"
echo $? > "$OUT/keygen.code"
ls -a "$MOUNT/ks" > "$OUT/listing"
mkdir "$OUT/after"
cp "$MOUNT/ks/keystore" "$OUT/after/keystore"
rm "$MOUNT/fill"
$K keygen --type ed25519 --name later --passphrase-fd 3 3<"$OUT/pw" || exit 93
"#;

#[test]
fn full_disk_keeps_old_keystore() {
    assert!(common::is_root(), "mounting a tmpfs in a private mount namespace needs root");
    let unshare = require_program("unshare");
    let env = Env::new();
    let mount = env.path("mnt");
    std::fs::create_dir(&mount).unwrap();
    let output = Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c", FULL_DISK_SCRIPT])
        .env("MOUNT", &mount)
        .env("OUT", env.root.path())
        .env("SOCKETS", &env.sockets)
        .env("KEYWARD", keyward_binary())
        .env("PASSPHRASE", PASSPHRASE)
        .env("KEYWARD_TEST_INSECURE_KDF", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "script failed with {:?}: {}", output.status.code(), stderr(&output));

    let code = std::fs::read_to_string(env.path("keygen.code")).unwrap();
    let message = std::fs::read_to_string(env.path("keygen.err")).unwrap();
    assert_eq!(code.trim(), "1", "keygen on a full disk exits 1; stderr: {message}");
    assert!(message.to_lowercase().contains("no space left on device"), "{message}");

    let listing = std::fs::read_to_string(env.path("listing")).unwrap();
    assert!(!listing.contains(".keystore.tmp-"), "the temporary file is removed: {listing}");
    assert_eq!(std::fs::read(env.path("before")).unwrap(), std::fs::read(env.path("after/keystore")).unwrap(), "the keystore is unchanged");
    assert_eq!(names_in(&env.path("after")), vec!["old".to_owned()]);
    assert!(!mount.join("ks").exists(), "the tmpfs stayed in its namespace");
}

#[test]
fn keygen_fsyncs_file_then_renames_then_fsyncs_directory() {
    let strace = require_program("strace");
    let env = Env::new();
    env.init();
    let trace = env.path("trace");
    let pw = env.path("pw");
    std::fs::write(&pw, PASSPHRASE).unwrap();
    let output = Command::new(strace)
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o"])
        .arg(&trace)
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "exec {} --keystore {} --socket-dir {} keygen --type ed25519 --name k --passphrase-fd 3 3<{}",
            keyward_binary().display(),
            env.keystore.display(),
            env.sockets.display(),
            pw.display()
        ))
        .env("KEYWARD_TEST_INSECURE_KDF", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().filter(|line| !line.contains("resumed") || line.contains('=')).collect();
    let keystore_dir = env.keystore.canonicalize().unwrap().display().to_string();
    let position = |what: &str, matches: &dyn Fn(&str) -> bool| {
        lines.iter().position(|line| matches(line)).unwrap_or_else(|| panic!("no {what} in the trace:\n{trace}"))
    };
    let file_sync = position("fsync of the temporary file", &|line| {
        (line.contains("fsync(") || line.contains("fdatasync(")) && line.contains("/.keystore.tmp-") && line.ends_with("= 0")
    });
    let rename = position("rename onto the keystore", &|line| {
        line.contains("rename")
            && line.contains(".keystore.tmp-")
            && line.contains(&format!("{keystore_dir}/keystore"))
            && line.ends_with("= 0")
    });
    let dir_sync = position("fsync of the keystore directory", &|line| {
        line.contains("fsync(") && line.contains(&format!("<{keystore_dir}>")) && line.ends_with("= 0")
    });
    assert!(file_sync < rename, "the file is synced before the rename:\n{trace}");
    assert!(rename < dir_sync, "the directory is synced after the rename:\n{trace}");
    assert_eq!(names_in(&env.keystore), vec!["k".to_owned()]);
}
