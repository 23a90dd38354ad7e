package drill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// runOnce: a whole cluster, writers, the fault, the outcome the fault
// expects (a new primary taking writes, or a quiet observation window),
// the heal, a whole cluster again, then the final rows and state, and the
// verdict. It returns false when it leaves the cluster broken (or did not
// find it whole), so that the drill stops.
func runOnce(ctx context.Context, o Options, e Engine, f Faults, c Cluster, n int, last *int64) (Run, bool) {
	r := Run{N: n, Fault: o.Fault, Cluster: o.Cluster, Engine: o.Engine, Mode: o.Mode, Lab: o.Lab, Writers: o.Writers.Writers}
	fail := func(err error) {
		if r.Error == "" {
			r.Error = err.Error()
		}
	}
	// A block left by an earlier recovery would stop this one.
	if err := ack(ctx, c); err != nil {
		fail(fmt.Errorf("lift the anti-flap block: %w", err))
		return r, false
	}
	old, err := waitWhole(ctx, c, o.WholeTimeout)
	if err != nil {
		fail(fmt.Errorf("before the fault: %w", err))
		return r, false
	}
	r.OldPrimary = old
	plan, err := planFor(o, f, c, old)
	if err != nil {
		fail(err)
		return r, true
	}
	r.Fault, r.ExpectFailover = plan.Fault, plan.ExpectFailover
	pctx, cancel := context.WithTimeout(ctx, o.ReadTimeout)
	prev, err := e.Prepare(pctx, old)
	cancel()
	if err != nil {
		fail(err)
		return r, true
	}
	first := max(*last, prev)

	// The writers' own bound: every phase below, with room to spare.
	wctx, stopAll := context.WithTimeout(ctx, o.writersBound())
	defer stopAll()
	ws := StartWriters(wctx, o.Writers, e, c.Writer, first)
	history, lastID := []Write(nil), first
	stopWriters := func() {
		if ws != nil {
			history, lastID = ws.Stop()
			r.ConnectFailures = ws.Failures()
			ws = nil
		}
	}
	defer stopWriters()

	if err := waitAcked(ctx, ws, old, o.WarmUp, o.WarmUp+10*time.Second); err != nil {
		stopWriters()
		*last = lastID
		fail(fmt.Errorf("before the fault: %w", err))
		return r, true
	}
	r.FaultAt = time.Now()
	if err := inject(ctx, f, plan); err != nil {
		fail(fmt.Errorf("inject %s: %w", plan.Fault, err))
	} else if err := outcome(ctx, o, plan, f, ws, old, r.FaultAt); err != nil {
		fail(err)
	}
	if err := trapReached(f, plan); err != nil {
		fail(err)
	} else if t, ok := f.(Trapper); ok && plan.Fault.Step != "" {
		r.Trap, _ = t.TrapFired()
	}

	// Heal always, even when the caller gave up: a fault left in place
	// breaks whatever runs next.
	r.HealedAt = time.Now()
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.WholeTimeout)
	herr := f.Heal(hctx)
	cancel()
	if herr != nil {
		fail(fmt.Errorf("heal: %w", herr))
	}
	if err := ack(ctx, c); err != nil {
		fail(fmt.Errorf("lift the anti-flap block after the heal: %w", err))
	}
	primary, werr := waitWhole(ctx, c, o.WholeTimeout)
	r.Recovered = werr == nil && herr == nil
	if werr != nil {
		fail(fmt.Errorf("not whole %v after the heal: %w", o.WholeTimeout, werr))
	} else {
		r.RejoinSeconds = time.Since(r.HealedAt).Seconds()
	}
	stopWriters()
	*last = lastID

	rctx, cancel := context.WithTimeout(ctx, o.ReadTimeout)
	defer cancel()
	state := readState(rctx, c, old, r.Recovered && primary != old, o.LedgerWait)
	if primary == "" && len(state.Writable) == 1 {
		primary = state.Writable[0]
	}
	final, problems := readFinal(rctx, e, c.Instances(), primary, first, o.CatchUp, 5*time.Second)
	state.Problems = append(state.Problems, problems...)
	state.addContent(final, primary)
	r.AfterHeal = state
	r.Verdict = Analyze(Observation{History: history, Fault: r.FaultAt, Healed: r.HealedAt, OldPrimary: old,
		ExpectFailover: plan.ExpectFailover, Final: final, FinalPrimary: primary,
		Identities: readIdentities(rctx, e, c.Instances(), o.Writers.DialTimeout)})
	r.InFlightRows, r.LostRows = len(r.InFlight), len(r.Lost)
	if plan.ExpectFailover && r.NewPrimary == "" {
		fail(errors.New("no write reached a new primary"))
	}
	_, maxRTO := o.Targets()
	r.Pass = passes(r, maxRTO)
	return r, r.Recovered
}

