package postgres

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dbha/dbha/topology"
)

// stateQuery reads everything the probe needs in one round trip. Functions
// that fail outside (or inside) recovery are guarded by CASE, which
// PostgreSQL evaluates lazily for volatile functions. It needs pg_monitor
// (for pg_stat_wal_receiver and primary_conninfo) and nothing more.
const stateQuery = `
SELECT current_setting('server_version'),
       pg_is_in_recovery(),
       current_setting('default_transaction_read_only') = 'on',
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_lsn()) END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
       current_setting('primary_conninfo'),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'),
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_receiver_timeout'),
       current_setting('synchronous_standby_names'),
       current_setting('synchronous_commit')`

// receiverQuery reads the WAL receiver. The age of its last message is
// computed by the standby, against its own clock, so that the comparison
// never mixes two hosts' clocks.
const receiverQuery = `
SELECT status, received_tli, coalesce(sender_host, ''), coalesce(sender_port, 0),
       extract(epoch FROM clock_timestamp() - last_msg_receipt_time)::float8
  FROM pg_stat_wal_receiver`

// walTimelineQuery is the highest timeline of the WAL segments a standby
// holds (pg_ls_waldir needs pg_monitor). With its WAL receiver stopped — as
// every standby's is once the primary has died — the standby reports no
// timeline for what it received, and pg_control_checkpoint's is that of
// its last restartpoint, which may be many timelines old: a candidate
// ranked by it is compared on the wrong timeline.
const walTimelineQuery = `
SELECT coalesce(max(('x' || substr(name, 1, 8))::bit(32)::bigint), 0)
  FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}(\.partial)?$'`

type state struct {
	version               string
	inRecovery, readOnly  bool
	currentLSN, walFile   *string
	receiveLSN, replayLSN *string
	replayPaused          bool
	secondsBehind         *float64
	primaryConninfo       string
	checkpointTimeline    uint32
	receiverStatus        string
	receivedTimeline      uint32
	walTimeline           uint32 // highest timeline of the WAL it holds, when the receiver is stopped
	senderHost            string
	senderPort            int
	// lastMessage is when the receiver last heard from its source, on the
	// prober's clock (see probe).
	lastMessage     *time.Time
	receiverRunning bool
	// senderTimeout and receiverTimeout are wal_sender_timeout and
	// wal_receiver_timeout in milliseconds (0: disabled).
	senderTimeout, receiverTimeout int64
	ack                            topology.Acknowledgement
}

func (p *Prober) probe(ctx context.Context, pool *pgxpool.Pool, in *topology.Instance) error {
	var st state
	err := pool.QueryRow(ctx, stateQuery).Scan(&st.version, &st.inRecovery, &st.readOnly,
		&st.currentLSN, &st.walFile, &st.receiveLSN, &st.replayLSN, &st.replayPaused,
		&st.secondsBehind, &st.primaryConninfo, &st.checkpointTimeline, &st.senderTimeout, &st.receiverTimeout,
		&st.ack.StandbyNames, &st.ack.SynchronousCommit)
	if err != nil {
		return fmt.Errorf("read server state: %w", err)
	}
	if st.inRecovery {
		var age *float64
		err = pool.QueryRow(ctx, receiverQuery).Scan(&st.receiverStatus, &st.receivedTimeline,
			&st.senderHost, &st.senderPort, &age)
		// The standby measured the age before it answered: taking it from
		// the time the answer arrived can only make the message look
		// fresher, by the answer's transit, never staler.
		answered := time.Now()
		switch {
		case err == pgx.ErrNoRows:
		case err != nil:
			return fmt.Errorf("read pg_stat_wal_receiver: %w", err)
		default:
			st.receiverRunning = true
			if age != nil {
				at := answered.Add(-time.Duration(*age * float64(time.Second)))
				st.lastMessage = &at
			}
		}
	}
	if st.inRecovery && !st.receiverRunning {
		var tl int64
		if err := pool.QueryRow(ctx, walTimelineQuery).Scan(&tl); err != nil {
			return fmt.Errorf("read the timeline of the WAL it holds: %w", err)
		}
		st.walTimeline = uint32(tl)
	}
	return st.fill(in)
}

