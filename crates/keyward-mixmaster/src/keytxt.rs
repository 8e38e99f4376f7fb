//! The public key file a remailer publishes (`key.txt`).
//!
//! ```text
//! s1k s1k@remailer.invalid b1db59dab510b4fffe3e3a9c558d5b80 2:3.0 C 2026-12-04 2027-12-29
//!
//! -----Begin Mix Key-----
//! b1db59dab510b4fffe3e3a9c558d5b80
//! 258
//! <base64 of: 2-byte little-endian bit count, n, e; 40 columns>
//! -----End Mix Key-----
//! ```

use base64::Engine;

use crate::date::format_date;
use crate::keyid::KeyId;
use crate::secring::public_blob;

/// Remailer details for the capability line of `key.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemailerInfo<'a> {
    /// Short name, e.g. `s1k`.
    pub name: &'a str,
    /// Mail address packets are sent to.
    pub address: &'a str,
    /// Software version after `2:`, e.g. `3.0`.
    pub version: &'a str,
    /// Capability letters, e.g. `C` (accepts compressed messages).
    pub options: &'a str,
}

/// Formats the capability line, ending in `\n`:
/// `name address keyid 2:version options created expires`.
///
/// `created` and `expires` are seconds since the epoch; only their UTC date is
/// written.
pub fn capability_line(info: &RemailerInfo<'_>, key_id: KeyId, created: u64, expires: u64) -> String {
    format!(
        "{} {} {} 2:{} {} {} {}\n",
        info.name,
        info.address,
        key_id,
        info.version,
        info.options,
        format_date(created),
        format_date(expires)
    )
}

/// Formats the `-----Begin Mix Key-----` block for a public key, ending in
/// `\n` after the end line. `n` and `e` are big-endian (leading zeros allowed).
pub fn key_txt_block(n: &[u8], e: &[u8], bits: usize, key_id: KeyId) -> String {
    let blob = public_blob(n, e, bits);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let mut out = String::with_capacity(b64.len() + b64.len() / 40 + 100);
    out.push_str("-----Begin Mix Key-----\n");
    out.push_str(&key_id.to_hex());
    out.push('\n');
    out.push_str(&blob.len().to_string());
    out.push('\n');
    for line in b64.as_bytes().chunks(40) {
        // Base64 output is ASCII, so every 40-byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----End Mix Key-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_line_matches_mixmaster_layout() {
        let info = RemailerInfo { name: "s1k", address: "s1k@remailer.invalid", version: "3.0", options: "C" };
        let id = KeyId::from_hex("b1db59dab510b4fffe3e3a9c558d5b80").unwrap();
        let created = crate::date::parse_date("2026-12-04").unwrap();
        let expires = crate::date::parse_date("2027-12-29").unwrap();
        assert_eq!(
            capability_line(&info, id, created, expires),
            "s1k s1k@remailer.invalid b1db59dab510b4fffe3e3a9c558d5b80 2:3.0 C 2026-12-04 2027-12-29\n"
        );
    }
}
