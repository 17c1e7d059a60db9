package vk

import (
	"errors"
	"fmt"
	"runtime"
)

// Prepare builds, in parallel, every kernel that record asks for, and
// returns when all of them are built, with record's error and the first
// build error (joined). A kernel whose build failed is built again by the
// next request for it, which reports its own error.
//
// Why: a kernel is built when a recording first reaches it, one at a time,
// and some drivers take tens of seconds for one large cooperative-matrix
// kernel (NVIDIA's took 11–39 s for each workgroup-scope matmul tile on an
// H200), so the first step of a training loop can wait a minute. Prepare
// runs record once on a dry recorder, which checks every command as a
// recorder does but records and runs nothing, while the device hands out
// kernels whose builds run on up to GOMAXPROCS goroutines. The first real
// step then finds them built; the wait is bounded by the slowest kernel
// instead of the sum.
//
// record should record what a step records (a layer's Forward and
// Backward, say) and release what it makes; it may call Submit, which
// runs nothing on a dry recorder. Tensors it writes hold no results, and
// host-side state it changes (an optimizer's step count) changes for
// real, so leave such calls out. While Prepare runs, other goroutines'
// kernel requests on the device are deferred too; their Dispatch waits
// for the build.
func (d *Device) Prepare(record func(*Recorder) error) error {
	if record == nil {
		return fmt.Errorf("vk: Prepare: record is nil: %w", ErrInvalidArgument)
	}
	rec, err := d.NewRecorder()
	if err != nil {
		return err
	}
	rec.dry = true
	d.kmu.Lock()
	d.deferring++
	d.kmu.Unlock()
	recErr := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("vk: Prepare: record panicked: %v", p)
			}
		}()
		return record(rec)
	}()
	d.kmu.Lock()
	d.deferring--
	d.kmu.Unlock()
	kernels := rec.prepared
	rec.Release()
	var buildErr error
	for _, k := range kernels {
		if err := k.wait(); err != nil && buildErr == nil {
			buildErr = err
		}
	}
	d.building.Wait() // the builds of kernels asked for but never dispatched
	return errors.Join(recErr, buildErr)
}

// buildLater hands out k unbuilt and builds it on a goroutine, at most
// cap(buildSlots) at a time (kmu held). A failed build leaves the cache,
// so that a later request builds the kernel again and reports its error.
func (d *Device) buildLater(key string, k *Kernel) {
	k.ready = make(chan struct{})
	d.kernels[key] = k
	d.building.Add(1)
	go func() {
		defer d.building.Done()
		d.buildSlots <- struct{}{}
		took, err := d.compile(k)
		<-d.buildSlots
		d.kmu.Lock()
		if err != nil {
			k.err = err
			delete(d.kernels, key)
		} else {
			d.noteBuild(k, took)
		}
		d.kmu.Unlock()
		close(k.ready)
	}()
}

// newBuildSlots bounds Prepare's parallel builds: each is a compiler
// running on a core.
func newBuildSlots() chan struct{} { return make(chan struct{}, max(1, runtime.GOMAXPROCS(0))) }

// wait returns once k is built, with its build's error.
func (k *Kernel) wait() error {
	if k.ready == nil {
		return nil
	}
	<-k.ready
	return k.err
}
