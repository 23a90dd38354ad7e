package probe

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := ln.Addr().String()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if r := TCP(ctx, open); !r.OK || r.Error != "" {
		t.Errorf("listening port: %+v", r)
	}
	if r := TCP(ctx, refused); r.OK || r.TimedOut || !strings.Contains(r.Error, "refused") {
		t.Errorf("closed port: %+v", r)
	}
}

func TestExternal(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name      string
		argv      []string
		alive     bool
		detailHas string
	}{
		{"exit 0 votes alive", []string{"sh", "-c", `echo "reached $DBHA_PRIMARY of $DBHA_CLUSTER"`}, true, "reached 10.0.0.1:3306 of c1"},
		{"exit 1 votes dead", []string{"sh", "-c", "echo unreachable; exit 1"}, false, "unreachable"},
		{"missing command votes dead", []string{"/nonexistent/check"}, false, "/nonexistent/check"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := External(ctx, tc.argv, "c1", "10.0.0.1:3306")
			if v.Alive != tc.alive || !strings.Contains(v.Detail, tc.detailHas) {
				t.Fatalf("External = %+v", v)
			}
		})
	}
	t.Run("a command that does not finish in time votes dead", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if v := External(ctx, []string{"sleep", "5"}, "c1", "p"); v.Alive {
			t.Fatalf("External = %+v", v)
		}
	})
}
