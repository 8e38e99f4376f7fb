//! The admin socket protocol, specified in `docs/PROTOCOL.md`.
//!
//! Frames as on the service socket (`uint32` length, at most
//! [`MAX_ADMIN_FRAME`] bytes). A request is a `byte` type and its fields; a
//! reply is [`REPLY_OK`] with a `string` (text or JSON) or [`REPLY_ERROR`]
//! with a `uint32` exit code and a `string` message.

use zeroize::Zeroizing;

use crate::wire::{Reader, WireError, Writer};

pub const MAX_ADMIN_FRAME: usize = 1024 * 1024;

pub const STATUS: u8 = 1;
pub const UNSEAL: u8 = 2;
pub const SEAL: u8 = 3;
pub const RELOAD: u8 = 4;
pub const KEYGEN: u8 = 5;
pub const REMOVE: u8 = 6;
pub const PASSWD: u8 = 7;
pub const IMPORT: u8 = 8;

pub const REPLY_OK: u8 = 0x80;
pub const REPLY_ERROR: u8 = 0x81;

/// A key to add through the daemon: metadata and private bytes.
pub struct NewKey {
    pub name: String,
    pub key_type: String,
    pub purpose: String,
    pub comment: String,
    pub public_key: Vec<u8>,
    pub not_before: u64,
    pub not_after: u64,
    pub attributes: Vec<(String, String)>,
    pub private: Zeroizing<Vec<u8>>,
}

/// An admin request. Passphrases and private keys are zeroized on drop.
pub enum AdminRequest {
    Status,
    Unseal { passphrase: Zeroizing<Vec<u8>> },
    Seal,
    Reload,
    Keygen { key_type: String, name: String, purpose: String, comment: String, not_before: u64, not_after: u64 },
    Remove { name: String },
    Passwd { old: Zeroizing<Vec<u8>>, new: Zeroizing<Vec<u8>> },
    Import { keys: Vec<NewKey> },
}

impl std::fmt::Debug for AdminRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminRequest::Status => "Status",
            AdminRequest::Unseal { .. } => "Unseal",
            AdminRequest::Seal => "Seal",
            AdminRequest::Reload => "Reload",
            AdminRequest::Keygen { .. } => "Keygen",
            AdminRequest::Remove { .. } => "Remove",
            AdminRequest::Passwd { .. } => "Passwd",
            AdminRequest::Import { .. } => "Import",
        })
    }
}

fn utf8(reader: &mut Reader<'_>) -> Result<String, WireError> {
    Ok(reader.utf8()?.to_owned())
}

impl AdminRequest {
    pub fn parse(body: &[u8]) -> Result<AdminRequest, WireError> {
        let mut reader = Reader::new(body);
        let request = match reader.u8()? {
            STATUS => AdminRequest::Status,
            UNSEAL => AdminRequest::Unseal { passphrase: Zeroizing::new(reader.string()?.to_vec()) },
            SEAL => AdminRequest::Seal,
            RELOAD => AdminRequest::Reload,
            KEYGEN => AdminRequest::Keygen {
                key_type: utf8(&mut reader)?,
                name: utf8(&mut reader)?,
                purpose: utf8(&mut reader)?,
                comment: utf8(&mut reader)?,
                not_before: reader.u64()?,
                not_after: reader.u64()?,
            },
            REMOVE => AdminRequest::Remove { name: utf8(&mut reader)? },
            PASSWD => AdminRequest::Passwd {
                old: Zeroizing::new(reader.string()?.to_vec()),
                new: Zeroizing::new(reader.string()?.to_vec()),
            },
            IMPORT => {
                let count = reader.u32()? as usize;
                // Each key takes at least 50 bytes, so a count larger than
                // that allows is malformed; no allocation is sized by it.
                if count > reader.remaining() / 50 + 1 {
                    return Err(WireError("key count exceeds the message"));
                }
                let mut keys = Vec::new();
                for _ in 0..count {
                    let name = utf8(&mut reader)?;
                    let key_type = utf8(&mut reader)?;
                    let purpose = utf8(&mut reader)?;
                    let comment = utf8(&mut reader)?;
                    let public_key = reader.string()?.to_vec();
                    let not_before = reader.u64()?;
                    let not_after = reader.u64()?;
                    let attribute_count = reader.u32()? as usize;
                    if attribute_count > reader.remaining() / 8 {
                        return Err(WireError("attribute count exceeds the message"));
                    }
                    let mut attributes = Vec::new();
                    for _ in 0..attribute_count {
                        attributes.push((utf8(&mut reader)?, utf8(&mut reader)?));
                    }
                    let private = Zeroizing::new(reader.string()?.to_vec());
                    keys.push(NewKey { name, key_type, purpose, comment, public_key, not_before, not_after, attributes, private });
                }
                AdminRequest::Import { keys }
            }
            _ => return Err(WireError("unknown admin request")),
        };
        reader.finish()?;
        Ok(request)
    }

