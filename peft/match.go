package peft

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vklora/vklora/lora"
)

// PEFT matches module paths with Python's re; here Go's regexp (RE2) runs
// the same expressions. For the patterns configs hold (names, dots,
// alternation, classes, repetition) the two agree; Python-only syntax
// (look-around, backreferences, \Z) does not compile and is reported.
// Each helper first builds the exact string PEFT hands to re and then
// anchors it as re.match (start only) or re.fullmatch (both ends) do, so
// a key that injects its own parentheses or "|" behaves as in Python.

// compileMatch is re.match(pattern, s): anchored at the start only.
func compileMatch(pattern string) (*regexp.Regexp, error) {
	return compileAnchored(pattern, `^(?:`+pattern+`)`)
}

// compileFull is re.fullmatch(pattern, s).
func compileFull(pattern string) (*regexp.Regexp, error) {
	return compileAnchored(pattern, `^(?:`+pattern+`)$`)
}

func compileAnchored(pattern, anchored string) (*regexp.Regexp, error) {
	if err := pythonSyntax(pattern); err != nil {
		return nil, err
	}
	// The pattern alone first, so that one with a stray ")" is refused as
	// Python refuses it, rather than closing the anchoring group.
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, fmt.Errorf("%q is not a regular expression Go's RE2 accepts: %v", pattern, err)
	}
	re, err := regexp.Compile(anchored)
	if err != nil {
		return nil, fmt.Errorf("%q is not a regular expression Go's RE2 accepts: %v", pattern, err)
	}
	return re, nil
}

// pythonSyntax refuses what RE2 reads but Python's re does not, or reads
// otherwise: \Q…\E quoting, \p{…} classes, \z, \C, POSIX [[:alpha:]]
// classes (a nested set to Python) and the ungreedy flag (?U).
func pythonSyntax(pattern string) error {
	for i := 0; i < len(pattern); i++ {
		switch {
		case pattern[i] == '\\' && i+1 < len(pattern):
			if strings.IndexByte("QEpPzC", pattern[i+1]) >= 0 {
				return fmt.Errorf("%q uses \\%c, which Python's re does not read as RE2 does", pattern, pattern[i+1])
			}
			i++
		case strings.HasPrefix(pattern[i:], "[[:"):
			return fmt.Errorf("%q uses a POSIX class [[:…:]], which Python's re reads as a nested set", pattern)
		case strings.HasPrefix(pattern[i:], "(?"):
			j := i + 2
			for j < len(pattern) && (pattern[j] == '-' || pattern[j] >= 'a' && pattern[j] <= 'z' || pattern[j] >= 'A' && pattern[j] <= 'Z') {
				if pattern[j] == 'U' {
					return fmt.Errorf("%q uses the flag U, which Python's re does not have", pattern)
				}
				j++
			}
		}
	}
	return nil
}

// compilePatternKey is get_pattern_key's test of one rank_pattern or
// alpha_pattern key: re.match(rf"(.*\.)?({key})$", path), so a key matches
// a whole path or a dotted suffix of it.
func compilePatternKey(key string) (*regexp.Regexp, error) {
	re, err := compileMatch(`(.*\.)?(` + key + `)$`)
	if err != nil {
		return nil, fmt.Errorf("key %q: %v", key, err)
	}
	return re, nil
}

// compileLayerIndex is check_target_module_exists's layer-index search:
// re.match(rf".*?\.{pattern}\.(\d+)\.", path), or for no layers_pattern
// r".*?\.[^.]*\.(\d+)\." (the first numbered segment after any name).
func compileLayerIndex(pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return compileMatch(`.*?\.[^.]*\.(\d+)\.`)
	}
	return compileMatch(`.*?\.` + pattern + `\.(\d+)\.`)
}

// Targets reports whether PEFT puts a LoRA layer on the module at path
// (e.g. "model.layers.0.self_attn.q_proj") under c: PEFT's
// check_target_module_exists. exclude_modules wins; a target_modules regex
// must match the whole path; a list entry must equal the path or be a
// dotted suffix of it, and a suffix match must also pass
// layers_to_transform. With target_modules null (PEFT picked the modules
// by architecture, which a config alone does not tell) or "all-linear",
// every path is accepted.
func (c *Config) Targets(path string) (bool, error) {
	if ex := c.ExcludeModules; ex != nil {
		if ex.IsRegex && ex.Regex != "" {
			re, err := compileFull(ex.Regex)
			if err != nil {
				return false, fmt.Errorf(`key "exclude_modules": %v: %w`, err, lora.ErrBadInput)
			}
			if re.MatchString(path) {
				return false, nil
			}
		} else if !ex.IsRegex && nameMatch(ex.Names, path) {
			return false, nil
		}
	}
	t := c.TargetModules
	switch {
	case t == nil:
		return true, nil // PEFT filled the list in from the architecture
	case t.IsRegex && t.Regex == AllLinear:
		return true, nil
	case t.IsRegex:
		re, err := compileFull(t.Regex)
		if err != nil {
			return false, fmt.Errorf(`key "target_modules": %v: %w`, err, lora.ErrBadInput)
		}
		return re.MatchString(path), nil
	case slices.Contains(t.Names, path):
		return true, nil // named outright: PEFT skips the layer test
	case !nameMatch(t.Names, path):
		return false, nil
	case len(c.LayersToTransform) == 0:
		return true, nil
	}
	return c.inLayers(path)
}

