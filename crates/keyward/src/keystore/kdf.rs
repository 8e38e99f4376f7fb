//! The passphrase KDF (Argon2id): parameter bounds, derivation and calibration.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};

use super::{KdfParams, KdfPolicy, KeystoreError};
use crate::secret::{Passphrase, SecretBuf};

/// The KDF name stored in the file.
pub const KDF_NAME: &str = "argon2id";

/// Production floors. The memory floor is the Argon2id minimum of the OWASP
/// Password Storage Cheat Sheet (19 MiB); the work floor m × t ≥ 65,536
/// (64 MiB in one pass) requires more passes when memory is low.
pub const MIN_M_COST_KIB: u32 = 19_456;
pub const MIN_T_COST: u32 = 1;
pub const MIN_P_COST: u32 = 1;
pub const MIN_WORK: u64 = 65_536;

/// Caps, checked before every derivation so that a tampered file cannot make
/// a reader spend more than this memory (2 GiB) or time.
pub const MAX_M_COST_KIB: u32 = 2_097_152;
pub const MAX_T_COST: u32 = 16;
pub const MAX_P_COST: u32 = 16;
pub const MAX_WORK: u64 = 4_194_304;

/// Memory that `calibrate` prefers: 256 MiB.
const PREFERRED_M_COST_KIB: u32 = 262_144;

fn out_of_bounds(what: String) -> KeystoreError {
    KeystoreError::KdfOutOfBounds { what }
}

impl KdfParams {
    /// The smallest parameters the argon2 crate accepts (8 KiB, t = 1, p = 1).
    /// Usable only with [`KdfPolicy::InsecureTest`].
    pub const fn insecure_test() -> KdfParams {
        KdfParams {
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Checks the caps, which apply under every policy.
    pub fn check_caps(&self) -> Result<(), KeystoreError> {
        let KdfParams {
            m_cost_kib: m,
            t_cost: t,
            p_cost: p,
        } = *self;
        if m > MAX_M_COST_KIB {
            return Err(out_of_bounds(format!(
                "m_cost {m} KiB is more than the cap of {MAX_M_COST_KIB} KiB"
            )));
        }
        if t > MAX_T_COST {
            return Err(out_of_bounds(format!(
                "t_cost {t} is more than the cap of {MAX_T_COST}"
            )));
        }
        if p > MAX_P_COST {
            return Err(out_of_bounds(format!(
                "p_cost {p} is more than the cap of {MAX_P_COST}"
            )));
        }
        if u64::from(m) * u64::from(t) > MAX_WORK {
            return Err(out_of_bounds(format!(
                "m_cost × t_cost = {} is more than the cap of {MAX_WORK}",
                u64::from(m) * u64::from(t)
            )));
        }
        if t == 0 || p == 0 || m < 8 * p {
            return Err(out_of_bounds(format!(
                "Argon2 needs t_cost ≥ 1, p_cost ≥ 1 and m_cost ≥ 8 × p_cost; got m_cost {m}, t_cost {t}, p_cost {p}"
            )));
        }
        Ok(())
    }

    /// Checks the caps, and the floors unless `policy` is `InsecureTest`.
    pub fn check(&self, policy: KdfPolicy) -> Result<(), KeystoreError> {
        self.check_caps()?;
        if policy == KdfPolicy::InsecureTest {
            return Ok(());
        }
        let KdfParams {
            m_cost_kib: m,
            t_cost: t,
            p_cost: p,
        } = *self;
        if m < MIN_M_COST_KIB {
            return Err(out_of_bounds(format!(
                "m_cost {m} KiB is less than the floor of {MIN_M_COST_KIB} KiB"
            )));
        }
        if t < MIN_T_COST || p < MIN_P_COST {
            return Err(out_of_bounds(format!(
                "t_cost {t} and p_cost {p} must be at least 1"
            )));
        }
        if u64::from(m) * u64::from(t) < MIN_WORK {
            return Err(out_of_bounds(format!(
                "m_cost × t_cost = {} is less than the floor of {MIN_WORK}; raise t_cost",
                u64::from(m) * u64::from(t)
            )));
        }
        Ok(())
    }

    /// Measures Argon2id on this machine and picks parameters for which one
    /// derivation takes about `target`. Memory is 256 MiB, or less (never
    /// below the floors) if a single pass over 256 MiB exceeds `target`.
    /// Passes fill the rest of `target`. p = 1 because the argon2 crate
    /// computes lanes one after another.
    pub fn calibrate(target: Duration) -> Result<KdfParams, KeystoreError> {
        let probe = KdfParams {
            m_cost_kib: PREFERRED_M_COST_KIB,
            t_cost: 1,
            p_cost: 1,
        };
        let passphrase = Passphrase::from_text("calibration").map_err(KeystoreError::Memory)?;
        let started = Instant::now();
        derive_kek(&passphrase, &[0u8; 32], &probe)?;
        let per_pass = started.elapsed().max(Duration::from_micros(1));
        Ok(params_for(per_pass, target))
    }
}

/// Picks parameters from the measured time of one pass over 256 MiB.
fn params_for(per_pass_at_preferred: Duration, target: Duration) -> KdfParams {
    let pass_nanos = per_pass_at_preferred.as_nanos().max(1);
    let target_nanos = target.as_nanos().max(1);

    // Time per pass scales about linearly with memory.
    let scaled = u128::from(PREFERRED_M_COST_KIB) * target_nanos / pass_nanos;
    let m = scaled.clamp(u128::from(MIN_M_COST_KIB), u128::from(PREFERRED_M_COST_KIB)) as u32;

    let pass_at_m = (pass_nanos * u128::from(m) / u128::from(PREFERRED_M_COST_KIB)).max(1);
    let by_time = (target_nanos + pass_at_m / 2) / pass_at_m;
    let by_floor = MIN_WORK.div_ceil(u64::from(m));
    let by_cap = MAX_WORK / u64::from(m);
    let t = (by_time.min(u128::from(MAX_T_COST)) as u64)
        .max(by_floor)
        .max(1)
        .min(by_cap)
        .min(u64::from(MAX_T_COST));

    KdfParams {
        m_cost_kib: m,
        t_cost: t as u32,
        p_cost: 1,
    }
}

/// Derives the 32-byte key-encryption key from the passphrase. The caller
/// checks `kdf` against its policy first; the caps are checked here again.
pub fn derive_kek(
    passphrase: &Passphrase,
    salt: &[u8],
    kdf: &KdfParams,
) -> Result<SecretBuf, KeystoreError> {
    kdf.check_caps()?;
    let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| out_of_bounds(format!("Argon2 rejected the parameters: {e}")))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);

