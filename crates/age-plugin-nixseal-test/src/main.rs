//! `age-plugin-nixseal-test`: a test-only age plugin with real cryptography.
//!
//! It exists so that tests can prove that nixseal (and any age client) handles plugin
//! recipients (`age1nixseal-test1…`) and plugin identities
//! (`AGE-PLUGIN-NIXSEAL-TEST-1…`) end to end, without hardware.
//!
//! - The identity's data is an X25519 secret key (32 bytes); the recipient's data is its
//!   public key.
//! - Wrapping is age's native X25519 wrapping, with the stanza tag replaced by
//!   [`STANZA_TAG`]; unwrapping puts the X25519 tag back and uses age's native unwrap.
//!   A file encrypted to a plugin recipient therefore has no `X25519` stanza, and only
//!   this plugin can open it.
//!
//! Usage:
//! - `age-plugin-nixseal-test --generate` prints a new identity (with its recipient
//!   in a `# recipient:` comment line) in age identity-file form.
//! - `age-plugin-nixseal-test --age-plugin=<state machine>` is how age clients start it.
//!
//! It is a test tool: its keys are ordinary X25519 keys with no hardware protection.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::process::ExitCode;

use age::x25519;
use age::{Identity as _, Recipient as _};
use age_core::format::{FileKey, Stanza};
use age_core::primitives::{bech32_decode, bech32_encode};
use age_core::secrecy::ExposeSecret;
use age_plugin::{
    identity::{self, IdentityPluginV1},
    print_new_identity,
    recipient::{self, RecipientPluginV1},
    run_state_machine, Callbacks, PluginHandler,
};
use zeroize::Zeroizing;

/// The plugin name: binary `age-plugin-nixseal-test`, HRPs `age1nixseal-test` and
/// `AGE-PLUGIN-NIXSEAL-TEST-`.
const PLUGIN_NAME: &str = "nixseal-test";

/// The tag of the stanzas this plugin writes and reads.
const STANZA_TAG: &str = "nixseal-test";

/// The tag of age's native X25519 stanzas.
const X25519_TAG: &str = "X25519";

const USAGE: &str = "\
usage: age-plugin-nixseal-test --generate
       age-plugin-nixseal-test --age-plugin=STATE_MACHINE   (run by age clients)

A test-only age plugin. --generate prints a new identity in age identity-file form;
the matching recipient is on its '# recipient:' line.";

/// Converts 32 secret key bytes into age's native X25519 identity.
fn identity_from_bytes(bytes: &[u8]) -> Result<x25519::Identity, &'static str> {
    if bytes.len() != 32 {
        return Err("identity data must be a 32-byte X25519 secret key");
    }
    let encoded = Zeroizing::new(
        bech32_encode(bech32::Hrp::parse_unchecked("AGE-SECRET-KEY-"), bytes).to_uppercase(),
    );
    encoded.parse()
}

/// Converts 32 public key bytes into age's native X25519 recipient.
fn recipient_from_bytes(bytes: &[u8]) -> Result<x25519::Recipient, &'static str> {
    if bytes.len() != 32 {
        return Err("recipient data must be a 32-byte X25519 public key");
    }
    bech32_encode(bech32::Hrp::parse_unchecked("age"), bytes).parse()
}

/// Extracts the raw bytes of a native age key string (either kind).
fn native_key_bytes(encoded: &str) -> Zeroizing<Vec<u8>> {
    bech32_decode(
        encoded,
        |_| (),
        |_| Ok(()),
        |_, bytes| Ok(Zeroizing::new(bytes.collect::<Vec<u8>>())),
    )
    .expect("age encodes its own keys as valid Bech32")
}

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = RecipientPlugin;
    type IdentityV1 = IdentityPlugin;

    fn recipient_v1(self) -> io::Result<Self::RecipientV1> {
        Ok(RecipientPlugin {
            recipients: Vec::new(),
        })
    }

    fn identity_v1(self) -> io::Result<Self::IdentityV1> {
        Ok(IdentityPlugin {
            identities: Vec::new(),
        })
    }
}

