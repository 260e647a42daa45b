package speedtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// state is the content of the state file.
type state struct {
	Version int      `json:"version"` // 1
	Results []Result `json:"results"` // oldest first
}

// load reads the history of the state file, keeping the newest Samples
// results. A missing file is an empty history; a broken one is logged and
// replaced at the next measurement.
func (p *Prober) load() []Result {
	if p.opts.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(p.opts.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var s state
	if err == nil {
		if err = json.Unmarshal(b, &s); err == nil && s.Version != 1 {
			err = fmt.Errorf("version %d, want 1", s.Version)
		}
	}
	if err != nil {
		p.opts.Log.Warn("relay path history unreadable, starting afresh", "file", p.opts.StateFile, "error", err)
		return nil
	}
	return s.Results[max(0, len(s.Results)-p.opts.Samples):]
}

// save writes the history to the state file atomically: a reader sees the
// old file or the new one, never half of one.
func (p *Prober) save(h []Result) error {
	if p.opts.StateFile == "" {
		return nil
	}
	b, err := json.Marshal(state{Version: 1, Results: h})
	if err != nil {
		return err
	}
	dir := filepath.Dir(p.opts.StateFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(p.opts.StateFile)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, there is nothing left to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p.opts.StateFile)
}
