package checks

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbha/dbha/topology"
)

// Code names a kind of finding. Codes are stable: logs, metrics, the API
// and audit records carry them.
type Code string

const (
	DeadPrimary                Code = "DeadPrimary"
	DeadPrimaryAndSomeReplicas Code = "DeadPrimaryAndSomeReplicas"
	DeadPrimaryNoQuorum        Code = "DeadPrimaryNoQuorum"
	UnreachablePrimary         Code = "UnreachablePrimary"
	PrimaryHung                Code = "PrimaryHung"
	NoWritablePrimary          Code = "NoWritablePrimary"
	TwoWritablePrimaries       Code = "TwoWritablePrimaries"
	ReplicationStopped         Code = "ReplicationStopped"
	ReplicaLagging             Code = "ReplicaLagging"
	ErrantTransactions         Code = "ErrantTransactions"
	ReplicaUnreachable         Code = "ReplicaUnreachable"
	InstanceDetached           Code = "InstanceDetached"
	RejoinFailed               Code = "RejoinFailed"
	RewindRefused              Code = "RewindRefused"
	RecoveryBlocked            Code = "RecoveryBlocked"
	RecoveryStopped            Code = "RecoveryStopped"
	BackupVerifyFailed         Code = "BackupVerifyFailed"
	FailoverPaused             Code = "FailoverPaused"
	ReplicaInconsistent        Code = "ReplicaInconsistent"
)

// Codes of events that are not findings: they happen once and are
// notified once (alert levels apply to them as to findings).
const (
	Recovered    Code = "Recovered"    // a recovery replaced the primary
	BackupFailed Code = "BackupFailed" // a scheduled backup failed, its retry too
)

// Codes lists every code, findings' and events', as the configuration of
// alert levels may name them.
func Codes() []Code {
	out := []Code{Recovered, BackupFailed}
	for _, r := range rules {
		if !slices.Contains(out, r.code) {
			out = append(out, r.code)
		}
	}
	slices.Sort(out)
	return out
}

// Severity ranks findings: the level they alert at.
type Severity string

const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

// Rank orders severities: info 1, warning 2, critical 3; 0 for anything
// else.
func (s Severity) Rank() int {
	return map[Severity]int{Info: 1, Warning: 2, Critical: 3}[s]
}

// ParseSeverity reads info, warning or critical.
func ParseSeverity(s string) (Severity, error) {
	if v := Severity(s); v.Rank() > 0 {
		return v, nil
	}
	return "", fmt.Errorf("level %q is not info, warning or critical", s)
}

// Relevel gives the findings whose code levels names that level instead
// of the analysis's own; the others keep theirs. It is pure.
func Relevel(findings []Finding, levels map[Code]Severity) []Finding {
	if len(levels) == 0 {
		return findings
	}
	out := slices.Clone(findings)
	for i, f := range out {
		if l, ok := levels[f.Code]; ok {
			out[i].Severity = l
		}
	}
	return out
}

// Action is what a finding calls for. The daemon only dispatches it: it
// decides nothing about which finding leads to which change.
type Action string

const (
	// Report: the finding is logged, served and alerted on; nothing changes.
	Report Action = ""
	// Recover: replace the primary (a failover), when the cluster allows
	// automatic failover.
	Recover Action = "recover"
	// Enforce: keep the cluster at one writer between recoveries: fence a
	// writable instance the writer endpoint does not name, rejoin an
	// instance that follows nobody.
	Enforce Action = "enforce"
)

// Finding is one conclusion with the evidence that supports it.
type Finding struct {
	Code     Code     `json:"code"`
	Severity Severity `json:"severity"`
	Instance string   `json:"instance,omitempty"`
	Summary  string   `json:"summary"`
	// Votes are the paths' verdicts on the primary, for findings about it.
	Votes []Vote `json:"votes,omitempty"`
	// Quorum is the voters' count, for findings about a lost primary.
	Quorum *Quorum `json:"quorum,omitempty"`
	// Action is what the finding calls for; Report (empty) for nothing.
	Action Action `json:"action,omitempty"`
}

