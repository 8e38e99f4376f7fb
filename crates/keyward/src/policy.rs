//! Who may use which key for what, resolved from the configuration.
//!
//! A key with a `[[key]]` rule may be used only by the users and groups the
//! rule names, for the operations it names and the key's purpose allows. A
//! key without a rule may be used only by the daemon's own user, for what
//! its purpose allows. Admins manage keys but use one only if a rule names
//! them.

use std::collections::HashMap;

use crate::config::{Config, ConfigError, KeyRule, Operation, Principal};
use crate::keys::Purpose;

/// The credentials of a connected client, taken by the kernel at
/// `connect(2)` and read before any byte of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`SO_PEERGROUPS`).
    pub groups: Vec<u32>,
    /// A hint only: a pid can be reused.
    pub pid: Option<i32>,
    /// A hint only: read from `/proc/PID/exe` when permitted.
    pub exe: Option<String>,
}

impl Peer {
    fn in_any_group(&self, gids: &[u32]) -> bool {
        gids.contains(&self.gid) || self.groups.iter().any(|group| gids.contains(group))
    }
}

/// Looks up user and group names (the daemon uses the system's databases).
pub trait NameResolver {
    fn user_id(&self, name: &str) -> Option<u32>;
    fn group_id(&self, name: &str) -> Option<u32>;
}

/// A resolver that resolves no user or group names, so a configuration
/// must give users and groups by number. For tests and fuzzing, where no
/// user database applies.
pub struct NoNames;

impl NameResolver for NoNames {
    fn user_id(&self, _: &str) -> Option<u32> {
        None
    }
    fn group_id(&self, _: &str) -> Option<u32> {
        None
    }
}

#[derive(Clone, Debug)]
struct ResolvedRule {
    uids: Vec<u32>,
    gids: Vec<u32>,
    operations: Vec<Operation>,
    forwarding: bool,
    lifetime_seconds: Option<u64>,
}

/// The resolved policy the dispatcher checks on every request.
#[derive(Clone, Debug)]
pub struct Policy {
    pub daemon_uid: u32,
    pub allow_sha1: bool,
    rules: HashMap<String, ResolvedRule>,
    admin_uids: Vec<u32>,
    admin_gids: Vec<u32>,
}

impl Policy {
    /// The policy of a daemon with no configuration file.
    pub fn default_for(daemon_uid: u32) -> Policy {
        Policy { daemon_uid, allow_sha1: false, rules: HashMap::new(), admin_uids: Vec::new(), admin_gids: Vec::new() }
    }

    /// Resolves names in `config` to ids.
    pub fn resolve(config: &Config, daemon_uid: u32, names: &dyn NameResolver) -> Result<Policy, ConfigError> {
        let mut policy = Policy::default_for(daemon_uid);
        policy.allow_sha1 = config.daemon.allow_sha1;

        for admin in &config.daemon.admins {
            match admin {
                Principal::Id(uid) => policy.admin_uids.push(*uid),
                Principal::Name(name) => {
                    // An admin entry may name a user or a group.
                    let mut found = false;
                    if let Some(uid) = names.user_id(name) {
                        policy.admin_uids.push(uid);
                        found = true;
                    }
                    if let Some(gid) = names.group_id(name) {
                        policy.admin_gids.push(gid);
                        found = true;
                    }
                    if !found {
                        return Err(ConfigError {
                            message: format!("admins: no user or group named {name:?}"),
                            line: None,
                        });
                    }
                }
            }
        }

        for rule in &config.keys {
            policy.rules.insert(rule.name.clone(), resolve_rule(rule, names)?);
        }
        Ok(policy)
    }

    /// Whether `peer` may use the admin socket: root, the daemon's user and
    /// the configured admins.
    pub fn is_admin(&self, peer: &Peer) -> bool {
        peer.uid == 0 || peer.uid == self.daemon_uid || self.admin_uids.contains(&peer.uid) || peer.in_any_group(&self.admin_gids)
    }

    /// Whether a rule exists for the key.
    pub fn has_rule(&self, key_name: &str) -> bool {
        self.rules.contains_key(key_name)
    }

