//! Where the keystore, sockets and configuration live when no flag says.
//!
//! The library does not read the environment: the caller passes the
//! variables in an [`Environment`].

use std::path::{Path, PathBuf};

pub const AGENT_SOCKET: &str = "agent.sock";
pub const ADMIN_SOCKET: &str = "admin.sock";
pub const CONFIG_FILE: &str = "keyward.toml";
pub const SYSTEM_KEYSTORE: &str = "/var/lib/keyward";
pub const SYSTEM_SOCKET_DIR: &str = "/run/keyward";

/// The environment variables and identity that decide default places.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub uid: u32,
    /// Whether the user is a system user (below the system's UID_MIN).
    pub system_user: bool,
    pub home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub keyward_keystore: Option<PathBuf>,
    pub keyward_socket_dir: Option<PathBuf>,
    pub keyward_config: Option<PathBuf>,
}

/// No default place could be found.
#[derive(Debug, thiserror::Error)]
#[error("cannot tell where the {what} is: {hint}")]
pub struct PlaceError {
    pub what: &'static str,
    pub hint: &'static str,
}

/// The keystore directory: flag, `KEYWARD_KEYSTORE`, `/var/lib/keyward`
/// for root, else `$XDG_DATA_HOME/keyward`, else `~/.local/share/keyward`.
pub fn keystore_dir(flag: Option<&Path>, env: &Environment) -> Result<PathBuf, PlaceError> {
    if let Some(dir) = flag.map(Path::to_owned).or_else(|| env.keyward_keystore.clone()) {
        return Ok(dir);
    }
    if env.uid == 0 {
        return Ok(PathBuf::from(SYSTEM_KEYSTORE));
    }
    if let Some(data) = &env.xdg_data_home {
        return Ok(data.join("keyward"));
    }
    match &env.home {
        Some(home) => Ok(home.join(".local/share/keyward")),
        None => Err(PlaceError { what: "keystore", hint: "pass --keystore DIR or set KEYWARD_KEYSTORE" }),
    }
}

/// The daemon's socket directory: flag, `KEYWARD_SOCKET_DIR`,
/// `/run/keyward` for root or a system user, else
/// `$XDG_RUNTIME_DIR/keyward`.
pub fn daemon_socket_dir(flag: Option<&Path>, env: &Environment) -> Result<PathBuf, PlaceError> {
    if let Some(dir) = flag.map(Path::to_owned).or_else(|| env.keyward_socket_dir.clone()) {
        return Ok(dir);
    }
    if env.uid == 0 || env.system_user {
        return Ok(PathBuf::from(SYSTEM_SOCKET_DIR));
    }
    match &env.xdg_runtime_dir {
        Some(runtime) => Ok(runtime.join("keyward")),
        None => Err(PlaceError { what: "socket directory", hint: "pass --socket-dir DIR or set KEYWARD_SOCKET_DIR" }),
    }
}

/// A client's socket directory: flag, `KEYWARD_SOCKET_DIR`, `/run/keyward`
/// if a daemon listens there (`listening` tells), else
/// `$XDG_RUNTIME_DIR/keyward`.
pub fn client_socket_dir(flag: Option<&Path>, env: &Environment, listening: impl Fn(&Path) -> bool) -> Result<PathBuf, PlaceError> {
    if let Some(dir) = flag.map(Path::to_owned).or_else(|| env.keyward_socket_dir.clone()) {
        return Ok(dir);
    }
    let system = PathBuf::from(SYSTEM_SOCKET_DIR);
    if listening(&system) {
        return Ok(system);
    }
    match &env.xdg_runtime_dir {
        Some(runtime) => Ok(runtime.join("keyward")),
        None => Ok(system),
    }
}

/// The configuration file: flag, `KEYWARD_CONFIG`, else `keyward.toml` in
/// the keystore directory (`None` when that does not exist).
pub fn config_file(flag: Option<&Path>, env: &Environment, keystore: &Path, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if let Some(file) = flag.map(Path::to_owned).or_else(|| env.keyward_config.clone()) {
        return Some(file);
    }
    let default = keystore.join(CONFIG_FILE);
    exists(&default).then_some(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_uses_system_places() {
        let env = Environment { uid: 0, ..Default::default() };
        assert_eq!(keystore_dir(None, &env).unwrap(), PathBuf::from(SYSTEM_KEYSTORE));
        assert_eq!(daemon_socket_dir(None, &env).unwrap(), PathBuf::from(SYSTEM_SOCKET_DIR));
    }

    #[test]
    fn user_places_follow_xdg() {
        let env = Environment {
            uid: 1000,
            home: Some("/home/a".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..Default::default()
        };
        assert_eq!(keystore_dir(None, &env).unwrap(), PathBuf::from("/home/a/.local/share/keyward"));
        assert_eq!(daemon_socket_dir(None, &env).unwrap(), PathBuf::from("/run/user/1000/keyward"));
        assert_eq!(client_socket_dir(None, &env, |_| false).unwrap(), PathBuf::from("/run/user/1000/keyward"));
        assert_eq!(client_socket_dir(None, &env, |_| true).unwrap(), PathBuf::from(SYSTEM_SOCKET_DIR));
    }

    #[test]
    fn flag_beats_environment() {
        let env = Environment { uid: 1000, keyward_keystore: Some("/env".into()), ..Default::default() };
        assert_eq!(keystore_dir(Some(Path::new("/flag")), &env).unwrap(), PathBuf::from("/flag"));
        assert_eq!(keystore_dir(None, &env).unwrap(), PathBuf::from("/env"));
    }
}
