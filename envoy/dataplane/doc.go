// Package dataplane is the embedded data plane: it plays Envoy's part in
// front of pveproxy ("perl") and the Rust daemon ("rust") on machines where
// neither Envoy nor Docker is available, exactly as envoy/envoy.yaml
// configures Envoy.
//
// It reads its behaviour from the same bootstrap Envoy runs with (by
// default envoy.DemoConfig()): the route table and retry policies through
// envoy.RouteTable, failure_mode_allow and message_timeout through
// envoy.ExtProc, and the header sanitising, mutation rules, processing
// mode, health checks and outlier detection from the protos directly. It
// asks the decision service through the real ext_proc protocol, one gRPC
// stream per request, so there is no second decision path: the same
// server.Processor answers Envoy in production and this data plane here.
//
// Per request, in Envoy's order:
//
//  1. A client's x-pve-backend and the x-envoy-* headers Envoy strips from
//     external requests are removed before anything else; x-forwarded-for,
//     x-forwarded-proto and x-request-id are set as at Envoy's edge; the
//     path is normalised (normalize_path, merge_slashes).
//  2. ext_proc request_headers (and, if the service asks with mode_override,
//     the buffered body); allowed header mutations are applied, and the
//     route is chosen again when the answer clears the route cache. If the
//     service fails or is slow, failure_mode_allow decides: continue on the
//     route chosen without it (perl), or a local 500/504.
//  3. The route's plan: attempt 1 to rust, a retry to perl only under the
//     route's retry_on, with per-try and overall timeouts; httptrace tells
//     whether a failed write can have reached rust, and such a write is
//     never replayed.
//  4. x-pve-served-by and x-envoy-attempt-count are added, ext_proc
//     response_headers is sent on the same stream, and the body is streamed
//     to the client, flushed as it comes (long-polling). Websocket upgrades
//     are switched through.
//
// Proxy is an http.Handler, so an embedding program mounts it like
// httputil.ReverseProxy; Serve adds an HTTP(S) listener with slow-client
// limits and graceful shutdown. README.md lists where the data plane and
// Envoy could behave differently.
package dataplane
