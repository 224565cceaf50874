//! Seeds and stable hashes: every random choice of a run derives from the run's seed and a
//! name, so adding a stage or an item does not shift the others' randomness.

const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// 64-bit FNV-1a of `bytes`: stable across platforms, versions and runs (unlike std's
/// `DefaultHasher`), so ids, shards and seeds derived from it never move.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_seeded(bytes, 0)
}

/// FNV-1a started from a basis moved by `seed`: a family of independent hashes (MinHash).
pub fn fnv1a_seeded(bytes: &[u8], seed: u64) -> u64 {
    bytes
        .iter()
        .fold(FNV_BASIS ^ seed.wrapping_mul(GOLDEN), |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The seed of the item or stage called `key` in a run seeded with `seed`: a resumed run
/// samples for an item what the interrupted one would have, whatever else changed.
pub fn derive(seed: u64, key: &str) -> u64 {
    fnv1a(key.as_bytes()) ^ seed.wrapping_mul(GOLDEN)
}

/// SplitMix64's finalizer: every input bit moves about half the output bits. FNV-1a alone
/// leaves ids that differ in their last character close together in the high bits, so an
/// order by `mix(fnv1a(id))` is a shuffle and an order by `fnv1a(id)` is not.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The largest integer every JSON reader keeps exactly: readers that parse numbers as float64
/// (HF `datasets`, pandas, JavaScript) round integers above 2^53.
pub const JSON_EXACT_MAX: u64 = (1 << 53) - 1;

/// `seed` in 53 bits, for seeds written into records that users load with JSON readers (the
/// seed in a record must be the one that was used, so it is reduced before use).
pub fn json_exact(seed: u64) -> u64 {
    seed & JSON_EXACT_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn derived_seeds_differ_by_key_and_by_seed() {
        assert_ne!(derive(0, "a"), derive(0, "b"));
        assert_ne!(derive(0, "a"), derive(1, "a"));
        assert_eq!(derive(7, "q/3"), derive(7, "q/3"));
    }
}
