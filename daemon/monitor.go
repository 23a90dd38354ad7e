package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/alert"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/checks/probe"
	"github.com/dbha/dbha/checksum"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// Peers is where managers share observations (Consul in production). Its
// methods are called from every cluster's goroutine; an error is logged
// and the cycle goes on without peers.
type Peers interface {
	PublishObservation(ctx context.Context, cluster string, v checks.PeerView) error
	Peers(ctx context.Context, cluster, self string) ([]checks.PeerView, error)
}

// Keeper carries out, for one cluster, what the findings call for; it is
// promote.Keeper in production. A cluster without one is watched and
// reported on only.
type Keeper interface {
	// Resume finishes a recovery that a crashed manager left unfinished;
	// nil when there is none.
	Resume(ctx context.Context) (*promote.Record, error)
	// Recover replaces a dead primary under the cluster's lock; errors
	// wrapping promote.ErrLocked mean another manager acts; a
	// *promote.BlockedError (errors.Is promote.ErrBlocked) means a recent
	// recovery's anti-flap block leaves no candidate.
	Recover(ctx context.Context, t promote.Trigger, c promote.Choice) (*promote.Record, error)
	// Enforce keeps one writer: an instance that is writable while the
	// writer endpoint names another is fenced; a returned old primary
	// rejoins.
	Enforce(ctx context.Context) error
	// Publish points the writer endpoint at writer and the reader
	// endpoint at readers.
	Publish(ctx context.Context, writer string, readers []string) error
	// Troubles lists the instances Enforce tried and failed to bring back.
	Troubles() []promote.Trouble
}

// Cluster wires one cluster into the monitor.
type Cluster struct {
	Config config.Cluster
	Prober topology.Prober
	// Stream returns the in-process change stream's status, or nil.
	Stream func() *binlog.Status
	// Keeper acts on the findings; nil to detect and report only.
	Keeper Keeper
	// Backups returns the last reading of the cluster's backup catalog, or
	// nil (*CatalogWatch.View).
	Backups func() *checks.BackupsView
}

// Options configure a Monitor.
type Options struct {
	Manager string // this manager's name among peers
	// Members are every manager that votes on a lost primary
	// (manager.members); empty: this one alone.
	Members          []string
	Interval         time.Duration
	ProbeTimeout     time.Duration
	Policy           checks.Policy
	ExternalTimeout  time.Duration
	ExternalInterval time.Duration
	Peers            Peers // may be nil
	Logger           *slog.Logger
	Clusters         []Cluster
	// Levels give codes a level of their own (alerts.levels); Alerts is
	// notified when a finding appears and clears, and of each recovery
	// (nil: nobody).
	Levels map[checks.Code]checks.Severity
	Alerts Notifier
	// Pauses tells whether a cluster is in maintenance mode (Consul in
	// production); nil: never paused.
	Pauses PauseReader
	// Endpoints reads the writer endpoint for the load balancers' health
	// checks; nil: every writer check answers 503.
	Endpoints WriterReader
	// Consistency reads what consistency checks (dbha checksum) found;
	// nil: nothing.
	Consistency ConsistencyReader
}

// ConsistencyReader reads the summary of a cluster's consistency checks;
// ok=false when none ran. *consul.Client is one.
type ConsistencyReader interface {
	Checksum(ctx context.Context, cluster string) (s checksum.Summary, ok bool, err error)
}

// PauseReader reads a cluster's maintenance mode, ok=false when none.
type PauseReader interface {
	GetPause(ctx context.Context, cluster string) (p promote.Pause, ok bool, err error)
}

// Notifier takes notifications; it must not block. *alert.Notifier is
// one.
type Notifier interface {
	Notify(alert.Event)
}

