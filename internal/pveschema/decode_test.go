package pveschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// stdDecode is encoding/json's reading of b with UseNumber, the reference
// decode must equal.
func stdDecode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

var decodeSeeds = []string{
	`{"data":[{"iface":"eno1","mtu":"1500","active":1,"exists":null,"x":true,"y":false}],"total":1}`,
	`[]`, `{}`, `[[],{}]`, `"a\u00e9\ud83d\ude00\n\t\"\\\/\b\f\r"`, `"\ud800"`, `"\ud800\u0041"`, `"\udc00\ud800"`,
	"\"\xff\xfe\"", "\"a\x01\"", `-0`, `0.5e-3`, `1E+2`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `true x`,
	`{"a":1,"a":2}`, `{"a" 1}`, `{1:2}`, `[1,]`, `{"a":1,}`, `  [ 1 , 2 ]  `, ``, ` `, `"\u12"`, `"\x"`, `"abc`,
	`{"a":[1,{"b":"c"}],"d":{"e":[]}}`, "\"\xe2\x82\"", `1 2`, `[1 2]`,
	`{"iface":1,"iface\u0041":2,"a\"b":3,"é":4,"data":{"a"}}`, `{"iface"`, `{"iface":`, `{"a\u0022b":1}`,
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	files, _ := filepath.Glob("testdata/examples/*.json")
	inputs := append([]string(nil), decodeSeeds...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(b))
	}
	inputs = append(inputs, strings.Repeat("[", 10000)+strings.Repeat("]", 10000), strings.Repeat("[", 10001)+strings.Repeat("]", 10001))
	for _, in := range inputs {
		checkDecodeAgainstStd(t, []byte(in))
	}
}

var testNames = map[string]string{"data": "data", "iface": "iface", "a": "a", "é": "é", "a\"b": "a\"b"}

func checkDecodeAgainstStd(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := stdDecode(in)
	for _, names := range []map[string]string{nil, testNames} {
		got, err := decodeInterned(in, names)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("input %q (names %v): decode err %v, encoding/json err %v", in, names != nil, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q (names %v):\n got %#v\nwant %#v", in, names != nil, got, want)
		}
	}
}

// FuzzDecode holds the decoder to encoding/json: same values, same inputs
// refused.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDecodeAgainstStd(t, in)
	})
}

// BenchmarkDecode: the answer decoder against encoding/json (UseNumber) on
// the real 9.x network list, in the same run.
func BenchmarkDecode(b *testing.B) {
	body, err := os.ReadFile("testdata/examples/nodes_network_list.go-proxmox.pve9x.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, impl := range []struct {
		name string
		fn   func([]byte) (any, error)
	}{{"pveschema", decode}, {"encoding-json", stdDecode}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := impl.fn(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
