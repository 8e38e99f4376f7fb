//! Signing requests: what the data to be signed is, whether a key's purpose
//! allows signing it, and the signature in SSH encoding.

use super::rsa::RsaHash;
use super::{ecdsa, ed25519, LoadedKey, Private, Purpose};
use crate::wire::{Reader, Writer};

/// ssh-agent sign-request flags (RFC 9987 section 4.5.1).
pub const FLAG_RSA_SHA2_256: u32 = 0x02;
pub const FLAG_RSA_SHA2_512: u32 = 0x04;

/// SSH_MSG_USERAUTH_REQUEST (RFC 4252 section 7).
const SSH_MSG_USERAUTH_REQUEST: u8 = 50;
const SSHSIG_MAGIC: &[u8] = b"SSHSIG";
const HOSTKEYS_PROVE: &[u8] = b"hostkeys-prove-00@openssh.com";

/// What the data in a sign request is, as far as policy cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedData {
    /// An SSH user-authentication request (RFC 4252 section 7), possibly
    /// OpenSSH's host-bound form.
    UserAuth { user: String, key_blob: Vec<u8> },
    /// An SSHSIG blob (`ssh-keygen -Y sign`) in the given namespace.
    Sshsig { namespace: String },
    /// What an SSH server signs with its host key: an exchange hash, or an
    /// OpenSSH host-key proof.
    HostKey,
    /// Anything else.
    Other,
}

impl SignedData {
    /// Classifies `data` without trusting it: every parse failure means
    /// `Other`.
    pub fn classify(data: &[u8]) -> SignedData {
        if let Some(userauth) = parse_userauth(data) {
            return userauth;
        }
        if let Some(namespace) = parse_sshsig(data) {
            return SignedData::Sshsig { namespace };
        }
        if is_host_key_data(data) {
            return SignedData::HostKey;
        }
        SignedData::Other
    }

    /// The policy operation this signature counts as: `ssh-auth`,
    /// `sshsig:NAMESPACE` or `sign`.
    pub fn operation(&self) -> String {
        match self {
            SignedData::UserAuth { .. } => "ssh-auth".to_owned(),
            SignedData::Sshsig { namespace } => format!("sshsig:{namespace}"),
            SignedData::HostKey | SignedData::Other => "sign".to_owned(),
        }
    }
}

fn parse_userauth(data: &[u8]) -> Option<SignedData> {
    let mut reader = Reader::new(data);
    let session_id = reader.string().ok()?;
    // Session identifiers are hash outputs: 20 to 64 bytes.
    if !(20..=64).contains(&session_id.len()) {
        return None;
    }
    if reader.u8().ok()? != SSH_MSG_USERAUTH_REQUEST {
        return None;
    }
    let user = reader.utf8().ok()?.to_owned();
    let _service = reader.string().ok()?;
    let method = reader.string().ok()?;
    let hostbound = match method {
        b"publickey" => false,
        b"publickey-hostbound-v00@openssh.com" => true,
        _ => return None,
    };
    if !reader.bool().ok()? {
        return None;
    }
    let _algorithm = reader.string().ok()?;
    let key_blob = reader.string().ok()?.to_vec();
    if hostbound {
        let _host_key = reader.string().ok()?;
    }
    reader.finish().ok()?;
    Some(SignedData::UserAuth { user, key_blob })
}

fn parse_sshsig(data: &[u8]) -> Option<String> {
    let mut reader = Reader::new(data);
    if reader.take(SSHSIG_MAGIC.len()).ok()? != SSHSIG_MAGIC {
        return None;
    }
    let namespace = reader.utf8().ok()?.to_owned();
    let _reserved = reader.string().ok()?;
    let hash_algorithm = reader.string().ok()?;
    if hash_algorithm != b"sha256" && hash_algorithm != b"sha512" {
        return None;
    }
    let _hash = reader.string().ok()?;
    reader.finish().ok()?;
    if namespace.is_empty() {
        return None;
    }
    Some(namespace)
}

fn is_host_key_data(data: &[u8]) -> bool {
    // An exchange hash is the raw output of the key exchange's hash.
    if matches!(data.len(), 20 | 32 | 48 | 64) {
        return true;
    }
    let mut reader = Reader::new(data);
    let Ok(label) = reader.string() else { return false };
    label == HOSTKEYS_PROVE && reader.string().is_ok() && reader.string().is_ok() && reader.finish().is_ok()
}

/// The reason a signature was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignRefusal {
    /// The key's purpose does not cover this data.
    Purpose,
    /// RSA with SHA-1 was requested and is not enabled.
    Sha1,
    /// The key cannot sign at all (not a signing type) or failed.
    NotSigningKey,
}