// State is what the monitor knows about one cluster after its last cycle.
type State struct {
	Cluster   string           `json:"cluster"`
	Engine    topology.Engine  `json:"engine"`
	Cycles    int64            `json:"cycles"`
	UpdatedAt time.Time        `json:"updated_at"`
	Findings  []checks.Finding `json:"findings"`
	Evidence  checks.Evidence  `json:"evidence"`
	// Quorum is the voters' count on the primary this cycle; Shape says
	// whether the cluster, as it stands, could fail over on its own.
	Quorum checks.Quorum `json:"quorum"`
	Shape  checks.Shape  `json:"shape"`
	// CycleTime is how long the last probe cycle took.
	CycleTime topology.Duration `json:"cycle_time"`
	// Checksum is what consistency checks found, as last read; nil when
	// none ran (or dbha run has no Consul).
	Checksum *checksum.Summary `json:"checksum,omitempty"`
}

// Monitor watches clusters. Create it with New; Run or Cycle drive it; State
// and States may be called concurrently with them.
type Monitor struct {
	opts     Options
	log      *slog.Logger
	watchers []*watcher
}

// New builds a monitor; it starts nothing.
func New(o Options) *Monitor {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{opts: o, log: log}
	for _, c := range o.Clusters {
		m.watchers = append(m.watchers, &watcher{m: m, c: c, log: log.With("cluster", c.Config.Name)})
	}
	return m
}

// Run watches every cluster until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range m.watchers {
		wg.Go(func() { w.run(ctx) })
	}
	wg.Wait()
}

// Cycle runs one probe cycle of every cluster, concurrently, and waits for
// them: `dbha check` drives the monitor this way.
func (m *Monitor) Cycle(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range m.watchers {
		wg.Go(func() {
			w.refreshPeers(ctx)
			w.readPause(ctx)
			w.runExternal(ctx)
			w.cycle(ctx)
		})
	}
	wg.Wait()
}

// States returns every cluster's latest state, in configuration order.
func (m *Monitor) States() []State {
	out := make([]State, 0, len(m.watchers))
	for _, w := range m.watchers {
		out = append(out, w.state())
	}
	return out
}

// State returns one cluster's latest state.
func (m *Monitor) State(cluster string) (State, bool) {
	for _, w := range m.watchers {
		if w.c.Config.Name == cluster {
			return w.state(), true
		}
	}
	return State{}, false
}

// Primary returns the primary the monitor watches in cluster: the last
// one seen, "" before the first cycle or for an unknown cluster.
func (m *Monitor) Primary(cluster string) string {
	st, _ := m.State(cluster)
	return st.Evidence.Primary
}

// watcher runs one cluster's cycles. Only its own goroutine touches
// tracker; mu guards what other goroutines read.
type watcher struct {
	m   *Monitor
	c   Cluster
	log *slog.Logger

	tracker checks.Tracker
	warned  string    // the last warnOnce key, so a blocked recovery is logged once
	retryAt time.Time // no new recovery attempt before this, after one failed
	// lost is the primary the recoveries of this episode replace, and
	// lostAt when the first of them was called for: a retried recovery's
	// RTO runs from there, not from its own attempt.
	lost   string
	lostAt time.Time
	// resumePending: a recovery a crashed manager left may still wait to be
	// finished (at start-up; after another manager was seen recovering;
	// after a recovery of this one failed); resumeAt is the next attempt
	// after one that failed.
	resumePending bool
	resumeAt      time.Time
	// published is the writer and readers last written to Consul, at
	// publishedAt.
	published   string
	publishedAt time.Time
	// blocked is the anti-flap block that refused the last automatic
	// recovery; the next cycles observe it (a RecoveryBlocked finding)
	// until a writer is published again, a recovery is no longer refused
	// by it, or it ends.
	blocked *checks.BlockView
	// stopped is the last automatic recovery attempt that failed; the
	// next cycles observe it (RecoveryStopped) until one succeeds or a
	// writer is published again.
	stopped *checks.StopView
	// peersAt is the last exchange of observations with the other
	// managers, and sharedReaches what this one said then of the primary
	// (both only touched by refreshPeers and its timer).
	peersAt       time.Time
	sharedReaches bool
	// since is when each current finding appeared (by logChanges' key),
	// the start its resolved notification carries.
	since map[string]time.Time

	mu       sync.Mutex
	st       State
	peers    []checks.PeerView
	external *checks.ExternalView
	paused   *checks.PauseView
	// checksum: what consistency checks found, as last read; nil: none.
	checksum *checksum.Summary
}

