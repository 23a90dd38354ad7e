package guard

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const ttl = 2 * time.Second
	now := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	fresh := ago(100 * time.Millisecond) // well within the lease
	late := ago(ttl - Margin(ttl))       // exactly at the fence point
	expired := ago(ttl + time.Second)    // past the lease
	nearly := ago(ttl - Margin(ttl) - 50*time.Millisecond)

	tests := []struct {
		name     string
		o        Observation
		action   Action
		deadline time.Time // zero: not checked
		next     time.Time // zero: not checked
	}{
		// A writable server whose grant names it renews, bounded by the fence point.
		{name: "writable, mine, fresh lease: renew", o: Observation{Server: ServerWritable, Grant: GrantMine, Held: true, LastRenew: fresh},
			action: Renew, deadline: now.Add(Period(ttl)), next: now.Add(Period(ttl))},
		{name: "writable, mine, lease nearly out: renew until the fence point", o: Observation{Server: ServerWritable, Grant: GrantMine, Held: true, LastRenew: nearly},
			action: Renew, deadline: now.Add(50 * time.Millisecond), next: now.Add(50 * time.Millisecond)},
		{name: "writable, mine, never renewed: renew (first acquire)", o: Observation{Server: ServerWritable, Grant: GrantMine},
			action: Renew, deadline: now.Add(Period(ttl))},
		{name: "writable, mine, expired: renew (a renewal proves the grant again)", o: Observation{Server: ServerWritable, Grant: GrantMine, LastRenew: expired},
			action: Renew},

		// The grant withdrawn: fence at once, within the lease when one is held.
		{name: "writable, revoked, fresh lease: fence by the lease's end", o: Observation{Server: ServerWritable, Grant: GrantOther, Held: true, LastRenew: fresh},
			action: Fence, deadline: fresh.Add(ttl), next: now},
		{name: "writable, other, no lease: fence", o: Observation{Server: ServerWritable, Grant: GrantOther},
			action: Fence, deadline: now.Add(Margin(ttl)), next: now},
		{name: "writable, grant deleted while held: fence", o: Observation{Server: ServerWritable, Grant: GrantAbsent, Held: true, LastRenew: fresh},
			action: Fence},
		{name: "writable, no grant ever, nothing held: wait (dbha does not use leases yet)", o: Observation{Server: ServerWritable, Grant: GrantAbsent},
			action: Wait, next: now.Add(Period(ttl))},

		// Consul unreachable: hold on while the lease lasts, then fence.
		{name: "writable, consul down, fresh lease: wait", o: Observation{Server: ServerWritable, Grant: GrantUnknown, Held: true, LastRenew: fresh},
			action: Wait, next: now.Add(Period(ttl))},
		{name: "writable, consul down, lease nearly out: wake at the fence point", o: Observation{Server: ServerWritable, Grant: GrantUnknown, Held: true, LastRenew: nearly},
			action: Wait, next: now.Add(50 * time.Millisecond)},
		{name: "writable, consul down, at the fence point: fence by the lease's end", o: Observation{Server: ServerWritable, Grant: GrantUnknown, Held: true, LastRenew: late},
			action: Fence, deadline: late.Add(ttl), next: now},
		{name: "writable, consul down, expired: fence", o: Observation{Server: ServerWritable, Grant: GrantUnknown, Held: true, LastRenew: expired},
			action: Fence, deadline: now.Add(Margin(ttl))},
		{name: "writable, consul down from the start: fence", o: Observation{Server: ServerWritable, Grant: GrantUnknown},
			action: Fence},

		// A server that refuses writes holds nothing.
		{name: "read-only, held: release", o: Observation{Server: ServerReadOnly, Grant: GrantMine, Held: true, LastRenew: fresh},
			action: Release},
		{name: "read-only, revoked, not confirmed: release (confirm)", o: Observation{Server: ServerReadOnly, Grant: GrantOther},
			action: Release},
		{name: "read-only, revoked, confirmed: wait", o: Observation{Server: ServerReadOnly, Grant: GrantOther, Confirmed: true},
			action: Wait},
		{name: "read-only, mine, not held: wait, and look again soon (a promotion opens it)", o: Observation{Server: ServerReadOnly, Grant: GrantMine},
			action: Wait, next: now.Add(Period(ttl) / 5)},
		{name: "read-only, consul down, held: wait (release when it answers)", o: Observation{Server: ServerReadOnly, Grant: GrantUnknown, Held: true, LastRenew: expired},
			action: Wait},
		{name: "read-only, no grant: wait", o: Observation{Server: ServerReadOnly, Grant: GrantAbsent},
			action: Wait},

		// A server that does not answer cannot be vouched for, nor fenced reliably.
		{name: "unknown server, fresh lease: wait, no renewal", o: Observation{Server: ServerUnknown, Grant: GrantMine, Held: true, LastRenew: fresh},
			action: Wait},
		{name: "unknown server, lease out, held: try to fence", o: Observation{Server: ServerUnknown, Grant: GrantMine, Held: true, LastRenew: expired},
			action: Fence},
		{name: "unknown server, nothing held: wait", o: Observation{Server: ServerUnknown, Grant: GrantUnknown},
			action: Wait},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now, tc.o.TTL = now, ttl
			d := Decide(tc.o)
			if d.Action != tc.action {
				t.Fatalf("action %s (%s), want %s", d.Action, d.Reason, tc.action)
			}
			if d.Reason == "" {
				t.Errorf("no reason given")
			}
			if !tc.deadline.IsZero() && !d.Deadline.Equal(tc.deadline) {
				t.Errorf("deadline %v after now, want %v", d.Deadline.Sub(now), tc.deadline.Sub(now))
			}
			if !tc.next.IsZero() && !d.Next.Equal(tc.next) {
				t.Errorf("next round %v after now, want %v", d.Next.Sub(now), tc.next.Sub(now))
			}
			if d.Next.Before(now) || d.Next.After(now.Add(Period(ttl))) {
				t.Errorf("next round %v after now: outside [0, %v]", d.Next.Sub(now), Period(ttl))
			}
		})
	}
}

