package integration

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPickSubnet(t *testing.T) {
	claim := func(prefix, dev string) netClaim {
		return netClaim{Prefix: netip.MustParsePrefix(prefix), Dev: dev, Line: prefix + " on " + dev}
	}
	cases := []struct {
		name    string
		in      netInUse
		want    int
		wantErr string
	}{
		{name: "an empty machine gets the first", in: netInUse{Claims: []netClaim{claim("192.0.2.2/24", "eth0"), claim("127.0.0.1/8", "lo")}}, want: 0},
		{name: "a default route does not claim the range", in: netInUse{Claims: []netClaim{claim("0.0.0.0/0", "eth0"), claim("198.0.0.0/8", "eth0")}}, want: 0},
		{name: "another lab's bridge address and routes", in: netInUse{Claims: []netClaim{
			claim("198.18.0.1/24", "dbha0"), claim("198.18.0.0/24", "dbha0"), claim("198.18.0.255/32", "dbha0"),
		}}, want: 1},
		{name: "second /16 of the range", in: netInUse{Claims: []netClaim{claim("198.18.0.0/16", "dbha0")}}, want: 256},
		{name: "a leftover bridge without an address", in: netInUse{Links: []string{"lo", "dbha0", "eth0"}}, want: 1},
		{name: "a leftover veth", in: netInUse{Links: []string{"dbha0-11"}}, want: 1},
		{name: "a leftover namespace", in: netInUse{Netns: []string{"dbha0-mariadb-1", "other"}}, want: 1},
		{name: "gaps are reused", in: netInUse{Links: []string{"dbha0", "dbha2"}}, want: 1},
		{name: "an address in the range on another device", in: netInUse{Claims: []netClaim{claim("198.18.7.1/24", "eth1")}},
			wantErr: "198.18.7.1/24 on eth1"},
		{name: "a blackhole route in the range", in: netInUse{Claims: []netClaim{claim("198.19.0.0/16", "")}},
			wantErr: "not on a dbha lab bridge"},
		{name: "the whole range routed elsewhere", in: netInUse{Claims: []netClaim{claim("198.18.0.0/15", "eth0")}},
			wantErr: "in use on this machine"},
		{name: "an interface that only looks like a lab bridge", in: netInUse{Claims: []netClaim{claim("198.18.3.1/24", "dbhax")}},
			wantErr: "dbhax"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickSubnet(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("pickSubnet = %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("pickSubnet = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	t.Run("every subnet taken", func(t *testing.T) {
		if _, err := pickSubnet(netInUse{Claims: []netClaim{claim("198.18.0.0/16", "dbha0"), claim("198.19.0.0/16", "dbha256")}}); err == nil {
			t.Fatal("pickSubnet on a full range: no error")
		}
	})
}

func TestParseIPOutput(t *testing.T) {
	addrs := parseAddrs(`1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\       valid_lft forever preferred_lft forever
13: dbha0    inet 198.18.0.1/24 scope global dbha0\       valid_lft forever preferred_lft forever
`)
	if len(addrs) != 3 || addrs[2].Dev != "dbha0" || addrs[2].Prefix != netip.MustParsePrefix("198.18.0.1/24") {
		t.Errorf("parseAddrs: %+v", addrs)
	}
	routes := parseRoutes(`default via 192.0.2.1 dev eth0
198.18.0.0/24 dev dbha0 proto kernel scope link src 198.18.0.1
blackhole 198.19.5.0/24
local 198.18.0.1 dev dbha0 table local proto kernel scope host src 198.18.0.1
broadcast 198.18.0.255 dev dbha0 table local proto kernel scope link src 198.18.0.1
`)
	want := []netClaim{
		{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Dev: "dbha0"},
		{Prefix: netip.MustParsePrefix("198.19.5.0/24"), Dev: ""},
		{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Dev: "dbha0"},
		{Prefix: netip.MustParsePrefix("198.18.0.255/32"), Dev: "dbha0"},
	}
	if len(routes) != len(want) {
		t.Fatalf("parseRoutes: %+v", routes)
	}
	for i := range want {
		if routes[i].Prefix != want[i].Prefix || routes[i].Dev != want[i].Dev {
			t.Errorf("route %d: %+v, want %+v", i, routes[i], want[i])
		}
	}
	links := parseLinks(`1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT
14: dbha0-11@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master dbha0
`)
	if !slices.Equal(links, []string{"lo", "dbha0-11"}) {
		t.Errorf("parseLinks: %q", links)
	}
	if ns := parseNetns("dbha0-postgres-2 (id: 4)\ndbha0-mariadb-2\n"); !slices.Equal(ns, []string{"dbha0-postgres-2", "dbha0-mariadb-2"}) {
		t.Errorf("parseNetns: %q", ns)
	}
}

func TestPlanHostNet(t *testing.T) {
	n, err := planHostNet(259, "id", []string{"mariadb-1", "postgres-3", "manager-2"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "dbha259" || n.Client != "198.19.3.1" || n.Subnet() != "198.19.3.0/24" {
		t.Errorf("net: %+v, subnet %s", n, n.Subnet())
	}
	want := []Host{
		{Name: "mariadb-1", Netns: "dbha259-mariadb-1", Veth: "dbha259-11", Addr: "198.19.3.11"},
		{Name: "postgres-3", Netns: "dbha259-postgres-3", Veth: "dbha259-23", Addr: "198.19.3.23"},
		{Name: "manager-2", Netns: "dbha259-manager-2", Veth: "dbha259-32", Addr: "198.19.3.32"},
	}
	if !slices.Equal(n.Hosts, want) {
		t.Errorf("hosts: %+v", n.Hosts)
	}
	for _, h := range n.Hosts {
		if len(h.Veth) > 15 {
			t.Errorf("%s: veth name %q is longer than IFNAMSIZ-1", h.Name, h.Veth)
		}
	}
	if _, err := planHostNet(512, "id", nil); err == nil {
		t.Error("planHostNet(512): no error")
	}
	if _, err := planHostNet(0, "id", []string{"consul-1"}); err == nil {
		t.Error("planHostNet with an unknown host kind: no error")
	}
}
