//! Seals the daemon before the machine sleeps.
//!
//! The daemon holds a logind "delay" inhibitor lock, so logind waits (up to
//! its `InhibitDelayMaxSec`, 5 s by default) for the daemon to act on
//! `PrepareForSleep(true)`. The daemon seals, then closes the lock so sleep
//! proceeds, and takes a new lock on `PrepareForSleep(false)` after resume.
//!
//! logind sends the same signal for suspend, hibernate and hybrid sleep,
//! and its argument does not say which. The daemon therefore seals before
//! every kind of sleep, which also keeps keys out of a hibernation image.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use zbus::message::Type as MessageType;
use zbus::zvariant::OwnedFd;
use zbus::{Connection, MatchRule, Message, MessageStream, Proxy};

use super::state::DaemonState;

/// Test-only: the address of a private bus to watch in place of the
/// system bus. On it, `PrepareForSleep` from any sender counts, because a
/// test cannot own the `org.freedesktop.login1` name.
const TEST_SLEEP_BUS: &str = "KEYWARD_TEST_SLEEP_BUS";

const LOGIND_NAME: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";
const PREPARE_FOR_SLEEP: &str = "PrepareForSleep";

type SignalMessages = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// Watches logind's `PrepareForSleep` signal for the life of the daemon:
/// seals on `true` and takes a new delay lock on `false`. Returns early,
/// after one log line, when there is no bus to watch.
pub async fn watch(state: Arc<DaemonState>) {
    let test_bus = std::env::var(TEST_SLEEP_BUS).ok();
    let connection = match connect(test_bus.as_deref()).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::info!(%error, "no system bus; not watching for sleep");
            return;
        }
    };
    let manager = match manager_proxy(&connection).await {
        Ok(proxy) => proxy,
        Err(error) => {
            tracing::warn!(%error, "cannot create a logind proxy; not watching for sleep");
            return;
        }
    };
    let mut messages = match subscribe(&connection, &manager, test_bus.is_some()).await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::warn!(%error, "cannot subscribe to logind's PrepareForSleep; not watching for sleep");
            return;
        }
    };
    tracing::info!("watching logind's PrepareForSleep; the daemon seals before sleep");

    let mut inhibitor = take_inhibitor(&manager).await;
    while let Some(message) = messages.next().await {
        let starting = match message.body().deserialize::<bool>() {
            Ok(starting) => starting,
            Err(error) => {
                tracing::warn!(%error, "ignoring a PrepareForSleep signal with an invalid body");
                continue;
            }
        };
        if starting {
            tracing::info!("the system is about to sleep: sealing");
            let state = state.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || state.seal("sleep")).await {
                tracing::error!(%error, "sealing before sleep failed");
            }
            // Closing the lock releases logind to start the sleep.
            drop(inhibitor.take());
        } else {
            tracing::info!("the system resumed from sleep");
            if inhibitor.is_none() {
                inhibitor = take_inhibitor(&manager).await;
            }
        }
    }
    tracing::warn!("the bus connection closed; no longer watching for sleep");
}

/// Creates a proxy for logind's manager object that neither fetches nor
/// caches its properties, because the daemon reads none.
async fn manager_proxy(connection: &Connection) -> zbus::Result<Proxy<'static>> {
    zbus::proxy::Builder::new(connection)
        .destination(LOGIND_NAME)?
        .path(LOGIND_PATH)?
        .interface(LOGIND_MANAGER)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

async fn connect(test_bus: Option<&str>) -> zbus::Result<Connection> {
    match test_bus {
        Some(address) => zbus::connection::Builder::address(address)?.build().await,
        None => Connection::system().await,
    }
}

/// Subscribes to `PrepareForSleep`. On the system bus the proxy accepts
/// the signal only from the current owner of `org.freedesktop.login1`.
/// On a test bus a signal from any sender on logind's path and interface
/// counts.
async fn subscribe(connection: &Connection, manager: &Proxy<'static>, any_sender: bool) -> zbus::Result<SignalMessages> {
    if any_sender {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .path(LOGIND_PATH)?
            .interface(LOGIND_MANAGER)?
            .member(PREPARE_FOR_SLEEP)?
            .build();
        let stream = MessageStream::for_match_rule(rule, connection, None).await?;
        Ok(Box::pin(stream.filter_map(|message| async move { message.ok() })))
    } else {
        Ok(Box::pin(manager.receive_signal(PREPARE_FOR_SLEEP).await?))
    }
}

/// Takes a logind "delay" lock on sleep. Returns `None`, after a log line,
/// when logind is missing or rejects the call. The daemon then still seals
/// on `PrepareForSleep`, but logind does not wait for it.
async fn take_inhibitor(manager: &Proxy<'static>) -> Option<OwnedFd> {
    let reply = manager.call::<_, _, OwnedFd>("Inhibit", &("sleep", "keyward", "seal the keys before sleep", "delay")).await;
    match reply {
        Ok(fd) => Some(fd),
        Err(error) => {
            tracing::info!(%error, "cannot take a logind sleep inhibitor; sealing on sleep without delaying it");
            None
        }
    }
}
