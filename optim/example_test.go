package optim_test

import (
	"fmt"

	"github.com/vklora/vklora/dtype"
	"github.com/vklora/vklora/optim"
	"github.com/vklora/vklora/vk"
)

// One AdamW step with clipping on the default device: the first step of
// Adam moves each weight by about lr against the sign of its gradient, after
// the decoupled weight decay; the gradient norm is there for logging.
func ExampleAdamW_Step() {
	dev, err := vk.Open(vk.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	w, _ := dev.TensorFrom(dtype.F32, []float32{1, -1}, 2)
	g, _ := dev.TensorFrom(dtype.F32, []float32{3, -4}, 2)
	defer w.Close()
	defer g.Close()

	cfg := optim.DefaultAdamWConfig() // torch's: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2
	cfg.MaxGradNorm = 1
	opt, err := optim.NewAdamW(dev, []optim.Param{{Name: "w", Tensor: w}}, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer opt.Close()
	rec, err := dev.NewRecorder()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rec.Close()
	if err := opt.Step(rec, []*vk.Tensor{g}); err != nil {
		fmt.Println(err)
		return
	}
	if err := rec.Submit(); err != nil {
		fmt.Println(err)
		return
	}
	got, _ := w.Float32()
	norm, _ := opt.GradNorm()
	fmt.Printf("w = [%.5f %.5f], ‖g‖ = %g, step %d\n", got[0], got[1], norm, opt.Steps())
	// Output: w = [0.99899 -0.99899], ‖g‖ = 5, step 1
}