func TestOverdue(t *testing.T) {
	const ttl = 2 * time.Second
	now := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		o    Observation
		want bool
	}{
		{"held, fresh", Observation{Held: true, LastRenew: now.Add(-time.Second)}, false},
		{"held, at the fence point", Observation{Held: true, LastRenew: now.Add(-(ttl - Margin(ttl)))}, true},
		{"held, expired", Observation{Held: true, LastRenew: now.Add(-time.Hour)}, true},
		{"held, fenced already (lease ended)", Observation{Held: true}, false},
		{"not held", Observation{LastRenew: now.Add(-time.Hour)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now, tc.o.TTL = now, ttl
			if got := Overdue(tc.o); got != tc.want {
				t.Fatalf("Overdue = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDecideNeverWritableBeyondLease walks a guard's rounds through a
// Consul outage: whatever the round's timing, the server is fenced no
// later than the last successful renewal's send time plus the TTL.
func TestDecideNeverWritableBeyondLease(t *testing.T) {
	const ttl = 2 * time.Second
	start := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	for _, lateness := range []time.Duration{0, time.Millisecond, 37 * time.Millisecond, 200 * time.Millisecond} {
		now := start
		o := Observation{Server: ServerWritable, Grant: GrantUnknown, Held: true, LastRenew: start, TTL: ttl}
		fenced := false
		for i := 0; i < 100 && !fenced; i++ {
			o.Now = now
			d := Decide(o)
			switch d.Action {
			case Fence:
				fenced = true
				if d.Deadline.After(start.Add(ttl)) {
					t.Fatalf("lateness %v: fence due %v after the renewal, beyond the ttl %v", lateness, d.Deadline.Sub(start), ttl)
				}
				if now.After(start.Add(ttl - Margin(ttl) + lateness)) {
					t.Fatalf("lateness %v: fence started %v after the renewal", lateness, now.Sub(start))
				}
			case Wait:
			default:
				t.Fatalf("unexpected %s with Consul down", d.Action)
			}
			now = d.Next.Add(lateness)
		}
		if !fenced {
			t.Fatalf("lateness %v: never fenced", lateness)
		}
	}
}
