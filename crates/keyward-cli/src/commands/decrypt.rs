//! `keyward decrypt`: decrypts an age file with X25519 keys held by the
//! daemon and streams the plaintext to standard output.
//!
//! The `age` crate parses the header and decrypts the payload chunk by
//! chunk. Only the file key comes from the daemon, through an `Identity`
//! that sends each X25519 stanza to `x25519-unwrap@keyward`, so memory use
//! is one chunk buffer whatever the file size.

use std::cell::RefCell;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use age::armor::ArmoredReader;
use age::{DecryptError, Decryptor, Identity};
use age_core::format::{FileKey, Stanza};
use base64::Engine as _;
use keyward::agent::extensions::{FailureCode, ListedKey, State};
use keyward::client::{AgentClient, Unwrapped};
use keyward::x25519::{self, STANZA_TAG};

use crate::context::Context;
use crate::error::{CliError, ExitCode, Result};

/// Size of the read and write buffer; age payload chunks are 64 KiB.
const BUFFER_LEN: usize = 64 * 1024;

pub fn decrypt(context: &Context, key_name: Option<&str>, file: &Path) -> Result<()> {
    // The file key passes through this process: no core dumps, no same-uid
    // ptrace.
    keyward_protect::process::harden_process().map_err(|error| CliError::failed(format!("cannot harden the process: {error}")))?;
    let mut agent = AgentClient::connect(&context.agent_socket()?)?;
    let keys = usable_keys(&mut agent, key_name)?;
    if agent.status()? == State::Sealed {
        return Err(sealed());
    }

    let input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).map_err(|error| CliError::failed(format!("cannot read {}: {error}", file.display())))?)
    };
    let armored = ArmoredReader::new(BufReader::with_capacity(BUFFER_LEN, input));
    let decryptor = Decryptor::new_buffered(armored)
        .map_err(|error| CliError::failed(format!("{} is not a valid age file: {error}", file.display())))?;
    if decryptor.is_scrypt() {
        return Err(CliError::failed(format!("{} is encrypted with a passphrase, not to a key", file.display()))
            .hint("decrypt it with `age -d`"));
    }

    let identity = DaemonIdentity { agent: RefCell::new(agent), keys, failure: RefCell::new(None) };
    let mut plaintext = match decryptor.decrypt(std::iter::once(&identity as &dyn Identity)) {
        Ok(reader) => reader,
        Err(error) => return Err(identity.failure.into_inner().unwrap_or_else(|| decrypt_error(error))),
    };
    copy_to_stdout(&mut plaintext)
}

/// Returns the x25519 keys to try as (name, raw fingerprint): the named
/// key, or every x25519 key this caller may decrypt with.
fn usable_keys(agent: &mut AgentClient, key_name: Option<&str>) -> Result<Vec<(String, [u8; 32])>> {
    let listed = agent.list()?;
    let may_decrypt = |key: &&ListedKey| key.key_type == "x25519" && key.operations.iter().any(|operation| operation == "decrypt");

    let chosen: Vec<&ListedKey> = match key_name {
        Some(name) => {
            let Some(key) = listed.iter().find(|key| key.name == name) else {
                return Err(CliError::with_code(ExitCode::Refused, format!("decrypting with {name:?} was refused"))
                    .hint("the key does not exist, or this user may not use it; `keyward list` on the daemon's host shows the keys"));
            };
            if key.key_type != "x25519" {
                return Err(CliError::with_code(ExitCode::Usage, format!("{name:?} is an {} key; decrypting age files needs an x25519 key", key.key_type)));
            }
            if !may_decrypt(&key) {
                return Err(CliError::with_code(ExitCode::Refused, format!("decrypting with {name:?} was refused"))
                    .hint("this user may not decrypt with the key; a [[key]] rule with operations = [\"decrypt\"] allows it"));
            }
            vec![key]
        }
        None => listed.iter().filter(may_decrypt).collect(),
    };
    if chosen.is_empty() {
        return Err(CliError::with_code(ExitCode::Refused, "the daemon holds no x25519 key this user may decrypt with")
            .hint("create one with `keyward keygen --type x25519 --name NAME`, or ask the operator for a [[key]] rule"));
    }

    chosen
        .into_iter()
        .map(|key| {
            let blob = base64::engine::general_purpose::STANDARD
                .decode(&key.public_key)
                .map_err(|_| CliError::failed("the daemon listed an invalid public key"))?;
            Ok((key.name.clone(), keyward::keys::fingerprint_bytes(&blob)))
        })
        .collect()
}

