//! The request dispatcher with no socket: random peers send random frames
//! on one connection to a daemon holding fixed test keys, sealed or not.
//! Private-key work runs inline.
//!
//! Input: a peer byte, a time byte, then frames as a 16-bit big-endian
//! length and that many bytes.
#![no_main]

use keyward::policy::Peer;
use keyward::service::Connection;
use keyward_fuzz::{fixture, DAEMON_UID, RULE_UID, WINDOW};
use libfuzzer_sys::fuzz_target;

const UIDS: [u32; 4] = [DAEMON_UID, 0, RULE_UID, 4242];
const TIMES: [u64; 4] = [WINDOW.0 - 1, WINDOW.0 + 1, WINDOW.1 + 1, 0];
const MAX_FRAMES: usize = 8;

fuzz_target!(|data: &[u8]| {
    let [peer_byte, time_byte, rest @ ..] = data else { return };
    let fixture = fixture();
    let service = if peer_byte & 0x80 != 0 { &fixture.sealed } else { &fixture.unsealed };
    let uid = UIDS[usize::from(peer_byte & 3)];
    let groups = if peer_byte & 4 != 0 { vec![uid, 27] } else { Vec::new() };
    let peer = Peer { uid, gid: uid, groups, pid: Some(4321), exe: None };
    let now = TIMES[usize::from(time_byte & 3)] + u64::from(time_byte >> 2);

    let mut connection = Connection::new(peer);
    let mut input = rest;
    for _ in 0..MAX_FRAMES {
        let [high, low, tail @ ..] = input else { return };
        let length = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (body, next) = tail.split_at(length);
        input = next;
        let reply = service.handle(&mut connection, body, now).into_body();
        assert!(!reply.is_empty(), "the dispatcher returned an empty reply");
    }
});
