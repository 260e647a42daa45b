package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher follows one config file.
type watcher struct {
	path string
	log  *slog.Logger
}

// watch returns a channel that receives after the config file changed. It
// follows the directory, so editors that replace the file are seen too.
func (w *watcher) watch(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	if w.path == "" {
		return out
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.log.Warn("not following the config file; reload with SIGHUP", "error", err)
		return out
	}
	abs, _ := filepath.Abs(w.path)
	if err := fw.Add(filepath.Dir(abs)); err != nil {
		w.log.Warn("not following the config file; reload with SIGHUP", "error", err)
		fw.Close()
		return out
	}
	go func() {
		defer fw.Close()
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					debounce = time.After(200 * time.Millisecond)
				}
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				w.log.Warn("watching the config file", "error", err)
			case <-debounce:
				debounce = nil
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
