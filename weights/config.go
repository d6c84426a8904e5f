package weights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// ConfigError reports a configuration field with a missing, malformed or unsupported value.
type ConfigError struct {
	// Config names the configuration ("unet", "controlnet", "text_encoder", "vae", "scheduler",
	// "model_index").
	Config string
	// Field is the JSON field ("" for problems with the document as a whole).
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error formats the error as `<config> config: field "<field>": <msg>`.
func (e *ConfigError) Error() string {
	if e.Field == "" {
		return e.Config + " config: " + e.Msg
	}
	return fmt.Sprintf("%s config: field %q: %s", e.Config, e.Field, e.Msg)
}

// IntOrList is a configuration value that diffusers accepts either as one integer (applying to
// every block) or as one integer per block; it may also be null.
type IntOrList struct {
	// Values holds the integer(s); nil when the value is null.
	Values []int
	// List is true when the JSON value was a list.
	List bool
}

// Int returns an IntOrList holding the single value v.
func Int(v int) IntOrList { return IntOrList{Values: []int{v}} }

// Ints returns an IntOrList holding the list vs.
func Ints(vs ...int) IntOrList { return IntOrList{Values: vs, List: true} }

// IsNull reports whether the value is null (absent).
func (v IntOrList) IsNull() bool { return v.Values == nil }

// Resolve returns one value per block: a single integer repeated n times, or the list itself
// when it has n entries. It returns nil for a null value, a list of another length or a
// negative n.
func (v IntOrList) Resolve(n int) []int {
	switch {
	case v.Values == nil || n < 0:
		return nil
	case !v.List && len(v.Values) == 1:
		out := make([]int, n)
		for i := range out {
			out[i] = v.Values[0]
		}
		return out
	case len(v.Values) == n:
		return append([]int(nil), v.Values...)
	}
	return nil
}

// BoolOrList is a configuration value given either as one boolean or as one per block.
type BoolOrList struct {
	// Values holds the boolean(s).
	Values []bool
	// List is true when the JSON value was a list.
	List bool
}

// Resolve returns one value per block (nil for a list of another length or a negative n). A
// missing value resolves to all false.
func (v BoolOrList) Resolve(n int) []bool {
	switch {
	case n < 0:
		return nil
	case v.Values == nil:
		return make([]bool, n)
	case !v.List && len(v.Values) == 1:
		out := make([]bool, n)
		for i := range out {
			out[i] = v.Values[0]
		}
		return out
	case len(v.Values) == n:
		return append([]bool(nil), v.Values...)
	}
	return nil
}

// jsonConfig reads typed fields out of a config JSON object, applying defaults for missing
// fields and remembering the first error.
type jsonConfig struct {
	kind string
	m    map[string]json.RawMessage
	err  error
}

func newJSONConfig(kind string, data []byte) (*jsonConfig, error) {
	c := &jsonConfig{kind: kind}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &ConfigError{Config: kind, Msg: "not a JSON object"}
	}
	if err := json.Unmarshal(trimmed, &c.m); err != nil {
		return nil, &ConfigError{Config: kind, Msg: "invalid JSON: " + err.Error()}
	}
	return c, nil
}