    let mut kek = SecretBuf::new(32).map_err(KeystoreError::Memory)?;
    argon2
        .hash_password_into(passphrase.expose(), salt, kek.expose_mut())
        .map_err(|e| out_of_bounds(format!("Argon2 failed: {e}")))?;
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_reject_three_gib() {
        let kdf = KdfParams {
            m_cost_kib: 3 * 1024 * 1024,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(matches!(
            kdf.check(KdfPolicy::InsecureTest),
            Err(KeystoreError::KdfOutOfBounds { .. })
        ));
    }

    #[test]
    fn caps_reject_large_t_p_and_work() {
        let base = KdfParams {
            m_cost_kib: 65_536,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(base.check(KdfPolicy::Production).is_ok());
        assert!(KdfParams { t_cost: 17, ..base }.check_caps().is_err());
        assert!(KdfParams { p_cost: 17, ..base }.check_caps().is_err());
        assert!(KdfParams {
            m_cost_kib: 1_048_576,
            t_cost: 5,
            p_cost: 1
        }
        .check_caps()
        .is_err());
        assert!(KdfParams {
            m_cost_kib: 1_048_576,
            t_cost: 4,
            p_cost: 1
        }
        .check_caps()
        .is_ok());
    }

    #[test]
    fn floors_apply_under_production_only() {
        let test = KdfParams::insecure_test();
        assert!(test.check(KdfPolicy::InsecureTest).is_ok());
        assert!(test.check(KdfPolicy::Production).is_err());

        let low_work = KdfParams {
            m_cost_kib: 19_456,
            t_cost: 3,
            p_cost: 1,
        };
        assert!(low_work.check(KdfPolicy::Production).is_err());
        let owasp_like = KdfParams {
            m_cost_kib: 19_456,
            t_cost: 4,
            p_cost: 1,
        };
        assert!(owasp_like.check(KdfPolicy::Production).is_ok());
    }

    #[test]
    fn zero_costs_rejected_under_every_policy() {
        for kdf in [
            KdfParams {
                m_cost_kib: 8,
                t_cost: 0,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 8,
                t_cost: 1,
                p_cost: 0,
            },
            KdfParams {
                m_cost_kib: 8,
                t_cost: 1,
                p_cost: 2,
            },
        ] {
            assert!(kdf.check(KdfPolicy::InsecureTest).is_err(), "{kdf:?}");
        }
    }

    #[test]
    fn params_for_fast_machine_uses_preferred_memory() {
        let kdf = params_for(Duration::from_millis(250), Duration::from_secs(1));
        assert_eq!(
            kdf,
            KdfParams {
                m_cost_kib: 262_144,
                t_cost: 4,
                p_cost: 1
            }
        );
        assert!(kdf.check(KdfPolicy::Production).is_ok());
    }

    #[test]
    fn params_for_slow_machine_lowers_memory_within_floors() {
        let kdf = params_for(Duration::from_secs(4), Duration::from_secs(1));
        assert_eq!(kdf.m_cost_kib, 65_536);
        assert_eq!(kdf.t_cost, 1);

        let very_slow = params_for(Duration::from_secs(400), Duration::from_secs(1));
        assert_eq!(very_slow.m_cost_kib, MIN_M_COST_KIB);
        assert!(very_slow.check(KdfPolicy::Production).is_ok());
    }

    #[test]
    fn params_for_very_fast_machine_stays_within_caps() {
        let kdf = params_for(Duration::from_millis(1), Duration::from_secs(1));
        assert!(kdf.check(KdfPolicy::Production).is_ok());
        assert_eq!(kdf.t_cost, 16);
    }

    #[test]
    fn calibrate_returns_production_params() {
        let kdf = KdfParams::calibrate(Duration::from_millis(200)).unwrap();
        assert!(kdf.check(KdfPolicy::Production).is_ok(), "{kdf:?}");
        assert_eq!(kdf.p_cost, 1);
    }
}
