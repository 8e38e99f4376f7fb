//! Reading passphrases: from a file descriptor or the terminal, never from
//! argv or the environment.

use std::io::Read;

use keyward::secret::Passphrase;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Reads a file descriptor to EOF and removes one trailing newline.
pub fn read_fd(fd: i32) -> Result<Zeroizing<Vec<u8>>> {
    let mut file = keyward_protect::fd::take_fd(fd)
        .map_err(|error| CliError::failed(format!("cannot read the passphrase from file descriptor {fd}: {error}")))?;
    let mut bytes = read_to_end_wiping(&mut file)
        .map_err(|error| CliError::failed(format!("cannot read the passphrase from file descriptor {fd}: {error}")))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Reads to end of file like `read_to_end`, but a full buffer is copied
/// into a bigger one and wiped, where `Vec` growth would free it unwiped.
fn read_to_end_wiping(reader: &mut impl Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(1024));
    let mut chunk = Zeroizing::new([0u8; 1024]);
    loop {
        let count = match reader.read(&mut chunk[..]) {
            Ok(0) => return Ok(bytes),
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if bytes.len() + count > bytes.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((bytes.len() + count) * 2));
            bigger.extend_from_slice(&bytes);
            bytes = bigger;
        }
        bytes.extend_from_slice(&chunk[..count]);
    }
}

fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").is_err() {
        return Err(CliError::failed("a passphrase is needed and there is no terminal to ask on")
            .hint("pass it on a file descriptor, e.g. --passphrase-fd 3 3<passphrase-file"));
    }
    let text = rpassword::prompt_password(text)
        .map_err(|error| CliError::failed(format!("cannot read the passphrase from the terminal: {error}")))?;
    Ok(Zeroizing::new(text.into_bytes()))
}

fn to_passphrase(bytes: &[u8]) -> Result<Passphrase> {
    match Passphrase::from_utf8(bytes) {
        Some(passphrase) => Ok(passphrase?),
        None => Err(CliError::failed("the passphrase is not valid UTF-8").hint(
            "keystore passphrases are UTF-8 text; check the encoding of the file or terminal it comes from",
        )),
    }
}

/// Reads the keystore passphrase from `fd`, or asks on the terminal.
pub fn keystore(fd: Option<i32>, text: &str) -> Result<Passphrase> {
    let bytes = match fd {
        Some(fd) => read_fd(fd)?,
        None => prompt(text)?,
    };
    to_passphrase(&bytes)
}

/// Reads a new passphrase: from `fd`, or asked twice on the terminal.
pub fn new_keystore(fd: Option<i32>, allow_empty: bool) -> Result<Passphrase> {
    let passphrase = match fd {
        Some(fd) => to_passphrase(&read_fd(fd)?)?,
        None => {
            let first = prompt("New keystore passphrase: ")?;
            let second = prompt("Repeat the passphrase: ")?;
            if first != second {
                return Err(CliError::failed("the two passphrases differ"));
            }
            to_passphrase(&first)?
        }
    };
    if passphrase.is_empty() && !allow_empty {
        return Err(CliError::failed("the passphrase is empty").hint("pass --allow-empty-passphrase if an unprotected keystore is really what you want"));
    }
    Ok(passphrase)
}

/// Reads an imported file's own passphrase, as exact bytes.
pub fn source(fd: Option<i32>) -> Result<Zeroizing<Vec<u8>>> {
    match fd {
        Some(fd) => read_fd(fd),
        None => prompt("Passphrase of the file being imported: "),
    }
}
