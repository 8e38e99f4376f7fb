//! Errors as the user sees them: one `error:` line, `hint:` lines, and an
//! exit code from the documented set.

use std::fmt;

use keyward::client::ClientError;

/// The documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Failed = 1,
    Usage = 2,
    NoDaemon = 3,
    Sealed = 4,
    Refused = 5,
}

#[derive(Debug)]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
    pub hints: Vec<String>,
}

impl CliError {
    pub fn failed(message: impl Into<String>) -> Self {
        CliError { code: ExitCode::Failed, message: message.into(), hints: Vec::new() }
    }

    pub fn with_code(code: ExitCode, message: impl Into<String>) -> Self {
        CliError { code, message: message.into(), hints: Vec::new() }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for hint in &self.hints {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::NoDaemon { .. } => CliError::with_code(ExitCode::NoDaemon, error.to_string())
                .hint("start it with `keyward daemon`, or point --socket-dir (KEYWARD_SOCKET_DIR) at its socket directory"),
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<keyward::keystore::KeystoreError> for CliError {
    fn from(error: keyward::keystore::KeystoreError) -> Self {
        CliError::failed(error.to_string())
    }
}

impl From<keyward_protect::MemoryError> for CliError {
    fn from(error: keyward_protect::MemoryError) -> Self {
        CliError::failed(error.to_string())
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
