package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dbha/dbha/promote"
)

// Faults of a hosts lab. A fault is planned by a pure function (planFault: iptables rules per
// host, nodes to freeze, nodes to kill), recorded in lab.json, then carried out; Heal undoes
// every recorded fault. Rules go only into faultChain inside the hosts' namespaces, so Heal
// flushes exactly what the lab made, and the root namespace is never touched.

// FaultSpec is one fault. Several may stack.
type FaultSpec struct {
	// Name is one of the Fault* constants.
	Name string `json:"name"`
	// Host is the target host (e.g. "mariadb-1"): kill, host-down, isolate, manager-cut, hang
	// and loss need one; manager-crash a manager host; consul-down may name a manager host
	// (default: every one).
	Host string `json:"host,omitempty"`
	// Sides are the hosts on each side of a split; ClientsHost ("clients") names the root
	// namespace, where clients run.
	Sides [2][]string `json:"sides,omitzero"`
	// Percent is the packet loss of loss, 1 to 100.
	Percent int `json:"percent,omitempty"`
	// Step makes manager-crash and consul-down strike when a recovery reaches that step
	// ("<action>[:<n>]", see promote.ParseStepPoint) rather than at once: manager-crash then
	// kills whichever manager runs the recovery (no host), consul-down stops the Consul
	// servers while that manager waits at the step. A lab process runs the rest of such a
	// fault in the background (the drill's, or a test's): `dbha lab fault`, which exits at
	// once, cannot.
	Step string `json:"step,omitempty"`
	// For is how long consul-down keeps the servers down before starting them again (0:
	// until Heal).
	For time.Duration `json:"for,omitempty"`
}

// Fault names.
const (
	FaultKill         = "kill"          // SIGKILL of the host's database server; Heal starts it again
	FaultHostDown     = "host-down"     // every lab process on the host frozen, every packet of its eth0 dropped
	FaultIsolate      = "isolate"       // the host cut from every other host, not from the clients
	FaultSplit        = "split"         // the hosts of one side cut from those of the other
	FaultManagerCut   = "manager-cut"   // the host cut from every manager host only
	FaultHang         = "hang"          // the host's database server frozen (SIGSTOP), its kernel still answering
	FaultLoss         = "loss"          // Percent% of the packets of the host's eth0 dropped, both ways
	FaultConsulDown   = "consul-down"   // the Consul servers killed; Heal starts them again
	FaultManagerCrash = "manager-crash" // SIGKILL of the manager on a manager host; Heal starts it again
)

// FaultNames lists every fault, for help texts.
var FaultNames = []string{FaultKill, FaultHostDown, FaultIsolate, FaultSplit, FaultManagerCut, FaultHang, FaultLoss, FaultConsulDown, FaultManagerCrash}

// ErrNotHostsLab is returned by what only a hosts lab can do.
var ErrNotHostsLab = errors.New("not a hosts lab (start one with `dbha lab up --hosts`)")

// faultPlan is what a fault does, as data.
type faultPlan struct {
	// Rules are appended to faultChain in each host's namespace (host → rules, each the
	// arguments after "-A DBHA-FAULT").
	Rules map[string][][]string
	// Freeze: nodes stopped with SIGSTOP, with their children; Heal sends SIGCONT.
	Freeze []string
	// Kill: nodes killed with SIGKILL; Heal starts them again.
	Kill []string
	// Restart: nodes the fault's background job may stop (a trapped manager, Consul servers
	// down for a while); Heal starts those that are down.
	Restart []string
	// Trap arms the step trap ("<step> <mode>"); "" for none.
	TrapStep, TrapMode string
}

// faultScene is what planFault knows of the lab.
type faultScene struct {
	Hosts  []Host // every host, in lab order
	Client string // the root namespace's address
	Nodes  []Node // Name, Kind and LabHost are read
}

