package binlog

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

func mariaPos(t *testing.T, s string) topology.Position {
	t.Helper()
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTracker checks each transition of a stream's status, as `dbha stream
// status` and the API read it.
func TestTracker(t *testing.T) {
	t1 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Second)
	pg := func(lsn topology.LSN, tl uint32) topology.Position { return topology.PostgresAt(lsn, tl) }
	// Timeline 2 forked from timeline 1 at 0/5000.
	tl2 := func(lsn topology.LSN) topology.Position {
		return pg(lsn, 2).WithHistory([]topology.TimelineSwitch{{Timeline: 1, Switch: 0x5000}})
	}
	cases := []struct {
		name  string
		steps func(t *testing.T, tr *Tracker)
		check func(t *testing.T, st Status)
	}{
		{"new: not connected, names the cluster and the process", func(*testing.T, *Tracker) {},
			func(t *testing.T, st Status) {
				if st.Connected || st.Cluster != "c1" || st.Engine != topology.MariaDB || st.PID != os.Getpid() ||
					st.Since.IsZero() || !st.Position.IsZero() || st.UpdatedAt.IsZero() {
					t.Errorf("%+v", st)
				}
			}},
		{"connected: primary, acknowledging", func(_ *testing.T, tr *Tracker) { tr.Connected("db1:3306", true) },
			func(t *testing.T, st Status) {
				if !st.Connected || st.Primary != "db1:3306" || !st.Acknowledging {
					t.Errorf("%+v", st)
				}
			}},
		{"a connection clears the last error", func(_ *testing.T, tr *Tracker) {
			tr.Failed(errors.New("connection refused"))
			tr.Connected("db1:3306", false)
		}, func(t *testing.T, st Status) {
			if !st.Connected || st.LastError != "" || st.Acknowledging {
				t.Errorf("%+v", st)
			}
		}},
		{"a failure while connected keeps the connection", func(_ *testing.T, tr *Tracker) {
			tr.Connected("db1:3306", false)
			tr.Failed(errors.New("semi-sync is off on the primary"))
		}, func(t *testing.T, st Status) {
			if !st.Connected || st.LastError != "semi-sync is off on the primary" {
				t.Errorf("%+v", st)
			}
		}},
		{"disconnected: not acknowledging, the primary last followed stays", func(_ *testing.T, tr *Tracker) {
			tr.Connected("db1:3306", true)
			tr.Disconnected()
		}, func(t *testing.T, st Status) {
			if st.Connected || st.Acknowledging || st.Primary != "db1:3306" {
				t.Errorf("%+v", st)
			}
		}},
		{"a failure after the connection ended", func(_ *testing.T, tr *Tracker) {
			tr.Connected("db1:3306", false)
			tr.Disconnected()
			tr.Failed(errors.New("EOF"))
		}, func(t *testing.T, st Status) {
			if st.Connected || st.LastError != "EOF" || st.Broken != "" {
				t.Errorf("%+v", st)
			}
		}},
		{"broken sets LastError too", func(_ *testing.T, tr *Tracker) { tr.Broken("binlogs purged") },
			func(t *testing.T, st Status) {
				if st.Broken != "binlogs purged" || st.LastError != "binlogs purged" || st.Connected {
					t.Errorf("%+v", st)
				}
			}},
		{"a new run clears Broken; the reason stays in LastError", func(t *testing.T, tr *Tracker) {
			tr.Broken("binlogs purged")
			tr.Start(time.Hour, func(err error) { t.Error(err) })()
		}, func(t *testing.T, st Status) {
			if st.Broken != "" || st.LastError != "binlogs purged" {
				t.Errorf("%+v", st)
			}
		}},
		{"a run that ended is not connected", func(t *testing.T, tr *Tracker) {
			stop := tr.Start(time.Hour, func(err error) { t.Error(err) })
			tr.Connected("db1:3306", true)
			stop()
		}, func(t *testing.T, st Status) {
			if st.Connected || st.Acknowledging || st.Primary != "db1:3306" {
				t.Errorf("%+v", st)
			}
		}},
		{"what arrived is counted", func(_ *testing.T, tr *Tracker) {
			tr.Received(100, t1)
			tr.Event()
			tr.Received(50, t1)
			tr.Event()
			tr.Heard(t2)
		}, func(t *testing.T, st Status) {
			if st.Bytes != 150 || st.Events != 2 || !st.LastMessage.Equal(t2) {
				t.Errorf("bytes %d, events %d, last message %v", st.Bytes, st.Events, st.LastMessage)
			}
		}},
		{"flushed: position and event time", func(_ *testing.T, tr *Tracker) { tr.Flushed(pg(0x3000, 1), t1) },
			func(t *testing.T, st Status) {
				if st.Position.String() != pg(0x3000, 1).String() || !st.LastEventTime.Equal(t1) {
					t.Errorf("position %s, last event %v", st.Position, st.LastEventTime)
				}
			}},
		{"a zero event time keeps the last one", func(_ *testing.T, tr *Tracker) {
			tr.Flushed(pg(0x3000, 1), t1)
			tr.Flushed(pg(0x4000, 1), time.Time{})
		}, func(t *testing.T, st Status) {
			if st.Position.LSN() != 0x4000 || !st.LastEventTime.Equal(t1) {
				t.Errorf("position %s, last event %v", st.Position, st.LastEventTime)
			}
		}},
		{"the position never goes back on one timeline", func(_ *testing.T, tr *Tracker) {
			tr.Flushed(pg(0x3000, 1), time.Time{})
			tr.Flushed(pg(0x2000, 1), time.Time{})
		}, func(t *testing.T, st Status) {
			if st.Position.LSN() != 0x3000 {
				t.Errorf("position %s, want 0/3000", st.Position)
			}
		}},
		{"a new timeline replaces the old one", func(_ *testing.T, tr *Tracker) {
			tr.Flushed(pg(0x4000, 1), time.Time{})
			tr.Flushed(tl2(0x4800), time.Time{})
		}, func(t *testing.T, st Status) {
			if st.Position.Timeline() != 2 || st.Position.LSN() != 0x4800 {
				t.Errorf("position %s, want 0/4800 tl2", st.Position)
			}
		}},
		{"a diverged position replaces the one held", func(_ *testing.T, tr *Tracker) {
			tr.Flushed(pg(0x6000, 1), time.Time{})
			tr.Flushed(tl2(0x5800), time.Time{})
		}, func(t *testing.T, st Status) {
			if st.Position.Timeline() != 2 {
				t.Errorf("position %s, want timeline 2", st.Position)
			}
		}},
		{"a zero position is no news", func(t *testing.T, tr *Tracker) {
			tr.Flushed(mariaPos(t, "0-1-5"), time.Time{})
			tr.Flushed(topology.Position{}, time.Time{})
		}, func(t *testing.T, st Status) {
			if st.Position.String() != "0-1-5" {
				t.Errorf("position %q", st.Position)
			}
		}},
		{"an empty GTID list is known, not zero", func(t *testing.T, tr *Tracker) { tr.Flushed(mariaPos(t, ""), time.Time{}) },
			func(t *testing.T, st Status) {
				if st.Position.IsZero() || st.Position.Engine() != topology.MariaDB {
					t.Errorf("position %#v, want the empty MariaDB position", st.Position)
				}
			}},
		{"an empty GTID list does not replace what is held", func(t *testing.T, tr *Tracker) {
			tr.Flushed(mariaPos(t, "0-1-5"), time.Time{})
			tr.Flushed(mariaPos(t, ""), time.Time{})
		}, func(t *testing.T, st Status) {
			if st.Position.String() != "0-1-5" {
				t.Errorf("position %q", st.Position)
			}
		}},
		{"FlushedFrom is asked at every Status, through Flushed's rule", func(t *testing.T, tr *Tracker) {
			answers := []topology.Position{mariaPos(t, "0-1-5"), mariaPos(t, "0-1-4"), mariaPos(t, "0-1-7")}
			tr.FlushedFrom(func() (topology.Position, time.Time) {
				p := answers[0]
				answers = answers[1:]
				return p, t1
			})
			if got := tr.Status().Position.String(); got != "0-1-5" {
				t.Errorf("first Status: %q", got)
			}
			if got := tr.Status().Position.String(); got != "0-1-5" {
				t.Errorf("second Status (told 0-1-4): %q", got)
			}
		}, func(t *testing.T, st Status) {
			if st.Position.String() != "0-1-7" || !st.LastEventTime.Equal(t1) {
				t.Errorf("position %q, last event %v", st.Position, st.LastEventTime)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(t.TempDir(), "c1", topology.MariaDB)
			tc.steps(t, tr)
			tc.check(t, tr.Status())
		})
	}
}

// TestTrackerSince checks that Since is when Connected last changed, not
// when anything else did.
func TestTrackerSince(t *testing.T) {
	tr := NewTracker(t.TempDir(), "c1", topology.Postgres)
	since := func() time.Time { return tr.Status().Since }
	created := since()
	time.Sleep(2 * time.Millisecond)
	tr.Failed(errors.New("refused"))
	if !since().Equal(created) {
		t.Errorf("a failure moved Since")
	}
	tr.Connected("db1:5432", false)
	connected := since()
	if !connected.After(created) {
		t.Errorf("connecting did not move Since")
	}
	time.Sleep(2 * time.Millisecond)
	tr.Connected("db1:5432", true)
	if !since().Equal(connected) {
		t.Errorf("a second Connected moved Since")
	}
	tr.Disconnected()
	if !since().After(connected) {
		t.Errorf("disconnecting did not move Since")
	}
}

// TestTrackerPublishes checks what Start writes in the store directory: a
// change of state at once, the size of the store, and a last status once
// the run ends.
func TestTrackerPublishes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dbha-bin.000001"), make([]byte, 4096), 0o640); err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(dir, "c1", topology.MariaDB)
	stop := tr.Start(time.Hour, func(err error) { t.Error(err) }) // no tick: only changes publish
	tr.Connected("db1:3306", true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := ReadStatus(dir)
		if err == nil && st.Connected {
			if st.Primary != "db1:3306" || st.DiskBytes < 4096 {
				t.Errorf("published %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connection was not published at once: %+v, %v", st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tr.Received(10, time.Now())
	stop()
	st, err := ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Connected || st.Acknowledging || st.Bytes != 10 || st.Stale(time.Now()) {
		t.Errorf("last status %+v", st)
	}
}

// TestTrackerConcurrent reads the status while a stream's goroutines change
// it; run with -race.
func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker(t.TempDir(), "c1", topology.Postgres)
	stop := tr.Start(time.Millisecond, func(err error) { t.Error(err) })
	var wg sync.WaitGroup
	const n = 200
	wg.Go(func() {
		for i := range n {
			tr.Received(1, time.Now())
			tr.Event()
			tr.Heard(time.Now())
			tr.Flushed(topology.PostgresAt(topology.LSN(i+1), 1), time.Now())
		}
	})
	wg.Go(func() {
		for i := range n {
			if i%2 == 0 {
				tr.Connected("db1:5432", true)
			} else {
				tr.Disconnected()
			}
			tr.Failed(errors.New("x"))
		}
	})
	wg.Go(func() {
		for range n {
			_ = tr.Status()
		}
	})
	wg.Wait()
	stop()
	st := tr.Status()
	if st.Events != n || st.Bytes != n || st.Position.LSN() != n || st.Connected {
		t.Errorf("events %d, bytes %d, position %s, connected %v", st.Events, st.Bytes, st.Position, st.Connected)
	}
}
