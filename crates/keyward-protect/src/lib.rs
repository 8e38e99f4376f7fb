//! Secret memory and process hardening for Keyward.
//!
//! This is the only crate in the workspace allowed `unsafe` code. Every other
//! crate declares `#![forbid(unsafe_code)]` and reaches the kernel's memory and
//! process controls through the safe functions here.

pub mod fd;
pub mod memory;
pub mod peer;
pub mod process;

pub use memory::{MemoryError, MemoryMode, SecretBuf};
