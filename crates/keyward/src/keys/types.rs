use std::fmt;

use super::KeyError;

/// The kind of key material and the algorithm it is used with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    Ed25519,
    EcdsaP256,
    /// RSA with the modulus size in bits, for SSH signatures.
    Rsa(u32),
    /// X25519, for age file-key unwrapping and raw key agreement.
    X25519,
    /// RSA with the modulus size in bits, for Mixmaster Type II packets.
    Mixmaster(u32),
}

/// RSA modulus sizes accepted for SSH keys, generated or imported.
pub const RSA_BITS_MIN: u32 = 2048;
pub const RSA_BITS_MAX: u32 = 16384;

impl KeyType {
    /// Parses the names `keyward keygen --type` and the keystore use.
    pub fn parse(name: &str) -> Result<KeyType, KeyError> {
        let unknown = || KeyError::UnknownType(name.to_owned());
        match name {
            "ed25519" => Ok(KeyType::Ed25519),
            "ecdsa-p256" => Ok(KeyType::EcdsaP256),
            "x25519" => Ok(KeyType::X25519),
            "mixmaster-1024" => Ok(KeyType::Mixmaster(1024)),
            // 2048 and 3072 bits: imported only; Type II packets address
            // them with the same large-key format as 4096-bit keys.
            "mixmaster-2048" => Ok(KeyType::Mixmaster(2048)),
            "mixmaster-3072" => Ok(KeyType::Mixmaster(3072)),
            "mixmaster-4096" => Ok(KeyType::Mixmaster(4096)),
            _ => {
                let bits: u32 = name.strip_prefix("rsa-").ok_or_else(unknown)?.parse().map_err(|_| unknown())?;
                if !(RSA_BITS_MIN..=RSA_BITS_MAX).contains(&bits) || bits % 8 != 0 {
                    return Err(unknown());
                }
                Ok(KeyType::Rsa(bits))
            }
        }
    }

    /// Whether SSH clients can use the key (it appears in request-identities).
    pub fn is_ssh(self) -> bool {
        matches!(self, KeyType::Ed25519 | KeyType::EcdsaP256 | KeyType::Rsa(_))
    }

    /// The purpose a key of this type gets when none is given.
    pub fn default_purpose(self) -> Purpose {
        match self {
            KeyType::Ed25519 | KeyType::EcdsaP256 | KeyType::Rsa(_) => Purpose::Sign,
            KeyType::X25519 => Purpose::Decrypt,
            KeyType::Mixmaster(_) => Purpose::Mixmaster,
        }
    }

    /// Checks that `purpose` makes sense for this type.
    pub fn check_purpose(self, purpose: Purpose) -> Result<(), KeyError> {
        let allowed = match self {
            KeyType::Ed25519 | KeyType::EcdsaP256 | KeyType::Rsa(_) => purpose.is_signing(),
            KeyType::X25519 => matches!(purpose, Purpose::Decrypt | Purpose::Agree),
            KeyType::Mixmaster(_) => purpose == Purpose::Mixmaster,
        };
        if allowed {
            Ok(())
        } else {
            Err(KeyError::PurposeNotValid { key_type: self.to_string(), purpose: purpose.to_string() })
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Ed25519 => f.write_str("ed25519"),
            KeyType::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeyType::Rsa(bits) => write!(f, "rsa-{bits}"),
            KeyType::X25519 => f.write_str("x25519"),
            KeyType::Mixmaster(bits) => write!(f, "mixmaster-{bits}"),
        }
    }
}

/// What a key may be used for, fixed at generation or import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Sign any data, as ssh-agent does.
    Sign,
    /// Sign only SSH user-authentication requests.
    SshAuth,
    /// Sign only what an SSH server signs with its host key: exchange
    /// hashes and host-key proofs.
    SshHost,
    /// Sign only SSHSIG blobs (`ssh-keygen -Y sign`).
    Sshsig,
    /// Unwrap age file keys.
    Decrypt,
    /// Raw X25519 key agreement; includes `decrypt`.
    Agree,
    /// Decrypt Mixmaster Type II header blocks.
    Mixmaster,
}

impl Purpose {
    pub fn parse(name: &str) -> Result<Purpose, KeyError> {
        match name {
            "sign" => Ok(Purpose::Sign),
            "ssh-auth" => Ok(Purpose::SshAuth),
            "ssh-host" => Ok(Purpose::SshHost),
            "sshsig" => Ok(Purpose::Sshsig),
            "decrypt" => Ok(Purpose::Decrypt),
            "agree" => Ok(Purpose::Agree),
            "mixmaster" => Ok(Purpose::Mixmaster),
            _ => Err(KeyError::UnknownPurpose(name.to_owned())),
        }
    }

    pub fn is_signing(self) -> bool {
        matches!(self, Purpose::Sign | Purpose::SshAuth | Purpose::SshHost | Purpose::Sshsig)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Sign => "sign",
            Purpose::SshAuth => "ssh-auth",
            Purpose::SshHost => "ssh-host",
            Purpose::Sshsig => "sshsig",
            Purpose::Decrypt => "decrypt",
            Purpose::Agree => "agree",
            Purpose::Mixmaster => "mixmaster",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_keygen_type() {
        for name in ["ed25519", "ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096", "x25519", "mixmaster-1024", "mixmaster-4096"] {
            let parsed = KeyType::parse(name).unwrap();
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn rejects_small_and_odd_rsa_sizes() {
        assert!(KeyType::parse("rsa-1024").is_err());
        assert!(KeyType::parse("rsa-2049").is_err());
        assert!(KeyType::parse("rsa-").is_err());
        assert!(KeyType::parse("rsa-99999999999").is_err());
    }

    #[test]
    fn parses_only_mixmaster_packet_sizes() {
        for bits in [1024, 2048, 3072, 4096] {
            assert_eq!(KeyType::parse(&format!("mixmaster-{bits}")).unwrap(), KeyType::Mixmaster(bits));
        }
        assert!(KeyType::parse("mixmaster-1536").is_err());
        assert!(KeyType::parse("mixmaster-8192").is_err());
    }

    #[test]
    fn purpose_must_fit_type() {
        assert!(KeyType::Ed25519.check_purpose(Purpose::Decrypt).is_err());
        assert!(KeyType::X25519.check_purpose(Purpose::Agree).is_ok());
        assert!(KeyType::Mixmaster(1024).check_purpose(Purpose::Sign).is_err());
        assert!(KeyType::Rsa(3072).check_purpose(Purpose::SshHost).is_ok());
    }
}
