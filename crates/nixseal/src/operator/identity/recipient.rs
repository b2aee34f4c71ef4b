//! Recipients: a host's `ssh-ed25519` public key ([`HostRecipient`], checked
//! to be a real prime-order point) and every other key `edit`, generators and
//! `extraRecipients` encrypt to ([`parse_recipient`]).

use std::sync::Arc;

use super::{AgeCallbacks, Interaction};
use crate::common::crypto::clean_age_message;

/// Why a host's public key (`hostPubkey` in the profile) was refused. (A
/// host's private key, on the host, has its own [`crate::activate::HostKeyError`].)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostPubkeyError {
    /// No key at all (`null`, absent or an empty string: a host added before
    /// its key is known).
    #[error("hostPubkey is not set (a new host without its key yet? a key or .pub file the NixOS module refused is left out too: evaluating that host says why); get it with `ssh-keyscan -t ed25519 HOST` (or from /etc/ssh/ssh_host_ed25519_key.pub on the host), set nixseal.settings.hostPubkey to that line or to a .pub file in the flake")]
    Missing,
    /// A valid SSH key of another type (RSA, ECDSA, …).
    #[error("hostPubkey is an {found} key, but nixseal encrypts to the host's ssh-ed25519 key; get it with `ssh-keyscan -t ed25519 HOST` or from /etc/ssh/ssh_host_ed25519_key.pub")]
    NotEd25519 {
        /// The key type found.
        found: String,
    },
    /// Not a parseable public key.
    #[error("hostPubkey {key:?} is not a valid ssh-ed25519 public key ({reason}); copy the whole line of /etc/ssh/ssh_host_ed25519_key.pub (or `ssh-keyscan -t ed25519 HOST`)")]
    Malformed {
        /// The key as given (public, safe to show).
        key: String,
        /// Why.
        reason: String,
    },
    /// A well-formed key that protects nothing: a point of small order, with
    /// a torsion component, or a non-canonical encoding. Files encrypted to
    /// it could be opened by anyone.
    #[error("hostPubkey {key:?} is not a real host key: {reason}; anything encrypted to it could be decrypted without the host's private key. Use the host's own key (`ssh-keyscan -t ed25519 HOST`)")]
    Weak {
        /// The key as given.
        key: String,
        /// What is wrong with the point.
        reason: &'static str,
    },
}

/// A host's `ssh-ed25519` public key: the recipient of its rekeyed files.
#[derive(Debug, Clone)]
pub struct HostRecipient {
    normalized: String,
    recipient: age::ssh::Recipient,
}

pub(super) const SSH_ED25519: &str = "ssh-ed25519";

impl HostRecipient {
    /// Parses `ssh-ed25519 <base64> [comment]`, refusing keys that are not
    /// a prime-order curve point (see [`HostPubkeyError::Weak`]).
    pub fn parse(key: &str) -> Result<Self, HostPubkeyError> {
        let mut parts = key.split_whitespace();
        let (Some(kind), b64) = (parts.next(), parts.next()) else {
            return Err(HostPubkeyError::Missing);
        };
        let malformed = |reason: String| HostPubkeyError::Malformed {
            key: key.into(),
            reason,
        };
        if kind != SSH_ED25519 {
            if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-") {
                return Err(HostPubkeyError::NotEd25519 { found: kind.into() });
            }
            return Err(malformed(format!("unknown key type {kind:?}")));
        }
        let Some(b64) = b64 else {
            return Err(malformed("the base64 part is missing".into()));
        };
        let point = ed25519_point(b64).map_err(malformed)?;
        check_point(&point).map_err(|reason| HostPubkeyError::Weak {
            key: key.into(),
            reason,
        })?;
        let normalized = format!("{kind} {b64}");
        debug_assert_eq!(normalized_host_key(key).as_ref(), Some(&normalized));
        let recipient: age::ssh::Recipient = normalized
            .parse()
            .map_err(|e| malformed(ssh_key_problem(&e)))?;
        if !matches!(recipient, age::ssh::Recipient::SshEd25519(..)) {
            return Err(HostPubkeyError::NotEd25519 {
                found: "ssh-rsa".into(),
            });
        }
        Ok(Self {
            normalized,
            recipient,
        })
    }

    /// The key as `ssh-ed25519 <base64>`, without comment (what the cache records).
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The age recipient.
    pub fn recipient(&self) -> &age::ssh::Recipient {
        &self.recipient
    }
}

/// `ssh-ed25519 <base64>` of a key line, as [`HostRecipient::as_str`] has
/// it once [`HostRecipient::parse`] accepted the line: the same words, no
/// check of the key itself (`None` for a line `parse` refuses outright).
pub fn normalized_host_key(key: &str) -> Option<String> {
    let mut parts = key.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(SSH_ED25519), Some(b64)) => Some(format!("{SSH_ED25519} {b64}")),
        _ => None,
    }
}

