//! Unit tests of the manifest contract: parsing and validation.

use std::path::Path;

use super::paths::{check_location, Extra, NAME_MAX, PATH_MAX, TEMP_EXTRA};
use super::validate::{check, EntryFacts, Part};
use super::*;

fn good() -> Manifest {
    serde_json::from_str(
        r#"{"version":1,
        "hostKeys":[{"path":"/etc/ssh/ssh_host_ed25519_key","type":"ed25519"}],
        "mountPoint":"/run/nixseal.d","symlink":"/run/nixseal","keepGenerations":1,
        "secrets":[{"name":"db-password","source":"/nix/store/x-db.age",
            "owner":"postgres","group":"postgres","mode":"0400",
            "path":"/run/nixseal/db-password","symlink":true,
            "restartUnits":["postgresql.service"],"reloadUnits":[],
            "neededForUsers":false}],
        "templates":[{"name":"app.env","content":"PASSWORD={{nixseal:db-password}}\n",
            "owner":"root","group":"root","mode":"0400","path":"/run/nixseal/app.env"}]}"#,
    )
    .unwrap()
}

fn problems(m: &Manifest, scope: Scope) -> Vec<Problem> {
    check(m, scope).problems
}

#[test]
fn design_example_is_valid() {
    assert_eq!(problems(&good(), Scope::Main), vec![]);
    assert_eq!(problems(&good(), Scope::Users), vec![]);
}

#[test]
fn version_and_unknown_fields_refused() {
    let p = Path::new("m.json");
    let e = Manifest::parse(p, br#"{"version":2,"x":1}"#).unwrap_err();
    assert!(
        matches!(e, ManifestError::Version { ref found, .. } if found == "2"),
        "{e}"
    );
    let e = Manifest::parse(p, br#"{"hostKeys":[]}"#).unwrap_err();
    assert!(e.to_string().contains("(missing)"), "{e}");
    let mut v = serde_json::to_value(good()).unwrap();
    v["surprise"] = 1.into();
    let e = Manifest::parse(p, v.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("unknown field `surprise`"), "{e}");
    v = serde_json::to_value(good()).unwrap();
    v["secrets"][0]["sourse"] = "x".into();
    let e = Manifest::parse(p, v.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("sourse"), "{e}");
    assert!(matches!(
        Manifest::parse(p, b"not json"),
        Err(ManifestError::Json { .. })
    ));
}

#[test]
fn modes() {
    assert_eq!(parse_mode("0400"), Some(0o400));
    assert_eq!(parse_mode("440"), Some(0o440));
    assert_eq!(parse_mode("0777"), Some(0o777));
    for bad in [
        "999", "0o400", "-1", "4755", "04000", "", "40", "0x40", "04OO",
    ] {
        assert_eq!(parse_mode(bad), None, "{bad}");
    }
}

#[test]
fn paths() {
    assert!(check_abs_path("/run/x").is_ok());
    for bad in [
        "run/x",
        "/run/../etc",
        "/run//x",
        "/run/x/",
        "/run/./x",
        "/nix/store/abc",
        "/nix/store",
    ] {
        assert!(check_abs_path(bad).is_err(), "{bad}");
    }
    assert!(path_within("/a/b", "/a"));
    assert!(!path_within("/ab", "/a"));
    assert!(!path_within("/a", "/a"));
}

#[test]
fn every_problem_is_reported() {
    let mut m = good();
    let mut s2 = m.secrets[0].clone();
    s2.mode = "999".into();
    s2.path = "relative".into();
    m.secrets.push(s2);
    let mut s3 = m.secrets[0].clone();
    s3.name = "a..b".into();
    s3.path = "/nix/store/y".into();
    s3.restart_units = vec!["--now".into()];
    m.secrets.push(s3);
    m.templates[0].content = "{{nixseal:missing}} {{nixseal:db-password}}".into();
    m.host_keys[0].key_type = "rsa".into();
    let ps = problems(&m, Scope::Main);
    let text: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    let has = |needle: &str| {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "{needle} not in {text:#?}"
        )
    };
    has("used twice");
    has("mode \"999\"");
    has("\"relative\" is not an absolute path");
    has("contains `..`");
    has("inside /nix/store");
    has("{{nixseal:missing}}");
    has("type \"rsa\"");
    has("unit name \"--now\"");
}

#[test]
fn custom_path_conflicts() {
    let mut m = good();
    m.secrets[0].path = "/etc/app/pw".into();
    m.templates[0].path = "/etc/app/pw".into();
    assert!(problems(&m, Scope::Main)
        .iter()
        .any(|p| p.to_string().contains("same path")));
    m.templates[0].path = "/etc/app/pw/inner".into();
    assert!(problems(&m, Scope::Main)
        .iter()
        .any(|p| p.to_string().contains("inside one another")));
    m.templates[0].path = "/run/nixseal.d/3/x".into();
    assert!(problems(&m, Scope::Main)
        .iter()
        .any(|p| p.to_string().contains("overlap")));
    m.templates[0].path = "/run/nixseal/other-name".into();
    assert!(problems(&m, Scope::Main)
        .iter()
        .any(|p| p.to_string().contains("overlap")));
}

#[test]
fn users_paths_live_under_the_users_symlink() {
    let mut m = good();
    m.secrets[0].needed_for_users = true;
    // Default path under the main symlink is refused for users secrets.
    assert!(problems(&m, Scope::Users)
        .iter()
        .any(|p| matches!(p, Problem::UsersPath { .. })));
    m.secrets[0].path = "/run/nixseal-for-users/db-password".into();
    assert_eq!(problems(&m, Scope::Users), vec![]);
    assert_eq!(problems(&m, Scope::Main), vec![]);
    assert_eq!(m.users_mount_point(), "/run/nixseal-for-users.d");
    // The facts: the default path of each run, nothing to place.
    let c = check(&m, Scope::Users);
    assert_eq!(
        c.secrets[0],
        Some(EntryFacts {
            mode: 0o400,
            custom_path: None
        })
    );
}

#[test]
fn facts_say_mode_custom_path_and_template_parts() {
    let mut m = good();
    m.templates[0].path = "/etc/app.env".into();
    let c = check(&m, Scope::Main);
    assert_eq!(c.problems, vec![]);
    let t = c.templates[0].as_ref().unwrap();
    assert_eq!(
        t.entry,
        EntryFacts {
            mode: 0o400,
            custom_path: Some("/etc/app.env")
        }
    );
    assert_eq!(
        t.parts,
        [Part::Text("PASSWORD="), Part::Secret(0), Part::Text("\n")]
    );
    // An entry with a problem of its own has no facts.
    m.secrets[0].mode = "999".into();
    m.templates[0].content = "{{nixseal:nope}}".into();
    let c = check(&m, Scope::Main);
    assert_eq!(
        (c.secrets[0].is_none(), c.templates[0].is_none()),
        (true, true)
    );
    // `Manifest::check` (what `nixseal manifest check` runs) reports both.
    let e = m.check(Path::new("m.json")).unwrap_err().to_string();
    assert!(
        e.contains("mode \"999\"") && e.contains("{{nixseal:nope}}"),
        "{e}"
    );
}

#[test]
fn world_accessible_modes_warn() {
    let mut m = good();
    assert_eq!(check(&m, Scope::Main).warnings, vec![]);
    m.secrets[0].mode = "0444".into();
    m.templates[0].mode = "0602".into();
    let w: Vec<String> = check(&m, Scope::Main)
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("secret \"db-password\" has mode \"0444\"") && w[0].contains("can read it"),
        "{w:?}"
    );
    assert!(
        w[1].contains("template \"app.env\"") && w[1].contains("can write it"),
        "{w:?}"
    );
    // The users run installs only neededForUsers secrets, no templates.
    assert_eq!(check(&m, Scope::Users).warnings, vec![]);
    for (mode, warns) in [
        ("0004", true),
        ("0001", true),
        ("0777", true),
        ("0440", false),
        ("0070", false),
    ] {
        m.secrets[0].mode = mode.into();
        m.templates[0].mode = "0400".into();
        assert_eq!(!check(&m, Scope::Main).warnings.is_empty(), warns, "{mode}");
    }
}

