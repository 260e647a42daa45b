package gitops

import (
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// The clone in Dir/repo.git grows by one packfile per fetch that brings
// something, and every object lookup reads the indexes of them all: after a
// year of pushes a lab's clone would hold thousands. Once there are more
// than packLimit, the clone is repacked into one pack that keeps what the
// references reach (the fetched branch head and deployedRef) and nothing
// else, so history a force-push dropped goes too.

const (
	packLimit = 16
	// deployedRef points at the revision that serves, so that a repack
	// keeps it after a force-push made it unreachable from the branch (its
	// successor refused): a restart may need to write it out again.
	deployedRef = plumbing.ReferenceName("refs/labgate/deployed")
)

// keepDeployed points deployedRef at commit.
func (s *Syncer) keepDeployed(commit string) {
	if err := s.open(); err != nil {
		return
	}
	ref := plumbing.NewHashReference(deployedRef, plumbing.NewHash(commit))
	if err := s.repo.Storer.SetReference(ref); err != nil {
		s.opts.Log.Warn("cannot record the deployed revision in the clone", "error", err)
	}
}

// compact repacks the clone when it holds more than packLimit packs.
func (s *Syncer) compact() {
	pos, ok := s.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= packLimit {
		return
	}
	start := time.Now()
	err = s.repo.RepackObjects(&git.RepackConfig{})
	// go-git's storage keeps its list of packs, the old ones included:
	// open the clone afresh for what comes next.
	s.repo = nil
	if err != nil {
		s.opts.Log.Warn("cannot repack the git clone; it keeps working as it is", "packs", len(packs), "error", err)
		return
	}
	s.opts.Log.Debug("git clone repacked", "packs", len(packs), "took", time.Since(start).Round(time.Millisecond))
}
