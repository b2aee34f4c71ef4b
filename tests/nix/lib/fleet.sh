# Shell helpers for the offline Nix tests (sourced, not run).
#   fleet_keys DIR             master age identity DIR/keys/master.age (+ .pub)
#   fleet_hostkey DIR HOST     ssh-ed25519 host key DIR/hostkeys/HOST/ssh_host_ed25519_key(.pub)
#   fleet_secret DIR FILE      encrypt stdin to the master recipient into DIR/FILE
#   fleet_age_rekey DIR HOST SECRET=FILE...
#                              write DIR/secrets/rekeyed/HOST/SECRET.age and the
#                              rekey cache with Go `age`, exactly per the rekeyed
#                              layout contract (used where `nixseal renc` is not
#                              the thing under test)

fleet_keys() {
  mkdir -p "$1/keys"
  [ -f "$1/keys/master.age" ] || age-keygen -o "$1/keys/master.age" 2>/dev/null
  age-keygen -y "$1/keys/master.age" >"$1/keys/master.pub"
}

fleet_hostkey() {
  local d="$1/hostkeys/$2"
  mkdir -p "$d"
  [ -f "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "root@$2" -f "$d/ssh_host_ed25519_key"
}

fleet_pubkey() { # DIR HOST -> "ssh-ed25519 AAAA... root@HOST"
  cat "$1/hostkeys/$2/ssh_host_ed25519_key.pub"
}

fleet_secret() {
  mkdir -p "$(dirname "$1/$2")"
  age -r "$(cat "$1/keys/master.pub")" -o "$1/$2"
}

fleet_age_rekey() {
  local dir="$1" host="$2" out recipient cache entries="" sep=""
  shift 2
  out="$dir/secrets/rekeyed/$host"
  mkdir -p "$out"
  recipient=$(cut -d' ' -f1,2 <"$dir/hostkeys/$host/ssh_host_ed25519_key.pub")
  for pair in "$@"; do
    local name="${pair%%=*}" file="${pair#*=}"
    age -d -i "$dir/keys/master.age" "$dir/$file" | age -r "$recipient" -o "$out/$name.age"
    entries="$entries$sep\"$name\":{\"sourceSha256\":\"$(sha256sum <"$dir/$file" | cut -d' ' -f1)\",\"recipient\":\"$recipient\",\"outputSha256\":\"$(sha256sum <"$out/$name.age" | cut -d' ' -f1)\"}"
    sep=","
  done
  printf '{"version":1,"outputs":{%s}}\n' "$entries" >"$out/.nixseal-rekey.json"
}
