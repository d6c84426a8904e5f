package sdxs

import (
	"context"
	"image"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestTypedNilPicturesBadInput checks that a request whose Control or Init is an interface
// holding a nil picture gets an error naming the field, not a panic.
func TestTypedNilPicturesBadInput(t *testing.T) {
	p, err := Load(oracle.Path(t, "sdxs-dreamshaper-tiny", "model"))
	require.NoError(t, err)
	defer p.Close()
	var nilRGBA *image.RGBA
	_, err = p.Generate(context.Background(), Request{Prompt: "a", Width: 64, Height: 64, Control: nilRGBA})
	require.ErrorContains(t, err, "Request.Control is a nil picture")
	_, err = p.Generate(context.Background(), Request{Prompt: "a", Width: 64, Height: 64, Init: nilRGBA, Strength: 0.5, Steps: 2})
	require.ErrorContains(t, err, "Request.Init is a nil picture")
}
