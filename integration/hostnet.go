package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The network of a hosts lab: a bridge in the root namespace and one network namespace per
// host, each joined to the bridge by a veth pair. The root namespace is the clients' host
// (tests, a drill's writers, the operator's CLI): its address is the bridge's, 198.18.x.1.
// Nothing is routed: no default route in a namespace, no NAT, no forwarding, and no rule is
// ever added in the root namespace. Faults are iptables rules in a chain of the lab's own
// (faultChain) inside the hosts' namespaces.

// HostNet is the network of a hosts lab, recorded in lab.json before any part of it is
// created, so that `down` can remove what a half-failed `up` made.
type HostNet struct {
	// ID is random; it is the bridge's alias, which tells this lab's bridge from one that
	// another lab created later under the same name.
	ID string `json:"id"`
	// Index N: the lab's subnet is the N-th /24 of 198.18.0.0/15 (0 ≤ N < 512).
	Index  int    `json:"index"`
	Bridge string `json:"bridge"` // "dbhaN"
	Client string `json:"client"` // the bridge's address: the root namespace's, where clients run
	Hosts  []Host `json:"hosts"`
	// Created: the network may exist (set before the bridge is created, cleared once `down`
	// has removed everything).
	Created bool `json:"created"`
}

// Host is one host of a hosts lab: a network namespace with lo and eth0.
type Host struct {
	Name  string `json:"name"`  // "mariadb-1", "postgres-2", "manager-1"
	Netns string `json:"netns"` // "dbhaN-mariadb-1"
	Veth  string `json:"veth"`  // the root end of its veth pair, enslaved to the bridge
	Addr  string `json:"addr"`  // its address on eth0, e.g. "198.18.3.11"
}

// ClientsHost names the root namespace in a split.
const ClientsHost = "clients"

const (
	labRange      = "198.18.0.0/15"
	labSubnets    = 512 // /24s in labRange
	faultChain    = "DBHA-FAULT"
	netLockFile   = "/run/lock/dbha-lab-net.lock"
	netCmdTimeout = 15 * time.Second
)

// labBridgeName matches the bridges hosts labs create.
var labBridgeName = regexp.MustCompile(`^dbha[0-9]+$`)

// hostOctet is the last octet of each host's address: mariadb-i .1i, postgres-i .2i,
// manager-i .3i; .1 is the bridge (clients).
func hostOctet(name string) (int, error) {
	kind, num, ok := strings.Cut(name, "-")
	i, err := strconv.Atoi(num)
	if !ok || err != nil || i < 1 || i > 9 {
		return 0, fmt.Errorf("host name %q: want <kind>-<1..9>", name)
	}
	base := map[string]int{KindMariaDB: 10, KindPostgres: 20, KindManager: 30}[kind]
	if base == 0 {
		return 0, fmt.Errorf("host name %q: unknown kind %q", name, kind)
	}
	return base + i, nil
}

// subnetAddr is the address .octet of the N-th /24 of labRange.
func subnetAddr(index, octet int) string {
	return fmt.Sprintf("198.%d.%d.%d", 18+index/256, index%256, octet)
}

// planHostNet lays out the network of lab number index for the given hosts. It creates
// nothing.
func planHostNet(index int, id string, hosts []string) (*HostNet, error) {
	if index < 0 || index >= labSubnets {
		return nil, fmt.Errorf("lab network %d: out of range", index)
	}
	n := &HostNet{ID: id, Index: index, Bridge: "dbha" + strconv.Itoa(index), Client: subnetAddr(index, 1)}
	for _, h := range hosts {
		octet, err := hostOctet(h)
		if err != nil {
			return nil, err
		}
		n.Hosts = append(n.Hosts, Host{
			Name:  h,
			Netns: n.Bridge + "-" + h,
			Veth:  n.Bridge + "-" + strconv.Itoa(octet), // at most 10 bytes (IFNAMSIZ is 16)
			Addr:  subnetAddr(index, octet),
		})
	}
	return n, nil
}

// Subnet is the lab's /24, e.g. "198.18.3.0/24".
func (n *HostNet) Subnet() string { return subnetAddr(n.Index, 0) + "/24" }

