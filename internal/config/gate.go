package config

import (
	"fmt"
	"math"
	"time"
)

// Gate is the `[gate]` table: the limits past which the router sends a
// category that rust serves back to perl on its own node, and the window
// and sample size below which it judges nothing. `plan` and `advance` use
// the same limits to say whether a phase has earned its evidence.
type Gate struct {
	// Enabled lets the router trip categories. Evidence for plan and
	// advance is gathered either way.
	Enabled bool
	// Window is the sliding window the figures are taken over.
	Window time.Duration
	// MinRequests is the fewest rust attempts (or compared reads) a window
	// needs before it may trip or count as evidence: a gate that judges
	// on no data is worse than none.
	MinRequests int
	// MaxRustErrorRate is the largest tolerated fraction of failed rust
	// attempts (5xx, reset, timeout, refused, extjs success:0 ≥ 500).
	MaxRustErrorRate float64
	// MaxLatencyRatio is the largest tolerated rust p99 over perl p99.
	MaxLatencyRatio float64
	// MaxMismatchRate is the largest tolerated fraction of shadow
	// comparisons that found a mismatch.
	MaxMismatchRate float64
}

// DefaultGate is the contract's `[gate]` defaults.
func DefaultGate() Gate {
	return Gate{Window: 300 * time.Second, MinRequests: 20, MaxRustErrorRate: 0.05, MaxLatencyRatio: 3.0, MaxMismatchRate: 0.01}
}

var gateKeys = []string{"enabled", "window", "min_requests", "max_rust_error_rate", "max_latency_ratio", "max_mismatch_rate"}

// Bounds of the gate's settings. The window is bounded because the gate
// keeps it in memory; a ratio below 1 would trip a rust that is exactly
// as fast as perl.
const (
	maxGateWindow      = time.Hour
	maxGateMinRequests = 1_000_000
)

// gateTable validates `[gate]`.
func (p *parser) gateTable(v any) {
	p.gate = DefaultGate()
	m, ok := v.(map[string]any)
	if !ok {
		p.problem("gate", valueText(v), "expected a table ([gate]), got "+describe(v))
		return
	}
	for _, key := range sortedKeys(m) {
		full, v := "gate."+key, m[key]
		switch key {
		case "enabled":
			if b, ok := p.boolean(full, v); ok {
				p.gate.Enabled = b
			}
		case "window":
			if d, ok := p.seconds(full, v); ok {
				if d < time.Second || d > maxGateWindow {
					p.problem(full, valueText(v), fmt.Sprintf("out of range: want 1 to %d seconds", int(maxGateWindow/time.Second)))
					continue
				}
				p.gate.Window = d
			}
		case "min_requests":
			n, ok := v.(int64)
			if !ok || n < 1 || n > maxGateMinRequests {
				p.problem(full, valueText(v), fmt.Sprintf("out of range: want an integer from 1 to %d, got %s", maxGateMinRequests, describe(v)))
				continue
			}
			p.gate.MinRequests = int(n)
		case "max_rust_error_rate", "max_mismatch_rate":
			f, ok := p.number(full, v)
			if !ok {
				continue
			}
			if f < 0 || f > 1 {
				p.problem(full, valueText(v), "out of range: want a fraction from 0 to 1 (0.05 is 5%)")
				continue
			}
			if key == "max_rust_error_rate" {
				p.gate.MaxRustErrorRate = f
			} else {
				p.gate.MaxMismatchRate = f
			}
		case "max_latency_ratio":
			f, ok := p.number(full, v)
			if !ok {
				continue
			}
			if f < 1 || f > 1000 {
				p.problem(full, valueText(v), "out of range: want a ratio from 1 to 1000 (rust p99 over perl p99; below 1 would trip a rust as fast as perl)")
				continue
			}
			p.gate.MaxLatencyRatio = f
		default:
			p.problem(full, valueText(v), unknownKey(key, "gate", gateKeys))
		}
	}
}

// number accepts an integer or a finite float.
func (p *parser) number(key string, v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			return x, true
		}
	}
	p.problem(key, valueText(v), "expected a number, got "+describe(v))
	return 0, false
}
