# A stand-in for the few parts of nixpkgs that nixseal's Nix code uses, built
# as real derivations with the host's /bin/sh (no stdenv, no network).
#   rust: where the host's Rust toolchain is ({ toolchainBin; cargoHome;
#   targetCache; }), for `rustPlatform.buildRustPackage`, which really builds
#   the package from the `src` it is given (see below); null where no package
#   is built (lib/eval-host.nix uses a placeholder package).
#   nixos: the stand-in NixOS evaluator (lib/standin-nixos.nix applied to
#   lib and these pkgs), for `testers.runNixOSTest`.
{
  lib,
  system,
  rust ? null,
  nixos ? null,
}:
let
  shDrv =
    name: script: env:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        args = [
          "-c"
          script
        ];
      }
      // env
    );
  script = name: text: shDrv name "printf '%s' \"$text\" > $out; chmod +x $out" { text = "#!/bin/sh\n" + text; };
in
rec {
  inherit lib system;
  stdenv.hostPlatform.system = system;
  stdenv.isLinux = true;

  writeText =
    name: text:
    shDrv name "printf '%s' \"$text\" > $out" { inherit text; };

  writeShellScript = script;

  # The host's tools under the store path layout modules refer to.
  coreutils = shDrv "coreutils" "mkdir -p $out/bin; for t in sleep cat true false; do ln -s /bin/$t $out/bin/$t; done" { };

  writeShellScriptBin =
    name: text:
    shDrv name "mkdir -p $out/bin; printf '%s' \"$text\" > $out/bin/${name}; chmod +x $out/bin/${name}" {
      text = "#!/bin/sh\n" + text;
    }
    // {
      meta.mainProgram = name;
    };

  # Like nixpkgs' writeShellApplication, minus shellcheck: bash with
  # errexit/nounset/pipefail and runtimeInputs on PATH.
  writeShellApplication =
    {
      name,
      text,
      runtimeInputs ? [ ],
      ...
    }:
    shDrv name "mkdir -p $out/bin; printf '%s' \"$text\" > $out/bin/${name}; chmod +x $out/bin/${name}" {
      text = ''
        #!/bin/bash
        set -o errexit -o nounset -o pipefail
        export PATH="${lib.makeBinPath runtimeInputs}:$PATH"
      ''
      + text;
    }
    // {
      meta.mainProgram = name;
    };

  # As with stdenv, the command runs with errexit.
  runCommand =
    name: env: cmd:
    shDrv name ("set -e\n" + cmd) (removeAttrs env [ "nativeBuildInputs" ] // {
      PATH = lib.makeBinPath (env.nativeBuildInputs or [ ]) + ":/usr/bin:/bin";
    });

  # Behaves like nixpkgs' buildRustPackage where nixseal depends on it: the
  # build starts from a copy of exactly `src` (so a fileset that leaves out a
  # workspace member or a source file fails here as it fails on real
  # nixpkgs), checks that src's Cargo.lock is the one `cargoLock.lockFile`
  # names (cargoSetupHook's check), runs `cargo metadata` and a release
  # `cargo build --offline --locked` with `cargoBuildFlags`, and installs the
  # executables cargo reports into $out/bin (cargoInstallHook). Crates come
  # from the host's cargo cache instead of a vendor directory, and compiled
  # dependencies are kept in `rust.targetCache` between builds: the copied
  # sources are newer than any cached artifact, so the workspace's own crates
  # are always compiled from `src`. The check phase (cargoTestFlags) is not
  # run.
  rustPlatform.buildRustPackage =
    args:
    if rust == null then
      throw "standin-pkgs: rustPlatform.buildRustPackage needs the `rust` argument (toolchainBin, cargoHome, targetCache)"
    else
      shDrv "${args.pname}-${args.version}"
        ''
          set -eu
          cp -r "$src" "$TMPDIR/source"
          chmod -R u+w "$TMPDIR/source"
          cd "$TMPDIR/source"
          if [ ! -e Cargo.lock ]; then
            echo "ERROR: Missing Cargo.lock from src. Expected to find it at: $PWD/Cargo.lock" >&2
            exit 1
          fi
          if ! cmp -s Cargo.lock "$cargoLockFile"; then
            echo "ERROR: Cargo.lock is not the same in src and in cargoLock.lockFile ($cargoLockFile)" >&2
            exit 1
          fi
          export PATH="$toolchainBin:/usr/bin:/bin" CARGO_HOME CARGO_TARGET_DIR CARGO_TERM_COLOR=never
          mkdir -p "$CARGO_TARGET_DIR"
          cargo metadata --offline --locked --format-version 1 --filter-platform ${
            lib.replaceStrings [ "-linux" ] [ "-unknown-linux-gnu" ] system
          } >/dev/null
          cargo build --offline --locked --release -j "''${NIX_BUILD_CORES:-2}" --message-format json-render-diagnostics $cargoBuildFlags >"$TMPDIR/build.json"
          mkdir -p "$out/bin"
          jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable' "$TMPDIR/build.json" |
            while IFS= read -r exe; do cp "$exe" "$out/bin/"; done
          ls "$out/bin" | grep -q . || { echo "ERROR: cargo built no executable" >&2; exit 1; }
        ''
        {
          inherit (args) src;
          cargoLockFile = args.cargoLock.lockFile;
          cargoBuildFlags = toString (args.cargoBuildFlags or [ ]);
          inherit (rust) toolchainBin;
          CARGO_HOME = rust.cargoHome;
          CARGO_TARGET_DIR = rust.targetCache;
        }
      // {
        meta = args.meta or { };
        inherit (args) pname version;
      };

  # nixpkgs' testers.runNixOSTest (nixos/lib/testing), minus the VMs: the
  # test module is evaluated with the test framework's options, every node
  # (nodes.<name>) is evaluated as a NixOS system with the framework's
  # defaults (networking.hostName = mkDefault <name>;
  # virtualisation.fileSystems become fileSystems, as qemu-vm.nix does) and
  # `defaults`, and the result builds each node's system.build.toplevel
  # (assertions, specialisations) and checks the testScript as the driver
  # does before booting: valid Python that names only nodes, driver symbols
  # and Machine methods that exist (lib/check-test-script.py).
  testers.runNixOSTest =
    test:
    let
      inherit (lib) mkOption types;
      t =
        (lib.evalModules {
          modules = [
            {
              options = {
                name = mkOption { type = types.str; };
                nodes = mkOption {
                  type = types.lazyAttrsOf types.deferredModule;
                  default = { };
                };
                defaults = mkOption {
                  type = types.deferredModule;
                  default = { };
                };
                testScript = mkOption { type = types.either types.str (types.functionTo types.str); };
                skipLint = mkOption {
                  type = types.bool;
                  default = false;
                };
                skipTypeCheck = mkOption {
                  type = types.bool;
                  default = false;
                };
                meta = mkOption {
                  type = types.lazyAttrsOf types.raw;
                  default = { };
                };
              };
            }
            test
          ];
        }).config;
      nodeBase =
        name:
        { config, ... }:
        {
          options.virtualisation.fileSystems = mkOption {
            type = types.attrsOf types.raw;
            default = { };
          };
          config = {
            networking.hostName = lib.mkDefault name;
            fileSystems = lib.mkOverride 10 (
              {
                "/" = {
                  device = "/dev/disk/by-label/nixos";
                  fsType = "ext4";
                };
              }
              // config.virtualisation.fileSystems
            );
          };
        };
      nodes = lib.mapAttrs (
        name: module:
        nixos {
          modules = [
            (nodeBase name)
            t.defaults
            module
            { _module.args.nodes = nodes; }
          ];
        }
      ) t.nodes;
      script = if builtins.isFunction t.testScript then t.testScript { inherit nodes; } else t.testScript;
    in
    if nixos == null then
      throw "standin-pkgs: testers.runNixOSTest needs the `nixos` argument"
    else
      runCommand "vm-test-run-${t.name}"
        {
          systems = lib.mapAttrsToList (_: n: n.config.system.build.toplevel) nodes;
          nodeNames = lib.attrNames nodes;
          testScript = script;
          passAsFile = [ "testScript" ];
          checker = ./check-test-script.py;
        }
        ''
          [ -n "$nodeNames" ] || { echo "test ${t.name} has no nodes" >&2; exit 1; }
          ${lib.optionalString (!t.skipLint) "/usr/bin/python3 $checker $testScriptPath $nodeNames"}
          echo "${t.name}: nodes $nodeNames evaluate; testScript checked" >$out
        ''
      // {
        passthru.nodes = nodes;
        inherit nodes;
        inherit (t) name;
      };

  # nixpkgs' closureInfo (pkgs/build-support/closure-info.nix): a
  # structured-attrs derivation whose exportReferencesGraph gives the
  # closure of rootPaths (path, narHash, narSize, references), written as
  # $out/store-paths, $out/registration (the `nix-store --load-db` format:
  # path, hash, size, deriver "", reference count, references) and
  # $out/total-nar-size. The host's bash and jq stand in for coreutils/jq.
  closureInfo =
    { rootPaths }:
    derivation {
      name = "closure-info";
      inherit system;
      builder = "/bin/bash";
      __structuredAttrs = true;
      exportReferencesGraph.closure = rootPaths;
      empty = rootPaths == [ ];
      PATH = "/usr/bin:/bin";
      args = [
        "-c"
        ''
          set -euo pipefail
          # Nix 2.8 writes these files into the build directory.
          . "''${NIX_ATTRS_SH_FILE:-.attrs.sh}"
          attrs=''${NIX_ATTRS_JSON_FILE:-.attrs.json}
          out=''${outputs[out]}
          mkdir "$out"
          if [ -n "$empty" ]; then
            echo 0 >"$out/total-nar-size"
            : >"$out/registration"
            : >"$out/store-paths"
            exit 0
          fi
          jq '[.closure[].narSize] | add' <"$attrs" >"$out/total-nar-size"
          jq -r '.closure[] | .path, .narHash, (.narSize | tostring), "", (.references | length | tostring), .references[]' <"$attrs" >"$out/registration"
          jq -r '.closure[].path' <"$attrs" >"$out/store-paths"
        ''
      ];
    };

  callPackage = f: args: f (builtins.intersectAttrs (builtins.functionArgs f) pkgsAll // args);
  pkgsAll = {
    inherit
      lib
      rustPlatform
      writeShellApplication
      runCommand
      ;
  };

  mkShell = args: shDrv "nixseal-shell" "touch $out" { };
}
