package gitops

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labgate/labgate/internal/statefile/damage"
	"github.com/labgate/labgate/internal/testgit"
)

// The git state in state_dir damaged by a power loss: the lab still
// serves its last revision without the forge, never a damaged copy of it,
// and every damaged file is kept aside.
func TestResumeDamagedState(t *testing.T) {
	const lab = "version: 1\nservices:\n  - { name: vault, host: vault, backend: http://10.0.0.8 }\n  - { name: wiki, host: wiki, backend: http://10.0.0.9 }\n"
	f := testgit.New(t)
	good := f.Commit("first", map[string]string{"lab.yaml": lab})
	f.Push()
	seed := t.TempDir()
	if err := newSyncer(t, f, &recorder{}, nil, seed).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	forge := f.Bare

	for _, tc := range []struct {
		file     string // damaged, in the syncer's directory
		forge    bool   // reachable
		resumed  bool
		synced   bool
		asideDir bool // the damaged path moved aside is a directory
		// tolerated: go-git may read the damaged file well enough (HEAD of
		// a bare clone is not used; a half config still names origin),
		// and then nothing is moved.
		tolerated bool
	}{
		{file: "rev/" + good + "/lab.yaml", resumed: true, asideDir: true},
		{file: "deployed", resumed: true},
		{file: "repo.git/config", forge: true, resumed: true, synced: true, asideDir: true, tolerated: true},
		{file: "repo.git/HEAD", forge: true, resumed: true, synced: true, asideDir: true, tolerated: true},
		{file: "repo.git/refs/remotes/origin/main", forge: true, resumed: true, synced: true, asideDir: true, tolerated: true},
	} {
		orig, err := os.ReadFile(filepath.Join(seed, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		for how, data := range damage.File(orig) {
			t.Run(tc.file+"/"+how, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.CopyFS(dir, os.DirFS(seed)); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, filepath.FromSlash(tc.file))
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if !tc.forge {
					f.Bare = filepath.Join(t.TempDir(), "gone.git")
					defer func() { f.Bare = forge }()
				}
				r := &recorder{}
				s := newSyncer(t, f, r, nil, dir)
				if got := s.Resume(context.Background()); got != tc.resumed {
					t.Fatalf("Resume = %v, want %v", got, tc.resumed)
				}
				if r.data[good] != lab {
					t.Errorf("applied %q, want the revision's file as in git", r.data[good])
				}
				if err := s.Sync(context.Background()); (err == nil) != tc.synced {
					t.Errorf("Sync: %v", err)
				}
				if s.Status().Deployed != good {
					t.Errorf("deployed %q", s.Status().Deployed)
				}
				asides := s.Damaged()
				if len(asides) == 0 && tc.tolerated {
					return
				}
				if len(asides) != 1 {
					t.Fatalf("moved aside: %v, want one", asides)
				}
				kept := asides[0]
				if tc.asideDir {
					top := strings.SplitN(tc.file, "/", 2)[0]
					if top == "rev" {
						top = "rev/" + good
					}
					kept = filepath.Join(asides[0], strings.TrimPrefix(tc.file, top+"/"))
					if !strings.HasPrefix(asides[0], filepath.Join(dir, filepath.FromSlash(top))+".damaged-") {
						t.Errorf("moved %s aside, want %s", asides[0], top)
					}
				}
				if b, err := os.ReadFile(kept); err != nil || !bytes.Equal(b, data) {
					t.Errorf("the damaged copy is not kept as it was at %s: %v", kept, err)
				}
				if b, _ := os.ReadFile(filepath.Join(dir, "deployed")); strings.TrimSpace(string(b)) != good {
					t.Errorf("deployed holds %q", b)
				}
				// A new revision prunes the old ones, never the copy aside.
				s.prune("none")
				if _, err := os.Stat(asides[0]); err != nil {
					t.Errorf("the copy aside was pruned: %v", err)
				}
			})
		}
	}
}

// A clone labgate may not read (state_dir restored as root) is not
// damaged: it is not moved aside, and opening it fails with the reason.
func TestUnreadableCloneKept(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"lab.yaml": "version: 1\n"})
	f.Push()
	seed := t.TempDir()
	if err := newSyncer(t, f, &recorder{}, nil, seed).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"config", "refs/remotes/origin/main"} {
		t.Run(file, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "git")
			if err := os.CopyFS(dir, os.DirFS(seed)); err != nil {
				t.Fatal(err)
			}
			s := newSyncer(t, f, &recorder{}, nil, dir)
			var err error
			damage.Unreadable(t, dir, filepath.Join(dir, "repo.git", filepath.FromSlash(file)), func() { err = s.open() })
			if err == nil || !errors.Is(err, fs.ErrPermission) {
				t.Errorf("open: %v, want a permission error", err)
			}
			if got := s.Damaged(); len(got) != 0 {
				t.Errorf("moved aside: %v", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "repo.git", "config")); err != nil {
				t.Errorf("the clone is not where it was: %v", err)
			}
		})
	}
}
