package cli

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memoryLimit is the soft limit of the Go heap during a build under
// --optimise, as long as the live heap leaves room under it. Such a build
// holds its whole plan: a closure of 200k names keeps about 45 MB live;
// with the collector at GOGC=50 it peaks near 90 MiB.
const memoryLimit = 180 << 20

// streamLimit is the soft limit of the Go heap during other builds, which
// hold about one store path of the plan at a time; the collector runs
// only to stay under it. (At GOGC=50 instead, a live heap of 10-20 MB had
// the collector take about 0.5 s of CPU while the benchmark closure was
// walked, and the build about 0.6 s longer.)
const streamLimit = 48 << 20

// limitFor is the soft memory limit for a live heap of live bytes: base,
// or more once the live heap nears it. A limit close to the live heap
// makes the collector run nearly all the time (at 150 MiB for 110 MiB
// live: 110 collections and a fifth of the CPU, against 35 at 180 MiB);
// a quarter of the live heap as room (and at least 32 MiB, for what the
// runtime holds beside the heap) keeps it at most about twice as busy as
// without a limit at GOGC=50.
func limitFor(live, base int64) int64 {
	return max(base, live+max(live/4, 32<<20))
}

// followLiveHeap sets the soft memory limit to base, and then, every
// interval until stop is called, from the live heap (limitFor), so that a
// closure whose plan outgrows base slows down no more than one that fits
// under it.
func followLiveHeap(base int64, interval time.Duration) (stop func()) {
	debug.SetMemoryLimit(base)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		set := base
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return // not reported by this runtime: keep base
			}
			if limit := limitFor(int64(sample[0].Value.Uint64()), base); limit != set {
				set = limit
				debug.SetMemoryLimit(set)
			}
		}
	}()
	return func() { close(quit); <-done }
}
