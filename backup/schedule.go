package backup

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser accepts standard five-field specs, an optional leading
// seconds field, and descriptors (@daily, @every 10m).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is when a cluster's scheduled backups start. Every manager that
// parses the same spec and jitter computes the same instants, so they can
// agree on who runs each one.
type Schedule struct {
	spec   cron.Schedule
	every  time.Duration // @every: slots fall on multiples of it
	jitter time.Duration
}

// Slot is one scheduled backup. Time names it (managers claim a slot by
// it); At is when it starts: Time plus the cluster's jitter for it.
type Slot struct {
	Time time.Time
	At   time.Time
}

// ParseSchedule reads a cron spec: five fields (minute hour day-of-month
// month day-of-week), six with leading seconds, or a descriptor such as
// @daily or @every 6h. Times are UTC unless the spec starts with
// CRON_TZ=<zone>, because managers on hosts with different local zones
// must agree on the instant. jitter, at least 0, delays each slot by a
// duration in [0, jitter) that depends only on the cluster and the slot.
func ParseSchedule(spec string, jitter time.Duration) (Schedule, error) {
	if jitter < 0 {
		return Schedule{}, fmt.Errorf("jitter %v is negative", jitter)
	}
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Schedule{}, errors.New("the schedule is empty")
	}
	// The parser slices past the zone without checking for a space; a
	// spec that is only a zone must be an error, not a panic.
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		if !strings.Contains(spec, " ") {
			return Schedule{}, fmt.Errorf("%q: a time zone with no schedule after it", spec)
		}
	} else {
		spec = "CRON_TZ=UTC " + spec
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return Schedule{}, fmt.Errorf("%q: %w", strings.TrimPrefix(spec, "CRON_TZ=UTC "), err)
	}
	out := Schedule{spec: s, jitter: jitter}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		out.every = every.Delay
	}
	// A spec like "0 0 30 2 *" parses but never fires: the library finds
	// no time within five years of any start, which it does for every
	// spec that fires at all (a leap day comes within five years).
	if out.next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Schedule{}, fmt.Errorf("%q never fires", strings.TrimPrefix(spec, "CRON_TZ=UTC "))
	}
	return out, nil
}

// Next returns the first slot of cluster that starts after after. A slot
// whose time has passed but whose jittered start has not is still to come.
// The zero Slot means the schedule never fires again. It is pure.
func (s Schedule) Next(cluster string, after time.Time) Slot {
	after = after.UTC()
	t := s.next(after.Add(-s.jitter))
	for {
		if t.IsZero() {
			return Slot{}
		}
		at := t.Add(Jitter(cluster, t, s.jitter))
		if at.After(after) {
			return Slot{Time: t, At: at}
		}
		t = s.next(t)
	}
}

// next is the schedule's first time after t. @every counts from t in the
// cron library; here its slots are aligned to multiples of the interval
// instead, so that managers started at different moments agree.
func (s Schedule) next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Truncate(s.every).Add(s.every)
	}
	return s.spec.Next(t)
}

// Jitter is the delay of cluster's slot at t: in [0, max), and the same on
// every manager because it is a hash of the cluster's name and the slot.
func Jitter(cluster string, t time.Time, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(cluster))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(t.UnixNano(), 10)))
	return time.Duration(h.Sum64() % uint64(max))
}

// MaxAttempts is how many times a scheduled backup is tried in its slot:
// once, and once more after a failure, against the topology as it is then.
const MaxAttempts = 2

// Retry decides whether a scheduled backup that failed on its attempt-th
// try (counting from 1) is tried again. A backup cut short because the
// daemon is stopping is not: there is no one left to run it.
func Retry(attempt int, stopping bool) bool {
	return !stopping && attempt < MaxAttempts
}

// FailureReason says why a run failed, from what the runner returned: its
// error, else the reason recorded in a failed entry, else "" for a backup
// that is done.
func FailureReason(e Entry, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case e.Status == Failed && e.Error != "":
		return e.Error
	case e.Status != Done:
		return fmt.Sprintf("the backup ended with status %q", e.Status)
	}
	return ""
}
