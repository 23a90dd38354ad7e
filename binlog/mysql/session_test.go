package mysql

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
)

// TestSessionDialerEndsWithTheSession: a server that accepts connections
// and never speaks (a hung primary: its kernel completes the handshake) no
// longer holds a read once the session is cut, and no dial follows.
func TestSessionDialerEndsWithTheSession(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // never accepted: the kernel's backlog answers
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := binlog.NewHold()
	session, done, err := h.Session(context.Background(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	dial := sessionDialer(session)
	c, err := dial(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1)) // the greeting that never comes
		read <- err
	}()
	cut := make(chan func(), 1)
	go func() { cut <- h.Cut(l.Addr().String()) }()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("read a byte from a server that never writes")
		}
	case <-time.After(time.Minute): // a bound, not a measure: without the cut the read never returns
		t.Fatal("the read still waits on the silent server after the cut")
	}
	done() // the session ends, as a stream session does once its reads fail
	(<-cut)()
	if _, err := dial(context.Background(), "tcp", l.Addr().String()); !errors.Is(err, binlog.ErrHeld) {
		t.Errorf("a dial after the cut: err = %v, want ErrHeld", err)
	}
}
