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

/// Header names the remailer sets itself; packet header lines with these
/// names are left out.
///
/// NOTE: stock Mixmaster can pass a sender-supplied `From:` on (it then adds
/// `Sender:` and a disclaimer); Keyward always uses the configured address.
const REPLACED_HEADERS: [&[u8]; 3] = [b"from", b"sender", b"message-id"];

fn header_is(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len() && line[name.len()] == b':' && line[..name.len()].eq_ignore_ascii_case(name)
}

/// Formats the mail to deliver, as Mixmaster 3.0 and 3.2 do: `From:`, the
/// `Comments:` notice, `To:`, the packet's header lines, `Message-ID:`, a
/// blank line and the body. There is no `Date:` header; the MTA adds one.
/// Packet header lines named `From`, `Sender` or `Message-ID` are left out,
/// and a line without a colon gets the prefix `X-Invalid: `.
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

    // Mixmaster joins several destination fields with commas into one line.
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(&mail.recipients.join(&b","[..]));
    out.push(b'\n');
    for header in &mail.headers {
        if header.is_empty() || REPLACED_HEADERS.iter().any(|name| header_is(header, name)) {
            continue;
        }
        // As Mixmaster does, a line that is not a header gets a header name.
        if !header.contains(&b':') {
            out.extend_from_slice(b"X-Invalid: ");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FinalMailConfig {
        FinalMailConfig {
            anon_from: "Anonymous <anon@remailer.example>".into(),
            complaints: "abuse@remailer.example".into(),
            message_id_domain: "remailer.example".into(),
        }
    }

    #[test]
    fn final_mail_replaces_sender_headers() {
        let mail = FinalMail {
            recipients: vec![b"a@example.invalid".to_vec(), b"b@example.invalid".to_vec()],
            subject: None,
            headers: vec![
                b"From: forged@example.invalid".to_vec(),
                b"message-id: <x@y>".to_vec(),
                b"Sender: z".to_vec(),
                b"no colon here".to_vec(),
                Vec::new(),
                b"From-Like: kept".to_vec(),
            ],
            body: b"hi\n".to_vec(),
        };
        let text = String::from_utf8(format_final_mail(&mail, &config())).unwrap();
        assert!(text.starts_with("From: Anonymous <anon@remailer.example>\n"), "{text}");
        assert!(!text.contains("forged"), "{text}");
        assert!(!text.contains("<x@y>"), "{text}");
        assert!(!text.contains("Sender: z"), "{text}");
        assert!(text.contains("\nTo: a@example.invalid,b@example.invalid\n"), "{text}");
        assert!(text.contains("\nX-Invalid: no colon here\n"), "{text}");
        assert!(text.contains("\nFrom-Like: kept\n"), "{text}");
        assert!(text.ends_with(">\n\nhi\n"), "{text}");
    }
}