// planFault turns a fault into rules and signals. It checks that the fault names what it
// needs and nothing it does not.
func planFault(sc faultScene, f FaultSpec) (faultPlan, error) {
	p := faultPlan{Rules: map[string][][]string{}}
	if err := checkFaultFields(f); err != nil {
		return p, err
	}
	addr := map[string]string{ClientsHost: sc.Client}
	isManager := map[string]bool{}
	for _, h := range sc.Hosts {
		addr[h.Name] = h.Addr
		for _, n := range sc.Nodes {
			if n.LabHost == h.Name && n.Kind == KindManager {
				isManager[h.Name] = true
			}
		}
	}
	if f.Host != "" {
		if _, ok := addr[f.Host]; !ok || f.Host == ClientsHost {
			return p, fmt.Errorf("fault %s: no host %q in the lab", f.Name, f.Host)
		}
	}
	onHost := func(kinds ...string) []string {
		var names []string
		for _, n := range sc.Nodes {
			if n.LabHost == f.Host && (len(kinds) == 0 || slices.Contains(kinds, n.Kind)) {
				names = append(names, n.Name)
			}
		}
		return names
	}
	drop := func(host string, others ...string) {
		for _, o := range others {
			p.Rules[host] = append(p.Rules[host], []string{"-s", addr[o], "-j", "DROP"}, []string{"-d", addr[o], "-j", "DROP"})
		}
	}
	switch f.Name {
	case FaultKill, FaultHang:
		db := onHost(KindMariaDB, KindPostgres)
		if len(db) == 0 {
			return p, fmt.Errorf("fault %s: %s runs no database server", f.Name, f.Host)
		}
		if f.Name == FaultKill {
			p.Kill = db
		} else {
			p.Freeze = db
		}
	case FaultHostDown:
		// The rules come first: a frozen process sends nothing, but its kernel would still
		// answer (ACKs, RSTs) until they are in place.
		p.Rules[f.Host] = [][]string{{"-i", "eth0", "-j", "DROP"}, {"-o", "eth0", "-j", "DROP"}}
		p.Freeze = onHost()
	case FaultIsolate:
		for _, h := range sc.Hosts {
			if h.Name != f.Host {
				drop(f.Host, h.Name)
			}
		}
	case FaultManagerCut:
		if isManager[f.Host] {
			return p, fmt.Errorf("fault %s: %s is a manager host; name the host to cut from the managers", f.Name, f.Host)
		}
		for _, h := range sc.Hosts {
			if isManager[h.Name] {
				drop(f.Host, h.Name)
				drop(h.Name, f.Host)
			}
		}
	case FaultLoss:
		prob := strconv.FormatFloat(float64(f.Percent)/100, 'f', 2, 64)
		for _, dir := range []string{"-i", "-o"} {
			p.Rules[f.Host] = append(p.Rules[f.Host], []string{dir, "eth0", "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"})
		}
	case FaultSplit:
		if err := checkSides(f.Sides, addr); err != nil {
			return p, err
		}
		for side, hosts := range f.Sides {
			for _, h := range hosts {
				if h != ClientsHost {
					drop(h, f.Sides[1-side]...)
				}
			}
		}
	case FaultConsulDown:
		if f.Host != "" && !isManager[f.Host] {
			return p, fmt.Errorf("fault %s: %s is not a manager host (Consul servers run on manager hosts)", f.Name, f.Host)
		}
		var names []string
		for _, n := range sc.Nodes {
			if n.Kind == KindConsul && (f.Host == "" || n.LabHost == f.Host) {
				names = append(names, n.Name)
			}
		}
		if f.Step == "" && f.For == 0 {
			p.Kill = names
		} else {
			p.Restart = names // the background job stops them, at the step or at once
		}
		if f.Step != "" {
			p.TrapStep, p.TrapMode = f.Step, trapPause
		}
	case FaultManagerCrash:
		if f.Step != "" {
			// Whichever manager runs the recovery crashes at the step.
			p.TrapStep, p.TrapMode = f.Step, trapCrash
			for _, n := range sc.Nodes {
				if n.Kind == KindManager {
					p.Restart = append(p.Restart, n.Name)
				}
			}
			break
		}
		if !isManager[f.Host] {
			return p, fmt.Errorf("fault %s: %s is not a manager host", f.Name, f.Host)
		}
		p.Kill = onHost(KindManager)
	}
	return p, nil
}

