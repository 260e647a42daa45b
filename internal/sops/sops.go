// Package sops decrypts YAML files encrypted by SOPS (github.com/getsops/sops)
// with age keys, exactly as `sops decrypt` does for such files, without
// SOPS's cloud key services.
//
// Each encrypted value is ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]: AES-256-GCM
// under the file's data key, with the value's path of mapping keys, joined by
// ":" and ended with ":", as additional data, so a value moved to another key
// does not decrypt. The data key is age-encrypted for each recipient in the
// `sops:` metadata. The metadata's MAC is SHA-512 over every value in order
// (only the encrypted ones with mac_only_encrypted), encrypted with the data
// key and the lastmodified time as additional data; a file changed after
// encryption fails it. Decrypt refuses a file whose values, MAC or key do not
// check out.
//
// Decrypt returns the same YAML with every encrypted value replaced by its
// plaintext in place and the `sops:` block blanked, so the line and column of
// every value is unchanged and errors about the config point into the file
// the user edits.
package sops

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"filippo.io/age"
	"filippo.io/age/armor"
	"go.yaml.in/yaml/v3"
)

// macOnlyEncryptedInit starts the MAC of files with mac_only_encrypted
// (sops.MACOnlyEncryptedInitialization).
var macOnlyEncryptedInit = []byte{0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0xb, 0xb, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69}

// Encrypted reports whether data is a YAML mapping with SOPS metadata.
func Encrypted(data []byte) bool {
	if !bytes.Contains(data, []byte("sops")) {
		return false
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) != 1 {
		return false
	}
	_, meta := sopsKey(doc.Content[0])
	return meta != nil && meta.Kind == yaml.MappingNode
}

func sopsKey(root *yaml.Node) (int, *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		return -1, nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "sops" {
			return i, root.Content[i+1]
		}
	}
	return -1, nil
}

type ageKey struct {
	Recipient string `yaml:"recipient"`
	Enc       string `yaml:"enc"`
}

type metadata struct {
	Age       []ageKey `yaml:"age"`
	KeyGroups []struct {
		Age []ageKey `yaml:"age"`
	} `yaml:"key_groups"`
	ShamirThreshold         int    `yaml:"shamir_threshold"`
	LastModified            string `yaml:"lastmodified"`
	MAC                     string `yaml:"mac"`
	UnencryptedSuffix       string `yaml:"unencrypted_suffix"`
	EncryptedSuffix         string `yaml:"encrypted_suffix"`
	UnencryptedRegex        string `yaml:"unencrypted_regex"`
	EncryptedRegex          string `yaml:"encrypted_regex"`
	UnencryptedCommentRegex string `yaml:"unencrypted_comment_regex"`
	EncryptedCommentRegex   string `yaml:"encrypted_comment_regex"`
	MACOnlyEncrypted        bool   `yaml:"mac_only_encrypted"`
	Version                 string `yaml:"version"`

	unencryptedRe, encryptedRe *regexp.Regexp
}

// Identities reads the age identities that may decrypt a file, as sops
// does: SOPS_AGE_KEY (the keys themselves), SOPS_AGE_KEY_FILE, then keyFile
// (configured; "" for none), then the user's sops/age/keys.txt. getenv nil
// reads the process environment. It fails only on a key that cannot be
// read; finding none is reported by Decrypt.
func Identities(getenv func(string) (string, bool), keyFile string) ([]age.Identity, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	var ids []age.Identity
	add := func(src string, r io.Reader) error {
		got, err := age.ParseIdentities(r)
		if err != nil {
			return fmt.Errorf("age key in %s: %w", src, err)
		}
		ids = append(ids, got...)
		return nil
	}
	if v, ok := getenv("SOPS_AGE_KEY"); ok && strings.TrimSpace(v) != "" {
		if err := add("SOPS_AGE_KEY", strings.NewReader(v)); err != nil {
			return nil, err
		}
	}
	files := []string{}
	if v, ok := getenv("SOPS_AGE_KEY_FILE"); ok && v != "" {
		files = append(files, v)
	}
	if keyFile != "" {
		files = append(files, keyFile)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("age key file: %w", err)
		}
		if err := add(f, bytes.NewReader(b)); err != nil {
			return nil, err
		}
	}
	if len(ids) == 0 {
		dir, ok := getenv("XDG_CONFIG_HOME")
		if !ok || dir == "" {
			if home, ok := getenv("HOME"); ok && home != "" {
				dir = filepath.Join(home, ".config")
			}
		}
		if dir != "" {
			f := filepath.Join(dir, "sops", "age", "keys.txt")
			if b, err := os.ReadFile(f); err == nil {
				if err := add(f, bytes.NewReader(b)); err != nil {
					return nil, err
				}
			}
		}
	}
	return ids, nil
}

