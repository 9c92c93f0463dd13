package cli

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestFollowLiveHeap: the soft limit starts at its base and rises with a
// live heap that outgrows it, leaving a quarter of it as room.
func TestFollowLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const base = 64 << 20
	stop := followLiveHeap(base, time.Millisecond)
	defer stop()
	if got := debug.SetMemoryLimit(-1); got != base {
		t.Fatalf("limit %d with little live, want the base %d", got, base)
	}
	live := make([][]byte, 0, 96)
	for i := 0; i < 96; i++ {
		live = append(live, make([]byte, 1<<20))
	}
	runtime.GC()
	deadline := time.Now().Add(5 * time.Second)
	want := int64(96<<20) + 96<<20/4
	for debug.SetMemoryLimit(-1) < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got < want {
		t.Errorf("limit %d MiB with 96 MiB live, want at least %d MiB", got>>20, want>>20)
	}
	runtime.KeepAlive(live)
}