impl SignRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            SignRefusal::Purpose => "purpose",
            SignRefusal::Sha1 => "sha1-disabled",
            SignRefusal::NotSigningKey => "not-a-signing-key",
        }
    }
}

/// Checks `purpose` against the classified data.
pub fn purpose_allows(purpose: Purpose, data: &SignedData, key_blob: &[u8]) -> bool {
    match purpose {
        Purpose::Sign => true,
        Purpose::SshAuth => matches!(data, SignedData::UserAuth { key_blob: requested, .. } if requested == key_blob),
        Purpose::SshHost => *data == SignedData::HostKey,
        Purpose::Sshsig => matches!(data, SignedData::Sshsig { .. }),
        Purpose::Decrypt | Purpose::Agree | Purpose::Mixmaster => false,
    }
}

impl LoadedKey {
    /// Signs `data` with the hash the request's `flags` select, returning
    /// the SSH signature encoding (`string algorithm`, `string blob`).
    ///
    /// The caller has checked policy and the key's purpose.
    pub fn sign(&self, data: &[u8], flags: u32, allow_sha1: bool) -> Result<Vec<u8>, SignRefusal> {
        let mut signature = Vec::new();
        match &self.private {
            Private::Ed25519(key) => {
                signature.put_string(ed25519::ALGORITHM.as_bytes());
                signature.put_string(&key.sign(data));
            }
            Private::EcdsaP256(key) => {
                signature.put_string(ecdsa::ALGORITHM.as_bytes());
                signature.put_string(&key.sign(data));
            }
            Private::Rsa(key) => {
                let hash = if flags & FLAG_RSA_SHA2_512 != 0 {
                    RsaHash::Sha512
                } else if flags & FLAG_RSA_SHA2_256 != 0 {
                    RsaHash::Sha256
                } else if allow_sha1 {
                    RsaHash::Sha1
                } else {
                    return Err(SignRefusal::Sha1);
                };
                let raw = key.sign(hash, data).map_err(|_| SignRefusal::NotSigningKey)?;
                signature.put_string(hash.algorithm().as_bytes());
                signature.put_string(&raw);
            }
            Private::Raw(_) | Private::Mixmaster(_) => return Err(SignRefusal::NotSigningKey),
        }
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userauth(session_len: usize, method: &str, key_blob: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        data.put_string(&vec![7u8; session_len]);
        data.put_u8(SSH_MSG_USERAUTH_REQUEST);
        data.put_string(b"alice");
        data.put_string(b"ssh-connection");
        data.put_string(method.as_bytes());
        data.put_bool(true);
        data.put_string(b"ssh-ed25519");
        data.put_string(key_blob);
        if method.starts_with("publickey-hostbound") {
            data.put_string(b"hostkey");
        }
        data
    }

    #[test]
    fn classifies_userauth_request() {
        let data = userauth(32, "publickey", b"blob");
        assert_eq!(
            SignedData::classify(&data),
            SignedData::UserAuth { user: "alice".into(), key_blob: b"blob".to_vec() }
        );
        let hostbound = userauth(64, "publickey-hostbound-v00@openssh.com", b"blob");
        assert!(matches!(SignedData::classify(&hostbound), SignedData::UserAuth { .. }));
    }

    #[test]
    fn userauth_with_trailing_bytes_is_other() {
        let mut data = userauth(32, "publickey", b"blob");
        data.push(0);
        assert_eq!(SignedData::classify(&data), SignedData::Other);
    }

    #[test]
    fn classifies_sshsig_namespace() {
        let mut data = SSHSIG_MAGIC.to_vec();
        data.put_string(b"file");
        data.put_string(b"");
        data.put_string(b"sha512");
        data.put_string(&[1u8; 64]);
        let kind = SignedData::classify(&data);
        assert_eq!(kind, SignedData::Sshsig { namespace: "file".into() });
        assert_eq!(kind.operation(), "sshsig:file");
    }

    #[test]
    fn ssh_auth_purpose_needs_matching_key() {
        let data = SignedData::classify(&userauth(32, "publickey", b"mine"));
        assert!(purpose_allows(Purpose::SshAuth, &data, b"mine"));
        assert!(!purpose_allows(Purpose::SshAuth, &data, b"other"));
        assert!(!purpose_allows(Purpose::SshAuth, &SignedData::Other, b"mine"));
        assert!(!purpose_allows(Purpose::Sshsig, &data, b"mine"));
        assert!(purpose_allows(Purpose::Sign, &data, b"mine"));
    }

    #[test]
    fn host_purpose_accepts_exchange_hash_only() {
        assert!(purpose_allows(Purpose::SshHost, &SignedData::classify(&[0u8; 32]), b""));
        assert!(!purpose_allows(Purpose::SshHost, &SignedData::classify(b"arbitrary text"), b""));
    }
}