// inject puts the plan's faults in place, in order.
func inject(ctx context.Context, f Faults, p Plan) error {
	for _, fault := range p.Injected() {
		if err := f.Inject(ctx, fault); err != nil {
			return err
		}
	}
	return nil
}

// trapReached: a fault at a step struck only if a recovery reached the
// step; a run where none did tested nothing of what it names.
func trapReached(f Faults, p Plan) error {
	t, ok := f.(Trapper)
	if p.Fault.Step == "" || !ok {
		return nil
	}
	if _, fired := t.TrapFired(); !fired {
		return fmt.Errorf("no recovery reached step %s: the fault never struck", p.Fault.Step)
	}
	return nil
}

// planFor plans the fault for a cluster whose primary is old.
func planFor(o Options, f Faults, c Cluster, old string) (Plan, error) {
	host, err := f.HostOf(old)
	if err != nil {
		return Plan{}, fmt.Errorf("the primary's host: %w", err)
	}
	var dbHosts []string
	for _, a := range c.Instances() {
		h, err := f.HostOf(a)
		if err != nil {
			return Plan{}, fmt.Errorf("the host of %s: %w", a, err)
		}
		dbHosts = append(dbHosts, h)
	}
	return PlanFault(o.Fault, o.Expect, host, dbHosts, o.Managers)
}

// Targets are the RTO targets: the options', else the catalogue's for
// the fault (zero: none).
func (o Options) Targets() (median, maxRTO time.Duration) {
	if o.TargetMedian > 0 || o.TargetMax > 0 {
		return o.TargetMedian, o.TargetMax
	}
	k := kinds[o.Fault.Name]
	return k.targetMedian, k.targetMax
}

// passes: recovered, nothing acknowledged lost, no two writers, no false
// failover, no refusal that was not one, and a failover within the
// target where one was expected.
func passes(r Run, maxRTO time.Duration) bool {
	ok := r.Error == "" && r.Recovered && r.LostChecked && len(r.Lost) == 0 && !r.TwoWriters.Happened() &&
		!r.FalseFailover && len(r.RefusedPresent) == 0
	if r.ExpectFailover {
		ok = ok && r.NewPrimary != "" && (maxRTO == 0 || r.RTOSeconds <= maxRTO.Seconds())
	}
	return ok
}

// writersBound bounds the writers of one run: every phase they may live
// through, twice over.
func (o Options) writersBound() time.Duration {
	flap := time.Duration(o.Flap.Cycles) * (o.Flap.On + o.Flap.Off)
	return 2 * (3*o.WarmUp + 10*time.Second + max(o.FailoverTimeout, o.Observe, flap) + 2*o.WholeTimeout)
}

// outcome waits for what the fault should cause: a new primary taking
// writes (then WarmUp more of them), or, for a fault that should not fail
// over, the observation window (a flap injects and heals in cycles within
// it). Bounded by the options.
func outcome(ctx context.Context, o Options, p Plan, f Faults, ws *Writers, old string, fault time.Time) error {
	switch {
	case p.Flap:
		for i := range o.Flap.Cycles {
			if i > 0 {
				if err := inject(ctx, f, p); err != nil {
					return fmt.Errorf("inject %s (flap %d): %w", p.Fault, i+1, err)
				}
			}
			if err := sleep(ctx, o.Flap.On); err != nil {
				return err
			}
			if err := f.Heal(ctx); err != nil {
				return fmt.Errorf("heal %s (flap %d): %w", p.Fault, i+1, err)
			}
			if err := sleep(ctx, o.Flap.Off); err != nil {
				return err
			}
		}
		return sleep(ctx, o.Observe-time.Since(fault))
	case p.ExpectFailover:
		if err := waitNewPrimary(ctx, ws, old, fault, o.FailoverTimeout); err != nil {
			return fmt.Errorf("no write reached a new primary %v after the fault: %w", time.Since(fault).Round(time.Millisecond), err)
		}
		return sleep(ctx, o.WarmUp)
	default:
		return sleep(ctx, o.Observe)
	}
}

// waitWhole waits, up to bound, for a healthy cluster whose writer
// endpoint names its primary.
func waitWhole(ctx context.Context, c Cluster, bound time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var last error
	for {
		p, err := c.Healthy(ctx)
		if err == nil {
			var wr string
			if wr, err = c.Writer(ctx); err == nil && wr != p {
				err = fmt.Errorf("the writer endpoint names %q, the primary is %s", wr, p)
			}
			if err == nil {
				return p, nil
			}
		}
		last = err
		if sleep(ctx, 200*time.Millisecond) != nil {
			return "", fmt.Errorf("the cluster did not become healthy: %w", last)
		}
	}
}

