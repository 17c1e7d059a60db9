package conformance

import (
	"fmt"
	"strconv"
)

// checkExtensions rejects a case that turns on one of the format's PEFT
// extensions (docs/CONFORMANCE.md, "Extensions"): dropout, a lora_B bias,
// DoRA or a base bias. Neither the engine's runner nor this loader handles
// them yet, and a file that needs them would otherwise fail later with an
// unexpected-tensor error that does not say why. The keys may be present
// with their "off" values, as a generator that always writes them does.
func checkExtensions(c *Case) error {
	for _, p := range c.Projections {
		md := c.Metadata
		if v, ok := md["dropout."+p]; ok {
			if f, err := strconv.ParseFloat(v, 64); err != nil || f != 0 {
				return extensionErr(c, "dropout."+p, v, "LoRA dropout")
			}
		}
		if v, ok := md["lora_bias."+p]; ok && v != "0" {
			return extensionErr(c, "lora_bias."+p, v, "a lora_B bias")
		}
		if v, ok := md["dora."+p]; ok && v != "0" {
			return extensionErr(c, "dora."+p, v, "DoRA")
		}
		if v, ok := md["bias."+p]; ok && v != "none" {
			return extensionErr(c, "bias."+p, v, "a base-layer bias")
		}
	}
	return nil
}

func extensionErr(c *Case, key, value, what string) error {
	return fmt.Errorf("conformance: op %s: metadata %s = %q asks for %s, which this loader does not run yet (off values: dropout 0.0, lora_bias 0, dora 0, bias none)",
		c.Op, key, value, what)
}
