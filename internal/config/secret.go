package config

import "log/slog"

// Secret holds a credential resolved from ${VAR} or a *_file reference. Every
// way of printing it (fmt verbs, JSON, YAML, slog) shows a redaction marker;
// only Value returns the secret itself. Compare secrets with Value, not ==.
type Secret struct {
	// value is behind a pointer because fmt prints nested pointers as
	// addresses: when a verb does not fit a value (%s or %d of a struct that
	// holds a secret two pointers down), fmt prints it by reflection without
	// calling String or GoString, and a string field would show.
	value *string
}

// NewSecret wraps a credential.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{value: &v}
}

// Redacted is what a set secret prints as.
const Redacted = "[redacted]"

// Value returns the secret for the one place that uses it.
func (s Secret) Value() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s.value != nil }

func (s Secret) String() string {
	if s.value == nil {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// MarshalText redacts in JSON, YAML and every text encoding.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue redacts in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
