package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Role is what an instance does in its cluster.
type Role string

const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
	// RoleUnknown is an instance dbha could not reach and that no other
	// instance names as its source.
	RoleUnknown Role = "unknown"
)

// Instance is what one probe of one database instance saw, completed by
// Build with what only the whole cluster tells (lag, errant transactions).
type Instance struct {
	Addr      string `json:"addr"` // host:port as configured
	Reachable bool   `json:"reachable"`
	// Error is why the probe failed; set only when Reachable is false.
	// ErrorCode is InstanceUnreachable or AccessDenied.
	Error     string      `json:"error,omitempty"`
	ErrorCode ProblemCode `json:"error_code,omitempty"`
	// TimedOut: the probe failed because the instance did not answer within
	// the deadline (it may be hung), not because it refused or was refused.
	TimedOut bool   `json:"timed_out,omitempty"`
	Role     Role   `json:"role"`
	ReadOnly bool   `json:"read_only"`
	Version  string `json:"version,omitempty"`
	ServerID uint32 `json:"server_id,omitempty"` // MariaDB/MySQL server_id

	// Current is everything the instance has executed: MariaDB
	// gtid_current_pos, MySQL gtid_executed, PostgreSQL the current WAL LSN on
	// a primary and the replayed LSN on a standby.
	Current Position `json:"current"`
	// Applied is what a replica applied from its source: MariaDB
	// gtid_slave_pos, MySQL the executed set, PostgreSQL the replay LSN.
	Applied Position `json:"applied"`
	// Received is what a replica received from its source and holds, applied
	// or not: MariaDB Gtid_IO_Pos, MySQL the retrieved set merged with the
	// executed set, PostgreSQL the receive (flushed) LSN.
	Received Position `json:"received"`
	// History is the full GTID history the instance holds in its binlogs
	// (MariaDB gtid_binlog_state: the last seq_no per domain and server), used
	// to find errant transactions. Zero for PostgreSQL.
	History Position `json:"history"`

	// Replication is set on every instance configured to follow a source,
	// whether or not its threads run.
	Replication *Replication `json:"replication,omitempty"`

	// Lag and Errant are filled in by Build, on replicas only.
	Lag    *Lag     `json:"lag,omitempty"`
	Errant Position `json:"errant"`

	// Ack is how the instance acknowledges commits as a primary (see
	// Acknowledgement.Lossless); nil when its adapter does not read it.
	Ack *Acknowledgement `json:"ack,omitempty"`

	// Keepalive is, on a PostgreSQL primary, how often its walsenders ping
	// a standby that has sent nothing (half of wal_sender_timeout): a live
	// idle primary is heard at least that often on every link. Zero when
	// unknown, and on MariaDB, where each replica sets its own period
	// (Replication.Heartbeat).
	Keepalive Duration `json:"keepalive,omitempty"`

	ProbeTime Duration `json:"probe_time"`
}

// Replication is a replica's link to its source, as the replica reports it.
type Replication struct {
	Source string `json:"source"` // host:port the replica follows
	// IORunning: MariaDB/MySQL IO thread is running and connected;
	// PostgreSQL: the WAL receiver is streaming.
	IORunning bool `json:"io_running"`
	// SQLRunning: MariaDB/MySQL SQL thread is running; PostgreSQL: replay
	// is not paused.
	SQLRunning bool `json:"sql_running"`
	// IOState and SQLState are the server's own words for the two halves
	// ("Yes", "Connecting", "streaming", "paused", ...).
	IOState  string `json:"io_state"`
	SQLState string `json:"sql_state"`
	IOError  string `json:"io_error,omitempty"`
	SQLError string `json:"sql_error,omitempty"`
	// Halted: the replica was told not to receive (STOP SLAVE IO_THREAD, an
	// empty primary_conninfo): its link, down, says nothing about its
	// source. A link that is down while it tries to connect is not halted.
	Halted bool `json:"halted,omitempty"`
	// SecondsBehind is the server's own lag figure (Seconds_Behind_Master,
	// or the age of the last replayed transaction on PostgreSQL while replay
	// is behind); nil when the server does not know.
	SecondsBehind *float64 `json:"seconds_behind,omitempty"`
	// LastMessage is when the replica last heard from its source, on the
	// prober's clock: PostgreSQL reports how long ago, by its own clock,
	// last_msg_receipt_time was, and the prober subtracts that age from
	// the time the answer reached it (so the two hosts' clocks need not
	// agree). Zero when the engine does not say.
	LastMessage time.Time `json:"last_message,omitzero"`
	// Heartbeats counts the heartbeats the replica received from its source
	// (MariaDB Slave_received_heartbeats). The engine gives no time for
	// them: a watcher learns when the replica last heard from its source by
	// seeing this count, Received or SourceLogPos change between probes.
	Heartbeats int64 `json:"heartbeats,omitempty"`
	// SourceLogPos is how far in its source's binlog the replica has read
	// (MariaDB/MySQL Master_Log_File:Read_Master_Log_Pos). It moves with
	// every event, inside a long transaction too, where Received moves only
	// at its end.
	SourceLogPos string `json:"source_log_pos,omitempty"`
	// Heartbeat is the longest a live, idle source stays silent on this
	// link, as the replica's own settings promise: MariaDB
	// Slave_heartbeat_period; PostgreSQL half of wal_receiver_timeout (the
	// standby pings a silent source then, and a live walsender answers at
	// once). Zero when nothing promises one (heartbeats off, MySQL).
	Heartbeat Duration `json:"heartbeat,omitempty"`
}