func (w *watcher) state() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.st
	if st.Cluster == "" {
		st.Cluster, st.Engine = w.c.Config.Name, w.c.Config.Engine
	}
	return st
}

func (w *watcher) run(ctx context.Context) {
	if w.c.Keeper != nil {
		w.resumePending = true
		w.resume(ctx, time.Now())
	}
	var side sync.WaitGroup
	side.Go(func() { w.every(ctx, w.m.opts.Interval, w.refreshPeersIfDue) })
	if w.m.opts.Consistency != nil {
		side.Go(func() { w.every(ctx, consistencyRefresh, w.readConsistency) })
	}
	if w.m.opts.Pauses != nil {
		side.Go(func() { w.every(ctx, pauseRefresh, w.readPause) })
	}
	if len(w.c.Config.CheckCommand) > 0 {
		side.Go(func() { w.every(ctx, w.m.opts.ExternalInterval, w.runExternal) })
	}
	w.every(ctx, w.m.opts.Interval, w.cycle)
	side.Wait()
}

// every calls fn at once and then every d until ctx ends. A slow fn delays
// the next call rather than piling calls up.
func (w *watcher) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cycle probes the cluster once along every path and analyses the result.
func (w *watcher) cycle(ctx context.Context) {
	start := time.Now()
	o := w.m.opts
	cl := w.c.Config
	primary := w.state().Evidence.Primary

	var tcp checks.ProbeResult
	var snap topology.Snapshot
	var wg sync.WaitGroup
	if primary != "" {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, o.ProbeTimeout)
			defer cancel()
			tcp = probe.TCP(pctx, primary)
		})
	}
	snap = topology.Discover(ctx, cl.Topology(), w.c.Prober, o.ProbeTimeout)
	wg.Wait()
	if primary == "" && snap.Primary != "" {
		pctx, cancel := context.WithTimeout(ctx, o.ProbeTimeout)
		tcp = probe.TCP(pctx, snap.Primary)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}

	// The cycle's time is when its probes went out: what they saw is as of
	// then, however long a hung instance made the cycle last.
	w.mu.Lock()
	obs := checks.Observation{At: start, Snapshot: snap, TCP: tcp, Peers: w.peers, External: w.external, Paused: w.paused, Inconsistent: w.checksum.Inconsistent(),
		Voters: checks.Voters{Managers: o.Members, Self: o.Manager, Witness: len(cl.CheckCommand) > 0}}
	w.mu.Unlock()
	if w.c.Keeper != nil {
		obs.Healing = healing(w.c.Keeper.Troubles())
	}
	if w.blocked != nil && !start.Before(w.blocked.Until) {
		w.blocked = nil
	}
	obs.Blocked, obs.Stopped = w.blocked, w.stopped
	if w.c.Backups != nil {
		obs.Backups = w.c.Backups()
	}
	if w.c.Stream != nil {
		if s := w.c.Stream(); s != nil {
			obs.Stream = &checks.StreamView{Connected: s.Connected, Primary: s.Primary, LastMessage: s.LastMessage, Error: s.LastError}
		}
	}
	var ev checks.Evidence
	w.tracker, ev = w.tracker.Observe(obs)
	findings := checks.Relevel(checks.Analyze(ev, o.Policy, obs.At), o.Levels)

	shape := checks.ShapeOf(ev)

	w.mu.Lock()
	prev, prevShape, first := w.st.Findings, w.st.Shape, w.st.Cycles == 0
	w.st = State{Cluster: cl.Name, Engine: cl.Engine, Cycles: w.st.Cycles + 1, UpdatedAt: obs.At,
		Findings: findings, Evidence: ev, Quorum: checks.CountQuorum(ev, o.Policy), Shape: shape,
		CycleTime: topology.Duration(time.Since(start)), Checksum: w.checksum}
	w.mu.Unlock()
	w.logChanges(prev, findings, obs.At)
	w.logShape(first, prevShape, shape)
	w.act(ctx, snap, findings, obs.At)
}

