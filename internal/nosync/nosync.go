// Package nosync runs a program with fsync, fdatasync, syncfs and sync
// answered "done" at once, without waiting for the disk.
//
// e2fsprogs' tools fsync the image when they open it and when they close
// it. A build writes the image with several of them in turn, and its bulk
// data with its own writes, so each of those fsyncs waits for the page
// cache to write out what the build has just written: about a second for a
// 1.5 GB closure. None of those waits makes the image more correct, since
// every tool reads the image through the same page cache. Whether the
// finished image is forced to the disk is a decision of the build (its
// --sync flag), taken once at the end.
//
// The program runs under a seccomp filter that returns 0 for those four
// system calls and lets every other call through. The filter is installed
// by this executable, started again as a trampoline: main calls Serve
// first, and Wrap makes a command start through it. A kernel that refuses
// the filter runs the program as it is, fsyncs included.
package nosync

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// execArg is the first argument that makes this executable a trampoline:
// self execArg PATH ARGV0 ARGS...
const execArg = "--nosync-exec-trampoline"

// wrapper is this executable, set by Serve when it can wrap commands.
var wrapper string

// Serve is called by main before anything else, with os.Args. When args
// ask for the trampoline, it installs the filter and replaces the process
// with the program, so it returns only when that exec failed: handled is
// then true, and the caller should exit with an error. Otherwise it
// enables Wrap and returns false.
func Serve(args []string) (handled bool, err error) {
	if len(args) < 4 || args[1] != execArg {
		if auditArch != 0 {
			if self, err := os.Executable(); err == nil {
				wrapper = self
			}
		}
		return false, nil
	}
	path, argv := args[2], args[3:]
	// The filter belongs to the thread that installs it, and execve keeps
	// only the thread that calls it.
	runtime.LockOSThread()
	_ = install() // refused: the program runs with its fsyncs
	err = unix.Exec(path, argv, os.Environ())
	return true, fmt.Errorf("exec %s: %w", path, err)
}

// Wrap makes cmd start through the trampoline, when Serve enabled it. It
// changes only cmd.Path and cmd.Args: the environment, directory and
// process attributes reach the program unchanged, and its process is the
// one cmd.Process names (the trampoline execs in place).
func Wrap(cmd *exec.Cmd) {
	if wrapper == "" || cmd.Err != nil || cmd.Process != nil {
		return
	}
	cmd.Args = append([]string{wrapper, execArg, cmd.Path}, cmd.Args...)
	cmd.Path = wrapper
}

// Enabled reports whether Wrap wraps commands.
func Enabled() bool { return wrapper != "" }

// install sets no_new_privs, which an unprivileged process needs to add a
// filter, and adds the filter to the calling thread.
func install() error {
	prog := program()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}

// syncCalls are the system calls that wait for data to reach the disk.
var syncCalls = []uint32{unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_SYNCFS, unix.SYS_SYNC}

// program is the filter: a call of this architecture's ABI that is one of
// syncCalls returns 0 without running; every other call runs. (struct
// seccomp_data: the call's number at offset 0, the architecture at 4.)
func program() []unix.SockFilter {
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
	)
	n := len(syncCalls)
	// 0: load arch; 1: other arch → allow; 2: load nr; 3..3+n-1: match →
	// done; 3+n: allow; 4+n: done.
	p := []unix.SockFilter{
		{Code: ldAbs, K: 4},
		{Code: jeq, Jt: 0, Jf: uint8(n + 1), K: auditArch},
		{Code: ldAbs, K: 0},
	}
	for i, nr := range syncCalls {
		p = append(p, unix.SockFilter{Code: jeq, Jt: uint8(n - i), Jf: 0, K: nr})
	}
	return append(p,
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		// The errno is the low 16 bits: 0, so the call returns 0.
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO},
	)
}

// auditArch identifies the architecture this executable is built for, as
// the kernel names it to a filter; 0 where the filter is not written for.
var auditArch = map[string]uint32{
	"386":     unix.AUDIT_ARCH_I386,
	"amd64":   unix.AUDIT_ARCH_X86_64,
	"arm":     unix.AUDIT_ARCH_ARM,
	"arm64":   unix.AUDIT_ARCH_AARCH64,
	"loong64": unix.AUDIT_ARCH_LOONGARCH64,
	"ppc64le": unix.AUDIT_ARCH_PPC64LE,
	"riscv64": unix.AUDIT_ARCH_RISCV64,
	"s390x":   unix.AUDIT_ARCH_S390X,
}[runtime.GOARCH]
