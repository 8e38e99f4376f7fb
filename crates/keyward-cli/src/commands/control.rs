//! Commands for a running daemon: unseal, seal, reload, status.

use keyward::admin::{AdminReply, AdminRequest};
use keyward::agent::extensions::State;
use keyward::client::AgentClient;
use zeroize::Zeroizing;

use super::{admin_client, admin_request};
use crate::cli::PassphraseSource;
use crate::context::Context;
use crate::error::{CliError, ExitCode, Result};
use crate::passphrase;

pub fn unseal(context: &Context, source: PassphraseSource) -> Result<()> {
    super::keys::harden()?;
    // Connect and check who serves the socket before reading the
    // passphrase, so it is never typed for an impostor.
    let mut client = admin_client(context)?;
    let passphrase = passphrase::keystore(source.passphrase_fd, "Keystore passphrase: ")?;
    let request = AdminRequest::Unseal { passphrase: Zeroizing::new(passphrase.expose().to_vec()) };
    drop(passphrase);
    let message = admin_request(&mut client, &request)?;
    // Wipe the passphrase before the message: writing it can block.
    drop(request);
    eprintln!("{message}");
    Ok(())
}

pub fn simple(context: &Context, request: AdminRequest, done: &str) -> Result<()> {
    let mut client = admin_client(context)?;
    let message = admin_request(&mut client, &request)?;
    eprintln!("{}", if message.is_empty() { done } else { &message });
    Ok(())
}

pub fn status(context: &Context, json: bool) -> Result<()> {
    // Admins get the full status from the admin socket; anyone else the
    // state alone from the service socket.
    let full = match admin_client(context) {
        Ok(mut client) => match client.request(&AdminRequest::Status) {
            Ok(AdminReply::Ok(text)) => Some(text),
            _ => None,
        },
        Err(_) => None,
    };

    let state = match &full {
        Some(text) => {
            let status: serde_json::Value = serde_json::from_str(text)
                .map_err(|error| CliError::failed(format!("the daemon sent an invalid status: {error}")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status).expect("a parsed value serialises"));
            } else {
                print_status(&status);
            }
            if status["state"] == "unsealed" {
                State::Unsealed
            } else {
                State::Sealed
            }
        }
        None => {
            let mut agent = AgentClient::connect(&context.agent_socket()?)?;
            let state = agent.status()?;
            if json {
                println!("{}", serde_json::json!({ "state": state.as_str() }));
            } else {
                println!("state: {}", state.as_str());
            }
            state
        }
    };
    match state {
        State::Unsealed => Ok(()),
        State::Sealed => Err(CliError::with_code(ExitCode::Sealed, "the daemon is sealed").hint("unseal it with `keyward unseal`")),
    }
}

fn print_status(status: &serde_json::Value) {
    println!("state:       {}", status["state"].as_str().unwrap_or("?"));
    println!("pid:         {}", status["pid"]);
    println!("uptime:      {} s", status["uptime_s"]);
    println!("keystore:    {}", status["keystore"].as_str().unwrap_or("?"));
    let keys = status["keys"].as_array().map(Vec::len).unwrap_or(0);
    println!("keys:        {keys}");
    let counters = &status["counters"];
    println!("requests:    {} ({} refused)", counters["requests"], counters["refusals"]);
    let protections = &status["protections"];
    println!(
        "protections: memory={} mlockall={} dumpable={} core_limit={} swap_on_host={}",
        protections["memory"].as_str().unwrap_or("?"),
        protections["mlockall"],
        protections["dumpable"],
        protections["core_limit"],
        protections["swap_on_host"]
    );
    let audit = &status["audit"];
    println!("audit:       mode={} healthy={}", audit["mode"].as_str().unwrap_or("?"), audit["healthy"]);
}