// rule is one row of the analysis table: a code, its severity (a match
// may raise it for one finding), what it calls for, what matches it, and
// the findings it makes redundant when it matches.
type rule struct {
	code       Code
	severity   Severity
	action     Action
	match      func(a *analysis) []Finding // findings with Instance, Summary and Votes set
	suppresses []Code
}

// rules is the analysis table. Order is the order of the output.
var rules = []rule{
	{code: DeadPrimary, severity: Critical, action: Recover, match: matchDeadPrimary(false),
		suppresses: []Code{UnreachablePrimary, PrimaryHung, ReplicationStopped}},
	{code: DeadPrimaryAndSomeReplicas, severity: Critical, action: Recover, match: matchDeadPrimary(true),
		suppresses: []Code{UnreachablePrimary, PrimaryHung, ReplicationStopped}},
	{code: DeadPrimaryNoQuorum, severity: Critical, match: matchNoQuorum,
		suppresses: []Code{UnreachablePrimary, PrimaryHung, ReplicationStopped}},
	{code: FailoverPaused, severity: Warning, match: matchFailoverPaused},
	{code: RecoveryBlocked, severity: Critical, match: matchRecoveryBlocked},
	{code: RecoveryStopped, severity: Critical, match: matchRecoveryStopped},
	{code: PrimaryHung, severity: Critical, match: matchPrimaryHung,
		suppresses: []Code{UnreachablePrimary, ReplicationStopped}},
	{code: UnreachablePrimary, severity: Warning, match: matchUnreachablePrimary},
	{code: TwoWritablePrimaries, severity: Critical, action: Enforce, match: fromProblem(topology.TwoWritablePrimaries)},
	{code: NoWritablePrimary, severity: Critical, action: Enforce, match: fromProblem(topology.NoWritablePrimary)},
	{code: InstanceDetached, severity: Warning, action: Enforce, match: fromProblem(topology.InstanceDetached)},
	{code: RewindRefused, severity: Critical, match: matchHealing(true)},
	{code: RejoinFailed, severity: Warning, match: matchHealing(false)},
	{code: ErrantTransactions, severity: Warning, match: fromProblem(topology.ErrantTransactions)},
	{code: ReplicationStopped, severity: Warning, match: fromProblem(topology.ReplicationStopped)},
	{code: ReplicaUnreachable, severity: Warning, match: matchReplicaUnreachable},
	{code: ReplicaLagging, severity: Warning, match: matchReplicaLagging},
	{code: BackupVerifyFailed, severity: Warning, match: matchBackupVerifyFailed},
	{code: ReplicaInconsistent, severity: Warning, match: matchReplicaInconsistent},
}

// analysis is the working state of one Analyze call.
type analysis struct {
	ev    Evidence
	p     Policy
	now   time.Time
	votes []Vote
	t     tally
	q     Quorum
}

// Analyze turns evidence into findings. It is pure and deterministic: the
// same evidence, policy and now give the same findings in the same order.
func Analyze(ev Evidence, p Policy, now time.Time) []Finding {
	ev.At = now
	a := newAnalysis(ev, p, now)
	suppressed := map[Code]bool{}
	var out []Finding
	for _, r := range rules {
		if suppressed[r.code] {
			continue
		}
		found := r.match(a)
		for i := range found {
			found[i].Code, found[i].Action = r.code, r.action
			if found[i].Severity == "" {
				found[i].Severity = r.severity
			}
		}
		if len(found) > 0 {
			for _, c := range r.suppresses {
				suppressed[c] = true
			}
		}
		out = append(out, found...)
	}
	return slices.DeleteFunc(out, func(f Finding) bool { return suppressed[f.Code] })
}

// newAnalysis is the working state of evidence: every path's vote, their
// tally and the voters' count.
func newAnalysis(ev Evidence, p Policy, now time.Time) *analysis {
	a := &analysis{ev: ev, p: p, now: now, votes: Votes(ev, p)}
	a.t = count(a.votes)
	a.q = a.quorum()
	return a
}

// primaryDown: dbha's own path says dead, or the primary is hung and
// forsaken, and no path says alive.
func (a *analysis) primaryDown() bool {
	return a.ev.Primary != "" && (a.t.manager == Dead || a.hungAndForsaken()) &&
		a.t.replicasAlive == 0 && a.t.othersAlive == 0
}

