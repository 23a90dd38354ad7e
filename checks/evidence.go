package checks

import (
	"time"

	"github.com/dbha/dbha/topology"
)

// Observation is what one probe cycle gathered about one cluster, raw.
type Observation struct {
	At time.Time
	// Snapshot is the topology discovery of this cycle: dbha's SQL probe of
	// every instance, and every replica's own view of its link.
	Snapshot topology.Snapshot
	// TCP is dbha's TCP connect to the watched primary this cycle; it tells
	// a dead server (refused) from a hung one (accepts, does not answer).
	TCP ProbeResult
	// Stream is dbha's change stream to the primary; nil when none runs.
	Stream *StreamView
	// Peers are other dbha managers' latest observations of the cluster.
	Peers []PeerView
	// External is the operator's check command's verdict; nil when none.
	External *ExternalView
	// Healing lists the instances dbha tried and failed to bring back to
	// follow the writer (rejoin, rewind).
	Healing []HealView
	// Blocked is the anti-flap block that refused the last automatic
	// recovery; nil when none did, or since a writer was published again.
	Blocked *BlockView
	// Stopped is the last automatic recovery attempt that failed or was
	// stopped (a fencing layer that could not secure the old primary, a
	// vetoing hook, Consul unreachable); nil once one succeeds or a writer
	// is published again.
	Stopped *StopView
	// Voters are the managers and the witness that vote with the
	// instances (from the configuration).
	Voters Voters
	// Backups is the cluster's backup catalog as last read; nil when dbha
	// does not keep an eye on it (no schedule, no reverify).
	Backups *BackupsView
	// Paused is the cluster's maintenance mode; nil when not paused.
	Paused *PauseView
	// Inconsistent are the replicas consistency checks (dbha checksum)
	// found different from the primary, with why.
	Inconsistent map[string]string
}

// PauseView is a cluster's maintenance mode (`dbha pause`): no automatic
// recovery starts while it is set.
type PauseView struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	Lift   string    `json:"lift"`
}

// BackupsView is a reading of one cluster's backup catalog.
type BackupsView struct {
	ReadAt time.Time `json:"read_at"`
	// Done are the backups that completed, oldest first.
	Done []BackupView `json:"done"`
}

// BackupView is one completed backup and the outcome of its last
// verification.
type BackupView struct {
	ID       string    `json:"id"`
	Source   string    `json:"source"`
	Finished time.Time `json:"finished"`
	// Verified is nil when the backup was never verified.
	Verified   *bool     `json:"verified,omitempty"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	Detail     string    `json:"detail,omitempty"`
}

// StopView is an automatic recovery that did not complete, as the daemon
// learnt it from the error.
type StopView struct {
	Recovery string    `json:"recovery,omitempty"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	Retry    time.Time `json:"retry"`
	// NextStep: the recovery changed something and stopped before this
	// step; the next attempt resumes it.
	NextStep int `json:"next_step,omitempty"`
}

// HealView is one instance dbha could not bring back: what it tried and
// why it failed. Refused: it cannot succeed until the instance is
// reseeded.
type HealView struct {
	Instance string    `json:"instance"`
	Action   string    `json:"action"`
	Error    string    `json:"error"`
	Refused  bool      `json:"refused,omitempty"`
	Since    time.Time `json:"since"`
	Retry    time.Time `json:"retry,omitzero"`
}

// ProbeResult is one probe's outcome.
type ProbeResult struct {
	OK       bool          `json:"ok"`
	TimedOut bool          `json:"timed_out,omitempty"`
	Latency  time.Duration `json:"latency"`
	Error    string        `json:"error,omitempty"`
}

// StreamView is dbha's change stream as the analysis needs it.
type StreamView struct {
	Connected   bool      `json:"connected"`
	Primary     string    `json:"primary"`      // the instance it streams from
	LastMessage time.Time `json:"last_message"` // event, heartbeat or keepalive
	Error       string    `json:"error,omitempty"`
}

// PeerView is another manager's latest observation, published in Consul.
type PeerView struct {
	Manager string    `json:"manager"`
	At      time.Time `json:"at"`
	Primary string    `json:"primary"`
	// Reaches: that manager's own SQL probe of Primary succeeded.
	Reaches bool   `json:"reaches"`
	Detail  string `json:"detail,omitempty"`
}

