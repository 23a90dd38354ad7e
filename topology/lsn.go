package topology

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead log location: a byte offset into the WAL
// stream of the whole cluster, shared by all timelines.
type LSN uint64

// ParseLSN reads an LSN in PostgreSQL's text form "16/B374D848": two groups of
// one to eight hex digits (either case) separated by a slash, nothing else,
// as pg_lsn_in accepts them.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: missing '/'", s)
	}
	h, err := parseLSNHalf(hi)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: high half: %w", s, err)
	}
	l, err := parseLSNHalf(lo)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: low half: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

func parseLSNHalf(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 8 {
		return 0, fmt.Errorf("%q is not 1 to 8 hex digits", s)
	}
	// Base 16 rejects signs, "0x" and underscores; the length check above
	// already bounds the value to 32 bits.
	return strconv.ParseUint(s, 16, 32)
}

// String returns the LSN as PostgreSQL prints it: upper-case hex halves
// without leading zeros, "16/B374D848", "0/0".
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&math.MaxUint32)
}

// MarshalText writes the LSN in PostgreSQL's form, so an LSN reads the same
// in JSON, configuration and logs.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// TimelineSwitch is one line of a PostgreSQL NNN.history file: timeline
// Timeline ended at WAL location Switch, where its successor began.
type TimelineSwitch struct {
	Timeline uint32 `json:"timeline"`
	Switch   LSN    `json:"switch"`
}

// ParseTimelineHistory reads the content of a PostgreSQL timeline history
// file (or the TIMELINE_HISTORY replication command's reply). Each line is
// "<timeline>\t<switch LSN>\t<reason>"; the reason is ignored, blank lines
// and lines starting with '#' are skipped. As PostgreSQL itself requires,
// timelines must increase from line to line: the file of timeline N lists
// every ancestor of N, oldest first.
func ParseTimelineHistory(content string) ([]TimelineSwitch, error) {
	var out []TimelineSwitch
	for i, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sw, err := parseHistoryLine(line)
		if err != nil {
			return nil, fmt.Errorf("parse timeline history line %d %q: %w", i+1, line, err)
		}
		if n := len(out); n > 0 && sw.Timeline <= out[n-1].Timeline {
			return nil, fmt.Errorf("parse timeline history line %d %q: timeline %d does not follow timeline %d",
				i+1, line, sw.Timeline, out[n-1].Timeline)
		}
		out = append(out, sw)
	}
	return out, nil
}

func parseHistoryLine(line string) (TimelineSwitch, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return TimelineSwitch{}, fmt.Errorf("want a timeline and a switch LSN")
	}
	tl, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return TimelineSwitch{}, fmt.Errorf("timeline: %w", err)
	}
	if tl == 0 {
		return TimelineSwitch{}, fmt.Errorf("timeline 0 does not exist")
	}
	lsn, err := ParseLSN(f[1])
	if err != nil {
		return TimelineSwitch{}, err
	}
	return TimelineSwitch{Timeline: uint32(tl), Switch: lsn}, nil
}

// PostgresAt is the PostgreSQL position at lsn on the given timeline.
func PostgresAt(lsn LSN, timeline uint32) Position {
	return Position{engine: Postgres, lsn: lsn, timeline: timeline}
}

// WithHistory returns p with h as the timeline history of the instance that
// reported p (ParseTimelineHistory of its current timeline's history file).
// Compare needs it to tell a standby that can follow a newer timeline from a
// forked one. Positions of other engines are returned unchanged.
func (p Position) WithHistory(h []TimelineSwitch) Position {
	if p.engine != Postgres {
		return p
	}
	p.history = nil
	if len(h) > 0 {
		p.history = slices.Clone(h)
	}
	return p
}

// TimelineAt is the timeline on which lsn lies in p's lineage: the
// ancestor that was current at lsn (a timeline's WAL ends where the next
// begins, at its switch LSN), or p's own timeline past every switch.
func (p Position) TimelineAt(lsn LSN) uint32 {
	for _, sw := range p.history {
		if lsn < sw.Switch {
			return sw.Timeline
		}
	}
	return p.timeline
}

// BytesBehind is how many bytes of WAL a PostgreSQL replica lacks:
// primary.LSN − replica.LSN when Compare(replica, primary) is Behind, and 0
// otherwise (equal, ahead, diverged, other engines, zero positions). A 0
// therefore does not mean caught up; Compare says that.
func BytesBehind(replica, primary Position) int64 {
	if replica.engine != Postgres {
		return 0
	}
	if o, err := Compare(replica, primary); err != nil || o != Behind || primary.lsn <= replica.lsn {
		return 0
	}
	return clampInt64(uint64(primary.lsn - replica.lsn))
}

// comparePostgres orders two PostgreSQL positions. On one timeline the LSN
// decides. Across timelines only the higher timeline can contain the lower
// one's WAL, and only up to the point where the lower timeline was left:
// the switch point from the higher position's history. A position on the
// lower timeline past that point holds WAL the other never had (a forked
// timeline, which needs pg_rewind), so it is Diverged, never Ahead.
func comparePostgres(a, b Position) Order {
	if a.timeline == b.timeline {
		return cmpOrder(a.lsn, b.lsn)
	}
	lo, hi, flip := a, b, false
	if a.timeline > b.timeline {
		lo, hi, flip = b, a, true
	}
	limit, ok := sharedUpTo(hi, lo.timeline)
	if !ok {
		return Diverged
	}
	if lo.lsn > limit {
		return Diverged
	}
	if flip {
		return Ahead // a is hi
	}
	return Behind
}

// sharedUpTo returns how far hi holds the WAL of the lower timeline tl. With
// a history, that is tl's switch point. A non-empty history lists every
// ancestor of its timeline, so a timeline absent from it is no ancestor at
// all and nothing is shared: ok is false. Without any history the timelines
// are taken as linear and hi holds tl's WAL up to hi's own LSN.
func sharedUpTo(hi Position, tl uint32) (limit LSN, ok bool) {
	if len(hi.history) == 0 {
		return hi.lsn, true
	}
	for _, sw := range hi.history {
		if sw.Timeline == tl {
			return sw.Switch, true
		}
	}
	return 0, false
}

func cmpOrder[T ~uint64](a, b T) Order {
	switch {
	case a < b:
		return Behind
	case a > b:
		return Ahead
	}
	return Equal
}
