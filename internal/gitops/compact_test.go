package gitops

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/labgate/labgate/internal/testgit"
)

// TestCloneStaysCompact pushes many revisions, rewrites history twice
// (force-pushes): the clone holds at most packLimit+1 packs throughout, the
// history the branch and the serving revision no longer reach is dropped
// by a repack, and the revision that serves is kept even when the branch
// no longer reaches it (its successors refused): a restart may need it.
func TestCloneStaysCompact(t *testing.T) {
	f := testgit.New(t)
	r := &recorder{}
	dir := t.TempDir()
	s := newSyncer(t, f, r, nil, dir)
	ctx := context.Background()
	push := func(what string, n int, force bool) (first string) {
		t.Helper()
		for i := range n {
			c := f.Commit(fmt.Sprint(what, i), map[string]string{"lab.yaml": fmt.Sprintf("%s %d\n", what, i)})
			if i == 0 {
				first = c
			}
			if force {
				f.Push("--force")
			} else {
				f.Push()
			}
			_ = s.Sync(ctx) // an error: refused ("bad")
			m, _ := filepath.Glob(filepath.Join(dir, "repo.git", "objects", "pack", "*.pack"))
			if len(m) > packLimit+1 {
				t.Fatalf("the clone holds %d packs, want at most %d", len(m), packLimit+1)
			}
		}
		return first
	}
	has := func(commit string) bool {
		t.Helper()
		c, err := s.commit(plumbing.NewHash(commit))
		return err == nil && c != nil
	}
	base := f.Commit("base", map[string]string{"lab.yaml": "n: base\n"})
	old := push("n: old", 2*packLimit, false)

	f.Git(f.Work, "reset", "-q", "--hard", base)
	push("n: new", packLimit+1, true)
	if has(old) {
		t.Errorf("history a force-push dropped is still in the clone after a repack")
	}
	deployed := r.last()

	f.Git(f.Work, "reset", "-q", "--hard", base)
	push("bad", packLimit+1, true)
	if r.last() != deployed {
		t.Fatalf("serving %s, want %s still (every new head was refused)", r.last(), deployed)
	}
	if !has(deployed) {
		t.Errorf("the serving revision is gone from the clone after a repack")
	}
}
