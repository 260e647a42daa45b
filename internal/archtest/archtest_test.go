// Package archtest holds the import rules of labgate's packages as a test:
// dependencies point one way, from cli and daemon (the wiring) to the domain
// packages, and config imports nothing of labgate's.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/labgate/labgate/"

// allowed lists, for each package, the labgate packages its non-test files may
// import. A package missing here may import only config.
var allowed = map[string][]string{
	"cmd/labgate":         {"internal/cli"},
	"internal/cli":        {"internal/config", "internal/daemon", "internal/dns", "internal/relay", "internal/sops", "internal/render/k8s", "examples"},
	"internal/daemon":     {"internal/config", "internal/certs", "internal/dns", "internal/gitops", "internal/sops", "internal/gateway", "internal/gateway/l4", "internal/listen", "internal/proxyproto", "internal/relay", "internal/speedtest", "internal/tlspeek", "internal/history", "internal/status", "internal/health", "internal/alert", "internal/statefile"},
	"internal/config":     {"internal/config/internal/docgen"},
	"internal/listen":     {"internal/proxyproto"},
	"internal/relay":      {"internal/listen", "internal/proxyproto", "internal/tlspeek"},
	"internal/gateway":    {"internal/config"},
	"internal/health":     {"internal/config"},
	"internal/alert":      {"internal/config", "internal/health", "internal/statefile"},
	"internal/gateway/l4": {"internal/config", "internal/listen", "internal/proxyproto"},
	"internal/certs":      {"internal/statefile"},
	"internal/dns":        {"internal/config", "internal/listen", "internal/statefile"},
	"internal/render/k8s": {"internal/config"},
	"internal/proxyproto": {},
	"internal/speedtest":  {"internal/statefile"},
	"internal/gitops":     {"internal/statefile"},
	"internal/sops":       {},
	"internal/history":    {"internal/statefile"},
	"internal/statefile":  {},
	"bench/status":        {"internal/history", "internal/status"},
	"bench/statefiles":    {"internal/statefile"},
	"internal/status":     {"internal/history"},
	"internal/tlspeek":    {},
	"internal/testpeer":   {},
	"internal/testnet":    {"internal/testpeer"},
	"internal/testacme":   {"internal/testpeer"},
	"internal/testgit":    {},
}

func TestImportRules(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		if strings.Contains(f.Doc.Text(), "+build ignore") || isIgnored(f.Comments) {
			return nil
		}
		ok, known := allowed[rel]
		if !known {
			ok = []string{"internal/config"}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			dep, mine := strings.CutPrefix(p, module)
			if !mine || dep == rel {
				continue
			}
			if !slices.Contains(ok, dep) {
				t.Errorf("%s imports %s: not allowed (see allowed in this test, and STYLE.md point 14)", path, dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isIgnored(groups []*ast.CommentGroup) bool {
	for _, g := range groups {
		for _, c := range g.List {
			if strings.HasPrefix(c.Text, "//go:build ignore") {
				return true
			}
		}
	}
	return false
}
