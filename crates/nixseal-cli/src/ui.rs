//! Output, prompts and exit codes shared by the subcommands.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use nixseal::identity::Interaction;
use nixseal::SecretString;

/// Everything went as asked.
pub const OK: u8 = 0;
/// The operation failed (some secret could not be processed).
pub const FAILED: u8 = 1;
/// Bad input or usage: arguments, profile, manifest, identity files.
pub const BAD_INPUT: u8 = 2;
/// The environment is not fit (mount, lock, host key).
pub const ENVIRONMENT: u8 = 3;

/// Prints an error in the one format every subcommand uses.
pub fn error(msg: impl std::fmt::Display) {
    eprintln!("nixseal: error: {msg}");
}

/// Prints a warning.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("nixseal: warning: {msg}");
}

/// Prints an error and returns the exit code.
pub fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    error(msg);
    ExitCode::from(code)
}

/// Passphrases from `--passphrase-file` or the terminal; plugin messages to stderr.
pub struct Prompt {
    file_passphrase: Mutex<Option<Result<zeroize::Zeroizing<String>, String>>>,
    file: Option<PathBuf>,
}

impl Prompt {
    pub fn new(file: Option<PathBuf>) -> Self {
        Prompt {
            file_passphrase: Mutex::new(None),
            file,
        }
    }

    fn read_passphrase_file(&self, path: &std::path::Path) -> Option<SecretString> {
        let mut cached = self.file_passphrase.lock().unwrap();
        if cached.is_none() {
            // Read once: /dev/fd/N can only be read once. Bounded, into
            // wiped buffers; a directory or device is refused.
            let r = nixseal::identity::read_passphrase_file(path)
                .map_err(|e| format!("cannot read --passphrase-file {}: {e}", path.display()));
            *cached = Some(r);
        }
        match cached.as_ref().unwrap() {
            Ok(p) => Some(SecretString::from(p.to_string())),
            Err(e) => {
                error(e);
                None
            }
        }
    }
}

impl Interaction for Prompt {
    fn passphrase(&self, prompt: &str) -> Option<SecretString> {
        if let Some(f) = &self.file {
            return self.read_passphrase_file(f);
        }
        // rpassword reads /dev/tty, never stdin (which may carry the new plaintext).
        if !std::io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
            return None;
        }
        rpassword::prompt_password(format!("{prompt}: "))
            .ok()
            .map(SecretString::from)
    }

    fn message(&self, message: &str) {
        eprintln!("{message}");
    }

    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        if std::fs::File::open("/dev/tty").is_err() {
            return None;
        }
        let choices = match no {
            Some(no) => format!("[{yes}/{no}]"),
            None => format!("[{yes}]"),
        };
        let answer = rpassword::prompt_password(format!("{message} {choices}: ")).ok()?;
        Some(answer.trim() == yes || (no.is_none() && answer.trim().is_empty()))
    }

    fn public_string(&self, description: &str) -> Option<String> {
        rpassword::prompt_password(format!("{description}: ")).ok()
    }
}