// Decrypt decrypts a SOPS-encrypted YAML file with ids. See the package
// documentation for what it checks and what it returns.
func Decrypt(data []byte, ids []age.Identity) ([]byte, error) {
	w, root, idx, err := open(data, ids)
	if err != nil {
		return nil, err
	}
	if root.Style&yaml.FlowStyle != 0 {
		return nil, errors.New("sops: the file is JSON or flow-style YAML; labgate decrypts YAML files in place (sops encrypt lab.yaml)")
	}
	return w.output(data, root, idx)
}

// Plain returns a config file as it reads in clear: decrypted with the
// identities keys returns (asked for only then) when sops encrypted it,
// else data as it is.
func Plain(data []byte, keys func() ([]age.Identity, error)) ([]byte, error) {
	if !Encrypted(data) {
		return data, nil
	}
	ids, err := keys()
	if err != nil {
		return nil, err
	}
	return Decrypt(data, ids)
}

// DecryptData decrypts a file that sops encrypted as binary (a secret file
// beside the config: `sops encrypt --input-type binary --output-type yaml
// token.txt`, or JSON output) and returns the original bytes.
func DecryptData(data []byte, ids []age.Identity) ([]byte, error) {
	w, root, idx, err := open(data, ids)
	if err != nil {
		return nil, err
	}
	if len(root.Content) != 4 {
		return nil, errors.New("sops: not a file sops encrypted as binary (it has more than data and sops): encrypt secret files with sops encrypt --input-type binary")
	}
	v := root.Content[2-idx+1]
	if root.Content[2-idx].Value != "data" || w.plain[v] == nil {
		return nil, errors.New("sops: not a file sops encrypted as binary (no encrypted data): encrypt secret files with sops encrypt --input-type binary")
	}
	return w.plain[v], nil
}

// open parses the file, unwraps its data key, decrypts every value and
// checks the MAC.
func open(data []byte, ids []age.Identity) (*walker, *yaml.Node, int, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, 0, fmt.Errorf("sops: %w", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, nil, 0, errors.New("sops: only files with one YAML document are supported")
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, 0, errors.New("sops: the file is not a YAML mapping written by sops")
	}
	root := doc.Content[0]
	idx, metaNode := sopsKey(root)
	if metaNode == nil {
		return nil, nil, 0, errors.New("sops: the file has no sops metadata (encrypt it with `sops encrypt -i FILE`)")
	}
	var m metadata
	if err := metaNode.Decode(&m); err != nil {
		return nil, nil, 0, fmt.Errorf("sops: metadata: %w", err)
	}
	if err := m.check(); err != nil {
		return nil, nil, 0, err
	}
	key, err := m.dataKey(ids)
	if err != nil {
		return nil, nil, 0, err
	}

	w := &walker{meta: &m, key: key, hash: sha512.New(), replace: map[*yaml.Node]string{}, plain: map[*yaml.Node][]byte{}}
	if m.MACOnlyEncrypted {
		w.hash.Write(macOnlyEncryptedInit)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if i == idx {
			continue
		}
		if err := w.item(root.Content[i], root.Content[i+1], nil); err != nil {
			return nil, nil, 0, err
		}
	}
	lastModified, err := time.Parse(time.RFC3339, m.LastModified)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sops: metadata lastmodified %q: %w", m.LastModified, err)
	}
	fileMAC, _, err := decryptValue(m.MAC, key, lastModified.Format(time.RFC3339))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sops: cannot decrypt the MAC (the metadata was changed): %w", err)
	}
	// Constant time: how much of a forged MAC matches must not show.
	if sum := fmt.Sprintf("%X", w.hash.Sum(nil)); subtle.ConstantTimeCompare(fileMAC, []byte(sum)) != 1 {
		return nil, nil, 0, errors.New("sops: MAC mismatch: the file was changed after sops encrypted it (edit it with `sops edit`)")
	}
	return w, root, idx, nil
}

