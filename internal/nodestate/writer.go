package nodestate

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the longest time between two writes of a state file.
// pmxcfs replicates every write to every node through corosync, so the
// file is written on every change and otherwise only this often, as a
// heartbeat that lets readers tell a stopped router from a quiet one.
const DefaultInterval = 30 * time.Second

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Path is the state file (see Path).
	Path string
	// Build returns the state to write now; the Writer sets Version,
	// WrittenAt, IntervalSeconds and, at shutdown, Stopped.
	Build func() State
	// Interval is the heartbeat; DefaultInterval when zero.
	Interval time.Duration
	Logger   *slog.Logger
	// Write replaces the file; WriteFile when nil. Tests inject failures
	// here only where the file system cannot be made to fail.
	Write func(path string, data []byte) error
}

// Writer keeps one node's state file up to date. A failed write never
// stops the router: pmxcfs is read-only without quorum, and that is when
// routing must keep working. The failure is logged once and shown by
// Status, and the next change or heartbeat tries again.
type Writer struct {
	opts WriterOptions
	kick chan struct{}

	mu     sync.Mutex
	status WriteStatus
}

// WriteStatus is the Writer's last attempt, for /status and the control
// API.
type WriteStatus struct {
	Path string
	// LastWrite is the last successful write; zero before the first.
	LastWrite time.Time
	// Err is the last attempt's error; nil when it succeeded.
	Err error
	// FailedSince is when the current run of failures began.
	FailedSince time.Time
}

// NewWriter returns a Writer; Run starts it.
func NewWriter(opts WriterOptions) *Writer {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Write == nil {
		opts.Write = WriteFile
	}
	return &Writer{opts: opts, kick: make(chan struct{}, 1), status: WriteStatus{Path: opts.Path}}
}

// Kick asks for a write now (a reload, the kill switch, a gate trip). It
// never blocks; kicks that arrive during a write collapse into one.
func (w *Writer) Kick() {
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Status returns the last attempt's result.
func (w *Writer) Status() WriteStatus {
	if w == nil {
		return WriteStatus{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Run writes the file at once, on every Kick and every Interval, until ctx
// ends; then it writes a last time with Stopped set, so that
// `status --cluster` can tell a stopped router from a lost one.
func (w *Writer) Run(ctx context.Context) {
	w.write(false)
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.write(true)
			return
		case <-w.kick:
			w.write(false)
		case <-t.C:
			w.write(false)
		}
	}
}

func (w *Writer) write(stopped bool) {
	st := w.opts.Build()
	st.Version = Version
	st.WrittenAt = time.Now().UTC()
	st.Stopped = stopped
	st.IntervalSeconds = w.opts.Interval.Seconds()
	if st.Gate.Tripped == nil {
		st.Gate.Tripped = []string{}
	}
	data, err := st.Encode()
	if err == nil {
		err = w.opts.Write(w.opts.Path, data)
	}
	w.mu.Lock()
	prev := w.status.Err
	if err != nil {
		if prev == nil {
			w.status.FailedSince = st.WrittenAt
		}
		w.status.Err = err
	} else {
		w.status.Err, w.status.FailedSince, w.status.LastWrite = nil, time.Time{}, st.WrittenAt
	}
	w.mu.Unlock()
	switch {
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		w.opts.Logger.Warn("cannot write the node state file; routing goes on (pmxcfs read-only without quorum?)",
			"path", w.opts.Path, "error", err)
	case err == nil && prev != nil:
		w.opts.Logger.Info("node state file written again", "path", w.opts.Path)
	}
}
