package imgserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // control images may be GIF
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/sampler"
)

// genRequest is a validated image request.
type genRequest struct {
	prompt        string
	n             int
	width, height int
	seed          uint64
	seedSet       bool
	control       image.Image // nil without a control image
	controlScale  float64     // 0 means the library's default
	controlFormat string      // png, jpeg or gif, for the log

	// Image to image (POST /v1/images/edits only).
	init       image.Image // the init picture; nil for generations
	initFormat string      // png, jpeg or gif, for the log
	strength   float64
	steps      int
}

// The defaults of /v1/images/edits: strength 0.5 of a 2-step schedule runs one step (t = 499),
// as fast as text to image.
const (
	DefaultEditStrength = 0.5
	DefaultEditSteps    = 2
)

// apiError is an error the client caused or should know about, answered with status and an
// OpenAI-style body {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	status  int
	typ     string
	param   string
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, message: fmt.Sprintf(format, args...)}
}

// jsonRequest is the body of POST /v1/images/generations. Pointers tell absent from zero.
type jsonRequest struct {
	Prompt         *string  `json:"prompt"`
	N              *int     `json:"n"`
	Size           *string  `json:"size"`
	ResponseFormat *string  `json:"response_format"`
	Seed           *uint64  `json:"seed"`
	ControlImage   *string  `json:"control_image"`
	ControlScale   *float64 `json:"control_scale"`

	// Image to image: multipart fields of POST /v1/images/edits only.
	Strength *float64 `json:"-"`
	Steps    *int     `json:"-"`

	// OpenAI's fields that do not apply here: accepted, whatever their value, and ignored.
	Model   json.RawMessage `json:"model"`
	Quality json.RawMessage `json:"quality"`
	Style   json.RawMessage `json:"style"`
	User    json.RawMessage `json:"user"`
}

// ignoredFields are OpenAI parameters accepted and ignored (so that existing clients work).
var ignoredFields = map[string]bool{"model": true, "quality": true, "style": true, "user": true}

// fieldTypes describe each field's expected JSON type, for error messages.
var fieldTypes = map[string]string{
	"prompt":          "a string",
	"n":               "an integer",
	"size":            `a string "WIDTHxHEIGHT"`,
	"response_format": `a string ("b64_json")`,
	"seed":            "an integer from 0 to 18446744073709551615",
	"control_image":   "a string (a data URL such as data:image/png;base64,...)",
	"control_scale":   "a number",
	"strength":        "a number",
	"steps":           "an integer",
}

// editOnlyFields are multipart fields of /v1/images/edits that /v1/images/generations does not
// take.
var editOnlyFields = map[string]bool{"image": true, "mask": true, "strength": true, "steps": true}

// parseRequest reads and validates a request body: JSON or multipart/form-data for
// generations, multipart/form-data with an image for edits.
func (s *Server) parseRequest(w http.ResponseWriter, r *http.Request, defaultSize int, edit bool) (*genRequest, error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" {
		mt, err = "application/json", nil
	}
	if err != nil {
		return nil, &apiError{status: http.StatusUnsupportedMediaType, typ: "invalid_request_error",
			message: fmt.Sprintf("Content-Type %q: %v; send application/json or multipart/form-data", ct, err)}
	}
	var jr jsonRequest
	var files uploads
	switch {
	case mt == "application/json" && edit:
		return nil, &apiError{status: http.StatusUnsupportedMediaType, typ: "invalid_request_error",
			message: "/v1/images/edits takes multipart/form-data (an image file field and text fields), not JSON"}
	case mt == "application/json":
		if err := s.decodeJSON(r.Body, &jr); err != nil {
			return nil, err
		}
	case mt == "multipart/form-data":
		if files, err = s.decodeMultipart(r.Body, params["boundary"], &jr, edit); err != nil {
			return nil, err
		}
	default:
		return nil, &apiError{status: http.StatusUnsupportedMediaType, typ: "invalid_request_error",
			message: fmt.Sprintf("Content-Type %q is not supported; send application/json or multipart/form-data", mt)}
	}
	g, err := s.validate(&jr, files.control, defaultSize)
	if err != nil || !edit {
		return g, err
	}
	return g, s.validateEdit(g, &jr, files.image)
}

