package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/labgate/labgate/internal/statefile"
)

// OwnershipFile is the name of the ownership state in state_dir.
const OwnershipFile = "dns-owned.json"

// FileOwnership keeps the list of RRsets labgate owns in a file, for DNS
// servers that store no TXT records. Before planning, the listed RRsets get
// synthetic ownership records so that Plan decides exactly as with TXT
// ownership; after each change is made, the list is updated. An RRset that
// is not in the list is never changed or deleted.
type FileOwnership struct {
	Path string
	mu   sync.Mutex
}

type ownershipState struct {
	Zone    string `json:"zone"`
	Owner   string `json:"owner"`
	Records []Key  `json:"records"` // sorted
	// Others are the lists of other zones or owner ids (the file's dns.zone
	// or dns.owner before a change): kept, so that changing them back finds
	// labgate's records labgate's again.
	Others []ownershipState `json:"others,omitempty"`
}

// load returns the list of (zone, owner), with the lists of the others in
// its Others.
func (f *FileOwnership) load(zone, owner string) (ownershipState, error) {
	st := ownershipState{Zone: zone, Owner: owner}
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	var disk ownershipState
	if err := json.Unmarshal(data, &disk); err != nil {
		// Never replaced nor moved aside here: without the list, every
		// record labgate made looks like someone else's.
		return st, fmt.Errorf("%s is damaged (%v): DNS is not reconciled until you restore it from a backup, "+
			"or move it aside to start over: labgate then owns nothing, and the records it made show as conflicts "+
			"(left as they are) until you delete them from the zone for labgate to create them again", f.Path, err)
	}
	all := append([]ownershipState{{Zone: disk.Zone, Owner: disk.Owner, Records: disk.Records}}, disk.Others...)
	for _, o := range all {
		switch {
		case o.Zone == zone && o.Owner == owner:
			st.Records = o.Records
		case len(o.Records) > 0:
			st.Others = append(st.Others, ownershipState{Zone: o.Zone, Owner: o.Owner, Records: o.Records})
		}
	}
	return st, nil
}

// Synthesize returns current plus an ownership record for every RRset the
// file lists as owner's.
func (f *FileOwnership) Synthesize(current []Record, zone, owner string) ([]Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.load(zone, owner)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(current)
	for _, k := range st.Records {
		out = append(out, Record{Name: ownerNameIn(zone, k.Name, k.Type), Type: "TXT", Values: []string{OwnerValue(owner)}})
	}
	return out, nil
}

// Record updates the file after c was made.
func (f *FileOwnership) Record(c Change, zone, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.load(zone, owner)
	if err != nil {
		return err
	}
	k := c.Record.Key()
	st.Records = slices.DeleteFunc(st.Records, func(x Key) bool { return x == k })
	if c.Action != Delete {
		st.Records = append(st.Records, k)
	}
	slices.SortFunc(st.Records, func(a, b Key) int {
		if a.Name != b.Name {
			return strings.Compare(a.Name, b.Name)
		}
		return strings.Compare(a.Type, b.Type)
	})
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	// Atomic and durable: a power loss leaves the old list or the new one.
	return statefile.WriteFile(f.Path, append(data, '\n'), 0o600)
}
