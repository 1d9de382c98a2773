package config

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pve-migration/router/routing"
)

// BenchmarkWriteToVisible measures the time from an atomic save of the
// config file (write + rename, as `migration-ctl set-phase` does) to the
// new phase being what Store.Current returns: the delay between an
// operator's rollback and the router obeying it. ns/op is the mean (random
// pauses between saves are not timed); p50 and max are reported too. With notifications the figure is the 5 ms
// debounce plus a parse; polling adds on average half the interval
// (100 ms here, DefaultPollInterval in production).
//
//	go test -run '^$' -bench WriteToVisible -benchtime 20x ./internal/config/
func BenchmarkWriteToVisible(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts WatchOptions
	}{
		{"inotify", WatchOptions{PollInterval: -1}},
		{"poll", WatchOptions{PollInterval: 100 * time.Millisecond, DisableNotify: true}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "network-migration.conf")
			writeFile(b, path, phaseConf(routing.PerlOnly))
			opts := mode.opts
			changed := make(chan routing.Phase, 1)
			st, _ := startWatch(b, path, opts, func(s *Store) {
				s.OnReload = func(result string, snap *Snapshot, _ error) {
					if result == ResultOK {
						changed <- snap.Policy.Phase
					}
				}
			})
			phases := []routing.Phase{routing.RustReadOnly, routing.PerlOnly}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				want := phases[i%2]
				if opts.DisableNotify {
					// Saves come at random moments relative to the poll
					// tick, not right after the previous detection.
					b.StopTimer()
					time.Sleep(rand.N(opts.PollInterval))
					b.StartTimer()
				}
				start := time.Now()
				replaceFile(b, path, phaseConf(want))
				select {
				case got := <-changed:
					if got != want {
						b.Fatalf("phase %v, want %v", got, want)
					}
				case <-time.After(waitLimit):
					b.Fatalf("change %d not visible after %v", i, waitLimit)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			if st.Current().Policy.Phase != phases[(b.N-1)%2] {
				b.Fatal("store disagrees with the hook")
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "p50-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
		})
	}
}

// BenchmarkCurrent is the per-request cost of reading the configuration.
func BenchmarkCurrent(b *testing.B) {
	st := NewStore(&Snapshot{Policy: routing.DefaultPolicy()})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if st.Current() == nil {
				b.Fatal("nil snapshot")
			}
		}
	})
}

// BenchmarkParse is the cost of one reload of the seed's example file.
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/seed-example.conf")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("seed-example.conf", data, nil); err != nil {
			b.Fatal(err)
		}
	}
}
