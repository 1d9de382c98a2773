// Package extproclocal connects an ext_proc client and an ext_proc server
// that live in the same process without gRPC: no socket, no HTTP/2
// framing, no protobuf encoding. The embedded data plane (envoy/dataplane)
// takes any extprocv3.ExternalProcessorClient as Options.ExtProc; New
// returns one whose streams call the server's Process method directly,
// with the same messages in the same order as over the wire.
//
// It exists because on a PVE node without Envoy the data plane and the
// decision service run in one router process, and the gRPC round trip
// (encode, decode, two loopback frames per message, a stream per request)
// was the largest single cost of every proxied API call. The gRPC path
// stays for Envoy and for the router's --ext-proc flag.
//
// What the server observes is what grpc-go would give it:
//   - Recv returns io.EOF after the client's CloseSend, and a
//     codes.Canceled (or DeadlineExceeded) status once the client's
//     context ends;
//   - the stream context carries the client's outgoing metadata as
//     incoming metadata, the client context's cancellation and deadline,
//     and none of the client context's other values (a gRPC server
//     context does not carry them either);
//   - Process's return value reaches the client's Recv as io.EOF (nil)
//     or as a gRPC status error (codes.Unknown for a plain error).
//
// Messages are passed by pointer, not copied: after Send neither side may
// modify a message. The data plane and server.Processor never do (the
// processor's cached answers are shared between streams already).
package extproclocal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type (
	req  = extprocv3.ProcessingRequest
	resp = extprocv3.ProcessingResponse
)

// Options tune New.
type Options struct {
	// ServerContext, if non-nil, is applied to every stream's server
	// context before Process sees it, the way a grpc.StatsHandler's
	// TagRPC is: the router passes telemetry's trace-context extraction
	// so that the stream context carries the same parent span as it does
	// behind otelgrpc.
	ServerContext func(context.Context) context.Context
	// Logger receives the report of a server that panicked (default
	// slog.Default()).
	Logger *slog.Logger
}

// Client is an extprocv3.ExternalProcessorClient that serves every stream
// with an in-process ExternalProcessorServer. It is safe for concurrent
// use; each Process call runs the server's Process on a goroutine of its
// own, as a gRPC server does (reused for later streams, see worker).
type Client struct {
	srv  extprocv3.ExternalProcessorServer
	opts Options

	mu      sync.Mutex
	closed  bool
	streams sync.WaitGroup

	idle     chan *stream  // idle workers receive their next stream here
	quit     chan struct{} // closed by Close: idle workers exit
	quitOnce sync.Once
}

var _ extprocv3.ExternalProcessorClient = (*Client)(nil)

// New returns a Client for srv (e.g. server.NewProcessor).
func New(srv extprocv3.ExternalProcessorServer, opts Options) *Client {
	return &Client{srv: srv, opts: opts, idle: make(chan *stream), quit: make(chan struct{})}
}

// ErrClosed is what Process returns after Close, like a stream on a
// closed grpc.ClientConn (codes.Canceled).
var ErrClosed = status.Error(codes.Canceled, "extproclocal: client is closed")

