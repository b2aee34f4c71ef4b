//! Go `age` encrypts to a plugin recipient and decrypts with a plugin identity, with
//! `age-plugin-nixseal-test` found on PATH: proof that the plugin speaks the age plugin
//! protocol and does real cryptography.

mod common;

use common::*;

#[test]
fn go_age_round_trip_through_the_plugin() {
    if !go_age_available() {
        skip("go_age_round_trip_through_the_plugin");
    }
    let dir = tempfile::tempdir().unwrap();
    let alice = generate(dir.path(), "alice.txt");
    let bob = generate(dir.path(), "bob.txt");
    assert_ne!(
        alice.recipient, bob.recipient,
        "--generate makes fresh keys"
    );

    let plaintext = b"db password: correct horse\n\0binary\xff";
    let ct_path = dir.path().join("secret.age");
    let ct_arg = ct_path.to_str().unwrap();
    let out = go_age(&["-r", &alice.recipient, "-o", ct_arg], plaintext);
    assert!(
        out.status.success(),
        "age -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ciphertext = std::fs::read(&ct_path).unwrap();

    // One stanza, written by the plugin, none by age's native X25519.
    let stanzas = stanza_lines(&ciphertext);
    assert_eq!(stanzas.len(), 1, "{stanzas:?}");
    assert!(stanzas[0].starts_with("-> nixseal-test "), "{stanzas:?}");
    assert!(!ciphertext.windows(plaintext.len()).any(|w| w == plaintext));

    let alice_id = alice.identity_file.to_str().unwrap();
    let out = go_age(&["-d", "-i", alice_id, ct_arg], b"");
    assert!(
        out.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plaintext);

    // Another plugin identity cannot open it.
    let bob_id = bob.identity_file.to_str().unwrap();
    let out = go_age(&["-d", "-i", bob_id, ct_arg], b"");
    assert!(!out.status.success(), "bob decrypted alice's file");
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no identity matched"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Encrypting to two plugin recipients: each identity opens it on its own.
    let out = go_age(
        &["-r", &alice.recipient, "-r", &bob.recipient, "-o", ct_arg],
        plaintext,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stanza_lines(&std::fs::read(&ct_path).unwrap()).len(), 2);
    for id in [alice_id, bob_id] {
        let out = go_age(&["-d", "-i", id, ct_arg], b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plaintext);
    }

    // Encrypting to an identity file (age -e -i) uses the plugin's recipient-v1 too.
    let out = go_age(&["-e", "-i", alice_id, "-o", ct_arg], plaintext);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = go_age(&["-d", "-i", alice_id, ct_arg], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plaintext);
}

#[test]
fn generate_output_is_an_identity_file_and_unknown_args_fail() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), "id.txt");
    // Bech32 data of 32 bytes: 52 characters after the separator, plus 6 of checksum.
    let id_line = std::fs::read_to_string(&g.identity_file).unwrap();
    let id_line = id_line.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(id_line.len(), "AGE-PLUGIN-NIXSEAL-TEST-1".len() + 52 + 6);
    assert_eq!(g.recipient.len(), "age1nixseal-test1".len() + 52 + 6);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_age-plugin-nixseal-test"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}
