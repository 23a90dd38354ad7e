package schedule

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

// Spec is a parsed schedule: when a cluster's scheduled runs start. Every
// manager that parses the same spec and jitter computes the same instants,
// so they can agree on who runs each one.
type Spec struct {
	spec   cron.Schedule
	every  time.Duration // @every: slots fall on multiples of it
	jitter time.Duration
}

// Slot is one scheduled run. Time names it (managers claim a slot by
// it); At is when it starts: Time plus the cluster's jitter for it.
type Slot struct {
	Time time.Time
	At   time.Time
}

// Parse reads a cron spec: five fields (minute hour day-of-month
// month day-of-week), six with leading seconds, or a descriptor such as
// @daily or @every 6h. Times are UTC unless the spec starts with
// CRON_TZ=<zone>, because managers on hosts with different local zones
// must agree on the instant. jitter, at least 0, delays each slot by a
// duration in [0, jitter) that depends only on the cluster and the slot.
func Parse(spec string, jitter time.Duration) (Spec, error) {
	if jitter < 0 {
		return Spec{}, fmt.Errorf("jitter %v is negative", jitter)
	}
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Spec{}, errors.New("the schedule is empty")
	}
	// The parser slices past the zone without checking for a space; a
	// spec that is only a zone must be an error, not a panic.
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		if !strings.Contains(spec, " ") {
			return Spec{}, fmt.Errorf("%q: a time zone with no schedule after it", spec)
		}
	} else {
		spec = "CRON_TZ=UTC " + spec
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return Spec{}, fmt.Errorf("%q: %w", strings.TrimPrefix(spec, "CRON_TZ=UTC "), err)
	}
	out := Spec{spec: s, jitter: jitter}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		out.every = every.Delay
	}
	// A spec like "0 0 30 2 *" parses but never fires: the library finds
	// no time within five years of any start, which it does for every
	// spec that fires at all (a leap day comes within five years).
	if out.next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Spec{}, fmt.Errorf("%q never fires", strings.TrimPrefix(spec, "CRON_TZ=UTC "))
	}
	return out, nil
}

// Next returns the first slot of cluster that starts after after. A slot
// whose time has passed but whose jittered start has not is still to come.
// The zero Slot means the schedule never fires again. It is pure.
func (s Spec) Next(cluster string, after time.Time) Slot {
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
func (s Spec) next(t time.Time) time.Time {
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
