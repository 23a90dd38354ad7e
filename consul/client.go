package consul

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/dbha/dbha/checks"
)

// Client talks to one Consul agent. It is safe for concurrent use.
type Client struct {
	api *api.Client
	kv  *api.KV
}

// New returns a client of the agent at addr (host:port), without TLS of
// dbha's configuration. token may be empty. Each call is bounded by its
// context.
func New(addr, token string) (*Client, error) { return NewTLS(addr, token, nil) }

// NewTLS returns a client of the agent at addr that speaks HTTPS with tc:
// tlsconfig.Client's, which reads its files again when they change, where
// api.TLSConfig would read them once. With tc, the CONSUL_* TLS variables
// are not used; a nil tc is New.
func NewTLS(addr, token string, tc *tls.Config) (*Client, error) {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = addr
	cfg.Token = token
	if tc != nil {
		cfg.Scheme = "https"
		cfg.Transport.TLSClientConfig = tc
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return &Client{api: c, kv: c.KV()}, nil
}

// Prefix is the KV prefix of everything dbha keeps about a cluster.
func Prefix(cluster string) string { return "dbha/" + cluster + "/" }

func observationsPrefix(cluster string) string { return Prefix(cluster) + "observations/" }

// PublishObservation stores this manager's latest view of a cluster.
func (c *Client) PublishObservation(ctx context.Context, cluster string, v checks.PeerView) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	key := path.Join(observationsPrefix(cluster), v.Manager)
	if _, err := c.kv.Put(&api.KVPair{Key: key, Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("publish observation %s: %w", key, err)
	}
	return nil
}

// Peers returns the latest observations of every other manager. Entries
// that do not parse are skipped: a peer's garbage must not stop analysis.
func (c *Client) Peers(ctx context.Context, cluster, self string) ([]checks.PeerView, error) {
	prefix := observationsPrefix(cluster)
	pairs, _, err := c.kv.List(prefix, (&api.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read observations under %s: %w", prefix, err)
	}
	var out []checks.PeerView
	for _, p := range pairs {
		if strings.TrimPrefix(p.Key, prefix) == self {
			continue
		}
		var v checks.PeerView
		if json.Unmarshal(p.Value, &v) == nil && v.Manager != "" && !v.At.IsZero() {
			out = append(out, v)
		}
	}
	return out, nil
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _, err := c.kv.Get("dbha/", (&api.QueryOptions{AllowStale: true}).WithContext(ctx))
	return err
}
