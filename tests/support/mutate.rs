//! A small seeded mutational fuzzer for nixseal's inputs (profile, manifest,
//! rekey cache, age files): deterministic for a seed, so a failure found in
//! CI replays exactly. Mutations are byte-level (flip, insert, delete,
//! duplicate a span, truncate) and structure-aware for JSON (repeat a key,
//! swap a value for another type, splice a long or hostile string, nest
//! deeply), which reach parser paths a pure byte flip rarely does.
//!
//! The suite runs a bounded number of cases with fixed seeds; a maintainer
//! runs more with `NIXSEAL_FUZZ_CASES=N NIXSEAL_FUZZ_SEED=S` (docs/testing.md).

/// xorshift64*: tiny, seedable, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Cases the suite runs per target, unless `NIXSEAL_FUZZ_CASES` says otherwise.
pub fn cases(default: usize) -> usize {
    std::env::var("NIXSEAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The base seed, unless `NIXSEAL_FUZZ_SEED` says otherwise.
pub fn seed(default: u64) -> u64 {
    std::env::var("NIXSEAL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const HOSTILE: &[&str] = &[
    "",
    "..",
    "../../etc/passwd",
    "/",
    "/etc/shadow",
    "/nix/store",
    "/run",
    "a/b",
    ".hidden",
    "\u{0}",
    "\n",
    "é",
    "18446744073709551615",
    "-1",
    "0777",
    "9999",
    "{{nixseal:",
    "{{nixseal:x}}",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
];

const VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "1e400",
    "18446744073709551616",
    "[]",
    "{}",
    "\"\"",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
];

/// One mutation of `input`.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        match rng.below(10) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = 1 + rng.below(16.min(v.len() - i));
                v.drain(i..i + n);
            }
            3 if !v.is_empty() => {
                // Duplicate a span: repeats keys, entries, stanzas.
                let i = rng.below(v.len());
                let n = 1 + rng.below(64.min(v.len() - i));
                let span = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, span);
            }
            4 if !v.is_empty() => v.truncate(rng.below(v.len())),
            5 => splice_string(rng, &mut v),
            6 => splice_value(rng, &mut v),
            7 => repeat_key(rng, &mut v),
            8 => {
                // A very long string where a name or path goes.
                let s = "x".repeat(1 + rng.below(400));
                replace_string(rng, &mut v, &s);
            }
            _ => {
                if let Some(i) = find_all(&v, b"\n").first().copied() {
                    v.insert(i, b' ');
                }
            }
        }
    }
    v
}

fn find_all(v: &[u8], pat: &[u8]) -> Vec<usize> {
    (0..v.len().saturating_sub(pat.len() - 1))
        .filter(|&i| v[i..].starts_with(pat))
        .collect()
}

/// Byte ranges of the contents of JSON string literals (naive: no escapes).
fn strings(v: &[u8]) -> Vec<(usize, usize)> {
    let quotes = find_all(v, b"\"");
    quotes
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0] + 1, c[1]))
        .collect()
}

fn replace_string(rng: &mut Rng, v: &mut Vec<u8>, with: &str) {
    let s = strings(v);
    if s.is_empty() {
        return;
    }
    let (a, b) = *rng.pick(&s);
    let escaped = serde_json::to_string(with).unwrap_or_default();
    let inner = escaped.trim_matches('"').as_bytes().to_vec();
    v.splice(a..b, inner);
}

fn splice_string(rng: &mut Rng, v: &mut Vec<u8>) {
    let with = *rng.pick(HOSTILE);
    replace_string(rng, v, with);
}

fn splice_value(rng: &mut Rng, v: &mut Vec<u8>) {
    // Replace the value after a `":` with another JSON type.
    let colons = find_all(v, b"\":");
    if colons.is_empty() {
        return;
    }
    let at = *rng.pick(&colons) + 2;
    let end = v[at..]
        .iter()
        .position(|&b| b == b',' || b == b'}')
        .map_or(v.len(), |p| at + p);
    let with = rng.pick(VALUES).as_bytes().to_vec();
    v.splice(at..end, with);
}

fn repeat_key(rng: &mut Rng, v: &mut Vec<u8>) {
    // `{"k":...` -> `{"k":...,"k":...` for a simple member (up to the next `,`/`}`).
    let starts: Vec<usize> = find_all(v, b"{\"").into_iter().map(|i| i + 1).collect();
    if starts.is_empty() {
        return;
    }
    let a = *rng.pick(&starts);
    let Some(end) = v[a..].iter().position(|&b| b == b',' || b == b'}') else {
        return;
    };
    let member = v[a..a + end].to_vec();
    let mut ins = member;
    ins.push(b',');
    v.splice(a..a, ins);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let base = br#"{"version":1,"hosts":{"a":{"x":1}}}"#;
        let a: Vec<Vec<u8>> = (0..50)
            .map({
                let mut r = Rng::new(7);
                move |_| mutate(&mut r, base)
            })
            .collect();
        let b: Vec<Vec<u8>> = (0..50)
            .map({
                let mut r = Rng::new(7);
                move |_| mutate(&mut r, base)
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|m| m != base));
    }
}
