package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/vklora/vklora/vk"
)

// deviceJSON is one line of `devices -json`.
type deviceJSON struct {
	Index    int     `json:"index"`
	Name     string  `json:"name"`
	Vendor   string  `json:"vendor"`
	Type     string  `json:"type"`
	Driver   string  `json:"driver"`
	API      string  `json:"api"`
	Default  bool    `json:"default"`
	Summary  string  `json:"summary"`
	Describe string  `json:"describe"`
	Caps     vk.Caps `json:"caps"`
}

const devicesSynopsis = "[-json]"

func cmdDevices(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devices", devicesSynopsis, stderr)
	asJSON := fs.Bool("json", false, "one JSON object per device per line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	infos, err := vk.Devices()
	if err != nil {
		return err
	}
	def, defErr := defaultDevice()
	enc := json.NewEncoder(stdout)
	for _, d := range infos {
		if *asJSON {
			j := deviceJSON{Index: d.Index, Name: d.Name, Vendor: d.Vendor(), Type: d.Type.String(),
				Driver: strings.TrimSpace(d.Driver + " " + d.DriverInfo), API: d.APIVersion,
				Default: d.Index == def, Summary: d.String(), Describe: d.Caps.Describe(), Caps: d.Caps}
			if err := enc.Encode(j); err != nil {
				return err
			}
			continue
		}
		mark := " "
		if d.Index == def {
			mark = "*"
		}
		fmt.Fprintf(stdout, "%s %s\n", mark, d)
		for _, line := range strings.Split(strings.TrimRight(d.Caps.Describe(), "\n"), "\n") {
			fmt.Fprintf(stdout, "      %s\n", line)
		}
	}
	if !*asJSON {
		if defErr != nil {
			fmt.Fprintf(stdout, "no default device: %v\n", defErr)
		} else {
			fmt.Fprintln(stdout, "* the default device (-device SEL or VKLORA_DEVICE overrides: index or name substring)")
		}
	}
	return nil
}

// defaultDevice opens the device a command without -device would use (the
// vk package's choice, honouring VKLORA_DEVICE) and returns its index.
func defaultDevice() (int, error) {
	dev, err := openDevice("")
	if err != nil {
		return -1, err
	}
	idx := dev.Info().Index
	return idx, dev.Release()
}