#[test]
fn locations_system_dirs_and_lengths() {
    let e = Extra {
        last: TEMP_EXTRA,
        total: TEMP_EXTRA,
    };
    assert!(check_location("/etc/app/pw", e).is_ok());
    for bad in [
        "/",
        "/run",
        "/etc",
        "/var/lib",
        "/home",
        "/proc/1",
        "/sys/x",
        "/dev/shm/x",
    ] {
        assert!(check_location(bad, e).is_err(), "{bad}");
    }
    let ok = format!("/etc/{}", "x".repeat(NAME_MAX - TEMP_EXTRA));
    assert!(check_location(&ok, e).is_ok());
    let long = format!("/etc/{}", "x".repeat(NAME_MAX - TEMP_EXTRA + 1));
    assert!(check_location(&long, e).unwrap_err().contains("255 bytes"));
    let comp = format!("/etc/{}/x", "x".repeat(NAME_MAX + 1));
    assert!(check_location(&comp, e)
        .unwrap_err()
        .contains("component of 256 bytes"));
    let deep = "/a".repeat(PATH_MAX / 2);
    assert!(check_location(&deep, e).unwrap_err().contains("PATH_MAX"));
}

#[test]
fn nixseal_own_names_are_reserved() {
    let collide = |m: &Manifest| {
        problems(m, Scope::Main)
            .iter()
            .any(|p| p.to_string().contains("collide"))
    };
    let mut m = good();
    assert!(!collide(&m));
    m.secrets[0].path = "/run/.nixseal.d.lock".into();
    assert!(collide(&m));
    m.secrets[0].path = "/run/.nixseal-for-users.d.lock".into();
    assert!(collide(&m));
    m.secrets[0].path = "/run/.nixseal.nixseal-new".into();
    assert!(collide(&m));
    m.secrets[0].path = "/etc/a".into();
    m.templates[0].path = "/etc/.a.nixseal-tmp".into();
    assert!(collide(&m));
    m.templates[0].path = "/run/nixseal/app.env".into();
    m.state_dir = Some("/run/.nixseal.d.lock".into());
    assert!(collide(&m));
    m.state_dir = Some("/var/lib/nixseal".into());
    m.secrets[0].path = "/var/lib/nixseal/x".into();
    assert!(problems(&m, Scope::Main)
        .iter()
        .any(|p| p.to_string().contains("overlap")));
}

