package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// duration is a time.Duration written as "30s", "5m", "1h30m".
type duration time.Duration

var durationType = reflect.TypeOf(duration(0))

// decoder walks a yaml.Node tree into the file shapes, strictly: every
// problem is collected with its position and field path, none stops the walk.
type decoder struct {
	file    string // for error positions
	dir     string // relative *_file paths are taken from here
	getenv  func(string) (string, bool)
	errs    Errors
	pos     map[string]position // field path -> where its value starts
	secrets map[string]bool     // field paths holding secrets (never quoted)
	// readSecret reads a *_file secret (Options.ReadSecret).
	readSecret func(string) ([]byte, error)
	// unreadSecrets takes secrets as set without resolving them (Options.UnreadSecrets).
	unreadSecrets bool
}

type position struct{ line, col int }

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	e := Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// decode fills v (addressable) from n, applying defaults from tags.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n != nil {
		d.pos[path] = position{n.Line, n.Column}
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
	}
	if isNull(n) {
		return // an explicit null is the same as absent
	}
	switch {
	case v.Type() == durationType:
		d.scalar(n, v, path, "a duration such as 30s or 5m", func(s string) error {
			dur, err := time.ParseDuration(s)
			if err != nil || dur < 0 {
				return fmt.Errorf("invalid")
			}
			v.SetInt(int64(dur))
			return nil
		})
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	case v.Kind() == reflect.Map:
		d.dict(n, v, path)
	case v.Kind() == reflect.String:
		d.scalar(n, v, path, "a string", func(s string) error { v.SetString(s); return nil })
	case v.Kind() == reflect.Int:
		d.scalar(n, v, path, "a whole number", func(s string) error {
			i, err := strconv.Atoi(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(i))
			return nil
		})
	case v.Kind() == reflect.Bool:
		d.scalar(n, v, path, "true or false", func(s string) error {
			switch s {
			case "true":
				v.SetBool(true)
			case "false":
				v.SetBool(false)
			default:
				return fmt.Errorf("invalid")
			}
			return nil
		})
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

// isNull reports whether n is an explicit null (~, null or nothing), through aliases.
func isNull(n *yaml.Node) bool {
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path, want string, set func(string) error) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "want %s, not %s", want, kindName(n))
		return
	}
	s, ok := d.expand(n, path)
	if !ok {
		return
	}
	if err := set(s); err != nil {
		if d.secrets[path] {
			d.errorf(n, path, "want %s", want)
		} else {
			d.errorf(n, path, "want %s, not %q", want, s)
		}
	}
}

// expand resolves ${VAR} references; "$$" is a literal "$".
func (d *decoder) expand(n *yaml.Node, path string) (string, bool) {
	s := n.Value
	if !strings.Contains(s, "$") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				d.errorf(n, path, "unterminated ${ (write $$ for a literal $)")
				return "", false
			}
			name := s[i+2 : i+end]
			if !validEnvName(name) {
				d.errorf(n, path, "invalid environment variable name %q in ${...}", name)
				return "", false
			}
			val, ok := d.getenv(name)
			if !ok {
				d.errorf(n, path, "environment variable %s is not set", name)
				return "", false
			}
			b.WriteString(val)
			i += end
			continue
		}
		b.WriteByte('$')
	}
	return b.String(), true
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	elem := v.Type().Elem()
	if n.Kind == yaml.ScalarNode && elem.Kind() == reflect.String {
		// One value where a list is expected: `hosts: vault` means [vault].
		s := reflect.MakeSlice(v.Type(), 1, 1)
		d.decode(n, s.Index(0), path+"[0]")
		v.Set(s)
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want a list, not %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) dict(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of names, not %s", kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := path + "." + k.Value
		if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.errorf(k, p, "%q is defined twice", k.Value)
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, e, p)
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
	v.Set(m)
}