// host returns the host called name.
func (n *HostNet) host(name string) (Host, bool) {
	for _, h := range n.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// netClaim is an IPv4 address or route of the root namespace.
type netClaim struct {
	Prefix netip.Prefix
	Dev    string // "" for a route without a device (blackhole, unreachable)
	Line   string // as ip printed it, for the error
}

// netInUse is what the machine already has that a new lab must not collide with.
type netInUse struct {
	Claims []netClaim // addresses and routes of the root namespace
	Links  []string   // link names of the root namespace
	Netns  []string   // named network namespaces
}

// pickSubnet chooses the first /24 of 198.18.0.0/15 that no address, route, link or
// namespace uses. An address or route inside the range that is not on a lab bridge (dbhaN)
// makes the range unusable: the machine uses it for something else, and the lab refuses to
// start rather than shadow it.
func pickSubnet(u netInUse) (int, error) {
	lab := netip.MustParsePrefix(labRange)
	used := make([]bool, labSubnets)
	for _, c := range u.Claims {
		if !lab.Overlaps(c.Prefix) {
			continue
		}
		if c.Prefix.Bits() < lab.Bits() {
			continue // a wider route (a default route, 198.0.0.0/8) does not claim the range
		}
		if !labBridgeName.MatchString(c.Dev) {
			return 0, fmt.Errorf("the lab's range %s is in use on this machine (%q, not on a dbha lab bridge): "+
				"the hosts lab will not shadow it; remove it or use the loopback lab", labRange, c.Line)
		}
		first := subnetIndex(c.Prefix.Masked().Addr())
		count := 1
		if c.Prefix.Bits() < 24 {
			count = 1 << (24 - c.Prefix.Bits())
		}
		for i := first; i < first+count && i < labSubnets; i++ {
			used[i] = true
		}
	}
	for _, name := range u.Links {
		if labBridgeName.MatchString(name) {
			markIndex(used, strings.TrimPrefix(name, "dbha"))
		}
		if prefix, _, ok := strings.Cut(name, "-"); ok && labBridgeName.MatchString(prefix) {
			markIndex(used, strings.TrimPrefix(prefix, "dbha"))
		}
	}
	for _, name := range u.Netns {
		if prefix, _, ok := strings.Cut(name, "-"); ok && labBridgeName.MatchString(prefix) {
			markIndex(used, strings.TrimPrefix(prefix, "dbha"))
		}
	}
	for i, taken := range used {
		if !taken {
			return i, nil
		}
	}
	return 0, fmt.Errorf("every /24 of %s is used by another lab", labRange)
}

func markIndex(used []bool, digits string) {
	if i, err := strconv.Atoi(digits); err == nil && i >= 0 && i < len(used) {
		used[i] = true
	}
}

// subnetIndex is N for an address in the N-th /24 of labRange.
func subnetIndex(a netip.Addr) int {
	b := a.As4()
	return (int(b[1])-18)*256 + int(b[2])
}

// parseAddrs reads `ip -o -4 addr show`: "4: eth0    inet 192.0.2.2/24 brd ... scope global eth0".
func parseAddrs(out string) []netClaim {
	var claims []netClaim
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil {
			continue
		}
		dev := strings.TrimSuffix(f[1], ":")
		claims = append(claims, netClaim{Prefix: p, Dev: dev, Line: "address " + f[3] + " on " + dev})
	}
	return claims
}

// routeTypes are the words ip may print before a route's destination.
var routeTypes = map[string]bool{"unicast": true, "local": true, "broadcast": true, "multicast": true, "anycast": true,
	"blackhole": true, "unreachable": true, "prohibit": true, "throw": true, "nat": true}

// parseRoutes reads `ip -o -4 route show table all`.
func parseRoutes(out string) []netClaim {
	var claims []netClaim
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && routeTypes[f[0]] {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		dst := f[0]
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		c := netClaim{Prefix: p, Line: "route " + strings.Join(strings.Fields(line), " ")}
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dev" {
				c.Dev = f[i+1]
			}
		}
		claims = append(claims, c)
	}
	return claims
}

// parseLinks reads `ip -o link show`: "12: dbha3-11@if2: <...> ..." → "dbha3-11".
func parseLinks(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// parseNetns reads `ip netns list`: "dbha3-mariadb-1 (id: 4)" → "dbha3-mariadb-1".
func parseNetns(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// readNetInUse asks ip what the root namespace holds.
func readNetInUse(ctx context.Context) (netInUse, error) {
	var u netInUse
	addrs, err := netCmd(ctx, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return u, err
	}
	routes, err := netCmd(ctx, "ip", "-o", "-4", "route", "show", "table", "all")
	if err != nil {
		return u, err
	}
	links, err := netCmd(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return u, err
	}
	netns, err := netCmd(ctx, "ip", "netns", "list")
	if err != nil {
		return u, err
	}
	u.Claims = append(parseAddrs(addrs), parseRoutes(routes)...)
	u.Links, u.Netns = parseLinks(links), parseNetns(netns)
	return u, nil
}

// requireRoot explains why the hosts lab needs root.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the hosts lab (--hosts) needs root: it creates network namespaces, a bridge, veth pairs " +
			"and iptables rules; run it as root, or use the loopback lab (without --hosts)")
	}
	for _, bin := range []string{"ip", "iptables", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			return &missingBinaryError{name: bin, where: "$PATH"}
		}
	}
	return nil
}