/// Refuses recipients and identities that name another plugin.
fn ours(plugin_name: &str, what: &'static str) -> Result<(), &'static str> {
    match (plugin_name == PLUGIN_NAME, what) {
        (true, _) => Ok(()),
        (false, "recipient") => Err("not a nixseal-test recipient"),
        (false, _) => Err("not a nixseal-test identity"),
    }
}

struct RecipientPlugin {
    recipients: Vec<x25519::Recipient>,
}

impl RecipientPluginV1 for RecipientPlugin {
    fn add_recipient(
        &mut self,
        index: usize,
        plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        ours(plugin_name, "recipient")
            .and_then(|()| recipient_from_bytes(bytes))
            .map(|r| self.recipients.push(r))
            .map_err(|message| recipient::Error::Recipient {
                index,
                message: message.to_owned(),
            })
    }

    fn add_identity(
        &mut self,
        index: usize,
        plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        // Encrypting "to an identity" means to its public key.
        ours(plugin_name, "identity")
            .and_then(|()| identity_from_bytes(bytes))
            .map(|i| self.recipients.push(i.to_public()))
            .map_err(|message| recipient::Error::Identity {
                index,
                message: message.to_owned(),
            })
    }

    fn labels(&mut self) -> HashSet<String> {
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _callbacks: impl Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        let mut out = Vec::with_capacity(file_keys.len());
        let mut errors = Vec::new();
        for file_key in &file_keys {
            let mut stanzas = Vec::with_capacity(self.recipients.len());
            for (index, r) in self.recipients.iter().enumerate() {
                match r.wrap_file_key(file_key) {
                    Ok((wrapped, _labels)) => {
                        stanzas.extend(wrapped.into_iter().map(|mut s| {
                            s.tag = STANZA_TAG.to_owned();
                            s
                        }));
                    }
                    Err(e) => errors.push(recipient::Error::Recipient {
                        index,
                        message: format!("wrapping failed: {e}"),
                    }),
                }
            }
            out.push(stanzas);
        }
        Ok(if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        })
    }
}

struct IdentityPlugin {
    identities: Vec<x25519::Identity>,
}

impl IdentityPluginV1 for IdentityPlugin {
    fn add_identity(
        &mut self,
        index: usize,
        plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), identity::Error> {
        ours(plugin_name, "identity")
            .and_then(|()| identity_from_bytes(bytes))
            .map(|i| self.identities.push(i))
            .map_err(|message| identity::Error::Identity {
                index,
                message: message.to_owned(),
            })
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        mut callbacks: impl Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        let mut results = HashMap::new();
        // With `NIXSEAL_TEST_PLUGIN_ASK=QUESTION`, the plugin asks QUESTION as
        // a public (not secret) question first and opens nothing unless the
        // answer is "visible" (tests of how clients ask plugin questions).
        if let Some(question) = std::env::var_os("NIXSEAL_TEST_PLUGIN_ASK") {
            let answer = callbacks.request_public(&question.to_string_lossy())?;
            if !matches!(answer.as_deref(), Ok("visible")) {
                for (file_index, _) in files.iter().enumerate() {
                    results.insert(
                        file_index,
                        Err(vec![identity::Error::Identity {
                            index: 0,
                            message: format!("the answer to the test question was {answer:?}"),
                        }]),
                    );
                }
                return Ok(results);
            }
        }
        for (file_index, stanzas) in files.into_iter().enumerate() {
            let mut errors = Vec::new();
            let mut found = None;
            'stanzas: for (stanza_index, stanza) in stanzas.into_iter().enumerate() {
                // Other stanzas belong to other recipients: ignore them.
                if stanza.tag != STANZA_TAG {
                    continue;
                }
                let native = Stanza {
                    tag: X25519_TAG.to_owned(),
                    ..stanza
                };
                for identity in &self.identities {
                    match identity.unwrap_stanza(&native) {
                        Some(Ok(file_key)) => {
                            found = Some(file_key);
                            break 'stanzas;
                        }
                        Some(Err(e)) => {
                            errors.push(identity::Error::Stanza {
                                file_index,
                                stanza_index,
                                message: format!("invalid {STANZA_TAG} stanza: {e}"),
                            });
                            continue 'stanzas;
                        }
                        // Not for this identity.
                        None => {}
                    }
                }
            }
            match found {
                Some(file_key) => {
                    log_unwrap();
                    results.insert(file_index, Ok(file_key));
                }
                None if !errors.is_empty() => {
                    results.insert(file_index, Err(errors));
                }
                None => {}
            }
        }
        Ok(results)
    }
}

/// Tests count decryptions: with `NIXSEAL_TEST_PLUGIN_LOG=FILE`, one line is
/// appended per file key unwrapped (a YubiKey would ask for one touch each).
fn log_unwrap() {
    if let Some(path) = std::env::var_os("NIXSEAL_TEST_PLUGIN_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "unwrap");
        }
    }
}

fn generate() {
    let identity = x25519::Identity::generate();
    let secret = native_key_bytes(identity.to_string().expose_secret());
    let public = native_key_bytes(&identity.to_public().to_string());
    print_new_identity(PLUGIN_NAME, &secret, &public);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let state_machine = match args.as_slice() {
        [flag] if flag == "--generate" => {
            generate();
            return ExitCode::SUCCESS;
        }
        [flag] if flag.starts_with("--age-plugin=") => flag["--age-plugin=".len()..].to_owned(),
        [flag, value] if flag == "--age-plugin" => value.clone(),
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run_state_machine(&state_machine, Handler) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("age-plugin-nixseal-test: {e}");
            ExitCode::FAILURE
        }
    }
}
