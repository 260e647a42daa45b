package speedtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/labgate/labgate/internal/statefile"
)

// state is the content of the state file.
type state struct {
	Version int      `json:"version"` // 1
	Results []Result `json:"results"` // oldest first
}

// load reads the history of the state file, keeping the newest Samples
// results. A missing file is an empty history; a damaged one (power loss,
// a worn SD card) is moved aside to relay-path.json.damaged-<UTC time>,
// never deleted, and the history starts empty; one that cannot be read is
// left alone, and the history is kept in memory only.
func (p *Prober) load() []Result {
	if p.opts.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(p.opts.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not damage (its owner or mode, say): the file is left as it is
		// and not written over, and the measurements stay in memory.
		p.opts.Log.Error("relay path history cannot be read: the measurements are kept in memory only, and the file is left as it is until labgate can read it and restarts",
			"file", p.opts.StateFile, "error", err)
		p.opts.StateFile = ""
		return nil
	}
	var s state
	if err = json.Unmarshal(b, &s); err == nil && s.Version != 1 {
		err = fmt.Errorf("version %d, want 1", s.Version)
	}
	if err != nil {
		aside, merr := statefile.MoveAside(p.opts.StateFile, p.opts.Now())
		if merr != nil {
			p.opts.Log.Error("relay path history damaged, starting with an empty one; it is replaced at the next measurement", "file", p.opts.StateFile, "error", err, "move_error", merr)
			return nil
		}
		p.damaged = aside
		p.opts.Log.Error("relay path history damaged: the measurements kept for the status page are lost and start again empty. The damaged copy is kept for you to inspect or delete",
			"file", p.opts.StateFile, "damaged_copy", aside, "error", err)
		return nil
	}
	return s.Results[max(0, len(s.Results)-p.opts.Samples):]
}

// Damaged is where New moved a damaged state file aside (the measurements
// it held are lost), "" when it found none.
func (p *Prober) Damaged() string { return p.damaged }

// save writes the history to the state file atomically and durably: a
// reader, or a start after a power loss, sees the old file or the new one,
// never half of one.
func (p *Prober) save(h []Result) error {
	if p.opts.StateFile == "" {
		return nil
	}
	b, err := json.Marshal(state{Version: 1, Results: h})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.opts.StateFile), 0o700); err != nil {
		return err
	}
	return statefile.WriteFile(p.opts.StateFile, b, 0o600)
}
