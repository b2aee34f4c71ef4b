//! The two age operations every part of nixseal needs: decrypt a whole file
//! held in memory, and encrypt plaintext to a set of recipients.
//!
//! Plaintext only ever lives in [`Plaintext`] buffers that are wiped on drop.

use std::io::{BufRead, Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use zeroize::Zeroizing;

/// Decrypted secret bytes, wiped from memory when dropped.
pub type Plaintext = Zeroizing<Vec<u8>>;

/// Why an age file could not be decrypted. Display strings carry no file name;
/// callers wrap this with the file, host or secret concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptFailure {
    /// The bytes are not an age file at all (neither binary nor armored).
    #[error("not an age file (no `age-encryption.org/v1` header)")]
    NotAge,
    /// None of the identities given could open the file.
    #[error("none of the given identities can decrypt it (it was encrypted to other recipients)")]
    NoMatchingIdentity,
    /// The identity is passphrase-protected and the passphrase was wrong or missing.
    #[error("wrong or missing passphrase for the identity")]
    WrongPassphrase,
    /// The header or payload is damaged or truncated.
    #[error("the file is corrupted or truncated ({0})")]
    Corrupt(String),
    /// An age plugin reported an error.
    #[error("age plugin failed: {0}")]
    Plugin(String),
    /// The file is an age file of a format this build does not understand.
    #[error("unknown age format (made by a newer age?)")]
    UnknownFormat,
}

/// Removes the Unicode isolation marks (U+2068/U+2069) that age's localised
/// error strings carry, so messages read cleanly in a terminal and in tests.
pub fn clean_age_message(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\u{2068}' | '\u{2069}'))
        .collect()
}

impl DecryptFailure {
    fn from_age(e: age::DecryptError) -> Self {
        use age::DecryptError as E;
        match e {
            E::NoMatchingKeys => Self::NoMatchingIdentity,
            E::KeyDecryptionFailed => Self::WrongPassphrase,
            E::UnknownFormat => Self::UnknownFormat,
            E::InvalidHeader => Self::NotAge,
            E::Plugin(errs) => Self::Plugin(
                errs.iter()
                    .map(|e| clean_age_message(&e.to_string()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            E::PluginResolve(e) => Self::Plugin(clean_age_message(&e.to_string())),
            other => Self::Corrupt(clean_age_message(&other.to_string())),
        }
    }
}

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const BINARY_MAGIC: &[u8] = b"age-encryption.org/";

/// Whether `bytes` look like an age file (binary or armored), judged by the header only.
pub fn looks_like_age(bytes: &[u8]) -> bool {
    let trimmed = trim_ascii_start(bytes);
    bytes.starts_with(BINARY_MAGIC) || trimmed.starts_with(ARMOR_BEGIN)
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Opens an age file held in memory (binary or armored) for decryption.
fn decryptor(ciphertext: &[u8]) -> Result<age::Decryptor<impl BufRead + '_>, DecryptFailure> {
    if !looks_like_age(ciphertext) {
        return Err(DecryptFailure::NotAge);
    }
    age::Decryptor::new_buffered(ArmoredReader::new(ciphertext)).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::Io(_) => {
            DecryptFailure::Corrupt(clean_age_message(&e.to_string()))
        }
        e => DecryptFailure::from_age(e),
    })
}

/// Whether an in-memory age file is encrypted to a passphrase (`age -p`).
pub fn is_passphrase_encrypted(ciphertext: &[u8]) -> bool {
    decryptor(ciphertext)
        .map(|d| d.is_scrypt())
        .unwrap_or(false)
}

/// Decrypts a whole age file with the first identity that fits.
pub fn decrypt(
    ciphertext: &[u8],
    identities: &[&dyn age::Identity],
) -> Result<Plaintext, DecryptFailure> {
    let d = decryptor(ciphertext)?;
    let scrypt = d.is_scrypt();
    let mut reader = d.decrypt(identities.iter().copied()).map_err(|e| match e {
        // For a passphrase-encrypted file, a header that does not open is
        // a wrong passphrase, not a damaged file.
        age::DecryptError::DecryptionFailed if scrypt => DecryptFailure::WrongPassphrase,
        e => DecryptFailure::from_age(e),
    })?;
    // The plaintext is always shorter than its age file, so one wiped
    // buffer of the ciphertext's size holds it: no reallocation ever leaves
    // an unwiped copy behind, and nothing can grow past the input.
    let mut out = Zeroizing::new(vec![0u8; ciphertext.len()]);
    let mut len = 0;
    loop {
        if len == out.len() {
            return Err(DecryptFailure::Corrupt(
                "the payload is longer than the file".into(),
            ));
        }
        match reader.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DecryptFailure::Corrupt(clean_age_message(&e.to_string()))),
        }
    }
    // Truncating keeps the allocation; Zeroizing wipes all of it on drop.
    out.truncate(len);
    Ok(out)
}

/// Why encryption failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptFailure {
    /// age refused the recipient set (e.g. none given, or a plugin failed).
    #[error("cannot encrypt: {0}")]
    Recipients(String),
    /// Writing into the in-memory buffer failed (should be impossible).
    #[error("cannot encrypt: {0}")]
    Io(#[from] std::io::Error),
}

/// Encrypts `plaintext` to `recipients` as a binary age file, or an armored one
/// when `armor` is set.
pub fn encrypt(
    plaintext: &[u8],
    recipients: &[&dyn age::Recipient],
    armor: bool,
) -> Result<Vec<u8>, EncryptFailure> {
    let enc = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|e| EncryptFailure::Recipients(clean_age_message(&e.to_string())))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let format = if armor {
        Format::AsciiArmor
    } else {
        Format::Binary
    };
    let armored = ArmoredWriter::wrap_output(&mut out, format)?;
    let mut w = enc.wrap_output(armored)?;
    w.write_all(plaintext)?;
    w.finish()?.finish()?;
    Ok(out)
}

/// Whether the bytes are ASCII-armored age (so edits keep the operator's format).
pub fn is_armored(ciphertext: &[u8]) -> bool {
    trim_ascii_start(ciphertext).starts_with(ARMOR_BEGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn roundtrip_binary_and_armored() {
        let id = age::x25519::Identity::generate();
        let r = id.to_public();
        for armor in [false, true] {
            let ct = encrypt(b"hello", &[&r], armor).unwrap();
            assert_eq!(is_armored(&ct), armor);
            assert!(looks_like_age(&ct));
            let pt = decrypt(&ct, &[&id]).unwrap();
            assert_eq!(&pt[..], b"hello");
        }
        let _ = id.to_string().expose_secret().len();
    }

    #[test]
    fn classifies_failures() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let ct = encrypt(b"hello", &[&id.to_public()], false).unwrap();
        assert!(matches!(
            decrypt(b"plain text", &[&id]),
            Err(DecryptFailure::NotAge)
        ));
        assert!(matches!(
            decrypt(&ct, &[&other]),
            Err(DecryptFailure::NoMatchingIdentity)
        ));
        let truncated = &ct[..ct.len() - 5];
        assert!(matches!(
            decrypt(truncated, &[&id]),
            Err(DecryptFailure::Corrupt(_))
        ));
        let mut flipped = ct.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            decrypt(&flipped, &[&id]),
            Err(DecryptFailure::Corrupt(_))
        ));
    }
}
