//! Mixmaster Type II support for Keyward: `secring.mix` import, the `key.txt`
//! block, the per-packet RSA operation and the symmetric packet processing.
//!
//! The remailer's RSA key stays in the daemon. For each packet the caller runs
//! [`parse_packet`], has the daemon run [`RsaBlockKey::decrypt_fixed`] on
//! the packet's RSA block, and then calls [`Packet::unwrap`] with the result. Every
//! function takes its inputs as arguments: nothing here reads files, the
//! environment or the clock (time is a `u64` of seconds since the epoch).
#![forbid(unsafe_code)]

mod armor;
mod date;
mod keyid;
mod keytxt;
mod mail;
mod packet;
mod reassembly;
mod rsa_block;
mod secring;
mod symmetric;
mod unwrap;

pub use armor::{armor_packet, dearmor_packet, ArmorError, PACKET_LEN};
pub use date::{
    days_to_ymd, format_date, key_usable, parse_date, KEY_GRACE_PERIOD_SECS, SECONDS_PER_DAY,
};
pub use keyid::{KeyId, KeyIdParseError};
pub use keytxt::{capability_line, key_txt_block, RemailerInfo};
pub use mail::{format_final_mail, format_next_hop_mail, FinalMailConfig};
pub use packet::{parse_packet, Packet, RsaFormat};
pub use reassembly::{Reassembly, ReassemblyError, ReplayCache};
pub use rsa_block::{BlockError, RsaBlockKey};
pub use secring::{parse_secring, SecretKey, SecringError};
pub use unwrap::{
    parse_final_payload, FinalMail, Invalid, InvalidReason, Unwrapped, FUTURE_TOLERANCE_DAYS,
    MAX_PACKET_AGE_DAYS,
};