// Close refuses new streams, lets idle server goroutines exit, and waits
// until the server has returned from every stream already open, or ctx
// ends. Streams in flight are not cancelled: their clients end them (the
// data plane always does, when the request is done or its client went
// away).
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.quitOnce.Do(func() { close(c.quit) })
	done := make(chan struct{})
	go func() { c.streams.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Process opens one stream: the server's Process starts at once on its
// own goroutine and reads the first message when the client sends it.
// The call options are ignored; there is no transport to tune.
func (c *Client) Process(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[req, resp], error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.streams.Add(1)
	c.mu.Unlock()

	s := &stream{
		cctx:      ctx,
		reqs:      make(chan *req, 1),
		resps:     make(chan *resp, 1),
		halfClose: make(chan struct{}),
		done:      make(chan struct{}),
	}
	// FromOutgoingContext returns a copy, which the server may keep.
	md, _ := metadata.FromOutgoingContext(ctx)
	s.sc = serverContext{client: ctx, values: metadata.NewIncomingContext(context.Background(), md)}
	s.sctx = &s.sc
	if c.opts.ServerContext != nil {
		s.sctx = c.opts.ServerContext(s.sctx)
	}
	select {
	case c.idle <- s: // a worker waiting for its next stream takes it
	default:
		go c.worker(s)
	}
	return (*clientStream)(s), nil
}

// workerIdle is how long a server goroutine waits for another stream
// before it exits.
const workerIdle = time.Second

// worker serves s, then further streams handed to it through c.idle, and
// exits after workerIdle without one. Reusing goroutines matters: a fresh
// one grows its stack through the Processor's call depth on every stream
// (runtime.copystack was a twentieth of the router's CPU), and starting
// one per request is work of its own.
func (c *Client) worker(s *stream) {
	var t *time.Timer
	for {
		c.serve(s)
		if t == nil {
			t = time.NewTimer(workerIdle)
		} else {
			t.Reset(workerIdle)
		}
		select {
		case s = <-c.idle:
			t.Stop()
		case <-t.C:
			return
		case <-c.quit:
			t.Stop()
			return
		}
	}
}

// serve runs the server's Process for one stream and ends the stream.
func (c *Client) serve(s *stream) {
	defer c.streams.Done()
	err := c.process(s)
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Unknown, err.Error())
		}
	}
	s.err = err
	s.sendHeaderOnce()
	close(s.done)
}

// ErrServerPanicked is the status a stream ends with when the server's
// Process panicked. Over gRPC a panicking handler takes the whole process
// down; here the server shares its process with the data plane, so one
// request that trips a bug in the decision service would end every
// request on the node, perl's included. Recovering turns it into a failed
// stream, on which the data plane fails open (reads to perl) as it does
// for any broken ext_proc stream.
var ErrServerPanicked = status.Error(codes.Internal, "extproclocal: the server's Process panicked")

// process runs the server's Process, recovering a panic into
// ErrServerPanicked. The panic is logged with its stack; its value only
// when it is a runtime error (a value the server made up may hold request
// data, such as a header with a token in it).
func (c *Client) process(s *stream) (err error) {
	defer func() {
		if v := recover(); v != nil {
			attrs := []slog.Attr{slog.String("stack", string(debug.Stack()))}
			if re, ok := v.(runtime.Error); ok {
				attrs = append(attrs, slog.String("panic", re.Error()))
			} else {
				attrs = append(attrs, slog.String("panic_type", fmt.Sprintf("%T", v)))
			}
			c.logger().LogAttrs(context.Background(), slog.LevelError, "ext_proc server panicked; the stream fails", attrs...)
			err = ErrServerPanicked
		}
	}()
	return c.srv.Process((*serverStream)(s))
}

func (c *Client) logger() *slog.Logger {
	if c.opts.Logger != nil {
		return c.opts.Logger
	}
	return slog.Default()
}

// stream is the state both ends share. The client side is used by one
// goroutine at a time, the server side by the server's goroutine; the
// channels are the only thing they share while the stream runs, s.err and
// the trailer are written before done is closed and read after.
type stream struct {
	cctx context.Context // the client's
	sctx context.Context // the server's: &sc, or what Options.ServerContext made of it
	sc   serverContext

	reqs      chan *req
	resps     chan *resp
	halfClose chan struct{} // closed by CloseSend
	closeOnce sync.Once
	done      chan struct{} // closed when the server's Process returned
	err       error         // what Process returned (a status, or nil)

	// Header and trailer metadata, rarely used (the Processor sends
	// none): headerSet is made on first use and closed when the header
	// is final.
	hdrMu     sync.Mutex
	header    metadata.MD
	trailer   metadata.MD
	headerSet chan struct{}
	hdrSent   bool
	// headerFinal: the server goroutine already made the header final
	// (only it writes this; it saves the lock on every Send).
	headerFinal atomic.Bool
}