/// The 32-byte point of an OpenSSH `ssh-ed25519` public key blob
/// (`string "ssh-ed25519"`, `string key`), base64 as in `.pub` files.
pub(super) fn ed25519_point(b64: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not base64: {e}"))?;
    let mut rest = &blob[..];
    let mut field = |what: &str| -> Result<Vec<u8>, String> {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("the key blob ends before its {what}"))?;
        let v = rest
            .get(4..4 + len)
            .ok_or_else(|| format!("the key blob ends inside its {what}"))?
            .to_vec();
        rest = &rest[4 + len..];
        Ok(v)
    };
    let kind = field("key type")?;
    if kind != SSH_ED25519.as_bytes() {
        return Err(format!(
            "the key blob says {:?}, not ssh-ed25519",
            String::from_utf8_lossy(&kind)
        ));
    }
    let point = field("point")?;
    if !rest.is_empty() {
        return Err("extra bytes after the key".into());
    }
    point
        .try_into()
        .map_err(|p: Vec<u8>| format!("the point is {} bytes, not 32", p.len()))
}

/// Refuses every encoding that is not a canonical, prime-order Edwards
/// point: age converts the key to X25519 with a clamped scalar, and for a
/// small-order point the shared secret is one of a handful of values anyone
/// can try.
fn check_point(bytes: &[u8; 32]) -> Result<(), &'static str> {
    let compressed = curve25519_dalek::edwards::CompressedEdwardsY(*bytes);
    let Some(point) = compressed.decompress() else {
        return Err("it is not a point on the ed25519 curve");
    };
    if point.compress().as_bytes() != bytes {
        return Err("it is a non-canonical encoding of a curve point");
    }
    if point.is_small_order() {
        return Err("it is a point of small order (such as the identity point)");
    }
    if !point.is_torsion_free() {
        return Err("it has a small-order (torsion) component");
    }
    Ok(())
}

/// Any recipient `edit` may encrypt to: native X25519, SSH, or a plugin.
pub enum AnyRecipient {
    /// `age1…`
    X25519(age::x25519::Recipient),
    /// `ssh-ed25519 …` / `ssh-rsa …`
    Ssh(age::ssh::Recipient),
    /// `age1<plugin>1…`
    Plugin(age::plugin::Recipient),
}

/// Parses one recipient string; the error says why, without a file name.
/// A key that protects nothing (an X25519 or ed25519 point of small order,
/// see [`HostPubkeyError::Weak`]) is refused like a host key: everything
/// encrypted to it could be opened by anyone.
pub fn parse_recipient(s: &str) -> Result<AnyRecipient, String> {
    let s = s.trim();
    if let Ok(r) = s.parse::<age::x25519::Recipient>() {
        if x25519_small_order(s) {
            return Err(
                "it is a point of small order: anything encrypted to it could be decrypted by anyone"
                    .into(),
            );
        }
        return Ok(AnyRecipient::X25519(r));
    }
    if s.starts_with("ssh-") {
        let norm: Vec<&str> = s.split_whitespace().take(2).collect();
        if let [SSH_ED25519, b64] = norm[..] {
            let point = ed25519_point(b64).map_err(|e| format!("invalid SSH public key ({e})"))?;
            check_point(&point).map_err(|why| {
                format!("{why}: anything encrypted to it could be decrypted by anyone")
            })?;
        }
        return norm
            .join(" ")
            .parse::<age::ssh::Recipient>()
            .map(AnyRecipient::Ssh)
            .map_err(|e| format!("invalid SSH public key ({})", ssh_key_problem(&e)));
    }
    if let Ok(r) = s.parse::<age::plugin::Recipient>() {
        return Ok(AnyRecipient::Plugin(r));
    }
    Err("expected age1…, ssh-ed25519 … or a plugin recipient".into())
}

