package daemon

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/topology"
)

// collector turns the monitor's latest states into metrics at scrape time,
// so an instance that leaves a cluster leaves no stale series behind.
type collector struct {
	m *Monitor

	up, lagSeconds, lagTransactions, lagBytes, probeSeconds, cycleSeconds, findings, cycles *prometheus.Desc
	failoverPossible, votesLost, votesNeeded                                                *prometheus.Desc
	checksumLast, checksumComplete, checksumTables, checksumChunks, checksumDifferences     *prometheus.Desc
}

func newCollector(m *Monitor) *collector {
	inst := []string{"cluster", "instance"}
	return &collector{
		m:               m,
		up:              prometheus.NewDesc("dbha_instance_up", "1 when dbha's last SQL probe of the instance succeeded.", append(inst, "role"), nil),
		lagSeconds:      prometheus.NewDesc("dbha_replica_lag_seconds", "Replica lag in seconds, as the replica reports it.", inst, nil),
		lagTransactions: prometheus.NewDesc("dbha_replica_lag_transactions", "Transactions the primary has and the replica lacks (MariaDB/MySQL).", inst, nil),
		lagBytes:        prometheus.NewDesc("dbha_replica_lag_bytes", "WAL bytes between the primary and the replica's replay (PostgreSQL).", inst, nil),
		probeSeconds:    prometheus.NewDesc("dbha_probe_seconds", "Duration of dbha's last probe of the instance.", inst, nil),
		cycleSeconds:    prometheus.NewDesc("dbha_cycle_seconds", "Duration of the last probe cycle of the cluster.", []string{"cluster"}, nil),
		cycles:          prometheus.NewDesc("dbha_cycles_total", "Probe cycles run for the cluster.", []string{"cluster"}, nil),
		findings:        prometheus.NewDesc("dbha_findings", "Current findings by code.", []string{"cluster", "code", "severity"}, nil),
		failoverPossible: prometheus.NewDesc("dbha_failover_possible",
			"1 when the cluster, as it stands, could fail over on its own: enough voters could confirm a lost primary, and a replica follows it.", []string{"cluster"}, nil),
		votesLost:   prometheus.NewDesc("dbha_quorum_lost_votes", "Voters that say the primary is lost, this cycle.", []string{"cluster"}, nil),
		votesNeeded: prometheus.NewDesc("dbha_quorum_needed_votes", "Voters an automatic failover needs: a strict majority.", []string{"cluster"}, nil),
		checksumLast: prometheus.NewDesc("dbha_checksum_last_run_timestamp_seconds",
			"When the cluster's last consistency check (dbha checksum) ended (Unix time).", []string{"cluster"}, nil),
		checksumComplete: prometheus.NewDesc("dbha_checksum_last_run_complete",
			"1 when the last consistency check compared everything it was asked to on every replica.", []string{"cluster"}, nil),
		checksumTables: prometheus.NewDesc("dbha_checksum_last_run_tables", "Tables the last consistency check went through.", []string{"cluster"}, nil),
		checksumChunks: prometheus.NewDesc("dbha_checksum_last_run_chunks", "Chunks the last consistency check compared.", []string{"cluster"}, nil),
		checksumDifferences: prometheus.NewDesc("dbha_checksum_differences",
			"Chunks on which the replica was found different from the primary and not found equal since.", inst, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.lagSeconds, c.lagTransactions, c.lagBytes, c.probeSeconds, c.cycleSeconds, c.cycles, c.findings,
		c.failoverPossible, c.votesLost, c.votesNeeded, c.checksumLast, c.checksumComplete, c.checksumTables, c.checksumChunks, c.checksumDifferences} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, st := range c.m.States() {
		ch <- prometheus.MustNewConstMetric(c.cycles, prometheus.CounterValue, float64(st.Cycles), st.Cluster)
		if st.Cycles == 0 {
			continue
		}
		gauge(c.cycleSeconds, seconds(st.CycleTime), st.Cluster)
		possible := 0.0
		if st.Shape.CanFailOver {
			possible = 1
		}
		gauge(c.failoverPossible, possible, st.Cluster)
		gauge(c.votesLost, float64(len(st.Quorum.Lost)), st.Cluster)
		gauge(c.votesNeeded, float64(st.Quorum.Needed), st.Cluster)
		for _, in := range st.Evidence.Snapshot.Instances {
			up := 0.0
			if in.Reachable {
				up = 1
			}
			gauge(c.up, up, st.Cluster, in.Addr, string(in.Role))
			gauge(c.probeSeconds, seconds(in.ProbeTime), st.Cluster, in.Addr)
			if in.Lag != nil {
				if in.Lag.Seconds != nil {
					gauge(c.lagSeconds, *in.Lag.Seconds, st.Cluster, in.Addr)
				}
				gauge(c.lagTransactions, float64(in.Lag.Transactions), st.Cluster, in.Addr)
				gauge(c.lagBytes, float64(in.Lag.Bytes), st.Cluster, in.Addr)
			}
		}
		type key struct{ code, severity string }
		counts := map[key]int{}
		for _, f := range st.Findings {
			counts[key{string(f.Code), string(f.Severity)}]++
		}
		for k, n := range counts {
			gauge(c.findings, float64(n), st.Cluster, k.code, k.severity)
		}
		if sum := st.Checksum; sum != nil {
			complete := 0.0
			if sum.LastComplete {
				complete = 1
			}
			gauge(c.checksumLast, float64(sum.LastRun.UnixNano())/1e9, st.Cluster)
			gauge(c.checksumComplete, complete, st.Cluster)
			gauge(c.checksumTables, float64(sum.LastTables), st.Cluster)
			gauge(c.checksumChunks, float64(sum.LastChunks), st.Cluster)
			for addr, r := range sum.Replicas {
				gauge(c.checksumDifferences, float64(r.Chunks()), st.Cluster, addr)
			}
		}
	}
}

func seconds(d topology.Duration) float64 { return float64(d) / 1e9 }

// BackupStats counts the daemon's scheduled backups for /metrics (pass it to
// Handler). It is safe for concurrent use; a nil *BackupStats counts
// nothing.
type BackupStats struct {
	runs, lastSuccess *prometheus.Desc

	mu        sync.Mutex
	counts    map[backupRun]int
	succeeded map[string]time.Time // cluster → end of its last good backup
}

type backupRun struct{ cluster, status string }

// NewBackupStats returns empty stats.
func NewBackupStats() *BackupStats {
	return &BackupStats{
		runs: prometheus.NewDesc("dbha_backup_runs_total", "Scheduled backup attempts (a retry counts), by outcome.",
			[]string{"cluster", "status"}, nil),
		lastSuccess: prometheus.NewDesc("dbha_backup_last_success_timestamp_seconds",
			"When the cluster's last successful scheduled backup ended (Unix time).", []string{"cluster"}, nil),
		counts:    map[backupRun]int{},
		succeeded: map[string]time.Time{},
	}
}

func (s *BackupStats) record(cluster string, ok bool, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status := string(backup.Failed)
	if ok {
		status = string(backup.Done)
		s.succeeded[cluster] = at
	}
	s.counts[backupRun{cluster, status}]++
}

func (s *BackupStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.runs
	ch <- s.lastSuccess
}

func (s *BackupStats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.counts {
		ch <- prometheus.MustNewConstMetric(s.runs, prometheus.CounterValue, float64(n), k.cluster, k.status)
	}
	for cluster, at := range s.succeeded {
		ch <- prometheus.MustNewConstMetric(s.lastSuccess, prometheus.GaugeValue, float64(at.UnixNano())/1e9, cluster)
	}
}
