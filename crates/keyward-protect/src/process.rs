//! Process-wide hardening: no core dumps, no ptrace by same-uid processes,
//! memory locked out of swap, and measurement of what is in force.

use std::fs;
use std::io;

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mm::MlockAllFlags;
use rustix::process::{DumpableBehavior, Resource, Rlimit};

use crate::memory::{format_bytes, memory_mode, MemoryMode};

/// Makes the process non-dumpable and sets its core size limit to zero.
///
/// Call before any secret is read.
pub fn harden_process() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    rustix::process::setrlimit(Resource::Core, zero)?;
    Ok(())
}

/// Locks every current and future page of the process into RAM with
/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`, so working copies that
/// crypto libraries keep on their own heap never reach swap.
///
/// `MCL_ONFAULT` locks pages as they are first touched instead of populating
/// every reserved region (thread stacks, malloc arenas) at once. Kernels
/// before 4.4 lack it and get plain `MCL_CURRENT | MCL_FUTURE`.
///
/// Returns an error, and locks nothing, when `RLIMIT_MEMLOCK` is finite and
/// the process lacks `CAP_IPC_LOCK`. Under `MCL_FUTURE` every mapping past the
/// limit would fail, so a later allocation would abort the process instead.
pub fn lock_all_memory() -> io::Result<()> {
    let limit = rustix::process::getrlimit(Resource::Memlock).current;
    if limit.is_some() && !has_cap_ipc_lock() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "mlockall skipped: RLIMIT_MEMLOCK is {} and the process lacks CAP_IPC_LOCK, \
                 so allocations would fail once the process outgrows the limit; \
                 set LimitMEMLOCK=infinity in the systemd unit (or ulimit -l unlimited)",
                format_bytes(limit)
            ),
        ));
    }

    let all = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE;
    let result = match rustix::mm::mlockall(all | MlockAllFlags::ONFAULT) {
        Err(Errno::INVAL) => rustix::mm::mlockall(all),
        other => other,
    };
    result.map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("mlockall failed: {errno}"),
        )
    })
}

/// Reads `CapEff` from /proc/self/status; false when it cannot be read.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Sets the process's file mode creation mask and returns the previous one.
///
/// The mask is process-wide, so files other threads create meanwhile get it too.
pub fn set_umask(mask: u32) -> u32 {
    rustix::process::umask(Mode::from_raw_mode(mask)).as_raw_mode()
}

/// A file mode creation mask in force until the guard is dropped, for
/// example 0o077 around creating a socket that must not be world-accessible.
#[must_use = "the previous mask comes back when the guard is dropped"]
pub struct UmaskGuard {
    previous: u32,
}

impl UmaskGuard {
    /// Sets `mask` and remembers the previous mask.
    pub fn set(mask: u32) -> Self {
        UmaskGuard {
            previous: set_umask(mask),
        }
    }
}

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        set_umask(self.previous);
    }
}

/// Protections in force, as measured from the kernel at the time of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    /// Backing of new secrets (`memory_mode()`).
    pub memory: MemoryMode,
    /// `prctl(PR_GET_DUMPABLE)` is not 0: core dumps and same-uid ptrace are
    /// possible. True when the call fails.
    pub dumpable: bool,
    /// Soft `RLIMIT_CORE` in bytes; `u64::MAX` is unlimited.
    pub core_limit: u64,
    /// Every lockable mapping in /proc/self/smaps carries the `lo` flag, as
    /// after `mlockall`. False when smaps cannot be read.
    pub mlockall: bool,
    /// /proc/swaps lists at least one swap area. True when it cannot be read.
    pub swap_on_host: bool,
}

/// Measures the protections in force now.
pub fn measure() -> Protections {
    let dumpable = !matches!(
        rustix::process::dumpable_behavior(),
        Ok(DumpableBehavior::NotDumpable)
    );
    let core_limit = rustix::process::getrlimit(Resource::Core)
        .current
        .unwrap_or(u64::MAX);
    let mlockall =
        fs::read_to_string("/proc/self/smaps").is_ok_and(|smaps| all_mappings_locked(&smaps));
    let swap_on_host =
        fs::read_to_string("/proc/swaps").map_or(true, |swaps| lists_swap_area(&swaps));

    Protections {
        memory: memory_mode(),
        dumpable,
        core_limit,
        mlockall,
        swap_on_host,
    }
}

/// Checks the `VmFlags` line of every mapping in smaps text for `lo`
/// (`VM_LOCKED`). Mappings that `mlockall` skips are ignored: those flagged
/// `io`, `pf`, `mm` or `de` (`VM_IO`, `VM_PFNMAP`, `VM_MIXEDMAP`,
/// `VM_DONTEXPAND`, as on the vDSO and vvar pages) and the `[vsyscall]` page.
fn all_mappings_locked(smaps: &str) -> bool {
    const UNLOCKABLE: [&str; 4] = ["io", "pf", "mm", "de"];
    let mut lockable = 0;
    let mut in_vsyscall = false;
    for line in smaps.lines() {
        let Some(flags) = line.strip_prefix("VmFlags:") else {
            // Mapping headers start with "start-end"; field lines with "Name:".
            let first = line.split_whitespace().next().unwrap_or("");
            if !first.ends_with(':') {
                in_vsyscall = line.trim_end().ends_with("[vsyscall]");
            }
            continue;
        };
        let flags: Vec<&str> = flags.split_whitespace().collect();
        if in_vsyscall || flags.iter().any(|flag| UNLOCKABLE.contains(flag)) {
            continue;
        }
        if !flags.contains(&"lo") {
            return false;
        }
        lockable += 1;
    }
    lockable > 0
}

/// Checks /proc/swaps text for a line after the header.
fn lists_swap_area(swaps: &str) -> bool {
    swaps.lines().skip(1).any(|line| !line.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS_LOCKED: &str = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/keyward
Size:                  4 kB
VmFlags: rd mr mw me dw lo sd
7ffd1000-7ffd3000 r--p 00000000 00:00 0 [vvar]
VmFlags: rd mr pf io de dd sd
7ffd3000-7ffd5000 r-xp 00000000 00:00 0 [vdso]
VmFlags: rd ex mr mw me de sd
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
Size:                  4 kB
VmFlags: ex
";

    #[test]
    fn smaps_all_locked_ignores_vdso() {
        assert!(all_mappings_locked(SMAPS_LOCKED));
    }

    #[test]
    fn smaps_unlocked_mapping_is_detected() {
        let smaps = format!(
            "{SMAPS_LOCKED}7f00-7f01 rw-p 00000000 00:00 0\nVmFlags: rd wr mr mw me ac sd\n"
        );
        assert!(!all_mappings_locked(&smaps));
    }

    #[test]
    fn smaps_without_lockable_mappings_is_unlocked() {
        assert!(!all_mappings_locked(""));
        assert!(!all_mappings_locked(
            "7ffd-7ffe r-xp 0 00:00 0 [vdso]\nVmFlags: rd ex de\n"
        ));
    }

    #[test]
    fn swaps_header_alone_means_no_swap() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!lists_swap_area(header));
        assert!(!lists_swap_area(""));
        let with_area = format!("{header}/swapfile  file  1048572  0  -2\n");
        assert!(lists_swap_area(&with_area));
    }

    #[test]
    fn umask_guard_restores_previous_mask() {
        let before = set_umask(0o022);
        {
            let _guard = UmaskGuard::set(0o077);
            assert_eq!(set_umask(0o077), 0o077);
        }
        assert_eq!(set_umask(before), 0o022);
    }

    #[test]
    fn measure_reads_core_limit() {
        let expected = rustix::process::getrlimit(Resource::Core)
            .current
            .unwrap_or(u64::MAX);
        assert_eq!(measure().core_limit, expected);
    }
}
