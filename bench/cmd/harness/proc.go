package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat holds the fields of /proc/<pid>/stat the harness uses.
type procStat struct {
	ppid       int
	cpuTicks   int64 // utime+stime, in clock ticks
	childTicks int64 // cutime+cstime: children waited for
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command (field 2) is in parentheses and may hold spaces: the
	// fields after it start after the last ')'.
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	num := func(field int) int64 {
		v, _ := strconv.ParseInt(f[field-3], 10, 64)
		return v
	}
	return procStat{
		ppid:       int(num(4)),
		cpuTicks:   num(14) + num(15),
		childTicks: num(16) + num(17),
	}, nil
}

// cpuSeconds returns the user+system CPU time pid has used so far.
func cpuSeconds(pid int) (float64, error) {
	s, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return float64(s.cpuTicks) / clockTicks, nil
}

// peakRSS returns VmHWM, the process's peak resident set size, in bytes.
func peakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// currentRSS returns the resident set size of pid now (VmRSS), in bytes.
func currentRSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes returns the field (a size in kB) of /proc/<pid>/status in
// bytes.
func statusBytes(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) != 2 || fields[1] != "kB" {
				return 0, fmt.Errorf("unexpected %s line %q", field, line)
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// treeCPUSeconds returns the CPU time used by root and its live children,
// plus what root has collected from children that exited. For the
// PostgreSQL postmaster this is the whole server: backends are its children.
func treeCPUSeconds(root int) (float64, error) {
	rs, err := readStat(root)
	if err != nil {
		return 0, err
	}
	total := rs.cpuTicks + rs.childTicks
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		s, err := readStat(pid)
		if err != nil || s.ppid != root {
			continue // gone, or not a child
		}
		total += s.cpuTicks
	}
	return float64(total) / clockTicks, nil
}

// postmasterPID reads the PID of the server running from the data directory
// dir (the first line of postmaster.pid).
func postmasterPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// systemCPU returns the CPU time all processes have used so far (user, nice,
// system, irq, softirq; guest time is part of user) and the time stolen by
// the hypervisor, both in seconds, from the first line of /proc/stat.
func systemCPU() (busy, steal float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	v := func(i int) float64 {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return float64(n) / clockTicks
	}
	// cpu user nice system idle iowait irq softirq steal ...
	return v(1) + v(2) + v(3) + v(6) + v(7), v(8), nil
}