// act dispatches what the findings call for (their rule's action) to the
// cluster's Keeper: a confirmed dead primary is recovered when the cluster
// allows automatic failover; a second writable instance, no writable one,
// or a detached one is enforced (fence, rejoin); otherwise the endpoints
// are kept published.
func (w *watcher) act(ctx context.Context, snap topology.Snapshot, findings []checks.Finding, at time.Time) {
	k := w.c.Keeper
	if k == nil {
		return
	}
	if w.resumePending && !w.resume(ctx, at) {
		return
	}
	f, action := dispatch(findings, w.c.Config.Promotion.IsAutoFailover())
	if action != checks.Recover {
		w.lost = "" // the episode is over, recovered or not needed
	}
	w.mu.Lock()
	paused := w.paused
	w.mu.Unlock()
	switch {
	case action == checks.Recover && paused != nil:
		w.warnOnce("paused "+f.Instance, "automatic failover is paused: no recovery starts", "code", f.Code, "instance", f.Instance,
			"paused_by", paused.By, "since", paused.At, "reason", paused.Reason, "resume", paused.Lift)
	case action == checks.Recover:
		if !at.Before(w.retryAt) {
			w.recover(ctx, f, findings, snap, at)
		}
	case action == checks.Enforce:
		if err := k.Enforce(ctx); err != nil && !errors.Is(err, promote.ErrBusy) {
			w.warnOnce("enforce: "+err.Error(), "enforce a single writer", "err", err) // not again each cycle
		}
		// An instance that cannot be brought back must not keep the
		// endpoints from following the rest of the cluster.
		w.publish(ctx, snap, at)
	default:
		w.publish(ctx, snap, at)
	}
}

// logShape says, at the first cycle and whenever it changes, whether the
// cluster could fail over on its own: an operator learns at start-up, not
// at the failure, that its shape lets no majority confirm a lost primary.
func (w *watcher) logShape(first bool, prev, now checks.Shape) {
	if !first && prev.CanFailOver == now.CanFailOver {
		return
	}
	if now.CanFailOver {
		w.log.Info("automatic failover possible", "shape", now.Summary)
		return
	}
	w.log.Warn("automatic failover impossible", "shape", now.Summary)
}

// healing is the keeper's troubles as the analysis sees them.
func healing(ts []promote.Trouble) []checks.HealView {
	var out []checks.HealView
	for _, t := range ts {
		out = append(out, checks.HealView{Instance: t.Instance, Action: string(t.Action), Error: t.Error,
			Refused: t.Refused, Since: t.Since, Retry: t.Retry})
	}
	return out
}

// dispatch picks the one action a cycle takes and the finding that calls
// for it: a recovery first (when automatic failover is on), then
// enforcement; Report means only keeping the endpoints published.
func dispatch(findings []checks.Finding, autoFailover bool) (checks.Finding, checks.Action) {
	for _, want := range []checks.Action{checks.Recover, checks.Enforce} {
		if want == checks.Recover && !autoFailover {
			continue
		}
		for _, f := range findings {
			if f.Action == want {
				return f, want
			}
		}
	}
	return checks.Finding{}, checks.Report
}

// resume finishes the recovery a crashed manager left unfinished, if any,
// and reports whether the watcher may act on this cycle's findings. A
// crashed manager's Consul session holds the cluster's lock for up to
// twice its TTL: while it does, the attempt is repeated every cycle and
// nothing else is done, because a half-done recovery comes first (its
// writer may still name the dead primary, which only the recovery moves).
// Any other failure is logged and retried every 5 s, while the watcher
// goes on acting (a DeadPrimary recovery resumes the same record).
func (w *watcher) resume(ctx context.Context, at time.Time) bool {
	if at.Before(w.resumeAt) {
		return true
	}
	rec, err := w.c.Keeper.Resume(ctx)
	switch {
	case errors.Is(err, promote.ErrLocked):
		w.warnOnce("resume-locked", "a recovery in progress waits for the cluster's lock", "err", err)
		return false
	case err != nil:
		w.log.Error("resume the recovery in progress", "err", err)
		w.resumeAt = at.Add(5 * time.Second)
		return true
	case rec != nil:
		w.log.Warn("resumed a recovery a previous manager left unfinished", "recovery", rec.ID, "done", rec.Done)
		w.tracker = checks.Tracker{} // the primary changed: count afresh
		// This cycle's findings are from before the resumed recovery moved
		// the primary: act on the next cycle's.
		w.resumePending, w.warned = false, ""
		return false
	}
	w.resumePending, w.warned = false, ""
	return true
}