// hungAndForsaken: dbha's SQL probes of the primary have timed out Failures
// times in a row while TCP still connects, and every replica that follows
// it votes dead: its link dropped, or went silent past its heartbeats. A
// primary that is only slow keeps its replicas' heartbeats flowing, and
// they vouch for it; a stopped server (a hang, a frozen host) sends none.
// This does not wait for HungDeadAfter, which is for a hang the replicas
// do not all confirm.
func (a *analysis) hungAndForsaken() bool {
	m := a.ev.Manager
	return a.t.manager != Alive && !m.HungSince.IsZero() && m.Failures >= a.p.Failures &&
		a.t.replicasDead > 0 && a.t.replicasNone == 0
}

// matchDeadPrimary: the primary is down along every path, at least one
// replica lost it, and a strict majority of the cluster's voters says so.
func matchDeadPrimary(someReplicasUnknown bool) func(a *analysis) []Finding {
	return func(a *analysis) []Finding {
		if !a.primaryDown() || a.t.replicasDead == 0 || (a.t.replicasNone > 0) != someReplicasUnknown || !a.q.Held() {
			return nil
		}
		s := fmt.Sprintf("primary %s is dead: dbha and %d replica(s) lost it", a.ev.Primary, a.t.replicasDead)
		if a.t.manager != Dead {
			s = fmt.Sprintf("primary %s is dead: it accepts connections but has not answered SQL for %v, and all %d replica(s) lost it",
				a.ev.Primary, a.now.Sub(a.ev.Manager.HungSince).Round(time.Millisecond), a.t.replicasDead)
		}
		if someReplicasUnknown {
			s += fmt.Sprintf("; %d replica(s) cannot confirm (unreachable, halted, or their silence proves nothing yet)", a.t.replicasNone)
		}
		s += fmt.Sprintf("; quorum: %d of %d voters, %d needed", len(a.q.Lost), a.q.Voters, a.q.Needed)
		return []Finding{{Instance: a.ev.Primary, Summary: s, Votes: a.votes, Quorum: &a.q}}
	}
}

// matchNoQuorum: dbha and at least one other voter lost the primary and no
// path hears it, but the voters that say so are no strict majority. That
// is what a side of a partition without the majority sees; it must not
// promote, since the primary may be taking writes on the other side. The
// operator, who may know better, can promote by hand with --force.
func matchNoQuorum(a *analysis) []Finding {
	if !a.primaryDown() || len(a.q.Lost) < 2 || a.q.Held() {
		return nil
	}
	s := fmt.Sprintf("primary %s looks lost, but only to %d of %d voters (%s), and a failover needs %d: no automatic failover, "+
		"this side of a partition may be the minority; if the primary is known to be down, `dbha promote --cluster %s --force` overrides the quorum",
		a.ev.Primary, len(a.q.Lost), a.q.Voters, strings.Join(a.q.Lost, ", "), a.q.Needed, a.ev.Snapshot.Cluster)
	return []Finding{{Instance: a.ev.Primary, Summary: s, Votes: a.votes, Quorum: &a.q}}
}

// matchRecoveryBlocked: the anti-flap block refused the automatic recovery
// and the cluster has no writable primary. Lifting the block is the
// operator's call; the finding says what blocks, until when, and how.
func matchRecoveryBlocked(a *analysis) []Finding {
	b := a.ev.Blocked
	if b == nil || !a.now.Before(b.Until) {
		return nil
	}
	if _, err := a.ev.Snapshot.WritablePrimary(); err == nil {
		return nil
	}
	s := fmt.Sprintf("the cluster has no writer and automatic recovery is blocked: %s; blocked until %s (%v from now); `%s` lifts it",
		b.Reason, b.Until.UTC().Format(time.RFC3339), b.Until.Sub(a.now).Round(time.Second), b.Lift)
	return []Finding{{Instance: a.ev.Primary, Summary: s}}
}

