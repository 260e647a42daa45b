package testnet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// removeStale removes the namespaces a test binary that is gone left behind
// (killed by a timeout, say): those named lgtest-PID-… whose PID is no longer
// running, or is running a process started after the namespace was made.
// Processes still inside them are killed first, by PID, since they would keep
// the namespaces alive. Namespaces of test binaries still running (other
// packages, in parallel) are left alone.
func removeStale(ip string) (removed []string, err error) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	inodes := map[uint64]bool{}
	for _, e := range entries {
		pid, ok := owner(e.Name())
		if !ok {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/run/netns/"+e.Name(), &st) != nil {
			continue
		}
		made := time.Unix(st.Mtim.Unix())
		if started, alive := processStart(pid); alive && !started.After(made.Add(time.Second)) {
			continue // its owner still runs
		}
		inodes[st.Ino] = true
		removed = append(removed, e.Name())
	}
	if len(removed) == 0 {
		return nil, nil
	}
	for _, pid := range pidsIn(inodes) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	var b strings.Builder
	for _, name := range removed {
		fmt.Fprintf(&b, "netns del %s\n", name)
	}
	cmd := exec.Command(ip, "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	out, err := cmd.CombinedOutput()
	if err == nil {
		return removed, nil
	}
	// Another test binary starting at the same time may have removed some
	// first; only what is still there is an error.
	for _, name := range removed {
		if _, serr := os.Stat("/run/netns/" + name); serr == nil {
			return removed, fmt.Errorf("ip netns del: %v: %s", err, bytes.TrimSpace(out))
		}
	}
	return removed, nil
}

// owner returns the PID in a namespace name this package made.
func owner(ns string) (int, bool) {
	rest, ok := strings.CutPrefix(ns, prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// processStart returns when process pid started (to within about a second),
// and whether it runs at all.
func processStart(pid int) (time.Time, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, false
	}
	// Fields after the command name, which is in parentheses and may hold
	// anything; starttime is field 22 of the whole line.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, true
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return time.Time{}, true
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return time.Time{}, true
	}
	boot, ok := bootTime()
	if !ok {
		return time.Time{}, true
	}
	const userHZ = 100 // clock ticks per second in /proc, on every Linux
	return boot.Add(time.Duration(ticks) * time.Second / userHZ), true
}

func bootTime() (time.Time, bool) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for line := range strings.Lines(string(stat)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(s, 0), err == nil
		}
	}
	return time.Time{}, false
}

// pidsIn returns the processes whose network namespace is one of inodes.
func pidsIn(inodes map[uint64]bool) []int {
	if len(inodes) == 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue // never this process, whose threads may be inside for Do
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && inodes[st.Ino] {
			pids = append(pids, pid)
		}
	}
	return pids
}