func (c *jsonConfig) fail(field, format string, args ...any) {
	if c.err == nil {
		c.err = &ConfigError{Config: c.kind, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
}

// raw returns the field's JSON, nil when missing; null is returned as "null".
func (c *jsonConfig) raw(field string) json.RawMessage {
	return c.m[field]
}

func isNull(r json.RawMessage) bool { return r == nil || string(r) == "null" }

func show(r json.RawMessage) string { return truncate(r) }

func (c *jsonConfig) toInt(field string, r json.RawMessage) (int, bool) {
	var f float64
	if len(r) == 0 || (r[0] != '-' && (r[0] < '0' || r[0] > '9')) || json.Unmarshal(r, &f) != nil {
		c.fail(field, "want an integer, got %s", show(r))
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		c.fail(field, "want an integer, got %s", show(r))
		return 0, false
	}
	return int(f), true
}

// int reads an integer field; missing or null gives def.
func (c *jsonConfig) int(field string, def int) int {
	r := c.raw(field)
	if isNull(r) {
		return def
	}
	v, _ := c.toInt(field, r)
	return v
}

// positive reads an integer field that must be > 0.
func (c *jsonConfig) positive(field string, def int) int {
	v := c.int(field, def)
	if v <= 0 {
		c.fail(field, "must be positive, got %d", v)
	}
	return v
}

// float reads a number field; missing or null gives def.
func (c *jsonConfig) float(field string, def float64) float64 {
	v, _ := c.nullableFloat(field, def)
	return v
}

// nullableFloat reads a number field; it reports false for null (returning 0) and def for
// a missing field.
func (c *jsonConfig) nullableFloat(field string, def float64) (float64, bool) {
	r := c.raw(field)
	if r == nil {
		return def, true
	}
	if isNull(r) {
		return 0, false
	}
	var f float64
	if r[0] == '"' || json.Unmarshal(r, &f) != nil {
		c.fail(field, "want a number, got %s", show(r))
	}
	return f, true
}

func (c *jsonConfig) bool(field string, def bool) bool {
	r := c.raw(field)
	if isNull(r) {
		return def
	}
	var b bool
	if json.Unmarshal(r, &b) != nil {
		c.fail(field, "want true or false, got %s", show(r))
	}
	return b
}

// string reads a string field; missing gives def, null gives "".
func (c *jsonConfig) string(field, def string) string {
	r := c.raw(field)
	if r == nil {
		return def
	}
	if isNull(r) {
		return ""
	}
	var s string
	if r[0] != '"' || json.Unmarshal(r, &s) != nil {
		c.fail(field, "want a string, got %s", show(r))
	}
	return s
}

func quoteAll(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// oneOf reads a string field whose value must be one of supported ("" stands for null).
func (c *jsonConfig) oneOf(field, def string, supported ...string) string {
	v := c.string(field, def)
	c.check(field, v, supported...)
	return v
}

// check fails unless v is one of supported ("" stands for null).
func (c *jsonConfig) check(field, v string, supported ...string) {
	for _, s := range supported {
		if v == s {
			return
		}
	}
	val := strconv.Quote(v)
	if v == "" {
		val = "null"
	}
	sup := make([]string, len(supported))
	for i, s := range supported {
		if s == "" {
			sup[i] = "null"
		} else {
			sup[i] = strconv.Quote(s)
		}
	}
	c.fail(field, "unsupported value %s (supported: %s)", val, strings.Join(sup, ", "))
}

// mustNull fails unless the field is missing or null.
func (c *jsonConfig) mustNull(field string) {
	if r := c.raw(field); !isNull(r) {
		c.fail(field, "unsupported value %s (supported: null)", show(r))
	}
}

// mustBool fails unless the field is missing, null or equal to want.
func (c *jsonConfig) mustBool(field string, want bool) bool {
	v := c.bool(field, want)
	if v != want {
		c.fail(field, "unsupported value %v (supported: %v)", v, want)
	}
	return v
}

// ints reads a list of integers; missing or null gives def.
func (c *jsonConfig) ints(field string, def []int) []int {
	r := c.raw(field)
	if isNull(r) {
		return append([]int(nil), def...)
	}
	var items []json.RawMessage
	if r[0] != '[' || json.Unmarshal(r, &items) != nil {
		c.fail(field, "want a list of integers, got %s", show(r))
		return nil
	}
	out := make([]int, len(items))
	for i, it := range items {
		v, ok := c.toInt(field, it)
		if !ok {
			return nil
		}
		out[i] = v
	}
	return out
}

// strings reads a list of strings; missing or null gives def.
func (c *jsonConfig) strings(field string, def []string) []string {
	r := c.raw(field)
	if isNull(r) {
		return append([]string(nil), def...)
	}
	var out []string
	if r[0] != '[' || json.Unmarshal(r, &out) != nil {
		c.fail(field, "want a list of strings, got %s", show(r))
		return nil
	}
	return out
}

// intOrList reads an integer, a list of integers or null; missing gives def.
func (c *jsonConfig) intOrList(field string, def IntOrList) IntOrList {
	r := c.raw(field)
	if r == nil {
		return IntOrList{Values: append([]int(nil), def.Values...), List: def.List}
	}
	if isNull(r) {
		return IntOrList{}
	}
	if r[0] == '[' {
		v := c.ints(field, nil)
		if v == nil {
			v = []int{}
		}
		return IntOrList{Values: v, List: true}
	}
	v, _ := c.toInt(field, r)
	return IntOrList{Values: []int{v}}
}

// boolOrList reads a boolean or a list of booleans; missing or null gives def.
func (c *jsonConfig) boolOrList(field string, def bool) BoolOrList {
	r := c.raw(field)
	if isNull(r) {
		return BoolOrList{Values: []bool{def}}
	}
	if r[0] == '[' {
		var out []bool
		if json.Unmarshal(r, &out) != nil {
			c.fail(field, "want a boolean or a list of booleans, got %s", show(r))
		}
		if out == nil {
			out = []bool{}
		}
		return BoolOrList{Values: out, List: true}
	}
	return BoolOrList{Values: []bool{c.bool(field, def)}}
}

// className reads _class_name (or, for transformers configs, architectures[0]) and checks it
// against the accepted classes; a missing name is taken to be accepted[0].
func (c *jsonConfig) className(accepted ...string) string {
	field := "_class_name"
	name := c.string(field, "")
	if name == "" {
		if archs := c.strings("architectures", nil); len(archs) > 0 {
			field, name = "architectures", archs[0]
		}
	}
	if name == "" {
		return accepted[0]
	}
	c.check(field, name, accepted...)
	return name
}

// loadConfig reads path and parses it with parse, wrapping errors with the path.
func loadConfig[T any](path string, parse func([]byte) (*T, error)) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	cfg, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, unwrapPrefix(err))
	}
	return cfg, nil
}

// prefixed is an error whose message gains the "weights: " prefix but unwraps to the cause.
type prefixed struct{ err error }

func (p prefixed) Error() string { return "weights: " + p.err.Error() }
func (p prefixed) Unwrap() error { return p.err }

// configErr wraps a parse error with the package prefix.
func configErr(err error) error {
	if err == nil {
		return nil
	}
	return prefixed{err}
}

func unwrapPrefix(err error) error {
	if p, ok := err.(prefixed); ok {
		return p.err
	}
	return err
}
