package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The config is JSON that Python wrote (json.dumps(indent=2, sort_keys=True))
// and that Python reads back. Two things make encoding/json's maps the wrong
// model: rank_pattern and alpha_pattern are tried in file order (Python
// dicts keep it), and a duplicate key, which Python silently resolves to the
// last value, should be an error rather than a guess. So the config is parsed
// into this ordered tree, and written from it in Python's layout, which
// makes a PEFT-written config save back byte for byte.
//
// A value is nil, bool, json.Number (its literal kept verbatim), string,
// []any or object.

// member is one key of a JSON object.
type member struct {
	Key   string
	Value any
}

// object is a JSON object in file order.
type object []member

// maxJSONDepth bounds nesting so that a hostile file cannot recurse deeply.
const maxJSONDepth = 64

// parseJSON parses exactly one JSON value from data, refusing invalid UTF-8,
// duplicate keys, nesting deeper than maxJSONDepth and trailing data.
func parseJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err == io.EOF { // the decoder's word for input that stops inside a value
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON value at byte %d", dec.InputOffset())
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return nil, fmt.Errorf("nested deeper than %d levels", maxJSONDepth)
		}
		if t == '[' {
			list := []any{}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token() // ']'
			return list, err
		}
		obj := object{}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string) // the decoder only yields string keys inside an object
			if seen[k] {
				return nil, fmt.Errorf("duplicate key %q", k)
			}
			seen[k] = true
			v, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			obj = append(obj, member{k, v})
		}
		_, err := dec.Token() // '}'
		return obj, err
	default: // nil, bool, json.Number, string
		return t, nil
	}
}

// writePy appends v as Python's json.dumps(v, indent=2) does at nesting
// level ind: items on their own lines, "key": value, empty containers as
// [] and {}, non-ASCII escaped.
func writePy(b *bytes.Buffer, v any, ind int) {
	switch t := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case json.Number:
		b.WriteString(string(t))
	case string:
		writePyString(b, t)
	case []any:
		if len(t) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[")
		for i, x := range t {
			if i > 0 {
				b.WriteString(",")
			}
			newline(b, ind+1)
			writePy(b, x, ind+1)
		}
		newline(b, ind)
		b.WriteString("]")
	case object:
		if len(t) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{")
		for i, m := range t {
			if i > 0 {
				b.WriteString(",")
			}
			newline(b, ind+1)
			writePyString(b, m.Key)
			b.WriteString(": ")
			writePy(b, m.Value, ind+1)
		}
		newline(b, ind)
		b.WriteString("}")
	default:
		panic(fmt.Sprintf("peft: writePy: unexpected %T", v)) // only this package builds trees
	}
}

func newline(b *bytes.Buffer, ind int) {
	b.WriteByte('\n')
	b.WriteString(strings.Repeat("  ", ind))
}

// writePyString quotes s as json.dumps with ensure_ascii=True: the short
// escapes, \u00XX for other control bytes, \uXXXX (surrogate pairs above
// the BMP) for everything outside ASCII.
func writePyString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r > 0x7e && r < 0x10000): // all but printable ASCII, DEL included
			fmt.Fprintf(b, `\u%04x`, r)
		case r >= 0x10000:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// pyFloat is a float as Python's repr writes it: shortest round-trip
// digits, positional for exponents in [-4, 16) with at least one decimal
// ("0.0", "0.05"), otherwise scientific with a two-digit exponent ("1e-05").
func pyFloat(f float64) json.Number {
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return json.Number(e) // Go's form is Python's: "1e-05", "1e+16"
	}
	p := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(p, ".") {
		p += ".0"
	}
	return json.Number(p)
}

// pyNumber writes a number that PEFT declares int but that may be a float
// (lora_alpha, alpha_pattern values): integral values as integers, the
// rest as Python floats.
func pyNumber(f float64) json.Number {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return json.Number(strconv.FormatInt(int64(f), 10))
	}
	return pyFloat(f)
}

// compactJSON renders a parsed value compactly, to keep it in a Config
// (json.RawMessage) in one canonical form whatever the file's spacing.
func compactJSON(v any) json.RawMessage {
	var b bytes.Buffer
	writePy(&b, v, 0)
	var c bytes.Buffer
	if err := json.Compact(&c, b.Bytes()); err != nil {
		panic("peft: compactJSON: " + err.Error()) // writePy always writes valid JSON
	}
	return c.Bytes()
}
