package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// designExample is the example file of DESIGN.md, also a test fixture.
//
//go:embed testdata/design.yaml
var designExample []byte

const referenceIntro = `# Configuration reference

<!-- Generated from internal/config/file.go: run ` + "`go run ./cmd/labgate docs config > docs/config.md`" + `. Do not edit. -->

labgate is driven by one YAML file, kept in git: ` + "`labgate serve`" + ` on the gateway,
` + "`labgate relay`" + ` on the VPS and ` + "`labgate render k8s`" + ` all read the same file.
` + "`labgate schema`" + ` prints a JSON Schema of it for editors.

How the file is read:

- Unknown keys are errors, and every problem is reported at once as
  ` + "`lab.yaml:14:7: services[2].backend: unsupported scheme \"htp\" (want http, https)`" + `.
- A key written with no value (` + "`key:`" + ` or ` + "`key: ~`" + `) is the same as a key left out: its default applies.
- A list of strings may be written as one string: ` + "`hosts: vault`" + ` is ` + "`hosts: [vault]`" + `.
- A duration is a number with a unit: ` + "`500ms`, `30s`, `5m`, `1h30m`" + `.
- ` + "`${VAR}`" + ` anywhere in a value is replaced by the environment variable VAR; an unset variable is an
  error and ` + "`$$`" + ` is a literal ` + "`$`" + `. Inside ` + "`{ }` or `[ ]`" + `, quote it: ` + "`{ token: \"${TOKEN}\" }`" + `.
- Secrets never live in the file and are never printed. Write a secret key as ` + "`${VAR}`" + `, or write
  ` + "`key_file: path`" + ` instead of ` + "`key`" + `: the content of the file, without its trailing newline, is the secret.
- Relative paths are taken from the directory of the file.
- A host name without a dot gets ` + "`domain`" + ` appended: ` + "`vault`" + ` becomes ` + "`vault.example.org`" + `.
`

// Reference returns the configuration reference in Markdown (docs/config.md):
// the rules of the file, an example, and one table per object of the file,
// built from the same shapes and comments as the parser.
func Reference() []byte {
	var b bytes.Buffer
	b.WriteString(referenceIntro)
	b.WriteString("\n## Example\n\n```yaml\n")
	b.Write(designExample)
	b.WriteString("```\n")
	var sections []section
	collectSections(&sections, "Top level", "", fileType)
	for _, s := range sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		if s.intro != "" {
			fmt.Fprintf(&b, "%s\n\n", s.intro)
		}
		b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
		for _, r := range s.rows {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.key, r.typ, r.def, cell(r.desc))
		}
	}
	return b.Bytes()
}

type section struct {
	title string // the Markdown heading
	intro string
	rows  []row
}

type row struct{ key, typ, def, desc string }

// collectSections appends the section of struct type t, at path in the file,
// then the sections of the objects below it, depth first in file order.
func collectSections(out *[]section, title, path string, t reflect.Type) {
	i := len(*out)
	*out = append(*out, section{title: title})
	type child struct {
		path string
		t    reflect.Type
	}
	var children []child
	var rows []row
	for _, f := range fieldsOf(t) {
		ft := t.Field(f.index).Type
		r := row{key: f.key, def: defaultCell(f)}
		cpath := join(path, f.key)
		var typ string
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.String:
			cpath += "[]"
			typ = "list of objects"
			ft = ft.Elem()
		case ft.Kind() == reflect.Map:
			cpath += ".<name>"
			typ = "map of names to objects"
			ft = ft.Elem()
		default:
			typ = "object"
		}
		if st, ok := objectType(ft); ok {
			r.typ = fmt.Sprintf("[%s](#%s)", typ, anchor(heading(cpath)))
			children = append(children, child{cpath, st})
		} else {
			r.typ = scalarTypeName(ft)
		}
		var desc []string
		if f.required {
			desc = append(desc, "**Required.**")
		}
		desc = append(desc, docOf(t, f))
		if f.enum != nil {
			desc = append(desc, "One of: `"+strings.Join(f.enum, "`, `")+"`.")
		}
		if f.secret {
			desc = append(desc, "Secret: also `"+f.key+"_file`.")
		}
		if f.example != "" {
			desc = append(desc, "Example: `"+f.example+"`.")
		}
		r.desc = strings.Join(desc, " ")
		rows = append(rows, r)
	}
	(*out)[i].rows = rows
	if path != "" {
		(*out)[i].title = heading(path)
	}
	for _, c := range children {
		collectSections(out, "", c.path, c.t)
	}
}

func heading(path string) string { return "`" + path + "`" }

func scalarTypeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Int:
		return "integer"
	case t.Kind() == reflect.Bool:
		return "bool"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "list of strings"
	}
	panic("config: reference: unsupported field type " + t.String())
}

func defaultCell(f field) string {
	if f.def == "" {
		return ""
	}
	return "`" + f.def + "`"
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// anchor is the id GitHub gives a Markdown heading.
func anchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
