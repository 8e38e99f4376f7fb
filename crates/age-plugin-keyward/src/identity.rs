//! The identity-v1 side of the plugin: for each X25519 stanza and each
//! Keyward identity, ask the daemon to unwrap.

use std::collections::HashMap;
use std::io;

use age_core::format::{FileKey, Stanza};
use age_plugin::identity::{Error, IdentityPluginV1};
use age_plugin::Callbacks;
use keyward::x25519::{self, X25519Error, PLUGIN_NAME, STANZA_TAG};

use crate::daemon::{Daemon, DaemonError};

/// The Keyward identities age passed in, and the daemon that keeps their keys.
pub struct KeywardIdentities<D> {
    daemon: D,
    /// (identity index as age numbers it, key fingerprint)
    identities: Vec<(usize, [u8; 32])>,
}

impl<D: Daemon> KeywardIdentities<D> {
    pub fn new(daemon: D) -> Self {
        KeywardIdentities { daemon, identities: Vec::new() }
    }

    /// Tries every identity on every X25519 stanza of one file.
    ///
    /// Returns `None` when no stanza is ours and nothing went wrong, so that
    /// age reports that no identity matched.
    fn unwrap_file(&mut self, file_index: usize, stanzas: &[Stanza]) -> Option<Result<FileKey, Vec<Error>>> {
        let mut file_key = None;
        let mut errors = Vec::new();
        let mut refused_identities = Vec::new();

        for (stanza_index, stanza) in stanzas.iter().enumerate() {
            // Stanzas of other types belong to other identities.
            if stanza.tag != STANZA_TAG {
                continue;
            }
            let parsed = match x25519::parse_stanza(&stanza.args, &stanza.body) {
                Ok(parsed) => parsed,
                Err(error) => {
                    // A malformed X25519 stanza makes the whole file
                    // invalid, as it does for age's own X25519 identities.
                    errors.push(Error::Stanza { file_index, stanza_index, message: stanza_message(&error) });
                    continue;
                }
            };
            if file_key.is_some() {
                continue;
            }

            for &(identity_index, fingerprint) in &self.identities {
                match self.daemon.unwrap(&fingerprint, &parsed.ephemeral_share, &parsed.body) {
                    Ok(Some(key)) => {
                        file_key = Some(FileKey::init_with_mut(|out| out.copy_from_slice(&key[..])));
                        break;
                    }
                    Ok(None) => {}
                    Err(DaemonError::Refused) => {
                        if !refused_identities.contains(&identity_index) {
                            refused_identities.push(identity_index);
                            errors.push(Error::Identity { index: identity_index, message: refused_message(&fingerprint) });
                        }
                    }
                    Err(DaemonError::InvalidRequest) => {
                        errors.push(Error::Stanza { file_index, stanza_index, message: DaemonError::InvalidRequest.to_string() });
                        break;
                    }
                    Err(fatal) => {
                        // Without a working daemon no other stanza can
                        // succeed either; report once and stop.
                        errors.push(Error::Internal { message: fatal.to_string() });
                        return Some(Err(errors));
                    }
                }
            }
        }

        let stanza_errors = errors.iter().any(|error| matches!(error, Error::Stanza { .. }));
        match file_key {
            Some(key) if !stanza_errors => Some(Ok(key)),
            _ if errors.is_empty() => None,
            _ => Some(Err(errors)),
        }
    }
}

impl<D: Daemon> IdentityPluginV1 for KeywardIdentities<D> {
    fn add_identity(&mut self, index: usize, plugin_name: &str, bytes: &[u8]) -> Result<(), Error> {
        if plugin_name != PLUGIN_NAME {
            return Err(Error::Identity { index, message: format!("age-plugin-keyward cannot use identities of the plugin {plugin_name:?}") });
        }
        let fingerprint = x25519::parse_plugin_identity_payload(bytes).map_err(|error| Error::Identity { index, message: error.to_string() })?;
        self.identities.push((index, fingerprint));
        Ok(())
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        _callbacks: impl Callbacks<Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<Error>>>> {
        let mut results = HashMap::new();
        for (file_index, stanzas) in files.iter().enumerate() {
            if let Some(result) = self.unwrap_file(file_index, stanzas) {
                results.insert(file_index, result);
            }
        }
        Ok(results)
    }
}

fn stanza_message(error: &X25519Error) -> String {
    format!("invalid X25519 recipient stanza: {error}")
}

fn refused_message(fingerprint: &[u8; 32]) -> String {
    format!(
        "the Keyward daemon refused key {}: no such key, or this user may not use it to decrypt (refused by policy)\nhint: `keyward list` shows the keys this user may use",
        x25519::fingerprint_text(fingerprint)
    )
}

#[cfg(test)]
mod tests;
