package dataplane

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
)

// Why an ext_proc exchange did not produce a usable answer. Each maps to a
// row of envoy-facts §1.5.
var (
	// errExtProcTimeout: no reply within message_timeout (onMessageTimeout).
	errExtProcTimeout = errors.New("ext_proc: message timeout")
	// errExtProcStream: the stream could not be opened or ended with a
	// non-OK status (onGrpcError).
	errExtProcStream = errors.New("ext_proc: stream error")
	// errExtProcSpurious: a reply of the wrong type.
	errExtProcSpurious = errors.New("ext_proc: spurious response")
	// errExtProcClosed: the server closed the stream with OK; Envoy then
	// carries on without ext_proc whatever failure_mode_allow says.
	errExtProcClosed = errors.New("ext_proc: stream closed by server")
)

type recvResult struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

// extProcStream is the one ext_proc stream of one HTTP request, opened
// lazily on the first message as Envoy does. Exchanges are strictly
// sequential (send one message, wait for its answer), so it needs no lock.
type extProcStream struct {
	client  extprocv3.ExternalProcessorClient
	timeout time.Duration
	md      metadata.MD

	ctx    context.Context
	cancel context.CancelFunc
	stream extprocv3.ExternalProcessor_ProcessClient
	recv   chan recvResult
	// done: ext_proc is no longer used for this request (failed open,
	// closed by the server, or finished).
	done bool
}

// newExtProcStream prepares a stream whose context carries parent's values
// (trace context for an otelgrpc client) but is cancelled only by Close or
// when stopOn is cancelled (the client went away).
func newExtProcStream(parent context.Context, client extprocv3.ExternalProcessorClient, timeout time.Duration, md metadata.MD) *extProcStream {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	return &extProcStream{client: client, timeout: timeout, md: md, ctx: ctx, cancel: cancel}
}

// exchange sends req and waits for its answer for at most message_timeout.
// Opening the stream counts against the same budget: a decision service
// that cannot be reached must not hold a request longer than a slow one.
func (s *extProcStream) exchange(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if s.done {
		return nil, errExtProcClosed
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	sendErr := make(chan error, 1)
	opened := make(chan extprocv3.ExternalProcessor_ProcessClient, 1)
	needOpen := s.stream == nil
	st := s.stream
	go func() {
		if needOpen {
			var err error
			st, err = s.client.Process(s.ctx)
			if err != nil {
				sendErr <- err
				return
			}
			opened <- st
		}
		if err := st.Send(req); err != nil {
			sendErr <- err
		}
	}()
	for {
		select {
		case st := <-opened:
			s.stream = st
			s.recv = make(chan recvResult, 1)
			go s.recvLoop(st)
		case err := <-sendErr:
			if s.recv == nil {
				s.fail()
				return nil, errors.Join(errExtProcStream, err)
			}
			// Send fails with io.EOF when the stream has ended; the real
			// status arrives on the receive side.
			sendErr = nil
		case r := <-s.recvChan():
			if r.err != nil {
				s.fail()
				if errors.Is(r.err, io.EOF) {
					return nil, errExtProcClosed
				}
				return nil, errors.Join(errExtProcStream, r.err)
			}
			return r.resp, nil
		case <-timer.C:
			s.fail()
			return nil, errExtProcTimeout
		}
	}
}

// recvChan is nil (blocks forever in select) until the stream is open.
func (s *extProcStream) recvChan() chan recvResult {
	return s.recv
}

func (s *extProcStream) recvLoop(st extprocv3.ExternalProcessor_ProcessClient) {
	for {
		resp, err := st.Recv()
		select {
		case s.recv <- recvResult{resp, err}:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// fail stops using ext_proc for this request and resets the stream, as
// Envoy does after an error or timeout.
func (s *extProcStream) fail() {
	s.done = true
	s.cancel()
}

// finish ends the stream normally: half-close, then give the server up to
// remoteClose to return before the stream is cancelled (Envoy's graceful
// close, remote_close_timeout_milliseconds 1000). It does not block.
func (s *extProcStream) finish(remoteClose time.Duration) {
	if s.done || s.stream == nil {
		s.done = true
		s.cancel()
		return
	}
	s.done = true
	_ = s.stream.CloseSend()
	recv, cancel, ctx := s.recv, s.cancel, s.ctx
	go func() {
		t := time.NewTimer(remoteClose)
		defer t.Stop()
		defer cancel()
		for {
			select {
			case r := <-recv:
				if r.err != nil {
					return
				}
			case <-t.C:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

// initialMetadata evaluates grpc_service.initial_metadata, whose values may
// use %REQ(header)% (envoy.yaml passes x-request-id this way).
func initialMetadata(entries [][2]string, hs *headerSet) metadata.MD {
	if len(entries) == 0 {
		return nil
	}
	md := metadata.MD{}
	for _, e := range entries {
		v := e[1]
		for {
			i := strings.Index(v, "%REQ(")
			if i < 0 {
				break
			}
			j := strings.Index(v[i:], ")%")
			if j < 0 {
				break
			}
			name := strings.ToLower(v[i+5 : i+j])
			hv, _ := hs.get(name)
			v = v[:i] + hv + v[i+j+2:]
		}
		if v != "" {
			md.Append(e[0], v)
		}
	}
	return md
}