// publish keeps the endpoints on a cluster with one writable primary: the
// writer names it, the readers name its healthy replicas under the lag
// limit. Consul is written when they change, and every 30 s to repair
// what someone else changed.
func (w *watcher) publish(ctx context.Context, snap topology.Snapshot, at time.Time) {
	writer, err := snap.WritablePrimary()
	if err != nil {
		return
	}
	readers := snap.Readers(w.m.opts.Policy.LagSeconds)
	key := writer + "|" + strings.Join(readers, ",")
	if key == w.published && at.Before(w.publishedAt.Add(30*time.Second)) {
		w.blocked, w.stopped = nil, nil // the cluster has its writer again
		return
	}
	err = w.c.Keeper.Publish(ctx, writer, readers)
	if errors.Is(err, promote.ErrBusy) {
		return
	}
	if err != nil {
		w.warnOnce("publish: "+err.Error(), "endpoints not published", "err", err)
		return
	}
	if key != w.published {
		w.log.Info("endpoints published", "writer", writer, "readers", readers)
	}
	w.published, w.publishedAt, w.blocked, w.stopped = key, at, nil, nil
}

func (w *watcher) recover(ctx context.Context, f checks.Finding, findings []checks.Finding, snap topology.Snapshot, at time.Time) {
	if w.lost != f.Instance {
		w.lost, w.lostAt = f.Instance, at
	}
	t := promote.Trigger{Reason: string(f.Code), Automatic: true, Detected: w.lostAt, Evidence: findings, Primary: f.Instance}
	// The probe that just found the primary silent ended when the
	// snapshot was taken: the recovery asks it again only briefly.
	if in, ok := snap.Instance(f.Instance); ok && !in.Reachable {
		t.UnansweredAt = snap.TakenAt
	}
	rec, err := w.c.Keeper.Recover(ctx, t, promote.Choice{})
	if !errors.Is(err, promote.ErrLocked) {
		w.blocked = blockView(err)
	}
	var paused *promote.PausedError
	if errors.As(err, &paused) {
		// Paused since the last reading: the next cycles say so.
		w.setPause(paused.Pause, true)
		w.log.Warn("automatic failover is paused: no recovery starts", "code", f.Code, "err", err)
		return
	}
	switch {
	case errors.Is(err, promote.ErrLocked):
		w.log.Info("another manager is recovering the cluster", "code", f.Code)
		// That manager may die mid-way, after its first steps stopped the
		// replicas: then no replica vouches that the primary is dead, no
		// DeadPrimary is seen again, and nothing else would finish its
		// recovery. Watch until none is left unfinished (see resume).
		w.resumePending = true
	case errors.Is(err, promote.ErrNothingToRecover):
		w.log.Info("no recovery needed after all", "code", f.Code, "why", err.Error())
		w.tracker = checks.Tracker{} // what was seen is stale: count afresh
	case errors.Is(err, promote.ErrBlocked):
		w.warnOnce("blocked", "automatic recovery blocked", "err", err)
	case err != nil:
		// A veto stands until the operator acts: asking again every few
		// seconds would only fill the audit trail.
		wait := 5 * time.Second
		if errors.Is(err, promote.ErrVetoed) {
			wait = time.Minute
		}
		attrs := []any{"code", f.Code, "err", err, "retry_in", wait.String()}
		if rec != nil {
			attrs = append(attrs, "recovery", rec.ID, "next_step", rec.Next)
		}
		w.log.Error("recovery failed", attrs...)
		w.retryAt = at.Add(wait)
		w.stopped = &checks.StopView{Reason: err.Error(), At: at, Retry: w.retryAt}
		if rec != nil {
			w.stopped.Recovery = rec.ID
			if !rec.Aborted {
				w.stopped.NextStep = rec.Next
			}
		}
		// It may be left half-done (it lost its lock or Consul after its
		// first steps), when the analysis no longer calls for it.
		w.resumePending = true
	default:
		w.warned, w.lost, w.stopped = "", "", nil
		w.tracker = checks.Tracker{} // the primary changed: count afresh
		w.log.Warn("recovered", "code", f.Code, "recovery", rec.ID, "kind", rec.Kind,
			"old_primary", rec.Plan.OldPrimary, "new_primary", rec.Plan.NewPrimary,
			"rto_seconds", rec.RTOSeconds, "lost_transactions", rec.Ledger.Transactions, "lost_bytes", rec.Ledger.Bytes)
		w.notify(alert.Event{Status: alert.Firing, Cluster: w.c.Config.Name, Code: checks.Recovered,
			Level: w.m.level(checks.Recovered, checks.Warning), Instance: rec.Plan.NewPrimary,
			Summary: fmt.Sprintf("recovery %s (%s, after %s) replaced primary %s with %s in %.2f s; lost %d transactions, %d bytes",
				rec.ID, rec.Kind, f.Code, rec.Plan.OldPrimary, rec.Plan.NewPrimary, rec.RTOSeconds, rec.Ledger.Transactions, rec.Ledger.Bytes),
			StartsAt: at, EndsAt: time.Now(), Manager: w.m.opts.Manager})
	}
}

