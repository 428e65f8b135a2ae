package local

import (
	"sync"
	"time"

	"github.com/scriptrun/scriptrun/function/run"
)

// cache remembers runs by id: in-flight runs so that duplicates join them,
// and finished runs for a while so that redeliveries get the same result.
// It is bounded in time and in size; past MaxRemembered, the oldest finished
// entries go first.
type cache struct {
	mu       sync.Mutex
	ttl      time.Duration
	max      int
	maxBytes int
	bytes    int // output bytes of the finished entries
	entries  map[string]*entry
	finished []*entry // in the order they finished
	now      func() time.Time
}

type entry struct {
	id       string
	digest   string
	done     chan struct{}
	result   run.Result
	err      error
	finished time.Time
}

// newCache returns a cache that keeps finished entries for ttl. It keeps at
// most max of them, holding at most maxBytes of output, where 0 means no byte
// cap.
func newCache(ttl time.Duration, max, maxBytes int) *cache {
	return &cache{ttl: ttl, max: max, maxBytes: maxBytes, entries: make(map[string]*entry), now: time.Now}
}

func (e *entry) size() int {
	return len(e.result.Output) + len(e.result.OutputBase64) + len(e.result.Message)
}

// join returns the entry for id, and whether the caller created it and so
// must run it and then call finish.
func (c *cache) join(id, digest string) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evict()
	if e, ok := c.entries[id]; ok {
		return e, false
	}
	e := &entry{id: id, digest: digest, done: make(chan struct{})}
	c.entries[id] = e
	return e, true
}

// finish publishes e's result. A run that could not start is forgotten at
// once, so that a redelivery tries again.
func (c *cache) finish(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.finished = c.now()
	close(e.done)
	if e.err != nil {
		delete(c.entries, e.id)
		return
	}
	c.finished = append(c.finished, e)
	c.bytes += e.size()
	c.evict()
}

// evict drops finished entries older than ttl, then the oldest ones past max
// entries or past maxBytes.
func (c *cache) evict() {
	cutoff := c.now().Add(-c.ttl)
	drop := 0
	for drop < len(c.finished) {
		oldest := c.finished[drop]
		overBytes := c.maxBytes > 0 && c.bytes > c.maxBytes
		if !oldest.finished.Before(cutoff) && len(c.finished)-drop <= c.max && !overBytes {
			break
		}
		delete(c.entries, oldest.id)
		c.bytes -= oldest.size()
		drop++
	}
	c.finished = c.finished[drop:]
}

// len returns the number of entries, in flight and finished.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
