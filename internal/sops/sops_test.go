package sops

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labgate/labgate/internal/testpeer"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func identities(t *testing.T, file string) []age.Identity {
	t.Helper()
	ids, err := Identities(func(string) (string, bool) { return "", false }, filepath.Join("testdata", file))
	if err != nil || len(ids) != 1 {
		t.Fatalf("Identities(%s) = %v, %v", file, ids, err)
	}
	return ids
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return v
}

// lines maps each mapping key to the line it is on, for the keys outside the sops block.
func lines(t *testing.T, b []byte) map[string]int {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		for i := 0; i+1 < len(n.Content) && n.Kind == yaml.MappingNode; i += 2 {
			k := n.Content[i]
			if path == "" && k.Value == "sops" {
				continue
			}
			out[path+"."+k.Value] = k.Line
			walk(n.Content[i+1], path+"."+k.Value)
		}
		for _, c := range n.Content {
			if n.Kind == yaml.SequenceNode || n.Kind == yaml.DocumentNode {
				walk(c, path)
			}
		}
	}
	walk(&doc, "")
	return out
}

func TestDecryptFixturesMadeBySops(t *testing.T) {
	ids := identities(t, "key.txt")
	for _, name := range []string{"lab", "types", "types-maconly"} {
		t.Run(name, func(t *testing.T) {
			enc := read(t, name+".enc.yaml")
			if !Encrypted(enc) {
				t.Fatal("Encrypted = false")
			}
			got, err := Decrypt(enc, ids)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(decode(t, read(t, name+".sops-decrypted.yaml")), decode(t, got)); diff != "" {
				t.Errorf("labgate and sops decrypt differently (-sops +labgate):\n%s", diff)
			}
			plainName := strings.TrimSuffix(name, "-maconly") + ".plain.yaml"
			if diff := cmp.Diff(decode(t, read(t, plainName)), decode(t, got)); diff != "" {
				t.Errorf("decrypted differs from the plaintext (-plain +decrypted):\n%s", diff)
			}
			if diff := cmp.Diff(lines(t, enc), lines(t, got)); diff != "" {
				t.Errorf("values moved to other lines (-encrypted file +decrypted):\n%s", diff)
			}
			if Encrypted(got) || strings.Contains(string(got), "ENC[AES256_GCM") && name == "lab" {
				t.Errorf("the output still holds sops data:\n%s", got)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	ids := identities(t, "key.txt")
	lab := string(read(t, "lab.enc.yaml"))
	types := string(read(t, "types.enc.yaml"))
	flip := func(s, marker string) string {
		// Change one base64 character of the data right after marker.
		i := strings.Index(s, marker)
		j := i + len(marker)
		c := byte('A')
		if s[j] == 'A' {
			c = 'B'
		}
		return s[:j] + string(c) + s[j+1:]
	}
	for _, tc := range []struct {
		name string
		data string
		ids  []age.Identity
		want string
	}{
		{"a readable value changed (sops fixture)", string(read(t, "tampered-plain-value.enc.yaml")), ids, "MAC mismatch"},
		{"the MAC of another file (sops fixture)", string(read(t, "tampered-mac.enc.yaml")), ids, "cannot decrypt the MAC"},
		{"two values swapped (sops fixture)", string(read(t, "tampered-swapped.enc.yaml")), ids, "api_token: the encrypted value does not decrypt"},
		{"an encrypted value changed", flip(lab, "secret: ENC[AES256_GCM,data:"), ids, "alerts.ops.webhook.secret: the encrypted value does not decrypt"},
		{"an encrypted int changed", flip(types, "int: ENC[AES256_GCM,data:"), ids, "int: the encrypted value does not decrypt"},
		{"a tag changed", strings.Replace(lab, ",tag:", ",tag:AAAA", 1), ids, "does not decrypt"},
		{"the MAC changed", flip(lab, "mac: ENC[AES256_GCM,data:"), ids, "cannot decrypt the MAC"},
		{"lastmodified changed", strings.Replace(lab, `lastmodified: "2`, `lastmodified: "1`, 1), ids, "cannot decrypt the MAC"},
		{"a value left unencrypted", strings.Replace(types, "string: ENC[", "string: XENC[", 1), ids, "not a sops-encrypted value"},
		{"a value added in the clear", strings.Replace(lab, "state_dir: ./state\n", "state_dir: ./state\nextra: 1\n", 1), ids, "MAC mismatch"},
		{"a value removed", strings.Replace(lab, "state_dir: ./state\n", "", 1), ids, "MAC mismatch"},
		{"the wrong key", lab, identities(t, "other-key.txt"), "none of the age keys given opens the file (it is encrypted for age1"},
		{"no key", lab, nil, "no age key to decrypt the file"},
		{"no metadata", strings.Split(lab, "sops:")[0], ids, "no sops metadata"},
		// The metadata is not under the MAC: rules changed there must not
		// let a value through unencrypted.
		{"the metadata claims nothing is encrypted", strings.Replace(lab, "    encrypted_regex: ^(secret|access_token|api_token|token|password|tsig_secret)$", "    encrypted_regex: ^nothing$", 1), ids, "MAC mismatch"},
		{"the metadata claims nothing is encrypted and only encrypted values are MAC'd", strings.Replace(lab, "    encrypted_regex: ^(secret|access_token|api_token|token|password|tsig_secret)$", "    encrypted_regex: ^nothing$\n    mac_only_encrypted: true", 1), ids, "MAC mismatch"},
		{"the metadata claims a value is plain", strings.Replace(lab, "    encrypted_regex: ^(secret|access_token|api_token|token|password|tsig_secret)$", "    encrypted_regex: ^(access_token|api_token|token|password|tsig_secret)$", 1), ids, "MAC mismatch"},
		{"comment rules", strings.Replace(lab, "    encrypted_regex:", "    encrypted_comment_regex: x\n    encrypted_regex:", 1), ids, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Decrypt([]byte(tc.data), tc.ids)
			if err == nil {
				t.Fatalf("decrypted a file that must be refused:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestIdentitiesFromTheEnvironment(t *testing.T) {
	key := string(read(t, "key.txt"))
	for _, tc := range []struct {
		name string
		env  map[string]string
		file string
		want int
	}{
		{"SOPS_AGE_KEY", map[string]string{"SOPS_AGE_KEY": key}, "", 1},
		{"SOPS_AGE_KEY_FILE", map[string]string{"SOPS_AGE_KEY_FILE": "testdata/key.txt"}, "", 1},
		{"both and a configured file", map[string]string{"SOPS_AGE_KEY": key, "SOPS_AGE_KEY_FILE": "testdata/other-key.txt"}, "testdata/key.txt", 3},
		{"the user's sops keys.txt", map[string]string{"XDG_CONFIG_HOME": "testdata/xdg"}, "", 1},
		{"none", nil, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env["XDG_CONFIG_HOME"] != "" {
				dir := filepath.Join(t.TempDir(), "sops", "age")
				os.MkdirAll(dir, 0o700)
				os.WriteFile(filepath.Join(dir, "keys.txt"), []byte(key), 0o600)
				tc.env["XDG_CONFIG_HOME"] = filepath.Dir(filepath.Dir(dir))
			}
			ids, err := Identities(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != tc.want {
				t.Errorf("%d identities, want %d", len(ids), tc.want)
			}
		})
	}
	if _, err := Identities(func(k string) (string, bool) { return "not a key", k == "SOPS_AGE_KEY" }, ""); err == nil {
		t.Error("a malformed SOPS_AGE_KEY was accepted")
	}
	if _, err := Identities(func(string) (string, bool) { return "", false }, "testdata/missing.txt"); err == nil {
		t.Error("a missing key file was accepted")
	}
}

// TestFreshlyEncryptedBySops encrypts with the sops CLI now and decrypts with labgate.
func TestFreshlyEncryptedBySops(t *testing.T) {
	bin := testpeer.NeedTool(t, "sops")
	ids := identities(t, "key.txt")
	recipient := strings.Fields(strings.SplitAfter(string(read(t, "key.txt")), "public key: ")[1])[0]
	for _, tc := range []struct {
		name, plain string
		flags       []string
	}{
		{"everything encrypted", "types.plain.yaml", nil},
		{"encrypted_regex", "lab.plain.yaml", []string{"--encrypted-regex", "^(secret|token|api_token)$"}},
		{"unencrypted_regex", "types.plain.yaml", []string{"--unencrypted-regex", "^(int|nested)$"}},
		{"encrypted_suffix", "types.plain.yaml", []string{"--encrypted-suffix", "_plain"}},
		{"unencrypted_suffix", "types.plain.yaml", []string{"--unencrypted-suffix", "_plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"encrypt", "--age", recipient, "--input-type", "yaml", "--output-type", "yaml"}, tc.flags...)
			cmd := exec.Command(bin, append(args, filepath.Join("testdata", tc.plain))...)
			cmd.Env = append(os.Environ(), "SOPS_AGE_KEY_FILE=testdata/key.txt")
			enc, err := cmd.Output()
			if err != nil {
				t.Fatalf("sops encrypt: %v", err)
			}
			got, err := Decrypt(enc, ids)
			if err != nil {
				t.Fatalf("%v\n%s", err, enc)
			}
			if diff := cmp.Diff(decode(t, read(t, tc.plain)), decode(t, got)); diff != "" {
				t.Errorf("(-plain +decrypted):\n%s", diff)
			}
			// And what sops refuses, labgate refuses.
			tampered := strings.Replace(string(enc), `lastmodified: "2`, `lastmodified: "1`, 1)
			if _, err := Decrypt([]byte(tampered), ids); err == nil {
				t.Error("a tampered file decrypted")
			}
		})
	}
}

// FuzzDecrypt: whatever the file, Decrypt returns an error or a result, never panics.
func FuzzDecrypt(f *testing.F) {
	for _, name := range []string{"lab.enc.yaml", "types.enc.yaml", "types-maconly.enc.yaml", "tampered-swapped.enc.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ids, err := Identities(func(string) (string, bool) { return "", false }, filepath.Join("testdata", "key.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Decrypt(data, ids)
		if err == nil && Encrypted(out) {
			t.Errorf("the output still has sops metadata")
		}
	})
}

func TestSecretFilesBesideTheConfig(t *testing.T) {
	ids := identities(t, "key.txt")
	want := string(read(t, "token.txt"))
	for _, name := range []string{"token.sops.yaml", "token.sops.json"} {
		got, err := DecryptData(read(t, name), ids)
		if err != nil || string(got) != want {
			t.Errorf("DecryptData(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := DecryptData(read(t, "tampered-token.sops.yaml"), ids); err == nil || !strings.Contains(err.Error(), "cannot decrypt the MAC") {
		t.Errorf("tampered: %v", err)
	}
	if _, err := DecryptData(read(t, "lab.enc.yaml"), ids); err == nil || !strings.Contains(err.Error(), "not a file sops encrypted as binary") {
		t.Errorf("a whole config as a secret file: %v", err)
	}
	if _, err := Decrypt(read(t, "token.sops.json"), ids); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("Decrypt of JSON: %v", err)
	}
	asked := 0
	read := SecretFile(func() ([]age.Identity, error) { asked++; return ids, nil })
	if b, err := read("testdata/token.txt"); err != nil || string(b) != want || asked != 0 {
		t.Errorf("a plain secret file: %q, %v (keys asked %d times)", b, err, asked)
	}
	if b, err := read("testdata/token.sops.json"); err != nil || string(b) != want {
		t.Errorf("an encrypted secret file: %q, %v", b, err)
	}
}

// WithoutMetadata leaves every value where it was (ENC[…] included) and
// blanks only the sops block, keeping the line count.
func TestWithoutMetadata(t *testing.T) {
	enc := read(t, "lab.enc.yaml")
	got, err := WithoutMetadata(enc)
	if err != nil {
		t.Fatal(err)
	}
	if Encrypted(got) || bytes.Contains(got, []byte("sops:")) {
		t.Errorf("the sops block is still there:\n%s", got)
	}
	encLines, gotLines := strings.Split(string(enc), "\n"), strings.Split(string(got), "\n")
	if len(encLines) != len(gotLines) {
		t.Fatalf("%d lines, want %d", len(gotLines), len(encLines))
	}
	for i, l := range gotLines {
		if l != "" && l != encLines[i] {
			t.Errorf("line %d changed: %q, was %q", i+1, l, encLines[i])
		}
	}
	if !bytes.Contains(got, []byte("api_token: ENC[")) {
		t.Error("an encrypted value was dropped")
	}
	if _, err := WithoutMetadata(read(t, "lab.plain.yaml")); err == nil {
		t.Error("a file without sops metadata was accepted")
	}
}
