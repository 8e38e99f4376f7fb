//! One function per command; `run` dispatches.

mod bench;
mod control;
mod decrypt;
mod keys;
mod mixmaster;
mod sign;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use keyward::admin::{AdminReply, AdminRequest};
use keyward::client::{AdminClient, ClientError};

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::error::{CliError, ExitCode, Result};

pub fn run(cli: Cli) -> Result<()> {
    let context = Context::from_process(cli.places.clone());
    match cli.command {
        Command::Init { passphrase, allow_empty_passphrase } => keys::init(&context, passphrase, allow_empty_passphrase),
        Command::Keygen { key_type, name, comment, purpose, not_before, not_after, passphrase } => {
            keys::keygen(&context, &key_type, &name, &comment, purpose.as_deref(), not_before.as_deref(), not_after.as_deref(), passphrase)
        }
        Command::Import { name, format, source_passphrase_fd, purpose, comment, passphrase, file } => {
            keys::import(&context, &name, format, source_passphrase_fd, purpose.as_deref(), comment, passphrase, &file)
        }
        Command::List { json } => keys::list(&context, json),
        Command::Pubkey { name, format } => keys::pubkey(&context, &name, format),
        Command::Remove { name, passphrase } => keys::remove(&context, &name, passphrase),
        Command::Passwd { passphrase, new_passphrase_fd } => keys::passwd(&context, passphrase, new_passphrase_fd),
        Command::Daemon(args) => crate::daemon::run(&context, args),
        Command::Unseal { passphrase } => control::unseal(&context, passphrase),
        Command::Seal => control::simple(&context, AdminRequest::Seal, "sealed"),
        Command::Reload => control::simple(&context, AdminRequest::Reload, "configuration reloaded"),
        Command::Status { json } => control::status(&context, json),
        Command::Sign { key, namespace, file } => sign::sign(&context, &key, &namespace, &file),
        Command::Decrypt { key, file } => decrypt::decrypt(&context, key.as_deref(), &file),
        Command::Mixmaster(crate::cli::MixmasterCommand::Unwrap { file }) => mixmaster::unwrap(&context, &file),
        Command::Bench(args) => bench::bench(&context, &args),
    }
}

/// Lists the uids a CLI trusts to serve the admin socket: root, the caller, and
/// the owner of the keystore directory (the daemon's user in system mode).
fn trusted_daemon_uids(keystore: Option<&Path>) -> Vec<u32> {
    let mut uids = vec![0, rustix::process::getuid().as_raw()];
    if let Some(owner) = keystore.and_then(|dir| std::fs::metadata(dir).ok()).map(|metadata| metadata.uid()) {
        uids.push(owner);
    }
    uids
}

/// Connects to the admin socket, checking who serves it.
fn admin_client(context: &Context) -> Result<AdminClient> {
    let keystore = context.keystore_dir().ok();
    let path = context.admin_socket()?;
    Ok(AdminClient::connect(&path, &trusted_daemon_uids(keystore.as_deref()))?)
}

/// Sends an admin request and turns an error reply into a `CliError`.
fn admin_request(client: &mut AdminClient, request: &AdminRequest) -> Result<String> {
    match client.request(request)? {
        AdminReply::Ok(text) => Ok(text),
        AdminReply::Error { code, message } => {
            let code = match code {
                3 => ExitCode::NoDaemon,
                4 => ExitCode::Sealed,
                5 => ExitCode::Refused,
                _ => ExitCode::Failed,
            };
            let mut error = CliError::with_code(code, message);
            if code == ExitCode::Sealed {
                error = error.hint("unseal it with `keyward unseal`");
            }
            Err(error)
        }
    }
}

/// A daemon serving `keystore`, as found on the admin socket.
pub struct RunningDaemon {
    pub client: AdminClient,
    pub unsealed: bool,
}

/// Finds a daemon on the admin socket that serves this keystore. `None`
/// when no daemon answers, or it serves another keystore, or the caller may
/// not use its admin socket.
fn daemon_for_keystore(context: &Context, keystore: &Path) -> Result<Option<RunningDaemon>> {
    let mut client = match admin_client(context) {
        Ok(client) => client,
        Err(error) if error.code == ExitCode::NoDaemon => return Ok(None),
        Err(error) => return Err(error),
    };
    let status = match client.request(&AdminRequest::Status) {
        Ok(AdminReply::Ok(status)) => status,
        Ok(AdminReply::Error { .. }) => return Ok(None),
        Err(ClientError::Io(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let status: serde_json::Value =
        serde_json::from_str(&status).map_err(|error| CliError::failed(format!("the daemon sent an invalid status: {error}")))?;
    let served = status["keystore"].as_str().map(Path::new).and_then(|path| path.canonicalize().ok());
    if served.is_none() || served != keystore.canonicalize().ok() {
        return Ok(None);
    }
    Ok(Some(RunningDaemon { client, unsealed: status["state"] == "unsealed" }))
}
