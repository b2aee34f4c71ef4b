//! Host SSH ed25519 public keys as age recipients, for renc.
//!
//! renc wraps a fresh file key to every host for every secret it rekeys.
//! `age::ssh::Recipient` does, per wrap, what depends only on the host key
//! again and again: the key's Montgomery form (a field inversion), the
//! `ssh-ed25519` tweak (HKDF), the stanza tag (SHA-256) — and two X25519
//! ladders, ephemeral × key and then tweak × that. [`FastRecipient`] derives
//! the key's constants once, at construction, including the tweak applied to
//! the key point (`[t]P`; scalar multiplication commutes, so
//! `[t]([e]P) = [e]([t]P)`), and per wrap does only the base-point
//! multiplication (the ephemeral share), one variable-base multiplication
//! (ephemeral × `[t]P`), HKDF and the ChaCha20-Poly1305 seal (age-core's
//! own `hkdf` and `aead_encrypt`, the curve25519-dalek age uses). The
//! stanza is age's `ssh-ed25519` stanza byte for byte: for the same
//! ephemeral secret it is the one age would write (a unit test compares
//! them), and Go `age`, `rage`, `age::ssh::Identity` and the deploy side's
//! `HostIdentity` (host/identity.rs) open it (tests/fast_recipient.rs).
//!
//! It is the encryption twin of `HostIdentity` (host/identity.rs). It is made
//! from a [`HostRecipient`], so construction refuses, with the same errors
//! and through the same check, a key that is not a canonical, prime-order
//! curve point: no file key is ever wrapped to a key anyone could open.

use std::collections::HashSet;
use std::fmt;

use age::EncryptError;
use age_core::format::{FileKey, Stanza};
use age_core::primitives::{aead_encrypt, hkdf};
use age_core::secrecy::ExposeSecret;
use base64::{prelude::BASE64_STANDARD_NO_PAD, Engine};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha256};
use ssh_key::rand_core::RngCore;
use zeroize::Zeroizing;

use super::recipient::{ed25519_point, SSH_ED25519};
use super::{HostPubkeyError, HostRecipient};

/// The HKDF label of the `ssh-ed25519` recipient type (age spec).
const KEY_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";

/// A host's `ssh-ed25519` public key as an age recipient, with every
/// per-key derivation done once (see the module documentation).
///
/// It holds public values only (all derived from the public key), is `Send`
/// and `Sync`, and wraps from any number of threads at once through `&self`:
/// renc can build one per host and share it across its rayon workers.
#[derive(Clone)]
pub struct FastRecipient {
    /// `ssh-ed25519 <base64>`, as [`HostRecipient::as_str`] has it (errors).
    key: String,
    /// First stanza argument: unpadded base64 of the first 4 bytes of
    /// SHA-256 of the SSH wire public key.
    tag: String,
    /// The key point's Montgomery u-coordinate (the HKDF salt's second half).
    montgomery: [u8; 32],
    /// `[t]P`: the key point multiplied by the clamped tweak
    /// HKDF-SHA256(salt = SSH wire public key, info = label, ikm = ""),
    /// kept in Edwards form for the per-wrap multiplication.
    tweaked: EdwardsPoint,
}

impl fmt::Debug for FastRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FastRecipient").field(&self.key).finish()
    }
}

/// The SSH wire encoding of an ed25519 public key: `string "ssh-ed25519"`,
/// `string point` (what age hashes for the tag and the tweak).
fn wire_key(point: &[u8; 32]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(4 + SSH_ED25519.len() + 4 + 32);
    wire.extend_from_slice(&(SSH_ED25519.len() as u32).to_be_bytes());
    wire.extend_from_slice(SSH_ED25519.as_bytes());
    wire.extend_from_slice(&32u32.to_be_bytes());
    wire.extend_from_slice(point);
    wire
}

impl FastRecipient {
    /// Parses `ssh-ed25519 <base64> [comment]` as [`HostRecipient::parse`]
    /// does (same errors, same refusal of weak keys).
    pub fn parse(key: &str) -> Result<Self, HostPubkeyError> {
        Self::new(&HostRecipient::parse(key)?)
    }

