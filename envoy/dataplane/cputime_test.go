package dataplane

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU time is what the ratio benchmarks compare besides wall-clock rates:
// on a host shared with other work, req/s and p99 mostly measure how much
// of the CPU the benchmark got, while the CPU time a proxy spends per
// request is its cost whatever the load around it.

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// for all architectures this runs on).
const clockTick = 10 * time.Millisecond

// processTreeCPU is the CPU time of pid and its children (nginx's workers),
// from /proc; 0 when /proc cannot tell.
func processTreeCPU(pid int) time.Duration {
	d := processCPU(pid)
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(kids)) {
			if c, err := strconv.Atoi(f); err == nil {
				d += processCPU(c)
			}
		}
	}
	return d
}

func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces; the fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of stat
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * clockTick
}
