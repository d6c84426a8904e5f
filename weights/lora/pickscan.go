package lora

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// maxPickle bounds the size of a checkpoint's data.pkl (a state dict of ten thousand tensors
// takes a few MB).
const maxPickle = 64 << 20

// Argument layouts of the pickle opcodes (protocols 0 to 5).
const (
	argNone  = iota
	argFixed // n bytes
	argLine  // up to a newline
	argLines // two lines (module, name)
	argLen   // an n-byte little-endian length, then that many bytes
)

type opArg struct {
	kind, n int
}

var pickleOps = func() map[byte]opArg {
	m := map[byte]opArg{}
	for _, op := range []byte("(.012NQRabd}el]ostu)\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98") {
		m[op] = opArg{argNone, 0}
	}
	for op, n := range map[byte]int{'J': 4, 'K': 1, 'M': 2, 'h': 1, 'j': 4, 'q': 1, 'r': 4, 'G': 8, 0x80: 1, 0x82: 1, 0x83: 2, 0x84: 4, 0x95: 8} {
		m[op] = opArg{argFixed, n}
	}
	for _, op := range []byte("ILSVFgpP") {
		m[op] = opArg{argLine, 0}
	}
	m['c'], m['i'] = opArg{argLines, 0}, opArg{argLines, 0}
	for op, n := range map[byte]int{'T': 4, 'U': 1, 'X': 4, 0x8c: 1, 0x8d: 8, 'B': 4, 'C': 1, 0x8e: 8, 0x96: 8, 0x8a: 1, 0x8b: 4} {
		m[op] = opArg{argLen, n}
	}
	return m
}()

// scanPickle walks a pickle's opcodes up to STOP without running them and checks that every
// opcode is known and every length it gives fits in the bytes that follow, so that the
// interpreter never allocates more than the file holds.
func scanPickle(data []byte) error {
	for pos := 0; pos < len(data); {
		op := data[pos]
		a, ok := pickleOps[op]
		if !ok {
			return fmt.Errorf("unknown opcode 0x%02x at byte %d", op, pos)
		}
		pos++
		switch a.kind {
		case argFixed:
			pos += a.n
		case argLine, argLines:
			lines := 1
			if a.kind == argLines {
				lines = 2
			}
			for ; lines > 0; lines-- {
				i := bytes.IndexByte(data[min(pos, len(data)):], '\n')
				if i < 0 {
					return fmt.Errorf("opcode %q at byte %d: the pickle ends inside its argument", op, pos-1)
				}
				pos += i + 1
			}
		case argLen:
			if pos+a.n > len(data) {
				return fmt.Errorf("opcode 0x%02x at byte %d: the pickle ends inside its length", op, pos-1)
			}
			var n uint64
			switch a.n {
			case 1:
				n = uint64(data[pos])
			case 4:
				n = uint64(binary.LittleEndian.Uint32(data[pos:]))
			case 8:
				n = binary.LittleEndian.Uint64(data[pos:])
			}
			pos += a.n
			if n > uint64(len(data)-pos) {
				return fmt.Errorf("opcode 0x%02x at byte %d gives a length of %d bytes, %d remain", op, pos-a.n-1, n, len(data)-pos)
			}
			pos += int(n)
		}
		if pos > len(data) {
			return fmt.Errorf("opcode 0x%02x: the pickle ends inside its argument", op)
		}
		if op == '.' {
			return nil
		}
	}
	return fmt.Errorf("the pickle ends before its STOP opcode (truncated?)")
}
