package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// The figures of failure detection (see the issue): what a probe cycle
// costs dbha, and how long detection takes on the lab. Run with
//
//	go test ./integration -run '^$' -bench BenchmarkProbeCycle -benchtime 200x
//	go test ./integration -run '^$' -bench BenchmarkDetection -benchtime 1x -timeout 20m

// benchLab brings up a lab of the benchmark's own and removes it at the end.
// (labDir, labConfig and proberFor take a *testing.T; benchmarks have a *testing.B.)
func benchLab(b *testing.B) *Lab {
	b.Helper()
	dir, err := os.MkdirTemp("", "dbha-bench-lab-")
	if err == nil {
		err = os.Chmod(dir, 0o755) // the lab user must enter it
	}
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, _, err := Up(ctx, Options{Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Down(ctx, true); err != nil {
			b.Errorf("lab down: %v", err)
		}
		os.RemoveAll(dir)
	})
	return l
}

// benchCluster wires one lab cluster as `dbha run` does.
func benchCluster(b *testing.B, l *Lab, name string) daemon.Cluster {
	b.Helper()
	raw, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		b.Fatal(err)
	}
	cl, ok := cfg.Cluster(name)
	if !ok {
		b.Fatalf("no cluster %s in %s", name, l.ConfigPath)
	}
	pw, err := cl.Password().Read(os.LookupEnv)
	if err != nil {
		b.Fatal(err)
	}
	var p interface {
		topology.Prober
		Close() error
	}
	if cl.Engine == topology.Postgres {
		p = postgres.NewProber(cl.User, pw)
	} else {
		p = mysql.NewProber(cl.Engine, cl.User, pw)
	}
	b.Cleanup(func() { p.Close() })
	return daemon.Cluster{Config: cl, Prober: p}
}

// cpuTime is the user and system CPU this process used so far (every
// thread; the database servers are other processes and not counted).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProbeCycle: one op is one Monitor.Cycle of a three-instance
// cluster (TCP probe of the primary, SQL probe of every instance, tracker
// and analysis), on warm connection pools, as `dbha run` does every
// interval. Besides ns/op and allocs/op it reports dbha's CPU time per
// instance per cycle and how many instances one core could watch at a 1 s
// interval at that cost.
func BenchmarkProbeCycle(b *testing.B) {
	l := benchLab(b)
	for _, c := range labEngines {
		b.Run(c.kind, func(b *testing.B) {
			cl := benchCluster(b, l, c.cluster)
			m := daemon.New(daemon.Options{Interval: 250 * time.Millisecond, ProbeTimeout: time.Second,
				Policy: checks.DefaultPolicy(), Clusters: []daemon.Cluster{cl}})
			ctx := context.Background()
			for range 3 { // connect the pools and learn the primary
				m.Cycle(ctx)
			}
			if err := noFindings(mustState(b, m, c.cluster)); err != nil {
				b.Fatalf("the lab is not healthy: %v", err)
			}
			n := len(cl.Config.Instances)
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := cpuTime(b)
			b.ReportAllocs()
			for b.Loop() {
				m.Cycle(ctx)
			}
			cpu := cpuTime(b) - cpu0
			runtime.ReadMemStats(&ms1)
			if err := noFindings(mustState(b, m, c.cluster)); err != nil {
				b.Fatalf("findings during the benchmark: %v", err)
			}
			perInstance := float64(cpu.Nanoseconds()) / 1e3 / float64(b.N*n)
			b.ReportMetric(perInstance, "cpu-µs/instance")
			b.ReportMetric(1e6/perInstance, "instances/core@1s")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N*n), "allocs/instance")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N*n), "B/instance")
		})
	}
}

func mustState(b *testing.B, m *daemon.Monitor, cluster string) daemon.State {
	st, ok := m.State(cluster)
	if !ok {
		b.Fatalf("no cluster %s", cluster)
	}
	return st
}