// nameMatch is PEFT's list test: key in names or key ends with "."+name.
func nameMatch(names []string, path string) bool {
	for _, n := range names {
		if path == n || strings.HasSuffix(path, "."+n) {
			return true
		}
	}
	return false
}

// inLayers finds the layer index in path as PEFT does (the first
// layers_pattern that matches, in order) and tests it against
// layers_to_transform.
func (c *Config) inLayers(path string) (bool, error) {
	patterns := c.LayersPattern
	if len(patterns) == 0 {
		patterns = []string{""}
	}
	for _, p := range patterns {
		re, err := compileLayerIndex(p)
		if err != nil {
			return false, fmt.Errorf(`key "layers_pattern": %v: %w`, err, lora.ErrBadInput)
		}
		m := re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		// Python's int(match.group(1)): group 1 is (\d+) unless the pattern
		// brings groups of its own.
		if len(m) < 2 {
			return false, fmt.Errorf(`key "layers_pattern" %q: no layer index group for %q: %w`, p, path, lora.ErrBadInput)
		}
		i, err := strconv.Atoi(m[1])
		if err != nil {
			return false, fmt.Errorf(`key "layers_pattern" %q: layer index %q of %q is not an integer: %w`, p, m[1], path, lora.ErrBadInput)
		}
		return slices.Contains(c.LayersToTransform, i), nil
	}
	return false, nil
}

// RankAlpha returns the r and lora_alpha PEFT gives the module at path:
// the value of the first rank_pattern (alpha_pattern) key, in file order,
// that matches path or a dotted suffix of it (get_pattern_key), else r
// (lora_alpha).
func (c *Config) RankAlpha(path string) (r int, alpha float64, err error) {
	r, alpha, _, _, err = c.rankAlpha(path)
	return r, alpha, err
}

// rankAlpha is RankAlpha that also names the pattern keys used, "" for
// the defaults.
func (c *Config) rankAlpha(path string) (r int, alpha float64, rKey, alphaKey string, err error) {
	r, alpha = c.R, c.LoRAAlpha
	for _, p := range c.RankPattern {
		ok, err := patternMatches(p.Key, path)
		if err != nil {
			return 0, 0, "", "", fmt.Errorf(`key "rank_pattern": %v: %w`, err, lora.ErrBadInput)
		}
		if ok {
			r, rKey = p.R, p.Key
			break
		}
	}
	for _, p := range c.AlphaPattern {
		ok, err := patternMatches(p.Key, path)
		if err != nil {
			return 0, 0, "", "", fmt.Errorf(`key "alpha_pattern": %v: %w`, err, lora.ErrBadInput)
		}
		if ok {
			alpha, alphaKey = p.Alpha, p.Key
			break
		}
	}
	// When no key matches, get_pattern_key returns the path itself and PEFT
	// looks that up literally; a key equal to a path of word characters and
	// dots has matched above already, so only exotic keys reach this.
	if rKey == "" {
		if i := slices.IndexFunc(c.RankPattern, func(p RankPattern) bool { return p.Key == path }); i >= 0 {
			r, rKey = c.RankPattern[i].R, path
		}
	}
	if alphaKey == "" {
		if i := slices.IndexFunc(c.AlphaPattern, func(p AlphaPattern) bool { return p.Key == path }); i >= 0 {
			alpha, alphaKey = c.AlphaPattern[i].Alpha, path
		}
	}
	return r, alpha, rKey, alphaKey, nil
}

func patternMatches(key, path string) (bool, error) {
	re, err := compilePatternKey(key)
	if err != nil {
		return false, err
	}
	return re.MatchString(path), nil
}

// Scale is PEFT's scaling for the module at path: lora_alpha/r, or
// lora_alpha/√r with use_rslora, after rank_pattern and alpha_pattern.
func (c *Config) Scale(path string) (float64, error) {
	r, alpha, err := c.RankAlpha(path)
	if err != nil {
		return 0, err
	}
	return lora.LoRAScale(alpha, r, c.UseRSLoRA), nil
}
