package consul

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/dbha/dbha/promote"
)

// Block is the anti-flap record (promote.Block), stored as JSON under
// dbha/<cluster>/blocked-until; `dbha recover ack` lifts it.
type Block = promote.Block

func blockKey(cluster string) string        { return Prefix(cluster) + "blocked-until" }
func pauseKey(cluster string) string        { return Prefix(cluster) + "paused" }
func stateKey(cluster string) string        { return Prefix(cluster) + "state" }
func recoveryKey(cluster, id string) string { return Prefix(cluster) + "recoveries/" + id }

// GetBlock returns the cluster's anti-flap block, or ok=false when none.
func (c *Client) GetBlock(ctx context.Context, cluster string) (b Block, ok bool, err error) {
	ok, err = c.getJSON(ctx, blockKey(cluster), &b)
	return b, ok, err
}

// SetBlock records an anti-flap block.
func (c *Client) SetBlock(ctx context.Context, cluster string, b Block) error {
	return c.putJSON(ctx, blockKey(cluster), b)
}

// ClearBlock lifts the anti-flap block.
func (c *Client) ClearBlock(ctx context.Context, cluster string) error {
	if _, err := c.kv.Delete(blockKey(cluster), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("clear %s: %w", blockKey(cluster), err)
	}
	return nil
}

// GetPause returns the cluster's maintenance mode (dbha/<cluster>/paused),
// or ok=false when it is not paused.
func (c *Client) GetPause(ctx context.Context, cluster string) (p promote.Pause, ok bool, err error) {
	ok, err = c.getJSON(ctx, pauseKey(cluster), &p)
	return p, ok, err
}

// SetPause puts the cluster in maintenance mode.
func (c *Client) SetPause(ctx context.Context, cluster string, p promote.Pause) error {
	return c.putJSON(ctx, pauseKey(cluster), p)
}

// ClearPause lifts the maintenance mode.
func (c *Client) ClearPause(ctx context.Context, cluster string) error {
	if _, err := c.kv.Delete(pauseKey(cluster), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("clear %s: %w", pauseKey(cluster), err)
	}
	return nil
}

// PutState stores the cluster's shared state (the recovery in progress, the
// fenced old primary...), as the promote package shapes it.
func (c *Client) PutState(ctx context.Context, cluster string, v any) error {
	return c.putJSON(ctx, stateKey(cluster), v)
}

// GetState reads the cluster's shared state into v; ok=false when none.
func (c *Client) GetState(ctx context.Context, cluster string, v any) (bool, error) {
	return c.getJSON(ctx, stateKey(cluster), v)
}

// PutRecovery stores a recovery's audit record.
func (c *Client) PutRecovery(ctx context.Context, cluster, id string, v any) error {
	return c.putJSON(ctx, recoveryKey(cluster, id), v)
}

// GetRecovery reads one recovery's audit record into v.
func (c *Client) GetRecovery(ctx context.Context, cluster, id string, v any) (bool, error) {
	return c.getJSON(ctx, recoveryKey(cluster, id), v)
}

// RecoveryIDs lists the cluster's recorded recoveries, oldest first (ids
// sort by time).
func (c *Client) RecoveryIDs(ctx context.Context, cluster string) ([]string, error) {
	prefix := Prefix(cluster) + "recoveries/"
	keys, _, err := c.kv.Keys(prefix, "", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	for i, k := range keys {
		keys[i] = k[len(prefix):]
	}
	return keys, nil
}

func (c *Client) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := c.kv.Put(&api.KVPair{Key: key, Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, key string, v any) (bool, error) {
	pair, _, err := c.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if pair == nil || len(pair.Value) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(pair.Value, v); err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	return true, nil
}

// casJSON replaces key's JSON value with change(the current value, nil
// when none) under a check-and-set, trying again (up to 10 times) when
// another writer came in between.
func (c *Client) casJSON(ctx context.Context, key string, change func(prev []byte) (any, error)) error {
	for range 10 {
		pair, _, err := c.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		var prev []byte
		var index uint64
		if pair != nil {
			prev, index = pair.Value, pair.ModifyIndex
		}
		v, err := change(prev)
		if err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		ok, _, err := c.kv.CAS(&api.KVPair{Key: key, Value: b, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("write %s: changed by others ten times in a row", key)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
