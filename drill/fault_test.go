package drill

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlanFault(t *testing.T) {
	db := []string{"mariadb-1", "mariadb-2", "mariadb-3"}
	one := []string{"manager-1"}
	three := []string{"manager-1", "manager-2", "manager-3"}
	sides := func(s string) [2][]string {
		out, err := ParseSides(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cases := []struct {
		name     string
		f        Fault
		expect   Expect
		managers []string
		host     string // want the planned host
		failover bool
		sides    string // want the planned sides, when set
		injected string // want what the lab puts in place, when set ("; " between faults)
		err      string
	}{
		{name: "kill strikes the primary's host", f: Fault{Name: "kill"}, host: "mariadb-1", failover: true},
		{name: "host-down on a chosen host", f: Fault{Name: "host-down", Host: "mariadb-2"}, host: "mariadb-2", failover: true},
		{name: "hang expects a failover", f: Fault{Name: "hang"}, host: "mariadb-1", failover: true},
		{name: "isolate expects a failover", f: Fault{Name: "isolate"}, host: "mariadb-1", failover: true},
		{name: "manager-cut expects none", f: Fault{Name: "manager-cut"}, host: "mariadb-1", failover: false},
		{name: "loss expects none", f: Fault{Name: "loss", Percent: 5}, host: "mariadb-1", failover: false},
		{name: "loss needs a percentage", f: Fault{Name: "loss"}, err: "percent 0"},
		{name: "flap expects none", f: Fault{Name: "flap"}, host: "mariadb-1", failover: false},
		{name: "an unknown fault is refused", f: Fault{Name: "meteor"}, err: "unknown"},
		{name: "an unknown fault runs with an expectation", f: Fault{Name: "meteor"}, expect: "none", failover: false},
		{name: "the expectation overrides the catalogue", f: Fault{Name: "kill"}, expect: "none", host: "mariadb-1", failover: false},
		{name: "a bad expectation is refused", f: Fault{Name: "kill"}, expect: "maybe", err: "maybe"},
		{name: "split needs sides", f: Fault{Name: "split"}, err: "two sides"},
		{name: "minority manager with one replica: no failover",
			f: Fault{Name: "split", Sides: sides("manager-1,mariadb-2|mariadb-1,mariadb-3,clients")}, managers: one, failover: false},
		{name: "primary alone, manager with the majority: failover",
			f: Fault{Name: "split", Sides: sides("mariadb-1,clients|manager-1,mariadb-2,mariadb-3")}, managers: one, failover: true},
		{name: "primary alone, the managers' majority with it: no failover",
			f: Fault{Name: "split", Sides: sides("mariadb-1,manager-1,manager-2|manager-3,mariadb-2,mariadb-3")}, managers: three, failover: false},
		{name: "primary alone, two managers of three on the other side: failover",
			f: Fault{Name: "split", Sides: sides("mariadb-1,manager-1|manager-2,manager-3,mariadb-2,mariadb-3")}, managers: three, failover: true},
		{name: "primary and a replica cut off from three managers and a replica: failover (4 of 6 voters)",
			f: Fault{Name: "split", Sides: sides("primary,replica-2|manager-1,manager-2,manager-3,replica-1,clients")}, managers: three, failover: true},
		{name: "primary and a replica cut off from one manager and a replica: a tie, no failover",
			f: Fault{Name: "split", Sides: sides("primary,replica-2|manager-1,replica-1,clients")}, managers: one, failover: false},
		{name: "roles: the minority split named by role",
			f: Fault{Name: "split", Sides: sides("manager-1,replica-1|primary,replica-2,clients")}, managers: one, failover: false,
			sides: "manager-1,mariadb-2|mariadb-1,mariadb-3,clients"},
		{name: "roles: a replica the cluster lacks",
			f: Fault{Name: "split", Sides: sides("manager-1,replica-3|primary")}, managers: one, err: "2 replica host(s)"},
		{name: "roles: a host named twice once resolved",
			f: Fault{Name: "split", Sides: sides("manager-1,mariadb-1|primary")}, managers: one, err: "named twice"},
		{name: "the primary on neither side",
			f: Fault{Name: "split", Sides: sides("mariadb-2|mariadb-3")}, managers: one, err: "neither side"},
		{name: "manager-crash at a step expects a failover", f: Fault{Name: "manager-crash", Step: "promote"}, host: "mariadb-1", failover: true,
			injected: "manager-crash at promote; host-down mariadb-1"},
		{name: "manager-crash needs a step", f: Fault{Name: "manager-crash"}, err: "needs the step"},
		{name: "consul-down strikes once the recovery started, for 5 s", f: Fault{Name: "consul-down"}, host: "mariadb-1", failover: true,
			injected: "consul-down at lock for 5s; host-down mariadb-1"},
		{name: "consul-down at a step", f: Fault{Name: "consul-down", Step: "move-writer"}, host: "mariadb-1", failover: true,
			injected: "consul-down at move-writer for 5s; host-down mariadb-1"},
		{name: "a step is for step faults only", f: Fault{Name: "kill", Step: "promote"}, err: "a step is for"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanFault(tc.f, tc.expect, "mariadb-1", db, tc.managers)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Fault.Host != tc.host || p.ExpectFailover != tc.failover {
				t.Errorf("host %q failover %v, want %q %v", p.Fault.Host, p.ExpectFailover, tc.host, tc.failover)
			}
			if tc.sides != "" && FormatSides(p.Fault.Sides) != tc.sides {
				t.Errorf("sides %s, want %s", FormatSides(p.Fault.Sides), tc.sides)
			}
			if tc.injected != "" {
				var got []string
				for _, f := range p.Injected() {
					got = append(got, f.String())
				}
				if strings.Join(got, "; ") != tc.injected {
					t.Errorf("injected %q, want %q", strings.Join(got, "; "), tc.injected)
				}
			}
		})
	}
}

func TestParseSides(t *testing.T) {
	cases := []struct {
		in   string
		want [2][]string
		err  bool
	}{
		{in: "manager-1,mariadb-2|mariadb-1,mariadb-3,clients", want: [2][]string{{"manager-1", "mariadb-2"}, {"mariadb-1", "mariadb-3", "clients"}}},
		{in: " a , b | c ", want: [2][]string{{"a", "b"}, {"c"}}},
		{in: "a,b", err: true},
		{in: "a|b|c", err: true},
		{in: "a|", err: true},
		{in: "a,b|b", err: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSides(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && (!slices.Equal(got[0], tc.want[0]) || !slices.Equal(got[1], tc.want[1])) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !tc.err && FormatSides(got) != strings.ReplaceAll(tc.in, " ", "") {
				t.Errorf("FormatSides = %q", FormatSides(got))
			}
		})
	}
}

func TestFaultString(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Name: "kill", Host: "mariadb-1"}, "kill mariadb-1"},
		{Fault{Name: "loss", Host: "postgres-1", Percent: 5}, "loss 5% postgres-1"},
		{Fault{Name: "split", Sides: [2][]string{{"a"}, {"b", "c"}}}, "split a|b,c"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
}

