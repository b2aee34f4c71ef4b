//! A seeded xorshift64 generator for the crate's unit tests (the same
//! numbers for a seed, so a failing case can be replayed).

/// The generator for `seed` (not 0): each call gives the next number.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