func (m *metadata) check() error {
	rules := 0
	for _, r := range []string{m.UnencryptedSuffix, m.EncryptedSuffix, m.UnencryptedRegex, m.EncryptedRegex, m.UnencryptedCommentRegex, m.EncryptedCommentRegex} {
		if r != "" {
			rules++
		}
	}
	switch {
	case m.UnencryptedCommentRegex != "" || m.EncryptedCommentRegex != "":
		return errors.New("sops: encrypted_comment_regex and unencrypted_comment_regex are not supported; use encrypted_regex or the _unencrypted suffix")
	case rules > 1:
		return errors.New("sops: metadata sets more than one of the *_suffix and *_regex rules")
	case rules == 0:
		m.UnencryptedSuffix = "_unencrypted"
	}
	var err error
	if m.UnencryptedRegex != "" {
		if m.unencryptedRe, err = regexp.Compile(m.UnencryptedRegex); err != nil {
			return fmt.Errorf("sops: unencrypted_regex: %w", err)
		}
	}
	if m.EncryptedRegex != "" {
		if m.encryptedRe, err = regexp.Compile(m.EncryptedRegex); err != nil {
			return fmt.Errorf("sops: encrypted_regex: %w", err)
		}
	}
	if m.MAC == "" || m.LastModified == "" {
		return errors.New("sops: the metadata has no mac or lastmodified")
	}
	return nil
}

// dataKey unwraps the data key with the first identity that opens one of
// the file's age stanzas.
func (m *metadata) dataKey(ids []age.Identity) ([]byte, error) {
	keys := m.Age
	switch len(m.KeyGroups) {
	case 0:
	case 1:
		keys = append(keys, m.KeyGroups[0].Age...)
	default:
		return nil, errors.New("sops: files with several key_groups (Shamir secret sharing) are not supported")
	}
	if len(keys) == 0 {
		return nil, errors.New("sops: the file is not encrypted for any age recipient (labgate decrypts age keys only)")
	}
	var recipients []string
	for _, k := range keys {
		recipients = append(recipients, k.Recipient)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("sops: no age key to decrypt the file (for %s): set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY, or git.age_key_file", strings.Join(recipients, ", "))
	}
	var errs []error
	for _, k := range keys {
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(k.Enc)), ids...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key, err := io.ReadAll(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("sops: the data key has %d bytes, want 32", len(key))
		}
		return key, nil
	}
	var noMatch *age.NoIdentityMatchError
	if len(errs) > 0 && errors.As(errs[0], &noMatch) {
		return nil, fmt.Errorf("sops: none of the age keys given opens the file (it is encrypted for %s)", strings.Join(recipients, ", "))
	}
	return nil, fmt.Errorf("sops: cannot decrypt the data key: %w", errors.Join(errs...))
}

// walker goes through the tree as sops does: mapping keys build the path,
// sequences keep their parent's path, nulls are skipped.
type walker struct {
	meta    *metadata
	key     []byte
	hash    hash.Hash
	replace map[*yaml.Node]string // encrypted scalar -> YAML text of its plaintext
	plain   map[*yaml.Node][]byte // encrypted scalar -> its plaintext
}

func (w *walker) item(k, v *yaml.Node, path []string) error {
	var key any
	if err := k.Decode(&key); err != nil {
		return err
	}
	s, ok := key.(string)
	if !ok {
		return fmt.Errorf("sops: line %d: a key that is not a string (%v) is not supported", k.Line, key)
	}
	return w.value(v, append(path[:len(path):len(path)], s))
}

func (w *walker) value(n *yaml.Node, path []string) error {
	switch n.Kind {
	case yaml.AliasNode:
		return w.value(n.Alias, path)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := w.item(n.Content[i], n.Content[i+1], path); err != nil {
				return err
			}
		}
		return nil
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if err := w.value(c, path); err != nil {
				return err
			}
		}
		return nil
	case yaml.ScalarNode:
		return w.scalar(n, path)
	}
	return nil
}