    /// Checks whether `peer` is among those who may use the key at all: the
    /// users and groups of its rule, or the daemon's own user for a key
    /// without a rule. Operations are not checked here.
    pub fn may_use(&self, peer: &Peer, key_name: &str) -> bool {
        match self.rules.get(key_name) {
            None => peer.uid == self.daemon_uid,
            Some(rule) => rule.uids.contains(&peer.uid) || peer.in_any_group(&rule.gids),
        }
    }

    /// Checks whether `peer` may use the key named `key_name` with `purpose`
    /// for the operation `requested` (`sign`, `ssh-auth`, `sshsig:NS`,
    /// `decrypt`, `agree` or `mixmaster`). The purpose bounds the rule:
    /// policy can only narrow it. A forwarded connection may only make
    /// `ssh-auth` signatures, and only with keys whose rule allows
    /// forwarding.
    pub fn permits(&self, peer: &Peer, key_name: &str, purpose: Purpose, requested: &str, forwarded: bool) -> bool {
        if !purpose_covers(purpose, requested) || !self.may_use(peer, key_name) {
            return false;
        }
        match self.rules.get(key_name) {
            None => !forwarded,
            Some(rule) => {
                let what = rule.operations.iter().any(|operation| operation.covers(requested));
                let how = !forwarded || (rule.forwarding && requested == "ssh-auth");
                what && how
            }
        }
    }

    /// Lists the operations `peer` may use the key for, as listings show
    /// them. These are the rule's operations narrowed to what the purpose
    /// allows, where `sshsig:*` means any namespace. The list is empty when
    /// the peer may not use the key.
    pub fn operations_for(&self, peer: &Peer, key_name: &str, purpose: Purpose) -> Vec<String> {
        if !self.may_use(peer, key_name) {
            return Vec::new();
        }
        let mut operations: Vec<String> = Vec::new();
        match self.rules.get(key_name) {
            None => operations.extend(purpose_operations(purpose).iter().map(|&op| op.to_owned())),
            Some(rule) => {
                for granted in &rule.operations {
                    for effective in effective_operations(granted, purpose) {
                        if !operations.contains(&effective) {
                            operations.push(effective);
                        }
                    }
                }
            }
        }
        operations
    }

    /// Checks whether `peer` may sign with the key over a forwarded
    /// connection.
    pub fn forwarding_allowed(&self, peer: &Peer, key_name: &str, purpose: Purpose) -> bool {
        self.permits(peer, key_name, purpose, "ssh-auth", true)
    }

    /// Returns how long after unsealing the key may be used, in seconds,
    /// or `None` for no limit.
    pub fn lifetime(&self, key_name: &str) -> Option<u64> {
        self.rules.get(key_name).and_then(|rule| rule.lifetime_seconds)
    }

    /// Names of keys that have rules, to warn about rules for missing keys.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }
}

fn resolve_rule(rule: &KeyRule, names: &dyn NameResolver) -> Result<ResolvedRule, ConfigError> {
    let unknown = |kind: &str, name: &str| ConfigError {
        message: format!("line {}: key {:?}: no {kind} named {name:?}", rule.line, rule.name),
        line: Some(rule.line),
    };
    let mut uids = Vec::new();
    for user in &rule.users {
        uids.push(match user {
            Principal::Id(uid) => *uid,
            Principal::Name(name) => names.user_id(name).ok_or_else(|| unknown("user", name))?,
        });
    }
    let mut gids = Vec::new();
    for group in &rule.groups {
        gids.push(match group {
            Principal::Id(gid) => *gid,
            Principal::Name(name) => names.group_id(name).ok_or_else(|| unknown("group", name))?,
        });
    }
    let lifetime_seconds = (rule.lifetime_minutes > 0).then(|| rule.lifetime_minutes.saturating_mul(60));
    Ok(ResolvedRule { uids, gids, operations: rule.operations.clone(), forwarding: rule.forwarding, lifetime_seconds })
}

