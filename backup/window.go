package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/topology"
)

// ErrNoWindow: dbha's change-stream store does not reach back to a backup,
// so no point-in-time restore can start from it.
var ErrNoWindow = errors.New("the backup supports no point-in-time restore")

// Window is the range a point-in-time restore of a backup can reach with
// what dbha's store holds: from the backup's own point to the newest
// position held, and in time until the stream last heard from the
// primary.
type Window struct {
	From  topology.Position `json:"from"`
	To    topology.Position `json:"to"`
	Until time.Time         `json:"until,omitzero"`
}

func (w Window) String() string {
	s := fmt.Sprintf("point in time: from %s to %s", w.From, w.To)
	if !w.Until.IsZero() {
		s += fmt.Sprintf(" (the store heard from the primary last at %s)", w.Until.UTC().Format(time.RFC3339))
	}
	return s
}

// ErrNoStoreHere: this host holds no change-stream store of the cluster
// (no stream has run here: a fresh machine restoring from a bucket, say),
// so the window a backup supports cannot be told here.
var ErrNoStoreHere = errors.New("no change-stream store of the cluster on this host")

// PITRWindow is the window backup e supports with the store in dir today;
// nil when dir is "" (none configured); ErrNoStoreHere when dir holds no
// store; ErrNoWindow when the store does not hold what follows the backup
// (its oldest part was removed, or it began later).
func PITRWindow(e Entry, dir string) (*Window, error) {
	if dir == "" {
		return nil, nil
	}
	if entries, err := os.ReadDir(dir); errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0 {
		return nil, fmt.Errorf("%w (%s)", ErrNoStoreHere, dir)
	}
	status, _ := binlog.ReadStatus(dir)
	if e.Engine == topology.Postgres {
		st, err := pgstream.OpenStore(dir)
		if errors.Is(err, pgstream.ErrNoStore) {
			return nil, fmt.Errorf("%w (%s)", ErrNoStoreHere, dir)
		}
		if err != nil {
			return nil, err
		}
		ok, err := st.Holds(e.StopPosition)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, pgstream.ErrNoStore) {
			return nil, fmt.Errorf("%w (%s)", ErrNoStoreHere, dir)
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: dbha's WAL store does not hold the WAL from the backup's end %s on", ErrNoWindow, e.StopPosition.LSN())
		}
		return &Window{From: e.StopPosition, To: st.Position(), Until: status.LastMessage}, nil
	}
	st, err := mysqlstream.OpenStore(dir)
	if err != nil {
		return nil, err
	}
	start := st.Start()
	if start.IsZero() {
		return nil, fmt.Errorf("%w (%s holds no transaction yet)", ErrNoStoreHere, dir)
	}
	if o, err := topology.Compare(e.Position, start); err != nil || o == topology.Behind || o == topology.Diverged {
		return nil, fmt.Errorf("%w: dbha's binlog store starts at %s, after the backup's %s: the transactions in between are not held", ErrNoWindow, start, e.Position)
	}
	return &Window{From: e.Position, To: st.Position(), Until: status.LastMessage}, nil
}

// OldestWindow is the oldest done backup of entries (oldest first) that
// still has a point-in-time window, as window finds it, and that window:
// where the store's retention must keep from. Backups whose window is gone
// are passed over: it cannot come back. It is pure given window.
func OldestWindow(entries []Entry, window func(Entry) (*Window, error)) (Entry, Window, bool) {
	for _, e := range entries {
		if e.Status != Done {
			continue
		}
		if w, err := window(e); err == nil && w != nil {
			return e, *w, true
		}
	}
	return Entry{}, Window{}, false
}
