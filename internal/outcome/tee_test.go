package outcome

import (
	"context"
	"testing"
)

type ctxKey struct{}

type countObs struct {
	decided, finished, abandoned int
	sawKey                       bool
	mark                         bool
}

func (c *countObs) Decided(ctx context.Context, _ *Decision) context.Context {
	c.decided++
	if c.mark {
		return context.WithValue(ctx, ctxKey{}, 1)
	}
	return ctx
}

func (c *countObs) Finished(ctx context.Context, _ *Decision, _ Result) {
	c.finished++
	c.sawKey = ctx.Value(ctxKey{}) != nil
}

func (c *countObs) Abandoned(context.Context, *Decision, string) { c.abandoned++ }

func TestTee(t *testing.T) {
	p, s := &countObs{mark: true}, &countObs{}
	obs := Tee(p, s)
	d := &Decision{}
	ctx := obs.Decided(context.Background(), d)
	obs.Finished(ctx, d, Result{})
	obs.Abandoned(ctx, d, "x")
	for name, o := range map[string]*countObs{"primary": p, "side": s} {
		if o.decided != 1 || o.finished != 1 || o.abandoned != 1 || !o.sawKey {
			t.Errorf("%s saw %+v", name, o)
		}
	}
	if Tee(p) != Observer(p) {
		t.Error("Tee of one observer is not that observer")
	}
}
