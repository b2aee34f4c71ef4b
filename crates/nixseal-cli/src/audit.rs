//! `nixseal audit`: output and exit code for [`nixseal::audit`].

use std::path::PathBuf;

use clap::Args;
use nixseal::audit::{self, AuditRequest, ClosureSpec, Finding, Holding, Report};
use nixseal::profile::Profile;

use crate::ui::{self, CliError, CmdResult, Done};

/// `writeln!` into a String (cannot fail).
macro_rules! wl {
    ($o:expr, $($t:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($t)*);
    }};
}

pub const EXIT_CODES: &str = "Exit codes:
  0  clean: no store path of the closure carries secret material that is not the host's own
  1  a leak: some store path does (each is named, with what refers to it)
  2  bad input or usage (arguments, profile, system, closureInfo directory, a system
     nix-store does not know)
  3  environment: nix-store missing (or printing what nixseal cannot read), or part of
     the closure could not be read (listed; nothing was found in the rest)

The store directory is /nix/store, or $NIX_STORE_DIR as for Nix.";

/// Arguments of `nixseal audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The fleet profile (JSON, version 1), as made by the flake module.
    #[arg(long, value_name = "FILE")]
    profile: PathBuf,
    /// The host whose system is audited; only its own rekeyed files may be in it.
    #[arg(long, value_name = "HOST")]
    host: String,
    /// The flake root: profile paths are taken from here, and the flake's
    /// source (git-tracked files) is computed from it. Inside a build, the
    /// flake's store path.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Read the closure from a nixpkgs closureInfo output (store-paths,
    /// registration) instead of asking nix-store, e.g. in a sandboxed check.
    #[arg(long, value_name = "DIR")]
    closure_info: Option<PathBuf>,
    /// Print the report as JSON (version 1, see docs/json.md) instead of text.
    #[arg(long)]
    json: bool,
    /// Skip the heuristic checks (directories of age files, rekey caches
    /// recognised by name).
    #[arg(long)]
    no_heuristics: bool,
    /// The built system: a `nixos-rebuild build` result, /run/current-system
    /// or any store path (optional with --closure-info).
    #[arg(value_name = "SYSTEM", required_unless_present = "closure_info")]
    system: Option<PathBuf>,
}

pub fn run(args: AuditArgs) -> CmdResult {
    let store_dir = match std::env::var_os("NIX_STORE_DIR") {
        Some(d) if !PathBuf::from(&d).is_absolute() => {
            return Err(CliError::usage(format!(
                "NIX_STORE_DIR={} is not an absolute path",
                PathBuf::from(d).display()
            )))
        }
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(nixseal::store_path::STORE_DIR),
    };
    let profile = Profile::load(&args.profile, &args.root)?;
    let closure = match (args.closure_info, args.system) {
        (Some(dir), system) => ClosureSpec::ClosureInfo { dir, system },
        (None, Some(system)) => ClosureSpec::Store { system },
        (None, None) => {
            return Err(CliError::usage(
                "give the SYSTEM to audit (or --closure-info DIR)",
            ))
        }
    };
    let req = AuditRequest {
        profile: &profile,
        host: &args.host,
        closure,
        store_dir,
        heuristics: !args.no_heuristics,
    };
    let report = audit::audit(&req)?;
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                return Err(CliError::with_class(
                    nixseal::ErrorClass::Failed,
                    format_args!("cannot write the report: {e}"),
                ))
            }
        }
    } else {
        render(&report, &profile)
    };
    // A closed pipe (`| head`) is not a failure of the audit: the exit code
    // still tells the result.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(if report.leaks() {
        Done::Failed
    } else if !report.complete {
        Done::Incomplete
    } else {
        Done::Ok
    })
}

/// The text report (warnings go to stderr at once).
fn render(r: &Report, profile: &Profile) -> String {
    let mut o = String::new();
    let host = &r.host;
    let from = match &r.closure.closure_info {
        Some(dir) => format!("closure from {dir}"),
        None => "closure from the store".into(),
    };
    wl!(
        o,
        "audit of {host}: {} ({} store paths, {} files; {from})",
        r.roots.join(", "),
        r.closure.store_paths,
        r.closure.files
    );
    match (&r.flake_source.store_path, &r.flake_source.error) {
        (Some(p), _) => wl!(o, "flake source: {p} (from {})", r.flake_source.root),
        (None, Some(e)) => ui::warn(format_args!(
            "the flake's own source could not be computed, so only copies recognised by content are found: {e}"
        )),
        (None, None) => {}
    }
    if !r.host_in_profile {
        ui::warn(format_args!(
            "host {host} has no secrets in the profile: every rekeyed file counts as another host's"
        ));
    }
    for n in &r.not_checked {
        ui::warn(format_args!(
            "{} ({}) not checked: {}",
            n.file, n.what, n.reason
        ));
    }
    for f in &r.findings {
        o.push('\n');
        render_finding(&mut o, host, f, profile);
    }
    for u in &r.unreadable {
        ui::warn(format_args!("cannot read {}: {}", u.path, u.error));
    }
    if r.closure.unreadable > r.unreadable.len() as u64 {
        ui::warn(format_args!(
            "… {} unreadable entries in all",
            r.closure.unreadable
        ));
    }
    for s in &r.skipped {
        ui::warn(format_args!(
            "skipped {} ({}): not examined",
            s.path, s.kind
        ));
    }
    o.push('\n');
    if r.leaks() {
        wl!(o,
            "{} store path(s) in {host}'s closure carry secret material that is not {host}'s own; fix the configuration, rebuild and audit again",
            r.findings.len()
        );
    } else if !r.complete {
        wl!(o,
            "incomplete: {} entries of {host}'s closure could not be read (listed above); nothing was found in the rest",
            r.closure.unreadable
        );
    } else {
        wl!(o,
            "clean: no store path in {host}'s closure carries secret material that is not {host}'s own"
        );
    }
    o
}