/// Whether an `age1…` recipient (already parsed by age, so its checksum is
/// good) is a Montgomery point of small order: multiplied by any clamped
/// scalar (a multiple of 8) it gives zero — age itself would panic on it.
fn x25519_small_order(bech32: &str) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let Some((_, data)) = bech32
        .to_ascii_lowercase()
        .rsplit_once('1')
        .map(|(h, d)| (h.to_owned(), d.to_owned()))
    else {
        return false;
    };
    let Some(data) = data.len().checked_sub(6).map(|n| &data.as_bytes()[..n]) else {
        return false;
    };
    let mut bytes = Vec::with_capacity(32);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in data {
        let Some(v) = CHARSET.iter().position(|x| x == c) else {
            return false;
        };
        acc = (acc << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let Ok(u) = <[u8; 32]>::try_from(&bytes[..]) else {
        return false;
    };
    let product = curve25519_dalek::montgomery::MontgomeryPoint(u).mul_clamped([0x55; 32]);
    product.to_bytes() == [0u8; 32]
}

/// Builds boxed age recipients from parsed ones; plugin recipients are grouped
/// per plugin and need the plugin binary on PATH.
pub fn build_recipients(
    parsed: Vec<AnyRecipient>,
    interaction: Arc<dyn Interaction>,
) -> Result<Vec<Box<dyn age::Recipient + Send>>, String> {
    let mut out: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
    let mut plugins: Vec<age::plugin::Recipient> = Vec::new();
    for r in parsed {
        match r {
            AnyRecipient::X25519(r) => out.push(Box::new(r)),
            AnyRecipient::Ssh(r) => out.push(Box::new(r)),
            AnyRecipient::Plugin(r) => plugins.push(r),
        }
    }
    let mut names: Vec<String> = plugins.iter().map(|p| p.plugin().to_owned()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let r = age::plugin::RecipientPluginV1::new(
            &name,
            &plugins,
            &[],
            AgeCallbacks::new(interaction.clone()),
        )
        .map_err(|e| clean_age_message(&e.to_string()))?;
        out.push(Box::new(r));
    }
    Ok(out)
}

/// What is wrong with an SSH public key age refused, in words (age's error
/// has no message of its own).
pub(crate) fn ssh_key_problem(e: &age::ssh::ParseRecipientKeyError) -> String {
    use age::ssh::ParseRecipientKeyError as E;
    match e {
        E::Ignore => "a key type age ignores".into(),
        E::Invalid(why) => (*why).into(),
        E::RsaModulusTooLarge => "an ssh-rsa key with a modulus larger than age supports".into(),
        E::RsaModulusTooSmall => "an ssh-rsa key of fewer than 2048 bits".into(),
        E::Unsupported(kind) => format!("an unsupported SSH key type ({kind})"),
        _ => "not an SSH public key age can use".into(),
    }
}

/// Why recipients given as text (`extraRecipients`, `--recipient`) cannot
/// be encrypted to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecipientError {
    /// One entry is not a usable recipient.
    #[error("recipient {recipient:?} is not usable: {reason}")]
    Unusable {
        /// The entry as given.
        recipient: String,
        /// Why.
        reason: String,
    },
    /// A plugin's recipients could not be set up.
    #[error("{0}")]
    Plugin(String),
}