/// An age identity whose keys live in the daemon.
struct DaemonIdentity {
    agent: RefCell<AgentClient>,
    keys: Vec<(String, [u8; 32])>,
    /// The first error the daemon reported. It is shown in place of age's
    /// own error, which is less specific.
    failure: RefCell<Option<CliError>>,
}

impl DaemonIdentity {
    fn fail(&self, error: CliError, age_error: DecryptError) -> Option<std::result::Result<FileKey, DecryptError>> {
        self.failure.borrow_mut().get_or_insert(error);
        Some(Err(age_error))
    }
}

impl Identity for DaemonIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<std::result::Result<FileKey, DecryptError>> {
        // Stanzas of other types belong to other identities.
        if stanza.tag != STANZA_TAG {
            return None;
        }
        let parsed = match x25519::parse_stanza(&stanza.args, &stanza.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                let message = format!("the file is invalid: bad X25519 recipient stanza: {error}");
                return self.fail(CliError::failed(message), DecryptError::InvalidHeader);
            }
        };

        let mut agent = self.agent.borrow_mut();
        for (name, fingerprint) in &self.keys {
            match agent.x25519_unwrap(fingerprint, &parsed.ephemeral_share, &parsed.body) {
                Ok(Ok(Unwrapped::FileKey(key))) => {
                    return Some(Ok(FileKey::init_with_mut(|file_key| file_key.copy_from_slice(&key[..]))));
                }
                Ok(Ok(Unwrapped::NotForThisKey)) => {}
                Ok(Err(Some(FailureCode::Sealed))) => return self.fail(sealed(), DecryptError::KeyDecryptionFailed),
                Ok(Err(Some(FailureCode::Refused))) => {
                    let error = CliError::with_code(ExitCode::Refused, format!("decrypting with {name:?} was refused"))
                        .hint("the key was removed, or the policy changed; `keyward list` shows what this user may use");
                    return self.fail(error, DecryptError::KeyDecryptionFailed);
                }
                Ok(Err(Some(FailureCode::InvalidRequest))) => {
                    let error = CliError::failed("the file is invalid: the daemon rejected an X25519 stanza");
                    return self.fail(error, DecryptError::InvalidHeader);
                }
                Ok(Err(None)) => {
                    let error = CliError::failed("the daemon does not support x25519-unwrap@keyward").hint("upgrade the Keyward daemon");
                    return self.fail(error, DecryptError::KeyDecryptionFailed);
                }
                Err(error) => return self.fail(error.into(), DecryptError::KeyDecryptionFailed),
            }
        }
        None
    }
}

fn sealed() -> CliError {
    CliError::with_code(ExitCode::Sealed, "the daemon is sealed").hint("unseal it with `keyward unseal`")
}

fn decrypt_error(error: DecryptError) -> CliError {
    match error {
        DecryptError::NoMatchingKeys => CliError::failed("no key in the daemon matches this file")
            .hint("the file was encrypted to other recipients; `keyward pubkey NAME --format age` shows the recipient of a key"),
        other => CliError::failed(format!("decryption failed: {other}")),
    }
}

fn copy_to_stdout(plaintext: &mut impl Read) -> Result<()> {
    let stdout = io::stdout();
    let mut output = stdout.lock();
    let mut buffer = vec![0u8; BUFFER_LEN];
    loop {
        let read = match plaintext.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // Each chunk is authenticated before it is returned, so what
            // was written so far is genuine, but the file is damaged or
            // truncated from here on.
            Err(error) => return Err(CliError::failed(format!("decryption failed: {error}")).hint("the file is damaged or truncated; discard the output")),
        };
        output.write_all(&buffer[..read]).map_err(|error| CliError::failed(format!("cannot write to standard output: {error}")))?;
    }
    output.flush().map_err(|error| CliError::failed(format!("cannot write to standard output: {error}")))
}
