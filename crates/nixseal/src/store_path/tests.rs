//! Unit tests of NAR serialisation, base32 and store paths (checked against
//! a real Nix in `crates/nixseal/tests/store_path_nix.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;

fn nar_of(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_nar(path, &mut out).unwrap();
    out
}

/// Builds the expected NAR token stream by hand.
fn tokens(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
        out.resize(out.len().div_ceil(8) * 8, 0);
    }
    out
}

#[test]
fn nix_base32_known_vectors() {
    assert_eq!(nix_base32_encode(&[]), "");
    assert_eq!(nix_base32_encode(&[0x1f]), "0z");
    assert_eq!(nix_base32_encode(&[0xff]), "7z");
    // sha256("") in Nix base32, as `nix hash to-base32` prints it.
    let empty: [u8; 32] = Sha256::digest(b"").into();
    assert_eq!(
        nix_base32_encode(&empty),
        "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
    );
}

#[test]
fn regular_file_nar_layout() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"hello").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let expected = tokens(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"hello",
        b")",
    ]);
    assert_eq!(nar_of(&f), expected);

    fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
    let expected = tokens(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"regular",
        b"executable",
        b"",
        b"contents",
        b"hello",
        b")",
    ]);
    assert_eq!(nar_of(&f), expected);
}

#[test]
fn directory_entries_sorted_by_bytes_and_symlink_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("b"), b"").unwrap();
    fs::set_permissions(root.join("b"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(root.join("B")).unwrap();
    symlink("/nonexistent/target", root.join("a")).unwrap();
    let expected = tokens(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"directory",
        // "B" (0x42) sorts before "a" (0x61) and "b".
        b"entry",
        b"(",
        b"name",
        b"B",
        b"node",
        b"(",
        b"type",
        b"directory",
        b")",
        b")",
        b"entry",
        b"(",
        b"name",
        b"a",
        b"node",
        b"(",
        b"type",
        b"symlink",
        b"target",
        b"/nonexistent/target",
        b")",
        b")",
        b"entry",
        b"(",
        b"name",
        b"b",
        b"node",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"",
        b")",
        b")",
        b")",
    ]);
    assert_eq!(nar_of(&root), expected);
}

/// Vector computed with Nix 2.8: `printf hello > f; nix hash path f` and
/// `nix store add-path --name hello.txt f`.
#[test]
fn known_nix_vector_for_hello_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"hello").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let hash = nar_sha256(&f).unwrap();
    assert_eq!(hash.to_sri(), HELLO_SRI);
    assert_eq!(hash.to_nix_base32(), HELLO_BASE32);
    let sp = source_store_path(&f, "hello.txt").unwrap();
    assert_eq!(sp.to_string(), HELLO_STORE_PATH);
    assert_eq!(sp.name(), "hello.txt");
    assert_eq!(sp.hash_part().len(), 32);
}

const HELLO_SRI: &str = "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=";
const HELLO_BASE32: &str = "0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa";
const HELLO_STORE_PATH: &str = "/nix/store/xfp2hphvk98rkk9ywlqpp587rjdcgnc2-hello.txt";

#[test]
fn store_names_validated() {
    for ok in ["a", "h1-db.age", "A+b-c.d_e?f=g", "x.", &"a".repeat(211)] {
        assert_eq!(validate_store_name(ok), Ok(()), "{ok}");
    }
    assert_eq!(validate_store_name(""), Err(StoreNameError::Empty));
    assert!(matches!(
        validate_store_name(&"a".repeat(212)),
        Err(StoreNameError::TooLong { len: 212, .. })
    ));
    assert!(matches!(
        validate_store_name(".hidden"),
        Err(StoreNameError::LeadingPeriod { .. })
    ));
    for (bad, ch, pos) in [
        ("a b", ' ', 1),
        ("a/b", '/', 1),
        ("é", 'é', 0),
        ("x~", '~', 1),
        ("a\0", '\0', 1),
    ] {
        assert_eq!(
            validate_store_name(bad),
            Err(StoreNameError::InvalidCharacter {
                name: bad.to_owned(),
                character: ch,
                position: pos,
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn errors_name_the_failing_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = source_store_path(&missing, "x").unwrap_err();
    assert!(
        matches!(&err, StorePathError::Nar { path, source: NarError::Read { path: inner, .. } }
        if path == &missing && inner == &missing)
    );
    assert!(err.to_string().contains(&*missing.to_string_lossy()));

    let err = source_store_path(&missing, "bad name").unwrap_err();
    assert!(matches!(
        err,
        StorePathError::InvalidName {
            source: StoreNameError::InvalidCharacter { character: ' ', .. },
            ..
        }
    ));

    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = nar_sha256(dir.path()).unwrap_err();
    assert!(
        matches!(&err, NarError::UnsupportedFileType { path, kind: "socket" } if path == &socket),
        "{err:?}"
    );

    assert!(matches!(
        added_store_path(Path::new("/")),
        Err(StorePathError::NoName { .. })
    ));
    let non_utf8 = dir.path().join(std::ffi::OsStr::from_bytes(b"a\xffb"));
    fs::write(&non_utf8, b"").unwrap();
    assert!(matches!(
        added_store_path(&non_utf8),
        Err(StorePathError::InvalidName {
            source: StoreNameError::InvalidCharacter { position: 1, .. },
            ..
        })
    ));
}

#[test]
fn nix_base32_decode_inverts_encode() {
    let empty: [u8; 32] = Sha256::digest(b"").into();
    let text = nix_base32_encode(&empty);
    assert_eq!(nix_base32_decode(&text, 32).unwrap(), empty);
    for len in [1usize, 5, 20, 32, 64] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(
            nix_base32_decode(&nix_base32_encode(&bytes), len).unwrap(),
            bytes
        );
    }
    // Wrong length, a letter outside the alphabet, bits beyond the bytes.
    assert_eq!(nix_base32_decode(&text[1..], 32), None);
    assert_eq!(nix_base32_decode(&text.replacen('0', "e", 1), 32), None);
    assert_eq!(nix_base32_decode("zz", 1), None);
    assert_eq!(nix_base32_decode("7z", 1), Some(vec![0xff]));
}

#[test]
fn filtered_nar_leaves_out_refused_entries() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let part = dir.path().join("part");
    for root in [&full, &part] {
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/kept"), b"k").unwrap();
        fs::write(root.join("top"), b"t").unwrap();
    }
    // Only in `full`: what the filter refuses.
    fs::write(full.join("a/dropped"), b"d").unwrap();
    fs::create_dir_all(full.join("gone/deep")).unwrap();
    fs::write(full.join("gone/deep/x"), b"x").unwrap();
    let include = |rel: &Path, is_dir: bool| {
        if is_dir {
            rel == Path::new("a") || rel == Path::new("a/b")
        } else {
            rel == Path::new("a/b/kept") || rel == Path::new("top")
        }
    };
    assert_eq!(
        nar_sha256_filtered(&full, &include).unwrap(),
        nar_sha256(&part).unwrap()
    );
    assert_ne!(nar_sha256(&full).unwrap(), nar_sha256(&part).unwrap());
}

#[test]
fn compress_hash_xor_folds() {
    let mut full = [0u8; 32];
    full[0] = 0x0f;
    full[20] = 0xf0;
    full[31] = 0x01;
    let c = compress_hash(&full);
    assert_eq!(c[0], 0xff);
    assert_eq!(c[11], 0x01);
    assert_eq!(c.iter().filter(|&&b| b != 0).count(), 2);
}
