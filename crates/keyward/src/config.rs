//! The TOML configuration file, documented with every default in
//! `docs/CONFIG.md`.
//!
//! Unknown settings and bad values are errors that name the line. A rule for
//! a key that does not exist (yet) is only a warning, because keys may be
//! generated after the rule is written.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// A user or group named in the file, by name or by numeric id.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    Id(u32),
    Name(String),
}

/// What is written for each successful request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditMode {
    /// Lifecycle events and refusals as lines; successes as counters only.
    Refusals,
    /// Also one line per successful request.
    Requests,
}

impl AuditMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditMode::Refusals => "refusals",
            AuditMode::Requests => "requests",
        }
    }
}

/// Where audit lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditLog {
    Stderr,
    File(PathBuf),
}

/// A policy operation a key rule may grant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Sign any data.
    Sign,
    /// Sign SSH user-authentication requests only.
    SshAuth,
    /// Sign SSHSIG blobs of one namespace only.
    Sshsig(String),
    /// Unwrap age file keys.
    Decrypt,
    /// Raw X25519 key agreement.
    Agree,
    /// Decrypt Mixmaster header blocks.
    Mixmaster,
}

impl Operation {
    pub fn parse(text: &str) -> Option<Operation> {
        match text {
            "sign" => Some(Operation::Sign),
            "ssh-auth" => Some(Operation::SshAuth),
            "decrypt" => Some(Operation::Decrypt),
            "agree" => Some(Operation::Agree),
            "mixmaster" => Some(Operation::Mixmaster),
            _ => {
                let namespace = text.strip_prefix("sshsig:")?;
                if namespace.is_empty() || namespace.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return None;
                }
                Some(Operation::Sshsig(namespace.to_owned()))
            }
        }
    }

    /// Whether this grant covers a request counted as `requested` (the
    /// strings [`crate::keys::signing::SignedData::operation`] returns, or
    /// `decrypt`, `agree`, `mixmaster`).
    pub fn covers(&self, requested: &str) -> bool {
        match self {
            Operation::Sign => requested == "sign" || requested == "ssh-auth" || requested.starts_with("sshsig:"),
            Operation::SshAuth => requested == "ssh-auth",
            Operation::Sshsig(namespace) => requested.strip_prefix("sshsig:") == Some(namespace.as_str()),
            Operation::Decrypt => requested == "decrypt",
            // The shared secret unwraps anything sent to the key, so
            // allowing agree without decrypt would protect nothing.
            Operation::Agree => requested == "agree" || requested == "decrypt",
            Operation::Mixmaster => requested == "mixmaster",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operation::Sign => f.write_str("sign"),
            Operation::SshAuth => f.write_str("ssh-auth"),
            Operation::Sshsig(namespace) => write!(f, "sshsig:{namespace}"),
            Operation::Decrypt => f.write_str("decrypt"),
            Operation::Agree => f.write_str("agree"),
            Operation::Mixmaster => f.write_str("mixmaster"),
        }
    }
}

/// The `[daemon]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub socket_group: Option<Principal>,
    pub admins: Vec<Principal>,
    pub audit: AuditMode,
    pub audit_log: AuditLog,
    pub audit_fail_closed: bool,
    pub idle_seal_minutes: u64,
    pub allow_sha1: bool,
    /// Service-socket connections open at once, from all users; more are
    /// accepted and closed at once.
    pub max_connections: usize,
    /// Service-socket connections open at once from one uid.
    pub max_connections_per_uid: usize,
}

/// Default of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of `max_connections_per_uid`.
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 256;

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket_group: None,
            admins: Vec::new(),
            audit: AuditMode::Refusals,
            audit_log: AuditLog::Stderr,
            audit_fail_closed: true,
            idle_seal_minutes: 0,
            allow_sha1: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
        }
    }
}

/// A `[[key]]` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRule {
    pub name: String,
    pub users: Vec<Principal>,
    pub groups: Vec<Principal>,
    pub operations: Vec<Operation>,
    pub forwarding: bool,
    /// Minutes after unsealing during which the key may be used; 0: no
    /// limit.
    pub lifetime_minutes: u64,
    /// The line the rule starts on, for messages.
    pub line: usize,
}

/// The `[mixmaster]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MixmasterConfig {
    pub state_dir: Option<PathBuf>,
    pub anon_from: Option<String>,
    /// Any further settings, kept as text for the Mixmaster processor.
    pub extra: Vec<(String, String)>,
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub keys: Vec<KeyRule>,
    pub mixmaster: MixmasterConfig,
}

