//! The audit trail: JSON lines, written by a JSON encoder, to stderr or an
//! append-only file created 0600.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
}

enum Target {
    Stderr,
    File { path: PathBuf, file: File },
}

fn open_log(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
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
        })
    }

    /// Applies a reloaded configuration and reopens the file (after log
    /// rotation moved it away).
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

    fn write(&self, event: &AuditEvent<'_>) -> bool {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = serde_json::to_value(event).unwrap_or_default();
        line["time"] = serde_json::Value::String(time);
        let mut text = line.to_string();
        text.push('\n');

        let mut target = self.target.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = match &mut *target {
            Target::Stderr => std::io::stderr().write_all(text.as_bytes()),
            Target::File { file, .. } => file.write_all(text.as_bytes()).and_then(|()| file.flush()),
        };
        let ok = written.is_ok();
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
