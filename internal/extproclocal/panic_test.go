package extproclocal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/extproclocal"
)

// syncBuffer is a bytes.Buffer safe for the logger's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestServerPanic: a Process that panics ends its stream with
// codes.Internal, and the process (here: the test binary) lives on and
// serves the next stream. Without the recovery the panic on the worker
// goroutine ends the whole process, the data plane with it. A panic value
// the server made up is not logged (it may hold request data), a runtime
// error is.
func TestServerPanic(t *testing.T) {
	const secret = "PVEAPIToken=root@pam!x=0f0f0f0f"
	cases := []struct {
		name    string
		panicOf func()
		logged  string // must be in the log
	}{
		{"string with a secret", func() { panic("bad header " + secret) }, "panic_type=string"},
		{"runtime error", func() { s := []int{}; i := len(s) + 3; _ = s[i] }, "index out of range [3] with length 0"},
		{"error value", func() { panic(errors.New(secret)) }, "panic_type=*errors.errorString"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logBuf syncBuffer
			calls := 0
			var mu sync.Mutex
			srv := serverFunc(func(s stream) error {
				mu.Lock()
				calls++
				first := calls == 1
				mu.Unlock()
				if _, err := s.Recv(); err != nil {
					return err
				}
				if first {
					c.panicOf()
				}
				return s.Send(answer)
			})
			cl := extproclocal.New(srv, extproclocal.Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
			defer func() { _ = cl.Close(context.Background()) }()

			st, err := cl.Process(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(headers); err != nil {
				t.Fatal(err)
			}
			_, err = st.Recv()
			if status.Code(err) != codes.Internal {
				t.Fatalf("Recv after the server panicked: %v, want codes.Internal", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the stream's error carries the panic value: %v", err)
			}
			log := logBuf.String()
			if strings.Contains(log, secret) {
				t.Errorf("the log carries the panic value: %s", log)
			}
			if !strings.Contains(log, c.logged) || !strings.Contains(log, "stack=") {
				t.Errorf("log %q lacks %q or the stack", log, c.logged)
			}

			// The next stream is served as usual.
			st, err = cl.Process(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(headers); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatalf("the stream after the panic: %v", err)
			}
			_ = st.CloseSend()
		})
	}
}