// checkFaultFields: the fault is known, and has the fields it needs and no others.
func checkFaultFields(f FaultSpec) error {
	if !slices.Contains(FaultNames, f.Name) {
		return fmt.Errorf("unknown fault %q (known: %v)", f.Name, FaultNames)
	}
	needsHost := f.Name != FaultSplit && f.Name != FaultConsulDown && (f.Name != FaultManagerCrash || f.Step == "")
	switch {
	case f.Step != "" && f.Name != FaultManagerCrash && f.Name != FaultConsulDown:
		return fmt.Errorf("fault %s: a step is for manager-crash and consul-down only", f.Name)
	case f.Step != "" && !validStep(f.Step):
		return fmt.Errorf("fault %s: step %q: want <action>[:<n>], e.g. promote or repoint:2", f.Name, f.Step)
	case f.Name == FaultManagerCrash && f.Step != "" && f.Host != "":
		return fmt.Errorf("fault %s: with a step the manager that runs the recovery crashes; name no host", f.Name)
	case f.For < 0 || (f.For > 0 && f.Name != FaultConsulDown):
		return fmt.Errorf("fault %s: a duration is for consul-down only", f.Name)
	case needsHost && f.Host == "":
		return fmt.Errorf("fault %s: name the target host", f.Name)
	case f.Name == FaultSplit && f.Host != "":
		return fmt.Errorf("fault %s: takes sides, not a host", f.Name)
	case f.Name != FaultSplit && (len(f.Sides[0]) > 0 || len(f.Sides[1]) > 0):
		return fmt.Errorf("fault %s: sides are for split only", f.Name)
	case f.Name == FaultLoss && (f.Percent < 1 || f.Percent > 100):
		return fmt.Errorf("fault %s: percent %d: want 1 to 100", f.Name, f.Percent)
	case f.Name != FaultLoss && f.Percent != 0:
		return fmt.Errorf("fault %s: percent is for loss only", f.Name)
	}
	return nil
}

// checkSides: two non-empty sides of known hosts (ClientsHost among them), no host on both.
func checkSides(sides [2][]string, addr map[string]string) error {
	seen := map[string]bool{}
	for _, side := range sides {
		if len(side) == 0 {
			return fmt.Errorf("fault %s: both sides need a host", FaultSplit)
		}
		for _, h := range side {
			if _, ok := addr[h]; !ok {
				return fmt.Errorf("fault %s: no host %q in the lab", FaultSplit, h)
			}
			if seen[h] {
				return fmt.Errorf("fault %s: %s is on both sides", FaultSplit, h)
			}
			seen[h] = true
		}
	}
	return nil
}

// scene is what planFault needs of this lab.
func (l *Lab) scene() (faultScene, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Net == nil {
		return faultScene{}, ErrNotHostsLab
	}
	return faultScene{Hosts: slices.Clone(l.Net.Hosts), Client: l.Net.Client, Nodes: slices.Clone(l.Nodes)}, nil
}

// Fault injects f and records it in lab.json (first, so that Heal undoes even a fault that
// failed halfway). Faults stack; Heal undoes them all.
func (l *Lab) Fault(ctx context.Context, f FaultSpec) error {
	if err := l.refresh(); err != nil { // the PIDs of nodes other processes restarted
		return err
	}
	sc, err := l.scene()
	if err != nil {
		return fmt.Errorf("fault %s: %w", f.Name, err)
	}
	p, err := planFault(sc, f)
	if err != nil {
		return err
	}
	if err := l.update(func() error { l.Faults = append(l.Faults, f); return nil }); err != nil {
		return err
	}
	for _, h := range sc.Hosts {
		for _, rule := range p.Rules[h.Name] {
			if err := iptablesIn(ctx, h.Netns, append([]string{"-A", faultChain}, rule...)...); err != nil {
				return fmt.Errorf("fault %s: %w", f.Name, err)
			}
		}
	}
	if p.TrapStep != "" {
		if err := l.armTrap(p.TrapStep, p.TrapMode); err != nil {
			return fmt.Errorf("fault %s: arm the step trap: %w", f.Name, err)
		}
	}
	for _, name := range p.Freeze {
		if err := l.Freeze(name); err != nil {
			return fmt.Errorf("fault %s: %w", f.Name, err)
		}
	}
	for _, name := range p.Kill {
		if err := l.Signal(name, syscall.SIGKILL); err != nil {
			return fmt.Errorf("fault %s: %w", f.Name, err)
		}
	}
	switch {
	case f.Name == FaultManagerCrash && p.TrapStep != "":
		l.background(l.superviseCrash)
	case f.Name == FaultConsulDown && len(p.Restart) > 0:
		l.background(l.consulOutage(p.Restart, p.TrapStep != "", f.For))
	}
	l.progressf("fault %s injected", f)
	return nil
}

