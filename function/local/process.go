package local

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// deadline kills a process group when a run's time is up.
type deadline struct {
	pgid  int
	timer *time.Timer
	hit   atomic.Bool
}

// killAfter sends SIGKILL to the process group pgid after d. Scripts get no
// SIGTERM first, as on Kubernetes, where user code runs as PID 1 and ignores
// it.
func killAfter(pgid int, d time.Duration) *deadline {
	dl := &deadline{pgid: pgid}
	dl.timer = time.AfterFunc(d, func() {
		dl.hit.Store(true)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return dl
}

// stop cancels the deadline and kills what is left of the process group,
// so that no child left in the script's group outlives the run.
// NOTE: a child that leaves the group (setsid) survives; the local runner is
// not a sandbox.
func (dl *deadline) stop() {
	dl.timer.Stop()
	_ = syscall.Kill(-dl.pgid, syscall.SIGKILL)
}

func (dl *deadline) fired() bool { return dl.hit.Load() }

// cappedBuffer keeps the first max bytes written to it and counts the rest,
// so a script that prints without end costs at most max bytes of memory.
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func newCappedBuffer(max int) *cappedBuffer { return &cappedBuffer{max: max} }

// Write keeps what fits and drops the rest. It always returns len(p) and a
// nil error, so the cap never makes the script's writes block or fail.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if len(p) > room {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.truncated = true
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}

func (b *cappedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}