// ExternalView is the verdict of an operator's check command (for example
// a probe from another network): exit status 0 says the primary is alive.
type ExternalView struct {
	Alive  bool      `json:"alive"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail,omitempty"`
}

// BlockView is an anti-flap block that refused an automatic recovery, as
// the daemon learnt it from the refusal (checks knows nothing of promote).
type BlockView struct {
	// Recovery is the recent recovery whose block it is.
	Recovery string `json:"recovery"`
	// Reason says what blocks: the recovery and the candidates it keeps
	// out.
	Reason string `json:"reason"`
	// Until is when the block ends by itself.
	Until time.Time `json:"until"`
	// Lift is the one command that lifts it.
	Lift string `json:"lift"`
}

// Evidence is everything Analyze decides from: the latest snapshot and,
// per path, what was seen, with the history that one cycle cannot show
// (consecutive failures, when each replica last heard from the primary).
type Evidence struct {
	At       time.Time         `json:"at"`
	Snapshot topology.Snapshot `json:"snapshot"`
	// Primary is the primary being watched: the snapshot's, or the last one
	// known when this snapshot names none (it may just have died).
	Primary  string              `json:"primary"`
	Manager  ManagerView         `json:"manager"`
	Links    map[string]LinkView `json:"links"` // by replica address
	Stream   *StreamView         `json:"stream,omitempty"`
	Peers    []PeerView          `json:"peers,omitempty"`
	External *ExternalView       `json:"external,omitempty"`
	Healing  []HealView          `json:"healing,omitempty"`
	Blocked  *BlockView          `json:"blocked,omitempty"`
	Stopped  *StopView           `json:"stopped,omitempty"`
	Voters   Voters              `json:"voters,omitzero"`
	Backups  *BackupsView        `json:"backups,omitempty"`
	Paused   *PauseView          `json:"paused,omitempty"`
	// Inconsistent: see Observation.
	Inconsistent map[string]string `json:"inconsistent,omitempty"`
}

