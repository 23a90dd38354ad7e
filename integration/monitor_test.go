package integration

// The harness of the detection tests: an in-process daemon.Monitor over a
// lab, as `dbha run` would run it, and what the tests read from it.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/daemon"
)

// labEngines are the lab's clusters; node <kind>-1 is the primary.
var labEngines = []struct{ cluster, kind string }{{"lab-mariadb", KindMariaDB}, {"lab-postgres", KindPostgres}}

// ownLab brings up a lab of the test's own, for tests that kill or break
// things, and stops and removes it when the test ends.
func ownLab(t *testing.T) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	l := upLab(t, ctx, Options{})
	t.Logf("own lab up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		start := time.Now()
		purge(t, l)
		t.Logf("own lab down in %v", time.Since(start).Round(time.Millisecond))
	})
	return l
}

// monitored wires the named lab clusters into a monitor, as `dbha run` does.
func monitored(t *testing.T, l *Lab, names ...string) []daemon.Cluster {
	t.Helper()
	cfg := labConfig(t, l)
	var out []daemon.Cluster
	for _, cl := range cfg.Clusters {
		if len(names) == 0 || slices.Contains(names, cl.Name) {
			out = append(out, daemon.Cluster{Config: cl, Prober: proberFor(t, cl)})
		}
	}
	return out
}

// runMonitor runs a monitor until the test ends, with the lab's timing
// (250 ms interval, 1 s probe timeout, default policy) where o leaves it
// unset. Every finding that appears or clears goes to the returned log.
func runMonitor(tb testing.TB, o daemon.Options, verbose bool) (*daemon.Monitor, *findingLog) {
	if o.Interval == 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = time.Second
	}
	if o.Policy.Failures == 0 {
		o.Policy = checks.DefaultPolicy()
	}
	fl := &findingLog{}
	if verbose {
		fl.logf = tb.Logf
	}
	o.Logger = slog.New(findingHandler{log: fl})
	m := daemon.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	return m, fl
}

// waitState polls a cluster's state until ok accepts it, for at most d.
func waitState(tb testing.TB, m *daemon.Monitor, cluster, what string, d time.Duration, ok func(daemon.State) error) daemon.State {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		st, _ := m.State(cluster)
		err := ok(st)
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: gave up after %v waiting for %s: %v", cluster, d, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noFindings accepts a state with at least one cycle and nothing wrong.
func noFindings(st daemon.State) error {
	if st.Cycles == 0 || len(st.Findings) > 0 {
		return fmt.Errorf("after %d cycles, findings %s", st.Cycles, describeFindings(st.Findings))
	}
	return nil
}

// showing accepts a state with a finding of code.
func showing(code checks.Code) func(daemon.State) error {
	return func(st daemon.State) error {
		if _, ok := findingOf(st, code); !ok {
			return fmt.Errorf("no %s; findings %s", code, describeFindings(st.Findings))
		}
		return nil
	}
}

func findingOf(st daemon.State, code checks.Code) (checks.Finding, bool) {
	i := slices.IndexFunc(st.Findings, func(f checks.Finding) bool { return f.Code == code })
	if i < 0 {
		return checks.Finding{}, false
	}
	return st.Findings[i], true
}

func describeFindings(fs []checks.Finding) string {
	if len(fs) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  %s %s: %s", f.Code, f.Instance, f.Summary)
		for _, v := range f.Votes {
			fmt.Fprintf(&b, "\n    %s %s %s: %s", v.Path, v.Source, v.Verdict, v.Detail)
		}
	}
	return b.String()
}

// hasVote reports whether a finding carries a vote of path with verdict.
func hasVote(f checks.Finding, path checks.Path, verdict checks.Verdict) bool {
	return slices.ContainsFunc(f.Votes, func(v checks.Vote) bool { return v.Path == path && v.Verdict == verdict })
}

// findingEvent is one "finding appeared" or "finding cleared" log record.
type findingEvent struct {
	At       time.Time
	Cluster  string
	Msg      string
	Code     checks.Code
	Instance string
	Summary  string
}

// findingLog keeps the monitor's finding records: the monitor logs every
// cycle's changes, so "never DeadPrimary" is checked on every cycle, not
// only on the states a poll happened to see.
type findingLog struct {
	mu     sync.Mutex
	events []findingEvent
	logf   func(format string, args ...any)
}

// appeared returns the appearances of any of codes in a cluster.
func (fl *findingLog) appeared(cluster string, codes ...checks.Code) []findingEvent {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	var out []findingEvent
	for _, e := range fl.events {
		if e.Cluster == cluster && e.Msg == "finding appeared" && slices.Contains(codes, e.Code) {
			out = append(out, e)
		}
	}
	return out
}

// findingHandler is the slog.Handler that feeds a findingLog.
type findingHandler struct {
	log   *findingLog
	attrs []slog.Attr
}

func (h findingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h findingHandler) WithGroup(string) slog.Handler            { return h }
func (h findingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return findingHandler{log: h.log, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h findingHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "finding ") {
		return nil
	}
	e := findingEvent{At: r.Time, Msg: r.Message}
	set := func(a slog.Attr) bool {
		switch a.Key {
		case "cluster":
			e.Cluster = a.Value.String()
		case "code":
			e.Code = checks.Code(a.Value.String())
		case "instance":
			e.Instance = a.Value.String()
		case "summary":
			e.Summary = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		set(a)
	}
	r.Attrs(set)
	h.log.mu.Lock()
	h.log.events = append(h.log.events, e)
	logf := h.log.logf
	h.log.mu.Unlock()
	if logf != nil {
		logf("monitor: %s %s: %s %s %s", e.At.Format("15:04:05.000"), e.Cluster, e.Msg, e.Code, e.Instance)
	}
	return nil
}

// detection is how long after the fault the first state showing code came.
func detection(st daemon.State, fault time.Time) time.Duration {
	return st.UpdatedAt.Sub(fault).Round(time.Millisecond)
}

// killTree kill -9s a node's server and waits, bounded, until the
// children it had are gone too, so that it can be started again at once:
// PostgreSQL's backends outlive a killed postmaster for a moment, and a new
// postmaster refuses to start while they hold the old shared memory. (Lab.Signal
// waits for the server process only.)
func killTree(tb testing.TB, l *Lab, name string) {
	tb.Helper()
	n, err := l.Node(name)
	if err != nil {
		tb.Fatal(err)
	}
	children := childrenOf(n.PID)
	if err := l.Signal(name, syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range children {
		for running(pid) {
			if time.Now().After(deadline) {
				tb.Fatalf("%s: child %d of the killed server still runs", name, pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// running: pid exists and is not a zombie.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z"
}
