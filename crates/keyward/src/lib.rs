//! Keyward's library: the keystore format, key types and their operations,
//! the ssh-agent wire codec with Keyward's extensions, the request dispatcher
//! and a client.
//!
//! The library never prints, prompts or reads the environment, and never
//! reads the clock: every function that depends on time takes it as an
//! argument (seconds since the Unix epoch).
#![forbid(unsafe_code)]

pub mod admin;
pub mod agent;
pub mod client;
pub mod config;
pub mod keys;
pub mod keystore;
pub mod mixmaster;
pub mod places;
pub mod policy;
pub mod secret;
pub mod service;
pub mod wire;
pub mod x25519;
