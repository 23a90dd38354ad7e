package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// BackupSlot is the record of the last scheduled backup slot a manager
// claimed for a cluster.
type BackupSlot struct {
	Slot      time.Time `json:"slot"`
	Manager   string    `json:"manager"`
	ClaimedAt time.Time `json:"claimed_at"`
}

func backupSlotKey(cluster string) string { return Prefix(cluster) + "backup/slot" }

// ClaimBackupSlot claims the scheduled backup at slot for owner, and
// reports whether it did: true for exactly one of the managers that claim
// the same slot. It takes the cluster's lock only for the claim, never for
// the backup itself, which may run for hours while a failover needs the
// lock; a manager that finds the lock held (by a recovery or by another
// manager claiming) gets false, as does one that finds this slot, or a
// later one, claimed already. The record is written with a check-and-set,
// so a claim stays single even if the lock is lost meanwhile.
func (c *Client) ClaimBackupSlot(ctx context.Context, cluster string, slot time.Time, owner string) (bool, error) {
	lease, err := c.AcquireLock(ctx, cluster, owner, 10*time.Second)
	if errors.Is(err, ErrLocked) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim backup slot %s: %w", slot.UTC().Format(time.RFC3339), err)
	}
	// A release that fails leaves the lock to the session's TTL, as a
	// crashed manager would; the claim stands either way.
	defer lease.Release()
	won, err := c.claimSlot(ctx, cluster, slot, owner)
	if err != nil {
		return false, fmt.Errorf("claim backup slot %s: %w", slot.UTC().Format(time.RFC3339), err)
	}
	return won, nil
}

func (c *Client) claimSlot(ctx context.Context, cluster string, slot time.Time, owner string) (bool, error) {
	key := backupSlotKey(cluster)
	pair, _, err := c.kv.Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	var index uint64 // 0: the key must not exist yet
	if pair != nil {
		index = pair.ModifyIndex
		var last BackupSlot
		// A record that does not parse is replaced: it names no slot.
		if json.Unmarshal(pair.Value, &last) == nil && !last.Slot.Before(slot) {
			return false, nil
		}
	}
	b, err := json.Marshal(BackupSlot{Slot: slot.UTC(), Manager: owner, ClaimedAt: time.Now().UTC()})
	if err != nil {
		return false, err
	}
	ok, _, err := c.kv.CAS(&api.KVPair{Key: key, Value: b, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("write %s: %w", key, err)
	}
	return ok, nil
}

// LastBackupSlot returns the last claimed slot of cluster; ok=false when
// none was.
func (c *Client) LastBackupSlot(ctx context.Context, cluster string) (s BackupSlot, ok bool, err error) {
	ok, err = c.getJSON(ctx, backupSlotKey(cluster), &s)
	return s, ok, err
}
