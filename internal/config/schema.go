package config

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// durationPattern matches what time.ParseDuration accepts, without a sign.
const durationPattern = `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// Schema returns the JSON Schema (draft 2020-12) of the file, for editors and
// linters. It is built from the same shapes and comments as the parser, and
// is the same bytes on every call. The schema checks shapes, keys, kinds and
// enums; Parse checks everything else (addresses, names, references).
func Schema() []byte {
	s := obj{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"title", "labgate configuration"},
		{"description", "The one file that drives labgate: `labgate serve`, `labgate relay`, `labgate render`."},
	}
	s = append(s, objectSchema(fileType)...)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		panic("config: schema: " + err.Error()) // only strings, numbers, bools and lists
	}
	return b.Bytes()
}

// marshal is json.Marshal without escaping <, > and & (descriptions are not HTML).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// obj is a JSON object that keeps its keys in order.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshal(e.k)
		v, err := marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func objectSchema(t reflect.Type) obj {
	var props obj
	var required []string
	var allOf []any
	for _, f := range fieldsOf(t) {
		ft := t.Field(f.index).Type
		p := obj{{"description", docOf(t, f)}}
		p = append(p, typeSchema(ft)...)
		if f.enum != nil {
			p = append(p, kv{"enum", f.enum})
		}
		if f.def != "" {
			p = append(p, kv{"default", typedValue(ft, f.def)})
		}
		if f.example != "" {
			p = append(p, kv{"examples", []any{typedValue(ft, f.example)}})
		}
		props = append(props, kv{f.key, p})
		if f.secret {
			props = append(props, kv{f.key + "_file", obj{
				{"description", "A file holding `" + f.key + "` (a relative path is taken from the directory of this file)."},
				{"type", "string"},
			}})
			allOf = append(allOf, obj{{"not", obj{{"required", []string{f.key, f.key + "_file"}}}}})
			if f.required {
				allOf = append(allOf, obj{{"anyOf", []any{
					obj{{"required", []string{f.key}}},
					obj{{"required", []string{f.key + "_file"}}},
				}}})
			}
		} else if f.required {
			required = append(required, f.key)
		}
	}
	s := obj{{"type", "object"}, {"properties", props}}
	if required != nil {
		s = append(s, kv{"required", required})
	}
	if allOf != nil {
		s = append(s, kv{"allOf", allOf})
	}
	return append(s, kv{"additionalProperties", false})
}

func typeSchema(t reflect.Type) obj {
	if st, ok := objectType(t); ok {
		return objectSchema(st)
	}
	switch {
	case t == durationType:
		// An unquoted 0 is read as a number.
		return obj{{"anyOf", []any{obj{{"type", "string"}, {"pattern", durationPattern}}, obj{{"const", 0}}}}}
	case t.Kind() == reflect.String:
		return obj{{"type", "string"}}
	case t.Kind() == reflect.Int:
		return obj{{"type", "integer"}}
	case t.Kind() == reflect.Bool:
		return obj{{"type", "boolean"}}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		// One string stands for a list of one.
		return obj{{"type", []string{"string", "array"}}, {"items", obj{{"type", "string"}}}}
	case t.Kind() == reflect.Slice:
		return obj{{"type", "array"}, {"items", typeSchema(t.Elem())}}
	case t.Kind() == reflect.Map:
		return obj{{"type", "object"}, {"additionalProperties", typeSchema(t.Elem())}}
	}
	panic("config: schema: unsupported field type " + t.String())
}
