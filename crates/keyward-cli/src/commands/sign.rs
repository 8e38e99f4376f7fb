//! `keyward sign`: an SSHSIG signature made through the daemon, the same as
//! `ssh-keygen -Y sign` writes.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use keyward::agent::extensions::State;
use keyward::client::AgentClient;
use keyward::keys::signing::FLAG_RSA_SHA2_512;
use keyward::wire::Writer;
use sha2::{Digest, Sha512};
use ssh_key::{HashAlg, LineEnding, SshSig};

use crate::context::Context;
use crate::error::{CliError, ExitCode, Result};

pub fn sign(context: &Context, key_name: &str, namespace: &str, file: &Path) -> Result<()> {
    if namespace.is_empty() {
        return Err(CliError::with_code(ExitCode::Usage, "the namespace must not be empty"));
    }
    let mut agent = AgentClient::connect(&context.agent_socket()?)?;
    let listed = agent.list()?;
    let Some(key) = listed.iter().find(|key| key.name == key_name) else {
        return Err(refused(&mut agent, key_name)?);
    };
    let public_blob = base64::engine::general_purpose::STANDARD
        .decode(&key.public_key)
        .map_err(|_| CliError::failed("the daemon listed an invalid public key"))?;

    let digest = hash_input(file)?;
    let mut signed_data = b"SSHSIG".to_vec();
    signed_data.put_string(namespace.as_bytes());
    signed_data.put_string(b"");
    signed_data.put_string(b"sha512");
    signed_data.put_string(&digest);

    let Some(signature) = agent.sign(&public_blob, &signed_data, FLAG_RSA_SHA2_512)? else {
        return Err(refused(&mut agent, key_name)?);
    };
    let public = ssh_key::PublicKey::from_bytes(&public_blob)
        .map_err(|error| CliError::failed(format!("invalid public key: {error}")))?
        .key_data()
        .clone();
    let signature = ssh_key::Signature::try_from(signature.as_slice())
        .map_err(|error| CliError::failed(format!("the daemon returned an invalid signature: {error}")))?;
    let sshsig = SshSig::new(public, namespace, HashAlg::Sha512, signature)
        .map_err(|error| CliError::failed(format!("cannot build the signature: {error}")))?;
    let armored = sshsig.to_pem(LineEnding::LF).map_err(|error| CliError::failed(error.to_string()))?;
    print!("{armored}");
    Ok(())
}

fn hash_input(file: &Path) -> Result<Vec<u8>> {
    let mut hasher = Sha512::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).map_err(|error| CliError::failed(format!("cannot read {}: {error}", file.display())))?)
    };
    loop {
        let read = input.read(&mut buffer).map_err(|error| CliError::failed(format!("cannot read {}: {error}", file.display())))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_vec())
}

/// Tells a sealed daemon (exit 4) from a refusal (exit 5).
fn refused(agent: &mut AgentClient, key_name: &str) -> Result<CliError> {
    Ok(match agent.status()? {
        State::Sealed => CliError::with_code(ExitCode::Sealed, "the daemon is sealed").hint("unseal it with `keyward unseal`"),
        State::Unsealed => CliError::with_code(ExitCode::Refused, format!("signing with {key_name:?} was refused"))
            .hint("the key does not exist, or this user may not sign with it; `keyward list` on the daemon's host shows the keys"),
    })
}