/// The operations a purpose allows at most.
fn purpose_operations(purpose: Purpose) -> &'static [&'static str] {
    match purpose {
        Purpose::Sign => &["sign"],
        Purpose::SshAuth => &["ssh-auth"],
        Purpose::SshHost => &["sign"],
        Purpose::Sshsig => &["sshsig:*"],
        Purpose::Decrypt => &["decrypt"],
        Purpose::Agree => &["agree", "decrypt"],
        Purpose::Mixmaster => &["mixmaster"],
    }
}

/// Maps a granted operation to what it allows for a key of `purpose`.
fn effective_operations(granted: &Operation, purpose: Purpose) -> Vec<String> {
    let effective: &[&str] = match (granted, purpose) {
        (Operation::Sign, Purpose::Sign | Purpose::SshHost) => &["sign"],
        (Operation::Sign | Operation::SshAuth, Purpose::SshAuth) | (Operation::SshAuth, Purpose::Sign) => &["ssh-auth"],
        (Operation::Sign, Purpose::Sshsig) => &["sshsig:*"],
        (Operation::Sshsig(namespace), Purpose::Sign | Purpose::Sshsig) => return vec![format!("sshsig:{namespace}")],
        (Operation::Decrypt, Purpose::Decrypt | Purpose::Agree) => &["decrypt"],
        (Operation::Agree, Purpose::Agree) => &["agree"],
        (Operation::Mixmaster, Purpose::Mixmaster) => &["mixmaster"],
        _ => &[],
    };
    effective.iter().map(|&op| op.to_owned()).collect()
}

