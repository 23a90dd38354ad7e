package binlog

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestHoldCutEndsTheSessionToThatInstanceOnly(t *testing.T) {
	h := NewHold()
	old, done, err := h.Session(context.Background(), "a:1")
	if err != nil {
		t.Fatal(err)
	}
	other, doneOther, err := h.Session(context.Background(), "b:1")
	if err != nil {
		t.Fatal(err)
	}
	defer doneOther()

	// The session ends as a stream session does: it sees its context end,
	// closes its files, then calls done. Cut returns only after that.
	closed := make(chan time.Time, 1)
	go func() {
		<-old.Done()
		time.Sleep(50 * time.Millisecond)
		closed <- time.Now()
		done()
	}()
	release := h.Cut("a:1")
	returned := time.Now()
	select {
	case at := <-closed:
		if returned.Before(at) {
			t.Errorf("Cut returned before the session closed its files")
		}
	default:
		t.Fatal("Cut returned before the session it ended called done")
	}
	if !errors.Is(context.Cause(old), ErrHeld) {
		t.Errorf("cut session's cause = %v, want ErrHeld", context.Cause(old))
	}
	if other.Err() != nil {
		t.Errorf("a session to another instance was ended: %v", context.Cause(other))
	}
	if _, _, err := h.Session(context.Background(), "a:1"); !errors.Is(err, ErrHeld) {
		t.Errorf("a new session to a cut instance: err = %v, want ErrHeld", err)
	}
	if !h.Held("a:1") || h.Held("b:1") {
		t.Errorf("Held: a:1 %v b:1 %v", h.Held("a:1"), h.Held("b:1"))
	}

	woken := h.Released()
	release()
	release() // a second call changes nothing
	select {
	case <-woken:
	default:
		t.Error("Released's channel was not closed by the release")
	}
	ctx, done2, err := h.Session(context.Background(), "a:1")
	if err != nil {
		t.Fatalf("a session after the release: %v", err)
	}
	done2()
	if ctx.Err() == nil {
		t.Error("done does not end the session's context")
	}
}

func TestHoldCutsNest(t *testing.T) {
	h := NewHold()
	first := h.Cut("a:1")
	second := h.Cut("a:1")
	first()
	if _, _, err := h.Session(context.Background(), "a:1"); !errors.Is(err, ErrHeld) {
		t.Errorf("one of two cuts released: err = %v, want ErrHeld", err)
	}
	second()
	if _, _, err := h.Session(context.Background(), "a:1"); err != nil {
		t.Errorf("both cuts released: %v", err)
	}
}

func TestHoldCutReturnsWhenASessionNeverEnds(t *testing.T) {
	h := NewHold()
	_, done, err := h.Session(context.Background(), "a:1")
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	release := h.Cut("a:1") // the session never calls done: Cut returns all the same
	defer release()
	if !h.Held("a:1") {
		t.Error("a:1 is not held after Cut")
	}
}

func TestNilHoldHoldsNothing(t *testing.T) {
	var h *Hold
	h.Cut("a:1")()
	ctx, done, err := h.Session(context.Background(), "a:1")
	if err != nil || ctx == nil {
		t.Fatalf("nil hold: %v", err)
	}
	done()
	if h.Held("a:1") || h.Released() != nil {
		t.Error("a nil hold holds something")
	}
}
