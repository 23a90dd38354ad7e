package mysql

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dbha/dbha/topology"
)

// A rewind keeps a journal per instance in its save directory, so that a
// call after a crash knows how far the last one went: the undo runs
// without creating GTIDs (sql_log_bin=0), so the instance's GTID state
// alone cannot tell undone data from data not yet undone.

// Journal states, in order.
const (
	journalUndoing = "undoing" // written before the undo starts
	journalUndone  = "undone"  // the undo finished; the GTID reset may not have
	journalDone    = "done"    // reset and repointed
)

// rewindJournal is the state of one instance's latest rewind.
type rewindJournal struct {
	Addr    string    `json:"addr"`
	Primary string    `json:"primary"`
	State   string    `json:"state"`
	Time    time.Time `json:"time"`
	// Before is the instance's gtid_binlog_state when the undo started.
	Before topology.Position `json:"before"`
	Tail   topology.Position `json:"tail"`
	From   topology.Position `json:"from"`
	// Kept is the gtid_binlog_state the reset gives the instance.
	Kept         topology.Position              `json:"kept"`
	File         string                         `json:"file"`
	Transactions int                            `json:"transactions"`
	Events       int                            `json:"events"`
	Tables       map[string]topology.RowChanges `json:"tables,omitempty"`
	Save         topology.Duration              `json:"save"`
	Undo         topology.Duration              `json:"undo"`
}

// rewound is what the journal says was done.
func (j rewindJournal) rewound() topology.Rewound {
	return topology.Rewound{File: j.File, Tail: j.Tail, From: j.From, Transactions: j.Transactions, Events: j.Events,
		Tables: j.Tables, Save: j.Save, Undo: j.Undo}
}

// fileSafe turns an address into a file name part: [::1]:3306 → __1_3306.
func fileSafe(addr string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, addr)
}

func journalPath(saveDir, addr string) string {
	return filepath.Join(saveDir, "rewind-"+fileSafe(addr)+".json")
}

// tailPath names a new saved tail: rewind-<addr>-<UTC time>.bin.
func tailPath(saveDir, addr string, now time.Time) string {
	return filepath.Join(saveDir, "rewind-"+fileSafe(addr)+"-"+now.UTC().Format("20060102T150405.000Z")+".bin")
}

// readJournal returns addr's journal, or nil when there is none.
func readJournal(saveDir, addr string) (*rewindJournal, error) {
	b, err := os.ReadFile(journalPath(saveDir, addr))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rewind journal: %w", err)
	}
	var j rewindJournal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("rewind journal %s: %w", journalPath(saveDir, addr), err)
	}
	return &j, nil
}

// writeJournal replaces addr's journal durably (write, fsync, rename,
// fsync the directory): a crash leaves the old journal or the new one.
func writeJournal(saveDir string, j rewindJournal) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	path := journalPath(saveDir, j.Addr)
	tmp, err := os.CreateTemp(saveDir, ".rewind-journal-*")
	if err != nil {
		return fmt.Errorf("write rewind journal: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write rewind journal %s: %w", path, err)
	}
	dir, err := os.Open(saveDir)
	if err != nil {
		return fmt.Errorf("write rewind journal %s: %w", path, err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", saveDir, err)
	}
	return nil
}
