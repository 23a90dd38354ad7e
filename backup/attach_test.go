package backup

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// fakeReplication refuses the first refuse calls, as a server that is
// still starting does, and records what it was asked.
type fakeReplication struct {
	refuse int
	calls  int
	asked  []string
}

func (f *fakeReplication) Attach(_ context.Context, addr, source string, pos topology.Position) error {
	f.calls++
	f.asked = append(f.asked, addr+" "+source+" "+pos.String())
	if f.calls <= f.refuse {
		return errors.New("connection refused")
	}
	return nil
}

func TestAttach(t *testing.T) {
	pos, _ := topology.ParseMariaDB("0-1-42")
	c := ReseedChoice{Instance: "db3", Primary: "db1", Backup: Entry{ID: "b1", Position: pos}}
	replicating := topology.Instance{Addr: "db3", Reachable: true,
		Replication: &topology.Replication{Source: "db1", IORunning: true, SQLRunning: true}}
	connecting := topology.Instance{Addr: "db3", Reachable: true,
		Replication: &topology.Replication{Source: "db1", IORunning: false, SQLRunning: true, IOState: "Connecting"}}

	t.Run("retried until the server accepts it and replicates", func(t *testing.T) {
		r := &fakeReplication{refuse: 1}
		views := []topology.Instance{connecting, replicating}
		discover := func(context.Context) (topology.Snapshot, error) {
			in := views[0]
			if len(views) > 1 {
				views = views[1:]
			}
			return topology.Snapshot{Cluster: "c", Primary: "db1", Instances: []topology.Instance{in}}, nil
		}
		if err := attach(context.Background(), c, r, discover); err != nil {
			t.Fatal(err)
		}
		if r.calls != 2 || r.asked[1] != "db3 db1 0-1-42" {
			t.Fatalf("Attach calls = %v", r.asked)
		}
		if len(views) != 1 {
			t.Fatal("attach returned before the instance replicated")
		}
	})
	t.Run("an attach that keeps failing ends with the caller's context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		r := &fakeReplication{refuse: 1 << 30}
		err := attach(ctx, c, r, func(context.Context) (topology.Snapshot, error) {
			t.Fatal("discovered although the attach failed")
			return topology.Snapshot{}, nil
		})
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("attach = %v", err)
		}
	})
	t.Run("an instance that does not replicate is described", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := attach(ctx, c, &fakeReplication{}, func(context.Context) (topology.Snapshot, error) {
			return topology.Snapshot{Cluster: "c", Primary: "db1", Instances: []topology.Instance{connecting}}, nil
		})
		if err == nil || !strings.Contains(err.Error(), "db3 does not replicate from db1 yet: source db1, receiving Connecting") {
			t.Fatalf("attach = %v", err)
		}
	})
}
