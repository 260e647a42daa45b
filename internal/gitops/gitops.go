// Package gitops follows one branch of a git repository: it fetches on an
// interval and when triggered (a push webhook), writes each new revision's
// files to a directory of their own and hands the revision to a callback,
// which applies it or refuses it.
//
// It knows nothing of what the files mean. A revision the callback refused
// is remembered and not offered again, so a bad push is tried once and the
// last good revision keeps serving until the next push. A force-push is
// followed: the remote branch head is what counts, whatever it descends from.
package gitops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/statefile"
)

// Options configure a Syncer.
type Options struct {
	URL      string
	Branch   string
	Path     string // the file handed over, slash-separated, inside the repository
	Interval time.Duration
	// Dir holds the syncer's state: the bare repository and one directory per revision.
	Dir string

	// Credentials: HTTP basic auth (Token is sent as the password) or an SSH key.
	Username, Password, Token string
	SSHKeyFile                string

	// Apply is called with each new revision; an error refuses it.
	Apply func(context.Context, Revision) error

	// MaxFileBytes bounds one file of a revision and MaxRevisionBytes all
	// of them together; a revision over either is refused before anything
	// is written. Defaults 32 MiB and 256 MiB.
	MaxFileBytes, MaxRevisionBytes int64

	Log     *slog.Logger
	Metrics *Metrics // nil: none
	Now     func() time.Time
}

// minTriggerGap is the least time between a Trigger's fetch that found
// nothing new and the next Trigger's fetch: a flood of (valid or replayed)
// webhook requests makes one fetch every minTriggerGap at most, while pushes
// in quick succession are each fetched at once.
const minTriggerGap = 5 * time.Second

// Revision is one commit of the followed branch, written out to Dir.
type Revision struct {
	Commit  string    // full hash
	Subject string    // first line of the commit message
	When    time.Time // committer time
	Dir     string    // the commit's files
	File    string    // Dir + Options.Path
	Data    []byte    // the content of File
}