fn render_finding(o: &mut String, host: &str, f: &Finding, profile: &Profile) {
    wl!(o, "LEAK {}", f.store_path);
    for c in &f.flake_copies {
        let at = if c.dir.is_empty() {
            String::new()
        } else {
            format!(" (at {})", c.dir)
        };
        if c.exact {
            wl!(
                o,
                "  is your flake's source{at}, exactly as the working tree's tracked files make it"
            );
        } else {
            wl!(o, "  holds a copy of your flake{at} (an older or filtered one: flake.nix next to the profile's files)");
        }
        if !c.master_files.is_empty() {
            wl!(o, "    master files: {}", c.master_files.join(", "));
        }
        let others: Vec<&str> = c
            .rekeyed_hosts
            .iter()
            .map(String::as_str)
            .filter(|h| *h != host)
            .collect();
        if !others.is_empty() {
            wl!(o, "    rekeyed files of other hosts: {}", others.join(", "));
        }
    }
    if !f.files.is_empty() {
        wl!(o, "  holds:");
        for l in &f.files {
            let at = if l.path.is_empty() {
                "(the store path itself)".to_owned()
            } else {
                l.path.clone()
            };
            for h in &l.holds {
                wl!(o, "    {at}: {}", describe(h, profile));
            }
        }
    }
    for t in &f.secret_trees {
        let dir = if t.dir.is_empty() { "." } else { &t.dir };
        wl!(
            o,
            "  heuristic: {dir}/ looks like a secrets tree ({} age file(s), {} rekey cache(s): {})",
            t.age_files,
            t.rekey_caches,
            t.examples.join(", ")
        );
    }
    if !f.chain.is_empty() {
        wl!(o, "  referred to by:");
        for l in &f.chain {
            match &l.via {
                Some(v) if v.is_empty() => wl!(o, "    {}  (its content)", l.store_path),
                Some(v) => wl!(o, "    {}  ({v})", l.store_path),
                None => wl!(o, "    {}", l.store_path),
            }
        }
    }
    for line in fixes(host, f) {
        wl!(o, "  {line}");
    }
}

/// A known file, naming its target as a host or a home (`rekeyed file of
/// home web1.alice`).
fn describe(h: &Holding, profile: &Profile) -> String {
    match h {
        Holding::MasterCiphertext { file, uses } => {
            let uses: Vec<String> = uses
                .iter()
                .map(|u| format!("{} on {}", u.secret, u.host))
                .collect();
            format!("master ciphertext {file} ({})", uses.join(", "))
        }
        Holding::RekeyedFile { host, secret, file } => {
            format!(
                "rekeyed file of {} (secret {secret}, {file})",
                profile.label(host)
            )
        }
        Holding::RekeyCache { host, file } => {
            format!("rekey cache of {} ({file})", profile.label(host))
        }
        Holding::Identity { file } => format!("master identity {file}"),
    }
}

/// What to do about a finding, as lines (the first of each fix starts with
/// "fix:").
fn fixes(host: &str, f: &Finding) -> Vec<String> {
    let holds = || f.files.iter().flat_map(|l| &l.holds);
    let mut out = Vec::new();
    if !f.flake_copies.is_empty() {
        out.extend([
            format!("fix: something in {host}'s configuration refers to the whole flake (`self`, `./.`, or a string with `${{self}}`); the chain above shows what."),
            "  `nix.registry.self.flake = self;` → register inputs, not the flake: `nix.registry.nixpkgs.flake = inputs.nixpkgs;`".into(),
            "  `environment.etc.<name>.source = self;`, `nixpkgs.flake.source = self;`, `system.extraDependencies` → only the files needed,".into(),
            "  e.g. `lib.fileset.toSource { root = ./.; fileset = lib.fileset.difference ./. ./secrets; }`".into(),
        ]);
    } else if holds().any(|h| !matches!(h, Holding::Identity { .. })) {
        out.extend([
            "fix: something copies this file into the store (e.g. `environment.etc.<name>.source = ./secrets/…;`); remove the copy.".into(),
            format!("  {host} gets its secrets through `nixseal.secrets.<name>`: its own rekeyed file, decrypted at activation to `config.nixseal.secrets.<name>.path`."),
        ]);
    }
    if holds().any(|h| matches!(h, Holding::Identity { .. })) {
        out.extend([
            "fix: a master identity in the store is readable by every user of every machine and cache that has this closure:".into(),
            "  treat it as compromised (a new master identity, every secret re-encrypted), and keep identities out of git and the store.".into(),
        ]);
    }
    if out.is_empty() && !f.secret_trees.is_empty() {
        out.push(
            "fix: if this directory holds secrets, stop copying it into the store; if it does not, audit with --no-heuristics."
                .into(),
        );
    }
    out
}
