//! Reading passphrases: from a file descriptor or the terminal, never from
//! argv or the environment.

use std::io::Read;

use keyward::secret::{extend_wiped, Passphrase};
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
        extend_wiped(&mut bytes, &chunk[..count]);
    }
}

/// Maximum length, in bytes, of a passphrase typed at the terminal prompt.
const MAX_TYPED: usize = 64 * 1024;

/// Maximum length of a line that Linux's terminal line discipline hands
/// over; it drops what is typed past it. A typed line this long may have
/// been cut.
const TERMINAL_LINE_MAX: usize = 4095;

/// Prompts on the controlling terminal and reads one line with echo off.
///
/// Echo goes off, and input typed ahead is discarded, before the prompt
/// is written, so that nothing typed is ever shown. The line is read into
/// memory that is wiped, also when it grows.
fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    use std::io::Write;
    use std::os::fd::AsFd;

    let Ok(terminal) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") else {
        return Err(CliError::failed("a passphrase is needed and there is no terminal to prompt on")
            .hint("pass it on a file descriptor, e.g. --passphrase-fd 3 3<passphrase-file"));
    };
    let failed = |error: std::io::Error| CliError::failed(format!("cannot read the passphrase from the terminal: {error}"));
    // Echo stays off until this is dropped; a signal that ends the process
    // meanwhile turns it back on first.
    let _echo_off = keyward_protect::terminal::echo_off(terminal.as_fd()).map_err(failed)?;

    (&terminal).write_all(text.as_bytes()).map_err(failed)?;
    let mut line = Zeroizing::new(Vec::with_capacity(256));
    let mut chunk = Zeroizing::new([0u8; 256]);
    loop {
        let count = match (&terminal).read(&mut chunk[..]) {
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(failed(error)),
        };
        let end = chunk[..count].iter().position(|&byte| byte == b'\n');
        let typed = &chunk[..end.unwrap_or(count)];
        if line.len() + typed.len() > MAX_TYPED {
            return Err(CliError::failed(format!("the typed passphrase is longer than {MAX_TYPED} bytes")));
        }
        extend_wiped(&mut line, typed);
        // A newline or the end of input (Ctrl-D) ends the passphrase.
        if end.is_some() || count == 0 {
            if count == 0 && line.is_empty() {
                return Err(CliError::failed("no passphrase was entered: the input ended at the prompt"));
            }
            if line.len() >= TERMINAL_LINE_MAX {
                return Err(CliError::failed(format!("the typed passphrase reached the terminal's line limit of {TERMINAL_LINE_MAX} bytes and may have been cut"))
                    .hint("pass a passphrase this long on a file descriptor, e.g. --passphrase-fd 3 3<passphrase-file"));
            }
            return Ok(line);
        }
    }
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
