package vk

import (
	"slices"
	"sync"
)

// bufferCache keeps the memory of released storage buffers for later
// buffers of the same size. A training loop makes the same temporaries
// every step and frees them at Submit; on a discrete GPU each of them
// would otherwise cost a vkCreateBuffer, a vkAllocateMemory (which maps
// and, on some drivers, clears pages) and their destruction, every step.
// Every Submit waits for the GPU, so a released buffer is idle and its
// memory can serve the next buffer at once. The cache never holds more
// than its limit: a buffer that does not fit evicts the oldest entries,
// and one larger than the limit is destroyed. Device memory accounting
// (MemoryStats) counts live buffers only; CachedBytes reports the rest.
type bufferCache struct {
	mu      sync.Mutex
	limit   uint64
	bytes   uint64
	entries []*Buffer // oldest first; each holds a VkBuffer and its memory
}

// bufferCacheLimit resolves Options.BufferCacheBytes o for a device with
// memory m and caps c: none when negative; when 0, a quarter of the
// device-local memory on a device with memory of its own, none where device
// memory is host memory (allocating it is a malloc, and kept blocks would
// only raise the process's resident set).
func bufferCacheLimit(o int64, m memoryTypes, c *Caps) uint64 {
	switch {
	case o < 0:
		return 0
	case o > 0:
		return uint64(o)
	case m.preferHost:
		return 0
	}
	return c.DeviceLocalBytes / 4
}

// take returns a cached buffer of exactly size bytes, or nil.
func (c *bufferCache) take(d *Device, size uint64) *Buffer {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.entries) - 1; i >= 0; i-- { // newest first: its pages are the warmest
		e := c.entries[i]
		if e.size != size {
			continue
		}
		c.entries = slices.Delete(c.entries, i, i+1)
		c.bytes -= size
		return &Buffer{dev: d, buf: e.buf, mem: e.mem, size: e.size, mapped: e.mapped}
	}
	return nil
}

// keep moves b's memory into the cache and reports whether it did; b is
// left without handles. It refuses when the cache is off or b alone is
// larger than the limit.
func (c *bufferCache) keep(d *Device, b *Buffer) bool {
	c.mu.Lock()
	if b.size > c.limit {
		c.mu.Unlock()
		return false
	}
	var evicted []*Buffer
	for c.bytes+b.size > c.limit {
		evicted = append(evicted, c.entries[0])
		c.bytes -= c.entries[0].size
		c.entries[0] = nil // the backing array keeps no evicted entry
		c.entries = c.entries[1:]
	}
	c.entries = append(c.entries, &Buffer{dev: d, buf: b.buf, mem: b.mem, size: b.size, mapped: b.mapped})
	c.bytes += b.size
	c.mu.Unlock()
	b.buf, b.mem, b.mapped = nil, nil, nil
	for _, e := range evicted {
		e.destroy()
	}
	return true
}

// flush destroys every cached buffer and returns the bytes it freed.
func (c *bufferCache) flush(d *Device) uint64 {
	c.mu.Lock()
	entries, freed := c.entries, c.bytes
	c.entries, c.bytes = nil, 0
	c.mu.Unlock()
	for _, e := range entries {
		e.destroy()
	}
	return freed
}

// CachedBytes is the device memory that released buffers keep for reuse
// (Options.BufferCacheBytes); MemoryStats does not count it.
func (d *Device) CachedBytes() uint64 {
	d.bufs.mu.Lock()
	defer d.bufs.mu.Unlock()
	return d.bufs.bytes
}

// FreeCachedBuffers destroys the memory that released buffers keep for
// reuse and returns how many bytes it freed: for a program that is done
// with a phase of work and wants the memory back for other users of the
// device. Later buffers allocate afresh.
func (d *Device) FreeCachedBuffers() uint64 {
	if d == nil || d.released {
		return 0
	}
	return d.bufs.flush(d)
}