// BenchmarkDetection times detection on the lab over ten trials per engine
// and fault, with the default policy at a 250 ms interval: kill -9 of the
// primary (to DeadPrimary) and a frozen primary (to its first finding,
// PrimaryHung or DeadPrimary at once, and to DeadPrimary). Each fault comes at a random moment, so the trials sample
// the phase of the probe cycle and of the replicas' heartbeats. Between
// trials the primary is restarted or thawed and the cluster left to heal.
func BenchmarkDetection(b *testing.B) {
	const trials = 10
	l := benchLab(b)
	for _, c := range labEngines {
		for _, fault := range []string{"kill", "freeze"} {
			b.Run(c.kind+"/"+fault, func(b *testing.B) {
				m, fl := runMonitor(b, daemon.Options{Clusters: []daemon.Cluster{benchCluster(b, l, c.cluster)}}, false)
				primary := c.kind + "-1"
				b.Cleanup(func() { l.Thaw(primary) }) // a frozen server would outlive the lab
				var hung, dead []time.Duration
				for range trials {
					waitState(b, m, c.cluster, "a healthy cluster", time.Minute, noFindings)
					time.Sleep(rand.N(2 * time.Second))
					at := time.Now()
					if fault == "kill" {
						killTree(b, l, primary)
					} else if err := l.Freeze(primary); err != nil {
						b.Fatal(err)
					}
					waitState(b, m, c.cluster, "DeadPrimary", 30*time.Second, showing(checks.DeadPrimary))
					dead = append(dead, firstAppeared(b, fl, c.cluster, checks.DeadPrimary, at))
					if fault == "freeze" {
						// DeadPrimary suppresses PrimaryHung: when every
						// replica has lost the primary by the time dbha calls
						// it hung, the first finding is DeadPrimary.
						first := dead[len(dead)-1]
						if h, ok := appearedAfter(fl, c.cluster, checks.PrimaryHung, at); ok && h < first {
							first = h
						}
						hung = append(hung, first)
					}
					heal(b, l, primary, fault)
				}
				if fault == "freeze" {
					report(b, "hung", "PrimaryHung or DeadPrimary", hung)
				}
				report(b, "dead", "DeadPrimary", dead)
			})
		}
	}
}

// firstAppeared is how long after at the monitor first logged code.
func firstAppeared(b *testing.B, fl *findingLog, cluster string, code checks.Code, at time.Time) time.Duration {
	d, ok := appearedAfter(fl, cluster, code, at)
	if !ok {
		b.Fatalf("%s: no %s logged after %v", cluster, code, at)
	}
	return d
}

// appearedAfter is how long after at the monitor first logged code, if it
// did.
func appearedAfter(fl *findingLog, cluster string, code checks.Code, at time.Time) (time.Duration, bool) {
	for _, e := range fl.appeared(cluster, code) {
		if e.At.After(at) {
			return e.At.Sub(at).Round(time.Millisecond), true
		}
	}
	return 0, false
}

func heal(b *testing.B, l *Lab, primary, fault string) {
	if fault == "freeze" {
		if err := l.Thaw(primary); err != nil {
			b.Fatal(err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Start(ctx, primary); err != nil {
		b.Fatal(err)
	}
}

// report logs every trial of a series on one line (benchmark logs are cut
// after ten lines), and reports its median and maximum.
func report(b *testing.B, unit, code string, ds []time.Duration) {
	var trials strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&trials, " %d", d.Milliseconds())
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	median := (s[(len(s)-1)/2] + s[len(s)/2]) / 2
	b.Logf("%s after (ms):%s; median %v, max %v, min %v over %d trials", code, trials.String(), median, s[len(s)-1], s[0], len(s))
	b.ReportMetric(float64(median.Microseconds())/1e3, unit+"-median-ms")
	b.ReportMetric(float64(s[len(s)-1].Microseconds())/1e3, unit+"-max-ms")
}
