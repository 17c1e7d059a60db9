package hf

import (
	"strconv"
	"strings"
)

// Module names one of a decoder layer's seven projections, as transformers
// names the nn.Linear (and PEFT's target_modules).
type Module string

// The projections of a Llama-style decoder layer.
const (
	Q    Module = "q_proj"
	K    Module = "k_proj"
	V    Module = "v_proj"
	O    Module = "o_proj"
	Gate Module = "gate_proj"
	Up   Module = "up_proj"
	Down Module = "down_proj"
)

// Modules lists the seven projections in load order.
var Modules = []Module{Q, K, V, O, Gate, Up, Down}

// layerPrefix starts every decoder-layer tensor name.
const layerPrefix = "model.layers."

// Prefix is the checkpoint name of projection m of layer i without the
// ".weight"/".bias" suffix, e.g. "model.layers.3.self_attn.q_proj" or
// "model.layers.3.mlp.down_proj": the prefix quant.LoadNF4 takes.
func Prefix(layer int, m Module) string {
	block := "self_attn."
	if m == Gate || m == Up || m == Down {
		block = "mlp."
	}
	return layerPrefix + strconv.Itoa(layer) + "." + block + string(m)
}

// Shape is the [out, in] of projection m's weight under c:
// q [heads·head_dim, hidden], k and v [kv_heads·head_dim, hidden],
// o [hidden, heads·head_dim], gate and up [intermediate, hidden],
// down [hidden, intermediate].
func (c *Config) Shape(m Module) (out, in int) {
	q, kv := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	switch m {
	case Q:
		return q, c.HiddenSize
	case K, V:
		return kv, c.HiddenSize
	case O:
		return c.HiddenSize, q
	case Gate, Up:
		return c.IntermediateSize, c.HiddenSize
	case Down:
		return c.HiddenSize, c.IntermediateSize
	}
	return 0, 0
}

// HasBias reports whether projection m has a base bias under c.
func (c *Config) HasBias(m Module) bool {
	switch m {
	case Q, K, V:
		return c.QKVBias
	case O:
		return c.OBias
	case Gate, Up, Down:
		return c.MLPBias
	}
	return false
}

// layerOf returns the layer index of a "model.layers.{i}." tensor name.
func layerOf(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, layerPrefix)
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || strconv.Itoa(i) != num {
		return 0, false
	}
	return i, true
}

func (m Module) String() string { return string(m) }
