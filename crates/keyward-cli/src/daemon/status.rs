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

/// Measures the protections in force now, rather than reporting what was configured.
fn protections() -> Value {
    let measured = keyward_protect::measure();
    json!({
        "memory": measured.memory.as_str(),
        "dumpable": measured.dumpable,
        "core_limit": measured.core_limit,
        "mlockall": measured.mlockall,
        "swap_on_host": measured.swap_on_host,
    })
}
