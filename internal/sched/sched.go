// Package sched lowers the scheduling priority of background work, so
// that it takes the CPU time the critical path of a build leaves over.
package sched

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Niceness is what Background adds to a thread's nice value.
const Niceness = 10

// Background runs the calling goroutine, until it returns, on an OS thread
// of its own with a nice value Niceness higher (a lower priority). The
// thread ends with the goroutine, so no other goroutine ever runs on it.
// Where the priority cannot be changed, the goroutine runs as it was.
func Background() {
	runtime.LockOSThread()
	tid := unix.Gettid()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return
	}
	// The system call returns 20 - nice.
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, min(20-prio+Niceness, 19))
}
