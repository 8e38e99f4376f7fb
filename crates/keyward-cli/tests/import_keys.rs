//! `keyward import` of keys that OpenSSH and OpenSSL made: the public key
//! matches what those tools derive, and once the private file is gone the
//! daemon signs with the imported key.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use common::{assert_success, require_program, ssh_keygen_sign, ssh_keygen_verify, stderr, stdout, Env, PASSPHRASE};

const SOURCE_PASSPHRASE: &str = "passphrase of the source file";

/// One key file to import, with the public key line other tools derive.
struct Source {
    name: &'static str,
    file: PathBuf,
    encrypted: bool,
    expected: String,
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command.output().unwrap();
    assert_success(&output, what);
    output
}

fn first_two_fields(text: &str) -> String {
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The public key `ssh-keygen -y` derives from a private key file.
fn ssh_keygen_public(file: &Path, passphrase: Option<&str>) -> String {
    let mut command = Command::new(require_program("ssh-keygen"));
    command.arg("-y");
    if let Some(passphrase) = passphrase {
        command.args(["-P", passphrase]);
    }
    let output = run(command.arg("-f").arg(file), "ssh-keygen -y");
    first_two_fields(&stdout(&output))
}

fn ssh_keygen_key(dir: &Path, name: &'static str, args: &[&str], passphrase: &str) -> Source {
    let file = dir.join(name);
    run(
        Command::new(require_program("ssh-keygen")).args(["-q", "-N", passphrase, "-C", name]).args(args).arg("-f").arg(&file),
        "ssh-keygen",
    );
    std::fs::remove_file(file.with_extension("pub")).unwrap();
    let encrypted = !passphrase.is_empty();
    let expected = ssh_keygen_public(&file, encrypted.then_some(passphrase));
    Source { name, file, encrypted, expected }
}

fn openssl_key(dir: &Path, name: &'static str, args: &[&str], encrypted: bool) -> Source {
    let file = dir.join(format!("{name}.pem"));
    let mut command = Command::new(require_program("openssl"));
    command.arg("genpkey").args(args).arg("-out").arg(&file);
    if encrypted {
        command.args(["-aes256", "-pass", &format!("pass:{SOURCE_PASSPHRASE}")]);
    }
    run(&mut command, "openssl genpkey");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let expected = if args.contains(&"ed25519") {
        ed25519_public_from_openssl(&file, encrypted)
    } else {
        ssh_keygen_public(&file, encrypted.then_some(SOURCE_PASSPHRASE))
    };
    Source { name, file, encrypted, expected }
}

/// ssh-keygen 9.2 cannot read Ed25519 PKCS#8 files, so the expected line
/// is built from the raw key `openssl pkey -pubout` prints: the last 32
/// bytes of its DER SubjectPublicKeyInfo.
fn ed25519_public_from_openssl(file: &Path, encrypted: bool) -> String {
    let mut command = Command::new(require_program("openssl"));
    command.arg("pkey").arg("-in").arg(file).args(["-pubout", "-outform", "DER"]);
    if encrypted {
        command.args(["-passin", &format!("pass:{SOURCE_PASSPHRASE}")]);
    }
    let der = run(&mut command, "openssl pkey -pubout").stdout;
    assert_eq!(der.len(), 44, "an Ed25519 SubjectPublicKeyInfo is 44 bytes");
    let mut blob = Vec::new();
    for field in [&b"ssh-ed25519"[..], &der[12..]] {
        blob.extend_from_slice(&(field.len() as u32).to_be_bytes());
        blob.extend_from_slice(field);
    }
    format!("ssh-ed25519 {}", base64::engine::general_purpose::STANDARD.encode(blob))
}

/// Imports `source`; the keystore passphrase goes on stdin when given.
fn import(env: &Env, source: &Source, format: &str, keystore_passphrase: Option<&str>, source_passphrase: &str) -> Output {
    let file = source.file.to_str().unwrap();
    let mut args = vec!["import", "--name", source.name, "--format", format];
    if keystore_passphrase.is_some() {
        args.extend(["--passphrase-fd", "0"]);
    }
    let stdin = keystore_passphrase.unwrap_or("").as_bytes();
    if source.encrypted {
        let passphrase_file = env.path("source-passphrase");
        std::fs::write(&passphrase_file, source_passphrase).unwrap();
        args.extend(["--source-passphrase-fd", "3", file]);
        env.run_with_fd3(&args, stdin, &passphrase_file)
    } else {
        args.push(file);
        env.run_with_input(&args, stdin)
    }
}

fn sign_and_verify(env: &Env, source: &Source) {
    let public = env.pubkey_file(source.name);
    let message = env.path("message.txt");
    std::fs::write(&message, format!("signed with the imported {}\n", source.name)).unwrap();
    let output = ssh_keygen_sign(&env.agent_socket(), &public, &message);
    assert_success(&output, &format!("ssh-keygen -Y sign with the imported {}", source.name));
    let signature = env.path(&format!("{}.sig", source.name));
    std::fs::write(&signature, &output.stdout).unwrap();
    let verified = ssh_keygen_verify(env.root.path(), &source.expected, "file", &message, &signature);
    assert!(verified.status.success(), "the signature of the imported {} does not verify: {}", source.name, stderr(&verified));
}

fn list_json(env: &Env) -> String {
    let output = env.run(&["list", "--json"]);
    assert_success(&output, "keyward list --json");
    stdout(&output)
}

fn assert_wrong_source_passphrase_imports_nothing(env: &Env, source: &Source, format: &str, keystore_passphrase: Option<&str>) {
    let before = list_json(env);
    let output = import(env, source, format, keystore_passphrase, "not the source passphrase");
    assert_eq!(output.status.code(), Some(1), "import with a wrong source passphrase did not exit 1: {}", stderr(&output));
    assert!(
        stderr(&output).contains("incorrect passphrase for the file"),
        "import with a wrong source passphrase gave no clear message: {}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("panicked"), "import panicked: {}", stderr(&output));
    assert_eq!(list_json(env), before, "import with a wrong source passphrase changed the key list");
}

#[test]
fn openssh_imports_match_and_sign() {
    let env = Env::new();
    env.init();
    let dir = env.path("sources");
    std::fs::create_dir(&dir).unwrap();
    let sources = [
        ssh_keygen_key(&dir, "imported-ed", &["-t", "ed25519"], ""),
        ssh_keygen_key(&dir, "imported-ec", &["-t", "ecdsa", "-b", "256"], ""),
        ssh_keygen_key(&dir, "imported-rsa", &["-t", "rsa", "-b", "2048"], ""),
        ssh_keygen_key(&dir, "imported-ed-encrypted", &["-t", "ed25519"], SOURCE_PASSPHRASE),
    ];

    assert_wrong_source_passphrase_imports_nothing(&env, &sources[3], "openssh", Some(PASSPHRASE));
    for source in &sources {
        let output = import(&env, source, "openssh", Some(PASSPHRASE), SOURCE_PASSPHRASE);
        assert_success(&output, &format!("keyward import of {}", source.name));
        assert_eq!(env.public_key_line(source.name), source.expected, "keyward pubkey {} differs from ssh-keygen -y", source.name);
        std::fs::remove_file(&source.file).unwrap();
    }

    let _daemon = env.start_daemon();
    env.unseal();
    for source in &sources {
        sign_and_verify(&env, source);
    }
}

#[test]
fn pkcs8_imports_through_daemon_match_and_sign() {
    let (env, _daemon) = Env::running(&[]);
    let dir = env.path("sources");
    std::fs::create_dir(&dir).unwrap();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:named_curve"];
    let sources = [
        openssl_key(&dir, "pkcs8-ed", &["-algorithm", "ed25519"], false),
        openssl_key(&dir, "pkcs8-ec", &ec, false),
        openssl_key(&dir, "pkcs8-rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], false),
        openssl_key(&dir, "pkcs8-ec-encrypted", &ec, true),
    ];

    // No keystore passphrase: the unsealed daemon adds the keys.
    assert_wrong_source_passphrase_imports_nothing(&env, &sources[3], "pkcs8", None);
    for source in &sources {
        let output = import(&env, source, "pkcs8", None, SOURCE_PASSPHRASE);
        assert_success(&output, &format!("keyward import of {}", source.name));
        assert_eq!(env.public_key_line(source.name), source.expected, "keyward pubkey {} differs from the source's public key", source.name);
        std::fs::remove_file(&source.file).unwrap();
    }
    for source in &sources {
        sign_and_verify(&env, source);
    }
}
