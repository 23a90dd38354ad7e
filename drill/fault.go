package drill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault is one fault as the lab injects it: a name (kill, host-down,
// isolate, split, manager-cut, hang, loss, ...), the host it strikes, the
// two sides of a split, the percentage of packets a loss drops.
type Fault struct {
	Name    string      `json:"name"`
	Host    string      `json:"host,omitempty"`
	Sides   [2][]string `json:"sides"`
	Percent int         `json:"percent,omitempty"`
	// Step: manager-crash and consul-down strike when the recovery
	// reaches this step ("<action>[:<n>]", e.g. promote, repoint:2).
	Step string `json:"step,omitempty"`
	// For: how long consul-down keeps Consul down.
	For time.Duration `json:"for,omitempty"`
}

func (f Fault) String() string {
	s := f.Name
	if f.Percent > 0 {
		s += fmt.Sprintf(" %d%%", f.Percent)
	}
	if f.Host != "" {
		s += " " + f.Host
	}
	if len(f.Sides[0]) > 0 || len(f.Sides[1]) > 0 {
		s += " " + FormatSides(f.Sides)
	}
	if f.Step != "" {
		s += " at " + f.Step
	}
	if f.For > 0 {
		s += " for " + f.For.String()
	}
	return s
}

// Faults injects faults and heals them: the lab of hosts, or, for the
// loopback drill, BreakerFaults. Calls come from one goroutine.
type Faults interface {
	// Inject puts f in place and returns once it is.
	Inject(ctx context.Context, f Fault) error
	// Heal undoes every fault Inject put in place; nil when there is none.
	Heal(ctx context.Context) error
	// HostOf names the host a database address lives on.
	HostOf(addr string) (string, error)
}

// Trapper is what Faults that can strike at a step of a recovery also
// offer: what the manager that reached the step reported, and whether
// one did.
type Trapper interface {
	TrapFired() (string, bool)
}

// expectation says whether a fault should make a new primary.
type expectation int

const (
	expectFailover expectation = iota
	expectNone
	expectBySides // a split: see splitExpectsFailover
)

// kind is what the drill knows of a fault by its name.
type kind struct {
	expect expectation
	// onPrimary: without a host, the fault strikes the primary's.
	onPrimary bool
	sides     bool // needs two sides
	percent   bool // needs a percentage
	// flap: injected and healed over and over within the observation
	// window, as FlapOptions say.
	flap bool
	// step: strikes at a step of the recovery that a host-down of the
	// primary's host starts (the fault is put in place first, then the
	// host-down); stepNeeded: a step must be given, else defaultStep.
	step        bool
	stepNeeded  bool
	defaultStep string
	// defaultFor: the fault's duration when none is given.
	defaultFor time.Duration
	// Targets from the issue that set them (0: none).
	targetMedian, targetMax time.Duration
}

// kinds is the catalogue: what each fault should cause.
var kinds = map[string]kind{
	"kill":      {expect: expectFailover, onPrimary: true, targetMedian: time.Second},
	"host-down": {expect: expectFailover, onPrimary: true, targetMedian: 2500 * time.Millisecond, targetMax: 4 * time.Second},
	"hang":      {expect: expectFailover, onPrimary: true, targetMedian: 4 * time.Second, targetMax: 6 * time.Second},
	"isolate":   {expect: expectFailover, onPrimary: true},
	// consul-down: the managers' Consul servers stop once the recovery
	// started (or at --step) and start again after For.
	"consul-down": {expect: expectFailover, onPrimary: true, step: true, defaultStep: "lock", defaultFor: 5 * time.Second},
	// manager-crash: kill -9 of the manager running the recovery at --step.
	"manager-crash": {expect: expectFailover, onPrimary: true, step: true, stepNeeded: true},
	"switchover":    {expect: expectFailover},
	"split":         {expect: expectBySides, sides: true},
	"manager-cut":   {expect: expectNone, onPrimary: true},
	"loss":          {expect: expectNone, onPrimary: true, percent: true},
	"flap":          {expect: expectNone, onPrimary: true, flap: true},
}

// FaultNames lists the faults the drill knows, sorted.
func FaultNames() []string {
	var out []string
	for n := range kinds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Plan is a fault ready to inject and what it should cause.
type Plan struct {
	Fault          Fault `json:"fault"`
	ExpectFailover bool  `json:"expect_failover"`
	// Flap: the drill injects and heals the fault in cycles.
	Flap bool `json:"flap,omitempty"`
}

// FlapFault is what a flap puts in place and takes away, cycle after
// cycle: the primary's host cut off from dbha and its replicas (its
// clients still reach it), each time for less than detection takes.
const FlapFault = "isolate"

// Injected are the faults the lab puts in place, in order: a flap's
// cycles are short isolations of its host; a fault at a step of the
// recovery is armed first (with no host), then the primary's host goes
// down, which starts the recovery.
func (p Plan) Injected() []Fault {
	f := p.Fault
	if p.Flap {
		f.Name = FlapFault
	}
	if !kinds[f.Name].step {
		return []Fault{f}
	}
	armed := Fault{Name: f.Name, Step: f.Step, For: f.For}
	return []Fault{armed, {Name: "host-down", Host: f.Host}}
}

// Expect overrides the catalogue's expectation: "failover" or "none"; ""
// keeps the catalogue's.
type Expect string

// PlanFault completes f for a cluster whose primary lives on primaryHost:
// a fault on the primary without a host gets the primary's; checks what the
// fault needs; and says whether it should cause a failover. dbHosts are the
// hosts of the cluster's database servers and managers those of dbha's
// managers (for a split). A fault the catalogue does not know is accepted
// only with an explicit expectation. Pure.
func PlanFault(f Fault, expect Expect, primaryHost string, dbHosts, managers []string) (Plan, error) {
	k, known := kinds[f.Name]
	if !known && expect == "" {
		return Plan{}, fmt.Errorf("fault %q: unknown (known: %s); give the expected outcome to run it anyway", f.Name, strings.Join(FaultNames(), ", "))
	}
	if k.onPrimary && f.Host == "" {
		f.Host = primaryHost
	}
	if k.sides && (len(f.Sides[0]) == 0 || len(f.Sides[1]) == 0) {
		return Plan{}, fmt.Errorf("fault %s: needs two sides (A,B|C,D)", f.Name)
	}
	sides, err := resolveRoles(f.Sides, primaryHost, dbHosts)
	if err != nil {
		return Plan{}, fmt.Errorf("fault %s: %w", f.Name, err)
	}
	f.Sides = sides
	if k.percent && (f.Percent < 1 || f.Percent > 100) {
		return Plan{}, fmt.Errorf("fault %s: percent %d, want 1 to 100", f.Name, f.Percent)
	}
	switch {
	case f.Step != "" && !k.step:
		return Plan{}, fmt.Errorf("fault %s: a step is for manager-crash and consul-down only", f.Name)
	case k.stepNeeded && f.Step == "":
		return Plan{}, fmt.Errorf("fault %s: needs the step of the recovery to strike at (--step, e.g. promote)", f.Name)
	case f.Step == "":
		f.Step = k.defaultStep
	}
	if f.For == 0 {
		f.For = k.defaultFor
	}
	p := Plan{Fault: f, Flap: k.flap}
	switch {
	case expect == "failover":
		p.ExpectFailover = true
	case expect == "none":
	case expect != "":
		return Plan{}, fmt.Errorf("expected outcome %q: use failover or none", expect)
	case k.expect == expectFailover:
		p.ExpectFailover = true
	case k.expect == expectBySides:
		if p.ExpectFailover, err = splitExpectsFailover(f.Sides, primaryHost, dbHosts, managers); err != nil {
			return Plan{}, err
		}
	}
	return p, nil
}

// splitExpectsFailover: a split should move the primary when the side
// without it holds a strict majority of the cluster's voters — its
// database hosts and dbha's managers, as checks counts them — with a
// manager to act and a database host to promote. In every other case (the
// primary's side with the majority, or a tie) a promotion is a failover
// from the wrong side.
func splitExpectsFailover(sides [2][]string, primaryHost string, dbHosts, managers []string) (bool, error) {
	mine := slices.IndexFunc(sides[:], func(s []string) bool { return slices.Contains(s, primaryHost) })
	if mine < 0 {
		return false, fmt.Errorf("split: the primary's host %s is on neither side", primaryHost)
	}
	other := sides[1-mine]
	on := func(hosts []string) int {
		n := 0
		for _, h := range hosts {
			if slices.Contains(other, h) {
				n++
			}
		}
		return n
	}
	voters := len(dbHosts) + len(managers)
	return on(managers) > 0 && on(dbHosts) > 0 && 2*(on(dbHosts)+on(managers)) > voters, nil
}

// resolveRoles names hosts by role in a split's sides, so that one
// command line strikes the same shape whatever host is primary now:
// "primary" is the primary's host, "replica-N" the N-th of the cluster's
// other database hosts in dbHosts' order. Other names pass unchanged.
func resolveRoles(sides [2][]string, primaryHost string, dbHosts []string) ([2][]string, error) {
	var replicas []string
	for _, h := range dbHosts {
		if h != primaryHost {
			replicas = append(replicas, h)
		}
	}
	var out [2][]string
	for i, side := range sides {
		for _, name := range side {
			var n int
			switch _, err := fmt.Sscanf(name, "replica-%d", &n); {
			case name == "primary":
				name = primaryHost
			case err == nil && strings.HasPrefix(name, "replica-"):
				if n < 1 || n > len(replicas) {
					return out, fmt.Errorf("%s: the cluster has %d replica host(s)", name, len(replicas))
				}
				name = replicas[n-1]
			}
			if slices.Contains(out[0], name) || slices.Contains(out[1], name) {
				return out, fmt.Errorf("sides: %s named twice", name)
			}
			out[i] = append(out[i], name)
		}
	}
	return out, nil
}

// ParseSides reads "A,B|C,D": two non-empty sides, no host on both.
func ParseSides(s string) ([2][]string, error) {
	var out [2][]string
	halves := strings.Split(s, "|")
	if len(halves) != 2 {
		return out, fmt.Errorf("sides %q: want two sides, A,B|C,D", s)
	}
	seen := map[string]bool{}
	for i, h := range halves {
		for _, name := range strings.Split(h, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if seen[name] {
				return out, fmt.Errorf("sides %q: %s named twice", s, name)
			}
			seen[name] = true
			out[i] = append(out[i], name)
		}
		if len(out[i]) == 0 {
			return out, fmt.Errorf("sides %q: side %d is empty", s, i+1)
		}
	}
	return out, nil
}

// FormatSides writes sides as ParseSides reads them.
func FormatSides(s [2][]string) string {
	return strings.Join(s[0], ",") + "|" + strings.Join(s[1], ",")
}

// BreakerFaults lets a Breaker stand for the lab in the loopback drill: a
// host is an instance's address, "kill" and "switchover" break it through
// b and Heal restarts what was broken.
func BreakerFaults(b Breaker) Faults { return &breakerFaults{b: b} }

type breakerFaults struct {
	b      Breaker
	mu     sync.Mutex
	broken []string
}

func (f *breakerFaults) Inject(ctx context.Context, fault Fault) error {
	if fault.Name != "kill" && fault.Name != "switchover" {
		return fmt.Errorf("fault %s: only kill and switchover without a lab of hosts", fault.Name)
	}
	if err := f.b.Kill(ctx, fault.Host); err != nil {
		return fmt.Errorf("%s %s: %w", fault.Name, fault.Host, err)
	}
	f.mu.Lock()
	f.broken = append(f.broken, fault.Host)
	f.mu.Unlock()
	return nil
}

func (f *breakerFaults) Heal(ctx context.Context) error {
	f.mu.Lock()
	broken := f.broken
	f.broken = nil
	f.mu.Unlock()
	var errs []error
	for _, addr := range broken {
		if err := f.b.Restart(ctx, addr); err != nil {
			errs = append(errs, fmt.Errorf("restart %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

func (f *breakerFaults) HostOf(addr string) (string, error) { return addr, nil }
