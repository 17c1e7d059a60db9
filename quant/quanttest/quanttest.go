// Package quanttest has test helpers for code that runs on NF4 weights:
// random quantized weights uploaded to a test device. It is for tests only.
package quanttest

import (
	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/quant"
	"github.com/vklora/vklora/ref"
	"github.com/vklora/vklora/vk/vktest"
)

// NF4Weight quantizes a random [out, in] weight of d (blocksize bs, double
// quantization dq) drawn from f's generator and uploads it to f's device;
// the device copy is released at the test's end.
func NF4Weight(f vktest.Fixture, d dtype.DType, out, in, bs int, dq bool) (*quant.NF4Weight, *quant.DeviceNF4) {
	w := ref.ToFloat32(f.Random(d, out*in, 0.2))
	q, err := quant.QuantizeNF4(w, [2]int{out, in}, bs, d, dq)
	require.NoError(f.T, err)
	dw, err := quant.Upload(f.Dev, q)
	require.NoError(f.T, err)
	f.T.Cleanup(dw.Release)
	return q, dw
}
