//! Secret memory and process hardening for Keyward.
//!
//! This is the only crate in the workspace allowed `unsafe` code. Every other
//! crate declares `#![forbid(unsafe_code)]` and reaches the kernel's memory and
//! process controls through the safe functions here.

mod arena;
pub mod fd;
pub mod memory;
pub mod peer;
pub mod process;
pub mod terminal;

pub use arena::ArenaUsage;
pub use memory::{
    arena_usage, init_memory, memory_mode, scrub_stack, scrub_stack_after_operation, MemoryError, MemoryMode, MemoryPolicy,
    SecretBox, SecretBuf,
};
pub use peer::peer_groups;
pub use process::{harden_process, lock_all_memory, measure, set_umask, Protections, UmaskGuard};