// fill turns the server's answers into the model.
func (st state) fill(in *topology.Instance) error {
	in.Version = st.version
	in.ReadOnly = st.inRecovery || st.readOnly
	ack := st.ack
	in.Ack = &ack
	if !st.inRecovery {
		if st.currentLSN == nil || st.walFile == nil {
			return fmt.Errorf("primary reported no current WAL position")
		}
		lsn, err := topology.ParseLSN(*st.currentLSN)
		if err != nil {
			return fmt.Errorf("pg_current_wal_lsn: %w", err)
		}
		tl, err := timelineFromWALFile(*st.walFile)
		if err != nil {
			return err
		}
		in.Current = topology.PostgresAt(lsn, tl)
		in.Keepalive = halfOf(st.senderTimeout)
		return nil
	}

	tl := max(st.checkpointTimeline, st.walTimeline)
	if st.receiverRunning && st.receivedTimeline > 0 {
		tl = st.receivedTimeline
	}
	var err error
	if in.Applied, err = lsnAt(st.replayLSN, tl); err != nil {
		return fmt.Errorf("pg_last_wal_replay_lsn: %w", err)
	}
	if in.Received, err = lsnAt(st.receiveLSN, tl); err != nil {
		return fmt.Errorf("pg_last_wal_receive_lsn: %w", err)
	}
	if o, err := topology.Compare(in.Applied, in.Received); in.Received.IsZero() || (err == nil && o == topology.Ahead) {
		// Never streamed, or restarted and streaming from the start of a
		// segment: it holds at least what it replayed.
		in.Received = in.Applied
	}
	in.Current = in.Applied
	in.Replication = st.replication()
	return nil
}

func (st state) replication() *topology.Replication {
	r := &topology.Replication{SecondsBehind: st.secondsBehind, SQLRunning: !st.replayPaused, SQLState: "replaying",
		Heartbeat: halfOf(st.receiverTimeout)}
	if st.replayPaused {
		r.SQLState = "paused"
	}
	if st.receiverRunning {
		r.Source = net.JoinHostPort(st.senderHost, strconv.Itoa(st.senderPort))
		r.IOState = st.receiverStatus
		r.IORunning = st.receiverStatus == "streaming"
		if st.lastMessage != nil {
			r.LastMessage = *st.lastMessage
		}
		return r
	}
	r.IOState = "stopped"
	if st.primaryConninfo == "" {
		r.IOError = "WAL receiver is not running and primary_conninfo is empty"
		r.Halted = true
		return r
	}
	r.IOError = "WAL receiver is not running (the server log says why)"
	if cfg, err := pgconn.ParseConfig(st.primaryConninfo); err == nil {
		r.Source = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	}
	return r
}

// halfOf is half of a timeout setting given in milliseconds: the period
// at which the side that set it pings a silent peer. Zero (disabled) stays
// zero.
func halfOf(ms int64) topology.Duration {
	return topology.Duration(time.Duration(ms) * time.Millisecond / 2)
}

func lsnAt(s *string, tl uint32) (topology.Position, error) {
	if s == nil {
		return topology.Position{}, nil
	}
	lsn, err := topology.ParseLSN(*s)
	if err != nil {
		return topology.Position{}, err
	}
	return topology.PostgresAt(lsn, tl), nil
}

// timelineFromWALFile reads the timeline from a WAL file name: its first
// eight hex digits.
func timelineFromWALFile(name string) (uint32, error) {
	if len(name) != 24 {
		return 0, fmt.Errorf("WAL file name %q is not 24 hex digits", name)
	}
	tl, err := strconv.ParseUint(name[:8], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("WAL file name %q: %w", name, err)
	}
	return uint32(tl), nil
}

// timelineHistory fetches the history of timeline tl over a replication
// connection (TIMELINE_HISTORY), which needs the REPLICATION attribute but no
// file-reading privilege.
func (p *Prober) timelineHistory(ctx context.Context, addr string, tl uint32) ([]topology.TimelineSwitch, error) {
	cfg, err := ConnConfig(addr, p.user, p.password, p.database, p.tls)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "true"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("replication connection to %s: %w", addr, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := conn.Exec(ctx, fmt.Sprintf("TIMELINE_HISTORY %d", tl)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d on %s: %w", tl, addr, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) < 2 {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d on %s: empty answer", tl, addr)
	}
	return topology.ParseTimelineHistory(string(res[0].Rows[0][1]))
}
