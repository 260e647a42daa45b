package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/listen"

	"filippo.io/age"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/gitops"
	"github.com/labgate/labgate/internal/sops"
)

// gitSource is serve following a git repository. The local file (the
// bootstrap) holds the git section and state_dir; each revision's file is
// the lab's config, parsed with the bootstrap and applied through swap, the
// path a saved file takes: a refused revision leaves the running generation.
type gitSource struct {
	boot   *config.Config
	syncer *gitops.Syncer
}

// startGit serves the last revision that served before (so a restart does
// not wait for the forge) or else fetches one, then follows the branch in
// the background. The returned function stops following.
func (d *Daemon) startGit(ctx context.Context, boot *config.Config) (func(), error) {
	gc := boot.Git
	g := &gitSource{boot: boot}
	g.syncer = gitops.New(gitops.Options{
		URL: gc.URL, Branch: gc.Branch, Path: gc.Path, Interval: gc.Interval,
		Dir:      filepath.Join(boot.StateDir, "git"),
		Username: gc.Username, Password: gc.Password.Value(), Token: gc.Token.Value(),
		SSHKeyFile: gc.SSHKeyFile,
		Apply:      func(_ context.Context, rev gitops.Revision) error { return d.applyRevision(boot, rev) },
		Log:        d.log.With("git", gitops.Redact(gc.URL)),
		Metrics:    gitops.NewMetrics(d.prom),
	})
	d.git = g
	resumed := g.syncer.Resume(ctx)
	if !resumed {
		if err := g.syncer.Sync(ctx); err != nil {
			return nil, fmt.Errorf("nothing to serve from %s (branch %s, %s): %w", g.syncer.Status().URL, gc.Branch, gc.Path, err)
		}
	}
	for _, aside := range g.syncer.Damaged() {
		d.stateDamaged(boot.StateDir, aside, "Git state was damaged: nothing is lost, labgate wrote it again from the repository or fetches it again.")
	}
	var hook *http.Server
	if w := gc.Webhook; w != nil && w.Listen != "" {
		ln, err := listen.TCP(w.Listen, d.log)
		if err != nil {
			return nil, fmt.Errorf("git.webhook.listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/hooks/git", g.syncer.Webhook(w.Secret.Value()))
		// A push event is small: a client that sends it slowly, or keeps the
		// connection idle, is cut off rather than holding it forever.
		hook = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
			ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
		go func() {
			if err := hook.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("git webhook listener stopped", "error", err)
			}
		}()
		d.log.Info("git webhook listening", "addr", ln.Addr().String(), "path", "/hooks/git")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.syncer.Run(ctx) })
	if resumed {
		g.syncer.Trigger() // catch up with what was pushed while stopped
	}
	return func() {
		cancel()
		if hook != nil {
			hook.Close()
		}
		wg.Wait()
	}, nil
}

// applyRevision parses a fetched revision and swaps it in.
func (d *Daemon) applyRevision(boot *config.Config, rev gitops.Revision) (err error) {
	defer func() {
		if err != nil && d.config() == nil {
			err = fmt.Errorf("%w (nothing serves yet)", err)
		}
	}()
	// Errors name the file as it is in the repository (lab.yaml:17:13), not
	// as the revision's copy in state_dir.
	name := filepath.FromSlash(boot.Git.Path)
	keys := func() ([]age.Identity, error) { return sops.Identities(nil, boot.Git.AgeKeyFile) }
	data, err := sops.Plain(rev.Data, keys)
	if err != nil {
		err = fmt.Errorf("%s: %w", name, err)
		d.revisionRefused(err)
		return err
	}
	// build refuses whatever `labgate check` refuses: swap is the check.
	cfg, err := config.Parse(rev.File, data, config.Options{Bootstrap: boot, ReadSecret: sops.SecretFile(keys), Name: name})
	if err != nil {
		d.revisionRefused(err)
		return err
	}
	_, err = d.swap(cfg)
	return err
}

// routes adds the git status API and, unless it has a listener of its own,
// the webhook to the admin handler.
func (g *gitSource) routes(mux *http.ServeMux) {
	if g == nil {
		return
	}
	mux.HandleFunc("GET /api/git", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.syncer.Status())
	})
	if w := g.boot.Git.Webhook; w != nil && w.Listen == "" {
		mux.Handle("/hooks/git", g.syncer.Webhook(w.Secret.Value()))
	}
}

// revisionRefused reports a refused revision: as a refused reload when a
// generation serves, else just logged (serve reports it when it cannot start).
func (d *Daemon) revisionRefused(err error) {
	if d.config() != nil {
		d.reloadFailed(err)
		return
	}
	d.log.Error("git revision refused", "error", err)
}

// gitRevision is the commit that serves, abbreviated to 12 hex digits; ""
// when the config does not follow git (or before the first revision serves).
func (d *Daemon) gitRevision() string {
	if d.git == nil {
		return ""
	}
	rev := d.git.syncer.Status().Deployed
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return rev
}
