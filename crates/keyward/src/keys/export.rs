//! Public keys in the formats other programs read.

use openssl::bn::BigNum;
use openssl::pkey::{Id, PKey, Public};

use crate::wire::{mpint_magnitude, Reader};

/// Formats an SSH public-key blob as an `authorized_keys` line.
pub fn openssh_line(blob: &[u8], comment: &str) -> Result<String, String> {
    let mut key = ssh_key::PublicKey::from_bytes(blob).map_err(|error| error.to_string())?;
    key.set_comment(comment);
    key.to_openssh().map_err(|error| error.to_string())
}

/// Formats an SSH or Mixmaster public-key blob as a PEM
/// SubjectPublicKeyInfo, as `openssl pkey -pubin` reads it.
pub fn pem(blob: &[u8]) -> Result<String, String> {
    let pkey = to_openssl(blob)?;
    let pem = pkey.public_key_to_pem().map_err(|error| error.to_string())?;
    String::from_utf8(pem).map_err(|error| error.to_string())
}

/// Formats an x25519 public-key blob as the `age1…` recipient that senders
/// encrypt to.
pub fn age_recipient(blob: &[u8]) -> Result<String, String> {
    let public = crate::x25519::X25519Public::from_blob(blob).map_err(|_| "only x25519 keys have an age recipient".to_owned())?;
    Ok(public.to_age_recipient())
}

/// Formats the `AGE-PLUGIN-KEYWARD-1…` identity line for an x25519 key: it
/// names the key by fingerprint and holds no secret.
pub fn age_plugin_identity(blob: &[u8]) -> Result<String, String> {
    let public = crate::x25519::X25519Public::from_blob(blob).map_err(|_| "only x25519 keys have an age plugin identity".to_owned())?;
    Ok(crate::x25519::plugin_identity(&public.fingerprint()))
}

fn to_openssl(blob: &[u8]) -> Result<PKey<Public>, String> {
    let mut reader = Reader::new(blob);
    let algorithm = reader.string().map_err(|error| error.to_string())?;
    let malformed = |_| "malformed public key".to_owned();
    match algorithm {
        b"ssh-ed25519" => {
            let public = reader.string().map_err(malformed)?;
            PKey::public_key_from_raw_bytes(public, Id::ED25519).map_err(|error| error.to_string())
        }
        b"ecdsa-sha2-nistp256" => {
            let _curve = reader.string().map_err(malformed)?;
            let point = reader.string().map_err(malformed)?;
            let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                .map_err(|error| error.to_string())?;
            let mut ctx = openssl::bn::BigNumContext::new().map_err(|error| error.to_string())?;
            let point = openssl::ec::EcPoint::from_bytes(&group, point, &mut ctx).map_err(|error| error.to_string())?;
            let key = openssl::ec::EcKey::from_public_key(&group, &point).map_err(|error| error.to_string())?;
            PKey::from_ec_key(key).map_err(|error| error.to_string())
        }
        b"ssh-rsa" | b"mixmaster-rsa@keyward" => {
            let e = mpint_magnitude(reader.string().map_err(malformed)?).map_err(malformed)?;
            let n = mpint_magnitude(reader.string().map_err(malformed)?).map_err(malformed)?;
            let rsa = openssl::rsa::Rsa::from_public_components(
                BigNum::from_slice(n).map_err(|error| error.to_string())?,
                BigNum::from_slice(e).map_err(|error| error.to_string())?,
            )
            .map_err(|error| error.to_string())?;
            PKey::from_rsa(rsa).map_err(|error| error.to_string())
        }
        _ => Err("this key type has no PEM form".to_owned()),
    }
}
