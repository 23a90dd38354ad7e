package postgres

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// arrival is when a WAL message arrived: dbha's clock, and the primary's
// send time carried in the message.
type arrival struct {
	Received time.Time
	Server   time.Time
}

// sample is one line of a segment's arrivals file.
//
// Kind 'w': the WAL from LSN on arrived at Received (the first message of
// that wall-clock second), and everything up to the next 'w' line arrived
// within the same second: so lag in seconds is accurate to one second.
// Kind 'e': the file was closed with WAL up to LSN written; the newest of
// it arrived at Received.
// Flushed is how far the segment was fsynced when the line was written, so
// the largest Flushed tells how much a .partial held even without a status.
type sample struct {
	Kind     byte
	LSN      LSN
	Received time.Time
	Server   time.Time
	Flushed  LSN
}

// The line format is tab-separated text, one sample per line:
// kind, LSN, received (Unix ns), server time (Unix ns), flushed LSN.
func (s sample) line() string {
	return fmt.Sprintf("%c\t%s\t%d\t%d\t%s\n", s.Kind, s.LSN, unixNano(s.Received), unixNano(s.Server), s.Flushed)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// parseSamples reads an arrivals file. Lines it cannot read (a line torn
// by a crash) are skipped: the file is advisory.
func parseSamples(content []byte) []sample {
	var out []sample
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 5 || len(f[0]) != 1 {
			continue
		}
		lsn, err1 := topology.ParseLSN(f[1])
		rec, err2 := strconv.ParseInt(f[2], 10, 64)
		srv, err3 := strconv.ParseInt(f[3], 10, 64)
		fl, err4 := topology.ParseLSN(f[4])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		s := sample{Kind: f[0][0], LSN: lsn, Received: time.Unix(0, rec), Flushed: fl}
		if srv != 0 {
			s.Server = time.Unix(0, srv)
		}
		out = append(out, s)
	}
	return out
}

// arrivalLog appends samples to the arrivals file of the segment being
// written. The file is not fsynced: losing its tail in a crash costs lag
// precision, never WAL.
type arrivalLog struct {
	dir  string
	f    *os.File
	last int64 // Unix second of the last 'w' sample written in this run
	// seen: the highest 'w' LSN in the file when it was opened. A rewritten
	// .partial re-receives WAL that arrived earlier; its first arrival stands.
	seen    LSN
	hasSeen bool
	latest  arrival // of the newest WAL written to the file in this run
	err     error
}

// newArrivalLog returns the log that writes arrivals files into dir; with
// dir "" it records nothing (a one-shot save has no lag to measure).
func newArrivalLog(dir string) *arrivalLog { return &arrivalLog{dir: dir} }

// open starts the arrivals file of segment name (closing none: the writer
// closes first).
func (a *arrivalLog) open(name string) error {
	if a.dir == "" {
		return nil
	}
	path := filepath.Join(a.dir, name)
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	a.hasSeen, a.seen, a.last, a.latest = false, 0, 0, arrival{}
	for _, s := range parseSamples(old) {
		if s.Kind == 'w' && (!a.hasSeen || s.LSN > a.seen) {
			a.seen, a.hasSeen = s.LSN, true
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	a.f = f
	return nil
}

// note records that WAL from lsn arrived, if it is the first to arrive in
// this second.
func (a *arrivalLog) note(lsn, flushed LSN, at arrival) {
	if a.f == nil {
		return
	}
	a.latest = at
	if a.hasSeen && lsn <= a.seen {
		return
	}
	sec := at.Received.Unix()
	if sec == a.last {
		return
	}
	a.last = sec
	a.write(sample{Kind: 'w', LSN: lsn, Received: at.Received, Server: at.Server, Flushed: flushed})
}

// close ends the file with how far the segment was written and flushed,
// and when the newest of it arrived.
func (a *arrivalLog) close(written, flushed LSN) {
	if a.f == nil {
		return
	}
	if !a.latest.Received.IsZero() {
		a.write(sample{Kind: 'e', LSN: written, Received: a.latest.Received, Server: a.latest.Server, Flushed: flushed})
	}
	if err := a.f.Close(); err != nil && a.err == nil {
		a.err = err
	}
	a.f = nil
}

func (a *arrivalLog) write(s sample) {
	if _, err := a.f.WriteString(s.line()); err != nil && a.err == nil {
		a.err = fmt.Errorf("write %s: %w", a.f.Name(), err)
	}
}

// Err is the first write error, if any: arrivals are advisory, so the
// stream logs it once instead of stopping.
func (a *arrivalLog) Err() error { return a.err }

// lagOf is how far a standby at p is behind a store that has flushed up to
// flushed: Bytes is the WAL it lacks; Seconds is now minus the time the
// first WAL it lacks arrived, found in samples (sorted by LSN). A standby at
// or past flushed lacks nothing.
func lagOf(p, flushed LSN, samples []sample, now time.Time) binlog.Lag {
	if p >= flushed {
		return binlog.Lag{}
	}
	lag := binlog.Lag{Bytes: int64(flushed - p)}
	if t, ok := arrivedAt(samples, p); ok && now.After(t) {
		lag.Seconds = now.Sub(t).Seconds()
	}
	return lag
}

// arrivedAt is when the WAL at p arrived: the time of the last 'w' sample
// at or before p, or of the first one when p is older than every sample.
func arrivedAt(samples []sample, p LSN) (time.Time, bool) {
	var w []sample
	for _, s := range samples {
		if s.Kind == 'w' {
			w = append(w, s)
		}
	}
	if len(w) == 0 {
		return time.Time{}, false
	}
	i := sort.Search(len(w), func(i int) bool { return w[i].LSN > p })
	if i == 0 {
		return w[0].Received, true
	}
	return w[i-1].Received, true
}
