package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Breaker crashes an instance and starts it again (the loopback lab, or an
// operator's kill and restart commands); BreakerFaults makes it a Faults.
type Breaker interface {
	Kill(ctx context.Context, addr string) error
	Restart(ctx context.Context, addr string) error
}

// Cluster is what the drill asks about the cluster under test. Its methods
// may be called from several goroutines at once (Writer by every writer).
type Cluster interface {
	// Healthy returns the primary once every instance is up and replicates
	// from it, with no problem reported; an error until then.
	Healthy(ctx context.Context) (string, error)
	// Writer resolves the writer endpoint as a client does (Consul DNS).
	Writer(ctx context.Context) (string, error)
	// Ack lifts the anti-flap block a recovery left.
	Ack(ctx context.Context) error
	// Instances are the addresses of the cluster's database servers.
	Instances() []string
	// State reads the cluster as it stands (StateOf a fresh discovery),
	// with what the latest recovery rewound on old added (AddRewound).
	State(ctx context.Context, old string) (AfterHeal, error)
}

// Lab modes a run states.
const (
	LabLoopback = "loopback" // every server on 127.0.0.1: a killed process resets its connections at once
	LabHosts    = "hosts"    // servers, managers and clients in network namespaces of their own
	LabExternal = "external" // an operator's cluster, broken by its drill commands
)

// Options say what a drill does and bound every phase of a run.
type Options struct {
	Runs int
	// Fault is what each run injects; a fault on the primary without a
	// host strikes the primary's host. Expect overrides the catalogue's
	// expected outcome (see PlanFault).
	Fault  Fault
	Expect Expect
	// Cluster, Engine, Mode ("async" or "lossless", "+guards" with write leases) and Lab (LabLoopback,
	// LabHosts, LabExternal) are stated in every run.
	Cluster, Engine, Mode, Lab string
	// Managers are the hosts of dbha's managers (the lab of hosts), for a
	// split's expected outcome.
	Managers []string
	Writers  WriterOptions
	// WarmUp is how long the writers write before the fault, and after the
	// new primary's first acknowledgement.
	WarmUp time.Duration
	// FailoverTimeout bounds the wait for a new primary after a fault that
	// should cause one; Observe is how long a fault that should not stays
	// in place.
	FailoverTimeout, Observe time.Duration
	Flap                     FlapOptions
	// WholeTimeout bounds the wait for a whole cluster before the fault and
	// after the heal; CatchUp how long replicas get to hold the primary's
	// rows once the writers stopped (a replica whose rows stop growing for
	// 5 s is not waited for); ReadTimeout bounds the reads of the final
	// rows and state (CatchUp included).
	WholeTimeout, CatchUp, ReadTimeout time.Duration
	// LedgerWait is how long, after a failover, the drill looks for the
	// record of what was rewound on the old primary (written just after
	// the rejoin).
	LedgerWait time.Duration
	// TargetMedian and TargetMax bound the RTO (0: the catalogue's, which
	// may be none). A run passes with an RTO under TargetMax; the drill
	// when the median is under TargetMedian too.
	TargetMedian, TargetMax time.Duration
	Log                     io.Writer // progress lines; may be nil
}

// FlapOptions: the fault is in place for On, healed for Off, Cycles times.
type FlapOptions struct {
	On, Off time.Duration
	Cycles  int
}

// DefaultOptions: one kill, 8 writers, 1 s of writes around the fault, a
// minute for a new primary, 10 s of observation, two minutes to be whole.
func DefaultOptions() Options {
	return Options{Runs: 1, Fault: Fault{Name: "kill"}, Mode: "async", Lab: LabLoopback,
		Writers: DefaultWriterOptions(), WarmUp: time.Second,
		FailoverTimeout: time.Minute, Observe: 10 * time.Second,
		Flap:         FlapOptions{On: 500 * time.Millisecond, Off: 1500 * time.Millisecond, Cycles: 5},
		WholeTimeout: 2 * time.Minute, CatchUp: time.Minute, ReadTimeout: 2 * time.Minute, LedgerWait: 3 * time.Second}
}

// Validate names the first option out of range.
func (o Options) Validate() error {
	if err := o.Writers.Validate(); err != nil {
		return err
	}
	switch {
	case o.Runs < 1 || o.Runs > 1000:
		return fmt.Errorf("runs: %d, want 1 to 1000", o.Runs)
	case o.Fault.Name == "":
		return errors.New("no fault given")
	case o.WarmUp <= 0 || o.FailoverTimeout <= 0 || o.Observe <= 0 || o.WholeTimeout <= 0 || o.CatchUp <= 0 || o.ReadTimeout <= 0 || o.LedgerWait < 0:
		return errors.New("warm-up, failover timeout, observation, whole timeout, catch-up and read timeout must be positive, ledger wait not negative")
	case o.Flap.On <= 0 || o.Flap.Off <= 0 || o.Flap.Cycles < 1 || o.Flap.Cycles > 100:
		return errors.New("flap: on and off must be positive, cycles 1 to 100")
	}
	return nil
}

// Run is one fault and what it cost.
type Run struct {
	N       int    `json:"n"`
	Fault   Fault  `json:"fault"`
	Cluster string `json:"cluster"`
	Engine  string `json:"engine"`
	Mode    string `json:"mode"`
	Lab     string `json:"lab"`
	Writers int    `json:"writers"`
	// ExpectFailover: the fault should have made a new primary.
	ExpectFailover bool   `json:"expect_failover"`
	OldPrimary     string `json:"old_primary"`
	// The verdict, inline: new_primary, rto_seconds, acked_rows, in_flight,
	// lost, two_writers, false_failover, ...
	Verdict
	// InFlightRows and LostRows count Verdict.InFlight and Verdict.Lost.
	InFlightRows int `json:"in_flight_rows"`
	LostRows     int `json:"lost_rows"`
	// ConnectFailures are the writers' failed lookups and connections,
	// which sent nothing.
	ConnectFailures Failures `json:"connect_failures"`
	// Recovered: the cluster was whole again after the heal, within the
	// bound; RejoinSeconds is how long after the heal began.
	Recovered     bool      `json:"recovered"`
	RejoinSeconds float64   `json:"whole_after_heal_seconds"`
	AfterHeal     AfterHeal `json:"after_heal"`
	FaultAt       time.Time `json:"fault_at,omitzero"`
	HealedAt      time.Time `json:"healed_at,omitzero"`
	Pass          bool      `json:"pass"`
	Error         string    `json:"error,omitempty"`
	// Trap is what the manager that reached a fault's step reported (its
	// pid, the step, when).
	Trap string `json:"trap,omitempty"`
}

// Drill runs o.Runs runs and returns them all. A run that leaves the
// cluster broken (not whole after the heal) is recorded with its error and
// the drill stops there — the cluster needs an operator — and the runs not
// made are counted in the summary.
func Drill(ctx context.Context, o Options, e Engine, f Faults, c Cluster) (Summary, error) {
	if err := o.Validate(); err != nil {
		return Summary{}, err
	}
	var last int64
	var runs []Run
	started := time.Now().UTC()
	for n := 1; n <= o.Runs && ctx.Err() == nil; n++ {
		r, intact := runOnce(ctx, o, e, f, c, n, &last)
		runs = append(runs, r)
		logf(o.Log, "run %d: %s", n, r.Line())
		if !intact {
			break
		}
	}
	s := Summarise(o, runs)
	s.Started, s.Finished = started, time.Now().UTC()
	return s, nil
}

// Line is a run in one line of progress.
func (r Run) Line() string {
	s := fmt.Sprintf("%s (%s, %s lab, %d writers): %s -> %s", r.Fault, r.Mode, r.Lab, r.Writers, r.OldPrimary, orNone(r.NewPrimary))
	if r.NewPrimary != "" {
		s += fmt.Sprintf(", RTO %.3fs", r.RTOSeconds)
	}
	s += fmt.Sprintf(", %d acknowledged (%.0f/s before the fault), %d in flight at the fault, %d lost", r.AckedRows, r.AckRate, r.InFlightRows, r.LostRows)
	if len(r.Lost) > 0 {
		s += fmt.Sprintf(" %v", firstIDs(r.Lost, 10))
	}
	if r.TwoWriters.Happened() {
		s += fmt.Sprintf(", TWO WRITERS %.3fs (%d acknowledged by the old primary after the new one's first)", r.TwoWriters.WindowSeconds, r.TwoWriters.OldAfterNew)
	}
	if r.FalseFailover {
		s += ", FALSE FAILOVER"
	}
	if f := r.ConnectFailures; f.Resolve+f.Dial > 0 {
		s += fmt.Sprintf(", %d failed lookups and %d failed connections of the writers", f.Resolve, f.Dial)
	}
	if r.Recovered {
		s += fmt.Sprintf(", whole %.3fs after the heal", r.RejoinSeconds)
	}
	s += "; after heal: " + r.AfterHeal.Summary()
	if r.Error != "" {
		s += " — " + r.Error
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// firstIDs returns at most n ids of ids.
func firstIDs(ids []int64, n int) []int64 {
	if len(ids) > n {
		return ids[:n]
	}
	return ids
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