// matchRecoveryStopped: the last automatic recovery attempt failed or was
// stopped and the cluster has no writable primary. The finding says why,
// whether the recovery changed anything (it is then resumed, never
// restarted), and when the next attempt comes.
func matchRecoveryStopped(a *analysis) []Finding {
	st := a.ev.Stopped
	if st == nil {
		return nil
	}
	if _, err := a.ev.Snapshot.WritablePrimary(); err == nil {
		return nil
	}
	s := "the cluster has no writer: the automatic recovery"
	if st.Recovery != "" {
		s += " " + st.Recovery
	}
	s += " did not complete: " + st.Reason
	if st.NextStep > 0 {
		s += fmt.Sprintf("; it stopped before step %d and is resumed from there", st.NextStep)
	}
	if a.now.Before(st.Retry) {
		s += fmt.Sprintf("; next attempt in %v", st.Retry.Sub(a.now).Round(time.Second))
	}
	return []Finding{{Instance: a.ev.Primary, Summary: s}}
}

func matchPrimaryHung(a *analysis) []Finding {
	h := a.ev.Manager.HungSince
	if a.ev.Primary == "" || h.IsZero() || a.now.Sub(h) < a.p.HungAfter {
		return nil
	}
	s := fmt.Sprintf("primary %s accepts connections but has not answered SQL for %v", a.ev.Primary, a.now.Sub(h).Round(time.Millisecond))
	if a.t.replicasAlive+a.t.othersAlive > 0 {
		s += fmt.Sprintf("; %d path(s) still hear from it", a.t.replicasAlive+a.t.othersAlive)
	}
	return []Finding{{Instance: a.ev.Primary, Summary: s, Votes: a.votes}}
}

// matchUnreachablePrimary: dbha cannot reach the primary but the other
// paths do not confirm a death. Never a reason to fail over.
func matchUnreachablePrimary(a *analysis) []Finding {
	if a.ev.Primary == "" || a.t.manager != Dead {
		return nil
	}
	var why string
	switch alive := a.t.replicasAlive + a.t.othersAlive; {
	case alive > 0:
		why = fmt.Sprintf("%d other path(s) still hear from it: dbha is partitioned from the primary, which is no reason to fail over", alive)
	case a.t.replicasDead == 0:
		why = "no replica can confirm that it is down"
	default:
		return nil
	}
	return []Finding{{Instance: a.ev.Primary, Summary: fmt.Sprintf("dbha cannot reach primary %s; %s", a.ev.Primary, why), Votes: a.votes}}
}

// fromProblem carries a topology problem over as a finding.
func fromProblem(code topology.ProblemCode) func(a *analysis) []Finding {
	return func(a *analysis) []Finding {
		var out []Finding
		for _, p := range a.ev.Snapshot.Problems {
			if p.Code == code {
				out = append(out, Finding{Instance: p.Instance, Summary: p.Message})
			}
		}
		return out
	}
}

// matchHealing: an instance dbha tried and failed to bring back to follow
// the writer, while it is still detached. A refused rewind is critical:
// nothing dbha does will bring the instance back, and the cluster runs a
// replica short until it is reseeded.
func matchHealing(refused bool) func(a *analysis) []Finding {
	return func(a *analysis) []Finding {
		var out []Finding
		for _, h := range a.ev.Healing {
			in, ok := a.ev.Snapshot.Instance(h.Instance)
			if h.Refused != refused || !ok || !in.Reachable || in.Replication != nil {
				continue
			}
			s := fmt.Sprintf("%s could not %s since %s: %s", h.Instance, h.Action, h.Since.Format(time.RFC3339), h.Error)
			if refused {
				s += fmt.Sprintf("; it stays fenced: reseed it with `dbha backup reseed --cluster %s --instance %s`", a.ev.Snapshot.Cluster, h.Instance)
			} else if !h.Retry.IsZero() {
				s += fmt.Sprintf("; next attempt in %v", h.Retry.Sub(a.now).Round(time.Second))
			}
			out = append(out, Finding{Instance: h.Instance, Summary: s})
		}
		return out
	}
}

