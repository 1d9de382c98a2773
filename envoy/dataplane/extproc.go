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

// extProcStream is the one ext_proc stream of one HTTP request, opened
// lazily on the first message as Envoy does. Exchanges are strictly
// sequential (send one message, wait for its answer), so it needs no lock,
// and they run on the request's own goroutine: a helper goroutine, channel
// and select per message cost more than the whole gRPC round trip on a
// loaded two-core host, and a fresh goroutine also had to grow its stack
// for every proto marshal. message_timeout is enforced by cancelling the
// stream's context instead, which unblocks Process, Send and Recv at once
// (grpc-go watches the stream context in each of them).
type extProcStream struct {
	client  extprocv3.ExternalProcessorClient
	timeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer // message_timeout, re-armed for each exchange
	stream extprocv3.ExternalProcessor_ProcessClient
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
	return &extProcStream{client: client, timeout: timeout, ctx: ctx, cancel: cancel}
}

// exchange sends req and waits for its answer for at most message_timeout.
// Opening the stream counts against the same budget: a decision service
// that cannot be reached must not hold a request longer than a slow one.
// When the timer fires it resets the stream (Envoy's onMessageTimeout),
// which is also what makes the blocked gRPC call return.
func (s *extProcStream) exchange(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if s.done {
		return nil, errExtProcClosed
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(s.timeout, s.cancel)
	} else {
		// The previous exchange stopped it in time (or the stream is
		// done), so it is idle and can be re-armed.
		s.timer.Reset(s.timeout)
	}
	resp, err := s.roundTrip(req)
	if !s.timer.Stop() {
		// The timer fired (and cancelled the stream) before the answer
		// was taken: a timeout, whatever the gRPC call returned.
		s.fail()
		return nil, errExtProcTimeout
	}
	if err != nil {
		s.fail()
		return nil, err
	}
	return resp, nil
}

// roundTrip opens the stream if needed, sends req and reads one answer.
func (s *extProcStream) roundTrip(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if s.stream == nil {
		st, err := s.client.Process(s.ctx)
		if err != nil {
			return nil, errors.Join(errExtProcStream, err)
		}
		s.stream = st
	}
	// Send fails with io.EOF when the stream has ended; the real status
	// arrives on the receive side, so a send error is not returned.
	_ = s.stream.Send(req)
	resp, err := s.stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errExtProcClosed
		}
		return nil, errors.Join(errExtProcStream, err)
	}
	return resp, nil
}

// fail stops using ext_proc for this request and resets the stream, as
// Envoy does after an error or timeout.
func (s *extProcStream) fail() {
	s.done = true
	s.cancel()
}

// finish ends the stream normally: half-close, then give the server up to
// remoteClose to return before the stream is cancelled (Envoy's graceful
// close, remote_close_timeout_milliseconds 1000). It does not block: the
// server's status is read on a goroutine of its own, so the response is
// not held up by the round trip of the close.
func (s *extProcStream) finish(remoteClose time.Duration) {
	if s.done || s.stream == nil {
		s.done = true
		s.cancel()
		return
	}
	s.done = true
	_ = s.stream.CloseSend()
	st, cancel := s.stream, s.cancel
	go func() {
		t := time.AfterFunc(remoteClose, cancel)
		defer cancel()
		defer t.Stop()
		for {
			if _, err := st.Recv(); err != nil {
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