/// Parses and builds recipients given as text, naming the first unusable one.
pub fn recipients_from(
    list: &[String],
    interaction: Arc<dyn Interaction>,
) -> Result<Vec<Box<dyn age::Recipient + Send>>, RecipientError> {
    let parsed = list
        .iter()
        .map(|r| {
            parse_recipient(r).map_err(|reason| RecipientError::Unusable {
                recipient: r.clone(),
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    build_recipients(parsed, interaction).map_err(RecipientError::Plugin)
}

impl crate::common::error::Classify for RecipientError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys() {
        let id = age::ssh::Identity::from_buffer(TEST_SSH_KEY.as_bytes(), None).unwrap();
        let r = age::ssh::Recipient::try_from(id).unwrap().to_string();
        let with_comment = format!("{r} root@web1");
        let h = HostRecipient::parse(&with_comment).unwrap();
        assert_eq!(h.as_str(), r);
        assert!(matches!(
            HostRecipient::parse("ssh-rsa AAAA"),
            Err(HostPubkeyError::NotEd25519 { .. })
        ));
        assert!(matches!(
            HostRecipient::parse("ecdsa-sha2-nistp256 AAAA"),
            Err(HostPubkeyError::NotEd25519 { .. })
        ));
        assert!(matches!(
            HostRecipient::parse("ssh-ed25519 !!!"),
            Err(HostPubkeyError::Malformed { .. })
        ));
        assert!(matches!(
            HostRecipient::parse("  "),
            Err(HostPubkeyError::Missing)
        ));
    }

    /// The `age1…` recipient of a raw 32-byte Montgomery u-coordinate.
    fn age_recipient(u: [u8; 32]) -> String {
        // bech32 with the "age" prefix, encoded by hand for the test.
        const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let mut data = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for b in u {
            acc = (acc << 8) | b as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                data.push(((acc >> bits) & 31) as u8);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            data.push(((acc << (5 - bits)) & 31) as u8);
        }
        let polymod = |values: &[u8]| {
            let gen = [
                0x3b6a57b2u32,
                0x26508e6d,
                0x1ea119fa,
                0x3d4233dd,
                0x2a1462b3,
            ];
            let mut chk = 1u32;
            for v in values {
                let b = chk >> 25;
                chk = ((chk & 0x1ffffff) << 5) ^ *v as u32;
                for (i, g) in gen.iter().enumerate() {
                    if (b >> i) & 1 == 1 {
                        chk ^= g;
                    }
                }
            }
            chk
        };
        let hrp = b"age";
        let mut values: Vec<u8> = hrp.iter().map(|c| c >> 5).collect();
        values.push(0);
        values.extend(hrp.iter().map(|c| c & 31));
        values.extend(&data);
        values.extend([0; 6]);
        let pm = polymod(&values) ^ 1;
        let checksum: Vec<u8> = (0..6).map(|i| ((pm >> (5 * (5 - i))) & 31) as u8).collect();
        let mut out = String::from("age1");
        for v in data.iter().chain(&checksum) {
            out.push(CHARSET[*v as usize] as char);
        }
        out
    }

    #[test]
    fn recipients_that_protect_nothing_are_refused() {
        // A real age recipient still parses, and so does its re-encoding.
        let real = age::x25519::Identity::generate().to_public().to_string();
        assert!(parse_recipient(&real).is_ok());
        // Small-order u-coordinates (0, 1, the order-8 points, p - 1):
        // age would panic encrypting to them.
        let low = [
            [0u8; 32],
            {
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            },
            hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
            hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ];
        for u in low {
            let r = age_recipient(u);
            assert!(
                r.parse::<age::x25519::Recipient>().is_ok(),
                "{r} is valid bech32"
            );
            let e = parse_recipient(&r)
                .err()
                .unwrap_or_else(|| panic!("{r} accepted"));
            assert!(e.contains("small order"), "{e}");
        }
        // A weak ssh-ed25519 key as a recipient (extraRecipients, -r).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let e = parse_recipient(&key_line(identity)).err().unwrap();
        assert!(e.contains("small order"), "{e}");
    }

    /// The OpenSSH public key line for a raw 32-byte point.
    fn key_line(point: [u8; 32]) -> String {
        use base64::Engine;
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&point);
        format!(
            "ssh-ed25519 {}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn keys_that_protect_nothing_are_refused() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let weak = |point: [u8; 32]| {
            let e = HostRecipient::parse(&key_line(point)).unwrap_err();
            assert!(matches!(e, HostPubkeyError::Weak { .. }), "{e}");
            e.to_string()
        };
        // The identity point (y = 1) and its "negative zero" twin.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(weak(identity).contains("small order"));
        let mut neg_zero = identity;
        neg_zero[31] |= 0x80;
        assert!(weak(neg_zero).contains("non-canonical"));
        // The point of order 2 (y = -1 = p - 1).
        let order2 = hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert!(weak(order2).contains("small order"));
        // A point of order 4 (y = 0) and one of order 8.
        assert!(weak([0u8; 32]).contains("small order"));
        let order8 = hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05");
        assert!(weak(order8).contains("small order"));
        // Every small-order point: the multiples of an order-8 point.
        let t = CompressedEdwardsY(order8).decompress().unwrap();
        let mut m = curve25519_dalek::edwards::EdwardsPoint::default();
        for _ in 0..8 {
            weak(m.compress().to_bytes());
            m += t;
        }
        // A genuine key plus an order-2 point: mixed order.
        let order2_point = CompressedEdwardsY(order2).decompress().unwrap();
        let mixed = (B + order2_point).compress().to_bytes();
        assert!(weak(mixed).contains("torsion"));
        // y = p + 1 encodes the identity point non-canonically.
        let p_plus_1 = hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        let e = weak(p_plus_1);
        assert!(
            e.contains("non-canonical") || e.contains("small order"),
            "{e}"
        );
        // Not on the curve at all (y = 2 has no x).
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(weak(two).contains("not a point on the ed25519 curve"));
        // A genuine point (the base point) is accepted, and so is a real key.
        HostRecipient::parse(&key_line(B.compress().to_bytes())).unwrap();
        // Wrong sizes and blobs are malformed, not weak.
        for bad in [
            "ssh-ed25519 AAAA",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQA=",
        ] {
            assert!(
                matches!(
                    HostRecipient::parse(bad),
                    Err(HostPubkeyError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    /// A throwaway key made for this test with `ssh-keygen -t ed25519 -N ''`.
    pub(crate) const TEST_SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDbVpuvYmExk8uYuXuxtMchPMwArOn0JOe8QgPQDroVfgAAAJBzzwvgc88L
4AAAAAtzc2gtZWQyNTUxOQAAACDbVpuvYmExk8uYuXuxtMchPMwArOn0JOe8QgPQDroVfg
AAAEB1V0RhcWdDf+7mccqa0DMTunDfX1nZ7VKxjZ4Psz3y+dtWm69iYTGTy5i5e7G0xyE8
zACs6fQk57xCA9AOuhV+AAAACnRlc3RAbG9jYWwBAgM=
-----END OPENSSH PRIVATE KEY-----
";
}
