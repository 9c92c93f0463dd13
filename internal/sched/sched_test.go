package sched

import (
	"testing"

	"golang.org/x/sys/unix"
)

func nice(t *testing.T) int {
	t.Helper()
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	return 20 - p
}

// TestBackground: the goroutine's thread gets a higher nice value; other
// goroutines keep theirs.
func TestBackground(t *testing.T) {
	before := make(chan int)
	after := make(chan int)
	go func() {
		before <- nice(t)
		Background()
		after <- nice(t)
	}()
	b, a := <-before, <-after
	if a != min(b+Niceness, 19) {
		t.Errorf("nice %d after Background, was %d", a, b)
	}
	done := make(chan int)
	go func() { done <- nice(t) }()
	if n := <-done; n != b {
		t.Errorf("another goroutine runs with nice %d, want %d", n, b)
	}
}