// ManagerView is dbha's own path to the primary.
type ManagerView struct {
	TCP ProbeResult `json:"tcp"`
	SQL ProbeResult `json:"sql"`
	// Failures counts consecutive cycles whose SQL probe failed, since
	// FailingSince. HungSince is the start of the current run of cycles in
	// which TCP connected but SQL timed out (zero when not hung).
	Failures     int       `json:"failures"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	HungSince    time.Time `json:"hung_since,omitzero"`
}

// LinkView is one replica's replication link to the primary.
type LinkView struct {
	// Reachable: dbha could ask the replica this cycle.
	Reachable bool   `json:"reachable"`
	Source    string `json:"source"`
	// Connected: the IO thread or WAL receiver is connected/streaming.
	Connected bool `json:"connected"`
	// Halted: the replica was told not to receive; down, it says nothing.
	Halted bool `json:"halted,omitempty"`
	// LastHeard is when the replica last heard from its source: the later
	// of what the engine reports and when the tracker saw its counters or
	// positions move, or its link come up.
	LastHeard time.Time `json:"last_heard,omitzero"`
	// Heartbeat is the longest a live, idle primary stays silent on this
	// link: the shorter of the replica's own period and the primary's
	// keepalive period (PostgreSQL). Zero: the link promises none, and its
	// silence proves nothing.
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
	Error     string        `json:"error,omitempty"`
}

// Tracker carries what analysis needs from earlier cycles. It is a value:
// Observe returns the next one and never changes its receiver.
type Tracker struct {
	primary      string
	failures     int
	failingSince time.Time
	hungSince    time.Time
	// keepalive is the primary's keepalive period as its last answered
	// probe reported it (it cannot say while it is down or hung).
	keepalive time.Duration
	marks     map[string]linkMark
}

// linkMark is what a replica's link looked like at the last probe that
// reached the replica, and when it last heard from its source.
type linkMark struct {
	source     string
	connected  bool
	heartbeats int64
	received   string
	sourcePos  string
	heard      time.Time
}

// Observe folds one cycle into the tracker and returns the evidence for it.
func (t Tracker) Observe(o Observation) (Tracker, Evidence) {
	next := Tracker{primary: t.primary, marks: map[string]linkMark{}}
	if o.Snapshot.Primary != "" {
		next.primary = o.Snapshot.Primary
	}
	if next.primary == t.primary {
		next.keepalive = t.keepalive
	}
	if in, ok := o.Snapshot.Instance(next.primary); ok && in.Reachable {
		next.keepalive = time.Duration(in.Keepalive)
	}
	ev := Evidence{At: o.At, Snapshot: o.Snapshot, Primary: next.primary, Stream: o.Stream,
		Peers: o.Peers, External: o.External, Healing: o.Healing, Blocked: o.Blocked, Stopped: o.Stopped, Voters: o.Voters, Backups: o.Backups, Paused: o.Paused, Inconsistent: o.Inconsistent, Links: map[string]LinkView{}}

	ev.Manager = ManagerView{TCP: o.TCP, SQL: sqlResult(o.Snapshot, next.primary)}
	if next.primary == t.primary {
		next.failures, next.failingSince, next.hungSince = t.failures, t.failingSince, t.hungSince
	}
	if ev.Manager.SQL.OK {
		next.failures, next.failingSince, next.hungSince = 0, time.Time{}, time.Time{}
	} else {
		if next.failures == 0 {
			next.failingSince = o.At
		}
		next.failures++
		hung := o.TCP.OK && ev.Manager.SQL.TimedOut
		switch {
		case hung && next.hungSince.IsZero():
			next.hungSince = o.At
		case !hung:
			next.hungSince = time.Time{}
		}
	}
	ev.Manager.Failures, ev.Manager.FailingSince, ev.Manager.HungSince = next.failures, next.failingSince, next.hungSince

	for _, in := range o.Snapshot.Instances {
		if in.Addr == next.primary || (in.Replication == nil && in.Reachable) {
			continue
		}
		lv, mark := link(in, t.marks[in.Addr], next.keepalive, o.At)
		ev.Links[in.Addr] = lv
		next.marks[in.Addr] = mark
	}
	return next, ev
}

// sqlResult is dbha's SQL probe of the primary, from the snapshot.
func sqlResult(s topology.Snapshot, primary string) ProbeResult {
	in, ok := s.Instance(primary)
	if !ok {
		return ProbeResult{Error: "the primary is not an instance of the cluster"}
	}
	r := ProbeResult{OK: in.Reachable, Latency: time.Duration(in.ProbeTime), Error: in.Error}
	r.TimedOut = !in.Reachable && in.TimedOut
	return r
}

// link describes a replica's link and moves its mark: the replica heard
// from its source when the engine says so (LastMessage), when its heartbeat
// count or positions changed since the last probe, or when its link came
// up or turned to another source (it connected: what was seen before says
// nothing about this source). keepalive is the primary's keepalive period.
func link(in topology.Instance, prev linkMark, keepalive time.Duration, at time.Time) (LinkView, linkMark) {
	if !in.Reachable {
		return LinkView{Reachable: false, Error: in.Error}, prev
	}
	r := in.Replication
	lv := LinkView{Reachable: true, Source: r.Source, Connected: r.IORunning, Halted: r.Halted, Error: r.IOError,
		Heartbeat: shortest(time.Duration(r.Heartbeat), keepalive)}
	mark := linkMark{source: r.Source, connected: r.IORunning, heartbeats: r.Heartbeats,
		received: in.Received.String(), sourcePos: r.SourceLogPos, heard: prev.heard}
	restarted := prev.heard.IsZero() || !prev.connected || prev.source != r.Source
	// A move between probes says only that the replica heard something
	// since the last one, and is stamped with this probe's time: up to a
	// cycle late. An engine that says when it last heard (LastMessage) is
	// believed instead.
	moved := mark.heartbeats != prev.heartbeats || mark.received != prev.received || mark.sourcePos != prev.sourcePos
	if r.IORunning && (restarted || (moved && r.LastMessage.IsZero())) {
		mark.heard = at
	}
	lv.LastHeard = mark.heard
	if r.LastMessage.After(lv.LastHeard) {
		lv.LastHeard = r.LastMessage
	}
	return lv, mark
}

// shortest is the smaller of two periods, zero standing for none.
func shortest(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}
