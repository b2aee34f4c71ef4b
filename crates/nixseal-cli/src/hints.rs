//! What to do about an error, in terms of this CLI and the flake's apps:
//! the library says what failed and why; the flags and commands that fix it
//! are added here.

use std::error::Error;

use nixseal::activate::{DeployError, FailureReason, SourceProblem};
use nixseal::audit::AuditError;
use nixseal::edit::EditError;
use nixseal::identity::{HostPubkeyError, IdentityError};
use nixseal::rekey::{HostError, PairError, RekeyError};
use nixseal::renc::RencError;

/// The error's message with its hint, as users read it.
pub fn describe(e: &(dyn Error + 'static)) -> String {
    if let Some(AuditError::HostName(name)) = e.downcast_ref::<AuditError>() {
        return format!("--host: {name}");
    }
    match hint(e) {
        Some(h) => format!("{e}{h}"),
        None => e.to_string(),
    }
}

/// The text appended to an error's message, if this CLI knows a fix.
pub fn hint(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = e.downcast_ref::<IdentityError>() {
        return identity(e).map(str::to_owned);
    }
    if let Some(e) = e.downcast_ref::<RencError>() {
        return match e {
            RencError::Identity(i) => identity(i).map(str::to_owned),
            RencError::Rekey(r) | RencError::Execute(r) => rekey(r),
            _ => None,
        };
    }
    if let Some(nixseal::masters::MastersError::Identity(i)) =
        e.downcast_ref::<nixseal::masters::MastersError>()
    {
        return identity(i).map(str::to_owned);
    }
    if let Some(e) = e.downcast_ref::<RekeyError>() {
        return rekey(e);
    }
    if let Some(e) = e.downcast_ref::<HostError>() {
        return host(e);
    }
    if let Some(e) = e.downcast_ref::<HostPubkeyError>() {
        return pubkey(e);
    }
    if let Some(e) = e.downcast_ref::<PairError>() {
        return match e {
            PairError::SourceUnreadable { path, .. } => Some(format!(
                "; fix the `file` of this secret or run `nixseal edit {}`",
                path.display()
            )),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<EditError>() {
        return match e {
            EditError::NeedIdentity { .. } => {
                Some(": pass --identity FILE or --profile with `identities`".into())
            }
            EditError::NoRecipients { .. } => {
                Some(": give --profile (its identities and extraRecipients) or --recipient".into())
            }
            EditError::Empty { .. } => Some(": pass --allow-empty to store an empty secret".into()),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<AuditError>() {
        return match e {
            AuditError::NixStoreMissing { .. } => {
                Some(", or give the closure with --closure-info DIR (nixpkgs' closureInfo)".into())
            }
            AuditError::ClosureInfoRead { .. } => Some(
                "; --closure-info wants the output directory of nixpkgs' closureInfo (with store-paths and registration)"
                    .into(),
            ),
            AuditError::ClosureInfo { .. } => {
                Some("; --closure-info wants the output directory of nixpkgs' closureInfo".into())
            }
            _ => None,
        };
    }
    if let Some(DeployError::Source {
        problem: SourceProblem::Missing,
        ..
    }) = e.downcast_ref::<DeployError>()
    {
        return Some(
            " (rebuild the host; if the rekeyed file is missing, run `nix run .#renc`)".into(),
        );
    }
    None
}

/// Lines to print after a deploy error: what to do about failures inside it.
pub fn deploy_notes(e: &DeployError) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if let DeployError::Secrets { failures } = e {
        if failures
            .iter()
            .any(|f| matches!(f.reason, FailureReason::NotForThisHost))
        {
            notes.push("a secret not encrypted to this host's key: check the host key, or run `nix run .#renc` and redeploy");
        }
    }
    notes
}

fn identity(e: &IdentityError) -> Option<&'static str> {
    match e {
        IdentityError::NoIdentities => Some(
            ": pass --identity FILE, or list it in the profile's `identities` (nixseal.identities in the flake)",
        ),
        IdentityError::Read { .. } => Some(" or pass --identity"),
        IdentityError::NoPassphrase { .. } => {
            Some(": run on a terminal, or pass --passphrase-file FILE (e.g. /dev/fd/3)")
        }
        _ => None,
    }
}

fn rekey(e: &RekeyError) -> Option<String> {
    match e {
        RekeyError::Threads { .. } => Some("; use a smaller --jobs".into()),
        _ => None,
    }
}

fn host(e: &HostError) -> Option<String> {
    match e {
        HostError::Key(k) => pubkey(k),
        HostError::DirNotPlain { .. }
        | HostError::CacheNotPlain { .. }
        | HostError::Foreign { .. } => Some(" and run renc again".into()),
        HostError::CacheWrite { .. } => Some("; run renc again once it is writable".into()),
        _ => None,
    }
}

fn pubkey(e: &HostPubkeyError) -> Option<String> {
    match e {
        HostPubkeyError::Missing => Some(" and run renc again".into()),
        _ => None,
    }
}