// Status is what the syncer has done, for the status API.
type Status struct {
	URL    string `json:"url"`
	Branch string `json:"branch"`
	Path   string `json:"path"`

	Deployed   string    `json:"deployed_revision,omitempty"`
	DeployedAt time.Time `json:"deployed_at,omitzero"`
	Attempted  string    `json:"last_attempted_revision,omitempty"`
	// AttemptedAt is when Attempted was last tried.
	AttemptedAt time.Time `json:"last_attempted_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastSync is the last time the branch was fetched and its head serves.
	LastSync time.Time `json:"last_sync_success_at,omitzero"`
	// Refused are revisions the callback refused, not tried again.
	Refused []string `json:"refused_revisions,omitempty"`
}

// Syncer follows a branch.
type Syncer struct {
	opts    Options
	trigger chan struct{}

	syncMu sync.Mutex // one sync at a time
	repo   *git.Repository

	mu      sync.Mutex
	status  Status
	refused map[string]string // commit -> error
	damaged []string          // where damaged state was moved aside (damaged.go)
}

// New returns a Syncer; nothing is fetched before Sync or Run.
func New(opts Options) *Syncer {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Branch == "" {
		opts.Branch = "main"
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 32 << 20
	}
	if opts.MaxRevisionBytes <= 0 {
		opts.MaxRevisionBytes = 256 << 20
	}
	s := &Syncer{
		opts:    opts,
		trigger: make(chan struct{}, 1),
		status:  Status{Branch: opts.Branch, Path: opts.Path},
		refused: map[string]string{},
	}
	s.status.URL = s.scrubText(opts.URL)
	return s
}

// Trigger asks Run to fetch now. Triggers that arrive while one is pending
// are coalesced into it.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Status returns a copy of the current status.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Refused = nil
	for c := range s.refused {
		st.Refused = append(st.Refused, c)
	}
	slices.Sort(st.Refused)
	return st
}

// Run fetches every Interval (± 10%) and on Trigger until ctx is done;
// after a Trigger's fetch that found nothing new, the next Trigger waits
// until minTriggerGap has passed. Failures are logged and kept in the
// status; they never stop Run.
func (s *Syncer) Run(ctx context.Context) error {
	var idle time.Time // when the last Trigger's fetch that found nothing new started
	for {
		d := s.opts.Interval
		if d > 0 {
			d += time.Duration((rand.Float64()*0.2 - 0.1) * float64(d))
		} else {
			d = time.Minute
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.trigger:
			t.Stop()
			if wait := minTriggerGap - time.Since(idle); !idle.IsZero() && wait > 0 {
				w := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					w.Stop()
					return nil
				case <-w.C:
				}
				select { // triggers during the wait are this fetch's
				case <-s.trigger:
				default:
				}
			}
		case <-t.C:
			_ = s.Sync(ctx)
			continue
		}
		start := time.Now()
		idle = time.Time{}
		if before := s.Status().Deployed; s.Sync(ctx) != nil || s.Status().Deployed == before {
			idle = start
		}
	}
}

// Redact returns a repository URL fit for logs and the status API: a
// password in it is replaced by "xxxxx".
func Redact(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw // host:path and local paths carry no password
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	return u.Redacted()
}

// scrub removes the credentials from an error's text: the URL as given
// (with its password) and the password and token themselves.
func (s *Syncer) scrub(err error) error {
	if err == nil {
		return nil
	}
	if msg := s.scrubText(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

func (s *Syncer) scrubText(msg string) string {
	if r := Redact(s.opts.URL); r != s.opts.URL {
		msg = strings.ReplaceAll(msg, s.opts.URL, r)
	}
	if u, perr := url.Parse(s.opts.URL); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(pw), "xxxxx")
		}
	}
	for _, secret := range []string{s.opts.Password, s.opts.Token} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
		}
	}
	return msg
}

// errRefusedBefore is returned by Sync when the head was refused before.
var errRefusedBefore = errors.New("refused before")

// Sync fetches the branch once and, when its head is neither serving nor
// refused before, hands it to Apply. It returns what went wrong, if anything
// (also recorded in the status).
func (s *Syncer) Sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	head, err := s.fetch(ctx)
	if err != nil {
		err = s.scrub(fmt.Errorf("fetching %s: %w", s.opts.URL, err))
		s.failed("", err)
		return err
	}
	s.mu.Lock()
	deployed := s.status.Deployed
	why, refused := s.refused[head.String()]
	s.mu.Unlock()
	switch {
	case head.String() == deployed:
		s.synced()
		return nil
	case refused:
		s.opts.Log.Debug("git head was refused before; waiting for the next push", "revision", short(head.String()), "error", why)
		return fmt.Errorf("%s: %w: %s", short(head.String()), errRefusedBefore, why)
	}
	return s.offer(ctx, head)
}

// Resume offers the revision that served before a restart, from its
// directory, without fetching: the lab serves while the forge is away.
// It returns false when there is none or it is refused now.
func (s *Syncer) Resume(ctx context.Context) bool {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	commit := s.deployedCommit()
	if commit == "" {
		return false
	}
	dir := filepath.Join(s.opts.Dir, "rev", commit)
	file := filepath.Join(dir, filepath.FromSlash(s.opts.Path))
	data, err := os.ReadFile(file)
	if err != nil {
		// Gone (a power loss before the directory reached the disk): the
		// clone may still have it.
		c, cerr := s.commit(plumbing.NewHash(commit))
		if cerr != nil {
			return false
		}
		rev, cerr := s.checkout(c)
		if cerr != nil {
			return false
		}
		return s.apply(ctx, rev) == nil
	}
	rev, ok := s.checkRevision(Revision{Commit: commit, Dir: dir, File: file, Data: data})
	if !ok {
		return false
	}
	return s.apply(ctx, rev) == nil
}

// offer writes out the commit and hands it to Apply.
func (s *Syncer) offer(ctx context.Context, h plumbing.Hash) error {
	c, err := s.commit(h)
	if err != nil {
		err = s.scrub(err)
		s.failed(h.String(), err)
		return err
	}
	rev, err := s.checkout(c)
	if err != nil {
		err = fmt.Errorf("revision %s: %w", short(h.String()), err)
		s.refuse(h.String(), err)
		return err
	}
	return s.apply(ctx, rev)
}

func (s *Syncer) apply(ctx context.Context, rev Revision) error {
	now := s.opts.Now()
	s.mu.Lock()
	s.status.Attempted, s.status.AttemptedAt = rev.Commit, now
	s.mu.Unlock()
	s.opts.Log.Info("applying git revision", "revision", short(rev.Commit), "subject", rev.Subject)
	if err := s.opts.Apply(ctx, rev); err != nil {
		err = fmt.Errorf("revision %s refused: %w", short(rev.Commit), err)
		s.refuse(rev.Commit, err)
		os.RemoveAll(rev.Dir) // never the deployed one: that one was not refused
		return err
	}
	s.mu.Lock()
	prev := s.status.Deployed
	s.status.Deployed, s.status.DeployedAt = rev.Commit, now
	s.status.LastError, s.status.LastErrorAt = "", time.Time{}
	s.mu.Unlock()
	if err := statefile.WriteFile(filepath.Join(s.opts.Dir, "deployed"), []byte(rev.Commit+"\n"), 0o600); err != nil {
		s.opts.Log.Warn("cannot record the deployed revision; a restart fetches again", "error", err)
	}
	s.keepDeployed(rev.Commit)
	if m := s.opts.Metrics; m != nil {
		m.revision.Reset()
		m.revision.WithLabelValues(rev.Commit).Set(1)
	}
	s.synced()
	s.opts.Log.Info("git revision serving", "revision", short(rev.Commit), "previous", short(prev))
	s.prune(rev.Commit, prev)
	return nil
}

// prune removes the revision directories other than the deployed one and
// the one before it (its generation may still be draining).
func (s *Syncer) prune(keep ...string) {
	ents, _ := os.ReadDir(filepath.Join(s.opts.Dir, "rev"))
	for _, e := range ents {
		if !slices.Contains(keep, e.Name()) && !statefile.IsAside(e.Name()) {
			os.RemoveAll(filepath.Join(s.opts.Dir, "rev", e.Name()))
		}
	}
}

func (s *Syncer) synced() {
	now := s.opts.Now()
	s.mu.Lock()
	s.status.LastSync = now
	s.mu.Unlock()
	if m := s.opts.Metrics; m != nil {
		m.lastSync.Set(float64(now.UnixNano()) / 1e9)
	}
}

func (s *Syncer) refuse(commit string, err error) {
	s.mu.Lock()
	s.refused[commit] = err.Error()
	s.mu.Unlock()
	s.failed(commit, err)
}

func (s *Syncer) failed(commit string, err error) {
	now := s.opts.Now()
	s.mu.Lock()
	s.status.LastError, s.status.LastErrorAt = err.Error(), now
	deployed := s.status.Deployed
	s.mu.Unlock()
	if m := s.opts.Metrics; m != nil {
		m.failures.Inc()
	}
	if deployed == "" {
		s.opts.Log.Error("git sync failed, no revision serves yet", "revision", short(commit), "error", err)
		return
	}
	s.opts.Log.Error("git sync failed, the previous revision keeps serving", "revision", short(commit), "serving", short(deployed), "error", err)
}

// fetch brings the remote branch head into the bare repository and returns it.
func (s *Syncer) fetch(ctx context.Context) (plumbing.Hash, error) {
	if err := s.open(); err != nil {
		return plumbing.ZeroHash, err
	}
	auth, err := s.auth()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	remoteRef := plumbing.NewRemoteReferenceName("origin", s.opts.Branch)
	spec := gitconfig.RefSpec("+" + plumbing.NewBranchReferenceName(s.opts.Branch).String() + ":" + remoteRef.String())
	err = s.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []gitconfig.RefSpec{spec},
		Auth:       auth,
		Force:      true, // follow force-pushes
		Tags:       git.NoTags,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return plumbing.ZeroHash, fmt.Errorf("the repository is empty")
		}
		if strings.Contains(err.Error(), "couldn't find remote ref") {
			return plumbing.ZeroHash, fmt.Errorf("no branch %q", s.opts.Branch)
		}
		return plumbing.ZeroHash, err
	}
	fetched := err == nil // a pack more
	ref, err := s.repo.Reference(remoteRef, true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("no branch %q: %w", s.opts.Branch, err)
	}
	if fetched {
		s.compact()
	}
	return ref.Hash(), nil
}

// open opens (or creates) the bare repository and points origin at the URL.
func (s *Syncer) open() error {
	if s.repo != nil {
		return nil
	}
	dir := filepath.Join(s.opts.Dir, "repo.git")
	r, err := s.openRepo(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(s.opts.Dir, 0o700); err != nil {
			return err
		}
		r, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return fmt.Errorf("git repository in %s: %w", dir, err)
	}
	if rem, err := r.Remote("origin"); err == nil && (len(rem.Config().URLs) != 1 || rem.Config().URLs[0] != s.opts.URL) {
		_ = r.DeleteRemote("origin")
	}
	if _, err := r.Remote("origin"); err != nil {
		if _, err := r.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{s.opts.URL}}); err != nil {
			return err
		}
	}
	s.repo = r
	return nil
}

func (s *Syncer) auth() (transport.AuthMethod, error) {
	switch {
	case s.opts.SSHKeyFile != "":
		user := "git"
		if ep, err := transport.NewEndpoint(s.opts.URL); err == nil && ep.User != "" {
			user = ep.User
		}
		return gitssh.NewPublicKeysFromFile(user, s.opts.SSHKeyFile, "")
	case s.opts.Token != "":
		user := s.opts.Username
		if user == "" {
			user = "labgate" // forges ignore the user name of a token
		}
		return &githttp.BasicAuth{Username: user, Password: s.opts.Token}, nil
	case s.opts.Password != "":
		return &githttp.BasicAuth{Username: s.opts.Username, Password: s.opts.Password}, nil
	}
	return nil, nil
}

func (s *Syncer) commit(h plumbing.Hash) (*object.Commit, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	return s.repo.CommitObject(h)
}

// checkout writes the commit's files to Dir/rev/<commit> (through a
// temporary directory, so a directory there is always complete).
func (s *Syncer) checkout(c *object.Commit) (Revision, error) {
	rev := Revision{Commit: c.Hash.String(), Subject: subject(c.Message), When: c.Committer.When,
		Dir: filepath.Join(s.opts.Dir, "rev", c.Hash.String())}
	rev.File = filepath.Join(rev.Dir, filepath.FromSlash(s.opts.Path))
	if _, err := os.Stat(rev.Dir); err != nil {
		tree, err := c.Tree()
		if err != nil {
			return rev, err
		}
		if err := os.MkdirAll(filepath.Dir(rev.Dir), 0o700); err != nil {
			return rev, err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(rev.Dir), ".tmp-")
		if err != nil {
			return rev, err
		}
		defer os.RemoveAll(tmp)
		// The sizes first, from the tree: nothing is read or written of a
		// revision too large to keep.
		var total int64
		err = tree.Files().ForEach(func(f *object.File) error {
			if !regular(f.Mode) {
				return nil
			}
			if f.Size > s.opts.MaxFileBytes {
				return fmt.Errorf("%s has %d bytes, more than the %d a file may have", f.Name, f.Size, s.opts.MaxFileBytes)
			}
			if total += f.Size; total > s.opts.MaxRevisionBytes {
				return fmt.Errorf("its files have more than the %d bytes a revision may have", s.opts.MaxRevisionBytes)
			}
			return nil
		})
		if err != nil {
			return rev, err
		}
		err = tree.Files().ForEach(func(f *object.File) error {
			if !regular(f.Mode) {
				return nil // symlinks and submodules are not written
			}
			name := path.Clean(f.Name)
			if !filepath.IsLocal(filepath.FromSlash(name)) || name != f.Name {
				return nil // a name that would leave the revision's directory
			}
			dst := filepath.Join(tmp, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			body, err := f.Contents()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o600)
			if f.Mode == filemode.Executable {
				mode = 0o700
			}
			return statefile.WriteFile(dst, []byte(body), mode) // fsynced: the directory is whole after a power loss
		})
		if err != nil {
			return rev, fmt.Errorf("writing its files: %w", err)
		}
		if err := os.Rename(tmp, rev.Dir); err != nil {
			return rev, err
		}
		if err := statefile.SyncDir(filepath.Dir(rev.Dir)); err != nil {
			return rev, err
		}
	}
	data, err := os.ReadFile(rev.File)
	if err != nil {
		return rev, fmt.Errorf("no file %s in the commit", s.opts.Path)
	}
	rev.Data = data
	return rev, nil
}

// regular reports whether a tree entry is a file that is written out.
func regular(m filemode.FileMode) bool {
	return m == filemode.Regular || m == filemode.Executable || m == filemode.Deprecated
}

func subject(msg string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	return s
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Metrics are the syncer's series.
type Metrics struct {
	revision *prometheus.GaugeVec
	lastSync prometheus.Gauge
	failures prometheus.Counter
}

// NewMetrics registers the git series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_git_revision_info",
			Help: "Always 1; the revision label is the commit that serves.",
		}, []string{"revision"}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_git_last_sync_success_timestamp_seconds",
			Help: "When the branch was last fetched with its head serving, in seconds since the epoch.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "labgate_git_sync_failures_total",
			Help: "Fetches that failed and revisions that were refused.",
		}),
	}
	reg.MustRegister(m.revision, m.lastSync, m.failures)
	return m
}
