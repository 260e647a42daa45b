package daemon

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// asyncWriter buffers access-log lines and flushes them on an interval, so a
// request never waits on the disk or a slow journal. Each Write is one whole
// line from a slog handler; lines are never split between flushes.
type asyncWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newAsyncWriter(w io.Writer, every time.Duration) *asyncWriter {
	a := &asyncWriter{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				a.flush()
			case <-a.stop:
				a.flush()
				return
			}
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w.Available() < len(p) {
		_ = a.w.Flush() // a full buffer is written now rather than grow without bound
	}
	return a.w.Write(p)
}

func (a *asyncWriter) flush() {
	a.mu.Lock()
	_ = a.w.Flush()
	a.mu.Unlock()
}

// Close flushes what is buffered and stops the flusher.
func (a *asyncWriter) Close() {
	close(a.stop)
	<-a.done
}
