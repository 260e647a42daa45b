package gitops

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/testgit"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TestNamesThatLeaveTheRevisionAreNotWritten: a crafted tree (git itself
// refuses to make one, a hostile forge need not) with entries named "..",
// "../x" and "a/../../x" writes nothing outside the revision's directory.
func TestNamesThatLeaveTheRevisionAreNotWritten(t *testing.T) {
	f := testgit.New(t)
	f.Commit("first", map[string]string{"lab.yaml": "one\n"})
	f.Push()
	repo, err := git.PlainOpen(f.Bare)
	if err != nil {
		t.Fatal(err)
	}
	st := repo.Storer
	put := func(o interface {
		Encode(plumbing.EncodedObject) error
	}, typ plumbing.ObjectType) plumbing.Hash {
		t.Helper()
		eo := st.NewEncodedObject()
		eo.SetType(typ)
		if err := o.Encode(eo); err != nil {
			t.Fatal(err)
		}
		h, err := st.SetEncodedObject(eo)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	blob := func(s string) plumbing.Hash {
		eo := st.NewEncodedObject()
		eo.SetType(plumbing.BlobObject)
		w, _ := eo.Writer()
		w.Write([]byte(s))
		w.Close()
		h, err := st.SetEncodedObject(eo)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	evil := blob("escaped\n")
	inner := put(&object.Tree{Entries: []object.TreeEntry{{Name: "escaped-dir.txt", Mode: filemode.Regular, Hash: evil}}}, plumbing.TreeObject)
	root := put(&object.Tree{Entries: []object.TreeEntry{
		{Name: "..", Mode: filemode.Dir, Hash: inner},
		{Name: "../escaped-name.txt", Mode: filemode.Regular, Hash: evil},
		{Name: "a/../../escaped-deep.txt", Mode: filemode.Regular, Hash: evil},
		{Name: "lab.yaml", Mode: filemode.Regular, Hash: blob("two\n")},
		{Name: "zz..", Mode: filemode.Regular, Hash: evil},
	}}, plumbing.TreeObject)
	head, _ := repo.Head()
	sig := object.Signature{Name: "x", Email: "x@example.org", When: time.Now()}
	c := put(&object.Commit{Author: sig, Committer: sig, Message: "crafted", TreeHash: root, ParentHashes: []plumbing.Hash{head.Hash()}}, plumbing.CommitObject)
	if err := st.SetReference(plumbing.NewHashReference("refs/heads/main", c)); err != nil {
		t.Fatal(err)
	}

	r := &recorder{}
	dir := t.TempDir()
	s := New(Options{URL: f.Bare, Branch: "main", Path: "lab.yaml", Dir: dir, Apply: r.apply})
	// go-git refuses such a tree when walking it: the revision is refused.
	// What matters is that nothing is written outside.
	if err := s.Sync(context.Background()); err != nil {
		t.Logf("Sync = %v", err)
	} else if r.data[c.String()] != "two\n" {
		t.Errorf("the crafted revision was taken with the wrong file: %v", r.data)
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(filepath.Join(dir, "rev", c.String()), p); !info.IsDir() && filepath.Base(p)[:min(7, len(filepath.Base(p)))] == "escaped" && !filepath.IsLocal(rel) {
			t.Errorf("a file outside the revision's directory: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "rev")); len(ents) > 1 {
		t.Errorf("state_dir/git/rev keeps %d entries", len(ents))
	}
}