// Lag is how far a replica is behind the primary, three ways.
type Lag struct {
	Seconds      *float64 `json:"seconds"`      // nil when unknown (replication stopped)
	Transactions int64    `json:"transactions"` // MariaDB/MySQL: transactions the primary has and the replica lacks
	Bytes        int64    `json:"bytes"`        // PostgreSQL: WAL bytes between primary and replica replay
}

// ProblemCode names a kind of problem Build reports. Codes are stable: they
// appear in JSON output and operators match on them.
type ProblemCode string

const (
	InstanceUnreachable  ProblemCode = "InstanceUnreachable"
	AccessDenied         ProblemCode = "AccessDenied"
	NoPrimary            ProblemCode = "NoPrimary"
	PrimaryUnreachable   ProblemCode = "PrimaryUnreachable"
	NoWritablePrimary    ProblemCode = "NoWritablePrimary"
	TwoWritablePrimaries ProblemCode = "TwoWritablePrimaries"
	ReplicaWritable      ProblemCode = "ReplicaWritable"
	InstanceDetached     ProblemCode = "InstanceDetached"
	ReplicationStopped   ProblemCode = "ReplicationStopped"
	SourceOutsideCluster ProblemCode = "SourceOutsideCluster"
	ErrantTransactions   ProblemCode = "ErrantTransactions"
	TimelineForked       ProblemCode = "TimelineForked"
)

// Problem is one thing wrong in a snapshot, with the instance it concerns.
type Problem struct {
	Code     ProblemCode `json:"code"`
	Instance string      `json:"instance,omitempty"`
	Message  string      `json:"message"`
}

// Snapshot is a cluster as seen at one moment. Decisions are made from it and
// from nothing else.
type Snapshot struct {
	Cluster string    `json:"cluster"`
	Engine  Engine    `json:"engine"`
	TakenAt time.Time `json:"taken_at"`
	// Primary is the address of the primary, "" when there is none or it is
	// ambiguous (see Problems).
	Primary   string     `json:"primary"`
	Instances []Instance `json:"instances"`
	Problems  []Problem  `json:"problems"`
}

// Instance returns the instance with the given address.
func (s Snapshot) Instance(addr string) (Instance, bool) {
	for _, in := range s.Instances {
		if in.Addr == addr {
			return in, true
		}
	}
	return Instance{}, false
}

// Replicas returns the addresses of the instances that follow source, in
// configuration order.
func (s Snapshot) Replicas(source string) []string {
	var out []string
	for _, in := range s.Instances {
		if in.Replication != nil && in.Replication.Source == source && in.Addr != source {
			out = append(out, in.Addr)
		}
	}
	return out
}

// Healthy reports whether the snapshot has no problems.
func (s Snapshot) Healthy() bool { return len(s.Problems) == 0 }

// Duration is a time.Duration that reads as seconds in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Duration(s * float64(time.Second))
	return nil
}

// ErrNoPrimary means a snapshot names no single reachable, writable primary.
var ErrNoPrimary = errors.New("no single writable primary")

// WritablePrimary returns the primary when it is unambiguous, reachable and
// writable: the one instance a replication client (dbha's change stream)
// may follow. Otherwise it returns an error wrapping ErrNoPrimary that says
// why, so that a follower waits instead of guessing.
func (s Snapshot) WritablePrimary() (string, error) {
	for _, p := range s.Problems {
		switch p.Code {
		case TwoWritablePrimaries, NoPrimary, PrimaryUnreachable, NoWritablePrimary:
			return "", fmt.Errorf("cluster %s: %w: %s: %s", s.Cluster, ErrNoPrimary, p.Code, p.Message)
		}
	}
	if s.Primary == "" {
		return "", fmt.Errorf("cluster %s: %w", s.Cluster, ErrNoPrimary)
	}
	return s.Primary, nil
}

// Readers returns the replicas fit to serve reads: reachable, following the
// primary with both halves of replication running, and no more than
// maxLagSeconds behind (0: no limit). Configuration order.
func (s Snapshot) Readers(maxLagSeconds float64) []string {
	var out []string
	for _, in := range s.Instances {
		r := in.Replication
		if !in.Reachable || in.Role != RoleReplica || r == nil || r.Source != s.Primary || !r.IORunning || !r.SQLRunning {
			continue
		}
		if maxLagSeconds > 0 && (in.Lag == nil || in.Lag.Seconds == nil || *in.Lag.Seconds > maxLagSeconds) {
			continue
		}
		out = append(out, in.Addr)
	}
	return out
}
