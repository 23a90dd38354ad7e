package schedule

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParse(t *testing.T) {
	cases := []struct {
		name   string
		spec   string
		jitter time.Duration
		want   string // substring of the error; "" means valid
	}{
		{"five fields", "0 2 * * *", 0, ""},
		{"leading seconds", "*/5 * * * * *", 0, ""},
		{"descriptor", "@daily", time.Hour, ""},
		{"every", "@every 10s", 0, ""},
		{"time zone", "CRON_TZ=Europe/Paris 0 2 * * *", 0, ""},
		{"empty", "  ", 0, "empty"},
		{"garbage", "at two", 0, `"at two"`},
		{"minute out of range", "61 * * * *", 0, "61"},
		{"too many fields", "0 0 2 * * * *", 0, "fields"},
		{"unknown descriptor", "@fortnightly", 0, "unrecognized descriptor"},
		{"unknown zone", "CRON_TZ=Nowhere/Town 0 2 * * *", 0, "Nowhere/Town"},
		{"zone alone", "CRON_TZ=UTC", 0, "no schedule after it"},
		{"never fires", "0 0 30 2 *", 0, "never fires"},
		{"negative jitter", "@daily", -time.Second, "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.spec, tc.jitter)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestSpecNext(t *testing.T) {
	cases := []struct {
		name     string
		spec     string
		after    string
		wantSlot string
	}{
		{"later today", "0 2 * * *", "2024-05-01T01:00:00Z", "2024-05-01T02:00:00Z"},
		{"a slot is never returned at its own instant", "0 2 * * *", "2024-05-01T02:00:00Z", "2024-05-02T02:00:00Z"},
		{"UTC whatever the caller's zone", "0 2 * * *", "2024-05-01T03:30:00+02:00", "2024-05-01T02:00:00Z"},
		{"named zone", "CRON_TZ=Europe/Paris 0 2 * * *", "2024-05-01T00:30:00Z", "2024-05-02T00:00:00Z"},
		{"leading seconds", "*/20 * * * * *", "2024-05-01T10:00:05Z", "2024-05-01T10:00:20Z"},
		{"every is aligned, not counted from after", "@every 3s", "2024-05-01T10:00:01.5Z", "2024-05-01T10:00:03Z"},
		{"every hour", "@every 1h", "2024-05-01T10:59:59Z", "2024-05-01T11:00:00Z"},
		{"weekly", "@weekly", "2024-05-01T10:00:00Z", "2024-05-05T00:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.spec, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Next("shop", at(tc.after))
			if !got.Time.Equal(at(tc.wantSlot)) || !got.At.Equal(got.Time) {
				t.Fatalf("Next(%s) = %+v, want slot %s starting then", tc.after, got, tc.wantSlot)
			}
		})
	}
}

func TestSpecNextWithJitter(t *testing.T) {
	const jitter = 30 * time.Minute
	s, err := Parse("0 2 * * *", jitter)
	if err != nil {
		t.Fatal(err)
	}
	slot := at("2024-05-01T02:00:00Z")
	delay := Jitter("shop", slot, jitter)
	if delay < 0 || delay >= jitter {
		t.Fatalf("jitter %v outside [0, %v)", delay, jitter)
	}
	cases := []struct {
		name     string
		after    time.Time
		wantSlot time.Time
	}{
		{"before the slot", slot.Add(-time.Hour), slot},
		{"after the slot's time, before its start", slot.Add(delay - time.Nanosecond), slot},
		{"at its start: the next day's", slot.Add(delay), slot.AddDate(0, 0, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Next("shop", tc.after)
			want := Slot{Time: tc.wantSlot, At: tc.wantSlot.Add(Jitter("shop", tc.wantSlot, jitter))}
			if !got.Time.Equal(want.Time) || !got.At.Equal(want.At) {
				t.Fatalf("Next(%s) = %+v, want %+v", tc.after, got, want)
			}
		})
	}
}

func TestJitterIsTheSameOnEveryManager(t *testing.T) {
	slot := at("2024-05-01T02:00:00Z")
	// The same cluster and slot give the same delay, whatever the zone the
	// time is expressed in.
	if a, b := Jitter("shop", slot, time.Hour), Jitter("shop", slot.In(time.FixedZone("x", 3600)), time.Hour); a != b {
		t.Fatalf("jitter %v and %v for the same slot", a, b)
	}
	// Clusters (and slots) are spread: eight clusters do not all share one
	// delay.
	seen := map[time.Duration]bool{}
	for _, c := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		seen[Jitter(c, slot, time.Hour)] = true
	}
	if len(seen) < 2 {
		t.Fatalf("eight clusters share one jitter: %v", seen)
	}
	if d := Jitter("shop", slot, 0); d != 0 {
		t.Fatalf("no jitter configured, got %v", d)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "@every 3s", "CRON_TZ=UTC", "TZ=UTC @daily", "*/5 * * * * *", "0 0 30 2 *"} {
		f.Add(s)
	}
	after := at("2024-05-01T02:00:00Z")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec, time.Minute)
		if err != nil {
			return
		}
		// A schedule that parses always has a slot strictly ahead.
		if got := s.Next("c", after); !got.At.After(after) || got.At.Before(got.Time) {
			t.Fatalf("%q: Next(%s) = %+v", spec, after, got)
		}
	})
}
