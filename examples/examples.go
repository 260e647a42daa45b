// Package examples holds labgate's example files; the quickstart is embedded
// in the binary so `labgate serve` runs with no file at all.
package examples

import _ "embed"

// Quickstart is examples/quickstart.yaml.
//
//go:embed quickstart.yaml
var Quickstart []byte