// level is the level code alerts at: the configured one, else def.
func (m *Monitor) level(code checks.Code, def checks.Severity) checks.Severity {
	if l, ok := m.opts.Levels[code]; ok {
		return l
	}
	return def
}

// blockView is what the analysis needs of a refusal by the anti-flap
// block; nil for any other outcome.
func blockView(err error) *checks.BlockView {
	var b *promote.BlockedError
	if !errors.As(err, &b) {
		return nil
	}
	return &checks.BlockView{Recovery: b.Block.Recovery, Reason: b.Reason(), Until: b.Until, Lift: b.Lift()}
}

// warnOnce logs a warning the first time key is seen in a row of cycles.
func (w *watcher) warnOnce(key, msg string, args ...any) {
	if w.warned == key {
		return
	}
	w.warned = key
	w.log.Warn(msg, args...)
}

// logChanges logs a finding once when it appears and once when it clears,
// and notifies both; one whose severity changes appears again.
func (w *watcher) logChanges(prev, now []checks.Finding, at time.Time) {
	key := func(f checks.Finding) string {
		return string(f.Code) + "\x00" + f.Instance + "\x00" + string(f.Severity)
	}
	if w.since == nil {
		w.since = map[string]time.Time{}
	}
	was := map[string]bool{}
	for _, f := range prev {
		was[key(f)] = true
	}
	is := map[string]bool{}
	for _, f := range now {
		is[key(f)] = true
		if !was[key(f)] {
			attrs := []any{"code", f.Code, "severity", f.Severity, "instance", f.Instance, "summary", f.Summary}
			if len(f.Votes) > 0 {
				attrs = append(attrs, "votes", f.Votes)
			}
			w.log.Warn("finding appeared", attrs...)
			w.since[key(f)] = at
			w.notify(alert.FromFinding(w.c.Config.Name, w.m.opts.Manager, f, alert.Firing, at, at))
		}
	}
	for _, f := range prev {
		if !is[key(f)] {
			w.log.Info("finding cleared", "code", f.Code, "severity", f.Severity, "instance", f.Instance)
			w.notify(alert.FromFinding(w.c.Config.Name, w.m.opts.Manager, f, alert.Resolved, w.since[key(f)], at))
			delete(w.since, key(f))
		}
	}
}

