//! The audit trail: JSON lines, written by a JSON encoder, to stderr or an
//! append-only file created 0600.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use keyward::config::{AuditLog, AuditMode};
use keyward::service::{AuditEvent, AuditSink};

pub struct Audit {
    mode: Mutex<AuditMode>,
    fail_closed: AtomicBool,
    target: Mutex<Target>,
    healthy: AtomicBool,
    /// Set when a write failed, possibly after part of a line reached the
    /// file. The next line then starts with a newline, so the fragment
    /// stays on a line of its own.
    torn: AtomicBool,
}

enum Target {
    Stderr,
    File { path: PathBuf, file: File },
}

/// Opens the log for appending, creating it 0600. A symbolic link or a
/// non-regular file is an error; an existing file that others may read is
/// narrowed to 0600.
fn open_log(path: &PathBuf) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other(format!("{} is not a regular file", path.display())));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the audit log was readable by others; setting its mode to 0600");
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

impl Audit {
    pub fn new(log: &AuditLog, mode: AuditMode, fail_closed: bool) -> std::io::Result<Audit> {
        let target = match log {
            AuditLog::Stderr => Target::Stderr,
            AuditLog::File(path) => Target::File { path: path.clone(), file: open_log(path)? },
        };
        Ok(Audit {
            mode: Mutex::new(mode),
            fail_closed: AtomicBool::new(fail_closed),
            target: Mutex::new(target),
            healthy: AtomicBool::new(true),
            torn: AtomicBool::new(false),
        })
    }

    /// Applies a reloaded configuration and reopens the file (after log
    /// rotation moved it away). When the new file cannot be opened nothing
    /// changes and the error is returned.
    pub fn reconfigure(&self, log: &AuditLog, mode: AuditMode, fail_closed: bool) -> std::io::Result<()> {
        let target = match log {
            AuditLog::Stderr => Target::Stderr,
            AuditLog::File(path) => Target::File { path: path.clone(), file: open_log(path)? },
        };
        *self.target.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = target;
        *self.mode.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = mode;
        self.fail_closed.store(fail_closed, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub fn mode(&self) -> AuditMode {
        *self.mode.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Reopens the file at its configured path, for SIGHUP after log
    /// rotation. Keeps the open file when the path cannot be opened.
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut target = self.target.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Target::File { path, file } = &mut *target {
            // A torn fragment may still end the reopened file, so the
            // newline before the next line stays due.
            *file = open_log(path)?;
        }
        Ok(())
    }

    fn write(&self, event: &AuditEvent<'_>) -> bool {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let text = line_text(event, &time);

        let mut target = self.target.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut bytes = Vec::with_capacity(text.len() + 1);
        if self.torn.load(Ordering::Relaxed) {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(text.as_bytes());
        let written = match &mut *target {
            Target::Stderr => std::io::stderr().write_all(&bytes),
            Target::File { file, .. } => file.write_all(&bytes).and_then(|()| file.flush()),
        };
        let ok = written.is_ok();
        self.torn.store(!ok, Ordering::Relaxed);
        self.healthy.store(ok, Ordering::Relaxed);
        ok
    }

    /// Whether the file can be written again, after a failure.
    fn retry(&self) -> bool {
        let mut target = self.target.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Target::File { path, file } = &mut *target {
            if let Ok(reopened) = open_log(path) {
                *file = reopened;
            }
        }
        true
    }
}

/// Encodes one audit line: the event's fields and `time`, by the JSON
/// encoder, then with every character a terminal or an editor could
/// misdisplay escaped as `\uXXXX`. serde_json escapes only U+0000 to
/// U+001F, `"` and `\`; this adds DEL, the C1 controls, the Unicode
/// bidirectional controls and the line and paragraph separators. Those
/// characters can only occur inside JSON strings, where the escape means
/// the same character, so the line stays valid JSON.
fn line_text(event: &AuditEvent<'_>, time: &str) -> String {
    let mut line = serde_json::to_value(event).unwrap_or_default();
    line["time"] = serde_json::Value::String(time.to_owned());
    let encoded = line.to_string();
    let mut text = String::with_capacity(encoded.len() + 1);
    for c in encoded.chars() {
        if needs_escape(c) {
            text.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            text.push(c);
        }
    }
    text.push('\n');
    text
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

impl AuditSink for Audit {
    fn record(&self, event: &AuditEvent<'_>) {
        if !self.write(event) {
            tracing::error!(event = event.event, "cannot write the audit line");
        }
    }

    fn record_success(&self, event: &AuditEvent<'_>) -> bool {
        if self.mode() != AuditMode::Requests {
            return true;
        }
        if self.write(event) {
            return true;
        }
        !self.fail_closed.load(Ordering::Relaxed)
    }

    fn accepting(&self) -> bool {
        if self.mode() != AuditMode::Requests || !self.fail_closed.load(Ordering::Relaxed) {
            return true;
        }
        if self.healthy() {
            return true;
        }
        // Probe: a lifecycle line tells whether the sink works again.
        self.retry() && self.write(&AuditEvent::new("audit-recovered"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_escapes_control_and_bidi_characters() {
        let mut event = AuditEvent::new("refused");
        event.key = Some("evil\u{202e}gpj.exe\u{7f}\u{85}\u{1b}[2J");
        let text = line_text(&event, "2026-12-04T00:00:00Z");
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1);
        for c in text.trim_end().chars() {
            assert!(!needs_escape(c), "unescaped {:?} in {text}", c);
        }
        assert!(text.contains("\\u202e"), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["key"], "evil\u{202e}gpj.exe\u{7f}\u{85}\u{1b}[2J");
        assert_eq!(parsed["time"], "2026-12-04T00:00:00Z");
    }
}
