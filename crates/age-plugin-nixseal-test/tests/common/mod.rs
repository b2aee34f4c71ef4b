//! Helpers shared by the plugin's integration tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The directory holding the freshly built plugin binary.
pub fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_age-plugin-nixseal-test"))
        .parent()
        .unwrap()
        .to_owned()
}

/// PATH with the plugin's directory first, so age clients find the plugin.
pub fn path_with_plugin() -> OsString {
    let mut dirs = vec![plugin_dir()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap()
}

/// Whether Go `age` is on PATH.
pub fn go_age_available() -> bool {
    Command::new("age")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// An interop test cannot pass without its peer: it fails, never skips.
pub fn skip(what: &str) -> ! {
    panic!("{what}: Go `age` is not on PATH (apt-get install age; scripts/setup does) — this test never skips")
}

/// A generated identity file (written into `dir`) and its recipient.
pub struct Generated {
    pub identity_file: PathBuf,
    pub recipient: String,
}

/// Runs `age-plugin-nixseal-test --generate` and writes its output to `dir/<file>`.
pub fn generate(dir: &Path, file: &str) -> Generated {
    let out = Command::new(env!("CARGO_BIN_EXE_age-plugin-nixseal-test"))
        .arg("--generate")
        .output()
        .unwrap();
    assert!(out.status.success(), "--generate failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# recipient: "))
        .expect("--generate prints a '# recipient:' line")
        .to_owned();
    assert!(recipient.starts_with("age1nixseal-test1"), "{recipient}");
    let identities: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        identities.len(),
        1,
        "--generate prints exactly one identity"
    );
    assert!(identities[0].starts_with("AGE-PLUGIN-NIXSEAL-TEST-1"));
    let identity_file = dir.join(file);
    std::fs::write(&identity_file, &text).unwrap();
    Generated {
        identity_file,
        recipient,
    }
}

/// Runs Go `age` with the plugin on PATH, feeding `stdin`.
pub fn go_age(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("age")
        .args(args)
        .env("PATH", path_with_plugin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The recipient stanza lines of a binary age file's header.
pub fn stanza_lines(ciphertext: &[u8]) -> Vec<String> {
    let end = ciphertext
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("age header ends with ---");
    String::from_utf8_lossy(&ciphertext[..end])
        .lines()
        .filter(|l| l.starts_with("-> "))
        .map(str::to_owned)
        .collect()
}