    /// The fast recipient of a host key. A [`HostRecipient`] exists only
    /// once [`HostRecipient::parse`] has refused weak keys (the point checks
    /// of identity/mod.rs); the errors here are for what that would miss.
    pub fn new(host: &HostRecipient) -> Result<Self, HostPubkeyError> {
        let key = host.as_str();
        let malformed = |reason: String| HostPubkeyError::Malformed {
            key: key.into(),
            reason,
        };
        let weak = |reason| HostPubkeyError::Weak {
            key: key.into(),
            reason,
        };
        let b64 = match key.split_whitespace().collect::<Vec<_>>()[..] {
            [SSH_ED25519, b64] => b64,
            _ => return Err(malformed("not `ssh-ed25519 <base64>`".into())),
        };
        let point = ed25519_point(b64).map_err(malformed)?;
        let edwards = CompressedEdwardsY(point)
            .decompress()
            .ok_or_else(|| weak("it is not a point on the ed25519 curve"))?;
        let montgomery = edwards.to_montgomery().to_bytes();
        let wire = wire_key(&point);
        let tweaked = edwards.mul_clamped(hkdf(&wire, KEY_LABEL, &[]));
        // Impossible for a prime-order point (no clamped scalar is a
        // multiple of the group order), but it would make every wrap's
        // shared secret zero: refuse the key rather than the wraps.
        if tweaked.is_identity() {
            return Err(weak("its tweaked point is the identity"));
        }
        let tag = BASE64_STANDARD_NO_PAD.encode(&Sha256::digest(&wire)[..4]);
        Ok(Self {
            key: key.to_owned(),
            tag,
            montgomery,
            tweaked,
        })
    }

