package postgres

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

func TestFlushDue(t *testing.T) {
	sync := flushRule{Synchronous: true, Interval: time.Second}
	async := flushRule{Interval: time.Second}
	cases := []struct {
		name      string
		rule      flushRule
		unflushed int64
		idle      bool
		since     time.Duration
		want      bool
	}{
		{"nothing written: never", sync, 0, true, time.Hour, false},
		{"synchronous, nothing more buffered: at once", sync, 100, true, 0, true},
		{"synchronous, more buffered: wait for it", sync, 100, false, 0, false},
		{"synchronous, a long burst: bounded", sync, maxUnflushed, false, 0, true},
		{"synchronous, the interval passed", sync, 100, false, time.Second, true},
		{"asynchronous, idle: wait for the interval", async, 100, true, 500 * time.Millisecond, false},
		{"asynchronous, a big burst: still the interval", async, 10 * maxUnflushed, false, 500 * time.Millisecond, false},
		{"asynchronous, the interval passed", async, 100, true, time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rule.due(tc.unflushed, tc.idle, tc.since); got != tc.want {
				t.Fatalf("due = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFeedbackDue(t *testing.T) {
	sync := flushRule{Synchronous: true, Interval: time.Second}
	async := flushRule{Interval: time.Second}
	last := feedbackFor(0x3000100, 0x3000000)
	wrote := feedbackFor(0x3000200, 0x3000000)
	flushed := feedbackFor(0x3000200, 0x3000200)
	cases := []struct {
		name  string
		rule  flushRule
		now   feedback
		since time.Duration
		asked bool
		want  bool
	}{
		{"the primary asked", async, last, 0, true, true},
		{"the interval passed", async, last, time.Second, false, true},
		{"asynchronous: a new flush position waits for the interval", async, flushed, 10 * time.Millisecond, false, false},
		{"synchronous: a new flush position goes at once", sync, flushed, 10 * time.Millisecond, false, true},
		{"synchronous: written but not flushed does not", sync, wrote, 10 * time.Millisecond, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rule.feedbackDue(last, tc.now, tc.since, tc.asked); got != tc.want {
				t.Fatalf("feedbackDue = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFeedbackReportsOnlyFsynced checks the positions sent: flush and apply
// are the fsynced position even when it is zero or behind the write
// position (pglogrepl's helper would replace a zero flush by the write one).
func TestFeedbackReportsOnlyFsynced(t *testing.T) {
	cases := []struct {
		name             string
		written, flushed LSN
	}{
		{"nothing fsynced yet", 0x3000200, 0},
		{"fsync behind write", 0x3000200, 0x3000100},
		{"all fsynced", 0x3000200, 0x3000200},
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := feedbackFor(tc.written, tc.flushed).encode(now)
			if len(msg) != 1+4+34 || msg[0] != 'd' || binary.BigEndian.Uint32(msg[1:]) != 38 || msg[5] != 'r' {
				t.Fatalf("framing: % x", msg[:6])
			}
			body := msg[6:]
			w, f, a := binary.BigEndian.Uint64(body), binary.BigEndian.Uint64(body[8:]), binary.BigEndian.Uint64(body[16:])
			if LSN(w) != tc.written || LSN(f) != tc.flushed || LSN(a) != tc.flushed {
				t.Fatalf("write/flush/apply = %X/%X/%X, want %s/%s/%s", w, f, a, tc.written, tc.flushed, tc.flushed)
			}
			if us := int64(binary.BigEndian.Uint64(body[24:])); us != now.Sub(pgEpoch).Microseconds() {
				t.Fatalf("client time %d", us)
			}
			if body[32] != 0 {
				t.Fatalf("reply requested")
			}
		})
	}
}

func TestListsStandby(t *testing.T) {
	cases := []struct {
		list string
		name string
		want bool
	}{
		{"dbha", "dbha", true},
		{"DBHA", "dbha", true},
		{"postgres-2, dbha", "dbha", true},
		{"FIRST 1 (dbha, postgres-2)", "dbha", true},
		{"ANY 2 (postgres-2,postgres-3,dbha)", "dbha", true},
		{`2 ("dbha", s2)`, "dbha", true},
		{"*", "dbha_async", true},
		{"", "dbha", false},
		{"dbha", "dbha_async", false},
		{"FIRST 1 (dbha_async_x)", "dbha_async", false},
	}
	for _, tc := range cases {
		t.Run(tc.list+"/"+tc.name, func(t *testing.T) {
			if got := listsStandby(tc.list, tc.name); got != tc.want {
				t.Fatalf("listsStandby(%q, %q) = %v", tc.list, tc.name, got)
			}
		})
	}
}

func TestSyncWarning(t *testing.T) {
	cases := []struct {
		name        string
		synchronous bool
		list        string
		want        string
	}{
		{"synchronous and named", true, "FIRST 1 (dbha)", ""},
		{"synchronous but not named", true, "postgres-2", "does not name"},
		{"asynchronous and not named", false, "dbha", ""},
		{"asynchronous but matched by *", false, "*", "may wait for dbha"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := syncWarning(tc.synchronous, tc.list)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("syncWarning = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := backoff(i); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i, got, w)
		}
	}
	if backoff(1000) != 10*time.Second {
		t.Errorf("backoff does not stay bounded")
	}
}

func TestLiveness(t *testing.T) {
	cases := []struct {
		name       string
		silent     time.Duration
		ping, dead bool
	}{
		{"just heard", 0, false, false},
		{"quiet for a while: ask for an answer", pingAfter, true, false},
		{"silent too long: dead", receiveTimeout, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ping, dead := liveness(tc.silent)
			if ping != tc.ping || dead != tc.dead {
				t.Fatalf("liveness(%s) = %v, %v", tc.silent, ping, dead)
			}
		})
	}
}