// breaker records what BreakerFaults asks of it.
type breaker struct {
	calls []string
	fail  error
}

func (b *breaker) Kill(_ context.Context, addr string) error {
	b.calls = append(b.calls, "kill "+addr)
	return b.fail
}

func (b *breaker) Restart(_ context.Context, addr string) error {
	b.calls = append(b.calls, "restart "+addr)
	return nil
}

func TestBreakerFaults(t *testing.T) {
	ctx := context.Background()
	b := &breaker{}
	f := BreakerFaults(b)
	if h, _ := f.HostOf("127.0.0.1:3306"); h != "127.0.0.1:3306" {
		t.Errorf("HostOf = %q, want the address", h)
	}
	if err := f.Inject(ctx, Fault{Name: "host-down", Host: "x"}); err == nil {
		t.Error("host-down through a breaker: no error")
	}
	if err := f.Inject(ctx, Fault{Name: "kill", Host: "127.0.0.1:3306"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Heal(ctx); err != nil { // nothing left to heal
		t.Fatal(err)
	}
	if want := []string{"kill 127.0.0.1:3306", "restart 127.0.0.1:3306"}; !slices.Equal(b.calls, want) {
		t.Errorf("calls %v, want %v", b.calls, want)
	}
	b.fail = errors.New("no such process")
	if err := f.Inject(ctx, Fault{Name: "kill", Host: "a"}); err == nil {
		t.Error("a failed kill: no error")
	}
	if err := f.Heal(ctx); err != nil || len(b.calls) != 3 {
		t.Errorf("a failed kill left something to restart: %v %v", err, b.calls)
	}
}
