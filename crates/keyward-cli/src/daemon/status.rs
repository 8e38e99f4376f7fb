//! The status document `keyward status --json` prints.

use std::time::Instant;

use serde_json::{json, Value};

use super::state::DaemonState;

pub fn document(state: &DaemonState, started: Instant) -> Value {
    let service = &state.service;
    let keys: Vec<Value> = service
        .public_keys()
        .iter()
        .map(|key| {
            json!({
                "name": key.meta.name,
                "type": key.meta.key_type,
                "purpose": key.meta.purpose,
                "fingerprint": key.fingerprint,
            })
        })
        .collect();
    json!({
        "state": service.state().as_str(),
        "pid": std::process::id(),
        "uptime_s": started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "keystore": state.keystore_dir.display().to_string(),
        "socket_dir": state.socket_dir.display().to_string(),
        "keys": keys,
        "counters": service.counters(),
        "protections": protections(),
        "audit": {
            "mode": state.audit.mode().as_str(),
            "healthy": state.audit.healthy(),
        },
    })
}

/// The protections in force, measured now rather than remembered.
fn protections() -> Value {
    let dumpable = rustix::process::dumpable_behavior()
        .map(|behavior| behavior != rustix::process::DumpableBehavior::NotDumpable)
        .unwrap_or(true);
    let core_limit = rustix::process::getrlimit(rustix::process::Resource::Core).current.unwrap_or(u64::MAX);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .unwrap_or(0)
    };
    let (locked, resident) = (field("VmLck:"), field("VmRSS:"));
    let swap_on_host = std::fs::read_to_string("/proc/swaps").map(|swaps| swaps.lines().count() > 1).unwrap_or(false);
    json!({
        "memory": keyward_protect::memory::memory_mode().as_str(),
        "dumpable": dumpable,
        "core_limit": core_limit,
        "mlockall": resident > 0 && locked >= resident,
        "swap_on_host": swap_on_host,
    })
}