// mapping decodes a struct: known keys into fields, name_file into secrets,
// defaults for what is absent, and an error for every unknown key.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	nullAt := map[string]*yaml.Node{} // keys written with a null value
	if n != nil {
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping with keys %s, not %s", keyList(fields), kindName(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			f, ok := fields.byKey(key)
			isFile := false
			if !ok && strings.HasSuffix(key, "_file") {
				if sf, ok2 := fields.byKey(strings.TrimSuffix(key, "_file")); ok2 && sf.secret {
					f, ok, isFile = sf, true, true
				}
			}
			p := join(path, key)
			if !ok {
				d.errorf(k, p, "unknown key %q%s (valid keys: %s)", key, suggest(key, fields.keys()), keyList(fields))
				continue
			}
			if seen[f.key] {
				if f.secret {
					d.errorf(k, p, "set more than once (write only one of %s and %s_file)", f.key, f.key)
				} else {
					d.errorf(k, p, "set more than once")
				}
				continue
			}
			seen[f.key] = true
			fp := join(path, f.key)
			if f.secret {
				d.secrets[fp] = true
			}
			if isNull(val) {
				// An explicit null is the same as absent: defaults apply.
				nullAt[f.key] = k
				continue
			}
			if f.secret && d.unreadSecrets && val.Kind == yaml.ScalarNode {
				v.Field(f.index).SetString(unreadSecret)
				continue
			}
			if isFile {
				d.secretFile(val, v.Field(f.index), p, fp)
				continue
			}
			before := len(d.errs)
			d.decode(val, v.Field(f.index), fp)
			if f.enum != nil && len(d.errs) == before {
				d.checkEnum(val, v.Field(f.index).String(), f, fp)
			}
		}
	}
	for _, f := range fields {
		k, null := nullAt[f.key]
		if seen[f.key] && !null {
			continue
		}
		fp := join(path, f.key)
		switch {
		case f.required:
			at := n
			if null {
				at = k
			}
			d.errorf(at, fp, "missing (required)")
		case f.def != "":
			d.decode(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.def}, v.Field(f.index), fp)
			delete(d.pos, fp)
		case v.Field(f.index).Kind() == reflect.Struct:
			d.mapping(nil, v.Field(f.index), fp)
		}
	}
}

func (d *decoder) checkEnum(n *yaml.Node, s string, f field, path string) {
	for _, e := range f.enum {
		if s == e {
			return
		}
	}
	d.errorf(n, path, "%q is not one of %s%s", s, strings.Join(f.enum, ", "), suggest(s, f.enum))
}

func (d *decoder) secretFile(n *yaml.Node, v reflect.Value, keyPath, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, keyPath, "want a file name, not %s", kindName(n))
		return
	}
	name, ok := d.expand(n, keyPath)
	if !ok {
		return
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(d.dir, name)
	}
	b, err := d.readSecret(name)
	if err != nil {
		d.errorf(n, keyPath, "cannot read secret: %v", d.pathError(err))
		return
	}
	v.SetString(strings.TrimRight(string(b), "\r\n"))
}

// pathError drops the operation from a file error and names the file as
// errors name the config (Options.Name): a file beside it, beside that name.
func (d *decoder) pathError(err error) error {
	pe, ok := err.(*os.PathError)
	if !ok {
		return err
	}
	p := pe.Path
	if rel, err := filepath.Rel(d.dir, p); err == nil && filepath.IsLocal(rel) {
		p = filepath.Join(filepath.Dir(d.file), rel)
	}
	return fmt.Errorf("%s: %v", p, pe.Err)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// field describes one struct field from its tags.
type field struct {
	index    int
	key      string
	def      string
	enum     []string
	secret   bool
	required bool
	example  string
	name     string // the Go field name
}

type fields []field

func (fs fields) byKey(k string) (field, bool) {
	for _, f := range fs {
		if f.key == k {
			return f, true
		}
	}
	return field{}, false
}

func (fs fields) keys() []string {
	var ks []string
	for _, f := range fs {
		ks = append(ks, f.key)
		if f.secret {
			ks = append(ks, f.key+"_file")
		}
	}
	return ks
}

func keyList(fs fields) string { return strings.Join(fs.keys(), ", ") }

func fieldsOf(t reflect.Type) fields {
	var fs fields
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := sf.Tag.Get("yaml")
		if key == "" {
			continue
		}
		f := field{index: i, key: key, name: sf.Name, def: sf.Tag.Get("default"), example: sf.Tag.Get("example")}
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, "|")
		}
		_, f.secret = sf.Tag.Lookup("secret")
		_, f.required = sf.Tag.Lookup("required")
		fs = append(fs, f)
	}
	return fs
}

// suggest returns ` (did you mean "x"?)` for the closest candidate, if close.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := levenshtein(s, c); d < bestD || d == bestD && best == "" && d <= len(s)/3 {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(1, len(s)/3) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// levenshtein is the edit distance between a and b, counting a swap of two
// adjacent letters ("nmae" for "name") as one edit.
func levenshtein(a, b string) int {
	pprev := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pprev[j-2]+1)
			}
		}
		pprev, prev, cur = prev, cur, pprev
	}
	return prev[len(b)]
}

// Error is one problem in a file, at a position, for a field path.
type Error struct {
	File      string
	Line, Col int
	Path      string
	Msg       string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems found in one file, in file order.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Col < es[j].Col
	})
}
