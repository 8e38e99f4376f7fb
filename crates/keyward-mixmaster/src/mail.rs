//! Mails a remailer hands to its mail system: the final delivery and the
//! packet for the next remailer.

use md5::{Digest, Md5};

use crate::armor::armor_packet;
use crate::unwrap::FinalMail;

/// Values from the `[mixmaster]` config section that go into delivered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalMailConfig {
    /// `From:` of every delivered mail, e.g. `Anonymous <anon@remailer.example>`.
    pub anon_from: String,
    /// Address named in the `Comments:` notice for abuse reports.
    pub complaints: String,
    /// Domain of the `Message-ID:` (`<MD5 of the body in hex@domain>`).
    pub message_id_domain: String,
}

/// Formats the mail to deliver, as Mixmaster 3.0 and 3.2 do: `From:`, the
/// `Comments:` notice, `To:`, the packet's header lines, `Message-ID:`, a
/// blank line and the body. There is no `Date:` header; the MTA adds one.
pub fn format_final_mail(mail: &FinalMail, config: &FinalMailConfig) -> Vec<u8> {
    let mut out = Vec::with_capacity(mail.body.len() + 512);
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(config.anon_from.as_bytes());
    out.extend_from_slice(b"\nComments: This message did not originate from the Sender address above.\n");
    out.extend_from_slice(b"\tIt was remailed automatically by anonymizing remailer software.\n");
    out.extend_from_slice(b"\tPlease report problems or inappropriate use to the\n");
    out.extend_from_slice(b"\tremailer administrator at <");
    out.extend_from_slice(config.complaints.as_bytes());
    out.extend_from_slice(b">.\n");
    // NOTE: every test packet has one destination field; several fields are
    // joined into one `To:` line here, which is not checked against Mixmaster.
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(&mail.recipients.join(&b","[..]));
    out.push(b'\n');
    for header in &mail.headers {
        out.extend_from_slice(header);
        out.push(b'\n');
    }
    out.extend_from_slice(b"Message-ID: <");
    out.extend_from_slice(hex::encode(Md5::digest(&mail.body)).as_bytes());
    out.push(b'@');
    out.extend_from_slice(config.message_id_domain.as_bytes());
    out.extend_from_slice(b">\n\n");
    out.extend_from_slice(&mail.body);
    out
}

/// Formats the mail that carries a packet to the next remailer: `From:` this
/// remailer, `To:` the next one, then `::`, `Remailer-Type:` and the armour.
pub fn format_next_hop_mail(from: &[u8], to: &[u8], remailer_type: &[u8], packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() * 4 / 3 + 1024);
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\nTo: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\n\n::\nRemailer-Type: ");
    out.extend_from_slice(remailer_type);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(armor_packet(packet).as_bytes());
    out
}
