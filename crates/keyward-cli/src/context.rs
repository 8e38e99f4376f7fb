//! The process's view of its environment: places, test-only settings and
//! the clock. Only the binary reads the environment; the library receives
//! what it needs as arguments.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use keyward::keystore::KdfPolicy;
use keyward::places::{self, Environment};

use crate::cli::Places;
use crate::error::{CliError, Result};

/// Test-only: accept and create keystores with cheap KDF parameters.
const TEST_INSECURE_KDF: &str = "KEYWARD_TEST_INSECURE_KDF";
/// Test-only: pin the clock, in seconds since the epoch.
const TEST_NOW: &str = "KEYWARD_TEST_NOW";
/// Test-only: the daemon's secret arena backing, `mlock` (skip
/// memfd_secret) or `none` (no arena, as when the kernel allows neither).
const TEST_MEMORY: &str = "KEYWARD_TEST_MEMORY";

pub struct Context {
    pub env: Environment,
    pub places: Places,
}

impl Context {
    pub fn from_process(places: Places) -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
        let uid = rustix::process::getuid().as_raw();
        let env = Environment {
            uid,
            system_user: uid != 0 && uid < system_uid_min(),
            home: var("HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            keyward_keystore: var("KEYWARD_KEYSTORE"),
            keyward_socket_dir: var("KEYWARD_SOCKET_DIR"),
            keyward_config: var("KEYWARD_CONFIG"),
        };
        Context { env, places }
    }

    pub fn keystore_dir(&self) -> Result<PathBuf> {
        places::keystore_dir(self.places.keystore.as_deref(), &self.env).map_err(|error| CliError::failed(error.to_string()))
    }

    /// Returns the socket directory a client connects to.
    pub fn client_socket_dir(&self) -> Result<PathBuf> {
        places::client_socket_dir(self.places.socket_dir.as_deref(), &self.env, |dir| {
            std::os::unix::net::UnixStream::connect(dir.join(places::AGENT_SOCKET)).is_ok()
        })
        .map_err(|error| CliError::failed(error.to_string()))
    }

    /// Returns the socket directory the daemon listens in.
    pub fn daemon_socket_dir(&self) -> Result<PathBuf> {
        places::daemon_socket_dir(self.places.socket_dir.as_deref(), &self.env).map_err(|error| CliError::failed(error.to_string()))
    }

    pub fn config_file(&self, keystore: &Path) -> Option<PathBuf> {
        places::config_file(self.places.config.as_deref(), &self.env, keystore, Path::exists)
    }

    pub fn agent_socket(&self) -> Result<PathBuf> {
        Ok(self.client_socket_dir()?.join(places::AGENT_SOCKET))
    }

    pub fn admin_socket(&self) -> Result<PathBuf> {
        Ok(self.client_socket_dir()?.join(places::ADMIN_SOCKET))
    }
}

/// Returns the KDF policy: production unless the test-only variable is set.
pub fn kdf_policy() -> KdfPolicy {
    if std::env::var_os(TEST_INSECURE_KDF).is_some_and(|value| value == "1") {
        KdfPolicy::InsecureTest
    } else {
        KdfPolicy::Production
    }
}

/// A secret arena backing that tests force on the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestMemory {
    /// The `mlock` fallback, even where memfd_secret works.
    Mlock,
    /// No arena at all, as on a kernel that allows neither backing.
    None,
}

/// The test-only arena backing, when `KEYWARD_TEST_MEMORY` is `mlock` or
/// `none`; any other value is ignored.
pub fn test_memory() -> Option<TestMemory> {
    match std::env::var(TEST_MEMORY).ok().as_deref() {
        Some("mlock") => Some(TestMemory::Mlock),
        Some("none") => Some(TestMemory::None),
        _ => None,
    }
}

/// Seconds since the epoch, or the pinned test time.
pub fn now() -> u64 {
    if let Some(pinned) = std::env::var(TEST_NOW).ok().and_then(|value| value.parse().ok()) {
        return pinned;
    }
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

/// Returns the first uid of ordinary users (UID_MIN in /etc/login.defs, else 1000).
fn system_uid_min() -> u32 {
    let Ok(defs) = std::fs::read_to_string("/etc/login.defs") else { return 1000 };
    defs.lines()
        .filter_map(|line| line.trim().strip_prefix("UID_MIN"))
        .find_map(|rest| rest.trim().parse().ok())
        .unwrap_or(1000)
}

/// Parses a `YYYY-MM-DD` date as midnight UTC, in seconds since the epoch.
pub fn parse_date(text: &str) -> Result<u64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format)
        .map_err(|_| CliError::with_code(crate::error::ExitCode::Usage, format!("invalid date {text:?}: expected YYYY-MM-DD")))?;
    let seconds = date.midnight().assume_utc().unix_timestamp();
    u64::try_from(seconds).map_err(|_| CliError::with_code(crate::error::ExitCode::Usage, format!("date {text:?} is before 1970")))
}

/// Formats seconds since the epoch as `YYYY-MM-DD` (UTC).
pub fn format_date(seconds: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(seconds as i64)
        .ok()
        .and_then(|moment| moment.format(&format).ok())
        .unwrap_or_else(|| seconds.to_string())
}
