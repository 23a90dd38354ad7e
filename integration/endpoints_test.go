package integration

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/consul"
)

func consulClient(t *testing.T, l *Lab) *consul.Client {
	t.Helper()
	c, err := l.ConsulClient()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resolve asks the lab's Consul DNS for a service, as a client would.
func resolve(t *testing.T, l *Lab, service string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := consul.Resolve(ctx, l.ConsulDNS, service)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriterServiceNamesExactlyOnePrimary(t *testing.T) {
	l := sharedLab(t)
	c := consulClient(t, l)
	ctx := context.Background()
	const cluster = "endpoints-test"
	a, b := "127.0.0.1:3306", "127.0.0.1:3307"
	if err := c.SetWriter(ctx, cluster, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Writer(ctx, cluster); !slices.Equal(got, []string{a}) {
		t.Fatalf("writer = %v, want [%s]", got, a)
	}
	if got := resolve(t, l, consul.WriterService(cluster)); !slices.Equal(got, []string{a}) {
		t.Fatalf("DNS writer = %v, want [%s]", got, a)
	}
	if err := c.SetWriter(ctx, cluster, b); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriter(ctx, cluster, b); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := resolve(t, l, consul.WriterService(cluster)); !slices.Equal(got, []string{b}) {
		t.Fatalf("DNS writer after the move = %v, want [%s]", got, b)
	}
	if err := c.SetReaders(ctx, cluster, []string{a, "127.0.0.1:3308"}); err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, l, consul.ReaderService(cluster)); !slices.Equal(got, []string{a, "127.0.0.1:3308"}) {
		t.Fatalf("DNS readers = %v", got)
	}
	if err := c.ClearWriter(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, l, consul.WriterService(cluster)); len(got) != 0 {
		t.Fatalf("cleared writer still resolves to %v", got)
	}
}

func TestClusterLockHasOneHolder(t *testing.T) {
	l := sharedLab(t)
	a, b := consulClient(t, l), consulClient(t, l)
	ctx := context.Background()
	const cluster = "lock-test"
	lease, err := a.AcquireLock(ctx, cluster, "manager-a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Session == "" || lease.Check() != nil {
		t.Fatalf("lease = %+v, check %v", lease, lease.Check())
	}
	if _, err := b.AcquireLock(ctx, cluster, "manager-b", 10*time.Second); !errors.Is(err, consul.ErrLocked) {
		t.Fatalf("a second manager got the lock: %v", err)
	}
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	var second *consul.Lease
	eventually(t, "the released lock to be free (lock delay)", func() error {
		var err error
		second, err = b.AcquireLock(ctx, cluster, "manager-b", 10*time.Second)
		return err
	})
	defer second.Release()
	if err := lease.Check(); !errors.Is(err, consul.ErrNotLeader) {
		t.Fatalf("the released lease still checks out: %v", err)
	}
}

func TestAntiFlapBlock(t *testing.T) {
	l := sharedLab(t)
	c := consulClient(t, l)
	ctx := context.Background()
	const cluster = "block-test"
	if _, ok, err := c.GetBlock(ctx, cluster); err != nil || ok {
		t.Fatalf("fresh cluster blocked: %v %v", ok, err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := c.SetBlock(ctx, cluster, consul.Block{Until: until, Recovery: "r1", Reason: "failover",
		OldPrimary: "a:3306", NewPrimary: "b:3306", Failed: []string{"c:3306"}}); err != nil {
		t.Fatal(err)
	}
	b, ok, err := c.GetBlock(ctx, cluster)
	if err != nil || !ok || !b.Until.Equal(until) || b.Recovery != "r1" || b.OldPrimary != "a:3306" || b.NewPrimary != "b:3306" ||
		len(b.Failed) != 1 || b.Failed[0] != "c:3306" {
		t.Fatalf("block = %+v %v %v", b, ok, err)
	}
	if err := c.ClearBlock(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.GetBlock(ctx, cluster); ok {
		t.Fatal("block still there after clear")
	}
}
