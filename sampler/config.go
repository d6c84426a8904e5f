package sampler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
)

// EulerClassName is the _class_name of the diffusers scheduler this package implements.
const EulerClassName = "EulerDiscreteScheduler"

// ParseConfig reads a diffusers scheduler_config.json for EulerDiscreteScheduler. Missing
// fields (and null values) take diffusers' defaults; fields that only other schedulers use
// (clip_sample, set_alpha_to_one, skip_prk_steps, …) are ignored, as diffusers ignores them.
// Settings this package does not implement are errors naming the field and its value: another
// _class_name, non-null trained_betas, use_karras_sigmas / use_exponential_sigmas /
// use_beta_sigmas true, interpolation_type other than "linear", rescale_betas_zero_snr true,
// timestep_type "continuous" with v_prediction, and unknown beta_schedule, prediction_type,
// timestep_spacing or final_sigmas_type values.
func ParseConfig(data []byte) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("sampler: scheduler config: %w", err)
	}
	cfg := DefaultConfig()
	p := configParser{raw: raw}

	if s, ok := p.str("_class_name"); ok && s != EulerClassName {
		p.fail("_class_name %q is not supported (only %s)", s, EulerClassName)
	}
	if v, ok := p.integer("num_train_timesteps"); ok {
		cfg.NumTrainTimesteps = v
	}
	if v, ok := p.float("beta_start"); ok {
		cfg.BetaStart = v
	}
	if v, ok := p.float("beta_end"); ok {
		cfg.BetaEnd = v
	}
	if s, ok := p.str("beta_schedule"); ok {
		cfg.BetaSchedule = s
	}
	if s, ok := p.str("prediction_type"); ok {
		cfg.PredictionType = s
	}
	if s, ok := p.str("timestep_spacing"); ok {
		cfg.TimestepSpacing = s
	}
	if v, ok := p.integer("steps_offset"); ok {
		cfg.StepsOffset = v
	}
	if s, ok := p.str("final_sigmas_type"); ok {
		cfg.FinalSigmasType = s
	}
	if !p.isNull("trained_betas") {
		p.fail("trained_betas is not supported (must be null)")
	}
	for _, name := range []string{"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "rescale_betas_zero_snr"} {
		if b, ok := p.boolean(name); ok && b {
			p.fail("%s=true is not supported", name)
		}
	}
	if s, ok := p.str("interpolation_type"); ok && s != "linear" {
		p.fail("interpolation_type %q is not supported (only \"linear\")", s)
	}
	if s, ok := p.str("timestep_type"); ok {
		switch {
		case s != "discrete" && s != "continuous":
			p.fail("timestep_type %q is not supported (want \"discrete\")", s)
		case s == "continuous" && cfg.PredictionType == PredictV:
			p.fail("timestep_type \"continuous\" with v_prediction is not supported")
		}
	}
	if p.err != nil {
		return Config{}, p.err
	}
	if err := cfg.validate(); err != nil {
		return Config{}, fmt.Errorf("%w (in scheduler config)", err)
	}
	return cfg, nil
}

// LoadConfig reads and parses a scheduler_config.json file; errors name the file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("sampler: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// configParser reads typed fields of a JSON object, remembering the first error.
type configParser struct {
	raw map[string]json.RawMessage
	err error
}

func (p *configParser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("sampler: scheduler config: "+format, args...)
	}
}

// isNull reports whether the field is absent or null.
func (p *configParser) isNull(name string) bool {
	v, ok := p.raw[name]
	return !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

func (p *configParser) decode(name string, dst any, want string) bool {
	if p.isNull(name) {
		return false
	}
	if err := json.Unmarshal(p.raw[name], dst); err != nil {
		p.fail("%s must be %s, got %s", name, want, p.raw[name])
		return false
	}
	return true
}

func (p *configParser) str(name string) (string, bool) {
	var s string
	ok := p.decode(name, &s, "a string")
	return s, ok
}

func (p *configParser) boolean(name string) (bool, bool) {
	var b bool
	ok := p.decode(name, &b, "a boolean")
	return b, ok
}

func (p *configParser) float(name string) (float64, bool) {
	var f float64
	ok := p.decode(name, &f, "a number")
	return f, ok
}

// integer accepts JSON integers and integral floats (1000 or 1000.0).
func (p *configParser) integer(name string) (int, bool) {
	var n json.Number
	if !p.decode(name, &n, "an integer") {
		return 0, false
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil && i >= math.MinInt32 && i <= math.MaxInt32 {
		return int(i), true
	}
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && f == math.Trunc(f) && math.Abs(f) <= math.MaxInt32 {
		return int(f), true
	}
	p.fail("%s must be an integer, got %s", name, n)
	return 0, false
}