    /// The key as `ssh-ed25519 <base64>`, without comment.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The stanza for `file_key` with ephemeral secret `esk` (32 random
    /// bytes, clamped here as X25519 clamps them).
    ///
    /// The ephemeral share is `[e]B` (x25519-dalek's `PublicKey::from`
    /// computes it the same way: fixed base in Edwards form, then
    /// Montgomery). The shared secret age computes is the X25519 of the
    /// tweak and the X25519 of `e` and the key, `u([t][e]P)`; here it is
    /// `u([e]([t]P))` — the same point, one variable-base multiplication
    /// (curve25519-dalek's constant-time Edwards one, which uses AVX2 where
    /// the CPU has it and is faster than the Montgomery ladder there).
    fn wrap_with(
        &self,
        esk: &Zeroizing<[u8; 32]>,
        file_key: &FileKey,
    ) -> Result<Stanza, EncryptError> {
        let epk = EdwardsPoint::mul_base_clamped(**esk).to_montgomery();
        let shared = Zeroizing::new(self.tweaked.mul_clamped(**esk));
        // As age's X25519 recipient does (it panics; an error is enough).
        if shared.is_identity() {
            return Err(EncryptError::Io(std::io::Error::other(format!(
                "the shared secret with host key {} is all zero; refusing to encrypt to it",
                self.key
            ))));
        }
        let shared = Zeroizing::new(shared.to_montgomery().to_bytes());
        let mut salt = [0; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(&self.montgomery);
        let key = Zeroizing::new(hkdf(&salt, KEY_LABEL, &*shared));
        Ok(Stanza {
            tag: SSH_ED25519.to_owned(),
            args: vec![
                self.tag.clone(),
                BASE64_STANDARD_NO_PAD.encode(epk.as_bytes()),
            ],
            body: aead_encrypt(&key, file_key.expose_secret()),
        })
    }
}

impl age::Recipient for FastRecipient {
    /// One `ssh-ed25519` stanza and no labels, as `age::ssh::Recipient`.
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        // The OS RNG (rand_core 0.6's OsRng, getrandom), as age draws its
        // ephemeral secrets.
        let mut esk = Zeroizing::new([0u8; 32]);
        ssh_key::rand_core::OsRng.fill_bytes(&mut *esk);
        Ok((vec![self.wrap_with(&esk, file_key)?], HashSet::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::Recipient as _;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    use x25519_dalek::{PublicKey, StaticSecret};

    /// The OpenSSH public key line for a raw 32-byte point.
    fn key_line(point: [u8; 32]) -> String {
        format!(
            "ssh-ed25519 {}",
            base64::engine::general_purpose::STANDARD.encode(wire_key(&point))
        )
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn file_key(bytes: [u8; 16]) -> FileKey {
        FileKey::new(Box::new(bytes))
    }

    fn random_key() -> PrivateKey {
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
    }

    fn public_line(key: &PrivateKey) -> String {
        key.public_key().to_openssh().unwrap()
    }

    /// What `age::ssh::Recipient` would write for ephemeral secret `esk`,
    /// computed the way it does (its code, step by step, from its own parse
    /// of the key): Montgomery form, tweak, two ladders, HKDF, seal.
    fn age_reference(line: &str, esk: &StaticSecret, file_key: &FileKey) -> Stanza {
        let r: age::ssh::Recipient = line.parse().unwrap();
        let age::ssh::Recipient::SshEd25519(ssh_key, ed25519_pk) = r else {
            panic!("not ed25519");
        };
        let pk = PublicKey::from(ed25519_pk.to_montgomery().to_bytes());
        let epk = PublicKey::from(esk);
        let tweak = StaticSecret::from(hkdf(&ssh_key, KEY_LABEL, &[]));
        let shared = tweak.diffie_hellman(&PublicKey::from(*esk.diffie_hellman(&pk).as_bytes()));
        let mut salt = [0; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(pk.as_bytes());
        let enc_key = hkdf(&salt, KEY_LABEL, shared.as_bytes());
        Stanza {
            tag: "ssh-ed25519".into(),
            args: vec![
                BASE64_STANDARD_NO_PAD.encode(&Sha256::digest(&ssh_key)[..4]),
                BASE64_STANDARD_NO_PAD.encode(epk.as_bytes()),
            ],
            body: aead_encrypt(&enc_key, file_key.expose_secret()),
        }
    }

    fn unwrap_with(id: &dyn age::Identity, stanza: &Stanza) -> [u8; 16] {
        *id.unwrap_stanza(stanza)
            .expect("the identity recognises the stanza")
            .expect("the stanza opens")
            .expose_secret()
    }

    /// For the same ephemeral secret, the stanza is the one age writes, byte
    /// for byte (tag, arguments, body), over many keys and file keys.
    #[test]
    fn stanza_is_ages_byte_for_byte() {
        for _ in 0..50 {
            let key = random_key();
            let line = public_line(&key);
            let ours = FastRecipient::parse(&line).unwrap();
            for _ in 0..4 {
                let mut e = [0u8; 32];
                OsRng.fill_bytes(&mut e);
                let mut fk = [0u8; 16];
                OsRng.fill_bytes(&mut fk);
                let got = ours.wrap_with(&Zeroizing::new(e), &file_key(fk)).unwrap();
                let want = age_reference(&line, &StaticSecret::from(e), &file_key(fk));
                assert_eq!(
                    (&got.tag, &got.args, &got.body),
                    (&want.tag, &want.args, &want.body),
                    "{line}"
                );
            }
        }
    }

    /// Over 200 fresh keys, several file keys each: the tag is the one
    /// `age::ssh::Recipient` writes, and `age::ssh::Identity` and the deploy
    /// side's `HostIdentity` both unwrap the file key that was wrapped.
    #[test]
    fn many_keys_open_with_age_and_host_identity() {
        for _ in 0..200 {
            let key = random_key();
            let line = public_line(&key);
            let pem = key.to_openssh(LineEnding::LF).unwrap();
            let age_id = age::ssh::Identity::from_buffer(pem.as_bytes(), None).unwrap();
            let host_id = crate::host::parse_host_key(std::path::Path::new("/k"), pem.as_bytes())
                .expect("HostIdentity loads the key");
            let ours = FastRecipient::parse(&format!("{line} root@host")).unwrap();
            let age_r: age::ssh::Recipient = line.parse().unwrap();
            let (age_stanzas, age_labels) = age_r.wrap_file_key(&file_key([0; 16])).unwrap();
            for _ in 0..3 {
                let mut fk = [0u8; 16];
                OsRng.fill_bytes(&mut fk);
                let (stanzas, labels) = ours.wrap_file_key(&file_key(fk)).unwrap();
                assert_eq!(labels, age_labels, "same labels as age (none)");
                assert_eq!(stanzas.len(), 1);
                let s = &stanzas[0];
                assert_eq!(s.tag, age_stanzas[0].tag);
                assert_eq!(s.args.len(), 2);
                assert_eq!(s.args[0], age_stanzas[0].args[0], "tag of {line}");
                assert_eq!(s.body.len(), age_stanzas[0].body.len());
                assert_eq!(unwrap_with(&age_id, s), fk, "age::ssh::Identity");
                assert_eq!(unwrap_with(&host_id, s), fk, "HostIdentity");
            }
        }
    }

    /// Fresh ephemeral per wrap: two wraps of one file key differ.
    #[test]
    fn every_wrap_has_its_own_ephemeral() {
        let ours = FastRecipient::parse(&public_line(&random_key())).unwrap();
        let a = ours.wrap_file_key(&file_key([1; 16])).unwrap().0.remove(0);
        let b = ours.wrap_file_key(&file_key([1; 16])).unwrap().0.remove(0);
        assert_ne!(a.args[1], b.args[1]);
        assert_ne!(a.body, b.body);
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<FastRecipient>();
    }

    /// Keys that protect nothing are refused at construction, with the
    /// same error `HostRecipient::parse` gives, so no wrap ever happens.
    #[test]
    fn weak_keys_are_refused_before_any_wrap() {
        use curve25519_dalek::edwards::EdwardsPoint;
        let weak = |point: [u8; 32]| {
            let line = key_line(point);
            let e = FastRecipient::parse(&line).unwrap_err();
            assert!(matches!(e, HostPubkeyError::Weak { .. }), "{line}: {e}");
            e.to_string()
        };
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(weak(identity).contains("small order"));
        let order2 = hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert!(weak(order2).contains("small order"));
        let order8 = hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05");
        assert!(weak(order8).contains("small order"));
        // Every small-order point (the multiples of an order-8 point).
        let t = CompressedEdwardsY(order8).decompress().unwrap();
        let mut m = EdwardsPoint::default();
        for _ in 0..8 {
            assert!(weak(m.compress().to_bytes()).contains("small order"));
            m += t;
        }
        // A real key plus a torsion point: mixed order.
        let real = CompressedEdwardsY(
            ssh_key::PublicKey::from_openssh(&public_line(&random_key()))
                .unwrap()
                .key_data()
                .ed25519()
                .unwrap()
                .0,
        )
        .decompress()
        .unwrap();
        assert!(weak((real + t).compress().to_bytes()).contains("torsion"));
        assert!(weak((B + t).compress().to_bytes()).contains("torsion"));
        // Not on the curve (y = 2), and a non-canonical encoding.
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(weak(two).contains("not a point on the ed25519 curve"));
        let mut neg_zero = identity;
        neg_zero[31] |= 0x80;
        assert!(weak(neg_zero).contains("non-canonical"));
        // The check is the one HostRecipient::parse makes: same errors.
        for p in [identity, order2, order8, two, neg_zero] {
            assert_eq!(
                FastRecipient::parse(&key_line(p)).unwrap_err(),
                HostRecipient::parse(&key_line(p)).unwrap_err()
            );
        }
        // Malformed and other-type keys: HostRecipient's errors too.
        for bad in ["", "ssh-rsa AAAA", "ssh-ed25519 !!!", "ssh-ed25519 AAAA"] {
            assert_eq!(
                FastRecipient::parse(bad).unwrap_err(),
                HostRecipient::parse(bad).unwrap_err(),
                "{bad:?}"
            );
        }
        // The base point itself is a genuine prime-order key.
        FastRecipient::parse(&key_line(B.compress().to_bytes())).unwrap();
    }

    /// A zero shared secret is refused, not sealed: forced here by a
    /// recipient whose tweaked point is of small order (which construction
    /// never makes), since no genuine key can produce one.
    #[test]
    fn zero_shared_secret_is_refused() {
        let mut r = FastRecipient::parse(&public_line(&random_key())).unwrap();
        let order8 = hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05");
        let order8 = CompressedEdwardsY(order8).decompress().unwrap();
        for small in [EdwardsPoint::default(), order8, order8 + order8] {
            r.tweaked = small;
            let e = r.wrap_file_key(&file_key([3; 16])).unwrap_err();
            assert!(e.to_string().contains("all zero"), "{e}");
            assert!(e.to_string().contains(r.as_str()), "{e}");
        }
    }
}
