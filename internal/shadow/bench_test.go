package shadow_test

// BenchmarkClientLatency measures what a PVE client sees through the
// embedded data plane with the shadow comparison off and at 100%, in the
// same run on the same demo backends, so the ratio is the comparison's
// cost to the client:
//
//	go test -run '^$' -bench BenchmarkClientLatency -count 5 ./internal/shadow | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /compare bench.txt
//
// p50-µs and p99-µs are the client's latency quantiles; cpu-µs/op is the
// process CPU (router, data plane and both demo backends, which run in
// this process) per client request, shadow jobs included: its growth from
// compare=off to compare=100 is the CPU one shadowed request costs (three
// extra backend answers, the comparison and the report). Target: p99 at
// 100% within 1.1× of off.

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkClientLatency(b *testing.B) {
	for _, load := range []struct {
		name  string
		every time.Duration
	}{{"closed", 0}, {"paced-200rps", 5 * time.Millisecond}} {
		for _, c := range []struct{ name, cmp string }{
			{"off", "enabled = false"},
			{"100", "enabled = true\nsample_percent = 100\nmax_inflight = 4"},
		} {
			b.Run("load="+load.name+"/compare="+c.name, func(b *testing.B) { benchClient(b, c.cmp, load.every) })
		}
	}
}

// benchClient sends b.N GETs one after the other: back to back (every = 0,
// a closed loop that saturates the CPU) or one per tick of every (an open
// loop at a steady rate, as PVE clients poll).
func benchClient(b *testing.B, cmp string, every time.Duration) {
	{
		{
			e := newEnv(b, envOpts{compare: cmp, queue: 1 << 16})
			e.gets(50, 1, "perl", netList) // warm connections and caches
			e.settle(e.worker.Stats().Submitted)
			lat := make([]time.Duration, 0, b.N)
			cpu0 := cpuTime(b)
			jobs0 := e.worker.Stats().Submitted
			var tick <-chan time.Time
			if every > 0 {
				tk := time.NewTicker(every)
				defer tk.Stop()
				tick = tk.C
			}
			b.ResetTimer()
			for range b.N {
				if tick != nil {
					<-tick
				}
				t0 := time.Now()
				if st, _ := e.do("GET", netList, ""); st != 200 {
					b.Fatalf("status %d", st)
				}
				lat = append(lat, time.Since(t0))
			}
			st := e.settle(e.worker.Stats().Submitted)
			b.StopTimer()
			cpu := cpuTime(b) - cpu0
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
			b.ReportMetric(q(0.50), "p50-µs")
			b.ReportMetric(q(0.99), "p99-µs")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(st.Submitted-jobs0)/float64(b.N), "shadowed/op")
		}
	}
}