// headerChan returns the channel closed once the header is final.
func (s *stream) headerChan() chan struct{} {
	s.hdrMu.Lock()
	defer s.hdrMu.Unlock()
	if s.headerSet == nil {
		s.headerSet = make(chan struct{})
		if s.hdrSent {
			close(s.headerSet)
		}
	}
	return s.headerSet
}

// sendHeaderOnce makes the header final.
func (s *stream) sendHeaderOnce() {
	s.hdrMu.Lock()
	defer s.hdrMu.Unlock()
	if s.hdrSent {
		return
	}
	s.hdrSent = true
	if s.headerSet != nil {
		close(s.headerSet)
	}
}

// ctxStatus is the status grpc-go reports for an ended context.
func ctxStatus(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }

// clientStream is the data plane's side.
type clientStream stream

var _ grpc.BidiStreamingClient[req, resp] = (*clientStream)(nil)

// Send hands m to the server. Like grpc-go it reports io.EOF when the
// stream has already ended (the server's status comes from Recv).
func (c *clientStream) Send(m *req) error {
	s := (*stream)(c)
	select {
	case <-s.done:
		return io.EOF
	case <-s.cctx.Done():
		return ctxStatus(s.cctx)
	default:
	}
	select {
	case s.reqs <- m:
		return nil
	case <-s.done:
		return io.EOF
	case <-s.cctx.Done():
		return ctxStatus(s.cctx)
	}
}

// Recv returns the server's next answer, io.EOF when the server returned
// nil, or the server's status.
func (c *clientStream) Recv() (*resp, error) {
	s := (*stream)(c)
	select {
	case m := <-s.resps:
		return m, nil
	default:
	}
	select {
	case m := <-s.resps:
		return m, nil
	case <-s.done:
		// An answer sent just before Process returned comes first.
		select {
		case m := <-s.resps:
			return m, nil
		default:
		}
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	case <-s.cctx.Done():
		return nil, ctxStatus(s.cctx)
	}
}

// CloseSend half-closes: the server's next Recv returns io.EOF.
func (c *clientStream) CloseSend() error {
	s := (*stream)(c)
	s.closeOnce.Do(func() { close(s.halfClose) })
	return nil
}

// Header waits for the server's header metadata (sent with its first
// answer, by SendHeader, or when it returns).
func (c *clientStream) Header() (metadata.MD, error) {
	s := (*stream)(c)
	select {
	case <-s.headerChan():
	case <-s.cctx.Done():
		return nil, ctxStatus(s.cctx)
	}
	s.hdrMu.Lock()
	defer s.hdrMu.Unlock()
	return s.header.Copy(), nil
}

// Trailer returns the server's trailer metadata once the stream ended.
func (c *clientStream) Trailer() metadata.MD {
	s := (*stream)(c)
	select {
	case <-s.done:
	default:
		return nil
	}
	s.hdrMu.Lock()
	defer s.hdrMu.Unlock()
	return s.trailer.Copy()
}

// Context is the client's context.
func (c *clientStream) Context() context.Context { return c.cctx }

// SendMsg is Send for callers of the untyped interface.
func (c *clientStream) SendMsg(m any) error {
	r, ok := m.(*req)
	if !ok {
		return status.Errorf(codes.Internal, "extproclocal: SendMsg of %T, want *ProcessingRequest", m)
	}
	return c.Send(r)
}

// RecvMsg is Recv for callers of the untyped interface; m must be a
// *ProcessingResponse, which receives a copy.
func (c *clientStream) RecvMsg(m any) error {
	dst, ok := m.(*resp)
	if !ok {
		return status.Errorf(codes.Internal, "extproclocal: RecvMsg into %T, want *ProcessingResponse", m)
	}
	r, err := c.Recv()
	if err != nil {
		return err
	}
	proto.Reset(dst)
	proto.Merge(dst, r)
	return nil
}

