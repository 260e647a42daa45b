//go:build ignore

// gen_docs writes zz_fielddocs.go from the field comments of file.go.
// Run it with `go generate ./internal/config`.
package main

import (
	"fmt"
	"os"

	"github.com/labgate/labgate/internal/config/internal/docgen"
)

func main() {
	src, err := os.ReadFile("file.go")
	if err == nil {
		var out []byte
		if out, err = docgen.Generate(src); err == nil {
			err = os.WriteFile("zz_fielddocs.go", out, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen_docs:", err)
		os.Exit(1)
	}
}
