// Package logsink holds Buffer, a log destination that tests read while
// the code under test still writes to it from other goroutines. Tests use
// it to prove what is logged, and above all what never is (tokens,
// cookies, CSRF tokens).
package logsink

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String, as a
// slog handler's writer shared by servers, watchers and the test itself.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