// checkNetFree fails when the hosts lab's range is in use on this machine. It reserves
// nothing (claimNet does, under the lock).
func checkNetFree(ctx context.Context) error {
	u, err := readNetInUse(ctx)
	if err != nil {
		return err
	}
	_, err = pickSubnet(u)
	return err
}

// claimNet picks the lab's subnet, records the network in lab.json and creates the bridge,
// all under a machine-wide lock so that two labs never pick the same subnet.
func (l *Lab) claimNet(ctx context.Context, hosts []string) error {
	unlock, err := lockNet()
	if err != nil {
		return err
	}
	defer unlock()
	u, err := readNetInUse(ctx)
	if err != nil {
		return err
	}
	index, err := pickSubnet(u)
	if err != nil {
		return err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("lab network id: %w", err)
	}
	n, err := planHostNet(index, "dbha-lab-"+hex.EncodeToString(id), hosts)
	if err != nil {
		return err
	}
	n.Created = true
	if err := l.update(func() error { l.Net = n; return nil }); err != nil {
		return err
	}
	return n.createBridge(ctx)
}

func (n *HostNet) createBridge(ctx context.Context) error {
	steps := [][]string{
		{"ip", "link", "add", n.Bridge, "type", "bridge"},
		{"ip", "link", "set", n.Bridge, "alias", n.ID},
		{"ip", "addr", "add", n.Client + "/24", "dev", n.Bridge},
		{"ip", "link", "set", n.Bridge, "up"},
	}
	for _, s := range steps {
		if _, err := netCmd(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
	}
	return nil
}

// createHosts creates every host's namespace, veth pair, address and fault chain, the hosts
// at once.
func (n *HostNet) createHosts(ctx context.Context) error {
	errs := make([]error, len(n.Hosts))
	var wg sync.WaitGroup
	for i, h := range n.Hosts {
		wg.Go(func() {
			if err := n.createHost(ctx, h); err != nil {
				errs[i] = fmt.Errorf("create host %s: %w", h.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (n *HostNet) createHost(ctx context.Context, h Host) error {
	steps := [][]string{
		{"ip", "netns", "add", h.Netns},
		{"ip", "link", "add", h.Veth, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"ip", "link", "set", h.Veth, "master", n.Bridge, "up"},
		{"ip", "-n", h.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", h.Netns, "addr", "add", h.Addr + "/24", "dev", "eth0"},
		{"ip", "-n", h.Netns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if _, err := netCmd(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	for _, rule := range [][]string{{"-N", faultChain}, {"-A", "INPUT", "-j", faultChain}, {"-A", "OUTPUT", "-j", faultChain}} {
		if err := iptablesIn(ctx, h.Netns, rule...); err != nil {
			return err
		}
	}
	return nil
}

// removeNet removes every host and the bridge of this lab, under the machine-wide lock, and
// records that they are gone. A bridge of the same name that carries another lab's ID is
// that lab's (this one's network was removed before, and the subnet reused): nothing is
// touched then. Hosts go first and the bridge last, so a missing bridge means that nothing
// of this lab is left that another lab could have claimed since.
func (l *Lab) removeNet(ctx context.Context) error {
	l.mu.Lock()
	n := l.Net
	l.mu.Unlock()
	if n == nil || !n.Created {
		return nil
	}
	unlock, err := lockNet()
	if err != nil {
		return err
	}
	defer unlock()
	alias, exists := bridgeAlias(n.Bridge)
	if exists && alias != "" && alias != n.ID {
		l.warnf("lab: bridge %s belongs to another lab now (alias %q); nothing of this lab's network is left", n.Bridge, alias)
	} else if err := n.remove(ctx, exists, l.warnf); err != nil {
		return err
	}
	return l.update(func() error { l.Net.Created = false; return nil })
}

func (n *HostNet) remove(ctx context.Context, bridgeExists bool, warn func(format string, args ...any)) error {
	var errs []error
	for _, h := range n.Hosts {
		// Processes the lab did not record (an `up` killed between a start and its record)
		// are named, never signalled: the lab acts on recorded PIDs only.
		if out, err := netCmd(ctx, "ip", "netns", "pids", h.Netns); err == nil && strings.TrimSpace(out) != "" {
			warn("lab: host %s still has processes the lab did not record (pids %s); left running, cut off from the network",
				h.Name, strings.Join(strings.Fields(out), " "))
		}
		if linkExists(h.Veth) {
			if _, err := netCmd(ctx, "ip", "link", "del", h.Veth); err != nil {
				errs = append(errs, err)
			}
		}
		if _, err := os.Stat(filepath.Join("/run/netns", h.Netns)); err == nil {
			if _, err := netCmd(ctx, "ip", "netns", "del", h.Netns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the lab's hosts: %w", err)
	}
	if bridgeExists {
		if _, err := netCmd(ctx, "ip", "link", "del", n.Bridge); err != nil {
			return fmt.Errorf("remove bridge: %w", err)
		}
	}
	return nil
}

// ensureNet recreates the network of a stopped lab on the same subnet (its servers' data
// holds its addresses), refusing when that subnet has been taken since.
func (l *Lab) ensureNet(ctx context.Context) error {
	l.mu.Lock()
	n := l.Net
	l.mu.Unlock()
	if n == nil {
		return nil
	}
	unlock, err := lockNet()
	if err != nil {
		return err
	}
	defer unlock()
	alias, exists := bridgeAlias(n.Bridge)
	if exists && alias == n.ID && n.Created {
		return nil // up already
	}
	if exists {
		return fmt.Errorf("the lab's bridge name %s is taken by another lab: run `dbha lab down --purge --dir %s` and start a new lab", n.Bridge, l.Dir)
	}
	u, err := readNetInUse(ctx)
	if err != nil {
		return err
	}
	for _, c := range u.Claims {
		if c.Prefix.Overlaps(netip.MustParsePrefix(n.Subnet())) {
			return fmt.Errorf("the lab's subnet %s is in use now (%q): run `dbha lab down --purge --dir %s` and start a new lab", n.Subnet(), c.Line, l.Dir)
		}
	}
	if err := l.update(func() error { l.Net.Created = true; return nil }); err != nil {
		return err
	}
	if err := n.createBridge(ctx); err != nil {
		return err
	}
	return n.createHosts(ctx)
}

// bridgeAlias reads a link's alias, and whether the link exists.
func bridgeAlias(name string) (alias string, exists bool) {
	raw, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifalias"))
	if err != nil {
		return "", linkExists(name)
	}
	return strings.TrimSpace(string(raw)), true
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// lockNet takes the machine-wide lock of lab networks.
func lockNet() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(netLockFile), 0o755); err != nil {
		return nil, fmt.Errorf("lock lab networks: %w", err)
	}
	return lockFile(netLockFile)
}

// netCmd runs one ip/iptables command, bounded, and returns its output; the error carries
// the command and what it printed.
func netCmd(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, netCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = baseEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// iptablesIn runs iptables inside a host's namespace (never in the root namespace).
func iptablesIn(ctx context.Context, netns string, args ...string) error {
	if netns == "" {
		return errors.New("iptables: no host namespace given (the lab never adds rules in the root namespace)")
	}
	_, err := netCmd(ctx, "nsenter", append([]string{"--net=" + netnsPath(netns), "--", "iptables", "-w", "10"}, args...)...)
	return err
}

func netnsPath(netns string) string { return filepath.Join("/run/netns", netns) }

// netnsOf is the namespace a node runs in: "" for the loopback lab.
func (l *Lab) netnsOf(n Node) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Net == nil || n.LabHost == "" {
		return ""
	}
	if h, ok := l.Net.host(n.LabHost); ok {
		return h.Netns
	}
	return ""
}

// inHost turns a launch into what to execute: in a hosts lab, nsenter into the launch's
// namespace (nsenter execs the program, so the PID is the program's), dropping to the lab user
// there when needed; otherwise the program itself with the credential to run it as.
func (l *Lab) inHost(ln launch) (path string, args []string, cred *syscall.Credential) {
	cred = l.credential(ln.asLabUser)
	if ln.netns == "" {
		return ln.path, ln.args, cred
	}
	args = []string{"--net=" + netnsPath(ln.netns)}
	if cred != nil {
		args = append(args, "-S", strconv.Itoa(int(cred.Uid)), "-G", strconv.Itoa(int(cred.Gid)))
	}
	args = append(append(args, "--", ln.path), ln.args...)
	return "nsenter", args, nil
}

// OnHost is the argv that runs a shell command line on the lab host whose address is
// addr, as ssh to that host would: nsenter into its namespace in a hosts lab; sh itself
// in a loopback lab, whose one host is this one. It is what the lab gives
// backup.remote_command.
func (l *Lab) OnHost(addr string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Net == nil {
		return []string{"sh", "-c"}, nil
	}
	for _, h := range l.Net.Hosts {
		if h.Addr == addr {
			return []string{"nsenter", "--net=" + netnsPath(h.Netns), "--", "sh", "-c"}, nil
		}
	}
	return nil, fmt.Errorf("no host of the lab in %s has the address %s", l.Dir, addr)
}
