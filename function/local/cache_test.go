package local

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCacheEvictsByAgeAndSize(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newCache(time.Minute, 2, 0)
	c.now = func() time.Time { return now }

	for _, id := range []string{"a", "b", "c"} {
		e, first := c.join(id, "d")
		assert.True(t, first)
		c.finish(e)
	}
	assert.Equal(t, 2, c.len(), "the oldest entry goes past the size cap")
	_, first := c.join("a", "d")
	assert.True(t, first, "a was evicted")

	now = now.Add(2 * time.Minute)
	c.evict()
	assert.Equal(t, 1, c.len(), "only the in-flight entry outlives the TTL")
}

func TestCacheForgetsRunsThatFailedToStart(t *testing.T) {
	c := newCache(time.Minute, 10, 0)
	e, _ := c.join("a", "d")
	e.err = assert.AnError
	c.finish(e)

	_, first := c.join("a", "d")
	assert.True(t, first)
}

func TestCacheEvictsPastByteCap(t *testing.T) {
	c := newCache(time.Minute, 100, 10)
	for _, id := range []string{"a", "b", "c"} {
		e, _ := c.join(id, "d")
		e.result.Output = "12345"
		c.finish(e)
	}

	assert.Equal(t, 2, c.len(), "three 5-byte outputs do not fit in 10 bytes")
	_, first := c.join("a", "d")
	assert.True(t, first, "the oldest entry went first")
}