    /// Encodes the request. The result holds secrets for some requests, so
    /// it comes zeroizing.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut body = Zeroizing::new(Vec::new());
        match self {
            AdminRequest::Status => body.put_u8(STATUS),
            AdminRequest::Unseal { passphrase } => {
                body.put_u8(UNSEAL);
                body.put_string(passphrase);
            }
            AdminRequest::Seal => body.put_u8(SEAL),
            AdminRequest::Reload => body.put_u8(RELOAD),
            AdminRequest::Keygen { key_type, name, purpose, comment, not_before, not_after } => {
                body.put_u8(KEYGEN);
                body.put_string(key_type.as_bytes());
                body.put_string(name.as_bytes());
                body.put_string(purpose.as_bytes());
                body.put_string(comment.as_bytes());
                body.put_u64(*not_before);
                body.put_u64(*not_after);
            }
            AdminRequest::Remove { name } => {
                body.put_u8(REMOVE);
                body.put_string(name.as_bytes());
            }
            AdminRequest::Passwd { old, new } => {
                body.put_u8(PASSWD);
                body.put_string(old);
                body.put_string(new);
            }
            AdminRequest::Import { keys } => {
                body.put_u8(IMPORT);
                body.put_u32(keys.len() as u32);
                for key in keys {
                    body.put_string(key.name.as_bytes());
                    body.put_string(key.key_type.as_bytes());
                    body.put_string(key.purpose.as_bytes());
                    body.put_string(key.comment.as_bytes());
                    body.put_string(&key.public_key);
                    body.put_u64(key.not_before);
                    body.put_u64(key.not_after);
                    body.put_u32(key.attributes.len() as u32);
                    for (name, value) in &key.attributes {
                        body.put_string(name.as_bytes());
                        body.put_string(value.as_bytes());
                    }
                    body.put_string(&key.private);
                }
            }
        }
        body
    }
}

/// An admin reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminReply {
    Ok(String),
    /// `code` is the exit code the CLI should use.
    Error { code: u32, message: String },
}

impl AdminReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            AdminReply::Ok(text) => {
                body.put_u8(REPLY_OK);
                body.put_string(text.as_bytes());
            }
            AdminReply::Error { code, message } => {
                body.put_u8(REPLY_ERROR);
                body.put_u32(*code);
                body.put_string(message.as_bytes());
            }
        }
        body
    }

    pub fn parse(body: &[u8]) -> Result<AdminReply, WireError> {
        let mut reader = Reader::new(body);
        let reply = match reader.u8()? {
            REPLY_OK => AdminReply::Ok(utf8(&mut reader)?),
            REPLY_ERROR => AdminReply::Error { code: reader.u32()?, message: utf8(&mut reader)? },
            _ => return Err(WireError("unknown admin reply")),
        };
        reader.finish()?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_round_trips() {
        let request = AdminRequest::Import {
            keys: vec![NewKey {
                name: "k".into(),
                key_type: "ed25519".into(),
                purpose: "sign".into(),
                comment: "c".into(),
                public_key: vec![1, 2],
                not_before: 0,
                not_after: 9,
                attributes: vec![("a".into(), "b".into())],
                private: Zeroizing::new(vec![3; 32]),
            }],
        };
        let parsed = AdminRequest::parse(&request.encode()).unwrap();
        let AdminRequest::Import { keys } = parsed else { panic!("wrong request") };
        assert_eq!(keys[0].attributes, vec![("a".to_owned(), "b".to_owned())]);
        assert_eq!(keys[0].private.as_slice(), &[3; 32]);
    }

    #[test]
    fn rejects_huge_import_count() {
        let mut body = vec![IMPORT];
        body.put_u32(u32::MAX);
        assert!(AdminRequest::parse(&body).is_err());
    }

    #[test]
    fn rejects_unknown_type_and_trailing_bytes() {
        assert!(AdminRequest::parse(&[99]).is_err());
        assert!(AdminRequest::parse(&[SEAL, 0]).is_err());
    }
}
