package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sdxs-go/sdxs/internal/testmodel"
	"github.com/sdxs-go/sdxs/weights"
)

func TestLoadTestTiny(t *testing.T) {
	dir := t.TempDir()
	if err := testmodel.WriteTiny(dir, weights.F32); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run([]string{"-model", dir, "-clients", "1,2,8", "-requests", "8", "-duration", "30s", "-size", "64x64", "-n", "2"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	rows := 0
	for _, line := range strings.Split(out.String(), "\n") {
		for _, c := range []string{"| 1 | 8 | 0 | 0 |", "| 2 | 8 | 0 | 0 |", "| 8 | 8 | 0 | 0 |"} {
			if strings.HasPrefix(line, c) {
				rows++
			}
		}
	}
	if rows != 3 {
		t.Errorf("want a row per level with 8 requests answered, none refused or failed:\n%s", out.String())
	}
}

func TestLoadTestLoopbackOnly(t *testing.T) {
	for _, target := range []string{"http://192.0.2.1:8080", "http://8.8.8.8", "http://10.1.2.3:80"} {
		err := run([]string{"-url", target, "-requests", "1"}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: %v, want a refusal", target, err)
		}
	}
	for _, args := range [][]string{{}, {"-model", "m", "-url", "http://127.0.0.1"}, {"-model", "m", "-clients", "0"}, {"-model", "m", "-requests", "0"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