// Heal undoes every recorded fault: it flushes the fault chain in every host, thaws what was
// frozen, and starts again (all at once, for a Consul quorum) what was killed and is still
// down; then it clears the record. Healing a lab with no fault does nothing but the flush.
func (l *Lab) Heal(ctx context.Context) error {
	if err := l.refresh(); err != nil { // the faults and PIDs other processes recorded
		return err
	}
	sc, err := l.scene()
	if err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	l.stopBackground()
	errs := []error{l.disarmTrap()}
	for _, h := range sc.Hosts {
		if err := iptablesIn(ctx, h.Netns, "-F", faultChain); err != nil {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	faults := slices.Clone(l.Faults)
	l.mu.Unlock()
	var restart []Node
	for _, f := range faults {
		p, err := planFault(sc, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, name := range p.Freeze {
			if n, err := l.Node(name); err == nil && n.running() {
				errs = append(errs, l.Thaw(name))
			}
		}
		for _, name := range append(p.Kill, p.Restart...) {
			if n, err := l.Node(name); err == nil && !n.running() && !slices.ContainsFunc(restart, func(r Node) bool { return r.Name == name }) {
				restart = append(restart, n)
			}
		}
	}
	errs = append(errs, inParallel(restart, func(n Node) error { return l.Start(ctx, n.Name) }))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	if err := l.update(func() error { l.Faults = nil; return nil }); err != nil {
		return err
	}
	l.progressf("healed %d fault(s)", len(faults))
	return nil
}

// HostOf names the host that has addr ("198.18.3.11:3306" or "198.18.3.11"): a lab host,
// or ClientsHost for the root namespace's address.
func (l *Lab) HostOf(addr string) (string, error) {
	sc, err := l.scene()
	if err != nil {
		return "", err
	}
	ip := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		ip = h
	}
	if ip == sc.Client {
		return ClientsHost, nil
	}
	for _, h := range sc.Hosts {
		if h.Addr == ip {
			return h.Name, nil
		}
	}
	return "", fmt.Errorf("no lab host has address %s", addr)
}

// Hosts lists the hosts of a hosts lab in lab order (database hosts, then manager hosts),
// without ClientsHost; nil for the loopback lab.
func (l *Lab) Hosts() []string {
	sc, err := l.scene()
	if err != nil {
		return nil
	}
	names := make([]string, len(sc.Hosts))
	for i, h := range sc.Hosts {
		names[i] = h.Name
	}
	return names
}

// ClientAddr is the clients' address: the root namespace's address on the lab's bridge, or
// 127.0.0.1 in the loopback lab.
func (l *Lab) ClientAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Net == nil {
		return labHost
	}
	return l.Net.Client
}

// String is the fault as `dbha lab fault` takes it, e.g. "loss 5% on mariadb-1".
func (f FaultSpec) String() string {
	switch {
	case f.Name == FaultSplit:
		return f.Name + " " + strings.Join(f.Sides[0], ",") + "|" + strings.Join(f.Sides[1], ",")
	case f.Name == FaultLoss:
		return fmt.Sprintf("%s %d%% on %s", f.Name, f.Percent, f.Host)
	case f.Step != "" && f.Host == "":
		return f.Name + " at " + f.Step
	case f.Host == "":
		return f.Name
	}
	return f.Name + " on " + f.Host
}

// validStep: a step as promote.ParseStepPoint reads it.
func validStep(s string) bool {
	_, err := promote.ParseStepPoint(s)
	return err == nil
}
