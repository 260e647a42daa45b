#!/usr/bin/env bash
# Regenerates the SOPS fixtures of internal/sops with the real sops CLI
# (installed by .ci/install-deps: go install github.com/getsops/sops/v3/cmd/sops@v3.13.3).
# key.txt is a test-only age key; other-key.txt is a key the files are NOT encrypted for.
set -euo pipefail
cd "$(dirname "$0")"
tools=${LABGATE_TOOLS:-$HOME/.cache/labgate-tools}
sops=${SOPS:-$(command -v sops || echo "$tools/sops")}
export SOPS_AGE_KEY_FILE=$PWD/key.txt
recipient=$(grep -o 'age1[0-9a-z]*' key.txt | head -1)
enc() { "$sops" encrypt --age "$recipient" --input-type yaml --output-type yaml "$@"; }

# Only the secrets encrypted, the rest readable: how a lab keeps its config in git.
enc --encrypted-regex '^(secret|access_token|api_token|token|password|tsig_secret)$' lab.plain.yaml >lab.enc.yaml
# Everything encrypted (the default), every type of value.
enc types.plain.yaml >types.enc.yaml
# The MAC over encrypted values only, with values ending in _plain left as they are.
# (mac_only_encrypted is set in a .sops.yaml creation rule, not by a flag.)
cat >"${TMPDIR:-/tmp}/labgate-sops-maconly.yaml" <<CONF
creation_rules:
  - age: $recipient
    mac_only_encrypted: true
    unencrypted_suffix: _plain
CONF
"$sops" --config "${TMPDIR:-/tmp}/labgate-sops-maconly.yaml" encrypt --input-type yaml --output-type yaml types.plain.yaml >types-maconly.enc.yaml
# What sops itself decrypts them to, for comparison.
for f in lab types types-maconly; do
  "$sops" decrypt --input-type yaml --output-type yaml "$f.enc.yaml" >"$f.sops-decrypted.yaml"
done

# Tampered copies, which must be refused:
# a readable value changed after encryption (the MAC no longer matches),
sed 's/^domain: lab.example.org$/domain: evil.example.org/' lab.enc.yaml >tampered-plain-value.enc.yaml
# the MAC replaced by the MAC of another file,
mac=$(grep '^    mac: ' types.enc.yaml)
awk -v mac="$mac" '/^    mac: /{print mac; next} {print}' lab.enc.yaml >tampered-mac.enc.yaml
# two encrypted values swapped (each is bound to its path).
tok=$(grep '^        api_token: ' lab.enc.yaml | sed 's/^ *api_token: //')
ntfy=$(grep '^            token: ' lab.enc.yaml | sed 's/^ *token: //')
sed -e "s|^        api_token: .*|        api_token: $ntfy|" -e "s|^            token: .*|            token: $tok|" lab.enc.yaml >tampered-swapped.enc.yaml
for f in tampered-*.enc.yaml; do
  if "$sops" decrypt "$f" >/dev/null 2>&1; then
    echo "gen.sh: sops decrypts $f: the tampering did not work" >&2
    exit 1
  fi
done

# A secret file beside the config, encrypted as binary (YAML and JSON output), and a tampered copy.
"$sops" encrypt --age "$recipient" --input-type binary --output-type yaml token.txt >token.sops.yaml
"$sops" encrypt --age "$recipient" --input-type binary --output-type json token.txt >token.sops.json
sed 's/^    lastmodified: "2/    lastmodified: "1/' token.sops.yaml >tampered-token.sops.yaml
if "$sops" decrypt --input-type yaml --output-type binary tampered-token.sops.yaml >/dev/null 2>&1; then
  echo "gen.sh: sops decrypts tampered-token.sops.yaml" >&2
  exit 1
fi

# A file with a config error below its secrets, and the CLI test that uses them all.
enc --encrypted-regex '^(secret|access_token|api_token|token|password|tsig_secret)$' labbad.plain.yaml >labbad.enc.yaml
{
  cat check.txtar.head
  for f in key.txt other-key.txt lab.enc.yaml labbad.enc.yaml tampered-plain-value.enc.yaml tampered-swapped.enc.yaml \
    sidefile.yaml sidefile-tampered.yaml token.sops.yaml tampered-token.sops.yaml; do
    echo "-- $f --"
    cat "$f"
  done
} >../../cli/testdata/script/sops.txtar
echo "gen.sh: fixtures written with $("$sops" --version --disable-version-check | head -1)"
