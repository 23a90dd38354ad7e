package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/dbha/dbha/drill"
)

// KeepDrills is how many drill reports each cluster keeps in Consul; a
// new report beyond it removes the oldest.
const KeepDrills = 50

// maxDrillBytes keeps a report well under Consul's value limit (512 KiB):
// a larger one is stored without the ids of its in-flight and lost
// writes (their counts stay).
const maxDrillBytes = 256 << 10

func drillsPrefix(cluster string) string { return Prefix(cluster) + "drills/" }

// PutDrill keeps a drill's report under dbha/<cluster>/drills/<start>-<fault>,
// where every manager's console reads it, and removes the reports beyond
// KeepDrills, oldest first.
func (c *Client) PutDrill(ctx context.Context, s drill.Summary) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if len(b) > maxDrillBytes {
		s.Runs = slices.Clone(s.Runs)
		for i := range s.Runs {
			s.Runs[i].InFlight, s.Runs[i].Lost = nil, nil
		}
		if b, err = json.Marshal(s); err != nil {
			return err
		}
	}
	prefix := drillsPrefix(s.Cluster)
	key := prefix + s.Started.UTC().Format("20060102T150405.000Z") + "-" + s.Fault.Name
	if _, err := c.kv.Put(&api.KVPair{Key: key, Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	keys, _, err := c.kv.Keys(prefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	slices.Sort(keys) // keys begin with their time
	for _, k := range keys[:max(0, len(keys)-KeepDrills)] {
		if _, err := c.kv.Delete(k, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("remove the old drill report %s: %w", k, err)
		}
	}
	return nil
}

// Drills are the cluster's last n drill reports, newest first. A report
// that does not parse is skipped.
func (c *Client) Drills(ctx context.Context, cluster string, n int) ([]drill.Summary, error) {
	prefix := drillsPrefix(cluster)
	pairs, _, err := c.kv.List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", prefix, err)
	}
	slices.SortFunc(pairs, func(a, b *api.KVPair) int { return strings.Compare(b.Key, a.Key) })
	var out []drill.Summary
	for _, p := range pairs {
		if len(out) == n {
			break
		}
		var s drill.Summary
		if json.Unmarshal(p.Value, &s) == nil {
			out = append(out, s)
		}
	}
	return out, nil
}