func (w *walker) scalar(n *yaml.Node, path []string) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	if v == nil {
		return nil // sops leaves nulls alone, and out of the MAC
	}
	encrypted := w.meta.shouldBeEncrypted(path)
	var plain []byte
	if encrypted {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("sops: line %d: %s is not encrypted (%v); encrypt the file with sops again", n.Line, strings.Join(path, "."), v)
		}
		if s != "" {
			pt, typ, err := decryptValue(s, w.key, strings.Join(path, ":")+":")
			if err != nil {
				return fmt.Errorf("sops: line %d: %s: %w", n.Line, strings.Join(path, "."), err)
			}
			text, mac, err := typed(pt, typ)
			if err != nil {
				return fmt.Errorf("sops: line %d: %s: %w", n.Line, strings.Join(path, "."), err)
			}
			w.replace[n] = text
			w.plain[n] = pt
			plain = mac
		}
	} else {
		b, err := toBytes(v)
		if err != nil {
			return fmt.Errorf("sops: line %d: %s: %w", n.Line, strings.Join(path, "."), err)
		}
		plain = b
	}
	if !w.meta.MACOnlyEncrypted || encrypted {
		w.hash.Write(plain)
	}
	return nil
}

func (m *metadata) shouldBeEncrypted(path []string) bool {
	encrypted := true
	if m.UnencryptedSuffix != "" {
		for _, p := range path {
			if strings.HasSuffix(p, m.UnencryptedSuffix) {
				encrypted = false
				break
			}
		}
	}
	if m.EncryptedSuffix != "" {
		encrypted = false
		for _, p := range path {
			if strings.HasSuffix(p, m.EncryptedSuffix) {
				encrypted = true
				break
			}
		}
	}
	if m.unencryptedRe != nil {
		for _, p := range path {
			if m.unencryptedRe.MatchString(p) {
				encrypted = false
				break
			}
		}
	}
	if m.encryptedRe != nil {
		encrypted = false
		for _, p := range path {
			if m.encryptedRe.MatchString(p) {
				encrypted = true
				break
			}
		}
	}
	return encrypted
}

// toBytes is sops.ToBytes: how a value enters the MAC.
func toBytes(v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case int:
		return []byte(strconv.Itoa(v)), nil
	case float64:
		return []byte(strconv.FormatFloat(v, 'f', -1, 64)), nil
	case bool:
		if v {
			return []byte("True"), nil
		}
		return []byte("False"), nil
	case []byte:
		return v, nil
	case time.Time:
		return v.MarshalText()
	}
	return nil, fmt.Errorf("a value of type %T is not supported by sops", v)
}

var encRe = regexp.MustCompile(`^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`)

// decryptValue opens one ENC[…] value and returns its plaintext and type.
func decryptValue(s string, key []byte, additional string) ([]byte, string, error) {
	m := encRe.FindStringSubmatch(s)
	if m == nil {
		return nil, "", errors.New("not a sops-encrypted value (ENC[AES256_GCM,…])")
	}
	var parts [3][]byte
	for i := range parts {
		b, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil {
			return nil, "", fmt.Errorf("malformed encrypted value: %w", err)
		}
		parts[i] = b
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, "", err
	}
	if len(parts[1]) == 0 {
		return nil, "", errors.New("malformed encrypted value: empty iv")
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(parts[1]))
	if err != nil {
		return nil, "", err
	}
	pt, err := gcm.Open(nil, parts[1], append(parts[0], parts[2]...), []byte(additional))
	if err != nil {
		return nil, "", errors.New("the encrypted value does not decrypt: it was changed, moved to another key or encrypted with another data key")
	}
	return pt, m[4], nil
}

// typed returns a decrypted value as YAML text for the output and as bytes
// for the MAC, by its sops type.
func typed(pt []byte, typ string) (text string, mac []byte, err error) {
	s := string(pt)
	switch typ {
	case "str", "bytes", "comment":
		if !utf8.Valid(pt) {
			return "", nil, errors.New("the value is not UTF-8 text")
		}
		return quote(s), pt, nil
	case "int":
		i, err := strconv.Atoi(s)
		if err != nil {
			return "", nil, fmt.Errorf("bad int %q", s)
		}
		return strconv.Itoa(i), []byte(strconv.Itoa(i)), nil
	case "float":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return "", nil, fmt.Errorf("bad float %q", s)
		}
		b := strconv.FormatFloat(f, 'f', -1, 64)
		return b, []byte(b), nil
	case "bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return "", nil, fmt.Errorf("bad bool %q", s)
		}
		mac, _ := toBytes(b)
		return strconv.FormatBool(b), mac, nil
	case "time":
		var t time.Time
		if err := t.UnmarshalText(pt); err != nil {
			return "", nil, fmt.Errorf("bad time %q", s)
		}
		mac, _ := t.MarshalText()
		return s, mac, nil
	}
	return "", nil, fmt.Errorf("unknown sops type %q", typ)
}