/// An error in the configuration file, naming the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    pub line: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    key: Vec<Spanned<RawKeyRule>>,
    #[serde(default)]
    mixmaster: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket_group: Option<Principal>,
    #[serde(default)]
    admins: Vec<Principal>,
    audit: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    audit_fail_closed: Option<bool>,
    idle_seal_minutes: Option<u64>,
    allow_sha1: Option<bool>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_uid: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyRule {
    name: String,
    #[serde(default)]
    users: Vec<Principal>,
    #[serde(default)]
    groups: Vec<Principal>,
    operations: Vec<Spanned<String>>,
    #[serde(default)]
    forwarding: bool,
    #[serde(default)]
    lifetime_minutes: u64,
}

impl Config {
    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            let line = error.span().map(|span| line_of(span.start));
            let detail = error.message().to_owned();
            let message = match line {
                Some(line) => format!("line {line}: {detail}"),
                None => detail,
            };
            ConfigError { message, line }
        })?;
        let at = |offset: usize, message: String| {
            let line = line_of(offset);
            ConfigError { message: format!("line {line}: {message}"), line: Some(line) }
        };

        let mut config = Config::default();
        if let Some(daemon) = raw.daemon {
            config.daemon.socket_group = daemon.socket_group;
            config.daemon.admins = daemon.admins;
            if let Some(audit) = daemon.audit {
                config.daemon.audit = match audit.get_ref().as_str() {
                    "refusals" => AuditMode::Refusals,
                    "requests" => AuditMode::Requests,
                    other => {
                        return Err(at(
                            audit.span().start,
                            format!("invalid audit mode {other:?}: expected \"refusals\" or \"requests\""),
                        ))
                    }
                };
            }
            config.daemon.audit_log = match &daemon.audit_log {
                None => AuditLog::Stderr,
                Some(log) if log.get_ref() == "-" => AuditLog::Stderr,
                Some(log) if log.get_ref().is_empty() => {
                    return Err(at(log.span().start, "audit_log is empty: expected \"-\" for stderr or a file path".to_owned()))
                }
                Some(log) => AuditLog::File(PathBuf::from(log.get_ref())),
            };
            if let Some(fail_closed) = daemon.audit_fail_closed {
                config.daemon.audit_fail_closed = fail_closed;
            }
            config.daemon.idle_seal_minutes = daemon.idle_seal_minutes.unwrap_or(0);
            config.daemon.allow_sha1 = daemon.allow_sha1.unwrap_or(false);
            for (setting, value, target) in [
                ("max_connections", daemon.max_connections, &mut config.daemon.max_connections),
                ("max_connections_per_uid", daemon.max_connections_per_uid, &mut config.daemon.max_connections_per_uid),
            ] {
                if let Some(value) = value {
                    if *value.get_ref() == 0 {
                        return Err(at(value.span().start, format!("{setting} must be at least 1")));
                    }
                    *target = value.into_inner();
                }
            }
        }

        for spanned in raw.key {
            let rule_line = line_of(spanned.span().start);
            let rule = spanned.into_inner();
            if config.keys.iter().any(|existing| existing.name == rule.name) {
                return Err(ConfigError {
                    message: format!("line {rule_line}: a second [[key]] rule for {:?}", rule.name),
                    line: Some(rule_line),
                });
            }
            let mut operations = Vec::new();
            for operation in rule.operations {
                let parsed = Operation::parse(operation.get_ref()).ok_or_else(|| {
                    at(
                        operation.span().start,
                        format!(
                            "unknown operation {:?}: expected sign, ssh-auth, sshsig:NAMESPACE, decrypt, agree or mixmaster",
                            operation.get_ref()
                        ),
                    )
                })?;
                operations.push(parsed);
            }
            config.keys.push(KeyRule {
                name: rule.name,
                users: rule.users,
                groups: rule.groups,
                operations,
                forwarding: rule.forwarding,
                lifetime_minutes: rule.lifetime_minutes,
                line: rule_line,
            });
        }

        if let Some(table) = raw.mixmaster {
            for (name, value) in table {
                let text = match &value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                match name.as_str() {
                    "state_dir" => config.mixmaster.state_dir = Some(PathBuf::from(text)),
                    "anon_from" => config.mixmaster.anon_from = Some(text),
                    _ => config.mixmaster.extra.push((name, text)),
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[daemon]
socket_group = "remailers"
admins = ["alice", "wheel"]
audit = "refusals"
audit_log = "-"
audit_fail_closed = true
idle_seal_minutes = 0
allow_sha1 = false

[[key]]
name = "remailer"
users = ["mix", 1001]
groups = ["remailers"]
operations = ["mixmaster"]
forwarding = false

[mixmaster]
state_dir = "/var/lib/keyward/mixmaster"
anon_from = "Anonymous <nobody@remailer.example>"
"#;

    #[test]
    fn parses_documented_example() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.daemon.socket_group, Some(Principal::Name("remailers".into())));
        assert_eq!(config.keys.len(), 1);
        assert_eq!(config.keys[0].users, vec![Principal::Name("mix".into()), Principal::Id(1001)]);
        assert_eq!(config.keys[0].operations, vec![Operation::Mixmaster]);
        assert_eq!(config.keys[0].line, 11);
        assert_eq!(config.mixmaster.anon_from.as_deref(), Some("Anonymous <nobody@remailer.example>"));
    }

    #[test]
    fn unknown_setting_names_its_line() {
        let error = Config::parse("[daemon]\nallow_sha1 = false\nsocket_grup = \"x\"\n").unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.message.contains("socket_grup"), "{error}");
    }

    #[test]
    fn unknown_operation_names_its_line() {
        let error = Config::parse("[[key]]\nname = \"k\"\noperations = [\"sign\",\n  \"decryp\"]\n").unwrap_err();
        assert_eq!(error.line, Some(4), "{error}");
    }

    #[test]
    fn bad_audit_mode_is_rejected() {
        let error = Config::parse("[daemon]\naudit = \"everything\"\n").unwrap_err();
        assert_eq!(error.line, Some(2));
    }

    #[test]
    fn sshsig_operation_covers_only_its_namespace() {
        let operation = Operation::parse("sshsig:git").unwrap();
        assert!(operation.covers("sshsig:git"));
        assert!(!operation.covers("sshsig:file"));
        assert!(!operation.covers("sign"));
        assert!(Operation::Sign.covers("sshsig:file"));
        assert!(Operation::parse("sshsig:").is_none());
    }

    #[test]
    fn bad_value_types_name_their_line() {
        let error = Config::parse("[daemon]\nallow_sha1 = false\nidle_seal_minutes = \"ten\"\n").unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        let error = Config::parse("[[key]]\nname = \"k\"\noperations = [\"sign\"]\nforwarding = \"yes\"\n").unwrap_err();
        assert_eq!(error.line, Some(4), "{error}");
        let error = Config::parse("[[key]]\nname = \"k\"\noperations = [\"sign\"]\nlifetime_minutes = -1\n").unwrap_err();
        assert_eq!(error.line, Some(4), "{error}");
    }

    #[test]
    fn key_settings_default_and_parse() {
        let config = Config::parse("[[key]]\nname = \"k\"\noperations = [\"ssh-auth\"]\n[[key]]\nname = \"j\"\noperations = []\nforwarding = true\nlifetime_minutes = 90\n").unwrap();
        assert!(!config.keys[0].forwarding);
        assert_eq!(config.keys[0].lifetime_minutes, 0);
        assert!(config.keys[1].forwarding);
        assert_eq!(config.keys[1].lifetime_minutes, 90);
        assert_eq!(config.daemon, DaemonConfig::default());
    }

    #[test]
    fn empty_audit_log_is_rejected() {
        let error = Config::parse("[daemon]\n\naudit_log = \"\"\n").unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        let config = Config::parse("[daemon]\naudit_log = \"/var/log/keyward/audit.log\"\n").unwrap();
        assert_eq!(config.daemon.audit_log, AuditLog::File(PathBuf::from("/var/log/keyward/audit.log")));
    }

    #[test]
    fn second_rule_for_a_key_is_an_error() {
        let error = Config::parse("[[key]]\nname = \"k\"\noperations = []\n\n[[key]]\nname = \"k\"\noperations = []\n").unwrap_err();
        assert_eq!(error.line, Some(5), "{error}");
    }

    #[test]
    fn connection_caps_default_and_parse() {
        let defaults = Config::parse("").unwrap();
        assert_eq!(defaults.daemon.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(defaults.daemon.max_connections_per_uid, DEFAULT_MAX_CONNECTIONS_PER_UID);

        let config = Config::parse("[daemon]\nmax_connections = 10\nmax_connections_per_uid = 3\n").unwrap();
        assert_eq!(config.daemon.max_connections, 10);
        assert_eq!(config.daemon.max_connections_per_uid, 3);
    }

    #[test]
    fn connection_cap_of_zero_is_rejected() {
        let error = Config::parse("[daemon]\nmax_connections_per_uid = 0\n").unwrap_err();
        assert_eq!(error.line, Some(2), "{error}");
        assert!(error.message.contains("max_connections_per_uid must be at least 1"), "{error}");
    }
}
