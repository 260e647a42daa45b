package gitops

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/labgate/labgate/internal/statefile"
)

// Damaged state. Everything the Syncer keeps in Dir can be had again from
// the forge, and most of it from the repository clone alone: a damaged
// file is moved aside (NAME.damaged-<UTC time>, never deleted), logged, and
// made again.
//
//   - deployed, the commit that served: when it is not a commit id, the
//     last fetched head stands in for it (what a fetch would bring, were
//     nothing pushed since).
//   - rev/<commit>, the revision's files: checked against the repository
//     (the file's blob id) before it is resumed, and written again from
//     the repository when it differs. A revision cut short by a power loss
//     is never applied, not even one that still parses.
//   - repo.git, the clone: when go-git cannot open it or read its
//     references, it is moved aside and fetched again; not when labgate
//     may not read it (its owner or mode): that says nothing of the
//     clone, and opening it fails with the reason.

// Damaged lists where damaged state was moved aside since New.
func (s *Syncer) Damaged() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.damaged...)
}

// moveAside moves a damaged path aside, logs what is lost and remembers
// where it went.
func (s *Syncer) moveAside(path, what string, cause error) bool {
	aside, err := statefile.MoveAside(path, s.opts.Now())
	if err != nil {
		s.opts.Log.Error("git state damaged and cannot be moved aside", "file", path, "error", cause, "move_error", err)
		return false
	}
	s.opts.Log.Error("git state damaged: "+what+". The damaged copy is kept for you to inspect or delete",
		"file", path, "damaged_copy", aside, "error", cause)
	s.mu.Lock()
	s.damaged = append(s.damaged, aside)
	s.mu.Unlock()
	return true
}

// deployedCommit reads Dir/deployed: the commit that served before a
// restart, "" when there is none. A damaged file is moved aside and the
// last fetched head stands in.
func (s *Syncer) deployedCommit() string {
	path := filepath.Join(s.opts.Dir, "deployed")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		s.opts.Log.Error("cannot read the deployed revision; fetching instead", "file", path, "error", err)
		return ""
	}
	commit := strings.TrimSpace(string(b))
	if plumbing.IsHash(commit) {
		return commit
	}
	head := s.fetchedHead()
	what := "the revision that served is not known; the last fetched head, " + short(head) + ", serves instead until the next fetch"
	if head == "" {
		what = "the revision that served is not known; labgate fetches the branch instead"
	}
	s.moveAside(path, what, fmt.Errorf("%q is not a commit id", truncate(string(b), 60)))
	return head
}

// fetchedHead is the branch head the last fetch brought, "" when the
// clone has none.
func (s *Syncer) fetchedHead() string {
	if err := s.open(); err != nil {
		return ""
	}
	ref, err := s.repo.Reference(plumbing.NewRemoteReferenceName("origin", s.opts.Branch), true)
	if err != nil {
		return ""
	}
	return ref.Hash().String()
}

// checkRevision compares the revision's file on disk with the repository's
// and, when they differ, moves the directory aside and writes it again
// from the repository. It returns the revision to apply, false when there
// is none. Without a readable commit in the clone the copy on disk is all
// there is, and it is taken as it is.
func (s *Syncer) checkRevision(rev Revision) (Revision, bool) {
	c, err := s.commit(plumbing.NewHash(rev.Commit))
	if err != nil {
		return rev, true
	}
	rev.Subject, rev.When = subject(c.Message), c.Committer.When
	f, err := c.File(s.opts.Path)
	if err != nil {
		return rev, true
	}
	if got := plumbing.ComputeHash(plumbing.BlobObject, rev.Data); got == f.Hash {
		return rev, true
	}
	if !s.moveAside(rev.Dir, "the revision's files differ from the repository's; they are written again from it",
		fmt.Errorf("%s is not the file of commit %s", s.opts.Path, short(rev.Commit))) {
		return rev, false
	}
	again, err := s.checkout(c)
	if err != nil {
		s.opts.Log.Error("cannot write the revision again from the repository", "revision", short(rev.Commit), "error", err)
		return rev, false
	}
	return again, true
}

// openRepo opens the clone in dir and reads its references through; a
// clone go-git cannot read is moved aside and a new one is made (the next
// fetch fills it).
func (s *Syncer) openRepo(dir string) (*git.Repository, error) {
	r, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, err
	}
	if err == nil {
		err = readRefs(r)
	}
	if err == nil {
		return r, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		// Not damage: the clone may be whole; the user labgate runs as
		// may not read it (state_dir restored as root).
		return nil, fmt.Errorf("the user labgate runs as may not read it: %w", err)
	}
	if !s.moveAside(dir, "the clone of the repository is fetched again", err) {
		return nil, fmt.Errorf("git repository in %s: %w", dir, err)
	}
	return nil, git.ErrRepositoryNotExists
}

// readRefs reads the configuration and every reference of r.
func readRefs(r *git.Repository) error {
	if _, err := r.Config(); err != nil {
		return err
	}
	refs, err := r.Storer.IterReferences()
	if err != nil {
		return err
	}
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference && ref.Hash().IsZero() {
			return fmt.Errorf("reference %s is empty", ref.Name())
		}
		return nil
	})
	if err != nil && !errors.Is(err, storer.ErrStop) {
		return err
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
