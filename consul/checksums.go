package consul

import (
	"context"

	"github.com/dbha/dbha/checksum"
)

func checksumKey(cluster string) string { return Prefix(cluster) + "checksum" }

// Checksum reads the cluster's checksum summary; ok=false when no run
// stored one.
func (c *Client) Checksum(ctx context.Context, cluster string) (s checksum.Summary, ok bool, err error) {
	ok, err = c.getJSON(ctx, checksumKey(cluster), &s)
	return s, ok, err
}

// MergeChecksum folds a run into the cluster's summary, with a
// check-and-set so that two runs at once do not lose one another.
func (c *Client) MergeChecksum(ctx context.Context, r checksum.Report) (checksum.Summary, error) {
	var out checksum.Summary
	err := c.casJSON(ctx, checksumKey(r.Cluster), func(prev []byte) (any, error) {
		var s checksum.Summary
		if len(prev) > 0 {
			if err := jsonUnmarshal(prev, &s); err != nil {
				s = checksum.Summary{} // a record that does not parse is replaced
			}
		}
		out = checksum.Merge(s, r)
		return out, nil
	})
	return out, err
}

// Inconsistent are the replicas the cluster's checksum runs found
// different from the primary, with why (none: nil).
func (c *Client) Inconsistent(ctx context.Context, cluster string) (map[string]string, error) {
	s, ok, err := c.Checksum(ctx, cluster)
	if err != nil || !ok {
		return nil, err
	}
	return s.Inconsistent(), nil
}
