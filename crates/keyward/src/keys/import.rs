//! Importing private keys from files other programs wrote: OpenSSH
//! (encrypted or not), PKCS#8 / traditional PEM or DER, and age identity
//! files.
//!
//! A file's own passphrase is used as the exact bytes given, without
//! Unicode normalisation, because OpenSSH and OpenSSL do not normalise.

use openssl::pkey::{Id, PKey, Private};
use ssh_key::private::KeypairData;
use zeroize::Zeroizing;

use super::{ecdsa, ed25519, rsa, KeyType};
use crate::secret::SecretBuf;

/// One key read from a file.
pub struct ImportedKey {
    pub key_type: KeyType,
    pub public_blob: Vec<u8>,
    pub private: SecretBuf,
    /// The comment stored in the file, if the format has one.
    pub comment: String,
}

/// Why a file could not be imported. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("the file is encrypted; a passphrase is needed")]
    NeedsPassphrase,
    #[error("incorrect passphrase for the file, or the file is damaged")]
    WrongPassphrase,
    #[error("not a valid {format} private key: {reason}")]
    Invalid { format: &'static str, reason: String },
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Memory(#[from] keyward_protect::MemoryError),
}

/// Reads an OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`).
pub fn openssh(file: &[u8], passphrase: Option<&[u8]>) -> Result<Vec<ImportedKey>, ImportError> {
    let invalid = |reason: String| ImportError::Invalid { format: "OpenSSH", reason };
    let parsed = ssh_key::PrivateKey::from_openssh(file).map_err(|error| invalid(error.to_string()))?;
    let key = if parsed.is_encrypted() {
        let passphrase = passphrase.ok_or(ImportError::NeedsPassphrase)?;
        parsed.decrypt(passphrase).map_err(|_| ImportError::WrongPassphrase)?
    } else {
        parsed
    };
    let comment = key.comment().to_owned();

    let imported = match key.key_data() {
        KeypairData::Ed25519(pair) => {
            let seed = Zeroizing::new(pair.private.to_bytes());
            ImportedKey {
                key_type: KeyType::Ed25519,
                public_blob: ed25519::public_blob(&pair.public.0),
                private: SecretBuf::from_slice(seed.as_ref())?,
                comment,
            }
        }
        KeypairData::Ecdsa(ssh_key::private::EcdsaKeypair::NistP256 { public, private }) => ImportedKey {
            key_type: KeyType::EcdsaP256,
            public_blob: ecdsa::public_blob(public.as_bytes()),
            private: SecretBuf::from_slice(private.as_slice())?,
            comment,
        },
        KeypairData::Rsa(pair) => {
            let der = rsa::pkcs1_der_from_components(
                pair.public.n.as_positive_bytes().ok_or_else(|| invalid("bad modulus".into()))?,
                pair.public.e.as_positive_bytes().ok_or_else(|| invalid("bad exponent".into()))?,
                pair.private.d.as_positive_bytes().ok_or_else(|| invalid("bad private exponent".into()))?,
                pair.private.p.as_positive_bytes().ok_or_else(|| invalid("bad prime".into()))?,
                pair.private.q.as_positive_bytes().ok_or_else(|| invalid("bad prime".into()))?,
            )
            .map_err(|error| invalid(error.to_string()))?;
            rsa_from_der(&der, comment)?
        }
        other => {
            let name = other.algorithm().map(|algorithm| algorithm.to_string()).unwrap_or_else(|_| "unknown".into());
            return Err(ImportError::Unsupported(format!("{name} keys are not supported")));
        }
    };
    Ok(vec![imported])
}

/// Reads a PKCS#8 private key (PEM or DER, encrypted or not), or a
/// traditional OpenSSL PEM key.
pub fn pkcs8(file: &[u8], passphrase: Option<&[u8]>) -> Result<Vec<ImportedKey>, ImportError> {
    let pkey = read_pkcs8(file, passphrase)?;
    let unsupported = |what: &str| ImportError::Unsupported(what.to_owned());
    let invalid = |error: openssl::error::ErrorStack| ImportError::Invalid { format: "PKCS#8", reason: error.to_string() };

    let imported = match pkey.id() {
        Id::ED25519 => {
            let seed = Zeroizing::new(pkey.raw_private_key().map_err(invalid)?);
            let public = pkey.raw_public_key().map_err(invalid)?;
            let public: [u8; 32] = public.try_into().map_err(|_| unsupported("malformed Ed25519 key"))?;
            ImportedKey {
                key_type: KeyType::Ed25519,
                public_blob: ed25519::public_blob(&public),
                private: SecretBuf::from_slice(&seed)?,
                comment: String::new(),
            }
        }
        Id::EC => {
            let ec = pkey.ec_key().map_err(invalid)?;
            if ec.group().curve_name() != Some(openssl::nid::Nid::X9_62_PRIME256V1) {
                return Err(unsupported("only the P-256 curve is supported for ECDSA"));
            }
            let scalar = Zeroizing::new(ec.private_key().to_vec_padded(32).map_err(invalid)?);
            let mut ctx = openssl::bn::BigNumContext::new().map_err(invalid)?;
            let public = ec
                .public_key()
                .to_bytes(ec.group(), openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx)
                .map_err(invalid)?;
            ImportedKey {
                key_type: KeyType::EcdsaP256,
                public_blob: ecdsa::public_blob(&public),
                private: SecretBuf::from_slice(&scalar)?,
                comment: String::new(),
            }
        }
        Id::RSA => {
            let der = Zeroizing::new(pkey.rsa().map_err(invalid)?.private_key_to_der().map_err(invalid)?);
            rsa_from_der(&der, String::new())?
        }
        _ => return Err(unsupported("this key algorithm is not supported")),
    };
    Ok(vec![imported])
}

fn read_pkcs8(file: &[u8], passphrase: Option<&[u8]>) -> Result<PKey<Private>, ImportError> {
    let is_pem = file.trim_ascii_start().starts_with(b"-----BEGIN");
    let encrypted = if is_pem {
        file.windows(9).any(|window| window == b"ENCRYPTED")
    } else {
        // An unencrypted PKCS#8 DER parses without a passphrase; try that
        // first and ask for one only when it fails.
        PKey::private_key_from_der(file).is_err()
    };

    let result = match (is_pem, encrypted, passphrase) {
        (true, false, _) => PKey::private_key_from_pem(file),
        (false, false, _) => PKey::private_key_from_der(file),
        (_, true, None) => return Err(ImportError::NeedsPassphrase),
        (true, true, Some(passphrase)) => PKey::private_key_from_pem_passphrase(file, passphrase),
        (false, true, Some(passphrase)) => PKey::private_key_from_pkcs8_passphrase(file, passphrase),
    };
    result.map_err(|error| {
        if encrypted {
            ImportError::WrongPassphrase
        } else {
            ImportError::Invalid { format: "PKCS#8", reason: error.to_string() }
        }
    })
}

/// Reads an age identity file: one X25519 key per `AGE-SECRET-KEY-1…`
/// line, in file order. Errors name the line, never its text.
pub fn age(file: &[u8]) -> Result<Vec<ImportedKey>, ImportError> {
    let invalid = |reason: String| ImportError::Invalid { format: "age", reason };
    let text = std::str::from_utf8(file).map_err(|_| invalid("the file is not UTF-8 text".into()))?;
    let secrets = crate::x25519::parse_age_identity_file(text).map_err(|error| invalid(error.to_string()))?;
    Ok(secrets
        .into_iter()
        .map(|secret| ImportedKey {
            key_type: KeyType::X25519,
            public_blob: secret.public_key().blob(),
            private: secret.into_secret_buf(),
            comment: String::new(),
        })
        .collect())
}

fn rsa_from_der(der: &[u8], comment: String) -> Result<ImportedKey, ImportError> {
    let key = rsa::RsaKey::from_pkcs1_der(der, "imported")
        .map_err(|error| ImportError::Invalid { format: "RSA", reason: error.to_string() })?;
    let bits = key.bits();
    let key_type = KeyType::parse(&format!("rsa-{bits}"))
        .map_err(|_| ImportError::Unsupported(format!("RSA keys of {bits} bits are not supported (2048 to 16384)")))?;
    Ok(ImportedKey { key_type, public_blob: key.public_blob(), private: SecretBuf::from_slice(der)?, comment })
}
