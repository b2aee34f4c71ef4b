//! Nix's base32: the alphabet and bit order of store path hashes and
//! `nix hash --base32`.

/// Nix's base32 alphabet: digits and lowercase letters without `e`, `o`, `u` and `t`.
const NIX_BASE32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Nix's base32 encoding: 5-bit groups taken from the end of the byte string, most
/// significant group first, over the alphabet `0123456789abcdfghijklmnpqrsvwxyz`.
pub fn nix_base32_encode(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let len = (bytes.len() * 8 - 1) / 5 + 1;
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let i = bit / 8;
        let j = bit % 8;
        let low = u16::from(bytes[i]) >> j;
        let high = bytes.get(i + 1).map_or(0, |&b| u16::from(b) << (8 - j));
        let group = ((low | high) & 0x1f) as usize;
        out.push(char::from(NIX_BASE32_ALPHABET[group]));
    }
    out
}

/// Decodes Nix's base32 (the inverse of [`nix_base32_encode`]) into `len`
/// bytes; `None` when the text is not the base32 of exactly `len` bytes.
pub fn nix_base32_decode(text: &str, len: usize) -> Option<Vec<u8>> {
    if len == 0 || text.len() != (len * 8 - 1) / 5 + 1 {
        return None;
    }
    let mut out = vec![0u8; len];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = NIX_BASE32_ALPHABET.iter().position(|&a| a == c)? as u16;
        let bit = n * 5;
        let i = bit / 8;
        let j = bit % 8;
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < len {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}