func matchReplicaUnreachable(a *analysis) []Finding {
	var out []Finding
	for _, p := range a.ev.Snapshot.Problems {
		if (p.Code == topology.InstanceUnreachable || p.Code == topology.AccessDenied) && p.Instance != a.ev.Primary {
			out = append(out, Finding{Instance: p.Instance, Summary: p.Message})
		}
	}
	return out
}

func matchReplicaLagging(a *analysis) []Finding {
	var out []Finding
	for _, in := range a.ev.Snapshot.Instances {
		if in.Lag == nil || in.Role != topology.RoleReplica {
			continue
		}
		if why := overLimit(*in.Lag, a.p); why != "" {
			out = append(out, Finding{Instance: in.Addr, Summary: "replica lags: " + why})
		}
	}
	return out
}

func overLimit(l topology.Lag, p Policy) string {
	var over []string
	if p.LagSeconds > 0 && l.Seconds != nil && *l.Seconds > p.LagSeconds {
		over = append(over, fmt.Sprintf("%.0fs behind (limit %.0fs)", *l.Seconds, p.LagSeconds))
	}
	if p.LagTransactions > 0 && l.Transactions > p.LagTransactions {
		over = append(over, fmt.Sprintf("%d transactions behind (limit %d)", l.Transactions, p.LagTransactions))
	}
	if p.LagBytes > 0 && l.Bytes > p.LagBytes {
		over = append(over, fmt.Sprintf("%d bytes behind (limit %d)", l.Bytes, p.LagBytes))
	}
	return strings.Join(over, ", ")
}

// matchBackupVerifyFailed: a completed backup failed its last
// verification (its files damaged, its restore broken, its point-in-time
// window gone). Critical when it is the newest backup, the one a restore
// or a reseed would reach for; a warning when a newer one still verifies.
// It clears when the backup verifies again or leaves the catalog.
func matchBackupVerifyFailed(a *analysis) []Finding {
	b := a.ev.Backups
	if b == nil || len(b.Done) == 0 {
		return nil
	}
	var failed []string
	for _, e := range b.Done {
		if e.Verified != nil && !*e.Verified {
			failed = append(failed, fmt.Sprintf("%s from %s (verified %s: %s)", e.ID, e.Source, e.VerifiedAt.UTC().Format(time.RFC3339), e.Detail))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	newest := b.Done[len(b.Done)-1]
	f := Finding{Summary: fmt.Sprintf("%d of %d backups no longer verify: %s", len(failed), len(b.Done), strings.Join(failed, "; "))}
	if newest.Verified != nil && !*newest.Verified {
		f.Severity = Critical
		f.Summary = "the newest backup does not verify; " + f.Summary
	}
	return []Finding{f}
}

// matchReplicaInconsistent: a consistency check found a replica's data
// different from the primary's. It clears when a later check compares
// those tables and finds them equal (after the replica is fixed or
// reseeded). A promotion ranks the replica below the others meanwhile.
func matchReplicaInconsistent(a *analysis) []Finding {
	var addrs []string
	for addr := range a.ev.Inconsistent {
		addrs = append(addrs, addr)
	}
	slices.Sort(addrs)
	var out []Finding
	for _, addr := range addrs {
		out = append(out, Finding{Instance: addr, Summary: fmt.Sprintf("%s %s: a promotion ranks it below the others; dbha checksum clears this once it finds the tables equal",
			addr, a.ev.Inconsistent[addr])})
	}
	return out
}

// matchFailoverPaused: the cluster is in maintenance mode. Critical while
// its primary is lost (a DeadPrimary that no recovery follows), a warning
// otherwise: an operator left it paused.
func matchFailoverPaused(a *analysis) []Finding {
	p := a.ev.Paused
	if p == nil {
		return nil
	}
	s := fmt.Sprintf("automatic failover is paused by %s since %s", p.By, p.At.UTC().Format(time.RFC3339))
	if p.Reason != "" {
		s += " (" + p.Reason + ")"
	}
	s += fmt.Sprintf(": findings are reported, no recovery starts; `%s` resumes it", p.Lift)
	f := Finding{Summary: s}
	if a.primaryDown() {
		f.Severity = Critical
		f.Summary = "the primary is lost and " + s
	}
	return []Finding{f}
}
