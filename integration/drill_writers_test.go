package integration

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/drill"
)

// TestDrillWriters runs the drill's 8 writers for a few seconds against each
// primary of a loopback lab, through the writer endpoint published in the
// lab's Consul and resolved through its DNS, and checks the history they
// record: every acknowledged id is on the primary with the number of the
// writer that sent it, and is attributed to the primary by address and by
// the identity the server itself reported, which no replica shares.
func TestDrillWriters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "drillck-lab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := upLab(t, ctx, Options{Dir: dir, Progress: testLog{t}})
	t.Cleanup(func() { purge(t, l) })
	c, err := l.ConsulClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cluster, primary string
		replicas         []string
		engine           func(t *testing.T) drill.Engine
	}{
		{mariadbCluster, "mariadb-1", []string{"mariadb-2", "mariadb-3"}, func(t *testing.T) drill.Engine {
			return &drill.MariaDB{User: "app", Password: secret(t, l, "mariadb-app"), Database: "dbha_lab"}
		}},
		{postgresCluster, "postgres-1", []string{"postgres-2", "postgres-3"}, func(t *testing.T) drill.Engine {
			return &drill.Postgres{User: "postgres", Password: secret(t, l, "postgres-superuser"), Database: "dbha_lab"}
		}},
	} {
		t.Run(tc.cluster, func(t *testing.T) {
			primary := addr(t, l, tc.primary)
			if err := c.SetWriter(ctx, tc.cluster, primary); err != nil {
				t.Fatal(err)
			}
			resolve := func(ctx context.Context) (string, error) {
				addrs, err := consul.Resolve(ctx, l.ConsulDNS, consul.WriterService(tc.cluster))
				if err != nil || len(addrs) != 1 {
					return "", fmt.Errorf("the writer endpoint names %v: %v", addrs, err)
				}
				return addrs[0], nil
			}
			waitUntil(t, 30*time.Second, "the writer endpoint in DNS", func() error {
				a, err := resolve(ctx)
				if err == nil && a != primary {
					err = fmt.Errorf("names %s", a)
				}
				return err
			})
			e := tc.engine(t)
			first, err := e.Prepare(ctx, primary)
			if err != nil {
				t.Fatal(err)
			}
			ws := drill.StartWriters(ctx, drill.DefaultWriterOptions(), e, resolve, first)
			// Two seconds at least, and until every writer has had a write
			// acknowledged: on a loaded machine a connection may miss its
			// 500 ms deadline a few times first.
			time.Sleep(2 * time.Second)
			for start := time.Now(); len(ackedBy(ws.History())) < 8 && time.Since(start) < time.Minute; {
				time.Sleep(200 * time.Millisecond)
			}
			history, last := ws.Stop()
			t.Logf("connections and lookups that failed: %+v", ws.Failures())

			identity := serverIdentity(t, ctx, e, primary)
			for _, r := range tc.replicas {
				if id := serverIdentity(t, ctx, e, addr(t, l, r)); id == identity {
					t.Errorf("%s reports the primary's identity %q", r, id)
				}
			}
			rows, err := e.Contents(ctx, primary, first)
			if err != nil {
				t.Fatal(err)
			}
			outcomes := map[drill.Outcome]int{}
			writers := map[int]int{}
			for _, w := range history {
				outcomes[w.Outcome]++
				if w.ID <= first || w.ID > last {
					t.Errorf("id %d outside (%d, %d]", w.ID, first, last)
				}
				if w.Outcome != drill.Acked {
					t.Logf("write %d by writer %d: %s %s", w.ID, w.Writer, w.Outcome, w.Err)
					continue
				}
				writers[w.Writer]++
				if w.Addr != primary || w.Server != identity {
					t.Errorf("write %d acknowledged by %s (%s), want %s (%s)", w.ID, w.Addr, w.Server, primary, identity)
				}
				if writer, ok := rows[w.ID]; !ok || writer != w.Writer {
					t.Errorf("acknowledged write %d of writer %d: on the primary %v, with writer %d", w.ID, w.Writer, ok, writer)
				}
			}
			t.Logf("%s: %d writes by 8 writers (%v), outcomes %v, identity %q", tc.cluster, len(history), writers, outcomes, identity)
			if got := slices.Sorted(maps.Keys(writers)); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7}) {
				t.Errorf("writers with acknowledged writes: %v, want all 8", got)
			}
			if outcomes[drill.Refused] > 0 {
				t.Errorf("a healthy primary refused %d writes", outcomes[drill.Refused])
			}
		})
	}
}

// ackedBy returns the writers with an acknowledged write in history.
func ackedBy(history []drill.Write) map[int]bool {
	out := map[int]bool{}
	for _, w := range history {
		if w.Outcome == drill.Acked {
			out[w.Writer] = true
		}
	}
	return out
}

func secret(t *testing.T, l *Lab, name string) string {
	t.Helper()
	pw, err := readPassword(l.Secret(name))
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// serverIdentity is what addr reports on a connection of its own.
func serverIdentity(t *testing.T, ctx context.Context, e drill.Engine, addr string) string {
	t.Helper()
	c, err := e.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Server()
}