/// Checks whether a key of `purpose` can serve a request counted as
/// `requested` at all. Which data a signing purpose accepts is checked on
/// the data itself (`keys::signing::purpose_allows`), and the operation a
/// signature counts as comes from the same classification.
fn purpose_covers(purpose: Purpose, requested: &str) -> bool {
    match purpose {
        Purpose::Sign => requested == "sign" || requested == "ssh-auth" || requested.starts_with("sshsig:"),
        Purpose::SshAuth => requested == "ssh-auth",
        Purpose::SshHost => requested == "sign",
        Purpose::Sshsig => requested.starts_with("sshsig:"),
        Purpose::Decrypt => requested == "decrypt",
        Purpose::Agree => requested == "agree" || requested == "decrypt",
        Purpose::Mixmaster => requested == "mixmaster",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names;

    impl NameResolver for Names {
        fn user_id(&self, name: &str) -> Option<u32> {
            (name == "mix").then_some(1001)
        }
        fn group_id(&self, name: &str) -> Option<u32> {
            (name == "deploy").then_some(2000)
        }
    }

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer { uid, gid, groups: groups.to_vec(), pid: None, exe: None }
    }

    fn policy(text: &str) -> Policy {
        Policy::resolve(&Config::parse(text).unwrap(), 500, &Names).unwrap()
    }

    #[test]
    fn key_without_rule_is_daemon_users_only() {
        let policy = policy("");
        assert!(policy.permits(&peer(500, 500, &[]), "k", Purpose::Sign, "sign", false));
        assert!(!policy.permits(&peer(0, 0, &[]), "k", Purpose::Sign, "sign", false));
        assert!(!policy.permits(&peer(501, 500, &[]), "k", Purpose::Sign, "sign", false));
    }

    #[test]
    fn rule_replaces_daemon_user_access() {
        let policy = policy("[[key]]\nname = \"k\"\nusers = [\"mix\"]\ngroups = [\"deploy\"]\noperations = [\"sign\"]\n");
        assert!(policy.permits(&peer(1001, 1, &[]), "k", Purpose::Sign, "sign", false));
        assert!(policy.permits(&peer(7, 7, &[2000]), "k", Purpose::Sign, "ssh-auth", false));
        assert!(!policy.permits(&peer(500, 500, &[]), "k", Purpose::Sign, "sign", false));
    }

    #[test]
    fn purpose_bounds_rule() {
        let policy = policy("[[key]]\nname = \"k\"\nusers = [1001]\noperations = [\"sign\", \"decrypt\"]\n");
        assert!(!policy.permits(&peer(1001, 1, &[]), "k", Purpose::Decrypt, "sign", false));
        assert!(policy.permits(&peer(1001, 1, &[]), "k", Purpose::Decrypt, "decrypt", false));
    }

    #[test]
    fn forwarded_connections_need_forwarding_rule() {
        let with = policy("[[key]]\nname = \"k\"\nusers = [1001]\noperations = [\"ssh-auth\"]\nforwarding = true\n");
        let without = policy("[[key]]\nname = \"k\"\nusers = [1001]\noperations = [\"ssh-auth\"]\n");
        let client = peer(1001, 1, &[]);
        assert!(with.permits(&client, "k", Purpose::Sign, "ssh-auth", true));
        assert!(!with.permits(&client, "k", Purpose::Sign, "sign", true));
        assert!(!without.permits(&client, "k", Purpose::Sign, "ssh-auth", true));
    }

    #[test]
    fn unknown_user_names_line() {
        let config = Config::parse("\n[[key]]\nname = \"k\"\nusers = [\"nobody-here\"]\noperations = [\"sign\"]\n").unwrap();
        let error = Policy::resolve(&config, 500, &Names).unwrap_err();
        assert_eq!(error.line, Some(2));
    }

    #[test]
    fn admins_by_user_or_group() {
        let policy = policy("[daemon]\nadmins = [\"mix\", \"deploy\", 42]\n");
        assert!(policy.is_admin(&peer(1001, 1, &[])));
        assert!(policy.is_admin(&peer(9, 9, &[2000])));
        assert!(policy.is_admin(&peer(42, 42, &[])));
        assert!(policy.is_admin(&peer(0, 0, &[])));
        assert!(policy.is_admin(&peer(500, 500, &[])));
        assert!(!policy.is_admin(&peer(9, 9, &[])));
    }

    #[test]
    fn listing_narrows_rule_to_purpose() {
        let policy = policy(
            "[[key]]\nname = \"a\"\nusers = [1001]\noperations = [\"sign\", \"sshsig:git\"]\n\
             [[key]]\nname = \"b\"\nusers = [1001]\noperations = [\"sshsig:git\"]\n",
        );
        let client = peer(1001, 1, &[]);
        assert_eq!(policy.operations_for(&client, "a", Purpose::SshAuth), vec!["ssh-auth".to_owned()]);
        assert_eq!(policy.operations_for(&client, "a", Purpose::Sign), vec!["sign".to_owned(), "sshsig:git".to_owned()]);
        assert!(policy.operations_for(&client, "b", Purpose::SshAuth).is_empty());
        assert!(policy.operations_for(&peer(1002, 1, &[]), "a", Purpose::Sign).is_empty());
        assert_eq!(policy.operations_for(&peer(500, 500, &[]), "c", Purpose::Agree), vec!["agree".to_owned(), "decrypt".to_owned()]);
    }

    #[test]
    fn sshsig_rule_signs_only_its_namespace() {
        let policy = policy("[[key]]\nname = \"k\"\ngroups = [2000]\noperations = [\"sshsig:git\"]\n");
        let member = peer(7, 7, &[2000]);
        assert!(policy.permits(&member, "k", Purpose::Sign, "sshsig:git", false));
        assert!(!policy.permits(&member, "k", Purpose::Sign, "sshsig:file", false));
        assert!(!policy.permits(&member, "k", Purpose::Sign, "sign", false));
        assert!(!policy.permits(&member, "k", Purpose::Sign, "ssh-auth", false));
    }

    #[test]
    fn purpose_limits_signature_kind() {
        let policy = policy("[[key]]\nname = \"k\"\nusers = [1001]\noperations = [\"sign\"]\n");
        let client = peer(1001, 1, &[]);
        assert!(policy.permits(&client, "k", Purpose::SshAuth, "ssh-auth", false));
        assert!(!policy.permits(&client, "k", Purpose::SshAuth, "sign", false));
        assert!(!policy.permits(&client, "k", Purpose::SshHost, "ssh-auth", false));
        assert!(!policy.permits(&client, "k", Purpose::Sshsig, "ssh-auth", false));
    }

    #[test]
    fn key_without_rule_is_not_forwarded() {
        let policy = policy("");
        assert!(!policy.permits(&peer(500, 500, &[]), "k", Purpose::SshAuth, "ssh-auth", true));
    }
}