// waitAcked lets the writers write for warmUp, then waits (up to bound in
// all) until addr acknowledged one of their writes.
func waitAcked(ctx context.Context, ws *Writers, addr string, warmUp, bound time.Duration) error {
	start := time.Now()
	if err := sleep(ctx, warmUp); err != nil {
		return err
	}
	from := 0
	for {
		var ok bool
		if _, from, ok = ws.findAck(from, func(w Write) bool { return w.Addr == addr }); ok {
			return nil
		}
		if time.Since(start) > bound || sleep(ctx, 50*time.Millisecond) != nil {
			return fmt.Errorf("no write acknowledged by %s within %v (%s)", addr, bound, ws.lastError())
		}
	}
}

// waitNewPrimary waits up to bound for an instance other than old to
// acknowledge a write sent after fault.
func waitNewPrimary(ctx context.Context, ws *Writers, old string, fault time.Time, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	from := 0
	for {
		var ok bool
		if _, from, ok = ws.findAck(from, func(w Write) bool { return w.Addr != old && !w.Done.Before(fault) }); ok {
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("%w (%s)", err, ws.lastError())
		}
	}
}

// readState reads the cluster's state; after a failover it looks, up to
// wait, for a ledger of what was rewound on old, which is written just
// after the rejoin that made the cluster whole.
func readState(ctx context.Context, c Cluster, old string, failedOver bool, wait time.Duration) AfterHeal {
	var s AfterHeal
	var err error
	for start := time.Now(); ; {
		if s, err = c.State(ctx, old); err != nil {
			return AfterHeal{Problems: []string{"state not read: " + err.Error()}}
		}
		rewound := slices.ContainsFunc(s.Divergence, func(d Divergence) bool {
			return d.Addr == old && (d.RewoundTransactions > 0 || d.RewoundBytes > 0)
		})
		if !failedOver || rewound || time.Since(start) >= wait || sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	return s
}

// readFinal reads the rows above after that every instance holds: the
// primary's first, then each other's, waiting for each to hold every row
// the primary holds — up to catchUp in all, and no longer than stall for a
// replica whose rows stopped growing (it is cut off or stuck, not behind).
// An instance that cannot be read is left out, with a problem saying why.
func readFinal(ctx context.Context, e Engine, addrs []string, primary string, after int64, catchUp, stall time.Duration) (map[string]map[int64]int, []string) {
	final := map[string]map[int64]int{}
	var problems []string
	var want map[int64]int
	if primary != "" {
		rows, err := e.Contents(ctx, primary, after)
		if err != nil {
			return final, []string{fmt.Sprintf("rows of the primary %s not read: %v", primary, err)}
		}
		final[primary], want = rows, rows
	}
	deadline := time.Now().Add(catchUp)
	for _, a := range addrs {
		if a == primary {
			continue
		}
		seen, grew := -1, time.Now()
		for {
			rows, err := e.Contents(ctx, a, after)
			if err == nil {
				final[a] = rows
				if len(rows) > seen {
					seen, grew = len(rows), time.Now()
				}
			}
			done := err == nil && holds(rows, want)
			if done || time.Now().After(deadline) || time.Since(grew) > stall || sleep(ctx, time.Second) != nil {
				if err != nil {
					problems = append(problems, fmt.Sprintf("rows of %s not read: %v", a, err))
				}
				break
			}
		}
	}
	return final, problems
}

// holds reports whether have holds every id of want.
func holds(have, want map[int64]int) bool {
	for id := range want {
		if _, ok := have[id]; !ok {
			return false
		}
	}
	return true
}

// readIdentities asks every instance for its identity, as a writer's
// connection does.
func readIdentities(ctx context.Context, e Engine, addrs []string, dial time.Duration) map[string]string {
	out := map[string]string{}
	for _, a := range addrs {
		dctx, cancel := context.WithTimeout(ctx, max(dial, 2*time.Second))
		c, err := e.Dial(dctx, a)
		cancel()
		if err != nil {
			continue
		}
		out[a] = c.Server()
		c.Close()
	}
	return out
}

// ackLimit bounds how long ack retries: a fault that took Consul's
// majority away (a split) leaves its servers electing a leader for a few
// seconds after the heal, and every write fails meanwhile.
const ackLimit = 30 * time.Second

// ack lifts the cluster's anti-flap block, asking again every half second
// for at most ackLimit while Consul cannot take the write.
func ack(ctx context.Context, c Cluster) error {
	deadline := time.Now().Add(ackLimit)
	for {
		err := c.Ack(ctx)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if sleep(ctx, 500*time.Millisecond) != nil {
			return err
		}
	}
}