// quote writes s as a YAML double-quoted scalar on one line.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || r == 0x85 || r == 0xa0 || r == 0x2028 || r == 0x2029 || r == 0xfeff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// output replaces each encrypted scalar in place and blanks the sops block.
func (w *walker) output(data []byte, root *yaml.Node, idx int) ([]byte, error) {
	lines := strings.SplitAfter(string(data), "\n")
	type edit struct {
		col  int // 0-based, in runes
		old  string
		text string
	}
	edits := map[int][]edit{} // 0-based line -> edits
	for n, text := range w.replace {
		old := n.Value
		switch n.Style {
		case 0:
		case yaml.DoubleQuotedStyle:
			old = `"` + old + `"`
		case yaml.SingleQuotedStyle:
			old = `'` + old + `'`
		default:
			return nil, fmt.Errorf("sops: line %d: an encrypted value in %v style cannot be placed; write the file with sops", n.Line, n.Style)
		}
		edits[n.Line-1] = append(edits[n.Line-1], edit{n.Column - 1, old, text})
	}
	for ln, es := range edits {
		if ln >= len(lines) {
			return nil, errors.New("sops: value position out of the file")
		}
		runes := []rune(lines[ln])
		// Right to left, so earlier columns stay valid.
		for i := 0; i < len(es); i++ {
			for j := i + 1; j < len(es); j++ {
				if es[j].col > es[i].col {
					es[i], es[j] = es[j], es[i]
				}
			}
		}
		for _, e := range es {
			old := []rune(e.old)
			if e.col < 0 || e.col+len(old) > len(runes) || string(runes[e.col:e.col+len(old)]) != e.old {
				return nil, fmt.Errorf("sops: line %d: the encrypted value is not where the YAML parser saw it; write the file with sops", ln+1)
			}
			runes = append(runes[:e.col], append([]rune(e.text), runes[e.col+len(old):]...)...)
		}
		lines[ln] = string(runes)
	}
	blankMetadata(lines, root, idx)
	return []byte(strings.Join(lines, "")), nil
}

// WithoutMetadata returns a SOPS-encrypted YAML file with its sops block
// blanked and nothing decrypted: every other value stays as it is (ENC[…]
// where sops encrypted it), on the same line and column. It is for readers
// that use none of the encrypted values and hold no key (`labgate render`,
// `labgate relay`); nothing is checked, not even the MAC.
func WithoutMetadata(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("sops: %w", err)
	}
	if len(doc.Content) != 1 {
		return nil, errors.New("sops: the file is not a YAML mapping written by sops")
	}
	root := doc.Content[0]
	idx, meta := sopsKey(root)
	if meta == nil {
		return nil, errors.New("sops: the file has no sops metadata")
	}
	lines := strings.SplitAfter(string(data), "\n")
	blankMetadata(lines, root, idx)
	return []byte(strings.Join(lines, "")), nil
}

// blankMetadata empties the lines of the sops block: from its key to the
// next top-level key (or its head comment).
func blankMetadata(lines []string, root *yaml.Node, idx int) {
	start, end := root.Content[idx].Line-1, len(lines)
	if idx+2 < len(root.Content) {
		end = root.Content[idx+2].Line - 1
		if kc := root.Content[idx+2]; kc.HeadComment != "" {
			end -= strings.Count(kc.HeadComment, "\n") + 1
		}
	}
	for i := start; i < end && i < len(lines); i++ {
		if strings.HasSuffix(lines[i], "\n") {
			lines[i] = "\n"
		} else {
			lines[i] = ""
		}
	}
}

// SecretFile returns a reader for the files of *_file secrets
// (config.Options.ReadSecret): a file sops encrypted as binary is decrypted
// with the identities keys returns (asked for only then); any other file is
// returned as it is.
func SecretFile(keys func() ([]age.Identity, error)) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		b, err := os.ReadFile(name)
		if err != nil || !Encrypted(b) {
			return b, err
		}
		ids, err := keys()
		if err != nil {
			return nil, err
		}
		return DecryptData(b, ids)
	}
}
