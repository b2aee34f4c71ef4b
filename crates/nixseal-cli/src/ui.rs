//! Output, prompts and exit codes shared by the subcommands.
//!
//! Every subcommand returns a [`CmdResult`]: what it rendered ([`Done`]) or
//! an error ([`CliError`]), which `main` prints in one place and maps to the
//! exit code by its class ([`code`]).

use std::error::Error;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use nixseal::identity::Interaction;
use nixseal::{Classify, ErrorClass, SecretString};

use crate::hints;

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

/// The documented exit code of an error class.
pub fn code(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::BadInput => BAD_INPUT,
        ErrorClass::Failed => FAILED,
        ErrorClass::Environment => ENVIRONMENT,
    }
}

/// What a subcommand did, its output already printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Everything went as asked (exit 0).
    Ok,
    /// Something failed, and the output says what (exit 1).
    Failed,
    /// Part of the work could not be done for reasons of this machine, and
    /// the output says which (exit 3).
    Incomplete,
    /// The command line was refused, and clap said why (exit 2).
    Usage,
}

impl Done {
    /// Its exit code.
    pub fn code(self) -> u8 {
        match self {
            Done::Ok => OK,
            Done::Failed => FAILED,
            Done::Incomplete => ENVIRONMENT,
            Done::Usage => BAD_INPUT,
        }
    }
}

/// What a subcommand returns.
pub type CmdResult = Result<Done, CliError>;

/// An error to print (`<prefix>: error: <message>` for each message, then
/// each note as `<prefix>: <note>`) and the class that decides the exit code.
#[derive(Debug)]
pub struct CliError {
    class: ErrorClass,
    prefix: &'static str,
    messages: Vec<String>,
    notes: Vec<String>,
}

impl CliError {
    /// Bad usage found by the CLI itself (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self::with_class(ErrorClass::BadInput, message)
    }

    /// An error of the CLI's own with a class.
    pub fn with_class(class: ErrorClass, message: impl std::fmt::Display) -> Self {
        Self::each(class, [message.to_string()])
    }

    /// Several errors of one class, each on its own line.
    pub fn each(class: ErrorClass, messages: impl IntoIterator<Item = String>) -> Self {
        CliError {
            class,
            prefix: "nixseal",
            messages: messages.into_iter().collect(),
            notes: Vec::new(),
        }
    }

    /// Printed as `<prefix>: error: …` instead of `nixseal: error: …`.
    pub fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = prefix;
        self
    }

    /// A line printed after the error.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        code(self.class)
    }

    /// Prints the error and its notes to stderr.
    pub fn print(&self) {
        for m in &self.messages {
            eprintln!("{}: error: {m}", self.prefix);
        }
        for n in &self.notes {
            eprintln!("{}: {n}", self.prefix);
        }
    }
}

/// A library error: its message with this CLI's hint, and its class.
impl<E: Error + Classify + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::with_class(e.class(), hints::describe(&e))
    }
}

/// A line the user types on the terminal, shown as it is typed (plugin
/// questions are not secrets); `None` without a terminal.
fn ask_tty(prompt: &str) -> Option<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    write!(tty, "{prompt}").ok()?;
    tty.flush().ok()?;
    let mut line = String::new();
    std::io::BufReader::new(tty).read_line(&mut line).ok()?;
    Some(line.trim_end_matches(['\n', '\r']).to_owned())
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
        let choices = match no {
            Some(no) => format!("[{yes}/{no}]"),
            None => format!("[{yes}]"),
        };
        let answer = ask_tty(&format!("{message} {choices}: "))?;
        Some(answer.trim() == yes || (no.is_none() && answer.trim().is_empty()))
    }

    fn public_string(&self, description: &str) -> Option<String> {
        // Not a secret: shown as it is typed (only passphrases are hidden).
        ask_tty(&format!("{description}: "))
    }
}