#[test]
fn template_placeholders() {
    assert_eq!(
        placeholders("a{{nixseal:x}}b{{nixseal:y}}").unwrap(),
        ["x", "y"]
    );
    assert!(placeholders("a{{nixseal:x").is_err());
    assert_eq!(placeholders("{{other}}").unwrap(), Vec::<&str>::new());
}

const M: &str =
    r#"{"version":1,"hostKeys":[],"mountPoint":"/run/a.d","symlink":"/run/a","keepGenerations":1}"#;

#[test]
fn a_repeated_field_is_refused_not_last_one_wins() {
    assert!(Manifest::parse(Path::new("m.json"), M.as_bytes()).is_ok());
    let twice = M.replace(
        r#""symlink":"/run/a""#,
        r#""symlink":"/run/a","symlink":"/etc""#,
    );
    let e = Manifest::parse(Path::new("m.json"), twice.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m.json") && e.contains("duplicate field `symlink`"),
        "{e}"
    );
    let v2 = M.replace(r#""version":1"#, r#""version":2"#);
    let e = Manifest::parse(Path::new("m.json"), v2.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("has version 2"), "{e}");
}

/// The contract's required fields are required and its optional ones
/// optional: removing any field of a full manifest either fails naming it
/// or parses with the documented default. A field the Nix side stops
/// emitting, or one made required by mistake, fails here, never silently.
#[test]
fn every_field_is_required_or_has_its_documented_default() {
    let full = serde_json::to_value(good()).unwrap();
    let required = [
        "version",
        "hostKeys",
        "mountPoint",
        "symlink",
        "keepGenerations",
    ];
    let optional = ["stateDir", "secrets", "templates"];
    let mut seen = Vec::new();
    for key in full.as_object().unwrap().keys() {
        let mut v = full.clone();
        v.as_object_mut().unwrap().remove(key);
        let r = Manifest::parse(Path::new("m.json"), v.to_string().as_bytes());
        if required.contains(&key.as_str()) {
            let e = r.expect_err(key).to_string();
            assert!(
                e.contains(key.as_str()) || e.contains("(missing)"),
                "{key}: {e}"
            );
        } else {
            assert!(optional.contains(&key.as_str()), "{key} is neither");
            r.unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        seen.push(key.clone());
    }
    // The fixture names every top-level field but stateDir (omitted when default).
    assert_eq!(seen.len(), required.len() + optional.len() - 1, "{seen:?}");
    let secret_required = ["name", "source", "owner", "group", "mode", "path"];
    let secret_optional = [
        "symlink",
        "restartUnits",
        "reloadUnits",
        "neededForUsers",
        "allowPlaintextOnDisk",
    ];
    let mut s = serde_json::to_value(&good().secrets[0]).unwrap();
    s["allowPlaintextOnDisk"] = true.into();
    for key in s.as_object().unwrap().keys() {
        let mut v = full.clone();
        let mut one = s.clone();
        one.as_object_mut().unwrap().remove(key);
        v["secrets"] = serde_json::json!([one]);
        let r = Manifest::parse(Path::new("m.json"), v.to_string().as_bytes());
        if secret_required.contains(&key.as_str()) {
            let e = r.expect_err(key).to_string();
            assert!(e.contains(&format!("missing field `{key}`")), "{key}: {e}");
        } else {
            assert!(secret_optional.contains(&key.as_str()), "{key} is neither");
            let m = r.unwrap_or_else(|e| panic!("{key}: {e}"));
            // The defaults: a symlink, no units, not for users, not on disk.
            let d = &m.secrets[0];
            let default = match key.as_str() {
                "symlink" => d.symlink,
                "restartUnits" => d.restart_units.is_empty(),
                "reloadUnits" => d.reload_units.is_empty(),
                "neededForUsers" => !d.needed_for_users,
                _ => !d.allow_plaintext_on_disk,
            };
            assert!(default, "{key} without its default");
        }
    }
}
