# A stand-in for the few parts of nixpkgs that nixseal's Nix code uses, built
# as real derivations with the host's /bin/sh (no stdenv, no network).
#   nixsealBin: the `nixseal` binary built by cargo (a path value); it stands in
#   for `rustPlatform.buildRustPackage`, so the real flake's package expression
#   evaluates unchanged and yields that binary.
{
  lib,
  system,
  nixsealBin,
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

  runCommand =
    name: env: cmd:
    shDrv name cmd (removeAttrs env [ "nativeBuildInputs" ] // {
      PATH = lib.makeBinPath (env.nativeBuildInputs or [ ]) + ":/usr/bin:/bin";
    });

  rustPlatform.buildRustPackage =
    args:
    shDrv "${args.pname}-${args.version}" "mkdir -p $out/bin; cp $nixsealBinary $out/bin/nixseal; chmod +x $out/bin/nixseal" {
      nixsealBinary = nixsealBin;
    }
    // {
      meta = args.meta or { };
      inherit (args) pname version;
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
