package topology

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func mdb(t *testing.T, s string) Position {
	t.Helper()
	p, err := ParseMariaDB(s)
	if err != nil {
		t.Fatalf("ParseMariaDB(%q): %v", s, err)
	}
	return p
}

func primaryAt(addr string, pos Position) Instance {
	return Instance{Addr: addr, Reachable: true, Current: pos, History: pos}
}

func replicaOf(addr, source string, pos Position) Instance {
	zero := 0.0
	return Instance{Addr: addr, Reachable: true, ReadOnly: true, Current: pos, Applied: pos, Received: pos, History: pos,
		Replication: &Replication{Source: source, IORunning: true, SQLRunning: true, IOState: "Yes", SQLState: "Yes", SecondsBehind: &zero}}
}

func codes(s Snapshot) []string {
	var out []string
	for _, p := range s.Problems {
		out = append(out, string(p.Code)+"@"+p.Instance)
	}
	slices.Sort(out)
	return out
}

func TestBuild(t *testing.T) {
	const p, r1, r2 = "10.0.0.1:3306", "10.0.0.2:3306", "10.0.0.3:3306"
	cases := []struct {
		name        string
		engine      Engine
		instances   func(t *testing.T) []Instance
		wantPrimary string
		wantCodes   []string
		check       func(t *testing.T, s Snapshot)
	}{
		{
			name: "healthy cluster with a lagging replica", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), replicaOf(r1, p, mdb(t, "0-1-10")), replicaOf(r2, p, mdb(t, "0-1-7"))}
			},
			wantPrimary: p,
			check: func(t *testing.T, s Snapshot) {
				in, _ := s.Instance(r2)
				if in.Role != RoleReplica || in.Lag == nil || in.Lag.Transactions != 3 {
					t.Errorf("r2 = role %s lag %+v, want replica 3 trx behind", in.Role, in.Lag)
				}
				if got := s.Replicas(p); !slices.Equal(got, []string{r1, r2}) {
					t.Errorf("replicas of primary = %v", got)
				}
			},
		},
		{
			name: "unreachable replica is reported and the rest still shown", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), replicaOf(r1, p, mdb(t, "0-1-10")),
					{Addr: r2, Error: "connection refused", ErrorCode: InstanceUnreachable}}
			},
			wantPrimary: p,
			wantCodes:   []string{"InstanceUnreachable@" + r2},
			check: func(t *testing.T, s Snapshot) {
				if in, _ := s.Instance(r1); in.Role != RoleReplica {
					t.Errorf("r1 role = %s", in.Role)
				}
			},
		},
		{
			name: "wrong password names the instance", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), {Addr: r1, Error: "access denied for user \"dbha\"", ErrorCode: AccessDenied}}
			},
			wantPrimary: p,
			wantCodes:   []string{"AccessDenied@" + r1},
		},
		{
			name: "two writable primaries", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), replicaOf(r1, p, mdb(t, "0-1-10")), primaryAt(r2, mdb(t, "0-1-10,0-3-11"))}
			},
			wantPrimary: p, // the one the replica follows
			wantCodes:   []string{"TwoWritablePrimaries@"},
		},
		{
			name: "dead primary is found through its replicas", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				a, b := replicaOf(r1, p, mdb(t, "0-1-10")), replicaOf(r2, p, mdb(t, "0-1-9"))
				a.Replication.IORunning, a.Replication.IOState = false, "Connecting"
				b.Replication.IORunning, b.Replication.IOState = false, "Connecting"
				return []Instance{{Addr: p, Error: "refused", ErrorCode: InstanceUnreachable}, a, b}
			},
			wantPrimary: p,
			wantCodes: []string{"InstanceUnreachable@" + p, "PrimaryUnreachable@" + p,
				"ReplicationStopped@" + r1, "ReplicationStopped@" + r2},
			check: func(t *testing.T, s Snapshot) {
				if in, _ := s.Instance(p); in.Role != RolePrimary {
					t.Errorf("dead primary role = %s, want primary", in.Role)
				}
			},
		},
		{
			name: "stopped SQL thread carries its error", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				r := replicaOf(r1, p, mdb(t, "0-1-9"))
				r.Replication.SQLRunning, r.Replication.SQLState, r.Replication.SQLError = false, "No", "Duplicate entry '1'"
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), r}
			},
			wantPrimary: p,
			wantCodes:   []string{"ReplicationStopped@" + r1},
			check: func(t *testing.T, s Snapshot) {
				if !strings.Contains(s.Problems[0].Message, "Duplicate entry '1'") {
					t.Errorf("message %q lacks the SQL error", s.Problems[0].Message)
				}
			},
		},
		{
			name: "replica of a host outside the cluster", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), replicaOf(r1, "192.0.2.9:3306", mdb(t, "0-1-10"))}
			},
			wantPrimary: p,
			wantCodes:   []string{"SourceOutsideCluster@" + r1},
		},
		{
			name: "local write on a replica is errant", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				r := replicaOf(r1, p, mdb(t, "0-2-11"))
				r.History = mdb(t, "0-1-10,0-2-11")
				return []Instance{primaryAt(p, mdb(t, "0-1-12")), r}
			},
			wantPrimary: p,
			wantCodes:   []string{"ErrantTransactions@" + r1},
			check: func(t *testing.T, s Snapshot) {
				in, _ := s.Instance(r1)
				if in.Errant.String() != "0-2-11" {
					t.Errorf("errant = %q, want 0-2-11", in.Errant)
				}
			},
		},
		{
			name: "writable replica", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				r := replicaOf(r1, p, mdb(t, "0-1-10"))
				r.ReadOnly = false
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), r}
			},
			wantPrimary: p,
			wantCodes:   []string{"ReplicaWritable@" + r1},
		},
		{
			name: "read-only primary", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				pr := primaryAt(p, mdb(t, "0-1-10"))
				pr.ReadOnly = true
				return []Instance{pr, replicaOf(r1, p, mdb(t, "0-1-10"))}
			},
			wantPrimary: p,
			wantCodes:   []string{"NoWritablePrimary@" + p},
		},
		{
			name: "detached read-only instance", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				d := primaryAt(r2, mdb(t, "0-1-5"))
				d.ReadOnly = true
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), replicaOf(r1, p, mdb(t, "0-1-10")), d}
			},
			wantPrimary: p,
			wantCodes:   []string{"InstanceDetached@" + r2},
		},
		{
			name: "after a failover, a replica still on the fenced old primary is detached too", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				old := primaryAt(r1, mdb(t, "0-1-12"))
				old.ReadOnly = true
				stray := replicaOf(r2, r1, mdb(t, "0-1-12"))
				stray.Replication.IORunning, stray.Replication.IOState = false, "No"
				return []Instance{primaryAt(p, mdb(t, "0-1-10,0-2-3")), old, stray}
			},
			wantPrimary: p,
			wantCodes:   []string{"ErrantTransactions@" + r2, "InstanceDetached@" + r1, "InstanceDetached@" + r2, "ReplicationStopped@" + r2},
		},
		{
			name: "a cascaded replica of a replica is in the primary's tree", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt(p, mdb(t, "0-1-10")), replicaOf(r1, p, mdb(t, "0-1-10")), replicaOf(r2, r1, mdb(t, "0-1-10"))}
			},
			wantPrimary: p,
		},
		{
			name: "source spelled localhost matches the configured 127.0.0.1", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{primaryAt("127.0.0.1:3306", mdb(t, "0-1-10")), replicaOf("127.0.0.1:3307", "localhost:3306", mdb(t, "0-1-10"))}
			},
			wantPrimary: "127.0.0.1:3306",
			check: func(t *testing.T, s Snapshot) {
				if got := s.Replicas("127.0.0.1:3306"); len(got) != 1 {
					t.Errorf("replicas = %v", got)
				}
			},
		},
		{
			name: "standby on a forked timeline", engine: Postgres,
			instances: func(t *testing.T) []Instance {
				pr := primaryAt(p, PostgresAt(0x5000000, 2).WithHistory([]TimelineSwitch{{Timeline: 1, Switch: 0x3000000}}))
				pr.History = Position{}
				st := replicaOf(r1, p, PostgresAt(0x3500000, 1))
				st.History = Position{}
				return []Instance{pr, st}
			},
			wantPrimary: p,
			wantCodes:   []string{"TimelineForked@" + r1},
		},
		{
			name: "standby behind on the same timeline", engine: Postgres,
			instances: func(t *testing.T) []Instance {
				pr := primaryAt(p, PostgresAt(0x5000000, 1))
				pr.History = Position{}
				st := replicaOf(r1, p, PostgresAt(0x4000000, 1))
				st.History = Position{}
				return []Instance{pr, st}
			},
			wantPrimary: p,
			check: func(t *testing.T, s Snapshot) {
				in, _ := s.Instance(r1)
				if in.Lag == nil || in.Lag.Bytes != 0x1000000 {
					t.Errorf("lag = %+v, want 16 MiB", in.Lag)
				}
			},
		},
		{
			name: "nobody reachable", engine: MariaDB,
			instances: func(t *testing.T) []Instance {
				return []Instance{{Addr: p, Error: "refused"}, {Addr: r1, Error: "refused"}}
			},
			wantCodes: []string{"InstanceUnreachable@" + p, "InstanceUnreachable@" + r1, "NoPrimary@"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Build("c", tc.engine, tc.instances(t), time.Unix(0, 0))
			if s.Primary != tc.wantPrimary {
				t.Errorf("primary = %q, want %q", s.Primary, tc.wantPrimary)
			}
			want := slices.Clone(tc.wantCodes)
			slices.Sort(want)
			if got := codes(s); !slices.Equal(got, want) {
				t.Errorf("problems = %v, want %v\n%+v", got, want, s.Problems)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestWritablePrimary(t *testing.T) {
	const p, r = "10.0.0.1:3306", "10.0.0.2:3306"
	cases := []struct {
		name      string
		instances func(t *testing.T) []Instance
		want      string
	}{
		{"one writable primary", func(t *testing.T) []Instance {
			return []Instance{primaryAt(p, mdb(t, "0-1-1")), replicaOf(r, p, mdb(t, "0-1-1"))}
		}, p},
		{"primary down", func(t *testing.T) []Instance {
			return []Instance{{Addr: p, Error: "refused"}, replicaOf(r, p, mdb(t, "0-1-1"))}
		}, ""},
		{"two writable", func(t *testing.T) []Instance {
			return []Instance{primaryAt(p, mdb(t, "0-1-1")), primaryAt(r, mdb(t, "0-1-1"))}
		}, ""},
		{"read-only primary", func(t *testing.T) []Instance {
			pr := primaryAt(p, mdb(t, "0-1-1"))
			pr.ReadOnly = true
			return []Instance{pr, replicaOf(r, p, mdb(t, "0-1-1"))}
		}, ""},
		{"a replica down does not matter", func(t *testing.T) []Instance {
			return []Instance{primaryAt(p, mdb(t, "0-1-1")), {Addr: r, Error: "refused"}}
		}, p},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Build("c", MariaDB, tc.instances(t), time.Unix(0, 0)).WritablePrimary()
			if got != tc.want || (tc.want == "") != errors.Is(err, ErrNoPrimary) {
				t.Fatalf("WritablePrimary = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestReaders(t *testing.T) {
	const p, r1, r2, r3 = "10.0.0.1:3306", "10.0.0.2:3306", "10.0.0.3:3306", "10.0.0.4:3306"
	pos := mdb(t, "0-1-10")
	stopped := replicaOf(r2, p, pos)
	stopped.Replication.SQLRunning = false
	lagging := replicaOf(r3, p, mdb(t, "0-1-5"))
	far := 120.0
	lagging.Replication.SecondsBehind = &far
	s := Build("c", MariaDB, []Instance{primaryAt(p, pos), replicaOf(r1, p, pos), stopped, lagging}, time.Unix(0, 0))
	if got := s.Readers(60); !slices.Equal(got, []string{r1}) {
		t.Fatalf("Readers(60) = %v, want [%s]", got, r1)
	}
	if got := s.Readers(0); !slices.Equal(got, []string{r1, r3}) {
		t.Fatalf("Readers(0) = %v", got)
	}
}
