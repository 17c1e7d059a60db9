package lora

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/vk"
)

// mlpStep runs one MLP forward and backward on a recorder of its own and
// returns every result's bytes (stepBytes).
func mlpStep(l *MLP, dev *vk.Device, x, gy *vk.Tensor) ([][]byte, error) {
	var out [][]byte
	err := mlpStepRead(l, dev, x, gy, func(ts []*vk.Tensor) (err error) {
		out, err = rawBytes(ts)
		return err
	})
	return out, err
}

// mlpStepRead runs one MLP forward and backward on a recorder of its own
// and hands its results to read (stepRead).
func mlpStepRead(l *MLP, dev *vk.Device, x, gy *vk.Tensor, read func(results []*vk.Tensor) error) error {
	rec, err := dev.NewRecorder()
	if err != nil {
		return err
	}
	defer rec.Release()
	y, saved, err := l.Forward(rec, x)
	if err != nil {
		return err
	}
	return stepRead(rec, l, y, saved, gy, read)
}

// stepBytes records l's backward after a forward that gave y and saved,
// submits rec and returns every result's bytes (stepRead's order, nil
// where the projection has none); it releases them all.
func stepBytes(rec *vk.Recorder, l *MLP, y *vk.Tensor, saved *MLPSaved, gy *vk.Tensor) ([][]byte, error) {
	var out [][]byte
	err := stepRead(rec, l, y, saved, gy, func(ts []*vk.Tensor) (err error) {
		out, err = rawBytes(ts)
		return err
	})
	return out, err
}

// stepRead records l's backward after a forward that gave y and saved,
// submits rec and calls read with the results, Y, dX, then each
// projection's dA, dB, d(lora_B bias), dm and d(bias) (nil where the
// projection has none); then it releases them all.
func stepRead(rec *vk.Recorder, l *MLP, y *vk.Tensor, saved *MLPSaved, gy *vk.Tensor, read func(results []*vk.Tensor) error) error {
	defer y.Release()
	defer saved.Release()
	dx, grads, err := l.Backward(rec, saved, gy)
	if err != nil {
		return err
	}
	defer dx.Release()
	for i := range grads {
		defer grads[i].Release()
	}
	if err := rec.Submit(); err != nil {
		return err
	}
	ts := []*vk.Tensor{y, dx}
	for _, g := range grads {
		ts = append(ts, g.A, g.B, g.LoRABias, g.Magnitude, g.Bias)
	}
	return read(ts)
}

// rawBytes downloads each tensor's bytes (nil for a nil tensor).
func rawBytes(ts []*vk.Tensor) ([][]byte, error) {
	var out [][]byte
	for _, t := range ts {
		if t == nil {
			out = append(out, nil)
			continue
		}
		b, err := t.RawBytes()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Eight goroutines share one device, engine and set of frozen weights, each
// recording and submitting MLP steps on its own recorder (cold kernels
// first, so the kernel cache is built concurrently): every result is
// bit-identical to the serial run's. Run with -race to check the locks; the
// suite runs with validation on, whose threading checks would report a
// shared pool or queue.
func TestConcurrentMLPSteps(t *testing.T) {
	f := newFixture(t)
	eng, err := NewEngine(f.Dev, Options{}) // a fresh dispatcher; kernels of new shapes are cold
	require.NoError(t, err)
	const d, m, h, i, r = dtype.BF16, 13, 40, 72, 3
	gate, _ := f.proj(d, i, h, r, 0.5)
	up, _ := f.proj(d, i, h, r, 2)
	down, _ := f.proj(d, h, i, r, 1.5)
	l := &MLP{Engine: eng, Gate: gate, Up: up, Down: down, Act: GEGLU}
	x := f.Upload(d, f.Random(d, m*h, 1), m, h)
	gy := f.Upload(d, f.Random(d, m*h, 1), m, h)

	const workers, steps = 8, 3
	results := make([][][][]byte, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < steps; s++ {
				out, err := mlpStep(l, f.Dev, x, gy)
				if err != nil {
					errs[w] = fmt.Errorf("worker %d step %d: %w", w, s, err)
					return
				}
				results[w] = append(results[w], out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	want, err := mlpStep(l, f.Dev, x, gy)
	require.NoError(t, err)
	for w := range results {
		for s, got := range results[w] {
			require.Equal(t, want, got, "worker %d step %d differs from the serial run", w, s)
		}
	}
}
