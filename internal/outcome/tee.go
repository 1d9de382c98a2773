package outcome

import "context"

// Tee returns an Observer that hands every event to primary and then to
// each of side, so telemetry and the gate see the same outcomes from one
// call site. Only primary's Decided context is kept and passed on: side
// observers get it too and must not need their own (the gate keeps no
// per-request state), which keeps Tee free of per-request allocations.
func Tee(primary Observer, side ...Observer) Observer {
	if len(side) == 0 {
		return primary
	}
	return &tee{primary: primary, side: side}
}

type tee struct {
	primary Observer
	side    []Observer
}

func (t *tee) Decided(ctx context.Context, d *Decision) context.Context {
	out := t.primary.Decided(ctx, d)
	for _, o := range t.side {
		o.Decided(out, d)
	}
	return out
}

func (t *tee) Finished(ctx context.Context, d *Decision, r Result) {
	t.primary.Finished(ctx, d, r)
	for _, o := range t.side {
		o.Finished(ctx, d, r)
	}
}

func (t *tee) Abandoned(ctx context.Context, d *Decision, reason string) {
	t.primary.Abandoned(ctx, d, reason)
	for _, o := range t.side {
		o.Abandoned(ctx, d, reason)
	}
}