func (w *watcher) notify(e alert.Event) {
	if w.m.opts.Alerts != nil {
		w.m.opts.Alerts.Notify(e)
	}
}

// refreshPeers publishes this manager's view and reads the others'.
// refreshPeersIfDue shares observations every peerRefresh, and every
// cycle while this manager's probes of the primary fail: the other
// managers' votes are part of the quorum a failover waits for, and a
// second's delay on each side would be up to two seconds more of RTO.
func (w *watcher) refreshPeersIfDue(ctx context.Context) {
	st := w.state()
	if time.Since(w.peersAt) < peerRefresh && st.Evidence.Manager.Failures == 0 && st.Evidence.Manager.SQL.OK == w.sharedReaches {
		return
	}
	w.refreshPeers(ctx)
}

// readPause reads whether the cluster is in maintenance mode. A failed
// reading keeps the last one; under the lock, the recovery reads it again.
func (w *watcher) readPause(ctx context.Context) {
	r := w.m.opts.Pauses
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.m.opts.ProbeTimeout)
	defer cancel()
	p, ok, err := r.GetPause(ctx, w.c.Config.Name)
	if err != nil {
		w.log.Debug("read the maintenance mode", "err", err)
		return
	}
	w.setPause(p, ok)
}

func (w *watcher) setPause(p promote.Pause, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := w.paused != nil
	w.paused = nil
	if ok {
		lift := (&promote.PausedError{Cluster: w.c.Config.Name}).Lift()
		w.paused = &checks.PauseView{By: p.By, At: p.At, Reason: p.Reason, Lift: lift}
	}
	switch {
	case ok && !was:
		w.log.Warn("automatic failover paused", "by", p.By, "at", p.At, "reason", p.Reason)
	case !ok && was:
		w.log.Warn("automatic failover resumed")
	}
}

// readConsistency reads what consistency checks found. A failed reading
// keeps the last one.
func (w *watcher) readConsistency(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.m.opts.ProbeTimeout)
	defer cancel()
	sum, ok, err := w.m.opts.Consistency.Checksum(ctx, w.c.Config.Name)
	if err != nil {
		w.log.Debug("read the consistency checks' summary", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checksum = nil
	if ok {
		w.checksum = &sum
	}
}

// consistencyRefresh is how often a manager reads what consistency checks
// found (a run takes minutes; its result may wait seconds).
const consistencyRefresh = 10 * time.Second

// pauseRefresh is how often a manager reads the maintenance mode.
const pauseRefresh = time.Second

// peerRefresh is how often a manager shares its observation of a healthy
// primary.
const peerRefresh = time.Second

func (w *watcher) refreshPeers(ctx context.Context) {
	p := w.m.opts.Peers
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.m.opts.ProbeTimeout)
	defer cancel()
	st := w.state()
	if st.Cycles > 0 {
		mine := checks.PeerView{Manager: w.m.opts.Manager, At: st.UpdatedAt, Primary: st.Evidence.Primary,
			Reaches: st.Evidence.Manager.SQL.OK, Detail: st.Evidence.Manager.SQL.Error}
		if err := p.PublishObservation(ctx, w.c.Config.Name, mine); err != nil {
			w.log.Debug("publish observation", "err", err)
		} else {
			w.sharedReaches = mine.Reaches
		}
	}
	w.peersAt = time.Now()
	peers, err := p.Peers(ctx, w.c.Config.Name, w.m.opts.Manager)
	if err != nil {
		w.log.Debug("read peers", "err", err)
		return
	}
	w.mu.Lock()
	w.peers = peers
	w.mu.Unlock()
}

// runExternal runs the cluster's check command against the last known
// primary.
func (w *watcher) runExternal(ctx context.Context) {
	argv := w.c.Config.CheckCommand
	if len(argv) == 0 {
		return
	}
	primary := w.state().Evidence.Primary
	if primary == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.m.opts.ExternalTimeout)
	defer cancel()
	v := probe.External(ctx, argv, w.c.Config.Name, primary)
	w.mu.Lock()
	w.external = &v
	w.mu.Unlock()
}
