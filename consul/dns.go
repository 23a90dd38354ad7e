package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
)

// Resolve looks a service up through the agent's DNS interface at dnsAddr,
// as clients do (SRV <service>.service.consul, then the target's address),
// and returns host:port for each instance, sorted. A service with no
// instance resolves to none, without error.
func Resolve(ctx context.Context, dnsAddr, service string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", dnsAddr)
	}}
	_, srvs, err := r.LookupSRV(ctx, "", "", service+".service.consul")
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s through %s: %w", service, dnsAddr, err)
	}
	var out []string
	for _, s := range srvs {
		ips, err := r.LookupHost(ctx, s.Target)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("resolve %s (for %s) through %s: %v", s.Target, service, dnsAddr, err)
		}
		out = append(out, net.JoinHostPort(ips[0], strconv.Itoa(int(s.Port))))
	}
	slices.Sort(out)
	return out, nil
}
