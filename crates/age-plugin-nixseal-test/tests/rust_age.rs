//! The Rust `age` crate (what nixseal uses) drives the plugin through its plugin
//! support, and interoperates with Go `age` on the same plugin keys.
//!
//! This file holds a single test because it puts the plugin on this process's PATH.

mod common;

use std::io::{Read, Write};
use std::iter;

use age::plugin::{IdentityPluginV1, RecipientPluginV1};
use age::secrecy::SecretString;
use common::*;

/// No user interface: the plugin never asks for anything.
#[derive(Clone)]
struct NoUi;

impl age::Callbacks for NoUi {
    fn display_message(&self, _message: &str) {}
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, _: &str) -> Option<SecretString> {
        None
    }
}

fn rust_encrypt(recipient: &age::plugin::Recipient, plaintext: &[u8]) -> Vec<u8> {
    let plugin =
        RecipientPluginV1::new("nixseal-test", std::slice::from_ref(recipient), &[], NoUi).unwrap();
    let encryptor =
        age::Encryptor::with_recipients(iter::once(&plugin as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = encryptor.wrap_output(&mut out).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap();
    out
}

fn rust_decrypt(
    identity: &age::plugin::Identity,
    ciphertext: &[u8],
) -> Result<Vec<u8>, age::DecryptError> {
    let plugin =
        IdentityPluginV1::new("nixseal-test", std::slice::from_ref(identity), NoUi).unwrap();
    let decryptor = age::Decryptor::new_buffered(ciphertext)?;
    let mut r = decryptor.decrypt(iter::once(&plugin as &dyn age::Identity))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    Ok(out)
}

fn parse_identity(file: &std::path::Path) -> age::plugin::Identity {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn rust_age_uses_the_plugin_and_interoperates_with_go_age() {
    // Single test in this binary: nothing else reads the environment concurrently.
    std::env::set_var("PATH", path_with_plugin());

    let dir = tempfile::tempdir().unwrap();
    let alice = generate(dir.path(), "alice.txt");
    let bob = generate(dir.path(), "bob.txt");
    let recipient: age::plugin::Recipient = alice.recipient.parse().unwrap();
    assert_eq!(recipient.plugin(), "nixseal-test");
    let alice_identity = parse_identity(&alice.identity_file);
    assert_eq!(alice_identity.plugin(), "nixseal-test");
    let bob_identity = parse_identity(&bob.identity_file);

    let plaintext = b"rust side secret\n";
    let ciphertext = rust_encrypt(&recipient, plaintext);
    // Exactly one plugin stanza and no native X25519 one (rage also adds a random
    // "grease" stanza, which clients ignore).
    let stanzas = stanza_lines(&ciphertext);
    let ours: Vec<_> = stanzas
        .iter()
        .filter(|s| s.starts_with("-> nixseal-test "))
        .collect();
    assert_eq!(ours.len(), 1, "{stanzas:?}");
    assert!(
        !stanzas.iter().any(|s| s.starts_with("-> X25519 ")),
        "{stanzas:?}"
    );

    assert_eq!(
        rust_decrypt(&alice_identity, &ciphertext).unwrap(),
        plaintext
    );
    assert!(matches!(
        rust_decrypt(&bob_identity, &ciphertext),
        Err(age::DecryptError::NoMatchingKeys)
    ));

    if !go_age_available() {
        skip("the Go age half of rust_age_uses_the_plugin_and_interoperates_with_go_age");
    }
    // Rust encrypts, Go decrypts.
    let ct_path = dir.path().join("from-rust.age");
    std::fs::write(&ct_path, &ciphertext).unwrap();
    let out = go_age(
        &[
            "-d",
            "-i",
            alice.identity_file.to_str().unwrap(),
            ct_path.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plaintext);

    // Go encrypts, Rust decrypts.
    let out = go_age(&["-r", &alice.recipient], b"go side secret\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        rust_decrypt(&alice_identity, &out.stdout).unwrap(),
        b"go side secret\n"
    );
}
