package config

//go:generate go run gen_docs.go

import (
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The JSON Schema and the reference are both built by reflection over the
// file shapes, from their tags and from fieldDocs (zz_fielddocs.go, generated
// from the comments of file.go).

var fileType = reflect.TypeOf(file{})

// docOf is the documentation of field f of struct type t, written for users:
// a comment that starts with the Go field name starts with the key instead.
func docOf(t reflect.Type, f field) string {
	doc := fieldDocs[t.Name()+"."+f.name]
	if rest, ok := strings.CutPrefix(doc, f.name); ok && (rest == "" || strings.IndexAny(rest[:1], " ,.:;") == 0) {
		doc = "`" + f.key + "`" + rest
	}
	return doc
}

// objectType is the struct type of t if t is a struct or a pointer to one.
func objectType(t reflect.Type) (reflect.Type, bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t, t.Kind() == reflect.Struct && t != durationType
}

// typedValue converts a default or example tag to the JSON value it stands for.
func typedValue(t reflect.Type, s string) any {
	switch {
	case t == durationType:
		return s
	case t.Kind() == reflect.Bool:
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	case t.Kind() == reflect.Int:
		if i, err := strconv.Atoi(s); err == nil {
			return i
		}
	case t.Kind() == reflect.Slice && strings.HasPrefix(s, "["):
		var l []string
		if err := yaml.Unmarshal([]byte(s), &l); err == nil {
			return l
		}
	}
	return s
}
