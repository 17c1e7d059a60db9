package main

import (
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// batch is one step's inputs: X [M, hidden], which QKV and the MLP take,
// and Z [M, heads·head_dim], which O takes. Every layer sees the same
// batch: the layers are trained side by side, not chained, because the
// attention between QKV and O (and the norms) is not the engine's.
type batch struct{ x, z *vk.Tensor }

func (b *batch) release() {
	b.x.Release()
	b.z.Release()
}

// inputPool is -pool K batches drawn once, N(0, 1), and cycled: drawing
// tens of millions of normals on the host every step would dominate a
// step on a GPU at real sizes. With K·M rows well above the widths, the
// teacher is as identifiable as with fresh draws; K = 0 draws a fresh
// batch every step instead.
type inputPool struct {
	dev        *vk.Device
	d          dtype.DType
	m, h, q    int
	seed       uint64
	fixed      []batch
	fresh      batch // K = 0: the last fresh batch, released at the next
	generation uint64
}

func newInputPool(dev *vk.Device, d dtype.DType, m, h, q, k int, seed uint64) (*inputPool, error) {
	p := &inputPool{dev: dev, d: d, m: m, h: h, q: q, seed: seed}
	for i := 0; i < k; i++ {
		b, err := p.draw()
		if err != nil {
			p.release()
			return nil, err
		}
		p.fixed = append(p.fixed, b)
	}
	return p, nil
}

// get returns step's batch; it stays valid until the next get (fresh) or
// release (pooled).
func (p *inputPool) get(step int) (batch, error) {
	if len(p.fixed) > 0 {
		return p.fixed[step%len(p.fixed)], nil
	}
	p.fresh.release()
	b, err := p.draw()
	p.fresh = b
	return b, err
}

// blank is a batch of the pool's shapes with unset contents, for recording
// without running (trainer.prepare); it draws nothing, so the pool's
// batches stay the ones a run without it gets.
func (p *inputPool) blank() (batch, error) {
	x, err := p.dev.NewTensor(p.d, p.m, p.h)
	if err != nil {
		return batch{}, err
	}
	z, err := p.dev.NewTensor(p.d, p.m, p.q)
	if err != nil {
		x.Release()
		return batch{}, err
	}
	return batch{x: x, z: z}, nil
}

func (p *inputPool) draw() (batch, error) {
	p.generation++
	x, err := p.dev.TensorFrom(p.d, normals(p.m*p.h, p.seed, p.generation, 0), p.m, p.h)
	if err != nil {
		return batch{}, err
	}
	z, err := p.dev.TensorFrom(p.d, normals(p.m*p.q, p.seed, p.generation, 1), p.m, p.q)
	if err != nil {
		x.Release()
		return batch{}, err
	}
	return batch{x, z}, nil
}

func (p *inputPool) release() {
	if p == nil {
		return
	}
	for i := range p.fixed {
		p.fixed[i].release()
	}
	p.fresh.release()
	p.fixed = nil
}

// normalChunk is the number of values one generator stream draws: the
// values depend on the seeds only, not on how many cores drew them.
const normalChunk = 1 << 18

// normals draws n values N(0, 1), in chunks on every core.
func normals(n int, seed, gen, which uint64) []float32 {
	xs := make([]float32, n)
	chunks := (n + normalChunk - 1) / normalChunk
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for c := 0; c < chunks; c++ {
		next <- c
	}
	close(next)
	for w := 0; w < min(runtime.GOMAXPROCS(0), chunks); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				rng := rand.New(rand.NewPCG(seed^gen<<32^which<<56, uint64(c)))
				for i := c * normalChunk; i < min(n, (c+1)*normalChunk); i++ {
					xs[i] = float32(rng.NormFloat64())
				}
			}
		}()
	}
	wg.Wait()
	return xs
}