// uploads are the file fields of a multipart body.
type uploads struct {
	control []byte // control_image, when sent as a file
	image   []byte // image, the init picture of an edit
}

// bodyError turns a read error into a 413 when the body was too large.
func (s *Server) bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error",
			message: fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxBodyBytes)}
	}
	return nil
}

func (s *Server) decodeJSON(body io.Reader, jr *jsonRequest) error {
	data, err := io.ReadAll(body)
	if err != nil {
		if e := s.bodyError(err); e != nil {
			return e
		}
		return badRequest("", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("", "empty request body: send a JSON object such as {\"prompt\": \"a lighthouse\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(jr); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			field := te.Field
			if want, ok := fieldTypes[field]; ok {
				return badRequest(field, "%s must be %s, not a JSON %s", field, want, te.Value)
			}
			if field == "" {
				return badRequest("", "the request body must be a JSON object, not a JSON %s", te.Value)
			}
			return badRequest(field, "%s: wrong type (JSON %s)", field, te.Value)
		case errors.As(err, &se):
			return badRequest("", "the request body is not valid JSON: %v (at byte %d)", err, se.Offset)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(name, "Unrecognized request argument supplied: %s", name)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("", "the request body is not valid JSON: it ends too early")
		}
		return badRequest("", "the request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return badRequest("", "the request body must hold one JSON object and nothing after it")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "the request body must hold one JSON object and nothing after it")
	}
	return nil
}

// decodeMultipart reads a multipart/form-data body: text fields named as in the JSON body, and
// the control image as a file field control_image; for edits (edit true) also the init picture
// (file field image), strength and steps, and OpenAI's mask (accepted and ignored).
func (s *Server) decodeMultipart(body io.Reader, boundary string, jr *jsonRequest, edit bool) (uploads, error) {
	var up uploads
	if boundary == "" {
		return up, badRequest("", "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, boundary)
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			if e := s.bodyError(err); e != nil {
				return up, e
			}
			return up, badRequest("", "reading the multipart body: %v", err)
		}
		name := part.FormName()
		data, err := io.ReadAll(part)
		part.Close()
		if err != nil {
			if e := s.bodyError(err); e != nil {
				return up, e
			}
			return up, badRequest(name, "reading the multipart field %q: %v", name, err)
		}
		if seen[name] {
			return up, badRequest(name, "the field %s is given twice", name)
		}
		seen[name] = true
		if ignoredFields[name] || (edit && name == "mask") {
			continue
		}
		if name == "control_image" {
			if part.FileName() != "" || !bytes.HasPrefix(data, []byte("data:")) {
				up.control = data
				continue
			}
		}
		if edit && name == "image" {
			up.image = data
			continue
		}
		if !edit && editOnlyFields[name] {
			return up, badRequest(name, "Unrecognized request argument supplied: %s (image to image takes POST /v1/images/edits)", name)
		}
		if !utf8.Valid(data) {
			return up, badRequest(name, "the field %s is not valid UTF-8 text", name)
		}
		v := string(data)
		switch name {
		case "prompt":
			jr.Prompt = &v
		case "size":
			jr.Size = &v
		case "response_format":
			jr.ResponseFormat = &v
		case "control_image":
			jr.ControlImage = &v
		case "n":
			err = parseField(&jr.N, name, v, strconv.Atoi)
		case "seed":
			err = parseField(&jr.Seed, name, v, parseUint64)
		case "control_scale":
			err = parseField(&jr.ControlScale, name, v, parseFloat64)
		case "strength":
			err = parseField(&jr.Strength, name, v, parseFloat64)
		case "steps":
			err = parseField(&jr.Steps, name, v, strconv.Atoi)
		default:
			if name == "" {
				return up, badRequest("", "a multipart part without a form field name")
			}
			return up, badRequest(name, "Unrecognized request argument supplied: %s", name)
		}
		if err != nil {
			return up, err
		}
	}
	return up, nil
}

// parseField parses the multipart text field name's value v into *dst, or says what the field
// must be.
func parseField[T any](dst **T, name, v string, parse func(string) (T, error)) error {
	x, err := parse(strings.TrimSpace(v))
	if err != nil {
		return badRequest(name, "%s must be %s, not %q", name, fieldTypes[name], v)
	}
	*dst = &x
	return nil
}

func parseUint64(s string) (uint64, error)   { return strconv.ParseUint(s, 10, 64) }
func parseFloat64(s string) (float64, error) { return strconv.ParseFloat(s, 64) }

// MaxControlScale bounds control_scale.
const MaxControlScale = 2.0

// validate checks every field and fills in the defaults.
func (s *Server) validate(jr *jsonRequest, controlData []byte, defaultSize int) (*genRequest, error) {
	g := &genRequest{n: 1}
	if jr.Prompt == nil {
		return nil, badRequest("prompt", "prompt is required")
	}
	g.prompt = *jr.Prompt
	if strings.TrimSpace(g.prompt) == "" {
		return nil, badRequest("prompt", "prompt is empty")
	}
	if n := utf8.RuneCountInString(g.prompt); n > s.cfg.MaxPromptRunes {
		return nil, badRequest("prompt", "prompt is %d characters long; the limit is %d", n, s.cfg.MaxPromptRunes)
	}
	if strings.ContainsRune(g.prompt, 0) {
		return nil, badRequest("prompt", "prompt contains a NUL character")
	}
	if jr.N != nil {
		g.n = *jr.N
		if g.n < 1 || g.n > s.cfg.MaxN {
			return nil, badRequest("n", "n is %d; it must be between 1 and %d", g.n, s.cfg.MaxN)
		}
	}
	g.width, g.height = defaultSize, defaultSize
	if jr.Size != nil {
		var err error
		if g.width, g.height, err = s.checkSize(*jr.Size); err != nil {
			return nil, err
		}
	}
	if jr.ResponseFormat != nil {
		switch *jr.ResponseFormat {
		case "b64_json":
		case "url":
			return nil, badRequest("response_format", `response_format "url" is not supported by this server (it stores no pictures); use "b64_json"`)
		default:
			return nil, badRequest("response_format", `response_format %q: must be "b64_json"`, *jr.ResponseFormat)
		}
	}
	if jr.Seed != nil {
		g.seed, g.seedSet = *jr.Seed, true
	}
	if jr.ControlImage != nil && controlData != nil {
		return nil, badRequest("control_image", "control_image is given twice")
	}
	if jr.ControlImage != nil {
		data, err := parseDataURL(*jr.ControlImage)
		if err != nil {
			return nil, badRequest("control_image", "control_image: %v", err)
		}
		controlData = data
	}
	if controlData != nil || jr.ControlScale != nil {
		if s.cfg.Control == nil {
			return nil, badRequest("control_image", "this server has no ControlNet loaded (start it with -controlnet); control_image and control_scale are not accepted")
		}
	}
	if jr.ControlScale != nil {
		if controlData == nil {
			return nil, badRequest("control_scale", "control_scale without a control_image")
		}
		g.controlScale = *jr.ControlScale
		if !(g.controlScale >= 0 && g.controlScale <= MaxControlScale) {
			return nil, badRequest("control_scale", "control_scale %g must be between 0 and %g", g.controlScale, MaxControlScale)
		}
	}
	if controlData != nil {
		img, format, err := s.decodeImage(controlData)
		if err != nil {
			return nil, badRequest("control_image", "control_image: %v", err)
		}
		g.control, g.controlFormat = img, format
	}
	return g, nil
}

// checkSize parses a size "WIDTHxHEIGHT" and checks it against the server's limits.
func (s *Server) checkSize(size string) (w, h int, err error) {
	w, h, err = parseSize(size)
	if err != nil {
		return 0, 0, badRequest("size", "size %q: %v", size, err)
	}
	for _, d := range []struct {
		name string
		v    int
	}{{"width", w}, {"height", h}} {
		if d.v%8 != 0 || d.v < s.cfg.MinSide || d.v > s.cfg.MaxSide {
			return 0, 0, badRequest("size", "size %q: the %s %d must be a multiple of 8 from %d to %d", size, d.name, d.v, s.cfg.MinSide, s.cfg.MaxSide)
		}
	}
	return w, h, nil
}

// validateEdit checks an edit's init picture, strength and steps, and without a size takes the
// init picture's size rounded down to multiples of 8 (as the library does).
func (s *Server) validateEdit(g *genRequest, jr *jsonRequest, image []byte) error {
	if image == nil {
		return badRequest("image", "image is required: send the init picture (PNG or JPEG) as the multipart file field image")
	}
	img, format, err := s.decodeImage(image)
	if err != nil {
		return badRequest("image", "image: %v", err)
	}
	g.init, g.initFormat = img, format
	if jr.Size == nil {
		b := img.Bounds()
		w, h := imageproc.DefaultSize(img, 8)
		if w < s.cfg.MinSide || h < s.cfg.MinSide || w > s.cfg.MaxSide || h > s.cfg.MaxSide {
			return badRequest("image", "image of %d×%d pixels gives a %d×%d picture; each side must be from %d to %d: send a size, such as \"%dx%d\"",
				b.Dx(), b.Dy(), w, h, s.cfg.MinSide, s.cfg.MaxSide, s.cfg.MinSide, s.cfg.MinSide)
		}
		g.width, g.height = w, h
	}
	g.strength, g.steps = DefaultEditStrength, DefaultEditSteps
	if jr.Steps != nil {
		g.steps = *jr.Steps
		if g.steps < 1 || g.steps > s.cfg.MaxSteps {
			return badRequest("steps", "steps is %d; it must be between 1 and %d", g.steps, s.cfg.MaxSteps)
		}
	}
	if jr.Strength != nil {
		g.strength = *jr.Strength
		if !(g.strength > 0 && g.strength <= 1) {
			return badRequest("strength", "strength %g must be more than 0 and at most 1", g.strength)
		}
	}
	if _, err := sampler.StrengthStart(g.steps, g.strength); err != nil {
		return badRequest("strength", "strength %g of %d steps runs no step (int(steps × strength) = 0): raise strength or steps", g.strength, g.steps)
	}
	return nil
}

// parseSize parses "WIDTHxHEIGHT".
func parseSize(s string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(s, "x")
	if !ok {
		return 0, 0, errors.New(`must be "WIDTHxHEIGHT", such as "512x512"`)
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil || ws == "" || hs == "" || ws[0] == '+' || hs[0] == '+' {
		return 0, 0, errors.New(`must be "WIDTHxHEIGHT" with whole numbers, such as "512x512"`)
	}
	return w, h, nil
}

// parseDataURL decodes a data URL "data:image/png;base64,..." (or bare base64) into bytes.
func parseDataURL(s string) ([]byte, error) {
	payload := s
	if strings.HasPrefix(s, "data:") {
		meta, rest, ok := strings.Cut(s[len("data:"):], ",")
		if !ok {
			return nil, errors.New("a data URL needs a comma before its data")
		}
		if !strings.HasSuffix(meta, ";base64") {
			return nil, errors.New("only base64 data URLs (data:image/png;base64,...) are supported")
		}
		if mt := strings.TrimSuffix(meta, ";base64"); mt != "" && !strings.HasPrefix(mt, "image/") {
			return nil, fmt.Errorf("the data URL's media type %q is not an image type", mt)
		}
		payload = rest
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		if d, err2 := base64.RawStdEncoding.DecodeString(strings.TrimSpace(payload)); err2 == nil {
			return d, nil
		}
		return nil, fmt.Errorf("not valid base64: %v", err)
	}
	if len(data) == 0 {
		return nil, errors.New("empty")
	}
	return data, nil
}

// decodeImage decodes a PNG, JPEG or GIF after checking its declared size against the server's
// limit, so that a small file declaring a huge picture is refused before any pixel is allocated.
// imageproc.Decode reads it as the ControlNet's reference (Pillow) does.
func (s *Server) decodeImage(data []byte) (image.Image, string, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("not a PNG, JPEG or GIF picture (%v)", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > s.cfg.MaxControlSide || cfg.Height > s.cfg.MaxControlSide {
		return nil, "", fmt.Errorf("%s picture of %d×%d pixels: each side must be from 1 to %d", format, cfg.Width, cfg.Height, s.cfg.MaxControlSide)
	}
	img, err := imageproc.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("%s picture: %v", format, strings.TrimPrefix(err.Error(), "imageproc: "))
	}
	return img, format, nil
}