// serverStream is the decision service's side.
type serverStream stream

var _ grpc.BidiStreamingServer[req, resp] = (*serverStream)(nil)

// Recv returns the client's next message, io.EOF after CloseSend, or a
// Canceled/DeadlineExceeded status once the client's context ended.
func (v *serverStream) Recv() (*req, error) {
	s := (*stream)(v)
	select {
	case m := <-s.reqs:
		return m, nil
	default:
	}
	select {
	case m := <-s.reqs:
		return m, nil
	case <-s.halfClose:
		select {
		case m := <-s.reqs:
			return m, nil
		default:
		}
		return nil, io.EOF
	case <-s.sctx.Done():
		return nil, ctxStatus(s.sctx)
	}
}

// Send hands m to the client. It blocks only when the server answers
// ahead of the client's reading, and fails once the client's context
// ended.
func (v *serverStream) Send(m *resp) error {
	s := (*stream)(v)
	if !s.headerFinal.Load() {
		s.headerFinal.Store(true)
		s.sendHeaderOnce()
	}
	select {
	case s.resps <- m:
		return nil
	case <-s.sctx.Done():
		return ctxStatus(s.sctx)
	}
}

// SetHeader adds header metadata until it is sent.
func (v *serverStream) SetHeader(md metadata.MD) error {
	s := (*stream)(v)
	s.hdrMu.Lock()
	defer s.hdrMu.Unlock()
	if s.hdrSent {
		return status.Error(codes.Internal, "extproclocal: SetHeader after the header was sent")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

// SendHeader sends the header metadata now.
func (v *serverStream) SendHeader(md metadata.MD) error {
	if err := v.SetHeader(md); err != nil {
		return err
	}
	(*stream)(v).sendHeaderOnce()
	return nil
}

// SetTrailer adds trailer metadata, delivered when Process returns.
func (v *serverStream) SetTrailer(md metadata.MD) {
	s := (*stream)(v)
	s.hdrMu.Lock()
	s.trailer = metadata.Join(s.trailer, md)
	s.hdrMu.Unlock()
}

// Context is the server's stream context.
func (v *serverStream) Context() context.Context { return v.sctx }

// SendMsg is Send for callers of the untyped interface.
func (v *serverStream) SendMsg(m any) error {
	r, ok := m.(*resp)
	if !ok {
		return status.Errorf(codes.Internal, "extproclocal: SendMsg of %T, want *ProcessingResponse", m)
	}
	return v.Send(r)
}

// RecvMsg is Recv for callers of the untyped interface; m must be a
// *ProcessingRequest, which receives a copy.
func (v *serverStream) RecvMsg(m any) error {
	dst, ok := m.(*req)
	if !ok {
		return status.Errorf(codes.Internal, "extproclocal: RecvMsg into %T, want *ProcessingRequest", m)
	}
	r, err := v.Recv()
	if err != nil {
		return err
	}
	proto.Reset(dst)
	proto.Merge(dst, r)
	return nil
}

// serverContext is a stream's server context: the client's cancellation
// and deadline, but only the values of its own (incoming metadata), as a
// gRPC server context has none of the client's values.
type serverContext struct {
	client context.Context
	values context.Context
}

func (c *serverContext) Deadline() (time.Time, bool) { return c.client.Deadline() }
func (c *serverContext) Done() <-chan struct{}       { return c.client.Done() }
func (c *serverContext) Err() error                  { return c.client.Err() }
func (c *serverContext) Value(key any) any           { return c.values.Value(key) }

// AfterFunc lets context.WithCancel and context.AfterFunc on a server
// context register with the client's context instead of starting a
// goroutine per derived context (the context package looks for this
// method).
func (c *serverContext) AfterFunc(f func()) func() bool { return context.AfterFunc(c.client, f) }
