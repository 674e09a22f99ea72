//! Sticky canary assignment (DESIGN §6): a caller's bucket is
//! `SHA-256(salt ‖ 0x00 ‖ E.164) mod 10,000`, and the caller is on the canary when the bucket
//! is below `percent × 100`. The same number always lands in the same bucket under one salt,
//! so raising the percentage only adds callers; SHA-256 (never Rust's `DefaultHasher`, whose
//! output may change between releases) keeps the bucket stable across builds and nodes.

use sha2::{Digest, Sha256};

/// Buckets a percentage is counted in (100 per point).
pub const BUCKETS: u64 = 10_000;

/// Which version a call was given, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The policy's stable version (or the agent's newest approved one without a policy).
    Stable,
    /// The policy's canary.
    Canary,
    /// A version pinned by the call or its route (the policy is bypassed).
    Pinned,
}

impl Arm {
    /// The wire name (also the `arm` label of `rollout_calls_total`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Canary => "canary",
            Arm::Pinned => "pinned",
        }
    }
}

/// The bucket (0–9,999) of `number` under `salt`.
pub fn bucket(salt: &str, number: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(number.trim().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// Whether `number` is on the canary at `percent` (0–100) under `salt`.
pub fn on_canary(salt: &str, number: &str, percent: u8) -> bool {
    bucket(salt, number) < u64::from(percent.min(100)) * 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn number(n: u64) -> String {
        format!("+1{:010}", n % 10_000_000_000)
    }

    #[test]
    fn the_bucket_is_the_sha256_of_salt_and_number() {
        // SHA-256("s1\0+15551230000") starts 0x…; recomputed here from the definition.
        let mut h = Sha256::new();
        h.update(b"s1\0+15551230000");
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        assert_eq!(
            bucket("s1", "+15551230000"),
            u64::from_be_bytes(first) % 10_000
        );
        assert_eq!(bucket("s1", " +15551230000 "), bucket("s1", "+15551230000"));
        assert!(!on_canary("s1", "+15551230000", 0));
        assert!(on_canary("s1", "+15551230000", 100));
    }

    proptest! {
        #[test]
        fn raising_the_percentage_never_moves_a_caller_back_to_stable(
            salt in "[a-z0-9]{1,16}",
            n in any::<u64>(),
            a in 0u8..=100,
            b in 0u8..=100,
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let num = number(n);
            if on_canary(&salt, &num, low) {
                prop_assert!(on_canary(&salt, &num, high));
            }
            // Sticky: the same caller, the same answer.
            prop_assert_eq!(on_canary(&salt, &num, low), on_canary(&salt, &num, low));
        }

        #[test]
        fn over_ten_thousand_numbers_the_split_is_within_two_points(
            salt in "[a-z0-9]{8,16}",
            start in any::<u64>(),
            percent in 1u8..=100,
        ) {
            let canary = (0..10_000u64)
                .filter(|i| on_canary(&salt, &number(start.wrapping_add(i.wrapping_mul(7_919))), percent))
                .count();
            let share = canary as f64 / 100.0;
            prop_assert!((share - f64::from(percent)).abs() <= 2.0, "{share} vs {percent}");
        }
    }
}
