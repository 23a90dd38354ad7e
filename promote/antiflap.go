package promote

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Block is the anti-flap record an automatic recovery leaves behind (a
// planned or manual one leaves none): until Until, a further automatic
// recovery must not promote the instances it involved in a way that would
// look like flapping (see AntiFlap). Consul keeps it as JSON under
// dbha/<cluster>/blocked-until (consul.Block has the same fields); the
// fields after Reason were added with the selective rule and are empty in a
// block an older dbha wrote.
type Block struct {
	Until    time.Time `json:"until"`
	Recovery string    `json:"recovery"`
	Reason   string    `json:"reason"`
	// At is when the blocking recovery finished.
	At time.Time `json:"at,omitzero"`
	// OldPrimary lost the primary role in the blocking recovery, and
	// NewPrimary took it.
	OldPrimary string `json:"old_primary,omitempty"`
	NewPrimary string `json:"new_primary,omitempty"`
	// Failed are the instances a step of the blocking recovery failed on
	// (an error, or a replica it could not repoint).
	Failed []string `json:"failed,omitempty"`
}

// ErrBlocked: an automatic recovery was refused because of a recent one.
// Recover returns it as a *BlockedError, which says what blocks, until when
// and how to lift it.
var ErrBlocked = errors.New("a recent automatic recovery blocks this automatic recovery")

// Avoid is an instance the anti-flap rule keeps an automatic recovery from
// promoting, and why. MakePlan excludes it like any other rule
// (Request.Avoid), so the reason shows among the candidates of the plan and
// the record.
type Avoid struct {
	Addr   string `json:"addr"`
	Reason string `json:"reason"`
}

// AntiFlap is the anti-flap rule: what the block b forbids an automatic
// recovery starting at now. Within the block's window, promoting back the
// instance that lost the primary role in the blocking recovery, or an
// instance that failed in it, would look like flapping: they are avoided,
// each with its reason. Any other instance, healthy and uninvolved, may be
// promoted. A block that names no old primary (written before the rule
// was selective) refuses every automatic recovery until it ends, as it
// always did. Past Until the block forbids nothing. Pure: now is given.
func AntiFlap(b Block, now time.Time) (avoid []Avoid, refuseAll bool) {
	if !now.Before(b.Until) {
		return nil, false
	}
	if b.OldPrimary == "" {
		return nil, true
	}
	ago := ""
	if !b.At.IsZero() {
		ago = " " + now.Sub(b.At).Round(time.Second).String() + " ago"
	}
	avoid = append(avoid, Avoid{Addr: b.OldPrimary, Reason: fmt.Sprintf(
		"lost the primary role in recovery %s%s; promoting it back within promotion.block_for would be flapping", b.Recovery, ago)})
	for _, addr := range b.Failed {
		if addr == b.OldPrimary || slices.ContainsFunc(avoid, func(a Avoid) bool { return a.Addr == addr }) {
			continue
		}
		avoid = append(avoid, Avoid{Addr: addr, Reason: fmt.Sprintf(
			"failed in recovery %s%s; promoting it within promotion.block_for would be flapping", b.Recovery, ago)})
	}
	return avoid, false
}

// NewBlock is the block an automatic recovery that finished at now leaves
// for window.
func NewBlock(rec *Record, now time.Time, window time.Duration) Block {
	return Block{Until: now.Add(window), Recovery: rec.ID, Reason: rec.Reason, At: now,
		OldPrimary: rec.Plan.OldPrimary, NewPrimary: rec.Plan.NewPrimary, Failed: failedIn(rec)}
}

// failedIn lists the instances a recovery failed on, old primary aside: a
// step on them returned an error (in an attempt a resume then finished),
// or they were to be repointed and were not.
func failedIn(rec *Record) []string {
	var out []string
	add := func(addr string) {
		if addr != "" && addr != rec.Plan.OldPrimary && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	for _, s := range rec.Steps {
		if s.Error != "" {
			add(s.Target)
		}
	}
	for _, s := range rec.Plan.Steps {
		if s.Action == ActRepoint && s.N < rec.Next && !slices.Contains(rec.Repointed, s.Target) {
			add(s.Target)
		}
	}
	return out
}

// BlockedError is the error Recover returns when the anti-flap block leaves
// an automatic recovery no candidate (or, for a block that names no
// instance, refuses it outright). errors.Is(err, ErrBlocked) matches it.
type BlockedError struct {
	Cluster string
	Block   Block
	// Until is when the block ends by itself.
	Until time.Time
	// Avoided are the candidates the block kept out and that could have
	// been promoted otherwise; empty when the block refused every
	// automatic recovery.
	Avoided []Avoid
}

func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Lift is the command that lifts the block.
func (e *BlockedError) Lift() string { return "dbha recover ack --cluster " + e.Cluster }

// Reason says what blocks: the recovery and the candidates it keeps out.
func (e *BlockedError) Reason() string {
	b := e.Block
	what := fmt.Sprintf("recovery %s (%s)", b.Recovery, b.Reason)
	if b.OldPrimary != "" {
		what += fmt.Sprintf(" moved the primary from %s to %s", b.OldPrimary, b.NewPrimary)
	}
	if len(e.Avoided) == 0 {
		return what + " and blocks every automatic recovery"
	}
	var why []string
	for _, a := range e.Avoided {
		why = append(why, a.Addr+" "+a.Reason)
	}
	return what + "; the only candidates left would flap: " + strings.Join(why, "; ")
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("%v: %s; blocked until %s; `%s` lifts it", ErrBlocked, e.Reason(), e.Until.UTC().Format(time.RFC3339), e.Lift())
}
