package consul

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/hashicorp/consul/api"
)

// The writer and reader services are registered in the catalog on a
// node of their own ("dbha-<cluster>", marked external), not with an agent:
// any dbha manager can then change them, and no agent's anti-entropy
// removes them. Clients resolve <cluster>-writer.service.consul.

// WriterService and ReaderService name a cluster's services.
func WriterService(cluster string) string { return cluster + "-writer" }
func ReaderService(cluster string) string { return cluster + "-reader" }

func endpointNode(cluster string) string { return "dbha-" + cluster }

func serviceID(service, addr string) string { return service + "-" + addr }

// Writer returns the addresses the writer service names now: one, or none.
func (c *Client) Writer(ctx context.Context, cluster string) ([]string, error) {
	return c.instances(ctx, WriterService(cluster))
}

// Readers returns the addresses the reader service names now.
func (c *Client) Readers(ctx context.Context, cluster string) ([]string, error) {
	return c.instances(ctx, ReaderService(cluster))
}

func (c *Client) instances(ctx context.Context, service string) ([]string, error) {
	svcs, _, err := c.api.Catalog().Service(service, "", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read service %s: %w", service, err)
	}
	var out []string
	for _, s := range svcs {
		out = append(out, net.JoinHostPort(s.ServiceAddress, strconv.Itoa(s.ServicePort)))
	}
	slices.Sort(out)
	return out, nil
}

// SetWriter makes the writer service name exactly addr. Every other
// instance is deregistered first, so the service never names two writers;
// between the two steps it names none, which clients see as a brief
// outage, never as a split brain. Setting the writer it already names
// changes nothing.
func (c *Client) SetWriter(ctx context.Context, cluster, addr string) error {
	return c.setService(ctx, cluster, WriterService(cluster), []string{addr})
}

// SetReaders makes the reader service name exactly addrs.
func (c *Client) SetReaders(ctx context.Context, cluster string, addrs []string) error {
	return c.setService(ctx, cluster, ReaderService(cluster), addrs)
}

// ClearWriter removes every instance of the writer service: no client is
// sent to any primary (used when the writer cannot be known).
func (c *Client) ClearWriter(ctx context.Context, cluster string) error {
	return c.setService(ctx, cluster, WriterService(cluster), nil)
}

func (c *Client) setService(ctx context.Context, cluster, service string, want []string) error {
	have, err := c.instances(ctx, service)
	if err != nil {
		return err
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	for _, addr := range have {
		if slices.Contains(want, addr) {
			continue
		}
		dereg := &api.CatalogDeregistration{Node: endpointNode(cluster), ServiceID: serviceID(service, addr)}
		if _, err := c.api.Catalog().Deregister(dereg, wo); err != nil {
			return fmt.Errorf("deregister %s from %s: %w", addr, service, err)
		}
	}
	for _, addr := range want {
		if slices.Contains(have, addr) {
			continue
		}
		if err := c.register(ctx, cluster, service, addr); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) register(ctx context.Context, cluster, service, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("register %s in %s: %w", addr, service, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("register %s in %s: bad port", addr, service)
	}
	id := serviceID(service, addr)
	reg := &api.CatalogRegistration{
		Node:     endpointNode(cluster),
		Address:  host,
		NodeMeta: map[string]string{"external-node": "true", "external-probe": "false", "dbha-cluster": cluster},
		Service:  &api.AgentService{ID: id, Service: service, Address: host, Port: p, Meta: map[string]string{"dbha-cluster": cluster}},
		Check: &api.AgentCheck{Node: endpointNode(cluster), CheckID: "service:" + id, Name: service + " set by dbha",
			Status: api.HealthPassing, ServiceID: id},
		SkipNodeUpdate: true,
	}
	if _, err := c.api.Catalog().Register(reg, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("register %s in %s: %w", addr, service, err)
	}
	return nil
}
